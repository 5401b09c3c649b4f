from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from tests.support.exchanges import check_context, multipart_request, run_named_check
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Request
from wic_conformance.dicomweb.part10 import read_part10
from wic_conformance.findings import Severity
from wic_conformance.validate import conversion
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

EXPLICIT_LE = UID("1.2.840.10008.1.2.1")
IMPLICIT_LE = UID("1.2.840.10008.1.2")
JPEG_BASELINE = UID("1.2.840.10008.1.2.4.50")
JPEG_EXTENDED = UID("1.2.840.10008.1.2.4.51")
JPEG_LOSSLESS_SV1 = UID("1.2.840.10008.1.2.4.70")
AVC_HP41 = UID("1.2.840.10008.1.2.4.102")
SC = "1.2.840.10008.5.1.4.1.1.7"
VIDEO_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
PDF_SOP = "1.2.840.10008.5.1.4.1.1.104.1"
STUDY = "2.25.1000"
SERIES = "2.25.2000"


# -- media -----------------------------------------------------------------------------------------------


def _rgb(width: int = 64, height: int = 48) -> Any:
    return Image.fromarray((np.arange(width * height * 3) % 251).astype("uint8").reshape(height, width, 3))


def _jpeg(quality: int = 90, **kwargs: Any) -> bytes:
    out = io.BytesIO()
    _rgb().save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


def _odd_jpeg() -> bytes:
    for quality in range(90, 40, -1):
        data = _jpeg(quality)
        if len(data) % 2:
            return data
    raise AssertionError("no odd-length JPEG")


def _png(mode: str) -> bytes:
    out = io.BytesIO()
    _rgb().convert(mode).save(out, "PNG")
    return out.getvalue()


def _gif(frames: int) -> bytes:
    out = io.BytesIO()
    img = _rgb()
    img.save(out, "GIF", save_all=True, append_images=[img.rotate(90 * (i + 1)) for i in range(frames - 1)],
             duration=40)
    return out.getvalue()


def _mp4(frames: int = 10, rate: int = 25) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"profile": "high", "level": "4.1"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"  # 45 bytes: odd, so the stored value is padded
assert len(PDF) % 2 == 1


# -- exchanges ------------------------------------------------------------------------------------------


@dataclass
class Bulk:
    tag: str
    media_type: str
    data: bytes
    uri: str = ""
    params: str = ""


@dataclass
class Case:
    """Submitted metadata (+ bulk parts) and the stored instances the Image Manager returned."""

    submitted: list[Dataset]
    bulk: list[list[Bulk]]
    stored: list[Dataset]
    url: str = "http://im.test/dicomweb/studies"
    raw_stored: list[bytes] = field(default_factory=list)

    def request(self) -> Request:
        docs = []
        parts: list[tuple[dict[str, str], bytes]] = []
        for index, (ds, bulks) in enumerate(zip(self.submitted, self.bulk, strict=True)):
            obj = ds.to_json_dict()
            for j, bulk in enumerate(bulks):
                bulk.uri = bulk.uri or f"http://capturer.test/bulk/{index}/{j}"
                obj[bulk.tag] = {"vr": "OB", "BulkDataURI": bulk.uri}
                ctype = bulk.media_type + bulk.params
                parts.append(({"Content-Type": ctype, "Content-Location": bulk.uri}, bulk.data))
            docs.append(obj)
        body_parts = [({"Content-Type": mt.APPLICATION_DICOM_JSON}, json.dumps(docs).encode()), *parts]
        return multipart_request(body_parts, url=self.url, root_type=mt.APPLICATION_DICOM_JSON)

    def exchange(self) -> Exchange:
        files = [_part10(ds) for ds in self.stored] + self.raw_stored
        docs = tuple(Document(mt.APPLICATION_DICOM, Body.of(f), DocumentRole.RETRIEVED, "wado") for f in files)
        return Exchange(request=self.request(), documents=docs)


