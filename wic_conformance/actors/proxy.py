"""The recording proxy: relays DICOMweb traffic to an Image Manager, records it as HAR 1.2 and judges STOW-RS.

A :class:`RecordingProxy` listens on loopback and forwards every request, any
method and path (STOW-RS, QIDO-RS, WADO-RS, PDQm...), to the same path on the
upstream's origin, streaming both bodies: the request body goes from the ASGI
receive channel into the upstream request as it arrives, the upstream response
goes back chunk by chunk, and each body is teed into the recording on the way
(:mod:`.recorder`), so memory stays bounded whatever the size.

Relaying follows RFC 9110 §7.6: hop-by-hop fields (Connection and the fields it
names, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) are not
forwarded, the upstream gets its own Host, a Via field is added both ways, and
the framing is redone on each side (a chunked body is relayed chunked, a body
with Content-Length keeps it).  ``Expect: 100-continue`` is answered by the
listening server when the proxy starts reading the body, so it is not forwarded.
Bodies are relayed byte for byte, content codings included (nothing is decoded).
The upstream side is a small HTTP/1.1 client of its own (keep-alive connections,
response framing per RFC 9112): the request head leaves with the first piece of
the body, so a small request is one write.

The recording keeps each side's evidence as sent: the request headers as the
Capturer sent them (Transfer-Encoding and Expect included), the response
headers as the Manager sent them.  Request URLs are the upstream URLs.  (On the
wire, the listening server writes the relayed response's field names in lower
case; names are case-insensitive, and the record keeps the Manager's spelling.)

Each STOW-RS exchange (``POST .../studies[/{study}]``) is judged once it has
ended by the shared check registry: the ``capturer`` checks on the request and
the ``manager`` checks on the response.  Judging runs in one long-lived child
interpreter at a lower priority (started with the proxy), so that it never
holds the GIL the relay needs; if that process cannot start (or dies), a
thread of the proxy judges instead and the log says so.  With
``verify_stored`` the proxy then retrieves the stored instances from the
Retrieve URLs of the response (WADO-RS, ``transfer-syntax=*``, straight from
the upstream) and runs the ``conversion`` and ``iod`` checks on them.  The
verdict is kept with the exchange and written into the record (``_wic``).

Hooks are *notification* hooks only (the proxy never changes traffic):
addon-style observers whose optional methods ``request(flow)``,
``response(flow)``, ``error(flow)`` are called on the event loop (they must
not block) and ``done(exchange, results)`` in the recording thread; a plain
callable is taken as ``done``.  An observer's exception is logged, never
propagated.

References
----------
RFC 9110 §7.6 (message forwarding), §7.6.1 (Connection), §7.6.3 (Via), §10.1.1 (Expect);
PS3.18 §10.5 (Store), §10.4 (Retrieve); HAR 1.2.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import importlib.util
import io
import logging
import os
import pickle
import queue
import re
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, cast, runtime_checkable

import h11
import httpx

from wic_conformance.actors.recorder import (
    BODIES_DIR,
    DEFAULT_BODY_THRESHOLD,
    HAR_NAME,
    JOURNAL_NAME,
    BodyTee,
    Journal,
    RecordedBody,
    har_entry,
    redact_headers,
    write_har,
)
from wic_conformance.actors.server import AsgiServer, Message, Receive, Scope, Send
from wic_conformance.catalogue import Catalogue, default_catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import (
    Document,
    DocumentRole,
    Exchange,
    Headers,
    Request,
    Response,
    new_exchange_id,
)
from wic_conformance.dicomweb.multipart import decode_multipart
from wic_conformance.dicomweb.store_response import parse_store_response
from wic_conformance.dicomweb.stow import parse_stow_target
from wic_conformance.errors import ConfigError
from wic_conformance.findings import Finding
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome

__all__ = [
    "HOP_BY_HOP",
    "JUDGE_NICENESS",
    "Flow",
    "ProxyObserver",
    "ProxyVerdict",
    "RecordingProxy",
    "forwardable_headers",
    "run_proxy",
]

log = logging.getLogger(__name__)

#: Hop-by-hop header fields (RFC 9110 §7.6.1), plus the obsolete Proxy-Connection; every ``Proxy-*`` goes too.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})
_VIA = "1.1 wic-conformance"
_RETRIEVE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_TRANSACTIONS = (
    ("WADO-RS", "GET", re.compile(r"/studies/[^/]+(/series/[^/]+(/instances/[^/]+)?)?(/metadata|/rendered|/thumbnail"
                                  r"|/frames/[^/]+|/bulkdata/.*)?/?$")),
    ("QIDO-RS", "GET", re.compile(r"/(studies|series|instances)/?$|/studies/[^/]+/(series|instances)/?$"
                                  r"|/series/[^/]+/instances/?$")),
    ("PDQm", "GET", re.compile(r"/Patient(/[^/]+)?/?$")),
)


def forwardable_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return the header pairs without the hop-by-hop ones (RFC 9110 §7.6.1), order and duplicates kept.

    Removed: Connection and every field it names, Keep-Alive, Proxy-* (Proxy-Authorization,
    Proxy-Connection...), TE, Trailer, Transfer-Encoding and Upgrade.
    """
    pairs = list(headers)
    named = {token.strip().lower() for k, v in pairs if k.lower() == "connection" for token in v.split(",")}
    return [(k, v) for k, v in pairs
            if (name := k.lower()) not in HOP_BY_HOP and not name.startswith("proxy-") and name not in named]


def _transaction(method: str, url: str) -> str:
    """Name the DICOMweb (or PDQm) transaction of a request line, ``""`` when it is none of them."""
    if method == "POST" and parse_stow_target(url) is not None:
        return "STOW-RS"
    path = httpx.URL(url).path
    for name, verb, pattern in _TRANSACTIONS:
        if method == verb and pattern.search(path):
            return name
    return ""


@dataclass(slots=True)
class Flow:
    """An exchange in flight, as observers see it (headers unredacted: observers run in-process).

    Attributes
    ----------
    id : str
        The exchange ID (also the recorded exchange's).
    started : float
        When the request head arrived (seconds since the epoch).
    method, url : str
        The request line; ``url`` is the upstream URL.
    request_headers : Headers
        As the client sent them.
    status : int or None
        The upstream's status, once known.
    response_headers : Headers or None
        As the upstream sent them, once known.
    request_bytes, response_bytes : int
        Body bytes relayed so far.
    error : str or None
        Why the exchange failed, if it did.
    """

    id: str
    started: float
    method: str
    url: str
    request_headers: Headers
    status: int | None = None
    response_headers: Headers | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    error: str | None = None


