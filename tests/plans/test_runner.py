"""The case runner: the shipped plans against the simulated Image Manager, and Image Managers that misbehave."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from wic_conformance.actors.manager import ImageManager, ManagerConfig, StoreOutcome, Submission
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.store_response import SopRef
from wic_conformance.findings import BadStatus, Severity
from wic_conformance.fuzz.mutations import MutationKind
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.plans.loader import load_plans
from wic_conformance.plans.model import (
    Case,
    CaseOutcome,
    CaseResult,
    Encoding,
    Expectation,
    MutationSpec,
    Payload,
    Target,
)
from wic_conformance.plans.runner import Canary, run_case
from wic_conformance.validate.registry import REGISTRY, CheckContext

ROOT = Path(__file__).resolve().parents[2]
INDEX = FixtureIndex.load(ROOT / "fixtures")
PLANS = load_plans(ROOT / "testplans", index=INDEX)
DEFAULT_CASES = [case for plan in PLANS for case in plan.cases if not case.slow]
SLOW_CASES = [case for plan in PLANS for case in plan.cases if case.slow]


def make_case(fixture: str = "part10/vl-photographic", *, status: tuple[int, ...] = (200,), stored: bool | None = True,
              mutations: tuple[MutationSpec, ...] = (), target: str = "studies", options: tuple[str, ...] = (),
              checks: tuple[str, ...] = ("stow",), findings: tuple[str, ...] = (),
              failure: str = "STOW-RESP-001") -> Case:
    encoding = Encoding(INDEX[fixture].kind)
    return Case(id="t", title="t", plan="test", requirements=("STOW-RESP-001",), options=options,
                payload=Payload(encoding=encoding, fixtures=(fixture,), mutations=mutations),
                expect=Expectation(status=status, stored=stored, failure_requirement=failure, findings=findings),
                target=target, checks=checks)


def judged(result: CaseResult) -> Exchange:
    """The exchange of the judged STOW-RS request (the last POST)."""
    return [e for e in result.exchanges if e.request is not None and e.request.method == "POST"][-1]


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ImageManager]:
    with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False)) as im:
        yield im
        im.check_errors()


# -- the shipped plans ----------------------------------------------------------------------------------
@pytest.mark.peer
class TestShippedPlans:
    def test_every_default_case_passes_against_the_simulated_manager(self, tmp_path: Path,
                                                                     dciodvfy_path: str) -> None:
        started = time.perf_counter()
        with ImageManager(ManagerConfig(data_dir=tmp_path)) as im:
            results = [run_case(case, Target(url=im.url), index=INDEX) for case in DEFAULT_CASES]
            im.check_errors()
        elapsed = time.perf_counter() - started
        failed = [f"{r.case.source}: {r.outcome.value}: {r.message}" for r in results
                  if r.outcome is not CaseOutcome.PASSED]
        assert not failed, "\n".join(failed)
        assert elapsed < 120, f"the default plans took {elapsed:.0f} s"
        by_id = {r.case.id: r for r in results}
        jpeg = judged(by_id["jpeg_json"])
        assert len(jpeg.retrieved()) == 1 and "conversion_keeps_compressed_bitstream" in by_id["jpeg_json"].checks_run
        assert "part10_instance_conforms_to_iod" in by_id["jpeg_json"].checks_run
        append = by_id["append_jpeg_json"]
        posts = [e for e in append.exchanges if e.request is not None and e.request.method == "POST"]
        assert len(posts) == 2 and posts[1].request is not None and "/studies/2.25." in posts[1].request.url
        for result in results:
            assert [m.kind.value for m in result.mutations] == [m.kind for m in result.case.payload.mutations]
        assert all(m.negative for r in results if "negative" in r.case.tags for m in r.mutations)
        mixed = judged(by_id["mixed_good_and_bad_json"]).response
        assert mixed is not None and mixed.status == 202

    @pytest.mark.slow
    def test_the_slow_cases_pass(self, tmp_path: Path, dciodvfy_path: str) -> None:
        assert SLOW_CASES, "the plans have no slow case"
        with ImageManager(ManagerConfig(data_dir=tmp_path / "im")) as im:
            results = [run_case(case, Target(url=im.url), index=INDEX) for case in SLOW_CASES]
            im.check_errors()
        assert [r.outcome for r in results] == [CaseOutcome.PASSED] * len(results), [r.message for r in results]
        big = judged(results[0])
        assert big.request is not None and int(big.request.headers.get("content-length") or 0) > 100 << 20
        assert big.truncated and big.request.body.size == 64 << 10  # the temporary spool folder is gone


# -- verdicts on Image Managers that misbehave --------------------------------------------------------
class TestVerdicts:
    def test_a_passing_case(self, manager: ImageManager) -> None:
        result = run_case(make_case(), Target(url=manager.url), index=INDEX)
        assert result.outcome is CaseOutcome.PASSED, result.message
        assert len(judged(result).retrieved()) == 1

    def test_wrong_status_is_a_bad_status_finding(self, tmp_path: Path) -> None:
        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False),
                          on_store=lambda submission: StoreOutcome(500)) as im:
            result = run_case(make_case(), Target(url=im.url), index=INDEX)
        assert result.outcome is CaseOutcome.FAILED
        bad = [f for f in result.findings if isinstance(f, BadStatus)]
        assert len(bad) == 1 and bad[0].requirement == "STOW-RESP-001" and bad[0].severity is Severity.ERROR
        assert bad[0].message.startswith("expected HTTP 200 but got 500")
        assert "expected HTTP 200 but got 500" in result.message
        assert {f.title for f in result.findings} >= {"BadStatus", "NotStored"}

    def test_a_200_is_not_proof(self, tmp_path: Path) -> None:
        def claim_without_storing(submission: Submission) -> StoreOutcome:
            refs = tuple(SopRef(i.dataset.SOPClassUID, i.dataset.SOPInstanceUID,
                                retrieve_url=f"{submission.base_url}/studies/2.25.1/series/2.25.2/instances/"
                                             f"{i.dataset.SOPInstanceUID}")
                         for i in submission.stow.instances if i.dataset is not None)
            return StoreOutcome(200, referenced=refs)

        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False), on_store=claim_without_storing) as im:
            result = run_case(make_case(), Target(url=im.url), index=INDEX)
        assert result.outcome is CaseOutcome.FAILED
        titles = {f.title: f for f in result.findings}
        assert titles["NotRetrievable"].requirement == "STOW-BEH-001"
        assert "a 2xx status is not proof" in titles["NotRetrievable"].message
        assert titles["NotStored"].requirement == "STOW-RESP-001"

    def test_stored_although_reported_failed(self, tmp_path: Path) -> None:
        im = ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False))

        def store_then_deny(submission: Submission) -> StoreOutcome:
            outcome = im.store_submission(submission)
            return StoreOutcome(409, failed=tuple(SopRef(r.sop_class_uid, r.sop_instance_uid, failure_reason=0xC000)
                                                  for r in outcome.referenced))

        im.on_store = store_then_deny
        with im:
            result = run_case(make_case(status=(409,), stored=None), Target(url=im.url), index=INDEX)
        assert result.outcome is CaseOutcome.FAILED
        (finding,) = [f for f in result.findings if f.title == "StoredDespiteFailure"]
        assert finding.requirement == "STOW-MOD-009" and "Failed SOP Sequence" in finding.message

    def test_expected_findings_are_not_failures_but_must_appear(self, manager: ImageManager, tmp_path: Path) -> None:
        absent = run_case(make_case(findings=("CONV-007",)), Target(url=manager.url), index=INDEX)
        assert absent.outcome is CaseOutcome.FAILED and "expected finding(s) absent: CONV-007" in absent.message
        with ImageManager(ManagerConfig(data_dir=tmp_path / "bad", validate_iod=False),
                          on_store=lambda submission: StoreOutcome(500)) as im:
            known_bad = run_case(make_case(findings=("STOW-RESP-001",), checks=("stow_response_status_is_known",)),
                                 Target(url=im.url), index=INDEX)
        assert known_bad.outcome is CaseOutcome.PASSED, known_bad.message
        assert known_bad.checks_run == ("stow_response_status_is_known",)

    def test_the_setup_exchanges_are_returned(self, manager: ImageManager) -> None:
        result = run_case(make_case("json/jpeg-baseline", target="study"), Target(url=manager.url), index=INDEX)
        assert result.outcome is CaseOutcome.PASSED, result.message
        requests_sent = [(e.request.method, e.request.url.split("/dicom-web/")[1].split("?")[0])
                         for e in result.exchanges if e.request is not None]
        assert requests_sent[0] == ("POST", "studies") and requests_sent[1] == ("GET", "studies")
        sent = judged(result).request
        assert sent is not None
        metadata = sent.body.read().split(b"\r\n\r\n", 1)[1].split(b"\r\n--")[0]
        study = json.loads(metadata)[0]["0020000D"]["Value"][0]
        assert sent.url.endswith(f"/studies/{study}")


class TestTargets:
    def test_credentials_reach_the_manager(self, tmp_path: Path) -> None:
        from wic_conformance.actors.manager import Auth

        with ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False, auth=Auth(token="t0ken"))) as im:
            allowed = run_case(make_case(), Target(url=im.url, headers={"Authorization": "Bearer t0ken"}),
                               index=INDEX)
            denied = run_case(make_case(), Target(url=im.url), index=INDEX)
        assert allowed.outcome is CaseOutcome.PASSED, allowed.message
        sent = judged(allowed).request
        assert sent is not None and sent.headers.get("authorization") == "Bearer t0ken"
        assert denied.outcome is CaseOutcome.FAILED and "expected HTTP 200 but got 401" in denied.message


class TestOutcomes:
    def test_skipped_when_the_target_claims_none_of_the_options(self, manager: ImageManager) -> None:
        target = Target(url=manager.url, options=frozenset({"dicom", "jpeg"}))
        skipped = run_case(make_case(options=("png", "quicktime")), target, index=INDEX)
        assert skipped.outcome is CaseOutcome.SKIPPED and skipped.exchanges == ()
        assert "png, quicktime" in skipped.message
        assert run_case(make_case(options=("png", "dicom")), target, index=INDEX).outcome is CaseOutcome.PASSED

    def test_unreachable_target_is_an_error(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = run_case(make_case(), Target(url=f"http://127.0.0.1:{port}/dicom-web", timeout=5), index=INDEX)
        assert result.outcome is CaseOutcome.ERROR
        assert result.message == f"target unreachable: cannot connect to http://127.0.0.1:{port}/dicom-web: " \
                                 "connection refused"

    def test_no_answer_to_the_judged_request_is_a_failure(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def hang_up() -> None:  # read the request head, then close without answering
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        try:
            result = run_case(make_case(), Target(url=f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web",
                                                  timeout=5), index=INDEX)
        finally:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(5)
        assert result.outcome is CaseOutcome.FAILED
        (finding,) = result.findings
        assert finding.title == "NoResponse" and finding.requirement == "STOW-RESP-001"
        assert finding.severity is Severity.ERROR and "closed the connection" in result.message
        assert len(result.exchanges) == 1 and result.exchanges[0].response is None

    def test_a_broken_plan_is_an_error(self, manager: ImageManager) -> None:
        case = make_case(mutations=(MutationSpec("drop_bulk_part"),))
        result = run_case(case, Target(url=manager.url), index=INDEX)
        assert result.outcome is CaseOutcome.ERROR and "UsageError" in result.message

    def test_a_broken_check_is_an_error(self, manager: ImageManager, monkeypatch: pytest.MonkeyPatch) -> None:
        spec = REGISTRY["stow_response_status_is_known"]

        def boom(ctx: CheckContext, exchange: Exchange) -> None:
            raise RuntimeError("check defect")

        monkeypatch.setitem(REGISTRY._checks, spec.name, dataclasses.replace(spec, func=boom))
        result = run_case(make_case(), Target(url=manager.url), index=INDEX)
        assert result.outcome is CaseOutcome.ERROR and "stow_response_status_is_known" in result.message


class TestCanary:
    def test_records_every_request(self) -> None:
        with Canary() as canary:
            first, second = canary.uri("a"), canary.uri("a")
            assert first != second and first.startswith(canary.url + "/wic-canary/a/")
            assert not canary.touched
            assert requests.get(first, timeout=5).status_code == 200
            requests.post(second, data=b"x", timeout=5)
            assert [(h.method, h.path) for h in canary.hits] == [("GET", first[len(canary.url):]),
                                                                 ("POST", second[len(canary.url):])]
            canary.clear()
            assert not canary.touched
        with pytest.raises(RuntimeError, match="not running"):
            _ = canary.url

    def test_untouched_by_a_conformant_manager(self, manager: ImageManager) -> None:
        case = make_case("json/jpeg-baseline", status=(409, 400), stored=False, failure="WIC-IM-011",
                         mutations=(MutationSpec(MutationKind.FOREIGN_BULK_URI.value),))
        with Canary() as canary:
            result = run_case(case, Target(url=manager.url), index=INDEX, canary=canary)
            assert result.outcome is CaseOutcome.PASSED, result.message
            assert not canary.touched and result.mutations[0].params["uri"].startswith(canary.url)

    def test_a_fetch_by_the_manager_is_a_security_finding(self, tmp_path: Path) -> None:
        im = ImageManager(ManagerConfig(data_dir=tmp_path, validate_iod=False))

        def fetch_then_store(submission: Submission) -> StoreOutcome:
            for doc in submission.stow.metadata:
                for ref in doc.bulk_refs:
                    if ref.uri.startswith("http://127.0.0.1:"):
                        requests.get(ref.uri, timeout=5)  # what a non-conformant Image Manager does
            return im.store_submission(submission)

        im.on_store = fetch_then_store
        case = make_case("xml/jpeg-baseline", status=(409, 400), stored=False, failure="WIC-IM-011",
                         mutations=(MutationSpec(MutationKind.FOREIGN_BULK_URI.value),))
        with im, Canary() as canary:
            result = run_case(case, Target(url=im.url), index=INDEX, canary=canary)
            hits = canary.hits
        assert len(hits) == 1 and hits[0].method == "GET"
        assert result.outcome is CaseOutcome.FAILED
        (finding,) = [f for f in result.findings if f.requirement == "WIC-IM-011"]
        assert "dereferenced a BulkDataURI outside the request (security)" in finding.message
        assert finding.severity is Severity.ERROR and finding.evidence == f"GET {hits[0].path}"
        sent = judged(result).request
        assert sent is not None and mt.APPLICATION_DICOM_XML in (sent.content_type or "")
