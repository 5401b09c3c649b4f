# ruff: noqa: D401 - a check's first docstring line states the property that must hold, not a command
"""WIC content rules: the attributes an Image Capturer sends with each instance (RAD-108).

The WIC "critical attributes" table could not be read, so the rules here are a
*derived baseline* (catalogue IDs WIC-CA-001 to WIC-CA-015, confidence D or U).
They are a configurable profile: each check's options map a catalogue ID to an
attribute rule, so a vendor holding the WIC supplement can change which
attributes a rule asks for without touching code.  How severe a miss is comes
from the catalogue (MUST -> error, SHOULD -> warning) and can be re-levelled,
or the rule switched off, in the ``rules:`` part of a rule profile.

Attribute rule (the value of one option, keyed by catalogue ID)::

    attributes: {Keyword: value | present}   # each must hold: "value" = present and not empty
                                             # (a known value), "present" = present, may be empty
    any_of: [Keyword, ...]                   # at least one of them present with a value
    sop_classes: [UID, ...]                  # apply only to these SOP Classes (default: every instance)
    values: {Keyword: [allowed, ...]}        # when present with a value, it must be one of these
    values_by_sop_class: {UID: {Keyword: [allowed, ...]}}
    note: free text                          # ignored; for the profile's reader

A ``null`` option removes the rule from that check.  Only the instances the
Capturer sends are judged: the datasets of the request's metadata parts and its
PS3.10 parts.

References
----------
IHE RAD WIC supplement (critical attributes; not available, hence the baseline);
PS3.3 C.7.1.1 (Patient), C.7.2.1 (General Study), C.7.3.1 (General Series),
C.7.5.1 (General Equipment), C.8.6.1 (SC Equipment), C.12.1 (SOP Common),
A.32.4 / A.32.7 (VL and Video Photographic), A.45.1 (Encapsulated PDF);
PS3.18 §10.5.1.4, Annex F.2.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from wic_conformance.dicomweb.charset import char_encodable, codecs_for_terms
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.stow import StowRequest
from wic_conformance.errors import ConfigError
from wic_conformance.findings import Finding, MissingAttribute, raise_all
from wic_conformance.validate.registry import CheckContext, Needs, check

__all__ = [
    "CHARACTER_SET_OPTIONS",
    "CONVERSION_TYPE_RULES",
    "ENCAPSULATED_DOCUMENT_RULES",
    "PATIENT_IDENTITY_RULES",
    "SERIES_CONTEXT_RULES",
    "SOP_IDENTITY_RULES",
    "STUDY_CONTEXT_RULES",
    "AttributeRule",
    "parse_rule",
    "wic_content_character_set_declared",
    "wic_content_conversion_type_present",
    "wic_content_encapsulated_document_attributes",
    "wic_content_has_patient_identity",
    "wic_content_has_series_context",
    "wic_content_has_sop_identity",
    "wic_content_has_study_context",
]

_TAGS = ("capturer", "wic-content")

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_SC = (
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
)
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_CDA = "1.2.840.10008.5.1.4.1.1.104.2"

#: WIC-CA-001..004 (Patient module; WIC-CA-003 is Type 3 and unverified).
PATIENT_IDENTITY_RULES: dict[str, Any] = {
    "WIC-CA-001": {"attributes": {"PatientName": "value"}},
    "WIC-CA-002": {"attributes": {"PatientID": "value"}},
    "WIC-CA-003": {"any_of": ["IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence"]},
    "WIC-CA-004": {"attributes": {"PatientBirthDate": "present", "PatientSex": "present"}},
}
#: WIC-CA-005..006 (General Study module).
STUDY_CONTEXT_RULES: dict[str, Any] = {
    "WIC-CA-005": {"attributes": {"StudyInstanceUID": "value"}},
    "WIC-CA-006": {"attributes": {
        "AccessionNumber": "present", "StudyDate": "present", "StudyTime": "present",
        "ReferringPhysicianName": "present", "StudyID": "present",
    }},
}
#: WIC-CA-007..010 (General Series, General Image, General Equipment modules).
SERIES_CONTEXT_RULES: dict[str, Any] = {
    "WIC-CA-007": {"attributes": {"SeriesInstanceUID": "value"}},
    "WIC-CA-008": {
        "attributes": {"Modality": "value"},
        "values_by_sop_class": {
            VL_PHOTOGRAPHIC: {"Modality": ["XC"]},
            VIDEO_PHOTOGRAPHIC: {"Modality": ["XC"]},
            ENCAPSULATED_PDF: {"Modality": ["DOC"]},
            ENCAPSULATED_CDA: {"Modality": ["DOC"]},
        },
    },
    "WIC-CA-009": {"attributes": {"SeriesNumber": "present", "InstanceNumber": "present"}},
    "WIC-CA-010": {"attributes": {"Manufacturer": "present"}},
}
#: WIC-CA-011 (SOP Common).  SOP Instance UID "must be sent or supplemented", so by
#: default only the SOP Class UID is asked of the Capturer.
SOP_IDENTITY_RULES: dict[str, Any] = {
    "WIC-CA-011": {"attributes": {"SOPClassUID": "value"}},
}
#: WIC-CA-013 (SC Equipment module, in the SC and Encapsulated PDF IODs).
CONVERSION_TYPE_RULES: dict[str, Any] = {
    "WIC-CA-013": {
        "attributes": {"ConversionType": "value"},
        "sop_classes": [SECONDARY_CAPTURE, *MULTIFRAME_SC, ENCAPSULATED_PDF],
    },
}
#: WIC-CA-015 (Encapsulated Document module and the Encapsulated PDF IOD).
ENCAPSULATED_DOCUMENT_RULES: dict[str, Any] = {
    "WIC-CA-015": {
        "sop_classes": [ENCAPSULATED_PDF],
        "attributes": {
            "MIMETypeOfEncapsulatedDocument": "value", "DocumentTitle": "present",
            "ConceptNameCodeSequence": "present", "BurnedInAnnotation": "value",
            "ContentDate": "present", "ContentTime": "present", "AcquisitionDateTime": "present",
        },
        "values": {"MIMETypeOfEncapsulatedDocument": ["application/pdf"]},
    },
}
#: WIC-CA-012 settings: whether JSON/XML metadata (always Unicode) must still declare the
#: character set of non-ASCII text; PS3.18 F.2 lets the Image Manager pick ISO_IR 192.
CHARACTER_SET_OPTIONS: dict[str, Any] = {"require_in_metadata": True}

_PRESENCE = ("value", "present")
_RULE_KEYS = frozenset({"attributes", "any_of", "sop_classes", "values", "values_by_sop_class", "note"})
_RULE_ID = re.compile(r"^[A-Z]+(?:-[A-Z]+)*-\d{3}$")
#: VRs whose text is encoded with Specific Character Set (PS3.5 §6.1.2.3).
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """One configurable content rule: which attributes a catalogue requirement asks for.

    Attributes
    ----------
    requirement : str
        The catalogue ID the findings cite.
    attributes : tuple of (keyword, presence)
        ``presence`` is ``"value"`` (present, not empty) or ``"present"`` (may be empty).
    any_of : tuple of str
        Keywords of which at least one must be present with a value.
    sop_classes : frozenset of str
        The SOP Classes the rule applies to; empty for every instance.
    values : tuple of (keyword, allowed values)
        Allowed values for any instance.
    values_by_sop_class : tuple of (SOP Class UID, ((keyword, allowed values), ...))
        Allowed values for instances of one SOP Class.
    """

    requirement: str
    attributes: tuple[tuple[str, str], ...] = ()
    any_of: tuple[str, ...] = ()
    sop_classes: frozenset[str] = frozenset()
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    values_by_sop_class: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = ()

    def applies_to(self, sop_class: str) -> bool:
        """Return whether the rule judges an instance of ``sop_class``."""
        return not self.sop_classes or sop_class in self.sop_classes

    def allowed_values(self, sop_class: str) -> list[tuple[str, tuple[str, ...]]]:
        """Return the (keyword, allowed values) constraints for an instance of ``sop_class``."""
        out = list(self.values)
        for uid, constraints in self.values_by_sop_class:
            if uid == sop_class:
                out.extend(constraints)
        return out


def _keyword(where: str, value: object) -> str:
    if not isinstance(value, str) or tag_for_keyword(value) is None:
        raise ConfigError(f"{where}: {value!r} is not a DICOM attribute keyword")
    return value


def _value_list(where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list of values")
    return tuple(str(v) for v in value)


def _constraints(where: str, raw: object) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keyword to allowed values")
    return tuple((_keyword(where, k), _value_list(f"{where}.{k}", v)) for k, v in raw.items())


def parse_rule(where: str, requirement: str, raw: object) -> AttributeRule:
    """Read one attribute rule from check options.

    Parameters
    ----------
    where : str
        Where the rule comes from, for messages (``"wic_content_has_patient_identity.WIC-CA-001"``).
    requirement : str
        The catalogue ID the rule's findings cite.
    raw : object
        The option value (a mapping of the documented shape).

    Returns
    -------
    AttributeRule
        The validated rule.

    Raises
    ------
    ConfigError
        An unknown key, an unknown attribute keyword, or a badly shaped value.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'attributes' and/or 'any_of'")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    attrs_raw = raw.get("attributes") or {}
    if not isinstance(attrs_raw, Mapping):
        raise ConfigError(f"{where}.attributes: expected a mapping of keyword to 'value' or 'present'")
    attributes: list[tuple[str, str]] = []
    for key, presence in attrs_raw.items():
        if presence not in _PRESENCE:
            raise ConfigError(f"{where}.attributes.{key}: expected 'value' or 'present', not {presence!r}")
        attributes.append((_keyword(f"{where}.attributes", key), str(presence)))
    any_of = tuple(_keyword(f"{where}.any_of", k)
                   for k in _value_list(f"{where}.any_of", raw.get("any_of", [])))
    if not attributes and not any_of and not raw.get("values") and not raw.get("values_by_sop_class"):
        raise ConfigError(f"{where}: the rule asks for nothing (no attributes, any_of or values)")
    by_class_raw = raw.get("values_by_sop_class") or {}
    if not isinstance(by_class_raw, Mapping):
        raise ConfigError(f"{where}.values_by_sop_class: expected a mapping of SOP Class UID to constraints")
    return AttributeRule(
        requirement=requirement,
        attributes=tuple(attributes),
        any_of=any_of,
        sop_classes=frozenset(_value_list(f"{where}.sop_classes", raw.get("sop_classes", []))),
        values=_constraints(f"{where}.values", raw.get("values") or {}),
        values_by_sop_class=tuple(
            (str(uid), _constraints(f"{where}.values_by_sop_class.{uid}", c))
            for uid, c in by_class_raw.items()
        ),
    )


