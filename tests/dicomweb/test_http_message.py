from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from wic_conformance.dicomweb.har import iter_har_exchanges
from wic_conformance.dicomweb.http_message import dechunk, parse_http_message
from wic_conformance.errors import UsageError


class TestHttpMessage:
    def test_request_with_path_target_uses_host(self) -> None:
        msg = parse_http_message(b"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1:8042\r\n"
                                 b"Content-Type: multipart/related; boundary=x\r\n\r\n--x--\r\n")
        assert msg.request is not None and msg.response is None
        assert msg.request.url == "http://127.0.0.1:8042/dicom-web/studies"
        assert msg.request.body.read() == b"--x--\r\n"

    def test_response_with_lf_head_keeps_body_bytes(self) -> None:
        msg = parse_http_message(b"HTTP/1.1 409 Conflict\nContent-Type: application/dicom+json\n\n{\r\n}")
        assert msg.response is not None
        assert (msg.response.status, msg.response.reason) == (409, "Conflict")
        assert msg.response.body.read() == b"{\r\n}"

    def test_chunked_body_is_dechunked(self) -> None:
        msg = parse_http_message(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert msg.response is not None and msg.response.body.read() == b"abcde"

    @pytest.mark.parametrize("data, match", [
        (b"HELLO\r\n\r\n", "not an HTTP request or status line"),
        (b"POST /studies HTTP/1.1\r\n\r\n", "no Host header"),
        (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "not an HTTP header line"),
    ])
    def test_bad_messages_are_usage_errors(self, data: bytes, match: str) -> None:
        with pytest.raises(UsageError, match=match):
            parse_http_message(data)

    def test_broken_chunking(self) -> None:
        with pytest.raises(UsageError, match="bad chunk size"):
            dechunk(b"zz\r\nabc\r\n")
        with pytest.raises(UsageError, match="truncated chunk"):
            dechunk(b"10\r\nabc")


class TestHar:
    def test_stow_entries_become_exchanges(self, tmp_path: Path) -> None:
        side = tmp_path / "bodies" / "req.bin"
        side.parent.mkdir()
        side.write_bytes(b"BODY")
        har = {"log": {"version": "1.2", "entries": [
            {"request": {"method": "GET", "url": "http://h/dicom-web/studies?PatientID=1", "headers": []},
             "response": {"status": 200, "headers": [], "content": {"text": "[]"}}},
            {"request": {"method": "POST", "url": "http://h/dicom-web/studies", "httpVersion": "HTTP/1.1",
                         "headers": [{"name": "Content-Type", "value": "multipart/related; boundary=b"}],
                         "postData": {"mimeType": "multipart/related", "_file": "bodies/req.bin"}},
             "response": {"status": 200, "statusText": "OK", "headers": [],
                          "content": {"mimeType": "application/dicom+json",
                                      "text": base64.b64encode(b"{}").decode(), "encoding": "base64"}},
             "time": 12.5},
        ]}}
        path = tmp_path / "rec.har"
        path.write_text(json.dumps(har))
        (ex,) = list(iter_har_exchanges(path))
        assert ex.request is not None and ex.response is not None
        assert ex.request.body.read() == b"BODY"
        assert ex.response.body.read() == b"{}"
        assert ex.elapsed == pytest.approx(0.0125)
        assert ex.source.endswith("rec.har#entry2")

    def test_not_a_har(self, tmp_path: Path) -> None:
        path = tmp_path / "x.har"
        path.write_text("{}")
        with pytest.raises(UsageError, match="not a HAR file"):
            list(iter_har_exchanges(path))
