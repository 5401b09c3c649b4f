from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from wic_conformance.dicomweb.exchange import Body, Exchange, Headers


class TestHeaders:
    def test_case_insensitive_and_multi_valued(self) -> None:
        h = Headers.of([("Content-Type", "a/b"), ("X-A", "1"), ("x-a", "2")])
        assert h.get("content-type") == "a/b"
        assert h.get_all("X-A") == ["1", "2"]
        assert "CONTENT-TYPE" in h
        assert h.get("missing") is None

    def test_redaction_keeps_names_and_order(self) -> None:
        h = Headers.of({"Authorization": "Bearer s3cret", "Cookie": "a=b", "Accept": "x/y"}).redacted()
        assert h.items == (("Authorization", "<redacted>"), ("Cookie", "<redacted>"), ("Accept", "x/y"))


class TestBody:
    def test_memory_and_file_bodies_agree(self, tmp_path: Path) -> None:
        data = bytes(range(256)) * 10_000
        path = tmp_path / "b.bin"
        path.write_bytes(data)
        mem, disk = Body.of(data), Body.from_file(path)
        assert len(mem) == len(disk) == len(data)
        assert mem.sha256() == disk.sha256() == hashlib.sha256(data).hexdigest()
        assert b"".join(disk.chunks(1000)) == data
        assert disk.head(5) == data[:5]
        assert not disk.in_memory and mem.in_memory

    def test_exchange_ids_are_unique(self) -> None:
        assert Exchange().id != Exchange().id


def _part10_bytes() -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.77.1.4")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Range^Test"
    ds.PixelData = bytes(range(256)) * 64
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 128, 128, 8, 1
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class TestBodyRange:
    DATA = bytes(range(256)) * 40  # 10240 bytes

    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        path = tmp_path / "whole.bin"
        path.write_bytes(self.DATA)
        return path

    def test_from_file_range_fields(self, path: Path) -> None:
        body = Body.from_file(path, offset=100, size=1000)
        assert (body.path, body.offset, body.size, len(body)) == (path, 100, 1000, 1000)
        assert not body.in_memory and not body.is_whole_file
        assert Body.from_file(str(path), offset=100) == Body(path=path, size=len(self.DATA) - 100, offset=100)

    def test_whole_file_defaults(self, path: Path) -> None:
        body = Body.from_file(path)
        assert (body.offset, body.size) == (0, len(self.DATA))
        assert body.is_whole_file
        assert not Body.from_file(path, size=10).is_whole_file
        assert not Body.of(b"x").is_whole_file

    @pytest.mark.parametrize(("offset", "size"), [(0, 0), (1, 1), (100, 1000), (0, 10240), (10240, 0), (5000, None)])
    def test_readers_honour_the_range(self, path: Path, offset: int, size: int | None) -> None:
        body = Body.from_file(path, offset=offset, size=size)
        expected = self.DATA[offset:offset + size] if size is not None else self.DATA[offset:]
        assert body.read() == expected
        assert b"".join(body.chunks(333)) == expected
        assert all(len(c) <= 333 for c in body.chunks(333))
        assert body.head(7) == expected[:7]
        assert body.head(1 << 20) == expected
        assert body.sha256() == hashlib.sha256(expected).hexdigest()
        with body.open() as handle:
            assert handle.read() == expected

    @pytest.mark.parametrize(("offset", "size"), [(-1, 1), (0, -1), (0, 10241), (10000, 241), (10241, None)])
    def test_range_outside_the_file(self, path: Path, offset: int, size: int | None) -> None:
        with pytest.raises(ValueError, match="does not lie within"):
            Body.from_file(path, offset=offset, size=size)

    def test_constructor_checks(self, path: Path) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            Body(path=path, size=-1)
        with pytest.raises(ValueError, match="only a file-backed body has an offset"):
            Body(data=b"x", size=1, offset=1)

    def test_open_is_a_seekable_reader_limited_to_the_range(self, path: Path) -> None:
        body = Body.from_file(path, offset=1000, size=300)
        expected = self.DATA[1000:1300]
        with body.open() as handle:
            assert handle.seekable() and handle.readable()
            assert handle.tell() == 0
            assert handle.read(10) == expected[:10]
            assert handle.tell() == 10
            assert handle.seek(-5, io.SEEK_END) == 295
            assert handle.read(100) == expected[-5:]
            assert handle.read(1) == b""
            assert handle.seek(20) == 20
            assert handle.seek(10, io.SEEK_CUR) == 30
            target = bytearray(50)
            assert isinstance(handle, io.BufferedIOBase)
            assert handle.readinto(target) == 50
            assert bytes(target) == expected[30:80]
            assert handle.seek(1000) == 1000
            assert handle.read() == b""
            with pytest.raises((ValueError, OSError)):
                handle.seek(-1)
        assert handle.closed

    def test_raw_reader_without_buffering(self, path: Path) -> None:
        raw = Body._RangeReader(path, 10, 20)  # noqa: SLF001 - the reader behind open()
        try:
            assert raw.read(5) == self.DATA[10:15]
            assert raw.readall() == self.DATA[15:30]
            assert raw.read(5) == b""
            assert raw.seek(-3, io.SEEK_END) == 17
            assert raw.read() == self.DATA[27:30]
            with pytest.raises(ValueError, match="negative seek"):
                raw.seek(-1, io.SEEK_SET)
            with pytest.raises(ValueError, match="invalid whence"):
                raw.seek(0, 7)
        finally:
            raw.close()
        assert raw.closed

    def test_whole_file_opens_as_the_file(self, path: Path) -> None:
        with Body.from_file(path).open() as handle:
            assert handle.name == str(path)
            assert handle.read() == self.DATA

    def test_dcmread_reads_a_range(self, tmp_path: Path) -> None:
        from pydicom import dcmread

        part10 = _part10_bytes()
        path = tmp_path / "multi.bin"
        path.write_bytes(b"junk before" * 100 + part10 + b"\r\n--boundary--\r\n" + b"junk after" * 100)
        body = Body.from_file(path, offset=1100, size=len(part10))
        with body.open() as handle:
            ds = dcmread(handle)
            assert str(ds.PatientName) == "Range^Test"
            assert ds.PixelData == bytes(range(256)) * 64
            assert handle.tell() == len(part10)
            assert ds.filename == f"{path}[1100:{1100 + len(part10)}]"  # not a path to the whole file
