"""Replaying a recording against another Image Manager: the outcome table, differences, credentials, truncation."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.actors.test_proxy import metadata_parts, part10
from wic_conformance.actors.capturer import ImageCapturer
from wic_conformance.actors.manager import Auth, ImageManager, ManagerConfig, StoreOutcome, Submission
from wic_conformance.actors.proxy import RecordingProxy
from wic_conformance.actors.recorder import BODIES_DIR, JOURNAL_NAME, Journal
from wic_conformance.actors.replay import ReplayReport, format_replay_table, replay, run_replay
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.store_response import SopRef
from wic_conformance.errors import UsageError

TOKEN = "replay-T0KEN-77"


def _im(tmp: Path, name: str, **config: Any) -> ImageManager:
    return ImageManager(ManagerConfig(data_dir=tmp / name, **config))


def _part10_parts(*keys: str) -> list[tuple[dict[str, str], bytes]]:
    return [({"Content-Type": mt.APPLICATION_DICOM}, part10(k)) for k in keys]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of varied STOW-RS outcomes (200, a 409 duplicate, metadata, a failed IOD, chunked) and a search."""
    tmp = tmp_path_factory.mktemp("recording")
    with _im(tmp, "im") as im, RecordingProxy(im.url, record_dir=tmp / "rec", verify_stored=True) as proxy:
        capturer = ImageCapturer(proxy.url, headers={"Authorization": "Bearer not-required-here"})
        good = _part10_parts("part10/secondary-capture")
        metadata = metadata_parts("json/jpeg-baseline")
        statuses = [capturer.store(root_type=mt.APPLICATION_DICOM, parts=good),
                    capturer.store(root_type=mt.APPLICATION_DICOM, parts=good),  # duplicate: 409
                    capturer.store(root_type=mt.APPLICATION_DICOM,
                                   parts=_part10_parts("part10/vl-photographic", "part10/broken-missing-patient-name")),
                    capturer.store(root_type=metadata[0], parts=metadata[1]),
                    capturer.store(root_type=mt.APPLICATION_DICOM, parts=_part10_parts("part10/encapsulated-pdf"),
                                   chunked=True)]
        capturer.search("studies")
        assert [e.response.status for e in statuses if e.response] == [200, 409, 202, 200, 200]
    return tmp / "rec"


class TestReplay:
    def test_a_fresh_image_manager_reproduces_the_outcomes(self, recording: Path, tmp_path: Path) -> None:
        with _im(tmp_path, "fresh") as im:
            report = replay(recording, im.url)
            url = im.url
        assert report.ok, format_replay_table(report)
        assert [(r.recorded_status, r.new_status) for r in report.rows] == \
            [(200, 200), (409, 409), (202, 202), (200, 200), (200, 200)]
        assert [r.entry for r in report.rows] == [1, 2, 3, 4, 5]  # the search (entry 6) is not replayed
        assert all(r.url.startswith(url + "/studies") for r in report.rows)
        assert any("Authorization was redacted" in n for n in report.notes)
        assert "chunked" in " ".join(report.rows[4].notes)
        table = format_replay_table(report)
        assert "5 replayed, 0 different, 0 skipped: outcomes reproduced" in table
        assert "   2  POST /dicom-web/studies" in table

    def test_a_faulty_image_manager_differs(self, recording: Path, tmp_path: Path) -> None:
        def refuse(submission: Submission) -> StoreOutcome:
            failed = tuple(SopRef(str(i.dataset.SOPClassUID), str(i.dataset.SOPInstanceUID), failure_reason=0xC000)
                           for i in submission.stow.instances if i.dataset is not None)
            return StoreOutcome(409, failed=failed)

        with ImageManager(ManagerConfig(data_dir=tmp_path / "faulty"), on_store=refuse) as im:
            report = replay(recording, im.url)
        assert report.ok is False
        first = report.rows[0]
        assert first.new_status == 409 and "status 200 -> 409" in first.differences
        assert any("no longer listed" in d for d in first.differences)
        assert any("Failed SOP" in d and "newly listed" in d for d in first.differences)
        assert report.rows[1].differences == (next(d for d in report.rows[1].differences
                                                    if "Failure Reason 0xC40B -> 0xC000" in d),)
        table = format_replay_table(report)
        assert "DIFFERENT" in table and "OUTCOMES DIFFER" in table

    def test_instances_that_cannot_be_retrieved_are_a_difference(self, recording: Path, tmp_path: Path) -> None:
        holder: dict[str, ImageManager] = {}

        def store_elsewhere(submission: Submission) -> StoreOutcome:
            outcome = holder["im"].store_submission(submission)
            moved = tuple(SopRef(r.sop_class_uid, r.sop_instance_uid, retrieve_url=(r.retrieve_url or "") + "-gone",
                                 warning_reason=r.warning_reason) for r in outcome.referenced)
            return StoreOutcome(outcome.status, moved, outcome.failed, outcome.other_failures, outcome.retrieve_url)

        with ImageManager(ManagerConfig(data_dir=tmp_path / "odd"), on_store=store_elsewhere) as im:
            holder["im"] = im
            report = replay(recording, im.url)
        assert not report.ok
        assert any("could not be retrieved" in d and "HTTP 404" in d for d in report.rows[0].differences)

    def test_replaying_twice_to_the_same_manager_shows_the_duplicates(self, recording: Path, tmp_path: Path) -> None:
        with _im(tmp_path, "twice") as im:
            assert replay(recording, im.url).ok
            again = replay(recording, im.url)
        assert not again.ok and again.rows[0].new_status == 409

    def test_run_replay_exit_status_and_json(self, recording: Path, tmp_path: Path) -> None:
        out = io.StringIO()
        with _im(tmp_path, "cli") as im:
            assert run_replay(recording, im.url, out=out) == 0
            assert "outcomes reproduced" in out.getvalue()
            out = io.StringIO()
            assert run_replay(recording, im.url, out=out, output_format="json", check_stored=False) == 1
        doc = json.loads(out.getvalue())
        assert doc["ok"] is False and doc["rows"][0]["new_status"] == 409 and doc["rows"][0]["ok"] is False
        with pytest.raises(UsageError, match="unknown output format"):
            run_replay(recording, "http://127.0.0.1:9", out=out, output_format="xml")

    def test_har_file_and_bad_targets(self, recording: Path, tmp_path: Path) -> None:
        with _im(tmp_path, "har") as im:
            assert replay(recording / "recording.har", im.url).ok
        with pytest.raises(UsageError, match="http"):
            replay(recording, "ftp://x")
        with pytest.raises(UsageError, match="no recording"):
            replay(tmp_path, "http://127.0.0.1:9")

    def test_unreachable_target(self, recording: Path) -> None:
        import socket

        closed = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
        closed.close()
        report = replay(recording, url, timeout=5)
        assert not report.ok and report.rows[0].new_status is None
        assert report.rows[0].differences[0].startswith("no response: ConnectionError")


