"""The recording proxy over loopback: relaying byte for byte, HTTP semantics, recording, judging, redaction.

Upstreams: the simulated Image Manager (always), a tiny ASGI origin that keeps what it
received, raw sockets that die mid-transfer, and Orthanc (peer tests).  Senders: plain
``requests`` and ``http.client``, the simulated Image Capturer and ``dicomweb-client``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import random
import signal
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom import dcmread

from tests.actors.test_recorder import assert_valid_har, body_bytes
from wic_conformance.actors import proxy as proxy_module
from wic_conformance.actors.capturer import ImageCapturer
from wic_conformance.actors.manager import Auth, ImageManager, ManagerConfig
from wic_conformance.actors.proxy import Flow, RecordingProxy, forwardable_headers
from wic_conformance.actors.recorder import HAR_NAME, load_recording
from wic_conformance.actors.server import AsgiServer, Receive, Scope, Send
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.har import iter_har_exchanges
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.findings import Finding
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid
from wic_conformance.validate.all_checks import REGISTRY
from wic_conformance.validate.files import judge_file
from wic_conformance.validate.registry import CheckContext, CheckResult, Outcome

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
PART10 = 'multipart/related; type="application/dicom"'
SECRET = "s3cr3t-TOKEN-9f2c"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part10(key: str = "part10/secondary-capture") -> bytes:
    """A PS3.10 fixture with fresh Study, Series and SOP Instance UIDs."""
    ds = dcmread(INDEX[key].path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def metadata_parts(key: str) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    """A DICOM JSON fixture with fresh Study, Series and SOP Instance UIDs, and its bulk data parts."""
    fixture = INDEX[key]
    doc = json.loads(fixture.read())
    for item in doc:
        for tag in ("0020000D", "0020000E", "00080018"):
            item[tag] = {"vr": "UI", "Value": [new_uid()]}
    return fixture.media_type, [({"Content-Type": fixture.media_type}, json.dumps(doc).encode()),
                                *INDEX.bulk_parts(fixture)]


def stow_body(*instances: bytes) -> tuple[str, bytes]:
    return encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, d) for d in instances],
                            root_type=mt.APPLICATION_DICOM)


# -- upstreams ----------------------------------------------------------------------------------------
class Origin:
    """A tiny ASGI origin server that keeps what it received (head and body hash) and answers per path.

    ``/stream/N`` streams N pseudo-random bytes without Content-Length (chunked); any other
    path answers a small JSON body with hop-by-hop fields and a Set-Cookie.
    """

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            if not message.get("more_body"):
                break
        self.seen.append({"method": scope["method"], "raw_path": scope["raw_path"], "query": scope["query_string"],
                          "headers": [(k.decode(), v.decode()) for k, v in scope["headers"]],
                          "sha256": digest.hexdigest(), "size": size, "client": scope.get("client")})
        path = scope["path"]
        if path.startswith("/stream/"):
            data = streamed(int(path.rsplit("/", 1)[1]))
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")]})
            for start in range(0, len(data), 10_000):
                await send({"type": "http.response.body", "body": data[start:start + 10_000], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = json.dumps({"sha256": digest.hexdigest(), "size": size}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"x-hop-response"), (b"x-hop-response", b"1"), (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b'Basic realm="x"'), (b"x-kept", b"1"), (b"warning", b'299 - "one"'),
            (b"warning", b'299 - "two"'), (b"set-cookie", f"session={SECRET}; Path=/".encode())]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def headers(self, index: int = -1) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in self.seen[index]["headers"]:
            out.setdefault(k.lower(), []).append(v)
        return out


def streamed(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.fixture
def origin() -> Iterator[tuple[Origin, str]]:
    app = Origin()
    with AsgiServer(app) as server:
        yield app, server.url
        server.check_errors()


class _SocketOrigin:
    """A loopback socket server that hands each accepted connection to ``_handle`` in a thread of its own."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self._connections += 1
            threading.Thread(target=self._handle, args=(conn, self._connections == 1), daemon=True).start()

    def _handle(self, conn: socket.socket, first: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class DyingOrigin(_SocketOrigin):
    """A socket server whose first connection breaks: after ``cut`` request bytes, or mid-response.

    Later connections read the request head and answer ``200 ok``.  It speaks just enough HTTP
    for these tests.
    """

    def __init__(self, *, cut: int | None = None, response_cut: bool = False) -> None:
        self.cut, self.response_cut = cut, response_cut
        self.received_first = 0
        super().__init__()

    def _handle(self, conn: socket.socket, first: bool) -> None:
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            if first and self.cut is not None:
                while len(data) < self.cut:
                    data += conn.recv(65536)
                self.received_first = len(data)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
            elif first and self.response_cut:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
                time.sleep(0.1)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            conn.close()


class ScriptedOrigin(_SocketOrigin):
    """A socket server that reads each request head and hands the connection to ``answer(conn, head)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.errors: list[BaseException] = []
        super().__init__()

    def _handle(self, conn: socket.socket, first: bool) -> None:
        conn.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.answer(conn, head)
        except OSError as exc:
            self.errors.append(exc)
        finally:
            conn.close()


# -- the Image Manager as upstream, with what it received ----------------------------------------------
class Received:
    """An Image Manager observer: the SHA-256 of every request body and response body it saw."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, exchange: Exchange, results: list[CheckResult]) -> None:
        assert exchange.request is not None and exchange.response is not None
        with self.lock:
            self.items.append((exchange.request.body.sha256(), exchange.response.body.sha256()))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= count:
                    return list(self.items)
            time.sleep(0.01)
        raise AssertionError(f"the Image Manager recorded {len(self.items)} of {count} exchanges")


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageManager, Received]]:
    received = Received()
    config = ManagerConfig(data_dir=tmp_path_factory.mktemp("im"), body_timeout=5.0)
    with ImageManager(config, observers=[received]) as im:
        yield im, received
        im.check_errors()