@runtime_checkable
class ProxyObserver(Protocol):
    """An addon-style notification hook; every method is optional (a plain callable is taken as ``done``)."""

    def done(self, exchange: Exchange, results: Sequence[CheckResult]) -> None:
        """Receive a recorded exchange and the check results on it (empty when not judged)."""


@dataclass(frozen=True, slots=True)
class ProxyVerdict:
    """A relayed exchange's summary with the findings it drew.

    Attributes
    ----------
    exchange_id : str
        The exchange judged.
    transaction : str
        ``STOW-RS``, ``QIDO-RS``, ``WADO-RS``, ``PDQm`` or ``""``.
    method, url : str
        The request line (upstream URL).
    status : int
        The upstream's status (0 when none arrived).
    judged : bool
        Whether the checks ran (STOW-RS exchanges that completed).
    truncated : bool
        Whether the exchange broke off.
    results : tuple of CheckResult
        Every check's result.
    retrieved : tuple of dict
        With ``verify_stored``: each retrieval (``url``, ``status``, ``instances``, ``error``).
    """

    exchange_id: str
    transaction: str
    method: str
    url: str
    status: int
    judged: bool
    truncated: bool
    results: tuple[CheckResult, ...] = ()
    retrieved: tuple[dict[str, Any], ...] = ()

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Return the findings of every check."""
        return tuple(f for r in self.results for f in r.findings)

    @property
    def errors(self) -> tuple[str, ...]:
        """Return the checks that broke (toolkit errors), as ``"check: error"``."""
        return tuple(f"{r.check}: {r.error}" for r in self.results if r.outcome is Outcome.ERROR)

    def to_dict(self) -> dict[str, Any]:
        """Return the ``_wic`` member written into the HAR entry."""
        out: dict[str, Any] = {
            "id": self.exchange_id, "transaction": self.transaction, "judged": self.judged,
            "findings": [f.to_dict() for f in self.findings],
            "check_errors": list(self.errors),
            "results": [{"check": r.check, "outcome": r.outcome.value, "requirements": list(r.requirements)}
                        for r in self.results],
        }
        if self.retrieved:
            out["retrieved"] = list(self.retrieved)
        return out


# -- judging, in a process of its own -----------------------------------------------------------------
#: Niceness the judging process adds to its own: when the cores are busy, the relay comes first.
JUDGE_NICENESS = 10


@dataclass(frozen=True, slots=True)
class _JudgeSettings:
    """What judging needs besides the exchange: picklable, handed to the judging process once."""

    catalogue: Catalogue | None  # None: the default catalogue
    verify_stored: bool
    verify: bool | str
    root: Path
    body_threshold: int
    timeout: float
    upstream: str


@dataclass(frozen=True, slots=True)
class _Judgement:
    """What judging one exchange gave: results, retrievals, and the exchange with what was retrieved, if any."""

    exchange: Exchange | None
    results: tuple[CheckResult, ...]
    retrieved: tuple[dict[str, Any], ...]
    failure: str = ""  # the traceback of a toolkit defect that stopped judging part-way


class _Judge:
    """Run the check registry on ended STOW-RS exchanges (in the judging process, or in a thread as a fallback)."""

    def __init__(self, settings: _JudgeSettings) -> None:
        from wic_conformance.validate import all_checks  # noqa: F401  (registers the checks)

        self.settings = settings
        self.catalogue = settings.catalogue or default_catalogue()
        self._verify = _ssl_verify(settings.verify)
        self._upstream = httpx.URL(settings.upstream)

    def judge(self, exchange: Exchange, secrets: list[tuple[str, str]], proxy_url: str | None) -> _Judgement:
        """Run the ``capturer`` and ``manager`` checks (and with ``verify_stored`` the stored-instance checks).

        A toolkit defect stops judging there: what was judged so far is kept, with the traceback.
        """
        results: list[CheckResult] = []
        retrieved: list[dict[str, Any]] = []
        stored: Exchange | None = None
        try:
            ctx = CheckContext(catalogue=self.catalogue)
            results = REGISTRY.run(ctx, exchange, tags=["capturer", "manager"])
            response = exchange.response
            if self.settings.verify_stored and response is not None and 200 <= response.status < 300:
                stored, more, retrieved = self._judge_stored(exchange, ctx, secrets, proxy_url)
                results += more
        except Exception:  # a toolkit defect: keep relaying, keep the record
            return _Judgement(stored, tuple(results), tuple(retrieved), traceback.format_exc())
        return _Judgement(stored, tuple(results), tuple(retrieved))

    def _judge_stored(self, exchange: Exchange, ctx: CheckContext, secrets: list[tuple[str, str]],
                      proxy_url: str | None) -> tuple[Exchange, list[CheckResult], list[dict[str, Any]]]:
        """Retrieve what the upstream stored and run the conversion and IOD checks on it.

        References
        ----------
        PS3.18 §10.4 (Retrieve), §10.5.3 (Retrieve URLs of the Store Instances Response).
        """
        assert exchange.response is not None
        parsed = parse_store_response(exchange.response)
        urls = [r.retrieve_url for r in parsed.referenced if r.retrieve_url]
        if not urls and parsed.retrieve_url:
            urls = [parsed.retrieve_url]
        documents: list[Document] = []
        log_rows: list[dict[str, Any]] = []
        headers = {"Accept": _RETRIEVE_ACCEPT, **dict(secrets)}
        with httpx.Client(verify=self._verify, trust_env=False, timeout=self.settings.timeout) as client:
            for url in dict.fromkeys(urls):
                target = self._to_upstream(url, proxy_url)
                row: dict[str, Any] = {"url": target}
                try:
                    with client.stream("GET", target, headers=headers) as reply:
                        row["status"] = reply.status_code
                        tee = BodyTee(self.settings.root, new_exchange_id(), "retrieved",
                                      self.settings.body_threshold)
                        for chunk in reply.iter_raw():
                            tee.write(chunk)
                        body = tee.finish()
                        ctype = reply.headers.get("content-type", "")
                except httpx.HTTPError as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    log_rows.append(row)
                    continue
                row["_sha256"], row["_size"] = body.sha256, body.size
                if body.file is not None:
                    row["_file"] = body.file
                if row["status"] != 200:
                    row["error"] = f"HTTP {row['status']}"
                    log_rows.append(row)
                    continue
                result = decode_multipart(body.body(), ctype, spool_dir=str(self.settings.root / BODIES_DIR))
                parts = [p for p in result.parts if p.content_type is None or p.content_type.is_(mt.APPLICATION_DICOM)]
                row["instances"] = len(parts)
                documents += [Document(mt.APPLICATION_DICOM, p.body, DocumentRole.RETRIEVED,
                                       f"retrieved {target} part {p.index + 1}") for p in parts]
                log_rows.append(row)
        stored = dataclasses.replace(exchange, documents=exchange.documents + tuple(documents))
        if not documents:
            return stored, [], log_rows
        conversion_ctx = CheckContext(catalogue=self.catalogue)
        conversion_ctx.seed(stored, "stow_request", ctx.stow_request(exchange))
        results = REGISTRY.run(conversion_ctx, stored, tags=["conversion"])
        alone = dataclasses.replace(stored, request=None, response=None)  # the IOD checks judge only what was stored
        results += REGISTRY.run(CheckContext(catalogue=self.catalogue), alone, tags=["iod"])
        return stored, results, log_rows

    def _to_upstream(self, url: str, proxy_url: str | None) -> str:
        """Point a Retrieve URL that names the proxy at the upstream instead (fetch straight from the origin)."""
        if proxy_url is None:
            return url
        mine = httpx.URL(proxy_url)
        parsed = httpx.URL(url)
        if parsed.host == mine.host and parsed.port == mine.port:
            return str(parsed.copy_with(scheme=self._upstream.scheme, host=self._upstream.host,
                                        port=self._upstream.port))
        return url


def _rebuild_finding(cls: type[Finding], args: tuple[Any, ...], state: dict[str, Any]) -> Finding:
    finding = cls.__new__(cls, *args)
    finding.__dict__.update(state)
    return finding


class _FindingPickler(pickle.Pickler):
    """Pickle findings too: their keyword-only constructor defeats the default pickling of exceptions."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Finding):
            return _rebuild_finding, (type(obj), obj.args, dict(obj.__dict__))
        return NotImplemented