def _part10(ds: Dataset, *, keep_meta: bool = False) -> bytes:
    """Write PS3.10; ``keep_meta`` writes the File Meta exactly as set (pydicom would otherwise fix it)."""
    out = io.BytesIO()
    if keep_meta:
        ds.preamble = bytes(128)
        ds.file_meta.FileMetaInformationVersion = b"\x00\x01"
        ds.save_as(out, enforce_file_format=False)
    else:
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _base(uid: str, sop_class: str = SC, *, name: str = "Doe^Jane", study: str = STUDY) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = SERIES
    ds.PatientName = name
    ds.PatientID = "PID-1"
    ds.Modality = "XC"
    ds.ContentDate = "20240102"
    ds.SliceThickness = "1.50"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    item = Dataset()
    item.CodeValue = "T-D1100"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Head"
    ds.AnatomicRegionSequence = DicomSequence([item])
    return ds


def _stored(submitted: Dataset, ts: str) -> Dataset:
    ds = copy.deepcopy(submitted)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ts)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _pixels(ds: Dataset, *, rows: int = 48, columns: int = 64, samples: int = 3, photometric: str = "RGB",
            bits: int = 8) -> None:
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0


def _encapsulated(ds: Dataset, data: bytes) -> None:
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def jpeg_case(jpeg: bytes | None = None, *, uid: str = "2.25.11", params: str = "") -> Case:
    data = jpeg if jpeg is not None else _jpeg()
    sub = _base(uid)
    stored = _stored(sub, JPEG_BASELINE)
    _pixels(stored, photometric="YBR_FULL_422")
    stored.LossyImageCompression = "01"
    _encapsulated(stored, data)
    return Case([sub], [[Bulk("7FE00010", mt.IMAGE_JPEG, data, params=params)]], [stored])


def png_case(mode: str = "RGB") -> Case:
    data = _png(mode)
    sub = _base("2.25.21")
    stored = _stored(sub, EXPLICIT_LE)
    rgb = _rgb().convert("L" if mode in ("L", "LA") else "RGB")
    _pixels(stored, samples=1 if rgb.mode == "L" else 3, photometric="MONOCHROME2" if rgb.mode == "L" else "RGB")
    stored.PixelData = rgb.tobytes()
    return Case([sub], [[Bulk("7FE00010", mt.IMAGE_PNG, data)]], [stored])


def gif_case(frames: int) -> Case:
    data = _gif(frames)
    sub = _base("2.25.31")
    stored = _stored(sub, EXPLICIT_LE)
    _pixels(stored)
    stored.NumberOfFrames = frames
    stored.PixelData = _rgb().tobytes() * frames
    return Case([sub], [[Bulk("7FE00010", mt.IMAGE_GIF, data)]], [stored])


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return _mp4()


def video_case(data: bytes) -> Case:
    sub = _base("2.25.41", VIDEO_PHOTO)
    stored = _stored(sub, AVC_HP41)
    _pixels(stored, photometric="YBR_PARTIAL_420")
    stored.NumberOfFrames = 10
    stored.FrameTime = "40"
    stored.FrameIncrementPointer = 0x00181063
    _encapsulated(stored, data)
    return Case([sub], [[Bulk("7FE00010", mt.VIDEO_MP4, data)]], [stored])


def pdf_case(data: bytes = PDF) -> Case:
    sub = _base("2.25.51", PDF_SOP)
    sub.MIMETypeOfEncapsulatedDocument = mt.APPLICATION_PDF
    sub.DocumentTitle = "Report"
    stored = _stored(sub, EXPLICIT_LE)
    stored.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    stored.EncapsulatedDocumentLength = len(data)
    return Case([sub], [[Bulk("00420011", mt.APPLICATION_PDF, data)]], [stored])


def run(name: str, case: Case | Exchange, **options: Any) -> CheckResult:
    exchange = case.exchange() if isinstance(case, Case) else case
    return run_named_check(name, exchange, check_context(name, options))


def errors(result: CheckResult) -> list[str]:
    return [f.requirement for f in result.findings if f.severity is not Severity.INFO]


def infos(result: CheckResult) -> list[str]:
    return [f.requirement for f in result.findings if f.severity is Severity.INFO]


def assert_passes(result: CheckResult) -> None:
    assert result.outcome is Outcome.PASSED, [f.message for f in result.findings]


# =====================================================================================================
# Pairing and helpers
# =====================================================================================================


