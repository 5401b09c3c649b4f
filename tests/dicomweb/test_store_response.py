from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.dicomweb.exchange import Body, Headers, Response
from wic_conformance.dicomweb.status import (
    CATEGORY_FAILURE,
    CATEGORY_WARNING,
    FAILURE_REASONS,
    HTTP_STATUS,
    STOW_STATUS,
    WARNING_REASONS,
    classify_reason,
    format_reason,
)
from wic_conformance.dicomweb.store_response import (
    FAILURE_REASON,
    RawAttribute,
    SopRef,
    StoreResponse,
    build_store_response,
    expected_status,
    parse_store_response,
)
from wic_conformance.errors import UsageError

CT = "1.2.840.10008.5.1.4.1.1.7"
BASE = "http://pacs.test/dicom-web"


def response(body: bytes, media_type: str | None = mt.APPLICATION_DICOM_JSON, status: int = 200) -> Response:
    headers = Headers.of({"Content-Type": media_type} if media_type else {})
    return Response(status, "", headers, Body.of(body))


def parse(body: bytes, media_type: str | None = mt.APPLICATION_DICOM_JSON, *, status: int = 200,
          policy: Strictness = Strictness.LENIENT) -> StoreResponse:
    return parse_store_response(response(body, media_type, status), policy=policy)


def coerced_item() -> dict[str, RawAttribute]:
    modified = {"00100020": RawAttribute("LO", ("OLD-ID",))}
    return {
        "04000562": RawAttribute("DT", ("20240101120000",)),
        "04000563": RawAttribute("LO", ("IM",)),
        "04000565": RawAttribute("CS", ("COERCE",)),
        "04000550": RawAttribute("SQ", items=(modified,)),
    }


def refs() -> tuple[list[SopRef], list[SopRef]]:
    stored = [
        SopRef(CT, "2.25.10", f"{BASE}/studies/2.25.1/series/2.25.2/instances/2.25.10"),
        SopRef(CT, "2.25.11", f"{BASE}/studies/2.25.1/series/2.25.2/instances/2.25.11", warning_reason=0xB000,
               original_attributes=(coerced_item(),)),
    ]
    failed = [SopRef(CT, "2.25.12", failure_reason=0x0122)]
    return stored, failed


class TestRoundTrip:
    @pytest.mark.parametrize("media_type", [mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML])
    def test_build_then_parse(self, media_type: str) -> None:
        stored, failed = refs()
        body = build_store_response(referenced=stored, failed=failed, other_failures=[0xA700],
                                    retrieve_url=f"{BASE}/studies/2.25.1", media_type=media_type)
        got = parse(body, media_type, status=202)
        assert got.deviations == ()
        assert got.format == ("json" if media_type == mt.APPLICATION_DICOM_JSON else "xml")
        assert got.decoded
        assert got.retrieve_url == f"{BASE}/studies/2.25.1"
        assert [(r.sop_class_uid, r.sop_instance_uid, r.retrieve_url, r.warning_reason) for r in got.referenced] \
            == [(r.sop_class_uid, r.sop_instance_uid, r.retrieve_url, r.warning_reason) for r in stored]
        assert [(r.sop_instance_uid, r.failure_reason) for r in got.failed] == [("2.25.12", 290)]
        assert got.other_failures == (0xA700,)
        assert got.present == {"00081190", "00081198", "00081199", "0008119A"}
        assert got.has_warnings and got.failure_count == 2
        (original,) = got.referenced[1].original_attributes
        assert original["04000565"].values == ("COERCE",)
        assert len(original["04000550"].items) == 1
        assert got.dataset is not None
        assert got.dataset.FailedSOPSequence[0].FailureReason == 290

    def test_reason_codes_are_us_numbers(self) -> None:
        stored, failed = refs()
        raw = json.loads(build_store_response(referenced=stored, failed=failed, retrieve_url=None))
        assert raw["00081198"]["Value"][0]["00081197"] == {"vr": "US", "Value": [290]}
        assert raw["00081199"]["Value"][1]["00081196"] == {"vr": "US", "Value": [45056]}
        assert raw["00081190"] == {"vr": "UR"}  # Type 2: present and empty
        assert raw["00081199"]["Value"][0]["00081190"]["vr"] == "UR"
        xml = build_store_response(referenced=stored, failed=failed, retrieve_url=None,
                                   media_type=mt.APPLICATION_DICOM_XML).decode()
        assert '<DicomAttribute tag="00081197" vr="US" keyword="FailureReason"><Value number="1">290</Value>' in xml

    def test_only_sequences_with_items_are_written(self) -> None:
        raw = json.loads(build_store_response(referenced=refs()[0], retrieve_url="u"))
        assert set(raw) == {"00081190", "00081199"}

    def test_dataset_original_attributes_accepted(self) -> None:
        item = Dataset()
        item.ReasonForTheAttributeModification = "CORRECT"
        ref = SopRef(CT, "2.25.1", "u", original_attributes=(item,))
        got = parse(build_store_response(referenced=[ref], retrieve_url="u"))
        assert got.referenced[0].original_attributes[0]["04000565"].values == ("CORRECT",)

    def test_unknown_media_type_is_a_usage_error(self) -> None:
        with pytest.raises(UsageError, match="DICOM JSON or DICOM XML"):
            build_store_response(retrieve_url=None, media_type=mt.TEXT_PLAIN)


