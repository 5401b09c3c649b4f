"""The Store Instances Response Module (PS3.18 Annex I) in DICOM JSON and DICOM XML: parse and build.

:func:`parse_store_response` reads a STOW-RS response into a :class:`StoreResponse`
without raising.  It walks the raw JSON (or the Native DICOM Model tree) itself so
that the exact encodings stay visible: a Failure Reason sent as the string
``"A700"`` or with VR ``SH`` is recorded as a deviation with the value seen, not
quietly converted.  A pydicom :class:`~pydicom.dataset.Dataset` is built too, when
the body allows it.

:func:`build_store_response` writes a conformant module (reason codes as US numbers)
and :func:`expected_status` encodes Table 10.5.3-1.

Deviation codes
---------------
``response.empty_body``, ``response.media_type_mismatch``, ``response.undecodable``, ``response.syntax``,
``response.not_dataset``, ``response.tag_lowercase``, ``response.attribute_shape``, ``response.conversion``,
``response.reason_not_number``, ``response.reason_not_integer``, ``response.reason_wrong_vr``,
``response.reason_out_of_range``; XML bodies add the ``xml.*`` codes of :mod:`.xml_model`.

References
----------
PS3.18 §10.5.3 (Store Transaction response, Table 10.5.3-1), Annex I (Store Instances Response Module);
PS3.18 Annex F (DICOM JSON Model); PS3.19 A.1 (Native DICOM Model).
"""

from __future__ import annotations

import json
import re
import warnings
import xml.etree.ElementTree as ET  # noqa: N817  (type only; parsing goes through xml_model)
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb import xml_model
from wic_conformance.dicomweb.deviation import Deviation, Strictness
from wic_conformance.dicomweb.exchange import Response
from wic_conformance.errors import UsageError

__all__ = [
    "FAILED_SOP_SEQUENCE",
    "FAILURE_REASON",
    "MODIFIED_ATTRIBUTES_SEQUENCE",
    "ORIGINAL_ATTRIBUTES_SEQUENCE",
    "OTHER_FAILURES_SEQUENCE",
    "REFERENCED_SOP_CLASS_UID",
    "REFERENCED_SOP_INSTANCE_UID",
    "REFERENCED_SOP_SEQUENCE",
    "RETRIEVE_URL",
    "RawAttribute",
    "SopRef",
    "StoreResponse",
    "WARNING_REASON",
    "build_store_response",
    "expected_status",
    "parse_store_response",
    "store_response_dataset",
]

RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
OTHER_FAILURES_SEQUENCE = "0008119A"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
ORIGINAL_ATTRIBUTES_SEQUENCE = "04000561"
ATTRIBUTE_MODIFICATION_DATETIME = "04000562"
MODIFYING_SYSTEM = "04000563"
REASON_FOR_THE_ATTRIBUTE_MODIFICATION = "04000565"
MODIFIED_ATTRIBUTES_SEQUENCE = "04000550"

_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
_HEX_CODE = re.compile(r"(?:0[xX])?(?P<hex>[0-9A-Fa-f]{1,4})[hH]?")
_JSON_TYPES = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON)
_XML_TYPES = (mt.APPLICATION_DICOM_XML, "application/xml", "text/xml")


@dataclass(frozen=True, slots=True)
class RawAttribute:
    """One attribute exactly as the response encoded it.

    Attributes
    ----------
    vr : str or None
        The ``vr`` member (JSON) or ``@vr`` (XML); ``None`` when absent.
    values : tuple
        JSON: the members of ``Value`` as decoded (numbers stay numbers, strings stay
        strings); XML: the text of each ``Value`` element.
    items : tuple of mapping
        For sequences: each item as ``{tag: RawAttribute}``.
    location : str
        JSON pointer or XML path of the attribute.
    """

    vr: str | None
    values: tuple[Any, ...] = ()
    items: tuple[Mapping[str, RawAttribute], ...] = ()
    location: str = ""

    @property
    def empty(self) -> bool:
        """Return whether the attribute has no value and no item (zero length)."""
        return not self.values and not self.items

    def first_text(self) -> str | None:
        """Return the first value as a string when it is one, else ``None``."""
        if self.values and isinstance(self.values[0], str):
            return self.values[0]
        return None