class TestPairing:
    def test_registered_with_requirements_and_tags(self) -> None:
        names = {s.name for s in REGISTRY.select(tags=["conversion"])}
        assert names >= {"conversion_is_part10", "conversion_preserves_attributes",
                         "conversion_keeps_compressed_bitstream", "conversion_transfer_syntax_matches_media",
                         "conversion_pixel_description_matches_bitstream",
                         "conversion_video_attributes_match_stream", "conversion_encapsulated_document_matches",
                         "conversion_character_set_declared", "conversion_instances_share_submitted_study"}
        assert REGISTRY["conversion_preserves_attributes"].requirements[0] == "CONV-002"

    def test_pairs_by_uid_whatever_the_order(self) -> None:
        a, b = jpeg_case(uid="2.25.1"), jpeg_case(uid="2.25.2")
        case = Case(a.submitted + b.submitted, a.bulk + b.bulk, b.stored + a.stored)
        ctx = CheckContext()
        conv = conversion.conversion_of(ctx, case.exchange())
        assert [p.uid for p in conv.pairs] == ["2.25.1", "2.25.2"]
        assert {p.how for p in conv.pairs} == {"uid"}

    def test_not_applicable_without_retrieved_instances(self) -> None:
        exchange = Exchange(request=jpeg_case().request())
        result = run_check(REGISTRY["conversion_preserves_attributes"], CheckContext(), exchange)
        assert result.outcome is Outcome.NOT_APPLICABLE

    def test_split_encapsulated(self) -> None:
        split = conversion.split_encapsulated(encapsulate([b"abcd", b"ef"]))
        assert split.problem == "" and split.fragments == (b"abcd", b"ef") and split.joined == b"abcdef"
        assert "no Basic Offset Table" in conversion.split_encapsulated(b"").problem
        assert "bad length" in conversion.split_encapsulated(b"\xfe\xff\x00\xe0\xff\x00\x00\x00").problem
        assert "unexpected tag" in conversion.split_encapsulated(b"\x08\x00\x10\x00\x00\x00\x00\x00").problem

    def test_first_difference(self) -> None:
        assert conversion.first_difference(b"abc", b"abc") is None
        assert conversion.first_difference(b"abc", b"abd") == 2
        assert conversion.first_difference(b"abc", b"ab") == 2
        big = bytes(200_000)
        assert conversion.first_difference(big, big[:150_001] + b"\x01" + big[150_002:]) == 150_001


class TestElementsEqual:
    @pytest.mark.parametrize(("vr", "a", "b", "equal"), [
        ("DS", "1.50", "1.5", True),
        ("DS", "1.5", "1.6", False),
        ("IS", "007", "7", True),
        ("PN", "Doe^Jane^^^", "Doe^Jane", True),
        ("PN", "Doe^Jane", "Doe^John", False),
        ("LO", " Head ", "Head", True),
        ("LT", "  indented", "indented", False),
        ("UI", "1.2.3\x00", "1.2.3", True),
        ("DA", "20240102", "20240103", False),
        ("CS", ["A", "B"], ["A", "B"], True),
        ("CS", ["A", "B"], ["A"], False),
        ("FL", 0.1, 0.10000000149011612, True),
        ("US", 3, 4, False),
        ("OB", b"abc", b"abc\x00", True),
    ])
    @pytest.mark.filterwarnings("ignore:Invalid value for VR")
    def test_vr_normalisation(self, vr: str, a: Any, b: Any, equal: bool) -> None:
        from pydicom.dataelem import DataElement

        assert conversion.elements_equal(DataElement(0x00100010, vr, a), DataElement(0x00100010, vr, b)) is equal


# =====================================================================================================
# CONV-001 / WIC-IM-012
# =====================================================================================================


