"""The simulated Image Manager over loopback: every STOW-RS variant, the bad inputs, QIDO/WADO/PDQm."""

from __future__ import annotations

import base64
import http.server
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom import dcmread, dcmwrite

from wic_conformance.actors.manager import Auth, FailureReason, ImageManager, ManagerConfig
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request, Response
from wic_conformance.dicomweb.multipart import decode_multipart, encode_multipart
from wic_conformance.dicomweb.store_response import parse_store_response
from wic_conformance.findings import Severity
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.report.records import read_records
from wic_conformance.validate.all_checks import REGISTRY
from wic_conformance.validate.registry import CheckContext, Outcome

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
ACCEPT_JSON = {"Accept": mt.APPLICATION_DICOM_JSON}


# -- helpers ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageManager]:
    config = ManagerConfig(data_dir=tmp_path_factory.mktemp("im"), max_body_bytes=8 << 20, body_timeout=2.0,
                           patients=INDEX.root / "patients.json")
    with ImageManager(config) as im:
        yield im
        im.check_errors()


def post(url: str, root_type: str, parts: list[tuple[dict[str, str], bytes]], *,
         headers: dict[str, str] | None = None, study: str | None = None) -> requests.Response:
    ctype, body = encode_multipart(parts, root_type=root_type)
    target = f"{url}/studies/{study}" if study else f"{url}/studies"
    return requests.post(target, data=body, headers={"Content-Type": ctype, **ACCEPT_JSON, **(headers or {})},
                         timeout=30)


def metadata_parts(key: str) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    fixture = INDEX[key]
    return fixture.media_type, [({"Content-Type": fixture.media_type}, fixture.read()), *INDEX.bulk_parts(fixture)]


def json_with(key: str, **changes: Any) -> bytes:
    """A JSON metadata fixture with top-level attributes replaced (tag -> attribute object or None)."""
    doc = json.loads(INDEX[key].read())
    for tag, value in changes.items():
        if value is None:
            doc[0].pop(tag, None)
        else:
            doc[0][tag] = value
    return json.dumps(doc).encode()


def fresh_uids(data: bytes) -> bytes:
    """Give a JSON metadata document new Study/Series/SOP Instance UIDs."""
    from wic_conformance.model.instances import new_uid

    doc = json.loads(data)
    for item in doc:
        for tag in ("0020000D", "0020000E", "00080018"):
            item[tag] = {"vr": "UI", "Value": [new_uid()]}
    return json.dumps(doc).encode()


def part10_with_new_uids(key: str) -> bytes:
    from wic_conformance.model.instances import new_uid

    ds = dcmread(INDEX[key].path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store_response(r: requests.Response) -> Any:
    return parse_store_response(Response(r.status_code, r.reason, Headers.of(dict(r.headers)), Body.of(r.content)))


def retrieve(url: str) -> list[bytes]:
    r = requests.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
                     timeout=30)
    assert r.status_code == 200, r.text
    result = decode_multipart(r.content, r.headers["Content-Type"])
    assert result.complete, result.deviations
    return [p.body.read() for p in result.parts]


def judge_round_trip(request_parts: tuple[str, list[tuple[dict[str, str], bytes]]], r: requests.Response,
                     retrieved: list[bytes], url: str) -> list[Any]:
    """Run the manager-side checks (response and conversion) on a recorded round trip."""
    root_type, parts = request_parts
    ctype, body = encode_multipart(parts, root_type=root_type)
    exchange = Exchange(
        request=Request("POST", f"{url}/studies", Headers.of({"Content-Type": ctype, **ACCEPT_JSON}), Body.of(body)),
        response=Response(r.status_code, r.reason, Headers.of(dict(r.headers)), Body.of(r.content)),
        documents=tuple(Document(mt.APPLICATION_DICOM, Body.of(d), DocumentRole.RETRIEVED, f"retrieved {i}")
                        for i, d in enumerate(retrieved)))
    results = REGISTRY.run(CheckContext(), exchange, tags=["manager"])
    assert not [x for x in results if x.outcome is Outcome.ERROR], [x.error for x in results]
    return [f for x in results for f in x.findings if f.severity is Severity.ERROR]


def stored_count(im: ImageManager) -> int:
    return len(im.store.instances())