#: Rules already read, by where they come from and the identity of their option value (kept with the
#: rule, so that an id is not reused while it is cached): judging reads the same options for every
#: exchange.  Option values are configuration, never changed in place; the oldest entries go first.
_PARSED: collections.OrderedDict[tuple[str, int], tuple[object, AttributeRule]] = collections.OrderedDict()
_PARSED_MAX = 256


def _rules(ctx: CheckContext, check_name: str) -> list[AttributeRule]:
    """Return the attribute rules configured for the running check (option keys that are catalogue IDs)."""
    rules: list[AttributeRule] = []
    for key, raw in ctx.options.items():
        if not _RULE_ID.match(str(key)):
            continue  # a setting, not a rule
        where = f"checks.{check_name}.{key}"
        if key not in ctx.catalogue:
            raise ConfigError(f"{where}: unknown requirement ID")
        if raw is None:
            continue
        parsed = _PARSED.get((where, id(raw)))
        if parsed is None or parsed[0] is not raw:
            parsed = _PARSED[(where, id(raw))] = (raw, parse_rule(where, str(key), raw))
            while len(_PARSED) > _PARSED_MAX:
                _PARSED.popitem(last=False)
        rules.append(parsed[1])
    return rules


# -- what the Capturer sent -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Sent:
    location: str
    dataset: Dataset
    is_metadata: bool

    @property
    def sop_class(self) -> str:
        value = self.dataset.get("SOPClassUID")
        if not value and hasattr(self.dataset, "file_meta"):
            value = self.dataset.file_meta.get("MediaStorageSOPClassUID")
        return str(value or "").strip()


