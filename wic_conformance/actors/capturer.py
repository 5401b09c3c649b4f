"""The simulated Image Capturer: sends STOW-RS requests byte for byte and records every exchange.

An :class:`ImageCapturer` is a configured object (base URL, an injected
:class:`requests.Session`, extra headers, credentials, TLS verification,
timeout).  Its role follows from the method called: :meth:`~ImageCapturer.store`
builds and sends a STOW-RS request (RAD-108), :meth:`~ImageCapturer.send` sends a
request exactly as it was built (the test plans send mutated requests this way),
:meth:`~ImageCapturer.retrieve` fetches instances back with WADO-RS, and
:meth:`~ImageCapturer.search` queries with QIDO-RS.

Every interaction is recorded as an :class:`~wic_conformance.dicomweb.exchange.Exchange`
holding the request with the headers really sent, the response headers and body
and the timings.  The Capturer never raises because of an HTTP status: a 409 with
its Failed SOP Sequence is exactly what the checks need.  It raises
:class:`TargetUnreachableError` only when no HTTP response could be had at all
(connection refused, unknown host, TLS failure, timeout).  The multipart and
media type codecs live in :mod:`wic_conformance.dicomweb`; this module only moves
bytes.

Secrets (``Authorization``, ``Cookie``) are kept in the recorded exchanges;
reports redact them with :meth:`~wic_conformance.dicomweb.exchange.Headers.redacted`.

References
----------
PS3.18 §10.5 (Store Transaction), §10.4 (Retrieve Transaction), §10.6 (Search
Transaction), §8.4 (request header fields); IHE RAD WIC (RAD-108 Store Instances
over the Web); RFC 9112 §6 (message body length, chunked transfer coding).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request, Response
from wic_conformance.dicomweb.multipart import decode_multipart
from wic_conformance.dicomweb.stow import build_stow_request, parse_stow_target
from wic_conformance.errors import UsageError, WicConformanceError
from wic_conformance.findings import Finding

__all__ = ["ImageCapturer", "TargetUnreachableError", "USER_AGENT", "WADO_ACCEPT_ANY"]

log = logging.getLogger(__name__)

#: The User-Agent the Capturer sends when the request does not name one.
USER_AGENT = "wic-conformance-capturer"
#: Accept of a WADO-RS instance retrieval that takes every stored transfer syntax as is.
WADO_ACCEPT_ANY = mt.format_media_type(mt.MULTIPART_RELATED,
                                       {"type": mt.APPLICATION_DICOM, "transfer-syntax": "*"})
_CHUNK = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class TargetUnreachableError(WicConformanceError):
    """No HTTP response could be had: connection refused, unknown host, TLS failure or timeout.

    The message is one sentence naming the target and the cause, e.g.
    ``"cannot connect to http://127.0.0.1:9/dicom-web: connection refused"``.
    A server that answers, whatever it answers, never raises this: the checks judge it.

    Attributes
    ----------
    reason : str
        ``"refused"``, ``"dns"``, ``"tls"``, ``"timeout"`` (no connection, or no answer in
        time), ``"closed"`` (the server closed the connection without an HTTP response)
        or ``"other"``.  A test plan runner may hold ``"closed"`` and ``"timeout"`` on one
        particular request against the target rather than call it unreachable.
    """

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


class ImageCapturer:
    """A STOW-RS user agent that sends requests exactly as built and records each exchange.

    Parameters
    ----------
    base_url : str
        The DICOMweb service root of the Image Manager, e.g. ``http://127.0.0.1:8042/dicom-web``.
    session : requests.Session, optional
        The HTTP session (connection pool, cookies, proxies); a new one by default.
        Its default headers are *not* added to requests: what is sent is what was built.
    headers : mapping, optional
        Extra headers added to every request that does not already carry them
        (``Authorization`` for a bearer token, for instance).
    auth : (user, password) or requests.auth.AuthBase, optional
        Credentials applied to every request (HTTP Basic for a pair).
    verify : bool or str
        TLS verification: ``True``, ``False`` (insecure) or the path of a CA bundle.
    timeout : float
        Seconds to wait for a connection and between bytes of the response.
    spool_dir : str or os.PathLike, optional
        Where response bodies larger than ``spool_threshold`` are written (memory otherwise).
    spool_threshold : int
        Response size above which the body goes to a file in ``spool_dir``.

    Examples
    --------
    >>> capturer = ImageCapturer("http://127.0.0.1:8042/dicom-web")  # doctest: +SKIP
    >>> exchange = capturer.store(root_type="application/dicom", parts=[({"Content-Type": "application/dicom"},
    ...                                                                   data)])  # doctest: +SKIP
    >>> exchange.response.status  # doctest: +SKIP
    200

    References
    ----------
    PS3.18 §10.5.1 (Store request), §10.4.1 (Retrieve request), §10.6.1 (Search request).
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | AuthBase | None = None,
        verify: bool | str = True,
        timeout: float = 60.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_threshold: int = 8 << 20,
    ) -> None:
        if not base_url.lower().startswith(("http://", "https://")):
            raise UsageError(f"the DICOMweb base URL must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else requests.Session()
        self.headers = dict(headers or {})
        self.auth: AuthBase | None = HTTPBasicAuth(*auth) if isinstance(auth, tuple) else auth
        self.verify = verify
        self.timeout = timeout
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self.spool_threshold = spool_threshold
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []

    # -- the actor interface ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Return the DICOMweb service root the Capturer talks to."""
        return self.base_url

    @property
    def exchanges(self) -> list[Exchange]:
        """Return the recorded exchanges, oldest first."""
        with self._lock:
            return list(self._exchanges)

    def clear(self) -> None:
        """Forget the recorded exchanges."""
        with self._lock:
            self._exchanges.clear()

    def check(self, ctx: Any = None, tags: Iterable[str] | None = ("manager",)) -> list[Finding]:
        """Judge the recorded STOW-RS exchanges with the check registry and return the findings.

        Parameters
        ----------
        ctx : CheckContext, optional
            Catalogue, strictness and check options; a default context otherwise.
        tags : iterable of str or None
            The checks to run, by tag (``None``: every check); by default those
            judging the Image Manager (its responses and stored instances).

        Returns
        -------
        list of Finding
            In exchange order.

        References
        ----------
        PS3.18 §10.5.3 (Store response), Annex I (Store Instances Response Module).
        """
        from wic_conformance.validate.all_checks import REGISTRY
        from wic_conformance.validate.registry import CheckContext

        context = ctx if ctx is not None else CheckContext()
        findings: list[Finding] = []
        for exchange in self.exchanges:
            request = exchange.request
            if request is None or request.method != "POST" or parse_stow_target(request.url) is None:
                continue
            for result in REGISTRY.run(context, exchange, tags=list(tags) if tags is not None else None):
                findings.extend(result.findings)
        return findings

    # -- transactions -----------------------------------------------------------------------------
    def store(
        self,
        *,
        root_type: str,
        parts: Sequence[tuple[dict[str, str], bytes]],
        study: str | None = None,
        accept: str | None = mt.APPLICATION_DICOM_JSON,
        chunked: bool = False,
    ) -> Exchange:
        """Build and send a STOW-RS request (RAD-108): ``POST {base}/studies[/{study}]``.

        Parameters
        ----------
        root_type : str
            The ``type`` parameter: ``application/dicom``, ``application/dicom+json`` or
            ``application/dicom+xml``.
        parts : sequence of (headers, bytes)
            The body parts in order, the root part first.
        study : str, optional
            Target ``/studies/{study}`` instead of ``/studies``.
        accept : str or None
            The Accept header (``None`` sends none).
        chunked : bool
            Send the body with chunked transfer coding instead of Content-Length.

        Returns
        -------
        Exchange
            The recorded exchange, whatever the status.

        Raises
        ------
        TargetUnreachableError
            No HTTP response could be had.

        References
        ----------
        PS3.18 §10.5.1 (request), §8.6.1.2 (multipart payload).
        """
        request = build_stow_request(base_url=self.base_url, root_type=root_type, parts=list(parts),
                                     study_uid=study, accept=accept)
        return self.send(request, chunked=chunked)

    def retrieve(self, url: str, *, transfer_syntax: str = "*") -> tuple[Exchange, list[Document]]:
        """Retrieve instances with WADO-RS and decode the multipart answer into documents.

        Parameters
        ----------
        url : str
            A study, series or instance URL (a Retrieve URL of a Store response).
        transfer_syntax : str
            The ``transfer-syntax`` parameter of the Accept header; ``"*"`` asks for the
            instances as stored.

        Returns
        -------
        tuple of (Exchange, list of Document)
            The exchange and one ``RETRIEVED`` ``application/dicom`` document per part
            (none when the status is not 200 or the body is not multipart/related).

        Raises
        ------
        TargetUnreachableError
            No HTTP response could be had.

        References
        ----------
        PS3.18 §10.4.1 (Retrieve request), §8.7.3.5.2 (transfer-syntax parameter).
        """
        accept = mt.format_media_type(mt.MULTIPART_RELATED,
                                      {"type": mt.APPLICATION_DICOM, "transfer-syntax": transfer_syntax})
        exchange = self.send(Request("GET", url, Headers.of({"Accept": accept})))
        response = exchange.response
        documents: list[Document] = []
        if response is None or response.status != 200 or response.content_type is None:
            return exchange, documents
        ctype = mt.parse_media_type(response.content_type)
        if not ctype.is_(mt.MULTIPART_RELATED):
            return exchange, documents
        result = decode_multipart(response.body, ctype, spool_dir=self.spool_dir,
                                  spool_threshold=self.spool_threshold)
        for part in result.parts:
            pct = part.content_type
            if pct is not None and not pct.is_(mt.APPLICATION_DICOM):
                continue
            documents.append(Document(mt.APPLICATION_DICOM, part.body, DocumentRole.RETRIEVED,
                                      f"{url} (part {part.index + 1})"))
        return exchange, documents

    def search(self, path: str, params: Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]] = ()
               ) -> Exchange:
        """Search with QIDO-RS: ``GET {base}/{path}?{params}`` accepting ``application/dicom+json``.

        Parameters
        ----------
        path : str
            ``studies``, ``instances``, ``studies/{uid}/series``, ...
        params : mapping or sequence of pairs
            Query keys and values (a list value repeats the key).

        Returns
        -------
        Exchange
            The recorded exchange (200 with a JSON array, 204 when nothing matches).

        References
        ----------
        PS3.18 §10.6.1 (Search request), Annex F (DICOM JSON results).
        """
        query = urlencode(params if not isinstance(params, Mapping) else dict(params), doseq=True)
        url = f"{self.base_url}/{path.lstrip('/')}" + (f"?{query}" if query else "")
        return self.send(Request("GET", url, Headers.of({"Accept": mt.APPLICATION_DICOM_JSON})))

    def search_results(self, exchange: Exchange) -> list[dict[str, Any]]:
        """Return the DICOM JSON result objects of a QIDO-RS exchange (empty unless a 200 JSON array)."""
        response = exchange.response
        if response is None or response.status != 200:
            return []
        try:
            value = json.loads(response.body.read())
        except (ValueError, UnicodeDecodeError):
            return []
        return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []

    # -- sending ----------------------------------------------------------------------------------
    def send(self, request: Request, *, chunked: bool = False) -> Exchange:
        """Send ``request`` byte for byte and record the exchange; never raises for an HTTP status.

        The body goes out exactly as built: with its Content-Length (added when the
        request has none), or with chunked transfer coding when ``chunked`` is true
        (Content-Length is then left out).  The Capturer's extra headers and
        credentials are added when the request lacks them; ``Host``, ``User-Agent``
        and ``Accept-Encoding: identity`` are made explicit so that the recorded
        headers are those on the wire.

        Parameters
        ----------
        request : Request
            The request to send (its URL must be absolute).
        chunked : bool
            Use chunked transfer coding for the body.

        Returns
        -------
        Exchange
            The request as sent, the response as received, and the timings.

        Raises
        ------
        TargetUnreachableError
            No HTTP response could be had (connection refused, DNS, TLS, timeout, connection
            closed); the request is still recorded, as an exchange without a response.
        UsageError
            The request's Content-Length disagrees with its body.

        References
        ----------
        RFC 9112 §6.2 (Content-Length), §7.1 (chunked transfer coding); PS3.18 §8.4.
        """
        prepared, sent = self._prepare(request, chunked=chunked)
        started = time.time()
        t0 = time.perf_counter()
        try:
            raw = self.session.send(prepared, stream=True, timeout=self.timeout, verify=self.verify,
                                    allow_redirects=False)
            try:
                body = self._read_body(raw)
            finally:
                raw.close()
        except requests.exceptions.RequestException as exc:
            with self._lock:  # the unanswered request is evidence too
                self._exchanges.append(Exchange(request=sent, started=started, elapsed=time.perf_counter() - t0,
                                                source="capturer"))
            raise TargetUnreachableError(*_unreachable(self.base_url, request.url, exc, self.timeout)) from exc
        elapsed = time.perf_counter() - t0
        version = {10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(getattr(raw.raw, "version", 11), "HTTP/1.1")
        response = Response(raw.status_code, raw.reason or "", _response_headers(raw), body, version)
        exchange = Exchange(request=sent, response=response, started=started, elapsed=elapsed, source="capturer")
        with self._lock:
            self._exchanges.append(exchange)
        log.debug("%s %s -> %s in %.3f s", request.method, request.url, raw.status_code, elapsed)
        return exchange

    def _prepare(self, request: Request, *, chunked: bool) -> tuple[requests.PreparedRequest, Request]:
        """Return the prepared request for the session and the :class:`Request` recording what is sent."""
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"cannot send to {request.url!r}: an absolute http(s) URL is needed")
        headers = [(k, v) for k, v in request.headers.items]
        present = {k.lower() for k, _ in headers}
        size = request.body.size
        lengths = [v for k, v in headers if k.lower() == "content-length"]
        if chunked:
            headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")]
            headers.append(("Transfer-Encoding", "chunked"))
        elif lengths:
            if any(v.strip() != str(size) for v in lengths):
                raise UsageError(f"the request's Content-Length ({', '.join(lengths)}) does not match its "
                                 f"{size}-byte body; fix the request or send it chunked")
        elif size or request.method.upper() in _BODY_METHODS:
            headers.append(("Content-Length", str(size)))
        for name, value in self.headers.items():
            if name.lower() not in present:
                headers.append((name, value))
        if "host" not in present:
            headers.insert(0, ("Host", parts.netloc))
        if "user-agent" not in present:
            headers.append(("User-Agent", USER_AGENT))
        if "accept-encoding" not in present:
            headers.append(("Accept-Encoding", "identity"))
        prepared = requests.PreparedRequest()
        prepared.prepare_method(request.method)
        prepared.prepare_url(request.url, None)
        prepared.headers = CaseInsensitiveDict()
        for name, value in headers:
            if name in prepared.headers:
                # requests holds one value per name: repeated headers are sent comma-joined (RFC 9110 §5.3)
                prepared.headers[name] = f"{prepared.headers[name]}, {value}"
            else:
                prepared.headers[name] = value
        if self.auth is not None and "authorization" not in present:
            self.auth(prepared)
        cookies = self.session.cookies
        if cookies and "cookie" not in present:
            prepared.prepare_cookies(cookies)
        prepared.hooks = default_hooks()
        body = request.body
        payload: Any
        if chunked:
            payload = _chunks(body) if size else iter(())
        elif body.in_memory:
            payload = body.data if size else None
        else:
            payload = _chunks(body)
        prepared.body = payload  # requests sends an iterable as is: Content-Length or chunked, as set above
        sent = Request(request.method, prepared.url or request.url, Headers(tuple(prepared.headers.items())),
                       body, request.http_version)
        return prepared, sent

    def _read_body(self, raw: requests.Response) -> Body:
        """Read the response body into memory, or into a spool file once it exceeds the threshold."""
        buffer = bytearray()
        handle = None
        path = ""
        try:
            for chunk in raw.iter_content(chunk_size=_CHUNK):
                if handle is not None:
                    handle.write(chunk)
                    continue
                buffer += chunk
                if self.spool_dir is not None and len(buffer) > self.spool_threshold:
                    fd, path = tempfile.mkstemp(prefix="response-", suffix=".body", dir=self.spool_dir)
                    handle = os.fdopen(fd, "wb")
                    handle.write(buffer)
                    buffer = bytearray()
        except BaseException:
            if handle is not None:
                handle.close()
                os.unlink(path)
            raise
        if handle is not None:
            handle.close()
            return Body.from_file(path)
        return Body.of(bytes(buffer))


