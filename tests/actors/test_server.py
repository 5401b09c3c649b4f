from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import requests

from wic_conformance.actors.server import AsgiServer


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/boom":
        raise ValueError("handler exploded")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


class TestAsgiServer:
    def test_binds_loopback_on_a_free_port(self) -> None:
        with AsgiServer(app) as server:
            assert server.url.startswith("http://127.0.0.1:") and server.port > 0
            assert requests.get(server.url + "/", timeout=5).text == "ok"

    def test_handler_error_is_a_500_and_reraised_in_the_test(self) -> None:
        with AsgiServer(app) as server:
            r = requests.get(server.url + "/boom", timeout=5)
            assert r.status_code == 500 and "ValueError: handler exploded" in r.text
            assert requests.get(server.url + "/", timeout=5).status_code == 200  # still serving
            with pytest.raises(ValueError, match="handler exploded"):
                server.check_errors()
            server.check_errors()  # errors are reported once

    def test_stop_releases_the_port(self) -> None:
        server = AsgiServer(app).start()
        port = server.port
        server.stop()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer with the number of body bytes received."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    answer = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` in one write and return everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


@pytest.mark.parametrize("http", ["h11", "httptools"])
class TestRequestHeadBound:
    """``h11_max_incomplete_event_size`` bounds the request head, never the body, with either HTTP implementation."""

    def test_a_body_in_the_same_read_as_the_head_does_not_count(self, http: str) -> None:
        body = b"x" * 50_000
        head = f"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        with AsgiServer(echo_length, http=http, h11_max_incomplete_event_size=1024) as server:
            answer = raw_exchange(server.port, head + body)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"50000"), answer[:200]

    def test_an_incomplete_head_over_the_bound_is_400(self, http: str) -> None:
        head = f"GET / HTTP/1.1\r\nHost: h\r\nX-Big: {'a' * 4000}".encode()  # no end of the head yet
        with AsgiServer(echo_length, http=http, h11_max_incomplete_event_size=1024) as server:
            answer = raw_exchange(server.port, head)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
            assert requests.get(server.url + "/", timeout=5).status_code == 200  # still serving

    def test_a_whole_head_over_the_bound_in_one_read(self, http: str) -> None:
        """h11 bounds only an incomplete head (the application then sees the whole one); httptools refuses it."""
        head = f"GET / HTTP/1.1\r\nHost: h\r\nX-Big: {'a' * 4000}\r\nConnection: close\r\n\r\n".encode()
        with AsgiServer(echo_length, http=http, h11_max_incomplete_event_size=1024) as server:
            answer = raw_exchange(server.port, head)
        assert answer.startswith(b"HTTP/1.1 200" if http == "h11" else b"HTTP/1.1 400"), answer[:200]

    def test_a_head_split_over_reads_is_counted_whole(self, http: str) -> None:
        parts = [b"GET / HTTP/1.1\r\nHost: h\r\nX-A: " + b"a" * 700, b"b" * 700, b"\r\n\r\n"]  # 1.4 KB in all
        with AsgiServer(echo_length, http=http, h11_max_incomplete_event_size=1024) as server, \
                socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            for part in parts:
                sock.sendall(part)
                time.sleep(0.05)  # separate reads
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]

    def test_a_whole_request_before_a_head_does_not_count(self, http: str) -> None:
        first = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 840\r\n\r\n" + b"y" * 840
        second = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"p" * 220 + b"\r\nConnection: close\r\n\r\n"
        assert len(first) < 1024 < len(first) + len(second)
        with AsgiServer(echo_length, http=http, h11_max_incomplete_event_size=1024) as server:
            answer = raw_exchange(server.port, first + second)
        assert answer.count(b"HTTP/1.1 200") == 2, answer

    def test_pipelined_requests_are_each_bounded_on_their_own(self, http: str) -> None:
        one = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 600\r\n\r\n" + b"y" * 600
        last = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        with AsgiServer(echo_length, http=http, h11_max_incomplete_event_size=1024) as server:
            answer = raw_exchange(server.port, one + one + last)
        assert answer.count(b"HTTP/1.1 200") == 3 and answer.endswith(b"3"), answer
