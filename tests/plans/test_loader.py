"""Plan loading: schema validation, defaults, variant expansion, and every kind of plan error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from wic_conformance.errors import PlanError
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.plans.loader import load_plan, load_plans, plan_schema
from wic_conformance.plans.model import BulkReplacement, Encoding, MutationSpec, Plan

ROOT = Path(__file__).resolve().parents[2]
INDEX = FixtureIndex.load(ROOT / "fixtures")
HEADER = """\
plan: t
title: a test plan
actor: manager
transaction: RAD-108
"""


def write(tmp_path: Path, body: str, name: str = "x.yaml", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + textwrap.dedent(body), "utf-8")
    return path


def load(path: Path) -> Plan:
    return load_plan(path, index=INDEX)


class TestShippedPlans:
    def test_schema_is_a_valid_2020_12_schema(self) -> None:
        Draft202012Validator.check_schema(plan_schema())

    def test_every_shipped_plan_loads(self) -> None:
        plans = load_plans(ROOT / "testplans", index=INDEX)
        assert {p.id for p in plans} >= {"rad108_store", "rad108_negative", "rad108_headers", "rad108_conversion"}
        ids = [c.id for p in plans for c in p.cases]
        assert len(ids) == len(set(ids))
        assert all(c.requirements for p in plans for c in p.cases)
        assert all(c.source == f"{p.path}::{c.id}" for p in plans for c in p.cases)

    def test_the_shipped_plans_cover_every_wic_option(self) -> None:
        options = {o for p in load_plans(ROOT / "testplans", index=INDEX) for c in p.cases for o in c.options}
        assert options == {"jpeg", "mpeg4", "evidence", "dicom", "png", "quicktime"}


class TestExpansion:
    def test_variants_expand_to_one_case_per_combination(self, tmp_path: Path) -> None:
        plan = load(write(tmp_path, """\
            cases:
              - id: img_{content}_{encoding}
                title: "{content} as {encoding}"
                requirements: [WIC-OPT-001]
                variants: {encoding: [json, xml], content: [jpeg-baseline, pdf]}
                payload: {fixtures: ["{encoding}/{content}"]}
            """))
        assert [c.id for c in plan.cases] == ["img_jpeg-baseline_json", "img_pdf_json", "img_jpeg-baseline_xml",
                                              "img_pdf_xml"]
        first = plan.cases[0]
        assert first.title == "jpeg-baseline as json" and first.payload.fixtures == ("json/jpeg-baseline",)
        assert first.payload.encoding is Encoding.JSON and plan.cases[2].payload.encoding is Encoding.XML
        assert first.variant == {"encoding": "json", "content": "jpeg-baseline"}

    def test_a_variant_without_placeholder_is_appended_to_the_id(self, tmp_path: Path) -> None:
        plan = load(write(tmp_path, """\
            cases:
              - id: accept
                title: "Accept {accept}"
                requirements: [STOW-HDR-004]
                variants: {accept: [application/dicom+json, application/dicom+xml]}
                payload: {fixtures: [part10/kos], accept: "{accept}"}
            """))
        assert [c.id for c in plan.cases] == ["accept_application_dicom_json", "accept_application_dicom_xml"]
        assert plan.cases[1].payload.accept == "application/dicom+xml"

    def test_defaults_merge_into_cases(self, tmp_path: Path) -> None:
        plan = load(write(tmp_path, """\
            defaults:
              options: [jpeg]
              tags: [smoke]
              expect: {status: [200, 202], failure_requirement: WIC-IM-002}
              payload: {accept: application/dicom+xml}
            cases:
              - id: a
                title: a
                requirements: [WIC-IM-002]
                payload:
                  fixtures: [json/jpeg-baseline]
                  bulk: {"7FE00010": media/png-rgb}
                  overrides: {Modality: null, PatientName: "Doe^Jane"}
                  mutations: [{kind: DROP_BULK_PART}]
                expect: {stored: false}
            """))
        (case,) = plan.cases
        assert case.options == ("jpeg",) and case.tags == ("smoke",)
        assert case.expect.status == (200, 202) and case.expect.stored is False
        assert case.expect.failure_requirement == "WIC-IM-002"
        assert case.payload.accept == "application/dicom+xml"
        assert case.payload.bulk == {"7FE00010": BulkReplacement("media/png-rgb")}
        assert case.payload.overrides == {"Modality": None, "PatientName": "Doe^Jane"}
        assert case.payload.mutations == (MutationSpec("drop_bulk_part", {}),)
        assert case.checks == ("manager",) and case.target == "studies"

    def test_accept_null_sends_none(self, tmp_path: Path) -> None:
        plan = load(write(tmp_path, """\
            cases:
              - {id: a, title: a, requirements: [STOW-HDR-005], payload: {fixtures: [part10/kos], accept: null}}
            """))
        assert plan.cases[0].payload.accept is None

    def test_load_plans_reads_folders(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        case = "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], payload: {fixtures: [part10/kos]}}\n"
        write(tmp_path / "sub", case, "one.yaml")
        write(tmp_path, case, "two.yml", header=HEADER.replace("plan: t", "plan: u"))
        (tmp_path / "notes.txt").write_text("not a plan")
        assert [p.id for p in load_plans(tmp_path, index=INDEX)] == ["t", "u"]


class TestPlanErrors:
    def test_the_message_names_file_case_and_json_path(self, tmp_path: Path) -> None:
        path = write(tmp_path, """\
            cases:
              - {id: a, title: a, requirements: [WIC-OPT-004], payload: {fixtures: [part10/kos]}}
              - id: jpeg_{encoding}
                title: t
                requirements: [WIC-OPT-001]
                variants: {encoding: [json]}
                payload: {fixtures: ["{encoding}/jpeg-baseline"]}
                expect: {status: [two hundred]}
            """)
        expected = (f"{path.as_posix()}: case 'jpeg_json': /cases/1/expect/status/0: "
                    "'two hundred' is not of type 'integer'")
        with pytest.raises(PlanError) as info:
            load(path)
        assert str(info.value) == expected

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"x\.yaml: line \d+, column \d+: not valid YAML"):
            load(write(tmp_path, "cases: [\n  - {id: a\n"))

    def test_not_a_mapping(self, tmp_path: Path) -> None:
        (tmp_path / "x.yaml").write_text("- just\n- a list\n")
        with pytest.raises(PlanError, match=r"x\.yaml: /: expected a mapping .*got list"):
            load(tmp_path / "x.yaml")

    def test_header_error(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"x\.yaml: /actor: 'tester' is not one of \['manager', 'capturer'\]"):
            load(write(tmp_path, "cases: [{id: a}]\n", header=HEADER.replace("actor: manager", "actor: tester")))
        with pytest.raises(PlanError, match=r"x\.yaml: /cases: \[\] should be non-empty"):
            load(write(tmp_path, "cases: []\n"))

    def test_missing_required_field(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a': /cases/0: 'requirements' is a required property"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, payload: {fixtures: [part10/kos]}}\n"))

    def test_unknown_key(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a': /cases/0/payload: Additional properties are not allowed "
                                            r"\('fixture' was unexpected\)"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], "
                                 "payload: {fixtures: [part10/kos], fixture: x}}\n"))

    def test_an_error_coming_from_defaults_points_at_defaults(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a': /defaults/expect/stored: 'yes please' is not of type"):
            load(write(tmp_path, """\
                defaults: {expect: {stored: yes please}}
                cases:
                  - {id: a, title: a, requirements: [WIC-OPT-004], payload: {fixtures: [part10/kos]}}
                """))

    def test_bad_variants(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a_{x}': /cases/0/variants/x: 'json' is not of type 'array'"):
            load(write(tmp_path, "cases:\n  - {id: 'a_{x}', title: a, requirements: [WIC-OPT-004], "
                                 "variants: {x: json}, payload: {fixtures: [part10/kos]}}\n"))

    def test_duplicate_case_ids(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a_json': /cases/1/id: duplicate case id \(also at /cases/0\)"):
            load(write(tmp_path, """\
                cases:
                  - {id: a_json, title: a, requirements: [WIC-OPT-004], payload: {fixtures: [part10/kos]}}
                  - {id: a, title: a, requirements: [WIC-OPT-004], variants: {e: [json]},
                     payload: {fixtures: [json/pdf]}}
                """))

    def test_unknown_requirement(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a': /cases/0/requirements/1: unknown requirement ID 'STOW-XYZ"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004, STOW-XYZ-999], "
                                 "payload: {fixtures: [part10/kos]}}\n"))
        with pytest.raises(PlanError, match=r"/cases/0/expect/failure_requirement: unknown requirement ID 'CONV-999'"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], "
                                 "payload: {fixtures: [part10/kos]}, expect: {failure_requirement: CONV-999}}\n"))
        with pytest.raises(PlanError, match=r"/cases/0/expect/findings/0: unknown requirement ID 'JSON-999'"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], "
                                 "payload: {fixtures: [part10/kos]}, expect: {findings: [JSON-999]}}\n"))

    def test_unknown_fixture_names_the_variant(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"case 'a_xml': /cases/0/payload/fixtures/0: unknown fixture key "
                                            r"'xml/kos' .*\(variant e=xml\)"):
            load(write(tmp_path, "cases:\n  - {id: 'a_{e}', title: a, requirements: [WIC-OPT-004], "
                                 "variants: {e: [part10, xml]}, payload: {fixtures: ['{e}/kos']}}\n"))

    def test_media_fixture_is_not_an_instance(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"/cases/0/payload/fixtures/0: fixture 'media/png-rgb' is media content"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-005], "
                                 "payload: {fixtures: [media/png-rgb]}}\n"))

    def test_one_encoding_per_request(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"/payload/fixtures/1: fixture 'xml/pdf' is a xml instance but the "
                                            r"payload encoding is json"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [STOW-PAY-002], "
                                 "payload: {fixtures: [json/pdf, xml/pdf]}}\n"))

    def test_bulk_replacement_errors(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"/payload/bulk/7FE00010: bulk data replacements apply to json and xml"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-005], "
                                 "payload: {fixtures: [part10/kos], bulk: {'7FE00010': media/png-rgb}}}\n"))
        with pytest.raises(PlanError, match=r"/payload/bulk/7FE00010: fixture 'json/pdf' is a json instance"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-005], "
                                 "payload: {fixtures: [json/pdf], bulk: {'7FE00010': json/pdf}}}\n"))

    def test_unknown_check_or_tag(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"/cases/0/checks/1: 'stow_response_is_nice' is neither a registered "
                                            r"check nor a check tag"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], checks: "
                                 "[manager, stow_response_is_nice], payload: {fixtures: [part10/kos]}}\n"))
        with pytest.raises(PlanError, match=r"/cases/0/check_options/nope: no registered check is named 'nope'"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], "
                                 "check_options: {nope: {x: 1}}, payload: {fixtures: [part10/kos]}}\n"))

    def test_mutation_errors(self, tmp_path: Path) -> None:
        case = "cases:\n  - {{id: a, title: a, requirements: [WIC-IM-011], payload: {{fixtures: [{f}], " \
               "mutations: [{m}]}}}}\n"
        with pytest.raises(PlanError, match=r"/cases/0/payload/mutations/0/kind: unknown mutation kind 'scramble'"):
            load(write(tmp_path, case.format(f="json/pdf", m="{kind: scramble}")))
        with pytest.raises(PlanError, match=r"/payload/mutations/0/params: unknown parameter\(s\) \['url'\] for "
                                            r"foreign_bulk_uri"):
            load(write(tmp_path, case.format(f="json/pdf", m="{kind: foreign_bulk_uri, params: {url: x}}")))
        with pytest.raises(PlanError, match=r"/payload/mutations/0/kind: drop_bulk_part applies to json, xml "
                                            r"payloads, not part10"):
            load(write(tmp_path, case.format(f="part10/kos", m="{kind: drop_bulk_part}")))

    def test_stored_only_must_name_payload_instances(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"/cases/0/expect/stored_only/0: instance 2 does not exist"):
            load(write(tmp_path, "cases:\n  - {id: a, title: a, requirements: [STOW-RESP-002], "
                                 "payload: {fixtures: [part10/kos]}, expect: {stored_only: [2]}}\n"))

    def test_bad_values(self, tmp_path: Path) -> None:
        base = "cases:\n  - {{id: a, title: a, requirements: [WIC-OPT-004], {extra}}}\n"
        bad = {
            "payload: {fixtures: [part10/kos]}, target: elsewhere": r"/cases/0/target: 'elsewhere' is not one of",
            "payload: {fixtures: [part10/kos]}, options: [gif]": r"/cases/0/options/0: 'gif' is not one of",
            "payload: {fixtures: [part10/kos], pad_bytes: -1}": r"/cases/0/payload/pad_bytes: -1 is less than",
            "payload: {fixtures: [part10/kos]}, tags: [Smoke Test]": r"/cases/0/tags/0: 'Smoke Test' does not match",
            "payload: {fixtures: [part10/kos]}, expect: {status: [99]}": r"/cases/0/expect/status/0: 99 is less than",
        }
        for extra, pattern in bad.items():
            with pytest.raises(PlanError, match=pattern):
                load(write(tmp_path, base.format(extra=extra)))

    def test_missing_plan_path(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match=r"nowhere\.yaml: no such plan file or folder"):
            load_plans([tmp_path / "nowhere.yaml"], index=INDEX)
        with pytest.raises(PlanError, match="cannot read the plan"):
            load(tmp_path / "absent.yaml")

    def test_duplicate_plan_ids(self, tmp_path: Path) -> None:
        case = "cases:\n  - {id: a, title: a, requirements: [WIC-OPT-004], payload: {fixtures: [part10/kos]}}\n"
        write(tmp_path, case, "one.yaml")
        write(tmp_path, case, "two.yaml")
        with pytest.raises(PlanError, match=r"two\.yaml: /plan: plan id 't' is also used by .*one\.yaml"):
            load_plans(tmp_path, index=INDEX)
