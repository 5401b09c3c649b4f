from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, FileMetaDataset, dcmread, dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian

from wic_conformance.actors.store import (
    DuplicatePolicy,
    InstanceStore,
    PutResult,
    StagedInstance,
    StoredRef,
    UnstorableInstanceError,
)
from wic_conformance.dicomweb.exchange import Body
from wic_conformance.dicomweb.part10 import DEFER_SIZE, is_deferred, read_part10
from wic_conformance.dicomweb.qido import parse_qido_query
from wic_conformance.errors import UsageError

VL_PHOTO = UID("1.2.840.10008.5.1.4.1.1.77.1.4")
STUDY_A, STUDY_B = "1.2.826.0.1.1", "1.2.826.0.1.2"


def make(
    sop: str,
    *,
    study: str = STUDY_A,
    series: str | None = None,
    series_number: int | None = 1,
    instance_number: int | None = 1,
    modality: str = "XC",
    patient_name: str = "Doe^Jane",
    comment: str = "",
) -> tuple[Dataset, bytes]:
    """A small VL Photographic-like instance (4x4 pixels) and its Part-10 bytes."""
    ds = Dataset()
    ds.SOPClassUID = VL_PHOTO
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or f"{study}.{series_number or 0}"
    ds.PatientName = patient_name
    ds.PatientID = "PID-1"
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-1"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.StudyDescription = "Wound photo"
    ds.StudyID = "S1"
    ds.ReferringPhysicianName = "Who^Doctor"
    ds.Modality = modality
    if series_number is not None:
        ds.SeriesNumber = series_number
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if comment:
        ds.ImageComments = comment
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(16)) * 80  # over the 1024-byte bulk threshold
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTO
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    return dcmread(io.BytesIO(data)), data


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InstanceStore]:
    with InstanceStore(tmp_path / "store") as s:
        yield s


def put(store: InstanceStore, sop: str, policy: DuplicatePolicy = DuplicatePolicy.REJECT,
        **kwargs: Any) -> PutResult:
    ds, data = make(sop, **kwargs)
    return store.put(ds, data, on_duplicate=policy)


def row_count(store: InstanceStore) -> int:
    with sqlite3.connect(store.root / "index.sqlite3") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])


def dcm_files(store: InstanceStore) -> list[Path]:
    return sorted(store.root.joinpath("instances").rglob("*.dcm"))


def all_files(store: InstanceStore) -> list[Path]:
    return sorted(p for p in store.root.joinpath("instances").rglob("*") if p.is_file())


class TestPut:
    def test_stores_the_bytes_unchanged_under_the_uid_layout(self, store: InstanceStore) -> None:
        ds, data = make("1.2.3.1")
        result = store.put(ds, data, on_duplicate=DuplicatePolicy.REJECT)
        expected = store.root / "instances" / STUDY_A / f"{STUDY_A}.1" / "1.2.3.1.dcm"
        assert result == PutResult(stored=True, replaced=False, path=expected)
        assert expected.read_bytes() == data
        assert all_files(store) == [expected]

    def test_index_row(self, store: InstanceStore) -> None:
        ds, data = make("1.2.3.1", series_number=3, instance_number=9)
        store.put(ds, data, on_duplicate=DuplicatePolicy.REJECT)
        (ref,) = store.instances()
        assert ref.sop_uid == "1.2.3.1" and ref.study_uid == STUDY_A and ref.series_uid == f"{STUDY_A}.3"
        assert (ref.series_number, ref.instance_number, ref.size) == (3, 9, len(data))
        assert ref.transfer_syntax_uid == ExplicitVRLittleEndian and ref.sop_class_uid == VL_PHOTO
        with sqlite3.connect(store.root / "index.sqlite3") as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM instances").fetchone()
        assert (row["patient_id"], row["patient_name"], row["patient_birth_date"], row["patient_sex"]) == (
            "PID-1", "Doe^Jane", "19800101", "F")
        assert (row["accession_number"], row["study_date"], row["study_time"], row["study_id"]) == (
            "ACC-1", "20240315", "101500", "S1")
        assert (row["modality"], row["rows"], row["columns"], row["number_of_frames"]) == ("XC", 4, 4, None)
        assert row["referring_physician_name"] == "Who^Doctor" and row["study_description"] == "Wound photo"
        assert len(row["sha256"]) == 64 and row["stored_at"].endswith("+00:00")

    @pytest.mark.parametrize(("keyword", "value", "message"), [
        ("SOPInstanceUID", None, "the dataset has no SOPInstanceUID"),
        ("StudyInstanceUID", "", "the dataset has no StudyInstanceUID"),
        ("SeriesInstanceUID", "../../etc", "SeriesInstanceUID '../../etc' cannot name a file"),
    ])
    def test_unstorable(self, store: InstanceStore, keyword: str, value: str | None, message: str) -> None:
        ds, data = make("1.2.3.1")
        if value is None:
            delattr(ds, keyword)
        else:
            invalid_uid = pytest.warns(UserWarning, match="Invalid value for VR UI")
            with invalid_uid if value else contextlib.nullcontext():
                setattr(ds, keyword, value)
        with pytest.raises(UnstorableInstanceError, match=message):
            store.put(ds, data, on_duplicate=DuplicatePolicy.REJECT)
        assert row_count(store) == 0 and all_files(store) == []


