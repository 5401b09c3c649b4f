"""Tests of the WIC content rules (validate/wic_content.py) and of the baseline rule profile."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from tests.support.datasets import edited, part10_bytes, vl_photographic_json
from tests.support.exchanges import Part, stow_exchange
from tests.support.exchanges import run_named_check as run
from wic_conformance.catalogue import RuleProfile, default_catalogue, load_profile
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.findings import Severity
from wic_conformance.validate import stow_request, wic_content  # noqa: F401  (registers the checks)
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check
from wic_conformance.validate.wic_content import ENCAPSULATED_PDF, SECONDARY_CAPTURE, VL_PHOTOGRAPHIC

URL = "http://127.0.0.1/dicom-web/studies"
PIXEL_URI = "http://127.0.0.1/dicom-web/bulk/1"
DOC_URI = "http://127.0.0.1/dicom-web/bulk/doc"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PDF = b"%PDF-1.4\n%%EOF\n"
PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "wic-baseline.yaml"

CHECKS = [
    "wic_content_has_patient_identity", "wic_content_has_study_context", "wic_content_has_series_context",
    "wic_content_has_sop_identity", "wic_content_character_set_declared",
    "wic_content_conversion_type_present", "wic_content_encapsulated_document_attributes",
]


# -- builders ---------------------------------------------------------------------------------------
def photo(*, extra: Mapping[str, Any] | None = None, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Return the DICOM JSON object of a VL Photographic image meeting the whole baseline."""
    return vl_photographic_json(study="2.25.1", series="2.25.2", sop="2.25.11", pixel_uri=PIXEL_URI,
                                extra=extra, drop=drop)