class TestCredentials:
    @pytest.fixture
    def secured(self, tmp_path: Path) -> Iterator[Path]:
        config = {"auth": Auth(token=TOKEN)}
        with _im(tmp_path, "a", **config) as im, RecordingProxy(im.url, record_dir=tmp_path / "rec") as proxy:
            exchange = ImageCapturer(proxy.url, headers={"Authorization": f"Bearer {TOKEN}"}).store(
                root_type=mt.APPLICATION_DICOM, parts=_part10_parts("part10/secondary-capture"))
            assert exchange.response is not None and exchange.response.status == 200
        yield tmp_path / "rec"

    def test_a_redacted_authorization_is_not_replayed(self, secured: Path, tmp_path: Path) -> None:
        with _im(tmp_path, "b", auth=Auth(token=TOKEN)) as im:
            report = replay(secured, im.url)
        assert not report.ok and report.rows[0].new_status == 401
        assert report.notes == ("the recorded Authorization was redacted and could not be replayed",)

    def test_the_session_supplies_the_credentials(self, secured: Path, tmp_path: Path) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        with _im(tmp_path, "c", auth=Auth(token=TOKEN)) as im:
            report = replay(secured, im.url, session=session)
        assert report.ok, format_replay_table(report)
        assert "the session's credentials were sent instead" in report.rows[0].notes[0]


class TestTruncated:
    def test_a_truncated_exchange_is_skipped(self, tmp_path: Path) -> None:
        (tmp_path / BODIES_DIR).mkdir()
        journal = Journal(tmp_path / JOURNAL_NAME)
        journal.append({"event": "started", "id": "cut", "started": 1.0, "request": {
            "method": "POST", "url": "http://127.0.0.1:1/dicom-web/studies", "headers": []}})
        journal.close()
        report = replay(tmp_path, "http://127.0.0.1:9/dicom-web")
        assert isinstance(report, ReplayReport) and report.ok
        (row,) = report.rows
        assert row.skipped and row.new_status is None and row.recorded_status == 0
        assert "1 skipped" in format_replay_table(report)


@pytest.mark.peer
class TestOrthanc:
    def test_a_recording_of_orthanc_replays_on_a_fresh_orthanc(self, make_orthanc: Any, tmp_path: Path) -> None:
        first = make_orthanc()
        with RecordingProxy(first.url, record_dir=tmp_path / "rec") as proxy:
            capturer = ImageCapturer(proxy.url)
            for key in ("part10/secondary-capture", "part10/vl-photographic", "part10/encapsulated-pdf"):
                exchange = capturer.store(root_type=mt.APPLICATION_DICOM, parts=_part10_parts(key))
                assert exchange.response is not None and exchange.response.status == 200
        second = make_orthanc()
        report = replay(tmp_path / "rec", second.url)
        assert report.ok, format_replay_table(report)
        assert [r.new_status for r in report.rows] == [200, 200, 200]