def _failed_json(reason: object, vr: str = "US") -> bytes:
    return json.dumps({"00081198": {"vr": "SQ", "Value": [{
        "00081150": {"vr": "UI", "Value": [CT]}, "00081155": {"vr": "UI", "Value": ["2.25.1"]},
        "00081197": {"vr": vr, "Value": [reason]}}]}}).encode()


def _failed_xml(text: str, vr: str = "US") -> bytes:
    return (f'<NativeDicomModel xml:space="preserve"><DicomAttribute tag="00081198" vr="SQ">'
            f'<Item number="1"><DicomAttribute tag="00081197" vr="{vr}"><Value number="1">{text}</Value>'
            f"</DicomAttribute></Item></DicomAttribute></NativeDicomModel>").encode()


class TestReasonEncoding:
    @pytest.mark.parametrize(("raw", "expected"), [("A700", 0xA700), ("0122", 0x0122), ("0xC122", 0xC122),
                                                   ("290", 290)])
    def test_json_string_reasons_are_recorded(self, raw: str, expected: int) -> None:
        got = parse(_failed_json(raw), status=409)
        assert got.failed[0].failure_reason == expected
        devs = [d for d in got.deviations if d.code == "response.reason_not_number"]
        assert len(devs) == 1 and repr(raw) in devs[0].message
        assert devs[0].location == f"/00081198/Value/0/{FAILURE_REASON}"

    def test_strict_does_not_interpret_hex_strings(self) -> None:
        got = parse(_failed_json("A700"), status=409, policy=Strictness.STRICT)
        assert got.failed[0].failure_reason is None
        assert [d.code for d in got.deviations if d.code.startswith("response.reason")] == [
            "response.reason_not_number"]

    @pytest.mark.parametrize(("text", "expected", "flagged"), [("290", 290, False), ("A700", 0xA700, True),
                                                               ("0110", 0x0110, True), ("45056", 45056, False)])
    def test_xml_reason_text(self, text: str, expected: int, flagged: bool) -> None:
        got = parse(_failed_xml(text), mt.APPLICATION_DICOM_XML, status=409)
        assert got.failed[0].failure_reason == expected
        assert any(d.code == "response.reason_not_number" for d in got.deviations) is flagged

    def test_wrong_vr_and_non_integer(self) -> None:
        got = parse(_failed_json(290, vr="SH"), status=409)
        assert [d.code for d in got.deviations if d.code.startswith("response.reason")] == [
            "response.reason_wrong_vr"]
        assert "'SH'" in next(d.message for d in got.deviations if d.code == "response.reason_wrong_vr")
        got = parse(_failed_json(290.5), status=409)
        assert "response.reason_not_integer" in [d.code for d in got.deviations]
        got = parse(_failed_json(70000), status=409)
        assert "response.reason_out_of_range" in [d.code for d in got.deviations]


