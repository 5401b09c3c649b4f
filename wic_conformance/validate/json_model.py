# ruff: noqa: D401 - a check's first docstring line states the property that must hold, not a command
"""Checks of DICOM JSON Model documents (PS3.18 Annex F): rules JSON-001 to JSON-019.

Every check judges the JSON metadata documents of an exchange (STOW-RS request
parts and standalone files) from their *raw* decoded form, so it sees exactly
what was sent.  The structural rules come from the JSON Schema shipped in
``validate/schemas/dicom_json.schema.json`` (Draft 2020-12); each titled
subschema names one structural problem, and :data:`SCHEMA_PROBLEMS` maps it to
a problem kind.  Dictionary and VR-value rules are Python (:data:`STRING_RULES`,
:data:`NUMBER_RANGES`).  :data:`PROBLEM_RULES` maps each problem kind to its
requirement ID, and :data:`DEVIATION_RULES` does the same for the parser's
``json.*`` deviations.  All problems of an exchange are computed once and
shared by the checks, each of which reports its own kinds.

JSON-020 and JSON-021 are informational and have no check.

References
----------
DICOM PS3.18 Annex F: F.2 (media type, UTF-8), F.2.1 (array), F.2.2 (attribute
objects, ordering, group length, private creators, PN, SQ, BulkDataURI and
InlineBinary VRs), F.2.3 (Table F.2.3-1, VR to JSON type), F.2.4 (backslash),
F.2.5 (empty values), F.2.6 (BulkDataURI), F.2.7 (InlineBinary).  PS3.5 §6.2
(VR definitions), §7.8.1 (private data elements).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.json_model import (
    ALL_VRS,
    BINARY_VRS,
    BULK_DATA_VRS,
    NUMBER_OR_STRING_VRS,
    NUMBER_VRS,
    STRING_VRS,
    VALUE_FIELDS,
    iter_datasets,
    json_pointer,
    json_type,
)
from wic_conformance.dicomweb.metadata import MetadataDocument
from wic_conformance.errors import WicConformanceError
from wic_conformance.findings import Finding, InvalidDicomJson, UnexpectedMediaType, raise_all
from wic_conformance.validate.registry import CheckContext, Needs, check

__all__ = [
    "BACKSLASH_VRS",
    "DEVIATION_RULES",
    "MAX_FINDINGS_PER_CHECK",
    "NUMBER_RANGES",
    "PROBLEM_RULES",
    "SCHEMA_PROBLEMS",
    "STRING_RULES",
    "Problem",
    "StringRule",
    "dicom_json_problems",
    "json_documents",
    "load_schema",
]

log = logging.getLogger(__name__)

#: Findings one check reports per exchange before summarising the rest in one more finding.
MAX_FINDINGS_PER_CHECK = 100

_TAG = re.compile(r"^[0-9A-F]{8}$")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

# -- problem kinds and their requirements ----------------------------------------------------------

#: Problem kind -> requirement ID.  One kind is reported by exactly one check.
PROBLEM_RULES: dict[str, str] = {
    "not_array": "JSON-002",
    "instance_not_object": "JSON-002",
    "member_name": "JSON-003",
    "keyword_member": "JSON-004",
    "unknown_member": "JSON-004",
    "unsorted": "JSON-005",
    "group_length": "JSON-006",
    "attribute_not_object": "JSON-007",
    "vr_missing": "JSON-007",
    "vr_invalid": "JSON-007",
    "vr_dictionary": "JSON-007",
    "value_fields": "JSON-008",
    "value_not_array": "JSON-009",
    "binary_value": "JSON-010",
    "value_type": "JSON-011",
    "at_value": "JSON-012",
    "string_value": "JSON-013",
    "number_value": "JSON-013",
    "person_name": "JSON-014",
    "sequence_item": "JSON-015",
    "inline_binary": "JSON-016",
    "inline_binary_vr": "JSON-016",
    "inline_binary_base64": "JSON-016",
    "bulk_data_uri": "JSON-017",
    "bulk_data_uri_vr": "JSON-017",
    "backslash": "JSON-018",
    "private_creator": "JSON-019",
}

#: (schema subschema title, failing keyword) -> problem kind.  Titles are those of
#: ``validate/schemas/dicom_json.schema.json``.
SCHEMA_PROBLEMS: dict[tuple[str, str], str] = {
    ("document", "type"): "not_array",
    ("instance", "type"): "instance_not_object",
    ("tag", "type"): "member_name",
    ("tag", "pattern"): "member_name",  # refined to keyword_member when the name is a DICOM keyword
    ("attribute", "type"): "attribute_not_object",
    ("attribute", "required"): "vr_missing",
    ("attribute", "additionalProperties"): "unknown_member",
    ("vr", "type"): "vr_invalid",
    ("vr", "pattern"): "vr_invalid",
    ("vr", "enum"): "vr_invalid",
    ("value", "type"): "value_not_array",
    ("inline-binary", "type"): "inline_binary",
    ("bulk-data-uri", "type"): "bulk_data_uri",
    ("bulk-data-uri", "minLength"): "bulk_data_uri",
    ("exclusive-value", "not"): "value_fields",
    ("exclusive-bulk", "not"): "value_fields",
    ("string-item", "type"): "value_type",
    ("at-item", "type"): "value_type",
    ("at-item", "pattern"): "at_value",
    ("number-item", "type"): "value_type",
    ("number-or-string-item", "type"): "value_type",
    ("person-name", "type"): "person_name",
    ("pn-group-name", "enum"): "person_name",
    ("pn-group", "type"): "person_name",
    ("pn-group", "minLength"): "person_name",
    ("pn-group", "pattern"): "person_name",
    ("sequence-item", "type"): "sequence_item",
    ("binary-value", "not"): "binary_value",
    ("inline-binary-vr", "not"): "inline_binary_vr",
    ("bulk-data-uri-vr", "not"): "bulk_data_uri_vr",
}

#: Parser deviation code -> requirement ID; ``None``: not a finding of these checks
#: (a toolkit limit, judged elsewhere, or classified from the raw document).
DEVIATION_RULES: dict[str, str | None] = {
    "json.bom": "JSON-001",
    "json.encoding": "JSON-001",
    "json.syntax": "JSON-001",
    "json.non_standard_number": "JSON-001",
    "json.number_too_long": "JSON-013",
    "json.duplicate_attribute": "JSON-003",
    "json.duplicate_member": None,  # classified by member name: vr, Value..., PN group
    "json.conversion": None,  # classified from the structural problems at its location
    "json.not_array": None,  # judged from the raw value by dicom_json_is_array
    "json.not_object": None,  # judged by dicom_json_is_array
    "json.too_large": None,  # toolkit limit, not a defect of the document
    "json.too_deep": None,  # toolkit limit
    "json.conversion_warning": None,  # pydicom's value warnings; JSON-013 judges the raw values
    "json.bulk_unresolved": None,  # the request checks judge BulkDataURI resolution (STOW-PAY-010)
}

_DEVIATION_FALLBACK = "JSON-011"
#: Problem kinds that never make pydicom's conversion fail.
_NOT_CONVERSION_CAUSES = frozenset({"unsorted", "backslash", "private_creator", "group_length"})


# -- VR value rules (PS3.5 Table 6.2-1) --------------------------------------------------------------


def _valid_date(text: str) -> bool:
    try:
        datetime.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def _da(value: str) -> str | None:
    if not re.fullmatch(r"\d{8}", value):
        return "is not YYYYMMDD"
    return None if _valid_date(value) else "is not a calendar date"


_DT = re.compile(r"(?P<y>\d{4})(?P<m>\d{2})?(?P<d>\d{2})?(?P<H>\d{2})?(?P<M>\d{2})?(?P<S>\d{2})?"
                 r"(?P<f>\.\d{1,6})?(?P<z>[+-]\d{4})?")


def _dt(value: str) -> str | None:
    m = _DT.fullmatch(value)
    if m is None:
        return "is not YYYYMMDDHHMMSS.FFFFFF&ZZXX"
    parts = [m.group(k) for k in "ymdHMS"]
    first_missing = next((i for i, p in enumerate(parts) if p is None), len(parts))
    if any(p is not None for p in parts[first_missing:]) or (m.group("f") and first_missing < 6):
        return "has components out of order"
    y, mo, d, hh, mi, ss = parts
    if mo is not None and not 1 <= int(mo) <= 12:
        return "has a month out of range"
    if d is not None and not _valid_date(f"{y}{mo}{d}"):
        return "is not a calendar date"
    if hh is not None and int(hh) > 23 or mi is not None and int(mi) > 59 or ss is not None and int(ss) > 60:
        return "has a time out of range"
    zone = m.group("z")
    if zone is not None:
        offset = int(zone[1:3]) * 60 + int(zone[3:5])
        limit = 12 * 60 if zone[0] == "-" else 14 * 60
        if int(zone[3:5]) > 59 or offset > limit:
            return "has a UTC offset out of range"
    return None


def _is(value: str) -> str | None:
    if not re.fullmatch(r" *[+-]?\d+ *", value):
        return "is not an integer string"
    return None if -(2**31) <= int(value) <= 2**31 - 1 else "is outside -2^31..2^31-1"


def _signed64(value: str) -> str | None:
    if not re.fullmatch(r"[+-]?\d+", value):
        return "is not an integer string"
    return None if -(2**63) <= int(value) <= 2**63 - 1 else "is outside the SV range"


def _unsigned64(value: str) -> str | None:
    if not re.fullmatch(r"\+?\d+", value):
        return "is not an unsigned integer string"
    return None if int(value) <= 2**64 - 1 else "is outside the UV range"


def _pn_group(value: str) -> str | None:
    if value.count("^") > 4:
        return "has more than five components"
    return None


@dataclass(frozen=True, slots=True)
class StringRule:
    """The PS3.5 definition of one VR's string values.

    ``max_len`` counts characters, or bytes when ``bytes_`` is set (for the
    ASCII-only VRs); ``pattern`` is matched in full after trailing spaces
    (insignificant padding) are removed; ``extra`` returns what else is wrong.
    """

    max_len: int | None
    pattern: re.Pattern[str] | None = None
    what: str = ""
    bytes_: bool = False
    extra: Callable[[str], str | None] | None = None
    strip: bool = True


_NO_CONTROL = r"[^\x00-\x1a\x1c-\x1f\x7f]*"  # ESC (0x1B) is allowed for code extension
_TEXT = r"[^\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]*"  # plus TAB, LF, FF, CR

#: VR -> rule for string values (JSON-013).  Values of SH/LO/PN/UC may hold a
#: backslash here: that is the SHOULD of JSON-018, judged separately.
STRING_RULES: dict[str, StringRule] = {
    "AE": StringRule(16, re.compile(r"[\x20-\x5b\x5d-\x7e]*"), "default repertoire without backslash"),
    "AS": StringRule(4, re.compile(r"\d{3}[DWMY]"), "nnnD, nnnW, nnnM or nnnY"),
    "CS": StringRule(16, re.compile(r"[A-Z0-9 _]*"), "uppercase letters, digits, space and underscore"),
    "DA": StringRule(8, None, "YYYYMMDD", extra=_da),
    "DS": StringRule(16, re.compile(r" *[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)? *"), "a decimal string",
                     bytes_=True),
    "DT": StringRule(26, None, "YYYYMMDDHHMMSS.FFFFFF&ZZXX", extra=_dt),
    "IS": StringRule(12, None, "an integer string", bytes_=True, extra=_is),
    "LO": StringRule(64, re.compile(_NO_CONTROL), "no control characters but ESC"),
    "LT": StringRule(10240, re.compile(_TEXT), "text without other control characters", strip=False),
    "SH": StringRule(16, re.compile(_NO_CONTROL), "no control characters but ESC"),
    "ST": StringRule(1024, re.compile(_TEXT), "text without other control characters", strip=False),
    "SV": StringRule(None, None, "a signed 64-bit integer", extra=_signed64),
    "TM": StringRule(14, re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?"),
                     "HHMMSS.FFFFFF"),
    "UC": StringRule(2**32 - 2, re.compile(_NO_CONTROL), "no control characters but ESC"),
    "UI": StringRule(64, re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*"),
                     "digits and dots, no empty or leading-zero components", bytes_=True, strip=False),
    "UR": StringRule(2**32 - 2, re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"), "an RFC 3986 URI"),
    "UT": StringRule(2**32 - 2, re.compile(_TEXT), "text without other control characters", strip=False),
    "UV": StringRule(None, None, "an unsigned 64-bit integer", extra=_unsigned64),
    "PN": StringRule(64, re.compile(_NO_CONTROL), "no control characters but ESC", extra=_pn_group),
}

#: VR -> (minimum, maximum, integral) for JSON number values (JSON-013).
NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {
    "US": (0, 2**16 - 1, True),
    "SS": (-(2**15), 2**15 - 1, True),
    "UL": (0, 2**32 - 1, True),
    "SL": (-(2**31), 2**31 - 1, True),
    "SV": (-(2**63), 2**63 - 1, True),
    "UV": (0, 2**64 - 1, True),
    "IS": (-(2**31), 2**31 - 1, True),
    "FL": (-3.4028234663852886e38, 3.4028234663852886e38, False),
    "FD": (-math.inf, math.inf, False),
    "DS": (-math.inf, math.inf, False),
}

#: VRs whose values should not hold a backslash (JSON-018).
BACKSLASH_VRS = frozenset({"SH", "LO", "PN", "UC"})


def _string_problem(vr: str, value: str) -> str | None:
    """Return what is wrong with a string value of ``vr`` (``None`` when it is fine)."""
    rule = STRING_RULES.get(vr)
    if rule is None or value == "":
        return None
    text = value.rstrip(" ") if rule.strip else value
    size = len(text.encode("utf-8")) if rule.bytes_ else len(text)
    if rule.max_len is not None and size > rule.max_len:
        unit = "bytes" if rule.bytes_ else "characters"
        return f"has {size} {unit}; {vr} allows at most {rule.max_len}"
    if rule.pattern is not None and not rule.pattern.fullmatch(text):
        return f"is not {rule.what}" if rule.what.startswith(("a ", "an ")) else f"breaks {vr}: {rule.what}"
    if rule.extra is not None:
        wrong = rule.extra(text)
        if wrong:
            return wrong
    return None


def _number_problem(vr: str, value: float) -> str | None:
    """Return what is wrong with a JSON number value of ``vr``."""
    bounds = NUMBER_RANGES.get(vr)
    if bounds is None:
        return None
    low, high, integral = bounds
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if integral and isinstance(value, float) and not value.is_integer():
        return f"is not an integer, as {vr} requires"
    if not low <= value <= high:
        return f"is outside the {vr} range {low:g}..{high:g}"
    return None


# -- problems ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One structural or value problem found in a DICOM JSON document.

    Attributes
    ----------
    kind : str
        A key of :data:`PROBLEM_RULES`.
    document : str
        The document's location (``"request part 1"``, a path).
    pointer : str
        JSON pointer of the offending member or value.
    message : str
        What is wrong.
    """

    kind: str
    document: str
    pointer: str
    message: str

    @property
    def requirement(self) -> str:
        """Return the requirement ID of this kind of problem."""
        return PROBLEM_RULES[self.kind]

    @property
    def location(self) -> str:
        """Return ``"<document> > <pointer>"``."""
        return _location(self.document, self.pointer)

    def finding(self) -> Finding:
        """Return the finding reporting this problem."""
        return InvalidDicomJson(requirement=self.requirement, message=self.message, location=self.location)


