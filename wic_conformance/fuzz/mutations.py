"""Labelled request operators: turn a well-formed STOW-RS request into a negative one, and say why.

Every operator is a pure function over an encoded
:class:`~wic_conformance.dicomweb.exchange.Request`: it decodes the multipart body
with :mod:`wic_conformance.dicomweb.multipart`, changes headers, parts or
metadata, re-encodes (keeping the boundary) and returns the new request with a
:class:`Mutation` record naming the requirement that makes the request negative
(anti-pattern 9 of the house style: no unlabelled negative inputs).  Nothing here
opens a socket or a file.

Negative operators (``Mutation.negative`` is true) produce requests an Image
Manager must reject or must not store as sent.  A few operators produce
*legitimate variations* instead (``negative`` false): the same request written
differently in a way the standard allows (parameter order, a quoted boundary,
upper-case media type names, a transfer-syntax parameter on a PS3.10 part); an
Image Manager must accept those.

==============================  =========================  ===========  ======================================
kind                            requirement                encodings    parameters
==============================  =========================  ===========  ======================================
``drop_boundary``               STOW-HDR-001               any          —
``drop_type_param``             STOW-HDR-001               any          —
``swap_type_param``             STOW-HDR-008               any          ``type`` (default ``text/plain``)
``wrong_root_type``             STOW-HDR-008               any          ``type`` (default ``text/plain``)
``unsupported_media_type``      STOW-RESP-005              any          ``media_type`` (``application/json``)
``truncate_body``               STOW-RESP-003              any          ``keep`` (bytes) or ``fraction`` (0.5)
``lf_line_endings``             STOW-PAY-015               any          —
``drop_bulk_part``              WIC-IM-011                 json, xml    ``location``
``foreign_bulk_uri``            WIC-IM-011                 json, xml    ``uri`` (required), ``location``,
                                                                        ``keep_part``
``bulk_before_metadata``        STOW-PAY-011               json, xml    —
``lowercase_tags``              JSON-003 / XML-002         json, xml    —
``pn_as_string``                JSON-014                   json         —
``keyword_members``             JSON-004                   json         —
``implicit_vr_part``            STOW-PAY-013               part10       ``parts`` (indices; default all)
``malformed_json``              STOW-RESP-003              json         —
``malformed_xml``               STOW-RESP-003              xml          —
``reorder_params`` (variation)  STOW-HDR-001               any          —
``quote_boundary`` (variation)  STOW-HDR-001               any          —
``uppercase_media_types`` (v.)  STOW-HDR-007               any          —
``add_transfer_syntax_param``   STOW-PAY-003               part10       ``transfer_syntax``
==============================  =========================  ===========  ======================================

Structural operators (``truncate_body``, ``lf_line_endings``) rewrite the body
outside the multipart encoder; apply them last when combining operators.

References
----------
PS3.18 §10.5.1 (Store request), §10.5.3 (Table 10.5.3-1 response statuses),
§8.6.1.2 (multipart payload, metadata before bulk data), §8.7.3 (DICOM media
types), §10.5.2 (BulkDataURIs resolved within the request); PS3.18 Annex F.2.2
(JSON member names), Table F.3.1-1 (PN); PS3.19 A.1 (XML tags); RFC 2046 §5.1.1
(CRLF line endings, boundary); RFC 9110 §8.3.1 (media type case and parameters).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import quoteattr

from pydicom import dcmread, dcmwrite
from pydicom.datadict import keyword_for_tag
from pydicom.uid import UID, ImplicitVRLittleEndian

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Headers, Request
from wic_conformance.dicomweb.multipart import decode_multipart, encode_multipart
from wic_conformance.errors import UsageError

__all__ = [
    "ENCODINGS",
    "OPERATORS",
    "Mutation",
    "MutationKind",
    "OperatorInfo",
    "apply",
    "apply_all",
    "parse_kind",
]

#: Payload encodings a plan names (``plans.model.Encoding`` values).
ENCODINGS = frozenset({"part10", "json", "xml"})
_ANY = ENCODINGS
_METADATA = frozenset({"json", "xml"})
_JSON_TYPES = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON)
_METADATA_TYPES = (*_JSON_TYPES, mt.APPLICATION_DICOM_XML)


class MutationKind(StrEnum):
    """The request operators, named by what they do to the request."""

    DROP_BOUNDARY = "drop_boundary"
    DROP_TYPE_PARAM = "drop_type_param"
    SWAP_TYPE_PARAM = "swap_type_param"
    WRONG_ROOT_TYPE = "wrong_root_type"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TRUNCATE_BODY = "truncate_body"
    LF_LINE_ENDINGS = "lf_line_endings"
    DROP_BULK_PART = "drop_bulk_part"
    FOREIGN_BULK_URI = "foreign_bulk_uri"
    BULK_BEFORE_METADATA = "bulk_before_metadata"
    LOWERCASE_TAGS = "lowercase_tags"
    PN_AS_STRING = "pn_as_string"
    KEYWORD_MEMBERS = "keyword_members"
    IMPLICIT_VR_PART = "implicit_vr_part"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_XML = "malformed_xml"
    # legitimate variations: the request stays conformant
    REORDER_PARAMS = "reorder_params"
    QUOTE_BOUNDARY = "quote_boundary"
    UPPERCASE_MEDIA_TYPES = "uppercase_media_types"
    ADD_TRANSFER_SYNTAX_PARAM = "add_transfer_syntax_param"


@dataclass(frozen=True, slots=True)
class Mutation:
    """Why a mutated request must be rejected (or, for a variation, why it must still be accepted).

    Attributes
    ----------
    kind : MutationKind
        The operator applied.
    requirement : str
        The catalogue requirement that the mutated request breaks (negative), or that
        obliges the Image Manager to accept it (variation).
    description : str
        What was changed and what the Image Manager must do about it.
    negative : bool
        ``True`` for a negative request, ``False`` for a legitimate variation.
    params : mapping
        The parameters the operator used (defaults filled in).
    """

    kind: MutationKind
    requirement: str
    description: str
    negative: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    """What a plan loader needs to know about an operator before running it."""

    requirement: str
    negative: bool
    encodings: frozenset[str]
    params: frozenset[str]
    summary: str


#: Every operator's requirement, applicability and accepted parameters.
OPERATORS: Mapping[MutationKind, OperatorInfo] = {
    MutationKind.DROP_BOUNDARY: OperatorInfo(
        "STOW-HDR-001", True, _ANY, frozenset(), "Content-Type loses its boundary parameter"),
    MutationKind.DROP_TYPE_PARAM: OperatorInfo(
        "STOW-HDR-001", True, _ANY, frozenset(), "Content-Type loses its type parameter"),
    MutationKind.SWAP_TYPE_PARAM: OperatorInfo(
        "STOW-HDR-008", True, _ANY, frozenset({"type"}),
        "the type parameter names an unsupported media type; the parts are unchanged"),
    MutationKind.WRONG_ROOT_TYPE: OperatorInfo(
        "STOW-HDR-008", True, _ANY, frozenset({"type"}),
        "the type parameter and the root part both become an unsupported media type"),
    MutationKind.UNSUPPORTED_MEDIA_TYPE: OperatorInfo(
        "STOW-RESP-005", True, _ANY, frozenset({"media_type"}),
        "the root part is posted alone with a non-multipart Content-Type"),
    MutationKind.TRUNCATE_BODY: OperatorInfo(
        "STOW-RESP-003", True, _ANY, frozenset({"keep", "fraction"}), "the body is cut short"),
    MutationKind.LF_LINE_ENDINGS: OperatorInfo(
        "STOW-PAY-015", True, _ANY, frozenset(), "delimiter and header lines end in a bare LF"),
    MutationKind.DROP_BULK_PART: OperatorInfo(
        "WIC-IM-011", True, _METADATA, frozenset({"location"}), "a BulkDataURI is left without its part"),
    MutationKind.FOREIGN_BULK_URI: OperatorInfo(
        "WIC-IM-011", True, _METADATA, frozenset({"uri", "location", "keep_part"}),
        "a BulkDataURI points outside the request (another host or a file)"),
    MutationKind.BULK_BEFORE_METADATA: OperatorInfo(
        "STOW-PAY-011", True, _METADATA, frozenset(), "bulk data parts come before the metadata"),
    MutationKind.LOWERCASE_TAGS: OperatorInfo(
        "JSON-003", True, _METADATA, frozenset(), "attribute tags are written in lower case"),
    MutationKind.PN_AS_STRING: OperatorInfo(
        "JSON-014", True, frozenset({"json"}), frozenset(), "PN values are bare strings"),
    MutationKind.KEYWORD_MEMBERS: OperatorInfo(
        "JSON-004", True, frozenset({"json"}), frozenset(), "attribute objects carry a keyword member"),
    MutationKind.IMPLICIT_VR_PART: OperatorInfo(
        "STOW-PAY-013", True, frozenset({"part10"}), frozenset({"parts"}),
        "PS3.10 parts are re-encoded in Implicit VR Little Endian"),
    MutationKind.MALFORMED_JSON: OperatorInfo(
        "STOW-RESP-003", True, frozenset({"json"}), frozenset(), "the JSON metadata is cut short"),
    MutationKind.MALFORMED_XML: OperatorInfo(
        "STOW-RESP-003", True, frozenset({"xml"}), frozenset(), "the XML metadata is cut short"),
    MutationKind.REORDER_PARAMS: OperatorInfo(
        "STOW-HDR-001", False, _ANY, frozenset(), "Content-Type parameters in reverse order"),
    MutationKind.QUOTE_BOUNDARY: OperatorInfo(
        "STOW-HDR-001", False, _ANY, frozenset(), "the boundary parameter as a quoted-string"),
    MutationKind.UPPERCASE_MEDIA_TYPES: OperatorInfo(
        "STOW-HDR-007", False, _ANY, frozenset(), "media type names in upper case"),
    MutationKind.ADD_TRANSFER_SYNTAX_PARAM: OperatorInfo(
        "STOW-PAY-003", False, frozenset({"part10"}), frozenset({"transfer_syntax"}),
        "application/dicom parts carry a transfer-syntax parameter"),
}


def parse_kind(text: str) -> MutationKind:
    """Return the :class:`MutationKind` named by its value or member name (case-insensitive).

    Raises
    ------
    UsageError
        The name is not a known operator.
    """
    key = str(text).strip().lower()
    try:
        return MutationKind(key)
    except ValueError:
        known = ", ".join(k.value for k in MutationKind)
        raise UsageError(f"unknown mutation kind {text!r}; known: {known}") from None


# -- helpers ------------------------------------------------------------------------------------------
_PartList = list[tuple[Headers, Body]]


def _headers_with(headers: Headers, name: str, value: str | None) -> Headers:
    """Replace the first ``name`` header's value in place (dropping repeats), remove it, or append it."""
    lname = name.lower()
    out: list[tuple[str, str]] = []
    done = False
    for key, old in headers.items:
        if key.lower() != lname:
            out.append((key, old))
        elif value is not None and not done:
            out.append((key, value))
            done = True
    if value is not None and not done:
        out.append((name, value))
    return Headers(tuple(out))


