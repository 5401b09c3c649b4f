from __future__ import annotations

import builtins
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.dicomweb.metadata import parse_metadata
from wic_conformance.dicomweb.xml_model import (
    MAX_DEPTH,
    NATIVE_DICOM_NAMESPACE,
    dataset_to_xml,
    local_name,
    namespace_of,
    parse_document,
)

NS = f' xmlns="{NATIVE_DICOM_NAMESPACE}"'


def doc(body: str, *, root: str = f'<NativeDicomModel{NS} xml:space="preserve">') -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{root}{body}</NativeDicomModel>'.encode()


def codes(data: bytes, **kw: Any) -> list[str]:
    return [d.code for d in parse_document(data, **kw).deviations]


def sample() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.1"
    ds.StudyDate = "20240102"
    ds.PatientName = "Doe^John^^Dr=ドウ^ジョン"
    ds.PatientID = "ID-1"
    ds.StudyInstanceUID = "2.25.2"
    ds.SeriesInstanceUID = "2.25.3"
    ds.InstanceNumber = "7"
    ds.Rows = 2
    ds.Columns = 2
    ds.PixelSpacing = ["0.5", "0.25"]
    ds.FrameIncrementPointer = 0x00181063
    ds.add(DataElement(0x00189219, "SS", -3))
    ds.add(DataElement(0x00720064, "IS", None))
    ds.add(DataElement(0x00189376, "US", [1, 2, 3]))
    ds.add(DataElement(0x00081163, "FD", [1.5, -0.125]))
    ds.add(DataElement(0x00080427, "UL", 7))
    item = Dataset()
    item.CodeValue = "121"
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = "A <meaning> & more"
    inner = Dataset()
    inner.CodeValue = "X"
    item.add(DataElement(0x0040A043, "SQ", Sequence([inner])))
    ds.add(DataElement(0x00082218, "SQ", Sequence([item, Dataset()])))
    ds.add(DataElement(0x00400275, "SQ", Sequence([])))
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private text")
    block.add_new(0x02, "OB", b"\x01\x02")
    ds.PixelData = b"\x00\x01\x02\x03"
    ds["PixelData"].VR = "OW"
    return ds


class TestRoundTrip:
    def test_dataset_survives_write_and_read(self) -> None:
        ds = sample()
        result = parse_document(dataset_to_xml(ds), location="file.xml")
        assert result.deviations == ()
        assert result.media_type == mt.APPLICATION_DICOM_XML
        assert result.location == "file.xml"
        assert len(result.datasets) == 1
        assert result.datasets[0] == ds
        assert local_name(result.raw.tag) == "NativeDicomModel"

    def test_written_document_form(self) -> None:
        text = dataset_to_xml(sample()).decode("utf-8")
        assert text.startswith("<?xml version='1.0' encoding='utf-8'?>")
        assert f'xmlns="{NATIVE_DICOM_NAMESPACE}"' in text
        assert 'xml:space="preserve"' in text
        assert '<DicomAttribute tag="0020000D" vr="UI" keyword="StudyInstanceUID">' in text
        assert '<DicomAttribute tag="00090001" vr="LO" privateCreator="ACME 1.0">' in text
        assert "00090010" not in text  # the Private Creator element is folded into @privateCreator
        assert '<Value number="2" />' in text  # empty value inside a multi-valued attribute
        assert '<DicomAttribute tag="00720064" vr="IS" keyword="SelectorISValue" />' in text

    def test_bulk_uri_writer_and_resolver(self) -> None:
        ds = sample()
        uri = "http://example.test/bulk/1"
        data = dataset_to_xml(ds, bulk_uri_for=lambda elem, path: uri if elem.tag == 0x7FE00010 else None)
        assert f'<BulkData uri="{uri}" />' in data.decode()
        asked: list[str] = []

        def resolver(u: str) -> bytes | None:
            asked.append(u)
            return b"\x00\x01\x02\x03" if u == uri else None

        result = parse_document(data, bulk_resolver=resolver)
        assert asked == [uri]
        assert result.datasets[0].PixelData == b"\x00\x01\x02\x03"
        (ref,) = result.bulk_refs
        assert ref.uri == uri and ref.tag == "7FE00010" and ref.vr == "OW" and ref.instance == 0
        assert ref.path == "/NativeDicomModel/DicomAttribute[@tag='7FE00010']"

    def test_dispatch_through_parse_metadata(self) -> None:
        result = parse_metadata(dataset_to_xml(sample()), mt.APPLICATION_DICOM_XML, location="part 1")
        assert result.location == "part 1" and result.datasets[0].PatientID == "ID-1"