class TestIsPart10:
    def test_good(self) -> None:
        assert_passes(run("conversion_is_part10", jpeg_case()))

    def test_media_storage_uid_differs(self) -> None:
        case = jpeg_case()
        stored = case.stored.pop()
        stored.file_meta.MediaStorageSOPInstanceUID = UID("2.25.999")
        case.raw_stored.append(_part10(stored, keep_meta=True))
        result = run("conversion_is_part10", case)
        assert errors(result) == ["CONV-001"]
        assert "(0002,0003)" in result.findings[0].location and "2.25.999" in result.findings[0].message

    def test_no_preamble(self) -> None:
        case = jpeg_case()
        raw = _part10(case.stored.pop())
        case.raw_stored.append(raw[128:])
        assert errors(run("conversion_is_part10", case)) == ["CONV-001"]

    def test_implicit_vr_little_endian(self) -> None:
        case = pdf_case()
        case.stored[0].file_meta.TransferSyntaxUID = IMPLICIT_LE
        result = run("conversion_is_part10", case)
        assert errors(result) == ["WIC-IM-012"]

    @pytest.mark.filterwarnings("ignore:Expected explicit VR")  # pydicom notices too, and reads on
    def test_meta_declares_explicit_but_dataset_is_implicit(self) -> None:
        case = pdf_case()
        explicit = _part10(case.stored[0])
        implicit_ds = copy.deepcopy(case.stored[0])
        implicit_ds.file_meta.TransferSyntaxUID = IMPLICIT_LE
        implicit = _part10(implicit_ds)
        start_e, start_i = conversion._dataset_start(explicit), conversion._dataset_start(implicit)
        assert start_e is not None and start_i is not None
        case.stored.clear()
        case.raw_stored.append(explicit[:start_e] + implicit[start_i:])
        result = run("conversion_is_part10", case)
        assert errors(result) == ["CONV-001"]
        assert "Implicit VR Little Endian" in result.findings[0].message

    def test_submitted_instance_not_retrieved_is_information(self) -> None:
        a, b = jpeg_case(uid="2.25.1"), jpeg_case(uid="2.25.2")
        case = Case(a.submitted + b.submitted, a.bulk + b.bulk, a.stored)
        result = run("conversion_is_part10", case)
        assert result.outcome is Outcome.WARNED and infos(result) == ["WIC-IM-001"]


# =====================================================================================================
# CONV-002
# =====================================================================================================


class TestPreservesAttributes:
    def test_good(self) -> None:
        case = jpeg_case()
        case.stored[0].SliceThickness = "1.5"  # same number, other spelling
        case.stored[0].InstanceNumber = 1  # supplemented attributes are fine
        assert_passes(run("conversion_preserves_attributes", case))

    def test_unrecorded_change(self) -> None:
        case = jpeg_case()
        case.stored[0].PatientName = "Roe^Richard"
        result = run("conversion_preserves_attributes", case)
        assert errors(result) == ["CONV-002"]
        finding = result.findings[0]
        assert finding.location == "instance 2.25.11 (0010,0010)"
        assert "PatientName (0010,0010)" in finding.message
        assert "'Doe^Jane'" in finding.message and "'Roe^Richard'" in finding.message
        assert "no Original Attributes Sequence" in finding.message

    def test_recorded_change_is_information(self) -> None:
        case = jpeg_case()
        stored = case.stored[0]
        stored.PatientName = "Roe^Richard"
        modified = Dataset()
        modified.PatientName = "Doe^Jane"
        original = Dataset()
        original.ModifiedAttributesSequence = DicomSequence([modified])
        original.AttributeModificationDateTime = "20240102120000"
        original.ModifyingSystem = "MPI"
        original.ReasonForTheAttributeModification = "COERCE"
        stored.OriginalAttributesSequence = DicomSequence([original])
        result = run("conversion_preserves_attributes", case)
        assert result.outcome is Outcome.WARNED
        assert errors(result) == [] and infos(result) == ["WIC-IM-003"]

    def test_recorded_with_another_value_is_still_a_finding(self) -> None:
        case = jpeg_case()
        stored = case.stored[0]
        stored.PatientName = "Roe^Richard"
        modified = Dataset()
        modified.PatientName = "Somebody^Else"
        original = Dataset()
        original.ModifiedAttributesSequence = DicomSequence([modified])
        stored.OriginalAttributesSequence = DicomSequence([original])
        result = run("conversion_preserves_attributes", case)
        assert errors(result) == ["CONV-002"] and "different original value" in result.findings[0].message

    def test_removed_attribute(self) -> None:
        case = jpeg_case()
        del case.stored[0].PatientID
        result = run("conversion_preserves_attributes", case)
        assert errors(result) == ["CONV-002"]
        assert type(result.findings[0]).__name__ == "MissingAttribute"
        assert "PatientID (0010,0020)" in result.findings[0].message

    def test_change_inside_a_sequence(self) -> None:
        case = jpeg_case()
        case.stored[0].AnatomicRegionSequence[0].CodeMeaning = "Neck"
        result = run("conversion_preserves_attributes", case)
        assert errors(result) == ["CONV-002"]
        assert result.findings[0].location == "instance 2.25.11 (0008,2218)[0] > (0008,0104)"
        assert "'Head'" in result.findings[0].message and "'Neck'" in result.findings[0].message

    def test_multi_value_change(self) -> None:
        case = jpeg_case()
        case.stored[0].ImageType = ["DERIVED", "PRIMARY"]
        assert errors(run("conversion_preserves_attributes", case)) == ["CONV-002"]

    def test_ignore_option(self) -> None:
        case = jpeg_case()
        case.stored[0].PatientName = "Roe^Richard"
        assert_passes(run("conversion_preserves_attributes", case, ignore=["PatientName"]))

    def test_supplemented_uid_is_paired_by_order(self) -> None:
        case = jpeg_case(uid="2.25.77")
        del case.submitted[0].SOPInstanceUID
        result = run("conversion_preserves_attributes", case)
        assert errors(result) == [] and infos(result) == ["WIC-IM-010"]
        assert "paired by order" in result.findings[0].message


