from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

import wic_conformance.validate.xml_model  # noqa: F401  (registers the checks)
from tests.support.exchanges import file_exchange, multipart_request
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.xml_model import NATIVE_DICOM_NAMESPACE, dataset_to_xml
from wic_conformance.findings import InvalidDicomXml, Severity
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

ROOT = f'<NativeDicomModel xmlns="{NATIVE_DICOM_NAMESPACE}" xml:space="preserve">'


def good_document() -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.1"
    ds.PatientName = "Doe^Jane"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    item = Dataset()
    item.CodeValue = "T-D1100"
    ds.add(DataElement(0x00082218, "SQ", Sequence([item])))
    ds.PixelData = b"\x00\x01"
    ds["PixelData"].VR = "OB"
    block = ds.private_block(0x0009, "ACME", create=True)
    block.add_new(0x01, "LO", "x")
    return dataset_to_xml(ds)


def xml_exchange(data: bytes) -> Exchange:
    return file_exchange(data, mt.APPLICATION_DICOM_XML, "instance.xml")


def with_body(body: str, root: str = ROOT) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>{root}{body}</NativeDicomModel>'.encode()


def run(name: str, data: bytes) -> CheckResult:
    return run_check(REGISTRY[name], CheckContext(), xml_exchange(data))


def only(result: CheckResult) -> InvalidDicomXml:
    assert len(result.findings) == 1, result.findings
    finding = result.findings[0]
    assert isinstance(finding, InvalidDicomXml)
    return finding


CHECKS = [
    "dicom_xml_is_well_formed", "dicom_xml_root_is_native_dicom_model", "dicom_xml_tags_are_uppercase_hex",
    "dicom_xml_private_creator_only_on_private_tags", "dicom_xml_attributes_have_keyword_and_vr",
    "dicom_xml_value_numbers_are_sequential", "dicom_xml_sequences_and_names_are_structured",
    "dicom_xml_binary_values_are_bulk_or_inline", "dicom_xml_has_no_group_length",
]


class TestGoodDocument:
    @pytest.mark.parametrize("name", CHECKS)
    def test_passes(self, name: str) -> None:
        assert run(name, good_document()).outcome is Outcome.PASSED

    @pytest.mark.parametrize("name", CHECKS)
    def test_not_applicable_without_metadata(self, name: str) -> None:
        assert run_check(REGISTRY[name], CheckContext(), Exchange()).outcome is Outcome.NOT_APPLICABLE

    @pytest.mark.parametrize("name", CHECKS)
    def test_json_documents_are_not_judged(self, name: str) -> None:
        exchange = file_exchange(b"<not json", mt.APPLICATION_DICOM_JSON, "x.json")
        assert run_check(REGISTRY[name], CheckContext(), exchange).outcome is Outcome.PASSED

    def test_first_docstring_line_states_the_property(self) -> None:
        for name in CHECKS:
            assert REGISTRY[name].description and not REGISTRY[name].description.startswith("Check")


class TestWellFormed:
    def test_syntax_error(self) -> None:
        result = run("dicom_xml_is_well_formed", b"<NativeDicomModel><DicomAttribute>")
        finding = only(result)
        assert result.outcome is Outcome.FAILED
        assert finding.requirement == "XML-001" and finding.location == "instance.xml > document"
        assert "not well-formed" in finding.message

    def test_entity_bomb(self) -> None:
        data = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><a>&b;</a>'
        finding = only(run("dicom_xml_is_well_formed", data))
        assert finding.requirement == "XML-001" and finding.evidence == "xml.forbidden"


