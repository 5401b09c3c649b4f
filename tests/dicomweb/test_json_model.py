"""DICOM JSON Model codec: parse_document / dataset_to_json / datasets_to_json_bytes (PS3.18 Annex F)."""

from __future__ import annotations

import builtins
import io
import json
import os
import socket
import struct
import urllib.request
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import DataElement, Dataset
from pydicom.sequence import Sequence

from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.dicomweb.json_model import (
    DEVIATION_CODES,
    MAX_SEQUENCE_DEPTH,
    dataset_to_json,
    datasets_to_json_bytes,
    iter_datasets,
    json_pointer,
    json_type,
    parse_document,
)
from wic_conformance.dicomweb.media_types import APPLICATION_DICOM_JSON, APPLICATION_JSON
from wic_conformance.dicomweb.metadata import parse_metadata


def sample_dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1"
    ds.StudyDate = "20240131"
    ds.StudyTime = "101530.5"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.PatientID = "ID-1"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceNumber = 7
    ds.PixelSpacing = [0.5, 0.25]
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 8
    ds.PixelRepresentation = 1
    ds.SmallestImagePixelValue = -3  # dictionary VR "US or SS": SS here
    ds.RecommendedDisplayFrameRateInFloat = 29.97
    ds.FrameIncrementPointer = 0x00181063
    code = Dataset()
    code.CodeValue = "121311"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Localizer"
    ds.ConceptNameCodeSequence = Sequence([code])
    ds.ReferencedImageSequence = Sequence([Dataset()])
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private value")
    ds.PixelData = bytes(range(4))
    ds["PixelData"].VR = "OB"
    return ds


def roundtrip(ds: Dataset, **kw: Any) -> Dataset:
    doc = parse_document(datasets_to_json_bytes([ds]), **kw)
    assert doc.deviations == ()
    assert len(doc.datasets) == 1
    return doc.datasets[0]


class TestRoundTrip:
    def test_whole_dataset(self) -> None:
        ds = sample_dataset()
        back = roundtrip(ds)
        for elem in ds:
            assert back[elem.tag].value == elem.value, elem.keyword
        assert back.SmallestImagePixelValue == -3

    def test_person_name_groups(self) -> None:
        back = roundtrip(sample_dataset())
        assert back.PatientName.alphabetic == "Yamada^Tarou"
        assert back.PatientName.ideographic == "山田^太郎"
        assert back.PatientName.phonetic == "やまだ^たろう"

    def test_sequences_and_empty_item(self) -> None:
        back = roundtrip(sample_dataset())
        assert back.ConceptNameCodeSequence[0].CodeMeaning == "Localizer"
        assert len(back.ReferencedImageSequence) == 1
        assert len(back.ReferencedImageSequence[0]) == 0

    def test_numbers(self) -> None:
        back = roundtrip(sample_dataset())
        assert back.InstanceNumber == 7
        assert back.PixelSpacing == [0.5, 0.25]
        assert back.RecommendedDisplayFrameRateInFloat == pytest.approx(29.97)
        assert back.FrameIncrementPointer == 0x00181063

    def test_inline_binary(self) -> None:
        body = json.loads(datasets_to_json_bytes([sample_dataset()]))
        assert body[0]["7FE00010"] == {"vr": "OB", "InlineBinary": "AAECAw=="}
        assert roundtrip(sample_dataset()).PixelData == bytes(range(4))

    def test_bulk_data_uri_resolved_by_resolver(self) -> None:
        ds = sample_dataset()
        ds.PixelData = bytes(range(256)) * 8
        uri = "http://capturer.invalid/bulk/1"
        data = datasets_to_json_bytes([ds], bulk_data_element_handler=lambda elem: uri, bulk_threshold=16)
        assert json.loads(data)[0]["7FE00010"] == {"vr": "OB", "BulkDataURI": uri}
        asked: list[str] = []

        def resolver(u: str) -> bytes | None:
            asked.append(u)
            return ds.PixelData if u == uri else None

        doc = parse_document(data, bulk_resolver=resolver)
        assert doc.deviations == ()
        assert doc.datasets[0].PixelData == ds.PixelData
        assert asked == [uri]

    def test_bulk_data_for_numeric_vr_is_decoded(self) -> None:
        data = json.dumps([{"00280010": {"vr": "US", "BulkDataURI": "u1"}}]).encode()
        doc = parse_document(data, bulk_resolver=lambda u: struct.pack("<H", 512))
        assert doc.datasets[0].Rows == 512

    def test_parse_metadata_dispatches_here(self) -> None:
        data = datasets_to_json_bytes([sample_dataset()])
        doc = parse_metadata(data, APPLICATION_DICOM_JSON, location="p1")
        assert doc.is_json and doc.location == "p1" and len(doc.datasets) == 1

    def test_legacy_media_type_is_recorded(self) -> None:
        doc = parse_document(b"[]", media_type=APPLICATION_JSON)
        assert doc.media_type == APPLICATION_JSON and doc.raw == []