def _sent(ctx: CheckContext, exchange: Exchange) -> Iterator[_Sent]:
    stow: StowRequest | None = ctx.stow_request(exchange)
    if stow is None:
        return
    for doc in stow.metadata:
        for i, ds in enumerate(doc.datasets):
            yield _Sent(f"{doc.location}, dataset {i + 1}", ds, True)
    for inst in stow.instances:
        if inst.dataset is not None:
            yield _Sent(inst.location, inst.dataset, False)


def _tag_text(keyword: str) -> str:
    tag = Tag(tag_for_keyword(keyword) or 0)
    return f"({tag.group:04X},{tag.element:04X})"


def _name(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    name = dictionary_description(tag) if tag is not None else keyword
    return f"{name} {_tag_text(keyword)}"


def _has_value(elem: DataElement) -> bool:
    value = elem.value
    if value is None:
        return False
    if elem.VR == "SQ":
        return len(value) > 0
    if isinstance(value, MultiValue | list | tuple):
        return any(str(v).strip() for v in value if v is not None)
    if isinstance(value, bytes | bytearray):
        return len(value) > 0
    return bool(str(value).strip())


def _values(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v).strip() for v in items if v is not None]


def _judge(rule: AttributeRule, sent: _Sent) -> list[Finding]:
    ds = sent.dataset
    sop_class = sent.sop_class
    if not rule.applies_to(sop_class):
        return []
    rid = rule.requirement
    found: list[Finding] = []
    for keyword, presence in rule.attributes:
        where = f"{sent.location} > {_tag_text(keyword)}"
        if keyword not in ds:
            found.append(MissingAttribute(requirement=rid, location=where,
                                          message=f"{_name(keyword)} is absent; {rid} asks for it"
                                                  f"{' with a value' if presence == 'value' else ''}"))
        elif presence == "value" and not _has_value(ds[keyword]):
            found.append(MissingAttribute(requirement=rid, location=where,
                                          message=f"{_name(keyword)} is present but empty; {rid} asks for a "
                                                  "known value"))
    if rule.any_of and not any(k in ds and _has_value(ds[k]) for k in rule.any_of):
        names = ", ".join(_name(k) for k in rule.any_of)
        found.append(MissingAttribute(requirement=rid, location=sent.location,
                                      message=f"none of {names} is sent with a value; {rid} asks for one"))
    for keyword, allowed in rule.allowed_values(sop_class):
        if keyword not in ds or not _has_value(ds[keyword]):
            continue
        bad = [v for v in _values(ds[keyword]) if v not in allowed]
        if bad:
            shown = "\\".join(bad)
            by_class = any(uid == sop_class for uid, _ in rule.values_by_sop_class)
            what = f" for SOP Class {sop_class}" if by_class else ""
            found.append(Finding(requirement=rid, title="Unexpected value",
                                 location=f"{sent.location} > {_tag_text(keyword)}", evidence=shown,
                                 message=f"{_name(keyword)} is {shown!r}; {rid} expects "
                                         f"{' or '.join(allowed)}{what}"))
    return found


