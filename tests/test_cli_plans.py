"""The plan-running subcommands: test-manager, selftest and report, all through pytest.main."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
import requests

from wic_conformance.actors.manager import Auth, ImageManager, ManagerConfig
from wic_conformance.cli import main
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.model.fixtures import FixtureIndex

ROOT = Path(__file__).resolve().parent.parent
INDEX = FixtureIndex.load(ROOT / "fixtures")
SECRET = "pl4n-s3cret"

TINY_PLAN = """\
plan: tiny
title: A tiny Image Manager plan
actor: manager
transaction: RAD-108
cases:
  - id: jpeg_json
    title: a JPEG image as JSON metadata plus bulk data is stored
    requirements: [STOW-RESP-001]
    options: [jpeg]
    tags: [json]
    payload:
      fixtures: [json/jpeg-baseline]
    expect: {status: [200]}
  - id: wrong_expectation
    title: a plan expecting 202 for a plain store (the simulated Image Manager answers 200)
    requirements: [STOW-RESP-001]
    tags: [json]
    payload:
      fixtures: [json/jpeg-baseline]
    expect: {status: [202]}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder holding the tiny plan under plans/."""
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "tiny.yaml").write_text(TINY_PLAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageManager]:
    config = ManagerConfig(data_dir=tmp_path_factory.mktemp("im"), validate_iod=False,
                           auth=Auth(username="user", password=SECRET))
    with ImageManager(config) as im:
        yield im
        im.check_errors()


class TestTestManager:
    def test_passing_case_writes_the_three_reports(self, workdir: Path, manager: ImageManager) -> None:
        status = main(["test-manager", manager.url, "--plan", "plans", "--auth", f"user:{SECRET}",
                       "-k", "jpeg_json"])
        assert status == 0
        reports = workdir / "reports"
        assert {p.name for p in reports.iterdir()} >= {"manager-report.html", "manager-junit.xml",
                                                       "manager-results.json"}
        doc = json.loads((reports / "manager-results.json").read_text())
        assert doc["target"] == manager.url
        assert [(c["id"], c["outcome"]) for c in doc["cases"]] == [("plans/tiny.yaml::jpeg_json", "passed")]
        assert doc["requirements"]["STOW-RESP-001"] == "passed"
        html = (reports / "manager-report.html").read_text()
        assert "Requirement coverage" in html
        blob = re.search(r'data-jsonblob="([^"]*)"', html)
        assert blob is not None
        (row,) = json.loads(unescape(blob.group(1)))["tests"]["plans/tiny.yaml::jpeg_json"]
        details = next(e["content"] for e in row["extras"] if e["format_type"] == "html")
        assert "Authorization: &lt;redacted&gt;" in details
        for path in reports.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path

    def test_a_failing_case_exits_1_and_names_the_requirement(self, workdir: Path, manager: ImageManager,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
        status = main(["test-manager", manager.url, "--plan", "plans", "--auth", f"user:{SECRET}",
                       "--json", "out.json", "--html", "out.html", "--junitxml", "out.xml"])
        assert status == 1
        out = capfd.readouterr().out
        assert "case wrong_expectation failed" in out
        assert "ERROR   STOW-RESP-001 [N] expected HTTP 202 but got 200" in out
        doc = json.loads((workdir / "out.json").read_text())
        assert {c["id"].split("::")[1]: c["outcome"] for c in doc["cases"]} == {
            "jpeg_json": "passed", "wrong_expectation": "failed"}
        assert doc["requirements"]["STOW-RESP-001"] == "failed"
        assert (workdir / "out.html").is_file() and (workdir / "out.xml").is_file()

    def test_markers_select_cases_through_the_cli(self, workdir: Path, manager: ImageManager) -> None:
        status = main(["test-manager", manager.url, "--plan", "plans", "--auth", f"user:{SECRET}",
                       "-m", "STOW-RESP-001 and wic_option_jpeg", "--json", "r.json", "-n", "2"])
        assert status == 0
        doc = json.loads((workdir / "r.json").read_text())
        assert [c["id"] for c in doc["cases"]] == ["plans/tiny.yaml::jpeg_json"]

    def test_an_unreachable_target_is_one_sentence(self, workdir: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
        status = main(["test-manager", "http://127.0.0.1:9/dicom-web", "--plan", "plans", "--json", "r.json"])
        captured = capfd.readouterr()
        text = captured.out + captured.err
        assert status == 4
        assert text.count("Target unreachable, run stopped: cannot connect to http://127.0.0.1:9/dicom-web") == 1
        assert "Traceback" not in text

    def test_the_repository_configuration_is_not_picked_up(self, manager: ImageManager,
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "tiny.yaml").write_text(TINY_PLAN)
        monkeypatch.chdir(ROOT)
        status = main(["test-manager", manager.url, "--plan", str(tmp_path / "tiny.yaml"), "--auth",
                       f"user:{SECRET}", "-k", "jpeg_json", "--html", str(tmp_path / "r.html"),
                       "--junitxml", str(tmp_path / "r.xml"), "--json", str(tmp_path / "r.json")])
        out = capfd.readouterr().out
        assert status == 0, out
        assert "configfile: pyproject.toml" not in out
        assert "tests/" not in out  # the repository's own suite is not collected


@pytest.mark.peer
class TestSelftest:
    def test_the_shipped_plans_pass_against_the_simulated_manager(self, dciodvfy_path: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        plans = sorted((ROOT / "testplans" / "manager").glob("*.yaml"))
        if not plans:
            pytest.skip("no plans in testplans/manager yet")
        monkeypatch.chdir(tmp_path)
        status = main(["selftest", "--plan", str(ROOT / "testplans" / "manager"), "-n", "2"])
        doc = json.loads((tmp_path / "reports" / "selftest-results.json").read_text())
        failing = [(c["id"], c["outcome"], c["message"], c["findings"][:3]) for c in doc["cases"]
                   if c["outcome"] not in ("passed", "skipped")]
        assert status == 0, failing
        assert doc["cases"] and (tmp_path / "reports" / "selftest-report.html").is_file()


class TestReport:
    @pytest.fixture
    def data_dir(self, tmp_path: Path) -> Path:
        folder = tmp_path / "data"
        with ImageManager(ManagerConfig(data_dir=folder, validate_iod=False)) as im:
            fixture = INDEX["json/jpeg-baseline"]
            ctype, body = encode_multipart([({"Content-Type": fixture.media_type}, fixture.read()),
                                            *INDEX.bulk_parts(fixture)], root_type=fixture.media_type)
            reply = requests.post(im.url + "/studies", data=body, timeout=30,
                                  headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON,
                                           "Cookie": f"session={SECRET}"})
            assert reply.status_code == 200
        return folder

    def test_renders_the_html_report(self, data_dir: Path, tmp_path: Path) -> None:
        report = tmp_path / "out" / "records.html"
        status = main(["report", str(data_dir), "--html", str(report), "--json", str(tmp_path / "r.json"),
                       "--junitxml", str(tmp_path / "r.xml")])
        assert status == 0
        text = report.read_text()
        assert "Requirement coverage" in text and "0001-POST-dicom-web/studies-200" in text
        assert SECRET not in text
        doc = json.loads((tmp_path / "r.json").read_text())
        assert [c["id"] for c in doc["cases"]] == ["exchanges.ndjson::0001-POST-dicom-web/studies-200"]

    def test_a_folder_without_records_is_a_usage_error(self, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["report", str(tmp_path)]) == 2
        assert "holds no exchanges.ndjson" in capsys.readouterr().err

    def test_renders_a_proxy_recording(self, tmp_path: Path) -> None:
        from wic_conformance.actors.proxy import RecordingProxy

        record = tmp_path / "rec"
        with ImageManager(ManagerConfig(data_dir=tmp_path / "im", validate_iod=False)) as upstream:
            with RecordingProxy(upstream.url, record_dir=record) as proxy:
                ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM},
                                                 INDEX["part10/vl-photographic"].read())],
                                               root_type=mt.APPLICATION_DICOM)
                reply = requests.post(proxy.url + "/studies", data=body, timeout=30,
                                      headers={"Content-Type": ctype, "Accept": None,
                                               "Authorization": f"Bearer {SECRET}"})
                assert reply.status_code == 200
                proxy.drain()
        report = tmp_path / "proxy.html"
        status = main(["report", str(record), "--html", str(report), "--json", str(tmp_path / "p.json"),
                       "--junitxml", str(tmp_path / "p.xml")])
        doc = json.loads((tmp_path / "p.json").read_text())
        assert len(doc["cases"]) == 1 and status == 1, doc["cases"]  # the missing Accept fails the item
        # the Capturer sent no Accept header: the proxy's verdict says so, and the report carries it
        assert "STOW-HDR-004" in {f["requirement"] for f in doc["cases"][0]["findings"]}
        assert doc["requirements"]["STOW-HDR-001"] == "passed"
        assert SECRET not in report.read_text()