# -- STOW-RS: good requests -------------------------------------------------------------------------
class TestStoreVariants:
    @pytest.mark.peer
    @pytest.mark.parametrize("key", ["json/jpeg-baseline", "json/mp4-h264", "json/pdf", "json/jpeg-baseline-utf8",
                                     "xml/jpeg-baseline", "xml/mp4-h264", "xml/pdf"])
    def test_metadata_and_bulk_data(self, manager: ImageManager, key: str, dciodvfy_path: str) -> None:
        root_type, parts = metadata_parts(key)
        if root_type == mt.APPLICATION_DICOM_JSON:
            parts[0] = (parts[0][0], fresh_uids(parts[0][1]))
        r = post(manager.url, root_type, parts)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith(mt.APPLICATION_DICOM_JSON)
        sr = store_response(r)
        assert len(sr.referenced) == 1 and not sr.failed
        retrieved = retrieve(sr.referenced[0].retrieve_url)
        assert len(retrieved) == 1
        assert judge_round_trip((root_type, parts), r, retrieved, manager.url) == []

    @pytest.mark.peer
    @pytest.mark.parametrize("key", ["part10/vl-photographic", "part10/video-photographic",
                                     "part10/encapsulated-pdf", "part10/kos", "part10/vl-photographic-lossless"])
    def test_part10(self, manager: ImageManager, key: str, dciodvfy_path: str) -> None:
        data = part10_with_new_uids(key)
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)])
        assert r.status_code == 200, r.text
        sr = store_response(r)
        (stored,) = retrieve(sr.referenced[0].retrieve_url)
        assert stored == data  # Part-10 uploads are stored byte for byte
        assert judge_round_trip((mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)]), r,
                                [stored], manager.url) == []

    def test_several_instances_in_one_request(self, manager: ImageManager) -> None:
        parts = [({"Content-Type": mt.APPLICATION_DICOM}, part10_with_new_uids("part10/vl-photographic"))
                 for _ in range(3)]
        r = post(manager.url, mt.APPLICATION_DICOM, parts)
        assert r.status_code == 200
        assert len(store_response(r).referenced) == 3

    def test_png_is_transformed(self, manager: ImageManager) -> None:
        doc = json.loads(INDEX["json/jpeg-baseline"].read())
        doc[0]["7FE00010"] = {"vr": "OB", "BulkDataURI": "bulk/png"}
        for tag in ("00280002", "00280004", "00280010", "00280011", "00280100", "00280101", "00280102",
                    "00280103", "00280006", "00282110", "00282114"):
            doc[0].pop(tag, None)
        parts = [({"Content-Type": mt.APPLICATION_DICOM_JSON}, fresh_uids(json.dumps(doc).encode())),
                 ({"Content-Type": mt.IMAGE_PNG, "Content-Location": "bulk/png"}, INDEX["media/png-rgba"].read())]
        r = post(manager.url, mt.APPLICATION_DICOM_JSON, parts)
        assert r.status_code in (200, 202), r.text
        sr = store_response(r)
        (stored,) = retrieve(sr.referenced[0].retrieve_url)
        ds = dcmread(io.BytesIO(stored))
        assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
        assert ds.SamplesPerPixel == 3 and ds.PhotometricInterpretation == "RGB"

    def test_append_to_existing_study(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        study = str(dcmread(io.BytesIO(data)).StudyInstanceUID)
        assert post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)]).ok
        qido = requests.get(f"{manager.url}/studies", params={"StudyInstanceUID": study}, timeout=10)
        assert qido.status_code == 200 and len(qido.json()) == 1
        doc = json.loads(INDEX["json/jpeg-baseline"].read())
        doc[0].pop("0020000D")
        doc[0]["00080018"] = {"vr": "UI", "Value": [f"2.25.{int(time.time() * 1e6)}"]}
        root_type, parts = metadata_parts("json/jpeg-baseline")
        parts[0] = (parts[0][0], json.dumps(doc).encode())
        r = post(manager.url, root_type, parts, study=study)
        assert r.status_code in (200, 202), r.text
        sr = store_response(r)
        assert sr.retrieve_url is not None and sr.retrieve_url.endswith(f"/studies/{study}")
        assert len(retrieve(f"{manager.url}/studies/{study}")) == 2

    def test_xml_response_by_accept(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)],
                 headers={"Accept": mt.APPLICATION_DICOM_XML})
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(mt.APPLICATION_DICOM_XML)
        assert store_response(r).format == "xml"

    def test_missing_accept_defaults_to_json(self, manager: ImageManager) -> None:
        ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                         part10_with_new_uids("part10/vl-photographic"))],
                                       root_type=mt.APPLICATION_DICOM)
        r = requests.post(f"{manager.url}/studies", data=body, headers={"Content-Type": ctype, "Accept": None},
                          timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(mt.APPLICATION_DICOM_JSON)

    def test_chunked_upload(self, manager: ImageManager) -> None:
        ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                         part10_with_new_uids("part10/vl-photographic"))],
                                       root_type=mt.APPLICATION_DICOM)
        chunks = (body[i:i + 1000] for i in range(0, len(body), 1000))
        r = requests.post(f"{manager.url}/studies", data=chunks, headers={"Content-Type": ctype, **ACCEPT_JSON},
                          timeout=10)
        assert r.status_code == 200, r.text

    def test_expect_100_continue(self, manager: ImageManager) -> None:
        ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                         part10_with_new_uids("part10/vl-photographic"))],
                                       root_type=mt.APPLICATION_DICOM)
        host, port = manager.url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall((f"POST /dicom-web/studies HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
                       f"Accept: application/dicom+json\r\nContent-Length: {len(body)}\r\n"
                       "Expect: 100-continue\r\n\r\n").encode())
            interim = s.recv(4096)
            assert interim.startswith(b"HTTP/1.1 100"), interim
            s.sendall(body)
            final = s.recv(65536)
        assert final.startswith(b"HTTP/1.1 200"), final[:200]