def _with_body(request: Request, body: bytes, headers: Headers | None = None) -> Request:
    """Return ``request`` with a new body; a Content-Length header is kept in step."""
    hdrs = headers if headers is not None else request.headers
    if "content-length" in hdrs:
        hdrs = _headers_with(hdrs, "Content-Length", str(len(body)))
    return Request(request.method, request.url, hdrs, Body.of(body), request.http_version)


def _with_content_type(request: Request, value: str) -> Request:
    return Request(request.method, request.url, _headers_with(request.headers, "Content-Type", value), request.body,
                   request.http_version)


def _content_type(request: Request, kind: MutationKind) -> mt.MediaType:
    raw = request.content_type
    if raw is None:
        raise UsageError(f"{kind}: the request has no Content-Type to work on")
    ct = mt.parse_media_type(raw)
    if not ct.is_(mt.MULTIPART_RELATED) or not ct.boundary:
        raise UsageError(f"{kind}: needs a multipart/related request with a boundary, not {raw!r}")
    return ct


def _parts(request: Request, kind: MutationKind) -> tuple[mt.MediaType, _PartList]:
    """Decode the request body; the operators work on well-formed requests only."""
    ct = _content_type(request, kind)
    result = decode_multipart(request.body, ct)
    if not result.complete or not result.parts:
        codes = ", ".join(result.codes) or "no parts"
        raise UsageError(f"{kind}: the request body does not decode cleanly ({codes}); apply structural "
                         "mutations last")
    return ct, [(p.headers, p.body) for p in result.parts]