class TestRoot:
    def test_wrong_root_element(self) -> None:
        finding = only(run("dicom_xml_root_is_native_dicom_model", b"<Dataset/>"))
        assert finding.requirement == "XML-001" and "<Dataset>" in finding.message

    def test_missing_space_and_namespace(self) -> None:
        result = run("dicom_xml_root_is_native_dicom_model", with_body("", "<NativeDicomModel>"))
        assert result.outcome is Outcome.FAILED
        by_code = {f.evidence: f for f in result.findings}
        assert set(by_code) == {"xml.namespace_missing", "xml.space_missing"}
        assert by_code["xml.namespace_missing"].severity is Severity.WARNING
        assert by_code["xml.space_missing"].severity is Severity.ERROR
        assert by_code["xml.space_missing"].location == "instance.xml > /NativeDicomModel"

    def test_namespace_only_missing_warns(self) -> None:
        result = run("dicom_xml_root_is_native_dicom_model", with_body("", '<NativeDicomModel xml:space="preserve">'))
        assert result.outcome is Outcome.WARNED


class TestTags:
    def test_lowercase_and_invalid_tags_reported_together(self) -> None:
        body = ('<DicomAttribute tag="0020000d" vr="UI" keyword="StudyInstanceUID"><Value number="1">1.2'
                '</Value></DicomAttribute><DicomAttribute tag="(0010,0020)" vr="LO"/>')
        result = run("dicom_xml_tags_are_uppercase_hex", with_body(body))
        assert {f.requirement for f in result.findings} == {"XML-002"}
        assert sorted(f.evidence for f in result.findings) == ["xml.tag_invalid", "xml.tag_lowercase"]
        lower = next(f for f in result.findings if f.evidence == "xml.tag_lowercase")
        assert lower.location == "instance.xml > /NativeDicomModel/DicomAttribute[@tag='0020000d']"

    def test_private_creator_rules(self) -> None:
        body = ('<DicomAttribute tag="00091001" vr="LO"><Value number="1">x</Value></DicomAttribute>'
                '<DicomAttribute tag="00100020" vr="LO" keyword="PatientID" privateCreator="ACME"/>')
        result = run("dicom_xml_private_creator_only_on_private_tags", with_body(body))
        assert sorted(f.evidence for f in result.findings) == ["xml.private_creator_forbidden",
                                                                "xml.private_creator_missing"]
        assert all(f.requirement == "XML-002" for f in result.findings)


class TestKeywordAndVr:
    def test_missing_keyword_and_vr(self) -> None:
        body = ('<DicomAttribute tag="00100020" vr="LO"><Value number="1">a</Value></DicomAttribute>'
                '<DicomAttribute tag="00100030" keyword="PatientBirthDate"/>')
        result = run("dicom_xml_attributes_have_keyword_and_vr", with_body(body))
        assert sorted(f.evidence for f in result.findings) == ["xml.keyword_missing", "xml.vr_missing"]
        assert all(f.requirement == "XML-003" for f in result.findings)
        assert all(f.severity is Severity.WARNING for f in result.findings)  # from the catalogue
        assert result.outcome is Outcome.WARNED

    def test_contradicting_keyword_and_vr(self) -> None:
        body = ('<DicomAttribute tag="00100040" vr="UI" keyword="PatientSex"/>'
                '<DicomAttribute tag="00100020" vr="LO" keyword="PatientName"/>'
                '<DicomAttribute tag="00100030" vr="D8" keyword="PatientBirthDate"/>')
        result = run("dicom_xml_attributes_have_keyword_and_vr", with_body(body))
        assert sorted(f.evidence for f in result.findings) == ["xml.keyword_mismatch", "xml.vr_invalid",
                                                                "xml.vr_mismatch"]
        assert all(f.severity is Severity.ERROR for f in result.findings)
        assert result.outcome is Outcome.FAILED

    def test_unknown_private_attribute_needs_no_keyword(self) -> None:
        body = '<DicomAttribute tag="00090001" vr="LO" privateCreator="ACME"><Value number="1">a</Value>' \
               "</DicomAttribute>"
        assert run("dicom_xml_attributes_have_keyword_and_vr", with_body(body)).outcome is Outcome.PASSED