# =====================================================================================================
# CONV-003
# =====================================================================================================


class TestKeepsCompressedBitstream:
    def test_good(self) -> None:
        assert_passes(run("conversion_keeps_compressed_bitstream", jpeg_case()))

    def test_odd_length_padded(self) -> None:
        data = _odd_jpeg()
        case = jpeg_case(data)
        stored = case.stored[0]
        frame = conversion.stored_bitstream(read_part10(_part10(stored)).dataset)[0]  # type: ignore[arg-type]
        assert frame is not None and len(frame) == len(data) + 1
        assert_passes(run("conversion_keeps_compressed_bitstream", case))

    def test_recompressed(self) -> None:
        original = _jpeg(90)
        case = jpeg_case(original)
        recompressed = _jpeg(50)
        _encapsulated(case.stored[0], recompressed)
        result = run("conversion_keeps_compressed_bitstream", case)
        assert errors(result) == ["CONV-003"]
        message = result.findings[0].message
        assert f"{len(original)} bytes" in message and "first at byte offset" in message
        assert result.findings[0].location == "instance 2.25.11 (7FE0,0010)"

    def test_decompressed_to_native(self) -> None:
        case = jpeg_case()
        stored = case.stored[0]
        stored.file_meta.TransferSyntaxUID = EXPLICIT_LE
        stored.PixelData = _rgb().tobytes()
        stored["PixelData"].is_undefined_length = False
        result = run("conversion_keeps_compressed_bitstream", case)
        assert errors(result) == ["CONV-003"] and "native" in result.findings[0].message

    def test_progressive_may_be_decompressed(self) -> None:
        case = jpeg_case(_jpeg(progressive=True))
        stored = case.stored[0]
        stored.file_meta.TransferSyntaxUID = EXPLICIT_LE
        stored.PhotometricInterpretation = "RGB"
        stored.PixelData = _rgb().tobytes()
        stored["PixelData"].is_undefined_length = False
        assert_passes(run("conversion_keeps_compressed_bitstream", case))

    def test_video_unchanged_and_changed(self, mp4: bytes) -> None:
        assert_passes(run("conversion_keeps_compressed_bitstream", video_case(mp4)))
        case = video_case(mp4)
        changed = bytearray(mp4)
        changed[100] ^= 0xFF
        _encapsulated(case.stored[0], bytes(changed))
        result = run("conversion_keeps_compressed_bitstream", case)
        assert errors(result) == ["CONV-003"] and "offset 100" in result.findings[0].message