@dataclass(frozen=True, slots=True)
class SopRef:
    """An item of the Referenced SOP Sequence or the Failed SOP Sequence.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid : str or None
        Referenced SOP Class UID (0008,1150) and Referenced SOP Instance UID (0008,1155).
    retrieve_url : str or None
        Retrieve URL (0008,1190) of the instance: ``None`` when absent, ``""`` when empty.
    failure_reason, warning_reason : int or None
        Failure Reason (0008,1197) and Warning Reason (0008,1196) as numbers.  A value
        sent as a string is interpreted (leniently) and reported as a deviation.
    original_attributes : tuple
        Items of Original Attributes Sequence (0400,0561): ``{tag: RawAttribute}`` when
        parsed; for building, a :class:`~pydicom.dataset.Dataset` is accepted too.
    raw : mapping
        The whole item, ``{tag: RawAttribute}`` (empty when built by hand).
    location : str
        Where the item is in the body.

    References
    ----------
    PS3.18 Annex I, Table I.1-1; PS3.3 Table 10-11 (SOP Instance Reference Macro).
    """

    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    retrieve_url: str | None = None
    failure_reason: int | None = None
    warning_reason: int | None = None
    original_attributes: tuple[Any, ...] = ()
    raw: Mapping[str, RawAttribute] = field(default_factory=dict)
    location: str = ""


@dataclass(frozen=True, slots=True)
class StoreResponse:
    """A STOW-RS response, decoded as far as it could be.

    Attributes
    ----------
    status : int
        The HTTP status code.
    media_type : MediaType or None
        The parsed Content-Type (``None`` when the header is absent).
    format : str or None
        ``"json"`` or ``"xml"``, from the body itself (the Content-Type is only a hint);
        ``None`` when there is no decodable body.
    retrieve_url : str or None
        Study-level Retrieve URL (0008,1190): ``None`` when absent, ``""`` when empty.
    referenced, failed : tuple of SopRef
        Items of Referenced SOP Sequence (0008,1199) and Failed SOP Sequence (0008,1198).
    other_failures : tuple of int
        Failure Reasons of the Other Failures Sequence (0008,119A) items.
    present : frozenset of str
        The top-level tags present (8 uppercase hex digits), so absent and empty differ.
    attributes : mapping
        The top-level attributes, ``{tag: RawAttribute}``.
    dataset : Dataset or None
        The pydicom view, when the body converted.
    deviations : tuple of Deviation
        Everything that departs from the encoding rules, with what was seen.
    """

    status: int
    media_type: mt.MediaType | None = None
    format: str | None = None
    retrieve_url: str | None = None
    referenced: tuple[SopRef, ...] = ()
    failed: tuple[SopRef, ...] = ()
    other_failures: tuple[int, ...] = ()
    present: frozenset[str] = frozenset()
    attributes: Mapping[str, RawAttribute] = field(default_factory=dict)
    dataset: Dataset | None = None
    deviations: tuple[Deviation, ...] = ()
    body_size: int = 0

    @property
    def decoded(self) -> bool:
        """Return whether the body decoded into a data set."""
        return self.format is not None and not any(d.fatal for d in self.deviations)

    @property
    def has_warnings(self) -> bool:
        """Return whether any Referenced SOP item carries a Warning Reason."""
        return any(ref.warning_reason is not None or WARNING_REASON in ref.raw for ref in self.referenced)

    @property
    def failure_count(self) -> int:
        """Return the number of Failed SOP items plus Other Failures items."""
        other = self.attributes.get(OTHER_FAILURES_SEQUENCE)
        return len(self.failed) + (len(other.items) if other is not None else 0)


