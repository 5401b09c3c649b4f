from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from wic_conformance.model.enums import (
    ModalityValues,
    PhotometricInterpretationValues,
    SOPClassUIDValues,
    TransferSyntaxUIDValues,
)
from wic_conformance.model.instances import (
    EncapsulatedPDF,
    KeyObjectSelectionDocument,
    SecondaryCaptureImage,
    VideoPhotographicImage,
    VLPhotographicImage,
    _jpeg_transfer_syntax,
    _probe_video,
    _video_transfer_syntax,
    encode_part10,
    new_uid,
    uid_from_name,
)
from wic_conformance.model.media import jpeg_photometric_interpretation, probe_jpeg

MEDIA = Path(__file__).resolve().parents[2] / "fixtures" / "media"
HAND = ("85562004", "SCT", "Hand")
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9)


def media(name: str) -> bytes:
    return (MEDIA / name).read_bytes()


def context(**extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "patient_name": "Doe^Jane",
        "patient_id": "P-1",
        "study_instance_uid": uid_from_name("test/study"),
        "content_datetime": WHEN,
    }
    ctx.update(extra)
    return ctx


def roundtrip(ds: Dataset) -> Dataset:
    data = encode_part10(ds)
    assert data[128:132] == b"DICM"
    return dcmread(io.BytesIO(data))


class TestUids:
    def test_new_uid_is_uuid_derived(self) -> None:
        uid = new_uid()
        assert uid.startswith("2.25.")
        assert len(uid) <= 64
        assert uid != new_uid()

    def test_uid_from_name_is_stable(self) -> None:
        assert uid_from_name("a") == uid_from_name("a")
        assert uid_from_name("a") != uid_from_name("b")
        assert uid_from_name("a").startswith("2.25.")

    def test_uid_from_name_rejects_non_str(self) -> None:
        with pytest.raises(TypeError, match="must be str"):
            uid_from_name(3)  # type: ignore[arg-type]


class TestProbes:
    """What the builders read from a bitstream (the probes of model/media.py, read the builders' way)."""

    def test_jpeg_baseline(self) -> None:
        info = probe_jpeg(media("jpeg-baseline.jpg"))
        assert (info.sof, info.precision, info.rows, info.columns, info.components) == (0xC0, 8, 48, 64, 3)
        assert _jpeg_transfer_syntax(info) is TransferSyntaxUIDValues.JPEG_BASELINE_8BIT
        photometric = jpeg_photometric_interpretation(info, by_sampling=True)
        assert PhotometricInterpretationValues(photometric) is PhotometricInterpretationValues.YBR_FULL_422

    def test_jpeg_extended(self) -> None:
        info = probe_jpeg(media("jpeg-extended-12bit.jpg"))
        assert info.sof == 0xC1 and info.precision == 12
        assert _jpeg_transfer_syntax(info) is TransferSyntaxUIDValues.JPEG_EXTENDED_12BIT

    def test_jpeg_lossless(self) -> None:
        info = probe_jpeg(media("jpeg-lossless.jpg"))
        assert info.sof == 0xC3 and info.lossless
        expected = (TransferSyntaxUIDValues.JPEG_LOSSLESS_SV1 if info.predictor == 1
                    else TransferSyntaxUIDValues.JPEG_LOSSLESS)
        assert _jpeg_transfer_syntax(info) is expected
        photometric = jpeg_photometric_interpretation(info, by_sampling=True)
        assert PhotometricInterpretationValues(photometric) is PhotometricInterpretationValues.MONOCHROME2

    def test_not_jpeg(self) -> None:
        with pytest.raises(ValueError, match="SOI"):
            probe_jpeg(b"\x89PNG....")

    def test_mp4(self) -> None:
        info = _probe_video(media("mp4-h264.mp4"))
        assert (info.codec, info.profile_idc, info.level_idc) == ("avc1", 100, 41)
        assert (info.height, info.width, info.frames) == (64, 64, 10)
        assert info.frame_rate is not None and 1000.0 / info.frame_rate == pytest.approx(100.0)
        assert _video_transfer_syntax(info) is TransferSyntaxUIDValues.MPEG4_HP41

    def test_not_mp4(self) -> None:
        with pytest.raises(ValueError, match="ftyp"):
            _probe_video(media("report.pdf"))


