"""A subset of an IHE PDQm Patient Demographics Supplier, for the simulated Image Manager.

A WIC Image Capturer establishes the patient context before it stores images; one
way is a FHIR R4 ``Patient`` search, the PDQm Mobile Patient Demographics Query
[ITI-78].  This module answers that search over a fixed, synthetic list of patients.

Layout, pure parts first:

- :class:`Patient` and :func:`load_patients` (``fixtures/patients.json``);
- :func:`parse_query` / :func:`search_patients`: ITI-78 query semantics, no HTTP;
- :func:`patient_resource`, :func:`searchset_bundle`, :func:`operation_outcome`,
  :func:`capability_statement`: FHIR R4 JSON documents as plain dicts;
- :func:`negotiate_format`: ``Accept`` / ``_format`` handling;
- :func:`pdqm_app`: the Starlette sub-application (``GET /Patient``,
  ``GET /Patient/{id}``, ``GET /metadata``), meant to be mounted, e.g. under ``/fhir``.

Where FHIR allows several behaviours, the choices are:

- **Unsupported parameters** are ignored and left out of the Bundle's ``self`` link, which
  lists exactly the parameters the search honoured (FHIR R4 search.html#errors; ITI-78
  §2:3.78.4.1.2.1.1).  No OperationOutcome entry is added to the Bundle, so every entry is
  a ``Patient``.  ``Prefer: handling=strict`` turns them into a 400.
- **Unsupported modifiers** on a supported parameter (``family:missing``) are a 400.  ITI-78
  §2:3.78.4.1.2.2 lets a Supplier ignore them, but ignoring one silently widens the result;
  FHIR's ``searchfail`` example rejects them too.
- **Malformed values** (a bad date, a bad ``_count``, a gender code outside
  AdministrativeGender) are a 400 with an OperationOutcome.
- **Empty values** (``family=``) are ignored like absent parameters.
- **Unknown identifier domains** (``identifier=urn:oid:9.9|``) give the preferred PDQm answer,
  404 with a ``warning``/``not-found`` "targetSystem not found" OperationOutcome (ITI-78
  Case 4); named domains restrict the identifiers returned (Case 2).
- **Paging**: ``_count`` is the page size and only the first page is served; ``total``
  counts every match, and there is no ``next`` link.

References
----------
IHE ITI TF-2: 3.78 Mobile Patient Demographics Query [ITI-78] (PDQm), Rev. 3.x.
HL7 FHIR R4 (4.0.1): search.html, http.html (read, search, ``_format``),
bundle.html (searchset), operationoutcome.html, capabilitystatement.html.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wic_conformance.dicomweb.media_types import (
    APPLICATION_FHIR_JSON,
    APPLICATION_JSON,
    MediaType,
    format_media_type,
    parse_accept,
    parse_media_type,
)
from wic_conformance.errors import ConfigError, FixtureNotFoundError

__all__ = [
    "ADMINISTRATIVE_GENDER_SYSTEM",
    "FHIR_VERSION",
    "SUPPORTED_SEARCH_PARAMETERS",
    "AdministrativeGender",
    "Identifier",
    "Patient",
    "PdqmQuery",
    "PdqmQueryError",
    "UnknownDomainError",
    "capability_statement",
    "load_patients",
    "negotiate_format",
    "operation_outcome",
    "parse_query",
    "patient_resource",
    "pdqm_app",
    "search_patients",
    "searchset_bundle",
]

logger = logging.getLogger(__name__)

FHIR_VERSION = "4.0.1"
ADMINISTRATIVE_GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"

IssueSeverity = Literal["fatal", "error", "warning", "information"]
_SEVERITIES = frozenset({"fatal", "error", "warning", "information"})

_STRING_MODIFIERS = frozenset({"", "exact", "contains"})
_NO_MODIFIER = frozenset({""})

#: Search parameter name -> the modifiers accepted on it (``""`` is "no modifier").
SUPPORTED_SEARCH_PARAMETERS: Mapping[str, frozenset[str]] = MappingProxyType({
    "_id": _NO_MODIFIER,
    "family": _STRING_MODIFIERS,
    "given": _STRING_MODIFIERS,
    "birthdate": _NO_MODIFIER,
    "gender": _NO_MODIFIER,
    "identifier": _NO_MODIFIER,
    "_count": _NO_MODIFIER,
})

#: Parameters the HTTP layer handles; the search neither uses nor reports them.
_TRANSPORT_PARAMETERS = frozenset({"_format"})

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE_SEARCH = re.compile(r"(?P<prefix>[a-z]{2})?(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?")
_DATE_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"})
_FHIR_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CAPABILITY_DATE = "2025-11-25"

# Letters with a stroke have no Unicode decomposition; fold them by hand so that
# "oster" finds "Østergaard" as "muller" finds "Müller".
_STROKE_FOLDS = str.maketrans({"ø": "o", "đ": "d", "ħ": "h", "ł": "l", "ŧ": "t", "ı": "i", "ŀ": "l"})


class AdministrativeGender(StrEnum):
    """FHIR R4 AdministrativeGender codes (required binding of ``Patient.gender``)."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


_DICOM_SEX = {
    AdministrativeGender.MALE: "M",
    AdministrativeGender.FEMALE: "F",
    AdministrativeGender.OTHER: "O",
    AdministrativeGender.UNKNOWN: "",
}


