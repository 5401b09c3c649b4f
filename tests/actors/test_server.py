from __future__ import annotations

import socket
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
