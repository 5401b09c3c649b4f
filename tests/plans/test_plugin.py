"""The pytest plugin, driven through pytester: inert by default, plan collection, outcomes, reports, xdist.

The plan loader and the case runner are replaced by small fakes (installed by a
``conftest.py`` written into the pytester folder, so xdist workers get them too):
the plugin's plumbing is under test here, not the plans.  ``tests/test_cli_plans.py``
runs the real plans against the simulated Image Manager.
"""

from __future__ import annotations

import html
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from wic_conformance.actors.manager import ImageManager, ManagerConfig
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.model.fixtures import FixtureIndex

pytest_plugins = ["pytester"]

PLUGIN = "wic_conformance.plans.plugin"
DOWN = "http://127.0.0.1:9/dicom-web"  # nothing listens on the discard port
SECRET = "s3cr3t-pass"
INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")

FAKES = r'''
"""Fake plan loader and case runner: the case's tags decide its outcome."""
import base64
import sys
import types
from pathlib import Path

import yaml

from wic_conformance.actors.capturer import TargetUnreachableError
from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request, Response
from wic_conformance.errors import PlanError
from wic_conformance.findings import Finding, Severity
from wic_conformance.fuzz.mutations import Mutation, MutationKind
from wic_conformance.plans.model import Case, CaseOutcome, CaseResult, Encoding, Expectation, Payload, Plan


def load_plans(paths, *, index=None, catalogue=None):
    plans = []
    for path in paths:
        data = yaml.safe_load(Path(path).read_text())
        if "broken" in data:
            raise PlanError(f"{path}: case 'x': $.cases[0].expect: 'status' is a required property")
        cases = tuple(
            Case(id=c["id"], title=c.get("title", c["id"]), plan=str(path),
                 requirements=tuple(c.get("requirements", ())), options=tuple(c.get("options", ())),
                 payload=Payload(Encoding.JSON, ("json/jpeg-baseline",)), expect=Expectation(),
                 tags=tuple(c.get("tags", ())), source=f"{path}::{c['id']}")
            for c in data["cases"])
        plans.append(Plan(id=Path(path).stem, title="fake", actor="manager", transaction="RAD-108",
                          path=str(path), cases=cases))
    return plans


def run_case(case, target, *, session=None, index=None, catalogue=None, canary=None):
    auth = "none"
    if target.auth:
        auth = "Basic " + base64.b64encode(f"{target.auth[0]}:{target.auth[1]}".encode()).decode()
    request = Request("POST", target.url + "/studies",
                      Headers.of([("Content-Type", 'multipart/related; type="application/dicom"; boundary=b'),
                                  ("Authorization", auth), ("Cookie", "session=" + (target.auth or ("", ""))[1])]),
                      Body.of(b"--b\r\n\x00\x01binary"))
    tags = set(case.tags)
    if "unreachable" in tags:
        raise TargetUnreachableError(f"cannot connect to {target.url}: connection refused")
    if "runner_unreachable" in tags:
        return CaseResult(case, CaseOutcome.ERROR,
                          message=f"target unreachable: cannot connect to {target.url}: connection refused")
    if "expect_skip" in tags:
        return CaseResult(case, CaseOutcome.SKIPPED, message="option mpeg4 is not claimed by the target")
    if "expect_error" in tags:
        return CaseResult(case, CaseOutcome.ERROR, message="fixture json/nothing is not in fixtures/index.json")
    if "expect_fail" in tags:
        body = b'{"00081198": {"vr": "SQ"}}' + b" " * 100_000  # large: written next to the report
        response = Response(409, "Conflict", Headers.of({"Content-Type": "application/dicom+json"}), Body.of(body))
        findings = (
            Finding(requirement="STOW-RESP-001", message="status 409, expected 200", severity=Severity.ERROR,
                    confidence="N", location="response status line"),
            Finding(requirement="CONV-001", message="(0010,0010) submitted 'Doe^J', stored 'DOE^J'",
                    title="ConversionMismatch", severity=Severity.WARNING, confidence="D",
                    location="instance 1 > (0010,0010)"),
        )
        mutation = Mutation(MutationKind.DROP_BOUNDARY, "STOW-PAY-002", "the boundary parameter is removed")
        return CaseResult(case, CaseOutcome.FAILED, (Exchange(request, response),), findings, "status 409",
                          mutations=(mutation,))
    response = Response(200, "OK", Headers.of({"Content-Type": "application/dicom+json"}), Body.of(b'{"ok": 1}'))
    return CaseResult(case, CaseOutcome.PASSED, (Exchange(request, response),))


loader = types.ModuleType("wic_conformance.plans.loader")
loader.load_plans = load_plans
runner = types.ModuleType("wic_conformance.plans.runner")
runner.run_case = run_case
sys.modules[loader.__name__] = loader
sys.modules[runner.__name__] = runner
'''