def _run_rules(ctx: CheckContext, exchange: Exchange, check_name: str) -> None:
    rules = _rules(ctx, check_name)
    found: list[Finding] = []
    for sent in _sent(ctx, exchange):
        for rule in rules:
            found.extend(_judge(rule, sent))
    raise_all(found, f"{check_name}: attributes missing")


# -- the checks -----------------------------------------------------------------------------------
@check(requirements=["WIC-CA-001", "WIC-CA-002", "WIC-CA-003", "WIC-CA-004"], needs=[Needs.REQUEST],
       tags=_TAGS, options=PATIENT_IDENTITY_RULES)
def wic_content_has_patient_identity(ctx: CheckContext, exchange: Exchange) -> None:
    """Every instance sent identifies the patient (name, ID, issuer, birth date and sex).

    Baseline: Patient's Name and Patient ID with known values (MUST); Issuer of
    Patient ID or its qualifiers sequence (SHOULD, unverified); Patient's Birth
    Date and Sex present, possibly empty (SHOULD).

    References
    ----------
    PS3.3 C.7.1.1 (Patient module); IHE RAD WIC critical attributes (derived baseline).
    """
    _run_rules(ctx, exchange, "wic_content_has_patient_identity")


@check(requirements=["WIC-CA-005", "WIC-CA-006"], needs=[Needs.REQUEST], tags=_TAGS,
       options=STUDY_CONTEXT_RULES)
def wic_content_has_study_context(ctx: CheckContext, exchange: Exchange) -> None:
    """Every instance sent carries its study context (Study Instance UID and the Type 2 study attributes).

    References
    ----------
    PS3.3 C.7.2.1 (General Study module); IHE RAD WIC critical attributes (derived baseline).
    """
    _run_rules(ctx, exchange, "wic_content_has_study_context")


@check(requirements=["WIC-CA-007", "WIC-CA-008", "WIC-CA-009", "WIC-CA-010"], needs=[Needs.REQUEST],
       tags=_TAGS, options=SERIES_CONTEXT_RULES)
def wic_content_has_series_context(ctx: CheckContext, exchange: Exchange) -> None:
    """Every instance sent carries its series context: Series UID, a fitting Modality, numbers, Manufacturer.

    Modality is XC for VL Photographic and Video Photographic images and DOC for
    encapsulated documents.

    References
    ----------
    PS3.3 C.7.3.1 (General Series), C.7.6.1 (General Image), C.7.5.1 (General
    Equipment), A.32.4.3.1, A.32.7.3.1.
    """
    _run_rules(ctx, exchange, "wic_content_has_series_context")


@check(requirements="WIC-CA-011", needs=[Needs.REQUEST], tags=_TAGS, options=SOP_IDENTITY_RULES)
def wic_content_has_sop_identity(ctx: CheckContext, exchange: Exchange) -> None:
    """Every instance sent names its SOP Class.

    Add ``SOPInstanceUID: value`` to the rule's attributes to require the
    Capturer to send the SOP Instance UID as well.

    References
    ----------
    PS3.3 C.12.1 (SOP Common module).
    """
    _run_rules(ctx, exchange, "wic_content_has_sop_identity")


