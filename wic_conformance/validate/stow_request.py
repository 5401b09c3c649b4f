# ruff: noqa: D401 - a check's first docstring line states the property that must hold, not a command
"""Checks on a captured STOW-RS request: what an Image Capturer under test sent (RAD-108).

Every check judges the recorded request only (request line, headers, the
multipart body and what could be decoded from it).  BulkDataURIs are matched
against the Content-Location of this request's parts and are never fetched.

References
----------
PS3.18 §10.5.1 (Store Transaction request), §8.6.1.2 (multipart payload),
§8.7.3 (DICOM media types), Annex F (DICOM JSON); PS3.19 Annex A; RFC 2046 §5.1.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from urllib.parse import urljoin, urlsplit

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange, Request
from wic_conformance.dicomweb.metadata import BulkRef, MetadataDocument
from wic_conformance.dicomweb.multipart import Part
from wic_conformance.dicomweb.stow import StowRequest
from wic_conformance.errors import ConfigError
from wic_conformance.findings import (
    Finding,
    MalformedMultipart,
    MissingAttribute,
    Severity,
    UnexpectedMediaType,
    UnresolvedBulkData,
    raise_all,
)
from wic_conformance.validate.registry import CheckContext, Needs, check

__all__ = [
    "QUERY_ONLY_ATTRIBUTES",
    "stow_request_bulk_data_uris_resolve",
    "stow_request_bulk_parts_typed",
    "stow_request_charset_single",
    "stow_request_has_accept",
    "stow_request_has_length_or_coding",
    "stow_request_has_no_query",
    "stow_request_is_multipart_related",
    "stow_request_metadata_precedes_bulk",
    "stow_request_method_is_post",
    "stow_request_multipart_well_formed",
    "stow_request_no_implicit_vr",
    "stow_request_no_query_only_attributes",
    "stow_request_parts_match_declared_type",
    "stow_request_root_type_allowed",
    "stow_request_study_uid_matches_target",
    "stow_request_targets_studies",
]

_TAGS = ("capturer",)

#: Root types a WIC Capturer may declare (PS3.18 §8.7.3.5).
_ALLOWED_ROOT_TYPES = (mt.APPLICATION_DICOM, mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML)
_JSON_TYPES = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON)
_METADATA_TYPES = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON, mt.APPLICATION_DICOM_XML)
#: Transfer syntaxes a web exchange must not use (PS3.18 §8.7.3.4).
_FORBIDDEN_TS = {
    str(ImplicitVRLittleEndian): "Implicit VR Little Endian",
    str(ExplicitVRBigEndian): "Explicit VR Big Endian",
}
#: Compressed pixel data media types that hold exactly one frame (PS3.18 §8.7.3.3.2).
_SINGLE_FRAME_TYPES = (mt.IMAGE_JPEG, mt.IMAGE_PNG, mt.IMAGE_JP2)
#: Compressed pixel data media types of PS3.18 Table 10.5.2-1 (plus QuickTime, a WIC option).
_PIXEL_MEDIA_TYPES = (
    mt.IMAGE_JPEG, mt.IMAGE_PNG, mt.IMAGE_GIF, mt.IMAGE_JP2, mt.IMAGE_JPX,
    mt.VIDEO_MP4, mt.VIDEO_MPEG2, mt.VIDEO_MPEG, mt.VIDEO_QUICKTIME,
)
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_FLOAT_PIXEL_DATA = (Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009))
_ENCAPSULATED_DOCUMENT = Tag(0x0042, 0x0011)
_MIME_TYPE_OF_DOCUMENT = Tag(0x0042, 0x0012)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

#: Attributes defined only for query responses, which store metadata should leave out (WIC-CA-016):
#: keyword -> tag as text.
QUERY_ONLY_ATTRIBUTES: dict[str, str] = {
    "RetrieveAETitle": "(0008,0054)",
    "InstanceAvailability": "(0008,0056)",
    "ModalitiesInStudy": "(0008,0061)",
    "SOPClassesInStudy": "(0008,0062)",
    "RetrieveURL": "(0008,1190)",
    "NumberOfPatientRelatedStudies": "(0020,1200)",
    "NumberOfPatientRelatedSeries": "(0020,1202)",
    "NumberOfPatientRelatedInstances": "(0020,1204)",
    "NumberOfStudyRelatedSeries": "(0020,1206)",
    "NumberOfStudyRelatedInstances": "(0020,1208)",
    "NumberOfSeriesRelatedInstances": "(0020,1209)",
}

#: Multipart deviation codes (``multipart.<code>``) and the requirement each breaks.
#: The Content-Type level codes are judged by the header checks instead.
_MULTIPART_CODES: dict[str, str | None] = {
    "not_multipart": None,
    "missing_type": None,
    "unquoted_type": None,
    "missing_boundary": None,
    "bad_boundary": "STOW-PAY-015",
    "type_differs_from_root": None,  # likewise, with the two media types in the message
    "no_opening_delimiter": "STOW-PAY-015",
    "no_closing_delimiter": "STOW-PAY-015",
    "lf_line_endings": "STOW-PAY-015",
    "preamble_content": "STOW-PAY-015",
    "epilogue_content": "STOW-PAY-015",
    "too_many_parts": "STOW-PAY-015",
    "header_too_large": "STOW-PAY-015",
    "malformed_part_headers": "STOW-PAY-010",
    "part_without_content_type": "STOW-PAY-010",
    "no_parts": "STOW-PAY-001",
    "boundary_in_content": "STOW-PAY-015",
    "transport_padding": None,  # white space after a delimiter is allowed
}
#: Codes that are not defects of the Capturer as such.
_MULTIPART_SEVERITY: dict[str, Severity] = {
    "preamble_content": Severity.INFO,  # RFC 2046 allows it; receivers ignore it
    "epilogue_content": Severity.INFO,
    "too_many_parts": Severity.WARNING,  # the toolkit's own limits: the rest was not judged
    "header_too_large": Severity.WARNING,
}


# -- helpers ------------------------------------------------------------------------------------
def _stow(ctx: CheckContext, exchange: Exchange) -> StowRequest:
    stow: StowRequest | None = ctx.stow_request(exchange)
    assert stow is not None  # guaranteed by Needs.REQUEST
    return stow


def _request(exchange: Exchange) -> Request:
    assert exchange.request is not None  # guaranteed by Needs.REQUEST / REQUEST_LINE
    return exchange.request


def _where(part: Part) -> str:
    return f"request part {part.index + 1}"


def _tag_text(tag: int) -> str:
    t = Tag(tag)
    return f"({t.group:04X},{t.element:04X})"


def _ref_tag(ref: BulkRef) -> int | None:
    try:
        return int(ref.tag, 16)
    except (TypeError, ValueError):
        return None


def _essence(part: Part) -> str:
    return part.content_type.essence if part.content_type is not None else ""


def _metadata_parts(stow: StowRequest) -> list[tuple[Part, MetadataDocument]]:
    """Pair each metadata document with its part (``parse_stow_request`` keeps part order)."""
    parts = [p for p in stow.parts if _essence(p) in _METADATA_TYPES]
    return list(zip(parts, stow.metadata, strict=False))


def _resolved(stow: StowRequest) -> Iterator[tuple[Part, MetadataDocument, BulkRef, list[Part]]]:
    """Yield (metadata part, document, reference, parts whose Content-Location equals the URI)."""
    for part, doc in _metadata_parts(stow):
        for ref in doc.bulk_refs:
            yield part, doc, ref, stow.part_by_location(ref.uri)


def _dataset(doc: MetadataDocument, index: int) -> Dataset | None:
    """Return dataset ``index`` of a document, when every instance of it converted (so indices agree)."""
    instances = len(doc.raw) if isinstance(doc.raw, list) else 1
    if len(doc.datasets) != instances or not 0 <= index < len(doc.datasets):
        return None
    return doc.datasets[index]


def _sent_datasets(stow: StowRequest) -> Iterator[tuple[str, Dataset]]:
    """Yield (location, dataset) for every instance the request carries."""
    for doc in stow.metadata:
        for i, ds in enumerate(doc.datasets):
            yield f"{doc.location}, dataset {i + 1}", ds
    for inst in stow.instances:
        if inst.dataset is not None:
            yield inst.location, inst.dataset


def _root(stow: StowRequest) -> mt.MediaType | None:
    if stow.content_type is None or not stow.content_type.is_(mt.MULTIPART_RELATED):
        return None
    return stow.content_type.root_type


# -- request line -------------------------------------------------------------------------------
@check(requirements="STOW-URL-001", needs=[Needs.REQUEST_LINE], tags=_TAGS)
def stow_request_method_is_post(ctx: CheckContext, exchange: Exchange) -> None:
    """The Store request uses the POST method.

    References
    ----------
    PS3.18 §10.5.1, Table 10.5.1-1.
    """
    method = _request(exchange).method
    if method != "POST":
        detail = " (methods are case-sensitive)" if method.upper() == "POST" else ""
        raise Finding(requirement="STOW-URL-001", title="Wrong method", location="request line",
                      message=f"the Store request uses method {method!r}; STOW-RS requires POST{detail}",
                      evidence=method)


@check(requirements="STOW-URL-001", needs=[Needs.REQUEST_LINE], tags=_TAGS)
def stow_request_targets_studies(ctx: CheckContext, exchange: Exchange) -> None:
    """The Store request targets {base}/studies or {base}/studies/{StudyInstanceUID}.

    References
    ----------
    PS3.18 §10.5.1, Table 10.5.1-1.
    """
    stow = _stow(ctx, exchange)
    url = _request(exchange).url
    if stow.target is None:
        raise Finding(requirement="STOW-URL-001", title="Wrong target", location="request line",
                      message=f"the target {url!r} is neither {{base}}/studies nor "
                              f"{{base}}/studies/{{StudyInstanceUID}}",
                      evidence=url)
    uid = stow.target.study_uid
    if uid is not None and (len(uid) > 64 or not _UID.match(uid)):
        raise Finding(requirement="STOW-URL-001", title="Wrong target", location="request line",
                      message=f"the study in the target URL, {uid!r}, is not a valid UID "
                              "(digits and dots, at most 64 characters, no leading zeros)",
                      evidence=url)


@check(requirements="STOW-URL-003", needs=[Needs.REQUEST_LINE], tags=_TAGS)
def stow_request_has_no_query(ctx: CheckContext, exchange: Exchange) -> None:
    """The Store request carries no query parameters.

    References
    ----------
    PS3.18 §10.5.1.2.
    """
    url = _request(exchange).url
    parts = urlsplit(url)
    if parts.query or url.rstrip("#").endswith("?"):
        raise Finding(requirement="STOW-URL-003", title="Unexpected query", location="request line",
                      message=f"the Store request has a query string ({parts.query!r}); "
                              "the Store transaction defines no query parameters",
                      evidence=url)


# -- headers ------------------------------------------------------------------------------------
@check(requirements="STOW-HDR-001", needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_is_multipart_related(ctx: CheckContext, exchange: Exchange) -> None:
    """Content-Type is multipart/related with a quoted type parameter and a boundary parameter.

    References
    ----------
    PS3.18 §10.5.1.3 Table 10.5.1-2, §8.7.1, §8.7.3.5.1.
    """
    where = "request headers > Content-Type"
    raw = _request(exchange).content_type
    if raw is None:
        raise UnexpectedMediaType(requirement="STOW-HDR-001", location="request headers",
                                  message="the request has no Content-Type header")
    ct = mt.parse_media_type(raw)
    if not ct.is_(mt.MULTIPART_RELATED):
        raise UnexpectedMediaType(requirement="STOW-HDR-001", location=where, evidence=raw,
                                  message=f"Content-Type is {ct.essence if ct.type else raw!r}, "
                                          "not multipart/related")
    found: list[Finding] = []
    all_values = _request(exchange).headers.get_all("content-type")
    if len(all_values) > 1:
        found.append(UnexpectedMediaType(requirement="STOW-HDR-001", location="request headers",
                                         evidence=" | ".join(all_values),
                                         message=f"the request has {len(all_values)} Content-Type headers; "
                                                 "exactly one is allowed"))
    for dev in ct.deviations:
        if dev.code == "media_type.unquoted_value" and dev.message.startswith("parameter type="):
            continue  # reported below with the specific rule
        found.append(UnexpectedMediaType(requirement="STOW-HDR-001", location=where, evidence=raw,
                                         message=f"Content-Type does not parse cleanly: {dev.message}"))
    type_values = ct.param_all("type")
    if not type_values:
        found.append(UnexpectedMediaType(requirement="STOW-HDR-001", location=where, evidence=raw,
                                         message="Content-Type has no type parameter naming the root "
                                                 "media type"))
    elif "type" not in ct.quoted:
        found.append(UnexpectedMediaType(requirement="STOW-HDR-001", location=where, evidence=raw,
                                         message=f"the type parameter ({type_values[0]}) is not a quoted "
                                                 "string, although its value contains '/'"))
    if not ct.param_all("boundary"):
        found.append(UnexpectedMediaType(requirement="STOW-HDR-001", location=where, evidence=raw,
                                         message="Content-Type has no boundary parameter"))
    elif not ct.boundary:
        found.append(UnexpectedMediaType(requirement="STOW-HDR-001", location=where, evidence=raw,
                                         message="the boundary parameter is empty"))
    raise_all(found, "Content-Type is not a valid multipart/related type")


@check(requirements=["STOW-HDR-002", "STOW-HDR-009"], needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_root_type_allowed(ctx: CheckContext, exchange: Exchange) -> None:
    """The root type is a DICOM media type allowed for WIC, with at most one transfer-syntax and charset.

    The legacy ``application/json`` name of DICOM JSON is reported against
    STOW-HDR-009 (a warning by default) rather than STOW-HDR-002.

    References
    ----------
    PS3.18 §8.7.3.5, §8.7.3.5.1-3; Annex F (2013-2015 editions for ``application/json``).
    """
    stow = _stow(ctx, exchange)
    root = _root(stow)
    if root is None:
        return  # no multipart type or no type parameter: stow_request_is_multipart_related reports it
    where = "request headers > Content-Type"
    evidence = str(stow.content_type)
    found: list[Finding] = []
    if root.is_(mt.APPLICATION_JSON):
        found.append(UnexpectedMediaType(
            requirement="STOW-HDR-009", location=where, evidence=evidence,
            message="the root type is the legacy application/json; current editions name DICOM JSON "
                    "application/dicom+json"))
    elif root.essence not in _ALLOWED_ROOT_TYPES:
        found.append(UnexpectedMediaType(
            requirement="STOW-HDR-002", location=where, evidence=evidence,
            message=f"the root type {root.essence!r} is not one of {', '.join(_ALLOWED_ROOT_TYPES)}"))
    assert stow.content_type is not None
    for name in ("transfer-syntax", "charset"):
        values = stow.content_type.param_all(name) + root.param_all(name)
        if len(values) > 1:
            found.append(UnexpectedMediaType(
                requirement="STOW-HDR-002", location=where, evidence=evidence,
                message=f"the {name} parameter is given {len(values)} times ({', '.join(values)}); "
                        "at most one is allowed"))
        for value in values:
            if name == "transfer-syntax" and not _UID.match(value):
                found.append(UnexpectedMediaType(
                    requirement="STOW-HDR-002", location=where, evidence=evidence,
                    message=f"transfer-syntax={value!r} is not a UID"))
    raise_all(found, "root type not allowed")


@check(requirements="STOW-HDR-003", needs=[Needs.REQUEST_LINE], tags=_TAGS)
def stow_request_has_length_or_coding(ctx: CheckContext, exchange: Exchange) -> None:
    """The request has Content-Length, or a transfer/content coding header when a coding is applied.

    References
    ----------
    PS3.18 Table 10.5.1-2, §8.6; RFC 9112 §6.2-6.3.
    """
    request = _request(exchange)
    lengths = request.headers.get_all("content-length")
    codings = request.headers.get_all("transfer-encoding") + request.headers.get_all("content-encoding")
    where = "request headers"
    if not lengths:
        if not codings:
            raise Finding(requirement="STOW-HDR-003", title="Missing header", location=where,
                          message="the request has neither Content-Length nor a Transfer-Encoding / "
                                  "Content-Encoding header")
        return
    distinct = {v.strip() for v in lengths}
    found: list[Finding] = []
    if len(distinct) > 1:
        found.append(Finding(requirement="STOW-HDR-003", title="Bad Content-Length", location=where,
                             evidence=", ".join(lengths),
                             message=f"Content-Length is given with different values: {sorted(distinct)}"))
    value = next(iter(distinct))
    if not value.isdigit():
        found.append(Finding(requirement="STOW-HDR-003", title="Bad Content-Length", location=where,
                             evidence=value, message=f"Content-Length {value!r} is not a decimal number"))
    elif request.headers.get_all("transfer-encoding"):
        found.append(Finding(requirement="STOW-HDR-003", title="Bad Content-Length", location=where,
                             evidence=value,
                             message="Content-Length is sent together with Transfer-Encoding, which a "
                                     "sender must not do (RFC 9112 §6.2)"))
    elif (len(distinct) == 1 and not codings and not exchange.truncated
          and int(value) != request.body.size):
        found.append(Finding(requirement="STOW-HDR-003", title="Bad Content-Length", location=where,
                             evidence=value,
                             message=f"Content-Length says {value} bytes but the body has "
                                     f"{request.body.size}"))
    raise_all(found, "bad Content-Length")


@check(requirements="STOW-HDR-004", needs=[Needs.REQUEST_LINE], tags=_TAGS)
def stow_request_has_accept(ctx: CheckContext, exchange: Exchange) -> None:
    """Accept is present and admits application/dicom+json or application/dicom+xml.

    A wildcard such as ``*/*`` or ``application/*`` covers them; an entry with
    ``q=0`` excludes rather than admits.

    References
    ----------
    PS3.18 §10.5.1, §8.4.1.1, §8.7.5.
    """
    values = _request(exchange).headers.get_all("accept")
    where = "request headers > Accept"
    if not values or not any(v.strip() for v in values):
        raise UnexpectedMediaType(requirement="STOW-HDR-004", location="request headers",
                                  message="the request has no Accept header; WIC expects "
                                          "application/dicom+json or application/dicom+xml")
    joined = ", ".join(values)
    accepted = mt.parse_accept(joined)
    wanted = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML)
    if not any(q > 0 and media.matches(w) for media, q in accepted for w in wanted):
        raise UnexpectedMediaType(requirement="STOW-HDR-004", location=where, evidence=joined,
                                  message=f"Accept ({joined}) admits neither application/dicom+json nor "
                                          "application/dicom+xml")


# -- multipart structure ------------------------------------------------------------------------
@check(requirements=["STOW-PAY-015", "STOW-PAY-010", "STOW-PAY-014", "STOW-PAY-001"],
       needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_multipart_well_formed(ctx: CheckContext, exchange: Exchange) -> None:
    """The multipart/related body is well formed (RFC 2046) and its root part has the declared type.

    Multipart deviations map to: delimiters, line endings, boundary syntax
    (STOW-PAY-015); part headers and a missing part Content-Type (STOW-PAY-010);
    ``type`` differing from the first part's Content-Type (STOW-PAY-014, a warning);
    no parts at all (STOW-PAY-001).  Preamble and epilogue text are reported for
    information only, since RFC 2046 lets receivers ignore them.

    References
    ----------
    PS3.18 §8.6.1.2, §8.6.1.2.1, §10.5.1.4; RFC 2046 §5.1.1; RFC 2387.
    """
    stow = _stow(ctx, exchange)
    request = _request(exchange)
    if stow.content_type is None or not stow.content_type.is_(mt.MULTIPART_RELATED):
        return  # stow_request_is_multipart_related reports it
    found: list[Finding] = []
    if request.body.size == 0:
        found.append(MalformedMultipart(requirement="STOW-PAY-001", location="request body",
                                        message="the request body is empty"))
        raise_all(found, "malformed multipart body")
    result = stow.multipart
    if result is None:
        raise_all(found, "malformed multipart body")
        return
    for dev in result.deviations:
        code = dev.code.removeprefix("multipart.")
        rid = _MULTIPART_CODES.get(code, "STOW-PAY-015")
        if rid is None:
            continue
        where = f"request body ({dev.location})" if dev.location else "request body"
        found.append(MalformedMultipart(requirement=rid, message=dev.message, location=where,
                                        severity=_MULTIPART_SEVERITY.get(code), evidence=dev.code))
    if not result.complete and not any(d.fatal for d in result.deviations):
        found.append(MalformedMultipart(requirement="STOW-PAY-015", location="request body",
                                        message="the body ends before the close delimiter --boundary--"))
    root = stow.content_type.root_type
    if root is not None and result.parts:
        first = result.parts[0].content_type
        if first is not None and first.essence != root.essence:
            found.append(MalformedMultipart(
                requirement="STOW-PAY-014", location="request part 1",
                message=f"the type parameter says {root.essence} but the first (root) part is "
                        f"{first.essence}"))
    raise_all(found, "malformed multipart body")


@check(requirements=["STOW-PAY-002", "STOW-PAY-003", "STOW-PAY-004", "STOW-PAY-005", "STOW-PAY-001"],
       needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_parts_match_declared_type(ctx: CheckContext, exchange: Exchange) -> None:
    """The parts match the root type: PS3.10 parts only, or one JSON array part, or one XML part per instance.

    A request never mixes PS3.10 instances with metadata and bulk data.

    References
    ----------
    PS3.18 §10.5.1.4; Annex F.2.1; PS3.19 Annex A.
    """
    stow = _stow(ctx, exchange)
    root = _root(stow)
    if root is None or stow.multipart is None or not stow.parts:
        return  # header and structure checks report these
    found: list[Finding] = []
    essence = root.essence
    if essence == mt.APPLICATION_DICOM:
        for part in stow.parts:
            if _essence(part) != mt.APPLICATION_DICOM and part.content_type is not None:
                rid = "STOW-PAY-002" if _essence(part) in _METADATA_TYPES else "STOW-PAY-003"
                found.append(UnexpectedMediaType(
                    requirement=rid, location=_where(part),
                    message=f"a request of PS3.10 instances (type=application/dicom) contains a "
                            f"{_essence(part)} part; every part must be application/dicom"))
        for inst in stow.instances:
            if inst.dataset is None:
                reason = "; ".join(d.message for d in inst.deviations) or "it does not decode"
                found.append(Finding(requirement="STOW-PAY-003", title="Not a PS3.10 instance",
                                     location=inst.location,
                                     message=f"the application/dicom part is not PS3.10: {reason}"))
    elif essence in _JSON_TYPES or essence == mt.APPLICATION_DICOM_XML:
        is_json = essence in _JSON_TYPES
        rid = "STOW-PAY-005" if is_json else "STOW-PAY-004"
        for part in stow.parts:
            pe = _essence(part)
            if pe == mt.APPLICATION_DICOM:
                found.append(UnexpectedMediaType(
                    requirement="STOW-PAY-002", location=_where(part),
                    message=f"a metadata request (type={essence}) contains a PS3.10 application/dicom "
                            "part; instances and metadata must not be mixed"))
            elif pe in _METADATA_TYPES and (pe in _JSON_TYPES) != is_json:
                found.append(UnexpectedMediaType(
                    requirement=rid, location=_where(part),
                    message=f"a {essence} request contains a {pe} metadata part"))
        docs = _metadata_parts(stow)
        same = [(p, d) for p, d in docs if (_essence(p) in _JSON_TYPES) == is_json]
        if not same:
            found.append(Finding(requirement=rid, title="No metadata part", location="request body",
                                 message=f"the root type is {essence} but no part has that type"))
        elif is_json:
            if len(same) > 1:
                where = ", ".join(_where(p) for p, _ in same)
                found.append(Finding(requirement="STOW-PAY-005", title="Several JSON parts", location=where,
                                     message=f"{len(same)} JSON metadata parts; all instances belong in one "
                                             "JSON array in a single part"))
            for part, doc in same:
                if doc.raw is None:
                    continue  # not JSON at all: the DICOM JSON checks report it
                if not isinstance(doc.raw, list):
                    found.append(Finding(requirement="STOW-PAY-005", title="Not a JSON array",
                                         location=_where(part),
                                         message=f"the JSON part holds a {type(doc.raw).__name__}, not a "
                                                 "top-level array of dataset objects"))
                elif not doc.raw:
                    found.append(Finding(requirement="STOW-PAY-001", title="Empty JSON array",
                                         location=_where(part),
                                         message="the JSON array holds no dataset, so nothing is stored"))
    raise_all(found, "parts do not match the root type")


# -- bulk data ----------------------------------------------------------------------------------
def _unresolved_reason(uri: str, request: Request) -> str:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = urlsplit(request.url).netloc.lower()
    if scheme == "file":
        return "it is a file: URI on the Capturer's own file system"
    if scheme in ("http", "https"):
        if host and parts.netloc.lower() != host:
            return f"it points at another host ({parts.netloc})"
        return "it is an absolute URL that no part declares"
    if not scheme and uri.startswith("/"):
        return "it is a path-only reference that no part declares"
    return "no part declares it"


@check(requirements=["STOW-PAY-012", "STOW-PAY-010"], needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_bulk_data_uris_resolve(ctx: CheckContext, exchange: Exchange) -> None:
    """Every BulkDataURI matches the Content-Location of exactly one part; every bulk part is referenced.

    The toolkit never dereferences a BulkDataURI: a ``file:`` URI, a URL of
    another host or a path-only reference that matches no part is reported as
    unresolved.  An unreferenced bulk part is a warning; a bulk part with no
    Content-Location breaks STOW-PAY-010.

    References
    ----------
    PS3.18 §8.6.1.2, §8.6.1.2.1, §10.4.3.3.5; Annex F.2.6; PS3.19 A.1.
    """
    stow = _stow(ctx, exchange)
    if not stow.metadata:
        return
    request = _request(exchange)
    found: list[Finding] = []
    referenced: set[str] = set()
    for _part, doc, ref, matches in _resolved(stow):
        referenced.add(ref.uri)
        where = f"{doc.location} > {ref.path}" if ref.path else doc.location
        if len(matches) == 1:
            continue
        if len(matches) > 1:
            found.append(UnresolvedBulkData(
                requirement="STOW-PAY-012", location=where, evidence=ref.uri,
                message=f"BulkDataURI {ref.uri!r} matches {len(matches)} parts "
                        f"({', '.join(_where(p) for p in matches)}); it must identify exactly one"))
            continue
        reason = _unresolved_reason(ref.uri, request)
        hint = ""
        target = urljoin(request.url, ref.uri)
        near = [p for p in stow.parts
                if p.content_location and urljoin(request.url, p.content_location) == target]
        if near:
            hint = (f"; {_where(near[0])} has Content-Location {near[0].content_location!r}, which names "
                    "the same resource in another form (the match must be exact)")
        found.append(UnresolvedBulkData(
            requirement="STOW-PAY-012", location=where, evidence=ref.uri,
            message=f"BulkDataURI {ref.uri!r} matches no part of this request and was not dereferenced "
                    f"({reason}){hint}"))
    for part in stow.bulk_parts:
        if part.content_type is None:
            continue  # stow_request_multipart_well_formed reports it
        if not part.content_location:
            found.append(UnresolvedBulkData(
                requirement="STOW-PAY-010", location=_where(part),
                message=f"the {_essence(part)} bulk data part has no Content-Location, so no BulkDataURI "
                        "can refer to it"))
        elif part.content_location not in referenced:
            found.append(UnresolvedBulkData(
                requirement="STOW-PAY-012", location=_where(part), severity=Severity.WARNING,
                evidence=part.content_location,
                message=f"bulk data part with Content-Location {part.content_location!r} is not referenced "
                        "by any BulkDataURI; an Image Manager will ignore it"))
    raise_all(found, "bulk data references do not resolve")


@check(requirements="STOW-PAY-011", needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_metadata_precedes_bulk(ctx: CheckContext, exchange: Exchange) -> None:
    """Every metadata part comes before each bulk data part it references.

    References
    ----------
    PS3.18 §8.6.1.2 (last paragraph).
    """
    stow = _stow(ctx, exchange)
    found: list[Finding] = []
    for part, _doc, ref, matches in _resolved(stow):
        for bulk in matches:
            if bulk.index < part.index:
                found.append(MalformedMultipart(
                    requirement="STOW-PAY-011", location=_where(bulk), evidence=ref.uri,
                    message=f"bulk part {bulk.index + 1} ({ref.uri!r}) comes before metadata part "
                            f"{part.index + 1} that references it"))
    raise_all(found, "bulk data before metadata")


@check(requirements=["STOW-PAY-007", "STOW-PAY-008", "STOW-PAY-009"], needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_bulk_parts_typed(ctx: CheckContext, exchange: Exchange) -> None:
    """Bulk data parts have the right media type and granularity.

    Uncompressed bulk data is ``application/octet-stream``; compressed pixel data
    is one part in a single-frame type for one frame and in a multi-frame type for
    several (a video is one part); an Encapsulated Document part is typed with
    the value of MIME Type of Encapsulated Document (0042,0012).

    References
    ----------
    PS3.18 §10.5.1.4, §8.7.3.3.1, §8.7.3.3.2, Table 8.7.3-5 note 5.
    """
    stow = _stow(ctx, exchange)
    found: list[Finding] = []
    for _part, doc, ref, matches in _resolved(stow):
        typed = [p for p in matches if p.content_type is not None]
        if not typed:
            continue
        tag = _ref_tag(ref)
        where = f"{doc.location} > {ref.path}" if ref.path else doc.location
        ds = _dataset(doc, ref.instance)
        if tag == _ENCAPSULATED_DOCUMENT:
            declared = None
            if ds is not None and _MIME_TYPE_OF_DOCUMENT in ds:
                declared = str(ds[_MIME_TYPE_OF_DOCUMENT].value or "").strip() or None
            for p in typed:
                if declared is None:
                    found.append(MissingAttribute(
                        requirement="STOW-PAY-009", location=where,
                        message=f"Encapsulated Document is sent as {_essence(p)} ({_where(p)}) but the "
                                "dataset has no MIME Type of Encapsulated Document (0042,0012) to match"))
                elif not p.content_type or not p.content_type.is_(declared):
                    found.append(UnexpectedMediaType(
                        requirement="STOW-PAY-009", location=_where(p), evidence=str(p.content_type),
                        message=f"the Encapsulated Document part is {_essence(p)} but MIME Type of "
                                f"Encapsulated Document (0042,0012) is {declared!r}"))
            continue
        pixel = tag == _PIXEL_DATA
        for p in typed:
            pe = _essence(p)
            if pe == mt.APPLICATION_OCTET_STREAM:
                continue
            if pixel and pe in _PIXEL_MEDIA_TYPES:
                continue
            what = "pixel data" if pixel else f"bulk data {_tag_text(tag) if tag is not None else ref.tag}"
            allowed = "application/octet-stream or a compressed pixel data type" if pixel \
                else "application/octet-stream"
            found.append(UnexpectedMediaType(
                requirement="STOW-PAY-007", location=_where(p), evidence=str(p.content_type),
                message=f"{what} ({ref.uri!r}) is sent as {pe}; expected {allowed}"))
        if pixel:
            compressed = [p for p in typed if _essence(p) in _PIXEL_MEDIA_TYPES]
            if len(compressed) > 1:
                found.append(UnexpectedMediaType(
                    requirement="STOW-PAY-008", location=where,
                    message=f"compressed pixel data ({ref.uri!r}) is split over {len(compressed)} parts; "
                            "all frames (or the whole video) belong in one part"))
            frames = _number_of_frames(ds)
            for p in compressed:
                if frames > 1 and _essence(p) in _SINGLE_FRAME_TYPES:
                    found.append(UnexpectedMediaType(
                        requirement="STOW-PAY-008", location=_where(p), evidence=str(p.content_type),
                        message=f"the instance has {frames} frames but its pixel data is sent as "
                                f"{_essence(p)}, a single-frame media type"))
    raise_all(found, "bulk data parts wrongly typed")


def _number_of_frames(ds: Dataset | None) -> int:
    if ds is None or "NumberOfFrames" not in ds:
        return 1
    try:
        return int(ds.NumberOfFrames or 1)
    except (TypeError, ValueError):
        return 1


# -- encodings ----------------------------------------------------------------------------------
@check(requirements=["STOW-PAY-013", "STOW-PAY-017", "STOW-PAY-018"], needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_no_implicit_vr(ctx: CheckContext, exchange: Exchange) -> None:
    """No PS3.10 part or transfer-syntax parameter uses Implicit VR Little Endian or Explicit VR Big Endian.

    Also: a part carries at most one transfer-syntax parameter (STOW-PAY-017), and
    on an application/dicom part it agrees with the File Meta (STOW-PAY-018, a
    warning, since the File Meta prevails).

    References
    ----------
    PS3.18 §8.6.2.1, §8.7.3, §8.7.3.4, §8.7.3.5.2, §8.7.9.
    """
    stow = _stow(ctx, exchange)
    found: list[Finding] = []
    if stow.content_type is not None:
        for value in stow.content_type.param_all("transfer-syntax"):
            if value in _FORBIDDEN_TS:
                found.append(UnexpectedMediaType(
                    requirement="STOW-PAY-013", location="request headers > Content-Type", evidence=value,
                    message=f"the request declares transfer-syntax={value} ({_FORBIDDEN_TS[value]}), "
                            "which web exchange does not allow"))
    for part in stow.parts:
        if part.content_type is None:
            continue
        values = part.content_type.param_all("transfer-syntax")
        if len(values) > 1:
            found.append(UnexpectedMediaType(
                requirement="STOW-PAY-017", location=_where(part), evidence=str(part.content_type),
                message=f"the part's Content-Type gives transfer-syntax {len(values)} times "
                        f"({', '.join(values)}); at most one is allowed"))
        for value in values:
            if value in _FORBIDDEN_TS:
                found.append(UnexpectedMediaType(
                    requirement="STOW-PAY-013", location=_where(part), evidence=value,
                    message=f"the part declares transfer-syntax={value} ({_FORBIDDEN_TS[value]})"))
    by_location = {_where(p): p for p in stow.parts}
    for inst in stow.instances:
        ts = inst.transfer_syntax
        if ts in _FORBIDDEN_TS:
            found.append(Finding(
                requirement="STOW-PAY-013", title="Forbidden transfer syntax", location=inst.location,
                evidence=ts,
                message=f"the PS3.10 instance is encoded in {_FORBIDDEN_TS[ts]} ({ts}) per its File Meta "
                        "(0002,0010)"))
        part_type = by_location[inst.location].content_type if inst.location in by_location else None
        declared = part_type.param_all("transfer-syntax") if part_type is not None else []
        if ts and len(declared) == 1 and declared[0] != ts:
            found.append(UnexpectedMediaType(
                requirement="STOW-PAY-018", location=inst.location, evidence=declared[0],
                message=f"the part declares transfer-syntax={declared[0]} but its File Meta (0002,0010) is "
                        f"{ts}; the File Meta prevails"))
    raise_all(found, "forbidden transfer syntax")


@check(requirements="STOW-PAY-016", needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_charset_single(ctx: CheckContext, exchange: Exchange) -> None:
    """A charset parameter, where given, holds exactly one value.

    References
    ----------
    PS3.18 §8.7.3.5.3; Annex F.2.
    """
    stow = _stow(ctx, exchange)
    found: list[Finding] = []
    targets: list[tuple[str, mt.MediaType]] = []
    if stow.content_type is not None:
        targets.append(("request headers > Content-Type", stow.content_type))
        root = _root(stow)
        if root is not None:
            targets.append(("request headers > Content-Type (type parameter)", root))
    targets.extend((_where(p), p.content_type) for p in stow.parts if p.content_type is not None)
    for where, media in targets:
        found.extend(_charset_problems(where, media))
    raise_all(found, "charset not single-valued")


def _charset_problems(where: str, media: mt.MediaType) -> list[Finding]:
    values = media.param_all("charset")
    out: list[Finding] = []
    if len(values) > 1:
        out.append(UnexpectedMediaType(
            requirement="STOW-PAY-016", location=where, evidence=str(media),
            message=f"charset is given {len(values)} times ({', '.join(values)}); it takes one value"))
    for value in values:
        if not value.strip() or any(sep in value for sep in (",", " ", "\\")):
            out.append(UnexpectedMediaType(
                requirement="STOW-PAY-016", location=where, evidence=value,
                message=f"charset={value!r} is not a single character set name"))
    return out


# -- target and content -------------------------------------------------------------------------
@check(requirements="STOW-URL-001", needs=[Needs.REQUEST], tags=_TAGS)
def stow_request_study_uid_matches_target(ctx: CheckContext, exchange: Exchange) -> None:
    """With a /studies/{StudyInstanceUID} target, every instance carries that Study Instance UID.

    References
    ----------
    PS3.18 §10.5.1, Table 10.5.1-1, §10.5.1.1.1.
    """
    stow = _stow(ctx, exchange)
    if stow.target is None or stow.target.study_uid is None:
        return
    expected = stow.target.study_uid
    found: list[Finding] = []
    for where, ds in _sent_datasets(stow):
        value = str(ds.get("StudyInstanceUID", "") or "").strip()
        loc = f"{where} > (0020,000D)"
        if not value:
            found.append(MissingAttribute(
                requirement="STOW-URL-001", location=loc,
                message=f"the request targets study {expected} but this instance has no Study Instance UID"))
        elif value != expected:
            found.append(Finding(
                requirement="STOW-URL-001", title="Study UID mismatch", location=loc, evidence=value,
                message=f"Study Instance UID {value} differs from the study in the target URL ({expected})"))
    raise_all(found, "Study Instance UID differs from the target")


@check(requirements="WIC-CA-016", needs=[Needs.REQUEST], tags=_TAGS,
       options={"attributes": sorted(QUERY_ONLY_ATTRIBUTES)})
def stow_request_no_query_only_attributes(ctx: CheckContext, exchange: Exchange) -> None:
    """Store metadata leaves out attributes that are defined only for query responses.

    Option ``attributes``: the keywords to flag (default: Retrieve AE Title,
    Instance Availability, Modalities/SOP Classes in Study, Retrieve URL and the
    Number of Patient/Study/Series-Related counts).

    References
    ----------
    PS3.18 §10.6.3 (QIDO-RS return attributes); dcm4chee-arc-light issue #1125.
    """
    stow = _stow(ctx, exchange)
    keywords: Sequence[str] = ctx.options.get("attributes", sorted(QUERY_ONLY_ATTRIBUTES))
    tags: list[tuple[str, int]] = []
    for keyword in keywords:
        tag = tag_for_keyword(str(keyword))
        if tag is None:
            raise ConfigError(f"stow_request_no_query_only_attributes.attributes: unknown keyword "
                              f"{keyword!r}")
        tags.append((str(keyword), tag))
    found: list[Finding] = []
    for where, ds in _sent_datasets(stow):
        for keyword, tag in tags:
            if tag in ds:
                tag_text = _tag_text(tag)
                found.append(Finding(
                    requirement="WIC-CA-016", title="Query-only attribute", location=f"{where} > {tag_text}",
                    message=f"{keyword} {tag_text} is defined for query responses and does not belong in "
                            "store metadata"))
    raise_all(found, "query-only attributes in store metadata")