PLAN = """
cases:
  - {id: jpeg_json, requirements: [STOW-RESP-001], options: [jpeg], tags: [json]}
  - {id: mpeg4_part10, requirements: [STOW-RESP-002], options: [mpeg4], tags: [part10, expect_skip]}
  - {id: bad_status, requirements: [STOW-RESP-001, STOW-RESP-003], options: [jpeg], tags: [json, expect_fail]}
  - {id: broken_fixture, requirements: [STOW-RESP-004], tags: [expect_error]}
  - {id: tagged_skip, requirements: [STOW-RESP-005], tags: [skip]}
"""


@pytest.fixture
def plans(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder with the fakes and one plan under plans/."""
    pytester.makeconftest(FAKES)
    pytester.mkdir("plans")
    (pytester.path / "plans" / "rad108_store.yaml").write_text(PLAN)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", *args)


def wic(target: str, *args: str) -> list[str]:
    return ["--wic-target", target, "--wic-plan", "plans", *args]


@pytest.fixture
def target() -> Iterator[str]:
    """A loopback HTTP server that answers anything (501): the reachable target (the fake runner does the rest)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def html_tests(path: Path) -> dict[str, Any]:
    """The per-test data pytest-html embeds in its report."""
    blob = re.search(r'data-jsonblob="([^"]*)"', path.read_text("utf-8"))
    assert blob is not None
    data: dict[str, Any] = json.loads(html.unescape(blob.group(1)))
    return data


class TestInert:
    def test_without_options_plans_are_not_collected(self, plans: pytest.Pytester) -> None:
        plans.makepyfile(test_plain="def test_ok():\n    pass\n")
        result = run(plans, "--strict-markers")
        result.assert_outcomes(passed=1)
        assert "wic-conformance:" not in result.stdout.str()

    def test_without_options_no_markers_are_registered(self, plans: pytest.Pytester) -> None:
        result = run(plans, "--markers")
        assert "STOW-RESP-001" not in result.stdout.str()

    def test_options_are_documented(self, pytester: pytest.Pytester) -> None:
        result = run(pytester, "--help")
        text = result.stdout.str()
        for option in ("--wic-target", "--wic-plan", "--wic-options", "--wic-auth", "--wic-token", "--wic-header",
                       "--wic-ca-bundle", "--wic-insecure", "--wic-timeout", "--wic-json", "--wic-records",
                       "--wic-rules"):
            assert option in text

    def test_fixtures_skip_without_a_target(self, plans: pytest.Pytester) -> None:
        plans.makepyfile(test_fx="def test_t(wic_target):\n    pass\n")
        run(plans).assert_outcomes(skipped=1)

    @pytest.mark.parametrize("args, message", [
        (["--wic-target", DOWN, "--wic-records", "x"], "not both"),
        (["--wic-target", DOWN, "--wic-auth", "u:p", "--wic-token", "t"], "not both"),
        (["--wic-target", "ftp://x", "--wic-plan", "plans"], "http(s) URL"),
        (["--wic-target", DOWN, "--wic-plan", "nowhere"], "no such file or folder"),
        (["--wic-target", DOWN, "--wic-plan", "plans", "--wic-header", "no colon"], "Name: value"),
    ])
    def test_bad_options_are_usage_errors(self, plans: pytest.Pytester, args: list[str], message: str) -> None:
        result = run(plans, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert message in result.stderr.str()


class TestCollection:
    def test_node_ids_are_plan_path_and_case_id(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "--collect-only", "-q", *wic(target))
        result.stdout.fnmatch_lines([
            "plans/rad108_store.yaml::jpeg_json",
            "plans/rad108_store.yaml::mpeg4_part10",
            "plans/rad108_store.yaml::bad_status",
            "plans/rad108_store.yaml::broken_fixture",
            "plans/rad108_store.yaml::tagged_skip",
        ])

    def test_report_header_names_the_target_and_the_plans(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "--collect-only", *wic(target, "--wic-options", "jpeg,mpeg4"))
        result.stdout.fnmatch_lines([f"wic-conformance: target {target} (options: jpeg, mpeg4); 1 plan file(s)*"])

    def test_only_plans_are_collected_when_no_path_is_given(self, plans: pytest.Pytester, target: str) -> None:
        plans.makepyfile(test_plain="def test_ok():\n    pass\n")
        result = run(plans, "--collect-only", "-q", *wic(target))
        assert "test_plain" not in result.stdout.str()

    @pytest.mark.parametrize("selection, expected", [
        (["-m", "wic_option_mpeg4"], {"mpeg4_part10"}),
        (["-m", "STOW-RESP-001"], {"jpeg_json", "bad_status"}),
        (["-m", "json and not expect_fail"], {"jpeg_json"}),
        (["-k", "STOW-RESP-003"], {"bad_status"}),
        (["-k", "wic_option_jpeg and not bad"], {"jpeg_json"}),
    ])
    def test_markers_select_cases(self, plans: pytest.Pytester, target: str, selection: list[str],
                                  expected: set[str]) -> None:
        result = run(plans, "--collect-only", "-q", "--strict-markers", *wic(target, *selection))
        lines = result.stdout.lines
        selected = {line.split("::")[1] for line in lines if line.startswith("plans/")}
        assert selected == expected, result.stdout.str()

    def test_a_tag_named_like_a_pytest_marker_does_not_skip(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "-m", "wic_tag_skip", *wic(target))
        result.assert_outcomes(passed=1)

    def test_a_plan_error_is_one_message(self, plans: pytest.Pytester, target: str) -> None:
        (plans.path / "plans" / "zz_broken.yaml").write_text("broken: true\ncases: []\n")
        result = run(plans, *wic(target))
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.stdout.fnmatch_lines(["PlanError: *zz_broken.yaml: case 'x': $.cases[[]0[]].expect*"])
        assert "Traceback" not in result.stdout.str()


class TestOutcomes:
    def test_outcomes_map_to_pytest_outcomes(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, *wic(target))
        result.assert_outcomes(passed=2, failed=1, skipped=1, errors=1)
        assert result.ret == pytest.ExitCode.TESTS_FAILED

    def test_a_failure_prints_the_findings_without_traceback(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "-k", "bad_status", *wic(target))
        text = result.stdout.str()
        result.stdout.fnmatch_lines([
            "case bad_status failed: status 409",
            "  ERROR   STOW-RESP-001 [[]N[]] status 409, expected 200",
            "      at response status line",
            "  WARNING CONV-001 [[]D[]] (0010,0010) submitted 'Doe^J', stored 'DOE^J'",
            f"  exchange: POST {target}/studies -> 409",
            "  Negative request (drop_boundary, STOW-PAY-002): the boundary parameter is removed",
        ])
        assert "Traceback" not in text and "def runtest" not in text and "plugin.py" not in text

    def test_a_toolkit_error_is_a_pytest_error(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "-k", "broken_fixture", *wic(target))
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["CaseError: fixture json/nothing is not in fixtures/index.json"])
        assert "Traceback" not in result.stdout.str()

    def test_a_skip_names_the_reason_at_the_plan(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "-rs", "-k", "mpeg4", *wic(target))
        result.stdout.fnmatch_lines(["SKIPPED [[]1[]] plans/rad108_store.yaml:1: option mpeg4 is not claimed*"])


class TestFixtures:
    def test_wic_fixtures_reach_the_target_and_the_plans(self, plans: pytest.Pytester, target: str) -> None:
        plans.makepyfile(test_fx="""
            from wic_conformance.plans.model import CaseOutcome

            def test_fixtures(wic_target, wic_case, make_wic_capturer, wic_catalogue):
                assert wic_target.url == make_wic_capturer().url
                assert wic_target.auth == ("user", "pw")
                assert wic_case("jpeg_json").outcome is CaseOutcome.PASSED
                assert wic_case("rad108_store.yaml::bad_status").outcome is CaseOutcome.FAILED
                assert "STOW-RESP-001" in wic_catalogue
        """)
        result = run(plans, "test_fx.py", *wic(target, "--wic-auth", "user:pw"))
        result.assert_outcomes(passed=1)


class TestUnreachable:
    @pytest.fixture
    def down(self, plans: pytest.Pytester) -> pytest.Pytester:
        cases = "\n".join(f"  - {{id: c{i}, requirements: [STOW-RESP-001], tags: [{tag}]}}"
                          for i, tag in enumerate(["unreachable", "runner_unreachable"] * 4))
        (plans.path / "plans" / "rad108_store.yaml").write_text(f"cases:\n{cases}\n")
        return plans

    @pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])
    def test_checked_once_before_any_case(self, down: pytest.Pytester, workers: list[str]) -> None:
        result = run(down, *workers, *wic(DOWN, "--wic-json", "r.json"))
        text = result.stdout.str() + result.stderr.str()
        sentence = f"Target unreachable, run stopped: cannot connect to {DOWN}: connection refused."
        assert result.ret == 4
        assert text.count(sentence) == 1, text
        assert "Traceback" not in text and "passed" not in text and "failed" not in text

    @pytest.mark.parametrize("case", ["c0", "c1"], ids=["raised", "runner-error"])
    def test_a_target_lost_during_the_run_stops_it(self, down: pytest.Pytester, target: str, case: str) -> None:
        result = run(down, "-k", f"{case} or c2 or c3", *wic(target))
        text = result.stdout.str() + result.stderr.str()
        assert result.ret == 4
        assert text.count(f"Target unreachable, run stopped: cannot connect to {target}: connection refused.") == 1
        assert "Traceback" not in text

    def test_a_target_lost_under_xdist_stops_each_worker(self, down: pytest.Pytester, target: str) -> None:
        result = run(down, "-n", "2", *wic(target))
        text = result.stdout.str() + result.stderr.str()
        assert result.ret != 0
        assert "Target unreachable, run stopped" in text and "Traceback" not in text
        assert "8 error" not in text  # every worker stopped after its first case