@check(requirements="WIC-CA-013", needs=[Needs.REQUEST], tags=_TAGS, options=CONVERSION_TYPE_RULES)
def wic_content_conversion_type_present(ctx: CheckContext, exchange: Exchange) -> None:
    """Secondary Capture and Encapsulated PDF instances sent carry Conversion Type (0008,0064).

    References
    ----------
    PS3.3 C.8.6.1 (SC Equipment module), A.8.1, A.45.1.
    """
    _run_rules(ctx, exchange, "wic_content_conversion_type_present")


@check(requirements="WIC-CA-015", needs=[Needs.REQUEST], tags=_TAGS, options=ENCAPSULATED_DOCUMENT_RULES)
def wic_content_encapsulated_document_attributes(ctx: CheckContext, exchange: Exchange) -> None:
    """Encapsulated PDF instances sent carry the encapsulated-document attributes.

    MIME Type of Encapsulated Document = application/pdf, Document Title,
    Concept Name Code Sequence, Burned In Annotation, Content Date/Time and
    Acquisition DateTime.

    References
    ----------
    PS3.3 A.45.1 (Encapsulated PDF IOD), C.24.2 (Encapsulated Document module).
    """
    _run_rules(ctx, exchange, "wic_content_encapsulated_document_attributes")


# -- character set --------------------------------------------------------------------------------
def _texts(ds: Dataset) -> Iterator[tuple[str, str]]:
    """Yield (tag text, value) for every text value affected by Specific Character Set, nested too."""
    for elem in ds.iterall():
        if elem.VR not in _CHARSET_VRS or elem.value is None:
            continue
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        for value in _values(elem):
            yield tag, value


@check(requirements="WIC-CA-012", needs=[Needs.REQUEST], tags=_TAGS, options=CHARACTER_SET_OPTIONS)
def wic_content_character_set_declared(ctx: CheckContext, exchange: Exchange) -> None:
    """Every instance sent with non-ASCII text declares a Specific Character Set that covers it.

    Option ``require_in_metadata`` (default true): also ask it of JSON/XML
    metadata, whose text is Unicode anyway; set it to false when the Image
    Manager is expected to add ISO_IR 192 itself.

    References
    ----------
    PS3.3 C.12.1.1.2 (Specific Character Set); PS3.5 §6.1; PS3.18 Annex F.2.
    """
    require_in_metadata = ctx.options.get("require_in_metadata", True)
    if not isinstance(require_in_metadata, bool):
        raise ConfigError("checks.wic_content_character_set_declared.require_in_metadata: "
                          "expected true or false")
    found: list[Finding] = []
    for sent in _sent(ctx, exchange):
        non_ascii = [(tag, value) for tag, value in _texts(sent.dataset) if not value.isascii()]
        if not non_ascii:
            continue
        first_tag, first_value = non_ascii[0]
        declared = _values(sent.dataset["SpecificCharacterSet"]) if "SpecificCharacterSet" in sent.dataset \
            else []
        terms = [t for t in declared if t] or []
        if not terms:
            if sent.is_metadata and not require_in_metadata:
                continue
            found.append(MissingAttribute(
                requirement="WIC-CA-012", location=f"{sent.location} > (0008,0005)",
                evidence=first_value,
                message=f"text such as {first_tag} {first_value!r} holds non-ASCII characters but Specific "
                        "Character Set (0008,0005) is not declared"))
            continue
        encodings, unknown = codecs_for_terms(terms)
        if unknown:
            found.append(Finding(
                requirement="WIC-CA-012", title="Unknown character set",
                location=f"{sent.location} > (0008,0005)", evidence="\\".join(declared),
                message=f"Specific Character Set has term(s) {unknown} that PS3.3 C.12.1.1.2 does not "
                        "define"))
            continue
        shown = "\\".join(declared)
        uncovered = sorted({ch for _tag, value in non_ascii for ch in value
                            if not ch.isascii() and not char_encodable(ch, encodings)})
        if uncovered:
            tag = next(t for t, v in non_ascii if any(ch in uncovered for ch in v))
            found.append(Finding(
                requirement="WIC-CA-012", title="Character set does not cover text",
                location=f"{sent.location} > {tag}", evidence=shown,
                message=f"Specific Character Set {shown!r} cannot represent "
                        f"{''.join(uncovered[:10])!r} found in the text (e.g. ISO_IR 192 would)"))
    raise_all(found, "Specific Character Set missing or insufficient")
