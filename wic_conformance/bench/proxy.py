"""Benchmark of the recording proxy: direct against proxied, in the same run, with the proxy's peak memory.

Every server runs in its own process on loopback: the upstream (the simulated
Image Manager, always; Orthanc with its DICOMweb plugin when installed, started
by :class:`~wic_conformance.bench.manager.OrthancProcess`) and each recording
proxy (a fresh Python process, recording to a temporary folder).  The client is
this process.  Two measurements per upstream, each repeated, alternating the order:

``latency``
    ``requests`` single-instance PS3.10 STOW-RS requests (the Secondary Capture
    fixture, re-identified; all bodies built before the clock starts) sent one
    after the other over one keep-alive ``requests.Session``, straight to the
    upstream (``direct``), through a proxy that records and judges each exchange
    (``proxied``, the default configuration: judging runs in the proxy's judging
    process after the response is relayed) and through a proxy that only records
    (``relayed``, ``judge=False``).  Per round, the median time per request of
    each path; ``added_ms`` is the proxied median minus the direct median (and
    ``added_relay_ms`` the same for the recording-only proxy).
``upload``
    one multipart/related body of ``size`` bytes (a DICOM JSON part and one large
    bulk data part, :func:`~wic_conformance.bench.multipart.write_multipart_body`)
    streamed from a file with ``http.client`` in 1 MiB blocks, direct and
    proxied.  The upstream may refuse it (the metadata is minimal); what counts is
    the transfer: seconds until the whole response has arrived.
    ``throughput_ratio`` is direct time / proxied time, per round.  Each proxied
    upload gets a fresh proxy process, whose peak RSS (``VmHWM``, read by the
    process itself as it exits, after judging and writing the recording) is
    ``peak_rss_mib``; ``judge_peak_rss_mib`` is that of its judging process (read
    just before it ends), and ``combined_peak_rss_mib`` the sum of the two (an upper
    bound: pages the two processes share, such as the interpreter's, count twice).
    The same upload also goes through a bare TCP relay (``bare``: a child process
    that copies bytes between two sockets with a 1 MiB buffer, one thread per
    direction, no HTTP, no recording, no hashing): ``bare_ratio`` (direct time /
    bare time) is the ceiling any relaying process reaches on this machine, and
    ``proxied_over_bare`` how close the recording proxy comes to it.

The simulated Image Manager runs with judging and the IOD gate off
(``judge=False, validate_iod=False``), so that its own background work does not
blur the proxy's cost; it still converts and stores every instance.

Targets, per upstream: a median ``added_ms`` of at most 2 ms, a median
``throughput_ratio`` of at least 0.9, and a ``peak_rss_mib`` (the relaying
process, which carries the bodies) below 100 MiB in every round.  ``met`` is true
only when every measured upstream meets all three.

References
----------
RFC 9110 §7.6 (intermediaries); PS3.18 §10.5 (Store transaction).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from pydicom import dcmread

from wic_conformance.bench import spread
from wic_conformance.bench.multipart import write_multipart_body
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.errors import WicConformanceError
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid

__all__ = ["TARGET_ADDED_MS", "TARGET_RSS_MIB", "TARGET_THROUGHPUT_RATIO", "bench_proxy"]

_log = logging.getLogger(__name__)

TARGET_ADDED_MS = 2.0
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_RSS_MIB = 100.0
_ACCEPT = {"Accept": mt.APPLICATION_DICOM_JSON}

# argv[1]: {"upstream", "record_dir", "judge"}.  Prints {"url"} once listening (and its judging process is
# ready); on a line on stdin, stops (waiting for verdicts, writing recording.har) and prints its peak and
# current RSS, and the judging process's peak RSS read just before it ends (0 without one).
_PROXY_CHILD = r"""
import json, sys
from wic_conformance.actors.proxy import RecordingProxy
args = json.loads(sys.argv[1])
proxy = RecordingProxy(args["upstream"], record_dir=args["record_dir"], judge=args["judge"]).start()
proxy.drain()
sys.stdout.write(json.dumps({"url": proxy.url}) + "\n")
sys.stdout.flush()
sys.stdin.readline()
def status(key, pid="self"):
    with open(f"/proc/{pid}/status") as handle:
        return int(handle.read().split(key + ":")[1].split()[0])