_FRAME = struct.Struct("!Q")


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_FRAME.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """Return the next frame, or ``None`` at the end of the stream."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


# The judging process keeps its standard output for answers (anything else printed goes to standard error),
# takes the proxy's module search path (first frame), then runs _serve_judging.
_JUDGE_BOOT = """\
import os, pickle, struct, sys
answers = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
(size,) = struct.unpack("!Q", sys.stdin.buffer.read(8))
sys.path[:] = pickle.loads(sys.stdin.buffer.read(size))
from wic_conformance.actors.proxy import _serve_judging
_serve_judging(answers)
"""


def _serve_judging(answers: IO[bytes]) -> None:
    """Run the judging process: read ``(settings, niceness)``, then judge each exchange read, in order.

    Requests are length-prefixed pickles on standard input, answers the same on ``answers`` (the
    original standard output); the end of standard input, when the proxy stops or dies, ends
    the process.
    """
    source = sys.stdin.buffer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the proxy, which then drains this process
    frame = _read_frame(source)
    if frame is None:
        return
    settings, niceness = pickle.loads(frame)
    try:
        os.nice(niceness)
    except OSError:  # pragma: no cover - not allowed here: judge at the same priority
        pass
    judge = _Judge(settings)
    _write_frame(answers, pickle.dumps(os.getpid()))
    while (frame := _read_frame(source)) is not None:
        try:
            exchange, secrets, proxy_url = pickle.loads(frame)
            judgement = judge.judge(exchange, secrets, proxy_url)
        except Exception:
            judgement = _Judgement(None, (), (), traceback.format_exc())
        buffer = io.BytesIO()
        _FindingPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(judgement)
        _write_frame(answers, buffer.getvalue())


class _JudgeGone(BrokenExecutor):
    """The judging process ended (or never started)."""


class _JudgeProcess:
    """The judging process seen from the proxy: exchanges go in through a pipe, judgements come back in order.

    A feeding thread pickles and writes (the event loop never waits for the pipe), a reading
    thread resolves the futures.  A plain child interpreter (not :mod:`multiprocessing`) so
    that nothing of the caller's ``__main__`` is run again in it.
    """

    def __init__(self, settings: _JudgeSettings, niceness: int) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", _JUDGE_BOOT], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, close_fds=True)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._input, self._output = self._process.stdin, self._process.stdout
        try:
            _write_frame(self._input, pickle.dumps(list(sys.path)))
            _write_frame(self._input, pickle.dumps((settings, niceness), protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException:
            self._process.kill()
            self._process.wait()
            raise
        self.ready: Future[int] = Future()
        self._queue: queue.SimpleQueue[tuple[Future[bytes], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._waiting: collections.deque[Future[bytes]] = collections.deque()
        self._lock = threading.Lock()
        self._gone: str | None = None
        self._closed = False
        self._feeder = threading.Thread(target=self._feed, name="wic-proxy-judge-feed", daemon=True)
        self._reader = threading.Thread(target=self._read, name="wic-proxy-judge-read", daemon=True)
        self._feeder.start()
        self._reader.start()

    def submit(self, *args: Any) -> Future[bytes]:
        """Queue one exchange ``(exchange, secrets, proxy_url)``; the future gets the pickled judgement."""
        future: Future[bytes] = Future()
        with self._lock:
            if self._gone is not None or self._closed:
                raise _JudgeGone(self._gone or "the judging process is closed")
            self._queue.put((future, args))
        return future

    def _feed(self) -> None:
        while (item := self._queue.get()) is not None:
            future, args = item
            try:
                data = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                future.set_exception(exc)
                continue
            with self._lock:
                if self._gone is not None:
                    future.set_exception(_JudgeGone(self._gone))
                    continue
                self._waiting.append(future)
            try:
                _write_frame(self._input, data)
            except OSError:  # the process is gone: the reading thread fails what waits
                pass
        try:
            self._input.close()  # the process answers what it has, then ends
        except OSError:
            pass

    def _read(self) -> None:
        frame = _read_frame(self._output)
        try:
            pid = None if frame is None else int(pickle.loads(frame))
        except Exception:  # not the first answer expected: treat the process as gone
            log.warning("the judging process answered %d bytes that are not its process ID", len(frame or b""))
            pid = None
        if pid is not None:
            self.ready.set_result(pid)
            while (frame := _read_frame(self._output)) is not None:
                with self._lock:
                    future = self._waiting.popleft() if self._waiting else None
                if future is None:
                    log.warning("the judging process answered an exchange it was not given")
                    break
                future.set_result(frame)
        try:
            status: int | None = self._process.wait(10)
        except subprocess.TimeoutExpired:
            status = None
        with self._lock:
            self._gone = f"the judging process ended (exit status {status})"
            waiting = list(self._waiting)
            self._waiting.clear()
        for future in waiting:
            future.set_exception(_JudgeGone(self._gone))
        if not self.ready.done():
            self.ready.set_exception(_JudgeGone(self._gone))
        # what is still queued, the feeding thread fails (it sees _gone)

    def close(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Let the process answer what it was given and end; with ``wait``, wait for that."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if wait:
            self._feeder.join(timeout)
            self._reader.join(timeout)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._reader.join(timeout)
            if not self._reader.is_alive():
                self._output.close()


class _AsyncTee:
    """A :class:`BodyTee` fed from the event loop: hashing and disk writes of a large body run in a worker thread.

    Chunks of a body still below the tee's threshold are taken inline (a memory copy);
    from the first chunk past it, every chunk goes to the (single, so ordered) worker, and
    at most ``depth`` chunks wait there: a disk slower than the network slows the relay
    instead of filling memory.
    """

    def __init__(self, tee: BodyTee, pool: ThreadPoolExecutor, depth: int = 8) -> None:
        self.tee = tee
        self.pool = pool
        self.depth = depth
        self._queued: collections.deque[Future[None]] = collections.deque()
        self._offloaded = False

    async def write(self, chunk: bytes) -> None:
        if not self._offloaded and self.tee.size + len(chunk) <= self.tee.threshold:
            self.tee.write(chunk)
            return
        self._offloaded = True
        self._queued.append(self.pool.submit(self.tee.write, chunk))
        while len(self._queued) > self.depth:
            await asyncio.wrap_future(self._queued.popleft())

    async def finish(self) -> RecordedBody:
        while self._queued:
            await asyncio.wrap_future(self._queued.popleft())
        if not self._offloaded:
            return self.tee.finish()
        return await asyncio.wrap_future(self.pool.submit(self.tee.finish))


# -- the upstream side: a lean HTTP/1.1 client -------------------------------------------------------------
#: Response body bytes buffered from the upstream before the proxy stops reading from it (the client is slower).
_READ_HIGH_WATER = 4 << 20
#: Request body bytes waiting in the upstream connection's write buffer before the relay waits for it to drain.
_WRITE_HIGH_WATER = 4 << 20


class _UpstreamError(Exception):
    """The upstream connection failed; ``kind`` says how (``ConnectError``, ``ReadTimeout``...)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail or 'no detail'}")
        self.kind = kind


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _UpstreamError) else f"{type(exc).__name__}: {exc or 'no detail'}"