def _location(document: str, pointer: str) -> str:
    if document and pointer:
        return f"{document} > {pointer}"
    return document or pointer or "document root"


def _short(value: Any, limit: int = 60) -> str:
    """Return ``repr(value)``, cut to about ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(tag: str) -> str:
    """Return ``"00100010 (PatientName)"`` for a valid tag, else the name quoted."""
    if not _TAG.fullmatch(tag):
        return _short(tag)
    keyword = keyword_for_tag(int(tag, 16))
    return f"{tag} ({keyword})" if keyword else tag


@functools.cache
def load_schema() -> dict[str, Any]:
    """Return the DICOM JSON Model schema shipped with the package (Draft 2020-12)."""
    text = resources.files("wic_conformance.validate").joinpath("schemas/dicom_json.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def _instances(raw: Any) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Return the (pointer, dataset) instances of a raw document and whether it is an array."""
    if isinstance(raw, list):
        return [(json_pointer(i), item) for i, item in enumerate(raw) if isinstance(item, dict)], True
    if isinstance(raw, dict):
        return [("", raw)], False
    return [], False


def _attribute_context(root: Any, path: Sequence[str | int]) -> tuple[str, dict[str, Any] | None]:
    """Return the tag and attribute object that contain ``path`` (relative to the array root).

    The model alternates instance index, tag, ``Value``, item index, tag...: tags sit at
    positions 1, 4, 7, ...
    """
    tag = ""
    attr: dict[str, Any] | None = None
    node = root
    for position, step in enumerate(path):
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
        if position % 3 == 1:
            tag = str(step)
            attr = node if isinstance(node, dict) else None
    return tag, attr