class TestVLPhotographicImage:
    def test_builds_from_jpeg(self) -> None:
        ds = VLPhotographicImage(jpeg=media("jpeg-baseline.jpg"), laterality="R", anatomic_region=HAND,
                                 **context())
        assert ds.Modality == ModalityValues.XC
        assert ds.SOPClassUID == SOPClassUIDValues.VL_PHOTOGRAPHIC_IMAGE_STORAGE
        assert ds.file_meta.TransferSyntaxUID == TransferSyntaxUIDValues.JPEG_BASELINE_8BIT
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (48, 64, 3)
        assert ds.LossyImageCompression == "01"
        assert "Laterality" in ds and "PatientOrientation" in ds
        back = roundtrip(ds)
        assert back.PatientName == "Doe^Jane"
        assert back.file_meta.TransferSyntaxUID == TransferSyntaxUIDValues.JPEG_BASELINE_8BIT

    def test_lossless_is_not_lossy(self) -> None:
        ds = VLPhotographicImage(jpeg=media("jpeg-lossless.jpg"), **context())
        assert ds.LossyImageCompression == "00"
        assert ds.PhotometricInterpretation == "MONOCHROME2"

    def test_rejects_12_bit(self) -> None:
        with pytest.raises(ValueError, match="8-bit"):
            VLPhotographicImage(jpeg=media("jpeg-extended-12bit.jpg"), **context())

    def test_rejects_non_bytes(self) -> None:
        with pytest.raises(TypeError, match="jpeg must be bytes"):
            VLPhotographicImage(jpeg="not bytes", **context())  # type: ignore[arg-type]

    def test_rejects_png(self) -> None:
        with pytest.raises(ValueError, match="not a JPEG"):
            VLPhotographicImage(jpeg=media("png-rgb.png"), **context())

    def test_rejects_bad_laterality(self) -> None:
        with pytest.raises(ValueError, match="laterality"):
            VLPhotographicImage(jpeg=media("jpeg-baseline.jpg"), laterality="X", **context())

    def test_rejects_bad_orientation(self) -> None:
        with pytest.raises(TypeError, match="patient_orientation"):
            VLPhotographicImage(jpeg=media("jpeg-baseline.jpg"), patient_orientation="LF", **context())


class TestContext:
    def test_missing_required_keyword(self) -> None:
        ctx = context()
        del ctx["patient_id"]
        with pytest.raises(TypeError, match="patient_id"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="t", **ctx)

    def test_unknown_keyword(self) -> None:
        with pytest.raises(TypeError, match="patient_nmae"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="t", **context(patient_nmae="x"))

    def test_bad_uid(self) -> None:
        with pytest.raises(ValueError, match="not a valid UID"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="t",
                            **context(study_instance_uid="1.02.x"))

    def test_bad_patient_sex(self) -> None:
        with pytest.raises(ValueError, match="patient_sex"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="t", **context(patient_sex="X"))

    def test_long_patient_id(self) -> None:
        with pytest.raises(ValueError, match="patient_id"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="t", **context(patient_id="x" * 65))

    def test_datetime_is_not_a_date(self) -> None:
        with pytest.raises(TypeError, match="patient_birth_date"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="t", **context(patient_birth_date=WHEN))

    def test_non_ascii_sets_character_set(self) -> None:
        ds = EncapsulatedPDF(pdf=media("report.pdf"), document_title="t",
                             **context(patient_name="Müller^Jürgen"))
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert roundtrip(ds).PatientName == "Müller^Jürgen"

    def test_ascii_has_no_character_set(self) -> None:
        ds = EncapsulatedPDF(pdf=media("report.pdf"), document_title="t", **context())
        assert "SpecificCharacterSet" not in ds

    def test_explicit_uids_are_kept(self) -> None:
        ds = EncapsulatedPDF(pdf=media("report.pdf"), document_title="t",
                             **context(series_instance_uid="1.2.3", sop_instance_uid="1.2.3.4"))
        assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == ("1.2.3", "1.2.3.4")