# -- parsing ------------------------------------------------------------------------------------
def parse_store_response(response: Response, *, policy: Strictness = Strictness.LENIENT) -> StoreResponse:
    """Decode a STOW-RS response body into a :class:`StoreResponse`.

    Never raises for bad input.  The body format is taken from the body itself
    (JSON or XML), and a disagreement with the Content-Type is recorded.  Under
    ``Strictness.STRICT`` values that break the encoding (a reason code as a
    string, a JSON array instead of an object) are recorded but not interpreted.

    Parameters
    ----------
    response : Response
        The response as received.
    policy : Strictness
        Explicit strictness.

    Returns
    -------
    StoreResponse

    References
    ----------
    PS3.18 §10.5.3, Table 10.5.3-2; Annex I.
    """
    devs: list[Deviation] = []
    body = response.body.read()
    raw_ct = response.content_type
    ctype = mt.parse_media_type(raw_ct) if raw_ct is not None else None
    base = StoreResponse(status=response.status, media_type=ctype, body_size=len(body))
    text_start = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text_start:
        devs.append(Deviation("response.empty_body", "the response has no body", "response body"))
        return _with(base, deviations=tuple(devs))
    sniffed = "json" if text_start[:1] in (b"{", b"[") else "xml" if text_start[:1] == b"<" else None
    declared = None
    if ctype is not None:
        declared = "json" if ctype.essence in _JSON_TYPES else "xml" if ctype.essence in _XML_TYPES else None
    if declared is not None and sniffed is not None and declared != sniffed:
        devs.append(Deviation("response.media_type_mismatch",
                              f"Content-Type is {raw_ct!r} but the body is {sniffed.upper()}",
                              "response headers"))
    fmt = sniffed
    if fmt is None:
        devs.append(Deviation("response.undecodable",
                              f"the body is neither JSON nor XML (starts with {body[:16]!r})",
                              "response body", fatal=True))
        return _with(base, deviations=tuple(devs))
    parser = _Parser(policy, devs, fmt)
    if fmt == "json":
        attrs, dataset = parser.json_body(body)
    else:
        attrs, dataset = parser.xml_body(body)
    if attrs is None:
        return _with(base, format=fmt, deviations=tuple(devs))
    return parser.assemble(base, fmt, attrs, dataset)


def _with(base: StoreResponse, **changes: Any) -> StoreResponse:
    values = {name: getattr(base, name) for name in StoreResponse.__dataclass_fields__}
    values.update(changes)
    return StoreResponse(**values)


