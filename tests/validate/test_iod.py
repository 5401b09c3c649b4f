"""Tests of IOD validation (validate/iod.py): dciodvfy parsing and engine, dicom-validator adapter, checks."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID

from tests.support.exchanges import check_context
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Deviation
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange
from wic_conformance.dicomweb.part10 import Part10Instance, read_part10
from wic_conformance.errors import ValidatorUnavailableError
from wic_conformance.findings import Severity
from wic_conformance.model.instances import EncapsulatedPDF, VLPhotographicImage, encode_part10, uid_from_name
from wic_conformance.validate import iod
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

ROOT = Path(__file__).resolve().parents[2]
PART10 = ROOT / "fixtures" / "part10"
MEDIA = ROOT / "fixtures" / "media"
STANDARD = ROOT / "tests" / "data" / "standard"
PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"

SAMPLE_STDERR = """\
(0x0009,0x1010)  ?  - Warning - Private tag without owner
(0x0028,0x0010) US Rows  - Warning - Explicit value representation doesn't match data dictionary; Explicit <UL> \
Dictionary <US>
Error - Illegal root for UID uses non-existent ISO arc - "1.02.3" in (0x0020,0x000d) Study Instance UID
Error - Value invalid for this VR - (0x0008,0x0020) DA Study Date  DA [1] = <2024-01-01> - Character invalid for \
this VR = '-' (0x2d)
Error - Dicom dataset contains invalid data values for Value Representations
VLPhotographicImage
Error - Unrecognized enumerated value <X> for value 1 of attribute <Patient's Sex>
Error - Missing attribute Type 1 Required Element=<SOPInstanceUID> Module=<SOPCommon>
Warning - is only permitted to be empty when actually unknown; should be absent (not empty) if an unpaired body \
part, and have a value if a paired body part - attribute <Laterality>
"""


# -- helpers ----------------------------------------------------------------------------------------
def file_exchange(*paths_or_bytes: Path | bytes, role: DocumentRole = DocumentRole.FILE) -> Exchange:
    docs = []
    for i, item in enumerate(paths_or_bytes):
        body = Body.from_file(item) if isinstance(item, Path) else Body.of(item)
        name = item.name if isinstance(item, Path) else f"instance-{i + 1}.dcm"
        docs.append(Document(mt.APPLICATION_DICOM, body, role, name))
    return Exchange(documents=tuple(docs))


def run(name: str, exchange: Exchange, **options: Any) -> CheckResult:
    return run_check(REGISTRY[name], check_context(name, options), exchange)


def context(**extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {"patient_name": "Doe^Jane", "patient_id": "P-1",
                           "study_instance_uid": uid_from_name("test-iod/study"),
                           "content_datetime": dt.datetime(2024, 5, 6, 7, 8, 9)}
    ctx.update(extra)
    return ctx


def mini_dataset(**changes: Any) -> Dataset:
    """A data set holding exactly the attributes of the cut-down Encapsulated PDF IOD."""
    ds = Dataset()
    ds.SOPClassUID = PDF_SOP_CLASS
    ds.SOPInstanceUID = uid_from_name("test-iod/mini/sop")
    ds.Modality = "DOC"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-1"
    ds.SeriesInstanceUID = uid_from_name("test-iod/mini/series")
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(PDF_SOP_CLASS)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    return ds


def fake_dciodvfy(tmp_path: Path, stderr: str, status: int = 1, sleep: float = 0.0) -> Path:
    script = tmp_path / "dciodvfy"
    (tmp_path / "stderr.txt").write_text(stderr)
    script.write_text(f"#!/bin/sh\nsleep {sleep}\ncat '{tmp_path / 'stderr.txt'}' >&2\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def fresh_tables() -> Iterator[None]:
    iod._load_tables.cache_clear()
    yield
    iod._load_tables.cache_clear()


# -- dciodvfy output parsing ------------------------------------------------------------------------
class TestParseDciodvfy:
    def test_iod_name_is_the_first_bare_identifier(self) -> None:
        name, _ = iod.parse_dciodvfy(SAMPLE_STDERR)
        assert name == "VLPhotographicImage"

    def test_levels(self) -> None:
        _, messages = iod.parse_dciodvfy(SAMPLE_STDERR)
        levels = [m.level for m in messages]
        assert levels.count(Severity.ERROR) == 5
        assert levels.count(Severity.WARNING) == 3

    def test_tag_from_prefix(self) -> None:
        _, messages = iod.parse_dciodvfy(SAMPLE_STDERR)
        assert messages[0].tag == "(0009,1010)"
        assert messages[1].tag == "(0028,0010)"
        assert messages[1].text.startswith("Rows: Explicit value representation")

    def test_tag_embedded_in_text(self) -> None:
        _, messages = iod.parse_dciodvfy(SAMPLE_STDERR)
        assert messages[2].tag == "(0020,000D)"
        assert messages[3].tag == "(0008,0020)"
        assert messages[4].tag == ""

    def test_tag_from_element_keyword_and_module(self) -> None:
        _, messages = iod.parse_dciodvfy(SAMPLE_STDERR)
        missing = messages[6]
        assert (missing.tag, missing.module) == ("(0008,0018)", "SOPCommon")
        assert missing.iod == "VLPhotographicImage"
        assert missing.raw.startswith("Error - Missing attribute Type 1")

    def test_tag_from_attribute_name(self) -> None:
        _, messages = iod.parse_dciodvfy(SAMPLE_STDERR)
        assert messages[5].tag == "(0010,0040)"  # <Patient's Sex>
        assert messages[7].tag == "(0020,0060)"  # <Laterality>
        assert messages[7].level is Severity.WARNING

    def test_unknown_attribute_name_is_kept(self) -> None:
        _, messages = iod.parse_dciodvfy("Error - Missing attribute Type 1 Required Element=<NoSuchThing> "
                                         "Module=<X>\n")
        assert messages[0].tag == "NoSuchThing"

    def test_empty_output(self) -> None:
        assert iod.parse_dciodvfy("") == ("", [])

    def test_other_lines_are_ignored(self) -> None:
        name, messages = iod.parse_dciodvfy("some banner text\nSCImage\n")
        assert (name, messages) == ("SCImage", [])


# -- the dciodvfy engine with a stand-in binary (no peer needed) ------------------------------------
class TestDciodvfyEngine:
    def test_runs_the_binary_and_parses(self, tmp_path: Path) -> None:
        binary = fake_dciodvfy(tmp_path, "VLPhotographicImage\nError - Missing attribute Type 2 Required "
                                         "Element=<PatientName> Module=<Patient>\n")
        instance = read_part10((PART10 / "vl-photographic.dcm").read_bytes(), location="x")
        name, messages, raw = iod.Dciodvfy(binary).run(instance)
        assert name == "VLPhotographicImage"
        assert [(m.level, m.tag, m.module) for m in messages] == [(Severity.ERROR, "(0010,0010)", "Patient")]
        assert "PatientName" in raw

    def test_missing_binary(self, tmp_path: Path) -> None:
        with pytest.raises(ValidatorUnavailableError, match="dciodvfy not found"):
            iod.Dciodvfy(tmp_path / "nope")

    def test_timeout(self, tmp_path: Path) -> None:
        binary = fake_dciodvfy(tmp_path, "SCImage\n", status=0, sleep=5)
        instance = read_part10(b"x" * 200)
        with pytest.raises(ValidatorUnavailableError, match="did not finish"):
            iod.Dciodvfy(binary, timeout=0.3).run(instance)

    def test_crash_is_a_toolkit_error(self, tmp_path: Path) -> None:
        binary = fake_dciodvfy(tmp_path, "Segmentation fault\n", status=139)
        with pytest.raises(ValidatorUnavailableError, match="exit status 139"):
            iod.Dciodvfy(binary).validate(read_part10(b"x" * 200))

    def test_check_uses_the_configured_binary(self, tmp_path: Path) -> None:
        binary = fake_dciodvfy(tmp_path, "VLPhotographicImage\nWarning - something odd - attribute <Laterality>\n",
                               status=0)
        result = run("part10_instance_conforms_to_iod", file_exchange(PART10 / "vl-photographic.dcm"),
                     dciodvfy=str(binary))
        assert result.outcome is Outcome.WARNED
        (finding,) = result.findings
        assert finding.severity is Severity.WARNING
        assert finding.requirement == "CONV-007"
        assert finding.location == "vl-photographic.dcm > (0020,0060)"

    def test_check_without_dciodvfy_is_a_toolkit_error(self, tmp_path: Path) -> None:
        result = run("part10_instance_conforms_to_iod", file_exchange(PART10 / "vl-photographic.dcm"),
                     dciodvfy=str(tmp_path / "missing"))
        assert result.outcome is Outcome.ERROR
        assert "ValidatorUnavailableError" in result.error and "dciodvfy not found" in result.error


# -- the real dciodvfy -------------------------------------------------------------------------------
@pytest.mark.peer
class TestPart10InstanceConformsToIod:
    @pytest.fixture(autouse=True)
    def _dciodvfy(self, dciodvfy_path: str) -> None:
        """Require the peer."""

    @pytest.mark.parametrize("name", ["vl-photographic.dcm", "video-photographic.dcm", "encapsulated-pdf.dcm",
                                      "kos.dcm", "secondary-capture.dcm"])
    def test_good_instances_pass(self, name: str) -> None:
        result = run("part10_instance_conforms_to_iod", file_exchange(PART10 / name))
        assert result.outcome is Outcome.PASSED, [f.message for f in result.findings]

    def test_missing_type_2_attribute_fails(self) -> None:
        result = run("part10_instance_conforms_to_iod", file_exchange(PART10 / "broken" / "missing-patient-name.dcm"))
        assert result.outcome is Outcome.FAILED
        (finding,) = result.findings
        assert finding.requirement == "CONV-007"
        assert finding.severity is Severity.ERROR
        assert finding.location.endswith("> (0010,0010)")
        assert "Element=<PatientName>" in finding.evidence
        assert "VLPhotographicImage" in finding.message

    def test_wrong_enumerated_value_fails(self) -> None:
        result = run("part10_instance_conforms_to_iod", file_exchange(PART10 / "broken" / "wrong-modality.dcm"))
        assert result.outcome is Outcome.FAILED
        assert any(f.location.endswith("(0008,0060)") for f in result.findings)

    def test_warning_is_a_warning_finding(self) -> None:
        ds = VLPhotographicImage(jpeg=(MEDIA / "jpeg-baseline.jpg").read_bytes(), **context())  # empty Laterality
        result = run("part10_instance_conforms_to_iod", file_exchange(ds.to_bytes()))
        assert result.outcome is Outcome.WARNED
        assert {f.severity for f in result.findings} == {Severity.WARNING}
        assert any(f.location.endswith("(0020,0060)") for f in result.findings)

    def test_warnings_can_be_dropped(self) -> None:
        ds = VLPhotographicImage(jpeg=(MEDIA / "jpeg-baseline.jpg").read_bytes(), **context())
        result = run("part10_instance_conforms_to_iod", file_exchange(ds.to_bytes()), warnings=False)
        assert result.outcome is Outcome.PASSED

    def test_every_instance_of_the_exchange_is_judged(self) -> None:
        exchange = file_exchange(PART10 / "vl-photographic.dcm", PART10 / "broken" / "missing-patient-name.dcm",
                                 PART10 / "broken" / "wrong-modality.dcm")
        result = run("part10_instance_conforms_to_iod", exchange)
        assert {f.location.split(" > ")[0] for f in result.findings} == {"missing-patient-name.dcm",
                                                                         "wrong-modality.dcm"}


# -- File Meta -------------------------------------------------------------------------------------
class TestPart10FileMetaConsistent:
    def test_good_instance_passes(self) -> None:
        assert run("part10_file_meta_consistent", file_exchange(PART10 / "vl-photographic.dcm")).outcome \
            is Outcome.PASSED

    @pytest.mark.parametrize(("role", "expected", "outcome"), [
        (DocumentRole.FILE, "STOW-PAY-013", Outcome.WARNED),  # legal on disk, not over STOW-RS
        (DocumentRole.RETRIEVED, "WIC-IM-012", Outcome.FAILED)])
    def test_implicit_vr(self, role: DocumentRole, expected: str, outcome: Outcome) -> None:
        result = run("part10_file_meta_consistent", file_exchange(PART10 / "broken" / "implicit-vr.dcm", role=role))
        assert result.outcome is outcome
        assert [f.requirement for f in result.findings] == [expected]
        assert "Implicit VR Little Endian" in result.findings[0].message

    @pytest.mark.parametrize(("role", "expected"), [(DocumentRole.FILE, "CONV-001"),
                                                    (DocumentRole.RETRIEVED, "CONV-001")])
    def test_no_preamble(self, role: DocumentRole, expected: str) -> None:
        result = run("part10_file_meta_consistent", file_exchange(PART10 / "broken" / "no-preamble.dcm", role=role))
        assert [f.requirement for f in result.findings] == [expected]
        assert "preamble" in result.findings[0].message

    @pytest.mark.parametrize(("role", "expected"), [(DocumentRole.FILE, "CONV-001"),
                                                    (DocumentRole.RETRIEVED, "WIC-IM-012")])
    def test_meta_uid_mismatch(self, role: DocumentRole, expected: str) -> None:
        result = run("part10_file_meta_consistent", file_exchange(PART10 / "broken" / "meta-mismatch.dcm", role=role))
        (finding,) = result.findings
        assert finding.requirement == expected
        assert finding.location.endswith("(0002,0003)")

    def test_request_parts_cite_capturer_rules(self) -> None:
        exchange = Exchange()
        instances = [
            read_part10((PART10 / "broken" / "implicit-vr.dcm").read_bytes(), location="part 1", origin="request"),
            read_part10((PART10 / "broken" / "no-preamble.dcm").read_bytes(), location="part 2", origin="request"),
        ]
        ctx = CheckContext()
        ctx.seed(exchange, "instances", instances)
        result = run_check(REGISTRY["part10_file_meta_consistent"], ctx, exchange)
        assert sorted((f.location, f.requirement) for f in result.findings) == [
            ("part 1 > (0002,0010)", "STOW-PAY-013"), ("part 2", "STOW-PAY-003")]

    def test_truncated_instance(self) -> None:
        data = (PART10 / "vl-photographic.dcm").read_bytes()[:300]
        result = run("part10_file_meta_consistent", file_exchange(data))
        assert result.outcome is Outcome.FAILED

    def test_undecodable_instance(self) -> None:
        exchange = Exchange()
        body = Body.of(b"\0" * 128 + b"DICM" + b"junk")
        undecodable = Part10Instance("stored", body, None, "retrieved",
                                     (Deviation("part10.unreadable", "cannot decode: junk", fatal=True),))
        ctx = CheckContext()
        ctx.seed(exchange, "instances", [undecodable])
        result = run_check(REGISTRY["part10_file_meta_consistent"], ctx, exchange)
        (finding,) = result.findings
        assert finding.requirement == "CONV-001"
        assert "cannot be decoded: cannot decode: junk" in finding.message


# -- dicom-validator on the cut-down DocBook standard -----------------------------------------------
@pytest.mark.usefixtures("no_network", "fresh_tables")
class TestDicomValidatorEngine:
    def test_loads_the_docbook_fixture(self) -> None:
        info = iod.load_dicom_info(STANDARD)
        assert list(info.iods) == [PDF_SOP_CLASS]
        assert set(info.modules) == {"C.7.1.1", "C.12.1", "C.24.1"}

    def test_edition_can_be_named(self) -> None:
        assert PDF_SOP_CLASS in iod.load_dicom_info(STANDARD, edition="mini").iods
        assert PDF_SOP_CLASS in iod.load_dicom_info(STANDARD / "mini").iods

    def test_complete_dataset_passes(self) -> None:
        assert iod.DicomValidatorEngine(STANDARD).validate_dataset(mini_dataset()) == []

    def test_missing_attribute_is_reported(self) -> None:
        messages = iod.DicomValidatorEngine(STANDARD).validate_dataset(mini_dataset(PatientName=None))
        (message,) = messages
        assert message.level is Severity.ERROR
        assert message.tag == "(0010,0010)"
        assert message.module == "Patient"
        assert "missing" in message.text and "Type 2" in message.text
        assert message.iod == "Encapsulated PDF IOD"

    def test_empty_type_1_is_reported(self) -> None:
        (message,) = iod.DicomValidatorEngine(STANDARD).validate_dataset(mini_dataset(SeriesInstanceUID=""))
        assert message.tag == "(0020,000E)" and "empty" in message.text

    def test_enumerated_value_is_checked(self) -> None:
        (message,) = iod.DicomValidatorEngine(STANDARD).validate_dataset(mini_dataset(Modality="CT"))
        assert message.tag == "(0008,0060)" and "'CT' not allowed" in message.text

    def test_unexpected_attribute_is_a_warning(self) -> None:
        (message,) = iod.DicomValidatorEngine(STANDARD).validate_dataset(mini_dataset(StudyID="1"))
        assert message.level is Severity.WARNING
        assert message.tag == "(0020,0010)" and "unexpected" in message.text

    def test_unknown_sop_class(self) -> None:
        ds = mini_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
        (message,) = iod.DicomValidatorEngine(STANDARD).validate_dataset(ds)
        assert message.level is Severity.ERROR and "unknown" in message.text

    def test_root_logger_is_left_alone(self) -> None:
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        engine = iod.DicomValidatorEngine(STANDARD)
        engine.validate_dataset(mini_dataset(PatientName=None))
        assert (list(root.handlers), root.level) == before

    def test_missing_folder_refuses_with_a_hint(self, tmp_path: Path) -> None:
        with pytest.raises(ValidatorUnavailableError, match="validate_iods --standard-path"):
            iod.DicomValidatorEngine(tmp_path / "absent")

    def test_empty_folder_refuses_without_downloading(self, tmp_path: Path) -> None:
        (tmp_path / "2025d").mkdir()
        with pytest.raises(ValidatorUnavailableError, match="never does"):
            iod.load_dicom_info(tmp_path)
        with pytest.raises(ValidatorUnavailableError, match="never does"):
            iod.load_dicom_info(tmp_path, edition="2025d")

    def test_json_cache_is_written_on_request_and_then_used(self, tmp_path: Path) -> None:
        shutil.copytree(STANDARD / "mini", tmp_path / "mini")
        iod.load_dicom_info(tmp_path, write_json_cache=True)
        written = sorted(p.name for p in (tmp_path / "mini" / "json").iterdir())
        assert written == ["dict_info.json", "iod_info.json", "module_info.json", "version"]
        shutil.rmtree(tmp_path / "mini" / "docbook")
        iod._load_tables.cache_clear()
        engine = iod.DicomValidatorEngine(tmp_path)
        assert engine.validate_dataset(mini_dataset(PatientName=None))[0].tag == "(0010,0010)"

    def test_stale_json_without_docbook_refuses(self, tmp_path: Path) -> None:
        shutil.copytree(STANDARD / "mini", tmp_path / "mini")
        iod.load_dicom_info(tmp_path, write_json_cache=True)
        shutil.rmtree(tmp_path / "mini" / "docbook")
        (tmp_path / "mini" / "json" / "version").write_text("0.0.1")
        iod._load_tables.cache_clear()
        with pytest.raises(ValidatorUnavailableError, match="another dicom-validator version"):
            iod.load_dicom_info(tmp_path)

    def test_does_not_write_into_the_standard_by_default(self) -> None:
        iod.load_dicom_info(STANDARD)
        assert not (STANDARD / "mini" / "json").exists()


def mini_part10(**changes: Any) -> bytes:
    ds = mini_dataset(**changes)
    ds.preamble = b"\x00" * 128
    return encode_part10(ds)


@pytest.mark.usefixtures("no_network", "fresh_tables")
class TestDicomValidatorCheck:
    NAME = "part10_instance_conforms_to_iod_dicom_validator"

    def test_not_configured_is_not_applicable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(iod.DICOM_STANDARD_ENV, raising=False)
        result = run(self.NAME, file_exchange(mini_part10(PatientName=None)))
        assert result.outcome is Outcome.NOT_APPLICABLE and not result.findings
        assert "not configured" in result.error

    def test_configured_by_option(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(iod.DICOM_STANDARD_ENV, raising=False)
        result = run(self.NAME, file_exchange(mini_part10(PatientName=None)), standard_path=str(STANDARD))
        assert result.outcome is Outcome.FAILED
        (finding,) = result.findings
        assert finding.requirement == "CONV-007"
        assert finding.location == "instance-1.dcm > (0010,0010)"
        assert finding.message.startswith("dicom-validator (Encapsulated PDF IOD):")

    def test_configured_by_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(iod.DICOM_STANDARD_ENV, str(STANDARD))
        assert run(self.NAME, file_exchange(mini_part10())).outcome is Outcome.PASSED
        assert run(self.NAME, file_exchange(mini_part10(Modality="XC"))).outcome is Outcome.FAILED

    def test_misconfigured_is_a_toolkit_error(self, tmp_path: Path) -> None:
        result = run(self.NAME, file_exchange(mini_part10()), standard_path=str(tmp_path))
        assert result.outcome is Outcome.ERROR
        assert "ValidatorUnavailableError" in result.error


@pytest.mark.peer
@pytest.mark.usefixtures("no_network", "fresh_tables")
class TestIodValidatorsAgree:
    NAME = "iod_validators_agree"

    @pytest.fixture(autouse=True)
    def _dciodvfy(self, dciodvfy_path: str) -> None:
        """Require the peer."""

    def test_not_configured_is_not_applicable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(iod.DICOM_STANDARD_ENV, raising=False)
        result = run(self.NAME, file_exchange(PART10 / "vl-photographic.dcm"))
        assert result.outcome is Outcome.NOT_APPLICABLE

    def test_agreement(self) -> None:
        # Both engines flag the missing Patient's Name of an Encapsulated PDF.
        ds = EncapsulatedPDF(pdf=(MEDIA / "report.pdf").read_bytes(), document_title="R", **context())
        del ds.PatientName
        result = run(self.NAME, file_exchange(ds.to_bytes()), standard_path=str(STANDARD))
        assert result.outcome is Outcome.PASSED, [f.message for f in result.findings]

    def test_disagreement_is_information(self) -> None:
        # The cut-down standard has no VL Photographic Image IOD; dciodvfy flags the wrong Modality.
        result = run(self.NAME, file_exchange(PART10 / "broken" / "wrong-modality.dcm"),
                     standard_path=str(STANDARD))
        assert result.outcome is Outcome.WARNED
        (finding,) = result.findings
        assert finding.severity is Severity.INFO
        assert "only dciodvfy flags (0008,0060)" in finding.message
        assert "only dicom-validator flags (0008,0016)" in finding.message

    def test_engines_run_once_per_context(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []
        original = iod.Dciodvfy.validate

        def counting(self: iod.Dciodvfy, instance: Part10Instance) -> list[iod.IodMessage]:
            calls.append(instance.location)
            return original(self, instance)

        monkeypatch.setattr(iod.Dciodvfy, "validate", counting)
        options = {"standard_path": str(STANDARD)}
        ctx = CheckContext(options={"iod_validators_agree": options,
                                    "part10_instance_conforms_to_iod_dicom_validator": options})
        exchange = file_exchange(PART10 / "encapsulated-pdf.dcm")
        for name in ("part10_instance_conforms_to_iod", "part10_instance_conforms_to_iod_dicom_validator",
                     self.NAME):
            assert run_check(REGISTRY[name], ctx, exchange).outcome is not Outcome.ERROR
        assert calls == ["encapsulated-pdf.dcm"]


def test_check_names_and_requirements() -> None:
    expected = {
        "part10_instance_conforms_to_iod": {"CONV-007", "WIC-IM-002", "STOW-BEH-002"},
        "part10_instance_conforms_to_iod_dicom_validator": {"CONV-007", "WIC-IM-002", "STOW-BEH-002"},
        "iod_validators_agree": {"CONV-007"},
        "part10_file_meta_consistent": {"CONV-001", "WIC-IM-012", "STOW-PAY-003", "STOW-PAY-013"},
    }
    for name, requirements in expected.items():
        assert set(REGISTRY[name].requirements) == requirements
        assert REGISTRY[name].needs == frozenset({iod.Needs.INSTANCES})


def test_roundtrip_helpers_are_sane() -> None:
    data = mini_part10()
    assert dcmread(io.BytesIO(data)).Modality == "DOC"
    assert os.path.isdir(STANDARD / "mini" / "docbook")


@pytest.mark.peer
def test_dciodvfy_judges_a_byte_range_not_the_whole_file(tmp_path: Path, dciodvfy_path: str) -> None:
    """An instance decoded from a larger file (a STOW body) is validated on its own bytes."""
    data = (PART10 / "broken" / "missing-patient-name.dcm").read_bytes()
    container = tmp_path / "body.bin"
    container.write_bytes(b"junk before" + data + b"junk after")
    instance = read_part10(Body.from_file(container, offset=len(b"junk before"), size=len(data)))
    messages = iod.Dciodvfy(dciodvfy_path).validate(instance)
    assert any("PatientName" in m.text for m in messages)


class TestSeedDciodvfy:
    """An actor that already ran dciodvfy on the same bytes hands its verdict to the checks."""

    @staticmethod
    def _refuse(monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(self: iod.Dciodvfy, instance: Part10Instance) -> list[iod.IodMessage]:
            raise AssertionError("dciodvfy was run although a verdict was seeded")

        monkeypatch.setattr(iod.Dciodvfy, "validate", refuse)

    def test_seeded_verdict_is_judged_without_running_dciodvfy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._refuse(monkeypatch)
        exchange = file_exchange(mini_part10())
        ctx = CheckContext()
        messages = [iod.IodMessage(Severity.ERROR, "Missing attribute Type 2 Required Element=<PatientName>",
                                   "(0010,0010)", iod="EncapsulatedPDF", raw="Error - Missing attribute ...")]
        iod.seed_dciodvfy(ctx, exchange, 0, messages)
        result = run_check(REGISTRY["part10_instance_conforms_to_iod"], ctx, exchange)
        assert result.outcome is Outcome.FAILED
        (finding,) = result.findings
        assert finding.location.endswith("> (0010,0010)") and "EncapsulatedPDF" in finding.message

    def test_seeded_clean_verdict_passes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._refuse(monkeypatch)
        exchange = file_exchange(mini_part10(), mini_part10())
        ctx = CheckContext()
        for index in (0, 1):
            iod.seed_dciodvfy(ctx, exchange, index, [])
        assert run_check(REGISTRY["part10_instance_conforms_to_iod"], ctx, exchange).outcome is Outcome.PASSED

    def test_a_verdict_of_another_binary_is_not_used(self, tmp_path: Path) -> None:
        script = fake_dciodvfy(tmp_path, "EncapsulatedPDF\nWarning - from the configured binary\n", status=0)
        exchange = file_exchange(mini_part10())
        ctx = check_context("part10_instance_conforms_to_iod", {"dciodvfy": str(script)})
        iod.seed_dciodvfy(ctx, exchange, 0, [])  # the default binary's verdict
        result = run_check(REGISTRY["part10_instance_conforms_to_iod"], ctx, exchange)
        assert [f.message for f in result.findings] == ["dciodvfy (EncapsulatedPDF): from the configured binary"]

    def test_seeding_under_the_configured_binary(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self._refuse(monkeypatch)
        exchange = file_exchange(mini_part10())
        ctx = check_context("part10_instance_conforms_to_iod", {"dciodvfy": "/opt/dciodvfy"})
        iod.seed_dciodvfy(ctx, exchange, 0, [], binary="/opt/dciodvfy")
        assert run_check(REGISTRY["part10_instance_conforms_to_iod"], ctx, exchange).outcome is Outcome.PASSED


# -- the bundled IOD tables (dicom-validator without any standard download) -------------------------
BUNDLED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4", "1.2.840.10008.5.1.4.1.1.77.1.1",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.840.10008.5.1.4.1.1.77.1.2", "1.2.840.10008.5.1.4.1.1.77.1.2.1",
    "1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.77.1.4.1", "1.2.840.10008.5.1.4.1.1.104.1",
    "1.2.840.10008.5.1.4.1.1.104.2",
}
GOOD_COVERED = ["vl-photographic.dcm", "vl-photographic-lossless.dcm", "video-photographic.dcm",
                "encapsulated-pdf.dcm", "secondary-capture.dcm"]


@pytest.mark.usefixtures("no_network")
class TestBundledTables:
    NAME = "part10_instance_conforms_to_iod_dicom_validator"

    def test_the_tables_describe_the_wic_iods(self) -> None:
        info = iod.load_dicom_info(iod.BUNDLED)
        assert set(info.iods) == BUNDLED_SOP_CLASSES
        modules = info.iods["1.2.840.10008.5.1.4.1.1.77.1.4"]["modules"]
        assert {"Patient", "General Study", "General Series", "Image Pixel", "VL Image", "SOP Common"} <= set(modules)
        assert modules["Image Pixel"]["use"] == "M"
        assert info.modules["image-pixel"]["(0028,0010)"]["type"] == "1"  # Rows
        assert info.dictionary["(0010,0010)"]["vr"] == "PN"

    @pytest.mark.parametrize("name", GOOD_COVERED)
    def test_good_instances_pass(self, name: str) -> None:
        result = run(self.NAME, file_exchange(PART10 / name), standard_path=iod.BUNDLED)
        assert result.outcome is Outcome.PASSED, [f.message for f in result.findings]

    def test_missing_type_2_attribute_fails(self) -> None:
        broken = PART10 / "broken" / "missing-patient-name.dcm"
        result = run(self.NAME, file_exchange(broken), standard_path=iod.BUNDLED)
        assert result.outcome is Outcome.FAILED
        (finding,) = result.findings
        assert finding.requirement == "CONV-007" and "(0010,0010)" in finding.message and "Type 2" in finding.message

    @pytest.mark.parametrize(("keyword", "tag", "kind"), [("Rows", "(0028,0010)", "Type 1"),
                                                           ("ImageType", "(0008,0008)", "Type 1"),
                                                           ("StudyDate", "(0008,0020)", "Type 2")])
    def test_removed_attribute_of_a_converted_instance_fails(self, keyword: str, tag: str, kind: str) -> None:
        ds = dcmread(PART10 / "vl-photographic.dcm")
        delattr(ds, keyword)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        result = run(self.NAME, file_exchange(buffer.getvalue()), standard_path=iod.BUNDLED)
        assert result.outcome is Outcome.FAILED
        messages = [f.message for f in result.findings]
        assert any(tag in m and kind in m for m in messages), messages

    def test_a_sop_class_outside_the_tables_is_not_judged(self) -> None:
        result = run(self.NAME, file_exchange(PART10 / "kos.dcm"), standard_path=iod.BUNDLED)
        assert result.outcome is Outcome.NOT_APPLICABLE
        assert "bundled IOD tables" in result.error

    def test_judges_in_memory_without_reading_files(self) -> None:
        engine = iod.DicomValidatorEngine(iod.BUNDLED)
        ds = dcmread(PART10 / "secondary-capture.dcm")
        assert [m for m in engine.validate_dataset(ds) if m.level is Severity.ERROR] == []
        del ds.PatientID
        assert [m.tag for m in engine.validate_dataset(ds) if m.level is Severity.ERROR] == ["(0010,0020)"]

    @staticmethod
    def error_tags(ds: Dataset) -> list[str]:
        return [m.tag for m in iod.DicomValidatorEngine(iod.BUNDLED).validate_dataset(ds) if m.level is Severity.ERROR]

    @pytest.mark.parametrize(("keyword", "value"), [("BitsAllocated", 16), ("BitsStored", 12), ("HighBit", 11)])
    def test_vl_image_bits_are_enumerated_by_attribute(self, keyword: str, value: int) -> None:
        # PS3.3 C.8.12.1.1.2 lists three attributes' Enumerated Values in one section
        info = iod.load_dicom_info(iod.BUNDLED)
        assert [e["val"] for e in info.modules["vl-image"]["(0028,0100)"]["enums"]] == [[8]]
        ds = dcmread(PART10 / "vl-photographic.dcm")
        setattr(ds, keyword, value)
        assert str(ds[keyword].tag) in self.error_tags(ds)

    def test_vl_image_samples_per_pixel_are_enumerated_per_photometric_interpretation(self) -> None:
        # PS3.3 C.8.12.1.1.4: Enumerated Values "when Photometric Interpretation is ..."
        enums = iod.load_dicom_info(iod.BUNDLED).modules["vl-image"]["(0028,0002)"]["enums"]
        assert [(e["val"], e["cond"]["values"][0]) for e in enums] == [([1], "MONOCHROME2"), ([3], "RGB")]
        ds = dcmread(PART10 / "vl-photographic-lossless.dcm")  # MONOCHROME2, one sample
        assert self.error_tags(ds) == []
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        assert "(0028,0002)" in self.error_tags(ds)

    def test_sc_equipment_overrides_the_modality_of_the_general_series(self) -> None:
        # PS3.3 C.8.6.1: in the Secondary Capture IODs Modality is Type 3; Encapsulated Document Series
        # keeps it Type 1 for the encapsulated documents
        info = iod.load_dicom_info(iod.BUNDLED)
        assert info.iods["1.2.840.10008.5.1.4.1.1.7"]["modules"]["General Series"]["ref"] == \
            "general-series~sc-equipment"
        assert info.modules["general-series~sc-equipment"]["(0008,0060)"]["type"] == "3"
        assert info.modules["general-series"]["(0008,0060)"]["type"] == "1"
        ds = dcmread(PART10 / "secondary-capture.dcm")
        del ds.Modality
        assert self.error_tags(ds) == []
        ds = dcmread(PART10 / "encapsulated-pdf.dcm")
        del ds.Modality
        assert set(self.error_tags(ds)) == {"(0008,0060)"}

    def test_a_multi_valued_sop_class_is_an_error_not_an_exception(self) -> None:
        ds = dcmread(PART10 / "vl-photographic.dcm")
        ds.SOPClassUID = [ds.SOPClassUID, ds.SOPClassUID]
        (message,) = iod.DicomValidatorEngine(iod.BUNDLED).validate_dataset(ds)
        assert message.tag == "(0008,0016)" and "2 values" in message.text

    def test_the_rules_run_on_the_bundled_tables_only(self) -> None:
        ds = mini_dataset(PatientName="A" * 70)  # a PN component group over 64 characters (iod_rules)
        assert "(0010,0010)" in self.error_tags(ds)
        iod._load_tables.cache_clear()
        try:
            assert iod.DicomValidatorEngine(STANDARD).validate_dataset(ds) == []
        finally:
            iod._load_tables.cache_clear()


@pytest.mark.peer
@pytest.mark.usefixtures("no_network")
class TestBundledTablesAgainstDciodvfy:
    """The bundled tables and dciodvfy reach the same error/no-error verdict on the PS3.10 fixtures they cover."""

    @pytest.fixture(autouse=True)
    def _dciodvfy(self, dciodvfy_path: str) -> None:
        """Require the peer."""

    # Every PS3.10 fixture but the Key Object Selection document, whose IOD the tables leave out
    # (test_a_sop_class_outside_the_tables_is_not_judged).
    @pytest.mark.parametrize("path", sorted(p for p in [*PART10.glob("*.dcm"), *(PART10 / "broken").glob("*.dcm")]
                                            if p.name != "kos.dcm"), ids=lambda p: p.name)
    def test_same_verdict(self, path: Path) -> None:
        engine = iod.DicomValidatorEngine(iod.BUNDLED)
        instance = Part10Instance(path.name, Body.from_file(path), dcmread(path, force=True))
        assert engine.covers(instance)
        reference = [m for m in iod.Dciodvfy().validate(instance) if m.level is Severity.ERROR]
        bundled = [m for m in engine.validate(instance) if m.level is Severity.ERROR]
        assert bool(reference) == bool(bundled), (path.name, reference, bundled)


@pytest.mark.usefixtures("no_network")
class TestBundledTablesPruning:
    """Leaving out absent User-optional modules does not change dicom-validator's verdict."""

    @staticmethod
    def full_verdict(ds: Dataset) -> list[tuple[str, str]]:
        from dicom_validator.validator.error_handler import NullValidationResultHandler
        from dicom_validator.validator.iod_validator import IODValidator

        info = iod.load_dicom_info(iod.BUNDLED)
        result = IODValidator(ds, info, error_handler=NullValidationResultHandler()).validate()
        return sorted((module, str(tag.tag)) for module, errors in result.module_errors.items() for tag in errors)

    @staticmethod
    def variants() -> list[Dataset]:
        plain = dcmread(PART10 / "vl-photographic.dcm")
        trial = dcmread(PART10 / "vl-photographic.dcm")
        trial.ClinicalTrialSponsorName = "Sponsor"  # a U module present, its other Type 1 attributes missing
        overlay = dcmread(PART10 / "secondary-capture.dcm")
        overlay.add_new(0x60000010, "US", 8)  # Overlay Rows without the rest of the Overlay Plane module
        video = dcmread(PART10 / "video-photographic.dcm")
        del video.Manufacturer
        return [plain, trial, overlay, video]

    @pytest.mark.usefixtures("fresh_tables")
    def test_an_edition_with_macros_is_used_whole(self) -> None:
        engine = iod.DicomValidatorEngine(str(STANDARD))
        ds = mini_dataset()
        assert engine._info_for(ds) is engine.info

    @pytest.mark.parametrize("index", range(4))
    def test_same_errors_as_the_whole_iod(self, index: int) -> None:
        ds = self.variants()[index]
        engine = iod.DicomValidatorEngine(iod.BUNDLED)
        pruned = sorted((m.raw.split(":")[0].removeprefix("Module "), m.tag) for m in engine.validate_dataset(ds))
        assert pruned == self.full_verdict(ds)
        if index in (1, 2):  # the partly present U module is judged, not skipped
            assert any(m.level is Severity.ERROR for m in engine.validate_dataset(ds))