# =====================================================================================================
# WIC-IM-005/006/008/020/021
# =====================================================================================================


class TestTransferSyntaxMatchesMedia:
    def test_good(self, mp4: bytes) -> None:
        assert_passes(run("conversion_transfer_syntax_matches_media", jpeg_case()))
        assert_passes(run("conversion_transfer_syntax_matches_media", png_case()))
        assert_passes(run("conversion_transfer_syntax_matches_media", pdf_case()))
        assert_passes(run("conversion_transfer_syntax_matches_media", video_case(mp4)))

    def test_wrong_ts_for_baseline_jpeg(self) -> None:
        case = jpeg_case()
        case.stored[0].file_meta.TransferSyntaxUID = JPEG_LOSSLESS_SV1
        result = run("conversion_transfer_syntax_matches_media", case)
        assert errors(result) == ["WIC-IM-005"]
        assert "SOF 0xC0" in result.findings[0].message and JPEG_BASELINE in result.findings[0].message

    def test_equivalent_ts_is_an_option(self) -> None:
        case = jpeg_case()
        case.stored[0].file_meta.TransferSyntaxUID = JPEG_EXTENDED
        assert_passes(run("conversion_transfer_syntax_matches_media", case))
        assert errors(run("conversion_transfer_syntax_matches_media", case, accept_equivalent=False)) == [
            "WIC-IM-005"]

    def test_png_stored_lossy(self) -> None:
        case = png_case()
        stored = case.stored[0]
        stored.file_meta.TransferSyntaxUID = JPEG_BASELINE
        _encapsulated(stored, _jpeg())
        assert errors(run("conversion_transfer_syntax_matches_media", case)) == ["WIC-IM-006"]

    def test_pdf_stored_implicit(self) -> None:
        case = pdf_case()
        case.stored[0].file_meta.TransferSyntaxUID = IMPLICIT_LE
        assert errors(run("conversion_transfer_syntax_matches_media", case)) == ["WIC-IM-008"]

    def test_video_wrong_codec_ts(self, mp4: bytes) -> None:
        case = video_case(mp4)
        case.stored[0].file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.107")
        result = run("conversion_transfer_syntax_matches_media", case)
        assert errors(result) == ["WIC-IM-005"] and "avc1 profile_idc 100 level_idc 41" in result.findings[0].message

    def test_contradicting_declared_ts_stored_as_is(self) -> None:
        case = jpeg_case(params=f"; transfer-syntax={JPEG_LOSSLESS_SV1}")
        case.stored[0].file_meta.TransferSyntaxUID = JPEG_LOSSLESS_SV1
        result = run("conversion_transfer_syntax_matches_media", case)
        assert errors(result) == ["WIC-IM-021"]

    def test_contradicting_declared_ts_corrected(self) -> None:
        case = jpeg_case(params=f"; transfer-syntax={JPEG_LOSSLESS_SV1}")
        assert_passes(run("conversion_transfer_syntax_matches_media", case))

    def test_fitting_declared_ts_must_be_kept(self) -> None:
        case = jpeg_case(params=f"; transfer-syntax={JPEG_EXTENDED}")
        result = run("conversion_transfer_syntax_matches_media", case)
        assert errors(result) == ["WIC-IM-020"]
        assert_passes(run("conversion_transfer_syntax_matches_media", case, honour_declared_transfer_syntax=False))

    def test_progressive_transcoded_losslessly(self) -> None:
        case = jpeg_case(_jpeg(progressive=True))
        stored = case.stored[0]
        stored.file_meta.TransferSyntaxUID = EXPLICIT_LE
        stored.PixelData = _rgb().tobytes()
        stored["PixelData"].is_undefined_length = False
        assert_passes(run("conversion_transfer_syntax_matches_media", case))
        case = jpeg_case(_jpeg(progressive=True))  # progressive bitstream stored under the baseline TS
        assert errors(run("conversion_transfer_syntax_matches_media", case)) == ["WIC-IM-005"]


# =====================================================================================================
# CONV-004 / WIC-IM-007 / WIC-IM-022 / WIC-IM-006
# =====================================================================================================


