"""The simulated Image Capturer: byte-for-byte sending, recorded exchanges, never raising on a status."""

from __future__ import annotations

import http.server
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom import dcmread

from wic_conformance.actors.capturer import USER_AGENT, ImageCapturer, TargetUnreachableError
from wic_conformance.actors.manager import ImageManager, ManagerConfig
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, DocumentRole, Headers, Request
from wic_conformance.dicomweb.stow import build_stow_request
from wic_conformance.errors import UsageError, WicConformanceError
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")


# -- a recording HTTP server on 127.0.0.1:0 ---------------------------------------------------------
class Recorded:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.body = b'{"00081190": {"vr": "UR"}}'
        self.content_type = mt.APPLICATION_DICOM_JSON


def _read_chunked(rfile: Any) -> bytes:
    data = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        data += rfile.read(size)
        rfile.readline()


@pytest.fixture
def recorder() -> Iterator[tuple[str, Recorded]]:
    state = Recorded()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _read_chunked(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append({"line": self.requestline, "headers": list(self.headers.items()), "body": body})
            self.send_response(state.status)
            self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(state.body)))
            self.send_header("Warning", '299 test "first"')
            self.send_header("Warning", '299 test "second"')
            self.end_headers()
            self.wfile.write(state.body)

        do_POST = do_GET = do_OPTIONS = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", state
    finally:
        server.shutdown()
        server.server_close()


def stow(base: str, *, accept: str | None = mt.APPLICATION_DICOM_JSON, data: bytes | None = None) -> Request:
    payload = data if data is not None else INDEX["part10/vl-photographic"].read()
    return build_stow_request(base_url=base, root_type=mt.APPLICATION_DICOM,
                              parts=[({"Content-Type": mt.APPLICATION_DICOM}, payload)], accept=accept)


class TestSend:
    def test_sends_the_bytes_and_headers_as_built(self, recorder: tuple[str, Recorded]) -> None:
        base, state = recorder
        request = stow(base)
        exchange = ImageCapturer(base).send(request)
        (received,) = state.requests
        assert received["body"] == request.body.read()
        assert received["line"] == "POST /dicom-web/studies HTTP/1.1"
        sent = exchange.request
        assert sent is not None
        # the recorded headers are those on the wire, in order, and the built ones are untouched
        assert [(k.lower(), v) for k, v in received["headers"]] == [(k.lower(), v) for k, v in sent.headers]
        for name, value in request.headers:
            assert sent.headers.get(name) == value
        assert sent.body.read() == request.body.read()

    def test_no_session_defaults_are_added(self, recorder: tuple[str, Recorded]) -> None:
        base, state = recorder
        session = requests.Session()
        session.headers["X-Session-Default"] = "must not be sent"
        ImageCapturer(base, session=session).send(stow(base, accept=None))
        names = {k.lower() for k, _ in state.requests[0]["headers"]}
        assert "accept" not in names and "x-session-default" not in names and "connection" not in names
        assert dict((k.lower(), v) for k, v in state.requests[0]["headers"])["user-agent"] == USER_AGENT

    def test_chunked_body(self, recorder: tuple[str, Recorded]) -> None:
        base, state = recorder
        request = stow(base)
        exchange = ImageCapturer(base).send(request, chunked=True)
        received = dict((k.lower(), v) for k, v in state.requests[0]["headers"])
        assert received["transfer-encoding"] == "chunked" and "content-length" not in received
        assert state.requests[0]["body"] == request.body.read()
        assert exchange.request is not None and "content-length" not in exchange.request.headers

    def test_file_backed_body_is_streamed(self, recorder: tuple[str, Recorded], tmp_path: Path) -> None:
        base, state = recorder
        request = stow(base)
        path = tmp_path / "body"
        path.write_bytes(request.body.read())
        on_disk = Request(request.method, request.url, request.headers, Body.from_file(path))
        ImageCapturer(base).send(on_disk)
        assert state.requests[0]["body"] == path.read_bytes()

    def test_content_length_must_match_the_body(self, recorder: tuple[str, Recorded]) -> None:
        base, _state = recorder
        request = stow(base)
        wrong = Request(request.method, request.url,
                        Headers(tuple((k, "1" if k == "Content-Length" else v) for k, v in request.headers)),
                        request.body)
        with pytest.raises(UsageError, match="Content-Length"):
            ImageCapturer(base).send(wrong)

    @pytest.mark.parametrize("status", [400, 409, 415, 500, 503])
    def test_never_raises_on_an_error_status(self, recorder: tuple[str, Recorded], status: int) -> None:
        base, state = recorder
        state.status = status
        state.body = b'{"00081198": {"vr": "SQ", "Value": []}}'
        capturer = ImageCapturer(base)
        exchange = capturer.send(stow(base))
        assert exchange.response is not None and exchange.response.status == status
        assert exchange.response.body.read() == state.body
        assert exchange.response.headers.get_all("warning") == ['299 test "first"', '299 test "second"']
        assert capturer.exchanges == [exchange] and exchange.elapsed > 0 and exchange.started > 0

    def test_a_server_that_is_not_dicomweb_is_recorded_not_raised(self, recorder: tuple[str, Recorded]) -> None:
        base, state = recorder
        state.content_type, state.body = "text/html", b"<html>hello</html>"
        exchange = ImageCapturer(base).send(stow(base))
        assert exchange.response is not None and exchange.response.content_type == "text/html"

    def test_extra_headers_and_credentials_are_kept_in_the_exchange(self, recorder: tuple[str, Recorded]) -> None:
        base, state = recorder
        exchange = ImageCapturer(base, headers={"Authorization": "Bearer s3cret", "X-Site": "a"}).send(stow(base))
        assert exchange.request is not None
        assert exchange.request.headers.get("authorization") == "Bearer s3cret"
        assert exchange.request.headers.redacted().get("authorization") == "<redacted>"
        assert dict((k.lower(), v) for k, v in state.requests[0]["headers"])["x-site"] == "a"
        basic = ImageCapturer(base, auth=("user", "pw")).send(stow(base))
        assert basic.request is not None and (basic.request.headers.get("authorization") or "").startswith("Basic ")

    def test_the_injected_session_is_used(self, recorder: tuple[str, Recorded]) -> None:
        base, _state = recorder
        calls: list[str] = []

        class Counting(requests.Session):
            def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
                calls.append(str(request.url))
                return super().send(request, **kwargs)

        ImageCapturer(base, session=Counting()).search("studies", {"PatientID": "x"})
        assert calls == [f"{base}/studies?PatientID=x"]

    def test_clear(self, recorder: tuple[str, Recorded]) -> None:
        base, _state = recorder
        capturer = ImageCapturer(base)
        capturer.send(stow(base))
        capturer.clear()
        assert capturer.exchanges == [] and capturer.url == base

    def test_rejects_a_base_url_without_scheme(self) -> None:
        with pytest.raises(UsageError, match="http:// or https://"):
            ImageCapturer("127.0.0.1:8042/dicom-web")