def _reencoded(request: Request, ct: mt.MediaType, parts: _PartList) -> Request:
    """Encode ``parts`` with the request's own boundary, keeping its Content-Type header as it is."""
    root = ct.root_type
    _ctype, body = encode_multipart(parts, root_type=root.essence if root else mt.APPLICATION_OCTET_STREAM,
                                    boundary=ct.boundary)
    return _with_body(request, body)


def _essence(headers: Headers) -> str:
    value = headers.get("content-type")
    return mt.parse_media_type(value).essence if value is not None else ""


def _encoding(parts: _PartList) -> str:
    """Return ``json``, ``xml`` or ``part10`` from the parts' media types."""
    essences = [_essence(h) for h, _b in parts]
    if any(e in _JSON_TYPES for e in essences):
        return "json"
    if mt.APPLICATION_DICOM_XML in essences:
        return "xml"
    return "part10"


def _need(encoding: str, kind: MutationKind) -> None:
    allowed = OPERATORS[kind].encodings
    if encoding not in allowed:
        raise UsageError(f"{kind} applies to {', '.join(sorted(allowed))} requests, not to a {encoding} request")


def _json_parts(parts: _PartList, kind: MutationKind) -> list[int]:
    found = [i for i, (h, _b) in enumerate(parts) if _essence(h) in _JSON_TYPES]
    if not found:
        raise UsageError(f"{kind}: the request has no DICOM JSON part")
    return found


def _xml_parts(parts: _PartList) -> list[int]:
    return [i for i, (h, _b) in enumerate(parts) if _essence(h) == mt.APPLICATION_DICOM_XML]


