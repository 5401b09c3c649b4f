from __future__ import annotations

import json
import warnings
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount

from wic_conformance.actors import pdqm
from wic_conformance.actors.pdqm import (
    AdministrativeGender,
    Identifier,
    Patient,
    PdqmQueryError,
    UnknownDomainError,
    load_patients,
    negotiate_format,
    operation_outcome,
    parse_query,
    patient_resource,
    pdqm_app,
    search_patients,
    searchset_bundle,
)
from wic_conformance.dicomweb.media_types import (
    APPLICATION_DICOM_JSON,
    APPLICATION_DICOM_XML,
    APPLICATION_FHIR_JSON,
    APPLICATION_JSON,
    TEXT_PLAIN,
    parse_media_type,
)
from wic_conformance.errors import ConfigError, FixtureNotFoundError

with warnings.catch_warnings():
    # Recent Starlette prefers httpx2 for its test client; httpx (the test extra) still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "patients.json"
OID7 = "urn:oid:1.2.3.4.5.6.7"
OID8 = "urn:oid:1.2.3.4.5.6.8"
BASE = "http://example.test/fhir"


@pytest.fixture(scope="module")
def patients() -> tuple[Patient, ...]:
    return load_patients(FIXTURE)


def ids(found: list[Patient]) -> list[str]:
    return [p.id for p in found]


def find(patients: tuple[Patient, ...], *params: tuple[str, str]) -> list[str]:
    return ids(search_patients(patients, list(params)))


def make_patient(**overrides: Any) -> Patient:
    fields: dict[str, Any] = {
        "id": "local-1",
        "identifiers": (Identifier(OID7, "LOC1"),),
        "family": "Local",
        "given": ("Test",),
        "birth_date": date(2000, 1, 1),
        "gender": AdministrativeGender.UNKNOWN,
        "dicom_patient_name": "Local^Test",
        "dicom_patient_id": "LOC1",
        "issuer_of_patient_id": "WICTEST",
    }
    fields.update(overrides)
    return Patient(**fields)


def write_fixture(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "patients.json"
    path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    return path


def good_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "p1", "identifiers": [{"system": OID7, "value": "V1"}], "family": "Fam", "given": ["Giv"],
        "birthDate": "2000-02-29", "gender": "male", "dicom_patient_name": "Fam^Giv",
        "dicom_patient_id": "V1", "issuer_of_patient_id": "WICTEST",
    }
    record.update(overrides)
    return record


class TestFixture:
    def test_loads_twelve_synthetic_patients_with_provenance(self, patients: tuple[Patient, ...]) -> None:
        assert len(patients) == 12
        document = json.loads(FIXTURE.read_text("utf-8"))
        assert "synthetic" in document["provenance"].lower()
        assert len({p.id for p in patients}) == 12

    def test_covers_genders_unknown_birth_date_and_non_ascii_names(self, patients: tuple[Patient, ...]) -> None:
        assert {p.gender for p in patients} == set(AdministrativeGender)
        assert any(p.birth_date is None for p in patients)
        assert any(not p.family.isascii() for p in patients)
        assert any("\u4e00" <= ch <= "\u9fff" for p in patients for ch in p.family)

    def test_dicom_mapping(self, patients: tuple[Patient, ...]) -> None:
        by_id = {p.id: p for p in patients}
        alpha = by_id["wic-alpha"]
        assert (alpha.dicom_patient_name, alpha.dicom_patient_id, alpha.issuer_of_patient_id) == (
            "WIC^TEST^ALPHA", "WIC0001", "WICTEST")
        assert alpha.dicom_patient_birth_date == "19700101"
        assert alpha.dicom_patient_sex == "F"
        assert alpha.issuer_universal_entity_id == "1.2.3.4.5.6.7"
        assert by_id["wic-delta"].dicom_patient_birth_date == ""
        assert by_id["wic-delta"].dicom_patient_sex == ""
        assert by_id["otest-zeta"].issuer_universal_entity_id == "1.2.3.4.5.6.8"
        assert by_id["shiken-hanako"].dicom_patient_name.split("=")[1] == "試験^花子"