class TestDuplicates:
    def test_reject_keeps_the_first(self, store: InstanceStore) -> None:
        first = put(store, "1.2.3.1", comment="first")
        again = put(store, "1.2.3.1", DuplicatePolicy.REJECT, comment="second")
        assert again == PutResult(stored=False, replaced=False, path=first.path)
        assert dcmread(first.path).ImageComments == "first"
        assert row_count(store) == 1 and len(all_files(store)) == 1

    def test_replace_swaps_bytes_and_index(self, store: InstanceStore) -> None:
        first = put(store, "1.2.3.1", comment="first")
        old_sha = store.instances()[0].sha256
        second = put(store, "1.2.3.1", DuplicatePolicy.REPLACE, comment="second")
        assert second == PutResult(stored=True, replaced=True, path=first.path)
        assert dcmread(first.path).ImageComments == "second"
        (ref,) = store.instances()
        assert ref.sha256 != old_sha
        assert store.metadata(STUDY_A)[0]["00204000"]["Value"] == ["second"]
        assert len(all_files(store)) == 1

    def test_replace_into_another_series_moves_the_file(self, store: InstanceStore) -> None:
        first = put(store, "1.2.3.1", series_number=1)
        second = put(store, "1.2.3.1", DuplicatePolicy.REPLACE, series_number=2)
        assert second.replaced and second.path != first.path
        assert not first.path.exists() and dcm_files(store) == [second.path]
        assert [r.series_uid for r in store.instances()] == [f"{STUDY_A}.2"]

    def test_replace_keeps_the_study_order(self, store: InstanceStore) -> None:
        put(store, "1.2.3.1", study=STUDY_A)
        put(store, "1.2.3.2", study=STUDY_B)
        put(store, "1.2.3.1", DuplicatePolicy.REPLACE, study=STUDY_A, comment="again")
        assert [r.study_uid for r in store.instances()] == [STUDY_A, STUDY_B]

    def test_policy_values(self) -> None:
        assert DuplicatePolicy("reject") is DuplicatePolicy.REJECT and DuplicatePolicy.REPLACE == "replace"