def _load_json(body: Body, kind: MutationKind) -> Any:
    try:
        return json.loads(body.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{kind}: the JSON part does not decode ({exc})") from None


def _dump_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _datasets(value: Any) -> Iterator[dict[str, Any]]:
    """Yield every dataset object of a DICOM JSON document, sequence items included."""
    stack = list(value) if isinstance(value, list) else [value]
    while stack:
        ds = stack.pop()
        if not isinstance(ds, dict):
            continue
        yield ds
        for attr in ds.values():
            if isinstance(attr, dict) and attr.get("vr") == "SQ" and isinstance(attr.get("Value"), list):
                stack.extend(attr["Value"])


def _bulk_uris(parts: _PartList) -> list[str]:
    """Return every BulkDataURI / BulkData@uri of the metadata parts, in document order."""
    uris: list[str] = []
    for headers, body in parts:
        essence = _essence(headers)
        if essence in _JSON_TYPES:
            try:
                value = json.loads(body.read())
            except (ValueError, UnicodeDecodeError):
                continue
            for ds in reversed(list(_datasets(value))):
                for attr in ds.values():
                    if isinstance(attr, dict) and isinstance(attr.get("BulkDataURI"), str):
                        uris.append(attr["BulkDataURI"])
        elif essence == mt.APPLICATION_DICOM_XML:
            for match in _XML_URI.finditer(body.read()):
                uris.append(_xml_unescape(match.group("uri").decode("utf-8")))
    return uris


_XML_URI = re.compile(rb'<BulkData\b[^>]*?\buri=(?P<q>["\'])(?P<uri>.*?)(?P=q)', re.DOTALL)
_XML_TAG = re.compile(rb'(<DicomAttribute\b[^>]*?\btag=)(["\'])([0-9A-Fa-f]{8})(\2)')


def _xml_unescape(text: str) -> str:
    return (text.replace("&quot;", '"').replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">")
            .replace("&amp;", "&"))


def _bulk_location(parts: _PartList, params: Mapping[str, Any], kind: MutationKind) -> str:
    """Return the BulkDataURI the operator targets: ``params['location']`` or the first referenced part."""
    uris = _bulk_uris(parts)
    if not uris:
        raise UsageError(f"{kind}: the metadata has no BulkDataURI")
    location = params.get("location")
    if location is None:
        located = {h.get("content-location") for h, _b in parts}
        location = next((u for u in uris if u in located), uris[0])
    elif str(location) not in uris:
        raise UsageError(f"{kind}: no BulkDataURI {location!r} in the metadata (found {', '.join(uris)})")
    return str(location)


def _drop_located(parts: _PartList, location: str) -> _PartList:
    return [(h, b) for h, b in parts if h.get("content-location") != location or _essence(h) in _METADATA_TYPES]


# -- operators ----------------------------------------------------------------------------------------
_Result = tuple[Request, str, dict[str, Any]]


def _drop_param(name: str) -> Callable[[Request, Mapping[str, Any]], _Result]:
    def operator(request: Request, params: Mapping[str, Any]) -> _Result:
        kind = MutationKind.DROP_BOUNDARY if name == "boundary" else MutationKind.DROP_TYPE_PARAM
        ct = _content_type(request, kind)
        kept = {k: v for k, v in ct.params if k != name}
        why = ("without a boundary the body cannot be split into parts: the request must be rejected "
               "(400 Bad Request, or 415)" if name == "boundary" else
               "without a type parameter the root media type is not declared: the request is malformed and "
               "must be rejected or, at the least, not stored as something else than what was sent")
        return (_with_content_type(request, mt.format_media_type(ct.essence, kept)),
                f"Content-Type without its {name} parameter; {why}", {})
    return operator


def _swap_type(request: Request, params: Mapping[str, Any]) -> _Result:
    new = str(params.get("type", mt.TEXT_PLAIN))
    ct = _content_type(request, MutationKind.SWAP_TYPE_PARAM)
    values = dict(ct.params)
    old = values.get("type", "")
    values["type"] = new
    return (_with_content_type(request, mt.format_media_type(ct.essence, values)),
            f"the type parameter says {new!r} instead of {old!r}; an unsupported root media type must be "
            "answered with 415 Unsupported Media Type", {"type": new})


def _wrong_root(request: Request, params: Mapping[str, Any]) -> _Result:
    new = str(params.get("type", mt.TEXT_PLAIN))
    ct, parts = _parts(request, MutationKind.WRONG_ROOT_TYPE)
    headers, body = parts[0]
    parts[0] = (_headers_with(headers, "Content-Type", new), body)
    values = dict(ct.params)
    values["type"] = new
    changed = _reencoded(request, ct, parts)
    return (_with_content_type(changed, mt.format_media_type(ct.essence, values)),
            f"the root part and the type parameter are {new!r}, which no STOW-RS origin server supports; the "
            "request must be answered with 415 Unsupported Media Type", {"type": new})