class TestLoadErrors:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FixtureNotFoundError, match="does not exist"):
            load_patients(tmp_path / "nope.json")

    def test_directory(self, tmp_path: Path) -> None:
        with pytest.raises(FixtureNotFoundError, match="is a directory"):
            load_patients(tmp_path)

    def test_invalid_json_names_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.json"
        path.write_text('{\n  "provenance": "x",\n  "patients": [,]\n}', "utf-8")
        with pytest.raises(ConfigError, match=r"invalid JSON \(line 3"):
            load_patients(path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.json"
        path.write_bytes('{"provenance": "Müller"}'.encode("latin-1"))
        with pytest.raises(ConfigError, match="not UTF-8"):
            load_patients(path)

    def test_provenance_is_required(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="provenance"):
            load_patients(write_fixture(tmp_path, {"patients": []}))

    @pytest.mark.parametrize(
        ("record", "message"),
        [
            (good_record(birthdate="2000-01-01"), r"patients\[0\]: unknown key\(s\) birthdate"),
            (good_record(gender="M"), r"patients\[0\]\.gender: 'M' is not one of male"),
            (good_record(birthDate="2001-02-29"), r"patients\[0\]\.birthDate: '2001-02-29' is not a calendar date"),
            (good_record(birthDate="20000101"), r"birthDate: '20000101' is not YYYY-MM-DD"),
            (good_record(dicom_patient_id="OTHER"), "dicom_patient_id 'OTHER' is none of the identifier values"),
            (good_record(id="bad id!"), "is not a FHIR id"),
            (good_record(identifiers=[]), r"identifiers: must be a non-empty list"),
            (good_record(family=3), r"family: must be a string, not int"),
            (good_record(dicom_patient_name="A^B^C^D^E^F"), "more than five components"),
        ],
    )
    def test_bad_record_names_file_record_and_field(
        self, tmp_path: Path, record: dict[str, Any], message: str
    ) -> None:
        path = write_fixture(tmp_path, {"provenance": "synthetic", "patients": [record]})
        with pytest.raises(ConfigError, match=message):
            load_patients(path)

    def test_duplicate_id(self, tmp_path: Path) -> None:
        path = write_fixture(tmp_path, {"provenance": "synthetic", "patients": [good_record(), good_record()]})
        with pytest.raises(ConfigError, match=r"patients\[1\]: duplicate id 'p1' \(first at patients\[0\]\)"):
            load_patients(path)

    def test_patient_validates_eagerly(self) -> None:
        with pytest.raises(TypeError, match="AdministrativeGender"):
            make_patient(gender="male")
        with pytest.raises(TypeError, match="tuple"):
            make_patient(given=["Test"])


class TestStringSearch:
    def test_family_is_a_case_insensitive_prefix(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family", "wic")) == [
            "wic-alpha", "wic-beta", "wic-gamma", "wic-delta", "wicktest-epsilon", "wic-legacy"]
        assert find(patients, ("family", "WICK")) == ["wicktest-epsilon"]

    @pytest.mark.parametrize("value", ["muller", "MÜLLER", "Müll", "mü"])
    def test_family_is_accent_insensitive(self, patients: tuple[Patient, ...], value: str) -> None:
        assert find(patients, ("family", value)) == ["mueller-juergen", "mueller-luedenscheidt"]

    def test_letters_with_a_stroke_and_other_scripts(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family", "oster")) == ["ostergaard-test"]
        assert find(patients, ("given", "ase")) == ["ostergaard-test"]
        assert find(patients, ("given", "ZOE")) == ["nunez-prueba"]
        assert find(patients, ("family", "nunez")) == ["nunez-prueba"]
        assert find(patients, ("family", "試験")) == ["shiken-hanako"]
        assert find(patients, ("given", "花")) == ["shiken-hanako"]

    def test_japanese_voiced_marks_are_not_accents(self) -> None:
        voiced = make_patient(family="がくせい")
        assert search_patients([voiced], [("family", "かく")]) == []
        assert search_patients([voiced], [("family", "がく")]) == [voiced]

    def test_given_matches_any_given_name(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("given", "alp")) == ["wic-alpha"]
        assert len(find(patients, ("given", "test"))) == 6  # 5 WIC^TEST^* + Testa

    def test_exact_is_whole_string_case_and_accent_sensitive(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family:exact", "WIC")) == [
            "wic-alpha", "wic-beta", "wic-gamma", "wic-delta", "wic-legacy"]
        assert find(patients, ("family:exact", "wic")) == []
        assert find(patients, ("family:exact", "Müller")) == ["mueller-juergen"]
        assert find(patients, ("family:exact", "Muller")) == []
        assert find(patients, ("given:exact", "ALPHA")) == ["wic-alpha"]

    def test_exact_compares_unicode_equivalent_forms(self, patients: tuple[Patient, ...]) -> None:
        decomposed = "Mu\u0308ller"
        assert find(patients, ("family:exact", decomposed)) == ["mueller-juergen"]

    def test_contains_is_a_folded_substring(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family:contains", "LUDEN")) == ["mueller-luedenscheidt"]
        assert find(patients, ("family:contains", "test")) == ["wicktest-epsilon", "ostergaard-test", "otest-zeta"]
        assert find(patients, ("family", "luden")) == []  # not a prefix

    def test_comma_is_or_and_repetition_is_and(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family", "wickt,núñez")) == ["wicktest-epsilon", "nunez-prueba"]
        assert find(patients, ("given", "test"), ("given", "beta")) == ["wic-beta"]
        assert find(patients, ("family", "wic"), ("given", "legacy,gamma")) == ["wic-gamma", "wic-legacy"]

    def test_escaped_comma_is_part_of_the_value(self) -> None:
        comma = make_patient(family="Smith, Test")
        assert search_patients([comma], [("family", "smith\\, t")]) == [comma]
        assert search_patients([comma], [("family", "smith\\,x")]) == []

    def test_apostrophe(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family", "o'test")) == ["otest-zeta"]


class TestBirthdate:
    def test_full_date_is_eq(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("birthdate", "1970-01-01")) == ["wic-alpha"]
        assert find(patients, ("birthdate", "eq1970-01-01")) == ["wic-alpha"]

    def test_year_and_month_precision_are_ranges(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("birthdate", "1962")) == ["mueller-juergen", "mueller-luedenscheidt"]
        assert find(patients, ("birthdate", "1962-03")) == ["mueller-juergen", "mueller-luedenscheidt"]
        assert find(patients, ("birthdate", "2024-02")) == ["otest-zeta"]  # leap day

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("gt2010-07-04", ["otest-zeta"]),
            ("ge2010-07-04", ["nunez-prueba", "otest-zeta"]),
            ("lt1950-05-17", ["wic-legacy"]),
            ("le1950-05-17", ["ostergaard-test", "wic-legacy"]),
            ("gt2010", ["otest-zeta"]),
            ("ge2010", ["nunez-prueba", "otest-zeta"]),
            ("lt1962-03", ["ostergaard-test", "wic-legacy"]),
            ("le1962-03", ["mueller-juergen", "mueller-luedenscheidt", "ostergaard-test", "wic-legacy"]),
            ("sa2010-07-04", ["otest-zeta"]),
            ("eb1950-05-17", ["wic-legacy"]),
        ],
    )
    def test_prefixes(self, patients: tuple[Patient, ...], value: str, expected: list[str]) -> None:
        assert sorted(find(patients, ("birthdate", value))) == sorted(expected)

    def test_ne_excludes_and_unknown_birth_dates_never_match(self, patients: tuple[Patient, ...]) -> None:
        found = find(patients, ("birthdate", "ne1962"))
        assert len(found) == 9
        assert "wic-delta" not in found
        assert "wic-delta" not in find(patients, ("birthdate", "ge1900"))

    def test_range_by_and_and_or(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("birthdate", "ge1980"), ("birthdate", "lt2000")) == [
            "wic-beta", "wicktest-epsilon", "shiken-hanako"]
        assert find(patients, ("birthdate", "1970-01-01,1945")) == ["wic-alpha", "wic-legacy"]

    @pytest.mark.parametrize(
        "value", ["1970-13-01", "1970-02-30", "abc", "19700101", "70-01-01", "1970-1-1", "1970-01-01T00:00",
                  "xx1970", "ge"],
    )
    def test_malformed_dates_raise(self, patients: tuple[Patient, ...], value: str) -> None:
        with pytest.raises(PdqmQueryError, match="birthdate"):
            search_patients(patients, [("birthdate", value)])

    def test_ap_is_not_supported(self, patients: tuple[Patient, ...]) -> None:
        with pytest.raises(PdqmQueryError, match="'ap' prefix is not supported") as info:
            search_patients(patients, [("birthdate", "ap1970")])
        assert info.value.issue_code == "not-supported"


class TestIdentifier:
    def test_system_and_value(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("identifier", f"{OID7}|WIC0001")) == ["wic-alpha"]
        assert find(patients, ("identifier", f"{OID8}|WIC0001")) == ["wic-beta"]

    def test_value_alone_matches_any_system(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("identifier", "WIC0001")) == ["wic-alpha", "wic-beta"]
        assert find(patients, ("identifier", "LEGACY-0011")) == ["wic-legacy"]

    def test_bar_value_matches_only_identifiers_without_system(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("identifier", "|LEGACY-0011")) == ["wic-legacy"]
        assert find(patients, ("identifier", "|WIC0001")) == []

    def test_system_bar_matches_the_domain(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("identifier", f"{OID8}|")) == ["wic-beta", "otest-zeta"]
        assert len(find(patients, ("identifier", f"{OID7}|"))) == 12

    def test_domain_is_recorded_for_filtering_identifiers(self) -> None:
        query = parse_query([("identifier", f"{OID8}|,{OID7}|X"), ("identifier", f"{OID7}|")])
        assert query.domains == {OID8, OID7}

    def test_unknown_domain(self, patients: tuple[Patient, ...]) -> None:
        with pytest.raises(UnknownDomainError, match="targetSystem not found: urn:oid:9.9") as info:
            search_patients(patients, [("identifier", f"urn:oid:9.9|,{OID7}|")])
        assert info.value.systems == ("urn:oid:9.9",)

    def test_unknown_system_with_value_is_just_no_match(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("identifier", "urn:oid:9.9|WIC0001")) == []

    @pytest.mark.parametrize("value", ["|", "a|b|c"])
    def test_malformed(self, patients: tuple[Patient, ...], value: str) -> None:
        with pytest.raises(PdqmQueryError, match="identifier"):
            search_patients(patients, [("identifier", value)])

    def test_escaped_bar_is_part_of_the_value(self) -> None:
        piped = make_patient(identifiers=(Identifier(None, "A|B"),), dicom_patient_id="A|B")
        assert search_patients([piped], [("identifier", "A\\|B")]) == [piped]


class TestGenderIdAndCount:
    def test_gender(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("gender", "male")) == ["wic-beta", "mueller-juergen", "wic-legacy"]
        assert find(patients, ("gender", "unknown")) == ["wic-delta"]
        assert find(patients, ("gender", "other,unknown")) == ["wic-gamma", "wic-delta", "otest-zeta"]
        assert find(patients, ("gender", "http://hl7.org/fhir/administrative-gender|male")) == [
            "wic-beta", "mueller-juergen", "wic-legacy"]
        assert find(patients, ("gender", "urn:other|male")) == []

    def test_family_and_gender_combination(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family", "wic"), ("gender", "female")) == ["wic-alpha", "wicktest-epsilon"]

    @pytest.mark.parametrize("value", ["M", "Male", "f", "x"])
    def test_gender_outside_the_value_set_raises(self, patients: tuple[Patient, ...], value: str) -> None:
        with pytest.raises(PdqmQueryError, match="is not one of male, female, other, unknown"):
            search_patients(patients, [("gender", value)])

    def test_id(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("_id", "wic-beta")) == ["wic-beta"]
        assert find(patients, ("_id", "otest-zeta,wic-alpha")) == ["wic-alpha", "otest-zeta"]
        assert find(patients, ("_id", "WIC-BETA")) == []

    def test_count_is_the_page_size(self, patients: tuple[Patient, ...]) -> None:
        assert find(patients, ("family", "wic"), ("_count", "2")) == ["wic-alpha", "wic-beta"]
        assert find(patients, ("_count", "0")) == []
        assert len(find(patients, ("_count", "100"))) == 12

    @pytest.mark.parametrize("value", ["-1", "x", "1.5", "1,2", "1e3"])
    def test_bad_count(self, patients: tuple[Patient, ...], value: str) -> None:
        with pytest.raises(PdqmQueryError, match="_count"):
            search_patients(patients, [("_count", value)])

    def test_repeated_count(self, patients: tuple[Patient, ...]) -> None:
        with pytest.raises(PdqmQueryError, match="more than once"):
            search_patients(patients, [("_count", "1"), ("_count", "2")])

    def test_no_parameters_returns_everyone_in_file_order(self, patients: tuple[Patient, ...]) -> None:
        assert search_patients(patients, []) == list(patients)


class TestUnsupportedParameters:
    def test_unknown_parameters_are_ignored_and_left_out_of_self(self, patients: tuple[Patient, ...]) -> None:
        query = parse_query([("family", "wic"), ("active", "true"), ("_sort", "family"), ("_format", "json")])
        assert query.ignored == ("active", "_sort")
        assert query.processed == (("family", "wic"),)
        assert query.self_url(BASE) == f"{BASE}/Patient?family=wic"
        assert find(patients, ("family", "wick"), ("address", "x")) == ["wicktest-epsilon"]

    def test_strict_handling_rejects_them(self) -> None:
        with pytest.raises(PdqmQueryError, match="unsupported parameter.*active.*handling=strict"):
            parse_query([("family", "wic"), ("active", "true")], strict=True)
        parse_query([("family", "wic"), ("_format", "json")], strict=True)

    @pytest.mark.parametrize("name", ["family:missing", "given:text", "birthdate:exact", "identifier:of-type",
                                      "gender:not", "_id:exact"])
    def test_unsupported_modifier_raises(self, name: str) -> None:
        with pytest.raises(PdqmQueryError, match="modifier") as info:
            parse_query([(name, "x")])
        assert info.value.issue_code == "not-supported"

    def test_empty_values_are_ignored(self, patients: tuple[Patient, ...]) -> None:
        query = parse_query([("family", ""), ("birthdate", ""), ("_count", ""), ("given", ",")])
        assert query.processed == ()
        assert query.count is None
        assert len(query.select(patients)) == 12

    def test_self_url_keeps_order_modifiers_and_encodes_values(self) -> None:
        query = parse_query([("family:exact", "Müller"), ("identifier", f"{OID7}|WIC0006"), ("_count", "5")])
        url = query.self_url(BASE + "/")
        assert url.startswith(f"{BASE}/Patient?family:exact=M%C3%BCller&identifier=urn:oid:1.2.3.4.5.6.7%7C")
        assert parse_qsl(urlsplit(url).query) == [
            ("family:exact", "Müller"), ("identifier", f"{OID7}|WIC0006"), ("_count", "5")]


class TestResources:
    def test_patient_resource(self, patients: tuple[Patient, ...]) -> None:
        beta = next(p for p in patients if p.id == "wic-beta")
        assert patient_resource(beta) == {
            "resourceType": "Patient",
            "id": "wic-beta",
            "identifier": [{"system": OID7, "value": "WIC0002"}, {"system": OID8, "value": "WIC0001"}],
            "name": [{"family": "WIC", "given": ["TEST", "BETA"]}],
            "gender": "male",
            "birthDate": "1985-06-15",
        }

    def test_absent_values_are_left_out(self, patients: tuple[Patient, ...]) -> None:
        by_id = {p.id: p for p in patients}
        delta = patient_resource(by_id["wic-delta"])
        assert "birthDate" not in delta
        legacy = patient_resource(by_id["wic-legacy"])
        assert legacy["identifier"][1] == {"value": "LEGACY-0011"}
        nameless = patient_resource(make_patient(given=()))
        assert nameless["name"] == [{"family": "Local"}]

    def test_domains_restrict_identifiers(self, patients: tuple[Patient, ...]) -> None:
        beta = next(p for p in patients if p.id == "wic-beta")
        assert patient_resource(beta, domains={OID8})["identifier"] == [{"system": OID8, "value": "WIC0001"}]

    def test_operation_outcome(self) -> None:
        assert operation_outcome(severity="error", code="not-found", diagnostics="Patient/x is not known") == {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Patient/x is not known"}],
        }
        with pytest.raises(ValueError, match="severity"):
            operation_outcome(severity="bad", code="x", diagnostics="y")  # type: ignore[arg-type]

    def test_capability_statement_declares_the_search_parameters(self) -> None:
        statement = pdqm.capability_statement(BASE)
        assert statement["resourceType"] == "CapabilityStatement"
        assert statement["fhirVersion"] == "4.0.1"
        resource = statement["rest"][0]["resource"][0]
        assert resource["type"] == "Patient"
        assert {i["code"] for i in resource["interaction"]} == {"read", "search-type"}
        declared = {p["name"]: p["type"] for p in resource["searchParam"]}
        assert declared == {"_id": "token", "family": "string", "given": "string", "birthdate": "date",
                            "gender": "token", "identifier": "token"}
        assert set(declared) | {"_count"} == set(pdqm.SUPPORTED_SEARCH_PARAMETERS)


# A hand-written JSON Schema of the searchset Bundle this supplier must produce (FHIR R4 bundle.html,
# patient.html): a structural check independent of the code that builds it.
FHIR_ID = "^[A-Za-z0-9\\-.]{1,64}$"
BUNDLE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["resourceType", "type", "total", "link"],
    "additionalProperties": False,
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"const": "searchset"},
        "total": {"type": "integer", "minimum": 0},
        "link": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["relation", "url"],
                "additionalProperties": False,
                "properties": {"relation": {"type": "string"}, "url": {"type": "string", "pattern": "^https?://"}},
            },
            "contains": {"properties": {"relation": {"const": "self"}}},
        },
        "entry": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/entry"}},
    },
    "$defs": {
        "entry": {
            "type": "object",
            "required": ["fullUrl", "resource", "search"],
            "additionalProperties": False,
            "properties": {
                "fullUrl": {"type": "string", "pattern": "^https?://.+/Patient/[A-Za-z0-9\\-.]{1,64}$"},
                "resource": {"$ref": "#/$defs/patient"},
                "search": {
                    "type": "object",
                    "required": ["mode"],
                    "properties": {"mode": {"enum": ["match", "include", "outcome"]}},
                },
            },
        },
        "patient": {
            "type": "object",
            "required": ["resourceType", "id", "name", "gender"],
            "additionalProperties": False,
            "properties": {
                "resourceType": {"const": "Patient"},
                "id": {"type": "string", "pattern": FHIR_ID},
                "identifier": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["value"],
                        "additionalProperties": False,
                        "properties": {"system": {"type": "string", "minLength": 1},
                                       "value": {"type": "string", "minLength": 1}},
                    },
                },
                "name": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"family": {"type": "string", "minLength": 1},
                                       "given": {"type": "array", "minItems": 1,
                                                 "items": {"type": "string", "minLength": 1}}},
                    },
                },
                "gender": {"enum": ["male", "female", "other", "unknown"]},
                "birthDate": {"type": "string", "pattern": "^\\d{4}(-\\d{2}(-\\d{2})?)?$"},
            },
        },
    },
}


