"""The results of a conformance run: per-case records, requirement status, and the ``--wic-json`` file.

Each test item of a conformance run carries a JSON-ready *case record* in its
``user_properties`` under :data:`CASE_PROPERTY`; pytest copies it into every
report, and pytest-xdist transmits it from the workers to the controller.
:class:`ResultsCollector`, registered in the controller only, gathers the
records from ``pytest_runtest_logreport`` and writes the results file at the
end of the session::

    {"target": URL,
     "cases": [{"id", "requirements": [...], "outcome": "passed"|"failed"|"skipped"|"error",
                "findings": [{"requirement", "severity", "message", ...}], ...}],
     "requirements": {ID: "passed"|"failed"|"not_tested"|"not_applicable"},
     "summary": {"passed": n, "failed": n, "skipped": n, "error": n}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from wic_conformance.catalogue import Catalogue
from wic_conformance.findings import Finding, Severity
from wic_conformance.report.records import Redactor

__all__ = [
    "CASE_PROPERTY",
    "OUTCOMES",
    "RequirementStatus",
    "ResultsCollector",
    "case_property",
    "case_record",
    "find_case_record",
    "requirement_status",
]

CASE_PROPERTY = "wic_case"
OUTCOMES = ("passed", "failed", "skipped", "error")


class RequirementStatus(StrEnum):
    """What a run says about one requirement of the catalogue."""

    PASSED = "passed"  # at least one case listing it passed, and nothing failed on it
    FAILED = "failed"  # a failed case failed on it (an error-level finding cites it)
    NOT_TESTED = "not_tested"
    NOT_APPLICABLE = "not_applicable"  # a rule for the other actor


def case_record(
    *,
    nodeid: str,
    index: int,
    case_id: str,
    title: str,
    requirements: Sequence[str],
    options: Sequence[str],
    outcome: str,
    findings: Iterable[Finding],
    message: str = "",
    exchanges: Iterable[Mapping[str, Any]] = (),
    redactor: Redactor | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    """Return the JSON-ready record of one case (or one recorded exchange), with secrets scrubbed.

    Parameters
    ----------
    nodeid : str
        The pytest node ID, used as the case ID in the results.
    index : int
        Position in the collection, so that results come out in collection order under xdist too.
    case_id, title : str
        The plan's case ID and its title.
    requirements, options : sequence of str
        The requirement IDs the case judges and the WIC options it needs.
    outcome : str
        One of :data:`OUTCOMES`.
    findings : iterable of Finding
        Every finding, whatever its severity.
    message : str
        Why the case was skipped or broke, or a one-line verdict.
    exchanges : iterable of mapping
        ``{"method", "url", "status"}`` summaries of the exchanges.
    redactor : Redactor, optional
        Scrubs known secrets from every string.
    partial : bool
        Judge each listed requirement on its own (a recorded exchange, where ``requirements`` are those
        of the checks that ran): a failed record then still passes the requirements no error cites.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    record = {
        "id": nodeid,
        "index": index,
        "case": case_id,
        "title": title,
        "requirements": list(requirements),
        "options": list(options),
        "outcome": outcome,
        "message": message,
        "findings": [f.to_dict() for f in findings],
        "exchanges": [dict(e) for e in exchanges],
        "partial": partial,
    }
    scrubbed: dict[str, Any] = (redactor or Redactor()).value(record)
    return scrubbed


def case_property(record: Mapping[str, Any]) -> tuple[str, str]:
    """Return the ``user_properties`` entry carrying a case record.

    The record travels as a JSON string: pytest-xdist transmits it as is, and
    ``--junitxml`` writes it as a machine-readable ``<property name="wic_case">``.
    """
    return CASE_PROPERTY, json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def find_case_record(user_properties: Iterable[tuple[str, object]]) -> dict[str, Any] | None:
    """Return the case record carried in a report's ``user_properties``, if any."""
    for name, value in user_properties:
        if name != CASE_PROPERTY:
            continue
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                record = json.loads(value)
            except ValueError:
                return None
            return record if isinstance(record, dict) else None
    return None


def _error_requirements(case: Mapping[str, Any]) -> set[str]:
    return {str(f["requirement"]) for f in case.get("findings", ())
            if str(f.get("severity", Severity.ERROR.value)) == Severity.ERROR.value}