def _chunks(body: Body) -> Iterator[bytes]:
    yield from body.chunks(_CHUNK)


def _response_headers(raw: requests.Response) -> Headers:
    """Return the response headers in received order, repeated fields kept apart where the stack allows."""
    source = getattr(raw.raw, "headers", None)
    if source is not None and hasattr(source, "items"):
        return Headers(tuple((str(k), str(v)) for k, v in source.items()))
    return Headers(tuple(raw.headers.items()))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield ``exc`` and every exception it wraps (causes, contexts, urllib3 ``reason``, exception args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None),
                    *[a for a in current.args if isinstance(a, BaseException)]):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _unreachable(base: str, url: str, exc: requests.exceptions.RequestException, timeout: float) -> tuple[str, str]:
    """Return one sentence saying why no HTTP response could be had, and the reason's keyword."""
    host = urlsplit(url).hostname or "?"
    causes = list(_causes(exc))
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"cannot connect to {base}: no connection within {timeout:g} s", "timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"{base} did not answer within {timeout:g} s", "timeout"
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(c, ssl.SSLError) for c in causes):
        reason = next((getattr(c, "reason", None) or str(c) for c in causes if isinstance(c, ssl.SSLError)),
                      "the TLS handshake failed")
        return f"cannot connect to {base}: TLS failed ({reason})", "tls"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"cannot connect to {base}: connection refused", "refused"
    if any(isinstance(c, socket.gaierror) for c in causes) or any(
            type(c).__name__ == "NameResolutionError" for c in causes):
        return f"cannot connect to {base}: the host name {host!r} does not resolve", "dns"
    if any(isinstance(c, TimeoutError | socket.timeout) for c in causes):
        return f"cannot connect to {base}: no answer within {timeout:g} s", "timeout"
    if any(isinstance(c, ConnectionResetError | ConnectionAbortedError | BrokenPipeError) for c in causes) or any(
            type(c).__name__ in ("RemoteDisconnected", "ProtocolError") for c in causes):
        return f"{base} closed the connection without an HTTP response", "closed"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return f"cannot connect to {base}: the URL {url!r} is not usable", "other"
    innermost = causes[-1] if causes else exc
    return f"cannot connect to {base}: {type(innermost).__name__}: {innermost}".rstrip(": "), "other"
