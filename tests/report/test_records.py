from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from wic_conformance.dicomweb.exchange import Headers
from wic_conformance.report.records import REDACTED, Redactor, read_records, record_name


def line(**changes: object) -> str:
    data: dict[str, object] = {
        "verdict": {"id": "abc", "received": 1.5, "method": "POST", "url": "http://h/dicom-web/studies",
                    "status": 409, "check_errors": [],
                    "findings": [{"requirement": "JSON-003", "severity": "error", "confidence": "N",
                                  "message": "bad tag", "location": "part 1"},
                                 {"requirement": "STOW-REQ-009", "severity": "warning", "message": "no Accept"}]},
        "request": {"method": "POST", "url": "http://h/dicom-web/studies",
                    "headers": [["content-type", "multipart/related"], ["authorization", "Basic dTpw"]],
                    "body_file": None, "body_size": 12},
        "response": {"status": 409, "headers": [["content-type", "application/dicom+json"]], "body": "{}"},
    }
    data.update(changes)
    return json.dumps(data)


class TestReadRecords:
    def test_reads_a_data_folder(self, tmp_path: Path) -> None:
        (tmp_path / "exchanges.ndjson").write_text(line() + "\n\n" + line(response=None) + "\n")
        records = list(read_records(tmp_path))
        assert [r.index for r in records] == [1, 3]
        first = records[0]
        assert first.exchange.id == "abc" and first.exchange.response is not None
        assert first.exchange.response.status == 409 and first.exchange.response.body.read() == b"{}"
        assert [f.requirement for f in first.errors] == ["JSON-003"]
        assert first.requirements == ("JSON-003", "STOW-REQ-009")
        assert records[1].exchange.response is None

    def test_secret_headers_are_redacted_again(self, tmp_path: Path) -> None:
        path = tmp_path / "x.ndjson"
        path.write_text(line() + "\n")
        (record,) = read_records(path)
        assert record.exchange.request is not None
        assert record.exchange.request.headers.get("authorization") == REDACTED

    def test_keeps_a_spooled_request_body(self, tmp_path: Path) -> None:
        body = tmp_path / "stow.body"
        body.write_bytes(b"x" * 12)
        (tmp_path / "exchanges.ndjson").write_text(
            line(request={"method": "POST", "url": "u", "headers": [], "body_file": str(body), "body_size": 12}))
        (record,) = read_records(tmp_path)
        assert record.exchange.request is not None and record.exchange.request.body.read() == b"x" * 12

    def test_a_bad_line_names_its_number(self, tmp_path: Path) -> None:
        (tmp_path / "exchanges.ndjson").write_text(line() + "\n{not json\n")
        with pytest.raises(ValueError, match=r"exchanges.ndjson:2: not a JSON line"):
            list(read_records(tmp_path))


class TestRecordName:
    def test_is_readable_and_unique(self) -> None:
        assert record_name(3, "post", "http://h:1/dicom-web/studies?x=1", 200) == "0003-POST-dicom-web/studies-200"
        assert record_name(12, "GET", "http://h/", None) == "0012-GET---none"

    def test_long_paths_are_shortened(self) -> None:
        name = record_name(1, "POST", "http://h/dicom-web/studies/" + "1.2" * 60, 409)
        assert len(name) < 110 and "..." in name


class TestRedactor:
    def test_collects_basic_token_and_secret_headers(self) -> None:
        red = Redactor.for_credentials(auth=("user", "pa55word"), headers=[("Cookie", "sid=abcdef"),
                                                                            ("X-Other", "visible")])
        basic = base64.b64encode(b"user:pa55word").decode()
        text = f"pa55word {basic} sid=abcdef visible"
        assert red.text(text) == f"{REDACTED} {REDACTED} {REDACTED} visible"
        assert Redactor.for_credentials(token="tok-123456").text("Bearer tok-123456") == f"Bearer {REDACTED}"

    def test_headers_and_nested_values(self) -> None:
        red = Redactor(("hunter22",))
        headers = red.headers(Headers.of([("Authorization", "Basic x"), ("Cookie", "c"), ("X-Note", "hunter22!")]))
        assert headers.items == (("Authorization", REDACTED), ("Cookie", REDACTED), ("X-Note", f"{REDACTED}!"))
        assert red.value({"a": ["hunter22", 1, {"b": "x hunter22"}]}) == {"a": [REDACTED, 1, {"b": f"x {REDACTED}"}]}

    def test_short_values_are_left_to_header_redaction(self) -> None:
        assert Redactor.for_credentials(auth=("u", "p")).text("up p") == "up p"