#: Largest response head (status line and header fields) taken from the upstream.
_MAX_RESPONSE_HEAD = 1 << 20


class _ResponseFraming:
    """Incremental HTTP/1.1 response framing (RFC 9112) by h11: heads, then each body by length, chunks or close.

    An h11 client connection is primed with a body-less request of the same method (the
    real request head and body are written by the relay itself), so that h11 frames the
    answer as it would for that request: interim (1xx) responses are skipped, a response
    to HEAD and a 204 or 304 have no body, chunked bodies come out de-chunked and
    trailers are dropped.  Malformed input raises :class:`_UpstreamError`.
    """

    def __init__(self, *, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.reason = ""
        self.http_version = "HTTP/1.1"
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = False
        self.head_done = False
        self.complete = False
        self.until_close = False
        self.received = 0
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_RESPONSE_HEAD)
        self._conn.send(h11.Request(method="HEAD" if head_only else "GET", target="/", headers=[("Host", "upstream")]))
        self._conn.send(h11.EndOfMessage())

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the connection (``b""`` at its end); return the body pieces they complete."""
        pieces: list[bytes] = []
        if self.complete:
            return pieces
        try:
            self._conn.receive_data(data)
            while True:
                event = self._conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if isinstance(event, h11.InformationalResponse):
                    continue  # interim: not relayed, as a client would not act on it; the final head follows
                if isinstance(event, h11.Response):
                    self._head(event)
                elif isinstance(event, h11.Data):
                    if event.data:
                        self.received += len(event.data)
                        pieces.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self.complete = True
                    self.keep_alive = self._conn.their_state is h11.DONE and self._conn.our_state is h11.DONE
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except h11.RemoteProtocolError as exc:
            raise _UpstreamError("RemoteProtocolError", str(exc)) from None
        return pieces

    def _head(self, event: h11.Response) -> None:
        self.status, self.reason = event.status_code, event.reason.decode("latin-1")
        self.http_version = f"HTTP/{event.http_version.decode('latin-1')}"
        # h11 keeps the names as sent in ``raw_items``; the recording keeps the Manager's spelling
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]
        self.head_done = True
        framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in self.headers)
        no_body = self.head_only or self.status in (204, 304)
        self.until_close = not framed and not no_body
        self.keep_alive = not self.until_close


class _UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to the upstream, carrying one exchange at a time and kept alive between them.

    Responses are framed by :class:`_ResponseFraming`; reading pauses while more than
    :data:`_READ_HIGH_WATER` bytes of the body wait to be relayed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._drained: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.begin(head_only=False)

    def begin(self, *, head_only: bool) -> None:
        """Get ready for the next response."""
        self.response = _ResponseFraming(head_only=head_only)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._error: _UpstreamError | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            pieces = self.response.feed(data)
        except _UpstreamError as exc:
            self._fail(exc)
            return
        for piece in pieces:
            self._chunks.append(piece)
            self._buffered += len(piece)
        if self._buffered > _READ_HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        if pieces or self.response.head_done or self.response.complete:
            self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response.until_close and not response.complete and self._error is None:
            response.complete = True  # the body delimited by the end of the connection (RFC 9112 §6.3)
            self._wake()
        elif not response.complete:
            detail = "the upstream closed the connection" + (f" ({exc})" if exc else "")
            if response.head_done:
                detail += f" after {response.received} bytes of the response body"
            self._fail(_UpstreamError("RemoteProtocolError" if exc is None else "ReadError", detail), close=False)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(_UpstreamError("WriteError", "the upstream closed the connection"))
            self._drained.exception()  # retrieved: nobody may be waiting

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # used by the relay
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: _UpstreamError, *, close: bool = True) -> None:
        if self._error is None:
            self._error = error
        if close and self.transport is not None:
            self.transport.close()
        self._wake()

    async def _wait(self, timeout: float | None, kind: str, what: str) -> None:
        self._waiter = self._loop.create_future()
        try:
            await asyncio.wait_for(self._waiter, timeout)
        except TimeoutError:
            raise _UpstreamError(kind, f"no {what} from the upstream within {timeout:g} s") from None
        finally:
            self._waiter = None

    async def write(self, *pieces: bytes, timeout: float) -> None:
        """Send bytes to the upstream, waiting while its write buffer is full."""
        if self.lost or self.transport is None or self.transport.is_closing():
            raise self._error or _UpstreamError("WriteError", "the upstream closed the connection")
        if len(pieces) == 1:
            self.transport.write(pieces[0])
        else:
            self.transport.writelines(pieces)
        if self._drained is not None and not self._drained.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), timeout)
            except TimeoutError:
                raise _UpstreamError("WriteTimeout", f"the upstream took nothing for {timeout:g} s") from None

    async def response_head(self) -> None:
        """Wait for the (final) response head."""
        while not self.response.head_done:
            if self._error is not None:
                raise self._error
            await self._wait(None, "ReadTimeout", "response")

    async def body(self, timeout: float) -> AsyncIterator[bytes]:
        """Yield the response body as it arrives (what is buffered comes out as one piece)."""
        while True:
            if self._chunks:
                data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._reading_paused and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                yield data
            elif self.response.complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._wait(timeout, "ReadTimeout", "response data")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _UpstreamPool:
    """Keep-alive connections to the upstream origin (made on the relaying event loop)."""

    def __init__(self, url: httpx.URL, verify: bool | ssl.SSLContext, *, connect_timeout: float,
                 keep: int = 20) -> None:
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = httpx.create_ssl_context(verify=verify, trust_env=False) if url.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._keep = keep
        self._idle: list[_UpstreamConnection] = []
        self.loop = asyncio.get_running_loop()

    async def acquire(self) -> _UpstreamConnection:
        """Return an idle connection that is still open, or a new one."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                lambda: _UpstreamConnection(self.loop), self._host, self._port, ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None), self._connect_timeout)
        except TimeoutError:
            raise _UpstreamError("ConnectTimeout", f"no connection to {self._host}:{self._port} within "
                                                   f"{self._connect_timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, TLS handshake or certificate failures
            raise _UpstreamError("ConnectError", str(exc) or type(exc).__name__) from exc
        return conn

    def release(self, conn: _UpstreamConnection, *, reusable: bool) -> None:
        """Keep a connection for the next exchange, or close it."""
        response = conn.response
        if reusable and response.complete and response.keep_alive and not conn.lost and len(self._idle) < self._keep:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def _ssl_verify(verify: bool | str | os.PathLike[str]) -> bool | ssl.SSLContext:
    """Return httpx's ``verify``: a bool, or a context trusting the CA bundle at a path."""
    if isinstance(verify, bool):
        return verify
    path = Path(verify)
    if not path.exists():
        raise ConfigError(f"CA bundle not found: {path}")
    return ssl.create_default_context(cafile=str(path))


@dataclass(slots=True)
class _Transfer:
    """Per-exchange bookkeeping shared by the upload generator and the handler."""

    request_complete: bool = False
    client_gone: bool = False
    timings: dict[str, float] = field(default_factory=dict)


class RecordingProxy:
    """A streaming, recording, judging reverse proxy in front of one DICOMweb origin.

    Parameters
    ----------
    upstream : str
        The upstream's DICOMweb service root (``http[s]://host:port/path``); the proxy's
        :attr:`url` has the same path, and every path is forwarded unchanged to the upstream origin.
    record_dir : str or Path, optional
        Where to write the recording (journal, ``recording.har``, side files); ``None``
        keeps bodies in a temporary folder removed at :meth:`stop`.
    redact : bool
        Replace Authorization, Proxy-Authorization, Cookie and Set-Cookie values in the
        record (and in the judged exchanges).
    verify : bool or path
        Verify the upstream's TLS certificate (``True``), not (``False``), or against a CA bundle.
    observers : iterable
        Notification hooks (see the module documentation).
    judge : bool
        Judge STOW-RS exchanges with the check registry.
    verify_stored : bool
        After a STOW-RS exchange, retrieve what the upstream stored and run the conversion and IOD checks.
    body_threshold : int
        Largest body kept inline in the HAR; larger ones go to side files.
    catalogue : Catalogue, optional
        Catalogue (with any rule profile) used to judge.
    timeout : float
        Longest wait, in seconds, for the upstream to accept or send data.

    References
    ----------
    RFC 9110 §7.6; PS3.18 §10.5; IHE RAD TF-2 §4.108 (RAD-108).
    """

    def __init__(
        self,
        upstream: str,
        *,
        record_dir: str | os.PathLike[str] | None = None,
        redact: bool = True,
        verify: bool | str | os.PathLike[str] = True,
        observers: Iterable[Any] = (),
        judge: bool = True,
        verify_stored: bool = False,
        body_threshold: int = DEFAULT_BODY_THRESHOLD,
        catalogue: Catalogue | None = None,
        timeout: float = 300.0,
    ) -> None:
        url = httpx.URL(upstream)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"the upstream must be an http(s) URL with a host, not {upstream!r}")
        if body_threshold < 0:
            raise ConfigError("body_threshold must not be negative")
        self.upstream = str(url).rstrip("/")
        self._upstream_url = url.copy_with(query=None, fragment=None)
        self._base_path = url.path.rstrip("/")
        self.redact = redact
        self._verify = _ssl_verify(verify)
        self.observers = list(observers)
        self.judge = judge
        self.verify_stored = verify_stored
        self.body_threshold = body_threshold
        self.catalogue = catalogue or default_catalogue()
        self.timeout = timeout
        self._tmp: str | None = None
        if record_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="wic-proxy-")
            self.record_dir: Path | None = None
            self._root = Path(self._tmp)
        else:
            self.record_dir = self._root = Path(record_dir)
        (self._root / BODIES_DIR).mkdir(parents=True, exist_ok=True)
        self._journal = Journal(self._root / JOURNAL_NAME) if self.record_dir is not None else None
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._verdicts: list[ProxyVerdict] = []
        self._pending: set[Future[Any]] = set()
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wic-proxy-record")
        self._judge_settings = _JudgeSettings(catalogue, verify_stored, verify if isinstance(verify, bool) else
                                              os.fspath(verify), self._root, body_threshold, timeout, self.upstream)
        self._judge_process: _JudgeProcess | None = None
        self._judge_fallback = False
        self._local_judge: _Judge | None = None
        self._listening_url: str | None = None
        self._tee_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wic-proxy-tee")
        self._upstream_pool: _UpstreamPool | None = None
        self._origin = str(self._upstream_url.copy_with(raw_path=b"/"))[:-1]
        self._host_header = self._upstream_url.netloc.decode("ascii")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: AsgiServer | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------
    def _make_server(self, host: str, port: int, ssl_certfile: str | None, ssl_keyfile: str | None) -> AsgiServer:
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ConfigError("TLS needs both a certificate and its key")
        # The upstream's Date and Server fields are relayed, so uvicorn must not add its own.
        # httptools and uvloop: the C parser and event loop take about a fifth off the relay's time per request.
        return AsgiServer(self, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                          h11_max_incomplete_event_size=1 << 20, server_header=False, date_header=False,
                          http="httptools", loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio")

    def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl_certfile: str | None = None,
              ssl_keyfile: str | None = None) -> RecordingProxy:
        """Listen on ``host:port`` (port 0 = any free port) in a background thread; HTTPS given a certificate."""
        if self._closed:
            raise RuntimeError("a stopped proxy cannot be started again")
        if self._server is None:
            self._server = self._make_server(host, port, ssl_certfile, ssl_keyfile)
            self._server.start()
            self._listening_url = self._server.url
            self._start_judging()
        return self

    def serve_forever(self, host: str = "127.0.0.1", port: int = 0, *, ssl_certfile: str | None = None,
                      ssl_keyfile: str | None = None, announce: Callable[[str], None] | None = None) -> None:
        """Serve in the calling thread until interrupted, then finish the recording (the command-line use)."""
        server = self._make_server(host, port, ssl_certfile, ssl_keyfile)

        def listening(base: str) -> None:
            self._listening_url = base
            self._start_judging()
            if announce is not None:
                announce(base + self._base_path)

        try:
            server.serve_forever(announce=listening)
        finally:
            self._upstream_pool = None  # its event loop is gone; the sockets close with it
            self.stop()

    def stop(self) -> None:
        """Stop listening, wait for pending verdicts, write ``recording.har`` and release temporary files."""
        if self._closed:
            return
        if self._server is not None:
            pool, loop = self._upstream_pool, self._loop
            if pool is not None and loop is not None and loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(_close_pool(pool), loop).result(5.0)
                except Exception:  # closing is best effort: the server stops anyway
                    log.debug("closing the upstream connections failed", exc_info=True)
            self._server.stop()
        self._upstream_pool = None
        self.drain()
        self._pool.shutdown(wait=True)
        self._tee_pool.shutdown(wait=True)
        judge_process, self._judge_process = self._judge_process, None
        if judge_process is not None:
            judge_process.close()
        self._closed = True
        if self._journal is not None:
            self._journal.close()
            assert self.record_dir is not None
            write_har(self.record_dir)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the proxy's equivalent of the upstream root (same path), e.g. ``http://127.0.0.1:PORT/dicom-web``."""
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return self._server.url + self._base_path

    @property
    def judging_process_id(self) -> int | None:
        """Return the judging process's ID once it is ready (``None``: not started, not judging, or judging here)."""
        judge = self._judge_process
        if judge is None or not judge.ready.done() or judge.ready.cancelled() or judge.ready.exception():
            return None
        return judge.ready.result()

    @property
    def har_path(self) -> Path | None:
        """Return where ``recording.har`` is (re)written, or ``None`` when not recording to a folder."""
        return None if self.record_dir is None else self.record_dir / HAR_NAME

    def check_errors(self) -> None:
        """Re-raise, in the caller's thread, errors raised inside the proxy's handler (for tests)."""
        if self._server is not None:
            self._server.check_errors()

    # -- the judging process --------------------------------------------------------------------
    def _start_judging(self) -> None:
        """Start the judging process (once, in the background); if it cannot start, judging uses a thread here.

        Judging is CPU-bound Python: in a thread of this process it would hold the GIL the relay
        needs.  One long-lived child interpreter (niced) takes the ended exchanges in order;
        :meth:`drain` waits for its verdicts.
        """
        if not self.judge or self._judge_process is not None or self._judge_fallback:
            return
        try:
            judge = _JudgeProcess(self._judge_settings, JUDGE_NICENESS)
        except Exception as exc:  # e.g. no process can be started here, or an unpicklable catalogue
            self._fall_back(f"{type(exc).__name__}: {exc}")
            return
        self._judge_process = judge
        self._track(judge.ready)
        judge.ready.add_done_callback(self._judging_started)

    def _judging_started(self, ready: Future[int]) -> None:
        error = None if ready.cancelled() else ready.exception()
        if error is not None:
            self._fall_back(f"{type(error).__name__}: {error}")
        elif not ready.cancelled():
            log.debug("judging in process %d", ready.result())

    def _fall_back(self, reason: str) -> None:
        """Judge in a thread of this process from now on (said once in the log)."""
        with self._lock:
            judge, self._judge_process = self._judge_process, None
            first, self._judge_fallback = not self._judge_fallback, True
        if first:
            log.warning("the judging process is not available (%s); judging in a thread of the proxy instead",
                        reason)
        if judge is not None:
            judge.close(wait=False)

    def _submit_judging(self, exchange: Exchange, secrets: list[tuple[str, str]]) -> Future[bytes] | None:
        judge = self._judge_process
        if judge is None:
            return None
        try:
            return judge.submit(exchange, secrets, self._listening_url)
        except BrokenExecutor as exc:  # gone (or closed by a fallback meanwhile)
            self._fall_back(str(exc))
            return None

    def _judgement(self, exchange: Exchange, secrets: list[tuple[str, str]], remote: Future[bytes] | None,
                   ) -> _Judgement:
        """Return the judging process's judgement, or judge here (fallback)."""
        if remote is not None:
            try:
                judgement: _Judgement = pickle.loads(remote.result())
                return judgement
            except BrokenExecutor as exc:
                self._fall_back(f"{type(exc).__name__}: {exc}")
            except Exception:  # e.g. this exchange could not be pickled: judge it here
                log.warning("the judging process could not judge exchange %s; judging it here", exchange.id,
                            exc_info=True)
        if self._local_judge is None:
            self._local_judge = _Judge(self._judge_settings)
        return self._local_judge.judge(exchange, secrets, self._listening_url)

    def _track(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    # -- recorded exchanges and verdicts --------------------------------------------------------
    def drain(self, timeout: float = 120.0) -> None:
        """Wait until no exchange is in flight and every ended one has been judged and written to the journal.

        A client may see the end of a response a moment before the proxy has recorded it.  Just
        after :meth:`start`, this also waits until the judging process is ready.
        """
        deadline = time.monotonic() + timeout
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout)
            pending = list(self._pending)
        if pending:
            wait_futures(pending, max(0.0, deadline - time.monotonic()))
        if self._journal is not None:
            self._journal.flush(max(0.0, deadline - time.monotonic()))

    @property
    def exchanges(self) -> list[Exchange]:
        """Return the relayed exchanges recorded (and judged) so far, in the order they ended."""
        with self._lock:
            return list(self._exchanges)

    @property
    def verdicts(self) -> list[ProxyVerdict]:
        """Return the verdicts on the recorded exchanges."""
        with self._lock:
            return list(self._verdicts)

    def clear(self) -> None:
        """Forget recorded exchanges and verdicts (the recording on disk stays)."""
        self.drain()
        with self._lock:
            self._exchanges.clear()
            self._verdicts.clear()

    def check(self) -> list[Finding]:
        """Return every finding drawn by the recorded exchanges (after waiting for pending verdicts)."""
        self.drain()
        return [f for v in self.verdicts for f in v.findings]

    # -- observers ------------------------------------------------------------------------------
    def _notify(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            hook = getattr(observer, event, None)
            if hook is None and event == "done" and callable(observer):
                hook = observer
            if hook is None:
                continue
            try:
                hook(*args)
            except Exception:
                log.exception("proxy observer %r failed on %s", observer, event)

    # -- the ASGI application -------------------------------------------------------------------
    def _get_pool(self) -> _UpstreamPool:
        if self._upstream_pool is None:  # made on the server's event loop, at the first request
            self._loop = asyncio.get_running_loop()
            self._upstream_pool = _UpstreamPool(self._upstream_url, self._verify, connect_timeout=30.0)
        return self._upstream_pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Relay one HTTP request (ASGI entry point)."""
        if scope["type"] != "http":
            return
        with self._lock:
            self._inflight += 1
        try:
            await self._relay(scope, receive, send)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        pool = self._get_pool()
        ident = new_exchange_id()
        started = time.time()
        clock = time.perf_counter()
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        request_target = (raw_path + (b"?" + query if query else b"")).decode("latin-1")
        url = self._origin + request_target
        http_version = f"HTTP/{scope.get('http_version', '1.1')}"
        received = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        names = {k.lower() for k, _ in received}
        chunked = "transfer-encoding" in names
        length = next((v.strip() for k, v in received if k.lower() == "content-length"), "")
        has_body = chunked or (length.isdigit() and int(length) > 0)
        flow = Flow(ident, started, method, url, Headers(tuple(received)))
        request_record = {"method": method, "url": url, "httpVersion": http_version, "headers": received}
        if self._journal is not None:
            self._journal.append({"event": "started", "id": ident, "started": started, "request": {
                **request_record, "headers": redact_headers(received, self.redact)}})
        self._notify("request", flow)

        forwarded = [(k, v) for k, v in forwardable_headers(received) if k.lower() not in ("host", "expect")]
        if chunked:
            forwarded = [(k, v) for k, v in forwarded if k.lower() != "content-length"]
            forwarded.append(("Transfer-Encoding", "chunked"))
        elif not has_body and method in ("POST", "PUT", "PATCH") and "content-length" not in names:
            forwarded.append(("Content-Length", "0"))
        forwarded.append(("Via", _VIA))
        head = "".join([f"{method} {request_target} HTTP/1.1\r\nHost: {self._host_header}\r\n",
                        *(f"{k}: {v}\r\n" for k, v in forwarded), "\r\n"]).encode("latin-1")
        request_tee = _AsyncTee(BodyTee(self._root, ident, "request", self.body_threshold), self._tee_pool)
        state = _Transfer()
        timeout = self.timeout

        async def upload(conn: _UpstreamConnection) -> None:
            """Send the request: the head goes out with the first piece of the body (one write for a small request)."""
            pending = [head]
            while has_body:
                message = await receive()
                if message["type"] == "http.disconnect":
                    state.client_gone = True
                    raise _ClientGone("the client disconnected during the upload")
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                if chunk:
                    await request_tee.write(chunk)
                    flow.request_bytes += len(chunk)
                    pending += [b"%x\r\n" % len(chunk), chunk, b"\r\n"] if chunked else [chunk]
                if not more:
                    if chunked:
                        pending.append(b"0\r\n\r\n")
                    break
                if pending:
                    await conn.write(*pending, timeout=timeout)
                    pending = []
            if pending:
                await conn.write(*pending, timeout=timeout)
            state.request_complete = True
            state.timings["sent"] = time.perf_counter()

        conn: _UpstreamConnection | None = None
        uploading: asyncio.Future[None] | None = None
        failure: BaseException | None = None
        try:
            conn = await pool.acquire()
            conn.begin(head_only=method == "HEAD")
            uploading = asyncio.ensure_future(upload(conn))
            answer = asyncio.ensure_future(conn.response_head())
            await asyncio.wait((uploading, answer), return_when=asyncio.FIRST_COMPLETED)
            if uploading.done() and uploading.exception() is not None and not answer.done():
                failure = uploading.exception()  # the client left, or the upstream took no more
                if isinstance(failure, _UpstreamError):  # it may still have answered (early, then closed)
                    failure = None
            if failure is None:
                if uploading.done() and not answer.done():  # the request is out: the read timeout runs
                    try:
                        await asyncio.wait_for(answer, timeout)
                    except TimeoutError:
                        raise _UpstreamError("ReadTimeout", f"no response within {timeout:g} s") from None
                answer.result()
            else:
                answer.cancel()
        except (_ClientGone, _UpstreamError, OSError) as exc:
            failure = exc
        if failure is not None:
            if uploading is not None:
                _settle(uploading)
            if conn is not None:
                conn.abort()
            gone = isinstance(failure, _ClientGone)
            reason = str(failure) if gone else f"the upstream failed before answering: {_describe(failure)}"
            flow.error = reason
            self._notify("error", flow)
            if not gone:
                message = f"wic-conformance proxy: {reason}\n".encode()
                await send({"type": "http.response.start", "status": 502, "headers": [
                    (b"content-type", mt.TEXT_PLAIN.encode() + b"; charset=utf-8"),
                    (b"content-length", str(len(message)).encode()), (b"connection", b"close"),
                    (b"via", _VIA.encode())]})
                await send({"type": "http.response.body", "body": message, "more_body": False})
            self._finish(ident, started, clock, request_record, await request_tee.finish(), None, None, state,
                         truncated={"side": "request", "reason": reason})
            return
        assert conn is not None and uploading is not None

        state.timings["headers"] = time.perf_counter()
        response = conn.response
        response_headers = response.headers
        flow.status, flow.response_headers = response.status, Headers(tuple(response_headers))
        self._notify("response", flow)
        relayed = [*forwardable_headers(response_headers), ("Via", _VIA)]
        early = not state.request_complete
        if early:  # the upstream answered before the body ended: whatever follows, this connection ends here
            relayed.append(("Connection", "close"))
        response_record = {"status": response.status, "statusText": response.reason,
                           "httpVersion": response.http_version,
                           "headers": response_headers}
        response_tee = _AsyncTee(BodyTee(self._root, ident, "response", self.body_threshold), self._tee_pool)
        truncated: dict[str, Any] | None = None
        watcher = None if early else asyncio.ensure_future(_wait_disconnect(receive))
        completed = False
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in relayed]})
            async for chunk in conn.body(timeout):
                await response_tee.write(chunk)
                flow.response_bytes += len(chunk)
                if watcher is not None and watcher.done():
                    raise _ClientGone("the client disconnected during the response")
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not uploading.done():
                # An early answer: as the client sends the rest, relay it for as long as the upstream takes it,
                # and end the response (closing the connection) only then, as the upstream itself would.
                await asyncio.wait((uploading,))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            completed = True
            if not state.request_complete:
                truncated = {"side": "request",
                             "reason": "the upstream answered before the request body was complete"}
        except (_ClientGone, _UpstreamError, OSError) as exc:
            reason = (str(exc) if isinstance(exc, _ClientGone) else
                      f"the upstream failed during the response: {_describe(exc)}")
            flow.error = reason
            truncated = {"side": "response", "reason": reason}
            self._notify("error", flow)
        finally:
            if watcher is not None:
                watcher.cancel()
            _settle(uploading)
            if completed:
                pool.release(conn, reusable=state.request_complete)
            else:
                conn.abort()
        # An incomplete response makes uvicorn close the connection: the client sees the body cut short.
        self._finish(ident, started, clock, request_record, await request_tee.finish(), response_record,
                     await response_tee.finish(), state,
                     truncated=None if completed and truncated is None else truncated)

    # -- recording and judging ------------------------------------------------------------------
    def _finish(self, ident: str, started: float, clock: float, request_record: dict[str, Any],
                request_body: RecordedBody, response_record: dict[str, Any] | None,
                response_body: RecordedBody | None,
                state: _Transfer, *, truncated: dict[str, Any] | None) -> None:
        """Record an ended exchange (journal entry, fsynced) and hand it to the worker to judge."""
        end = time.perf_counter()
        sent = state.timings.get("sent", state.timings.get("headers", end))
        headers_at = state.timings.get("headers", end)
        timings = {"send": (sent - clock) * 1000, "wait": max(0.0, headers_at - sent) * 1000,
                   "receive": (end - headers_at) * 1000 if response_record else 0.0}
        method, url = request_record["method"], request_record["url"]
        transaction = _transaction(method, url)
        if truncated is not None:
            truncated = {**truncated, "requestBytes": request_body.size,
                         "responseBytes": response_body.size if response_body else 0}
        entry = har_entry(started=started, request=request_record, request_body=request_body,
                          response=response_record, response_body=response_body, timings=timings,
                          redact=self.redact, truncated=truncated,
                          extra={"_wic": {"id": ident, "transaction": transaction, "judged": False}})
        if self._journal is not None:
            self._journal.append({"event": "entry", "id": ident, "entry": entry}, sync=True)
        secrets = [(k, v) for k, v in request_record["headers"] if k.lower() in ("authorization", "cookie")]
        exchange = Exchange(
            request=Request(method, url, Headers(tuple(redact_headers(request_record["headers"], self.redact))),
                            request_body.body(), request_record["httpVersion"]),
            response=None if response_record is None else Response(
                response_record["status"], response_record["statusText"],
                Headers(tuple(redact_headers(response_record["headers"], self.redact))),
                (response_body or RecordedBody()).body(), response_record["httpVersion"]),
            id=ident, started=started, elapsed=end - clock, source="proxy", truncated=truncated is not None)
        judged = self.judge and transaction == "STOW-RS" and not exchange.truncated and exchange.response is not None
        remote = self._submit_judging(exchange, secrets) if judged else None
        self._track(self._pool.submit(self._conclude, exchange, transaction, secrets, judged, remote))

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _conclude(self, exchange: Exchange, transaction: str, secrets: list[tuple[str, str]], judged: bool,
                  remote: Future[bytes] | None) -> None:
        """Collect an ended exchange's judgement (recording thread), record the verdict and tell the observers.

        Exchanges are concluded in the order they ended; the judging process works ahead on those queued.
        """
        results: list[CheckResult] = []
        retrieved: list[dict[str, Any]] = []
        if judged:
            judgement = self._judgement(exchange, secrets, remote)
            if judgement.failure:
                log.error("judging exchange %s failed:\n%s", exchange.id, judgement.failure)
            exchange = judgement.exchange or exchange
            results, retrieved = list(judgement.results), list(judgement.retrieved)
        status = exchange.response.status if exchange.response is not None else 0
        assert exchange.request is not None
        verdict = ProxyVerdict(exchange.id, transaction, exchange.request.method, exchange.request.url, status,
                               judged, exchange.truncated, tuple(results), tuple(retrieved))
        if judged and self._journal is not None:
            self._journal.append({"event": "wic", "id": exchange.id, "wic": verdict.to_dict()}, sync=True)
        with self._lock:
            self._exchanges.append(exchange)
            self._verdicts.append(verdict)
        self._notify("done", exchange, results)


async def _close_pool(pool: _UpstreamPool) -> None:
    pool.close()


def _settle(task: asyncio.Future[None]) -> None:
    """Cancel a task if it still runs; either way, take its outcome (no "exception never retrieved")."""
    if not task.done():
        task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def _wait_disconnect(receive: Receive) -> Message:
    """Return once the client has gone (ASGI ``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message


def run_proxy(
    upstream: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    record_dir: str | os.PathLike[str] | None = None,
    redact: bool = True,
    verify: bool | str | os.PathLike[str] = True,
    judge: bool = True,
    verify_stored: bool = False,
    body_threshold: int = DEFAULT_BODY_THRESHOLD,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    catalogue: Catalogue | None = None,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Run a recording proxy in the foreground until interrupted (the ``proxy`` subcommand); return 0.

    ``announce`` is called with the proxy's URL once it listens.  At exit the
    recording's ``recording.har`` is written.  Parameters are those of
    :class:`RecordingProxy` and :meth:`RecordingProxy.serve_forever`.
    """
    proxy = RecordingProxy(upstream, record_dir=record_dir, redact=redact, verify=verify, judge=judge,
                           verify_stored=verify_stored, body_threshold=body_threshold, catalogue=catalogue)
    proxy.serve_forever(host, port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, announce=announce)
    return 0
