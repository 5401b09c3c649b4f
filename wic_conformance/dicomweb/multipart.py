"""Encode and decode ``multipart/related`` bodies, reporting every departure from the grammar.

The decoder is a streaming state machine over a small sliding buffer: it is fed
chunks of any size, keeps only the bytes that may still belong to a delimiter,
writes large part bodies to temporary files (or, when the body is itself a file,
refers to their byte ranges in it), and returns the parts together with
:class:`~wic_conformance.dicomweb.deviation.Deviation` records.  It never
raises on its input and never repairs it silently: whatever it reads past in
``LENIENT`` mode is recorded.

Deviation codes (the ``code`` of each :class:`Deviation`; checks map them to
requirement IDs):

========================================  =====================================================
``multipart.not_multipart``               Content-Type is not ``multipart/related``
``multipart.missing_type``                no ``type`` parameter
``multipart.unquoted_type``               ``type`` is not a quoted-string
``multipart.missing_boundary``            no (or an empty) ``boundary`` parameter
``multipart.bad_boundary``                boundary breaks RFC 2046 ``bchars`` / 1-70 chars / no final space
``multipart.no_opening_delimiter``        the boundary never occurs as a delimiter line
``multipart.no_closing_delimiter``        the body ends before the close delimiter (truncated)
``multipart.part_without_content_type``   a part has no Content-Type header
``multipart.lf_line_endings``             a delimiter or header line ends in a bare LF
``multipart.preamble_content``            bytes before the first delimiter
``multipart.epilogue_content``            bytes after the close delimiter line
``multipart.type_differs_from_root``      ``type`` differs from the first part's Content-Type
``multipart.too_many_parts``              more than ``max_parts`` parts
``multipart.header_too_large``            a part header block longer than ``max_header_bytes``
``multipart.malformed_part_headers``      a header line that breaks RFC 5322, folding, no blank line
``multipart.no_parts``                    a body without any part
``multipart.transport_padding``           white space after a delimiter (allowed; informational)
``multipart.boundary_in_content``         a line in a part starts with the delimiter but is not one
========================================  =====================================================

References
----------
RFC 2046 §5.1.1 (common syntax of multipart bodies); RFC 2387 (``multipart/related``);
RFC 5322 §2.2 (header fields); DICOM PS3.18 §8.6.1.2 (multipart payload of DICOMweb).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import IO

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Deviation, Strictness
from wic_conformance.dicomweb.exchange import Body, Headers
from wic_conformance.errors import UsageError

__all__ = [
    "BAD_BOUNDARY",
    "BOUNDARY_IN_CONTENT",
    "DEVIATION_CODES",
    "EPILOGUE_CONTENT",
    "HEADER_TOO_LARGE",
    "LF_LINE_ENDINGS",
    "MALFORMED_PART_HEADERS",
    "MISSING_BOUNDARY",
    "MISSING_TYPE",
    "NOT_MULTIPART",
    "NO_CLOSING_DELIMITER",
    "NO_OPENING_DELIMITER",
    "NO_PARTS",
    "PART_WITHOUT_CONTENT_TYPE",
    "PREAMBLE_CONTENT",
    "TOO_MANY_PARTS",
    "TRANSPORT_PADDING",
    "TYPE_DIFFERS_FROM_ROOT",
    "UNQUOTED_TYPE",
    "MultipartDecoder",
    "MultipartResult",
    "Part",
    "boundary_problem",
    "decode_multipart",
    "encode_multipart",
    "iter_encode_multipart",
]

_log = logging.getLogger(__name__)

NOT_MULTIPART = "multipart.not_multipart"
MISSING_TYPE = "multipart.missing_type"
UNQUOTED_TYPE = "multipart.unquoted_type"
MISSING_BOUNDARY = "multipart.missing_boundary"
BAD_BOUNDARY = "multipart.bad_boundary"
NO_OPENING_DELIMITER = "multipart.no_opening_delimiter"
NO_CLOSING_DELIMITER = "multipart.no_closing_delimiter"
PART_WITHOUT_CONTENT_TYPE = "multipart.part_without_content_type"
LF_LINE_ENDINGS = "multipart.lf_line_endings"
PREAMBLE_CONTENT = "multipart.preamble_content"
EPILOGUE_CONTENT = "multipart.epilogue_content"
TYPE_DIFFERS_FROM_ROOT = "multipart.type_differs_from_root"
TOO_MANY_PARTS = "multipart.too_many_parts"
HEADER_TOO_LARGE = "multipart.header_too_large"
MALFORMED_PART_HEADERS = "multipart.malformed_part_headers"
NO_PARTS = "multipart.no_parts"
TRANSPORT_PADDING = "multipart.transport_padding"
BOUNDARY_IN_CONTENT = "multipart.boundary_in_content"

#: Every code this module emits.
DEVIATION_CODES = frozenset({
    NOT_MULTIPART, MISSING_TYPE, UNQUOTED_TYPE, MISSING_BOUNDARY, BAD_BOUNDARY, NO_OPENING_DELIMITER,
    NO_CLOSING_DELIMITER, PART_WITHOUT_CONTENT_TYPE, LF_LINE_ENDINGS, PREAMBLE_CONTENT, EPILOGUE_CONTENT,
    TYPE_DIFFERS_FROM_ROOT, TOO_MANY_PARTS, HEADER_TOO_LARGE, MALFORMED_PART_HEADERS, NO_PARTS,
    TRANSPORT_PADDING, BOUNDARY_IN_CONTENT,
})

# RFC 2046 §5.1.1: bchars := bcharsnospace / " "
_BCHARS_NOSPACE = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?")
_MAX_BOUNDARY = 70
#: Longest run of transport padding (white space) accepted after a delimiter.
_MAX_PADDING = 1000
_SAMPLE = 32
_CR = 0x0D
_LF = 0x0A
_DASH = 0x2D
_PADDING = re.compile(rb"[ \t]*")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext: printable US-ASCII except ':'


def _libc_memmem() -> Callable[[bytes, bytes], int] | None:
    """Return ``find(haystack, needle)`` over ``bytes`` backed by the C library's ``memmem``, or ``None``.

    Finding the delimiter is nearly all the time the decoder spends in a large
    part.  ``bytes.find`` skips ahead only when the byte after its window is
    outside a 64-bit filter of the needle's bytes, and a hex or UUID boundary
    fills a third of that filter: on random content it scans about 10 GB/s,
    glibc's ``memmem`` (2-byte shift table) over twice that.  Where the symbol
    is missing (Windows) or does not pass a self-test, the decoder uses
    ``bytes.find``; both give the same answers (the tests run both).
    """
    try:
        memmem = ctypes.CDLL(None).memmem
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no dlopen(NULL) or no memmem
        return None
    memmem.restype = ctypes.c_void_p
    memmem.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t)
    cast, char_p, void_p = ctypes.cast, ctypes.c_char_p, ctypes.c_void_p

    def find(haystack: bytes, needle: bytes) -> int:
        start = char_p(haystack)  # points into the bytes object's own buffer: nothing is copied
        hit = memmem(start, len(haystack), needle, len(needle))
        if hit is None:
            return -1
        return int(hit) - (cast(start, void_p).value or 0)

    try:
        if (find(b"ab\n--b", b"\n--b"), find(b"ab\n--c", b"\n--b"), find(b"\n--b", b"\n--b")) != (2, -1, 0):
            return None  # pragma: no cover - an unexpected memmem
    except (ctypes.ArgumentError, OSError):  # pragma: no cover
        return None
    return find


#: ``find`` for ``bytes`` chunks in the part-body fast path (``None``: use ``bytes.find``).
_MEMMEM = _libc_memmem()


def boundary_problem(boundary: str) -> str | None:
    """Return why ``boundary`` breaks the RFC 2046 boundary grammar, or ``None`` if it is valid.

    Parameters
    ----------
    boundary : str
        The value of the ``boundary`` parameter, unquoted.

    Returns
    -------
    str or None
        A plain-words reason, or ``None``.

    References
    ----------
    RFC 2046 §5.1.1: ``boundary := 0*69<bchars> bcharsnospace``.
    """
    if not boundary:
        return "the boundary is empty"
    if len(boundary) > _MAX_BOUNDARY:
        return f"the boundary is {len(boundary)} characters long (at most {_MAX_BOUNDARY} allowed)"
    bad = sorted({ch for ch in boundary if ch not in _BCHARS_NOSPACE and ch != " "})
    if bad:
        return f"the boundary holds characters outside RFC 2046 bchars: {''.join(bad)!r}"
    if boundary.endswith(" "):
        return "the boundary ends with a space"
    return None


def _boundary_bytes(boundary: str) -> bytes:
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:
        return boundary.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Part:
    """One body part of a multipart body.

    Attributes
    ----------
    index : int
        0-based position in the body.
    headers : Headers
        The part headers, original spelling and order kept (folded lines unfolded).
    body : Body
        The part content: bytes in memory, or, when larger than the decoder's
        ``spool_threshold``, a spooled file (:meth:`Body.from_file`, a whole file in
        ``spool_dir``) or, when the decoder was given a file-backed ``source``, a
        byte range of that file (``body.path == source.path``).  The caller owns
        spooled files; a range owns nothing and is valid as long as the source file is.

    References
    ----------
    RFC 2046 §5.1.1 (``body-part``); PS3.18 §8.6.1.2.
    """

    index: int
    headers: Headers
    body: Body

    @property
    def content_type(self) -> mt.MediaType | None:
        """Return the parsed Content-Type header, or ``None`` when the part has none."""
        value = self.headers.get("content-type")
        return mt.parse_media_type(value) if value is not None else None

    @property
    def content_location(self) -> str | None:
        """Return the Content-Location header, or ``None``."""
        return self.headers.get("content-location")


@dataclass(frozen=True, slots=True)
class MultipartResult:
    """What a multipart body decoded into.

    Attributes
    ----------
    parts : tuple of Part
        The parts received completely, in order.
    deviations : tuple of Deviation
        Every departure from the standard, in the order met.
    complete : bool
        Whether the close delimiter was seen and no deviation is fatal.
    """

    parts: tuple[Part, ...]
    deviations: tuple[Deviation, ...]
    complete: bool

    @property
    def codes(self) -> tuple[str, ...]:
        """Return the deviation codes, in order."""
        return tuple(d.code for d in self.deviations)


class _State(Enum):
    PREAMBLE = "preamble"
    HEADERS = "headers"
    BODY = "body"
    EPILOGUE = "epilogue"
    STOPPED = "stopped"


class _Kind(Enum):
    NONE = "none"  # no delimiter candidate in the buffer
    PENDING = "pending"  # a candidate that needs more bytes to decide
    OPEN = "open"  # a delimiter line: "--boundary" padding CRLF
    CLOSE = "close"  # a close delimiter: "--boundary--"
    NOT = "not"  # "--boundary" followed by something else: content
    TRUNCATED = "truncated"  # the stream ended inside the candidate: content


class MultipartDecoder:
    """Streaming decoder of one multipart body with a known boundary.

    Feed the body with :meth:`feed` in chunks of any size (a delimiter may be
    split across chunks) and call :meth:`close` once for the result.  The
    decoder keeps only the bytes that may still belong to a delimiter or to the
    current header block; part bodies above ``spool_threshold`` bytes are
    written to ``tempfile.NamedTemporaryFile(delete=False)`` files in
    ``spool_dir`` and returned as :meth:`Body.from_file`; the caller owns (and
    deletes) those files.  Call :meth:`close` even when abandoning a body: it
    deletes the spool file of an unfinished part.

    **Zero-copy decoding of a file.**  When the body being decoded is already a
    file (a spooled request body, a file given to ``validate``), pass it as
    ``source``: a :class:`Body` with a ``path`` (a whole file or a range of one).
    Part bodies above ``spool_threshold`` are then not copied anywhere; they are
    returned as ranges of that file, ``Body.from_file(source.path, offset=start,
    size=length)``, where ``start`` is ``source.offset`` plus the part body's
    position in the fed stream.  Smaller parts are kept in memory as usual, and
    nothing else about the result changes: the same parts, headers, bytes and
    deviations as without ``source``.  The contract is the caller's to keep:

    - the chunks fed are the bytes of ``source.path`` in order, starting at
      ``source.offset`` (``source.size`` is not consulted, so the file may still
      be growing while it is fed);
    - the file holds those bytes unchanged for as long as the parts are used,
      and is not deleted before them (the parts do not own it).

    The decoder cannot tell when fed bytes differ from the file's (it never
    reads the file); the part bodies then hold the file's bytes, not the ones
    fed.  :func:`decode_multipart` keeps the contract by construction.  An
    in-memory ``source`` changes nothing.

    The decoder never raises on its input.  Under ``Strictness.STRICT`` it stops
    at the first deviation that breaks the grammar (a bare-LF line ending, a
    malformed header line, an invalid boundary) and records it as fatal; under
    ``LENIENT`` it reads on where the input is unambiguous and records each
    kind of deviation.  Limits (``max_parts``, ``max_header_bytes``) stop the
    decoder with a fatal deviation under both policies.

    A body that ends before its close delimiter keeps the parts received
    completely; the part being received when it ended is **dropped** (its
    spool file deleted) and the ``multipart.no_closing_delimiter`` deviation
    says how many bytes of it arrived.  A part cut short by a fatal deviation
    is dropped the same way.

    Parameters
    ----------
    boundary : str
        The ``boundary`` parameter of the Content-Type, unquoted.
    policy : Strictness
        ``STRICT`` or ``LENIENT``.
    spool_threshold : int
        Part bodies larger than this many bytes go to a temporary file.
    spool_dir : str or None
        Directory for spooled parts (the system temporary directory by default).
    max_parts : int
        More parts than this stops decoding (``multipart.too_many_parts``).
    max_header_bytes : int
        A part header block larger than this stops decoding (``multipart.header_too_large``).
    source : Body or None
        The file the fed bytes come from (see above); large parts become ranges of it
        instead of spool files.

    Notes
    -----
    Locations are ``"preamble"``, ``"epilogue"``, ``"part N headers"`` or
    ``"byte N"``; part numbers in locations are 1-based, byte offsets 0-based
    from the start of the body.  Spooling raises ``OSError`` only when the
    spool directory cannot be written; that is a toolkit problem, not a defect
    of the input.

    References
    ----------
    RFC 2046 §5.1.1 (delimiters, preamble, epilogue, transport padding);
    RFC 2387 (``multipart/related``); PS3.18 §8.6.1.2 (multipart payload).
    """

    def __init__(
        self,
        boundary: str,
        *,
        policy: Strictness = Strictness.LENIENT,
        spool_threshold: int = 1 << 20,
        spool_dir: str | None = None,
        max_parts: int = 10_000,
        max_header_bytes: int = 16_384,
        source: Body | None = None,
    ) -> None:
        self._strict = policy is Strictness.STRICT
        # zero-copy mode: large parts become ranges of this file (stream offset 0 = file offset _source_offset)
        self._source_path = source.path if source is not None else None
        self._source_offset = source.offset if source is not None else 0
        self._spool_threshold = spool_threshold
        self._spool_dir = spool_dir
        self._max_parts = max_parts
        self._max_header_bytes = max_header_bytes
        self._lf_dash = b"\n--" + _boundary_bytes(boundary)
        # The stream is read as if preceded by a virtual CRLF, so that a delimiter at
        # byte 0 is found by the same search as every other one.
        self._buf = bytearray(b"\r\n")
        self._offset = -2  # stream offset of self._buf[0]
        self._dscan = 0  # where the next delimiter search starts in self._buf
        self._hscan = 0  # where the next blank-line search starts (headers)
        self._skip = 0  # bytes at the start of self._buf that are not part body (BODY)
        self._state = _State.PREAMBLE
        self._received = 0
        self._head = b""  # the first bytes of the stream, for preamble samples
        self._parts: list[Part] = []
        self._devs: list[Deviation] = []
        self._once: set[str] = set()
        self._closed_delimiter = False
        self._result: MultipartResult | None = None
        # the part being received
        self._part_start = 0
        self._part_headers = Headers()
        self._mem = bytearray()
        self._file: IO[bytes] | None = None
        self._file_path: str | None = None
        self._ranged = False  # the part is larger than spool_threshold and will be a range of the source
        self._body_start = 0  # stream offset of the part body's first byte
        self._size = 0
        # after the close delimiter
        self._epi_head = bytearray()
        self._epi_total = 0

        problem = boundary_problem(boundary)
        if problem is not None:
            unusable = not boundary or "\r" in boundary or "\n" in boundary
            self._record(BAD_BOUNDARY, f"{problem}: {boundary!r}", "content-type",
                         fatal=unusable or self._strict)
            if unusable or self._strict:
                self._stop()

    # -- public API ---------------------------------------------------------------------------------

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Decode the next chunk of the body (any size, including empty).

        Raises
        ------
        UsageError
            When called after :meth:`close`; never for anything in ``chunk``.
        """
        if self._result is not None:
            raise UsageError("feed() after close(): use a new MultipartDecoder for another body")
        n = len(chunk)
        if self._received < _SAMPLE:
            self._head += bytes(chunk[: _SAMPLE - self._received])
        self._received += n
        if n == 0 or self._state is _State.STOPPED:
            return
        if self._state is _State.EPILOGUE:
            self._epilogue_bytes(chunk)
            return
        if self._state is _State.BODY and self._pass_through(chunk):
            return
        self._buf += chunk
        self._run(final=False)

    def close(self) -> MultipartResult:
        """Finish decoding and return the result (idempotent)."""
        if self._result is not None:
            return self._result
        if self._state not in (_State.STOPPED, _State.EPILOGUE):
            self._run(final=True)
        state = self._state
        if state is _State.PREAMBLE:
            self._record(NO_OPENING_DELIMITER,
                         f"no delimiter line '--{self._boundary_text}' in {self._received} bytes",
                         "preamble", fatal=True)
        elif state in (_State.HEADERS, _State.BODY):
            got = self._received - self._part_start
            self._record(NO_CLOSING_DELIMITER,
                         f"the body ended before the close delimiter, inside part {len(self._parts) + 1}; "
                         f"that part ({got} bytes received) is dropped",
                         f"byte {self._received}", fatal=True)
            self._discard_part()
        elif state is _State.EPILOGUE:
            self._finish_epilogue()
        if not self._parts and not any(d.fatal for d in self._devs):
            self._record(NO_PARTS, "the multipart body holds no part", "byte 0", fatal=True)
        self._state = _State.STOPPED
        self._buf = bytearray()
        fatal = any(d.fatal for d in self._devs)
        self._result = MultipartResult(tuple(self._parts), tuple(self._devs),
                                       self._closed_delimiter and not fatal)
        return self._result

    # -- bookkeeping --------------------------------------------------------------------------------

    @property
    def _boundary_text(self) -> str:
        return self._lf_dash[3:].decode("latin-1")

    def _record(self, code: str, message: str, location: str, *, fatal: bool = False) -> None:
        self._devs.append(Deviation(code, message, location, fatal))

    def _record_once(self, code: str, message: str, location: str) -> None:
        if code not in self._once:
            self._once.add(code)
            self._record(code, message, location)

    def _stop(self) -> None:
        self._discard_part()
        self._state = _State.STOPPED
        self._buf = bytearray()

    def _lf_line(self, where: int, what: str) -> bool:
        """Record a bare-LF line ending at stream offset ``where``; return whether to stop."""
        message = f"{what} ends in a bare LF instead of CRLF"
        if self._strict:
            self._record(LF_LINE_ENDINGS, message, f"byte {where}", fatal=True)
            self._stop()
            return True
        self._record_once(LF_LINE_ENDINGS, message + " (first occurrence; LF accepted)", f"byte {where}")
        return False

    # -- the state machine --------------------------------------------------------------------------

    def _pass_through(self, chunk: bytes | bytearray | memoryview) -> bool:
        """Write a chunk without a delimiter candidate straight to the part, without buffering it.

        The fast path of a large part: equivalent to buffering the chunk and
        emitting all but the last ``len(delimiter)`` bytes, minus one copy.
        """
        lf_dash = self._lf_dash
        keep = len(lf_dash)
        buf = self._buf
        n = len(chunk)
        if self._skip or len(buf) > keep or n <= keep or isinstance(chunk, memoryview):
            return False
        # one search over the chunk; a delimiter may also begin in the kept tail and end in the chunk
        memmem = _MEMMEM
        hit = memmem(chunk, lf_dash) if memmem is not None and type(chunk) is bytes else chunk.find(lf_dash)
        if hit >= 0 or (buf + chunk[:keep]).find(lf_dash, self._dscan) >= 0:
            return False
        head = len(buf)
        if self._ranged:  # a range of the source: only the length matters
            self._size += head + n - keep
        else:
            if head:
                with memoryview(bytes(buf)) as view:
                    self._write(view)
            with memoryview(chunk) as view, view[: n - keep] as piece:
                self._write(piece)
        self._buf = bytearray(chunk[n - keep:])
        self._offset += head + n - keep
        self._dscan = 1
        return True

    def _run(self, *, final: bool) -> None:
        while True:
            state = self._state
            if state is _State.PREAMBLE:
                progressed = self._in_preamble(final)
            elif state is _State.HEADERS:
                progressed = self._in_headers(final)
            elif state is _State.BODY:
                progressed = self._in_body(final)
            else:
                return
            if not progressed:
                return

    def _classify(self, p: int, final: bool) -> tuple[_Kind, int]:
        """Classify what follows ``--boundary`` at ``self._buf[p:]``; return (kind, end of line)."""
        buf = self._buf
        size = len(buf)
        if p + 2 <= size and buf[p] == _DASH and buf[p + 1] == _DASH:
            return _Kind.CLOSE, p + 2
        if p >= size or (p + 1 == size and buf[p] == _DASH):
            return (_Kind.TRUNCATED if final else _Kind.PENDING), 0
        match = _PADDING.match(buf, p, min(size, p + _MAX_PADDING + 1))
        q = match.end() if match else p
        if q - p > _MAX_PADDING:
            return _Kind.NOT, 0
        if q >= size:
            return (_Kind.TRUNCATED if final else _Kind.PENDING), 0
        byte = buf[q]
        if byte == _LF:
            return _Kind.OPEN, q + 1
        if byte == _CR:
            if q + 1 >= size:
                return (_Kind.TRUNCATED if final else _Kind.PENDING), 0
            if buf[q + 1] == _LF:
                return _Kind.OPEN, q + 2
        return _Kind.NOT, 0

    def _next_delimiter(self, final: bool, *, in_body: bool) -> tuple[_Kind, int, int]:
        """Find the first delimiter candidate from ``self._dscan``; return (kind, LF index, line end)."""
        buf = self._buf
        lf_dash = self._lf_dash
        start = self._dscan
        while True:
            c = buf.find(lf_dash, start)
            if c < 0:
                self._dscan = max(start, len(buf) - len(lf_dash) + 1)
                return _Kind.NONE, -1, -1
            kind, end = self._classify(c + len(lf_dash), final)
            if kind is _Kind.NOT or kind is _Kind.TRUNCATED:
                if in_body and kind is _Kind.NOT:
                    self._record_once(
                        BOUNDARY_IN_CONTENT,
                        f"a line in part {len(self._parts) + 1} starts with '--{self._boundary_text}' "
                        "but is not a delimiter line; read as content",
                        f"byte {self._offset + c + 1}")
                start = c + 1
                continue
            self._dscan = c
            return kind, c, end

    def _delimiter_line(self, kind: _Kind, c: int, end: int) -> tuple[int, bool]:
        """Return (index where the delimiter starts, whether to stop) for a candidate at LF index ``c``.

        Records bare-LF line endings and transport padding of an open delimiter line.
        """
        buf = self._buf
        start = c - 1 if c > 0 and buf[c - 1] == _CR else c
        if start == c and self._lf_line(self._offset + c, "the line before a delimiter"):
            return start, True
        if kind is _Kind.OPEN:
            p = c + len(self._lf_dash)
            crlf = end - 2 >= p and buf[end - 2] == _CR
            if not crlf and self._lf_line(self._offset + end - 1, "a delimiter line"):
                return start, True
            pad_end = end - (2 if crlf else 1)
            if pad_end > p:
                self._record_once(TRANSPORT_PADDING,
                                  f"{pad_end - p} bytes of white space after a delimiter "
                                  "(transport padding, allowed by RFC 2046)",
                                  f"byte {self._offset + p}")
        return start, False

    def _consume(self, upto: int) -> None:
        """Drop ``self._buf[:upto]``."""
        if upto > 0:
            del self._buf[:upto]
            self._offset += upto
            self._dscan = max(0, self._dscan - upto)
            self._hscan = max(0, self._hscan - upto)
            self._skip = max(0, self._skip - upto)

    def _after_delimiter(self, kind: _Kind, c: int, end: int) -> bool:
        """Enter the state that follows an open or close delimiter ending at ``end``."""
        if kind is _Kind.CLOSE:
            self._closed_delimiter = True
            self._state = _State.EPILOGUE
            rest = bytes(self._buf[end:])
            self._buf = bytearray()
            self._offset += end
            self._epilogue_bytes(rest)
            return False
        if len(self._parts) >= self._max_parts:
            self._record(TOO_MANY_PARTS, f"more than {self._max_parts} parts; decoding stopped",
                         f"byte {self._offset + c + 1}", fatal=True)
            self._stop()
            return False
        # keep the delimiter line's own line ending: a blank line right after it ends empty headers
        term = 2 if end - 2 >= c + len(self._lf_dash) and self._buf[end - 2] == _CR else 1
        self._consume(end - term)
        self._part_start = self._offset + term
        self._dscan = 0
        self._hscan = 0
        self._state = _State.HEADERS
        return True

    def _in_preamble(self, final: bool) -> bool:
        kind, c, end = self._next_delimiter(final, in_body=False)
        if kind is _Kind.NONE:
            self._consume(len(self._buf) - len(self._lf_dash))
            return False
        if kind is _Kind.PENDING:
            self._consume(c - 1)
            return False
        start, stop = self._delimiter_line(kind, c, end)
        if stop:
            return False
        size = self._offset + start
        if size > 0:
            sample = self._head[: min(size, _SAMPLE)]
            self._record(PREAMBLE_CONTENT, f"{size} bytes before the first delimiter, starting {sample!r}",
                         "preamble")
        return self._after_delimiter(kind, c, end)

    def _in_headers(self, final: bool) -> bool:
        buf = self._buf
        term = 2 if buf[0] == _CR else 1  # the delimiter line's own line ending
        limit = self._max_header_bytes + term
        blank = _BLANK_LINE.search(buf, self._hscan)
        if blank is None:
            self._hscan = max(0, len(buf) - 2)
        kind, c, end = self._next_delimiter(final, in_body=False)
        delim_first = kind in (_Kind.OPEN, _Kind.CLOSE, _Kind.PENDING) and (
            blank is None or c < blank.start())
        where = f"part {len(self._parts) + 1} headers"
        if blank is not None and not delim_first:
            if blank.start() + 1 > limit:
                return self._too_large(where)
            block = bytes(buf[term:blank.start() + 1])
            lf_blank = self._offset + blank.start() + 1 if blank.end() - blank.start() == 2 else -1
            if not self._accept_headers(block, self._offset + term, where, blank_line=True,
                                        lf_blank=lf_blank):
                return False
            self._consume(blank.start() + 1)  # the body buffer starts with the blank line's ending
            self._skip = blank.end() - blank.start() - 1
            self._body_start = self._offset + self._skip
            self._dscan = 0
            self._state = _State.BODY
            return True
        if kind is _Kind.PENDING or kind is _Kind.NONE:
            # the earliest place where the blank line or a delimiter may still start
            edge = c - 1 if kind is _Kind.PENDING else len(buf) - len(self._lf_dash)
            if edge > limit:
                return self._too_large(where)
            return False
        # a delimiter before the blank line that ends the headers
        start, stop = self._delimiter_line(kind, c, end)
        if stop:
            return False
        if start > limit:
            return self._too_large(where)
        block = bytes(buf[term:max(term, start)])
        if not self._accept_headers(block, self._offset + term, where, blank_line=False):
            return False
        self._finish_part()
        return self._after_delimiter(kind, c, end)

    def _too_large(self, where: str) -> bool:
        self._record(HEADER_TOO_LARGE, f"the header block is longer than {self._max_header_bytes} bytes",
                     where, fatal=True)
        self._stop()
        return False

    def _in_body(self, final: bool) -> bool:
        kind, c, end = self._next_delimiter(final, in_body=True)
        if kind is _Kind.NONE:
            self._emit(len(self._buf) - len(self._lf_dash))
            return False
        if kind is _Kind.PENDING:
            self._emit(c - 1)
            return False
        start, stop = self._delimiter_line(kind, c, end)
        if stop:
            return False
        self._emit(start)  # drops self._buf[:start]
        self._finish_part()
        return self._after_delimiter(kind, c - start, end - start)

    # -- part bodies ------------------------------------------------------------------------------

    def _emit(self, upto: int) -> None:
        """Move part body bytes ``self._buf[self._skip:upto]`` to the sink and drop ``self._buf[:upto]``."""
        skip = self._skip
        if upto > skip:
            with memoryview(self._buf) as view, view[skip:upto] as piece:
                self._write(piece)
        self._consume(upto)

    def _write(self, piece: memoryview) -> None:
        size = len(piece)
        if self._ranged:
            self._size += size
            return
        if self._file is None and len(self._mem) + size > self._spool_threshold:
            if self._source_path is not None:  # the bytes are in the source file already
                self._ranged = True
                self._mem = bytearray()
                self._size += size
                return
            spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in _finish_part/_discard_part
                mode="wb", prefix="wic-part-", suffix=".bin", dir=self._spool_dir, delete=False)
            self._file = spool  # the wrapper, not spool.file: the wrapper closes the file when collected
            self._file_path = spool.name
            _log.debug("part %d spooled to %s", len(self._parts) + 1, spool.name)
            if self._mem:
                self._file.write(self._mem)
                self._mem = bytearray()
        if self._file is not None:
            self._file.write(piece)
        else:
            self._mem += piece
        self._size += size

    def _accept_headers(
        self, block: bytes, at: int, where: str, *, blank_line: bool, lf_blank: int = -1
    ) -> bool:
        """Parse a header block; record its deviations; return whether decoding goes on.

        ``at`` is the stream offset of ``block``; ``lf_blank`` that of a bare-LF blank line (or -1).
        """
        headers, problems, broken, lf_at = _parse_headers(block)
        lf_where = at + lf_at if lf_at >= 0 else lf_blank
        if lf_where >= 0 and self._lf_line(lf_where, f"a header line of part {len(self._parts) + 1}"):
            return False
        if not blank_line:
            problems.insert(0, "no blank line ends the headers before the next delimiter")
            broken = True
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            fatal = broken and self._strict
            self._record(MALFORMED_PART_HEADERS, problems[0] + more, where, fatal=fatal)
            if fatal:
                self._stop()
                return False
        if headers.get("content-type") is None:
            self._record(PART_WITHOUT_CONTENT_TYPE, f"part {len(self._parts) + 1} has no Content-Type header",
                         where)
        self._part_headers = headers
        return True

    def _finish_part(self) -> None:
        if self._ranged and self._source_path is not None:
            # = Body.from_file(source.path, offset=..., size=...), without a stat: the file may still be growing
            body = Body(path=self._source_path, size=self._size, offset=self._source_offset + self._body_start)
        elif self._file is not None:
            self._file.close()
            body = Body.from_file(self._file_path or "")
        else:
            body = Body.of(bytes(self._mem))
        self._parts.append(Part(len(self._parts), self._part_headers, body))
        self._reset_part()

    def _discard_part(self) -> None:
        if self._file is not None:
            self._file.close()
            try:
                os.unlink(self._file_path or "")
            except OSError:  # pragma: no cover - already gone
                _log.debug("could not delete %s", self._file_path)
        self._reset_part()

    def _reset_part(self) -> None:
        self._file = None
        self._file_path = None
        self._ranged = False
        self._mem = bytearray()
        self._size = 0
        self._part_headers = Headers()

    # -- after the close delimiter ---------------------------------------------------------------------

    def _epilogue_bytes(self, chunk: bytes | bytearray | memoryview) -> None:
        room = _MAX_PADDING + 2 - len(self._epi_head)
        if room > 0:
            self._epi_head += chunk[:room]
        self._epi_total += len(chunk)

    def _finish_epilogue(self) -> None:
        head = bytes(self._epi_head)
        match = _PADDING.match(head)
        pad = match.end() if match else 0
        if pad:
            self._record_once(TRANSPORT_PADDING,
                              f"{pad} bytes of white space after the close delimiter "
                              "(transport padding, allowed by RFC 2046)", "epilogue")
        if head[pad:pad + 2] == b"\r\n":
            rest = pad + 2
        elif head[pad:pad + 1] == b"\n":
            rest = pad + 1
            if self._lf_line(self._offset + pad, "the close delimiter line"):
                return
        else:
            rest = pad
        size = self._epi_total - rest
        if size > 0:
            sample = head[rest:rest + _SAMPLE]
            self._record(EPILOGUE_CONTENT,
                         f"{size} bytes after the close delimiter line, starting {sample!r}", "epilogue")


