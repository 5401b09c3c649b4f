# ruff: noqa: D401 - a check's first docstring line states the property that must hold, not a command
"""Checks on a STOW-RS response (the Image Manager under test).

The checks judge the status line, the headers and the Store Instances Response
Module (Annex I) as parsed by :mod:`wic_conformance.dicomweb.store_response`, and,
when the exchange carries the request, compare the response with what was sent.
A response to a request that is not a STOW-RS request (not a ``POST`` to
``/studies``) is not judged.

References
----------
PS3.18 §10.5.3 (Table 10.5.3-1, 10.5.3-2), §8.5 (Table 8.5-1), Annex I; RFC 7234 §5.5; RFC 7235 §3.1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb import store_response as sr
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.status import (
    CATEGORY_FAILURE,
    CATEGORY_WARNING,
    HTTP_STATUS,
    classify_reason,
    format_reason,
)
from wic_conformance.dicomweb.store_response import RawAttribute, SopRef, StoreResponse, expected_status
from wic_conformance.dicomweb.stow import parse_stow_target
from wic_conformance.findings import (
    BadReasonCode,
    BadStatus,
    Finding,
    MissingAttribute,
    Severity,
    StatusSequenceMismatch,
    UnexpectedMediaType,
    raise_all,
)
from wic_conformance.validate.registry import CheckContext, Needs, check

__all__ = [
    "stow_response_401_has_www_authenticate",
    "stow_response_coercion_reported",
    "stow_response_each_instance_accounted",
    "stow_response_failure_reasons_known",
    "stow_response_has_store_instances_payload",
    "stow_response_media_type_is_dicom",
    "stow_response_reason_codes_are_numbers",
    "stow_response_retrieve_urls_match",
    "stow_response_sop_references_complete",
    "stow_response_status_is_known",
    "stow_response_status_matches_sop_sequences",
    "stow_response_study_mismatch_rejected",
    "stow_response_unsupported_media_type_is_415",
    "stow_response_warning_header_form",
    "stow_response_warning_reasons_known",
]

_BODY = "response body"
_STATUS = "response status"
_HEADERS = "response headers"
_RESPONSE_TYPES = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML)
#: Root types a STOW-RS origin server must support (Table 10.5.4-1), plus the legacy JSON type.
_SUPPORTED_ROOT_TYPES = frozenset({mt.APPLICATION_DICOM, mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML,
                                   mt.APPLICATION_OCTET_STREAM, mt.APPLICATION_JSON})
_INSTANCE_URL = re.compile(
    r"/studies/(?P<study>[^/]+)/series/(?P<series>[^/]+)/instances/(?P<instance>[^/]+)/?$")
_STUDY_URL = re.compile(r"/studies/(?P<study>[^/]+)/?$")
# RFC 7234 §5.5: warn-code SP warn-agent SP warn-text [SP warn-date]; PS3.18 also shows a DICOM status
# code (e.g. A700) in the warn-code position.
_WARNING_VALUE = re.compile(
    r'\s*(?P<code>\d{3}|[0-9A-Fa-f]{4})\s+(?P<agent>[^\s",]+)\s+(?P<text>"(?:[^"\\]|\\.)*"|[^"]+?)'
    r'(?:\s+"(?P<date>[^"]*)")?\s*$'
)
_WARN_CODE_START = re.compile(r"\s*(?:\d{3}|[0-9A-Fa-f]{4})\s")
_REASON_DEVIATIONS = frozenset({"response.reason_not_number", "response.reason_not_integer",
                                "response.reason_wrong_vr", "response.reason_out_of_range"})


# -- shared views ---------------------------------------------------------------------------------
def _is_stow(exchange: Exchange) -> bool:
    """Return whether the exchange is a STOW-RS store (or a lone response, judged as one)."""
    request = exchange.request
    if request is None:
        return True
    return request.method.upper() == "POST" and parse_stow_target(request.url) is not None


def _response(ctx: CheckContext, exchange: Exchange) -> StoreResponse | None:
    if exchange.response is None or not _is_stow(exchange):
        return None
    parsed: StoreResponse = ctx.store_response(exchange)
    return parsed


@dataclass(frozen=True, slots=True)
class _Sent:
    """An instance the request submitted."""

    sop_instance_uid: str
    study_uid: str | None
    series_uid: str | None
    location: str


def _sent(ctx: CheckContext, exchange: Exchange) -> tuple[list[_Sent], int] | None:
    """Return the instances the request identified and the number it sent without a readable UID."""
    if exchange.request is None:
        return None
    stow = ctx.stow_request(exchange)
    if stow is None:
        return None
    out: list[_Sent] = []
    unreadable = 0
    datasets = [(inst.dataset, inst.location) for inst in stow.instances]
    for doc in stow.metadata:
        if doc.datasets:
            datasets.extend((ds, doc.location) for ds in doc.datasets)
        else:
            unreadable += 1
    for ds, where in datasets:
        if ds is None:
            unreadable += 1
            continue
        uid = ds.get("SOPInstanceUID")
        if not uid and hasattr(ds, "file_meta"):
            uid = ds.file_meta.get("MediaStorageSOPInstanceUID")
        if not uid:
            unreadable += 1
            continue
        study = ds.get("StudyInstanceUID")
        series = ds.get("SeriesInstanceUID")
        out.append(_Sent(str(uid), str(study) if study else None, str(series) if series else None, where))
    return out, unreadable


def _target_study(exchange: Exchange) -> str | None:
    if exchange.request is None:
        return None
    target = parse_stow_target(exchange.request.url)
    return target.study_uid if target is not None else None


def _loc(ref: SopRef, tag: str | None = None) -> str:
    if tag is not None and tag in ref.raw:
        return f"{_BODY} > {ref.raw[tag].location}"
    return f"{_BODY} > {ref.location}" if ref.location else _BODY


def _attr_loc(attr: RawAttribute | None) -> str:
    return f"{_BODY} > {attr.location}" if attr is not None and attr.location else _BODY


def _codes(ref_codes: set[int]) -> str:
    return ", ".join(str(c) for c in sorted(ref_codes))


# -- status vs body -------------------------------------------------------------------------------
@check(requirements=["STOW-MOD-009", "STOW-RESP-001", "STOW-RESP-002", "STOW-RESP-003", "STOW-RESP-004"],
       needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_status_matches_sop_sequences(ctx: CheckContext, exchange: Exchange) -> None:
    """The HTTP status agrees with the Referenced, Failed and Other Failures sequences (Table 10.5.3-1).

    200: everything stored, no Failed SOP or Other Failures Sequence; 202: some
    stored with a failure or a Warning Reason; 400/409: nothing stored, so no
    Referenced SOP Sequence.  When everything was stored with warnings only, 200 and
    202 are both accepted and an informational finding records the ambiguity.  A
    400 whose body lists per-instance failures gets a warning: the request was
    readable, so 409 applies.

    References
    ----------
    PS3.18 §10.5.3, Table 10.5.3-1; Annex I.
    """
    resp = _response(ctx, exchange)
    if resp is None or resp.status not in (200, 202, 400, 409) or not resp.decoded:
        return
    referenced = len(resp.referenced)
    failures = resp.failure_count
    warned = resp.has_warnings
    allowed = expected_status(referenced, failures, warned)
    summary = f"{referenced} stored, {failures} failure(s), {'with' if warned else 'no'} warnings"
    found: list[Finding] = []
    status = resp.status
    if status == 200 and failures:
        found.append(StatusSequenceMismatch(
            requirement="STOW-MOD-009", location=_STATUS, evidence=summary,
            message=f"200 OK but the body lists {failures} failure(s) (Failed SOP or Other Failures "
                    f"Sequence); 200 means every instance was stored (expected {_codes(allowed)})"))
    if status == 200 and not referenced:
        found.append(StatusSequenceMismatch(
            requirement="STOW-RESP-001", location=_STATUS, evidence=summary,
            message="200 OK but the Referenced SOP Sequence is absent or empty: no stored instance is "
                    "reported"))
    if status in (400, 409) and referenced:
        found.append(StatusSequenceMismatch(
            requirement="STOW-MOD-009", location=_STATUS, evidence=summary,
            message=f"{status} means nothing was stored, but the Referenced SOP Sequence lists "
                    f"{referenced} instance(s) (expected {_codes(allowed)})"))
    if status == 400 and not referenced and resp.failed:
        found.append(StatusSequenceMismatch(
            requirement="STOW-RESP-003", location=_STATUS, evidence=summary, severity=Severity.WARNING,
            message=f"400 means the request could not be read (bad syntax), yet the body lists {len(resp.failed)} "
                    "instance(s) in the Failed SOP Sequence; for a readable request with nothing stored the "
                    "status is 409"))
    if status == 202 and not failures and not warned:
        found.append(StatusSequenceMismatch(
            requirement="STOW-MOD-009", location=_STATUS, evidence=summary,
            message="202 Accepted but the body has neither a Failed SOP Sequence nor any Warning Reason; "
                    "with every instance stored cleanly the status is 200"))
    if status == 202 and not referenced and failures:
        found.append(StatusSequenceMismatch(
            requirement="STOW-RESP-004", location=_STATUS, evidence=summary,
            message=f"202 Accepted but no instance was stored ({failures} failure(s)); "
                    "when nothing is stored the status is 409 Conflict"))
    if not found and status in (200, 202) and referenced and not failures and warned:
        found.append(StatusSequenceMismatch(
            requirement="STOW-RESP-002", location=_STATUS, evidence=summary, severity=Severity.INFO,
            message=f"every instance was stored, some with a Warning Reason, and the status is {status}; "
                    "the standard does not say whether 200 or 202 applies, both are accepted"))
    raise_all(found)


@check(requirements=["STOW-RESP-007"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_has_store_instances_payload(ctx: CheckContext, exchange: Exchange) -> None:
    """A 200 or 202 response carries a decodable Store Instances Response Module.

    The module must hold a Referenced SOP Sequence or a Failed SOP Sequence.

    References
    ----------
    PS3.18 §10.5.3.3, §8.6.3; Annex I.
    """
    resp = _response(ctx, exchange)
    if resp is None or resp.status not in (200, 202):
        return
    if resp.body_size == 0 or any(d.code == "response.empty_body" for d in resp.deviations):
        raise MissingAttribute(requirement="STOW-RESP-007", title="No response payload", location=_BODY,
                               message=f"{resp.status} response without a body; a Store Instances Response "
                                       "Module is required")
    fatal = [d for d in resp.deviations if d.fatal]
    if fatal or resp.format is None:
        why = "; ".join(d.message for d in fatal) or "the body is not a DICOM JSON object or NativeDicomModel"
        raise MissingAttribute(requirement="STOW-RESP-007", title="Undecodable response payload",
                               location=_BODY, evidence=", ".join(d.code for d in fatal),
                               message=f"the {resp.status} response body is not a Store Instances Response "
                                       f"Module: {why}")
    if sr.REFERENCED_SOP_SEQUENCE not in resp.present and sr.FAILED_SOP_SEQUENCE not in resp.present:
        raise MissingAttribute(requirement="STOW-RESP-007", title="Empty Store Instances Response",
                               location=_BODY, evidence=", ".join(sorted(resp.present)),
                               message="the response body has neither Referenced SOP Sequence (0008,1199) "
                                       "nor Failed SOP Sequence (0008,1198)")


@check(requirements=["STOW-RESP-008"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_media_type_is_dicom(ctx: CheckContext, exchange: Exchange) -> None:
    """The response Content-Type is application/dicom+json or +xml, matches the body and the request's Accept.

    Judged for 200/202 responses and for 409 responses whose body is JSON or XML.

    References
    ----------
    PS3.18 §10.5.3, Table 10.5.3-2; §8.7.5 (Accept).
    """
    resp = _response(ctx, exchange)
    if resp is None or resp.body_size == 0:
        return
    if not (resp.status in (200, 202) or resp.status == 409 and resp.format is not None):
        return
    assert exchange.response is not None
    raw = exchange.response.content_type
    found: list[Finding] = []
    where = f"{_HEADERS} > Content-Type"
    if raw is None or resp.media_type is None:
        raise UnexpectedMediaType(requirement="STOW-RESP-008", location=where,
                                  message=f"the {resp.status} response has a body but no Content-Type")
    essence = resp.media_type.essence
    if essence not in _RESPONSE_TYPES:
        legacy = " (the pre-2016 JSON type)" if essence == mt.APPLICATION_JSON else ""
        found.append(UnexpectedMediaType(
            requirement="STOW-RESP-008", location=where, evidence=raw,
            message=f"Content-Type is {raw!r}{legacy}; a Store Instances Response is "
                    f"{mt.APPLICATION_DICOM_JSON} or {mt.APPLICATION_DICOM_XML}"))
    body_type = {"json": mt.APPLICATION_DICOM_JSON, "xml": mt.APPLICATION_DICOM_XML}.get(resp.format or "")
    if body_type is not None and essence in _RESPONSE_TYPES and essence != body_type:
        found.append(UnexpectedMediaType(
            requirement="STOW-RESP-008", location=where, evidence=raw,
            message=f"Content-Type says {essence} but the body is {(resp.format or '').upper()}"))
    accept = exchange.request.headers.get_all("accept") if exchange.request is not None else []
    if accept:
        ranges = [pair for value in accept for pair in mt.parse_accept(value)]
        ok = any(q > 0 and resp.media_type.matches(rng) for rng, q in ranges)
        if ranges and not ok:
            found.append(UnexpectedMediaType(
                requirement="STOW-RESP-008", location=where, evidence=f"Accept: {', '.join(accept)}",
                message=f"Content-Type {essence} is not one the request's Accept allowed "
                        f"({', '.join(accept)})"))
    raise_all(found)


# -- reason codes ---------------------------------------------------------------------------------
@check(requirements=["STOW-MOD-008"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_reason_codes_are_numbers(ctx: CheckContext, exchange: Exchange) -> None:
    """Failure and Warning Reasons are US values: JSON numbers / XML decimal text, never hex strings.

    References
    ----------
    PS3.18 Annex I (Failure Reason (0008,1197), Warning Reason (0008,1196), VR US); Annex F.2.3.
    """
    resp = _response(ctx, exchange)
    if resp is None:
        return
    raise_all([
        BadReasonCode(requirement="STOW-MOD-008", message=d.message, location=f"{_BODY} > {d.location}",
                      evidence=d.code)
        for d in resp.deviations if d.code in _REASON_DEVIATIONS
    ])


def _judge_reason(code: int, *, expected: str, requirement: str, what: str, location: str) -> Finding | None:
    known = classify_reason(code)
    if known is None:
        return BadReasonCode(
            requirement=requirement, location=location, evidence=format_reason(code),
            severity=Severity.WARNING,
            message=f"{what} {format_reason(code)} is not defined in Annex I and lies outside its ranges; "
                    "an implementation-specific code must be documented in the Conformance Statement")
    category, description = known
    if category != expected:
        return BadReasonCode(
            requirement=requirement, location=location, evidence=format_reason(code),
            message=f"{what} {format_reason(code)} is a {category.lower()} code ({description}), "
                    f"not a {expected.lower()} code")
    return None


@check(requirements=["STOW-MOD-007"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_failure_reasons_known(ctx: CheckContext, exchange: Exchange) -> None:
    """Each Failure Reason is an Annex I.2.2 failure code (A7xx, A9xx, Cxxx, C122, 0110, 0122).

    Codes outside every table and range are reported as warnings (they may be
    implementation-specific); warning codes used as failures are errors.

    References
    ----------
    PS3.18 Annex I.2.2.
    """
    resp = _response(ctx, exchange)
    if resp is None:
        return
    found: list[Finding] = []
    for ref in resp.failed:
        if ref.failure_reason is not None:
            f = _judge_reason(ref.failure_reason, expected=CATEGORY_FAILURE, requirement="STOW-MOD-007",
                              what="Failure Reason", location=_loc(ref, sr.FAILURE_REASON))
            if f is not None:
                found.append(f)
    other = resp.attributes.get(sr.OTHER_FAILURES_SEQUENCE)
    for code in resp.other_failures:
        f = _judge_reason(code, expected=CATEGORY_FAILURE, requirement="STOW-MOD-007",
                          what="Other Failures Failure Reason", location=_attr_loc(other))
        if f is not None:
            found.append(f)
    raise_all(found)


@check(requirements=["STOW-MOD-006"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_warning_reasons_known(ctx: CheckContext, exchange: Exchange) -> None:
    """Each Warning Reason is an Annex I.2.1 warning code (B000, B006, B007).

    Other codes are allowed but reported as warnings; failure codes used as
    warnings are errors.

    References
    ----------
    PS3.18 Annex I.2.1.
    """
    resp = _response(ctx, exchange)
    if resp is None:
        return
    found: list[Finding] = []
    for ref in resp.referenced:
        if ref.warning_reason is not None:
            f = _judge_reason(ref.warning_reason, expected=CATEGORY_WARNING, requirement="STOW-MOD-006",
                              what="Warning Reason", location=_loc(ref, sr.WARNING_REASON))
            if f is not None:
                found.append(f)
    raise_all(found)


# -- module attributes ----------------------------------------------------------------------------
def _missing(item: SopRef, tag: str, name: str, requirement: str, seq: str, type1: bool) -> Finding | None:
    attr = item.raw.get(tag)
    if attr is None:
        return MissingAttribute(requirement=requirement, location=_loc(item), evidence=tag,
                                message=f"{seq} item lacks {name}")
    if type1 and attr.empty:
        return MissingAttribute(requirement=requirement, location=_loc(item, tag), evidence=tag,
                                message=f"{seq} item has an empty {name} (Type 1)")
    return None


@check(requirements=["STOW-MOD-002", "STOW-MOD-003", "STOW-MOD-005"], needs=[Needs.RESPONSE],
       tags=["manager", "stow"])
def stow_response_sop_references_complete(ctx: CheckContext, exchange: Exchange) -> None:
    """Every Referenced/Failed SOP item identifies its instance; Retrieve URL and Failure Reason are present.

    Referenced SOP items: Referenced SOP Class/Instance UID (Type 1) and Retrieve URL
    (Type 2).  Failed SOP items: the two UIDs and Failure Reason (Type 1).  Other
    Failures items: Failure Reason (Type 1).  A sequence that is present is not empty
    (Type 1C).

    References
    ----------
    PS3.18 Annex I, Table I.1-1; PS3.3 Table 10-11.
    """
    resp = _response(ctx, exchange)
    if resp is None or not resp.decoded:
        return
    found: list[Finding | None] = []
    sequences = ((sr.REFERENCED_SOP_SEQUENCE, "Referenced SOP Sequence (0008,1199)", "STOW-MOD-003"),
                 (sr.FAILED_SOP_SEQUENCE, "Failed SOP Sequence (0008,1198)", "STOW-MOD-002"),
                 (sr.OTHER_FAILURES_SEQUENCE, "Other Failures Sequence (0008,119A)", "STOW-MOD-005"))
    for tag, name, req in sequences:
        attr = resp.attributes.get(tag)
        if attr is not None and not attr.items:
            found.append(MissingAttribute(
                requirement=req, location=_attr_loc(attr), evidence=tag,
                message=f"{name} is present but has no item; it is present only when it has items (Type 1C)"))
    for ref in resp.referenced:
        seq = "Referenced SOP Sequence"
        found.append(_missing(ref, sr.REFERENCED_SOP_CLASS_UID, "Referenced SOP Class UID (0008,1150)",
                              "STOW-MOD-003", seq, True))
        found.append(_missing(ref, sr.REFERENCED_SOP_INSTANCE_UID, "Referenced SOP Instance UID (0008,1155)",
                              "STOW-MOD-003", seq, True))
        found.append(_missing(ref, sr.RETRIEVE_URL,
                              "Retrieve URL (0008,1190) (Type 2: present, may be empty)",
                              "STOW-MOD-003", seq, False))
        if sr.FAILURE_REASON in ref.raw:
            found.append(MissingAttribute(
                requirement="STOW-MOD-003", location=_loc(ref, sr.FAILURE_REASON), evidence=sr.FAILURE_REASON,
                title="Failure Reason on a stored instance",
                message="a Referenced SOP Sequence item (a stored instance) carries Failure Reason "
                        "(0008,1197)"))
    for ref in resp.failed:
        seq = "Failed SOP Sequence"
        found.append(_missing(ref, sr.REFERENCED_SOP_CLASS_UID, "Referenced SOP Class UID (0008,1150)",
                              "STOW-MOD-002", seq, True))
        found.append(_missing(ref, sr.REFERENCED_SOP_INSTANCE_UID, "Referenced SOP Instance UID (0008,1155)",
                              "STOW-MOD-002", seq, True))
        found.append(_missing(ref, sr.FAILURE_REASON, "Failure Reason (0008,1197)", "STOW-MOD-002", seq,
                              True))
    other = resp.attributes.get(sr.OTHER_FAILURES_SEQUENCE)
    for pos, item in enumerate(other.items if other is not None else ()):
        reason = item.get(sr.FAILURE_REASON)
        if reason is None or reason.empty:
            found.append(MissingAttribute(
                requirement="STOW-MOD-005", location=f"{_attr_loc(other)} item {pos + 1}",
                evidence=sr.FAILURE_REASON,
                message="Other Failures Sequence item lacks Failure Reason (0008,1197) (Type 1)"))
    raise_all(f for f in found if f is not None)


@check(requirements=["STOW-MOD-004"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_coercion_reported(ctx: CheckContext, exchange: Exchange) -> None:
    """Original Attributes Sequence items, when present, record the coercion completely.

    Each item has Attribute Modification DateTime, Modifying System, Reason for the
    Attribute Modification (COERCE or CORRECT) and a Modified Attributes Sequence
    with exactly one item.

    References
    ----------
    PS3.18 §10.5.2, Annex I; PS3.3 C.12.1 (Original Attributes Sequence).
    """
    resp = _response(ctx, exchange)
    if resp is None or not resp.decoded:
        return
    found: list[Finding] = []
    for ref in resp.referenced:
        seq_attr = ref.raw.get(sr.ORIGINAL_ATTRIBUTES_SEQUENCE)
        if seq_attr is None:
            continue
        if not seq_attr.items:
            found.append(MissingAttribute(
                requirement="STOW-MOD-004", location=_attr_loc(seq_attr),
                evidence=sr.ORIGINAL_ATTRIBUTES_SEQUENCE,
                message="Original Attributes Sequence (0400,0561) is present but empty"))
        for pos, item in enumerate(ref.original_attributes, start=1):
            where = f"{_attr_loc(seq_attr)} item {pos}"
            required = ((sr.ATTRIBUTE_MODIFICATION_DATETIME, "Attribute Modification DateTime (0400,0562)"),
                        (sr.MODIFYING_SYSTEM, "Modifying System (0400,0563)"),
                        (sr.REASON_FOR_THE_ATTRIBUTE_MODIFICATION,
                         "Reason for the Attribute Modification (0400,0565)"))
            for tag, name in required:
                attr = item.get(tag)
                if attr is None or attr.empty:
                    found.append(MissingAttribute(requirement="STOW-MOD-004", location=where, evidence=tag,
                                                  message=f"Original Attributes item lacks {name} (Type 1)"))
            reason = item.get(sr.REASON_FOR_THE_ATTRIBUTE_MODIFICATION)
            text = reason.first_text() if reason is not None else None
            if text is not None and text.strip() not in ("COERCE", "CORRECT"):
                found.append(MissingAttribute(
                    requirement="STOW-MOD-004", location=where, evidence=text,
                    title="Bad modification reason",
                    message=f"Reason for the Attribute Modification is {text!r}; it is COERCE or CORRECT"))
            modified = item.get(sr.MODIFIED_ATTRIBUTES_SEQUENCE)
            if modified is None or len(modified.items) != 1:
                count = "absent" if modified is None else f"{len(modified.items)} item(s)"
                found.append(MissingAttribute(
                    requirement="STOW-MOD-004", location=where, evidence=sr.MODIFIED_ATTRIBUTES_SEQUENCE,
                    message=f"Modified Attributes Sequence (0400,0550) is {count}; it holds exactly one item "
                            "with the previous values"))
    raise_all(found)


# -- comparison with the request ------------------------------------------------------------------
@check(requirements=["STOW-MOD-009"], needs=[Needs.REQUEST, Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_each_instance_accounted(ctx: CheckContext, exchange: Exchange) -> None:
    """Each submitted SOP Instance UID appears in exactly one of the Referenced/Failed SOP Sequences.

    Not judged when the request failed as a whole (an error status with neither
    sequence in the body) or when the response body did not decode.

    References
    ----------
    PS3.18 §10.5.3, Annex I (derived consistency rule).
    """
    resp = _response(ctx, exchange)
    if resp is None or not resp.decoded:
        return
    if not resp.referenced and not resp.failed and resp.status >= 400:
        return  # the request failed as a whole
    sent_info = _sent(ctx, exchange)
    if sent_info is None:
        return
    sent, unreadable = sent_info
    listed: dict[str, list[str]] = {}
    for name, refs in (("Referenced SOP Sequence", resp.referenced), ("Failed SOP Sequence", resp.failed)):
        for ref in refs:
            if ref.sop_instance_uid:
                listed.setdefault(ref.sop_instance_uid, []).append(name)
    found: list[Finding] = []
    sent_uids = {s.sop_instance_uid for s in sent}
    for item in sent:
        where = listed.get(item.sop_instance_uid, [])
        if not where:
            found.append(StatusSequenceMismatch(
                requirement="STOW-MOD-009", location=_BODY, evidence=item.sop_instance_uid,
                message=f"the instance {item.sop_instance_uid} sent in {item.location} is in neither the "
                        "Referenced nor the Failed SOP Sequence"))
        elif len(where) > 1:
            found.append(StatusSequenceMismatch(
                requirement="STOW-MOD-009", location=_BODY, evidence=item.sop_instance_uid,
                message=f"the instance {item.sop_instance_uid} appears {len(where)} times "
                        f"({', '.join(where)}); it belongs in exactly one sequence"))
    if not unreadable:
        for uid, where in listed.items():
            if uid not in sent_uids:
                found.append(StatusSequenceMismatch(
                    requirement="STOW-MOD-009", location=_BODY, evidence=uid,
                    message=f"the {where[0]} lists {uid}, which the request did not send"))
    raise_all(found)


@check(requirements=["STOW-MOD-009", "STOW-MOD-001"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_retrieve_urls_match(ctx: CheckContext, exchange: Exchange) -> None:
    """Retrieve URLs end in /studies/{s}/series/{se}/instances/{i} of the stored UIDs, or /studies/{s}.

    The study-level Retrieve URL (Type 2, VR UR) is present in a 200/202 response;
    when not empty it names the study of the request target and of the stored
    instances.  When the request is available the study and series in each
    instance URL are compared with the submitted instance.

    References
    ----------
    PS3.18 Annex I (Retrieve URL (0008,1190)); §10.4 (WADO-RS resource paths).
    """
    resp = _response(ctx, exchange)
    if resp is None or not resp.decoded:
        return
    found: list[Finding] = []
    sent_info = _sent(ctx, exchange) if exchange.request is not None else None
    by_uid = {s.sop_instance_uid: s for s in sent_info[0]} if sent_info else {}
    studies_in_urls: set[str] = set()
    for ref in resp.referenced:
        url = ref.retrieve_url
        if not url:
            continue
        where = _loc(ref, sr.RETRIEVE_URL)
        match = _INSTANCE_URL.search(urlsplit(url).path)
        if match is None:
            found.append(MissingAttribute(
                requirement="STOW-MOD-009", location=where, evidence=url,
                title="Bad instance Retrieve URL",
                message=f"instance Retrieve URL {url!r} does not end with "
                        "/studies/{study}/series/{series}/instances/{instance}"))
            continue
        study, series, instance = (unquote(match.group(k)) for k in ("study", "series", "instance"))
        studies_in_urls.add(study)
        if ref.sop_instance_uid and instance != ref.sop_instance_uid:
            found.append(MissingAttribute(
                requirement="STOW-MOD-009", location=where, evidence=url,
                title="Bad instance Retrieve URL",
                message=f"instance Retrieve URL names instance {instance}, but the item's Referenced SOP "
                        f"Instance UID is {ref.sop_instance_uid}"))
        sent = by_uid.get(ref.sop_instance_uid or "")
        if sent is not None:
            if sent.study_uid and study != sent.study_uid:
                found.append(MissingAttribute(
                    requirement="STOW-MOD-009", location=where, evidence=url,
                    title="Bad instance Retrieve URL",
                    message=f"instance Retrieve URL names study {study}; the instance was sent with "
                            f"Study Instance UID {sent.study_uid}"))
            if sent.series_uid and series != sent.series_uid:
                found.append(MissingAttribute(
                    requirement="STOW-MOD-009", location=where, evidence=url,
                    title="Bad instance Retrieve URL",
                    message=f"instance Retrieve URL names series {series}; the instance was sent with "
                            f"Series Instance UID {sent.series_uid}"))
    top = resp.attributes.get(sr.RETRIEVE_URL)
    if top is None:
        if resp.status in (200, 202):
            found.append(MissingAttribute(
                requirement="STOW-MOD-001", location=_BODY, evidence=sr.RETRIEVE_URL,
                message="the study-level Retrieve URL (0008,1190) is absent; it is Type 2 (present, may be "
                        "empty)"))
    else:
        where = _attr_loc(top)
        if top.vr == "UT":
            found.append(MissingAttribute(
                requirement="STOW-MOD-001", location=where, evidence="UT", severity=Severity.WARNING,
                title="Retrieve URL VR",
                message="Retrieve URL (0008,1190) has VR UT (older editions); it is UR"))
        elif top.vr not in (None, "UR"):
            found.append(MissingAttribute(
                requirement="STOW-MOD-001", location=where, evidence=str(top.vr), title="Retrieve URL VR",
                message=f"Retrieve URL (0008,1190) has VR {top.vr}; it is UR"))
        url = resp.retrieve_url
        if url:
            match = _STUDY_URL.search(urlsplit(url).path)
            target = _target_study(exchange)
            if match is None:
                found.append(MissingAttribute(
                    requirement="STOW-MOD-001", location=where, evidence=url,
                    title="Bad study Retrieve URL",
                    message=f"study Retrieve URL {url!r} does not end with /studies/{{study}}"))
            else:
                study = unquote(match.group("study"))
                if target and study != target:
                    found.append(MissingAttribute(
                        requirement="STOW-MOD-001", location=where, evidence=url,
                        title="Bad study Retrieve URL",
                        message=f"study Retrieve URL names study {study}; the request targeted {target}"))
                elif len(studies_in_urls) == 1 and study not in studies_in_urls:
                    found.append(MissingAttribute(
                        requirement="STOW-MOD-001", location=where, evidence=url,
                        title="Bad study Retrieve URL",
                        message=f"study Retrieve URL names study {study}, but the stored instances are in "
                                f"study {next(iter(studies_in_urls))}"))
    raise_all(found)


@check(requirements=["STOW-URL-002"], needs=[Needs.REQUEST, Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_study_mismatch_rejected(ctx: CheckContext, exchange: Exchange) -> None:
    """With POST /studies/{uid}, instances of another study are in the Failed SOP Sequence; 409 if none is.

    References
    ----------
    PS3.18 §10.5.1.1.1, Table 10.5.3-1 (409 example "Study Instance UID mismatch").
    """
    resp = _response(ctx, exchange)
    target = _target_study(exchange)
    if resp is None or not target:
        return
    sent_info = _sent(ctx, exchange)
    if sent_info is None:
        return
    sent, _unreadable = sent_info
    mismatched = [s for s in sent if s.study_uid is not None and s.study_uid != target]
    if not mismatched:
        return
    found: list[Finding] = []
    stored = {r.sop_instance_uid for r in resp.referenced if r.sop_instance_uid}
    failed = {r.sop_instance_uid for r in resp.failed if r.sop_instance_uid}
    judged_body = resp.decoded and resp.status in (200, 202, 409)
    for item in mismatched:
        if item.sop_instance_uid in stored:
            found.append(StatusSequenceMismatch(
                requirement="STOW-URL-002", location=_BODY, evidence=item.sop_instance_uid,
                message=f"instance {item.sop_instance_uid} has Study Instance UID {item.study_uid}, not the "
                        f"target {target}, yet it is reported as stored"))
        elif judged_body and item.sop_instance_uid not in failed:
            found.append(StatusSequenceMismatch(
                requirement="STOW-URL-002", location=_BODY, evidence=item.sop_instance_uid,
                message=f"instance {item.sop_instance_uid} has Study Instance UID {item.study_uid}, not the "
                        f"target {target}; it belongs in the Failed SOP Sequence"))
    if len(mismatched) == len(sent) and resp.status != 409:
        found.append(BadStatus(
            requirement="STOW-URL-002", location=_STATUS, evidence=str(resp.status),
            message=f"no instance could be stored (Study Instance UID mismatch with the target {target}) "
                    f"but the status is {resp.status}; the standard's answer is 409 Conflict"))
    raise_all(found)


# -- status line and headers ----------------------------------------------------------------------
@check(requirements=["STOW-HDR-008", "STOW-RESP-005"], needs=[Needs.REQUEST, Needs.RESPONSE],
       tags=["manager", "stow"])
def stow_response_unsupported_media_type_is_415(ctx: CheckContext, exchange: Exchange) -> None:
    """A request whose Content-Type is not a supported DICOM multipart type gets 415 Unsupported Media Type.

    A 2xx answer (the server stored or accepted it) fails STOW-HDR-008; another
    error status fails STOW-RESP-005.  A multipart request without a ``type``
    parameter is not judged here.

    References
    ----------
    PS3.18 §10.5.4 (Table 10.5.4-1), Table 10.5.3-1.
    """
    if exchange.request is None or exchange.response is None or not _is_stow(exchange):
        return
    raw = exchange.request.content_type
    reason: str | None = None
    if raw is None:
        reason = "the request has no Content-Type"
    else:
        ctype = mt.parse_media_type(raw)
        if not ctype.is_(mt.MULTIPART_RELATED):
            reason = f"the request Content-Type {raw!r} is not multipart/related"
        else:
            root = ctype.root_type
            if root is not None and root.essence not in _SUPPORTED_ROOT_TYPES:
                reason = f"the multipart type parameter {root.essence!r} is not a STOW-RS root type"
    if reason is None:
        return
    status = exchange.response.status
    if 200 <= status < 300:
        raise BadStatus(requirement="STOW-HDR-008", location=_STATUS, evidence=str(status),
                        message=f"{reason}, yet the server answered {status}; it must answer 415")
    if status in (400, 409, 422):
        raise BadStatus(requirement="STOW-RESP-005", location=_STATUS, evidence=str(status),
                        message=f"{reason}; the status for an unsupported Content-Type is 415, not {status}")


@check(requirements=["STOW-RESP-006"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_401_has_www_authenticate(ctx: CheckContext, exchange: Exchange) -> None:
    """A 401 Unauthorized response carries a WWW-Authenticate header.

    References
    ----------
    PS3.18 §8.5, Table 8.5-1; RFC 7235 §3.1.
    """
    response = exchange.response
    if response is None or response.status != 401 or not _is_stow(exchange):
        return
    values = [v for v in response.headers.get_all("www-authenticate") if v.strip()]
    if not values:
        raise MissingAttribute(requirement="STOW-RESP-006", title="Missing WWW-Authenticate",
                               location=_HEADERS, severity=Severity.ERROR,
                               message="401 Unauthorized without a WWW-Authenticate challenge "
                                       "(RFC 7235 §3.1)")


@check(requirements=["STOW-RESP-006"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_status_is_known(ctx: CheckContext, exchange: Exchange) -> None:
    """The status code is one PS3.18 defines for the Store transaction (Table 10.5.3-1 or Table 8.5-1).

    501 is tolerated but noted: §10.5.3 uses 409 for an unsupported SOP Class.

    References
    ----------
    PS3.18 §10.5.3 (Table 10.5.3-1), §8.5 (Table 8.5-1).
    """
    response = exchange.response
    if response is None or not _is_stow(exchange):
        return
    status = response.status
    if status not in HTTP_STATUS:
        raise BadStatus(requirement="STOW-RESP-006", location=_STATUS, evidence=str(status),
                        message=f"status {status} is not among the codes PS3.18 defines for STOW-RS "
                                f"({', '.join(str(c) for c in sorted(HTTP_STATUS))})")
    if status == 501:
        raise BadStatus(requirement="STOW-RESP-006", location=_STATUS, evidence="501",
                        severity=Severity.INFO,
                        message="501 Not Implemented; for an unsupported SOP Class §10.5.3 prefers 409 "
                                "with a Failed SOP Sequence")


@check(requirements=["STOW-RESP-010"], needs=[Needs.RESPONSE], tags=["manager", "stow"])
def stow_response_warning_header_form(ctx: CheckContext, exchange: Exchange) -> None:
    """A Warning header has the form warn-code warn-agent warn-text, and warnings in the body come with one.

    The warn-code may be the RFC 7234 three-digit code or a DICOM status code
    such as ``A700``.  A response whose body carries Warning Reasons or failures
    (202) but has no Warning header gets a SHOULD-level finding.

    References
    ----------
    PS3.18 §10.5.3.2; RFC 7234 §5.5.
    """
    resp = _response(ctx, exchange)
    if resp is None:
        return
    assert exchange.response is not None
    values = exchange.response.headers.get_all("warning")
    found: list[Finding] = []
    for value in values:
        for element in _split_warning(value):
            if not _WARNING_VALUE.fullmatch(element):
                found.append(BadStatus(
                    requirement="STOW-RESP-010", location=f"{_HEADERS} > Warning", evidence=element,
                    title="Malformed Warning header",
                    message=f"Warning value {element!r} is not 'warn-code warn-agent warn-text' "
                            "(e.g. 'A700 <service>: Out of memory' or '299 host \"text\"')"))
    body_warns = resp.decoded and (resp.has_warnings or (resp.status == 202 and resp.failure_count > 0))
    if not values and body_warns:
        found.append(BadStatus(
            requirement="STOW-RESP-010", location=_HEADERS, title="No Warning header",
            message="the body reports warnings or failures but the response has no Warning header "
                    "carrying the DICOM status code and reason"))
    raise_all(found)


def _split_warning(value: str) -> list[str]:
    """Split a Warning header value into warning values.

    Commas inside quoted strings never split; a comma outside quotes splits only
    when a warn-code follows, so an unquoted DICOM-style text may contain commas.
    """
    merged: list[str] = []
    for piece in mt.split_header_list(value):
        if merged and not _WARN_CODE_START.match(piece):
            merged[-1] = f"{merged[-1]},{piece}"
        else:
            merged.append(piece)
    return [e for e in merged if e.strip()]
