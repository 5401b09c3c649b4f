"""Judge files offline: Part-10, DICOM JSON, DICOM XML, ``.http`` messages, HAR recordings, bare multipart bodies.

Each file becomes one or more :class:`~wic_conformance.dicomweb.exchange.Exchange`
values and is judged by the same check registry as live traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request
from wic_conformance.dicomweb.har import iter_har_exchanges
from wic_conformance.dicomweb.http_message import parse_http_message
from wic_conformance.errors import UsageError
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Registry

__all__ = ["FileKind", "FileVerdict", "detect_kind", "exchanges_for", "judge_file"]


class FileKind(StrEnum):
    """What kind of artefact a file holds."""

    PART10 = "part10"
    JSON = "json"
    XML = "xml"
    HTTP = "http"
    HAR = "har"
    MULTIPART = "multipart"


@dataclass(frozen=True, slots=True)
class FileVerdict:
    """The check results for every exchange made from one file."""

    path: str
    kind: FileKind
    results: tuple[tuple[Exchange, tuple[CheckResult, ...]], ...]


def detect_kind(path: Path, *, content_type: str | None = None) -> FileKind:
    """Guess a file's kind from its name and first bytes.

    Raises
    ------
    UsageError
        The file cannot be read or its kind cannot be told.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if content_type is not None:
        return FileKind.MULTIPART
    suffix = path.suffix.lower()
    if suffix == ".har":
        return FileKind.HAR
    if suffix == ".http":
        return FileKind.HTTP
    if len(head) >= 132 and head[128:132] == b"DICM":
        return FileKind.PART10
    if suffix in (".dcm", ".dicom"):
        return FileKind.PART10
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"HTTP/") or text.split(b" ", 1)[0] in (b"POST", b"GET", b"PUT"):
        return FileKind.HTTP
    if text[:1] in (b"{", b"["):
        if b'"log"' in head and b'"entries"' in head:
            return FileKind.HAR
        return FileKind.JSON
    if text[:1] == b"<":
        return FileKind.XML
    if suffix == ".json":
        return FileKind.JSON
    if suffix == ".xml":
        return FileKind.XML
    raise UsageError(f"cannot tell what kind of file {path} is; give --kind")


def exchanges_for(path: Path, kind: FileKind, *, content_type: str | None = None) -> list[Exchange]:
    """Turn a file into the exchanges the checks judge.

    Raises
    ------
    UsageError
        The file cannot be read as the given kind.
    """
    where = str(path)
    try:
        if kind is FileKind.HAR:
            found = list(iter_har_exchanges(path))
            if not found:
                raise UsageError(f"{path}: no STOW-RS exchange (POST .../studies) in the HAR file")
            return found
        body = Body.from_file(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if kind is FileKind.PART10:
        return [Exchange(documents=(Document(mt.APPLICATION_DICOM, body, DocumentRole.FILE, where),), source=where)]
    if kind is FileKind.JSON:
        return [Exchange(documents=(Document(mt.APPLICATION_DICOM_JSON, body, DocumentRole.FILE, where),),
                         source=where)]
    if kind is FileKind.XML:
        return [Exchange(documents=(Document(mt.APPLICATION_DICOM_XML, body, DocumentRole.FILE, where),),
                         source=where)]
    if kind is FileKind.HTTP:
        message = parse_http_message(body.read())
        return [Exchange(request=message.request, response=message.response, source=where)]
    if kind is FileKind.MULTIPART:
        if not content_type:
            raise UsageError("a bare multipart body needs --content-type")
        request = Request("", "", Headers.of({"Content-Type": content_type}), body)
        return [Exchange(request=request, source=where)]
    raise UsageError(f"unknown kind {kind!r}")


def judge_file(
    path: str | Path,
    *,
    ctx: CheckContext,
    kind: FileKind | None = None,
    content_type: str | None = None,
    registry: Registry = REGISTRY,
    checks: list[str] | None = None,
) -> FileVerdict:
    """Detect, load and judge one file with the registry's checks."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such file: {p}")
    k = kind or detect_kind(p, content_type=content_type)
    results = tuple((ex, tuple(registry.run(ctx, ex, checks))) for ex in exchanges_for(p, k, content_type=content_type))
    return FileVerdict(str(p), k, results)