@pytest.mark.peer
@pytest.mark.usefixtures("no_network")
class TestBundledTablesKnownGaps:
    """What both engines refuse, what only dciodvfy refuses (the known gaps) and what only the bundled
    engine refuses, on variants of the fixtures.  tests/validate/test_iod_parity.py measures the same
    agreement on a mutation corpus."""

    @pytest.fixture(autouse=True)
    def _dciodvfy(self, dciodvfy_path: str) -> None:
        """Require the peer."""

    @staticmethod
    def verdicts(changes: dict[str, object], base: str = "vl-photographic") -> tuple[list[iod.IodMessage],
                                                                                      list[iod.IodMessage]]:
        ds = dcmread(PART10 / f"{base}.dcm")
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        instance = Part10Instance("variant", Body.of(buffer.getvalue()), ds)
        reference = [m for m in iod.Dciodvfy().validate(instance) if m.level is Severity.ERROR]
        bundled = [m for m in iod.DicomValidatorEngine(iod.BUNDLED).validate(instance) if m.level is Severity.ERROR]
        return reference, bundled

    @staticmethod
    def region(code_value: str, meaning: str) -> list[Dataset]:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code_value, "99LOCAL", meaning
        return [item]

    # only dciodvfy refuses these:
    @pytest.mark.parametrize(("changes", "base"), [
        # Laterality is required for a paired body part (PS3.3 C.7.3.1); dciodvfy requires it for any
        # region it does not know to be unpaired, the bundled engine only for those known to be paired
        ({"Laterality": None, "AnatomicRegionSequence": region("R-1", "Left little finger")}, "vl-photographic"),
    ])
    def test_known_gaps(self, changes: dict[str, object], base: str) -> None:
        reference, bundled = self.verdicts(changes, base)
        assert reference and not bundled, (reference, bundled)

    # consistency between attributes (Image Pixel, VL Image against the Transfer Syntax, Number of Frames),
    # conditions and values stated in prose (Patient Orientation, Laterality), PN component groups over 64
    # characters and text characters (iod_rules): both engines refuse them
    @pytest.mark.parametrize(("changes", "base", "tag"), [
        ({"PatientOrientation": None}, "vl-photographic", "(0020,0020)"),
        ({"PatientName": "A" * 70 + "^B"}, "vl-photographic", "(0010,0010)"),
        ({"PhotometricInterpretation": "RGB"}, "vl-photographic", "(0028,0004)"),  # JPEG lossy: YBR_FULL_422
        ({"PatientOrientation": ["A", "X"]}, "vl-photographic", "(0020,0020)"),
        ({"Laterality": None}, "vl-photographic", "(0020,0060)"),  # a hand
        ({"PixelData": None}, "vl-photographic", "(7FE0,0010)"),
        ({"NumberOfFrames": 2}, "vl-photographic", "(0028,0008)"),
        ({"Rows": 47}, "secondary-capture", "(7FE0,0010)"),  # native pixel data of another size
        ({"PlanarConfiguration": 0}, "vl-photographic-lossless", "(0028,0006)"),  # with one sample
        ({"StudyDescription": "a\x01b"}, "secondary-capture", "(0008,1030)"),
        # PS3.3 C.8.6.1 makes a Secondary Capture's Modality Type 3; dciodvfy holds a present one to Type 1C
        ({"Modality": ""}, "secondary-capture", "(0008,0060)"),
    ])
    def test_closed_gaps(self, changes: dict[str, object], base: str, tag: str) -> None:
        reference, bundled = self.verdicts(changes, base)
        assert reference and tag in [m.tag for m in bundled], (reference, bundled)

    # enumerated values, inline (Patient's Sex), in a section the attribute refers to (Photometric
    # Interpretation, PS3.3 C.8.12.1.1.1), of one attribute among several (Bits Allocated, C.8.12.1.1.2) or
    # under a condition (Samples per Pixel with Photometric Interpretation, C.8.12.1.1.4), the Modality the
    # IOD's text fixes and value multiplicity: both engines refuse them
    @pytest.mark.parametrize(("keyword", "value", "tag"), [("PatientSex", "X", "(0010,0040)"),
                                                           ("PhotometricInterpretation", "MONOCHROME2", "(0028,0002)"),
                                                           ("SamplesPerPixel", 1, "(0028,0002)"),
                                                           ("BitsAllocated", 16, "(0028,0100)"),
                                                           ("BurnedInAnnotation", "MAYBE", "(0028,0301)"),
                                                           ("PhotometricInterpretation", "YBR_FULL", "(0028,0004)"),
                                                           ("Modality", "CT", "(0008,0060)"),
                                                           ("ImageType", "ORIGINAL", "(0008,0008)"),
                                                           ("ImageType", ["BOGUS", "PRIMARY"], "(0008,0008)")])
    def test_enumerated_values(self, keyword: str, value: object, tag: str) -> None:
        reference, bundled = self.verdicts({keyword: value})
        assert reference and tag in [m.tag for m in bundled], (reference, bundled)

    # only the bundled engine refuses these: dicom-validator checks dates and times against the ranges of
    # PS3.5 Table 6.2-1, dciodvfy only their characters (and allows 16 characters of TM)
    @pytest.mark.parametrize(("keyword", "value"), [("StudyDate", "20241306"), ("StudyTime", "250000"),
                                                    ("StudyTime", "070809.12345678")])
    def test_stricter_than_dciodvfy(self, keyword: str, value: str) -> None:
        reference, bundled = self.verdicts({keyword: value})
        assert bundled and not reference, (reference, bundled)


