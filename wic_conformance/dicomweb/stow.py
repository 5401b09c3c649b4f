"""STOW-RS requests: target URLs and the parsed view of a request that checks and actors share.

References
----------
PS3.18 §10.5 (Store Transaction), §10.5.1.4 (payload), §8.6.1.2 (multipart payload).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Deviation, Strictness
from wic_conformance.dicomweb.exchange import Body, Headers, Request
from wic_conformance.dicomweb.metadata import MetadataDocument, parse_metadata
from wic_conformance.dicomweb.multipart import MultipartResult, Part, decode_multipart
from wic_conformance.dicomweb.part10 import Part10Instance, read_part10

__all__ = [
    "StowKind",
    "build_stow_request",
    "StowRequest",
    "StowTarget",
    "parse_stow_request",
    "parse_stow_target",
    "stow_url",
]

_STUDIES = re.compile(r"/studies(?:/(?P<study>[^/?#]+))?/?$")


class StowKind(StrEnum):
    """What a STOW-RS request carries, from its root media type."""

    PART10 = "part10"  # multipart/related; type="application/dicom"
    JSON = "json"  # type="application/dicom+json": one JSON array part, then bulk data
    XML = "xml"  # type="application/dicom+xml": one XML part per instance, then bulk data
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StowTarget:
    """The target of a STOW-RS request: the service base URL and the optional study UID."""

    base: str
    study_uid: str | None
    query: str = ""

    @property
    def url(self) -> str:
        """Return the target URL again."""
        return stow_url(self.base, self.study_uid)


def stow_url(base: str, study_uid: str | None = None) -> str:
    """Return ``{base}/studies`` or ``{base}/studies/{study_uid}`` (PS3.18 Table 10.5.1-1)."""
    root = base.rstrip("/")
    return f"{root}/studies/{study_uid}" if study_uid else f"{root}/studies"


def parse_stow_target(url: str) -> StowTarget | None:
    """Split a STOW-RS URL into base and study UID; ``None`` when it is not a ``/studies`` URL."""
    parts = urlsplit(url)
    match = _STUDIES.search(parts.path)
    if match is None:
        return None
    base_path = parts.path[: match.start()]
    base = f"{parts.scheme}://{parts.netloc}{base_path}" if parts.scheme else base_path
    study = unquote(match.group("study")) if match.group("study") else None
    return StowTarget(base=base, study_uid=study, query=parts.query)


@dataclass(frozen=True, slots=True)
class StowRequest:
    """A STOW-RS request, decoded as far as it could be.

    Attributes
    ----------
    target : StowTarget or None
        ``None`` when the URL is not a ``/studies`` URL.
    content_type : MediaType or None
        The parsed Content-Type header (``None`` if absent).
    kind : StowKind
        From the ``type`` parameter (or the first part when ``type`` is missing).
    multipart : MultipartResult or None
        The decoded body, when the Content-Type is multipart with a boundary.
    metadata : tuple of MetadataDocument
        The metadata parts (JSON or XML), bulk data resolved against this request's parts only.
    instances : tuple of Part10Instance
        The ``application/dicom`` parts.
    bulk_parts : tuple of Part
        The other parts (bulk data), in order.
    deviations : tuple of Deviation
        Header-level problems (the multipart and metadata deviations stay on their objects).
    """

    target: StowTarget | None
    content_type: mt.MediaType | None
    kind: StowKind
    multipart: MultipartResult | None
    metadata: tuple[MetadataDocument, ...] = ()
    instances: tuple[Part10Instance, ...] = ()
    bulk_parts: tuple[Part, ...] = ()
    deviations: tuple[Deviation, ...] = field(default=())

    @property
    def parts(self) -> tuple[Part, ...]:
        """Return every decoded part (empty when the body did not decode)."""
        return self.multipart.parts if self.multipart else ()

    def part_by_location(self, uri: str) -> list[Part]:
        """Return the parts whose Content-Location equals ``uri`` (exact string comparison)."""
        return [p for p in self.parts if p.content_location == uri]


_KIND_BY_TYPE = {
    mt.APPLICATION_DICOM: StowKind.PART10,
    mt.APPLICATION_DICOM_JSON: StowKind.JSON,
    mt.APPLICATION_JSON: StowKind.JSON,
    mt.APPLICATION_DICOM_XML: StowKind.XML,
}


def parse_stow_request(
    request: Request,
    *,
    policy: Strictness = Strictness.LENIENT,
    spool_dir: str | None = None,
    max_parts: int = 10_000,
    max_header_bytes: int = 16_384,
) -> StowRequest:
    """Decode a STOW-RS request: target, Content-Type, parts, metadata and instances.

    Never raises for bad input.  A BulkDataURI is resolved only against the
    Content-Location of this request's parts; nothing is ever fetched.  The
    keyword limits are passed to the multipart decoder.
    """
    deviations: list[Deviation] = []
    target = parse_stow_target(request.url)
    raw_ct = request.content_type
    if raw_ct is None:
        deviations.append(Deviation("request.no_content_type", "the request has no Content-Type", "headers",
                                    fatal=True))
        return StowRequest(target, None, StowKind.UNKNOWN, None, deviations=tuple(deviations))
    ctype = mt.parse_media_type(raw_ct)
    if not ctype.is_(mt.MULTIPART_RELATED):
        return StowRequest(target, ctype, StowKind.UNKNOWN, None, deviations=tuple(deviations))
    result = decode_multipart(request.body, ctype, policy=policy, spool_dir=spool_dir, max_parts=max_parts,
                              max_header_bytes=max_header_bytes)
    root = ctype.root_type
    first_ct = result.parts[0].content_type if result.parts else None
    kind_source = root if root is not None and root.essence != "/" else first_ct
    kind = _KIND_BY_TYPE.get(kind_source.essence if kind_source else "", StowKind.UNKNOWN)

    def resolve(uri: str) -> bytes | None:
        matches = [p for p in result.parts if p.content_location == uri]
        return matches[0].body.read() if len(matches) == 1 else None

    metadata: list[MetadataDocument] = []
    instances: list[Part10Instance] = []
    bulk: list[Part] = []
    for part in result.parts:
        pct = part.content_type
        where = f"request part {part.index + 1}"
        essence = pct.essence if pct else ""
        if essence in (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON, mt.APPLICATION_DICOM_XML):
            metadata.append(parse_metadata(part.body.read(), essence, location=where, policy=policy,
                                           bulk_resolver=resolve))
        elif essence == mt.APPLICATION_DICOM:
            instances.append(read_part10(part.body, location=where, origin="request"))
        else:
            bulk.append(part)
    return StowRequest(target, ctype, kind, result, tuple(metadata), tuple(instances), tuple(bulk),
                       tuple(deviations))


def build_stow_request(
    *,
    base_url: str,
    root_type: str,
    parts: list[tuple[dict[str, str], bytes]],
    study_uid: str | None = None,
    accept: str | None = mt.APPLICATION_DICOM_JSON,
    boundary: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Request:
    """Build a STOW-RS request byte for byte: ``POST {base}/studies[/{study}]`` with a multipart/related body.

    ``parts`` are (part headers, part body) in order; the root part comes first.

    References
    ----------
    PS3.18 §10.5.1 (request), §8.6.1.2 (multipart payload).
    """
    from wic_conformance.dicomweb.multipart import encode_multipart

    content_type, body = encode_multipart(parts, root_type=root_type, boundary=boundary)
    headers: dict[str, str] = {"Content-Type": content_type, "Content-Length": str(len(body))}
    if accept is not None:
        headers["Accept"] = accept
    headers.update(extra_headers or {})
    return Request("POST", stow_url(base_url, study_uid), Headers.of(headers), Body.of(body))
