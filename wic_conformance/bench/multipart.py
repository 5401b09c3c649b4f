"""Benchmark of the streaming multipart decoder: throughput against plain reading, and peak memory.

A multipart body of the requested size (one DICOM JSON part, then one large
``application/octet-stream`` part) is written to a temporary file in 1 MiB
blocks, never held in memory.  Each measurement then runs in a fresh Python
process, so that peak RSS belongs to that measurement alone:

``read``
    the baseline: read the file in 1 MiB chunks and discard them;
``decode_source``
    the headline: read it the same way and feed every chunk to a
    :class:`MultipartDecoder` told that the chunks are that file's bytes
    (``source=Body.from_file(path)``), so the large part is returned as a range
    of the file and nothing is copied: the path of a body that is already a
    file (the Image Manager's spooled request, a file given to ``validate``);
``decode_spool``
    for context: the same without ``source``, so the large part is spooled to
    a temporary directory (removed afterwards): the path of a body that
    arrives from the network and is not kept;
``copy``
    for context: read it the same way and write every chunk to a file in
    such a directory, the I/O any decoder that spools a part must do.

Timings exclude interpreter start-up and imports.  Each mode's ``ratio`` is
``read time / its time`` per round; the targets apply to ``decode_source``: a
median ratio of at least 0.5 and a peak RSS of every such process below 100 MiB.

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

#: The measurements, in the order of the first round; the first is the baseline.
MODES = ("read", "decode_source", "decode_spool", "copy")
HEADLINE = "decode_source"

# Runs in a fresh interpreter: argv[1] is a JSON object {mode, path, boundary, out_dir}.
_CHILD = r"""
import json, os, resource, sys, time
args = json.loads(sys.argv[1])
chunk = 1 << 20
mode = args["mode"]
out = {}
if mode.startswith("decode"):
    from wic_conformance.dicomweb import multipart
    from wic_conformance.dicomweb.exchange import Body
    from wic_conformance.dicomweb.multipart import MultipartDecoder
    out["search"] = "bytes.find" if multipart._MEMMEM is None else "memmem"
start = time.perf_counter()
with open(args["path"], "rb") as source:
    if mode == "read":
        total = 0
        while data := source.read(chunk):
            total += len(data)
        out["bytes"] = total
    elif mode.startswith("decode"):
        told = Body.from_file(args["path"]) if mode == "decode_source" else None
        decoder = MultipartDecoder(args["boundary"], spool_dir=args["out_dir"], source=told)
        while data := source.read(chunk):
            decoder.feed(data)
        result = decoder.close()
    else:
        with open(os.path.join(args["out_dir"], "copy.bin"), "wb") as sink:
            while data := source.read(chunk):
                sink.write(data)
seconds = time.perf_counter() - start
out["seconds"] = seconds
if mode.startswith("decode"):  # checked by the parent, after the clock stopped
    def last(body, n=32):
        n = min(n, body.size)
        return body.read()[-n:] if body.in_memory else Body(path=body.path, size=n,
                                                              offset=body.offset + body.size - n).read()
    out["complete"] = result.complete
    out["codes"] = [dev.code for dev in result.deviations]
    out["parts"] = [{"size": p.body.size, "offset": p.body.offset, "in_memory": p.body.in_memory,
                     "in_source": p.body.path is not None and str(p.body.path) == args["path"],
                     "head": p.body.head(32).hex(), "tail": last(p.body).hex()} for p in result.parts]
    out["spooled_files"] = len(os.listdir(args["out_dir"]))
out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # this process's own high-water mark; ru_maxrss also carries the parent's over fork/exec
    with open("/proc/self/status") as status:
        out["peak_rss_kib"] = int(status.read().split("VmHWM:")[1].split()[0])
except (OSError, IndexError, ValueError):
    out["peak_rss_kib"] = out["ru_maxrss_kib"]
