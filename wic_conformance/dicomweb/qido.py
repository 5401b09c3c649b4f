"""QIDO-RS Search transaction: query parameters, attribute matching and result formatting.

Pure functions for an origin server: :func:`parse_qido_query` turns the query
parameters of a Search request into a :class:`QidoQuery` (or raises
:class:`QidoQueryError`, which a server answers with 400 Bad Request),
:func:`matches` decides whether one dataset matches it, and :func:`to_result`
cuts a dataset down to the attributes a response carries.

Matching follows PS3.4 C.2.2.2, with these choices where the standard leaves room:

* Person Name (PN) matching is case-insensitive (as most archives do), compares
  each component group (alphabetic, ideographic, phonetic) as well as the whole
  value, and ignores trailing empty components (``Doe^John^^`` equals ``Doe^John``).
* Other single values are compared case-sensitively, ignoring leading and
  trailing spaces (DICOM padding).
* A value made of ``*`` alone is universal matching for the VRs that allow wildcards.
* A backslash-separated value is multiple value matching (PS3.4 C.2.2.2.8): any
  of the values may match.  For UIDs a comma separates list items too
  (PS3.18 §8.3.4.1).
* A multi-valued attribute matches when any of its values matches.
* Range matching on DA, TM and DT compares digits; a bound given with less
  precision covers its whole period (``-1200`` includes 12:00:59).  Time zone
  offsets of DT values are ignored, and the combined date-time matching of
  PS3.4 C.2.2.2.5.1 is not done.
* Sequence matching and sequence attribute paths (``00400275.00401001``) are not
  supported: such keys are ignored and reported in :attr:`QidoQuery.warnings`,
  which a server sends as ``Warning: 299`` header fields (PS3.18 §8.3.4).
* ``fuzzymatching=true`` is recorded but matching stays literal; this is
  reported in :attr:`QidoQuery.warnings` too.

References
----------
DICOM PS3.18 §8.3.4 (query parameters), §10.6 (Search transaction), Tables 10.6.3-3, 10.6.3-4
and 10.6.3-5 (default result attributes); PS3.4 C.2.2.2 (attribute matching).
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

__all__ = [
    "BULK_DATA_TAGS",
    "Match",
    "MatchKind",
    "QidoQuery",
    "QidoQueryError",
    "QueryLevel",
    "is_bulk_data",
    "level_attributes",
    "matches",
    "parse_qido_query",
    "result_attributes",
    "to_result",
    "without_bulk_data",
]


class QidoQueryError(ValueError):
    """The query parameters of a Search request are invalid; a server answers 400 Bad Request."""


class QueryLevel(StrEnum):
    """The level a Search transaction returns results at (PS3.18 §10.6.1)."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class MatchKind(StrEnum):
    """The kind of matching a key requests (PS3.4 C.2.2.2)."""

    UNIVERSAL = "universal"
    SINGLE_VALUE = "single_value"
    WILDCARD = "wildcard"
    UID_LIST = "uid_list"
    RANGE = "range"
    MULTIPLE_VALUE = "multiple_value"


#: VRs whose values may hold the ``*`` and ``?`` wildcards (PS3.4 C.2.2.2.4).
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL", "UV", "SV"})
_DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

#: Binary values longer than this many bytes are bulk data (pydicom's ``to_json_dict`` default).
_BULK_THRESHOLD = 1024

#: Attributes that are always bulk data, whatever their length (PS3.18 §8.4.1.2 / §10.4.1.1.2).
BULK_DATA_TAGS = frozenset({
    0x7FE00008,  # FloatPixelData
    0x7FE00009,  # DoubleFloatPixelData
    0x7FE00010,  # PixelData
    0x00420011,  # EncapsulatedDocument
    0x54001010,  # WaveformData
    0x56000020,  # SpectroscopyData
})

_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_HEX_TAG_RE = re.compile(r"[0-9A-Fa-f]{8}")
_DIGITS_RE = re.compile(r"[0-9]+")
_TM_RE = re.compile(r"(?:[01][0-9]|2[0-3])(?:[0-5][0-9](?:(?:[0-5][0-9]|60)(?:\.[0-9]{1,6})?)?)?")
_DT_RE = re.compile(
    r"(?P<dt>[0-9]{4}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:\.[0-9]{1,6})?)?)?)?)?)?)"
    r"(?P<tz>[+-][0-9]{4})?"
)

