"""Read PS3.10 files into pydicom Datasets, recording deviations instead of raising.

Large values are not read when a file is decoded: top-level values longer than
:data:`DEFER_SIZE` bytes (Pixel Data, an encapsulated document, ...) stay on
disk (or in the caller's bytes) and pydicom reads them the first time they are
used.  A body that is a byte range of a larger file (one part of a spooled
multipart request) is read through a reader that re-opens the file for each
deferred read, so a dataset never holds a file open and never mistakes the
range for the whole file.

References
----------
PS3.10 §7.1 (File Meta Information); PS3.18 §8.7.3.5.2.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import VR

from wic_conformance.dicomweb.deviation import Deviation
from wic_conformance.dicomweb.exchange import Body, RangeIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["DEFER_SIZE", "Part10Instance", "is_deferred", "read_part10"]

#: Top-level values longer than this many bytes are read from the body when first used, not when decoded.
DEFER_SIZE = 64 * 1024

#: File-backed bodies up to this size are decoded from one read into memory (faster than a reader per element).
_READ_WHOLE = 256 * 1024

_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Part10Instance:
    """A PS3.10 object: its bytes, the decoded dataset (with ``file_meta``) and deviations.

    ``origin`` says whether it was sent (``"request"``), retrieved (``"retrieved"``) or
    judged as a file (``"file"``).  Large top-level values of ``dataset`` may be
    deferred (see :func:`read_part10`): they are read from ``body`` when first used.
    """

    location: str
    body: Body
    dataset: Dataset | None
    origin: str = "file"
    deviations: tuple[Deviation, ...] = field(default=())

    @property
    def transfer_syntax(self) -> str | None:
        """Return (0002,0010) Transfer Syntax UID, if the file meta has it."""
        if self.dataset is None or not hasattr(self.dataset, "file_meta"):
            return None
        value = self.dataset.file_meta.get("TransferSyntaxUID")
        return str(value) if value else None


class _RangeSource(RangeIO):
    """A seekable reader of ``size`` bytes of a file from ``offset`` that holds no file open between uses.

    While :meth:`held` is in effect (the first decoding), reads go through one open
    descriptor and a read-ahead buffer; afterwards each read opens the file, reads
    with ``os.pread`` and closes it again, which is what pydicom's deferred reads
    need from a buffer that outlives the decoding.  It has no ``name``, so pydicom
    keeps it as the dataset's buffer instead of re-opening a file by name.
    """

    _AHEAD = 64 * 1024

    def __init__(self, path: Path, offset: int, size: int) -> None:
        super().__init__()
        self._path = path
        self._start = offset
        self._size = size
        self._pos = 0
        self._fd: int | None = None
        self._ahead = b""
        self._ahead_at = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> _RangeSource:
        return _RangeSource(self._path, self._start, self._size)

    def __reduce__(self) -> tuple[type[_RangeSource], tuple[Path, int, int]]:
        return _RangeSource, (self._path, self._start, self._size)

    def held(self) -> _Held:
        """Return a context manager that keeps the file open (with read-ahead) while it is in effect."""
        return _Held(self)

    def read(self, size: int | None = -1, /) -> bytes:
        want = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if want <= 0:
            return b""
        if self._fd is None:
            fd = _open(self._path)
            try:
                data = _pread(fd, want, self._start + self._pos)
            finally:
                os.close(fd)
        else:
            data = self._buffered(want)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        with memoryview(buffer) as view, view.cast("B") as flat:
            data = self.read(len(flat))
            flat[:len(data)] = data
        return len(data)

    def _buffered(self, want: int) -> bytes:
        """Read ``want`` bytes through the held descriptor; small reads come from a read-ahead buffer."""
        assert self._fd is not None
        rel = self._pos - self._ahead_at
        if not 0 <= rel < len(self._ahead):
            if want >= self._AHEAD:
                return _pread(self._fd, want, self._start + self._pos)
            self._ahead = _pread(self._fd, min(self._AHEAD, self._size - self._pos), self._start + self._pos)
            self._ahead_at, rel = self._pos, 0
        if rel + want <= len(self._ahead):
            return self._ahead[rel:rel + want]
        first = self._ahead[rel:]
        return first + _pread(self._fd, want - len(first), self._start + self._pos + len(first))

    def close(self) -> None:
        self._release()
        super().close()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._ahead = b""


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def _pread_once(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows; each descriptor has one reader
    return os.read(fd, size)  # pragma: no cover


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Read up to ``size`` bytes at ``offset`` (fewer only at the end of the file), as one bytes object."""
    data = _pread_once(fd, size, offset)
    if len(data) == size or not data:
        return data
    chunks = [data]
    got = len(data)
    while got < size and (more := _pread_once(fd, size - got, offset + got)):
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