# -- STOW-RS: bad requests ----------------------------------------------------------------------------
class TestBadRequests:
    def test_malformed_multipart_is_400(self, manager: ImageManager) -> None:
        before = stored_count(manager)
        r = requests.post(f"{manager.url}/studies", data=b"this is not multipart",
                          headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x',
                                   **ACCEPT_JSON}, timeout=10)
        assert r.status_code == 400
        assert stored_count(manager) == before

    def test_truncated_body_stores_nothing(self, manager: ImageManager) -> None:
        before = stored_count(manager)
        ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                         part10_with_new_uids("part10/vl-photographic"))] * 2,
                                       root_type=mt.APPLICATION_DICOM)
        r = requests.post(f"{manager.url}/studies", data=body[: len(body) - 200],
                          headers={"Content-Type": ctype, **ACCEPT_JSON}, timeout=10)
        assert r.status_code == 400 and "before the close delimiter" in r.headers.get("Warning", "")
        assert stored_count(manager) == before

    def test_unsupported_media_type_is_415(self, manager: ImageManager) -> None:
        r = requests.post(f"{manager.url}/studies", data=b"{}", headers={"Content-Type": "application/json"},
                          timeout=10)
        assert r.status_code == 415
        r = post(manager.url, "image/jpeg", [({"Content-Type": "image/jpeg"}, INDEX["media/jpeg-baseline"].read())])
        assert r.status_code == 415

    def test_unsatisfiable_accept_is_406(self, manager: ImageManager) -> None:
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM},
                                                     part10_with_new_uids("part10/vl-photographic"))],
                 headers={"Accept": "text/html"})
        assert r.status_code == 406

    def test_oversize_body_is_413(self, manager: ImageManager) -> None:
        big = b"\0" * (9 << 20)
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, big)])
        assert r.status_code == 413

    def test_oversize_chunked_body_is_413(self, manager: ImageManager) -> None:
        ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, b"\0" * (9 << 20))],
                                       root_type=mt.APPLICATION_DICOM)
        chunks = (body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20))
        r = requests.post(f"{manager.url}/studies", data=chunks, headers={"Content-Type": ctype}, timeout=30)
        assert r.status_code == 413

    def test_invalid_json_is_400(self, manager: ImageManager) -> None:
        r = post(manager.url, mt.APPLICATION_DICOM_JSON, [({"Content-Type": mt.APPLICATION_DICOM_JSON}, b"[{")])
        assert r.status_code == 400

    def test_invalid_xml_is_400(self, manager: ImageManager) -> None:
        r = post(manager.url, mt.APPLICATION_DICOM_XML, [({"Content-Type": mt.APPLICATION_DICOM_XML}, b"<Native")])
        assert r.status_code == 400

    def test_unresolved_bulk_data_uri_fails_the_instance(self, manager: ImageManager) -> None:
        root_type, parts = metadata_parts("json/jpeg-baseline")
        parts = [(parts[0][0], fresh_uids(parts[0][1]))]  # the bulk part is left out
        r = post(manager.url, root_type, parts)
        assert r.status_code == 409
        sr = store_response(r)
        assert [f.failure_reason for f in sr.failed] == [FailureReason.BULK_DATA_UNRESOLVED]

    def test_foreign_bulk_data_uri_is_never_fetched(self, manager: ImageManager) -> None:
        hits: list[str] = []

        class Canary(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(INDEX["media/jpeg-baseline"].read())

            def log_message(self, *args: Any) -> None:
                pass

        canary = http.server.HTTPServer(("127.0.0.1", 0), Canary)
        thread = threading.Thread(target=canary.serve_forever, daemon=True)
        thread.start()
        try:
            for uri in (f"http://127.0.0.1:{canary.server_port}/steal.jpg", "file:///etc/passwd", "/etc/hostname"):
                data = json_with("json/jpeg-baseline", **{"7FE00010": {"vr": "OB", "BulkDataURI": uri}})
                r = post(manager.url, mt.APPLICATION_DICOM_JSON,
                         [({"Content-Type": mt.APPLICATION_DICOM_JSON}, fresh_uids(data))])
                assert r.status_code == 409, (uri, r.text)
                assert store_response(r).failed[0].failure_reason == FailureReason.BULK_DATA_UNRESOLVED
        finally:
            canary.shutdown()
        assert hits == []

    def test_study_uid_mismatch_is_409(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)],
                 study="2.25.1")
        assert r.status_code == 409
        assert store_response(r).failed[0].failure_reason == FailureReason.STUDY_UID_MISMATCH

    def test_mix_of_good_and_bad_is_202(self, manager: ImageManager) -> None:
        good = part10_with_new_uids("part10/vl-photographic")
        bad = INDEX["part10/broken-implicit-vr"].read()
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, good),
                                                    ({"Content-Type": mt.APPLICATION_DICOM}, bad)])
        assert r.status_code == 202
        sr = store_response(r)
        assert len(sr.referenced) == 1 and len(sr.failed) == 1

    def test_duplicate_instance_is_rejected_and_reported(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        parts = [({"Content-Type": mt.APPLICATION_DICOM}, data)]
        assert post(manager.url, mt.APPLICATION_DICOM, parts).status_code == 200
        before = stored_count(manager)
        r = post(manager.url, mt.APPLICATION_DICOM, parts)
        assert r.status_code == 409
        assert store_response(r).failed[0].failure_reason == FailureReason.DUPLICATE_SOP_INSTANCE
        assert stored_count(manager) == before

    def test_iod_invalid_instance_is_not_stored(self, manager: ImageManager) -> None:
        ds = dcmread(io.BytesIO(part10_with_new_uids("part10/vl-photographic")))
        ds.Modality = "CT"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, buffer.getvalue())])
        assert r.status_code == 409
        assert store_response(r).failed[0].failure_reason == FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS

    def test_still_serving_after_bad_input(self, manager: ImageManager) -> None:
        r = post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM},
                                                     part10_with_new_uids("part10/vl-photographic"))])
        assert r.status_code == 200