class PdqmQueryError(ValueError):
    """An ITI-78 query the supplier cannot run: a malformed value or an unsupported modifier.

    Parameters
    ----------
    message : str
        What is wrong, naming the parameter; becomes the OperationOutcome's ``diagnostics``.
    issue_code : str
        FHIR IssueType code for the OperationOutcome (``invalid`` or ``not-supported``).
    """

    def __init__(self, message: str, *, issue_code: str = "invalid") -> None:
        super().__init__(message)
        self.issue_code = issue_code


class UnknownDomainError(PdqmQueryError):
    """An ``identifier`` parameter names a patient identity domain the supplier does not know.

    References
    ----------
    IHE ITI TF-2: 2:3.78.4.1.3, Case 4 (preferred answer: 404, ``targetSystem not found``).
    """

    def __init__(self, systems: Sequence[str]) -> None:
        super().__init__(f"targetSystem not found: {', '.join(systems)}", issue_code="not-found")
        self.systems = tuple(systems)


@dataclass(frozen=True, slots=True)
class Identifier:
    """A FHIR ``Identifier``: a patient ID and the assigning authority that issued it.

    Attributes
    ----------
    system : str or None
        The assigning authority as a URI (``urn:oid:1.2.3.4.5.6.7``); ``None`` when unknown.
    value : str
        The identifier itself.
    """

    system: str | None
    value: str


@dataclass(frozen=True, slots=True)
class Patient:
    """One patient of the supplier, in FHIR terms plus the DICOM attributes a Capturer copies.

    Validated eagerly: a bad value raises ``ValueError`` (``TypeError`` for a wrong type).

    Attributes
    ----------
    id : str
        FHIR logical id (``[A-Za-z0-9-.]{1,64}``).
    identifiers : tuple of Identifier
        At least one; ``dicom_patient_id`` must be one of their values.
    family : str
        Family name.
    given : tuple of str
        Given names, in order.
    birth_date : datetime.date or None
        ``None`` when the birth date is unknown.
    gender : AdministrativeGender
    dicom_patient_name : str
        Patient's Name (0010,0010), PN: up to three ``=``-separated component groups
        (alphabetic, ideographic, phonetic) of up to five ``^``-separated components.
    dicom_patient_id : str
        Patient ID (0010,0020).
    issuer_of_patient_id : str
        Issuer of Patient ID (0010,0021): the assigning authority's namespace ID.  Its
        universal ID is :attr:`issuer_universal_entity_id`.

    References
    ----------
    HL7 FHIR R4 Patient; DICOM PS3.3 C.7.1.1 (Patient Module), PS3.5 §6.2 (PN).
    """

    id: str
    identifiers: tuple[Identifier, ...]
    family: str
    given: tuple[str, ...]
    birth_date: date | None
    gender: AdministrativeGender
    dicom_patient_name: str
    dicom_patient_id: str
    issuer_of_patient_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _FHIR_ID.fullmatch(self.id):
            raise ValueError(f"id {self.id!r} is not a FHIR id ([A-Za-z0-9-.]{{1,64}})")
        if not isinstance(self.identifiers, tuple) or not self.identifiers:
            raise TypeError("identifiers must be a non-empty tuple of Identifier")
        for ident in self.identifiers:
            if not isinstance(ident, Identifier):
                raise TypeError(f"identifiers holds {type(ident).__name__}, not Identifier")
            if not ident.value:
                raise ValueError("an identifier has an empty value")
            if ident.system is not None and not ident.system:
                raise ValueError("an identifier system is empty (use None for 'no system')")
        if not isinstance(self.family, str) or not self.family:
            raise ValueError("family must be a non-empty string")
        if not isinstance(self.given, tuple) or not all(isinstance(g, str) and g for g in self.given):
            raise TypeError("given must be a tuple of non-empty strings")
        if self.birth_date is not None and not isinstance(self.birth_date, date):
            raise TypeError("birth_date must be a datetime.date or None")
        if not isinstance(self.gender, AdministrativeGender):
            raise TypeError(f"gender must be an AdministrativeGender, not {self.gender!r}")
        if self.dicom_patient_id not in {ident.value for ident in self.identifiers}:
            raise ValueError(f"dicom_patient_id {self.dicom_patient_id!r} is none of the identifier values")
        if not isinstance(self.issuer_of_patient_id, str) or not self.issuer_of_patient_id:
            raise ValueError("issuer_of_patient_id must be a non-empty string")
        _check_person_name(self.dicom_patient_name)

    @property
    def dicom_patient_birth_date(self) -> str:
        """Return Patient's Birth Date (0010,0030) as DA (``YYYYMMDD``), empty when unknown."""
        return self.birth_date.strftime("%Y%m%d") if self.birth_date else ""

    @property
    def dicom_patient_sex(self) -> str:
        """Return Patient's Sex (0010,0040): ``M``, ``F``, ``O``, or empty for ``unknown``."""
        return _DICOM_SEX[self.gender]

    @property
    def issuer_universal_entity_id(self) -> str | None:
        """Return the OID of the authority that issued ``dicom_patient_id``, if its system is a ``urn:oid:``.

        This is the Universal Entity ID (0040,0032), type ``ISO``, of the Issuer of Patient ID
        Qualifiers Sequence (0010,0024).
        """
        for ident in self.identifiers:
            if ident.value == self.dicom_patient_id and ident.system and ident.system.startswith("urn:oid:"):
                return ident.system.removeprefix("urn:oid:")
        return None


