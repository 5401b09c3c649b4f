from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wic_conformance.catalogue import default_catalogue
from wic_conformance.findings import Finding, Severity
from wic_conformance.report.records import Redactor
from wic_conformance.report.results import (
    CASE_PROPERTY,
    RequirementStatus,
    ResultsCollector,
    case_property,
    case_record,
    find_case_record,
    requirement_status,
)

CAT = default_catalogue()


def record(nodeid: str, outcome: str, requirements: list[str], findings: list[Finding] | None = None,
           index: int = 0) -> dict[str, Any]:
    return case_record(nodeid=nodeid, index=index, case_id=nodeid.rpartition("::")[2], title="t",
                       requirements=requirements, options=["jpeg"], outcome=outcome, findings=findings or [])


def error(rid: str) -> Finding:
    return Finding(requirement=rid, message="wrong", severity=Severity.ERROR)


def warning(rid: str) -> Finding:
    return Finding(requirement=rid, message="odd", severity=Severity.WARNING)


class TestRequirementStatus:
    def test_passed_when_a_listing_case_passed(self) -> None:
        status = requirement_status([record("p::a", "passed", ["STOW-RESP-001"])], CAT)
        assert status["STOW-RESP-001"] is RequirementStatus.PASSED

    def test_failed_wins_over_passed(self) -> None:
        status = requirement_status([record("p::a", "passed", ["STOW-RESP-001"]),
                                     record("p::b", "failed", ["STOW-RESP-001"], [error("STOW-RESP-001")])], CAT)
        assert status["STOW-RESP-001"] is RequirementStatus.FAILED

    def test_a_failed_case_fails_only_the_requirements_its_errors_cite(self) -> None:
        status = requirement_status([record("p::a", "failed", ["STOW-RESP-001", "STOW-RESP-002"],
                                            [error("STOW-RESP-002"), warning("STOW-RESP-001"),
                                             error("JSON-003")])], CAT)
        assert status["STOW-RESP-002"] is RequirementStatus.FAILED
        assert status["JSON-003"] is RequirementStatus.FAILED  # cited, though not listed
        assert status["STOW-RESP-001"] is RequirementStatus.NOT_TESTED

    def test_a_failed_case_without_error_findings_fails_what_it_lists(self) -> None:
        status = requirement_status([record("p::a", "failed", ["STOW-RESP-001"], [warning("STOW-RESP-002")])], CAT)
        assert status["STOW-RESP-001"] is RequirementStatus.FAILED
        assert status["STOW-RESP-002"] is RequirementStatus.NOT_TESTED

    @pytest.mark.parametrize("outcome", ["skipped", "error"])
    def test_skipped_and_broken_cases_test_nothing(self, outcome: str) -> None:
        status = requirement_status([record("p::a", outcome, ["STOW-RESP-001"])], CAT)
        assert status["STOW-RESP-001"] is RequirementStatus.NOT_TESTED

    def test_rules_of_the_other_actor_are_not_applicable(self) -> None:
        ic = next(r.id for r in CAT if r.actor == "IC")
        im = next(r.id for r in CAT if r.actor == "IM")
        both = next(r.id for r in CAT if r.actor == "IC/IM")
        manager = requirement_status([], CAT, actor_under_test="IM")
        assert manager[ic] is RequirementStatus.NOT_APPLICABLE
        assert manager[im] is RequirementStatus.NOT_TESTED
        assert manager[both] is RequirementStatus.NOT_TESTED
        capturer = requirement_status([], CAT, actor_under_test="IC")
        assert capturer[im] is RequirementStatus.NOT_APPLICABLE and capturer[ic] is RequirementStatus.NOT_TESTED

    def test_every_catalogue_entry_and_unknown_ids_get_a_status(self) -> None:
        status = requirement_status([record("p::a", "passed", ["LOCAL-001"])], CAT)
        assert set(status) == {r.id for r in CAT} | {"LOCAL-001"}
        assert status["LOCAL-001"] is RequirementStatus.PASSED


class TestCaseRecord:
    def test_rejects_an_unknown_outcome(self) -> None:
        with pytest.raises(ValueError, match="outcome must be one of"):
            record("p::a", "xfailed", [])

    def test_scrubs_secrets(self) -> None:
        rec = case_record(nodeid="p::a", index=0, case_id="a", title="t", requirements=[], options=[],
                          outcome="failed", findings=[Finding(requirement="R", message="got token abcdef123")],
                          redactor=Redactor(("abcdef123",)))
        assert rec["findings"][0]["message"] == "got token <redacted>"

    def test_travels_as_json_in_user_properties(self) -> None:
        rec = record("p::a", "passed", ["STOW-RESP-001"])
        name, value = case_property(rec)
        assert name == CASE_PROPERTY and json.loads(value) == rec
        assert find_case_record([("other", 1), (name, value)]) == rec
        assert find_case_record([(name, "not json")]) is None
        assert find_case_record([]) is None


class _Report:
    def __init__(self, nodeid: str, when: str, props: list[tuple[str, object]]) -> None:
        self.nodeid, self.when, self.user_properties = nodeid, when, props


class TestResultsCollector:
    def test_orders_by_collection_index_and_writes_the_document(self, tmp_path: Path) -> None:
        target = tmp_path / "out" / "results.json"
        collector = ResultsCollector(target="http://im/dicom-web", catalogue=CAT, json_path=target)
        for nodeid, outcome, index in [("p::b", "failed", 1), ("p::a", "passed", 0), ("p::c", "skipped", 2)]:
            rec = record(nodeid, outcome, ["STOW-RESP-001"], [error("STOW-RESP-001")] if outcome == "failed" else [],
                         index=index)
            collector.pytest_runtest_logreport(_Report(nodeid, "call", [case_property(rec)]))  # type: ignore[arg-type]
            collector.pytest_runtest_logreport(_Report(nodeid, "teardown", [case_property(rec)]))  # type: ignore[arg-type]
        collector.pytest_runtest_logreport(_Report("t.py::x", "teardown", []))  # type: ignore[arg-type]
        assert [c["id"] for c in collector.cases] == ["p::a", "p::b", "p::c"]
        assert collector.counts() == {"passed": 1, "failed": 1, "skipped": 1, "error": 0}
        assert collector.failed_requirements() == ["STOW-RESP-001"]
        collector.pytest_sessionfinish(None)  # type: ignore[arg-type]
        doc = json.loads(target.read_text())
        assert doc["target"] == "http://im/dicom-web"
        assert [set(c) >= {"id", "requirements", "outcome", "findings"} for c in doc["cases"]] == [True] * 3
        assert doc["cases"][1]["findings"] == [{"requirement": "STOW-RESP-001", "severity": "error",
                                                "confidence": "", "message": "wrong", "location": "",
                                                "title": "Finding"}]
        assert doc["requirements"]["STOW-RESP-001"] == "failed"