def _unsupported(request: Request, params: Mapping[str, Any]) -> _Result:
    new = str(params.get("media_type", mt.APPLICATION_JSON))
    _ct, parts = _parts(request, MutationKind.UNSUPPORTED_MEDIA_TYPE)
    body = parts[0][1].read()
    headers = _headers_with(request.headers, "Content-Type", new)
    return (_with_body(request, body, headers),
            f"the root part is posted alone as {new}, not as multipart/related; the Content-Type is not "
            "supported and must be answered with 415 Unsupported Media Type", {"media_type": new})


def _truncate(request: Request, params: Mapping[str, Any]) -> _Result:
    ct = _content_type(request, MutationKind.TRUNCATE_BODY)
    data = request.body.read()
    close = len(b"\r\n--" + (ct.boundary or "").encode("latin-1") + b"--\r\n")
    if "keep" in params:
        keep = int(params["keep"])
    else:
        fraction = float(params.get("fraction", 0.5))
        if not 0.0 < fraction < 1.0:
            raise UsageError(f"{MutationKind.TRUNCATE_BODY}: fraction must lie between 0 and 1, not {fraction}")
        keep = int(len(data) * fraction)
    if not 0 < keep < len(data) - close:
        raise UsageError(f"{MutationKind.TRUNCATE_BODY}: keep={keep} does not cut into a {len(data)}-byte body "
                         "before its close delimiter")
    return (_with_body(request, data[:keep]),
            f"the body is cut after {keep} of {len(data)} bytes (no close delimiter); a syntactically broken "
            "request must be answered with 400 Bad Request and nothing stored", {"keep": keep})


def _lf(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.LF_LINE_ENDINGS)
    dash = b"--" + (ct.boundary or "").encode("latin-1")
    out = bytearray()
    for index, (headers, body) in enumerate(parts):
        out += (b"\n" if index else b"") + dash + b"\n"
        for name, value in headers.items:
            out += name.encode("latin-1") + b": " + value.encode("latin-1") + b"\n"
        out += b"\n" + body.read()
    out += b"\n" + dash + b"--\n"
    return (_with_body(request, bytes(out)),
            "delimiter and part header lines end in a bare LF instead of CRLF; the body breaks RFC 2046 and "
            "may be rejected (400), or read leniently and then stored exactly as a CRLF body would be", {})


def _drop_bulk(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.DROP_BULK_PART)
    _need(_encoding(parts), MutationKind.DROP_BULK_PART)
    location = _bulk_location(parts, params, MutationKind.DROP_BULK_PART)
    kept = _drop_located(parts, location)
    if len(kept) == len(parts):
        raise UsageError(f"{MutationKind.DROP_BULK_PART}: no part has Content-Location {location!r}")
    return (_reencoded(request, ct, kept),
            f"the part with Content-Location {location!r} is left out while the metadata still references it; "
            "the instance cannot be completed and must fail (Failed SOP Sequence), never be stored without "
            "its bulk data", {"location": location})


def _foreign(request: Request, params: Mapping[str, Any]) -> _Result:
    if not params.get("uri"):
        raise UsageError(f"{MutationKind.FOREIGN_BULK_URI}: needs a uri parameter (the foreign resource)")
    uri = str(params["uri"])
    ct, parts = _parts(request, MutationKind.FOREIGN_BULK_URI)
    _need(_encoding(parts), MutationKind.FOREIGN_BULK_URI)
    location = _bulk_location(parts, params, MutationKind.FOREIGN_BULK_URI)
    changed: _PartList = []
    for headers, body in parts:
        essence = _essence(headers)
        if essence in _JSON_TYPES:
            value = _load_json(body, MutationKind.FOREIGN_BULK_URI)
            for ds in _datasets(value):
                for attr in ds.values():
                    if isinstance(attr, dict) and attr.get("BulkDataURI") == location:
                        attr["BulkDataURI"] = uri
            changed.append((headers, Body.of(_dump_json(value))))
        elif essence == mt.APPLICATION_DICOM_XML:

            def rewrite(m: re.Match[bytes]) -> bytes:
                if _xml_unescape(m.group("uri").decode("utf-8")) != location:
                    return m.group(0)
                return m.string[m.start():m.start("q")] + quoteattr(uri).encode("utf-8")

            changed.append((headers, Body.of(_XML_URI.sub(rewrite, body.read()))))
        else:
            changed.append((headers, body))
    keep_part = bool(params.get("keep_part", False))
    if not keep_part:
        changed = _drop_located(changed, location)
    if _bulk_uris(changed).count(uri) == 0:
        raise UsageError(f"{MutationKind.FOREIGN_BULK_URI}: could not rewrite the BulkDataURI {location!r}")
    return (_reencoded(request, ct, changed),
            f"the BulkDataURI {location!r} now points at {uri!r}, outside the request; an Image Manager resolves "
            "BulkDataURIs against the request's parts only, must never dereference it, and must fail the "
            "instance", {"uri": uri, "location": location, "keep_part": keep_part})