def _parse_headers(block: bytes) -> tuple[Headers, list[str], bool, int]:
    """Parse the header lines of one part.

    Returns
    -------
    tuple
        (headers, problems in plain words, whether a problem breaks the grammar,
        offset of the first bare LF in ``block`` or -1).
    """
    problems: list[str] = []
    broken = False
    lf_at = -1
    pairs: list[list[str]] = []
    pos = 0
    size = len(block)
    while pos < size:
        nl = block.find(b"\n", pos)
        if nl < 0:
            line, pos = block[pos:], size  # no line ending (only before a delimiter: already reported)
        else:
            line = block[pos:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            elif lf_at < 0:
                lf_at = nl
            pos = nl + 1
        if b"\r" in line:
            problems.append(f"bare CR in header line {line[:_SAMPLE]!r}")
            broken = True
            continue
        if not line.isascii():
            problems.append(f"non-ASCII bytes in header line {line[:_SAMPLE]!r}")
            broken = True
        text = line.decode("latin-1")
        if line[:1] in (b" ", b"\t"):
            if not pairs:
                problems.append(f"continuation line without a header before it: {line[:_SAMPLE]!r}")
                broken = True
                continue
            problems.append(f"folded header {pairs[-1][0]!r} (unfolded)")
            pairs[-1][1] += text
            continue
        colon = line.find(b":")
        if colon < 0:
            problems.append(f"header line without ':' skipped: {line[:_SAMPLE]!r}")
            broken = True
            continue
        name = line[:colon]
        if _FIELD_NAME.fullmatch(name) is None:
            stripped = name.rstrip(b" \t")
            if _FIELD_NAME.fullmatch(stripped) is None:
                problems.append(f"invalid header name skipped: {name[:_SAMPLE]!r}")
                broken = True
                continue
            problems.append(f"white space before ':' in header {stripped.decode('latin-1')!r}")
            broken = True
            name = stripped
        pairs.append([name.decode("latin-1"), text[colon + 1:]])
    return Headers(tuple((n, v.strip(" \t")) for n, v in pairs)), problems, broken, lf_at


# -- the Content-Type -----------------------------------------------------------------------------------


def _content_type_deviations(ctype: mt.MediaType, policy: Strictness) -> tuple[list[Deviation], bool]:
    """Check the Content-Type of a multipart body; return (deviations, whether the body can be decoded)."""
    devs: list[Deviation] = []
    strict = policy is Strictness.STRICT
    if not ctype.is_(mt.MULTIPART_RELATED):
        is_multipart = ctype.type == "multipart"
        fatal = strict or not is_multipart
        devs.append(Deviation(NOT_MULTIPART,
                              f"the Content-Type is {ctype.essence!r}, not {mt.MULTIPART_RELATED}",
                              "content-type", fatal))
        if fatal:
            return devs, False  # the multipart parameters mean nothing here
    root = ctype.param("type")
    if root is None:
        devs.append(Deviation(MISSING_TYPE, "the Content-Type has no 'type' parameter", "content-type"))
    elif "type" not in ctype.quoted:
        devs.append(Deviation(UNQUOTED_TYPE, f"the 'type' parameter {root!r} is not a quoted-string",
                              "content-type"))
    if not ctype.boundary:
        what = "an empty" if ctype.boundary == "" else "no"
        devs.append(Deviation(MISSING_BOUNDARY, f"the Content-Type has {what} 'boundary' parameter",
                              "content-type", True))
        return devs, False
    return devs, True


def decode_multipart(
    body: Body | bytes,
    content_type: mt.MediaType | str,
    *,
    policy: Strictness = Strictness.LENIENT,
    spool_threshold: int = 1 << 20,
    spool_dir: str | None = None,
    max_parts: int = 10_000,
    max_header_bytes: int = 16_384,
) -> MultipartResult:
    """Decode a ``multipart/related`` body, checking its Content-Type too.

    The Content-Type deviations come first in the result (not multipart/related,
    ``type`` missing or unquoted, ``boundary`` missing or invalid), then the
    body's, then ``multipart.type_differs_from_root`` when the ``type``
    parameter's essence differs from the first (root) part's Content-Type.
    A body that cannot be decoded (no boundary, not a multipart type) yields
    no parts.  Never raises on bad input.

    Parameters
    ----------
    body : Body or bytes
        The message body; a file-backed :class:`Body` is read in 1 MiB chunks.
    content_type : MediaType or str
        The Content-Type header value, raw or parsed.
    policy : Strictness
        ``STRICT`` stops at the first grammar-breaking deviation; ``LENIENT`` reads on.
    spool_threshold, spool_dir, max_parts, max_header_bytes
        Passed to :class:`MultipartDecoder`.  A file-backed ``body`` is also passed as its
        ``source``: parts above ``spool_threshold`` are then ranges of ``body.path``, not
        spool files, and are valid as long as that file is.

    Returns
    -------
    MultipartResult
        The parts, the deviations and whether the body decoded completely.

    References
    ----------
    RFC 2046 §5.1.1; RFC 2387 §3.1 (the ``type`` parameter); PS3.18 §8.6.1.2.
    """
    ctype = mt.parse_media_type(content_type) if isinstance(content_type, str) else content_type
    devs, decodable = _content_type_deviations(ctype, policy)
    if not decodable:
        return MultipartResult((), tuple(devs), False)
    whole = Body.of(body)
    decoder = MultipartDecoder(ctype.boundary or "", policy=policy, spool_threshold=spool_threshold,
                               spool_dir=spool_dir, max_parts=max_parts, max_header_bytes=max_header_bytes,
                               source=whole if whole.path is not None else None)
    for chunk in whole.chunks():
        decoder.feed(chunk)
    result = decoder.close()
    devs.extend(result.deviations)
    root = ctype.root_type
    first = result.parts[0].content_type if result.parts else None
    if root is not None and first is not None and root.essence != first.essence:
        devs.append(Deviation(TYPE_DIFFERS_FROM_ROOT,
                              f"the 'type' parameter is {root.essence!r} "
                              f"but the first part is {first.essence!r}",
                              "part 1 headers"))
    fatal = any(d.fatal for d in devs)
    return MultipartResult(result.parts, tuple(devs), result.complete and not fatal)


# -- encoding -------------------------------------------------------------------------------------------

_EncodePart = tuple[Mapping[str, str] | Headers, bytes | Body]


def _header_lines(headers: Mapping[str, str] | Headers) -> bytes:
    pairs: Iterable[tuple[str, str]] = headers.items if isinstance(headers, Headers) else headers.items()
    out = bytearray()
    for name, value in pairs:
        raw_name = name.encode("latin-1")
        if _FIELD_NAME.fullmatch(raw_name) is None:
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} holds a line break")
        out += raw_name + b": " + value.encode("latin-1") + b"\r\n"
    return bytes(out)