class TestResultsFile:
    def test_json_shape(self, plans: pytest.Pytester, target: str) -> None:
        run(plans, *wic(target, "--wic-json", "out/results.json"))
        doc = json.loads((plans.path / "out" / "results.json").read_text())
        assert doc["target"] == target
        cases = {c["id"]: c for c in doc["cases"]}
        assert list(cases) == [f"plans/rad108_store.yaml::{c}" for c in
                               ("jpeg_json", "mpeg4_part10", "bad_status", "broken_fixture", "tagged_skip")]
        assert {k: c["outcome"] for k, c in cases.items()} == {
            "plans/rad108_store.yaml::jpeg_json": "passed", "plans/rad108_store.yaml::mpeg4_part10": "skipped",
            "plans/rad108_store.yaml::bad_status": "failed", "plans/rad108_store.yaml::broken_fixture": "error",
            "plans/rad108_store.yaml::tagged_skip": "passed"}
        failed = cases["plans/rad108_store.yaml::bad_status"]
        assert failed["requirements"] == ["STOW-RESP-001", "STOW-RESP-003"]
        assert {"requirement", "severity", "message"} <= set(failed["findings"][0])
        reqs = doc["requirements"]
        assert reqs["STOW-RESP-001"] == "failed"  # a failed case failed on it, although another passed it
        assert reqs["STOW-RESP-003"] == "not_tested"  # listed by the failed case, but no finding cites it
        assert reqs["STOW-RESP-005"] == "passed"
        assert reqs["STOW-RESP-002"] == "not_tested"  # skipped
        assert reqs["STOW-RESP-004"] == "not_tested"  # error
        assert "not_applicable" in reqs.values()  # Image Capturer rules
        assert set(reqs.values()) <= {"passed", "failed", "not_tested", "not_applicable"}
        assert doc["summary"] == {"passed": 2, "failed": 1, "skipped": 1, "error": 1}

    def test_secrets_never_reach_the_json(self, plans: pytest.Pytester, target: str) -> None:
        run(plans, *wic(target, "--wic-auth", f"user:{SECRET}", "--wic-json", "r.json"))
        assert SECRET not in (plans.path / "r.json").read_text()

    def test_xdist_results_are_complete(self, plans: pytest.Pytester, target: str) -> None:
        result = run(plans, "-n", "2", *wic(target, "--wic-json", "r.json", "--html", "r.html"))
        result.assert_outcomes(passed=2, failed=1, skipped=1, errors=1)
        doc = json.loads((plans.path / "r.json").read_text())
        assert [c["id"].split("::")[1] for c in doc["cases"]] == [
            "jpeg_json", "mpeg4_part10", "bad_status", "broken_fixture", "tagged_skip"]
        assert doc["requirements"]["STOW-RESP-001"] == "failed"
        assert doc["summary"] == {"passed": 2, "failed": 1, "skipped": 1, "error": 1}
        assert all(c["findings"] for c in doc["cases"] if c["outcome"] == "failed")
        tests = html_tests(plans.path / "r.html")["tests"]
        assert len(tests) == 5
        assert "Requirement coverage" in (plans.path / "r.html").read_text()


