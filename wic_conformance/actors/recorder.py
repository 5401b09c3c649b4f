"""Crash-safe HAR 1.2 recordings of proxied exchanges: an append-only journal, side files, the HAR built from them.

A recording is a folder::

    journal.ndjson           one JSON object per line, appended as exchanges start, end and are judged
    recording.har            HAR 1.2, (re)built from the journal at stop and by :func:`load_recording`
    bodies/<sha256>.bin      bodies above the threshold, named by their SHA-256 (identical bodies share a file)
    bodies/.partial-<id>-<side>.bin
                             a large body while it streams (left behind only by a crash)

Journal lines (``"v": 1``):

``{"event": "started", "id", "started", "request": {"method", "url", "httpVersion", "headers"}}``
    written when the request head arrives;
``{"event": "entry", "id", "entry": {...}}``
    the complete HAR entry, written (flushed and fsynced) when the exchange ends, completed or not;
``{"event": "wic", "id", "wic": {...}}``
    the verdict, written when the exchange has been judged; it becomes the entry's ``_wic`` member.

An exchange with a ``started`` line but no ``entry`` line (the proxy died) becomes an entry with
``"_truncated": true``, a response status of 0 and whatever part of its bodies reached a partial file.

Each HAR body carries ``_sha256`` (hex SHA-256 of the bytes that arrived) and ``_size``; it is
inline (``text``, or base64 with ``"encoding": "base64"`` when not UTF-8) up to the threshold,
else in a side file named by ``_file`` (relative to the HAR file), the convention that
:mod:`wic_conformance.dicomweb.har` reads.  Values of Authorization, Proxy-Authorization,
Cookie and Set-Cookie headers are replaced by ``<redacted>`` unless redaction is off.

References
----------
HAR 1.2 specification (W3C Web Performance working group draft, 2012);
RFC 9110 §11.6.2 (Authorization), RFC 6265 §4 (Cookie, Set-Cookie).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from wic_conformance.dicomweb.exchange import Body
from wic_conformance.errors import UsageError

__all__ = [
    "BODIES_DIR",
    "DEFAULT_BODY_THRESHOLD",
    "HAR_NAME",
    "JOURNAL_NAME",
    "REDACTED",
    "SECRET_HEADERS",
    "BodyTee",
    "Journal",
    "RecordedBody",
    "build_har",
    "har_entry",
    "iso_time",
    "load_recording",
    "redact_headers",
    "write_har",
]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return importlib.metadata.version("wic-conformance")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


JOURNAL_NAME = "journal.ndjson"
HAR_NAME = "recording.har"
BODIES_DIR = "bodies"
DEFAULT_BODY_THRESHOLD = 64 * 1024
REDACTED = "<redacted>"
#: Header names whose values are secrets (lower case).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_PARTIAL = ".partial-{id}-{side}.bin"


def iso_time(epoch: float) -> str:
    """Return an ISO 8601 UTC timestamp with milliseconds, as HAR's ``startedDateTime`` wants."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_headers(headers: Iterable[tuple[str, str]], redact: bool = True) -> list[tuple[str, str]]:
    """Return the header pairs with secret values replaced by ``<redacted>`` (unchanged when ``redact`` is false)."""
    if not redact:
        return list(headers)
    return [(k, REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers]


# -- bodies ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecordedBody:
    """A body as recorded: its size and SHA-256, and either its bytes (small) or its side file (large).

    Attributes
    ----------
    size : int
        Bytes that arrived.
    sha256 : str
        Hex SHA-256 of those bytes.
    data : bytes or None
        The bytes of a body at or below the threshold.
    file : str or None
        Side file of a larger body, relative to the recording folder (``bodies/<sha256>.bin``).
    root : Path or None
        The recording (or spool) folder ``file`` is relative to.
    """

    size: int = 0
    sha256: str = hashlib.sha256().hexdigest()
    data: bytes | None = b""
    file: str | None = None
    root: Path | None = None

    def body(self) -> Body:
        """Return the body as a :class:`Body` (file-backed for a side file)."""
        if self.file is not None and self.root is not None:
            return Body.from_file(self.root / self.file)
        return Body.of(self.data or b"")

    def har(self, mime_type: str) -> dict[str, Any]:
        """Return the HAR members describing the body (``text``/``encoding`` or ``_file``, ``_sha256``, ``_size``)."""
        node: dict[str, Any] = {"mimeType": mime_type}
        if self.file is not None:
            node["_file"] = self.file
        else:
            data = self.data or b""
            try:
                node["text"] = data.decode("utf-8")
            except UnicodeDecodeError:
                node["text"] = base64.b64encode(data).decode("ascii")
                node["encoding"] = "base64"
        node["_sha256"] = self.sha256
        node["_size"] = self.size
        return node


class BodyTee:
    """Collect a streamed body: its SHA-256 and size, the bytes in memory up to a threshold, then a spool file.

    Memory stays bounded by the threshold whatever the body's size: past it the
    bytes go to ``bodies/.partial-<id>-<side>.bin``, which :meth:`finish` renames
    to ``bodies/<sha256>.bin``.  A crash leaves the partial file behind, holding
    what had arrived.

    Parameters
    ----------
    root : Path
        The recording (or spool) folder.
    exchange_id, side : str
        Name the partial file (``side`` is ``"request"`` or ``"response"``).
    threshold : int
        Largest body kept inline.
    """

    def __init__(self, root: Path, exchange_id: str, side: str, threshold: int) -> None:
        self.root = root
        self.threshold = threshold
        self.size = 0
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._partial = root / BODIES_DIR / _PARTIAL.format(id=exchange_id, side=side)
        self._handle: Any = None
        self._done = False

    def write(self, chunk: bytes) -> None:
        """Add the next chunk."""
        if not chunk:
            return
        self.size += len(chunk)
        self._digest.update(chunk)
        if self._handle is not None:
            self._handle.write(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > self.threshold:
            self._handle = open(self._partial, "wb", buffering=0)  # noqa: SIM115 - closed by finish/discard
            self._handle.write(self._buffer)
            self._buffer = bytearray()

    def finish(self) -> RecordedBody:
        """Close the tee and return the recorded body (a side file named by its hash when above the threshold)."""
        if self._done:
            raise RuntimeError("the body tee is already finished")
        self._done = True
        sha = self._digest.hexdigest()
        if self._handle is None:
            return RecordedBody(self.size, sha, bytes(self._buffer), None, self.root)
        self._handle.close()
        relative = f"{BODIES_DIR}/{sha}.bin"
        final = self.root / relative
        if final.exists() and final.stat().st_size == self.size:
            self._partial.unlink()
        else:
            os.replace(self._partial, final)
        return RecordedBody(self.size, sha, None, relative, self.root)

    def discard(self) -> None:
        """Drop what was collected (the exchange is not recorded)."""
        self._done = True
        if self._handle is not None:
            self._handle.close()
            self._partial.unlink(missing_ok=True)
        self._buffer = bytearray()


# -- HAR entries ------------------------------------------------------------------------------------------
def _har_headers(headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers]


def _cookies(headers: Iterable[tuple[str, str]], name: str, redact: bool) -> list[dict[str, str]]:
    """Return HAR cookie objects from Cookie (``name="cookie"``) or Set-Cookie headers."""
    out: list[dict[str, str]] = []
    for key, value in headers:
        if key.lower() != name:
            continue
        pieces = value.split(";") if name == "cookie" else value.split(";", 1)[:1]
        for piece in pieces:
            cname, sep, cvalue = piece.strip().partition("=")
            if sep and cname:
                out.append({"name": cname, "value": REDACTED if redact else cvalue})
    return out


def har_entry(
    *,
    started: float,
    request: Mapping[str, Any],
    request_body: RecordedBody | None,
    response: Mapping[str, Any] | None,
    response_body: RecordedBody | None,
    timings: Mapping[str, float],
    redact: bool = True,
    truncated: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one HAR 1.2 entry.

    Parameters
    ----------
    started : float
        When the request head arrived (seconds since the epoch).
    request : mapping
        ``method``, ``url``, ``httpVersion`` and ``headers`` (pairs, as the client sent them).
    request_body, response_body : RecordedBody or None
        The bodies as recorded (``None``: no body, or none arrived).
    response : mapping or None
        ``status``, ``statusText``, ``httpVersion`` and ``headers`` (pairs, as the server sent them);
        ``None`` when no response arrived (HAR status 0).
    timings : mapping
        ``send``, ``wait`` and ``receive`` in milliseconds.
    redact : bool
        Replace secret header and cookie values.
    truncated : mapping or None
        Why and where the exchange broke off: becomes ``_truncated: true`` and ``_truncation``.
    extra : mapping or None
        Further underscore members (e.g. ``_wic``).

    Returns
    -------
    dict
        The entry.

    References
    ----------
    HAR 1.2 §entries, §request, §response, §postData, §content, §timings.
    """
    req_headers = redact_headers(request["headers"], redact)
    req_ctype = next((v for k, v in req_headers if k.lower() == "content-type"), "")
    req: dict[str, Any] = {
        "method": request["method"],
        "url": request["url"],
        "httpVersion": request.get("httpVersion", "HTTP/1.1"),
        "cookies": _cookies(request["headers"], "cookie", redact),
        "headers": _har_headers(req_headers),
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(request["url"]).query,
                                                                       keep_blank_values=True)],
        "headersSize": -1,
        "bodySize": request_body.size if request_body is not None else 0,
    }
    if request_body is not None and (request_body.size or request["method"] in ("POST", "PUT", "PATCH")):
        req["postData"] = request_body.har(req_ctype)
    if response is not None:
        res_headers = redact_headers(response["headers"], redact)
        res_ctype = next((v for k, v in res_headers if k.lower() == "content-type"), "")
        location = next((v for k, v in res_headers if k.lower() == "location"), "")
        body = response_body or RecordedBody()
        content = body.har(res_ctype)
        content["size"] = body.size
        res: dict[str, Any] = {
            "status": int(response["status"]),
            "statusText": response.get("statusText", ""),
            "httpVersion": response.get("httpVersion", "HTTP/1.1"),
            "cookies": _cookies(response["headers"], "set-cookie", redact),
            "headers": _har_headers(res_headers),
            "content": content,
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": body.size,
        }
    else:
        res = {"status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
               "content": {"size": 0, "mimeType": ""}, "redirectURL": "", "headersSize": -1, "bodySize": -1}
    times = {k: max(0.0, round(float(timings.get(k, 0.0)), 3)) for k in ("send", "wait", "receive")}
    entry: dict[str, Any] = {
        "startedDateTime": iso_time(started),
        "time": round(sum(times.values()), 3),
        "request": req,
        "response": res,
        "cache": {},
        "timings": times,
    }
    if truncated is not None:
        entry["_truncated"] = True
        entry["_truncation"] = dict(truncated)
    entry.update(extra or {})
    return entry


# -- the journal ----------------------------------------------------------------------------------------
class Journal:
    """Append-only ``journal.ndjson`` written by one background thread (callers never wait for the disk).

    Lines marked ``sync`` are flushed and fsynced before the writer takes the next
    batch; several pending lines share one fsync.

    Parameters
    ----------
    path : Path
        The journal file (appended to when it exists).
    """

    _STOP = object()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="wic-journal", daemon=True)
        self._thread.start()

    def append(self, record: Mapping[str, Any], *, sync: bool = False) -> None:
        """Queue one record (a JSON object) for writing."""
        line = json.dumps({"v": 1, **record}, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((line, sync))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued record is on disk; return whether that happened within ``timeout``."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Write what is queued, then stop the writer thread and close the file."""
        self._queue.put(self._STOP)
        self._thread.join()
        self._handle.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch = [item]
            while True:  # take what else is waiting: one fsync for the lot
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            sync = False
            written = 0
            for entry in batch:
                if entry is self._STOP:
                    stop = True
                    continue
                line, wants_sync = entry
                try:
                    self._handle.write(line)
                except OSError:
                    log.exception("cannot write to the journal %s", self.path)
                sync = sync or wants_sync
                written += 1
            try:
                self._handle.flush()
                if sync:
                    os.fsync(self._handle.fileno())
            except OSError:
                log.exception("cannot flush the journal %s", self.path)
            with self._lock:
                self._pending -= written
                if self._pending == 0:
                    self._idle.set()


# -- building the HAR -----------------------------------------------------------------------------------
def _read_journal(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a crash: keep what came before
                log.warning("%s line %d is not JSON (cut short?); skipped", path, number)
                continue
            if isinstance(record, dict) and "id" in record:
                records.append(record)
    return records


def _recovered_body(root: Path, exchange_id: str, side: str) -> RecordedBody | None:
    """Return what a crashed exchange left in its partial file, or ``None``."""
    partial = root / BODIES_DIR / _PARTIAL.format(id=exchange_id, side=side)
    if not partial.is_file():
        return None
    body = Body.from_file(partial)
    return RecordedBody(body.size, body.sha256(), None, f"{BODIES_DIR}/{partial.name}", root)


def build_har(record_dir: str | Path, *, redact: bool = True) -> dict[str, Any]:
    """Build the HAR 1.2 document of a recording folder from its journal.

    Exchanges appear in the order they started.  One that never ended (the
    proxy died) gets ``_truncated: true``, response status 0 and the part of its
    bodies found in partial files.

    Raises
    ------
    UsageError
        The folder has no journal.
    """
    root = Path(record_dir)
    journal = root / JOURNAL_NAME
    if not journal.is_file():
        raise UsageError(f"{root} is not a recording: no {JOURNAL_NAME}")
    order: list[str] = []
    started: dict[str, dict[str, Any]] = {}
    entries: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, dict[str, Any]] = {}
    for record in _read_journal(journal):
        ident = str(record["id"])
        event = record.get("event")
        if ident not in started and ident not in entries:
            order.append(ident)
        if event == "started":
            started[ident] = record
        elif event == "entry" and isinstance(record.get("entry"), dict):
            entries[ident] = record["entry"]
        elif event == "wic" and isinstance(record.get("wic"), dict):
            verdicts.setdefault(ident, {}).update(record["wic"])
    har_entries: list[dict[str, Any]] = []
    for ident in order:
        entry = entries.get(ident)
        if entry is None:
            head = started.get(ident)
            if head is None:
                continue
            request = head.get("request") or {}
            entry = har_entry(
                started=float(head.get("started", 0.0)),
                request={"method": request.get("method", ""), "url": request.get("url", ""),
                         "httpVersion": request.get("httpVersion", "HTTP/1.1"),
                         "headers": [tuple(h) for h in request.get("headers", [])]},
                request_body=_recovered_body(root, ident, "request"),
                response=None, response_body=None, timings={}, redact=redact,
                truncated={"reason": "the recording ended before the exchange did (the proxy stopped or died)"},
                extra={"_wic": {"id": ident, "judged": False}},
            )
        entry = dict(entry)
        if ident in verdicts:
            entry["_wic"] = {**entry.get("_wic", {}), **verdicts[ident]}
        har_entries.append(entry)
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "wic-conformance", "version": _version()},
            "pages": [],
            "entries": har_entries,
            "comment": "recorded by the wic-conformance recording proxy",
        }
    }


def write_har(record_dir: str | Path, har: Mapping[str, Any] | None = None) -> Path:
    """Write ``recording.har`` atomically (built from the journal unless ``har`` is given); return its path."""
    root = Path(record_dir)
    document = har if har is not None else build_har(root)
    target = root / HAR_NAME
    fd, tmp = tempfile.mkstemp(prefix=".recording-", suffix=".har", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_recording(record_dir: str | Path) -> dict[str, Any]:
    """Return the HAR document of a recording, rebuilding ``recording.har`` from the journal first.

    ``record_dir`` may also name a HAR file (read as it is).

    Raises
    ------
    UsageError
        Neither a journal nor a HAR file is there.
    """
    root = Path(record_dir)
    if root.is_file():
        from wic_conformance.dicomweb.har import read_har

        return read_har(root)
    if (root / JOURNAL_NAME).is_file():
        har = build_har(root)
        write_har(root, har)
        return har
    if (root / HAR_NAME).is_file():
        from wic_conformance.dicomweb.har import read_har

        return read_har(root / HAR_NAME)
    raise UsageError(f"{root} holds no recording ({JOURNAL_NAME} or {HAR_NAME})")