_RESERVED = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
#: Query parameters of every request (PS3.18 §8.3.3) that content negotiation handles, not the search.
_HTTP_LAYER_PARAMS = frozenset({"accept", "charset"})

_FUZZY_WARNING = "The fuzzymatching parameter is not supported. Only literal matching has been performed."


# --- the IE level of attributes, for includefield=all --------------------------------------------

_STUDY_KEYWORDS = """
SpecificCharacterSet TimezoneOffsetFromUTC InstanceAvailability RetrieveURL RetrieveAETitle PatientName
PatientID IssuerOfPatientID IssuerOfPatientIDQualifiersSequence TypeOfPatientID PatientBirthDate
PatientBirthTime PatientSex OtherPatientIDsSequence OtherPatientNames EthnicGroup PatientComments
PatientSpeciesDescription PatientSpeciesCodeSequence PatientBreedDescription PatientBreedCodeSequence
BreedRegistrationSequence ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization
PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence QualityControlSubject
StrainDescription StrainNomenclature StrainCodeSequence GeneticModificationsSequence
PatientBirthDateInAlternativeCalendar PatientDeathDateInAlternativeCalendar PatientAlternativeCalendar
PatientSexNeutered ReferencedPatientSequence ReferencedPatientPhotoSequence ClinicalTrialSponsorName
ClinicalTrialProtocolID ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName
ClinicalTrialSubjectID ClinicalTrialSubjectReadingID StudyInstanceUID StudyDate StudyTime
ReferringPhysicianName ReferringPhysicianIdentificationSequence ConsultingPhysicianName
ConsultingPhysicianIdentificationSequence StudyID AccessionNumber IssuerOfAccessionNumberSequence
StudyDescription PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy
PhysiciansReadingStudyIdentificationSequence RequestingServiceCodeSequence ReferencedStudySequence
ProcedureCodeSequence ReasonForPerformedProcedureCodeSequence AdmittingDiagnosesDescription
AdmittingDiagnosesCodeSequence PatientAge PatientSize PatientWeight PatientSizeCodeSequence
PatientBodyMassIndex MeasuredAPDimension MeasuredLateralDimension MedicalAlerts Allergies SmokingStatus
PregnancyStatus LastMenstrualDate PatientState AdmissionID IssuerOfAdmissionIDSequence ServiceEpisodeID
ServiceEpisodeDescription IssuerOfServiceEpisodeIDSequence Occupation AdditionalPatientHistory
ReasonForVisit ReasonForVisitCodeSequence ClinicalTrialTimePointID ClinicalTrialTimePointDescription
ConsentForClinicalTrialUseSequence ModalitiesInStudy SOPClassesInStudy NumberOfStudyRelatedSeries
NumberOfStudyRelatedInstances NumberOfPatientRelatedStudies NumberOfPatientRelatedSeries
NumberOfPatientRelatedInstances
"""

_SERIES_KEYWORDS = """
Modality SeriesInstanceUID SeriesNumber Laterality SeriesDate SeriesTime PerformingPhysicianName
PerformingPhysicianIdentificationSequence ProtocolName SeriesDescription SeriesDescriptionCodeSequence
OperatorsName OperatorIdentificationSequence ReferencedPerformedProcedureStepSequence
RelatedSeriesSequence BodyPartExamined PatientPosition SmallestPixelValueInSeries
LargestPixelValueInSeries RequestAttributesSequence PerformedProcedureStepID
PerformedProcedureStepStartDate PerformedProcedureStepStartTime PerformedProcedureStepEndDate
PerformedProcedureStepEndTime PerformedProcedureStepDescription PerformedProtocolCodeSequence
CommentsOnThePerformedProcedureStep AnatomicalOrientationType TreatmentSessionUID Manufacturer
InstitutionName InstitutionAddress StationName InstitutionalDepartmentName
InstitutionalDepartmentTypeCodeSequence ManufacturerModelName ManufacturerDeviceClassUID
DeviceSerialNumber SoftwareVersions DeviceUID GantryID UDISequence SpatialResolution
DateOfLastCalibration TimeOfLastCalibration FrameOfReferenceUID PositionReferenceIndicator
ClinicalTrialCoordinatingCenterName ClinicalTrialSeriesID ClinicalTrialSeriesDescription ConversionType
SecondaryCaptureDeviceID SecondaryCaptureDeviceManufacturer SecondaryCaptureDeviceManufacturerModelName
SecondaryCaptureDeviceSoftwareVersions VideoImageFormatAcquired DigitalImageFormatAcquired
NumberOfSeriesRelatedInstances
"""