def assert_valid_searchset(bundle: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(BUNDLE_SCHEMA)
    jsonschema.validate(bundle, BUNDLE_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert_no_empty_arrays_or_nulls(bundle)
    entries = bundle.get("entry", [])
    assert bundle["total"] >= len(entries)
    for entry in entries:
        assert entry["fullUrl"].endswith("/Patient/" + entry["resource"]["id"])


def assert_no_empty_arrays_or_nulls(value: Any, path: str = "$") -> None:
    """FHIR JSON forbids null values and empty arrays (json.html)."""
    assert value is not None, f"null at {path}"
    if isinstance(value, list):
        assert value, f"empty array at {path}"
        for i, item in enumerate(value):
            assert_no_empty_arrays_or_nulls(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_no_empty_arrays_or_nulls(item, f"{path}.{key}")


class TestSearchsetBundle:
    def test_shape(self, patients: tuple[Patient, ...]) -> None:
        found = search_patients(patients, [("family", "wic")])
        bundle = searchset_bundle(found, base_url=BASE + "/", self_url=f"{BASE}/Patient?family=wic")
        assert_valid_searchset(bundle)
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "searchset"
        assert bundle["total"] == 6
        assert bundle["link"] == [{"relation": "self", "url": f"{BASE}/Patient?family=wic"}]
        assert [e["fullUrl"] for e in bundle["entry"]][:2] == [f"{BASE}/Patient/wic-alpha", f"{BASE}/Patient/wic-beta"]
        assert {e["search"]["mode"] for e in bundle["entry"]} == {"match"}

    def test_empty_bundle_has_total_zero_and_no_entry(self) -> None:
        bundle = searchset_bundle([], base_url=BASE, self_url=f"{BASE}/Patient?family=nobody")
        assert_valid_searchset(bundle)
        assert bundle["total"] == 0
        assert "entry" not in bundle

    def test_total_counts_all_pages(self, patients: tuple[Patient, ...]) -> None:
        bundle = searchset_bundle(patients[:2], base_url=BASE, self_url=f"{BASE}/Patient?_count=2", total=12)
        assert_valid_searchset(bundle)
        assert (bundle["total"], len(bundle["entry"])) == (12, 2)

    def test_schema_rejects_a_broken_bundle(self, patients: tuple[Patient, ...]) -> None:
        bundle = searchset_bundle(patients[:1], base_url=BASE, self_url=f"{BASE}/Patient")
        bundle["entry"][0]["search"]["mode"] = "hit"
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bundle, BUNDLE_SCHEMA, cls=jsonschema.Draft202012Validator)


class TestNegotiation:
    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            (None, APPLICATION_FHIR_JSON),
            ("", APPLICATION_FHIR_JSON),
            ("*/*", APPLICATION_FHIR_JSON),
            ("application/*", APPLICATION_FHIR_JSON),
            (APPLICATION_FHIR_JSON, APPLICATION_FHIR_JSON),
            (f"{APPLICATION_FHIR_JSON}; fhirVersion=4.0", APPLICATION_FHIR_JSON),
            (APPLICATION_JSON, APPLICATION_JSON),
            (f"{APPLICATION_JSON}, {APPLICATION_FHIR_JSON};q=0.5", APPLICATION_JSON),
            (f"{APPLICATION_FHIR_JSON};q=0, */*", APPLICATION_JSON),
            (f"{TEXT_PLAIN}, */*;q=0.1", APPLICATION_FHIR_JSON),
            (TEXT_PLAIN, None),
            (APPLICATION_DICOM_XML, None),
            (f"{APPLICATION_FHIR_JSON}; fhirVersion=3.0", None),
            (f"{APPLICATION_FHIR_JSON};q=0", None),
            ("garbage", None),
        ],
    )
    def test_accept(self, accept: str | None, expected: str | None) -> None:
        assert negotiate_format(accept, None) == expected

    @pytest.mark.parametrize(
        ("fmt", "expected"),
        [
            ("json", APPLICATION_FHIR_JSON),
            ("JSON", APPLICATION_FHIR_JSON),
            (APPLICATION_FHIR_JSON, APPLICATION_FHIR_JSON),
            (APPLICATION_FHIR_JSON.replace("+", " "), APPLICATION_FHIR_JSON),  # '+' decoded as a space
            (APPLICATION_JSON, APPLICATION_JSON),
            ("xml", None),
            (APPLICATION_DICOM_JSON, None),
        ],
    )
    def test_format_overrides_accept(self, fmt: str, expected: str | None) -> None:
        assert negotiate_format(TEXT_PLAIN, fmt) == expected