class TestEncoding:
    def test_array_of_utf8_with_sorted_keys(self) -> None:
        data = datasets_to_json_bytes([sample_dataset(), sample_dataset()])
        text = data.decode("utf-8")
        assert "山田" in text  # not \\u-escaped
        body = json.loads(data)
        assert isinstance(body, list) and len(body) == 2
        for _where, ds, _depth in iter_datasets(body[0]):
            assert list(ds) == sorted(ds)

    def test_tags_are_uppercase_hex_and_no_keywords(self) -> None:
        body = dataset_to_json(sample_dataset())
        assert all(len(k) == 8 and k == k.upper() for k in body)
        assert all(set(attr) <= {"vr", "Value", "InlineBinary", "BulkDataURI"} for attr in body.values())

    def test_group_length_is_dropped(self) -> None:
        ds = Dataset()
        ds.add_new(0x00080000, "UL", 10)
        ds.PatientID = "1"
        assert list(dataset_to_json(ds)) == ["00100020"]

    def test_empty_values(self) -> None:
        ds = Dataset()
        ds.PatientID = ""
        ds.ImageType = ["ORIGINAL", "", "X"]
        ds.ReferencedImageSequence = Sequence([])
        body = dataset_to_json(ds)
        assert body["00100020"] == {"vr": "LO"}
        assert body["00080008"]["Value"] == ["ORIGINAL", None, "X"]
        assert body["00081140"] == {"vr": "SQ"}

    def test_person_name_without_empty_groups(self) -> None:
        ds = Dataset()
        ds.PatientName = "=山田^太郎"
        assert dataset_to_json(ds)["00100010"]["Value"] == [{"Ideographic": "山田^太郎"}]

    def test_ambiguous_vr_resolved(self) -> None:
        ds = Dataset()
        ds.PixelRepresentation = 0
        ds.SmallestImagePixelValue = 3
        assert dataset_to_json(ds)["00280106"]["vr"] == "US"

    def test_nan_cannot_be_written(self) -> None:
        ds = Dataset()
        ds.add(DataElement(0x00189327, "FD", float("nan")))
        with pytest.raises(ValueError, match="JSON compliant|Out of range"):
            datasets_to_json_bytes([ds])

    def test_json_pointer_escapes(self) -> None:
        assert json_pointer(0, "a/b", "c~d") == "/0/a~1b/c~0d"


def codes(data: bytes, **kw: Any) -> list[str]:
    return [d.code for d in parse_document(data, **kw).deviations]


