"""DICOM JSON Model checks (JSON-001..JSON-019): each fails on a bad document and passes on a good one."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydicom import Dataset
from pydicom.sequence import Sequence

from tests.support import exchanges
from wic_conformance.dicomweb import json_model as codec
from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request
from wic_conformance.dicomweb.media_types import APPLICATION_DICOM_JSON, APPLICATION_JSON
from wic_conformance.findings import InvalidDicomJson, Severity, UnexpectedMediaType
from wic_conformance.validate import json_model as checks
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

JSON_CHECKS = sorted(name for name in REGISTRY.names() if REGISTRY[name].func.__module__ == checks.__name__)

GOOD: list[dict[str, Any]] = [{
    "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
    "00080008": {"vr": "CS", "Value": ["ORIGINAL", None, "PRIMARY"]},
    "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.77.1.4"]},
    "00080018": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.2.1125.1"]},
    "00080020": {"vr": "DA", "Value": ["20240131"]},
    "0008002A": {"vr": "DT", "Value": ["20240131101530.123456+0100"]},
    "00080030": {"vr": "TM", "Value": ["101530.5"]},
    "00080090": {"vr": "PN"},
    "00081140": {"vr": "SQ", "Value": [{}]},
    "00090010": {"vr": "LO", "Value": ["ACME 1.0"]},
    "00091001": {"vr": "LO", "Value": ["private"]},
    "00091002": {"vr": "UN", "InlineBinary": "AAE="},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]},
    "00100020": {"vr": "LO", "Value": ["ID-1"]},
    "00101010": {"vr": "AS", "Value": ["042Y"]},
    "00181063": {"vr": "DS", "Value": [33.3]},
    "00200013": {"vr": "IS", "Value": ["7"]},
    "00280009": {"vr": "AT", "Value": ["00181063"]},
    "00280010": {"vr": "US", "Value": [2]},
    "00280030": {"vr": "DS", "Value": ["0.5", 0.25]},
    "00280106": {"vr": "SS", "Value": [-3]},
    "0040A043": {"vr": "SQ", "Value": [{
        "00080100": {"vr": "SH", "Value": ["121311"]},
        "00080102": {"vr": "SH", "Value": ["DCM"]},
        "00080104": {"vr": "LO", "Value": ["Localizer"]},
    }]},
    "0040A160": {"vr": "UT", "BulkDataURI": "http://capturer.invalid/bulk/text"},
    "00420011": {"vr": "OB", "BulkDataURI": "http://capturer.invalid/bulk/1"},
    "7FE00010": {"vr": "OB", "InlineBinary": "AAECAw=="},
}]


def good() -> list[dict[str, Any]]:
    return copy.deepcopy(GOOD)


def with_attrs(**attrs: Any) -> list[dict[str, Any]]:
    """A one-instance document of the given attributes, in the given order (keys as written)."""
    return [{k.lstrip("_"): v for k, v in attrs.items()}]


def body_of(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode("utf-8")


def file_exchange(doc: Any, media_type: str = APPLICATION_DICOM_JSON) -> Exchange:
    return exchanges.file_exchange(body_of(doc), media_type, "x.json")


def stow_exchange(doc: Any, part_type: str) -> Exchange:
    boundary = "wic-boundary-1"
    body = (f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + body_of(doc)
            + f"\r\n--{boundary}--\r\n".encode())
    ctype = f'multipart/related; type="{APPLICATION_DICOM_JSON}"; boundary={boundary}'
    request = Request("POST", "http://manager.invalid/dicomweb/studies", Headers.of({"Content-Type": ctype}),
                      Body.of(body))
    return Exchange(request=request)


def run(name: str, doc: Any, ctx: CheckContext | None = None, **kw: Any) -> CheckResult:
    exchange = doc if isinstance(doc, Exchange) else file_exchange(doc, **kw)
    return exchanges.run_named_check(name, exchange, ctx)


def assert_fails(name: str, doc: Any, requirement: str, location: str | None = None,
                 ctx: CheckContext | None = None, **kw: Any) -> CheckResult:
    result = run(name, doc, ctx, **kw)
    assert result.findings, f"{name} passed"
    assert {f.requirement for f in result.findings} == {requirement}, result.findings
    if location is not None:
        assert location in [f.location for f in result.findings], [f.location for f in result.findings]
    return result


def assert_passes(name: str, doc: Any, ctx: CheckContext | None = None, **kw: Any) -> None:
    result = run(name, doc, ctx, **kw)
    assert result.outcome is Outcome.PASSED, result.findings


class TestConformantDocument:
    @pytest.mark.parametrize("name", JSON_CHECKS)
    def test_good_document_passes(self, name: str) -> None:
        assert_passes(name, good())

    @pytest.mark.parametrize("name", JSON_CHECKS)
    def test_codec_output_passes(self, name: str) -> None:
        ds = Dataset()
        ds.PatientName = "Doe^Jane=^=^"
        ds.PatientID = "1"
        ds.PixelRepresentation = 1
        ds.SmallestImagePixelValue = -1
        ds.ImageType = ["DERIVED", "", "X"]
        item = Dataset()
        item.CodeValue = "1"
        ds.ConceptNameCodeSequence = Sequence([item, Dataset()])
        ds.private_block(0x0011, "ACME", create=True).add_new(0x02, "DS", "1.5")
        ds.add_new(0x00200000, "UL", 4)
        assert_passes(name, codec.datasets_to_json_bytes([ds, ds]))

    @pytest.mark.parametrize("name", JSON_CHECKS)
    def test_not_applicable_without_metadata(self, name: str) -> None:
        result = run_check(REGISTRY[name], CheckContext(), Exchange())
        assert result.outcome is Outcome.NOT_APPLICABLE

    def test_every_rule_has_a_check(self) -> None:
        covered = {rid for name in JSON_CHECKS for rid in REGISTRY[name].requirements}
        assert {f"JSON-{n:03d}" for n in range(1, 20)} <= covered

    @pytest.mark.parametrize("name", JSON_CHECKS)
    def test_docstring_states_the_property(self, name: str) -> None:
        assert REGISTRY[name].description.endswith(".")
        assert name.startswith("dicom_json_")


class TestMediaType:
    NAME = "dicom_json_media_type_is_dicom_json"

    def test_legacy_application_json(self) -> None:
        result = assert_fails(self.NAME, good(), "JSON-001", "x.json", media_type=APPLICATION_JSON)
        assert isinstance(result.findings[0], UnexpectedMediaType)

    def test_part_charset_other_than_utf8(self) -> None:
        exchange = stow_exchange(good(), f"{APPLICATION_DICOM_JSON}; charset=ISO-8859-1")
        result = assert_fails(self.NAME, exchange, "JSON-001", "request part 1")
        assert "iso-8859-1" in result.findings[0].message

    def test_legacy_part_type(self) -> None:
        assert_fails(self.NAME, stow_exchange(good(), APPLICATION_JSON), "JSON-001", "request part 1")

    @pytest.mark.parametrize("part_type", [APPLICATION_DICOM_JSON, f"{APPLICATION_DICOM_JSON}; charset=UTF-8"])
    def test_good_part(self, part_type: str) -> None:
        assert_passes(self.NAME, stow_exchange(good(), part_type))


class TestDocumentDecodes:
    NAME = "dicom_json_document_decodes"

    @pytest.mark.parametrize(("body", "where"), [
        (b"\xef\xbb\xbf[{}]", "x.json > byte 0"),
        (b'[{"00100020":{"vr":"LO","Value":["\xff"]}}]', "x.json > byte 34"),
        (b'[{"00100020": }]', "x.json > line 1, column 15"),
        (b'[{"00189327":{"vr":"FD","Value":[Infinity]}}]', None),
        ("[{}]".encode("utf-16"), "x.json > byte 0"),
    ])
    def test_not_utf8_json(self, body: bytes, where: str | None) -> None:
        result = assert_fails(self.NAME, body, "JSON-001", where)
        assert all(isinstance(f, InvalidDicomJson) for f in result.findings)

    def test_duplicate_attribute(self) -> None:
        body = b'[{"00100020":{"vr":"LO"},"00100020":{"vr":"LO"}}]'
        assert_fails(self.NAME, body, "JSON-003", "x.json > /0/00100020")

    @pytest.mark.parametrize(("body", "rule"), [
        (b'[{"00100020":{"vr":"LO","vr":"SH"}}]', "JSON-007"),
        (b'[{"00100020":{"vr":"LO","Value":["a"],"Value":["b"]}}]', "JSON-008"),
        (b'[{"00100010":{"vr":"PN","Value":[{"Alphabetic":"A","Alphabetic":"B"}]}}]', "JSON-014"),
        (b'[{"00100020":{"vr":"LO","keyword":"A","keyword":"B"}}]', "JSON-004"),
    ])
    def test_duplicate_member(self, body: bytes, rule: str) -> None:
        assert_fails(self.NAME, body, rule)

    @pytest.mark.parametrize(("doc", "rule", "where"), [
        (with_attrs(_00280010={"vr": "US", "Value": 5}), "JSON-009", "x.json > /0/00280010"),
        (with_attrs(_00100020={"Value": ["x"]}), "JSON-007", "x.json > /0/00100020"),
        (with_attrs(_00081140={"vr": "SQ", "Value": [{"00100020": {"vr": "LO", "InlineBinary": 5}}]}),
         "JSON-016", "x.json > /0/00081140/Value/0/00100020"),
        (with_attrs(_00100020={"vr": "LO", "Value": ["x"]}, _00081140={"vr": "SQ", "Value": ["x"]}),
         "JSON-015", "x.json > /0/00081140/Value/0"),
    ])
    def test_conversion_failure_cites_the_specific_rule(self, doc: Any, rule: str, where: str) -> None:
        result = assert_fails(self.NAME, doc, rule, where)
        assert "cannot be converted" in result.findings[0].message

    def test_number_too_long(self) -> None:
        assert_fails(self.NAME, b"[{\"00280010\":{\"vr\":\"US\",\"Value\":[" + b"9" * 5000 + b"]}}]", "JSON-013")

    def test_structure_is_left_to_the_structural_checks(self) -> None:
        assert_passes(self.NAME, GOOD[0])  # a lone object: dicom_json_is_array reports it
        assert_passes(self.NAME, [1, {}])

    def test_unresolved_bulk_data_is_left_to_the_request_checks(self) -> None:
        exchange = stow_exchange(good(), APPLICATION_DICOM_JSON)
        ctx = CheckContext()
        (doc,) = ctx.metadata(exchange)
        assert "json.bulk_unresolved" in {d.code for d in doc.deviations}
        assert_passes(self.NAME, exchange, ctx)

    def test_toolkit_limits_are_logged_not_reported(self, caplog: pytest.LogCaptureFixture) -> None:
        item: dict[str, Any] = {}
        for _ in range(codec.MAX_SEQUENCE_DEPTH + 2):
            item = {"00081140": {"vr": "SQ", "Value": [item]}}
        with caplog.at_level(logging.WARNING):
            assert_passes(self.NAME, [item])
        assert "json.too_deep" in caplog.text


class TestTopLevelArray:
    NAME = "dicom_json_is_array"

    @pytest.mark.parametrize(("doc", "where"), [
        (GOOD[0], "x.json"),
        ("text", "x.json"),
        ([{}, 1], "x.json > /1"),
        ([None], "x.json > /0"),
    ])
    def test_not_an_array_of_objects(self, doc: Any, where: str) -> None:
        assert_fails(self.NAME, doc, "JSON-002", where)

    def test_lone_object_is_still_judged_by_the_other_checks(self) -> None:
        lone = {"0020000d": {"vr": "UI", "Value": ["1.2"]}}
        assert_fails("dicom_json_member_names_are_tags", lone, "JSON-003", "x.json > /0020000d")

    @pytest.mark.parametrize("doc", [[], [{}], [{}, {}]])
    def test_arrays_pass(self, doc: Any) -> None:
        assert_passes(self.NAME, doc)


class TestMemberNames:
    @pytest.mark.parametrize("name", ["0020000d", "(0010,0010)", "0010,0010", "0010001", "x"])
    def test_not_a_tag(self, name: str) -> None:
        result = assert_fails("dicom_json_member_names_are_tags", [{name: {"vr": "LO"}}], "JSON-003",
                              f"x.json > /0/{name}")
        assert repr(name) in result.findings[0].message

    def test_nested_member_name(self) -> None:
        doc = with_attrs(_00081140={"vr": "SQ", "Value": [{"00081150x": {"vr": "UI"}}]})
        assert_fails("dicom_json_member_names_are_tags", doc, "JSON-003", "x.json > /0/00081140/Value/0/00081150x")

    def test_keyword_as_member_name(self) -> None:
        result = assert_fails("dicom_json_has_no_keyword_members", [{"PatientName": {"vr": "PN"}}], "JSON-004",
                              "x.json > /0/PatientName")
        assert "00100010" in result.findings[0].message
        assert_passes("dicom_json_member_names_are_tags", [{"PatientName": {"vr": "PN"}}])

    @pytest.mark.parametrize("member", ["keyword", "value", "Tag", "vm"])
    def test_extra_attribute_member(self, member: str) -> None:
        doc = with_attrs(_00100020={"vr": "LO", member: "PatientID"})
        assert_fails("dicom_json_has_no_keyword_members", doc, "JSON-004", f"x.json > /0/00100020/{member}")


class TestOrderAndGroupLength:
    def test_unsorted(self) -> None:
        doc = with_attrs(_00100020={"vr": "LO"}, _00100010={"vr": "PN"})
        result = assert_fails("dicom_json_attributes_are_sorted", doc, "JSON-005", "x.json > /0/00100010")
        assert result.outcome is Outcome.WARNED
        assert result.findings[0].severity is Severity.WARNING

    def test_unsorted_in_item(self) -> None:
        doc = with_attrs(_00081140={"vr": "SQ", "Value": [{"00081155": {"vr": "UI"}, "00081150": {"vr": "UI"}}]})
        assert_fails("dicom_json_attributes_are_sorted", doc, "JSON-005", "x.json > /0/00081140/Value/0/00081150")

    def test_lowercase_hex_sorts_by_text(self) -> None:
        assert_passes("dicom_json_attributes_are_sorted", with_attrs(_0008002A={"vr": "DT"}, _00080030={"vr": "TM"}))

    @pytest.mark.parametrize("tag", ["00080000", "00100000", "00090000"])
    def test_group_length(self, tag: str) -> None:
        assert_fails("dicom_json_has_no_group_length", [{tag: {"vr": "UL", "Value": [4]}}], "JSON-006",
                     f"x.json > /0/{tag}")


class TestVr:
    NAME = "dicom_json_attributes_have_vr"

    @pytest.mark.parametrize("attr", [{"Value": ["x"]}, {"vr": "XX"}, {"vr": "lo"}, {"vr": 5}, "Doe", None])
    def test_missing_or_invalid(self, attr: Any) -> None:
        assert_fails(self.NAME, [{"00100020": attr}], "JSON-007", None)

    def test_dictionary_mismatch(self) -> None:
        result = assert_fails("dicom_json_vr_matches_dictionary", with_attrs(_00080020={"vr": "DT"}), "JSON-007",
                              "x.json > /0/00080020/vr")
        assert "DA" in result.findings[0].message

    @pytest.mark.parametrize("attrs", [
        {"_00280106": {"vr": "US"}},
        {"_00280106": {"vr": "SS"}},
        {"_7FE00010": {"vr": "OW"}},
        {"_60003000": {"vr": "OB"}},
        {"_00091001": {"vr": "FD"}},
        {"_00190010": {"vr": "LO"}},
        {"_7FFF0001": {"vr": "SH"}},
    ])
    def test_dictionary_allows(self, attrs: dict[str, Any]) -> None:
        assert_passes("dicom_json_vr_matches_dictionary", with_attrs(**attrs))

    def test_private_creator_is_lo(self) -> None:
        assert_fails("dicom_json_vr_matches_dictionary", with_attrs(_00190010={"vr": "SH"}), "JSON-007")

    def test_un_needs_the_option(self) -> None:
        doc = with_attrs(_00100020={"vr": "UN", "InlineBinary": "QQ=="})
        assert_fails("dicom_json_vr_matches_dictionary", doc, "JSON-007")
        ctx = CheckContext(options={"dicom_json_vr_matches_dictionary": {"allow_un": True}})
        assert_passes("dicom_json_vr_matches_dictionary", doc, ctx)


class TestValueFields:
    @pytest.mark.parametrize("attr", [
        {"vr": "OB", "Value": [], "InlineBinary": "AA=="},
        {"vr": "OB", "BulkDataURI": "u", "InlineBinary": "AA=="},
        {"vr": "US", "Value": [1], "BulkDataURI": "u"},
    ])
    def test_more_than_one(self, attr: dict[str, Any]) -> None:
        assert_fails("dicom_json_value_fields_are_exclusive", [{"00420011": attr}], "JSON-008",
                     "x.json > /0/00420011")

    @pytest.mark.parametrize("value", ["x", 5, {"a": 1}, None])
    def test_value_not_array(self, value: Any) -> None:
        assert_fails("dicom_json_values_are_arrays", [{"00100020": {"vr": "LO", "Value": value}}], "JSON-009",
                     "x.json > /0/00100020/Value")

    @pytest.mark.parametrize("vr", sorted(codec.BINARY_VRS))
    def test_binary_vr_with_value(self, vr: str) -> None:
        assert_fails("dicom_json_binary_vrs_have_no_value", [{"00091001": {"vr": vr, "Value": [1, 2]}}],
                     "JSON-010", "x.json > /0/00091001")

    def test_empty_attribute_is_fine(self) -> None:
        for name in ("dicom_json_value_fields_are_exclusive", "dicom_json_values_are_arrays",
                     "dicom_json_binary_vrs_have_no_value"):
            assert_passes(name, with_attrs(_00100020={"vr": "LO"}, _7FE00010={"vr": "OW"}))


class TestValueTypes:
    NAME = "dicom_json_value_types_match_vr"

    @pytest.mark.parametrize(("vr", "value"), [
        ("US", "2"), ("FL", "1.5"), ("SL", True), ("LO", 5), ("DA", 20240131), ("UI", 1.2),
        ("DS", True), ("IS", [1]), ("AT", 0x00100010), ("CS", {"a": "b"}),
    ])
    def test_wrong_json_type(self, vr: str, value: Any) -> None:
        assert_fails(self.NAME, [{"00091001": {"vr": vr, "Value": [value]}}], "JSON-011",
                     "x.json > /0/00091001/Value/0")

    @pytest.mark.parametrize(("vr", "values"), [
        ("DS", ["1.5", 1.5, None]), ("IS", ["7", 7]), ("SV", ["-9007199254740993", 5]),
        ("UV", ["18446744073709551615"]), ("US", [1, None, 2]), ("LO", ["a", None]),
    ])
    def test_allowed_json_types(self, vr: str, values: list[Any]) -> None:
        assert_passes(self.NAME, [{"00091001": {"vr": vr, "Value": values}}])

    @pytest.mark.parametrize("value", ["0018,1063", "00181063 ", "0018106g", "(0018,1063)", "0018106"])
    def test_at_not_hex_tag(self, value: str) -> None:
        assert_fails("dicom_json_at_values_are_tags", [{"00280009": {"vr": "AT", "Value": [value]}}], "JSON-012",
                     "x.json > /0/00280009/Value/0")

    def test_lowercase_at(self) -> None:
        assert_fails("dicom_json_at_values_are_tags", [{"00280009": {"vr": "AT", "Value": ["0018106a"]}}],
                     "JSON-012")


class TestStringValues:
    NAME = "dicom_json_string_values_follow_vr"

    @pytest.mark.parametrize(("vr", "value"), [
        ("DA", "2024-01-31"), ("DA", "20240230"), ("DA", "2024013"),
        ("TM", "25"), ("TM", "1015.5"), ("TM", "10:15"), ("TM", "106"),
        ("DT", "2024013"), ("DT", "20241301"), ("DT", "20240131256"), ("DT", "20240131+2500"),
        ("UI", "1.2.03"), ("UI", "1..2"), ("UI", "1.2."), ("UI", "1." + "2" * 63), ("UI", "1.2a"),
        ("CS", "lower"), ("CS", "A" * 17), ("CS", "A-B"),
        ("LO", "x" * 65), ("SH", "x" * 17), ("LO", "a\x07b"), ("ST", "x" * 1025),
        ("DS", "1.2.3"), ("DS", "1" * 17), ("DS", "NaN"),
        ("IS", "1.5"), ("IS", "9999999999"), ("IS", "1" * 13),
        ("AS", "42Y"), ("AS", "042y"), ("AE", "A\\B"), ("AE", "x" * 17),
        ("SV", "1.5"), ("UV", "-1"), ("UR", "http://a b"),
    ])
    def test_bad_string(self, vr: str, value: str) -> None:
        assert_fails(self.NAME, [{"00091001": {"vr": vr, "Value": [value]}}], "JSON-013",
                     "x.json > /0/00091001/Value/0")

    @pytest.mark.parametrize(("vr", "value"), [
        ("US", 70000), ("US", -1), ("US", 1.5), ("SS", -40000), ("UL", 2**32), ("SL", 2**31),
        ("IS", 2**31), ("IS", 2.5), ("FL", 1e39), ("UV", -1),
    ])
    def test_bad_number(self, vr: str, value: float) -> None:
        assert_fails(self.NAME, [{"00091001": {"vr": vr, "Value": [value]}}], "JSON-013",
                     "x.json > /0/00091001/Value/0")

    @pytest.mark.parametrize(("vr", "value"), [
        ("DA", "20240229"), ("TM", "10"), ("TM", "235960.123456"), ("DT", "2024"), ("DT", "20240131-0500"),
        ("UI", "0.1.20"), ("CS", "ISO_IR 192"), ("CS", "ORIGINAL "), ("DS", " -1.5e3 "), ("DS", ".5"),
        ("IS", "-2147483648"), ("AS", "003D"), ("LO", "x" * 64), ("LT", "line\r\nline\ttab"),
        ("LO", "\x1b$B"), ("UR", "http://a/b?c=%20"), ("US", 65535), ("US", 2.0), ("FD", -1e300),
        ("DA", ""),
    ])
    def test_good_value(self, vr: str, value: Any) -> None:
        assert_passes(self.NAME, [{"00091001": {"vr": vr, "Value": [value]}}])

    @pytest.mark.parametrize("group", ["x" * 65, "a^b^c^d^e^f"])
    def test_bad_person_name_group(self, group: str) -> None:
        doc = [{"00100010": {"vr": "PN", "Value": [{"Alphabetic": group}]}}]
        assert_fails(self.NAME, doc, "JSON-013", "x.json > /0/00100010/Value/0/Alphabetic")

    def test_long_values_are_shortened_in_messages(self) -> None:
        result = assert_fails(self.NAME, [{"00091001": {"vr": "LO", "Value": ["y" * 500]}}], "JSON-013")
        assert len(result.findings[0].message) < 200


class TestPersonNames:
    NAME = "dicom_json_person_names_are_objects"

    @pytest.mark.parametrize(("value", "where"), [
        ("Doe^John", "/0/00100010/Value/0"),
        ({"alphabetic": "Doe"}, "/0/00100010/Value/0"),
        ({"Alphabetic": ""}, "/0/00100010/Value/0/Alphabetic"),
        ({"Alphabetic": "Doe=Do"}, "/0/00100010/Value/0/Alphabetic"),
        ({"Alphabetic": 5}, "/0/00100010/Value/0/Alphabetic"),
        (["Doe"], "/0/00100010/Value/0"),
    ])
    def test_bad_person_name(self, value: Any, where: str) -> None:
        assert_fails(self.NAME, [{"00100010": {"vr": "PN", "Value": [value]}}], "JSON-014", f"x.json > {where}")

    @pytest.mark.parametrize("values", [
        [{"Alphabetic": "Doe^John"}], [{"Ideographic": "山田"}, None], [{}],
        [{"Alphabetic": "A", "Ideographic": "B", "Phonetic": "C"}],
    ])
    def test_good_person_name(self, values: list[Any]) -> None:
        assert_passes(self.NAME, [{"00100010": {"vr": "PN", "Value": values}}])


class TestSequences:
    NAME = "dicom_json_sequence_items_are_datasets"

    @pytest.mark.parametrize("item", ["x", None, [], 3])
    def test_item_not_object(self, item: Any) -> None:
        assert_fails(self.NAME, [{"00081140": {"vr": "SQ", "Value": [{}, item]}}], "JSON-015",
                     "x.json > /0/00081140/Value/1")

    def test_nested_item(self) -> None:
        doc = [{"00081140": {"vr": "SQ", "Value": [{"0040A043": {"vr": "SQ", "Value": ["x"]}}]}}]
        assert_fails(self.NAME, doc, "JSON-015", "x.json > /0/00081140/Value/0/0040A043/Value/0")

    def test_nested_problems_are_found_by_other_checks(self) -> None:
        doc = [{"00081140": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": [1]}}]}}]
        assert_fails("dicom_json_value_types_match_vr", doc, "JSON-011",
                     "x.json > /0/00081140/Value/0/00081150/Value/0")


class TestInlineBinary:
    NAME = "dicom_json_inline_binary_is_base64_string"

    @pytest.mark.parametrize(("attr", "where"), [
        ({"vr": "OB", "InlineBinary": ["AAAA"]}, "/0/7FE00010/InlineBinary"),
        ({"vr": "OB", "InlineBinary": 5}, "/0/7FE00010/InlineBinary"),
        ({"vr": "OB", "InlineBinary": "A*=="}, "/0/7FE00010/InlineBinary"),
        ({"vr": "OB", "InlineBinary": "AAA"}, "/0/7FE00010/InlineBinary"),
        ({"vr": "OB", "InlineBinary": "AAAA\nAAAA"}, "/0/7FE00010/InlineBinary"),
        ({"vr": "LO", "InlineBinary": "AAAA"}, "/0/7FE00010"),
    ])
    def test_bad_inline_binary(self, attr: dict[str, Any], where: str) -> None:
        assert_fails(self.NAME, [{"7FE00010": attr}], "JSON-016", f"x.json > {where}")

    @pytest.mark.parametrize("vr", sorted(codec.BINARY_VRS))
    def test_good_inline_binary(self, vr: str) -> None:
        assert_passes(self.NAME, [{"7FE00010": {"vr": vr, "InlineBinary": "AAECAw=="}}])


class TestBulkDataUri:
    NAME = "dicom_json_bulk_data_uri_vr_allowed"

    @pytest.mark.parametrize("vr", sorted(codec.ALL_VRS - codec.BULK_DATA_VRS))
    def test_vr_not_allowed(self, vr: str) -> None:
        assert_fails(self.NAME, [{"00091001": {"vr": vr, "BulkDataURI": "http://x/1"}}], "JSON-017",
                     "x.json > /0/00091001")

    @pytest.mark.parametrize("uri", [5, "", ["http://x/1"]])
    def test_not_a_uri_string(self, uri: Any) -> None:
        assert_fails(self.NAME, [{"7FE00010": {"vr": "OB", "BulkDataURI": uri}}], "JSON-017",
                     "x.json > /0/7FE00010/BulkDataURI")

    @pytest.mark.parametrize("vr", sorted(codec.BULK_DATA_VRS))
    def test_vr_allowed(self, vr: str) -> None:
        assert_passes(self.NAME, [{"00091001": {"vr": vr, "BulkDataURI": "http://x/1"}}])


class TestBackslash:
    NAME = "dicom_json_text_values_have_no_backslash"

    @pytest.mark.parametrize(("vr", "value", "where"), [
        ("LO", "a\\b", "/0/00091001/Value/0"),
        ("SH", "a\\b", "/0/00091001/Value/0"),
        ("UC", "a\\b", "/0/00091001/Value/0"),
        ("PN", {"Alphabetic": "Doe\\Roe"}, "/0/00091001/Value/0/Alphabetic"),
    ])
    def test_backslash(self, vr: str, value: Any, where: str) -> None:
        result = assert_fails(self.NAME, [{"00091001": {"vr": vr, "Value": [value]}}], "JSON-018", f"x.json > {where}")
        assert result.outcome is Outcome.WARNED

    @pytest.mark.parametrize("vr", ["LT", "ST", "UT"])
    def test_text_vrs_may_hold_backslash(self, vr: str) -> None:
        assert_passes(self.NAME, [{"00091001": {"vr": vr, "Value": ["C:\\path"]}}])


class TestPrivateCreators:
    NAME = "dicom_json_private_creators_precede_blocks"

    def test_block_without_creator(self) -> None:
        result = assert_fails(self.NAME, with_attrs(_00091001={"vr": "LO", "Value": ["x"]}), "JSON-019",
                              "x.json > /0/00091001")
        assert "00090010" in result.findings[0].message

    def test_creator_after_block(self) -> None:
        doc = with_attrs(_00091101={"vr": "LO", "Value": ["x"]}, _00090011={"vr": "LO", "Value": ["ACME"]})
        result = assert_fails(self.NAME, doc, "JSON-019", "x.json > /0/00091101")
        assert "precedes" in result.findings[0].message

    @pytest.mark.parametrize("creator", [{"vr": "LO"}, {"vr": "LO", "Value": [" "]}, {"vr": "LO", "Value": [None]}])
    def test_creator_without_value(self, creator: dict[str, Any]) -> None:
        doc = with_attrs(_00090010=creator, _00091001={"vr": "LO", "Value": ["x"]})
        assert_fails(self.NAME, doc, "JSON-019", "x.json > /0/00090010")

    def test_in_sequence_item(self) -> None:
        doc = [{"00081140": {"vr": "SQ", "Value": [{"00111001": {"vr": "LO"}}]}}]
        assert_fails(self.NAME, doc, "JSON-019", "x.json > /0/00081140/Value/0/00111001")

    def test_creator_precedes_block(self) -> None:
        doc = with_attrs(_00090010={"vr": "LO", "Value": ["A"]}, _00090011={"vr": "LO", "Value": ["B"]},
                         _00091001={"vr": "LO"}, _00091101={"vr": "US", "Value": [1]})
        assert_passes(self.NAME, doc)


def schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_nodes(value)


FAILING_KEYWORDS = {"type", "pattern", "enum", "const", "required", "minLength", "not", "additionalProperties"}


class TestTables:
    def test_schema_is_valid_draft_2020_12(self) -> None:
        Draft202012Validator.check_schema(checks.load_schema())

    def test_every_titled_schema_keyword_is_mapped(self) -> None:
        for node in schema_nodes(checks.load_schema()):
            title = node.get("title")
            if title is None or "$schema" in node:
                continue
            for keyword in FAILING_KEYWORDS & set(node):
                if keyword == "additionalProperties" and node[keyword] is not False:
                    continue
                assert (title, keyword) in checks.SCHEMA_PROBLEMS, (title, keyword)

    def test_every_failing_keyword_sits_in_a_titled_schema(self) -> None:
        for node in schema_nodes(checks.load_schema()):
            if FAILING_KEYWORDS & set(node) and "if" not in node:
                in_condition = "title" not in node
                if in_condition:  # only 'if' conditions and their enums may be untitled
                    assert set(node) <= {"required", "properties", "enum", "const", "anyOf"}, node

    def test_schema_vr_lists_match_the_codec(self) -> None:
        schema = checks.load_schema()
        attribute = schema["$defs"]["attribute"]
        assert set(attribute["properties"]["vr"]["enum"]) == codec.ALL_VRS
        conditions = {json.dumps(sorted(c["if"]["properties"]["vr"].get("enum", [c["if"]["properties"]["vr"]
                      .get("const")]))): c["then"] for c in attribute["allOf"]}
        by_title = {then.get("title"): set(json.loads(key)) for key, then in conditions.items()}
        assert by_title["binary-value"] == codec.BINARY_VRS
        assert by_title["inline-binary-vr"] == codec.ALL_VRS - codec.BINARY_VRS
        assert by_title["bulk-data-uri-vr"] == codec.ALL_VRS - codec.BULK_DATA_VRS

    def test_problem_kinds_cite_json_rules(self) -> None:
        assert set(checks.SCHEMA_PROBLEMS.values()) <= set(checks.PROBLEM_RULES)
        catalogue = CheckContext().catalogue
        assert all(rid in catalogue for rid in checks.PROBLEM_RULES.values())

    def test_deviation_table_covers_the_codec(self) -> None:
        assert set(checks.DEVIATION_RULES) == set(codec.DEVIATION_CODES)

    def test_string_rules_cover_string_vrs(self) -> None:
        assert codec.STRING_VRS - {"AT"} <= set(checks.STRING_RULES)

    def test_findings_are_capped(self) -> None:
        doc = [{"00091001": {"vr": "US", "Value": ["x"] * (checks.MAX_FINDINGS_PER_CHECK + 50)}}]
        result = assert_fails("dicom_json_value_types_match_vr", doc, "JSON-011")
        assert len(result.findings) == checks.MAX_FINDINGS_PER_CHECK + 1
        assert "50 more findings" in result.findings[-1].message

    def test_problems_are_computed_once_per_exchange(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []
        original = checks._document_problems

        def counting(doc: Any) -> Any:
            calls.append(doc.location)
            return original(doc)

        monkeypatch.setattr(checks, "_document_problems", counting)
        ctx, exchange = CheckContext(), file_exchange(good())
        REGISTRY.run(ctx, exchange, JSON_CHECKS)
        assert calls == ["x.json"]


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["PN", "SQ", "OB", "US", "AT", "DA", "UI", "XX", "A\\B", "AAAA", "00100010", "1.2.03"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["vr", "Value", "InlineBinary", "BulkDataURI", "00100010", "00081140", "7FE00010",
                         "00090010", "00091001", "00080000", "Alphabetic", "0010001g", "PatientID"]),
        children, max_size=5),
    max_leaves=25,
)


class TestRobustness:
    @given(json_like)
    def test_checks_never_break_on_arbitrary_json(self, value: Any) -> None:
        ctx = CheckContext()
        for doc in (value, [value], [{"00081140": {"vr": "SQ", "Value": [value]}}]):
            exchange = file_exchange(json.dumps(doc).encode())
            for result in REGISTRY.run(ctx, exchange, JSON_CHECKS):
                assert result.outcome is not Outcome.ERROR, (result.check, result.error)

    @given(st.binary(max_size=300))
    def test_checks_never_break_on_arbitrary_bytes(self, data: bytes) -> None:
        exchange = file_exchange(data)
        for result in REGISTRY.run(CheckContext(), exchange, JSON_CHECKS):
            assert result.outcome is not Outcome.ERROR, (result.check, result.error)