def _tags(keywords: Iterable[str]) -> tuple[int, ...]:
    out: list[int] = []
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - guarded by the tests
            raise RuntimeError(f"{keyword} is not in the pydicom data dictionary")
        out.append(int(tag))
    return tuple(out)


_LEVEL_TAGS: dict[QueryLevel, frozenset[int]] = {
    QueryLevel.STUDY: frozenset(_tags(_STUDY_KEYWORDS.split())),
    QueryLevel.SERIES: frozenset(_tags(_SERIES_KEYWORDS.split())),
}

_RESULT_ATTRIBUTES: dict[QueryLevel, tuple[int, ...]] = {
    # PS3.18 Table 10.6.3-3
    QueryLevel.STUDY: _tags((
        "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
        "ModalitiesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC", "RetrieveURL",
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    )),
    # PS3.18 Table 10.6.3-4
    QueryLevel.SERIES: _tags((
        "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "RequestAttributesSequence",
        "RetrieveURL",
    )),
    # PS3.18 Table 10.6.3-5
    QueryLevel.INSTANCE: _tags((
        "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "TimezoneOffsetFromUTC", "RetrieveURL",
        "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
    )),
}

_STUDY_UID = 0x0020000D
_SERIES_UID = 0x0020000E
_RETRIEVE_URL = 0x00081190


# --- value objects -------------------------------------------------------------------------------

