"""Benchmarks for ``wic-conformance bench``: each measures against a baseline in the same run.

A benchmark is a function ``(quick: bool) -> dict`` registered in :data:`BENCHMARKS`; it
returns medians over repeats with min and max, the ratios against its baseline,
its targets and whether they were met.  Ratios, never absolute timings, are the
figures that carry meaning across machines.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BENCHMARKS", "Benchmark", "spread"]

Benchmark = Callable[[bool], dict[str, Any]]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return ``{"median", "min", "max"}`` of a series of measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _multipart_decode(quick: bool) -> dict[str, Any]:
    from wic_conformance.bench.multipart import bench_multipart_decode

    size = (64 << 20) if quick else (1 << 30)
    return bench_multipart_decode(size, 3)


#: Name -> benchmark function; later capabilities add theirs here.
BENCHMARKS: dict[str, Benchmark] = {
    "multipart_decode": _multipart_decode,
    "manager": lambda quick: __import__("wic_conformance.bench.manager", fromlist=["_"]).bench_manager(quick),
    "proxy": lambda quick: __import__("wic_conformance.bench.proxy", fromlist=["_"]).bench_proxy(quick),
    "plan": lambda quick: __import__("wic_conformance.bench.plan", fromlist=["_"]).bench_plan(quick),
}
