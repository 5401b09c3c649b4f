"""The ``manager`` benchmark end to end in quick mode, against a real Orthanc."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.peers import require_peer
from wic_conformance.bench import BENCHMARKS
from wic_conformance.bench import manager as bench_module
from wic_conformance.bench.manager import ORTHANC_MISSING, orthanc_missing

SERIES = {"median", "min", "max"}


def test_registered() -> None:
    assert "manager" in BENCHMARKS


def test_without_orthanc_the_result_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_module, "orthanc_missing", lambda: ORTHANC_MISSING)
    result = BENCHMARKS["manager"](True)
    assert result == {"name": "manager", "skipped": "Orthanc not installed", "reason": ORTHANC_MISSING}


@pytest.mark.peer
@pytest.mark.slow
def test_quick_run(dciodvfy_path: str) -> None:
    require_peer(orthanc_missing() is None, ORTHANC_MISSING)
    result: dict[str, Any] = BENCHMARKS["manager"](True)
    assert result["name"] == "manager" and result["quick"] is True
    assert result["requests"] == 20 and result["size"] == 5 << 20 and result["repeats"] == 3
    assert result["orthanc_version"].startswith("1.")
    rate, large = result["stow_rate"], result["large_object"]
    for series in (*rate.values(), *(v for k, v in large.items() if k != "payload_mib")):
        assert set(series) == SERIES and series["min"] <= series["median"] <= series["max"]
    assert rate["im_per_s"]["min"] > 0 and rate["orthanc_per_s"]["min"] > 0
    assert rate["im_dciodvfy_per_s"]["min"] > 0
    assert rate["im_dciodvfy_per_s"]["max"] <= rate["im_dciodvfy_responded_per_s"]["max"] * 1.01
    assert rate["im_per_s"]["max"] <= rate["im_responded_per_s"]["max"] * 1.01  # judged no earlier than answered
    assert large["payload_mib"] == 5 and large["im_s"]["min"] > 0 and large["orthanc_s"]["min"] > 0
    assert large["im_peak_rss_growth_mib"]["min"] > 0
    met = (rate["ratio"]["median"] >= result["targets"]["stow_rate.ratio>="]
           and large["rss_growth_over_payload"]["max"] < result["targets"]["large_object.rss_growth_over_payload<"])
    assert result["met"] is met