def _bulk_first(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.BULK_BEFORE_METADATA)
    _need(_encoding(parts), MutationKind.BULK_BEFORE_METADATA)
    metadata = [(h, b) for h, b in parts if _essence(h) in _METADATA_TYPES]
    bulk = [(h, b) for h, b in parts if _essence(h) not in _METADATA_TYPES]
    if not bulk:
        raise UsageError(f"{MutationKind.BULK_BEFORE_METADATA}: the request has no bulk data part")
    return (_reencoded(request, ct, bulk + metadata),
            "the bulk data parts come before the metadata that references them (and the root part is no longer "
            "first); the Capturer breaks PS3.18 §8.6.1.2, and an Image Manager that reads it anyway must store "
            "exactly what a well-ordered request would give", {})


def _lowercase(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.LOWERCASE_TAGS)
    encoding = _encoding(parts)
    _need(encoding, MutationKind.LOWERCASE_TAGS)
    changed: _PartList = []
    count = 0
    for headers, body in parts:
        essence = _essence(headers)
        if essence in _JSON_TYPES:
            value = _load_json(body, MutationKind.LOWERCASE_TAGS)
            for ds in list(_datasets(value)):
                items = list(ds.items())
                ds.clear()
                for name, attr in items:
                    count += name != name.lower()
                    ds[name.lower()] = attr
            changed.append((headers, Body.of(_dump_json(value))))
        elif essence == mt.APPLICATION_DICOM_XML:
            data = body.read()
            count += sum(1 for m in _XML_TAG.finditer(data) if m.group(3) != m.group(3).lower())
            data = _XML_TAG.sub(lambda m: m.group(1) + m.group(2) + m.group(3).lower() + m.group(4), data)
            changed.append((headers, Body.of(data)))
        else:
            changed.append((headers, body))
    if not count:
        raise UsageError(f"{MutationKind.LOWERCASE_TAGS}: no tag holds a hexadecimal letter to lower-case")
    rule = "JSON-003" if encoding == "json" else "XML-002"
    return (_reencoded(request, ct, changed),
            f"{count} attribute tag(s) written with lower-case hexadecimal digits ({rule}: tags are 8 upper-case "
            "hex digits); the metadata is invalid: reject the instance or store it with every value intact",
            {"requirement": rule})


def _edit_json_datasets(request: Request, kind: MutationKind, edit: Callable[[dict[str, Any]], int], *,
                        nothing: str) -> tuple[Request, int]:
    """Apply ``edit`` to every dataset object of every DICOM JSON part and re-encode the request.

    ``edit`` changes one dataset object in place and returns how many changes it made; when
    no part changes, a :class:`UsageError` says ``nothing``.  Returns the request and the count.
    """
    ct, parts = _parts(request, kind)
    _need(_encoding(parts), kind)
    count = 0
    for index in _json_parts(parts, kind):
        headers, body = parts[index]
        value = _load_json(body, kind)
        for ds in _datasets(value):
            count += edit(ds)
        parts[index] = (headers, Body.of(_dump_json(value)))
    if not count:
        raise UsageError(f"{kind}: {nothing}")
    return _reencoded(request, ct, parts), count