def iter_encode_multipart(
    parts: Sequence[_EncodePart],
    *,
    root_type: str,
    boundary: str | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[str, Iterator[bytes]]:
    """Encode parts as a ``multipart/related`` body, streaming file-backed part bodies in chunks.

    Parameters
    ----------
    parts : sequence of (headers, body)
        Each part's headers (a mapping or :class:`Headers`, written in order) and
        body (bytes or :class:`Body`; file-backed bodies are read in 1 MiB chunks).
    root_type : str
        The ``type`` parameter: the media type of the first (root) part.
    boundary : str or None
        The boundary; a random one (128 bits from :mod:`secrets`) by default.
    params : mapping or None
        Further Content-Type parameters (e.g. ``start``); not ``type`` or ``boundary``.

    Returns
    -------
    tuple of (str, iterator of bytes)
        The Content-Type header value and the body, CRLF line endings throughout.

    Raises
    ------
    ValueError
        For no parts, an invalid boundary, a line of an in-memory part that
        begins with ``--boundary``, a header with a line break, or
        ``type``/``boundary`` in ``params``.  Such a line in a file-backed part
        raises while iterating.

    References
    ----------
    RFC 2046 §5.1.1; RFC 2387 §3; PS3.18 §8.6.1.2.
    """
    if not parts:
        raise ValueError("a multipart body needs at least one part")
    extra = dict(params or {})
    clash = {"type", "boundary"} & {k.lower() for k in extra}
    if clash:
        raise ValueError(f"params may not set {sorted(clash)}; use root_type / boundary")
    for name, value in [("type", root_type), *extra.items()]:
        if "\r" in value or "\n" in value:
            raise ValueError(f"Content-Type parameter {name!r} holds a line break")
    prepared = [(_header_lines(h), Body.of(b)) for h, b in parts]
    if boundary is None:
        boundary = secrets.token_hex(16)
        while any(_holds(b, ("--" + boundary).encode()) for _, b in prepared if b.in_memory):
            boundary = secrets.token_hex(16)  # pragma: no cover - 2**-128
    else:
        problem = boundary_problem(boundary)
        if problem is not None:
            raise ValueError(f"invalid boundary {boundary!r}: {problem}")
        for index, (_, b) in enumerate(prepared):
            if b.in_memory and _holds(b, ("--" + boundary).encode()):
                raise ValueError(f"the boundary {boundary!r} begins a line in part {index + 1}")
    content_type = mt.format_media_type(mt.MULTIPART_RELATED,
                                        {"type": root_type, "boundary": boundary, **extra})
    return content_type, _encoded(prepared, boundary.encode("ascii"))


def _holds(body: Body, dash: bytes) -> bool:
    """Return whether ``dash`` begins a line of the in-memory ``body`` (where it would end the part)."""
    return b"\n" + dash in b"\n" + (body.data or b"")


def _encoded(prepared: list[tuple[bytes, Body]], boundary: bytes) -> Iterator[bytes]:
    dash = b"--" + boundary
    for index, (head, body) in enumerate(prepared):
        yield (b"\r\n" if index else b"") + dash + b"\r\n" + head + b"\r\n"
        if body.in_memory:
            yield body.data or b""
            continue
        lf_dash = b"\n" + dash
        tail = b"\n"  # the part starts a line
        keep = len(lf_dash) - 1
        for chunk in body.chunks():
            if lf_dash in chunk or lf_dash in tail + chunk[:keep]:
                raise ValueError(f"the boundary {boundary.decode()!r} begins a line in part {index + 1}")
            tail = (tail + chunk[-keep:])[-keep:]
            yield chunk
    yield b"\r\n" + dash + b"--\r\n"


def encode_multipart(
    parts: Sequence[_EncodePart],
    *,
    root_type: str,
    boundary: str | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[str, bytes]:
    """Encode parts as a ``multipart/related`` body in memory.

    Same parameters as :func:`iter_encode_multipart`.

    Returns
    -------
    tuple of (str, bytes)
        The Content-Type header value and the body.

    References
    ----------
    RFC 2046 §5.1.1; RFC 2387 §3; PS3.18 §8.6.1.2.
    """
    content_type, chunks = iter_encode_multipart(parts, root_type=root_type, boundary=boundary, params=params)
    return content_type, b"".join(chunks)
