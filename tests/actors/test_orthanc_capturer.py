"""Orthanc as a real STOW-RS client (an Image Capturer nobody here wrote) storing a study into the simulated IM.

Orthanc 1.10's DICOMweb client sends one request per call with every instance as
an ``application/dicom`` part, ``Accept: application/dicom+json``, and a boundary
made of two UUIDs joined by a hyphen: 73 characters, over RFC 2046's limit of 70,
which the Image Manager's checks report as STOW-PAY-015.  With
``ChunkedTransfers`` on (Orthanc's default) the body is sent chunked, otherwise
with Content-Length.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydicom import dcmread
from pydicom.dataset import Dataset

from wic_conformance.actors.manager import ImageManager, ManagerConfig, Verdict
from wic_conformance.bench.manager import OrthancProcess
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.multipart import decode_multipart
from wic_conformance.findings import Severity
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.model.instances import new_uid

pytestmark = pytest.mark.peer

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
STUDY_FIXTURES = ("part10/vl-photographic", "part10/vl-photographic-lossless", "part10/video-photographic",
                  "part10/encapsulated-pdf")
PATIENT = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def one_study(keys: tuple[str, ...] = STUDY_FIXTURES) -> tuple[str, dict[str, bytes]]:
    """Re-identify PS3.10 fixtures into one new study of the first fixture's patient: (study UID, {SOP UID: bytes})."""
    study, first = new_uid(), dcmread(INDEX[keys[0]].path)
    out: dict[str, bytes] = {}
    for key in keys:
        ds: Dataset = dcmread(INDEX[key].path)
        for keyword in PATIENT:
            if keyword in first:
                setattr(ds, keyword, first[keyword].value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, new_uid(), new_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out[str(ds.SOPInstanceUID)] = buffer.getvalue()
    return study, out


def wait_verdicts(im: ImageManager, count: int, timeout: float = 30.0) -> list[Verdict]:
    deadline = time.monotonic() + timeout
    while len(im.verdicts) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return im.verdicts


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ImageManager]:
    im = ImageManager(ManagerConfig(data_dir=tmp_path)).start()
    yield im
    im.stop()
    im.check_errors()


class TestOrthancSendsAStudy:
    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_study_is_stored_judged_and_reported(self, orthanc: OrthancProcess, manager: ImageManager,
                                                 chunked: bool, dciodvfy_path: str) -> None:
        study, sent = one_study()
        ids = [orthanc.upload(data) for data in sent.values()]
        study_id = orthanc.session.get(f"{orthanc.rest}/instances/{ids[0]}/study", timeout=30).json()["ID"]
        name = f"im-{new_uid().rsplit('.', 1)[-1][-8:]}"
        orthanc.add_stow_server(name, manager.url, chunked=chunked)

        job = orthanc.stow(name, [study_id])

        # Orthanc's job reports success, counting every instance.
        assert job.status_code == 200, job.text
        assert int(job.json()["InstancesCount"]) == len(sent)

        # The Image Manager stored every instance: QIDO-RS lists them, WADO-RS returns the bytes Orthanc had.
        qido = requests.get(f"{manager.url}/studies/{study}/instances", timeout=30)
        assert qido.status_code == 200
        assert sorted(item["00080018"]["Value"][0] for item in qido.json()) == sorted(sent)
        wado = requests.get(f"{manager.url}/studies/{study}", headers={"Accept": AS_STORED}, timeout=30)
        parts = decode_multipart(wado.content, wado.headers["Content-Type"]).parts
        retrieved = {str(dcmread(io.BytesIO(p.body.read())).SOPInstanceUID): p.body.read() for p in parts}
        assert retrieved == sent

        # The Image Manager judged the exchange: one request for the study, judged without check errors.
        (verdict,) = wait_verdicts(manager, 1)
        assert verdict.status == 200 and verdict.method == "POST" and verdict.url.endswith("/dicom-web/studies")
        assert verdict.errors == ()
        (exchange,) = manager.exchanges
        assert exchange.request is not None
        headers = exchange.request.headers
        assert headers.get("accept") == mt.APPLICATION_DICOM_JSON
        ctype = mt.parse_media_type(headers.get("content-type") or "")
        assert ctype.is_(mt.MULTIPART_RELATED) and ctype.root_type is not None
        assert ctype.root_type.is_(mt.APPLICATION_DICOM)
        if chunked:
            assert headers.get("transfer-encoding") == "chunked" and headers.get("content-length") is None
        else:
            assert headers.get("content-length") == str(exchange.request.body.size)
            assert headers.get("transfer-encoding") is None

        # What the checks say about Orthanc's request: only the over-long boundary (two UUIDs: 73 characters).
        boundary = ctype.param("boundary")
        assert boundary is not None and len(boundary) == 73
        errors = {f.requirement for f in verdict.findings if f.severity is Severity.ERROR}
        assert errors == {"STOW-PAY-015"}, [f.to_dict() for f in verdict.findings]
        (finding,) = [f for f in verdict.findings if f.requirement == "STOW-PAY-015"]
        assert "73 characters" in finding.message