class TestIodTextMessages:
    """The Modality an IOD's text fixes (PS3.3 A.32), which no module table carries."""

    @pytest.mark.parametrize(("sop_class", "modality", "errors"), [
        ("1.2.840.10008.5.1.4.1.1.77.1.4", "XC", 0), ("1.2.840.10008.5.1.4.1.1.77.1.4", "CT", 1),
        ("1.2.840.10008.5.1.4.1.1.77.1.1", "XC", 1), ("1.2.840.10008.5.1.4.1.1.77.1.2.1", "GM", 0),
        ("1.2.840.10008.5.1.4.1.1.7", "CT", 0),  # Secondary Capture fixes no Modality
    ])
    def test_modality(self, sop_class: str, modality: str, errors: int) -> None:
        ds = Dataset()
        ds.SOPClassUID, ds.Modality = sop_class, modality
        messages = iod.iod_text_messages(ds)
        assert len(messages) == errors
        assert all(m.level is Severity.ERROR and m.tag == "(0008,0060)" and modality in m.text for m in messages)

    def test_absent_modality_is_left_to_the_module_tables(self) -> None:
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
        assert iod.iod_text_messages(ds) == []


class TestMultiplicity:
    """Value multiplicity against PS3.6, which dicom-validator leaves out."""

    @pytest.mark.parametrize(("spec", "fits", "misfits"), [
        ("1", [1], [2]), ("2-n", [2, 5], [1]), ("1-3", [1, 3], [4]), ("3-3n", [3, 6], [4]), ("6", [6], [5])])
    def test_vm_spellings(self, spec: str, fits: list[int], misfits: list[int]) -> None:
        assert all(iod._vm_allows(spec, n) for n in fits)
        assert not any(iod._vm_allows(spec, n) for n in misfits)

    def test_items_are_judged_and_empty_or_private_values_are_not(self) -> None:
        ds = dcmread(PART10 / "vl-photographic.dcm")
        assert iod.multiplicity_messages(ds) == []
        item = Dataset()
        item.ImageOrientationPatient = [1, 0, 0, 0, 1]  # 6 values in PS3.6
        ds.ReferencedImageSequence = [item]
        ds.PatientOrientation = ""  # empty: a Type 2 value may be
        ds.add_new(0x00091010, "LO", ["a", "b", "c"])  # private: not judged
        (message,) = iod.multiplicity_messages(ds)
        assert message.tag == "(0020,0037)" and "item 1" in message.text and "6" in message.text


class TestFileMetaMessages:
    def test_a_good_file_has_none(self) -> None:
        assert iod.file_meta_messages(dcmread(PART10 / "vl-photographic.dcm")) == []

    def test_missing_type_1_element_and_uid_mismatch(self) -> None:
        ds = dcmread(PART10 / "vl-photographic.dcm")
        del ds.file_meta.ImplementationClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
        texts = [m.text for m in iod.file_meta_messages(ds)]
        assert texts == ["ImplementationClassUID (Type 1 in the File Meta Information) is missing or empty",
                         "MediaStorageSOPInstanceUID differs from SOPInstanceUID"]

    def test_a_data_set_built_in_memory_is_not_asked_for_what_writing_adds(self) -> None:
        ds = mini_dataset()  # File Meta without group length, version or implementation class
        assert [m.text.split(" ")[0] for m in iod.file_meta_messages(ds)] == ["ImplementationClassUID"]

    def test_a_data_set_without_file_meta_is_not_judged(self) -> None:
        ds = Dataset()
        ds.SOPClassUID = PDF_SOP_CLASS
        assert iod.file_meta_messages(ds) == []
