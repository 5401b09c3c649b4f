"""Deliberate Image Manager defects: each one observably changes what the simulated Manager answers or stores."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom import dcmread
from pydicom.encaps import generate_frames

from wic_conformance.actors.faults import (
    ALTERED_PATIENT_NAME,
    CAUGHT_BY,
    JPEG_LOSSLESS_SV1,
    Fault,
    parse_faults,
    recompress_jpeg,
)
from wic_conformance.actors.manager import FailureReason, ImageManager, ManagerConfig
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request, Response
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.dicomweb.store_response import StoreResponse, parse_store_response
from wic_conformance.errors import ConfigError
from wic_conformance.findings import Severity
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid
from wic_conformance.validate.all_checks import REGISTRY
from wic_conformance.validate.registry import CheckContext, Outcome

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
Parts = list[tuple[dict[str, str], bytes]]


# -- helpers ------------------------------------------------------------------------------------------
def jpeg_metadata_request(*, uri: str | None = None) -> tuple[str, Parts]:
    """The JSON + JPEG fixture with fresh UIDs; with ``uri`` the Pixel Data points there and no bulk part is sent."""
    fixture = INDEX["json/jpeg-baseline"]
    doc = json.loads(fixture.read())
    for tag in ("0020000D", "0020000E", "00080018"):
        doc[0][tag] = {"vr": "UI", "Value": [new_uid()]}
    if uri is not None:
        doc[0]["7FE00010"] = {"vr": "OB", "BulkDataURI": uri}
        return fixture.media_type, [({"Content-Type": fixture.media_type}, json.dumps(doc).encode())]
    return fixture.media_type, [({"Content-Type": fixture.media_type}, json.dumps(doc).encode()),
                                *INDEX.bulk_parts(fixture)]


def part10_request(key: str = "part10/vl-photographic") -> tuple[str, Parts]:
    ds = dcmread(INDEX[key].path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return mt.APPLICATION_DICOM, [({"Content-Type": mt.APPLICATION_DICOM}, buffer.getvalue())]


def send(im: ImageManager, request: tuple[str, Parts]) -> tuple[requests.Response, StoreResponse]:
    root_type, parts = request
    ctype, body = encode_multipart(parts, root_type=root_type)
    r = requests.post(f"{im.url}/studies", data=body,
                      headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON}, timeout=30)
    response = Response(r.status_code, r.reason, Headers.of(dict(r.headers)), Body.of(r.content))
    return r, parse_store_response(response)


def stored(im: ImageManager) -> list[bytes]:
    return [Path(ref.path).read_bytes() for ref in im.store.instances()]


def manager_findings(request: tuple[str, Parts], r: requests.Response, retrieved: list[bytes]) -> set[str]:
    """Requirement IDs of the error-level findings the Image Manager checks draw from a round trip."""
    root_type, parts = request
    ctype, body = encode_multipart(parts, root_type=root_type)
    exchange = Exchange(
        request=Request("POST", "http://127.0.0.1/dicom-web/studies",
                        Headers.of({"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON}), Body.of(body)),
        response=Response(r.status_code, r.reason, Headers.of(dict(r.headers)), Body.of(r.content)),
        documents=tuple(Document(mt.APPLICATION_DICOM, Body.of(d), DocumentRole.RETRIEVED, f"retrieved {i}")
                        for i, d in enumerate(retrieved)))
    results = REGISTRY.run(CheckContext(), exchange, tags=["manager"])
    assert not [x for x in results if x.outcome is Outcome.ERROR], [x.error for x in results]
    return {f.requirement for x in results for f in x.findings if f.severity is Severity.ERROR}


@pytest.fixture
def make_manager(tmp_path: Path) -> Iterator[Any]:
    started: list[ImageManager] = []

    def make(*faults: Fault, validate_iod: bool = False) -> ImageManager:
        im = ImageManager(ManagerConfig(data_dir=tmp_path / f"im{len(started)}", validate_iod=validate_iod),
                          faults=faults).start()
        started.append(im)
        return im

    yield make
    for im in started:
        im.stop()
        im.check_errors()


class Canary:
    """A loopback HTTP server that serves a JPEG and records every GET."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits, payload = self.hits, INDEX["media/jpeg-baseline"].read()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", mt.IMAGE_JPEG)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/canary.jpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Canary:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- tests --------------------------------------------------------------------------------------------
class TestParse:
    def test_names_values_and_case(self) -> None:
        assert parse_faults(["WRONG_STATUS", "fetch-bulk-uri", "Alter_Attribute"]) == (
            Fault.WRONG_STATUS, Fault.FETCH_BULK_URI, Fault.ALTER_ATTRIBUTE)
        assert parse_faults("recompress_jpeg") == (Fault.RECOMPRESS_JPEG,)

    def test_unknown_fault_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="unknown fault 'slow'"):
            parse_faults(["slow"])

    def test_config_mapping_and_manager(self, tmp_path: Path) -> None:
        config = ManagerConfig.from_mapping({"data_dir": str(tmp_path), "faults": ["wrong_status"]})
        assert config.faults == ("wrong-status",)
        im = ImageManager(config, faults=[Fault.ALTER_ATTRIBUTE])
        try:
            assert im.faults == (Fault.WRONG_STATUS, Fault.ALTER_ATTRIBUTE)
            assert len(im.dataset_transforms) == 1
        finally:
            im.stop()
        with pytest.raises(ConfigError, match="unknown fault"):
            ManagerConfig.from_mapping({"faults": ["nope"]})

    def test_every_fault_names_the_requirements_that_catch_it(self) -> None:
        assert set(CAUGHT_BY) == set(Fault)


