from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from wic_conformance.cli import main
from wic_conformance.model.fixtures import FixtureIndex

INDEX = FixtureIndex.load(Path(__file__).resolve().parent.parent / "fixtures")


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


class TestValidate:
    def test_good_json_exits_0(self) -> None:
        status, text = run("validate", str(INDEX["json/jpeg-baseline"].path))
        assert status == 0, text
        assert text.strip().endswith("0 error(s), 0 warning(s), 0 info") or "0 error(s)" in text

    def test_bundled_iod_tables_judge_without_a_standard_folder(self) -> None:
        path = Path(__file__).parent.parent / "fixtures" / "part10" / "broken" / "missing-patient-name.dcm"
        status, text = run("validate", "--standard", "bundled", "--check",
                           "part10_instance_conforms_to_iod_dicom_validator", "--format", "json", str(path))
        assert status == 1, text
        (finding,) = json.loads(text)["findings"]
        assert finding["requirement"] == "CONV-007" and "dicom-validator" in finding["message"]
        assert "(0010,0010)" in finding["message"]

    def test_broken_json_exits_1_and_names_the_requirement(self) -> None:
        status, text = run("validate", "--format", "json", str(INDEX["json/broken-lowercase-tags"].path))
        assert status == 1
        doc = json.loads(text)
        assert doc["summary"]["errors"] >= 1
        assert "JSON-003" in {f["requirement"] for f in doc["findings"]}
        assert all({"requirement", "severity", "message", "location"} <= set(f) for f in doc["findings"])
        assert all("file" not in f for f in doc["findings"])

    def test_several_paths_carry_the_file(self) -> None:
        a, b = INDEX["json/jpeg-baseline"].path, INDEX["xml/broken-lowercase-tag"].path
        status, text = run("validate", "--format", "json", str(a), str(b))
        doc = json.loads(text)
        assert status == 1
        assert {f["file"] for f in doc["findings"]} == {str(b)}

    def test_http_message_file(self, tmp_path: Path) -> None:
        path = tmp_path / "r.http"
        path.write_bytes(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n\r\n"
                         b'{"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [272]}}]}}')
        status, text = run("validate", "--format", "json", str(path))
        doc = json.loads(text)
        assert status == 1, text
        assert any(f["requirement"].startswith(("STOW-RESP", "STOW-MOD")) for f in doc["findings"])

    def test_bare_multipart_needs_and_uses_content_type(self, tmp_path: Path) -> None:
        body = tmp_path / "body.bin"
        body.write_bytes(b"--b\r\nContent-Type: application/dicom+json\r\n\r\n[]\r\n")  # no closing delimiter
        status, text = run("validate", "--kind", "multipart", "--content-type",
                           'multipart/related; type="application/dicom+json"; boundary=b', "--format", "json",
                           str(body))
        assert status == 1
        assert "STOW-PAY-015" in {f["requirement"] for f in json.loads(text)["findings"]}

    @pytest.mark.parametrize("argv, message", [
        (["validate", "/nonexistent/file.dcm"], "no such file"),
        (["validate"], "give at least one PATH"),
        (["validate", "--rules", "/nonexistent.yaml", "x"], "cannot read rule profile"),
    ])
    def test_usage_problems_exit_2_with_one_line(self, argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
        status, _ = run(*argv)
        err = capsys.readouterr().err
        assert status == 2
        assert message in err and err.count("\n") == 1 and "Traceback" not in err

    def test_unknown_kind_is_a_usage_problem(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "blob.bin"
        path.write_bytes(b"\x00\x01\x02 nothing recognisable")
        assert run("validate", str(path))[0] == 2
        assert "cannot tell what kind of file" in capsys.readouterr().err

    def test_rule_profile_disables_a_rule(self, tmp_path: Path) -> None:
        profile = tmp_path / "p.yaml"
        profile.write_text("rules:\n  WIC-CA-003: {enabled: false}\n")
        status, text = run("requirements", "--rules", str(profile))
        assert status == 0
        assert any(line.startswith("WIC-CA-003") and "(disabled)" in line for line in text.splitlines())


class TestFixtures:
    @pytest.mark.peer
    def test_every_fixture_agrees_with_its_label(self, dciodvfy_path: str) -> None:
        status, text = run("validate", "--fixtures", str(INDEX.root), "--format", "json")
        doc = json.loads(text)
        disagreeing = [f for f in doc["fixtures"] if not f["agrees"]]
        assert disagreeing == [] and status == 0


class TestLists:
    def test_checks_lists_requirements(self) -> None:
        status, text = run("checks")
        assert status == 0
        assert "stow_request_is_multipart_related  [STOW-HDR-001]" in text


class TestAgreesWithDciodvfy:
    """``validate`` gives the same error/no-error verdict as dciodvfy on every PS3.10 fixture."""

    @pytest.mark.peer
    @pytest.mark.parametrize("key", sorted(f.key for f in INDEX if f.kind == "part10"))
    def test_same_verdict(self, key: str, dciodvfy_path: str) -> None:
        import subprocess

        path = INDEX[key].path
        proc = subprocess.run([dciodvfy_path, str(path)], capture_output=True, text=True, timeout=60)
        dciodvfy_errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
        status, text = run("validate", str(path))
        assert (status == 1) == bool(dciodvfy_errors), (text, dciodvfy_errors)


class TestManagerAndProxyCommands:
    def test_manager_rejects_an_unknown_fault(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert run("manager", "--port", "0", "--fault", "sometimes-wrong")[0] == 2
        assert "sometimes-wrong" in capsys.readouterr().err

    def test_replay_of_a_recording_against_the_same_manager_is_reproduced(self, tmp_path: Path) -> None:
        import requests

        from wic_conformance.actors.manager import ImageManager, ManagerConfig
        from wic_conformance.actors.proxy import RecordingProxy
        from wic_conformance.dicomweb import media_types as mt
        from wic_conformance.dicomweb.multipart import encode_multipart

        record = tmp_path / "rec"
        data = INDEX["part10/vl-photographic"].read()
        with ImageManager(ManagerConfig(data_dir=tmp_path / "a", validate_iod=False)) as upstream:
            proxy = RecordingProxy(upstream.url, record_dir=record, judge=False).start()
            try:
                ctype, body = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, data)],
                                               root_type=mt.APPLICATION_DICOM)
                r = requests.post(f"{proxy.url}/studies", data=body,
                                  headers={"Content-Type": ctype, "Accept": mt.APPLICATION_DICOM_JSON}, timeout=30)
                assert r.status_code == 200
                proxy.drain()
            finally:
                proxy.stop()
        with ImageManager(ManagerConfig(data_dir=tmp_path / "b", validate_iod=False)) as fresh:
            status, text = run("replay", str(record), fresh.url, "--format", "json")
        assert status == 0, text
        assert json.loads(text)["ok"] is True
