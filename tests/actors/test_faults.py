"""Deliberate Image Manager defects: each one observably changes what the simulated Manager answers or stores."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Callable, Iterator
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
from wic_conformance.bench.manager import OrthancProcess
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request, Response
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.dicomweb.store_response import StoreResponse, parse_store_response
from wic_conformance.errors import ConfigError
from wic_conformance.findings import Severity
from wic_conformance.fuzz.mutations import MutationKind
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid
from wic_conformance.plans.loader import load_plans
from wic_conformance.plans.model import Case, CaseOutcome, Encoding, Target
from wic_conformance.plans.runner import run_case
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


# -- the Image Manager test plan catches each fault -----------------------------------------------------
PLANS = Path(__file__).resolve().parents[2] / "testplans" / "manager"


@pytest.fixture(scope="module")
def plan_cases() -> list[Case]:
    if not sorted(PLANS.glob("*.yaml")):
        pytest.skip("no plans in testplans/manager yet")
    return [case for plan in load_plans(PLANS) for case in plan.cases]


def _plain_store(case: Case) -> bool:
    """A case that sends valid instances the plain way and expects them stored with 200 (STOW-RESP-001)."""
    p, e = case.payload, case.expect
    return (e.failure_requirement == "STOW-RESP-001" and not p.mutations and not p.bulk and not p.overrides
            and not p.resend and not p.pad_bytes and p.fresh_uids and not p.chunked
            and p.accept == mt.APPLICATION_DICOM_JSON and case.target == "studies"
            and 200 in e.status and e.stored is True and e.stored_only is None and not e.findings
            and not case.slow)


def _refused(case: Case) -> bool:
    """A case whose request must be refused as a whole (409, nothing stored), without a canary."""
    return (409 in case.expect.status and 200 not in case.expect.status and case.expect.stored is False
            and not case.payload.mutations and not case.payload.resend)


def _foreign_bulk_uri(case: Case) -> bool:
    return any(m.kind == MutationKind.FOREIGN_BULK_URI and not m.params.get("uri") for m in case.payload.mutations)


def _pick(cases: list[Case], what: str, predicate: Callable[[Case], bool]) -> Case:
    found = [case for case in cases if predicate(case)]
    assert found, f"testplans/manager has no case that {what}: the fault it is meant to catch goes unnoticed"
    return found[0]


def _single(encoding: Encoding, fixture: str) -> Callable[[Case], bool]:
    def predicate(case: Case) -> bool:
        return _plain_store(case) and case.payload.encoding is encoding and case.payload.fixtures == (fixture,)

    return predicate


PART10_STORE = ("stores one plain PS3.10 VL Photographic instance", _single(Encoding.PART10, "part10/vl-photographic"))
JSON_JPEG = ("stores a baseline JPEG as JSON metadata and bulk data", _single(Encoding.JSON, "json/jpeg-baseline"))
XML_JPEG = ("stores a baseline JPEG as XML metadata and bulk data", _single(Encoding.XML, "xml/jpeg-baseline"))
REFUSED = ("expects a whole request refused with 409", _refused)
FOREIGN = ("points a BulkDataURI at the canary", _foreign_bulk_uri)

# fault -> [(case selection, requirement IDs that must all be reported)]
CAUGHT: dict[Fault, list[tuple[tuple[str, Callable[[Case], bool]], set[str]]]] = {
    Fault.WRONG_STATUS: [(PART10_STORE, {"STOW-MOD-009", "STOW-RESP-001"}), (REFUSED, {"STOW-RESP-001"})],
    Fault.DROP_REFERENCED_SEQUENCE: [(PART10_STORE, {"STOW-MOD-009", "STOW-RESP-001"})],
    Fault.ALTER_ATTRIBUTE: [(PART10_STORE, {"CONV-002"}), (JSON_JPEG, {"CONV-002"})],
    Fault.RECOMPRESS_JPEG: [(JSON_JPEG, {"CONV-003"}), (XML_JPEG, {"CONV-003"})],
    Fault.WRONG_TRANSFER_SYNTAX: [(JSON_JPEG, {"WIC-IM-005"}), (XML_JPEG, {"WIC-IM-005"})],
    Fault.FETCH_BULK_URI: [(FOREIGN, {"WIC-IM-011"})],
}


@pytest.mark.peer
class TestPlanCatchesFaults:
    """A relevant plan case passes against the conformant Manager and fails, citing its rule, against a faulty one."""

    @pytest.mark.parametrize("fault", list(CAUGHT), ids=str)
    def test_fault_is_caught(self, fault: Fault, plan_cases: list[Case], make_manager: Any,
                             dciodvfy_path: str) -> None:
        clean, faulty = make_manager(validate_iod=True), make_manager(fault, validate_iod=True)
        for (what, predicate), expected in CAUGHT[fault]:
            case = _pick(plan_cases, what, predicate)
            baseline = run_case(case, Target(url=clean.url))
            assert baseline.outcome is CaseOutcome.PASSED, (case.source, baseline.message)
            result = run_case(case, Target(url=faulty.url))
            found = {f.requirement for f in result.errors}
            assert result.outcome is CaseOutcome.FAILED, (case.source, result.outcome, result.message)
            assert expected <= found, (case.source, sorted(found))
            assert found & CAUGHT_BY[fault], (case.source, sorted(found))


# -- the plan against Orthanc 1.10, whose STOW-RS takes PS3.10 parts only ------------------------------------
@pytest.mark.peer
@pytest.mark.slow
class TestPlanAgainstOrthanc:
    def test_default_plan_runs_and_reports_the_metadata_limitation(self, orthanc: OrthancProcess,
                                                                   plan_cases: list[Case], dciodvfy_path: str) -> None:
        target = Target(url=orthanc.url, timeout=120.0)
        results = {case.id: run_case(case, target) for case in plan_cases}
        broken = {cid: r.message for cid, r in results.items() if r.outcome is CaseOutcome.ERROR}
        assert not broken, broken

        # Orthanc answers metadata requests with 415: every JSON/XML case that expects storage fails on its rule.
        metadata = [r for r in results.values()
                    if r.case.payload.encoding in (Encoding.JSON, Encoding.XML) and r.case.expect.stored is True
                    and 200 in r.case.expect.status]
        assert metadata
        for result in metadata:
            assert result.outcome is CaseOutcome.FAILED, (result.case.source, result.message)
            assert result.case.expect.failure_requirement in {f.requirement for f in result.errors}, \
                (result.case.source, sorted({f.requirement for f in result.errors}))
            posts = [e for e in result.exchanges if e.request is not None and e.request.method == "POST"]
            assert posts and posts[-1].response is not None and posts[-1].response.status == 415

        # A plain PS3.10 instance is stored and answered with 200.  Orthanc's response also carries an empty
        # Failed SOP Sequence, which the Store Instances Response Module forbids (Type 1C: present only with
        # items); that is the only finding.
        plain = results[_pick(plan_cases, *PART10_STORE).id]
        (judged,) = [e for e in plain.exchanges if e.request is not None and e.request.method == "POST"]
        assert judged.response is not None and judged.response.status == 200
        assert len(judged.retrieved()) == 1
        assert {f.requirement for f in plain.errors} <= {"STOW-MOD-002"}, plain.message
        assert all("Failed SOP Sequence" in f.message for f in plain.errors), plain.message