class TestNoFault:
    def test_baseline_is_clean(self, make_manager: Any) -> None:
        im = make_manager()
        request = jpeg_metadata_request()
        r, sr = send(im, request)
        assert r.status_code == 200 and len(sr.referenced) == 1
        assert manager_findings(request, r, stored(im)) == set()


class TestStatusFaults:
    def test_wrong_status_answers_202_for_a_clean_store(self, make_manager: Any) -> None:
        im = make_manager(Fault.WRONG_STATUS)
        request = part10_request()
        r, sr = send(im, request)
        assert r.status_code == 202 and len(sr.referenced) == 1 and not sr.failed
        assert len(stored(im)) == 1
        assert "STOW-MOD-009" in manager_findings(request, r, stored(im))

    def test_wrong_status_answers_200_where_409_is_due(self, make_manager: Any) -> None:
        im = make_manager(Fault.WRONG_STATUS)
        request = jpeg_metadata_request(uri="bulk/missing")  # unresolvable: nothing can be stored
        r, sr = send(im, request)
        assert r.status_code == 200
        assert [f.failure_reason for f in sr.failed] == [FailureReason.BULK_DATA_UNRESOLVED] and not sr.referenced
        assert stored(im) == []
        assert "STOW-RESP-001" in manager_findings(request, r, [])

    def test_drop_referenced_sequence(self, make_manager: Any) -> None:
        im = make_manager(Fault.DROP_REFERENCED_SEQUENCE)
        request = part10_request()
        r, sr = send(im, request)
        assert r.status_code == 200 and sr.referenced == () and not sr.failed
        assert len(stored(im)) == 1  # stored, just not reported
        assert {"STOW-MOD-009", "STOW-RESP-001"} <= manager_findings(request, r, stored(im))


class TestStoredInstanceFaults:
    def test_alter_attribute(self, make_manager: Any) -> None:
        im = make_manager(Fault.ALTER_ATTRIBUTE)
        request = part10_request()
        r, _ = send(im, request)
        assert r.status_code == 200
        (data,) = stored(im)
        ds = dcmread(io.BytesIO(data))
        assert str(ds.PatientName) == ALTERED_PATIENT_NAME and "OriginalAttributesSequence" not in ds
        assert data != request[1][0][1]
        assert "CONV-002" in manager_findings(request, r, [data])

    def test_recompress_jpeg(self, make_manager: Any) -> None:
        im = make_manager(Fault.RECOMPRESS_JPEG)
        request = jpeg_metadata_request()
        r, _ = send(im, request)
        assert r.status_code == 200
        (data,) = stored(im)
        ds = dcmread(io.BytesIO(data))
        (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
        submitted = INDEX["media/jpeg-baseline"].read()
        assert frame.rstrip(b"\0") != submitted and frame.startswith(b"\xff\xd8")
        assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.50"
        assert "CONV-003" in manager_findings(request, r, [data])

    def test_recompress_leaves_other_instances_alone(self) -> None:
        ds = dcmread(INDEX["part10/encapsulated-pdf"].path)
        before = ds.EncapsulatedDocument
        assert recompress_jpeg(ds).EncapsulatedDocument == before

    @pytest.mark.peer
    def test_wrong_transfer_syntax_passes_the_iod_gate_and_is_stored(self, make_manager: Any,
                                                                     dciodvfy_path: str) -> None:
        im = make_manager(Fault.WRONG_TRANSFER_SYNTAX, validate_iod=True)
        request = jpeg_metadata_request()
        r, sr = send(im, request)
        assert r.status_code == 200 and len(sr.referenced) == 1
        (data,) = stored(im)
        assert str(dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID) == JPEG_LOSSLESS_SV1
        assert "WIC-IM-005" in manager_findings(request, r, [data])


class TestFetchBulkUri:
    def test_conformant_manager_never_fetches(self, make_manager: Any) -> None:
        im = make_manager()
        with Canary() as canary:
            r, sr = send(im, jpeg_metadata_request(uri=canary.url))
        assert r.status_code == 409 and sr.failed[0].failure_reason == FailureReason.BULK_DATA_UNRESOLVED
        assert canary.hits == []

    def test_fault_fetches_and_stores_the_canary(self, make_manager: Any) -> None:
        im = make_manager(Fault.FETCH_BULK_URI)
        with Canary() as canary:
            r, sr = send(im, jpeg_metadata_request(uri=canary.url))
        assert canary.hits == ["/canary.jpg"]
        assert r.status_code == 200 and len(sr.referenced) == 1
        (data,) = stored(im)
        (frame,) = generate_frames(dcmread(io.BytesIO(data)).PixelData, number_of_frames=1)
        assert frame.rstrip(b"\0") == INDEX["media/jpeg-baseline"].read().rstrip(b"\0")

    @pytest.mark.parametrize("uri", ["file:///etc/hostname", "/etc/hostname", "http://example.invalid/x.jpg"])
    def test_fault_fetches_only_loopback_http(self, make_manager: Any, uri: str) -> None:
        im = make_manager(Fault.FETCH_BULK_URI)
        r, sr = send(im, jpeg_metadata_request(uri=uri))
        assert r.status_code == 409 and sr.failed[0].failure_reason == FailureReason.BULK_DATA_UNRESOLVED


class TestComposition:
    def test_faults_compose(self, make_manager: Any) -> None:
        im = make_manager(Fault.WRONG_STATUS, Fault.ALTER_ATTRIBUTE, Fault.RECOMPRESS_JPEG)
        request = jpeg_metadata_request()
        r, _ = send(im, request)
        assert r.status_code == 202
        found = manager_findings(request, r, stored(im))
        assert {"STOW-MOD-009", "CONV-002", "CONV-003"} <= found