class TestPixelDescription:
    @pytest.mark.parametrize("make", [jpeg_case, png_case, lambda: png_case("L"), lambda: png_case("RGBA"),
                                      lambda: gif_case(3)])
    def test_good(self, make: Any) -> None:
        assert_passes(run("conversion_pixel_description_matches_bitstream", make()))

    def test_wrong_rows(self) -> None:
        case = jpeg_case()
        case.stored[0].Rows = 50
        result = run("conversion_pixel_description_matches_bitstream", case)
        assert errors(result) == ["CONV-004"]
        assert result.findings[0].location == "instance 2.25.11 (0028,0010)"
        assert "Rows (0028,0010) is 50" in result.findings[0].message and "48" in result.findings[0].message

    def test_missing_columns(self) -> None:
        case = jpeg_case()
        del case.stored[0].Columns
        result = run("conversion_pixel_description_matches_bitstream", case)
        assert errors(result) == ["WIC-IM-007"]

    def test_planar_configuration(self) -> None:
        case = jpeg_case()
        case.stored[0].PlanarConfiguration = 1
        assert errors(run("conversion_pixel_description_matches_bitstream", case)) == ["CONV-004"]

    def test_lossy_jpeg_attributes(self) -> None:
        case = jpeg_case()
        case.stored[0].LossyImageCompression = "00"
        case.stored[0].PhotometricInterpretation = "MONOCHROME2"
        assert sorted(errors(run("conversion_pixel_description_matches_bitstream", case))) == [
            "WIC-IM-022", "WIC-IM-022"]

    def test_photometric_option(self) -> None:
        case = jpeg_case()
        case.stored[0].PhotometricInterpretation = "RGB"
        assert_passes(run("conversion_pixel_description_matches_bitstream", case))
        result = run("conversion_pixel_description_matches_bitstream", case,
                     jpeg_lossy_photometric=["YBR_FULL_422"])
        assert errors(result) == ["WIC-IM-022"]

    def test_png_alpha_kept(self) -> None:
        case = png_case("RGBA")
        case.stored[0].SamplesPerPixel = 4
        result = run("conversion_pixel_description_matches_bitstream", case)
        assert errors(result) == ["CONV-004"] and "alpha is discarded" in result.findings[0].message

    def test_gif_frames(self) -> None:
        case = gif_case(3)
        case.stored[0].NumberOfFrames = 1
        assert errors(run("conversion_pixel_description_matches_bitstream", case)) == ["WIC-IM-006"]


# =====================================================================================================
# CONV-005
# =====================================================================================================


class TestVideoAttributes:
    def test_good(self, mp4: bytes) -> None:
        assert_passes(run("conversion_video_attributes_match_stream", video_case(mp4)))

    def test_wrong_number_of_frames(self, mp4: bytes) -> None:
        case = video_case(mp4)
        case.stored[0].NumberOfFrames = 9
        result = run("conversion_video_attributes_match_stream", case)
        assert errors(result) == ["CONV-005"] and "10 frames" in result.findings[0].message

    def test_wrong_frame_time(self, mp4: bytes) -> None:
        case = video_case(mp4)
        case.stored[0].FrameTime = "33.3"
        result = run("conversion_video_attributes_match_stream", case)
        assert errors(result) == ["CONV-005"] and "40.000 ms" in result.findings[0].message
        assert_passes(run("conversion_video_attributes_match_stream", case, frame_time_tolerance=0.25))

    def test_missing_frame_increment_pointer(self, mp4: bytes) -> None:
        case = video_case(mp4)
        del case.stored[0].FrameIncrementPointer
        result = run("conversion_video_attributes_match_stream", case)
        assert errors(result) == ["CONV-005"]
        assert type(result.findings[0]).__name__ == "MissingAttribute"


# =====================================================================================================
# CONV-006 / WIC-IM-008
# =====================================================================================================