proxy.drain()
judge = proxy.judging_process_id
judge_peak = status("VmHWM", judge) if judge else 0
proxy.stop()
sys.stdout.write(json.dumps({"peak_rss_kib": status("VmHWM"), "rss_kib": status("VmRSS"),
                             "judge_peak_rss_kib": judge_peak}) + "\n")
sys.stdout.flush()
"""

# argv[1]: {"data_dir"}.  Prints {"url"} once serving; stops when stdin is closed.  The listening socket
# gets TCP_NODELAY (inherited by accepted connections), as the proxy's does: without it every
# response waits for the client's delayed ACK (~40 ms), which would swamp what is measured here.
_MANAGER_CHILD = r"""
import json, socket, sys
from pathlib import Path
from wic_conformance.actors.manager import ImageManager, ManagerConfig
args = json.loads(sys.argv[1])
manager = ImageManager(ManagerConfig(data_dir=Path(args["data_dir"]), judge=False, validate_iod=False)).start()
listening = getattr(manager._server, "_socket", None)
if listening is not None:
    listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sys.stdout.write(json.dumps({"url": manager.url}) + "\n")
sys.stdout.flush()
sys.stdin.read()
manager.stop()
"""


# argv[1]: {"upstream": host:port, "path": the DICOMweb root's path}.  Prints {"url"} once listening;
# relays every connection to the upstream, byte for byte, until stdin is closed.  No HTTP is parsed: it only
# bounds what any relay can do here.
_BARE_RELAY_CHILD = r"""
import json, socket, sys, threading
args = json.loads(sys.argv[1])
host, port = args["upstream"].rsplit(":", 1)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
def pump(source, sink):
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    try:
        while True:
            n = source.recv_into(buffer)
            if not n:
                break
            sink.sendall(view[:n])
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve():
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection((host, int(port)))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
sys.stdout.write(json.dumps({"url": "http://127.0.0.1:%d%s" % (listener.getsockname()[1], args["path"])}) + "\n")
sys.stdout.flush()
sys.stdin.read()
"""


class _Child:
    """A Python child process that prints a JSON line with its ``url`` once serving."""

    def __init__(self, script: str, args: dict[str, Any]) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen([sys.executable, "-c", script, json.dumps(args)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
        self.url: str = self._line()["url"]
        self._final: dict[str, Any] | None = None

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(60)
            raise WicConformanceError(f"benchmark child failed (exit {self.process.returncode})")
        value: dict[str, Any] = json.loads(line)
        return value

    def finish(self) -> dict[str, Any]:
        """Ask the child to stop (once); return what it prints then (the proxy's RSS), or ``{}``."""
        if self._final is not None:
            return self._final
        stdin: IO[bytes] | None = self.process.stdin
        out: dict[str, Any] = {}
        try:
            if stdin is not None:
                stdin.write(b"stop\n")
                stdin.close()
            line = self.process.stdout.readline() if self.process.stdout is not None else b""
            out = json.loads(line) if line.strip() else {}
            self.process.wait(300)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self._final = out
        return out


@contextmanager
def _proxy(upstream: str, work: Path, *, judge: bool) -> Iterator[_Child]:
    record = Path(tempfile.mkdtemp(prefix="proxy-record-", dir=work))
    child = _Child(_PROXY_CHILD, {"upstream": upstream, "record_dir": str(record), "judge": judge})
    try:
        yield child
    finally:
        child.finish()
        shutil.rmtree(record, ignore_errors=True)


@contextmanager
def _upstreams(work: Path, index: FixtureIndex) -> Iterator[dict[str, str]]:
    """Start the simulated Image Manager and, when installed, Orthanc; yield ``{name: DICOMweb root}``."""
    from wic_conformance.bench.manager import OrthancProcess, orthanc_missing

    manager = _Child(_MANAGER_CHILD, {"data_dir": str(work / "manager")})
    orthanc: OrthancProcess | None = None
    try:
        urls = {"manager": manager.url}
        if orthanc_missing() is None:
            orthanc = OrthancProcess(work / "orthanc").start()
            urls["orthanc"] = orthanc.url
        yield urls
    finally:
        manager.finish()
        if orthanc is not None:
            orthanc.stop()


def _stow_bodies(template: bytes, count: int) -> list[tuple[dict[str, str], bytes]]:
    bodies = []
    for _ in range(count):
        ds = dcmread(io.BytesIO(template))
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, out.getvalue())],
                                       root_type=mt.APPLICATION_DICOM)
        bodies.append(({"Content-Type": ctype, **_ACCEPT}, body))
    return bodies