class TestLimitsAndAuth:
    def test_slow_client_gets_408(self, tmp_path: Path) -> None:
        with ImageManager(ManagerConfig(data_dir=tmp_path, body_timeout=0.3, validate_iod=False)) as im:
            host, port = im.url.split("//")[1].split("/")[0].split(":")
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                          b'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n\r\n--b\r\n')
                answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer

    def test_too_many_parts_is_413(self, tmp_path: Path) -> None:
        with ImageManager(ManagerConfig(data_dir=tmp_path, max_parts=3, validate_iod=False)) as im:
            parts = [({"Content-Type": mt.APPLICATION_DICOM}, b"x")] * 5
            assert post(im.url, mt.APPLICATION_DICOM, parts).status_code == 413

    @pytest.mark.parametrize("auth, header", [
        (Auth(username="u", password="p"), "Basic " + base64.b64encode(b"u:p").decode()),
        (Auth(token="t0ken"), "Bearer t0ken"),
    ])
    def test_auth_required(self, tmp_path: Path, auth: Auth, header: str) -> None:
        with ImageManager(ManagerConfig(data_dir=tmp_path, auth=auth, validate_iod=False)) as im:
            data = part10_with_new_uids("part10/vl-photographic")
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)])
            assert r.status_code == 401 and "WWW-Authenticate" in r.headers
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)],
                     headers={"Authorization": header})
            assert r.status_code == 200
            deadline = time.monotonic() + 10
            while len(im.verdicts) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [v.status for v in im.verdicts] == [401, 200]
            records = (im.data_dir / "exchanges.ndjson").read_text()
            assert header not in records and "<redacted>" in records

    def test_storage_survives_a_restart(self, tmp_path: Path) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        study = str(dcmread(io.BytesIO(data)).StudyInstanceUID)
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            assert post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)]).ok
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            assert retrieve(f"{im.url}/studies/{study}") == [data]