class TestUnreachable:
    def test_closed_port_is_one_sentence(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}/dicom-web"
        with pytest.raises(TargetUnreachableError, match=rf"^cannot connect to {base}: connection refused$") as info:
            ImageCapturer(base).store(root_type=mt.APPLICATION_DICOM,
                                      parts=[({"Content-Type": mt.APPLICATION_DICOM}, b"x")])
        assert info.value.reason == "refused"
        assert issubclass(TargetUnreachableError, WicConformanceError)

    def test_silent_server_times_out(self) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)  # accepts the connection (kernel backlog) but never answers
            base = f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
            with pytest.raises(TargetUnreachableError, match=r"did not answer within 0\.3 s$") as info:
                ImageCapturer(base, timeout=0.3).search("studies")
        assert "\n" not in str(info.value)


def hang_up_server() -> tuple[socket.socket, threading.Thread]:
    """A server that reads each request whole and closes the connection without answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


class TestHangUp:
    def test_a_closed_connection_is_recorded_and_named(self) -> None:
        listener, thread = hang_up_server()
        base = f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
        capturer = ImageCapturer(base, timeout=5)
        try:
            with pytest.raises(TargetUnreachableError, match=r"closed the connection without an HTTP response$") \
                    as info:
                capturer.send(stow(base))
        finally:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(5)
        assert info.value.reason == "closed"
        (exchange,) = capturer.exchanges
        assert exchange.response is None and exchange.request is not None and exchange.request.method == "POST"


class TestAgainstTheImageManager:
    @pytest.fixture
    def manager(self, tmp_path: Path) -> Iterator[ImageManager]:
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            yield im
            im.check_errors()

    def test_store_search_retrieve_and_check(self, manager: ImageManager) -> None:
        ds = dcmread(INDEX["part10/encapsulated-pdf"].path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        capturer = ImageCapturer(manager.url)
        stored = capturer.store(root_type=mt.APPLICATION_DICOM,
                                parts=[({"Content-Type": mt.APPLICATION_DICOM}, buffer.getvalue())])
        assert stored.response is not None and stored.response.status == 200
        found = capturer.search("instances", {"SOPInstanceUID": str(ds.SOPInstanceUID)})
        (item,) = capturer.search_results(found)
        assert item["00080018"]["Value"] == [str(ds.SOPInstanceUID)]
        url = f"{manager.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        fetch, documents = capturer.retrieve(url)
        assert fetch.request is not None and "transfer-syntax=*" in (fetch.request.headers.get("accept") or "")
        (doc,) = documents
        assert doc.role is DocumentRole.RETRIEVED and doc.media_type == mt.APPLICATION_DICOM
        assert doc.body.read() == buffer.getvalue()
        assert capturer.check() == []  # the response to the store is conformant
        assert len(capturer.exchanges) == 3

    def test_retrieve_of_a_missing_instance_returns_no_documents(self, manager: ImageManager) -> None:
        exchange, documents = ImageCapturer(manager.url).retrieve(f"{manager.url}/studies/2.25.1")
        assert exchange.response is not None and exchange.response.status == 404 and documents == []

    def test_check_reports_findings_on_a_bad_response(self, tmp_path: Path) -> None:
        from wic_conformance.actors.manager import StoreOutcome, Submission

        def answer_200_with_nothing(submission: Submission) -> StoreOutcome:
            return StoreOutcome(200)

        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False),
                          on_store=answer_200_with_nothing) as im:
            capturer = ImageCapturer(im.url)
            capturer.send(stow(im.url))
            requirements = {f.requirement for f in capturer.check()}
        assert {"STOW-RESP-001", "STOW-RESP-007", "STOW-MOD-009"} <= requirements