@pytest.fixture
def im(manager: tuple[ImageManager, Received]) -> Iterator[tuple[ImageManager, Received]]:
    with manager[1].lock:
        manager[1].items.clear()
    manager[0].clear()
    yield manager


@pytest.fixture
def proxy_to_im(im: tuple[ImageManager, Received], tmp_path: Path) -> Iterator[RecordingProxy]:
    with RecordingProxy(im[0].url, record_dir=tmp_path / "rec") as proxy:
        yield proxy
        proxy.check_errors()


class HashingSession(requests.Session):
    """A requests session that keeps the SHA-256 of every body it sent and received (chunked bodies too)."""

    def __init__(self) -> None:
        super().__init__()
        self.headers["Accept-Encoding"] = "identity"  # so that the body requests hands back is the one on the wire
        self.sent: list[str] = []
        self.received: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        digest = hashlib.sha256()
        body = request.body
        if isinstance(body, bytes | str):
            digest.update(body if isinstance(body, bytes) else body.encode())
        elif body is not None:
            original = body

            def hashing() -> Iterator[bytes]:
                for chunk in original:
                    digest.update(chunk)
                    yield chunk

            request.body = hashing()
        response = super().send(request, **kwargs)
        if request.method == "POST":
            self.sent.append(digest.hexdigest())
            self.received.append(sha(response.content))
        return response


# -- relaying ---------------------------------------------------------------------------------------------
class TestByteForByte:
    def test_requests_sender_stow(self, proxy_to_im: RecordingProxy, im: tuple[ImageManager, Received]) -> None:
        ctype, body = stow_body(part10(), part10())
        r = requests.post(proxy_to_im.url + "/studies", data=body, timeout=30,
                          headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON})
        assert r.status_code == 200, r.text
        ((req_sha, res_sha),) = im[1].wait_for(1)
        assert req_sha == sha(body)
        assert res_sha == sha(r.content)

    def test_chunked_upload(self, proxy_to_im: RecordingProxy, im: tuple[ImageManager, Received]) -> None:
        ctype, body = stow_body(part10())
        pieces = (body[i:i + 1000] for i in range(0, len(body), 1000))
        r = requests.post(proxy_to_im.url + "/studies", data=pieces, timeout=30,
                          headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON})
        assert r.status_code == 200, r.text
        ((req_sha, res_sha),) = im[1].wait_for(1)
        assert (req_sha, res_sha) == (sha(body), sha(r.content))
        proxy_to_im.drain()
        (exchange,) = proxy_to_im.exchanges
        assert exchange.request is not None
        assert exchange.request.headers.get("transfer-encoding") == "chunked"  # the Capturer's framing is evidence

    @pytest.mark.parametrize("chunked", [False, True])
    def test_simulated_capturer(self, proxy_to_im: RecordingProxy, im: tuple[ImageManager, Received],
                                chunked: bool) -> None:
        capturer = ImageCapturer(proxy_to_im.url)
        parts = [({"Content-Type": mt.APPLICATION_DICOM}, part10()) for _ in range(3)]
        exchange = capturer.store(root_type=mt.APPLICATION_DICOM, parts=parts, chunked=chunked)
        assert exchange.response is not None and exchange.request is not None
        assert exchange.response.status == 200
        ((req_sha, res_sha),) = im[1].wait_for(1)
        assert req_sha == exchange.request.body.sha256()
        assert res_sha == exchange.response.body.sha256()
        # QIDO-RS and WADO-RS through the proxy: what the sender got is what the upstream sent
        study = str(dcmread(io.BytesIO(parts[0][1])).StudyInstanceUID)
        search = capturer.search("instances", {"StudyInstanceUID": study})
        direct = requests.get(f"{im[0].url}/instances", params={"StudyInstanceUID": study},
                              headers={"Accept": mt.APPLICATION_DICOM_JSON}, timeout=30)
        assert search.response is not None and search.response.body.sha256() == sha(direct.content)
        _, documents = capturer.retrieve(f"{proxy_to_im.url}/studies/{study}")
        assert [d.body.sha256() for d in documents] == [sha(parts[0][1])]  # each part10() is its own study

    def test_dicomweb_client(self, proxy_to_im: RecordingProxy, im: tuple[ImageManager, Received]) -> None:
        from dicomweb_client.api import DICOMwebClient

        session = HashingSession()
        client = DICOMwebClient(url=proxy_to_im.url, session=session, chunk_size=4096)  # > 4 KiB: chunked
        datasets = [dcmread(io.BytesIO(part10())) for _ in range(2)]
        datasets[1].StudyInstanceUID = datasets[0].StudyInstanceUID
        client.store_instances(datasets)
        client.store_instances([dcmread(io.BytesIO(part10("part10/vl-photographic")))])
        received = im[1].wait_for(2)  # in the order the Image Manager judged them
        assert sorted(received) == sorted(zip(session.sent, session.received, strict=True))
        found = client.search_for_instances(search_filters={"StudyInstanceUID": datasets[0].StudyInstanceUID})
        assert {f["00080018"]["Value"][0] for f in found} == {str(d.SOPInstanceUID) for d in datasets}
        got = client.retrieve_instance(datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID,
                                       datasets[0].SOPInstanceUID)
        assert got.SOPInstanceUID == datasets[0].SOPInstanceUID
        proxy_to_im.drain()
        har = load_recording(proxy_to_im.record_dir)  # type: ignore[arg-type]
        assert_valid_har(har)
        posts = [e for e in har["log"]["entries"] if e["request"]["method"] == "POST"]
        assert [e["request"]["postData"]["_sha256"] for e in posts] == session.sent
        assert [e["response"]["content"]["_sha256"] for e in posts] == session.received

    def test_large_bodies_stream_through_side_files(self, im: tuple[ImageManager, Received], tmp_path: Path) -> None:
        instances = [part10("part10/vl-photographic") for _ in range(20)]
        ctype, body = stow_body(*instances)
        with RecordingProxy(im[0].url, record_dir=tmp_path / "rec", body_threshold=1024, judge=False) as proxy:
            r = requests.post(proxy.url + "/studies", data=body, timeout=60,
                              headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON})
            assert r.status_code == 200, r.text
        har = json.loads((tmp_path / "rec" / HAR_NAME).read_text())
        post = har["log"]["entries"][0]["request"]["postData"]
        assert post["_file"] == f"bodies/{sha(body)}.bin"
        assert body_bytes(post, tmp_path / "rec") == body
        (exchange,) = iter_har_exchanges(tmp_path / "rec" / HAR_NAME)
        assert exchange.request is not None and exchange.request.body.sha256() == sha(body)