# -- judging the Capturer -----------------------------------------------------------------------------
class TestJudging:
    def test_verdicts_listed_with_findings(self, tmp_path: Path) -> None:
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                             part10_with_new_uids("part10/vl-photographic"))],
                                           root_type=mt.APPLICATION_DICOM)
            # No Accept header: a Capturer defect (STOW-HDR-004) the manager tolerates but reports.
            requests.post(f"{im.url}/studies", data=body, headers={"Content-Type": ctype, "Accept": None}, timeout=10)
            deadline = time.monotonic() + 10
            verdicts: list[Any] = []
            while time.monotonic() < deadline and not verdicts:
                verdicts = requests.get(im.url.rsplit("/", 1)[0] + "/wic/exchanges", timeout=10).json()
                time.sleep(0.05)
            assert verdicts and verdicts[0]["status"] == 200
            assert "STOW-HDR-004" in {f["requirement"] for f in verdicts[0]["findings"]}

    @pytest.mark.parametrize("padding", [0, 2 << 20], ids=["read into memory", "spooled while read"])
    def test_every_recorded_request_body_is_in_a_file(self, tmp_path: Path, padding: int) -> None:
        from wic_conformance.actors.manager import MEMORY_BODY_BYTES

        parts = [({"Content-Type": mt.APPLICATION_DICOM}, part10_with_new_uids("part10/vl-photographic"))]
        if padding:
            parts.append(({"Content-Type": mt.APPLICATION_DICOM}, b"x" * padding))  # not DICOM: that part fails
        ctype, body = encode_multipart(parts, root_type=mt.APPLICATION_DICOM)
        assert (len(body) > MEMORY_BODY_BYTES) == bool(padding)
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            r = requests.post(f"{im.url}/studies", data=body, headers={"Content-Type": ctype, **ACCEPT_JSON},
                              timeout=30)
            assert r.status_code in (200, 202)
            wait_for_verdicts(im, 1)
            (exchange,) = im.exchanges
        (record,) = [json.loads(line) for line in (tmp_path / "exchanges.ndjson").read_text().splitlines()]
        req = record["request"]
        assert req["body_size"] == len(body)
        with open(req["body_file"], "rb") as handle:
            handle.seek(req["body_offset"])
            assert handle.read(req["body_size"]) == body
        assert exchange.request is not None and exchange.request.body.path == Path(req["body_file"])
        assert exchange.request.body.read() == body
        (recorded,) = read_records(tmp_path)  # and the report reads it back
        assert recorded.exchange.request is not None and recorded.exchange.request.body.read() == body

    def test_small_bodies_share_one_spool_file(self, tmp_path: Path) -> None:
        bodies = []
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            for _ in range(3):
                ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                                 part10_with_new_uids("part10/vl-photographic"))],
                                               root_type=mt.APPLICATION_DICOM)
                bodies.append(body)
                r = requests.post(f"{im.url}/studies", data=body, headers={"Content-Type": ctype, **ACCEPT_JSON},
                                  timeout=30)
                assert r.status_code == 200
            wait_for_verdicts(im, 3)
        records = list(read_records(tmp_path))
        assert [r.exchange.request.body.read() for r in records if r.exchange.request] == bodies
        assert len({r.raw["request"]["body_file"] for r in records}) == 1
        assert sorted(r.raw["request"]["body_offset"] for r in records) == [0, len(bodies[0]),
                                                                           len(bodies[0]) + len(bodies[1])]