def pdf(*, extra: Mapping[str, Any] | None = None, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Return the DICOM JSON object of an Encapsulated PDF meeting the whole baseline."""
    ds = photo(drop=["7FE00010"], extra={
        "00080016": {"vr": "UI", "Value": [ENCAPSULATED_PDF]},
        "00080023": {"vr": "DA", "Value": ["20240102"]},
        "00080033": {"vr": "TM", "Value": ["101500"]},
        "0008002A": {"vr": "DT"},
        "00080060": {"vr": "CS", "Value": ["DOC"]},
        "00080064": {"vr": "CS", "Value": ["SD"]},
        "00280301": {"vr": "CS", "Value": ["NO"]},
        "0040A043": {"vr": "SQ", "Value": []},
        "00420010": {"vr": "ST", "Value": ["Consent"]},
        "00420011": {"vr": "OB", "BulkDataURI": DOC_URI},
        "00420012": {"vr": "LO", "Value": ["application/pdf"]},
    })
    return edited(ds, extra=extra, drop=drop)


def json_request(*datasets: dict[str, Any]) -> Exchange:
    parts: list[Part] = [
        ({"Content-Type": mt.APPLICATION_DICOM_JSON}, json.dumps(list(datasets)).encode("utf-8"))]
    if any("7FE00010" in d for d in datasets):
        parts.append(({"Content-Type": mt.IMAGE_JPEG, "Content-Location": PIXEL_URI}, JPEG))
    if any("00420011" in d for d in datasets):
        parts.append(({"Content-Type": mt.APPLICATION_PDF, "Content-Location": DOC_URI}, PDF))
    return stow_exchange(parts, url=URL, root_type=mt.APPLICATION_DICOM_JSON)


def part10_request(ds: Dataset) -> Exchange:
    data = part10_bytes(ds, sop_class=str(ds.SOPClassUID), sop_instance="2.25.21")
    return stow_exchange([({"Content-Type": mt.APPLICATION_DICOM}, data)], url=URL, root_type=mt.APPLICATION_DICOM)


def secondary_capture(**attrs: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = "2.25.21"
    ds.StudyInstanceUID = "2.25.1"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-1"
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def findings_of(result: CheckResult, rid: str) -> list[str]:
    return [f.message for f in result.findings if f.requirement == rid]


# -- good content -----------------------------------------------------------------------------------
class TestGoodContent:
    @pytest.mark.parametrize("name", CHECKS)
    def test_photo_passes(self, name: str) -> None:
        result = run(name, json_request(photo()))
        assert result.outcome is Outcome.PASSED, [repr(f) for f in result.findings]

    @pytest.mark.parametrize("name", CHECKS)
    def test_pdf_passes(self, name: str) -> None:
        result = run(name, json_request(pdf()))
        assert result.outcome is Outcome.PASSED, [repr(f) for f in result.findings]

    def test_checks_are_tagged_and_configurable(self) -> None:
        for name in CHECKS:
            spec = REGISTRY[name]
            assert "capturer" in spec.tags
            assert spec.options
            for rid in spec.requirements:
                assert default_catalogue()[rid].configurable, rid

    def test_not_applicable_without_a_request(self) -> None:
        result = run("wic_content_has_patient_identity", Exchange())
        assert result.outcome is Outcome.NOT_APPLICABLE


# -- one family per check ---------------------------------------------------------------------------
class TestPatientIdentity:
    name = "wic_content_has_patient_identity"

    def test_missing_patient_name(self) -> None:
        result = run(self.name, json_request(photo(drop=["00100010"])))
        assert result.outcome is Outcome.FAILED
        assert findings_of(result, "WIC-CA-001") == [
            "Patient's Name (0010,0010) is absent; WIC-CA-001 asks for it with a value"]
        assert result.findings[0].location == "request part 1, dataset 1 > (0010,0010)"

    def test_empty_patient_id(self) -> None:
        result = run(self.name, json_request(photo(extra={"00100020": {"vr": "LO"}})))
        assert result.outcome is Outcome.FAILED
        assert findings_of(result, "WIC-CA-002") == [
            "Patient ID (0010,0020) is present but empty; WIC-CA-002 asks for a known value"]

    def test_no_issuer_is_a_warning(self) -> None:
        result = run(self.name, json_request(photo(drop=["00100021"])))
        assert result.outcome is Outcome.WARNED
        (message,) = findings_of(result, "WIC-CA-003")
        assert "Issuer of Patient ID (0010,0021)" in message
        assert result.findings[0].severity is Severity.WARNING
        assert result.findings[0].confidence == "U"

    def test_issuer_qualifiers_sequence_is_enough(self) -> None:
        seq = {"00100024": {"vr": "SQ", "Value": [{"00400032": {"vr": "UT", "Value": ["1.2.3"]}}]}}
        result = run(self.name, json_request(photo(drop=["00100021"], extra=seq)))
        assert result.outcome is Outcome.PASSED

    def test_type2_attributes_may_be_empty_but_present(self) -> None:
        result = run(self.name, json_request(photo(drop=["00100030"])))
        assert findings_of(result, "WIC-CA-004") == [
            "Patient's Birth Date (0010,0030) is absent; WIC-CA-004 asks for it"]

    def test_part10_instance_is_judged(self) -> None:
        result = run(self.name, part10_request(secondary_capture(PatientID="")))
        assert result.outcome is Outcome.FAILED
        assert findings_of(result, "WIC-CA-002")
        assert result.findings[0].location.startswith("request part 1 > ")


class TestStudyContext:
    name = "wic_content_has_study_context"

    def test_missing_study_uid(self) -> None:
        result = run(self.name, json_request(photo(drop=["0020000D"])))
        assert result.outcome is Outcome.FAILED
        assert "Study Instance UID (0020,000D) is absent" in findings_of(result, "WIC-CA-005")[0]

    def test_missing_accession_number_is_a_warning(self) -> None:
        result = run(self.name, json_request(photo(drop=["00080050"])))
        assert result.outcome is Outcome.WARNED
        assert "Accession Number (0008,0050)" in findings_of(result, "WIC-CA-006")[0]


class TestSeriesContext:
    name = "wic_content_has_series_context"

    def test_photo_with_modality_ot(self) -> None:
        result = run(self.name, json_request(photo(extra={"00080060": {"vr": "CS", "Value": ["OT"]}})))
        assert result.outcome is Outcome.WARNED
        (message,) = findings_of(result, "WIC-CA-008")
        assert message == ("Modality (0008,0060) is 'OT'; WIC-CA-008 expects XC for SOP Class "
                           f"{VL_PHOTOGRAPHIC}")

    def test_pdf_with_modality_xc(self) -> None:
        result = run(self.name, json_request(pdf(extra={"00080060": {"vr": "CS", "Value": ["XC"]}})))
        assert "expects DOC" in findings_of(result, "WIC-CA-008")[0]

    def test_secondary_capture_may_use_ot(self) -> None:
        sc = secondary_capture(Modality="OT", SeriesInstanceUID="2.25.2", SeriesNumber=None,
                               InstanceNumber=None, Manufacturer=None)
        assert run(self.name, part10_request(sc)).outcome is Outcome.PASSED

    def test_missing_series_uid_and_manufacturer(self) -> None:
        result = run(self.name, json_request(photo(drop=["0020000E", "00080070"])))
        assert findings_of(result, "WIC-CA-007") and findings_of(result, "WIC-CA-010")

    def test_missing_instance_number(self) -> None:
        result = run(self.name, json_request(photo(drop=["00200013"])))
        assert "Instance Number (0020,0013)" in findings_of(result, "WIC-CA-009")[0]


class TestSopIdentity:
    name = "wic_content_has_sop_identity"

    def test_missing_sop_class(self) -> None:
        result = run(self.name, json_request(photo(drop=["00080016"])))
        assert result.outcome is Outcome.FAILED
        assert "SOP Class UID (0008,0016) is absent" in findings_of(result, "WIC-CA-011")[0]

    def test_missing_sop_instance_uid_passes_by_default(self) -> None:
        assert run(self.name, json_request(photo(drop=["00080018"]))).outcome is Outcome.PASSED

    def test_option_can_require_sop_instance_uid(self) -> None:
        rule = {"attributes": {"SOPClassUID": "value", "SOPInstanceUID": "value"}}
        options = {self.name: {"WIC-CA-011": rule}}
        result = run(self.name, json_request(photo(drop=["00080018"])), CheckContext(options=options))
        assert "SOP Instance UID (0008,0018)" in findings_of(result, "WIC-CA-011")[0]


class TestCharacterSet:
    name = "wic_content_character_set_declared"
    name_value = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}}

    def test_non_ascii_without_character_set(self) -> None:
        result = run(self.name, json_request(photo(extra=self.name_value)))
        assert result.outcome is Outcome.FAILED
        (message,) = findings_of(result, "WIC-CA-012")
        assert "(0010,0010) 'Müller^Jürgen' holds non-ASCII characters" in message

    def test_utf8_declared_passes(self) -> None:
        extra = {**self.name_value, "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
        assert run(self.name, json_request(photo(extra=extra))).outcome is Outcome.PASSED

    def test_latin1_cannot_represent_japanese(self) -> None:
        extra = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "山田^太郎"}]},
                 "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}
        result = run(self.name, json_request(photo(extra=extra)))
        assert "cannot represent" in findings_of(result, "WIC-CA-012")[0]

    def test_latin1_covers_german(self) -> None:
        extra = {**self.name_value, "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}
        assert run(self.name, json_request(photo(extra=extra))).outcome is Outcome.PASSED

    def test_nested_text_is_scanned(self) -> None:
        extra = {"0040A043": {"vr": "SQ", "Value": [{"00080104": {"vr": "LO", "Value": ["Einverständnis"]}}]}}
        result = run(self.name, json_request(photo(extra=extra)))
        assert "(0008,0104)" in findings_of(result, "WIC-CA-012")[0]

    def test_option_relaxes_metadata(self) -> None:
        ctx = CheckContext(options={self.name: {"require_in_metadata": False}})
        assert run(self.name, json_request(photo(extra=self.name_value)), ctx).outcome is Outcome.PASSED

    def test_part10_is_judged_even_when_metadata_is_relaxed(self) -> None:
        ctx = CheckContext(options={self.name: {"require_in_metadata": False}})
        ds = secondary_capture(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen")
        assert run(self.name, part10_request(ds), ctx).outcome is Outcome.PASSED
        ds = secondary_capture(PatientName="Müller^Jürgen")
        result = run(self.name, part10_request(ds), ctx)
        assert result.outcome is Outcome.FAILED
        assert result.findings[0].location == "request part 1 > (0008,0005)"

    def test_bad_option_is_a_toolkit_error(self) -> None:
        ctx = CheckContext(options={self.name: {"require_in_metadata": "yes"}})
        result = run_check(REGISTRY[self.name], ctx, json_request(photo()))
        assert result.outcome is Outcome.ERROR
        assert "require_in_metadata" in result.error


class TestConversionType:
    name = "wic_content_conversion_type_present"

    def test_secondary_capture_without_conversion_type(self) -> None:
        result = run(self.name, part10_request(secondary_capture()))
        assert result.outcome is Outcome.FAILED
        assert "Conversion Type (0008,0064) is absent" in findings_of(result, "WIC-CA-013")[0]

    def test_secondary_capture_with_conversion_type(self) -> None:
        exchange = part10_request(secondary_capture(ConversionType="WSD"))
        assert run(self.name, exchange).outcome is Outcome.PASSED

    def test_pdf_without_conversion_type(self) -> None:
        result = run(self.name, json_request(pdf(drop=["00080064"])))
        assert findings_of(result, "WIC-CA-013")

    def test_photo_is_not_judged(self) -> None:
        assert run(self.name, json_request(photo())).outcome is Outcome.PASSED


class TestEncapsulatedDocument:
    name = "wic_content_encapsulated_document_attributes"

    def test_wrong_mime_type_and_missing_title(self) -> None:
        result = run(self.name, json_request(pdf(drop=["00420010"], extra={
            "00420012": {"vr": "LO", "Value": ["text/plain"]}})))
        assert result.outcome is Outcome.WARNED
        messages = findings_of(result, "WIC-CA-015")
        assert any("Document Title (0042,0010) is absent" in m for m in messages)
        assert any("'text/plain'; WIC-CA-015 expects application/pdf" in m for m in messages)

    def test_empty_burned_in_annotation(self) -> None:
        result = run(self.name, json_request(pdf(extra={"00280301": {"vr": "CS"}})))
        assert "Burned In Annotation (0028,0301) is present but empty" in findings_of(result, "WIC-CA-015")[0]


# -- configuration: options and rule profiles -------------------------------------------------------
class TestConfiguration:
    def test_profile_disabling_a_rule_removes_its_finding(self) -> None:
        exchange = json_request(photo(drop=["00100021"]))
        assert findings_of(run("wic_content_has_patient_identity", exchange), "WIC-CA-003")
        catalogue = default_catalogue().with_profile(RuleProfile(rules={"WIC-CA-003": {"enabled": False}}))
        result = run("wic_content_has_patient_identity", exchange, CheckContext(catalogue=catalogue))
        assert result.outcome is Outcome.PASSED
        assert result.findings == ()

    def test_profile_relevels_a_rule(self) -> None:
        exchange = json_request(photo(drop=["00100021"]))
        catalogue = default_catalogue().with_profile(RuleProfile(rules={"WIC-CA-003": {"severity": "error"}}))
        result = run("wic_content_has_patient_identity", exchange, CheckContext(catalogue=catalogue))
        assert result.outcome is Outcome.FAILED
        assert result.findings[0].severity is Severity.ERROR

    def test_profile_file_end_to_end(self, tmp_path: Path) -> None:
        path = tmp_path / "vendor.yaml"
        path.write_text(
            "rules:\n"
            "  WIC-CA-003: {enabled: false}\n"
            "  WIC-CA-010: {severity: error}\n"
            "checks:\n"
            "  wic_content_has_patient_identity:\n"
            "    WIC-CA-004: null\n"
            "  wic_content_has_series_context:\n"
            "    WIC-CA-010: {attributes: {Manufacturer: value, ManufacturerModelName: value}}\n",
            encoding="utf-8",
        )
        ctx = CheckContext(catalogue=default_catalogue().with_profile(load_profile(path)))
        exchange = json_request(photo(drop=["00100021", "00100030"]))
        assert run("wic_content_has_patient_identity", exchange, ctx).outcome is Outcome.PASSED
        series = run("wic_content_has_series_context", exchange, ctx)
        assert series.outcome is Outcome.FAILED
        assert findings_of(series, "WIC-CA-010") == [
            "Manufacturer's Model Name (0008,1090) is absent; WIC-CA-010 asks for it with a value"]

    def test_profile_cannot_change_a_normative_rule(self, tmp_path: Path) -> None:
        from wic_conformance.errors import ConfigError

        path = tmp_path / "bad.yaml"
        path.write_text("rules:\n  STOW-HDR-001: {enabled: false}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="STOW-HDR-001: confidence N"):
            default_catalogue().with_profile(load_profile(path))

    @pytest.mark.parametrize(("option", "match"), [
        ({"WIC-CA-001": {"attributes": {"PatientNam": "value"}}}, "'PatientNam' is not a DICOM attribute"),
        ({"WIC-CA-001": {"attributes": {"PatientName": "known"}}}, "expected 'value' or 'present'"),
        ({"WIC-CA-001": {"attribute": {"PatientName": "value"}}}, "unknown key(s) ['attribute']"),
        ({"WIC-CA-099": {"attributes": {"PatientName": "value"}}}, "WIC-CA-099: unknown requirement ID"),
        ({"WIC-CA-001": {"note": "nothing"}}, "asks for nothing"),
    ])
    def test_bad_options_are_toolkit_errors(self, option: dict[str, Any], match: str) -> None:
        ctx = CheckContext(options={"wic_content_has_patient_identity": option})
        result = run_check(REGISTRY["wic_content_has_patient_identity"], ctx, json_request(photo()))
        assert result.outcome is Outcome.ERROR
        assert match in result.error

    def test_baseline_profile_restates_the_defaults(self) -> None:
        profile = load_profile(PROFILE)
        catalogue = default_catalogue().with_profile(profile)
        assert all(r.enabled for r in catalogue)
        for name, options in profile.checks.items():
            stripped = {k: ({kk: vv for kk, vv in v.items() if kk != "note"} if isinstance(v, dict) else v)
                        for k, v in options.items()}
            assert stripped == dict(REGISTRY[name].options), name

    def test_baseline_profile_gives_the_same_verdicts(self) -> None:
        ctx = CheckContext(catalogue=default_catalogue().with_profile(load_profile(PROFILE)))
        exchange = json_request(photo(drop=["00100021", "00100010"]))
        for name in CHECKS:
            plain = run(name, exchange)
            profiled = run(name, exchange, ctx)
            assert plain.outcome is profiled.outcome, name
            assert [f.message for f in plain.findings] == [f.message for f in profiled.findings]