class TestValues:
    def test_numbering_and_misuse(self) -> None:
        body = ('<DicomAttribute tag="00080008" vr="CS" keyword="ImageType"><Value number="1">A</Value>'
                '<Value number="3">B</Value></DicomAttribute>'
                '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><Value number="1">X</Value>'
                "</DicomAttribute>")
        result = run("dicom_xml_value_numbers_are_sequential", with_body(body))
        assert sorted(f.evidence for f in result.findings) == ["xml.value_in_sq_or_pn", "xml.value_number"]
        numbering = next(f for f in result.findings if f.evidence == "xml.value_number")
        assert "1, 3" in numbering.message and numbering.requirement == "XML-004"


class TestStructure:
    def test_items_and_person_names(self) -> None:
        body = ('<DicomAttribute tag="00082218" vr="SQ" keyword="AnatomicRegionSequence"><Item number="0"/>'
                '</DicomAttribute><DicomAttribute tag="00100010" vr="PN" keyword="PatientName">'
                '<PersonName number="1"><Alphabetic><LastName>Doe</LastName></Alphabetic></PersonName>'
                "</DicomAttribute>")
        result = run("dicom_xml_sequences_and_names_are_structured", with_body(body))
        assert sorted(f.evidence for f in result.findings) == ["xml.item_number", "xml.person_name_structure"]
        assert all(f.requirement == "XML-005" for f in result.findings)


class TestBinary:
    def test_bulk_and_inline_rules(self) -> None:
        body = ('<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData"><BulkData uri="a" uuid="b"/>'
                '</DicomAttribute><DicomAttribute tag="00100020" vr="LO" keyword="PatientID">'
                "<InlineBinary>AAAA</InlineBinary></DicomAttribute>")
        result = run("dicom_xml_binary_values_are_bulk_or_inline", with_body(body))
        assert sorted(f.evidence for f in result.findings) == ["xml.bulk_reference", "xml.inline_binary_vr"]
        assert all(f.requirement == "XML-006" for f in result.findings)

    def test_uri_is_accepted(self) -> None:
        body = '<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData"><BulkData uri="http://x/1"/>' \
               "</DicomAttribute>"
        assert run("dicom_xml_binary_values_are_bulk_or_inline", with_body(body)).outcome is Outcome.PASSED


class TestGroupLength:
    def test_group_length_reported(self) -> None:
        body = '<DicomAttribute tag="00080000" vr="UL"><Value number="1">10</Value></DicomAttribute>'
        finding = only(run("dicom_xml_has_no_group_length", with_body(body)))
        assert finding.requirement == "XML-007" and "00080000" in finding.message


class TestStowRequestParts:
    def test_request_metadata_parts_are_judged(self) -> None:
        uri = "http://capturer.test/bulk/1"
        bad = with_body('<DicomAttribute tag="7fe00010" vr="OB" keyword="PixelData">'
                        f'<BulkData uri="{uri}"/></DicomAttribute>')
        parts = [({"Content-Type": mt.APPLICATION_DICOM_XML}, good_document()),
                 ({"Content-Type": mt.APPLICATION_DICOM_XML}, bad),
                 ({"Content-Type": mt.APPLICATION_OCTET_STREAM, "Content-Location": uri}, b"\x00\x01")]
        exchange = Exchange(request=multipart_request(parts, url="http://pacs.test/studies",
                                                      root_type=mt.APPLICATION_DICOM_XML))
        ctx = CheckContext()
        finding = only(run_check(REGISTRY["dicom_xml_tags_are_uppercase_hex"], ctx, exchange))
        assert finding.location == "request part 2 > /NativeDicomModel/DicomAttribute[@tag='7fe00010']"
        assert run_check(REGISTRY["dicom_xml_binary_values_are_bulk_or_inline"], ctx, exchange).outcome \
            is Outcome.PASSED
        docs = ctx.metadata(exchange)
        assert docs[1].datasets[0].PixelData == b"\x00\x01" and docs[1].bulk_refs[0].uri == uri
