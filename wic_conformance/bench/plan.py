"""Benchmark: wall time of the whole Image Manager test plan, against the simulated Image Manager and Orthanc.

The default plan (slow cases aside) is run case by case with the same runner
the pytest plugin uses, once against the simulated Image Manager (its default
configuration, in its own process) and once against Orthanc when it is
installed.  The target of the Image Manager test issue is an absolute one
(under 60 s each on a 2-core machine); the Orthanc figure is the baseline
measured in the same run, and ``ratio`` is the simulated Manager's time over it.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from wic_conformance.bench import spread
from wic_conformance.bench.manager import OrthancProcess, _manager, orthanc_missing
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.plans.loader import load_plans
from wic_conformance.plans.model import Case, Target
from wic_conformance.plans.runner import Canary, run_case

__all__ = ["bench_plan"]

TARGET_SECONDS = 60.0


def _cases(quick: bool) -> list[Case]:
    root = Path(__file__).resolve().parents[2]
    index = FixtureIndex.load(root / "fixtures")
    plans = load_plans(root / "testplans" / "manager", index=index)
    cases = [case for plan in plans for case in plan.cases if not case.slow]
    return cases[:12] if quick else cases


def _run_all(cases: list[Case], url: str) -> tuple[float, dict[str, int]]:
    index = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
    outcomes: Counter[str] = Counter()
    with requests.Session() as session, Canary() as canary:
        started = time.perf_counter()
        for case in cases:
            outcomes[run_case(case, Target(url=url), session=session, index=index, canary=canary).outcome.value] += 1
        return time.perf_counter() - started, dict(outcomes)


def bench_plan(quick: bool) -> dict[str, Any]:
    """Time the default plan against the simulated Image Manager and against Orthanc (when installed)."""
    cases = _cases(quick)
    result: dict[str, Any] = {"name": "plan_wall_time", "cases": len(cases),
                              "targets": {"manager_s<": TARGET_SECONDS, "orthanc_s<": TARGET_SECONDS}}
    with tempfile.TemporaryDirectory(prefix="wic-bench-plan-") as tmp, _manager(Path(tmp) / "im") as im:
        seconds, outcomes = _run_all(cases, im.url)
    result["manager_s"] = spread([seconds])
    result["manager_outcomes"] = outcomes
    missing = orthanc_missing()
    if missing:
        result["orthanc"] = {"skipped": missing}
        result["met"] = seconds < TARGET_SECONDS
        return result
    with tempfile.TemporaryDirectory(prefix="wic-bench-plan-orthanc-") as tmp, OrthancProcess(Path(tmp)) as orthanc:
        o_seconds, o_outcomes = _run_all(cases, orthanc.url)
    result["orthanc_s"] = spread([o_seconds])
    result["orthanc_outcomes"] = o_outcomes
    result["ratio_manager_over_orthanc"] = seconds / o_seconds if o_seconds else None
    result["met"] = seconds < TARGET_SECONDS and o_seconds < TARGET_SECONDS
    return result