def _pn_strings(request: Request, params: Mapping[str, Any]) -> _Result:
    def as_strings(ds: dict[str, Any]) -> int:
        count = 0
        for attr in ds.values():
            if isinstance(attr, dict) and attr.get("vr") == "PN" and isinstance(attr.get("Value"), list):
                new = []
                for v in attr["Value"]:
                    if isinstance(v, dict):
                        count += 1
                        groups = [v.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
                        v = "=".join(groups).rstrip("=")
                    new.append(v)
                attr["Value"] = new
        return count

    mutated, count = _edit_json_datasets(request, MutationKind.PN_AS_STRING, as_strings,
                                         nothing="the metadata has no PN value")
    return (mutated,
            f"{count} PN value(s) sent as bare strings instead of {{\"Alphabetic\": ...}} objects; the metadata "
            "is invalid: reject the instance or store the names intact", {})


def _keywords(request: Request, params: Mapping[str, Any]) -> _Result:
    def add_keywords(ds: dict[str, Any]) -> int:
        count = 0
        for name, attr in ds.items():
            try:
                keyword = keyword_for_tag(int(name, 16))
            except ValueError:
                continue
            if isinstance(attr, dict) and keyword:
                attr["keyword"] = keyword
                count += 1
        return count

    mutated, count = _edit_json_datasets(request, MutationKind.KEYWORD_MEMBERS, add_keywords,
                                         nothing="the metadata has no dictionary attribute")
    return (mutated,
            f"{count} attribute object(s) carry a \"keyword\" member, which the DICOM JSON Model does not define; "
            "the metadata is invalid: reject the instance or store it with every value intact", {})


def _implicit(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.IMPLICIT_VR_PART)
    dicom = [i for i, (h, _b) in enumerate(parts) if _essence(h) == mt.APPLICATION_DICOM]
    if not dicom:
        raise UsageError(f"{MutationKind.IMPLICIT_VR_PART}: the request has no application/dicom part")
    wanted = params.get("parts")
    chosen = dicom if wanted is None else [dicom[int(i)] for i in wanted if 0 <= int(i) < len(dicom)]
    if not chosen:
        raise UsageError(f"{MutationKind.IMPLICIT_VR_PART}: parts={wanted!r} selects no application/dicom part")
    for index in chosen:
        headers, body = parts[index]
        ds = dcmread(io.BytesIO(body.read()))
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if ts.is_compressed:
            try:
                ds.decompress()
            except Exception as exc:  # pydicom raises several kinds when no decoder fits
                raise UsageError(f"{MutationKind.IMPLICIT_VR_PART}: part {index + 1} is compressed ({ts}) and "
                                 f"cannot be decoded here ({type(exc).__name__}); use an uncompressed instance"
                                 ) from None
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        out = io.BytesIO()
        dcmwrite(out, ds, enforce_file_format=True, implicit_vr=True, little_endian=True)
        parts[index] = (headers, Body.of(out.getvalue()))
    return (_reencoded(request, ct, parts),
            f"{len(chosen)} PS3.10 part(s) re-encoded in Implicit VR Little Endian, which web exchange does not "
            "use; the instance must fail, or be stored only in an explicit-VR transfer syntax",
            {"parts": [dicom.index(i) for i in chosen]})


def _malformed(kind: MutationKind) -> Callable[[Request, Mapping[str, Any]], _Result]:
    def operator(request: Request, params: Mapping[str, Any]) -> _Result:
        ct, parts = _parts(request, kind)
        _need(_encoding(parts), kind)
        indices = (_json_parts(parts, kind) if kind is MutationKind.MALFORMED_JSON else _xml_parts(parts))[:1]
        headers, body = parts[indices[0]]
        data = body.read()
        parts[indices[0]] = (headers, Body.of(data[: max(1, len(data) // 2)]))
        what = "JSON" if kind is MutationKind.MALFORMED_JSON else "XML"
        return (_reencoded(request, ct, parts),
                f"the {what} metadata part is cut after {max(1, len(data) // 2)} of {len(data)} bytes and does not "
                "parse; a request that cannot be understood must be answered with 400 Bad Request and nothing "
                "stored", {})
    return operator


def _reorder(request: Request, params: Mapping[str, Any]) -> _Result:
    ct = _content_type(request, MutationKind.REORDER_PARAMS)
    values = dict(reversed(ct.params))
    return (_with_content_type(request, mt.format_media_type(ct.essence, values)),
            "the Content-Type parameters are written in reverse order (boundary first); parameter order is not "
            "significant (RFC 9110 §8.3.1), so the request must be accepted as the original", {})


def _quote_boundary(request: Request, params: Mapping[str, Any]) -> _Result:
    ct = _content_type(request, MutationKind.QUOTE_BOUNDARY)
    text = ct.essence
    for name, value in ct.params:
        if name == "boundary" or any(ch in value for ch in '/;,= "'):
            text += '; {}="{}"'.format(name, value.replace("\\", "\\\\").replace('"', '\\"'))
        else:
            text += f"; {name}={value}"
    return (_with_content_type(request, text),
            "the boundary parameter is a quoted-string, which RFC 9110 §5.6.6 makes equivalent to the token; the "
            "request must be accepted as the original", {})


def _uppercase(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.UPPERCASE_MEDIA_TYPES)
    changed: _PartList = []
    for headers, body in parts:
        raw = headers.get("content-type")
        if raw is None:
            changed.append((headers, body))
            continue
        pct = mt.parse_media_type(raw)
        changed.append((_headers_with(headers, "Content-Type",
                                      mt.format_media_type(pct.essence.upper(), dict(pct.params))), body))
    values = {k: (v.upper() if k == "type" else v) for k, v in ct.params}
    text = mt.format_media_type(ct.essence.upper(), values)
    return (_with_content_type(_reencoded(request, ct, changed), text),
            "media type names are written in upper case (MULTIPART/RELATED, APPLICATION/DICOM...); type and "
            "subtype are case-insensitive (RFC 9110 §8.3.1), so the request must be accepted as the original", {})


def _ts_param(request: Request, params: Mapping[str, Any]) -> _Result:
    ct, parts = _parts(request, MutationKind.ADD_TRANSFER_SYNTAX_PARAM)
    count = 0
    for index, (headers, body) in enumerate(parts):
        pct = mt.parse_media_type(headers.get("content-type") or "")
        if not pct.is_(mt.APPLICATION_DICOM):
            continue
        ts = params.get("transfer_syntax")
        if ts is None:
            with body.open() as handle:
                ds = dcmread(handle, stop_before_pixels=True, specific_tags=[])
            ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
        if not ts:
            raise UsageError(f"{MutationKind.ADD_TRANSFER_SYNTAX_PARAM}: part {index + 1} has no File Meta "
                             "Transfer Syntax UID")
        values = {k: v for k, v in pct.params if k != "transfer-syntax"}
        values["transfer-syntax"] = str(ts)
        parts[index] = (_headers_with(headers, "Content-Type", mt.format_media_type(pct.essence, values)), body)
        count += 1
    if not count:
        raise UsageError(f"{MutationKind.ADD_TRANSFER_SYNTAX_PARAM}: the request has no application/dicom part")
    return (_reencoded(request, ct, parts),
            f"{count} application/dicom part(s) carry a transfer-syntax parameter naming their encoding "
            "(PS3.18 §10.5.1.4, §8.7.3.5.2); the request must be accepted as the original", {})


_OPERATORS: dict[MutationKind, Callable[[Request, Mapping[str, Any]], _Result]] = {
    MutationKind.DROP_BOUNDARY: _drop_param("boundary"),
    MutationKind.DROP_TYPE_PARAM: _drop_param("type"),
    MutationKind.SWAP_TYPE_PARAM: _swap_type,
    MutationKind.WRONG_ROOT_TYPE: _wrong_root,
    MutationKind.UNSUPPORTED_MEDIA_TYPE: _unsupported,
    MutationKind.TRUNCATE_BODY: _truncate,
    MutationKind.LF_LINE_ENDINGS: _lf,
    MutationKind.DROP_BULK_PART: _drop_bulk,
    MutationKind.FOREIGN_BULK_URI: _foreign,
    MutationKind.BULK_BEFORE_METADATA: _bulk_first,
    MutationKind.LOWERCASE_TAGS: _lowercase,
    MutationKind.PN_AS_STRING: _pn_strings,
    MutationKind.KEYWORD_MEMBERS: _keywords,
    MutationKind.IMPLICIT_VR_PART: _implicit,
    MutationKind.MALFORMED_JSON: _malformed(MutationKind.MALFORMED_JSON),
    MutationKind.MALFORMED_XML: _malformed(MutationKind.MALFORMED_XML),
    MutationKind.REORDER_PARAMS: _reorder,
    MutationKind.QUOTE_BOUNDARY: _quote_boundary,
    MutationKind.UPPERCASE_MEDIA_TYPES: _uppercase,
    MutationKind.ADD_TRANSFER_SYNTAX_PARAM: _ts_param,
}


def apply(kind: MutationKind | str, request: Request, params: Mapping[str, Any] | None = None
          ) -> tuple[Request, Mutation]:
    """Apply one operator to an encoded request.

    Parameters
    ----------
    kind : MutationKind or str
        The operator (a value such as ``"drop_boundary"`` or a member name).
    request : Request
        A well-formed STOW-RS request (multipart/related with a boundary).
    params : mapping, optional
        The operator's parameters (see the module table).

    Returns
    -------
    tuple of (Request, Mutation)
        The mutated request (Content-Length kept in step with the body) and the
        record saying which requirement it breaks and what the Image Manager must do.

    Raises
    ------
    UsageError
        Unknown kind or parameter, or an operator that does not apply to this request
        (e.g. ``drop_bulk_part`` on PS3.10 instances).

    References
    ----------
    PS3.18 §10.5.1, §10.5.3; RFC 2046 §5.1.1.
    """
    mkind = kind if isinstance(kind, MutationKind) else parse_kind(kind)
    given = dict(params or {})
    info = OPERATORS[mkind]
    unknown = set(given) - info.params
    if unknown:
        raise UsageError(f"{mkind}: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(info.params) or 'none'}")
    mutated, description, used = _OPERATORS[mkind](request, given)
    requirement = str(used.pop("requirement", info.requirement))
    return mutated, Mutation(mkind, requirement, description, info.negative, {**given, **used})


def apply_all(request: Request, specs: list[tuple[MutationKind | str, Mapping[str, Any]]]
              ) -> tuple[Request, list[Mutation]]:
    """Apply several operators in order; return the final request and every record."""
    records: list[Mutation] = []
    for kind, params in specs:
        request, record = apply(kind, request, params)
        records.append(record)
    return request, records
