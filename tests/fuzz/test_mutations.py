"""Labelled request mutations: each yields a request the request checks flag, with the right record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange, Headers, Request
from wic_conformance.dicomweb.multipart import decode_multipart
from wic_conformance.dicomweb.stow import build_stow_request
from wic_conformance.errors import UsageError
from wic_conformance.findings import Severity
from wic_conformance.fuzz.mutations import OPERATORS, Mutation, MutationKind, apply, apply_all, parse_kind
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.validate.all_checks import REGISTRY
from wic_conformance.validate.registry import CheckContext, Outcome

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
BASE = "http://127.0.0.1:1/dicom-web"
FOREIGN = "http://127.0.0.1:9/elsewhere.jpg"

#: fixture used per payload encoding (an uncompressed PS3.10 instance, so Implicit VR needs no codec)
FIXTURE = {"json": "json/jpeg-baseline", "xml": "xml/jpeg-baseline", "part10": "part10/encapsulated-pdf"}

#: the request-check requirement each negative operator must make appear
FLAGGED_AS = {
    MutationKind.DROP_BOUNDARY: "STOW-HDR-001",
    MutationKind.DROP_TYPE_PARAM: "STOW-HDR-001",
    MutationKind.SWAP_TYPE_PARAM: "STOW-HDR-002",
    MutationKind.WRONG_ROOT_TYPE: "STOW-HDR-002",
    MutationKind.UNSUPPORTED_MEDIA_TYPE: "STOW-HDR-001",
    MutationKind.TRUNCATE_BODY: "STOW-PAY-015",
    MutationKind.LF_LINE_ENDINGS: "STOW-PAY-015",
    MutationKind.DROP_BULK_PART: "STOW-PAY-012",
    MutationKind.FOREIGN_BULK_URI: "STOW-PAY-012",
    MutationKind.BULK_BEFORE_METADATA: "STOW-PAY-011",
    MutationKind.LOWERCASE_TAGS: "JSON-003",  # XML-002 for XML metadata
    MutationKind.PN_AS_STRING: "JSON-014",
    MutationKind.KEYWORD_MEMBERS: "JSON-004",
    MutationKind.IMPLICIT_VR_PART: "STOW-PAY-013",
    MutationKind.MALFORMED_JSON: "JSON-001",
    MutationKind.MALFORMED_XML: "XML-001",
}
VARIATIONS = {kind for kind, info in OPERATORS.items() if not info.negative}


def request_for(encoding: str) -> Request:
    fixture = INDEX[FIXTURE[encoding]]
    if encoding == "part10":
        parts = [({"Content-Type": mt.APPLICATION_DICOM}, fixture.read())]
    else:
        parts = [({"Content-Type": fixture.media_type}, fixture.read()), *INDEX.bulk_parts(fixture)]
    return build_stow_request(base_url=BASE, root_type=fixture.media_type, parts=parts)


def flagged(request: Request) -> dict[str, Severity]:
    """Requirement -> worst severity of the findings the Capturer checks raise on a request."""
    results = REGISTRY.run(CheckContext(), Exchange(request=request), tags=["capturer"])
    broken = [(r.check, r.error) for r in results if r.outcome is Outcome.ERROR]
    assert not broken, broken
    out: dict[str, Severity] = {}
    for finding in (f for r in results for f in r.findings):
        assert finding.severity is not None
        if finding.requirement not in out or finding.severity.rank > out[finding.requirement].rank:
            out[finding.requirement] = finding.severity
    return out


def cases() -> list[tuple[MutationKind, str]]:
    return [(kind, encoding) for kind, info in OPERATORS.items() for encoding in sorted(info.encodings)]


def params_for(kind: MutationKind) -> dict[str, str]:
    return {"uri": FOREIGN} if kind is MutationKind.FOREIGN_BULK_URI else {}


BASELINE = {encoding: flagged(request_for(encoding)) for encoding in FIXTURE}


class TestEveryOperator:
    def test_every_kind_is_described_and_tested(self) -> None:
        assert set(OPERATORS) == set(MutationKind)
        assert set(FLAGGED_AS) | VARIATIONS == set(MutationKind)
        assert VARIATIONS == {MutationKind.REORDER_PARAMS, MutationKind.QUOTE_BOUNDARY,
                              MutationKind.UPPERCASE_MEDIA_TYPES, MutationKind.ADD_TRANSFER_SYNTAX_PARAM}

    def test_the_unmutated_requests_are_clean(self) -> None:
        for encoding, found in BASELINE.items():
            assert not [r for r, s in found.items() if s is Severity.ERROR], (encoding, found)

    @pytest.mark.parametrize("kind, encoding", cases(), ids=lambda v: str(v))
    def test_record_and_request_checks(self, kind: MutationKind, encoding: str) -> None:
        original = request_for(encoding)
        mutated, record = apply(kind, original, params_for(kind))
        assert isinstance(record, Mutation) and record.kind is kind
        assert record.negative is OPERATORS[kind].negative
        expected_rule = "XML-002" if (kind, encoding) == (MutationKind.LOWERCASE_TAGS, "xml") else \
            OPERATORS[kind].requirement
        assert record.requirement == expected_rule
        assert record.description and len(record.description) > 40
        assert mutated != original
        length = mutated.headers.get("content-length")
        assert length is None or int(length) == mutated.body.size
        found = flagged(mutated)
        if kind in VARIATIONS:
            new_errors = {r for r, s in found.items() if s is Severity.ERROR} - set(BASELINE[encoding])
            assert not new_errors, f"{kind} is a legitimate variation but the checks flag {new_errors}"
        else:
            rule = "XML-002" if (kind, encoding) == (MutationKind.LOWERCASE_TAGS, "xml") else FLAGGED_AS[kind]
            assert rule in found, f"{kind} on {encoding}: expected {rule}, the checks raised {sorted(found)}"
            assert rule not in BASELINE[encoding]

    @pytest.mark.parametrize("kind, encoding", cases(), ids=lambda v: str(v))
    def test_pure_and_deterministic(self, kind: MutationKind, encoding: str) -> None:
        original = request_for(encoding)
        before = (original.headers, original.body.read())
        first, _ = apply(kind, original, params_for(kind))
        second, _ = apply(kind, original, params_for(kind))
        assert (original.headers, original.body.read()) == before
        assert first.headers == second.headers and first.body.read() == second.body.read()


class TestOperators:
    def test_content_mutations_keep_the_boundary_and_decode(self) -> None:
        original = request_for("json")
        mutated, _ = apply(MutationKind.BULK_BEFORE_METADATA, original)
        assert mutated.content_type == original.content_type
        result = decode_multipart(mutated.body, mutated.content_type or "")
        assert result.complete
        assert [p.content_type.essence for p in result.parts if p.content_type] == [mt.IMAGE_JPEG,
                                                                                     mt.APPLICATION_DICOM_JSON]

    def test_foreign_bulk_uri_rewrites_and_drops_the_part(self) -> None:
        mutated, record = apply(MutationKind.FOREIGN_BULK_URI, request_for("json"), {"uri": FOREIGN})
        parts = decode_multipart(mutated.body, mutated.content_type or "").parts
        assert len(parts) == 1
        assert json.loads(parts[0].body.read())[0]["7FE00010"]["BulkDataURI"] == FOREIGN
        assert record.params == {"uri": FOREIGN, "location": "bulk/jpeg-baseline", "keep_part": False}
        kept, _ = apply(MutationKind.FOREIGN_BULK_URI, request_for("xml"), {"uri": FOREIGN, "keep_part": True})
        xml_parts = decode_multipart(kept.body, kept.content_type or "").parts
        assert len(xml_parts) == 2 and f'uri="{FOREIGN}"'.encode() in xml_parts[0].body.read()

    def test_uppercase_media_types_keep_the_boundary_value(self) -> None:
        original = request_for("part10")
        mutated, _ = apply("UPPERCASE_MEDIA_TYPES", original)
        ctype = mutated.content_type or ""
        assert ctype.startswith("MULTIPART/RELATED") and 'type="APPLICATION/DICOM"' in ctype
        assert mt.parse_media_type(ctype).boundary == mt.parse_media_type(original.content_type or "").boundary

    def test_transfer_syntax_parameter_names_the_file_meta(self) -> None:
        mutated, _ = apply(MutationKind.ADD_TRANSFER_SYNTAX_PARAM, request_for("part10"))
        (part,) = decode_multipart(mutated.body, mutated.content_type or "").parts
        assert part.content_type is not None and part.content_type.transfer_syntax == "1.2.840.10008.1.2.1"

    def test_unsupported_media_type_posts_the_root_part_alone(self) -> None:
        original = request_for("json")
        mutated, _ = apply(MutationKind.UNSUPPORTED_MEDIA_TYPE, original)
        assert mutated.content_type == mt.APPLICATION_JSON
        assert mutated.body.read() == INDEX["json/jpeg-baseline"].read()

    def test_composition(self) -> None:
        mutated, records = apply_all(request_for("json"), [
            (MutationKind.PN_AS_STRING, {}), (MutationKind.TRUNCATE_BODY, {"keep": 100})])
        assert [r.kind for r in records] == [MutationKind.PN_AS_STRING, MutationKind.TRUNCATE_BODY]
        assert mutated.body.size == 100

    @given(st.floats(min_value=0.01, max_value=0.9))
    def test_truncation_always_loses_the_close_delimiter(self, fraction: float) -> None:
        mutated, _ = apply(MutationKind.TRUNCATE_BODY, request_for("part10"), {"fraction": fraction})
        result = decode_multipart(mutated.body, mutated.content_type or "")
        assert not result.complete


class TestMisuse:
    def test_unknown_kind(self) -> None:
        with pytest.raises(UsageError, match="unknown mutation kind 'shuffle_parts'"):
            apply("shuffle_parts", request_for("json"))

    def test_names_and_values_are_both_accepted(self) -> None:
        assert parse_kind("DROP_BOUNDARY") is parse_kind("drop_boundary") is MutationKind.DROP_BOUNDARY

    def test_unknown_parameter(self) -> None:
        with pytest.raises(UsageError, match=r"unknown parameter\(s\) \['colour'\]"):
            apply(MutationKind.DROP_BOUNDARY, request_for("json"), {"colour": "red"})

    def test_operator_that_does_not_apply(self) -> None:
        with pytest.raises(UsageError, match="applies to json, xml requests, not to a part10 request"):
            apply(MutationKind.DROP_BULK_PART, request_for("part10"))

    def test_foreign_bulk_uri_needs_a_uri(self) -> None:
        with pytest.raises(UsageError, match="needs a uri parameter"):
            apply(MutationKind.FOREIGN_BULK_URI, request_for("json"))

    def test_unknown_location(self) -> None:
        with pytest.raises(UsageError, match="no BulkDataURI 'bulk/nowhere'"):
            apply(MutationKind.DROP_BULK_PART, request_for("xml"), {"location": "bulk/nowhere"})

    def test_not_multipart(self) -> None:
        with pytest.raises(UsageError, match="needs a multipart/related request"):
            apply(MutationKind.DROP_BULK_PART, Request("POST", BASE + "/studies",
                                                       Headers.of({"Content-Type": mt.APPLICATION_DICOM})))
        with pytest.raises(UsageError, match="has no Content-Type"):
            apply(MutationKind.DROP_BOUNDARY, Request("POST", BASE + "/studies"))