def _timed_posts(url: str, bodies: list[tuple[dict[str, str], bytes]]) -> list[float]:
    """Post every body in order over one keep-alive session; return each request's seconds (all must be 200)."""
    times = []
    with requests.Session() as session:
        session.post(url, data=bodies[0][1], headers=bodies[0][0], timeout=120)  # connect, warm up
        for headers, body in bodies[1:]:
            start = time.perf_counter()
            answer = session.post(url, data=body, headers=headers, timeout=120)
            times.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise WicConformanceError(f"POST {url}: HTTP {answer.status_code}: {answer.text[:300]}")
    return times


def _latency_round(upstream: str, work: Path, template: bytes, count: int, round_no: int) -> dict[str, float]:
    """One round: ``count`` requests direct, proxied (recording and judging) and relayed (recording only)."""
    medians: dict[str, float] = {}
    order = ["direct", "proxied", "relayed"]
    turn = round_no % len(order)
    for path in order[turn:] + order[:turn]:
        bodies = _stow_bodies(template, count + 1)
        if path == "direct":
            times = _timed_posts(f"{upstream}/studies", bodies)
        else:
            with _proxy(upstream, work, judge=path == "proxied") as proxy:
                times = _timed_posts(f"{proxy.url}/studies", bodies)
        ordered = sorted(times)
        medians[path] = ordered[len(ordered) // 2] * 1000
    return medians


def _upload(url: str, body: Path, content_type: str) -> tuple[float, int]:
    """Stream ``body`` to ``{url}/studies`` in 1 MiB blocks; return (seconds to the whole response, status)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600, blocksize=1 << 20)
    size = body.stat().st_size
    try:
        with open(body, "rb") as handle:
            start = time.perf_counter()
            conn.request("POST", parts.path + "/studies", body=handle,
                         headers={"Content-Type": content_type, "Content-Length": str(size), **_ACCEPT})
            response = conn.getresponse()
            response.read()
            seconds = time.perf_counter() - start
    finally:
        conn.close()
    return seconds, response.status


def _upload_round(upstream: str, work: Path, body: Path, content_type: str, round_no: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    order = ["direct", "proxied", "bare"]
    turn = round_no % len(order)
    for path in order[turn:] + order[:turn]:
        if path == "direct":
            out["direct_s"], out["direct_status"] = _upload(upstream, body, content_type)
            continue
        if path == "bare":
            parts = urlsplit(upstream)
            relay = _Child(_BARE_RELAY_CHILD, {"upstream": parts.netloc, "path": parts.path})
            try:
                out["bare_s"], out["bare_status"] = _upload(relay.url, body, content_type)
            finally:
                relay.finish()
            continue
        with _proxy(upstream, work, judge=True) as proxy:
            out["proxied_s"], out["proxied_status"] = _upload(proxy.url, body, content_type)
            proxy_rss = proxy.finish()
        out["peak_rss_mib"] = proxy_rss.get("peak_rss_kib", 0) / 1024
        out["judge_peak_rss_mib"] = proxy_rss.get("judge_peak_rss_kib", 0) / 1024
    return out


def _measure(upstream: str, work: Path, *, template: bytes, count: int, body: Path, content_type: str,
             size: int, repeats: int) -> dict[str, Any]:
    latency = [_latency_round(upstream, work, template, count, n) for n in range(repeats)]
    uploads = [_upload_round(upstream, work, body, content_type, n) for n in range(repeats)]
    added = [r["proxied"] - r["direct"] for r in latency]
    added_relay = [r["relayed"] - r["direct"] for r in latency]
    ratios = [u["direct_s"] / u["proxied_s"] for u in uploads]
    bare = [u["direct_s"] / u["bare_s"] for u in uploads]
    rss = [u["peak_rss_mib"] for u in uploads]
    mib = size / (1 << 20)
    result = {
        "latency": {
            "direct_ms": spread([r["direct"] for r in latency]),
            "proxied_ms": spread([r["proxied"] for r in latency]),
            "relayed_ms": spread([r["relayed"] for r in latency]),
            "added_ms": spread(added),
            "added_relay_ms": spread(added_relay),
        },
        "upload": {
            "direct_s": spread([u["direct_s"] for u in uploads]),
            "proxied_s": spread([u["proxied_s"] for u in uploads]),
            "direct_mib_s": spread([mib / u["direct_s"] for u in uploads]),
            "proxied_mib_s": spread([mib / u["proxied_s"] for u in uploads]),
            "throughput_ratio": spread(ratios),
            "bare_s": spread([u["bare_s"] for u in uploads]),
            "bare_ratio": spread(bare),
            "proxied_over_bare": spread([u["bare_s"] / u["proxied_s"] for u in uploads]),
            "statuses": sorted({u[f"{p}_status"] for u in uploads for p in ("direct", "proxied", "bare")}),
            "peak_rss_mib": spread(rss),
            "judge_peak_rss_mib": spread([u["judge_peak_rss_mib"] for u in uploads]),
            "combined_peak_rss_mib": spread([u["peak_rss_mib"] + u["judge_peak_rss_mib"] for u in uploads]),
        },
    }
    result["met"] = (spread(added)["median"] <= TARGET_ADDED_MS and spread(ratios)["median"] >= TARGET_THROUGHPUT_RATIO
                     and max(rss) < TARGET_RSS_MIB)
    return result


def bench_proxy(quick: bool, *, repeats: int = 3) -> dict[str, Any]:
    """Measure the recording proxy against direct access, on every available upstream.

    Parameters
    ----------
    quick : bool
        20 requests and a 64 MiB upload instead of 200 requests and 1 GiB.
    repeats : int
        Rounds of each measurement.

    Returns
    -------
    dict
        ``name``, ``requests``, ``size``, ``repeats``, ``upstreams`` (for each of ``manager``
        and ``orthanc``: its ``latency`` and ``upload`` figures and ``met``, or ``skipped``
        with the reason), ``targets`` and ``met``.  Each series is ``{"median", "min", "max"}``.

    Raises
    ------
    WicConformanceError
        A child process fails or a STOW-RS request is not answered with 200.
    """
    from wic_conformance.bench.manager import ORTHANC_MISSING, orthanc_missing

    count = 20 if quick else 200
    size = (64 << 20) if quick else (1 << 30)
    index = FixtureIndex.load()
    template = index["part10/secondary-capture"].path.read_bytes()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wic-bench-proxy-") as tmp:
        work = Path(tmp)
        body = work / "upload.bin"
        content_type, _, _ = write_multipart_body(body, size)
        with _upstreams(work, index) as urls:
            for name, url in urls.items():
                _log.info("measuring the proxy in front of %s (%s)", name, url)
                results[name] = _measure(url, work, template=template, count=count, body=body,
                                         content_type=content_type, size=size, repeats=repeats)
    if "orthanc" not in results:
        results["orthanc"] = {"skipped": orthanc_missing() or ORTHANC_MISSING}
    measured = [r for r in results.values() if "met" in r]
    return {
        "name": "proxy",
        "requests": count,
        "size": size,
        "repeats": repeats,
        "upstreams": results,
        "targets": {"added_ms<=": TARGET_ADDED_MS, "throughput_ratio>=": TARGET_THROUGHPUT_RATIO,
                    "peak_rss_mib<": TARGET_RSS_MIB},
        "met": bool(measured) and all(r["met"] for r in measured),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line and write its JSON report to standard output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 requests and 64 MiB instead of 200 and 1 GiB")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)
    report = bench_proxy(options.quick, repeats=options.repeats)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