class TestHtmlReport:
    @pytest.fixture
    def report(self, plans: pytest.Pytester, target: str) -> tuple[Path, dict[str, Any], str]:
        run(plans, *wic(target, "--wic-auth", f"user:{SECRET}", "--html", "out/report.html"))
        path = plans.path / "out" / "report.html"
        return path, html_tests(path), target

    def test_summary_and_coverage_matrix(self, report: tuple[Path, dict[str, Any], str]) -> None:
        text = report[0].read_text()
        assert "wic-summary" in text and "Requirement coverage" in text
        summary = re.search(r'<p class="wic-summary".*?</p>', text, re.S)
        assert summary is not None
        assert report[2] in summary.group(0)
        assert "5 case(s): 2 passed, 1 failed, 1 skipped, 1 error" in summary.group(0)
        assert "Requirements failed: <strong>STOW-RESP-001 [N]</strong>" in summary.group(0)
        matrix = re.search(r'<table[^>]*class="wic-coverage-matrix".*?</table>', text, re.S)
        assert matrix is not None
        assert matrix.group(0).count('<tr class="wic-req') >= 100  # the whole catalogue
        assert re.search(r"<td[^>]*>STOW-RESP-005</td><td>IM</td>.*?passed", matrix.group(0))
        assert "not applicable" in matrix.group(0)

    def test_columns(self, report: tuple[Path, dict[str, Any], str]) -> None:
        text = report[0].read_text()
        assert "Requirement(s)" in text and ">Option<" in text and ">Verdict<" in text
        rows = {k: v[0]["resultsTableRow"] for k, v in report[1]["tests"].items()}
        bad = " ".join(rows["plans/rad108_store.yaml::bad_status"])
        assert "STOW-RESP-001 [N], STOW-RESP-003 [N]" in bad
        assert "failed: 1 error finding(s) (STOW-RESP-001)" in bad
        assert '<td class="col-option">jpeg</td>' in bad

    def test_authorization_and_cookie_are_redacted(self, report: tuple[Path, dict[str, Any], str]) -> None:
        path, data, _ = report
        extras = data["tests"]["plans/rad108_store.yaml::bad_status"][0]["extras"]
        block = next(e["content"] for e in extras if e["format_type"] == "html")
        assert "Authorization: &lt;redacted&gt;" in block
        assert "Cookie: &lt;redacted&gt;" in block
        everything = [p.read_bytes() for p in path.parent.rglob("*") if p.is_file()]
        assert all(SECRET.encode() not in blob for blob in everything)
        assert all(b"dXNlcjpzM2NyM3QtcGFzcw" not in blob for blob in everything)  # base64 of user:secret

    def test_extras_hold_findings_diff_and_linked_bodies(self, report: tuple[Path, dict[str, Any], str]) -> None:
        path, data, _ = report
        extras = data["tests"]["plans/rad108_store.yaml::bad_status"][0]["extras"]
        block = next(e["content"] for e in extras if e["format_type"] == "html")
        assert "<h4>Findings</h4>" in block and "status 409, expected 200" in block
        assert "Metadata diff" in block and "submitted &#x27;Doe^J&#x27;" in block
        assert "Negative request (drop_boundary, STOW-PAY-002): the boundary parameter is removed" in block
        links = [e["content"] for e in extras if e["format_type"] == "url"]
        assert any(link.endswith("-response.json") for link in links)  # 100 kB of JSON: too large to inline
        assert any(link.endswith("-request.multipart") for link in links)  # binary
        for link in links:
            assert (path.parent / link).is_file()
        small = next(e["content"] for e in data["tests"]["plans/rad108_store.yaml::jpeg_json"][0]["extras"]
                     if e["format_type"] == "html")
        assert "<pre>{&quot;ok&quot;: 1}</pre>" in small