def _check_person_name(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError("dicom_patient_name must be a non-empty string")
    groups = value.split("=")
    if len(groups) > 3:
        raise ValueError(f"dicom_patient_name {value!r} has more than three component groups")
    for group in groups:
        if len(group.split("^")) > 5:
            raise ValueError(f"dicom_patient_name {value!r} has a group with more than five components")
    if "\\" in value or any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"dicom_patient_name {value!r} holds a backslash or a control character")


# --------------------------------------------------------------------------- fixture loading

_RECORD_KEYS = frozenset({
    "id", "identifiers", "family", "given", "birthDate", "gender",
    "dicom_patient_name", "dicom_patient_id", "issuer_of_patient_id",
})
_OPTIONAL_RECORD_KEYS = frozenset({"birthDate"})


def load_patients(path: str | os.PathLike[str]) -> tuple[Patient, ...]:
    """Load the supplier's patients from a JSON fixture.

    The file holds ``{"provenance": "...", "patients": [record, ...]}``; each record has
    the keys ``id``, ``identifiers`` (``[{"system": ..., "value": ...}]``, ``system`` optional),
    ``family``, ``given`` (list), ``birthDate`` (``YYYY-MM-DD``, optional or ``null``),
    ``gender``, ``dicom_patient_name``, ``dicom_patient_id`` and ``issuer_of_patient_id``.
    Unknown keys are rejected, so a misspelt key cannot pass unnoticed.

    Parameters
    ----------
    path : str or os.PathLike
        The fixture file, e.g. ``fixtures/patients.json``.

    Returns
    -------
    tuple of Patient
        In file order (which is the order of search results).

    Raises
    ------
    FixtureNotFoundError
        The file does not exist or is a directory.
    ConfigError
        The file is unreadable, not UTF-8 JSON, or a record is invalid; the message names the
        file and the record (``patients[3].birthDate``).

    References
    ----------
    HL7 FHIR R4 Patient (field names and value sets).
    """
    source = Path(path)
    try:
        text = source.read_text("utf-8")
    except FileNotFoundError as exc:
        raise FixtureNotFoundError(f"patient fixture {source} does not exist") from exc
    except IsADirectoryError as exc:
        raise FixtureNotFoundError(f"patient fixture {source} is a directory, not a file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read ({exc.strerror})") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError(f"{source}: invalid JSON ({where}): {exc.msg}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be an object with 'provenance' and 'patients'")
    extra = sorted(set(document) - {"provenance", "patients"})
    if extra:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(extra)}")
    provenance = document.get("provenance")
    if not isinstance(provenance, str) or not provenance.strip():
        raise ConfigError(f"{source}: 'provenance' must be a non-empty string saying where the data are from")
    records = document.get("patients")
    if not isinstance(records, list):
        raise ConfigError(f"{source}: 'patients' must be a list")
    patients: list[Patient] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        where = f"{source}: patients[{index}]"
        patient = _patient_from_record(record, where)
        if patient.id in seen:
            raise ConfigError(f"{where}: duplicate id {patient.id!r} (first at patients[{seen[patient.id]}])")
        seen[patient.id] = index
        patients.append(patient)
    return tuple(patients)