def content_type(response: Any) -> tuple[str, str | None]:
    parsed = parse_media_type(response.headers["content-type"])
    return parsed.essence, parsed.charset


@pytest.fixture(scope="module")
def client(patients: tuple[Patient, ...]) -> TestClient:
    return TestClient(pdqm_app(patients))


def outcome(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert content_type(response) == (APPLICATION_FHIR_JSON, "utf-8")
    issue: dict[str, Any] = body["issue"][0]
    return issue


class TestApp:
    def test_search_returns_a_searchset(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"family": "wic", "gender": "female"})
        assert response.status_code == 200
        assert content_type(response) == (APPLICATION_FHIR_JSON, "utf-8")
        bundle = response.json()
        assert_valid_searchset(bundle)
        assert [e["resource"]["id"] for e in bundle["entry"]] == ["wic-alpha", "wicktest-epsilon"]
        assert bundle["entry"][0]["fullUrl"] == "http://testserver/Patient/wic-alpha"
        assert bundle["link"][0]["url"] == "http://testserver/Patient?family=wic&gender=female"

    def test_body_is_utf8_json_with_non_ascii_names(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"family": "試験"})
        assert "試験".encode() in response.content
        assert response.json()["entry"][0]["resource"]["name"][0]["given"] == ["花子"]

    def test_no_match_is_200_with_total_zero(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"family": "nobody"})
        assert response.status_code == 200
        assert response.json()["total"] == 0
        assert "entry" not in response.json()

    def test_count_pages_and_total_counts_everything(self, client: TestClient) -> None:
        bundle = client.get("/Patient", params={"_count": "3"}).json()
        assert_valid_searchset(bundle)
        assert (bundle["total"], len(bundle["entry"])) == (12, 3)
        assert bundle["link"][0]["url"].endswith("/Patient?_count=3")

    def test_domain_filter_restricts_returned_identifiers(self, client: TestClient) -> None:
        bundle = client.get("/Patient", params={"identifier": f"{OID8}|"}).json()
        assert [e["resource"]["identifier"] for e in bundle["entry"]] == [
            [{"system": OID8, "value": "WIC0001"}], [{"system": OID8, "value": "OTH0012"}]]

    def test_unsupported_parameter_is_ignored_and_missing_from_self(self, client: TestClient) -> None:
        response = client.get("/Patient", params=[("family", "wick"), ("active", "true"), ("_format", "json")])
        assert response.status_code == 200
        assert response.json()["link"][0]["url"] == "http://testserver/Patient?family=wick"
        assert response.json()["total"] == 1

    def test_prefer_strict_rejects_unsupported_parameters(self, client: TestClient) -> None:
        response = client.get("/Patient?family=wick&active=true", headers={"Prefer": "handling=strict"})
        assert response.status_code == 400
        assert outcome(response)["code"] == "not-supported"

    def test_bad_date_is_400(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"birthdate": "1970-13-01"})
        assert response.status_code == 400
        issue = outcome(response)
        assert (issue["severity"], issue["code"]) == ("error", "invalid")
        assert "1970-13-01" in issue["diagnostics"]

    def test_unsupported_modifier_is_400(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"family:missing": "true"})
        assert response.status_code == 400
        assert outcome(response)["code"] == "not-supported"

    def test_unknown_domain_is_404_warning(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"identifier": "urn:oid:9.9.9|"})
        assert response.status_code == 404
        issue = outcome(response)
        assert (issue["severity"], issue["code"]) == ("warning", "not-found")
        assert issue["diagnostics"].startswith("targetSystem not found")

    def test_bad_accept_is_406(self, client: TestClient) -> None:
        response = client.get("/Patient", headers={"Accept": APPLICATION_DICOM_XML})
        assert response.status_code == 406
        issue = outcome(response)
        assert (issue["severity"], issue["code"]) == ("error", "not-supported")

    def test_bad_format_is_406(self, client: TestClient) -> None:
        assert client.get("/Patient", params={"_format": "xml"}).status_code == 406

    def test_application_json_is_accepted(self, client: TestClient) -> None:
        response = client.get("/Patient", params={"_id": "wic-alpha"}, headers={"Accept": APPLICATION_JSON})
        assert response.status_code == 200
        assert content_type(response) == (APPLICATION_JSON, "utf-8")
        assert response.json()["total"] == 1

    def test_read(self, client: TestClient) -> None:
        response = client.get("/Patient/mueller-juergen")
        assert response.status_code == 200
        assert content_type(response) == (APPLICATION_FHIR_JSON, "utf-8")
        assert response.json()["name"] == [{"family": "Müller", "given": ["Jürgen"]}]

    def test_read_unknown_id_is_404(self, client: TestClient) -> None:
        response = client.get("/Patient/no-such-patient")
        assert response.status_code == 404
        issue = outcome(response)
        assert (issue["severity"], issue["code"]) == ("error", "not-found")

    def test_read_in_an_unavailable_format_is_400(self, client: TestClient) -> None:
        response = client.get("/Patient/wic-alpha", headers={"Accept": TEXT_PLAIN})
        assert response.status_code == 400
        assert outcome(response)["code"] == "not-supported"

    def test_metadata(self, client: TestClient) -> None:
        response = client.get("/metadata")
        assert response.status_code == 200
        assert content_type(response) == (APPLICATION_FHIR_JSON, "utf-8")
        assert response.json()["resourceType"] == "CapabilityStatement"
        assert response.json()["implementation"]["url"] == "http://testserver"
        assert client.get("/metadata", headers={"Accept": TEXT_PLAIN}).status_code == 406

    def test_other_paths_and_methods_get_operation_outcomes(self, client: TestClient) -> None:
        response = client.get("/Observation")
        assert response.status_code == 404
        assert outcome(response)["code"] == "not-found"
        response = client.post("/Patient", content=b"family=wic")
        assert response.status_code == 405
        assert "GET" in response.headers["allow"]
        assert outcome(response)["code"] == "not-supported"

    def test_duplicate_ids_are_refused(self) -> None:
        with pytest.raises(ValueError, match="share the id 'local-1'"):
            pdqm_app([make_patient(), make_patient()])