class TestRecords:
    @pytest.fixture(scope="class")
    @classmethod
    def data_dir(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """A data folder of the simulated Image Manager holding a good and a broken JSON request."""
        folder = tmp_path_factory.mktemp("im-data")
        with ImageManager(ManagerConfig(data_dir=folder, validate_iod=False)) as manager:
            for key in ("json/jpeg-baseline", "json/broken-lowercase-tags"):
                fixture = INDEX[key]
                ctype, body = encode_multipart([({"Content-Type": fixture.media_type}, fixture.read()),
                                                *INDEX.bulk_parts(fixture)], root_type=fixture.media_type)
                requests.post(manager.url + "/studies", data=body, timeout=30,
                              headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON,
                                       "Authorization": f"Bearer {SECRET}"})
        return folder

    def test_each_recorded_exchange_is_an_item(self, pytester: pytest.Pytester, data_dir: Path) -> None:
        result = run(pytester, "--wic-records", str(data_dir), "--wic-json", "r.json", "--html", "r.html", "-v")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*exchanges.ndjson::0001-POST-dicom-web/studies-200 PASSED*",
                                     "*exchanges.ndjson::0002-POST-dicom-web/studies-409 FAILED*"])
        result.stdout.fnmatch_lines(["  ERROR   JSON-003 [[]N[]] member name*"])
        doc = json.loads((pytester.path / "r.json").read_text())
        assert doc["requirements"]["JSON-003"] == "failed"
        assert doc["actor_under_test"] == "IC"
        report = (pytester.path / "r.html").read_text()
        assert "Requirement coverage" in report and SECRET not in report
        assert "Recorded exchanges in" in report