def _patient_from_record(record: object, where: str) -> Patient:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = sorted(set(record) - _RECORD_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(_RECORD_KEYS - _OPTIONAL_RECORD_KEYS - set(record))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")

    def text(key: str) -> str:
        value = record[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: must be a string, not {type(value).__name__}")
        return value

    raw_identifiers = record["identifiers"]
    if not isinstance(raw_identifiers, list) or not raw_identifiers:
        raise ConfigError(f"{where}.identifiers: must be a non-empty list")
    identifiers: list[Identifier] = []
    for i, raw in enumerate(raw_identifiers):
        if not isinstance(raw, dict) or not set(raw) <= {"system", "value"}:
            raise ConfigError(f"{where}.identifiers[{i}]: must be an object with 'value' (and 'system')")
        system, value = raw.get("system"), raw.get("value")
        if not isinstance(value, str) or (system is not None and not isinstance(system, str)):
            raise ConfigError(f"{where}.identifiers[{i}]: 'value' and 'system' must be strings")
        identifiers.append(Identifier(system=system, value=value))
    given = record["given"]
    if not isinstance(given, list) or not all(isinstance(g, str) for g in given):
        raise ConfigError(f"{where}.given: must be a list of strings")
    birth_text = record.get("birthDate")
    birth_date: date | None = None
    if birth_text is not None:
        if not isinstance(birth_text, str) or not _FHIR_DATE.fullmatch(birth_text):
            raise ConfigError(f"{where}.birthDate: {birth_text!r} is not YYYY-MM-DD")
        try:
            birth_date = date.fromisoformat(birth_text)
        except ValueError as exc:
            raise ConfigError(f"{where}.birthDate: {birth_text!r} is not a calendar date") from exc
    try:
        gender = AdministrativeGender(text("gender"))
    except ValueError as exc:
        codes = ", ".join(g.value for g in AdministrativeGender)
        raise ConfigError(f"{where}.gender: {record['gender']!r} is not one of {codes}") from exc
    try:
        return Patient(
            id=text("id"),
            identifiers=tuple(identifiers),
            family=text("family"),
            given=tuple(given),
            birth_date=birth_date,
            gender=gender,
            dicom_patient_name=text("dicom_patient_name"),
            dicom_patient_id=text("dicom_patient_id"),
            issuer_of_patient_id=text("issuer_of_patient_id"),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


# --------------------------------------------------------------------------- search

Predicate = Callable[[Patient], bool]


@dataclass(frozen=True, slots=True)
class PdqmQuery:
    """A parsed ITI-78 query, ready to run against any list of patients.

    Attributes
    ----------
    processed : tuple of (name, value)
        The parameters the search honoured, in request order, as received (modifiers
        included); the Bundle's ``self`` link shows exactly these.
    count : int or None
        ``_count`` (page size), ``None`` when not given.
    domains : frozenset of str
        Identifier systems named as domains (``identifier=system|``): the identifiers of
        the returned patients are restricted to these (ITI-78 Case 2).
    ignored : tuple of str
        Names of the parameters that were not understood and so ignored.
    predicates : tuple of callables
        One per honoured criterion; a patient matches when all hold (AND).
    """

    processed: tuple[tuple[str, str], ...] = ()
    count: int | None = None
    domains: frozenset[str] = frozenset()
    ignored: tuple[str, ...] = ()
    predicates: tuple[Predicate, ...] = field(default=(), repr=False, compare=False)

    def matches(self, patient: Patient) -> bool:
        """Return whether ``patient`` meets every criterion."""
        return all(predicate(patient) for predicate in self.predicates)

    def select(self, patients: Iterable[Patient]) -> list[Patient]:
        """Return every matching patient, in input order, without paging.

        Raises
        ------
        UnknownDomainError
            A domain in :attr:`domains` is the system of no identifier among ``patients``.
        """
        pool = tuple(patients)
        known = {ident.system for patient in pool for ident in patient.identifiers}
        unknown = sorted(self.domains - known)
        if unknown:
            raise UnknownDomainError(unknown)
        return [patient for patient in pool if self.matches(patient)]

    def page(self, matches: Sequence[Patient]) -> list[Patient]:
        """Return the first page of ``matches`` (all of them without ``_count``)."""
        return list(matches if self.count is None else matches[: self.count])

    def self_url(self, base_url: str) -> str:
        """Return the search URL made of the honoured parameters only, under ``base_url``.

        References
        ----------
        HL7 FHIR R4 search.html#errors (the self link states the parameters used).
        """
        url = f"{base_url.rstrip('/')}/Patient"
        if self.processed:
            url += "?" + urlencode(self.processed, safe=",:/", quote_via=quote)
        return url


def parse_query(params: Iterable[tuple[str, str]], *, strict: bool = False) -> PdqmQuery:
    r"""Parse ITI-78 search parameters into a :class:`PdqmQuery`.

    Supported (FHIR R4 semantics): ``family`` and ``given`` (string: case- and
    accent-insensitive prefix match; ``:exact`` whole-string, case- and accent-sensitive;
    ``:contains`` case- and accent-insensitive substring), ``birthdate`` (date, with
    ``eq ne gt lt ge le sa eb`` prefixes and ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``
    precision), ``identifier`` (token: ``system|value``, ``|value``, ``value`` or
    ``system|``), ``gender`` (token, an AdministrativeGender code), ``_id`` and
    ``_count``.  A repeated parameter is an AND, a comma inside a value an OR; ``\,``
    ``\|`` ``\$`` ``\\`` are escapes.

    Parameters
    ----------
    params : iterable of (name, value)
        Decoded query parameters in request order (``request.query_params.multi_items()``).
    strict : bool
        ``Prefer: handling=strict``: an unsupported parameter is an error instead of ignored.

    Returns
    -------
    PdqmQuery

    Raises
    ------
    PdqmQueryError
        A malformed value, an unsupported modifier or prefix, a repeated ``_count``, or (when
        ``strict``) an unsupported parameter.

    References
    ----------
    IHE ITI TF-2: 2:3.78.4.1.2 (search parameters and modifiers).
    HL7 FHIR R4 search.html: #string, #token, #date, #prefix, #modifiers, #combining,
    #escaping, #count, #errors (unknown parameters, ``Prefer: handling``).
    """
    processed: list[tuple[str, str]] = []
    predicates: list[Predicate] = []
    ignored: list[str] = []
    domains: set[str] = set()
    count: int | None = None
    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name in _TRANSPORT_PARAMETERS:
            continue
        if name not in SUPPORTED_SEARCH_PARAMETERS:
            ignored.append(raw_name)
            continue
        accepted = SUPPORTED_SEARCH_PARAMETERS[name]
        if modifier not in accepted:
            allowed = ", ".join(f":{m}" for m in sorted(accepted) if m) or "none"
            raise PdqmQueryError(
                f"parameter {raw_name!r}: modifier :{modifier} is not supported (supported: {allowed})",
                issue_code="not-supported",
            )
        alternatives = [alt for alt in _split_unescaped(value, ",") if alt != ""]
        if not alternatives:
            continue  # an empty value is ignored, like an absent parameter
        if name == "_count":
            if count is not None:
                raise PdqmQueryError("parameter '_count' is given more than once")
            count = _parse_count(value)
        elif name in ("family", "given"):
            predicates.append(_string_predicate(name, modifier, [_unescape(alt) for alt in alternatives]))
        elif name == "birthdate":
            predicates.append(_birthdate_predicate([_unescape(alt) for alt in alternatives]))
        elif name == "identifier":
            predicate, named_domains = _identifier_predicate(alternatives)
            predicates.append(predicate)
            domains.update(named_domains)
        elif name == "gender":
            predicates.append(_gender_predicate(alternatives))
        else:  # _id
            predicates.append(_id_predicate([_unescape(alt) for alt in alternatives]))
        processed.append((raw_name, value))
    if ignored:
        if strict:
            raise PdqmQueryError(
                f"unsupported parameter(s) {', '.join(ignored)} (Prefer: handling=strict)",
                issue_code="not-supported",
            )
        logger.debug("ITI-78: ignoring unsupported parameter(s) %s", ", ".join(ignored))
    return PdqmQuery(
        processed=tuple(processed),
        count=count,
        domains=frozenset(domains),
        ignored=tuple(ignored),
        predicates=tuple(predicates),
    )


def search_patients(
    patients: Iterable[Patient], params: Iterable[tuple[str, str]], *, strict: bool = False
) -> list[Patient]:
    """Run an ITI-78 query and return the first page of matching patients, in input order.

    See :func:`parse_query` for the supported parameters.  ``_count`` is the page size; use
    :meth:`PdqmQuery.select` for every match (the Bundle's ``total``).

    Parameters
    ----------
    patients : iterable of Patient
    params : iterable of (name, value)
        Decoded query parameters in request order.
    strict : bool
        Reject unsupported parameters instead of ignoring them.

    Returns
    -------
    list of Patient

    Raises
    ------
    PdqmQueryError
        The query is malformed (see :func:`parse_query`).
    UnknownDomainError
        An ``identifier=system|`` names a domain no patient has.

    References
    ----------
    IHE ITI TF-2: 2:3.78.4.1.3 (expected actions); HL7 FHIR R4 search.html.
    """
    query = parse_query(params, strict=strict)
    return query.page(query.select(patients))


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash; escapes are kept."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\,$|])", r"\1", text)


def _parse_count(value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value):
        raise PdqmQueryError(f"_count={value!r} is not a non-negative integer")
    return int(value)


def _is_diacritic(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x0300 <= cp <= 0x036F
        or 0x1AB0 <= cp <= 0x1AFF
        or 0x1DC0 <= cp <= 0x1DFF
        or 0x20D0 <= cp <= 0x20FF
        or 0xFE20 <= cp <= 0xFE2F
    )


def _fold(text: str) -> str:
    """Fold case and accents for string search.

    Only the combining diacritical mark blocks are dropped, so that Japanese voiced
    marks (U+3099, U+309A), which change the syllable, are kept.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not _is_diacritic(ch))
    return unicodedata.normalize("NFC", stripped).translate(_STROKE_FOLDS)


def _string_predicate(name: str, modifier: str, alternatives: list[str]) -> Predicate:
    def values(patient: Patient) -> tuple[str, ...]:
        return (patient.family,) if name == "family" else patient.given

    if modifier == "exact":
        wanted = {unicodedata.normalize("NFC", alt) for alt in alternatives}
        return lambda p: any(unicodedata.normalize("NFC", v) in wanted for v in values(p))
    folded = [_fold(alt) for alt in alternatives]
    if modifier == "contains":
        return lambda p: any(f in _fold(v) for v in values(p) for f in folded)
    return lambda p: any(_fold(v).startswith(f) for v in values(p) for f in folded)


def _id_predicate(alternatives: list[str]) -> Predicate:
    wanted = frozenset(alternatives)
    return lambda p: p.id in wanted


def _date_range(text: str) -> tuple[str, date, date]:
    match = _DATE_SEARCH.fullmatch(text)
    if not match:
        raise PdqmQueryError(
            f"birthdate={text!r} is not a FHIR date search value "
            "(YYYY, YYYY-MM or YYYY-MM-DD, optionally prefixed by eq, ne, gt, lt, ge, le, sa or eb)"
        )
    prefix = match["prefix"] or "eq"
    if prefix == "ap":
        raise PdqmQueryError("birthdate: the 'ap' prefix is not supported", issue_code="not-supported")
    if prefix not in _DATE_PREFIXES:
        raise PdqmQueryError(f"birthdate={text!r}: unknown prefix {prefix!r}")
    year = int(match["year"])
    try:
        if match["day"]:
            start = end = date(year, int(match["month"]), int(match["day"]))
        elif match["month"]:
            month = int(match["month"])
            start = date(year, month, 1)
            end = date(year, month, calendar.monthrange(year, month)[1])
        else:
            start, end = date(year, 1, 1), date(year, 12, 31)
    except ValueError as exc:
        raise PdqmQueryError(f"birthdate={text!r} is not a calendar date") from exc
    return prefix, start, end


def _date_matches(prefix: str, start: date, end: date, value: date) -> bool:
    """Compare a day-precision birth date with the range a search value stands for."""
    if prefix == "eq":
        return start <= value <= end
    if prefix == "ne":
        return not start <= value <= end
    if prefix in ("gt", "sa"):
        return value > end
    if prefix in ("lt", "eb"):
        return value < start
    if prefix == "ge":
        return value >= start
    return value <= end  # le


def _birthdate_predicate(alternatives: list[str]) -> Predicate:
    ranges = [_date_range(alt) for alt in alternatives]
    return lambda p: p.birth_date is not None and any(
        _date_matches(prefix, start, end, p.birth_date) for prefix, start, end in ranges
    )


def _identifier_predicate(alternatives: list[str]) -> tuple[Predicate, set[str]]:
    tokens: list[tuple[str | None, str | None]] = []  # (system, value); None = any
    domains: set[str] = set()
    for alt in alternatives:
        parts = _split_unescaped(alt, "|")
        if len(parts) > 2:
            raise PdqmQueryError(f"identifier={alt!r} has more than one unescaped '|'")
        if len(parts) == 1:
            tokens.append((None, _unescape(parts[0])))
            continue
        system, value = _unescape(parts[0]), _unescape(parts[1])
        if not system and not value:
            raise PdqmQueryError("identifier='|' names neither a system nor a value")
        if system and not value:
            domains.add(system)
            tokens.append((system, None))
        else:
            tokens.append((system, value))  # system "" means "no system"

    def token_matches(ident: Identifier, system: str | None, value: str | None) -> bool:
        if system is not None and (ident.system or "") != system:
            return False
        return value is None or ident.value == value

    def predicate(patient: Patient) -> bool:
        return any(token_matches(i, s, v) for i in patient.identifiers for s, v in tokens)

    return predicate, domains


def _gender_predicate(alternatives: list[str]) -> Predicate:
    codes: set[AdministrativeGender] = set()
    for alt in alternatives:
        parts = [_unescape(p) for p in _split_unescaped(alt, "|")]
        if len(parts) > 2:
            raise PdqmQueryError(f"gender={alt!r} has more than one unescaped '|'")
        code = parts[-1]
        try:
            gender = AdministrativeGender(code)
        except ValueError as exc:
            allowed = ", ".join(g.value for g in AdministrativeGender)
            raise PdqmQueryError(f"gender={alt!r}: {code!r} is not one of {allowed}") from exc
        if len(parts) == 1 or parts[0] == ADMINISTRATIVE_GENDER_SYSTEM:
            codes.add(gender)
    return lambda p: p.gender in codes


# --------------------------------------------------------------------------- FHIR documents


def patient_resource(patient: Patient, *, domains: Collection[str] = ()) -> dict[str, Any]:
    """Return ``patient`` as a FHIR R4 Patient resource (JSON object).

    Parameters
    ----------
    patient : Patient
    domains : collection of str
        When not empty, only identifiers whose system is among these are returned
        (ITI-78 Case 2, domains requested with ``identifier=system|``).

    Returns
    -------
    dict
        ``resourceType``, ``id``, ``identifier``, ``name``, ``gender`` and, when known,
        ``birthDate``.  Empty arrays and absent values are left out, as FHIR JSON requires.

    References
    ----------
    HL7 FHIR R4 Patient, json.html; IHE ITI TF-2: 2:3.78.4.1.3 Case 2.
    """
    identifiers = [
        ident for ident in patient.identifiers
        if not domains or (ident.system is not None and ident.system in domains)
    ]
    name: dict[str, Any] = {"family": patient.family}
    if patient.given:
        name["given"] = list(patient.given)
    resource: dict[str, Any] = {"resourceType": "Patient", "id": patient.id}
    if identifiers:
        resource["identifier"] = [
            {"system": i.system, "value": i.value} if i.system is not None else {"value": i.value}
            for i in identifiers
        ]
    resource["name"] = [name]
    resource["gender"] = patient.gender.value
    if patient.birth_date is not None:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def searchset_bundle(
    patients: Sequence[Patient],
    *,
    base_url: str,
    self_url: str,
    total: int | None = None,
    domains: Collection[str] = (),
) -> dict[str, Any]:
    """Return a FHIR R4 ``searchset`` Bundle of Patient resources.

    Parameters
    ----------
    patients : sequence of Patient
        The page to return, in order.
    base_url : str
        The FHIR base (``http://host/fhir``); each entry's ``fullUrl`` is
        ``{base_url}/Patient/{id}``.
    self_url : str
        The ``self`` link: the search as the server understood it.
    total : int, optional
        The number of matches over all pages; ``len(patients)`` by default.
    domains : collection of str
        Restrict returned identifiers to these systems (see :func:`patient_resource`).

    Returns
    -------
    dict
        ``resourceType`` Bundle, ``type`` searchset, ``total``, ``link`` [self] and, when
        not empty, ``entry`` [{``fullUrl``, ``resource``, ``search``: {``mode``: match}}].

    References
    ----------
    HL7 FHIR R4 bundle.html (searchset, bdl-1 total only for search/history);
    IHE ITI TF-2: 2:3.78.4.1.3 Cases 1 and 3.
    """
    base = base_url.rstrip("/")
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(patients) if total is None else total,
        "link": [{"relation": "self", "url": self_url}],
    }
    if patients:
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/Patient/{patient.id}",
                "resource": patient_resource(patient, domains=domains),
                "search": {"mode": "match"},
            }
            for patient in patients
        ]
    return bundle


def operation_outcome(*, severity: IssueSeverity, code: str, diagnostics: str) -> dict[str, Any]:
    """Return a FHIR R4 OperationOutcome with one issue.

    Parameters
    ----------
    severity : {"fatal", "error", "warning", "information"}
    code : str
        IssueType code (``invalid``, ``not-found``, ``not-supported``, ``processing``...).
    diagnostics : str
        Human-readable detail.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        ``severity`` is not an IssueSeverity code.

    References
    ----------
    HL7 FHIR R4 operationoutcome.html; IHE ITI TF-2: 2:3.78.4.1.3 Cases 4 and 5.
    """
    if severity not in _SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(sorted(_SEVERITIES))}")
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


_SEARCH_PARAM_DEFINITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id", "Exact match on the logical id."),
    ("family", "string", "http://hl7.org/fhir/SearchParameter/individual-family",
     "Case- and accent-insensitive prefix match; :exact and :contains supported."),
    ("given", "string", "http://hl7.org/fhir/SearchParameter/individual-given",
     "Case- and accent-insensitive prefix match on any given name; :exact and :contains supported."),
    ("birthdate", "date", "http://hl7.org/fhir/SearchParameter/individual-birthdate",
     "YYYY, YYYY-MM or YYYY-MM-DD; prefixes eq, ne, gt, lt, ge, le, sa, eb."),
    ("gender", "token", "http://hl7.org/fhir/SearchParameter/individual-gender",
     "An AdministrativeGender code."),
    ("identifier", "token", "http://hl7.org/fhir/SearchParameter/Patient-identifier",
     "system|value, |value, value, or system| (restricts the identifiers returned to that domain)."),
)


def capability_statement(base_url: str) -> dict[str, Any]:
    """Return the supplier's minimal FHIR R4 CapabilityStatement.

    It declares ``read`` and ``search-type`` on Patient with the supported search
    parameters.  It does not claim ``instantiates`` the PDQm Supplier statement, since this
    is a subset (no XML, no POST search, not every ITI-78 parameter).

    Parameters
    ----------
    base_url : str
        The FHIR base, reported as ``implementation.url``.

    Returns
    -------
    dict

    References
    ----------
    HL7 FHIR R4 capabilitystatement.html, http.html#capabilities;
    IHE ITI TF-2: 2:3.78.4.1.2.1 (parameters a Supplier processes).
    """
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _CAPABILITY_DATE,
        "kind": "instance",
        "software": {"name": "wic-conformance simulated Image Manager (PDQm Supplier subset)"},
        "implementation": {
            "description": "Synthetic patients for WIC patient-context tests; not a clinical system.",
            "url": base_url.rstrip("/"),
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json", APPLICATION_FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "Unsupported search parameters are ignored and left out of the self link; "
                             "Prefer: handling=strict rejects them. _count sets the page size; only the "
                             "first page is served.",
            "resource": [{
                "type": "Patient",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [
                    {"name": name, "definition": definition, "type": kind, "documentation": doc}
                    for name, kind, definition, doc in _SEARCH_PARAM_DEFINITIONS
                ],
            }],
        }],
    }


# --------------------------------------------------------------------------- content negotiation

_OFFERED = (APPLICATION_FHIR_JSON, APPLICATION_JSON)  # preference order on ties


def negotiate_format(accept: str | None, format_param: str | None = None) -> str | None:
    """Choose the media type of the answer, or ``None`` when nothing offered is acceptable.

    ``_format`` overrides ``Accept``.  ``json``, ``application/fhir+json`` and
    ``application/json`` are served; a ``+`` decoded to a space in ``_format``
    (``application/fhir json``) is read as ``+``.  For ``Accept``, each offered type takes
    the q-value of the most specific range that matches it (RFC 9110 §12.5.1); the highest
    non-zero q wins, ``application/fhir+json`` on ties.  A ``fhirVersion`` parameter other
    than 4.0 makes a range not match.  No or an empty ``Accept`` means
    ``application/fhir+json``.

    Parameters
    ----------
    accept : str or None
        The ``Accept`` header.
    format_param : str or None
        The ``_format`` query parameter.

    Returns
    -------
    str or None
        ``APPLICATION_FHIR_JSON``, ``APPLICATION_JSON`` or ``None``.

    References
    ----------
    HL7 FHIR R4 http.html#mime-type (``_format``, ``fhirVersion``);
    IHE ITI TF-2 Appendix Z.6; RFC 9110 §12.5.1.
    """
    if format_param is not None and format_param.strip():
        value = format_param.strip().replace(" ", "+")
        if value.lower() == "json":
            return APPLICATION_FHIR_JSON
        return _choose([(parse_media_type(value), 1.0)])
    if accept is None or not accept.strip():
        return APPLICATION_FHIR_JSON
    return _choose(parse_accept(accept))


def _choose(ranges: list[tuple[MediaType, float]]) -> str | None:
    best: tuple[float, str] | None = None
    for offered in _OFFERED:
        candidate = parse_media_type(offered)
        matching = [
            (mt, q) for mt, q in ranges
            if mt.type and mt.matches(candidate) and _fhir_version_ok(mt)
        ]
        if not matching:
            continue
        _, q = max(matching, key=lambda pair: _specificity(pair[0]))
        if q > 0 and (best is None or q > best[0]):
            best = (q, offered)
    return best[1] if best else None


def _specificity(mt: MediaType) -> int:
    if mt.type == "*":
        return 0
    if mt.subtype == "*":
        return 1
    return 2 + len([name for name, _ in mt.params if name != "charset"])


def _fhir_version_ok(mt: MediaType) -> bool:
    version = mt.param("fhirversion")
    return version is None or version == "4.0" or version.startswith("4.0.")


# --------------------------------------------------------------------------- Starlette app


def _fhir_base(request: Request) -> str:
    """Return the FHIR base URL: the request's origin plus the mount point (``root_path``).

    ``request.base_url`` is not used: under a ``Mount`` it is the top-level app's root.
    """
    root_path = request.scope.get("root_path", "")
    return str(request.url.replace(path=root_path, query="", fragment="")).rstrip("/")


def _fhir_response(body: dict[str, Any], essence: str, status_code: int = 200) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    media_type = format_media_type(essence, {"charset": "utf-8"})
    return Response(content, status_code=status_code, media_type=media_type)


def _outcome_response(
    status_code: int,
    *,
    severity: IssueSeverity,
    code: str,
    diagnostics: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    outcome = operation_outcome(severity=severity, code=code, diagnostics=diagnostics)
    response = _fhir_response(outcome, APPLICATION_FHIR_JSON, status_code)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _format_param(request: Request) -> str | None:
    values = request.query_params.getlist("_format")
    return values[0] if values else None


def _prefers_strict(request: Request) -> bool:
    for header in request.headers.getlist("prefer"):
        for preference in re.split(r"[,;]", header):
            name, _, value = preference.partition("=")
            if name.strip().lower() == "handling" and value.strip().strip('"').lower() == "strict":
                return True
    return False


def _not_acceptable(request: Request) -> str:
    asked = _format_param(request) or request.headers.get("accept", "")
    return f"cannot answer in {asked!r}: {APPLICATION_FHIR_JSON} (the default) and {APPLICATION_JSON} only"


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    return _outcome_response(
        exc.status_code, severity="error", code=code,
        diagnostics=f"{request.method} {request.url.path}: {exc.detail}", headers=exc.headers,
    )


def pdqm_app(patients: Iterable[Patient]) -> Starlette:
    """Build the PDQm Patient Demographics Supplier (subset) as a Starlette application.

    Routes, relative to wherever the app is mounted (``Mount("/fhir", app=pdqm_app(...))``):

    - ``GET /Patient``: ITI-78 search; 200 searchset Bundle, 400 malformed query,
      404 unknown identifier domain (Case 4), 406 no acceptable format (Case 5).
    - ``GET /Patient/{id}``: read; 200 Patient, 404 unknown id, 400 no acceptable format
      (ITI-78 §2:3.78.4.4.2 asks for 400 here, not 406).
    - ``GET /metadata``: CapabilityStatement; 406 no acceptable format.

    Answers are ``application/fhir+json; charset=utf-8`` (``application/json`` when that
    is the only type the client accepts); errors carry an OperationOutcome.  Links
    (``self``, ``fullUrl``) are built from the request's origin and mount point, so they
    are right when mounted.  Other paths and methods give 404/405 OperationOutcomes.
    ``Prefer: handling=strict`` makes unsupported search parameters a 400.

    Parameters
    ----------
    patients : iterable of Patient
        The supplier's patients (e.g. :func:`load_patients`), served read-only.

    Returns
    -------
    starlette.applications.Starlette

    Raises
    ------
    ValueError
        Two patients share an id.

    References
    ----------
    IHE ITI TF-2: 3.78 [ITI-78]; HL7 FHIR R4 http.html (read, search, capabilities).
    """
    pool = tuple(patients)
    by_id: dict[str, Patient] = {}
    for patient in pool:
        if patient.id in by_id:
            raise ValueError(f"two patients share the id {patient.id!r}")
        by_id[patient.id] = patient

    async def search(request: Request) -> Response:
        essence = negotiate_format(request.headers.get("accept"), _format_param(request))
        if essence is None:
            return _outcome_response(
                406, severity="error", code="not-supported", diagnostics=_not_acceptable(request)
            )
        try:
            query = parse_query(request.query_params.multi_items(), strict=_prefers_strict(request))
            matches = query.select(pool)
        except UnknownDomainError as exc:
            return _outcome_response(404, severity="warning", code="not-found", diagnostics=str(exc))
        except PdqmQueryError as exc:
            return _outcome_response(400, severity="error", code=exc.issue_code, diagnostics=str(exc))
        base = _fhir_base(request)
        bundle = searchset_bundle(
            query.page(matches), base_url=base, self_url=query.self_url(base),
            total=len(matches), domains=query.domains,
        )
        return _fhir_response(bundle, essence)

    async def read(request: Request) -> Response:
        essence = negotiate_format(request.headers.get("accept"), _format_param(request))
        if essence is None:
            return _outcome_response(
                400, severity="error", code="not-supported", diagnostics=_not_acceptable(request)
            )
        resource_id = request.path_params["id"]
        found = by_id.get(resource_id)
        if found is None:
            return _outcome_response(
                404, severity="error", code="not-found", diagnostics=f"Patient/{resource_id} is not known"
            )
        return _fhir_response(patient_resource(found), essence)

    async def metadata(request: Request) -> Response:
        essence = negotiate_format(request.headers.get("accept"), _format_param(request))
        if essence is None:
            return _outcome_response(
                406, severity="error", code="not-supported", diagnostics=_not_acceptable(request)
            )
        return _fhir_response(capability_statement(_fhir_base(request)), essence)

    return Starlette(
        routes=[
            Route("/Patient", search, methods=["GET"], name="pdqm_search"),
            Route("/Patient/{id}", read, methods=["GET"], name="pdqm_read"),
            Route("/metadata", metadata, methods=["GET"], name="pdqm_metadata"),
        ],
        exception_handlers={HTTPException: _http_error},
    )