def _dictionary_vr(tag: int) -> str:
    """Return the dictionary VR of ``tag`` (the first of ``US or SS``), or ``""`` when unknown."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return ""
    return vr.split(" or ")[0]


@dataclass(frozen=True, slots=True)
class Match:
    """One matching key: an attribute and the value to match (PS3.18 §8.3.4.1).

    Attributes
    ----------
    tag : int
        The attribute tag.
    keyword : str
        The attribute keyword, or the 8-hex-digit tag when the dictionary does not know it.
    value : str
        The value as given in the query; ``""`` is universal matching.
    """

    tag: int
    keyword: str
    value: str

    @property
    def vr(self) -> str:
        """Return the dictionary VR of the attribute, or ``""`` for an unknown (private) attribute."""
        return _dictionary_vr(self.tag)

    @property
    def values(self) -> tuple[str, ...]:
        """Return the individual values to match: the UIDs of a UID list, the items of a multiple value."""
        if self.kind is MatchKind.UNIVERSAL:
            return ()
        if self.vr == "UI":
            return tuple(_split_uids(self.value))
        if self.kind is MatchKind.MULTIPLE_VALUE:
            return tuple(self.value.split("\\"))
        return (self.value,)

    @property
    def kind(self) -> MatchKind:
        """Return the kind of matching this key requests (PS3.4 C.2.2.2)."""
        vr = self.vr
        value = self.value
        if value == "" or (value == "*" and vr in _WILDCARD_VRS):
            return MatchKind.UNIVERSAL
        if vr == "UI":
            return MatchKind.UID_LIST if len(_split_uids(value)) > 1 else MatchKind.SINGLE_VALUE
        if vr in _RANGE_VRS and _split_range(value, vr) is not None:
            return MatchKind.RANGE
        if "\\" in value:
            return MatchKind.MULTIPLE_VALUE
        if vr in _WILDCARD_VRS and ("*" in value or "?" in value):
            return MatchKind.WILDCARD
        return MatchKind.SINGLE_VALUE


@dataclass(frozen=True, slots=True)
class QidoQuery:
    """A parsed Search request.

    Attributes
    ----------
    level : QueryLevel
        What the results are: studies, series or instances.  A ``str`` enum, so it equals ``"study"`` etc.
    study_uid, series_uid : str or None
        The Study / Series Instance UID fixed by the target resource path, if any.
    matches : tuple of Match
        The matching keys, in query order.
    include_fields : tuple of str, or ``"all"``
        Extra result attributes (keywords, or 8-hex tags for attributes the dictionary does not know).
    limit : int or None
        Maximum number of results.
    offset : int
        Number of results to skip.
    fuzzy : bool
        Whether ``fuzzymatching=true`` was asked for.
    warnings : tuple of str
        Parts of the query that were ignored; a server returns each as a ``Warning: 299`` header field.

    References
    ----------
    PS3.18 §8.3.4 (query parameters) and §10.6.1 (Search request).
    """

    level: QueryLevel
    study_uid: str | None = None
    series_uid: str | None = None
    matches: tuple[Match, ...] = ()
    include_fields: tuple[str, ...] | Literal["all"] = ()
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def include_tags(self) -> tuple[int, ...]:
        """Return the tags of :attr:`include_fields` (empty for ``"all"``)."""
        if self.include_fields == "all":
            return ()
        return tuple(_resolve_component(name, "includefield") for name in self.include_fields)

    def match_for(self, tag: int) -> Match | None:
        """Return the matching key on ``tag``, if the query has one."""
        for m in self.matches:
            if m.tag == tag:
                return m
        return None


# --- parsing -------------------------------------------------------------------------------------

def _resolve_component(name: str, param: str) -> int:
    """Resolve one keyword or 8-hex tag to a tag, or raise :class:`QidoQueryError`."""
    if _HEX_TAG_RE.fullmatch(name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is not None:
        return int(tag)
    hint = ""
    lname = name.lower()
    for keyword in keyword_dict:
        if keyword.lower() == lname:
            hint = f" (did you mean {keyword!r}?)"
            break
    raise QidoQueryError(f"unknown attribute {name!r} in query parameter {param!r}{hint}")


def _resolve_path(attribute_id: str, param: str) -> tuple[int, ...]:
    """Resolve ``keyword``, ``tag`` or a dotted sequence path to its tags."""
    if not attribute_id:
        raise QidoQueryError(f"empty attribute name in query parameter {param!r}")
    parts = attribute_id.split(".")
    tags = tuple(_resolve_component(part, param) for part in parts)
    for tag, part in zip(tags[:-1], parts[:-1], strict=True):
        if _dictionary_vr(tag) not in ("SQ", ""):
            raise QidoQueryError(f"{part!r} in {param!r} is not a sequence attribute")
    return tags


def _display(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


def _parse_count(name: str, text: str, *, minimum: int) -> int:
    if not _DIGITS_RE.fullmatch(text):
        raise QidoQueryError(f"{name}={text!r} is not a non-negative integer")
    number = int(text)
    if number < minimum:
        raise QidoQueryError(f"{name}={text!r} must be at least {minimum}")
    return number


def parse_qido_query(
    level: QueryLevel | str,
    params: Sequence[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> QidoQuery:
    """Parse the query parameters of a Search request.

    Parameters
    ----------
    level : QueryLevel or str
        ``"study"``, ``"series"`` or ``"instance"``: what the target resource lists.
    params : sequence of (name, value)
        The decoded query parameters in order (repeats kept), as a web framework gives them.
    study_uid, series_uid : str, optional
        The UIDs fixed by the resource path (``/studies/{study}/series/{series}/instances``).

    Returns
    -------
    QidoQuery

    Raises
    ------
    QidoQueryError
        For an unknown attribute or parameter, a repeated matching key, a bad ``limit``,
        ``offset`` or ``fuzzymatching`` value, an invalid UID, number, date or time, an
        inverted range, or a resource path that does not exist for ``level``.

    Notes
    -----
    The ``accept`` and ``charset`` parameters (PS3.18 §8.3.3) are left to content negotiation and
    ignored here.  Sequence attribute paths are ignored for matching (with a warning) and include
    their top-level sequence as an ``includefield``.

    References
    ----------
    PS3.18 §8.3.4 (query parameters), §10.6.1 (Search request resources); PS3.4 C.2.2.2.
    """
    try:
        lvl = QueryLevel(level)
    except ValueError:
        raise QidoQueryError(f"unknown query level {level!r}") from None
    if lvl is QueryLevel.STUDY and (study_uid is not None or series_uid is not None):
        raise QidoQueryError("a study-level search has no Study or Series Instance UID in its path")
    if lvl is QueryLevel.SERIES and series_uid is not None:
        raise QidoQueryError("a series-level search has no Series Instance UID in its path")
    if series_uid is not None and study_uid is None:
        raise QidoQueryError("a Series Instance UID in the path needs a Study Instance UID before it")

    found: list[Match] = []
    seen: set[int] = set()
    include: list[str] = []
    include_all = False
    limit: int | None = None
    offset = 0
    fuzzy = False
    given: set[str] = set()
    warnings: list[str] = []
    for name, value in params:
        param = f"{name}={value}"
        if name in _RESERVED:
            if name != "includefield":
                if name in given:
                    raise QidoQueryError(f"query parameter {name!r} given more than once")
                given.add(name)
            if name == "limit":
                limit = _parse_count(name, value, minimum=1)
            elif name == "offset":
                offset = _parse_count(name, value, minimum=0)
            elif name == "fuzzymatching":
                if value not in ("true", "false"):
                    raise QidoQueryError(f"fuzzymatching={value!r} must be 'true' or 'false'")
                fuzzy = value == "true"
            else:
                for item in value.split(","):
                    item = item.strip()
                    if item == "all":
                        include_all = True
                        continue
                    path = _resolve_path(item, param)
                    display = _display(path[0])
                    if display not in include:
                        include.append(display)
            continue
        if name in _HTTP_LAYER_PARAMS:
            continue
        path = _resolve_path(name, param)
        if len(path) > 1:
            warnings.append(f"The following attributes are not supported for matching: {name}")
            display = _display(path[0])
            if display not in include:
                include.append(display)
            continue
        tag = path[0]
        if tag in seen:
            raise QidoQueryError(f"attribute {name!r} is given more than once")
        seen.add(tag)
        match = Match(tag, _display(tag), value)
        if match.vr == "SQ" and value != "":
            warnings.append(f"The following attributes are not supported for matching: {name}")
            continue
        _validate(match, param)
        found.append(match)
    if fuzzy:
        warnings.append(_FUZZY_WARNING)
    return QidoQuery(
        level=lvl,
        study_uid=study_uid,
        series_uid=series_uid,
        matches=tuple(found),
        include_fields="all" if include_all else tuple(include),
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        warnings=tuple(warnings),
    )


def _split_uids(value: str) -> list[str]:
    return [uid.strip() for uid in re.split(r"[\\,]", value)]


def _temporal_ok(text: str, vr: str) -> bool:
    """Return whether ``text`` is a valid DA, TM or DT value."""
    if vr == "DA":
        if not re.fullmatch(r"[0-9]{8}", text):
            return False
        try:
            datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return False
        return True
    if vr == "TM":
        return _TM_RE.fullmatch(text) is not None
    m = _DT_RE.fullmatch(text)
    if m is None:
        return False
    dt = m.group("dt")
    if len(dt) >= 8:
        return _temporal_ok(dt[:8], "DA") and (len(dt) == 8 or _TM_RE.fullmatch(dt[8:]) is not None)
    return len(dt) == 4 or 1 <= int(dt[4:6]) <= 12


def _split_range(value: str, vr: str) -> tuple[str, str] | None:
    """Split a range value ``lower-upper`` into its bounds, or return ``None`` if it is not a range.

    Either bound may be empty, not both.  For DT, whose values may end in a ``-ZZXX``
    offset, the one split where both sides are valid and in order is taken.
    """
    candidates: list[tuple[str, str]] = []
    for i, ch in enumerate(value):
        if ch != "-":
            continue
        lower, upper = value[:i], value[i + 1:]
        if not lower and not upper:
            continue
        if (lower and not _temporal_ok(lower, vr)) or (upper and not _temporal_ok(upper, vr)):
            continue
        candidates.append((lower, upper))
    if vr == "DT":  # "20240101-0500" is one value with an offset, not a range ending in year 500
        candidates = [c for c in candidates if not _range_is_empty(c[0], c[1], vr)]
    if len(candidates) == 1:
        return candidates[0]
    return None


def _digits(text: str, vr: str) -> str | None:
    """Return the comparable digits of a DA/TM/DT value (DT offset dropped), or ``None`` if invalid."""
    text = text.strip()
    if vr == "TM":
        text = text.replace(":", "")
    if not _temporal_ok(text, vr):
        return None
    if vr == "DT":
        m = _DT_RE.fullmatch(text)
        assert m is not None
        text = m.group("dt")
    return text.replace(".", "")


def _bound_key(text: str, vr: str) -> str:
    return _digits(text, vr) or ""


def _range_is_empty(lower: str, upper: str, vr: str) -> bool:
    """Return whether no value can lie in ``lower-upper`` (the lower bound is after the upper bound)."""
    if not lower or not upper:
        return False
    low, high = _bound_key(lower, vr), _bound_key(upper, vr)
    return low.ljust(len(high), "0")[:len(high)] > high


def _validate(match: Match, param: str) -> None:
    """Check that the value of ``match`` can be matched at all, or raise :class:`QidoQueryError`."""
    value, vr = match.value, match.vr
    kind = match.kind
    if kind is MatchKind.UNIVERSAL:
        return
    if vr == "UI":
        for uid in _split_uids(value):
            if not _UID_RE.fullmatch(uid) or len(uid) > 64:
                raise QidoQueryError(
                    f"{uid!r} in {param!r} is not a valid UID (UIDs take no wildcards; "
                    "list several separated by ',' or '\\')"
                )
        return
    if vr in _RANGE_VRS:
        if kind is MatchKind.RANGE:
            lower, upper = _split_range(value, vr) or ("", "")
            if _range_is_empty(lower, upper, vr):
                raise QidoQueryError(f"range {param!r} has its lower bound after its upper bound")
            return
        if not _temporal_ok(value, vr):
            raise QidoQueryError(f"{param!r} is neither a valid {vr} value nor a {vr} range")
        return
    if vr in _INTEGER_VRS or vr in _DECIMAL_VRS:
        for item in value.split("\\"):
            try:
                int(item) if vr in _INTEGER_VRS else float(item)
            except ValueError:
                raise QidoQueryError(f"{item!r} in {param!r} is not a valid {vr} number") from None
        return


# --- matching ------------------------------------------------------------------------------------

def _element_values(elem: DataElement) -> list[Any]:
    value = elem.value
    if value is None or value == "" or value == b"":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [v for v in value if v is not None and v != ""]
    return [value]


def _pn_normalise(text: str) -> str:
    groups = [g.strip().rstrip("^").strip() for g in text.split("=")]
    return "=".join(groups).rstrip("=").casefold()


def _pn_forms(text: str) -> set[str]:
    forms = {_pn_normalise(text)}
    forms.update(_pn_normalise(group) for group in text.split("=") if group.strip("^ "))
    return forms


def _wildcard_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _match_string(pattern: str, stored: str, vr: str) -> bool:
    wildcard = vr in _WILDCARD_VRS and ("*" in pattern or "?" in pattern)
    if vr == "PN":
        forms = _pn_forms(stored)
        if wildcard:
            regex = _wildcard_regex(_pn_normalise(pattern), ignore_case=True)
            return any(regex.fullmatch(form) for form in forms)
        return _pn_normalise(pattern) in forms
    stored = stored.strip()
    pattern = pattern.strip()
    if wildcard:
        return _wildcard_regex(pattern, ignore_case=False).fullmatch(stored) is not None
    return stored == pattern


def _match_value(pattern: str, stored: Any, vr: str) -> bool:
    if isinstance(stored, bytes | bytearray | DicomSequence | Dataset):
        return False
    if vr in _INTEGER_VRS or vr in _DECIMAL_VRS:
        try:
            return float(stored) == float(pattern)
        except (TypeError, ValueError):
            return False
    return _match_string(pattern, str(stored), vr)


def _match_range(lower: str, upper: str, stored: Any, vr: str) -> bool:
    key = _digits(str(stored), vr)
    if key is None:
        return False
    if lower:
        low = _bound_key(lower, vr)
        width = max(len(low), len(key))
        if key.ljust(width, "0") < low.ljust(width, "0"):
            return False
    if upper:
        high = _bound_key(upper, vr)
        if key.ljust(len(high), "0")[:len(high)] > high:
            return False
    return True


def _match_key(match: Match, ds: Dataset) -> bool:
    kind = match.kind
    if kind is MatchKind.UNIVERSAL:
        return True
    elem = ds.get(match.tag)
    if not isinstance(elem, DataElement):
        return False
    values = _element_values(elem)
    if not values:
        return False
    vr = match.vr or str(elem.VR)
    if kind is MatchKind.RANGE:
        lower, upper = _split_range(match.value, vr) or ("", "")
        return any(_match_range(lower, upper, v, vr) for v in values)
    if vr == "UI":
        wanted = set(_split_uids(match.value))
        return any(str(v).strip() in wanted for v in values)
    patterns = match.value.split("\\")
    return any(_match_value(p, v, vr) for p in patterns for v in values)


def _uid_of(ds: Dataset, tag: int) -> str | None:
    elem = ds.get(tag)
    if not isinstance(elem, DataElement) or elem.value in (None, ""):
        return None
    return str(elem.value).strip()


def matches(query: QidoQuery, ds: Dataset) -> bool:
    """Return whether ``ds`` matches every key of ``query`` and the UIDs of its resource path.

    Keys on attributes of any level are matched against ``ds`` (relational matching
    when ``ds`` is an instance and the query is at study or series level).  Computed
    attributes such as ModalitiesInStudy must already be in ``ds`` to be matched.

    References
    ----------
    PS3.4 C.2.2.2 (attribute matching); PS3.18 §10.6.1.
    """
    if query.study_uid is not None and _uid_of(ds, _STUDY_UID) != query.study_uid:
        return False
    if query.series_uid is not None and _uid_of(ds, _SERIES_UID) != query.series_uid:
        return False
    return all(_match_key(m, ds) for m in query.matches)


# --- results -------------------------------------------------------------------------------------

def result_attributes(level: QueryLevel | str) -> tuple[int, ...]:
    """Return the tags a Search response returns by default at ``level``.

    Results of a search not scoped to a study also carry the study attributes, and
    instance results not scoped to a series the series attributes; :func:`to_result`
    adds those.

    References
    ----------
    PS3.18 Tables 10.6.3-3 (study), 10.6.3-4 (series) and 10.6.3-5 (instance).
    """
    return _RESULT_ATTRIBUTES[QueryLevel(level)]


def level_attributes(level: QueryLevel | str) -> frozenset[int] | None:
    """Return the tags of the Patient/Study (``study``) or Series (``series``) IEs, ``None`` for ``instance``.

    The tables cover the Patient, Patient Study, General Study, Clinical Trial Subject
    and Study modules, and the General Series, General Equipment, Frame of Reference,
    SC Equipment and Clinical Trial Series modules, plus the computed Search attributes.
    ``includefield=all`` returns the attributes of the query level and above only.

    References
    ----------
    PS3.3 A.1.2 (IE levels); PS3.4 C.6.2.1 (Study Root keys).
    """
    lvl = QueryLevel(level)
    return None if lvl is QueryLevel.INSTANCE else _LEVEL_TAGS[lvl]


def _default_tags(query: QidoQuery) -> set[int]:
    tags = set(result_attributes(query.level))
    if query.level is not QueryLevel.STUDY:
        tags.add(_STUDY_UID)
        if query.study_uid is None:
            tags.update(t for t in result_attributes(QueryLevel.STUDY) if t != _RETRIEVE_URL)
    if query.level is QueryLevel.INSTANCE:
        tags.add(_SERIES_UID)
        if query.series_uid is None:
            tags.update(t for t in result_attributes(QueryLevel.SERIES) if t != _RETRIEVE_URL)
    return tags


def _in_scope(tag: int, level: QueryLevel) -> bool:
    if level is QueryLevel.INSTANCE:
        return True
    scope = _LEVEL_TAGS[QueryLevel.STUDY]
    if level is QueryLevel.SERIES:
        scope = scope | _LEVEL_TAGS[QueryLevel.SERIES]
    return tag in scope


def is_bulk_data(elem: DataElement) -> bool:
    """Return whether ``elem`` is bulk data, which metadata and Search results leave out.

    Bulk data are the attributes of :data:`BULK_DATA_TAGS`, Overlay Data, Curve Data and
    Audio Sample Data (repeating groups 60xx/50xx), and any binary value (OB, OD, OF, OL,
    OV, OW, UN) longer than 1024 bytes.

    References
    ----------
    PS3.18 §8.4.1.2 (bulk data), §10.4.1.1.2 (metadata resources).
    """
    tag = int(elem.tag)
    group, element = tag >> 16, tag & 0xFFFF
    if tag in BULK_DATA_TAGS:
        return True
    if (group & 0xFF00) == 0x6000 and element == 0x3000:
        return True
    if (group & 0xFF00) == 0x5000 and element in (0x3000, 0x200C):
        return True
    if str(elem.VR) in _BINARY_VRS:
        value = elem.value
        return isinstance(value, bytes | bytearray) and len(value) > _BULK_THRESHOLD
    return False


def without_bulk_data(ds: Dataset) -> Dataset:
    """Return a new dataset holding every element of ``ds`` except bulk data and group 0002.

    Sequences are rebuilt item by item, so ``ds`` is not changed; other element
    values are shared, not copied.

    References
    ----------
    PS3.18 §10.4.1.1.2 (metadata carry no bulk data in place).
    """
    out = Dataset()
    for elem in ds:
        if (int(elem.tag) >> 16) == 0x0002 or is_bulk_data(elem):
            continue
        if str(elem.VR) == "SQ" and elem.value is not None:
            items = DicomSequence([without_bulk_data(item) for item in elem.value])
            out.add(DataElement(elem.tag, "SQ", items))
        else:
            out.add(elem)
    return out


def _extra_element(key: str | int, value: Any) -> DataElement:
    tag = tag_for_keyword(key) if isinstance(key, str) else key
    if tag is None:
        raise ValueError(f"unknown attribute {key!r} in extra")
    vr = _dictionary_vr(int(tag))
    if not vr:
        raise ValueError(f"no dictionary VR for extra attribute {key!r}")
    return DataElement(BaseTag(int(tag)), vr, value)


def to_result(ds: Dataset, query: QidoQuery, *, extra: Mapping[str | int, Any] | None = None) -> Dataset:
    """Cut ``ds`` down to one Search result.

    The result keeps the default attributes of the query level (and of the levels above
    when the path does not fix them), the matching keys, and the ``includefield``
    attributes; ``includefield=all`` adds every attribute of the query level and above
    (see :func:`level_attributes`).  Bulk data and group 0002 are never returned.
    Matching keys and include fields that ``ds`` lacks are returned empty.

    Parameters
    ----------
    ds : Dataset
        An instance, or a representative instance of a study or series.
    query : QidoQuery
        The parsed request.
    extra : mapping of keyword or tag to value, optional
        Computed attributes (ModalitiesInStudy, NumberOfStudyRelatedInstances,
        InstanceAvailability, RetrieveURL, ...); they replace values of ``ds``.

    Returns
    -------
    Dataset
        A new dataset; ``ds`` is not changed.

    References
    ----------
    PS3.18 §10.6.3 (Search response) and Tables 10.6.3-3 to 10.6.3-5; PS3.4 C.2.2.1 (return keys).
    """
    source: dict[int, DataElement] = {}
    for elem in ds:
        source[int(elem.tag)] = elem
    for key, value in (extra or {}).items():
        elem = _extra_element(key, value)
        source[int(elem.tag)] = elem

    requested = {m.tag for m in query.matches} | set(query.include_tags)
    keep = _default_tags(query) | requested
    if query.include_fields == "all":
        keep.update(tag for tag in source if _in_scope(tag, query.level))

    result = Dataset()
    for tag in sorted(keep):
        if (tag >> 16) == 0x0002 or (tag & 0xFFFF) == 0:
            continue
        found = source.get(tag)
        if found is not None:
            if is_bulk_data(found):
                continue
            if str(found.VR) == "SQ" and found.value is not None:
                items = DicomSequence([without_bulk_data(item) for item in found.value])
                result.add(DataElement(found.tag, "SQ", copy.deepcopy(items)))
            else:
                result.add(copy.deepcopy(found))
        elif tag in requested and tag not in BULK_DATA_TAGS:
            vr = _dictionary_vr(tag)
            if vr:
                result.add(DataElement(BaseTag(tag), vr, [] if vr == "SQ" else None))
    return result