class TestReading:
    def test_exists_and_get_path(self, store: InstanceStore) -> None:
        result = put(store, "1.2.3.1")
        assert store.exists("1.2.3.1") and not store.exists("1.2.3.9")
        assert store.get_path(STUDY_A, f"{STUDY_A}.1", "1.2.3.1") == result.path
        assert store.get_path(STUDY_A, f"{STUDY_A}.2", "1.2.3.1") is None
        assert store.get_path(STUDY_B, f"{STUDY_A}.1", "1.2.3.1") is None

    def test_instances_by_series_then_instance_number(self, store: InstanceStore) -> None:
        put(store, "1.2.3.5", series_number=2, instance_number=1)
        put(store, "1.2.3.4", series_number=1, instance_number=None)
        put(store, "1.2.3.3", series_number=1, instance_number=2)
        put(store, "1.2.3.2", series_number=1, instance_number=1)
        put(store, "1.2.3.9", study=STUDY_B)
        assert [r.sop_uid for r in store.instances()] == ["1.2.3.2", "1.2.3.3", "1.2.3.4", "1.2.3.5", "1.2.3.9"]
        assert [r.sop_uid for r in store.instances(STUDY_A, f"{STUDY_A}.1")] == ["1.2.3.2", "1.2.3.3", "1.2.3.4"]
        assert [r.sop_uid for r in store.instances(sop="1.2.3.5")] == ["1.2.3.5"]
        assert all(isinstance(r, StoredRef) for r in store.instances())

    def test_metadata_leaves_out_bulk_data(self, store: InstanceStore) -> None:
        put(store, "1.2.3.1")
        (doc,) = store.metadata(STUDY_A, f"{STUDY_A}.1", "1.2.3.1")
        assert doc["00080018"] == {"vr": "UI", "Value": ["1.2.3.1"]}
        assert doc["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
        assert "7FE00010" not in doc and not any(k.startswith("0002") for k in doc)
        assert Dataset.from_json(doc).Rows == 4

    def test_metadata_with_bulk_data_uris(self, store: InstanceStore) -> None:
        put(store, "1.2.3.1")
        (doc,) = store.metadata(STUDY_A, bulk_data_uri=lambda ref, tag: f"http://h/{ref.sop_uid}/bulk/{tag:08X}")
        assert doc["7FE00010"] == {"vr": "OB", "BulkDataURI": "http://h/1.2.3.1/bulk/7FE00010"}
        assert list(doc) == sorted(doc)

    def test_metadata_of_an_unknown_study(self, store: InstanceStore) -> None:
        assert store.metadata("9.9") == []

    def test_metadata_is_derived_from_the_file_on_first_read_and_kept(self, store: InstanceStore) -> None:
        ds, _data = make("1.2.3.1")
        put(store, "1.2.3.1")

        def column() -> tuple[str, str]:
            with sqlite3.connect(store.root / "index.sqlite3") as conn:
                found = conn.execute("SELECT metadata, bulk_data FROM instances").fetchone()
            return str(found[0]), str(found[1])

        assert column() == ("", "")  # storing does not derive it
        (found,) = store.search(parse_qido_query("instance", [("PatientName", "Doe*")]))
        assert found["00080018"]["Value"] == ["1.2.3.1"]
        metadata, bulk = column()
        assert json.loads(metadata)["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
        assert json.loads(bulk) == [{"tag": "7FE00010", "vr": "OB"}]
        (doc,) = store.metadata(STUDY_A)
        assert doc == json.loads(metadata)
        del ds.PixelData
        assert doc == {k: v for k, v in ds.to_json_dict().items()}

    def test_a_resend_during_derivation_keeps_its_own_metadata(self, store: InstanceStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        from wic_conformance.actors import store as store_module

        put(store, "1.2.3.1", patient_name="Old^Name")
        original = store_module.read_part10
        resent: list[bool] = []

        def racing(*args: Any, **kwargs: Any) -> Any:
            found = original(*args, **kwargs)  # the file of the row selected before the resend
            if not resent:
                resent.append(True)
                put(store, "1.2.3.1", DuplicatePolicy.REPLACE, patient_name="New^Name")
            return found

        monkeypatch.setattr(store_module, "read_part10", racing)
        (during,) = store.metadata(STUDY_A)
        monkeypatch.undo()
        assert during["00100010"]["Value"] == [{"Alphabetic": "Old^Name"}]  # what that read saw
        (after,) = store.metadata(STUDY_A)
        assert after["00100010"]["Value"] == [{"Alphabetic": "New^Name"}]  # not the older file's, kept

    def test_a_file_gone_meanwhile_gives_empty_metadata_not_a_failed_read(self, store: InstanceStore) -> None:
        put(store, "1.2.3.1")
        (path,) = dcm_files(store)
        path.unlink()
        assert store.metadata(STUDY_A) == [{}]
        assert store.search(parse_qido_query("instance", [])) != []

    def test_an_unreadable_file_gives_empty_metadata_not_a_failed_read(self, store: InstanceStore,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
        put(store, "1.2.3.1")
        (path,) = dcm_files(store)
        path.write_bytes(b"not DICOM")  # changed behind the store's back
        assert store.metadata(STUDY_A) == [{}]
        assert "cannot derive the metadata of 1.2.3.1" in caplog.text
        assert [r.sop_uid for r in store.instances()] == ["1.2.3.1"]


class TestSearch:
    @pytest.fixture
    def filled(self, store: InstanceStore) -> InstanceStore:
        put(store, "1.2.3.1", study=STUDY_A, series_number=1, instance_number=1, modality="XC")
        put(store, "1.2.3.2", study=STUDY_A, series_number=1, instance_number=2, modality="XC")
        put(store, "1.2.3.3", study=STUDY_A, series_number=2, instance_number=1, modality="OT")
        put(store, "1.2.3.4", study=STUDY_B, series_number=1, instance_number=1, modality="XC",
            patient_name="Roe^Richard")
        return store

    def test_studies_with_computed_attributes(self, filled: InstanceStore) -> None:
        results = filled.search(parse_qido_query("study", []), base_url="http://h/dicomweb/")
        assert [r["0020000D"]["Value"] for r in results] == [[STUDY_A], [STUDY_B]]
        a = Dataset.from_json(results[0])
        assert list(a.ModalitiesInStudy) == ["OT", "XC"]
        assert (a.NumberOfStudyRelatedSeries, a.NumberOfStudyRelatedInstances) == (2, 3)
        assert a.InstanceAvailability == "ONLINE"
        assert a.RetrieveURL == f"http://h/dicomweb/studies/{STUDY_A}"
        assert (a.PatientID, a.AccessionNumber, a.StudyDate, a.StudyID) == ("PID-1", "ACC-1", "20240315", "S1")
        assert "SOPInstanceUID" not in a and "SeriesInstanceUID" not in a

    def test_series_of_a_study(self, filled: InstanceStore) -> None:
        results = filled.search(parse_qido_query("series", [], study_uid=STUDY_A), base_url="http://h")
        series = [Dataset.from_json(r) for r in results]
        assert [(s.SeriesNumber, s.Modality, s.NumberOfSeriesRelatedInstances) for s in series] == [
            (1, "XC", 2), (2, "OT", 1)]
        assert series[0].RetrieveURL == f"http://h/studies/{STUDY_A}/series/{STUDY_A}.1"
        assert "PatientName" not in series[0]

    def test_all_series_carry_study_attributes(self, filled: InstanceStore) -> None:
        results = filled.search(parse_qido_query("series", [("Modality", "XC")]))
        assert len(results) == 2
        first = Dataset.from_json(results[0])
        assert first.PatientName == "Doe^Jane" and first.NumberOfStudyRelatedInstances == 3
        assert "RetrieveURL" not in first

    def test_instances(self, filled: InstanceStore) -> None:
        q = parse_qido_query("instance", [], study_uid=STUDY_A, series_uid=f"{STUDY_A}.1")
        results = [Dataset.from_json(r) for r in filled.search(q, base_url="http://h")]
        assert [(r.SOPInstanceUID, r.InstanceNumber, r.Rows) for r in results] == [
            ("1.2.3.1", 1, 4), ("1.2.3.2", 2, 4)]
        assert results[1].RetrieveURL == f"http://h/studies/{STUDY_A}/series/{STUDY_A}.1/instances/1.2.3.2"
        assert "PixelData" not in results[0]

    def test_person_name_is_case_insensitive(self, filled: InstanceStore) -> None:
        results = filled.search(parse_qido_query("study", [("PatientName", "roe*")]))
        assert [r["0020000D"]["Value"][0] for r in results] == [STUDY_B]

    def test_uid_list(self, filled: InstanceStore) -> None:
        q = parse_qido_query("instance", [("SOPInstanceUID", "1.2.3.4,1.2.3.1,9.9")])
        assert [r["00080018"]["Value"][0] for r in filled.search(q)] == ["1.2.3.1", "1.2.3.4"]

    def test_relational_keys_count_the_whole_study(self, filled: InstanceStore) -> None:
        results = filled.search(parse_qido_query("study", [("SOPInstanceUID", "1.2.3.3")]))
        (study,) = (Dataset.from_json(r) for r in results)
        assert study.NumberOfStudyRelatedInstances == 3 and study.SOPInstanceUID == "1.2.3.3"

    def test_computed_attributes_can_be_matched(self, filled: InstanceStore) -> None:
        q = parse_qido_query("study", [("ModalitiesInStudy", "OT")])
        assert [r["0020000D"]["Value"][0] for r in filled.search(q)] == [STUDY_A]

    def test_no_match(self, filled: InstanceStore) -> None:
        assert filled.search(parse_qido_query("study", [("StudyDate", "-20200101")])) == []

    def test_limit_and_offset_page_in_a_stable_order(self, filled: InstanceStore) -> None:
        every = [r["00080018"]["Value"][0] for r in filled.search(parse_qido_query("instance", []))]
        assert every == ["1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"]
        pages = [
            [r["00080018"]["Value"][0] for r in filled.search(
                parse_qido_query("instance", [("limit", "3"), ("offset", str(offset))]))]
            for offset in (0, 3, 6)
        ]
        assert pages == [every[:3], every[3:], []]

    def test_includefield_all(self, filled: InstanceStore) -> None:
        (study,) = filled.search(parse_qido_query("study", [("includefield", "all"), ("PatientName", "Roe*")]))
        ds = Dataset.from_json(study)
        assert ds.StudyDescription == "Wound photo" and ds.SOPClassesInStudy == VL_PHOTO
        assert "Rows" not in ds and "Modality" not in ds

    def test_empty_store(self, store: InstanceStore) -> None:
        assert store.search(parse_qido_query("study", [])) == []


class TestBodies:
    """PS3.10 bytes handed over as a :class:`Body`: copied in chunks, never decoded again."""

    @staticmethod
    def large(sop: str, size: int = 3 * DEFER_SIZE) -> bytes:
        ds, _ = make(sop)
        ds.PixelData = bytes(range(256)) * (size // 256)
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()

    def test_a_byte_range_of_a_spooled_body_is_stored_unchanged(self, store: InstanceStore, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        import wic_conformance.actors.store as module

        monkeypatch.setattr(module, "_CHUNK", 4096)  # many chunks
        data = self.large("1.2.3.1")
        spooled = tmp_path / "request.body"
        spooled.write_bytes(b"--boundary\r\n\r\n" + data + b"\r\n--boundary--")
        body = Body.from_file(spooled, offset=len(b"--boundary\r\n\r\n"), size=len(data))
        instance = read_part10(body)
        assert instance.dataset is not None and is_deferred(instance.dataset, 0x7FE00010)
        result = store.put(instance.dataset, body, on_duplicate=DuplicatePolicy.REJECT)
        assert result.stored and result.path.read_bytes() == data
        (ref,) = store.instances()
        assert ref.size == len(data) and ref.sha256 == hashlib.sha256(data).hexdigest()
        assert is_deferred(instance.dataset, 0x7FE00010)  # the index was built without reading Pixel Data

    def test_deferred_bulk_data_is_listed_in_the_index(self, store: InstanceStore) -> None:
        data = self.large("1.2.3.1")
        deferred = read_part10(data).dataset
        assert deferred is not None
        store.put(deferred, Body.of(data), on_duplicate=DuplicatePolicy.REJECT)
        with InstanceStore(store.root.parent / "other") as other:
            other.put(dcmread(io.BytesIO(data)), data, on_duplicate=DuplicatePolicy.REJECT)
            assert store.metadata(STUDY_A, bulk_data_uri=lambda ref, tag: f"bulk/{tag:08X}") == \
                other.metadata(STUDY_A, bulk_data_uri=lambda ref, tag: f"bulk/{tag:08X}")
        (doc,) = store.metadata(STUDY_A, bulk_data_uri=lambda ref, tag: f"bulk/{tag:08X}")
        assert doc["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk/7FE00010"}

    def test_a_body_shorter_than_its_size_is_not_stored(self, store: InstanceStore, tmp_path: Path) -> None:
        ds, data = make("1.2.3.1")
        spooled = tmp_path / "request.body"
        spooled.write_bytes(data)
        body = Body.from_file(spooled)
        spooled.write_bytes(data[:100])  # the file shrank after the body was taken
        with pytest.raises(OSError, match="ended"):
            store.put(ds, body, on_duplicate=DuplicatePolicy.REJECT)
        assert row_count(store) == 0 and all_files(store) == []


class TestStage:
    def test_staged_file_is_validated_then_committed(self, store: InstanceStore) -> None:
        ds, data = make("1.2.3.1")
        with store.stage(ds, data) as staged:
            assert isinstance(staged, StagedInstance)
            assert staged.path.read_bytes() == data and staged.path.parent == staged.final_path.parent
            assert not store.exists("1.2.3.1") and dcm_files(store) == []
            assert (staged.size, staged.sha256) == (len(data), hashlib.sha256(data).hexdigest())
            result = staged.commit(on_duplicate=DuplicatePolicy.REJECT)
        assert result.stored and all_files(store) == [staged.final_path] == [result.path]
        assert result.path.read_bytes() == data

    def test_uncommitted_staging_leaves_nothing(self, store: InstanceStore) -> None:
        ds, data = make("1.2.3.1")
        with store.stage(ds, data) as staged:
            pass
        assert not staged.path.exists() and all_files(store) == [] and row_count(store) == 0
        with pytest.raises(UsageError, match="already committed or discarded"):
            staged.commit(on_duplicate=DuplicatePolicy.REJECT)

    def test_rejected_duplicate_leaves_only_the_first(self, store: InstanceStore) -> None:
        first = put(store, "1.2.3.1", comment="first")
        ds, data = make("1.2.3.1", comment="second")
        with store.stage(ds, data) as staged:
            result = staged.commit(on_duplicate=DuplicatePolicy.REJECT)
        assert result == PutResult(stored=False, replaced=False, path=first.path)
        assert all_files(store) == [first.path]

    def test_unstorable_uid_is_refused_before_writing(self, store: InstanceStore) -> None:
        ds, data = make("1.2.3.1")
        del ds.StudyInstanceUID
        with pytest.raises(UnstorableInstanceError):
            store.stage(ds, data)
        assert all_files(store) == []


class TestDurability:
    @pytest.mark.parametrize("durable", [False, True])
    def test_fsync_only_when_durable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
        import wic_conformance.actors.store as module

        synced: list[int] = []
        real_fsync = module.os.fsync

        def fsync(fd: int) -> None:
            synced.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(module.os, "fsync", fsync)
        with InstanceStore(tmp_path / "s", durable=durable) as store:
            assert put(store, "1.2.3.1").stored
            mode = store._connect().execute("PRAGMA synchronous").fetchone()[0]
        assert len(synced) == (2 if durable else 0)  # the file, then its folder after the rename
        assert mode == (2 if durable else 1)  # FULL / NORMAL


class TestPersistence:
    def test_reopening_finds_everything(self, tmp_path: Path) -> None:
        with InstanceStore(tmp_path / "s") as first:
            path = put(first, "1.2.3.1").path
            put(first, "1.2.3.2", instance_number=2)
        with InstanceStore(tmp_path / "s") as second:
            assert second.exists("1.2.3.1") and [r.sop_uid for r in second.instances()] == ["1.2.3.1", "1.2.3.2"]
            assert second.get_path(STUDY_A, f"{STUDY_A}.1", "1.2.3.1") == path
            assert len(second.search(parse_qido_query("instance", []))) == 2
            assert put(second, "1.2.3.1").stored is False

    def test_one_open_store_per_root(self, tmp_path: Path) -> None:
        with InstanceStore(tmp_path / "s"), pytest.raises(UsageError, match="another open InstanceStore holds"):
            InstanceStore(tmp_path / "s")

    def test_temporary_root_is_removed_on_close(self) -> None:
        store = InstanceStore(None)
        put(store, "1.2.3.1")
        root = store.root
        assert root.is_dir()
        store.close()
        store.close()  # idempotent
        assert not root.exists()

    def test_closed_store_refuses_work(self, tmp_path: Path) -> None:
        store = InstanceStore(tmp_path / "s")
        store.close()
        with pytest.raises(UsageError, match="closed"):
            store.exists("1.2.3.1")

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        InstanceStore(tmp_path / "s").close()
        with sqlite3.connect(tmp_path / "s" / "index.sqlite3") as conn:
            conn.execute("PRAGMA user_version = 99")
        with pytest.raises(UsageError, match="schema version 99"):
            InstanceStore(tmp_path / "s")

    def test_wal_mode(self, store: InstanceStore) -> None:
        with sqlite3.connect(store.root / "index.sqlite3") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class TestAtomicity:
    @staticmethod
    def _crash(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    def test_failed_index_write_leaves_no_file_and_no_row(
        self, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(InstanceStore, "_insert_row", self._crash)
        with pytest.raises(sqlite3.OperationalError, match="simulated"):
            put(store, "1.2.3.1")
        assert not store.exists("1.2.3.1") and row_count(store) == 0
        assert all_files(store) == []  # neither the instance nor its temporary file

    def test_failed_replace_keeps_the_old_instance(
        self, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = put(store, "1.2.3.1", comment="first")
        before = first.path.read_bytes()
        monkeypatch.setattr(InstanceStore, "_insert_row", self._crash)
        with pytest.raises(sqlite3.OperationalError):
            put(store, "1.2.3.1", DuplicatePolicy.REPLACE, comment="second")
        monkeypatch.undo()
        assert first.path.read_bytes() == before and all_files(store) == [first.path]
        assert store.metadata(STUDY_A)[0]["00204000"]["Value"] == ["first"]

    def test_failed_file_move_leaves_no_row(self, store: InstanceStore, monkeypatch: pytest.MonkeyPatch) -> None:
        import wic_conformance.actors.store as module

        def broken_replace(src: object, dst: object) -> None:
            raise OSError("no space left on device (simulated)")

        monkeypatch.setattr(module.os, "replace", broken_replace)
        with pytest.raises(OSError, match="simulated"):
            put(store, "1.2.3.1")
        monkeypatch.undo()
        assert row_count(store) == 0 and all_files(store) == []

    def test_reopening_clears_crash_leftovers(self, tmp_path: Path) -> None:
        with InstanceStore(tmp_path / "s") as store:
            kept = put(store, "1.2.3.1").path
            gone = put(store, "1.2.3.2", instance_number=2).path
            orphan = kept.with_name("1.2.3.3.dcm")
        orphan.write_bytes(b"file whose index row was never committed")
        temp = kept.with_name(".1.2.3.4.abcd.tmp")
        temp.write_bytes(b"half written")
        gone.unlink()  # a row whose file disappeared
        with InstanceStore(tmp_path / "s") as store:
            assert all_files(store) == [kept]
            assert [r.sop_uid for r in store.instances()] == ["1.2.3.1"]

    def test_reopening_restores_an_interrupted_replace(self, tmp_path: Path) -> None:
        with InstanceStore(tmp_path / "s") as store:
            path = put(store, "1.2.3.1").path
        original = path.read_bytes()
        backup = path.with_name(path.name + ".bak")
        path.rename(backup)
        path.write_bytes(b"new bytes whose index row was never committed")
        with InstanceStore(tmp_path / "s") as store:
            assert path.read_bytes() == original and not backup.exists()
            assert store.exists("1.2.3.1")


class TestConcurrency:
    def test_parallel_puts_lose_and_duplicate_nothing(self, store: InstanceStore) -> None:
        payloads = [make(f"1.2.3.{n}", study=f"{STUDY_A}.{n % 5}", series_number=n % 3 + 1, instance_number=n)
                    for n in range(200)]

        def store_one(item: tuple[Dataset, bytes]) -> PutResult:
            return store.put(item[0], item[1], on_duplicate=DuplicatePolicy.REJECT)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(store_one, payloads))
        assert all(r.stored for r in results)
        assert row_count(store) == 200 and len(dcm_files(store)) == 200
        refs = store.instances()
        assert sorted(r.sop_uid for r in refs) == sorted(f"1.2.3.{n}" for n in range(200))
        assert len(store.search(parse_qido_query("instance", []))) == 200
        assert len(store.search(parse_qido_query("study", []))) == 5

    def test_racing_duplicates_store_exactly_once(self, store: InstanceStore) -> None:
        payloads = [make("1.2.3.1", comment=f"copy {n}") for n in range(8)]
        barrier = threading.Barrier(len(payloads))

        def store_one(item: tuple[Dataset, bytes]) -> PutResult:
            barrier.wait(timeout=10)  # all threads put at once
            return store.put(item[0], item[1], on_duplicate=DuplicatePolicy.REJECT)

        with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
            results = list(pool.map(store_one, payloads))
        assert sum(r.stored for r in results) == 1
        assert row_count(store) == 1 and len(all_files(store)) == 1

    def test_racing_replacements_leave_one_consistent_instance(self, store: InstanceStore) -> None:
        payloads = [make("1.2.3.1", comment=f"copy {n}") for n in range(24)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(
                lambda item: store.put(item[0], item[1], on_duplicate=DuplicatePolicy.REPLACE), payloads))
        assert all(r.stored for r in results) and sum(not r.replaced for r in results) == 1
        (ref,) = store.instances()
        assert all_files(store) == [ref.path]
        assert hashlib.sha256(ref.path.read_bytes()).hexdigest() == ref.sha256