@pytest.fixture(scope="module")
def parent(patients: tuple[Patient, ...]) -> Starlette:
    """The colleague's set-up: the supplier mounted under /fhir in the Image Manager app."""
    return Starlette(routes=[Mount("/fhir", app=pdqm_app(patients))])


class TestMounted:
    def test_links_carry_the_mount_point(self, parent: Starlette) -> None:
        client = TestClient(parent)
        response = client.get("/fhir/Patient", params={"given": "alpha"})
        assert response.status_code == 200
        bundle = response.json()
        assert_valid_searchset(bundle)
        assert bundle["link"][0]["url"] == "http://testserver/fhir/Patient?given=alpha"
        full_url = bundle["entry"][0]["fullUrl"]
        assert full_url == "http://testserver/fhir/Patient/wic-alpha"
        followed = client.get(full_url)
        assert followed.status_code == 200
        assert followed.json()["id"] == "wic-alpha"
        self_again = client.get(bundle["link"][0]["url"]).json()
        assert self_again["total"] == bundle["total"]

    def test_metadata_and_errors_under_the_mount(self, parent: Starlette) -> None:
        client = TestClient(parent, base_url="https://pacs.example.test")
        assert client.get("/fhir/metadata").json()["implementation"]["url"] == "https://pacs.example.test/fhir"
        assert client.get("/fhir/Patient/nope").status_code == 404
        assert client.get("/fhir/Patient", headers={"Accept": TEXT_PLAIN}).status_code == 406

    def test_root_path_behind_a_proxy(self, parent: Starlette) -> None:
        client = TestClient(parent, root_path="/proxy")
        bundle = client.get("/proxy/fhir/Patient", params={"_id": "wic-beta"}).json()
        assert bundle["entry"][0]["fullUrl"] == "http://testserver/proxy/fhir/Patient/wic-beta"
