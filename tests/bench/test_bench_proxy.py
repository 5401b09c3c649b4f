"""The ``proxy`` benchmark end to end in quick mode (one round), against the simulated Manager and Orthanc."""

from __future__ import annotations

import pytest

from tests.support.peers import require_peer
from wic_conformance.bench import BENCHMARKS
from wic_conformance.bench.manager import ORTHANC_MISSING, orthanc_missing
from wic_conformance.bench.proxy import bench_proxy

SERIES = {"median", "min", "max"}


def test_registered() -> None:
    assert BENCHMARKS["proxy"] is not None


@pytest.mark.peer
@pytest.mark.slow
def test_quick_run_measures_the_proxy_against_direct_and_a_bare_relay(dciodvfy_path: str) -> None:
    require_peer(orthanc_missing() is None, ORTHANC_MISSING)
    result = bench_proxy(True, repeats=1)
    assert result["name"] == "proxy" and result["size"] == 64 << 20 and result["repeats"] == 1
    assert set(result["upstreams"]) == {"manager", "orthanc"}
    for name, figures in result["upstreams"].items():
        upload, latency = figures["upload"], figures["latency"]
        for series in (*upload.values(), *latency.values()):
            if isinstance(series, dict):
                assert set(series) == SERIES and series["min"] <= series["median"] <= series["max"]
        assert upload["direct_s"]["min"] > 0 and upload["proxied_s"]["min"] > 0 and upload["bare_s"]["min"] > 0
        # the three paths carried the same request to the same upstream, so they got the same answer
        assert len(upload["statuses"]) == 1, (name, upload["statuses"])
        ratio = upload["direct_s"]["median"] / upload["proxied_s"]["median"]
        assert upload["throughput_ratio"]["median"] == pytest.approx(ratio)
        assert upload["proxied_over_bare"]["median"] == pytest.approx(
            upload["bare_s"]["median"] / upload["proxied_s"]["median"])
        assert 0 < upload["peak_rss_mib"]["max"] < 1024
        met = (latency["added_ms"]["median"] <= result["targets"]["added_ms<="]
               and upload["throughput_ratio"]["median"] >= result["targets"]["throughput_ratio>="]
               and upload["peak_rss_mib"]["max"] < result["targets"]["peak_rss_mib<"])
        assert figures["met"] is met
    assert result["met"] is all(f["met"] for f in result["upstreams"].values())