def wait_for_verdicts(im: ImageManager, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(im.verdicts) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(im.verdicts) >= count


class TestPart10Path:
    """PS3.10 uploads: stored byte for byte, written once, the IOD judged once per instance."""

    @pytest.mark.peer
    def test_dciodvfy_runs_once_per_instance(self, tmp_path: Path, dciodvfy_path: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        from wic_conformance.validate import iod

        runs: list[Path | None] = []
        original = iod.Dciodvfy.run

        def counting(self: iod.Dciodvfy, instance: Any) -> Any:
            runs.append(instance.body.path)
            return original(self, instance)

        monkeypatch.setattr(iod.Dciodvfy, "run", counting)
        good = part10_with_new_uids("part10/vl-photographic")
        bad = part10_with_new_uids("part10/broken-missing-patient-name")
        with ImageManager(ManagerConfig(data_dir=tmp_path, iod_engine="dciodvfy")) as im:
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, good),
                                                   ({"Content-Type": mt.APPLICATION_DICOM}, bad)])
            assert r.status_code == 202, r.text
            assert "breaks its IOD" in r.headers["Warning"]
            wait_for_verdicts(im, 1)
            im.check_errors()
            findings = im.verdicts[0].findings
        assert len(runs) == 2  # the gate, on each staged file; judging reused both verdicts
        assert all(p is not None and p.name.endswith(".tmp") for p in runs)
        iod_findings = [f for f in findings if f.requirement == "CONV-007" and f.severity is Severity.ERROR]
        assert iod_findings and all(f.location.startswith("request part 2") for f in iod_findings)

    @pytest.mark.peer
    def test_tables_engine_gates_in_process_and_dciodvfy_judges_what_they_leave(
            self, tmp_path: Path, dciodvfy_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
        from wic_conformance.validate import iod

        runs: list[str] = []
        tables: list[str] = []
        original, original_tables = iod.Dciodvfy.run, iod.DicomValidatorEngine.validate_dataset

        def counting(self: iod.Dciodvfy, instance: Any) -> Any:
            runs.append(instance.body.path.name if instance.body.path is not None else "request part")
            return original(self, instance)

        def counting_tables(self: iod.DicomValidatorEngine, ds: Any) -> Any:
            tables.append(str(ds.SOPInstanceUID))
            return original_tables(self, ds)

        monkeypatch.setattr(iod.Dciodvfy, "run", counting)
        monkeypatch.setattr(iod.DicomValidatorEngine, "validate_dataset", counting_tables)
        good = part10_with_new_uids("part10/vl-photographic")
        kos = part10_with_new_uids("part10/kos")
        bad = part10_with_new_uids("part10/broken-missing-patient-name")
        with ImageManager(ManagerConfig(data_dir=tmp_path, iod_engine="tables")) as im:
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, part)
                                                   for part in (good, bad, kos)])
            assert r.status_code == 202, r.text
            assert "breaks its IOD" in r.headers["Warning"] and "(0010,0010)" in r.headers["Warning"]
            wait_for_verdicts(im, 1)
            im.check_errors()
            findings = im.verdicts[0].findings
        # the tables judged the two VL Photographic parts once each (judging reused their verdicts) ...
        assert sorted(tables) == sorted(str(dcmread(io.BytesIO(part)).SOPInstanceUID) for part in (good, bad))
        # ... dciodvfy gated the Key Object Selection (a staged .tmp file) and judged the other two parts
        assert sum(name.endswith(".tmp") for name in runs) == 1 and len(runs) == 3
        iod_findings = [f for f in findings if f.requirement == "CONV-007" and f.severity is Severity.ERROR]
        assert all(f.location.startswith("request part 2") for f in iod_findings)
        assert {f.message.split(" ")[0] for f in iod_findings} == {"dicom-validator", "dciodvfy"}

    def test_tables_gate_refuses_a_consistency_defect_and_judging_runs_no_dciodvfy(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from wic_conformance.validate import iod

        def forbidden(self: iod.Dciodvfy, instance: Any) -> Any:
            raise AssertionError("dciodvfy ran")

        monkeypatch.setattr(iod.Dciodvfy, "run", forbidden)
        ds = dcmread(io.BytesIO(part10_with_new_uids("part10/vl-photographic")))
        ds.PhotometricInterpretation = "MONOCHROME2"  # with 3 samples per pixel (PS3.3 C.7.6.3.1.2)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        with ImageManager(ManagerConfig(data_dir=tmp_path)) as im:  # iod_engine "tables" is the default
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, buffer.getvalue())])
            assert r.status_code == 409 and "Photometric Interpretation" in r.headers["Warning"], r.text
            wait_for_verdicts(im, 1)
            im.check_errors()
            verdict = im.verdicts[0]
        assert not verdict.errors
        messages = [f.message for f in verdict.findings if f.requirement == "CONV-007"]
        assert any(m.startswith("dicom-validator") and "Photometric Interpretation" in m for m in messages), messages
        assert "part10_instance_conforms_to_iod" not in {check for check, _outcome, _ in verdict.judged}

    def test_file_meta_mismatch_is_rewritten_and_the_judge_cites_the_capturers_rule(self, tmp_path: Path) -> None:
        data = INDEX["part10/broken-meta-mismatch"].path.read_bytes()
        with ImageManager(ManagerConfig(data_dir=tmp_path, iod_engine="tables")) as im:
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)])
            assert r.status_code == 200, r.text
            assert "MediaStorageSOPInstanceUID" in r.headers["Warning"] and "rewritten" in r.headers["Warning"]
            wait_for_verdicts(im, 1)
            im.check_errors()
            findings = im.verdicts[0].findings
        assert {f.requirement for f in findings if f.title == "MalformedPart10"} == {"STOW-PAY-003"}
        # and both IOD engines judged the part as it was sent
        conv = [f.message for f in findings if f.requirement == "CONV-007" and "MediaStorage" in f.message]
        assert {m.split(" ")[0] for m in conv} == {"dciodvfy", "dicom-validator"}

    def test_bytes_pydicom_would_rewrite_are_stored_unchanged(self, tmp_path: Path) -> None:
        ds = dcmread(io.BytesIO(part10_with_new_uids("part10/vl-photographic")))
        del ds.file_meta.ImplementationVersionName  # pydicom would add it back when encoding
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=False)
        data = buffer.getvalue()
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False, judge=False)) as im:
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)])
            assert r.status_code == 200, r.text
            (stored,) = retrieve(store_response(r).referenced[0].retrieve_url)
        assert stored == data

    def test_rewritten_file_meta_is_encoded(self, tmp_path: Path) -> None:
        data = INDEX["part10/broken-meta-mismatch"].read()
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False, judge=False)) as im:
            r = post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)])
            assert r.status_code == 200, r.text
            (stored,) = retrieve(store_response(r).referenced[0].retrieve_url)
        ds = dcmread(io.BytesIO(stored))
        assert stored != data and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID

    def test_nothing_is_left_in_the_store_but_the_instances(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        assert post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)]).ok
        leftovers = [p for p in (manager.data_dir / "instances").rglob("*") if p.is_file() and p.suffix != ".dcm"]
        assert leftovers == []


