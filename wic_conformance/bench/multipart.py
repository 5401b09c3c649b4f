"""Benchmark of the streaming multipart decoder: throughput against plain reading, and peak memory.

A multipart body of the requested size (one DICOM JSON part, then one large
``application/octet-stream`` part) is written to a temporary file in 1 MiB
blocks, never held in memory.  Each measurement then runs in a fresh Python
process, so that peak RSS belongs to that measurement alone:

``read``
    the baseline: read the file in 1 MiB chunks and discard them;
``decode``
    read it the same way and feed every chunk to :class:`MultipartDecoder`,
    which spools the large part to a temporary directory (removed afterwards);
``copy``
    for context only: read it the same way and write every chunk to a file in
    such a directory, the I/O any decoder that spools a part must do.

Timings exclude interpreter start-up and imports.  ``throughput_ratio`` is
``read time / decode time`` per repeat; the targets are a median ratio of at
least 0.5 and a peak RSS of every decode process below 100 MiB.

Peak RSS is the child's ``VmHWM`` from ``/proc/self/status`` where available.
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is reported too (``ru_maxrss_mib``)
but is not used for the target.  On Linux it carries the parent's high-water
mark across fork and exec, so a child started from a 300 MiB process reports at
least 300 MiB however little it uses.

References
----------
RFC 2046 §5.1.1 (multipart body); PS3.18 §8.6.1.2 (multipart payload).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from wic_conformance.bench import spread
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.errors import WicConformanceError

__all__ = ["bench_multipart_decode", "write_multipart_body"]

_log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_JSON_PART = b'[{"00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.77.1.4"]}}]'
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 100.0

# Runs in a fresh interpreter: argv[1] is a JSON object {mode, path, boundary, out_dir}.
_CHILD = r"""
import json, os, resource, sys, time
args = json.loads(sys.argv[1])
chunk = 1 << 20
mode = args["mode"]
if mode == "decode":
    from wic_conformance.dicomweb.multipart import MultipartDecoder
out = {}
start = time.perf_counter()
with open(args["path"], "rb") as source:
    if mode == "read":
        total = 0
        while data := source.read(chunk):
            total += len(data)
        out["bytes"] = total
    elif mode == "decode":
        decoder = MultipartDecoder(args["boundary"], spool_dir=args["out_dir"])
        while data := source.read(chunk):
            decoder.feed(data)
        result = decoder.close()
        out["complete"] = result.complete
        out["sizes"] = [part.body.size for part in result.parts]
        out["codes"] = [dev.code for dev in result.deviations]
    else:
        with open(os.path.join(args["out_dir"], "copy.bin"), "wb") as sink:
            while data := source.read(chunk):
                sink.write(data)
seconds = time.perf_counter() - start
out["seconds"] = seconds
out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # this process's own high-water mark; ru_maxrss also carries the parent's over fork/exec
    with open("/proc/self/status") as status:
        out["peak_rss_kib"] = int(status.read().split("VmHWM:")[1].split()[0])
except (OSError, IndexError, ValueError):
    out["peak_rss_kib"] = out["ru_maxrss_kib"]