class TestHttpSemantics:
    def test_hop_by_hop_fields_are_not_relayed(self, origin: tuple[Origin, str], tmp_path: Path) -> None:
        app, base = origin
        with RecordingProxy(base + "/dicom-web", record_dir=tmp_path / "rec") as proxy:
            host, port = proxy.url.split("//")[1].split("/")[0].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.putrequest("POST", "/dicom-web/studies?x=%2F1&y", skip_host=True, skip_accept_encoding=True)
            for name, value in [("Host", "proxy.example"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
                                ("Keep-Alive", "timeout=3"), ("Proxy-Authorization", "Basic abc"), ("TE", "trailers"),
                                ("Upgrade", "h2c"), ("X-End-To-End", "kept"), ("Content-Type", "text/plain"),
                                ("Content-Length", "5")]:
                conn.putheader(name, value)
            conn.endheaders(b"hello")
            response = conn.getresponse()
            body = response.read()
            got = {k.lower(): v for k, v in response.getheaders()}
            conn.close()
        assert response.status == 200 and json.loads(body)["sha256"] == sha(b"hello")
        seen = app.headers()
        assert app.seen[-1]["raw_path"] == b"/dicom-web/studies" and app.seen[-1]["query"] == b"x=%2F1&y"
        assert seen["host"] == [base.split("//")[1]]
        for name in ("connection", "x-hop", "keep-alive", "proxy-authorization", "te", "upgrade",
                     "transfer-encoding", "user-agent", "accept", "accept-encoding"):
            assert name not in seen, name
        assert seen["x-end-to-end"] == ["kept"] and seen["content-length"] == ["5"]
        assert seen["via"] == ["1.1 wic-conformance"]
        for name in ("x-hop-response", "keep-alive", "proxy-authenticate"):
            assert name not in got, name
        assert got["x-kept"] == "1" and got["via"] == "1.1 wic-conformance"
        assert [v for k, v in response.getheaders() if k.lower() == "warning"] == ['299 - "one"', '299 - "two"']
        names = [k.lower() for k, _ in response.getheaders()]
        assert names.count("server") == 1 and names.count("date") == 1  # the origin's; the proxy adds none

    def test_forwardable_headers(self) -> None:
        pairs = [("Connection", "close, X-A"), ("x-a", "1"), ("Proxy-Foo", "2"), ("Trailer", "x"), ("X-B", "3"),
                 ("Transfer-Encoding", "chunked"), ("x-b", "4")]
        assert forwardable_headers(pairs) == [("X-B", "3"), ("x-b", "4")]

    def test_expect_100_continue(self, origin: tuple[Origin, str]) -> None:
        app, base = origin
        with RecordingProxy(base, judge=False) as proxy:
            host, port = proxy.url.split("//")[1].split(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b"PUT /x HTTP/1.1\r\nHost: p\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
                interim = sock.recv(100)
                assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
                sock.sendall(b"12345")
                reply = b""
                while b'"size": 5}' not in reply:
                    reply += sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert "expect" not in app.headers() and app.seen[-1]["sha256"] == sha(b"12345")

    def test_request_heads_are_bounded(self, origin: tuple[Origin, str]) -> None:
        app, base = origin
        with RecordingProxy(base, judge=False) as proxy:
            host, port = proxy.url.split("//")[1].split(":")
            answers = []
            for size in (50_000, 900_000, 1_200_000):
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(b"GET /big HTTP/1.1\r\nHost: p\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
                    answer = b""
                    while b"\r\n\r\n" not in answer:
                        answer += sock.recv(4096)
                    answers.append((answer.split(b" ")[1], b"via: 1.1 wic-conformance" in answer.lower()))
            assert requests.get(proxy.url + "/after", timeout=10).status_code == 200
        # relayed (the origin itself takes heads up to 64 KiB), relayed (the origin refuses it), refused by the proxy
        assert answers == [(b"200", True), (b"400", True), (b"400", False)]
        assert [seen["raw_path"] for seen in app.seen] == [b"/big", b"/after"]

    def test_chunked_both_ways(self, origin: tuple[Origin, str], tmp_path: Path) -> None:
        app, base = origin
        data = streamed(300_000)
        with RecordingProxy(base, record_dir=tmp_path / "rec", body_threshold=4096) as proxy:
            upload = (data[i:i + 7000] for i in range(0, len(data), 7000))
            r = requests.post(proxy.url + "/stream/250000", data=upload, timeout=30)
        assert app.headers()["transfer-encoding"] == ["chunked"] and app.seen[-1]["sha256"] == sha(data)
        assert r.headers["transfer-encoding"] == "chunked" and r.content == streamed(250_000)
        (entry,) = load_recording(tmp_path / "rec")["log"]["entries"]
        assert entry["request"]["postData"]["_sha256"] == sha(data)
        assert entry["response"]["content"]["_sha256"] == sha(streamed(250_000))
        assert entry["response"]["bodySize"] == 250_000

    @pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "POST"])
    def test_every_method_and_path(self, origin: tuple[Origin, str], method: str) -> None:
        app, base = origin
        with RecordingProxy(base + "/fhir", judge=False) as proxy:
            r = requests.request(method, proxy.url + "/Patient/x%20y?name=D%C3%B6e&_count=2",
                                 data=b"{}" if method in ("PUT", "PATCH", "POST") else None, timeout=10)
            proxy.drain()
            (exchange,) = proxy.exchanges
        assert r.status_code == 200
        assert app.seen[-1]["method"] == method and app.seen[-1]["raw_path"] == b"/fhir/Patient/x%20y"
        assert app.seen[-1]["query"] == b"name=D%C3%B6e&_count=2"
        assert exchange.request is not None
        assert exchange.request.url.endswith("/fhir/Patient/x%20y?name=D%C3%B6e&_count=2")

    def test_concurrent_exchanges_do_not_mix(self, origin: tuple[Origin, str], tmp_path: Path) -> None:
        _, base = origin
        bodies = [streamed(n) for n in range(70_000, 70_016)]
        with RecordingProxy(base, record_dir=tmp_path / "rec", body_threshold=1024) as proxy:
            def post(body: bytes) -> str:
                return str(requests.post(proxy.url + "/echo", data=body, timeout=30).json()["sha256"])

            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(post, bodies)) == [sha(b) for b in bodies]
        entries = load_recording(tmp_path / "rec")["log"]["entries"]
        assert sorted(e["request"]["postData"]["_sha256"] for e in entries) == sorted(sha(b) for b in bodies)

    def test_observers(self, origin: tuple[Origin, str]) -> None:
        _, base = origin
        events: list[str] = []

        class Addon:
            def request(self, flow: Flow) -> None:
                events.append(f"request {flow.method}")

            def response(self, flow: Flow) -> None:
                events.append(f"response {flow.status}")

            def done(self, exchange: Exchange, results: list[CheckResult]) -> None:
                events.append("done")

        def broken(exchange: Exchange, results: list[CheckResult]) -> None:
            raise RuntimeError("observer bug")

        with RecordingProxy(base, observers=[Addon(), broken]) as proxy:
            assert requests.get(proxy.url + "/x", timeout=10).status_code == 200
            proxy.drain()
            proxy.check_errors()
        assert events == ["request GET", "response 200", "done"]


