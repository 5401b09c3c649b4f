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

The recording keeps each side's evidence as sent: the request headers as the
Capturer sent them (Transfer-Encoding and Expect included), the response
headers as the Manager sent them.  Request URLs are the upstream URLs.

Each STOW-RS exchange (``POST .../studies[/{study}]``) is judged once it has
ended, in a worker thread, by the shared check registry: the ``capturer``
checks on the request and the ``manager`` checks on the response.  With
``verify_stored`` the proxy then retrieves the stored instances from the
Retrieve URLs of the response (WADO-RS, ``transfer-syntax=*``, straight from
the upstream) and runs the ``conversion`` and ``iod`` checks on them.  The
verdict is kept with the exchange and written into the record (``_wic``).

Hooks are *notification* hooks only (the proxy never changes traffic):
addon-style observers whose optional methods ``request(flow)``,
``response(flow)``, ``error(flow)`` are called on the event loop (they must
not block) and ``done(exchange, results)`` in the worker thread; a plain
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
import http.cookiejar
import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
#: Headers httpx adds to every request unless told otherwise; removed when the client did not send them.
_CLIENT_DEFAULTS = ("accept", "accept-encoding", "user-agent")
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


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class _RejectCookies(http.cookiejar.CookiePolicy):
    """Keep no cookie: the proxy must not carry one client's cookies to another's requests."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: urllib.request.Request) -> bool:
        return False


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
        if judge or verify_stored:
            from wic_conformance.validate import all_checks  # noqa: F401  (registers the checks)
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
        self._pending: set[Future[None]] = set()
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wic-proxy-judge")
        self._tee_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wic-proxy-tee")
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: AsgiServer | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------
    def _make_server(self, host: str, port: int, ssl_certfile: str | None, ssl_keyfile: str | None) -> AsgiServer:
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ConfigError("TLS needs both a certificate and its key")
        # The upstream's Date and Server fields are relayed, so uvicorn must not add its own.
        return AsgiServer(self, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                          h11_max_incomplete_event_size=1 << 20, server_header=False, date_header=False)

    def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl_certfile: str | None = None,
              ssl_keyfile: str | None = None) -> RecordingProxy:
        """Listen on ``host:port`` (port 0 = any free port) in a background thread; HTTPS given a certificate."""
        if self._closed:
            raise RuntimeError("a stopped proxy cannot be started again")
        if self._server is None:
            self._server = self._make_server(host, port, ssl_certfile, ssl_keyfile)
            self._server.start()
        return self

    def serve_forever(self, host: str = "127.0.0.1", port: int = 0, *, ssl_certfile: str | None = None,
                      ssl_keyfile: str | None = None, announce: Callable[[str], None] | None = None) -> None:
        """Serve in the calling thread until interrupted, then finish the recording (the command-line use)."""
        server = self._make_server(host, port, ssl_certfile, ssl_keyfile)
        try:
            server.serve_forever(announce=None if announce is None else
                                 (lambda base: announce(base + self._base_path)))
        finally:
            self._client = None  # its event loop is gone; the sockets close with it
            self.stop()

    def stop(self) -> None:
        """Stop listening, wait for pending verdicts, write ``recording.har`` and release temporary files."""
        if self._closed:
            return
        if self._server is not None:
            client, loop = self._client, self._loop
            if client is not None and loop is not None and loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(5.0)
                except Exception:  # closing is best effort: the server stops anyway
                    log.debug("closing the upstream client failed", exc_info=True)
            self._server.stop()
        self._client = None
        self.drain()
        self._pool.shutdown(wait=True)
        self._tee_pool.shutdown(wait=True)
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
    def har_path(self) -> Path | None:
        """Return where ``recording.har`` is (re)written, or ``None`` when not recording to a folder."""
        return None if self.record_dir is None else self.record_dir / HAR_NAME

    def check_errors(self) -> None:
        """Re-raise, in the caller's thread, errors raised inside the proxy's handler (for tests)."""
        if self._server is not None:
            self._server.check_errors()

    # -- recorded exchanges and verdicts --------------------------------------------------------
    def drain(self, timeout: float = 120.0) -> None:
        """Wait until no exchange is in flight and every ended one has been judged and written to the journal.

        A client may see the end of a response a moment before the proxy has recorded it.
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
    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:  # created in the server's event loop, on the first request
            self._loop = asyncio.get_running_loop()
            self._client = httpx.AsyncClient(
                verify=self._verify, trust_env=False, follow_redirects=False,
                cookies=http.cookiejar.CookieJar(policy=_RejectCookies()),
                timeout=httpx.Timeout(self.timeout, connect=30.0, pool=self.timeout),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        return self._client

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
        client = self._get_client()
        ident = new_exchange_id()
        started = time.time()
        clock = time.perf_counter()
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        target = self._upstream_url.copy_with(raw_path=raw_path + (b"?" + query if query else b""))
        url = str(target)
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
        forwarded.append(("Via", _VIA))
        request_tee = _AsyncTee(BodyTee(self._root, ident, "request", self.body_threshold), self._tee_pool)
        state = _Transfer()

        async def upload() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    state.client_gone = True
                    raise _ClientGone("the client disconnected during the upload")
                chunk = message.get("body", b"")
                if chunk:
                    await request_tee.write(chunk)
                    flow.request_bytes += len(chunk)
                    yield chunk
                if not message.get("more_body", False):
                    state.request_complete = True
                    state.timings["sent"] = time.perf_counter()
                    return

        request = client.build_request(method, target, headers=forwarded, content=upload() if has_body else None)
        for name in _CLIENT_DEFAULTS:
            if name not in names:
                del request.headers[name]
        del request.headers["connection"]  # httpx's own keep-alive: hop-by-hop, and HTTP/1.1's default
        if not has_body:
            state.request_complete = True
            state.timings["sent"] = time.perf_counter()
        try:
            upstream = await client.send(request, stream=True)
        except (_ClientGone, httpx.HTTPError, OSError) as exc:
            gone = isinstance(exc, _ClientGone)
            reason = (str(exc) if gone else
                      f"the upstream failed before answering: {type(exc).__name__}: {exc or 'no detail'}")
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

        state.timings["headers"] = time.perf_counter()
        response_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.headers.raw]
        flow.status, flow.response_headers = upstream.status_code, Headers(tuple(response_headers))
        self._notify("response", flow)
        relayed = [*forwardable_headers(response_headers), ("Via", _VIA)]
        if not state.request_complete:  # the upstream answered before the body ended: this connection is done
            relayed.append(("Connection", "close"))
        response_record = {"status": upstream.status_code, "statusText": upstream.reason_phrase,
                           "httpVersion": upstream.http_version, "headers": response_headers}
        response_tee = _AsyncTee(BodyTee(self._root, ident, "response", self.body_threshold), self._tee_pool)
        truncated: dict[str, Any] | None = None
        if not state.request_complete:
            truncated = {"side": "request", "reason": "the upstream answered before the request body was complete"}
        watcher = asyncio.ensure_future(_wait_disconnect(receive)) if state.request_complete else None
        completed = False
        try:
            await send({"type": "http.response.start", "status": upstream.status_code,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in relayed]})
            async for chunk in upstream.aiter_raw():
                await response_tee.write(chunk)
                flow.response_bytes += len(chunk)
                if watcher is not None and watcher.done():
                    raise _ClientGone("the client disconnected during the response")
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            completed = True
        except (_ClientGone, httpx.HTTPError, OSError) as exc:
            reason = (str(exc) if isinstance(exc, _ClientGone) else
                      f"the upstream failed during the response: {type(exc).__name__}: {exc or 'no detail'}")
            flow.error = reason
            truncated = {"side": "response", "reason": reason}
            self._notify("error", flow)
        finally:
            if watcher is not None:
                watcher.cancel()
            await upstream.aclose()
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
        future = self._pool.submit(self._conclude, exchange, transaction, secrets)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _conclude(self, exchange: Exchange, transaction: str, secrets: list[tuple[str, str]]) -> None:
        """Judge an ended exchange (worker thread), record the verdict and tell the observers."""
        results: list[CheckResult] = []
        retrieved: list[dict[str, Any]] = []
        judged = self.judge and transaction == "STOW-RS" and not exchange.truncated and exchange.response is not None
        if judged:
            try:
                ctx = CheckContext(catalogue=self.catalogue)
                results = REGISTRY.run(ctx, exchange, tags=["capturer", "manager"])
                if self.verify_stored and exchange.response is not None and 200 <= exchange.response.status < 300:
                    exchange, more, retrieved = self._judge_stored(exchange, ctx, secrets)
                    results += more
            except Exception:  # a toolkit defect: keep relaying, keep the record
                log.exception("judging exchange %s failed", exchange.id)
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

    def _judge_stored(self, exchange: Exchange, ctx: CheckContext, secrets: list[tuple[str, str]],
                      ) -> tuple[Exchange, list[CheckResult], list[dict[str, Any]]]:
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
        with httpx.Client(verify=self._verify, trust_env=False, timeout=self.timeout) as client:
            for url in dict.fromkeys(urls):
                target = self._to_upstream(url)
                row: dict[str, Any] = {"url": target}
                try:
                    with client.stream("GET", target, headers=headers) as reply:
                        row["status"] = reply.status_code
                        tee = BodyTee(self._root, new_exchange_id(), "retrieved", self.body_threshold)
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
                result = decode_multipart(body.body(), ctype, spool_dir=str(self._root / BODIES_DIR))
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

    def _to_upstream(self, url: str) -> str:
        """Point a Retrieve URL that names the proxy at the upstream instead (fetch straight from the origin)."""
        if self._server is None:
            return url
        mine = httpx.URL(self._server.url)
        parsed = httpx.URL(url)
        if parsed.host == mine.host and parsed.port == mine.port:
            return str(parsed.copy_with(scheme=self._upstream_url.scheme, host=self._upstream_url.host,
                                        port=self._upstream_url.port))
        return url


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