sys.stdout.write(json.dumps(out))
"""


def write_multipart_body(path: Path, size_bytes: int, *, seed: int = 2046) -> tuple[str, str, int]:
    """Write a multipart/related body of exactly ``size_bytes`` bytes (or its minimum) to ``path``.

    The large part repeats a pseudo-random 1 MiB block, written block by block.

    Returns
    -------
    tuple of (str, str, int)
        The Content-Type header value, the boundary and the size of the large part.

    References
    ----------
    RFC 2046 §5.1.1; PS3.18 §8.6.1.2.
    """
    block = random.Random(seed).randbytes(_CHUNK)
    while True:
        boundary = "wic-bench-" + secrets.token_hex(12)
        dash = ("--" + boundary).encode()
        if dash not in block and dash not in block[-len(dash):] + block[:len(dash)]:
            break
    head = (f"--{boundary}\r\nContent-Type: {mt.APPLICATION_DICOM_JSON}\r\n\r\n".encode() + _JSON_PART
            + f"\r\n--{boundary}\r\nContent-Type: {mt.APPLICATION_OCTET_STREAM}\r\n"
              f"Content-Location: /bulk/1\r\n\r\n".encode())
    tail = f"\r\n--{boundary}--\r\n".encode()
    big = max(0, size_bytes - len(head) - len(tail))
    with open(path, "wb") as handle:
        handle.write(head)
        left = big
        while left:
            piece = block if left >= len(block) else block[:left]
            handle.write(piece)
            left -= len(piece)
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())  # so that writing it back does not slow the first measurement
    content_type = mt.format_media_type(mt.MULTIPART_RELATED,
                                        {"type": mt.APPLICATION_DICOM_JSON, "boundary": boundary})
    return content_type, boundary, big


def _child(mode: str, path: Path, boundary: str, out_dir: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    args = json.dumps({"mode": mode, "path": str(path), "boundary": boundary,
                       "out_dir": str(out_dir) if out_dir else None})
    done = subprocess.run([sys.executable, "-c", _CHILD, args], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode != 0:
        raise WicConformanceError(f"benchmark child {mode!r} failed: {done.stderr.strip()[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def bench_multipart_decode(size_bytes: int, repeats: int) -> dict[str, Any]:
    """Measure decoding a ``size_bytes`` multipart body fed in 1 MiB chunks against plainly reading it.

    Parameters
    ----------
    size_bytes : int
        Size of the generated body.
    repeats : int
        Number of (read, decode, copy) rounds; each measurement is a fresh process,
        and the order within a round rotates.

    Returns
    -------
    dict
        ``name``, ``size``, ``repeats``, ``baseline_s``, ``decode_s``, ``copy_s``,
        ``throughput_ratio`` (baseline / decode), ``copy_ratio`` (copy / decode, context only),
        ``peak_rss_mib`` (decode processes, ``VmHWM``), ``baseline_peak_rss_mib``,
        ``ru_maxrss_mib`` (decode processes, as ``getrusage`` reports it), ``targets`` and
        ``met``; each series as ``{"median", "min", "max"}``.

    Raises
    ------
    WicConformanceError
        When a child process fails or the decoder does not return the two parts.

    References
    ----------
    RFC 2046 §5.1.1; PS3.18 §8.6.1.2.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    times: dict[str, list[float]] = {"read": [], "decode": [], "copy": []}
    rss: dict[str, list[float]] = {"read": [], "decode": [], "copy": []}
    ru_maxrss: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wic-bench-") as tmp:
        body = Path(tmp) / "body.bin"
        _log.info("writing a %d-byte multipart body to %s", size_bytes, body)
        _, boundary, big = write_multipart_body(body, size_bytes)
        modes = ["read", "decode", "copy"]
        for round_no in range(repeats):
            order = modes[round_no % 3:] + modes[:round_no % 3]
            for mode in order:
                out_dir = Path(tempfile.mkdtemp(prefix=f"wic-bench-{mode}-", dir=tmp))
                try:
                    report = _child(mode, body, boundary, out_dir)
                finally:
                    shutil.rmtree(out_dir, ignore_errors=True)
                if mode == "decode" and (not report["complete"] or report["sizes"] != [len(_JSON_PART), big]):
                    raise WicConformanceError(f"the decoder did not return the two parts: {report}")
                times[mode].append(report["seconds"])
                rss[mode].append(report["peak_rss_kib"] / 1024)
                if mode == "decode":
                    ru_maxrss.append(report["ru_maxrss_kib"] / 1024)
                _log.info("round %d %s: %.3f s, peak RSS %.1f MiB", round_no + 1, mode, report["seconds"],
                          report["peak_rss_kib"] / 1024)
    ratios = [b / d for b, d in zip(times["read"], times["decode"], strict=True)]
    copy_ratios = [c / d for c, d in zip(times["copy"], times["decode"], strict=True)]
    ratio = spread(ratios)
    peak = spread(rss["decode"])
    return {
        "name": "multipart_decode",
        "size": size_bytes,
        "repeats": repeats,
        "baseline_s": spread(times["read"]),
        "decode_s": spread(times["decode"]),
        "copy_s": spread(times["copy"]),
        "throughput_ratio": ratio,
        "copy_ratio": spread(copy_ratios),
        "peak_rss_mib": peak,
        "baseline_peak_rss_mib": spread(rss["read"]),
        "ru_maxrss_mib": spread(ru_maxrss),
        "targets": {"throughput_ratio>=": TARGET_RATIO, "peak_rss_mib<": TARGET_RSS_MIB},
        "met": ratio["median"] >= TARGET_RATIO and peak["max"] < TARGET_RSS_MIB,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line and write its JSON report to standard output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="body size in MiB (default 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)
    report = bench_multipart_decode(options.size_mib << 20, options.repeats)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