# -- QIDO-RS, WADO-RS, PDQm ---------------------------------------------------------------------------
class TestQueryAndRetrieve:
    def test_qido_levels_and_metadata(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        ds = dcmread(io.BytesIO(data))
        assert post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)]).ok
        study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        r = requests.get(f"{manager.url}/studies", params={"PatientID": str(ds.PatientID),
                                                           "StudyInstanceUID": study}, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(mt.APPLICATION_DICOM_JSON)
        r = requests.get(f"{manager.url}/studies/{study}/series/{series}/instances", timeout=10)
        assert [i["00080018"]["Value"][0] for i in r.json()] == [str(ds.SOPInstanceUID)]
        r = requests.get(f"{manager.url}/studies/{study}/metadata", timeout=10)
        assert r.status_code == 200 and r.json()[0]["00080018"]["Value"] == [str(ds.SOPInstanceUID)]
        assert requests.get(f"{manager.url}/studies", params={"Bogus": "1"}, timeout=10).status_code == 400
        assert requests.get(f"{manager.url}/studies", params={"PatientID": "nobody-xyz"},
                            timeout=10).status_code == 204

    def test_wado_default_transfer_syntax_is_explicit_le(self, manager: ImageManager) -> None:
        data = part10_with_new_uids("part10/vl-photographic")
        ds = dcmread(io.BytesIO(data))
        assert post(manager.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, data)]).ok
        url = (f"{manager.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
               f"/instances/{ds.SOPInstanceUID}")
        r = requests.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=30)
        assert r.status_code == 200
        (part,) = decode_multipart(r.content, r.headers["Content-Type"]).parts
        assert str(dcmread(io.BytesIO(part.body.read())).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
        assert requests.get(url + "x", timeout=10).status_code == 404

    def test_pdqm_is_mounted(self, manager: ImageManager) -> None:
        r = requests.get(f"{manager.fhir_url}/Patient", params={"family": "WIC"}, timeout=10)
        assert r.status_code == 200 and r.json()["resourceType"] == "Bundle" and r.json()["total"] >= 1


class TestRobustness:
    def test_forwarding_headers_do_not_change_the_retrieve_urls(self, manager: ImageManager) -> None:
        part = [({"Content-Type": mt.APPLICATION_DICOM}, part10_with_new_uids("part10/vl-photographic"))]
        r = post(manager.url, mt.APPLICATION_DICOM, part,
                 headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 200, r.text
        (ref,) = store_response(r).referenced
        assert ref.retrieve_url is not None and ref.retrieve_url.startswith(manager.url + "/studies/")

    def test_handler_error_is_a_500_that_says_so_and_the_server_keeps_serving(self, tmp_path: Path) -> None:
        from wic_conformance.actors.manager import StoreOutcome, Submission

        calls = {"n": 0}

        def flaky(submission: Submission) -> StoreOutcome:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("disk on fire")
            return im.store_submission(submission)

        im = ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False), on_store=flaky)
        with im:
            part = [({"Content-Type": mt.APPLICATION_DICOM}, part10_with_new_uids("part10/vl-photographic"))]
            r = post(im.url, mt.APPLICATION_DICOM, part)
            assert r.status_code == 500 and "RuntimeError: disk on fire" in r.text
            assert post(im.url, mt.APPLICATION_DICOM, part).status_code == 200
            with pytest.raises(RuntimeError, match="disk on fire"):
                im.check_errors()

    def test_concurrent_stores_are_all_kept(self, tmp_path: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
            bodies = [part10_with_new_uids("part10/vl-photographic") for _ in range(24)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(
                    lambda d: post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, d)])
                    .status_code, bodies))
            assert statuses == [200] * 24
            assert len(im.store.instances()) == 24

    def test_oversized_request_head_gets_a_clear_status(self, tmp_path: Path) -> None:
        with ImageManager(ManagerConfig(data_dir=tmp_path, max_header_bytes=4096, validate_iod=False)) as im:
            r = requests.post(f"{im.url}/studies", data=b"x", headers={"X-Big": "a" * 20000}, timeout=10)
            assert r.status_code in (400, 431)
            assert post(im.url, mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM},
                                                        part10_with_new_uids("part10/vl-photographic"))]).ok

    def test_deeply_nested_json_is_400_not_a_crash(self, manager: ImageManager) -> None:
        item: dict[str, Any] = {}
        for _ in range(200):
            item = {"00400275": {"vr": "SQ", "Value": [item]}}
        r = post(manager.url, mt.APPLICATION_DICOM_JSON,
                 [({"Content-Type": mt.APPLICATION_DICOM_JSON}, json.dumps([item]).encode())])
        assert r.status_code == 400

    def test_xml_entity_bomb_is_400(self, manager: ImageManager) -> None:
        bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
                b'<NativeDicomModel>&lol2;</NativeDicomModel>')
        r = post(manager.url, mt.APPLICATION_DICOM_XML, [({"Content-Type": mt.APPLICATION_DICOM_XML}, bomb)])
        assert r.status_code == 400


