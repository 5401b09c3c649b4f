"""Frozen Request / Response / Exchange values: the currency every other layer trades in.

The simulated Image Capturer, the simulated Image Manager, the recording proxy
and ``validate`` all produce :class:`Exchange` objects; the check registry
judges them.  Bodies are raw bytes or a spooled file, never a parsed form:
parsing happens in the checks' context, so the exact bytes on the wire are kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "Body",
    "RangeIO",
    "Document",
    "DocumentRole",
    "Exchange",
    "Headers",
    "Request",
    "Response",
    "new_exchange_id",
]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Headers:
    """An ordered, case-insensitive, multi-valued header list.

    The original spelling and order are kept, because they are evidence.
    """

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, source: Headers | Iterable[tuple[str, str]] | dict[str, str] | None) -> Headers:
        """Build from a mapping, pairs, or another :class:`Headers`."""
        if source is None:
            return cls()
        if isinstance(source, Headers):
            return source
        pairs = source.items() if isinstance(source, dict) else source
        return cls(tuple((str(k), str(v)) for k, v in pairs))

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name`` (case-insensitive), or ``default``."""
        lname = name.lower()
        for key, value in self.items:
            if key.lower() == lname:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order."""
        lname = name.lower()
        return [value for key, value in self.items if key.lower() == lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def redacted(self, names: Iterable[str] = ("authorization", "cookie", "set-cookie",
                                               "proxy-authorization")) -> Headers:
        """Return a copy with secret header values replaced by ``<redacted>``."""
        secret = {n.lower() for n in names}
        return Headers(tuple((k, "<redacted>" if k.lower() in secret else v) for k, v in self.items))


class RangeIO(io.RawIOBase):
    """Base of the readers of a byte range of a file: range-relative positions, seekable and readable.

    Subclasses set ``_size`` and ``_pos`` and implement the reads.
    """

    _size: int
    _pos: int

    def readable(self) -> bool:
        """Return True: a range reader reads."""
        return True

    def seekable(self) -> bool:
        """Return True: a range reader seeks within its range."""
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to a range-relative position (positions past the end read nothing)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence})")
        if base + pos < 0:
            raise ValueError(f"negative seek position {base + pos}")
        self._pos = base + pos
        return self._pos

    def tell(self) -> int:
        """Return the range-relative position."""
        return self._pos


@dataclass(frozen=True, slots=True)
class Body:
    """A message body held in memory, in a (spooled) file, or in a byte range of a file.

    A file-backed body is the ``size`` bytes of ``path`` that start at ``offset``:
    the whole file for :meth:`from_file` without a range, or one part of a
    multipart body that is itself a file (see
    :class:`~wic_conformance.dicomweb.multipart.MultipartDecoder`, ``source``).
    Every reader (:meth:`open`, :meth:`read`, :meth:`chunks`, :meth:`head`,
    :meth:`sha256`) honours the range.  Use :meth:`chunks` or :meth:`open` for
    large bodies; :meth:`read` loads the whole body.

    Attributes
    ----------
    data : bytes or None
        The bytes of an in-memory body.
    path : Path or None
        The file of a file-backed body.  It may hold more than the body: code
        that hands ``path`` to another program must check :attr:`is_whole_file`.
    size : int
        The length of the body in bytes.
    offset : int
        Where a file-backed body starts in ``path`` (0 for in-memory bodies).
    """

    data: bytes | None = None
    path: Path | None = None
    size: int = 0
    offset: int = 0

    def __post_init__(self) -> None:
        if self.size < 0 or self.offset < 0:
            raise ValueError(f"a body range needs a non-negative offset and size, not {self.offset}+{self.size}")
        if self.path is None and self.offset:
            raise ValueError("only a file-backed body has an offset")

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview | Body | None) -> Body:
        """Wrap bytes (or pass a :class:`Body` through)."""
        if isinstance(data, Body):
            return data
        raw = bytes(data or b"")
        return cls(data=raw, size=len(raw))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, offset: int = 0, size: int | None = None) -> Body:
        """Refer to a file on disk, or to ``size`` bytes of it from ``offset``, without reading it.

        Parameters
        ----------
        path : str or os.PathLike
            The file.
        offset : int
            Where the body starts in the file.
        size : int or None
            The length of the body; by default, up to the end of the file.

        Raises
        ------
        ValueError
            A negative offset or size, or a range that ends past the end of the file.
        OSError
            The file cannot be examined (it does not exist, for instance).
        """
        p = Path(path)
        total = p.stat().st_size
        if size is None:
            size = total - offset
        if offset < 0 or size < 0 or offset + size > total:
            raise ValueError(f"the range {offset}+{size} does not lie within {p} ({total} bytes)")
        return cls(path=p, size=size, offset=offset)

    @property
    def in_memory(self) -> bool:
        """Whether the bytes are held in memory."""
        return self.path is None

    @property
    def is_whole_file(self) -> bool:
        """Whether the body is a file from its first to its last byte (so ``path`` can stand for it)."""
        if self.path is None or self.offset:
            return False
        try:
            return self.path.stat().st_size == self.size
        except OSError:
            return False

    class _RangeReader(RangeIO):
        """Unbuffered, seekable reader of ``size`` bytes of a file from ``offset``; positions are range-relative.

        Its ``name`` is ``"<path>[<start>:<end>]"``, which is not a file name: nothing
        that re-opens a reader by name (pydicom sets ``Dataset.filename`` from it) can
        silently read the whole file instead of the range.
        """

        def __init__(self, path: Path, offset: int, size: int) -> None:
            super().__init__()
            self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            self.name = f"{path}[{offset}:{offset + size}]"
            self._start = offset
            self._size = size
            self._pos = 0

        def readinto(self, buffer: WriteableBuffer, /) -> int:
            with memoryview(buffer) as view, view.cast("B") as flat:
                want = min(len(flat), self._size - self._pos)
                if want <= 0:
                    return 0
                self._file.seek(self._start + self._pos)
                got = self._file.readinto(flat[:want]) or 0
            self._pos += got
            return got

        def readall(self) -> bytes:
            want = self._size - self._pos
            if want <= 0:
                return b""
            self._file.seek(self._start + self._pos)
            data = self._file.read(want) or b""
            self._pos += len(data)
            return data

        def close(self) -> None:
            if not self.closed:
                self._file.close()
            super().close()

    def open(self) -> BinaryIO:
        """Open the body for binary reading.

        A range of a file opens as a buffered, seekable reader whose positions
        count from the start of the range and which ends where the range ends
        (``pydicom.dcmread`` reads it like a file); a whole file opens as the file.
        """
        if self.path is None:
            return io.BytesIO(self.data or b"")
        if self.offset == 0:
            handle = open(self.path, "rb")  # noqa: SIM115 - returned to the caller
            try:
                if os.fstat(handle.fileno()).st_size == self.size:
                    return handle
            except BaseException:
                handle.close()
                raise
            handle.close()
        return io.BufferedReader(Body._RangeReader(self.path, self.offset, self.size))

    def read(self) -> bytes:
        """Return the whole body as bytes."""
        if self.path is None:
            return self.data or b""
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.size)

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        """Yield the body in chunks of at most ``size`` bytes."""
        if self.path is None:
            data = self.data or b""
            for start in range(0, len(data), size):
                yield data[start:start + size]
            return
        left = self.size
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self.offset)
            while left > 0 and (chunk := handle.read(min(size, left))):
                left -= len(chunk)
                yield chunk

    def head(self, size: int) -> bytes:
        """Return the first ``size`` bytes."""
        if self.path is None:
            return (self.data or b"")[:size]
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(max(0, min(size, self.size)))

    def sha256(self) -> str:
        """Return the hex SHA-256 of the body."""
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as sent on the wire."""

    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    body: Body = field(default_factory=Body)
    http_version: str = "HTTP/1.1"

    @property
    def content_type(self) -> str | None:
        """Return the raw Content-Type header value, if any."""
        return self.headers.get("content-type")


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response as received on the wire."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: Body = field(default_factory=Body)
    http_version: str = "HTTP/1.1"

    @property
    def content_type(self) -> str | None:
        """Return the raw Content-Type header value, if any."""
        return self.headers.get("content-type")


class DocumentRole(StrEnum):
    """Why a document travels with an exchange."""

    RETRIEVED = "retrieved"  # fetched from the Image Manager afterwards (WADO-RS)
    FILE = "file"  # a standalone file judged offline


@dataclass(frozen=True, slots=True)
class Document:
    """A standalone DICOM artefact: a Part-10 file, DICOM JSON or DICOM XML.

    ``media_type`` is one of the ``dicomweb.media_types`` constants.
    """

    media_type: str
    body: Body
    role: DocumentRole
    location: str = ""


def new_exchange_id() -> str:
    """Return a fresh, unique exchange ID."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One recorded interaction: a request, its response, and what was retrieved afterwards.

    Any of the parts may be absent: ``validate`` judges a lone response, a lone
    request or standalone documents with the same checks.
    """

    request: Request | None = None
    response: Response | None = None
    documents: tuple[Document, ...] = ()
    id: str = field(default_factory=new_exchange_id)
    started: float = 0.0
    elapsed: float = 0.0
    source: str = ""
    truncated: bool = False

    def retrieved(self) -> tuple[Document, ...]:
        """Return the documents retrieved from the Image Manager afterwards."""
        return tuple(d for d in self.documents if d.role is DocumentRole.RETRIEVED)
