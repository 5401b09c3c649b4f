"""Run an ASGI application with uvicorn on loopback, in a background thread or in the foreground.

Handler exceptions never kill the server: :class:`ErrorCapture` answers them
with HTTP 500 naming the cause, logs them, and keeps them so that a test can
re-raise them in its own thread (:meth:`AsgiServer.check_errors`), the way
pytest-httpserver's ``check_handler_errors`` does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

__all__ = ["AsgiServer", "ErrorCapture"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ErrorCapture:
    """ASGI middleware: an unhandled exception becomes a 500 response and a stored error."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection, answering an unhandled exception with a 500."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unhandled error while serving %s %s", scope.get("method"), scope.get("path"))
            with self._lock:
                self.errors.append(exc)
            if not started:
                body = f"internal error: {type(exc).__name__}: {exc}".encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

    def take(self) -> list[BaseException]:
        """Return and forget the stored errors."""
        with self._lock:
            errors, self.errors = self.errors, []
        return errors


def _bounded_httptools(max_head_bytes: int) -> type[asyncio.Protocol]:
    """Return uvicorn's httptools protocol with a bound on the request head, which httptools itself lacks.

    The bytes of each request head are counted, across reads, from the end of the previous
    request; past ``max_head_bytes`` the connection gets 400 and is closed (what uvicorn's
    h11 protocol answers to an over-long incomplete head), before the parser sees any more
    of it.  Body bytes that arrive in the same read as the head do not count, nor does a
    whole request before it.  The bytes of a pipelined head that arrive in the same read as
    the end of the request before it are not counted (the parser does not tell where it
    began), so such a head may exceed the bound by at most that read.  Unlike h11, which only
    bounds what it buffers of an *incomplete* head, a head over the bound is refused even when
    it arrives whole.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True  # the next bytes belong to a request head
            self._head_bytes = 0  # bytes of that head fed so far
            self._completed = 0  # requests read whole on this connection

        def data_received(self, data: bytes) -> None:
            if not self._in_head:
                super().data_received(data)
                return
            room = max_head_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                super().data_received(data)
                return
            # Only bytes of the head count: a read that also carries body bytes, or a whole request
            # and the start of the next, is fed up to the bound first; the rest only if that
            # completed the head (or a request).
            completed = self._completed
            self._head_bytes = max_head_bytes
            if room > 0:
                super().data_received(data[:room])
            if self.transport.is_closing():
                return
            if self._in_head and self._completed == completed:
                log.warning("request head over %d bytes: refused", max_head_bytes)
                self.send_400_response("Invalid HTTP request received.")
                return
            self.data_received(data[room:])

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._completed += 1
            self._in_head = True
            self._head_bytes = 0

    return BoundedHttpToolsProtocol


class AsgiServer:
    """A uvicorn server bound to ``host`` (loopback by default) and ``port`` (0 = any free port).

    Parameters
    ----------
    app : ASGI application
        Wrapped in :class:`ErrorCapture`.
    host, port : str, int
        Where to listen; tests always use 127.0.0.1 and port 0.
    ssl_certfile, ssl_keyfile : str, optional
        Serve HTTPS.
    server_header, date_header : bool
        Whether uvicorn adds its own Server and Date fields (a relay passes the upstream's on).
    http : str
        uvicorn's HTTP/1.1 implementation: ``"h11"`` (pure Python, the default) or
        ``"httptools"`` (the C parser, for throughput: the simulated Image Manager and the
        recording proxy use it; ``h11_max_incomplete_event_size`` then bounds the request head,
        answered with the same 400; see :func:`_bounded_httptools`).
    loop : str
        uvicorn's event loop: ``"asyncio"`` (the default) or ``"uvloop"``.
    """

    def __init__(
        self,
        app: AsgiApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        timeout_keep_alive: int = 5,
        h11_max_incomplete_event_size: int = 64 * 1024,
        server_header: bool = True,
        date_header: bool = True,
        http: str = "h11",
        loop: str = "asyncio",
    ) -> None:
        self.capture = ErrorCapture(app)
        self.host = host
        self._requested_port = port
        self._ssl = (ssl_certfile, ssl_keyfile)
        protocol = _bounded_httptools(h11_max_incomplete_event_size) if http == "httptools" else http
        self._config_kwargs = {"timeout_keep_alive": timeout_keep_alive,
                               "h11_max_incomplete_event_size": h11_max_incomplete_event_size,
                               "server_header": server_header, "date_header": date_header,
                               "http": protocol, "loop": loop}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Return the base URL (scheme, host and bound port)."""
        scheme = "https" if self._ssl[0] else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _make(self) -> uvicorn.Server:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Linux hands TCP_NODELAY down to accepted connections; asyncio sets it only on sockets it
        # creates with IPPROTO_TCP, and without it each response waits for the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        # No proxy headers: nothing sits in front of these servers, and a peer on loopback must not be
        # able to set its recorded address or scheme with X-Forwarded-For or X-Forwarded-Proto.
        config = uvicorn.Config(
            self.capture, log_level="warning", lifespan="off", access_log=False, proxy_headers=False,
            ssl_certfile=self._ssl[0], ssl_keyfile=self._ssl[1], **self._config_kwargs,  # type: ignore[arg-type]
        )
        return uvicorn.Server(config)

    def start(self, timeout: float = 10.0) -> AsgiServer:
        """Start serving in a daemon thread; return once the socket accepts connections."""
        if self._thread is not None:
            return self
        self._server = self._make()
        server, sock = self._server, self._socket
        assert sock is not None
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"asgi-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.005)
        return self

    def serve_forever(self, *, announce: Callable[[str], None] | None = None) -> None:
        """Serve in the calling thread until interrupted (the command-line use).

        ``announce`` is called with the base URL once the socket is bound.
        """
        server = self._server = self._make()
        assert self._socket is not None
        if announce is not None:
            announce(self.url)
        server.run(sockets=[self._socket])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None
        self._socket = None

    def check_errors(self) -> None:
        """Re-raise, in the caller's thread, the errors handlers raised since the last call."""
        errors = self.capture.take()
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("errors raised inside request handlers", errors)  # type: ignore[type-var]

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