def _schema_problems(document: str, raw: Any, is_array: bool) -> Iterator[Problem]:
    """Validate ``raw`` against the schema and translate every error into a :class:`Problem`."""
    root = raw if is_array else [raw]
    for error in _validator().iter_errors(root):
        yield from _translate(document, root, error, is_array)


def _translate(document: str, root: Any, error: ValidationError, is_array: bool) -> Iterator[Problem]:
    title = str(error.schema.get("title", "")) if isinstance(error.schema, dict) else ""
    keyword = str(error.validator)
    kind = SCHEMA_PROBLEMS.get((title, keyword))
    if kind is None:
        raise WicConformanceError(
            f"schema error ({title!r}, {keyword!r}) has no problem kind: {error.message}")
    path = list(error.absolute_path)

    def pointer(*extra: str | int) -> str:
        parts = [*path, *extra]
        if not is_array:
            parts = parts[1:]
        return json_pointer(*parts)

    tag, attr = _attribute_context(root, path)
    label = _label(tag)
    vr = str(attr["vr"]) if isinstance(attr, dict) and isinstance(attr.get("vr"), str) else "?"
    value = error.instance
    if kind == "member_name":
        name = str(value)
        keyword_tag = tag_for_keyword(name)
        if keyword_tag is not None:
            yield Problem("keyword_member", document, pointer(name),
                          f"member {_short(name)} is a DICOM keyword; the model names attributes only by tag "
                          f"(here {keyword_tag:08X})")
            return
        hint = ""
        if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
            hint = f" (write {name.upper()})"
        elif re.fullmatch(r"\(?[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)?", name):
            hint = f" (write {name.strip('()').replace(',', '').upper()})"
        yield Problem(kind, document, pointer(name),
                      f"member name {_short(name)} is not 8 uppercase hexadecimal digits{hint}")
        return
    if kind == "unknown_member":
        allowed = {"vr", *VALUE_FIELDS}
        for name in (k for k in value if k not in allowed):
            what = "a keyword member" if name.lower() == "keyword" else f"member {_short(name)}"
            yield Problem(kind, document, pointer(name), f"attribute {label} has {what}; only vr, Value, "
                          "BulkDataURI and InlineBinary are defined")
        return
    present = [k for k in VALUE_FIELDS if isinstance(value, dict) and k in value]
    messages: dict[str, Callable[[], str]] = {
        "not_array": lambda: f"the document is {json_type(value)}, not an array of datasets",
        "instance_not_object": lambda: f"array element is {json_type(value)}, not a dataset object",
        "attribute_not_object": lambda: f"attribute {label} is {json_type(value)}, not an object with a vr",
        "vr_missing": lambda: f"attribute {label} has no \"vr\"",
        "vr_invalid": lambda: f"attribute {label} has vr {_short(value)}, which is not a PS3.5 VR",
        "value_fields": lambda: f"attribute {label} has {' and '.join(present)}; at most one is allowed",
        "value_not_array": lambda: f"Value of {label} is {json_type(value)}; it must be an array, even for "
                                   "one value",
        "binary_value": lambda: f"attribute {label} (VR {vr}) has a Value; {vr} is sent as InlineBinary or "
                                "BulkDataURI",
        "value_type": lambda: f"value {_short(value)} of {label} is {json_type(value)}; VR {vr} requires "
                              f"{_expected_type(vr)}",
        "at_value": lambda: f"AT value {_short(value)} of {label} is not an 8-digit uppercase hexadecimal tag",
        "person_name": lambda: _person_name_message(label, keyword, value),
        "sequence_item": lambda: f"item of sequence {label} is {json_type(value)}, not a dataset object",
        "inline_binary": lambda: f"InlineBinary of {label} is {json_type(value)}; it must be one base64 "
                                 "string",
        "inline_binary_vr": lambda: f"attribute {label} has VR {vr} with InlineBinary, which only OB, OD, "
                                    "OF, OL, OV, OW and UN may use",
        "bulk_data_uri": lambda: f"BulkDataURI of {label} is "
                                 f"{'empty' if value == '' else json_type(value)}; it must be a URI string",
        "bulk_data_uri_vr": lambda: f"attribute {label} has VR {vr} with a BulkDataURI; allowed only for "
                                    f"{' '.join(sorted(BULK_DATA_VRS))}",
    }
    yield Problem(kind, document, pointer(), messages[kind]())