class TestReading:
    def test_person_name_groups_and_components(self) -> None:
        data = doc('<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1">'
                   "<Alphabetic><FamilyName>Doe</FamilyName><GivenName>Jane</GivenName>"
                   "<NameSuffix>III</NameSuffix></Alphabetic><Phonetic><FamilyName>do</FamilyName></Phonetic>"
                   "</PersonName></DicomAttribute>")
        result = parse_document(data)
        assert result.deviations == ()
        assert str(result.datasets[0].PatientName) == "Doe^Jane^^^III==do"

    def test_values_ordered_by_number(self) -> None:
        data = doc('<DicomAttribute tag="00080008" vr="CS" keyword="ImageType">'
                   '<Value number="2">B</Value><Value number="1">A</Value></DicomAttribute>')
        result = parse_document(data)
        assert list(result.datasets[0].ImageType) == ["A", "B"]
        assert [d.code for d in result.deviations] == ["xml.value_number"]

    def test_bulk_data_for_numeric_vr(self) -> None:
        data = doc('<DicomAttribute tag="00186012" vr="US" keyword="RegionSpatialFormat">'
                   '<BulkData uri="u1"/></DicomAttribute>')
        result = parse_document(data, bulk_resolver=lambda u: b"\x01\x00\x02\x00")
        assert list(result.datasets[0][0x00186012].value) == [1, 2]

    def test_bulk_uuid_is_resolved_by_uuid(self) -> None:
        data = doc('<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData">'
                   '<BulkData uuid="1234"/></DicomAttribute>')
        result = parse_document(data, bulk_resolver=lambda u: b"ab" if u == "urn:uuid:1234" else None)
        assert result.datasets[0].PixelData == b"ab"
        assert result.bulk_refs == ()

    def test_unresolved_bulk_data_is_a_deviation(self) -> None:
        data = doc('<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData">'
                   '<BulkData uri="http://elsewhere.test/x"/></DicomAttribute>')
        result = parse_document(data)
        assert [d.code for d in result.deviations] == ["xml.bulk_unresolved"]
        assert result.datasets[0]["PixelData"].value is None
        assert result.bulk_refs[0].uri == "http://elsewhere.test/x"

    def test_private_block_sent_keeps_tag_and_creator(self) -> None:
        data = doc('<DicomAttribute tag="00091001" vr="LO" privateCreator="ACME"><Value number="1">x</Value>'
                   "</DicomAttribute>")
        result = parse_document(data)
        assert "xml.private_block_sent" in [d.code for d in result.deviations]
        ds = result.datasets[0]
        assert ds[0x00090010].value == "ACME" and ds[0x00091001].value == "x"

    @pytest.mark.parametrize(("body", "code"), [
        ('<DicomAttribute tag="0010001g" vr="LO"/>', "xml.tag_invalid"),
        ('<DicomAttribute tag="0020000d" vr="UI" keyword="StudyInstanceUID"/>', "xml.tag_lowercase"),
        ('<DicomAttribute vr="UI"/>', "xml.tag_missing"),
        ('<DicomAttribute tag="00100020" vr="LO"/>', "xml.keyword_missing"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientName"/>', "xml.keyword_mismatch"),
        ('<DicomAttribute tag="00100020" keyword="PatientID"/>', "xml.vr_missing"),
        ('<DicomAttribute tag="00100020" vr="XX" keyword="PatientID"/>', "xml.vr_invalid"),
        ('<DicomAttribute tag="00100020" vr="US" keyword="PatientID"/>', "xml.vr_mismatch"),
        ('<DicomAttribute tag="00100000" vr="UL"/>', "xml.group_length"),
        ('<DicomAttribute tag="00091001" vr="LO"/>', "xml.private_creator_missing"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientID" privateCreator="X"/>',
         "xml.private_creator_forbidden"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"><Value>a</Value></DicomAttribute>',
         "xml.value_number"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"><Value number="1"/></DicomAttribute>',
         "xml.empty_value_for_zero_length"),
        ('<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><Value number="1">A^B</Value>'
         "</DicomAttribute>", "xml.value_in_sq_or_pn"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"><Item number="1"/></DicomAttribute>',
         "xml.item_not_sq"),
        ('<DicomAttribute tag="00082218" vr="SQ" keyword="AnatomicRegionSequence"><Item number="2"/>'
         "</DicomAttribute>", "xml.item_number"),
        ('<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1">'
         "<Alphabetic><Surname>X</Surname></Alphabetic></PersonName></DicomAttribute>", "xml.person_name_structure"),
        ('<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData"><BulkData/></DicomAttribute>',
         "xml.bulk_reference"),
        ('<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData"><InlineBinary>@@@</InlineBinary>'
         "</DicomAttribute>", "xml.base64"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"><InlineBinary>AAAA</InlineBinary>'
         "</DicomAttribute>", "xml.inline_binary_vr"),
        ('<DicomAttribute tag="00280010" vr="US" keyword="Rows"><Value number="1">A700</Value>'
         "</DicomAttribute>", "xml.conversion"),
        ('<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"/>'
         '<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"/>', "xml.duplicate_tag"),
        ("<Unknown/>", "xml.unknown_element"),
    ])
    def test_model_deviations(self, body: str, code: str) -> None:
        assert code in codes(doc(body))

    def test_root_deviations(self) -> None:
        assert codes(doc("", root="<NativeDicomModel>")) == ["xml.namespace_missing", "xml.space_missing"]
        assert codes(doc("", root='<NativeDicomModel xmlns="urn:x" xml:space="preserve">')) == [
            "xml.namespace_wrong"]
        wrong = parse_document(b"<Other/>")
        assert [(d.code, d.fatal) for d in wrong.deviations] == [("xml.root", True)]
        assert wrong.datasets == () and wrong.raw is not None

    def test_syntax_error_is_fatal_deviation(self) -> None:
        result = parse_document(b"<NativeDicomModel><DicomAttribute></NativeDicomModel>")
        assert result.raw is None and result.datasets == ()
        assert [(d.code, d.fatal) for d in result.deviations] == [("xml.syntax", True)]
        assert codes(b'<?xml version="1.0" encoding="no-such"?><a/>') == ["xml.syntax"]

    def test_strict_stops_at_first_guess(self) -> None:
        data = doc('<DicomAttribute tag="00100020" vr="XX" keyword="PatientID"/>'
                   '<DicomAttribute tag="0010001g"/>')
        lenient = parse_document(data)
        strict = parse_document(data, policy=Strictness.STRICT)
        assert len(lenient.datasets) == 1 and [d.code for d in lenient.deviations] == [
            "xml.vr_invalid", "xml.tag_invalid"]
        assert strict.datasets == () and [d.code for d in strict.deviations] == ["xml.vr_invalid"]

    def test_depth_guard(self) -> None:
        body = ""
        for _ in range(MAX_DEPTH + 3):
            body += '<DicomAttribute tag="00082218" vr="SQ" keyword="AnatomicRegionSequence"><Item number="1">'
        body += "</Item></DicomAttribute>" * (MAX_DEPTH + 3)
        result = parse_document(doc(body))
        assert "xml.too_deep" in [d.code for d in result.deviations]


class TestHostileInput:
    @pytest.fixture
    def no_io(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        attempts: list[str] = []
        real_open = builtins.open

        def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            attempts.append(str(file))
            return real_open(file, *args, **kwargs)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            attempts.append(repr(args))
            raise AssertionError("network access attempted")

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(urllib.request, "urlopen", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
        return attempts

    def test_external_entity_is_refused_without_reading_the_file(self, tmp_path: Path, no_io: list[str]) -> None:
        secret = tmp_path / "secret.txt"
        secret.write_text("TOP-SECRET-CONTENT")
        no_io.clear()
        data = (f'<?xml version="1.0"?><!DOCTYPE NativeDicomModel [<!ENTITY xxe SYSTEM "file://{secret}">]>'
                f'<NativeDicomModel xml:space="preserve"><DicomAttribute tag="00100020" vr="LO" '
                f'keyword="PatientID"><Value number="1">&xxe;</Value></DicomAttribute></NativeDicomModel>')
        result = parse_document(data.encode())
        assert [(d.code, d.fatal) for d in result.deviations] == [("xml.forbidden", True)]
        assert result.raw is None and result.datasets == ()
        assert "TOP-SECRET-CONTENT" not in repr(result)
        assert no_io == []

    def test_billion_laughs_is_refused_without_expansion(self, no_io: list[str]) -> None:
        entities = '<!ENTITY lol0 "lol">' + "".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
        data = (f'<?xml version="1.0"?><!DOCTYPE NativeDicomModel [{entities}]>'
                f'<NativeDicomModel xml:space="preserve"><DicomAttribute tag="00100020" vr="LO" '
                f'keyword="PatientID"><Value number="1">&lol9;</Value></DicomAttribute></NativeDicomModel>')
        result = parse_document(data.encode())
        assert [d.code for d in result.deviations] == ["xml.forbidden"]
        assert "lollol" not in repr(result)
        assert no_io == []

    def test_plain_dtd_is_refused(self) -> None:
        data = b'<?xml version="1.0"?><!DOCTYPE NativeDicomModel SYSTEM "http://example.test/x.dtd"><a/>'
        assert codes(data) == ["xml.forbidden"]

    def test_resolver_is_the_only_way_to_bulk_data(self, no_io: list[str]) -> None:
        data = doc('<DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData">'
                   '<BulkData uri="file:///etc/passwd"/></DicomAttribute>')
        result = parse_document(data)
        assert [d.code for d in result.deviations] == ["xml.bulk_unresolved"]
        assert no_io == []

    @given(st.binary(max_size=400))
    def test_arbitrary_bytes_never_raise(self, data: bytes) -> None:
        result = parse_document(data)
        assert result.media_type == mt.APPLICATION_DICOM_XML

    @given(st.lists(st.sampled_from([
        "<DicomAttribute", ' tag="00100010"', ' tag="7FE00010"', ' tag="00082218"', ' vr="PN"', ' vr="SQ"',
        ' vr="OB"', ' vr="US"', ' vr="DS"', ' vr="AT"', ">", "/>", "</DicomAttribute>", '<Value number="1">',
        '<Value number="x">', "</Value>", '<Item number="1">', "</Item>", '<PersonName number="1">',
        "</PersonName>", "<Alphabetic>", "</Alphabetic>", "<FamilyName>", "</FamilyName>", "<InlineBinary>",
        "</InlineBinary>", '<BulkData uri="u"/>', "abc", "12", "0.5", "&amp;", "&#0;", "00100010",
    ]), max_size=40))
    def test_arbitrary_model_fragments_never_raise(self, pieces: list[str]) -> None:
        result = parse_document(doc("".join(pieces)), bulk_resolver=lambda u: b"\x00\x01")
        assert result.raw is not None or result.deviations


class TestHelpers:
    def test_names(self) -> None:
        assert local_name(f"{{{NATIVE_DICOM_NAMESPACE}}}Value") == "Value"
        assert namespace_of(f"{{{NATIVE_DICOM_NAMESPACE}}}Value") == NATIVE_DICOM_NAMESPACE
        assert namespace_of("Value") == "" and local_name(None) == ""
