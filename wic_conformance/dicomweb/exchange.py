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
from enum import Enum
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "Body",
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


@dataclass(frozen=True, slots=True)
class Body:
    """A message body held in memory or in a (spooled) file.

    Use :meth:`chunks` or :meth:`open` for large bodies; :meth:`read` loads the whole body.
    """

    data: bytes | None = None
    path: Path | None = None
    size: int = 0

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview | Body | None) -> Body:
        """Wrap bytes (or pass a :class:`Body` through)."""
        if isinstance(data, Body):
            return data
        raw = bytes(data or b"")
        return cls(data=raw, size=len(raw))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Body:
        """Refer to a file on disk without reading it."""
        p = Path(path)
        return cls(path=p, size=p.stat().st_size)

    @property
    def in_memory(self) -> bool:
        """Whether the bytes are held in memory."""
        return self.path is None

    def open(self) -> BinaryIO:
        """Open the body for binary reading."""
        if self.path is not None:
            return open(self.path, "rb")  # noqa: SIM115 - returned to the caller
        return io.BytesIO(self.data or b"")

    def read(self) -> bytes:
        """Return the whole body as bytes."""
        if self.path is None:
            return self.data or b""
        return self.path.read_bytes()

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        """Yield the body in chunks of at most ``size`` bytes."""
        if self.path is None:
            data = self.data or b""
            for start in range(0, len(data), size):
                yield data[start:start + size]
            return
        with open(self.path, "rb") as handle:
            while chunk := handle.read(size):
                yield chunk

    def head(self, size: int) -> bytes:
        """Return the first ``size`` bytes."""
        if self.path is None:
            return (self.data or b"")[:size]
        with open(self.path, "rb") as handle:
            return handle.read(size)

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


class DocumentRole(str, Enum):
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