class _Held:
    def __init__(self, source: _RangeSource) -> None:
        self._source = source

    def __enter__(self) -> _RangeSource:
        source = self._source
        if source._fd is None:
            source._fd = _open(source._path)
        return source

    def __exit__(self, *exc: object) -> None:
        self._source._release()


def is_deferred(ds: Dataset, tag: int) -> bool:
    """Return whether the value of the top-level element ``tag`` of ``ds`` is not read yet (a deferred read)."""
    elem = ds.get_item(tag, keep_deferred=True)
    return isinstance(elem, RawDataElement) and elem.value is None and elem.length != 0


def read_part10(body: Body | bytes, *, location: str = "", origin: str = "file") -> Part10Instance:
    """Decode a PS3.10 file; missing preamble/``DICM`` or a decode failure becomes a deviation.

    Every element is decoded (so a malformed or truncated file is reported here, not
    inside a later check) except the values of top-level elements longer than
    :data:`DEFER_SIZE` bytes: their extent is checked against the body, and pydicom
    reads them from the body when they are first used.
    """
    b = Body.of(body)
    deviations: list[Deviation] = []
    head = b.head(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        deviations.append(Deviation(
            "part10.no_preamble", "no 128-byte preamble followed by 'DICM' (not a PS3.10 file)", location,
            fatal=True,
        ))
        return Part10Instance(location, b, None, origin, tuple(deviations))
    try:
        ds = _decode(b)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, NotImplementedError) as exc:
        deviations.append(Deviation("part10.unreadable", f"cannot decode the PS3.10 file: {exc}", location,
                                    fatal=True))
        return Part10Instance(location, b, None, origin, tuple(deviations))
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        deviations.append(Deviation("part10.no_transfer_syntax", "File Meta has no (0002,0010)", location))
    return Part10Instance(location, b, ds, origin, tuple(deviations))


def _decode(body: Body) -> Dataset:
    """Decode ``body`` with large values deferred, then every other element (raises on a malformed file)."""
    if body.path is None or body.size <= _READ_WHOLE:
        # The BytesIO stays the dataset's buffer for deferred reads: it is never closed here.
        ds = dcmread(io.BytesIO(body.read()), defer_size=DEFER_SIZE)
    else:
        source = _RangeSource(body.path, body.offset, body.size)
        with source.held():
            ds = dcmread(source, defer_size=DEFER_SIZE)
            _decode_all(ds, body.size)
        return ds
    _decode_all(ds, body.size)
    return ds


def _decode_all(ds: Dataset, size: int) -> None:
    """Convert every element (sequences item by item) except deferred values; a value cut short is an error."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        deferred = isinstance(elem, RawDataElement) and elem.value is None and elem.length != 0
        if isinstance(elem, RawDataElement) and elem.length not in (0, _UNDEFINED_LENGTH):
            have = size - elem.value_tell if deferred else len(elem.value or b"")
            if have < elem.length:
                raise EOFError(f"the value of {elem.tag} is cut short: {elem.length} bytes declared at offset "
                               f"{elem.value_tell}, {max(have, 0)} present")
        if deferred:
            continue
        decoded = ds[tag]
        if decoded.VR == VR.SQ:
            for item in decoded.value:
                for _elem in item.iterall():
                    pass