def _expected_type(vr: str) -> str:
    if vr in STRING_VRS:
        return "strings"
    if vr in NUMBER_VRS:
        return "numbers"
    if vr in NUMBER_OR_STRING_VRS:
        return "numbers or strings"
    return "another type"


def _person_name_message(label: str, keyword: str, value: Any) -> str:
    if keyword == "type":
        return f"PN value of {label} is {json_type(value)}; it must be an object with Alphabetic, " \
               "Ideographic or Phonetic groups"
    if keyword == "enum":
        return (f"PN value of {label} has group {_short(value)}; only Alphabetic, Ideographic and Phonetic "
                "are defined")
    if keyword == "minLength":
        return f"PN value of {label} has an empty component group; empty groups are omitted"
    if keyword == "pattern":
        return f"PN group {_short(value)} of {label} holds '='; groups are separate members, not '='-joined"
    return f"PN group of {label} is {json_type(value)}, not a string"


def _value_problems(document: str, ds_pointer: str, ds: dict[str, Any]) -> Iterator[Problem]:
    """Yield the value, ordering, group length and private-block problems of one dataset object."""
    names = list(ds)
    for before, after in zip(names, names[1:], strict=False):
        if after < before:
            yield Problem("unsorted", document, ds_pointer + json_pointer(after),
                          f"attribute {_label(after)} follows {_label(before)}; attributes must be sorted "
                          "ascending by tag")
            break
    yield from _private_problems(document, ds_pointer, names, ds)
    for tag, attr in ds.items():
        if not _TAG.fullmatch(tag):
            continue
        at = ds_pointer + json_pointer(tag)
        number = int(tag, 16)
        if number & 0xFFFF == 0:
            yield Problem("group_length", document, at,
                          f"group length attribute {tag} is present; the model has no group lengths")
            continue
        if not isinstance(attr, dict) or not isinstance(attr.get("vr"), str) or attr["vr"] not in ALL_VRS:
            continue
        vr = attr["vr"]
        inline = attr.get("InlineBinary")
        if isinstance(inline, str) and not _is_base64(inline):
            yield Problem("inline_binary_base64", document, at + json_pointer("InlineBinary"),
                          f"InlineBinary of {_label(tag)} is not valid base64 (RFC 4648, no line breaks)")
        values = attr.get("Value")
        if isinstance(values, list) and vr not in BINARY_VRS and vr != "SQ":
            yield from _item_problems(document, at, tag, vr, values)