class _Parser:
    def __init__(self, policy: Strictness, devs: list[Deviation], fmt: str) -> None:
        self.policy = policy
        self.devs = devs
        self.fmt = fmt

    def dev(self, code: str, message: str, location: str, *, fatal: bool = False) -> None:
        self.devs.append(Deviation(code, message, location, fatal=fatal))

    # -- JSON --------------------------------------------------------------------------------
    def json_body(self, body: bytes) -> tuple[dict[str, RawAttribute] | None, Dataset | None]:
        try:
            value = json.loads(body.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            self.dev("response.syntax", f"the body is not valid UTF-8 JSON: {exc}", "response body",
                     fatal=True)
            return None, None
        if isinstance(value, list):
            self.dev("response.not_dataset", f"the body is a JSON array of {len(value)} member(s); the Store "
                     "Instances Response is a single data set object", "/")
            if self.policy is Strictness.STRICT or len(value) != 1 or not isinstance(value[0], dict):
                return None, None
            value = value[0]
            root = "/0"
        else:
            root = ""
        if not isinstance(value, dict):
            self.dev("response.not_dataset", f"the body is a JSON {type(value).__name__}, not an object", "/",
                     fatal=True)
            return None, None
        attrs = self.json_dataset(value, root, 0)
        dataset: Dataset | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                dataset = Dataset.from_json(value)
            except Exception as exc:  # pydicom raises many kinds for bad JSON models
                self.dev("response.conversion", f"pydicom cannot convert the JSON data set: {exc}",
                         "response body")
        for warning in caught:
            self.dev("response.conversion", f"pydicom: {warning.message}", "response body")
        return attrs, dataset

    def json_dataset(self, obj: Mapping[str, Any], path: str, depth: int) -> dict[str, RawAttribute]:
        out: dict[str, RawAttribute] = {}
        if depth > xml_model.MAX_DEPTH:
            self.dev("response.attribute_shape", "sequence nesting too deep; not followed", path)
            return out
        for key, attr in obj.items():
            loc = f"{path}/{key}"
            tag = key
            if _HEX8.fullmatch(key) and key != key.upper():
                self.dev("response.tag_lowercase", f"member name {key!r} uses lowercase hexadecimal digits",
                         loc)
                tag = key.upper()
            if not isinstance(attr, dict):
                self.dev("response.attribute_shape",
                         f"attribute {key} is a JSON {type(attr).__name__}, not an object", loc)
                continue
            vr = attr.get("vr")
            if vr is not None and not isinstance(vr, str):
                self.dev("response.attribute_shape", f"vr of {key} is {vr!r}, not a string", loc)
                vr = str(vr)
            raw_values = attr.get("Value", [])
            if not isinstance(raw_values, list):
                self.dev("response.attribute_shape", f"Value of {key} is {raw_values!r}, not an array", loc)
                raw_values = [raw_values]
            items: list[Mapping[str, RawAttribute]] = []
            values: tuple[Any, ...] = tuple(raw_values)
            if vr == "SQ":
                for pos, item in enumerate(raw_values):
                    if isinstance(item, dict):
                        items.append(self.json_dataset(item, f"{loc}/Value/{pos}", depth + 1))
                    else:
                        self.dev("response.attribute_shape",
                                 f"item {pos} of sequence {key} is {item!r}, not an object",
                                 f"{loc}/Value/{pos}")
                values = ()
            out[tag] = RawAttribute(vr=vr, values=values, items=tuple(items), location=loc)
        return out

    # -- XML ---------------------------------------------------------------------------------
    def xml_body(self, body: bytes) -> tuple[dict[str, RawAttribute] | None, Dataset | None]:
        doc = xml_model.parse_document(body, location="response body", policy=self.policy)
        self.devs.extend(doc.deviations)
        if doc.raw is None:
            return None, None
        root = doc.raw
        if xml_model.local_name(root.tag) != "NativeDicomModel":
            return None, None
        return self.xml_dataset(root, "/NativeDicomModel", 0), (doc.datasets[0] if doc.datasets else None)

    def xml_dataset(self, parent: ET.Element, path: str, depth: int) -> dict[str, RawAttribute]:
        out: dict[str, RawAttribute] = {}
        if depth > xml_model.MAX_DEPTH:
            return out
        for elem in parent:
            if xml_model.local_name(elem.tag) != "DicomAttribute":
                continue
            tag_text = elem.get("tag") or ""
            loc = f"{path}/DicomAttribute[@tag='{tag_text}']"
            tag = tag_text.upper()
            values: list[Any] = []
            items: list[Mapping[str, RawAttribute]] = []
            for child in elem:
                name = xml_model.local_name(child.tag)
                if name == "Value":
                    values.append(child.text or "")
                elif name == "Item":
                    items.append(self.xml_dataset(child, f"{loc}/Item[{len(items) + 1}]", depth + 1))
                elif name == "PersonName":
                    values.append("".join(child.itertext()))
            out[tag] = RawAttribute(vr=elem.get("vr"), values=tuple(values), items=tuple(items), location=loc)
        return out

    # -- the module --------------------------------------------------------------------------
    def assemble(self, base: StoreResponse, fmt: str, attrs: dict[str, RawAttribute],
                 dataset: Dataset | None) -> StoreResponse:
        retrieve_url = self.text(attrs.get(RETRIEVE_URL), "Retrieve URL (0008,1190)")
        referenced = tuple(self.sop_ref(item) for item in self.items(attrs, REFERENCED_SOP_SEQUENCE))
        failed = tuple(self.sop_ref(item) for item in self.items(attrs, FAILED_SOP_SEQUENCE))
        other: list[int] = []
        for item in self.items(attrs, OTHER_FAILURES_SEQUENCE):
            code = self.reason(item.get(FAILURE_REASON), "Failure Reason (0008,1197)")
            if code is not None:
                other.append(code)
        return _with(base, format=fmt, retrieve_url=retrieve_url, referenced=referenced, failed=failed,
                     other_failures=tuple(other), present=frozenset(attrs), attributes=attrs, dataset=dataset,
                     deviations=tuple(self.devs))

    def items(self, attrs: Mapping[str, RawAttribute], tag: str) -> tuple[Mapping[str, RawAttribute], ...]:
        attr = attrs.get(tag)
        if attr is None:
            return ()
        if attr.vr not in (None, "SQ"):
            self.dev("response.attribute_shape", f"{tag} has vr {attr.vr!r}; it is a sequence (SQ)",
                     attr.location)
        return attr.items

    def text(self, attr: RawAttribute | None, name: str) -> str | None:
        if attr is None:
            return None
        if not attr.values:
            return ""
        value = attr.values[0]
        if not isinstance(value, str):
            self.dev("response.attribute_shape", f"{name} value is {value!r}, not a string", attr.location)
            return str(value)
        return value

    def sop_ref(self, item: Mapping[str, RawAttribute]) -> SopRef:
        location = next(iter(item.values())).location.rsplit("/", 1)[0] if item else ""
        original = self.items(item, ORIGINAL_ATTRIBUTES_SEQUENCE)
        return SopRef(
            sop_class_uid=self.text(item.get(REFERENCED_SOP_CLASS_UID),
                                    "Referenced SOP Class UID (0008,1150)"),
            sop_instance_uid=self.text(item.get(REFERENCED_SOP_INSTANCE_UID),
                                       "Referenced SOP Instance UID (0008,1155)"),
            retrieve_url=self.text(item.get(RETRIEVE_URL), "Retrieve URL (0008,1190)"),
            failure_reason=self.reason(item.get(FAILURE_REASON), "Failure Reason (0008,1197)"),
            warning_reason=self.reason(item.get(WARNING_REASON), "Warning Reason (0008,1196)"),
            original_attributes=original,
            raw=item,
            location=location,
        )

    def reason(self, attr: RawAttribute | None, name: str) -> int | None:
        """Return a reason code as a number, recording every encoding problem with the raw value."""
        if attr is None:
            return None
        if attr.vr != "US":
            self.dev("response.reason_wrong_vr", f"{name} has vr {attr.vr!r}; it must be US", attr.location)
        if not attr.values:
            return None
        if len(attr.values) > 1:
            self.dev("response.attribute_shape", f"{name} has {len(attr.values)} values; VM is 1",
                     attr.location)
        value = attr.values[0]
        code: int | None
        if isinstance(value, bool) or value is None:
            self.dev("response.reason_not_number", f"{name} is {json.dumps(value)}, not a number",
                     attr.location)
            return None
        if isinstance(value, int):
            code = value
        elif isinstance(value, float):
            if not value.is_integer():
                self.dev("response.reason_not_integer", f"{name} is {value!r}, not an integer", attr.location)
                return None
            code = int(value)
        elif isinstance(value, str):
            code = self.reason_text(value, name, attr.location, xml_text=self.fmt == "xml")
            if code is None:
                return None
        else:
            self.dev("response.reason_not_number", f"{name} is {value!r}, not a number", attr.location)
            return None
        if not 0 <= code <= 0xFFFF:
            self.dev("response.reason_out_of_range", f"{name} is {code}, outside the US range 0..65535",
                     attr.location)
        return code

    def reason_text(self, text: str, name: str, location: str, *, xml_text: bool) -> int | None:
        """Interpret a reason code written as text.

        In XML a decimal string is the correct US encoding, except that a 4-character
        string with a leading zero (``"0110"``) is taken for hexadecimal.  In JSON any
        string is wrong: it must be a number.
        """
        stripped = text.strip()
        decimal_ok = stripped.isdigit() and not (len(stripped) == 4 and stripped.startswith("0"))
        if xml_text and decimal_ok:
            return int(stripped)
        as_hex = _HEX_CODE.fullmatch(stripped)
        padded = len(stripped) == 4 and stripped[0] == "0"
        looks_hex = as_hex is not None and (not stripped.isdigit() or padded)
        if looks_hex:
            assert as_hex is not None
            guess = int(as_hex.group("hex"), 16)
            self.dev("response.reason_not_number",
                     f"{name} is the string {text!r}, apparently hexadecimal (0x{guess:04X} = {guess}); "
                     "reason codes are US numbers such as 290 or 45056", location)
            return guess if self.policy is Strictness.LENIENT else None
        if stripped.isdigit():
            self.dev("response.reason_not_number",
                     f"{name} is the string {text!r}; in DICOM JSON a US value is a JSON number", location)
            return int(stripped) if self.policy is Strictness.LENIENT else None
        self.dev("response.reason_not_number", f"{name} is {text!r}, not a number", location)
        return None


# -- building -----------------------------------------------------------------------------------
def store_response_dataset(
    *,
    referenced: Iterable[SopRef] = (),
    failed: Iterable[SopRef] = (),
    other_failures: Iterable[int] = (),
    retrieve_url: str | None = None,
) -> Dataset:
    """Return the Store Instances Response Module as a pydicom Dataset.

    Retrieve URL is always present (Type 2; empty when ``None``); each sequence only
    when it has items (Type 1C); Failure and Warning Reasons are US numbers.

    References
    ----------
    PS3.18 Annex I, Table I.1-1.
    """
    ds = Dataset()
    ds.add(DataElement(0x00081190, "UR", retrieve_url or ""))
    failed_items = [_ref_item(ref, instance=False) for ref in failed]
    if failed_items:
        ds.add(DataElement(0x00081198, "SQ", Sequence(failed_items)))
    ref_items = [_ref_item(ref, instance=True) for ref in referenced]
    if ref_items:
        ds.add(DataElement(0x00081199, "SQ", Sequence(ref_items)))
    other_items = []
    for code in other_failures:
        item = Dataset()
        item.add(DataElement(0x00081197, "US", int(code)))
        other_items.append(item)
    if other_items:
        ds.add(DataElement(0x0008119A, "SQ", Sequence(other_items)))
    return ds


def _ref_item(ref: SopRef, *, instance: bool) -> Dataset:
    item = Dataset()
    if ref.sop_class_uid is not None:
        item.add(DataElement(0x00081150, "UI", ref.sop_class_uid))
    if ref.sop_instance_uid is not None:
        item.add(DataElement(0x00081155, "UI", ref.sop_instance_uid))
    if instance:
        item.add(DataElement(0x00081190, "UR", ref.retrieve_url or ""))
        if ref.warning_reason is not None:
            item.add(DataElement(0x00081196, "US", int(ref.warning_reason)))
        originals = [o if isinstance(o, Dataset) else _raw_to_dataset(o) for o in ref.original_attributes]
        if originals:
            item.add(DataElement(0x04000561, "SQ", Sequence(originals)))
    if ref.failure_reason is not None:
        item.add(DataElement(0x00081197, "US", int(ref.failure_reason)))
    return item


def _raw_to_dataset(item: Mapping[str, RawAttribute]) -> Dataset:
    ds = Dataset()
    for tag, attr in item.items():
        vr = attr.vr or "UN"
        if vr == "SQ":
            ds.add(DataElement(int(tag, 16), vr, Sequence([_raw_to_dataset(i) for i in attr.items])))
            continue
        values = list(attr.values)
        value = None if not values else values[0] if len(values) == 1 else values
        ds.add(DataElement(int(tag, 16), vr, value, validation_mode=0))
    return ds


def build_store_response(
    *,
    referenced: Iterable[SopRef] = (),
    failed: Iterable[SopRef] = (),
    other_failures: Iterable[int] = (),
    retrieve_url: str | None,
    media_type: str = mt.APPLICATION_DICOM_JSON,
) -> bytes:
    """Encode a Store Instances Response Module as DICOM JSON or DICOM XML.

    Parameters
    ----------
    referenced, failed : iterable of SopRef
        Stored and failed instances.
    other_failures : iterable of int
        Failure Reasons not tied to one instance (Other Failures Sequence).
    retrieve_url : str or None
        The study-level Retrieve URL; ``None`` writes it empty (Type 2).
    media_type : str
        ``APPLICATION_DICOM_JSON`` (or the legacy ``APPLICATION_JSON``) or ``APPLICATION_DICOM_XML``.

    Returns
    -------
    bytes
        UTF-8 JSON object or Native DICOM Model document.

    Raises
    ------
    UsageError
        ``media_type`` is not a DICOM JSON or XML media type.

    References
    ----------
    PS3.18 §10.5.3.3, Annex I; Annex F; PS3.19 A.1.
    """
    essence = mt.parse_media_type(media_type).essence
    ds = store_response_dataset(referenced=referenced, failed=failed, other_failures=other_failures,
                                retrieve_url=retrieve_url)
    if essence in _JSON_TYPES:
        return json.dumps(ds.to_json_dict(), separators=(",", ":")).encode("utf-8")
    if essence == mt.APPLICATION_DICOM_XML:
        return xml_model.dataset_to_xml(ds)
    raise UsageError(f"a Store Instances Response is DICOM JSON or DICOM XML, not {media_type!r}")


# -- status ---------------------------------------------------------------------------------------
def expected_status(referenced_count: int, failed_count: int, warnings: bool) -> set[int]:
    """Return the HTTP status codes Table 10.5.3-1 allows for an outcome.

    Parameters
    ----------
    referenced_count : int
        Instances stored (Referenced SOP Sequence items).
    failed_count : int
        Instances not stored, plus failures not tied to an instance.
    warnings : bool
        Whether any stored instance carries a Warning Reason.

    Returns
    -------
    set of int
        ``{200}`` when all were stored without warnings; ``{200, 202}`` when all were
        stored but some with warnings (the standard is silent there, STOW-RESP-002);
        ``{202}`` when some were stored and some failed; ``{409}`` when none was stored
        and failures are listed; ``{400, 409}`` when the outcome lists nothing at all.

    References
    ----------
    PS3.18 §10.5.3, Table 10.5.3-1.

    Examples
    --------
    >>> sorted(expected_status(2, 0, warnings=True))
    [200, 202]
    """
    if referenced_count > 0 and failed_count == 0:
        return {200, 202} if warnings else {200}
    if referenced_count > 0:
        return {202}
    if failed_count > 0:
        return {409}
    return {400, 409}