class TestUpstreamClient:
    def test_connections_to_the_upstream_are_kept_alive(self, origin: tuple[Origin, str]) -> None:
        app, base = origin
        with RecordingProxy(base, judge=False) as proxy, requests.Session() as session:
            for n in range(3):
                assert session.post(proxy.url + f"/echo/{n}", data=b"x" * n, timeout=10).status_code == 200
        assert len({seen["client"] for seen in app.seen}) == 1

    def test_interim_responses_are_skipped_and_a_body_may_end_with_the_connection(self, tmp_path: Path) -> None:
        body = streamed(50_000)

        def answer(conn: socket.socket, head: bytes) -> None:
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
            for start in range(0, len(body), 10_000):
                conn.sendall(body[start:start + 10_000])

        scripted = ScriptedOrigin(answer)
        try:
            with RecordingProxy(scripted.url, record_dir=tmp_path / "rec") as proxy:
                r = requests.get(proxy.url + "/until-close", timeout=10)
                proxy.check_errors()
        finally:
            scripted.close()
        assert r.status_code == 200 and r.content == body
        (entry,) = load_recording(tmp_path / "rec")["log"]["entries"]
        assert "_truncated" not in entry and entry["response"]["status"] == 200
        assert entry["response"]["content"]["_sha256"] == sha(body)

    def test_an_answer_before_the_body_while_the_upstream_reads_on(self, tmp_path: Path) -> None:
        def answer(conn: socket.socket, head: bytes) -> None:
            conn.sendall(b"HTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 2\r\n\r\nno")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            left = length - len(head.split(b"\r\n\r\n", 1)[1])
            while left > 0:  # the upstream takes the whole body (as Orthanc does) and keeps its answer
                left -= len(conn.recv(1 << 20))

        scripted = ScriptedOrigin(answer)
        body = streamed(8_000_000)
        try:
            with RecordingProxy(scripted.url, record_dir=tmp_path / "rec") as proxy:
                host, port = proxy.url.split("//")[1].split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                conn.request("POST", "/studies", body=body, headers={"Content-Type": "application/octet-stream"})
                response = conn.getresponse()  # http.client reads the answer only once it has sent everything
                assert (response.status, response.read()) == (415, b"no")
                conn.close()
                proxy.check_errors()
        finally:
            scripted.close()
        (entry,) = load_recording(tmp_path / "rec")["log"]["entries"]
        assert "_truncated" not in entry and entry["request"]["postData"]["_sha256"] == sha(body)

    def test_an_answer_before_the_body_is_complete(self, tmp_path: Path) -> None:
        def answer(conn: socket.socket, head: bytes) -> None:
            conn.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
            time.sleep(0.5)  # read no more of the body, then close: the proxy cannot send the rest
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        scripted = ScriptedOrigin(answer)
        body = streamed(64_000_000)  # more than the socket buffers between the proxy and the upstream hold
        try:
            with RecordingProxy(scripted.url, record_dir=tmp_path / "rec") as proxy:
                try:
                    r = requests.post(proxy.url + "/studies", data=body, timeout=30,
                                      headers={"Content-Type": "application/octet-stream"})
                    assert r.status_code == 413 and r.content == b"big!"
                except requests.ConnectionError:
                    pass  # the proxy answered and closed while the client was still sending
                proxy.check_errors()
        finally:
            scripted.close()
        (entry,) = load_recording(tmp_path / "rec")["log"]["entries"]
        assert entry["response"]["status"] == 413 and entry["response"]["content"]["text"] == "big!"
        assert entry["_truncated"] is True and entry["_truncation"]["side"] == "request"
        assert "answered before the request body was complete" in entry["_truncation"]["reason"]
        assert entry["request"]["bodySize"] < len(body)