def _item_problems(document: str, at: str, tag: str, vr: str, values: list[Any]) -> Iterator[Problem]:
    for j, item in enumerate(values):
        where = at + json_pointer("Value", j)
        texts: list[tuple[str, str]] = []
        if vr == "PN" and isinstance(item, dict):
            texts = [(where + json_pointer(g), v) for g, v in item.items()
                     if g in _PN_GROUPS and isinstance(v, str)]
        elif isinstance(item, str) and vr != "AT":
            texts = [(where, item)]
        elif isinstance(item, int | float) and not isinstance(item, bool):
            wrong = _number_problem(vr, item)
            if wrong:
                yield Problem("number_value", document, where, f"value {item!r} of {_label(tag)} {wrong}")
        for pointer, text in texts:
            wrong = _string_problem(vr, text)
            if wrong:
                yield Problem("string_value", document, pointer,
                              f"{vr} value {_short(text)} of {_label(tag)} {wrong}")
            if vr in BACKSLASH_VRS and "\\" in text:
                yield Problem("backslash", document, pointer,
                              f"{vr} value of {_label(tag)} holds a backslash, which becomes a value "
                              "separator when written to binary")


def _private_problems(document: str, ds_pointer: str, names: list[str], ds: dict[str, Any]
                      ) -> Iterator[Problem]:
    """Yield JSON-019 problems: each private block needs its creator, earlier in the dataset."""
    position = {name: i for i, name in enumerate(names)}
    for name in names:
        if not _TAG.fullmatch(name):
            continue
        group, element = int(name[:4], 16), int(name[4:], 16)
        if group % 2 == 0 or group in (0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF):
            continue
        if 0x0010 <= element <= 0x00FF:
            creator = ds[name]
            values = creator.get("Value") if isinstance(creator, dict) else None
            if not (isinstance(values, list) and values and isinstance(values[0], str) and values[0].strip()):
                yield Problem("private_creator", document, ds_pointer + json_pointer(name),
                              f"private creator {name} has no value")
            continue
        if element < 0x1000:
            continue
        creator_tag = f"{group:04X}00{element >> 8:02X}"
        if creator_tag not in position:
            yield Problem("private_creator", document, ds_pointer + json_pointer(name),
                          f"private attribute {name} has no private creator {creator_tag} in its dataset")
        elif position[creator_tag] > position[name]:
            yield Problem("private_creator", document, ds_pointer + json_pointer(name),
                          f"private attribute {name} precedes its private creator {creator_tag}")


