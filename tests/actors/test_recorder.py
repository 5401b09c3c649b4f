"""The HAR recorder: bodies inline or in side files, the journal, crash recovery, HAR 1.2 validity."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wic_conformance.actors.recorder import (
    BODIES_DIR,
    HAR_NAME,
    JOURNAL_NAME,
    REDACTED,
    BodyTee,
    Journal,
    RecordedBody,
    build_har,
    har_entry,
    load_recording,
    write_har,
)
from wic_conformance.dicomweb.har import iter_har_exchanges
from wic_conformance.errors import UsageError

_NAME_VALUE = {"type": "object", "required": ["name", "value"],
               "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}
_LIST = {"type": "array", "items": _NAME_VALUE}
_TIMING = {"type": "number", "minimum": 0}

#: The required structure of HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), as JSON Schema.
HAR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["log"],
    "properties": {"log": {
        "type": "object",
        "required": ["version", "creator", "entries"],
        "properties": {
            "version": {"const": "1.2"},
            "creator": {"type": "object", "required": ["name", "version"],
                        "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
            "pages": {"type": "array"},
            "entries": {"type": "array", "items": {
                "type": "object",
                "required": ["startedDateTime", "time", "request", "response", "cache", "timings"],
                "properties": {
                    "startedDateTime": {"type": "string",
                                        "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"},
                    "time": {"type": "number", "minimum": 0},
                    "request": {
                        "type": "object",
                        "required": ["method", "url", "httpVersion", "cookies", "headers", "queryString",
                                     "headersSize", "bodySize"],
                        "properties": {
                            "method": {"type": "string"}, "url": {"type": "string"},
                            "httpVersion": {"type": "string"}, "cookies": _LIST, "headers": _LIST,
                            "queryString": _LIST, "headersSize": {"type": "integer"},
                            "bodySize": {"type": "integer"},
                            "postData": {"type": "object", "required": ["mimeType"],
                                         "properties": {"mimeType": {"type": "string"},
                                                        "text": {"type": "string"},
                                                        "_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
                        },
                    },
                    "response": {
                        "type": "object",
                        "required": ["status", "statusText", "httpVersion", "cookies", "headers", "content",
                                     "redirectURL", "headersSize", "bodySize"],
                        "properties": {
                            "status": {"type": "integer"}, "statusText": {"type": "string"},
                            "httpVersion": {"type": "string"}, "cookies": _LIST, "headers": _LIST,
                            "content": {"type": "object", "required": ["size", "mimeType"],
                                        "properties": {"size": {"type": "integer"}, "mimeType": {"type": "string"},
                                                       "text": {"type": "string"}}},
                            "redirectURL": {"type": "string"}, "headersSize": {"type": "integer"},
                            "bodySize": {"type": "integer"},
                        },
                    },
                    "cache": {"type": "object"},
                    "timings": {"type": "object", "required": ["send", "wait", "receive"],
                                "properties": {"send": _TIMING, "wait": _TIMING, "receive": _TIMING}},
                },
            }},
        },
    }},
}


def assert_valid_har(har: dict[str, Any]) -> None:
    """Validate against the HAR 1.2 schema, and check that every body carries a SHA-256."""
    jsonschema.validate(har, HAR_SCHEMA)
    for entry in har["log"]["entries"]:
        post = entry["request"].get("postData")
        if post is not None:
            assert "_sha256" in post, entry["request"]["url"]
        if entry["response"]["status"]:
            assert "_sha256" in entry["response"]["content"], entry["request"]["url"]


def body_bytes(node: dict[str, Any], root: Path) -> bytes:
    """Return the bytes a HAR body node stands for."""
    if "_file" in node:
        return (root / node["_file"]).read_bytes()
    if node.get("encoding") == "base64":
        return base64.b64decode(node["text"])
    return str(node.get("text", "")).encode("utf-8")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tee(root: Path, data: bytes, *, threshold: int = 16, ident: str = "x", chunk: int = 7) -> RecordedBody:
    (root / BODIES_DIR).mkdir(exist_ok=True)
    t = BodyTee(root, ident, "request", threshold)
    for i in range(0, len(data), chunk):
        t.write(data[i:i + chunk])
    return t.finish()


class TestBodyTee:
    def test_small_body_stays_in_memory(self, tmp_path: Path) -> None:
        body = tee(tmp_path, b"hello")
        assert body.data == b"hello" and body.file is None and body.size == 5 and body.sha256 == sha(b"hello")
        assert list((tmp_path / BODIES_DIR).iterdir()) == []

    def test_large_body_goes_to_a_side_file_named_by_its_hash(self, tmp_path: Path) -> None:
        data = os.urandom(1000)
        body = tee(tmp_path, data)
        assert body.data is None and body.file == f"{BODIES_DIR}/{sha(data)}.bin"
        assert (tmp_path / body.file).read_bytes() == data
        assert body.body().read() == data
        assert [p.name for p in (tmp_path / BODIES_DIR).iterdir()] == [f"{sha(data)}.bin"]

    def test_identical_large_bodies_share_one_file(self, tmp_path: Path) -> None:
        data = os.urandom(100)
        first, second = tee(tmp_path, data, ident="a"), tee(tmp_path, data, ident="b")
        assert first.file == second.file
        assert len(list((tmp_path / BODIES_DIR).iterdir())) == 1

    def test_threshold_is_inclusive(self, tmp_path: Path) -> None:
        assert tee(tmp_path, b"x" * 16).file is None
        assert tee(tmp_path, b"x" * 17).file is not None

    def test_discard_removes_the_partial_file(self, tmp_path: Path) -> None:
        (tmp_path / BODIES_DIR).mkdir()
        t = BodyTee(tmp_path, "d", "request", 4)
        t.write(b"0123456789")
        assert len(list((tmp_path / BODIES_DIR).iterdir())) == 1
        t.discard()
        assert list((tmp_path / BODIES_DIR).iterdir()) == []

    def test_har_node_inline_text_base64_and_side_file(self, tmp_path: Path) -> None:
        text = RecordedBody(5, sha(b"{}\r\n!"), b"{}\r\n!").har("application/json")
        assert text == {"mimeType": "application/json", "text": "{}\r\n!", "_sha256": sha(b"{}\r\n!"), "_size": 5}
        binary = RecordedBody(3, sha(b"\xff\x00\x01"), b"\xff\x00\x01").har("application/dicom")
        assert binary["encoding"] == "base64" and base64.b64decode(binary["text"]) == b"\xff\x00\x01"
        side = RecordedBody(10, "0" * 64, None, "bodies/x.bin").har("application/octet-stream")
        assert side["_file"] == "bodies/x.bin" and "text" not in side


def _entry(root: Path, *, request_body: bytes = b"", response_body: bytes = b"{}",
           headers: list[tuple[str, str]] | None = None, redact: bool = True, threshold: int = 64) -> dict[str, Any]:
    return har_entry(
        started=1_700_000_000.25,
        request={"method": "POST", "url": "http://127.0.0.1:1/dicom-web/studies?a=1&b=%20x",
                 "httpVersion": "HTTP/1.1",
                 "headers": headers or [("content-type", "multipart/related; boundary=b"),
                                        ("authorization", "Bearer SECRET"), ("cookie", "sid=SECRET; theme=dark")]},
        request_body=tee(root, request_body, threshold=threshold, ident="rq"),
        response={"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                  "headers": [("content-type", "application/dicom+json"), ("set-cookie", "sid=SECRET; Path=/")]},
        response_body=tee(root, response_body, threshold=threshold, ident="rs"),
        timings={"send": 1.5, "wait": 2, "receive": 0.25}, redact=redact)


class TestHarEntry:
    def test_entry_is_valid_har(self, tmp_path: Path) -> None:
        entry = _entry(tmp_path, request_body=b"abc")
        assert_valid_har({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [entry]}})
        assert entry["startedDateTime"] == "2023-11-14T22:13:20.250Z"
        assert entry["time"] == 3.75
        assert entry["request"]["queryString"] == [{"name": "a", "value": "1"}, {"name": "b", "value": " x"}]
        assert entry["request"]["postData"]["mimeType"] == "multipart/related; boundary=b"
        assert entry["request"]["bodySize"] == 3

    def test_secrets_are_redacted_by_default(self, tmp_path: Path) -> None:
        entry = _entry(tmp_path)
        assert "SECRET" not in json.dumps(entry)
        headers = {h["name"]: h["value"] for h in entry["request"]["headers"]}
        assert headers["authorization"] == REDACTED and headers["cookie"] == REDACTED
        assert entry["request"]["cookies"] == [{"name": "sid", "value": REDACTED}, {"name": "theme", "value": REDACTED}]
        assert entry["response"]["cookies"] == [{"name": "sid", "value": REDACTED}]

    def test_redaction_can_be_switched_off(self, tmp_path: Path) -> None:
        entry = _entry(tmp_path, redact=False)
        assert json.dumps(entry).count("SECRET") == 5  # 3 headers, 2 cookie lists
        assert entry["request"]["cookies"][1] == {"name": "theme", "value": "dark"}

    def test_no_response_is_status_zero(self, tmp_path: Path) -> None:
        entry = har_entry(started=0.0, request={"method": "GET", "url": "http://h/x", "headers": []},
                          request_body=None, response=None, response_body=None, timings={},
                          truncated={"side": "request", "reason": "refused"})
        assert entry["response"]["status"] == 0 and entry["_truncated"] is True
        assert entry["_truncation"] == {"side": "request", "reason": "refused"}
        assert "postData" not in entry["request"]
        assert_valid_har({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [entry]}})


def _journal(root: Path, records: list[dict[str, Any]]) -> None:
    journal = Journal(root / JOURNAL_NAME)
    for record in records:
        journal.append(record, sync=record.get("event") == "entry")
    journal.close()


class TestJournalAndHar:
    def test_har_is_built_in_start_order_with_verdicts_merged(self, tmp_path: Path) -> None:
        (tmp_path / BODIES_DIR).mkdir()
        big = os.urandom(200)
        first, second = _entry(tmp_path, request_body=big), _entry(tmp_path, request_body=b"small")
        _journal(tmp_path, [
            {"event": "started", "id": "a", "started": 1.0, "request": {"method": "POST", "url": "u", "headers": []}},
            {"event": "started", "id": "b", "started": 2.0, "request": {"method": "POST", "url": "u", "headers": []}},
            {"event": "entry", "id": "b", "entry": second},
            {"event": "entry", "id": "a", "entry": first},
            {"event": "wic", "id": "a", "wic": {"judged": True, "findings": [{"requirement": "STOW-HDR-001"}]}},
        ])
        har = load_recording(tmp_path)
        assert_valid_har(har)
        entries = har["log"]["entries"]
        assert [e["request"]["bodySize"] for e in entries] == [200, 5]
        assert entries[0]["_wic"]["findings"] == [{"requirement": "STOW-HDR-001"}]
        assert "_wic" not in entries[1]
        assert body_bytes(entries[0]["request"]["postData"], tmp_path) == big
        assert json.loads((tmp_path / HAR_NAME).read_text()) == har

    def test_har_reader_gets_the_bodies_back(self, tmp_path: Path) -> None:
        (tmp_path / BODIES_DIR).mkdir()
        big, small = os.urandom(500), b"\x00\xffbinary"
        _journal(tmp_path, [
            {"event": "started", "id": "a", "started": 1.0, "request": {"method": "POST", "url": "u", "headers": []}},
            {"event": "entry", "id": "a", "entry": _entry(tmp_path, request_body=big, response_body=small)},
        ])
        har_path = write_har(tmp_path)
        (exchange,) = iter_har_exchanges(har_path)
        assert exchange.request is not None and exchange.response is not None
        assert exchange.request.body.sha256() == sha(big)
        assert exchange.response.body.read() == small

    def test_an_exchange_that_never_ended_is_truncated_with_what_arrived(self, tmp_path: Path) -> None:
        (tmp_path / BODIES_DIR).mkdir()
        arrived = os.urandom(300)
        (tmp_path / BODIES_DIR / ".partial-dead-request.bin").write_bytes(arrived)
        _journal(tmp_path, [{"event": "started", "id": "dead", "started": 5.0,
                             "request": {"method": "POST", "url": "http://h/dicom-web/studies",
                                         "httpVersion": "HTTP/1.1",
                                         "headers": [["content-type", "multipart/related; boundary=x"]]}}])
        har = load_recording(tmp_path)
        assert_valid_har(har)
        (entry,) = har["log"]["entries"]
        assert entry["_truncated"] is True and entry["response"]["status"] == 0
        post = entry["request"]["postData"]
        assert post["_sha256"] == sha(arrived) and body_bytes(post, tmp_path) == arrived
        (exchange,) = iter_har_exchanges(tmp_path / HAR_NAME)
        assert exchange.truncated and exchange.response is None

    def test_a_line_cut_short_by_a_crash_is_skipped(self, tmp_path: Path) -> None:
        (tmp_path / BODIES_DIR).mkdir()
        _journal(tmp_path, [{"event": "started", "id": "a", "started": 1.0,
                             "request": {"method": "GET", "url": "u", "headers": []}},
                            {"event": "entry", "id": "a", "entry": _entry(tmp_path)}])
        with open(tmp_path / JOURNAL_NAME, "a") as handle:
            handle.write('{"v":1,"event":"entry","id":"b","entr')
        har = build_har(tmp_path)
        assert len(har["log"]["entries"]) == 1

    def test_journal_flush_waits_for_the_disk(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path / JOURNAL_NAME)
        for n in range(200):
            journal.append({"event": "started", "id": str(n)}, sync=n % 10 == 0)
        assert journal.flush(10)
        assert len((tmp_path / JOURNAL_NAME).read_text().splitlines()) == 200
        journal.close()

    def test_not_a_recording(self, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match="holds no recording"):
            load_recording(tmp_path)
        with pytest.raises(UsageError, match="no journal.ndjson"):
            build_har(tmp_path)


_KILLED_PROXY = r"""
import sys
from wic_conformance.actors.proxy import RecordingProxy
proxy = RecordingProxy(sys.argv[1], record_dir=sys.argv[2], judge=False, body_threshold=1024)
proxy.start()
sys.stdout.write(proxy.url + "\n")
sys.stdout.flush()
sys.stdin.read()
"""


class TestCrash:
    def test_a_killed_proxy_leaves_a_truncated_exchange_with_what_passed(self, tmp_path: Path) -> None:
        """SIGKILL the proxy in the middle of an upload: the recording still has the exchange and its bytes."""
        import socket

        from wic_conformance.actors.manager import ImageManager, ManagerConfig

        with ImageManager(ManagerConfig(data_dir=tmp_path / "im", body_timeout=30)) as im:
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
            child = subprocess.Popen([sys.executable, "-c", _KILLED_PROXY, im.url, str(tmp_path / "rec")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
            try:
                assert child.stdout is not None
                url = child.stdout.readline().strip()
                host, port = url.split("//")[1].split("/")[0].split(":")
                sent = b"\x00" * 200_000
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                                 b"Content-Type: multipart/related; boundary=b\r\n\r\n" + sent)
                    deadline = time.monotonic() + 10
                    partial = tmp_path / "rec" / BODIES_DIR / "x"
                    while time.monotonic() < deadline:  # wait until the proxy has spooled what was sent
                        partials = list((tmp_path / "rec" / BODIES_DIR).glob(".partial-*-request.bin"))
                        if partials and partials[0].stat().st_size >= len(sent):
                            partial = partials[0]
                            break
                        time.sleep(0.02)
                    assert partial.exists()
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait(10)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        har = load_recording(tmp_path / "rec")
        assert_valid_har(har)
        (entry,) = har["log"]["entries"]
        assert entry["_truncated"] is True
        assert entry["request"]["bodySize"] == len(sent)
        assert entry["request"]["postData"]["_sha256"] == sha(sent)