class TestDecodingDeviations:
    def test_bom_lenient_reads_on(self) -> None:
        doc = parse_document(b"\xef\xbb\xbf[{}]")
        assert [d.code for d in doc.deviations] == ["json.bom"]
        assert len(doc.datasets) == 1

    def test_bom_strict_stops(self) -> None:
        doc = parse_document(b"\xef\xbb\xbf[{}]", policy=Strictness.STRICT)
        assert doc.raw is None and doc.deviations[0].fatal

    def test_invalid_utf8(self) -> None:
        doc = parse_document(b'[{"00100020":{"vr":"LO","Value":["\xff"]}}]')
        assert doc.deviations[0].code == "json.encoding"
        assert doc.deviations[0].location == "byte 34"
        assert doc.datasets[0].PatientID == "\ufffd"

    def test_invalid_utf8_strict(self) -> None:
        doc = parse_document(b'["\xff"]', policy=Strictness.STRICT)
        assert doc.raw is None and [d.code for d in doc.deviations] == ["json.encoding"]

    def test_utf16(self) -> None:
        assert codes("[{}]".encode("utf-16")) == ["json.encoding"]

    def test_syntax_error_has_line_and_column(self) -> None:
        doc = parse_document(b'[\n {"00100020": }\n]')
        (dev,) = doc.deviations
        assert dev.code == "json.syntax" and dev.fatal
        assert dev.location == "line 2, column 15"
        assert doc.raw is None and doc.datasets == ()

    def test_non_standard_number(self) -> None:
        assert codes(b'[{"00189327":{"vr":"FD","Value":[NaN]}}]') == ["json.non_standard_number"]

    def test_number_too_long(self) -> None:
        assert codes(b"[" + b"1" * 5000 + b"]") == ["json.number_too_long"]

    def test_single_object_lenient(self) -> None:
        doc = parse_document(b'{"00100020":{"vr":"LO","Value":["A"]}}')
        assert [d.code for d in doc.deviations] == ["json.not_array"]
        assert doc.datasets[0].PatientID == "A"

    def test_single_object_strict(self) -> None:
        doc = parse_document(b'{"00100020":{"vr":"LO","Value":["A"]}}', policy=Strictness.STRICT)
        assert doc.datasets == () and doc.deviations[0].fatal

    @pytest.mark.parametrize("body", [b'"x"', b"3", b"null", b"true"])
    def test_scalar_top_level(self, body: bytes) -> None:
        doc = parse_document(body)
        assert [d.code for d in doc.deviations] == ["json.not_array"] and doc.deviations[0].fatal

    def test_non_object_element(self) -> None:
        doc = parse_document(b'[{}, 3, {"00100020":{"vr":"LO"}}]')
        assert [(d.code, d.location) for d in doc.deviations] == [("json.not_object", "/1")]
        assert len(doc.datasets) == 2

    def test_duplicates(self) -> None:
        data = b'[{"00100020":{"vr":"LO","vr":"SH"},"00100020":{"vr":"LO"}}]'
        found = {(d.code, d.location) for d in parse_document(data).deviations}
        assert found == {("json.duplicate_attribute", "/0/00100020")}
        data = b'[{"00100010":{"vr":"PN","Value":[{"Alphabetic":"A","Alphabetic":"B"}],"Value":[]}}]'
        found = {(d.code, d.location) for d in parse_document(data).deviations}
        assert found == {("json.duplicate_member", "/0/00100010/Value")}

    def test_conversion_failure_is_per_instance(self) -> None:
        data = json.dumps([
            {"00100020": {"vr": "LO", "Value": ["ok"]}},
            {"00081140": {"vr": "SQ", "Value": [{"00280010": {"vr": "US", "Value": "x"}}]}},
            {"00100020": {"vr": "LO", "Value": ["also ok"]}},
        ]).encode()
        doc = parse_document(data)
        assert [(d.code, d.location) for d in doc.deviations] == [
            ("json.conversion", "/1/00081140/Value/0/00280010")]
        assert [ds.PatientID for ds in doc.datasets] == ["ok", "also ok"]

    def test_missing_vr_is_a_conversion_failure(self) -> None:
        doc = parse_document(b'[{"00100020":{"Value":["x"]}}]')
        assert [(d.code, d.location) for d in doc.deviations] == [("json.conversion", "/0/00100020")]

    def test_too_large(self) -> None:
        doc = parse_document(b"[{}]", max_bytes=2)
        assert [d.code for d in doc.deviations] == ["json.too_large"] and doc.raw is None

    def test_codes_are_declared(self) -> None:
        assert len(set(DEVIATION_CODES)) == len(DEVIATION_CODES)
        assert all(c.startswith("json.") for c in DEVIATION_CODES)