def _dictionary_vrs(tag: int) -> frozenset[str]:
    """Return the VRs the data dictionary allows for ``tag`` (empty when unknown or private data)."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2:
        return frozenset({"LO"}) if 0x0010 <= element <= 0x00FF else frozenset()
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return frozenset()
    return frozenset(v.strip() for v in vr.split(" or ") if v.strip() in ALL_VRS)


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(text) % 4 == 0


def _dictionary_problems(doc: MetadataDocument, allow_un: bool) -> Iterator[Problem]:
    """Yield a problem for each attribute whose vr the data dictionary does not allow."""
    for pointer, instance in _instances(doc.raw)[0]:
        for ds_pointer, ds, _depth in iter_datasets(instance, pointer):
            for tag, attr in ds.items():
                vr = attr.get("vr") if isinstance(attr, dict) else None
                if not (_TAG.fullmatch(tag) and isinstance(vr, str) and vr in ALL_VRS):
                    continue
                expected = _dictionary_vrs(int(tag, 16))
                if expected and vr not in expected and not (allow_un and vr == "UN"):
                    yield Problem("vr_dictionary", doc.location, ds_pointer + json_pointer(tag, "vr"),
                                  f"attribute {_label(tag)} has vr {vr!r}; the data dictionary gives "
                                  f"{' or '.join(sorted(expected))}")


def _document_problems(doc: MetadataDocument) -> list[Problem]:
    raw = doc.raw
    if raw is None:
        return []
    problems: list[Problem] = []
    instances, is_array = _instances(raw)
    if not is_array:
        problems.append(Problem("not_array", doc.location, "",
                                f"the document is {json_type(raw)}, not an array of datasets"))
        if not instances:
            return problems
    problems.extend(_schema_problems(doc.location, raw, is_array))
    for pointer, instance in instances:
        for ds_pointer, ds, _depth in iter_datasets(instance, pointer):
            problems.extend(_value_problems(doc.location, ds_pointer, ds))
    return problems


def json_documents(ctx: CheckContext, exchange: Exchange) -> list[MetadataDocument]:
    """Return the DICOM JSON documents of ``exchange`` (request parts, then files)."""
    return [doc for doc in ctx.metadata(exchange) if doc.is_json]


def dicom_json_problems(ctx: CheckContext, exchange: Exchange) -> list[Problem]:
    """Return the structural and value problems of the exchange's JSON documents (computed once).

    The data dictionary comparison (``vr_dictionary``) is not included: it
    depends on the options of ``dicom_json_vr_matches_dictionary``.

    Parameters
    ----------
    ctx : CheckContext
        Holds the cache.
    exchange : Exchange
        The exchange judged.

    Returns
    -------
    list of Problem
        In document order.
    """

    def make() -> list[Problem]:
        out: list[Problem] = []
        for doc in json_documents(ctx, exchange):
            out.extend(_document_problems(doc))
        return out

    result: list[Problem] = ctx.cached(exchange, "dicom_json.problems", make)
    return result


def _report(ctx: CheckContext, exchange: Exchange, kinds: Iterable[str]) -> None:
    """Raise the findings for the problems of ``kinds``."""
    wanted = frozenset(kinds)
    _raise_capped(p.finding() for p in dicom_json_problems(ctx, exchange) if p.kind in wanted)


def _raise_capped(findings: Iterable[Finding]) -> None:
    found = list(findings)
    if len(found) > MAX_FINDINGS_PER_CHECK:
        rest = found[MAX_FINDINGS_PER_CHECK:]
        last = rest[0]
        found = found[:MAX_FINDINGS_PER_CHECK]
        found.append(type(last)(requirement=last.requirement, location=last.location,
                                message=f"{len(rest)} more findings of this check are not listed"))
    raise_all(found, "DICOM JSON findings")


# -- checks ------------------------------------------------------------------------------------------


@check(requirements="JSON-001", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_media_type_is_dicom_json(ctx: CheckContext, exchange: Exchange) -> None:
    """DICOM JSON metadata is labelled application/dicom+json, with no charset other than UTF-8.

    References
    ----------
    PS3.18 F.2; PS3.18 §8.7.3.5 (DICOM media types).
    """
    found: list[Finding] = []
    for doc in json_documents(ctx, exchange):
        if doc.media_type != mt.APPLICATION_DICOM_JSON:
            found.append(UnexpectedMediaType(
                requirement="JSON-001", location=_location(doc.location, ""),
                message=f"DICOM JSON is labelled {doc.media_type}; "
                        f"the media type is {mt.APPLICATION_DICOM_JSON}"))
    stow = ctx.stow_request(exchange) if exchange.request is not None else None
    for part in getattr(stow, "parts", ()):
        ctype = part.content_type
        if ctype is None or not (ctype.is_(mt.APPLICATION_DICOM_JSON) or ctype.is_(mt.APPLICATION_JSON)):
            continue
        charset = ctype.charset
        if charset is not None and charset != "utf-8":
            found.append(UnexpectedMediaType(
                requirement="JSON-001", location=f"request part {part.index + 1}",
                message=f"DICOM JSON part declares charset={charset}; DICOM JSON is always UTF-8",
                evidence=str(ctype)))
    raise_all(found, "DICOM JSON media type findings")


@check(requirements=["JSON-001", "JSON-003", "JSON-004", "JSON-007", "JSON-008", "JSON-009", "JSON-010",
                     "JSON-011", "JSON-012", "JSON-013", "JSON-014", "JSON-015", "JSON-016", "JSON-017"],
       needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_document_decodes(ctx: CheckContext, exchange: Exchange) -> None:
    """Each DICOM JSON document is UTF-8 JSON whose datasets convert to DICOM without loss.

    Maps the parser's deviations (:data:`DEVIATION_RULES`); a dataset pydicom
    cannot convert is reported under the rule of the structural problem at the
    failing attribute.

    References
    ----------
    PS3.18 F.2 (UTF-8 JSON), F.2.2; RFC 8259.
    """
    problems = dicom_json_problems(ctx, exchange)
    found: list[Finding] = []
    for doc in json_documents(ctx, exchange):
        for deviation in doc.deviations:
            if deviation.code not in DEVIATION_RULES:
                raise WicConformanceError(f"unmapped DICOM JSON deviation code {deviation.code!r}")
            rule = DEVIATION_RULES[deviation.code]
            if deviation.code == "json.duplicate_member":
                rule = _duplicate_rule(deviation.location)
            elif deviation.code == "json.conversion":
                rule = _conversion_rule(doc, deviation.location, problems)
            elif deviation.code in ("json.too_large", "json.too_deep"):
                log.warning("%s: %s not judged: %s", doc.location, deviation.code, deviation.message)
            if rule is None:
                continue
            found.append(InvalidDicomJson(requirement=rule, message=deviation.message,
                                          location=_location(doc.location, deviation.location)))
    _raise_capped(found)


def _duplicate_rule(pointer: str) -> str:
    member = pointer.rsplit("/", 1)[-1]
    if member == "vr":
        return "JSON-007"
    if member in VALUE_FIELDS:
        return "JSON-008"
    if member in _PN_GROUPS:
        return "JSON-014"
    return "JSON-004"


def _conversion_rule(doc: MetadataDocument, pointer: str, problems: list[Problem]) -> str:
    """Return the rule of the first structural problem at or below ``pointer``, else a fallback."""
    for problem in problems:
        if problem.kind in _NOT_CONVERSION_CAUSES:
            continue
        if problem.document == doc.location and (problem.pointer == pointer
                                                 or problem.pointer.startswith(pointer + "/")):
            return problem.requirement
    return _DEVIATION_FALLBACK


@check(requirements="JSON-002", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_is_array(ctx: CheckContext, exchange: Exchange) -> None:
    """A DICOM JSON document is one top-level array whose elements are dataset objects.

    References
    ----------
    PS3.18 F.2.1.
    """
    _report(ctx, exchange, ["not_array", "instance_not_object"])


@check(requirements="JSON-003", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_member_names_are_tags(ctx: CheckContext, exchange: Exchange) -> None:
    """Every dataset member name is an 8-digit uppercase hexadecimal tag.

    References
    ----------
    PS3.18 F.2.2.
    """
    _report(ctx, exchange, ["member_name"])


@check(requirements="JSON-004", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_has_no_keyword_members(ctx: CheckContext, exchange: Exchange) -> None:
    """No member is a keyword: datasets name attributes by tag, attributes hold only vr and value fields.

    References
    ----------
    PS3.18 F.2.2.
    """
    _report(ctx, exchange, ["keyword_member", "unknown_member"])


@check(requirements="JSON-005", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_attributes_are_sorted(ctx: CheckContext, exchange: Exchange) -> None:
    """The attributes of every dataset object are in ascending tag order.

    References
    ----------
    PS3.18 F.2.2.
    """
    _report(ctx, exchange, ["unsorted"])


@check(requirements="JSON-006", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_has_no_group_length(ctx: CheckContext, exchange: Exchange) -> None:
    """No dataset holds a group length attribute (gggg,0000).

    References
    ----------
    PS3.18 F.2.2.
    """
    _report(ctx, exchange, ["group_length"])


@check(requirements="JSON-007", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_attributes_have_vr(ctx: CheckContext, exchange: Exchange) -> None:
    """Every attribute is an object with a "vr" member holding a PS3.5 VR.

    References
    ----------
    PS3.18 F.2.2, F.2.3.
    """
    _report(ctx, exchange, ["attribute_not_object", "vr_missing", "vr_invalid"])


@check(requirements="JSON-007", needs=[Needs.METADATA], tags=["capturer", "json"], options={"allow_un": False})
def dicom_json_vr_matches_dictionary(ctx: CheckContext, exchange: Exchange) -> None:
    """The vr of every public attribute (and private creator) is one the data dictionary allows.

    Multi-VR entries such as "US or SS" and "OB or OW" allow each alternative;
    private data elements and tags unknown to pydicom's dictionary are not
    judged.  Option ``allow_un`` accepts UN for any attribute.

    References
    ----------
    PS3.18 F.2.2, F.2.3; PS3.6 (data dictionary); PS3.5 §7.8.1 (private creators are LO).
    """
    allow_un = bool(ctx.options.get("allow_un", False))
    _raise_capped(p.finding() for doc in json_documents(ctx, exchange)
                  for p in _dictionary_problems(doc, allow_un))


@check(requirements="JSON-008", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_value_fields_are_exclusive(ctx: CheckContext, exchange: Exchange) -> None:
    """An attribute holds at most one of Value, BulkDataURI and InlineBinary.

    References
    ----------
    PS3.18 F.2.2, F.2.5.
    """
    _report(ctx, exchange, ["value_fields"])


@check(requirements="JSON-009", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_values_are_arrays(ctx: CheckContext, exchange: Exchange) -> None:
    """Every Value member is a JSON array, even for a single value.

    References
    ----------
    PS3.18 F.2.4, F.2.5.
    """
    _report(ctx, exchange, ["value_not_array"])


@check(requirements="JSON-010", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_binary_vrs_have_no_value(ctx: CheckContext, exchange: Exchange) -> None:
    """Attributes with VR OB, OD, OF, OL, OV, OW or UN carry no Value member.

    References
    ----------
    PS3.18 F.2.2.
    """
    _report(ctx, exchange, ["binary_value"])


@check(requirements="JSON-011", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_value_types_match_vr(ctx: CheckContext, exchange: Exchange) -> None:
    """Each Value item has the JSON type Table F.2.3-1 gives its VR (null for an empty value).

    References
    ----------
    PS3.18 F.2.3 (Table F.2.3-1), F.2.5.
    """
    _report(ctx, exchange, ["value_type"])


@check(requirements="JSON-012", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_at_values_are_tags(ctx: CheckContext, exchange: Exchange) -> None:
    """Every AT value is an 8-digit uppercase hexadecimal tag string.

    References
    ----------
    PS3.18 F.2.3.
    """
    _report(ctx, exchange, ["at_value"])


@check(requirements="JSON-013", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_string_values_follow_vr(ctx: CheckContext, exchange: Exchange) -> None:
    """Every value obeys its VR's PS3.5 definition: format, character repertoire, length and range.

    References
    ----------
    PS3.18 F.1, F.2.3; PS3.5 §6.2 (Table 6.2-1).
    """
    _report(ctx, exchange, ["string_value", "number_value"])


@check(requirements="JSON-014", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_person_names_are_objects(ctx: CheckContext, exchange: Exchange) -> None:
    """Every PN value is an object of non-empty Alphabetic, Ideographic or Phonetic strings.

    References
    ----------
    PS3.18 F.2.2, Table F.3.1-1.
    """
    _report(ctx, exchange, ["person_name"])


@check(requirements="JSON-015", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_sequence_items_are_datasets(ctx: CheckContext, exchange: Exchange) -> None:
    """Every SQ Value item is a dataset object ({} for an empty item).

    References
    ----------
    PS3.18 F.2.2, F.2.5.
    """
    _report(ctx, exchange, ["sequence_item"])


@check(requirements="JSON-016", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_inline_binary_is_base64_string(ctx: CheckContext, exchange: Exchange) -> None:
    """InlineBinary is one valid base64 string, used only with OB, OD, OF, OL, OV, OW or UN.

    References
    ----------
    PS3.18 F.2.2, F.2.7; RFC 4648 §4.
    """
    _report(ctx, exchange, ["inline_binary", "inline_binary_vr", "inline_binary_base64"])


@check(requirements="JSON-017", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_bulk_data_uri_vr_allowed(ctx: CheckContext, exchange: Exchange) -> None:
    """A BulkDataURI is a non-empty string, used only with the VRs F.2.2 lists.

    Whether the URI resolves to a part of the request is judged by the STOW-RS request checks.

    References
    ----------
    PS3.18 F.2.2, F.2.6.
    """
    _report(ctx, exchange, ["bulk_data_uri", "bulk_data_uri_vr"])


@check(requirements="JSON-018", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_text_values_have_no_backslash(ctx: CheckContext, exchange: Exchange) -> None:
    """SH, LO, PN and UC values hold no backslash.

    References
    ----------
    PS3.18 F.2.4 (2024e and later).
    """
    _report(ctx, exchange, ["backslash"])


@check(requirements="JSON-019", needs=[Needs.METADATA], tags=["capturer", "json"])
def dicom_json_private_creators_precede_blocks(ctx: CheckContext, exchange: Exchange) -> None:
    """Every private attribute's creator element (gggg,00xx) is present, valued and earlier in its dataset.

    References
    ----------
    PS3.18 F.2.2 note 1; PS3.5 §7.8.1.
    """
    _report(ctx, exchange, ["private_creator"])