class TestVideoPhotographicImage:
    def test_builds_from_mp4(self) -> None:
        ds = VideoPhotographicImage(mp4=media("mp4-h264.mp4"), anatomic_region=HAND, **context())
        assert ds.file_meta.TransferSyntaxUID == TransferSyntaxUIDValues.MPEG4_HP41
        assert ds.NumberOfFrames == 10
        assert float(ds.FrameTime) == pytest.approx(100.0)
        assert ds.FrameIncrementPointer == 0x00181063
        assert ds.PhotometricInterpretation == "YBR_PARTIAL_420"
        back = roundtrip(ds)
        assert back.NumberOfFrames == 10

    def test_needs_anatomic_region(self) -> None:
        with pytest.raises(ValueError, match="anatomic_region"):
            VideoPhotographicImage(mp4=media("mp4-h264.mp4"), **context())

    def test_bad_anatomic_region(self) -> None:
        with pytest.raises(TypeError, match="triple"):
            VideoPhotographicImage(mp4=media("mp4-h264.mp4"), anatomic_region="Hand",  # type: ignore[arg-type]
                                   **context())


class TestEncapsulatedPDF:
    def test_builds(self) -> None:
        pdf = media("report.pdf")
        ds = EncapsulatedPDF(pdf=pdf, document_title="Report", **context())
        assert ds.Modality == "DOC"
        assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
        assert ds.EncapsulatedDocumentLength == len(pdf)
        assert bytes(ds.EncapsulatedDocument)[: len(pdf)] == pdf
        assert len(ds.EncapsulatedDocument) % 2 == 0
        assert ds.file_meta.TransferSyntaxUID == TransferSyntaxUIDValues.EXPLICIT_VR_LITTLE_ENDIAN

    def test_rejects_non_pdf(self) -> None:
        with pytest.raises(ValueError, match="%PDF-"):
            EncapsulatedPDF(pdf=b"hello", document_title="Report", **context())

    def test_rejects_bad_conversion_type(self) -> None:
        with pytest.raises(ValueError, match="conversion_type"):
            EncapsulatedPDF(pdf=media("report.pdf"), document_title="R", conversion_type="XYZ", **context())


class TestSecondaryCaptureImage:
    def test_builds(self) -> None:
        ds = SecondaryCaptureImage(pixel_data=bytes(4 * 2 * 3), rows=2, columns=4, **context())
        assert ds.PhotometricInterpretation == "RGB"
        assert roundtrip(ds).Rows == 2

    def test_rejects_wrong_size(self) -> None:
        with pytest.raises(ValueError, match="pixel_data has"):
            SecondaryCaptureImage(pixel_data=bytes(5), rows=2, columns=4, **context())

    def test_rejects_bool_rows(self) -> None:
        with pytest.raises(TypeError, match="rows"):
            SecondaryCaptureImage(pixel_data=bytes(3), rows=True, columns=1, **context())


class TestKeyObjectSelectionDocument:
    def test_references_instances(self) -> None:
        image = VLPhotographicImage(jpeg=media("jpeg-baseline.jpg"), **context())
        pdf = EncapsulatedPDF(pdf=media("report.pdf"), document_title="R", **context())
        kos = KeyObjectSelectionDocument(referenced_instances=[image, pdf], description="why", **context())
        assert kos.Modality == "KO"
        evidence = kos.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == image.StudyInstanceUID
        referenced = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                      for item in kos.ContentSequence if "ReferencedSOPSequence" in item}
        assert referenced == {image.SOPInstanceUID, pdf.SOPInstanceUID}
        value_types = [item.ValueType for item in kos.ContentSequence]
        assert value_types == ["TEXT", "IMAGE", "COMPOSITE"]
        roundtrip(kos)

    def test_rejects_empty(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            KeyObjectSelectionDocument(referenced_instances=[], **context())

    def test_rejects_dataset_without_uids(self) -> None:
        with pytest.raises(ValueError, match="lacks a UID"):
            KeyObjectSelectionDocument(referenced_instances=[Dataset()], **context())


class TestEncodePart10:
    def test_reencoding_leaves_the_original_alone(self) -> None:
        ds = EncapsulatedPDF(pdf=media("report.pdf"), document_title="R", **context())
        data = encode_part10(ds, transfer_syntax_uid=TransferSyntaxUIDValues.IMPLICIT_VR_LITTLE_ENDIAN)
        assert dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        assert ds.file_meta.TransferSyntaxUID == TransferSyntaxUIDValues.EXPLICIT_VR_LITTLE_ENDIAN
        assert "PatientName" in ds

    def test_needs_file_meta(self) -> None:
        with pytest.raises(ValueError, match="file_meta"):
            encode_part10(Dataset())