class TestBadBodies:
    def test_empty_body(self) -> None:
        got = parse(b"", None)
        assert [d.code for d in got.deviations] == ["response.empty_body"]
        assert got.format is None and not got.decoded and got.media_type is None

    def test_bad_json(self) -> None:
        got = parse(b'{"00081199": ')
        assert [(d.code, d.fatal) for d in got.deviations] == [("response.syntax", True)]
        assert got.format == "json" and not got.decoded

    def test_bad_xml(self) -> None:
        got = parse(b"<NativeDicomModel>", mt.APPLICATION_DICOM_XML)
        assert [d.code for d in got.deviations] == ["xml.syntax"] and not got.decoded

    def test_media_type_mismatch(self) -> None:
        body = build_store_response(referenced=refs()[0], retrieve_url="u", media_type=mt.APPLICATION_DICOM_XML)
        got = parse(body, mt.APPLICATION_DICOM_JSON)
        assert got.format == "xml" and "response.media_type_mismatch" in [d.code for d in got.deviations]
        assert len(got.referenced) == 2

    def test_neither_json_nor_xml(self) -> None:
        got = parse(b"stored fine", mt.TEXT_PLAIN)
        assert [(d.code, d.fatal) for d in got.deviations] == [("response.undecodable", True)]

    def test_array_wrapper(self) -> None:
        body = b"[" + build_store_response(referenced=refs()[0], retrieve_url="u") + b"]"
        lenient = parse(body)
        assert "response.not_dataset" in [d.code for d in lenient.deviations] and len(lenient.referenced) == 2
        strict = parse(body, policy=Strictness.STRICT)
        assert strict.referenced == () and not strict.present

    def test_shape_problems(self) -> None:
        body = json.dumps({"00081199": {"vr": "SQ", "Value": ["x"]}, "0008119a": {"vr": "SQ"},
                           "00081190": {"vr": "UR", "Value": "http://x"}}).encode()
        got = parse(body)
        seen = [d.code for d in got.deviations]
        assert "response.attribute_shape" in seen and "response.tag_lowercase" in seen
        assert got.retrieve_url == "http://x" and "0008119A" in got.present

    @given(st.binary(max_size=300), st.sampled_from([mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML, None]))
    def test_arbitrary_bodies_never_raise(self, body: bytes, media_type: str | None) -> None:
        got = parse(body, media_type)
        assert got.status == 200

    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                            st.sampled_from(["00081199", "00081198", "0008119A", "00081197", "00081196",
                                             "00081190", "00081155", "vr", "Value", "04000561"]), inner,
                            max_size=4), max_leaves=20))
    def test_arbitrary_json_never_raises(self, value: object) -> None:
        parse(json.dumps(value).encode())


class TestExpectedStatus:
    @pytest.mark.parametrize(("ref", "failed", "warn", "codes"), [
        (2, 0, False, {200}), (2, 0, True, {200, 202}), (1, 1, False, {202}), (1, 1, True, {202}),
        (0, 2, False, {409}), (0, 0, False, {400, 409}),
    ])
    def test_table_10_5_3_1(self, ref: int, failed: int, warn: bool, codes: set[int]) -> None:
        assert expected_status(ref, failed, warn) == codes


class TestStatusTables:
    def test_http_table(self) -> None:
        assert set(HTTP_STATUS) == {200, 202, 400, 401, 403, 404, 406, 409, 411, 413, 415, 500, 501, 503}
        assert STOW_STATUS <= set(HTTP_STATUS)
        assert all(len(v) == 2 for v in HTTP_STATUS.values())

    @pytest.mark.parametrize(("code", "category"), [
        (0xA700, CATEGORY_FAILURE), (0xA7FF, CATEGORY_FAILURE), (0xA9A0, CATEGORY_FAILURE),
        (0xC000, CATEGORY_FAILURE), (0xCFFF, CATEGORY_FAILURE), (0xC122, CATEGORY_FAILURE),
        (0x0110, CATEGORY_FAILURE), (0x0122, CATEGORY_FAILURE), (0xB000, CATEGORY_WARNING),
        (0xB006, CATEGORY_WARNING), (0xB007, CATEGORY_WARNING),
    ])
    def test_known_reasons(self, code: int, category: str) -> None:
        known = classify_reason(code)
        assert known is not None and known[0] == category

    @pytest.mark.parametrize("code", [0, 1, 0xA800, 0xB001, 0xD000, 0xFFFF])
    def test_unknown_reasons(self, code: int) -> None:
        assert classify_reason(code) is None

    def test_exact_entries_win_over_ranges(self) -> None:
        assert classify_reason(0xC122) == FAILURE_REASONS[0xC122]
        assert classify_reason(0xC123) == (CATEGORY_FAILURE, "Error: Cannot understand")
        assert classify_reason(0xB000) == WARNING_REASONS[0xB000]
        assert format_reason(290) == "0x0122 (290)"