class TestBulkData:
    DOC = json.dumps([
        {"00081140": {"vr": "SQ", "Value": [{"00420011": {"vr": "OB", "BulkDataURI": "bulk/inner"}}]},
         "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/pixels"}},
        {"7FE00010": {"vr": "OB", "BulkDataURI": "bulk/second"}},
    ]).encode()

    def test_references_collected_with_pointers(self) -> None:
        refs = parse_document(self.DOC).bulk_refs
        assert [(r.uri, r.instance, r.path, r.tag, r.vr) for r in refs] == [
            ("bulk/inner", 0, "/0/00081140/Value/0/00420011", "00420011", "OB"),
            ("bulk/pixels", 0, "/0/7FE00010", "7FE00010", "OW"),
            ("bulk/second", 1, "/1/7FE00010", "7FE00010", "OB"),
        ]

    def test_resolver_sees_only_document_uris(self) -> None:
        asked: list[str] = []

        def resolver(uri: str) -> bytes | None:
            asked.append(uri)
            return b"\x01\x02"

        doc = parse_document(self.DOC, bulk_resolver=resolver)
        assert sorted(asked) == ["bulk/inner", "bulk/pixels", "bulk/second"]
        assert doc.datasets[1].PixelData == b"\x01\x02"
        assert doc.deviations == ()

    def test_unresolved_leaves_element_empty(self) -> None:
        doc = parse_document(self.DOC, bulk_resolver=lambda uri: None)
        unresolved = [(d.code, d.location) for d in doc.deviations]
        assert ("json.bulk_unresolved", "/0/7FE00010") in unresolved
        assert ("json.bulk_unresolved", "/0/00081140/Value/0/00420011") in unresolved
        assert doc.datasets[0]["PixelData"].is_empty

    def test_resolver_error_is_unresolved(self) -> None:
        def resolver(uri: str) -> bytes | None:
            raise LookupError(uri)

        doc = parse_document(self.DOC, bulk_resolver=resolver)
        assert {d.code for d in doc.deviations} == {"json.bulk_unresolved"}
        assert len(doc.datasets) == 2

    def test_without_resolver_nothing_is_resolved_or_reported(self) -> None:
        doc = parse_document(self.DOC)
        assert doc.deviations == ()
        assert doc.datasets[0]["PixelData"].is_empty

    def test_file_uri_is_never_opened(self, monkeypatch: pytest.MonkeyPatch) -> None:
        data = json.dumps([{"00420011": {"vr": "OB", "BulkDataURI": "file:///etc/passwd"},
                            "7FE00010": {"vr": "OB", "BulkDataURI": "http://127.0.0.1:9/x"}}]).encode()
        parse_document(data, bulk_resolver=lambda uri: None)  # warm up lazy imports

        def forbidden(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"I/O attempted: {args!r}")

        monkeypatch.setattr(builtins, "open", forbidden)
        monkeypatch.setattr(io, "open", forbidden)
        monkeypatch.setattr(os, "open", forbidden)
        monkeypatch.setattr(urllib.request, "urlopen", forbidden)
        monkeypatch.setattr(socket, "create_connection", forbidden)
        monkeypatch.setattr(socket.socket, "connect", forbidden)
        asked: list[str] = []
        doc = parse_document(data, bulk_resolver=lambda uri: asked.append(uri))
        assert sorted(asked) == ["file:///etc/passwd", "http://127.0.0.1:9/x"]
        assert doc.datasets[0]["00420011"].is_empty
        assert not doc.datasets[0]["PixelData"].value
        assert parse_document(data).datasets[0]["00420011"].is_empty


def nested(depth: int) -> dict[str, Any]:
    item: dict[str, Any] = {"00100020": {"vr": "LO", "Value": ["leaf"]}}
    for _ in range(depth):
        item = {"00081140": {"vr": "SQ", "Value": [item]}}
    return item


@pytest.mark.parametrize(("value", "name"), [
    (None, "null"), (True, "a boolean"), (3, "a number"), (1.5, "a number"), ("x", "a string"),
    ([], "an array"), ({}, "an object"),
])
def test_json_type_names(value: Any, name: str) -> None:
    assert json_type(value) == name


class TestLimits:
    def test_nesting_within_limit_converts(self) -> None:
        doc = parse_document(json.dumps([nested(MAX_SEQUENCE_DEPTH)]).encode())
        assert doc.deviations == () and len(doc.datasets) == 1

    def test_deep_sequences_are_a_deviation(self) -> None:
        doc = parse_document(json.dumps([nested(MAX_SEQUENCE_DEPTH + 1)]).encode())
        assert [d.code for d in doc.deviations] == ["json.too_deep"] and doc.raw is None

    def test_very_deep_json_does_not_recurse(self) -> None:
        doc = parse_document(b"[" * 100_000 + b"]" * 100_000)
        assert [d.code for d in doc.deviations] == ["json.too_deep"]

    def test_deep_json_below_interpreter_limit(self) -> None:
        doc = parse_document(b"[" * 900 + b"]" * 900)
        assert [d.code for d in doc.deviations] == ["json.too_deep"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["vr", "Value", "InlineBinary", "BulkDataURI", "00100010", "00081140", "7FE00010",
                         "Alphabetic", "0010001g", "x"]) | st.text(max_size=8),
        children | st.sampled_from(["PN", "SQ", "OB", "US", "XX", "AAAA", "b:u"]), max_size=5),
    max_leaves=30,
)


class TestNeverRaises:
    @given(st.binary(max_size=512))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        doc = parse_document(data, bulk_resolver=lambda uri: b"\x00\x00")
        assert all(d.code in DEVIATION_CODES for d in doc.deviations)

    @given(json_values, st.sampled_from(list(Strictness)))
    def test_arbitrary_json(self, value: Any, policy: Strictness) -> None:
        data = json.dumps([value, {"x": value}, value]).encode()
        doc = parse_document(data, policy=policy, bulk_resolver=lambda uri: None)
        assert all(d.code in DEVIATION_CODES for d in doc.deviations)