def requirement_status(
    cases: Iterable[Mapping[str, Any]],
    catalogue: Catalogue,
    *,
    actor_under_test: str = "IM",
) -> dict[str, RequirementStatus]:
    """Derive each requirement's status from the case records.

    * ``failed``: a failed case failed on it, i.e. one of its error-level findings cites it (a failed
      case without any error-level finding fails every requirement it lists);
    * ``passed``: at least one passed case lists it, and it did not fail;
    * ``not_applicable``: a rule of the other actor only (``IC`` when testing an Image Manager);
    * ``not_tested``: everything else (skipped, broken or unlisted).

    Requirement IDs cited by plans or findings but absent from the catalogue are included.

    Parameters
    ----------
    cases : iterable of mapping
        Case records (see :func:`case_record`).
    catalogue : Catalogue
        The whole catalogue: every entry gets a status.
    actor_under_test : str
        ``IM`` or ``IC``.
    """
    other = {"IM": "IC", "IC": "IM"}.get(actor_under_test, "")
    failed: set[str] = set()
    passed: set[str] = set()
    seen: list[str] = []
    for case in cases:
        listed = [str(r) for r in case.get("requirements", ())]
        seen.extend(listed)
        seen.extend(str(f["requirement"]) for f in case.get("findings", ()))
        outcome = case.get("outcome")
        if outcome == "failed":
            cited = _error_requirements(case)
            failed.update(cited or listed)
            if case.get("partial") and cited:
                passed.update(r for r in listed if r not in cited)
        elif outcome == "passed":
            passed.update(listed)
    status: dict[str, RequirementStatus] = {}
    for rid in [r.id for r in catalogue] + [r for r in dict.fromkeys(seen) if r not in catalogue]:
        if rid in failed:
            status[rid] = RequirementStatus.FAILED
        elif rid in passed:
            status[rid] = RequirementStatus.PASSED
        else:
            req = catalogue.get(rid)
            applicable = req is None or req.actor != other
            status[rid] = RequirementStatus.NOT_TESTED if applicable else RequirementStatus.NOT_APPLICABLE
    return status


class ResultsCollector:
    """pytest plugin (controller side): gathers the case records and writes the results file.

    Parameters
    ----------
    target : str
        The target URL (or the recorded-exchanges folder) the run judged.
    catalogue : Catalogue
        The catalogue (with any rule profile) the requirement statuses cover.
    actor_under_test : str
        ``IM`` for a live Image Manager, ``IC`` for recorded Image Capturer traffic.
    json_path : Path or None
        Where to write the results file; ``None`` writes none.
    """

    def __init__(self, *, target: str, catalogue: Catalogue, actor_under_test: str = "IM",
                 json_path: Path | None = None) -> None:
        self.target = target
        self.catalogue = catalogue
        self.actor_under_test = actor_under_test
        self.json_path = json_path
        self._cases: dict[str, dict[str, Any]] = {}

    # -- hooks ----------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the case record of a finished item (its teardown report carries the final record)."""
        if report.when != "teardown":
            return
        record = find_case_record(report.user_properties)
        if record is not None:
            self._cases[report.nodeid] = record

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the results file."""
        if self.json_path is None:
            return
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(self.document(), indent=2, ensure_ascii=False) + "\n", "utf-8")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Name the results file and list the failed requirements."""
        failed = self.failed_requirements()
        if failed:
            terminalreporter.write_sep("-", "requirements failed")
            terminalreporter.write_line(", ".join(failed))
        if self.json_path is not None:
            terminalreporter.write_sep("-", f"wic-conformance results: {self.json_path}")

    # -- views ----------------------------------------------------------------------------------
    @property
    def cases(self) -> list[dict[str, Any]]:
        """Return the case records in collection order."""
        return sorted(self._cases.values(), key=lambda c: (int(c.get("index", 0)), str(c.get("id"))))

    def counts(self) -> dict[str, int]:
        """Return the number of cases per outcome."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for case in self._cases.values():
            counts[str(case.get("outcome"))] = counts.get(str(case.get("outcome")), 0) + 1
        return counts

    def statuses(self) -> dict[str, RequirementStatus]:
        """Return each requirement's status."""
        return requirement_status(self._cases.values(), self.catalogue, actor_under_test=self.actor_under_test)

    def failed_requirements(self) -> list[str]:
        """Return the IDs of the failed requirements, in catalogue order."""
        return [rid for rid, st in self.statuses().items() if st is RequirementStatus.FAILED]

    def document(self) -> dict[str, Any]:
        """Return the results document."""
        return {
            "target": self.target,
            "actor_under_test": self.actor_under_test,
            "summary": self.counts(),
            "cases": [
                {"id": c["id"], "case": c.get("case", ""), "title": c.get("title", ""),
                 "requirements": c.get("requirements", []), "options": c.get("options", []),
                 "outcome": c["outcome"], "message": c.get("message", ""),
                 "findings": [{k: f.get(k, "") for k in ("requirement", "severity", "confidence", "message",
                                                          "location", "title")}
                              for f in c.get("findings", [])]}
                for c in self.cases
            ],
            "requirements": {rid: st.value for rid, st in self.statuses().items()},
        }