class TestResponseFraming:
    @staticmethod
    def frame(raw: bytes, *, step: int = 0, head_only: bool = False) -> tuple[Any, bytes]:
        framing = proxy_module._ResponseFraming(head_only=head_only)
        step = step or len(raw)
        body = b"".join(piece for i in range(0, len(raw), step) for piece in framing.feed(raw[i:i + step]))
        return framing, body

    @pytest.mark.parametrize("step", [1, 7, 0])
    def test_chunked_with_extensions_trailers_and_an_interim_response(self, step: int) -> None:
        raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
               b"X-Folded: a\r\n  b\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n")
        framing, body = self.frame(raw, step=step)
        assert (framing.status, framing.reason, framing.complete, body) == (200, "OK", True, b"hello world")
        assert framing.headers == [("Transfer-Encoding", "chunked"), ("X-Folded", "a b")]
        assert framing.keep_alive and not framing.until_close

    def test_a_transfer_coding_other_than_chunked_is_refused(self) -> None:
        with pytest.raises(proxy_module._UpstreamError, match="chunked"):
            self.frame(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")

    @pytest.mark.parametrize("step", [1, 0])
    def test_content_length_and_what_follows(self, step: int) -> None:
        framing, body = self.frame(b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nabcEXTRA", step=step)
        assert (framing.status, body, framing.complete, framing.keep_alive) == (404, b"abc", True, False)

    def test_no_body_for_head_204_and_304(self) -> None:
        assert self.frame(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head_only=True)[0].complete
        for status in (b"204 No Content", b"304 Not Modified"):
            framing, body = self.frame(b"HTTP/1.1 " + status + b"\r\nContent-Length: 9\r\n\r\n")
            assert framing.complete and body == b""

    def test_until_close(self) -> None:
        framing, body = self.frame(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nsome bytes", step=3)
        assert framing.until_close and not framing.complete and not framing.keep_alive and body == b"some bytes"

    @pytest.mark.parametrize("raw", [b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"])
    def test_malformed_responses(self, raw: bytes) -> None:
        with pytest.raises(proxy_module._UpstreamError, match="RemoteProtocolError"):
            self.frame(raw)


class TestFailures:
    def test_upstream_refuses_connections(self, tmp_path: Path) -> None:
        closed = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        closed.close()
        errors: list[str] = []

        class Addon:
            def error(self, flow: Flow) -> None:
                errors.append(flow.error or "")

        with RecordingProxy(url, record_dir=tmp_path / "rec", observers=[Addon()]) as proxy:
            r = requests.get(proxy.url + "/studies", timeout=10)
        assert r.status_code == 502 and "ConnectError" in r.text
        assert errors and "ConnectError" in errors[0]
        (entry,) = load_recording(tmp_path / "rec")["log"]["entries"]
        assert entry["_truncated"] is True and entry["response"]["status"] == 0

    def test_upstream_dies_mid_upload(self, tmp_path: Path, im: tuple[ImageManager, Received]) -> None:
        dying = DyingOrigin(cut=300_000)
        body = streamed(2_000_000)
        try:
            with RecordingProxy(dying.url, record_dir=tmp_path / "rec") as proxy:
                try:
                    r = requests.post(proxy.url + "/dicom-web/studies", data=body, timeout=30,
                                      headers={"Content-Type": "multipart/related; boundary=x"})
                    assert r.status_code == 502
                except requests.ConnectionError:
                    pass  # the proxy answered 502 and closed while the client was still sending
                after = requests.get(proxy.url + "/dicom-web/studies", timeout=10)  # the proxy still serves
                assert after.status_code == 200 and after.text == "ok"
                proxy.check_errors()
        finally:
            dying.close()
        har = load_recording(tmp_path / "rec")
        assert_valid_har(har)
        first, second = har["log"]["entries"]
        assert first["_truncated"] is True and first["_truncation"]["side"] == "request"
        arrived = first["request"]["bodySize"]
        # what reached the proxy before the upstream died: all of it, when the client's send buffers
        # absorbed the rest of the body in time; the exchange is truncated either way
        assert 0 < arrived <= len(body) and first["_truncation"]["requestBytes"] == arrived
        assert first["request"]["postData"]["_sha256"] == sha(body[:arrived])
        assert body_bytes(first["request"]["postData"], tmp_path / "rec") == body[:arrived]
        assert first["_wic"]["judged"] is False
        assert "_truncated" not in second and second["response"]["status"] == 200

    def test_upstream_dies_mid_response(self, tmp_path: Path) -> None:
        dying = DyingOrigin(response_cut=True)
        try:
            with RecordingProxy(dying.url, record_dir=tmp_path / "rec") as proxy:
                with pytest.raises(requests.RequestException):
                    requests.get(proxy.url + "/big", timeout=10).raise_for_status()
                assert requests.get(proxy.url + "/small", timeout=10).text == "ok"
                proxy.check_errors()
        finally:
            dying.close()
        first, second = load_recording(tmp_path / "rec")["log"]["entries"]
        assert first["_truncated"] is True and first["_truncation"]["side"] == "response"
        assert first["response"]["status"] == 200 and first["response"]["bodySize"] == 1000
        assert first["_truncation"]["responseBytes"] == 1000
        assert second["response"]["content"]["text"] == "ok"


    def test_client_disconnects_mid_upload(self, origin: tuple[Origin, str], tmp_path: Path) -> None:
        app, base = origin
        with RecordingProxy(base, record_dir=tmp_path / "rec") as proxy:
            host, port = proxy.url.split("//")[1].split(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: p\r\nContent-Length: 1000000\r\n\r\n"
                             + b"x" * 100_000)
                time.sleep(0.3)
            assert requests.get(proxy.url + "/after", timeout=10).status_code == 200
            proxy.drain()
            proxy.check_errors()
        first, second = load_recording(tmp_path / "rec")["log"]["entries"]
        assert first["_truncated"] is True and "client disconnected" in first["_truncation"]["reason"]
        assert first["response"]["status"] == 0 and 0 < first["request"]["bodySize"] <= 100_000
        assert second["response"]["status"] == 200 and app.seen[-1]["raw_path"] == b"/after"


class TestJudging:
    def test_verdicts_match_judging_the_recording_offline(self, im: tuple[ImageManager, Received],
                                                          tmp_path: Path) -> None:
        keys = ["part10/secondary-capture", "part10/broken-missing-patient-name", "part10/broken-wrong-modality"]
        with RecordingProxy(im[0].url, record_dir=tmp_path / "rec") as proxy:
            capturer = ImageCapturer(proxy.url)
            for key in keys:
                capturer.store(root_type=mt.APPLICATION_DICOM, parts=[({"Content-Type": mt.APPLICATION_DICOM},
                                                                        part10(key))])
            root_type, parts = metadata_parts("json/jpeg-baseline")
            capturer.store(root_type=root_type, parts=parts)
            requests.get(proxy.url + "/studies", timeout=10)
            proxy.drain()
            verdicts = {v.exchange_id: v for v in proxy.verdicts}
            findings = proxy.check()
        assert sum(v.judged for v in verdicts.values()) == 4
        assert [v.transaction for v in verdicts.values()].count("QIDO-RS") == 1
        assert any(f.requirement for f in findings)
        har_path = tmp_path / "rec" / HAR_NAME
        har = json.loads(har_path.read_text())
        assert_valid_har(har)
        names = [spec.name for spec in REGISTRY.select(tags=["capturer", "manager"])]
        offline = judge_file(har_path, ctx=CheckContext(), checks=names)
        assert len(offline.results) == 4
        for exchange, results in offline.results:
            number = int(exchange.source.rsplit("#entry", 1)[1])
            entry = har["log"]["entries"][number - 1]
            live = verdicts[entry["_wic"]["id"]]
            assert not live.errors and not [r for r in results if r.outcome is Outcome.ERROR]
            offline_ids = sorted(f.requirement for r in results for f in r.findings)
            assert sorted(f.requirement for f in live.findings) == offline_ids
            assert sorted(f["requirement"] for f in entry["_wic"]["findings"]) == offline_ids
            assert {r["check"]: r["outcome"] for r in entry["_wic"]["results"]} == \
                {r.check: r.outcome.value for r in results}

    def test_verify_stored_runs_the_conversion_checks(self, im: tuple[ImageManager, Received],
                                                      tmp_path: Path) -> None:
        root_type, parts = metadata_parts("json/jpeg-baseline")
        with RecordingProxy(im[0].url, record_dir=tmp_path / "rec", verify_stored=True) as proxy:
            exchange = ImageCapturer(proxy.url).store(root_type=root_type, parts=parts)
            assert exchange.response is not None and exchange.response.status in (200, 202), exchange.response
            proxy.drain()
            (verdict,) = proxy.verdicts
            (stored,) = proxy.exchanges
        assert verdict.retrieved and verdict.retrieved[0]["status"] == 200 and verdict.retrieved[0]["instances"] == 1
        assert len(stored.retrieved()) == 1
        outcomes = {r.check: r.outcome for r in verdict.results}
        assert outcomes["conversion_is_part10"] is Outcome.PASSED
        assert outcomes["conversion_preserves_attributes"] in (Outcome.PASSED, Outcome.WARNED)
        assert outcomes["part10_instance_conforms_to_iod"] is not Outcome.ERROR
        (entry,) = load_recording(tmp_path / "rec")["log"]["entries"]
        assert entry["_wic"]["retrieved"][0]["_sha256"]
        assert "conversion_is_part10" in {r["check"] for r in entry["_wic"]["results"]}

    def test_judging_runs_in_a_process_of_its_own(self, im: tuple[ImageManager, Received]) -> None:
        with RecordingProxy(im[0].url) as proxy:
            proxy.drain()
            pid = proxy.judging_process_id
            assert pid is not None and pid != os.getpid()
            ImageCapturer(proxy.url).store(root_type=mt.APPLICATION_DICOM, parts=[(
                {"Content-Type": mt.APPLICATION_DICOM}, part10("part10/broken-missing-patient-name"))])
            findings = proxy.check()
        assert findings and all(isinstance(f, Finding) and f.requirement for f in findings)
        assert any(type(f) is not Finding for f in findings)  # the checks' own finding classes survive the trip
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopping the proxy ended it

    def test_a_thread_judges_when_the_process_cannot_start(self, im: tuple[ImageManager, Received],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
        monkeypatch.setattr(proxy_module, "_JUDGE_BOOT", "import sys; sys.exit(3)")
        with caplog.at_level(logging.WARNING, logger=proxy_module.__name__), RecordingProxy(im[0].url) as proxy:
            proxy.drain()
            assert proxy.judging_process_id is None
            ImageCapturer(proxy.url).store(root_type=mt.APPLICATION_DICOM,
                                           parts=[({"Content-Type": mt.APPLICATION_DICOM}, part10())])
            proxy.drain()
            (verdict,) = proxy.verdicts
        assert verdict.judged and verdict.results and not verdict.errors
        assert "judging in a thread of the proxy instead" in caplog.text

    def test_a_thread_judges_when_the_process_dies(self, im: tuple[ImageManager, Received],
                                                  caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger=proxy_module.__name__), RecordingProxy(im[0].url) as proxy:
            proxy.drain()
            pid = proxy.judging_process_id
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            capturer = ImageCapturer(proxy.url)
            for _ in range(2):
                capturer.store(root_type=mt.APPLICATION_DICOM,
                               parts=[({"Content-Type": mt.APPLICATION_DICOM}, part10())])
            proxy.drain()
            verdicts = proxy.verdicts
        assert [v.judged and bool(v.results) for v in verdicts] == [True, True]
        assert "judging process is not available" in caplog.text

    def test_judging_can_be_switched_off(self, im: tuple[ImageManager, Received]) -> None:
        with RecordingProxy(im[0].url, judge=False) as proxy:
            ctype, body = stow_body(part10())
            requests.post(proxy.url + "/studies", data=body, headers={"Content-Type": ctype}, timeout=30)
            assert proxy.check() == [] and not proxy.verdicts[0].judged


class TestRedaction:
    def _run(self, base: str, record_dir: Path, *, redact: bool, verify_stored: bool = False) -> None:
        with RecordingProxy(base, record_dir=record_dir, redact=redact, verify_stored=verify_stored) as proxy:
            ctype, body = stow_body(part10())
            r = requests.post(proxy.url + "/studies", data=body, timeout=30, headers={
                "Content-Type": ctype, "Authorization": f"Bearer {SECRET}", "Cookie": f"sid={SECRET}",
                "Proxy-Authorization": f"Basic {SECRET}"})
            assert r.status_code in (200, 202), r.text
            proxy.drain()
            if verify_stored:
                assert proxy.verdicts[0].retrieved[0]["status"] == 200  # the retrieval carried the credentials
            text = json.dumps([f.to_dict() for f in proxy.check()])
            assert (SECRET in text) is False

    @staticmethod
    def _files_holding(root: Path, secret: str) -> list[str]:
        return sorted(p.name for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes())

    def test_secrets_never_reach_the_record(self, origin: tuple[Origin, str], tmp_path: Path) -> None:
        self._run(origin[1] + "/dicom-web", tmp_path / "rec", redact=True)
        assert self._files_holding(tmp_path / "rec", SECRET) == []
        assert self._files_holding(tmp_path / "rec", "<redacted>") == ["journal.ndjson", "recording.har"]

    def test_with_an_image_manager_that_requires_credentials(self, tmp_path: Path) -> None:
        config = ManagerConfig(data_dir=tmp_path / "im", auth=Auth(token=SECRET), validate_iod=False)
        with ImageManager(config) as manager:
            self._run(manager.url, tmp_path / "rec", redact=True, verify_stored=True)
        assert self._files_holding(tmp_path / "rec", SECRET) == []

    def test_redaction_off_keeps_them(self, origin: tuple[Origin, str], tmp_path: Path) -> None:
        self._run(origin[1] + "/dicom-web", tmp_path / "rec", redact=False)
        assert self._files_holding(tmp_path / "rec", SECRET) == ["journal.ndjson", "recording.har"]
        entry = load_recording(tmp_path / "rec")["log"]["entries"][0]
        values = {h["name"]: h["value"] for h in entry["request"]["headers"]}
        assert values["authorization"] == f"Bearer {SECRET}" and values["proxy-authorization"] == f"Basic {SECRET}"


# -- TLS ------------------------------------------------------------------------------------------------
def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Write a CA and a server certificate for 127.0.0.1 signed by it; return (ca, cert, key) paths."""
    crypto = pytest.importorskip("cryptography", reason="TLS tests need the cryptography package")
    del crypto
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wic-conformance test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TestTls:
    @pytest.fixture
    def tls_origin(self, tmp_path: Path) -> Iterator[tuple[Origin, str, Path, Path, Path]]:
        ca, cert, key = _certificates(tmp_path)
        app = Origin()
        with AsgiServer(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
            yield app, server.url, ca, cert, key

    def test_https_upstream_with_a_ca_bundle(self, tls_origin: tuple[Origin, str, Path, Path, Path]) -> None:
        app, base, ca, _, _ = tls_origin
        assert base.startswith("https://")
        with RecordingProxy(base, verify=ca) as proxy:
            r = requests.post(proxy.url + "/echo", data=b"over tls", timeout=10)
        assert r.status_code == 200 and r.json()["sha256"] == sha(b"over tls")

    def test_https_upstream_unverified_is_refused_or_insecure(
            self, tls_origin: tuple[Origin, str, Path, Path, Path]) -> None:
        _, base, _, _, _ = tls_origin
        with RecordingProxy(base) as proxy:  # the test CA is not trusted by default
            r = requests.get(proxy.url + "/x", timeout=10)
            assert r.status_code == 502 and "certificate" in r.text.lower()
        with RecordingProxy(base, verify=False) as proxy:
            assert requests.get(proxy.url + "/x", timeout=10).status_code == 200

    def test_listening_on_tls(self, tls_origin: tuple[Origin, str, Path, Path, Path],
                              origin: tuple[Origin, str]) -> None:
        _, _, ca, cert, key = tls_origin
        app, base = origin
        proxy = RecordingProxy(base).start(ssl_certfile=str(cert), ssl_keyfile=str(key))
        try:
            assert proxy.url.startswith("https://127.0.0.1:")
            r = requests.post(proxy.url + "/echo", data=b"secure", timeout=10, verify=str(ca))
            assert r.status_code == 200 and app.seen[-1]["sha256"] == sha(b"secure")
            with pytest.raises(requests.exceptions.SSLError):
                requests.get(proxy.url + "/x", timeout=10)  # not trusted without the CA
            context = ssl.create_default_context(cafile=str(ca))
            with socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() is not None
        finally:
            proxy.stop()


# -- Orthanc as upstream (peer) -------------------------------------------------------------------------------
@pytest.mark.peer
class TestOrthanc:
    def test_relays_byte_for_byte_and_records_valid_har(self, orthanc: Any, tmp_path: Path) -> None:
        from dicomweb_client.api import DICOMwebClient

        with RecordingProxy(orthanc.url, record_dir=tmp_path / "rec") as proxy:
            session = HashingSession()
            client = DICOMwebClient(url=proxy.url, session=session, chunk_size=4096)
            datasets = [dcmread(io.BytesIO(part10())) for _ in range(2)]
            client.store_instances(datasets)
            exchange = ImageCapturer(proxy.url).store(root_type=mt.APPLICATION_DICOM,
                                                      parts=[({"Content-Type": mt.APPLICATION_DICOM}, part10())])
            assert exchange.response is not None and exchange.response.status == 200
            got = client.retrieve_instance(datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID,
                                           datasets[0].SOPInstanceUID)
            assert got.SOPInstanceUID == datasets[0].SOPInstanceUID
            proxy.drain()
            judged = [v for v in proxy.verdicts if v.judged]
        har = load_recording(tmp_path / "rec")
        assert_valid_har(har)
        posts = [e for e in har["log"]["entries"] if e["request"]["method"] == "POST"]
        assert posts[0]["request"]["postData"]["_sha256"] == session.sent[0]
        assert posts[0]["response"]["content"]["_sha256"] == session.received[0]
        assert exchange.request is not None and exchange.response is not None
        assert posts[1]["request"]["postData"]["_sha256"] == exchange.request.body.sha256()
        assert posts[1]["response"]["content"]["_sha256"] == exchange.response.body.sha256()
        assert len(judged) == 2 and not [e for v in judged for e in v.errors]
