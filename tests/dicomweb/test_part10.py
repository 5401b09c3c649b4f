"""Tests of PS3.10 reading (dicomweb/part10.py): deviations, and large values read only when used."""

from __future__ import annotations

import copy
import io
import os
import pickle
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from wic_conformance.dicomweb.exchange import Body
from wic_conformance.dicomweb.part10 import DEFER_SIZE, is_deferred, read_part10

ROOT = Path(__file__).resolve().parents[2]
PART10 = ROOT / "fixtures" / "part10"
PIXEL_DATA = 0x7FE00010
DOCUMENT = 0x00420011


def with_large_values(*, native: bool, size: int = 3 * DEFER_SIZE + 7) -> bytes:
    """The VL Photographic fixture with a large Pixel Data (native or encapsulated) and a private OB after it."""
    ds = dcmread(PART10 / "vl-photographic.dcm")
    payload = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    if native:
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
        ds["PixelData"].VR = "OB"
        ds.PixelData = payload
        ds["PixelData"].is_undefined_length = False
    else:
        ds.PixelData = encapsulate([payload], has_bot=False)
        ds["PixelData"].is_undefined_length = True
    ds.add_new(0x00091010, "LO", "WIC TEST")
    ds.add_new(0x00091110, "OB", b"\x02" * 10)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def in_range(tmp_path: Path, data: bytes) -> Body:
    """``data`` as a byte range of a larger file, as a part of a spooled multipart body is."""
    path = tmp_path / "body.bin"
    path.write_bytes(b"--before--" + data + b"--after--")
    return Body.from_file(path, offset=len(b"--before--"), size=len(data))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class TestDeviations:
    def test_good_file(self) -> None:
        instance = read_part10(Body.from_file(PART10 / "vl-photographic.dcm"), location="part 1", origin="request")
        assert instance.deviations == () and instance.dataset is not None
        assert instance.transfer_syntax == str(instance.dataset.file_meta.TransferSyntaxUID)
        assert instance.origin == "request" and instance.location == "part 1"

    def test_no_preamble(self) -> None:
        (deviation,) = read_part10(b"not dicom").deviations
        assert deviation.code == "part10.no_preamble" and deviation.fatal

    def test_undecodable(self) -> None:
        (deviation,) = read_part10((PART10 / "kos.dcm").read_bytes()[:1000]).deviations  # inside a sequence
        assert deviation.code == "part10.unreadable" and deviation.fatal


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors through /proc")
class TestLargeValues:
    @pytest.mark.parametrize("native", [True, False], ids=["native", "encapsulated"])
    def test_pixel_data_of_a_file_range_is_read_when_used(self, tmp_path: Path, native: bool) -> None:
        data = with_large_values(native=native)
        before = open_fds()
        instance = read_part10(in_range(tmp_path, data))
        assert instance.deviations == () and instance.dataset is not None
        ds = instance.dataset
        assert is_deferred(ds, PIXEL_DATA)
        assert open_fds() == before  # the dataset holds no file open
        assert ds.PatientName == dcmread(io.BytesIO(data)).PatientName
        assert ds[0x00091110].value == b"\x02" * 10  # small values after it were decoded
        assert ds.PixelData == dcmread(io.BytesIO(data)).PixelData
        assert not is_deferred(ds, PIXEL_DATA)
        assert open_fds() == before

    def test_in_memory_body(self) -> None:
        data = with_large_values(native=False)
        ds = read_part10(data).dataset
        assert ds is not None and is_deferred(ds, PIXEL_DATA)
        assert ds.PixelData == dcmread(io.BytesIO(data)).PixelData

    def test_small_values_are_not_deferred(self) -> None:
        ds = read_part10(Body.from_file(PART10 / "vl-photographic.dcm")).dataset
        assert ds is not None and not any(is_deferred(ds, tag) for tag in ds.keys())

    def test_a_copy_reads_the_deferred_value_too(self, tmp_path: Path) -> None:
        data = with_large_values(native=True)
        ds = read_part10(in_range(tmp_path, data)).dataset
        assert ds is not None
        copied, pickled = copy.deepcopy(ds), pickle.loads(pickle.dumps(ds))
        assert is_deferred(copied, PIXEL_DATA) and is_deferred(pickled, PIXEL_DATA)
        assert copied.PixelData == pickled.PixelData == ds.PixelData == dcmread(io.BytesIO(data)).PixelData

    def test_a_value_cut_short_is_unreadable(self, tmp_path: Path) -> None:
        ds = dcmread(PART10 / "kos.dcm")
        ds.add_new(DOCUMENT, "OB", b"\x01" * (2 * DEFER_SIZE))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        cut = buffer.getvalue()[:-1000]
        for body in (Body.of(cut), in_range(tmp_path, cut)):
            (deviation,) = read_part10(body).deviations
            assert deviation.code == "part10.unreadable" and "cut short" in deviation.message

    def test_a_small_value_cut_short_is_unreadable(self) -> None:
        data = (PART10 / "kos.dcm").read_bytes()
        ds = dcmread(io.BytesIO(data))
        ds.add_new(DOCUMENT, "OB", b"\x01" * 2000)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        (deviation,) = read_part10(buffer.getvalue()[:-100]).deviations
        assert deviation.code == "part10.unreadable"

    def test_sequences_are_decoded(self, tmp_path: Path) -> None:
        data = (PART10 / "kos.dcm").read_bytes()
        ds = read_part10(in_range(tmp_path, data)).dataset
        assert isinstance(ds, Dataset)
        assert ds.ContentSequence == dcmread(io.BytesIO(data)).ContentSequence
