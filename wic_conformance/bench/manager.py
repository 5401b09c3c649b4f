"""Benchmark of the simulated Image Manager against Orthanc, a real Image Manager, in the same run.

Both servers run as their own processes on loopback: Orthanc 1.10 with its
DICOMweb plugin (:class:`OrthancProcess`), and the simulated Image Manager with
its default validation on (every request judged by the check registry, every
instance through the IOD gate, which for these images is the bundled IOD tables in
process) in a fresh Python process.  Each runs
with its own default durability: Orthanc fsyncs every stored file
(``SyncStorageArea`` defaults to true since 1.7.4), the simulated Manager does
not (``durable_writes`` is off by default; its atomic rename keeps the store
consistent when the process crashes).  Two measurements, each repeated,
alternating which server goes first:

``stow_rate``
    ``requests`` single-instance PS3.10 STOW-RS requests (the VL Photographic
    fixture, each re-identified; all bodies built before the clock starts) sent
    one after the other over one keep-alive ``requests.Session``.  The simulated
    Manager judges each request after answering it; its time runs until the last
    verdict is recorded (``im_per_s``), which is never earlier than the last
    response (``im_responded_per_s``, for context).  ``ratio`` is the simulated
    Manager's rate over Orthanc's, per round.  For context, the same requests
    go to a second simulated Manager whose gate is dciodvfy, the reference
    (``iod_engine: dciodvfy``, about 5 ms of CPU per instance to start it):
    ``im_dciodvfy_per_s``, and the rate of its answers, ``im_dciodvfy_responded_per_s``.
``large_object``
    one PS3.10 Video Photographic instance whose MP4 is padded with an ISO BMFF
    ``free`` box to ``size`` bytes, stored once per round in each server: the
    time to the response, and the simulated Manager's peak RSS growth while it
    takes, stores and judges the object: its ``VmHWM`` once the verdict is in,
    minus its RSS just before the upload (a fresh process per round, warmed up
    with one small instance so that first-use imports are not counted, and whose
    high-water mark then belongs to this object).  Orthanc's RSS is sampled during its
    upload for context.

Targets: a median rate ratio of at least 0.5, and a peak RSS growth below twice
the payload in every round.  Without Orthanc the result says
``"skipped": "Orthanc not installed"`` and carries no ``met``.

References
----------
PS3.18 §10.5 (Store transaction); IHE RAD WIC (RAD-108).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psutil
import requests
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_fragments

from wic_conformance.bench import spread
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.errors import WicConformanceError
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid

__all__ = [
    "ORTHANC_MISSING",
    "OrthancError",
    "OrthancProcess",
    "bench_manager",
    "orthanc_missing",
    "padded_video_instance",
]

_log = logging.getLogger(__name__)

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
_DICOMWEB_PLUGIN = "libOrthancDicomWeb.so"
_OPTIONAL_PLUGINS = ("libOrthancGdcm.so",)
#: The reason given when Orthanc or its DICOMweb plugin is missing.
ORTHANC_MISSING = "Orthanc not installed (apt-get install orthanc orthanc-dicomweb orthanc-gdcm)"

TARGET_RATE_RATIO = 0.5
TARGET_RSS_OVER_PAYLOAD = 2.0
_ACCEPT = {"Accept": mt.APPLICATION_DICOM_JSON}
_MIB = 1 << 20


class OrthancError(WicConformanceError):
    """Orthanc could not be started, or answered one of its own REST calls with an error."""


def orthanc_missing(binary: Path = ORTHANC_BINARY, plugin_dir: Path = ORTHANC_PLUGIN_DIR) -> str | None:
    """Return why Orthanc cannot be run here (:data:`ORTHANC_MISSING`), or ``None`` when it can."""
    if not os.access(binary, os.X_OK) or not (plugin_dir / _DICOMWEB_PLUGIN).is_file():
        return ORTHANC_MISSING
    return None


def _free_port() -> int:
    """Return a loopback port that was free a moment ago (Orthanc cannot bind port 0 itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class OrthancProcess:
    """An Orthanc server with its DICOMweb plugin, run by hand (never the system service) on loopback.

    Each instance writes its configuration and keeps its storage in ``work_dir``.
    HTTP is served on a free port chosen here (Orthanc cannot bind port 0: a
    port is picked by binding a socket to 127.0.0.1:0 and closing it, and the
    start is retried with another one if Orthanc fails); the DICOM (DIMSE)
    server is disabled and remote access refused.  Orthanc has no bind-address
    option: it listens on every interface but answers loopback clients only.

    Parameters
    ----------
    work_dir : Path
        Folder for ``orthanc.json``, ``orthanc.log`` and ``storage/``.
    extra_config : mapping, optional
        Merged into the configuration (nested mappings merged key by key).
    binary, plugin_dir : Path
        Where the Debian packages put Orthanc and its plugins.

    References
    ----------
    Orthanc Book: configuration, DICOMweb plugin (``/dicom-web/servers``).
    """

    def __init__(self, work_dir: Path, *, extra_config: Mapping[str, Any] | None = None,
                 binary: Path = ORTHANC_BINARY, plugin_dir: Path = ORTHANC_PLUGIN_DIR) -> None:
        self.work_dir = Path(work_dir)
        self.binary = binary
        self.plugin_dir = plugin_dir
        self.extra_config = dict(extra_config or {})
        self.name = f"WIC-PEER-{secrets.token_hex(4)}"
        self.port = 0
        self.session = requests.Session()
        self.version = ""
        self._process: subprocess.Popen[bytes] | None = None

    # -- configuration and lifecycle --------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        """Return the path of the configuration file written at start."""
        return self.work_dir / "orthanc.json"

    @property
    def log_path(self) -> Path:
        """Return the path of Orthanc's log file."""
        return self.work_dir / "orthanc.log"

    @property
    def rest(self) -> str:
        """Return the base URL of Orthanc's REST API (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Return the DICOMweb service root (``http://127.0.0.1:PORT/dicom-web``; STOW-RS at ``{url}/studies``)."""
        return f"{self.rest}/dicom-web"

    @property
    def pid(self) -> int | None:
        """Return the process ID while running."""
        return self._process.pid if self._process is not None else None

    def config(self, port: int) -> dict[str, Any]:
        """Return the configuration for ``port``."""
        storage = str(self.work_dir / "storage")
        plugins = [str(self.plugin_dir / _DICOMWEB_PLUGIN)]
        plugins += [str(self.plugin_dir / p) for p in _OPTIONAL_PLUGINS if (self.plugin_dir / p).is_file()]
        config: dict[str, Any] = {
            "Name": self.name, "StorageDirectory": storage, "IndexDirectory": storage, "Plugins": plugins,
            "HttpServerEnabled": True, "HttpPort": port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomServerEnabled": False, "HttpDescribeErrors": True,
            "WebDavEnabled": False, "StorageCompression": False, "SaveJobs": False, "OverwriteInstances": False,
            "HttpRequestTimeout": 120, "KeepAlive": True,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Host": f"127.0.0.1:{port}",
                         "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }
        return _merge(config, self.extra_config)

    def start(self, *, attempts: int = 5, timeout: float = 30.0) -> OrthancProcess:
        """Start Orthanc and return once ``GET /system`` answers with this server's name.

        Raises
        ------
        OrthancError
            Orthanc is missing, or did not come up in ``attempts`` tries.
        """
        missing = orthanc_missing(self.binary, self.plugin_dir)
        if missing is not None:
            raise OrthancError(missing)
        if self._process is not None:
            return self
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            self.config_path.write_text(json.dumps(self.config(self.port), indent=2), "utf-8")
            self._process = subprocess.Popen(
                [str(self.binary), f"--logfile={self.log_path}", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.work_dir)
            if self._wait_ready(timeout):
                _log.info("Orthanc %s up on %s (pid %d)", self.version, self.rest, self._process.pid)
                return self
            _log.warning("Orthanc did not start on port %d (attempt %d of %d)", self.port, attempt, attempts)
            self.stop()
        raise OrthancError(f"Orthanc did not start after {attempts} attempts; log tail: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                answer = self.session.get(f"{self.rest}/system", timeout=2)
                if answer.ok and answer.json().get("Name") == self.name:
                    self.version = str(answer.json().get("Version", ""))
                    return True
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Orthanc with SIGTERM (it takes a few seconds), killing it after ``timeout`` seconds."""
        process, self._process = self._process, None
        self.session.close()
        self.session = requests.Session()
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.warning("Orthanc (pid %d) ignored SIGTERM for %.0f s: killing it", process.pid, timeout)
            process.kill()
            process.wait()

    def log_tail(self, size: int = 2000) -> str:
        """Return the end of Orthanc's log."""
        try:
            return self.log_path.read_text("utf-8", "replace")[-size:]
        except OSError:
            return ""

    def __enter__(self) -> OrthancProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST helpers -------------------------------------------------------------------------------
    def _check(self, answer: requests.Response, what: str) -> requests.Response:
        if not answer.ok:
            raise OrthancError(f"{what}: HTTP {answer.status_code}: {answer.text[:500]}")
        return answer

    def upload(self, part10: bytes) -> str:
        """Store a PS3.10 file through the REST API (``POST /instances``) and return its Orthanc ID."""
        answer = self._check(self.session.post(f"{self.rest}/instances", data=part10, timeout=120), "upload")
        return str(answer.json()["ID"])

    def add_stow_server(self, name: str, url: str, headers: Mapping[str, str] | None = None, *,
                        chunked: bool = False) -> None:
        """Declare a DICOMweb server Orthanc can send to (``PUT /dicom-web/servers/NAME``).

        ``url`` is the server's DICOMweb root; Orthanc posts to ``{url}/studies``.
        """
        body = {"Url": url.rstrip("/") + "/", "HttpHeaders": dict(headers or {}), "ChunkedTransfers": chunked}
        self._check(self.session.put(f"{self.url}/servers/{name}", json=body, timeout=30), "add_stow_server")

    def stow(self, name: str, resources: Iterable[str], *, timeout: float = 300.0) -> requests.Response:
        """Have Orthanc send resources (instance, series or study IDs) with STOW-RS to a declared server.

        The response is returned as it is (Orthanc answers an error status when the target fails).
        """
        return self.session.post(f"{self.url}/servers/{name}/stow", json={"Resources": list(resources)},
                                 timeout=timeout)


# =====================================================================================================
# Payloads
# =====================================================================================================


def _reidentified(data: bytes) -> bytes:
    ds = dcmread(io.BytesIO(data))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _stow_body(part10: bytes) -> tuple[dict[str, str], bytes]:
    ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, part10)], root_type=mt.APPLICATION_DICOM)
    return {"Content-Type": ctype, **_ACCEPT}, body


def padded_video_instance(index: FixtureIndex, size: int) -> bytes:
    """Return a PS3.10 Video Photographic instance of about ``size`` bytes (new UIDs).

    The fixture's MP4 gets a trailing ISO BMFF ``free`` box, which players skip,
    so the stream stays valid; the padded file is encapsulated as one fragment.

    References
    ----------
    ISO/IEC 14496-12 §8.1.2 (free space box); PS3.5 §A.4 (encapsulation).
    """
    ds = dcmread(index["part10/video-photographic"].path)
    mp4 = b"".join(generate_fragments(ds.PixelData))
    header = index["part10/video-photographic"].path.stat().st_size - len(ds.PixelData)
    pad = max(8, size - header - len(mp4) - 32)
    ds.PixelData = encapsulate([mp4 + struct.pack(">I4s", pad, b"free") + bytes(pad - 8)], has_bot=False)
    ds["PixelData"].is_undefined_length = True
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# =====================================================================================================
# The simulated Image Manager in its own process
# =====================================================================================================

# argv[1]: {"data_dir", "config"} (settings over the defaults).  Prints {"url"} once serving; stops when stdin
# is closed.
_IM_CHILD = r"""
import json, sys
from pathlib import Path
from wic_conformance.actors.manager import ImageManager, ManagerConfig
args = json.loads(sys.argv[1])
config = ManagerConfig.from_mapping({**args.get("config", {}), "data_dir": args["data_dir"]})
manager = ImageManager(config).start()
sys.stdout.write(json.dumps({"url": manager.url}) + "\n")
sys.stdout.flush()
sys.stdin.read()
manager.stop()
"""


class _ManagerProcess:
    """The simulated Image Manager (default configuration) served by a child Python process."""

    def __init__(self, data_dir: Path, config: Mapping[str, Any] | None = None) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        args = json.dumps({"data_dir": str(data_dir), "config": dict(config or {})})
        self.process = subprocess.Popen([sys.executable, "-c", _IM_CHILD, args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(30)
            raise WicConformanceError(f"the simulated Image Manager did not start (exit {self.process.returncode})")
        self.url: str = json.loads(line)["url"]
        self.ps = psutil.Process(self.process.pid)
        self.session = requests.Session()

    def verdict_count(self) -> int:
        return len(self.session.get(self.url.rsplit("/", 1)[0] + "/wic/exchanges", timeout=60).json())

    def wait_verdicts(self, count: int, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.verdict_count() < count:
            if time.monotonic() > deadline:
                raise WicConformanceError(f"the simulated Image Manager did not judge {count} exchanges in time")
            time.sleep(0.01)

    def vm_hwm(self) -> int:
        """Return the process's peak RSS (``VmHWM``) in bytes, else its current RSS."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            return int(status.split("VmHWM:")[1].split()[0]) * 1024
        except (OSError, IndexError, ValueError):
            return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        self.session.close()
        stdin: IO[bytes] | None = self.process.stdin
        if stdin is not None:
            stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def _manager(data_dir: Path, config: Mapping[str, Any] | None = None) -> Iterator[_ManagerProcess]:
    im = _ManagerProcess(data_dir, config)
    try:
        yield im
    finally:
        im.stop()


class _RssSampler:
    """Sample a process's RSS in a thread; ``peak`` is the largest value seen."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.ps = psutil.Process(pid)
        self.interval = interval
        self.peak = self.start = int(self.ps.memory_info().rss)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, int(self.ps.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(self.interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# =====================================================================================================
# The measurements
# =====================================================================================================


def _post_all(session: requests.Session, url: str, bodies: list[tuple[dict[str, str], bytes]]) -> float:
    """Post every body in order over one session; return the seconds taken (every answer must be 200)."""
    start = time.perf_counter()
    for headers, body in bodies:
        answer = session.post(url, data=body, headers=headers, timeout=120)
        if answer.status_code != 200:
            raise WicConformanceError(f"POST {url}: HTTP {answer.status_code}: {answer.text[:300]}")
    return time.perf_counter() - start


def _judged_seconds(im: _ManagerProcess, bodies: list[tuple[dict[str, str], bytes]]) -> tuple[float, float]:
    """Post every body; return (seconds until the last verdict, seconds until the last response)."""
    before = im.verdict_count()
    start = time.perf_counter()
    with requests.Session() as session:
        responded = _post_all(session, f"{im.url}/studies", bodies)
    im.wait_verdicts(before + len(bodies))
    return time.perf_counter() - start, responded


def _rate_round(im: _ManagerProcess, reference: _ManagerProcess, orthanc: OrthancProcess,
                bodies: list[tuple[dict[str, str], bytes]], im_first: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for who in (("im", "orthanc") if im_first else ("orthanc", "im")):
        if who == "orthanc":
            with requests.Session() as session:
                out["orthanc_s"] = _post_all(session, f"{orthanc.url}/studies", bodies)
            continue
        out["im_s"], out["im_responded_s"] = _judged_seconds(im, bodies)
    out["im_dciodvfy_s"], out["im_dciodvfy_responded_s"] = _judged_seconds(reference, bodies)
    return out


def _large_round(work: Path, orthanc: OrthancProcess, data: bytes, warm: bytes, round_no: int,
                 im_first: bool) -> dict[str, float]:
    headers, body = _stow_body(data)
    out: dict[str, float] = {}
    for who in (("im", "orthanc") if im_first else ("orthanc", "im")):
        if who == "orthanc":
            assert orthanc.pid is not None
            with _RssSampler(orthanc.pid) as sampler, requests.Session() as session:
                out["orthanc_s"] = _post_all(session, f"{orthanc.url}/studies", [(headers, body)])
            out["orthanc_rss_growth"] = sampler.peak - sampler.start
            continue
        with _manager(work / f"im-large-{round_no}") as im, requests.Session() as session:
            _post_all(session, f"{im.url}/studies", [_stow_body(warm)])  # first-use imports are not the object's
            im.wait_verdicts(1)
            idle = int(im.ps.memory_info().rss)
            out["im_s"] = _post_all(session, f"{im.url}/studies", [(headers, body)])
            im.wait_verdicts(2)
            out["im_rss_growth"] = im.vm_hwm() - idle
            out["im_idle_rss"] = idle
    return out


def bench_manager(quick: bool) -> dict[str, Any]:
    """Measure the simulated Image Manager's STOW-RS rate and large-object memory against Orthanc.

    Parameters
    ----------
    quick : bool
        20 requests and a 5 MiB object instead of 200 requests and 50 MiB.

    Returns
    -------
    dict
        ``name``, ``quick``, ``requests``, ``size``, ``repeats``, ``orthanc_version``;
        ``stow_rate``: ``im_per_s`` (until the last verdict), ``im_responded_per_s``,
        ``orthanc_per_s``, ``ratio`` (IM / Orthanc per round), ``im_dciodvfy_per_s`` and
        ``im_dciodvfy_responded_per_s`` (a Manager gating with dciodvfy, for context);
        ``large_object``:
        ``payload_mib``, ``im_s``, ``orthanc_s``, ``im_idle_rss_mib``,
        ``im_peak_rss_growth_mib``, ``rss_growth_over_payload`` and
        ``orthanc_sampled_rss_growth_mib``; then ``targets`` and ``met``.  Each series is
        ``{"median", "min", "max"}``.  Without Orthanc: ``{"name", "skipped"}``.

    Raises
    ------
    WicConformanceError
        A server did not start, or answered a request with anything but 200.

    References
    ----------
    PS3.18 §10.5.
    """
    name = "manager"
    if orthanc_missing() is not None:
        return {"name": name, "skipped": "Orthanc not installed", "reason": ORTHANC_MISSING}
    count = 20 if quick else 200
    size = (5 if quick else 50) * _MIB
    repeats = 3
    index = FixtureIndex.load()
    seed = index["part10/vl-photographic"].read()
    rates: dict[str, list[float]] = {"im_per_s": [], "im_responded_per_s": [], "orthanc_per_s": [], "ratio": [],
                                     "im_dciodvfy_per_s": [], "im_dciodvfy_responded_per_s": []}
    large: dict[str, list[float]] = {"im_s": [], "orthanc_s": [], "im_idle_rss_mib": [],
                                     "im_peak_rss_growth_mib": [], "rss_growth_over_payload": [],
                                     "orthanc_sampled_rss_growth_mib": []}
    with tempfile.TemporaryDirectory(prefix="wic-bench-manager-") as tmp:
        work = Path(tmp)
        orthanc = OrthancProcess(work / "orthanc").start()
        try:
            with _manager(work / "im-rate") as im, \
                    _manager(work / "im-rate-dciodvfy", {"iod_engine": "dciodvfy"}) as reference:
                warm = [_stow_body(_reidentified(seed)) for _ in range(3)]
                _post_all(im.session, f"{im.url}/studies", warm[:1])
                _post_all(reference.session, f"{reference.url}/studies", warm[1:2])
                _post_all(orthanc.session, f"{orthanc.url}/studies", warm[2:])
                for round_no in range(repeats):
                    bodies = [_stow_body(_reidentified(seed)) for _ in range(count)]
                    got = _rate_round(im, reference, orthanc, bodies, im_first=round_no % 2 == 0)
                    rates["im_dciodvfy_per_s"].append(count / got["im_dciodvfy_s"])
                    rates["im_dciodvfy_responded_per_s"].append(count / got["im_dciodvfy_responded_s"])
                    rates["im_per_s"].append(count / got["im_s"])
                    rates["im_responded_per_s"].append(count / got["im_responded_s"])
                    rates["orthanc_per_s"].append(count / got["orthanc_s"])
                    rates["ratio"].append(got["orthanc_s"] / got["im_s"])
                    _log.info("rate round %d: IM %.1f/s, Orthanc %.1f/s", round_no + 1, rates["im_per_s"][-1],
                              rates["orthanc_per_s"][-1])
            for round_no in range(repeats):
                data = padded_video_instance(index, size)
                got = _large_round(work, orthanc, data, _reidentified(seed), round_no, im_first=round_no % 2 == 0)
                large["im_s"].append(got["im_s"])
                large["orthanc_s"].append(got["orthanc_s"])
                large["im_idle_rss_mib"].append(got["im_idle_rss"] / _MIB)
                large["im_peak_rss_growth_mib"].append(got["im_rss_growth"] / _MIB)
                large["rss_growth_over_payload"].append(got["im_rss_growth"] / len(data))
                large["orthanc_sampled_rss_growth_mib"].append(got["orthanc_rss_growth"] / _MIB)
                _log.info("large round %d: IM %.2f s (+%.0f MiB), Orthanc %.2f s", round_no + 1, got["im_s"],
                          got["im_rss_growth"] / _MIB, got["orthanc_s"])
            version = orthanc.version
        finally:
            orthanc.stop()
            shutil.rmtree(work / "orthanc", ignore_errors=True)
    stow_rate = {key: spread(values) for key, values in rates.items()}
    large_object: dict[str, Any] = {"payload_mib": size / _MIB, **{k: spread(v) for k, v in large.items()}}
    return {
        "name": name,
        "quick": quick,
        "requests": count,
        "size": size,
        "repeats": repeats,
        "orthanc_version": version,
        "stow_rate": stow_rate,
        "large_object": large_object,
        "targets": {"stow_rate.ratio>=": TARGET_RATE_RATIO,
                    "large_object.rss_growth_over_payload<": TARGET_RSS_OVER_PAYLOAD},
        "met": stow_rate["ratio"]["median"] >= TARGET_RATE_RATIO
        and large_object["rss_growth_over_payload"]["max"] < TARGET_RSS_OVER_PAYLOAD,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line and write its JSON report to standard output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 requests and 5 MiB")
    options = parser.parse_args(argv)
    report = bench_manager(options.quick)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if report.get("met", True) else 1


if __name__ == "__main__":
    sys.exit(main())