sys.stdout.write(json.dumps(out))
"""


def _block(seed: int = 2046) -> bytes:
    """Return the pseudo-random 1 MiB block the large part repeats."""
    return random.Random(seed).randbytes(_CHUNK)


def _tail(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


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
    block = _block(seed)
    while True:
        boundary = "wic-bench-" + secrets.token_hex(12)
        dash = ("--" + boundary).encode()
        if dash not in block and dash not in block[-len(dash):] + block[:len(dash)]:
            break
    head = (f"--{boundary}\r\nContent-Type: {mt.APPLICATION_DICOM_JSON}\r\n\r\n".encode() + _JSON_PART
            + f"\r\n--{boundary}\r\nContent-Type: {mt.APPLICATION_OCTET_STREAM}\r\n"
              f"Content-Location: /bulk/1\r\n\r\n".encode())
    tail = _tail(boundary)
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


def _check_decode(mode: str, report: dict[str, Any], *, body: Path, boundary: str, big: int) -> None:
    """Raise unless a decode child returned the two parts, the large one as the mode promises."""
    block = _block()
    tail = bytes(block[(big - 32 + k) % len(block)] for k in range(32)) if big >= 32 else b""
    parts = report["parts"]
    sizes = [p["size"] for p in parts]
    problem = None
    if not report["complete"] or report["codes"] or sizes != [len(_JSON_PART), big]:
        problem = "the decoder did not return the two parts"
    elif big >= 32 and (parts[1]["head"] != block[:32].hex() or parts[1]["tail"] != tail.hex()):
        problem = "the large part does not hold the bytes written"
    elif mode == HEADLINE and (not parts[1]["in_source"] or report["spooled_files"]
                               or parts[1]["offset"] != body.stat().st_size - len(_tail(boundary)) - big):
        problem = "the large part is not a range of the source file (or something was spooled)"
    elif mode != HEADLINE and (parts[1]["in_source"] or report["spooled_files"] != 1):
        problem = "the large part was not spooled"
    if problem is not None:
        raise WicConformanceError(f"{mode}: {problem}: {report}")


def bench_multipart_decode(size_bytes: int, repeats: int) -> dict[str, Any]:
    """Measure decoding a ``size_bytes`` multipart body fed in 1 MiB chunks against plainly reading it.

    Parameters
    ----------
    size_bytes : int
        Size of the generated body.
    repeats : int
        Number of rounds of the four :data:`MODES`; each measurement is a fresh
        process, and the order within a round rotates.

    Returns
    -------
    dict
        ``name``, ``size``, ``repeats``, ``headline`` (``"decode_source"``),
        ``delimiter_search`` (``"memmem"`` or ``"bytes.find"``: how the decoder
        looks for delimiters on this platform) and ``modes``: for each of ``read``,
        ``decode_source``, ``decode_spool`` and ``copy``, its ``seconds``, ``ratio``
        (read time / its time, per round; 1 for ``read``), ``peak_rss_mib`` (``VmHWM``) and ``ru_maxrss_mib`` (as
        ``getrusage`` reports it).  For the headline, at the top level:
        ``baseline_s``, ``decode_s``, ``throughput_ratio``, ``peak_rss_mib``,
        then ``targets`` and ``met``.  Each series is ``{"median", "min", "max"}``.

    Raises
    ------
    WicConformanceError
        When a child process fails, or a decoder does not return the two parts
        (the large one as a range of the file for ``decode_source``, spooled for
        ``decode_spool``).

    References
    ----------
    RFC 2046 §5.1.1; PS3.18 §8.6.1.2.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    rss: dict[str, list[float]] = {mode: [] for mode in MODES}
    ru_maxrss: dict[str, list[float]] = {mode: [] for mode in MODES}
    search = ""
    with tempfile.TemporaryDirectory(prefix="wic-bench-") as tmp:
        body = Path(tmp) / "body.bin"
        _log.info("writing a %d-byte multipart body to %s", size_bytes, body)
        _, boundary, big = write_multipart_body(body, size_bytes)
        for round_no in range(repeats):
            turn = round_no % len(MODES)
            for mode in MODES[turn:] + MODES[:turn]:
                out_dir = Path(tempfile.mkdtemp(prefix=f"wic-bench-{mode}-", dir=tmp))
                try:
                    report = _child(mode, body, boundary, out_dir)
                finally:
                    shutil.rmtree(out_dir, ignore_errors=True)
                if mode.startswith("decode"):
                    _check_decode(mode, report, body=body, boundary=boundary, big=big)
                    search = report["search"]
                times[mode].append(report["seconds"])
                rss[mode].append(report["peak_rss_kib"] / 1024)
                ru_maxrss[mode].append(report["ru_maxrss_kib"] / 1024)
                _log.info("round %d %s: %.3f s, peak RSS %.1f MiB", round_no + 1, mode, report["seconds"],
                          report["peak_rss_kib"] / 1024)
    modes = {
        mode: {
            "seconds": spread(times[mode]),
            "ratio": spread([b / t for b, t in zip(times["read"], times[mode], strict=True)]),
            "peak_rss_mib": spread(rss[mode]),
            "ru_maxrss_mib": spread(ru_maxrss[mode]),
        }
        for mode in MODES
    }
    headline = modes[HEADLINE]
    ratio, peak = headline["ratio"], headline["peak_rss_mib"]
    return {
        "name": "multipart_decode",
        "size": size_bytes,
        "repeats": repeats,
        "headline": HEADLINE,
        "delimiter_search": search,
        "baseline_s": modes["read"]["seconds"],
        "decode_s": headline["seconds"],
        "throughput_ratio": ratio,
        "peak_rss_mib": peak,
        "modes": modes,
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