class TestConfig:
    def test_config_file(self, tmp_path: Path) -> None:
        path = tmp_path / "im.yaml"
        path.write_text("duplicate: replace\nall_stored_with_warnings_status: 202\nauth: {token: abc}\n"
                        "conversion: {image_sop_class: secondary-capture}\n")
        config = ManagerConfig.from_file(path, data_dir=str(tmp_path / "data"))
        assert config.duplicate.value == "replace" and config.auth == Auth(token="abc")
        assert config.data_dir == tmp_path / "data"

    def test_durable_writes(self, tmp_path: Path) -> None:
        assert ManagerConfig().durable_writes is False
        config = ManagerConfig.from_mapping({"durable_writes": True, "data_dir": str(tmp_path)})
        with ImageManager(config) as im:
            assert im.store.durable is True

    @pytest.mark.parametrize("text, match", [
        ("bogus: 1\n", "unknown setting"),
        ("all_stored_with_warnings_status: 201\n", "must be 200 or 202"),
        ("duplicate: sometimes\n", "sometimes"),
        ("iod_engine: gdcm\n", "iod_engine must be one of dciodvfy, tables"),
    ])
    def test_bad_config(self, tmp_path: Path, text: str, match: str) -> None:
        from wic_conformance.errors import ConfigError

        path = tmp_path / "im.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            ManagerConfig.from_file(path)

    def test_replace_policy_warns(self, tmp_path: Path) -> None:
        from wic_conformance.actors.store import DuplicatePolicy

        with ImageManager(ManagerConfig(data_dir=tmp_path, duplicate=DuplicatePolicy.REPLACE,
                                        validate_iod=False)) as im:
            part = [({"Content-Type": mt.APPLICATION_DICOM}, part10_with_new_uids("part10/vl-photographic"))]
            assert post(im.url, mt.APPLICATION_DICOM, part).status_code == 200
            r = post(im.url, mt.APPLICATION_DICOM, part)
            assert r.status_code == 200 and "replaced" in r.headers["Warning"]
            assert store_response(r).referenced[0].warning_reason == FailureReason.COERCED