class TestEncapsulatedDocument:
    def test_good_padded(self) -> None:
        assert_passes(run("conversion_encapsulated_document_matches", pdf_case()))

    def test_bytes_changed(self) -> None:
        case = pdf_case()
        case.stored[0].EncapsulatedDocument = PDF.replace(b"1.4", b"1.5") + b"\x00"
        result = run("conversion_encapsulated_document_matches", case)
        assert errors(result) == ["CONV-006"] and "offset 7" in result.findings[0].message

    def test_mime_type_and_length(self) -> None:
        case = pdf_case()
        case.stored[0].MIMETypeOfEncapsulatedDocument = "text/plain"
        case.stored[0].EncapsulatedDocumentLength = len(PDF) + 1
        assert errors(run("conversion_encapsulated_document_matches", case)) == ["CONV-006", "CONV-006"]

    def test_document_missing(self) -> None:
        case = pdf_case()
        del case.stored[0].EncapsulatedDocument
        assert errors(run("conversion_encapsulated_document_matches", case)) == ["WIC-IM-008"]


# =====================================================================================================
# CONV-009
# =====================================================================================================


def _named_case(name: str, charset: str | None) -> Case:
    case = pdf_case()
    case.submitted[0].PatientName = name
    stored = case.stored[0]
    stored.PatientName = name
    if charset is None:
        del stored.SpecificCharacterSet
    else:
        stored.SpecificCharacterSet = charset
    return case


class TestCharacterSet:
    def test_good(self) -> None:
        assert_passes(run("conversion_character_set_declared", _named_case("Müller^Hans", "ISO_IR 192")))
        assert_passes(run("conversion_character_set_declared", _named_case("Müller^Hans", "ISO_IR 100")))
        assert_passes(run("conversion_character_set_declared", _named_case("Doe^Jane", None)))

    @pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom writing text it cannot encode
    def test_missing_charset_with_non_ascii_name(self) -> None:
        result = run("conversion_character_set_declared", _named_case("Müller^Hans", None))
        assert errors(result) == ["CONV-009"] and "PatientName (0010,0010)" in result.findings[0].message

    @pytest.mark.filterwarnings("ignore::UserWarning")
    def test_charset_that_cannot_encode(self) -> None:
        result = run("conversion_character_set_declared", _named_case("Иванов^Иван", "ISO_IR 100"))
        assert errors(result) == ["CONV-009"]

    def test_encodable(self) -> None:
        assert conversion.encodable("Müller", ["ISO_IR 100"])
        assert not conversion.encodable("Иванов", ["ISO_IR 100"])
        assert conversion.encodable("Иванов", ["", "ISO 2022 IR 144"])


# =====================================================================================================
# CONV-008
# =====================================================================================================


def _two_instances(study_a: str, study_b: str, stored_a: str, stored_b: str) -> Case:
    a, b = pdf_case(), pdf_case()
    b.submitted[0].SOPInstanceUID = b.stored[0].SOPInstanceUID = "2.25.52"
    b.stored[0].file_meta.MediaStorageSOPInstanceUID = UID("2.25.52")
    a.submitted[0].StudyInstanceUID, b.submitted[0].StudyInstanceUID = study_a, study_b
    a.stored[0].StudyInstanceUID, b.stored[0].StudyInstanceUID = stored_a, stored_b
    return Case(a.submitted + b.submitted, a.bulk + b.bulk, a.stored + b.stored)


class TestSharedStudy:
    def test_good(self) -> None:
        assert_passes(run("conversion_instances_share_submitted_study", _two_instances(STUDY, STUDY, STUDY, STUDY)))

    def test_split(self) -> None:
        result = run("conversion_instances_share_submitted_study",
                     _two_instances(STUDY, STUDY, STUDY, "2.25.7777"))
        assert errors(result) == ["CONV-008"] and "2 studies" in result.findings[0].message

    def test_merged(self) -> None:
        result = run("conversion_instances_share_submitted_study",
                     _two_instances(STUDY, "2.25.1001", STUDY, STUDY))
        assert errors(result) == ["CONV-008"] and "merged" in result.findings[0].message

    def test_study_from_target_url(self) -> None:
        case = _two_instances(STUDY, STUDY, STUDY, "2.25.7777")
        for ds in case.submitted:
            del ds.StudyInstanceUID
        case.url = f"http://im.test/dicomweb/studies/{STUDY}"
        assert errors(run("conversion_instances_share_submitted_study", case)) == ["CONV-008"]
