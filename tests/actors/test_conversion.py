from __future__ import annotations

import io
import json
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, features
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.uid import UID

from wic_conformance.actors import conversion
from wic_conformance.actors.conversion import (
    ConversionPolicy,
    Converted,
    ImageSopClass,
    Rejected,
    convert_submission,
)
from wic_conformance.dicomweb.part10 import DEFER_SIZE, is_deferred
from wic_conformance.dicomweb.stow import StowRequest, build_stow_request, parse_stow_request
from wic_conformance.errors import ConfigError
from wic_conformance.model.fixtures import Fixture, FixtureIndex

JSON = "application/dicom+json"
XML = "application/dicom+xml"
DICOM = "application/dicom"

VL = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
SC = "1.2.840.10008.5.1.4.1.1.7"
MF_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

INDEX = FixtureIndex.load()
METADATA_FIXTURES = sorted(f.key for f in INDEX if f.kind in ("json", "xml") and f.valid)
PART10_FIXTURES = sorted(f.key for f in INDEX if f.kind == "part10" and f.valid)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def stow(root: str, parts: list[tuple[dict[str, str], bytes]], study_uid: str | None = None) -> StowRequest:
    request = build_stow_request(base_url="http://127.0.0.1/dicom-web", root_type=root, parts=parts,
                                 study_uid=study_uid)
    return parse_stow_request(request)


def convert(root: str, parts: list[tuple[dict[str, str], bytes]], *, policy: ConversionPolicy | None = None,
            study_uid: str | None = None) -> list[Converted | Rejected]:
    return convert_submission(stow(root, parts, study_uid), policy=policy or ConversionPolicy(),
                              target_study=study_uid)


def metadata(uri: str = "bulk/1", *extra: dict[str, Any], tag: str = "7FE00010") -> dict[str, Any]:
    """A minimal DICOM JSON dataset: Patient Name/ID and one BulkDataURI, plus the ``extra`` attributes."""
    ds: dict[str, Any] = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["WIC-0001"]},
        tag: {"vr": "OB", "BulkDataURI": uri},
    }
    for attributes in extra:
        ds.update(attributes)
    return ds


def uids(sop_class: str | None = None) -> dict[str, dict[str, Any]]:
    out = {"00080018": {"vr": "UI", "Value": ["2.25.1001"]}, "0020000D": {"vr": "UI", "Value": ["2.25.1002"]},
           "0020000E": {"vr": "UI", "Value": ["2.25.1003"]}}
    if sop_class:
        out["00080016"] = {"vr": "UI", "Value": [sop_class]}
    return out


def ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def bulk(media_type: str, data: bytes, location: str = "bulk/1") -> tuple[dict[str, str], bytes]:
    return {"Content-Type": media_type, "Content-Location": location}, data


def convert_one(data: bytes, media_type: str, *extra: dict[str, Any], tag: str = "7FE00010",
                policy: ConversionPolicy | None = None, study_uid: str | None = None) -> Converted | Rejected:
    meta = json.dumps([metadata("bulk/1", *extra, tag=tag)]).encode()
    results = convert(JSON, [({"Content-Type": JSON}, meta), bulk(media_type, data)], policy=policy,
                      study_uid=study_uid)
    assert len(results) == 1
    return results[0]


def converted(result: Converted | Rejected) -> Converted:
    assert isinstance(result, Converted), result
    return result


def rejected(result: Converted | Rejected, reason: int) -> Rejected:
    assert isinstance(result, Rejected), result
    assert result.failure_reason == reason, result
    return result


def media(key: str) -> bytes:
    return INDEX[key].read()


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def dciodvfy(binary: str, ds: Dataset, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Encode ``ds`` as PS3.10 and return dciodvfy's (errors, warnings)."""
    path = tmp_path / "instance.dcm"
    path.write_bytes(encode(ds))
    proc = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = (proc.stderr + proc.stdout).splitlines()
    return [line for line in lines if "Error - " in line], [line for line in lines if "Warning - " in line]


def assert_iod_valid(binary: str, ds: Dataset, tmp_path: Path) -> None:
    errors, _warnings = dciodvfy(binary, ds, tmp_path)
    assert not errors, "\n".join(errors)


def encapsulated_bitstream(ds: Dataset) -> bytes:
    return b"".join(generate_fragments(ds.PixelData))


def jpeg_bytes(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def noise(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    grey = Image.effect_noise(size, 64)
    if mode == "L":
        return grey
    return Image.merge("RGB", (grey, grey.rotate(90), grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def raw_png(width: int, height: int, depth: int, colour_type: int) -> bytes:
    """A hand-made PNG (Pillow cannot write 16-bit colour)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\x00" + bytes(width * channels * depth // 8)

    def chunk(name: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


def fixture_request(fixture: Fixture) -> list[tuple[dict[str, str], bytes]]:
    return [({"Content-Type": fixture.media_type}, fixture.read()), *INDEX.bulk_parts(fixture)]


def modified_items(ds: Dataset) -> dict[str, Dataset]:
    """The Original Attributes Sequence items by reason, each checked to hold exactly one modified item."""
    out: dict[str, Dataset] = {}
    for item in ds.get("OriginalAttributesSequence", []):
        assert len(item.ModifiedAttributesSequence) == 1
        out[item.ReasonForTheAttributeModification] = item.ModifiedAttributesSequence[0]
    return out


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


class TestConversionPolicy:
    def test_defaults(self) -> None:
        policy = ConversionPolicy()
        assert policy.image_sop_class is ImageSopClass.VL_PHOTOGRAPHIC
        assert policy.supplement_uids and policy.accept_png and policy.accept_gif and policy.accept_quicktime
        assert not policy.accept_3gpp
        assert policy.modifying_system == "WIC-CONFORMANCE-IM"

    def test_from_mapping(self) -> None:
        policy = ConversionPolicy.from_mapping({"image_sop_class": "secondary-capture", "supplement_uids": False,
                                                "accept_3gpp": True, "modifying_system": "MY-IM"})
        assert policy == ConversionPolicy(ImageSopClass.SECONDARY_CAPTURE, False, "MY-IM", accept_3gpp=True)
        assert ConversionPolicy.from_mapping({"image_sop_class": "VL_PHOTOGRAPHIC"}).image_sop_class \
            is ImageSopClass.VL_PHOTOGRAPHIC
        assert ConversionPolicy.from_mapping({}) == ConversionPolicy()

    @pytest.mark.parametrize(("data", "match"), [
        ({"colour": True}, "unknown conversion setting"),
        ({"image_sop_class": "ct"}, "image_sop_class"),
        ({"accept_png": "yes"}, "accept_png must be true or false"),
        ({"modifying_system": "x" * 65}, "not a valid LO value"),
        ({"modifying_system": ""}, "non-empty"),
    ])
    def test_bad_settings(self, data: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            ConversionPolicy.from_mapping(data)

    def test_not_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match="mapping"):
            ConversionPolicy.from_mapping(["accept_png"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Every fixture, and every media type with minimal metadata, passes dciodvfy
# --------------------------------------------------------------------------------------------


class TestFixtures:
    @pytest.mark.parametrize("key", METADATA_FIXTURES)
    def test_metadata_fixture_converts_without_coercion(self, key: str) -> None:
        fixture = INDEX[key]
        result = converted(convert(fixture.media_type, fixture_request(fixture))[0])
        ds = result.dataset
        assert result.warning_reason is None and result.original_attributes == ()
        assert "OriginalAttributesSequence" not in ds
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        bulk_fixture = INDEX[fixture.properties["bulk"][0]["fixture"]]
        if bulk_fixture.media_type == "application/pdf":
            assert ds.EncapsulatedDocument.rstrip(b"\x00") == bulk_fixture.read().rstrip(b"\x00")
        else:
            assert encapsulated_bitstream(ds)[:len(bulk_fixture.read())] == bulk_fixture.read()

    @pytest.mark.peer
    @pytest.mark.parametrize("key", METADATA_FIXTURES)
    def test_metadata_fixture_passes_dciodvfy(self, key: str, dciodvfy_path: str, tmp_path: Path) -> None:
        fixture = INDEX[key]
        result = converted(convert(fixture.media_type, fixture_request(fixture))[0])
        errors, warnings = dciodvfy(dciodvfy_path, result.dataset, tmp_path)
        assert not errors and not warnings, errors + warnings

    @pytest.mark.parametrize("key", PART10_FIXTURES)
    def test_part10_fixture_is_accepted_as_is(self, key: str) -> None:
        data = media(key)
        result = converted(convert(DICOM, [({"Content-Type": DICOM}, data)])[0])
        assert result.warning_reason is None and result.notes == () and result.original_attributes == ()
        original = dcmread(io.BytesIO(data))
        assert result.dataset == original
        assert result.dataset.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID

    @pytest.mark.peer
    def test_part10_is_not_repaired(self, dciodvfy_path: str, tmp_path: Path) -> None:
        # Accepted as is: the IOD check (the manager's validate_iod) is what rejects it; this also
        # shows that the dciodvfy helper sees errors.
        result = converted(convert(DICOM, [({"Content-Type": DICOM}, media("part10/broken-missing-patient-name"))])[0])
        errors, _warnings = dciodvfy(dciodvfy_path, result.dataset, tmp_path)
        assert any("PatientName" in e for e in errors)

    @pytest.mark.peer
    @pytest.mark.parametrize("key", PART10_FIXTURES)
    def test_part10_fixture_passes_dciodvfy(self, key: str, dciodvfy_path: str, tmp_path: Path) -> None:
        result = converted(convert(DICOM, [({"Content-Type": DICOM}, media(key))])[0])
        assert_iod_valid(dciodvfy_path, result.dataset, tmp_path)


MINIMAL_CASES = [
    # media fixture, media type, expected SOP Class, expected Transfer Syntax
    ("media/jpeg-baseline", "image/jpeg", VL, "1.2.840.10008.1.2.4.50"),
    ("media/jpeg-extended-12bit", "image/jpeg", SC, "1.2.840.10008.1.2.4.51"),
    ("media/jpeg-lossless", "image/jpeg", VL, "1.2.840.10008.1.2.4.57"),
    ("media/png-rgb", "image/png", VL, EXPLICIT_LE),
    ("media/png-rgba", "image/png", VL, EXPLICIT_LE),
    ("media/png-palette", "image/png", VL, EXPLICIT_LE),
    ("media/gif-animated", "image/gif", MF_TRUE_COLOR, EXPLICIT_LE),
    ("media/mp4-h264", "video/mp4", VIDEO, "1.2.840.10008.1.2.4.102"),
    ("media/pdf", "application/pdf", PDF, EXPLICIT_LE),
]


class TestMinimalMetadata:
    """Only Patient Name, Patient ID and a BulkDataURI: everything else is derived or supplemented."""

    @staticmethod
    def run(key: str, media_type: str) -> Converted:
        tag = "00420011" if media_type == "application/pdf" else "7FE00010"
        return converted(convert_one(media(key), media_type, tag=tag))

    @pytest.mark.parametrize(("key", "media_type", "sop_class", "ts"), MINIMAL_CASES)
    def test_sop_class_transfer_syntax_and_coercion_record(self, key: str, media_type: str, sop_class: str,
                                                          ts: str) -> None:
        result = self.run(key, media_type)
        ds = result.dataset
        assert ds.SOPClassUID == sop_class and ds.file_meta.TransferSyntaxUID == ts
        assert ds.file_meta.MediaStorageSOPClassUID == sop_class
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert str(ds[keyword].value).startswith("2.25.")
        assert ds.PatientName == "Doe^Jane" and ds.PatientID == "WIC-0001"
        assert ds.PatientBirthDate == "" and ds.PatientSex == "" and ds.AccessionNumber == ""
        assert ds.SeriesNumber == 1 and ds.InstanceNumber == 1
        assert result.warning_reason == 0xB000
        assert any("SOP Class UID not given" in n for n in result.notes)
        assert any("added empty Type 2 attributes" in n for n in result.notes)
        previous = modified_items(ds)["COERCE"]
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert keyword in previous and previous[keyword].value in (None, "")
        assert "PatientName" not in previous
        assert list(result.original_attributes) == list(ds.OriginalAttributesSequence)

    @pytest.mark.peer
    @pytest.mark.parametrize(("key", "media_type", "sop_class", "ts"), MINIMAL_CASES)
    def test_passes_dciodvfy(self, key: str, media_type: str, sop_class: str, ts: str, dciodvfy_path: str,
                             tmp_path: Path) -> None:
        result = self.run(key, media_type)
        errors, warnings = dciodvfy(dciodvfy_path, result.dataset, tmp_path)
        assert not errors, "\n".join(errors)
        # What remains: empty Type 2 values that a DICOMDIR would need, and an empty Laterality.
        assert all("DICOMDIR" in w or "<Laterality>" in w for w in warnings), warnings

    def test_patient_identity_is_never_invented(self) -> None:
        meta = {"7FE00010": {"vr": "OB", "BulkDataURI": "bulk/1"}}
        result = converted(convert(JSON, [({"Content-Type": JSON}, json.dumps([meta]).encode()),
                                          bulk("image/jpeg", media("media/jpeg-baseline"))])[0])
        assert result.dataset.PatientName == "" and result.dataset.PatientID == ""

    def test_single_object_instead_of_an_array(self) -> None:
        meta = json.dumps(metadata()).encode()  # a lenient reading: one dataset object, not an array
        result = converted(convert(JSON, [({"Content-Type": JSON}, meta),
                                          bulk("image/jpeg", media("media/jpeg-baseline"))])[0])
        assert result.dataset.SOPClassUID == VL

    def test_nested_pixel_data_is_not_the_instance_pixel_data(self) -> None:
        icon = {"vr": "SQ", "Value": [{"7FE00010": {"vr": "OB", "BulkDataURI": "bulk/icon"}}]}
        meta = json.dumps([metadata("bulk/1", {"00880200": icon})]).encode()
        data = media("media/jpeg-baseline")
        result = converted(convert(JSON, [({"Content-Type": JSON}, meta), bulk("image/jpeg", data),
                                          bulk("application/octet-stream", bytes(16), "bulk/icon")])[0])
        assert encapsulated_bitstream(result.dataset)[:len(data)] == data
        assert result.dataset.IconImageSequence[0].PixelData == bytes(16)

    def test_xml_metadata(self) -> None:
        fixture = INDEX["xml/jpeg-baseline"]
        text = fixture.read().decode()
        start = text.index('<DicomAttribute tag="00080018"')
        end = text.index("</DicomAttribute>", start) + len("</DicomAttribute>")
        result = converted(convert(XML, [({"Content-Type": XML}, (text[:start] + text[end:]).encode()),
                                         *INDEX.bulk_parts(fixture)])[0])
        assert result.dataset.SOPInstanceUID.startswith("2.25.") and result.warning_reason == 0xB000


# --------------------------------------------------------------------------------------------
# image/jpeg
# --------------------------------------------------------------------------------------------


class TestJpeg:
    def test_baseline_is_encapsulated_unchanged(self) -> None:
        data = media("media/jpeg-baseline")
        ds = converted(convert_one(data, "image/jpeg")).dataset
        assert ds["PixelData"].is_undefined_length and ds["PixelData"].VR == "OB"
        assert encapsulated_bitstream(ds) == data + (b"\x00" if len(data) % 2 else b"")
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration) == (48, 64, 3, 0)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
        assert ds.Modality == "XC" and ds.ImageType == ["ORIGINAL", "PRIMARY"]

    def test_twelve_bit_is_secondary_capture(self) -> None:
        result = converted(convert_one(media("media/jpeg-extended-12bit"), "image/jpeg"))
        ds = result.dataset
        assert ds.SOPClassUID == SC and ds.Modality == "OT" and ds.ConversionType == "WSD"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
        assert ds.PhotometricInterpretation == "MONOCHROME2" and "PlanarConfiguration" not in ds
        assert any("VL Photographic Image needs 8-bit samples" in n for n in result.notes)

    def test_lossless(self) -> None:
        ds = converted(convert_one(media("media/jpeg-lossless"), "image/jpeg")).dataset
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.57"  # predictor 6
        assert ds.LossyImageCompression == "00" and "LossyImageCompressionMethod" not in ds

    def test_unsubsampled_colour_is_still_ybr_full_422(self) -> None:
        ds = converted(convert_one(jpeg_bytes(noise(), subsampling=0), "image/jpeg")).dataset
        assert ds.SOPClassUID == VL and ds.PhotometricInterpretation == "YBR_FULL_422"

    def test_rgb_coded_lossy_jpeg_is_secondary_capture_rgb(self) -> None:
        result = converted(convert_one(jpeg_bytes(noise(), keep_rgb=True), "image/jpeg"))
        assert result.dataset.SOPClassUID == SC and result.dataset.PhotometricInterpretation == "RGB"

    def test_grey_lossy_jpeg(self) -> None:
        ds = converted(convert_one(jpeg_bytes(noise("L")), "image/jpeg")).dataset
        assert ds.SOPClassUID == VL and ds.PhotometricInterpretation == "MONOCHROME2"

    def test_declared_transfer_syntax_that_fits_is_kept(self) -> None:
        ds = converted(convert_one(media("media/jpeg-baseline"),
                                   "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.51")).dataset
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"

    def test_declared_transfer_syntax_contradicting_the_sof_is_rejected(self) -> None:
        result = rejected(convert_one(media("media/jpeg-baseline"),
                                      "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70"), 0xC122)
        assert "contradicts the bitstream" in result.message and "WIC-IM-021" in result.message

    def test_progressive_is_rejected(self) -> None:
        result = rejected(convert_one(jpeg_bytes(noise(), progressive=True), "image/jpeg"), 0xC122)
        assert "progressive" in result.message

    def test_contradicting_pixel_description_is_corrected_and_recorded(self) -> None:
        result = converted(convert_one(
            media("media/jpeg-baseline"), "image/jpeg", uids(VL),
            {"00280010": {"vr": "US", "Value": [99]}, "00280004": {"vr": "CS", "Value": ["RGB"]},
               "00280011": {"vr": "US", "Value": [64]}}))
        ds = result.dataset
        assert ds.Rows == 48 and ds.PhotometricInterpretation == "YBR_FULL_422" and ds.Columns == 64
        assert result.warning_reason == 0xB000
        previous = modified_items(ds)
        assert set(previous) == {"CORRECT"}
        assert previous["CORRECT"].Rows == 99 and previous["CORRECT"].PhotometricInterpretation == "RGB"
        assert "Columns" not in previous["CORRECT"]
        assert any("Rows '99' -> '48'" in n for n in result.notes)

    def test_matching_pixel_description_is_not_a_coercion(self) -> None:
        result = converted(convert_one(
            media("media/jpeg-baseline"), "image/jpeg", uids(VL),
            {"00280010": {"vr": "US", "Value": [48]}, "00280004": {"vr": "CS", "Value": ["YBR_FULL_422"]}}))
        assert result.warning_reason is None and "OriginalAttributesSequence" not in result.dataset

    def test_vl_photographic_named_for_twelve_bits_is_rejected(self) -> None:
        result = rejected(convert_one(media("media/jpeg-extended-12bit"), "image/jpeg",
                                      {"00080016": ui(VL)}), 0xA900)
        assert "8-bit" in result.message

    @pytest.mark.peer
    @pytest.mark.parametrize("options", [{"subsampling": 0}, {"keep_rgb": True}, {}])
    def test_generated_jpegs_pass_dciodvfy(self, options: dict[str, Any], dciodvfy_path: str,
                                           tmp_path: Path) -> None:
        ds = converted(convert_one(jpeg_bytes(noise(), **options), "image/jpeg")).dataset
        assert_iod_valid(dciodvfy_path, ds, tmp_path)


# --------------------------------------------------------------------------------------------
# image/png and image/gif
# --------------------------------------------------------------------------------------------


class TestRaster:
    def test_rgb_png_native_pixels(self) -> None:
        data = media("media/png-rgb")
        ds = converted(convert_one(data, "image/png")).dataset
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE and not ds["PixelData"].is_undefined_length
        assert ds.PixelData == Image.open(io.BytesIO(data)).convert("RGB").tobytes()
        assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration) == (3, "RGB", 0)
        assert ds.LossyImageCompression == "00"

    def test_alpha_is_discarded(self) -> None:
        data = media("media/png-rgba")
        result = converted(convert_one(data, "image/png", uids()))
        assert result.dataset.SamplesPerPixel == 3
        assert result.dataset.PixelData == Image.open(io.BytesIO(data)).convert("RGB").tobytes()
        assert result.warning_reason == 0xB006  # nothing coerced: only the alpha channel was dropped
        assert any("alpha" in n for n in result.notes)

    def test_palette_becomes_rgb(self) -> None:
        data = media("media/png-palette")
        result = converted(convert_one(data, "image/png"))
        assert result.dataset.PhotometricInterpretation == "RGB"
        assert result.dataset.PixelData == Image.open(io.BytesIO(data)).convert("RGB").tobytes()
        assert any("palette was converted to RGB" in n for n in result.notes)

    def test_sixteen_bit_grey_keeps_sixteen_bits(self) -> None:
        image = Image.frombytes("I;16", (5, 3), bytes(range(30)))
        ds = converted(convert_one(png_bytes(image), "image/png")).dataset
        assert ds.SOPClassUID == SC and ds["PixelData"].VR == "OW"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PhotometricInterpretation) == \
            (16, 16, 15, "MONOCHROME2")
        assert ds.PixelData == bytes(range(30))

    def test_sixteen_bit_colour_is_rejected(self) -> None:
        result = rejected(convert_one(raw_png(4, 2, 16, 2), "image/png"), 0xC122)
        assert "16-bit colour" in result.message

    def test_animated_gif_becomes_multi_frame(self) -> None:
        data = media("media/gif-animated")
        ds = converted(convert_one(data, "image/gif")).dataset
        assert ds.SOPClassUID == MF_TRUE_COLOR and ds.NumberOfFrames == 3
        assert ds.FrameIncrementPointer == 0x00181063 and float(ds.FrameTime) == 100.0
        assert ds.BurnedInAnnotation == "YES" and ds.ConversionType == "WSD"
        assert len(ds.PixelData) == 3 * 32 * 24 * 3

    def test_animation_with_different_delays_uses_frame_time_vector(self) -> None:
        frames = [Image.new("RGB", (8, 6), (i * 60, 0, 0)) for i in range(3)]
        buffer = io.BytesIO()
        frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=[100, 200, 100])
        ds = converted(convert_one(buffer.getvalue(), "image/png")).dataset
        assert ds.FrameIncrementPointer == 0x00181065
        assert [float(v) for v in ds.FrameTimeVector] == [0.0, 100.0, 200.0]

    @pytest.mark.parametrize(("setting", "media_type", "key"), [("accept_png", "image/png", "media/png-rgb"),
                                                                ("accept_gif", "image/gif", "media/gif-animated")])
    def test_switched_off(self, setting: str, media_type: str, key: str) -> None:
        policy = ConversionPolicy.from_mapping({setting: False})
        result = rejected(convert_one(media(key), media_type, policy=policy), 0xC122)
        assert "not accepted" in result.message

    @pytest.mark.peer
    def test_generated_images_pass_dciodvfy(self, dciodvfy_path: str, tmp_path: Path) -> None:
        palette = Image.new("P", (8, 6))
        palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        frames = [Image.new("RGB", (8, 6), (i * 60, 0, 0)) for i in range(3)]
        apng = io.BytesIO()
        frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:], duration=[100, 200, 100])
        for data in (png_bytes(Image.frombytes("I;16", (5, 3), bytes(range(30)))),
                     png_bytes(Image.new("1", (33, 17), 1)), png_bytes(palette, transparency=0),
                     apng.getvalue()):
            assert_iod_valid(dciodvfy_path, converted(convert_one(data, "image/png")).dataset, tmp_path)


# --------------------------------------------------------------------------------------------
# image/jp2
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow without OpenJPEG")
class TestJpeg2000:
    @pytest.mark.parametrize(("irreversible", "ts", "photometric"), [
        (False, "1.2.840.10008.1.2.4.90", "YBR_RCT"), (True, "1.2.840.10008.1.2.4.91", "YBR_ICT")])
    def test_codestream_is_encapsulated(self, irreversible: bool, ts: str, photometric: str) -> None:
        buffer = io.BytesIO()
        noise().save(buffer, "JPEG2000", irreversible=irreversible, mct=1)
        ds = converted(convert_one(buffer.getvalue(), "image/jp2")).dataset
        assert ds.file_meta.TransferSyntaxUID == ts and ds.PhotometricInterpretation == photometric
        assert encapsulated_bitstream(ds).startswith(b"\xff\x4f\xff\x51")
        assert ds.LossyImageCompression == ("01" if irreversible else "00")

    @pytest.mark.peer
    def test_passes_dciodvfy(self, dciodvfy_path: str, tmp_path: Path) -> None:
        buffer = io.BytesIO()
        noise().save(buffer, "JPEG2000", irreversible=True, mct=1)
        assert_iod_valid(dciodvfy_path, converted(convert_one(buffer.getvalue(), "image/jp2")).dataset,
                         tmp_path)


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------


def mpeg2_bytes() -> bytes:
    av = pytest.importorskip("av")
    buffer = io.BytesIO()
    container = av.open(buffer, mode="w", format="mpeg")
    stream = container.add_stream("mpeg2video", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(5):
        frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (i * 40, 20, 20)))
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return buffer.getvalue()


class TestVideo:
    def test_mp4_is_encapsulated_unchanged(self) -> None:
        data = media("media/mp4-h264")
        result = converted(convert_one(data, "video/mp4"))
        ds = result.dataset
        assert ds["PixelData"].is_undefined_length
        assert encapsulated_bitstream(ds) == data + (b"\x00" if len(data) % 2 else b"")
        assert ds.NumberOfFrames == 10 and float(ds.FrameTime) == 100.0 and ds.CineRate == 10
        assert ds.FrameIncrementPointer == 0x00181063
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation) == \
            (64, 64, 3, "YBR_PARTIAL_420")
        assert (ds.BitsAllocated, ds.BitsStored, ds.PlanarConfiguration) == (8, 8, 0)
        assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_14496_10"
        assert ds.AnatomicRegionSequence[0].CodeValue == "87100004"
        assert any("Topography unknown" in n for n in result.notes)

    def test_anatomic_region_given_is_kept(self) -> None:
        region = {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["85562004"]},
                                         "00080102": {"vr": "SH", "Value": ["SCT"]},
                                         "00080104": {"vr": "LO", "Value": ["Hand"]}}]}
        ds = converted(convert_one(media("media/mp4-h264"), "video/mp4", {"00082218": region})).dataset
        assert ds.AnatomicRegionSequence[0].CodeValue == "85562004"

    def test_quicktime(self) -> None:
        data = media("media/mp4-h264")
        assert converted(convert_one(data, "video/quicktime")).dataset.SOPClassUID == VIDEO
        policy = ConversionPolicy(accept_quicktime=False)
        rejected(convert_one(data, "video/quicktime", policy=policy), 0xC122)

    def test_3gpp_is_off_by_default(self) -> None:
        data = bytearray(media("media/mp4-h264"))
        data[8:12] = b"3gp5"
        rejected(convert_one(bytes(data), conversion.VIDEO_3GPP), 0xC122)
        result = converted(convert_one(bytes(data), conversion.VIDEO_3GPP, policy=ConversionPolicy(accept_3gpp=True)))
        assert result.dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102"

    def test_image_sop_class_for_a_video_is_rejected(self) -> None:
        rejected(convert_one(media("media/mp4-h264"), "video/mp4", {"00080016": ui(VL)}), 0xA900)

    def test_mpeg2(self) -> None:
        data = mpeg2_bytes()
        ds = converted(convert_one(data, "video/mpeg2")).dataset
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.100"
        assert ds.NumberOfFrames == 5 and float(ds.FrameTime) == 40.0
        assert encapsulated_bitstream(ds)[:len(data)] == data

    def test_hevc(self) -> None:
        av = pytest.importorskip("av")
        buffer = io.BytesIO()
        container = av.open(buffer, mode="w", format="mp4")
        try:
            stream = container.add_stream("libx265", rate=10)
        except Exception as exc:  # the encoder is optional in FFmpeg builds
            pytest.skip(f"no HEVC encoder: {exc}")
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"x265-params": "log-level=none"}
        for i in range(4):
            for packet in stream.encode(av.VideoFrame.from_image(Image.new("RGB", (64, 64), (i * 50, 9, 9)))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        container.close()
        ds = converted(convert_one(buffer.getvalue(), "video/mp4")).dataset
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.107"
        assert ds.NumberOfFrames == 4 and ds.LossyImageCompressionMethod == "ISO_23008_2"

    @pytest.mark.peer
    def test_mpeg2_passes_dciodvfy(self, dciodvfy_path: str, tmp_path: Path) -> None:
        assert_iod_valid(dciodvfy_path, converted(convert_one(mpeg2_bytes(), "video/mpeg")).dataset, tmp_path)


# --------------------------------------------------------------------------------------------
# application/pdf and application/octet-stream
# --------------------------------------------------------------------------------------------


class TestPdf:
    def test_encapsulated_pdf(self) -> None:
        data = media("media/pdf")
        result = converted(convert_one(data, "application/pdf", tag="00420011"))
        ds = result.dataset
        assert ds.SOPClassUID == PDF and ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert ds.EncapsulatedDocument == data + (b"\x00" if len(data) % 2 else b"")
        assert ds.EncapsulatedDocumentLength == len(data)
        assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
        assert ds.DocumentTitle == "" and len(ds.ConceptNameCodeSequence) == 0
        assert ds.BurnedInAnnotation == "YES" and ds.Modality == "DOC" and ds.ConversionType == "WSD"
        assert ds.AcquisitionDateTime == "" and ds.ContentDate and ds.ContentTime
        assert "PixelData" not in ds

    def test_wrong_mime_type_is_corrected(self) -> None:
        result = converted(convert_one(media("media/pdf"), "application/pdf", uids(PDF),
                                       {"00420012": {"vr": "LO", "Value": ["text/plain"]}}, tag="00420011"))
        assert result.dataset.MIMETypeOfEncapsulatedDocument == "application/pdf"
        assert modified_items(result.dataset)["CORRECT"].MIMETypeOfEncapsulatedDocument == "text/plain"

    def test_pdf_with_an_image_sop_class_is_rejected(self) -> None:
        result = rejected(convert_one(media("media/pdf"), "application/pdf", {"00080016": ui(VL)},
                                      tag="00420011"), 0xA900)
        assert "PDF" in result.message

    def test_image_with_the_pdf_sop_class_is_rejected(self) -> None:
        rejected(convert_one(media("media/jpeg-baseline"), "image/jpeg", {"00080016": ui(PDF)}), 0xA900)

    def test_not_a_pdf(self) -> None:
        rejected(convert_one(media("media/png-rgb"), "application/pdf", tag="00420011"), 0xC000)


def pixel_description(rows: int, columns: int, samples: int, bits: int, photometric: str) -> dict[str, Any]:
    out = {"00280010": {"vr": "US", "Value": [rows]}, "00280011": {"vr": "US", "Value": [columns]},
           "00280002": {"vr": "US", "Value": [samples]}, "00280100": {"vr": "US", "Value": [bits]},
           "00280101": {"vr": "US", "Value": [bits]}, "00280102": {"vr": "US", "Value": [bits - 1]},
           "00280103": {"vr": "US", "Value": [0]}, "00280004": {"vr": "CS", "Value": [photometric]}}
    if samples > 1:
        out["00280006"] = {"vr": "US", "Value": [0]}
    return out


class TestOctetStream:
    def test_native_pixels(self) -> None:
        pixels = bytes(range(72))
        ds = converted(convert_one(pixels, "application/octet-stream",
                                   pixel_description(4, 6, 3, 8, "RGB"))).dataset
        assert ds.SOPClassUID == VL and ds.PixelData == pixels and ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert ds.LossyImageCompression == ""  # Type 2, not known for native pixels

    def test_missing_description_is_rejected(self) -> None:
        result = rejected(convert_one(bytes(72), "application/octet-stream"), 0xA900)
        assert "Rows" in result.message

    def test_length_mismatch_is_rejected(self) -> None:
        result = rejected(convert_one(bytes(70), "application/octet-stream",
                                      pixel_description(4, 6, 3, 8, "RGB")), 0xA900)
        assert "implies 72" in result.message

    @pytest.mark.peer
    def test_passes_dciodvfy(self, dciodvfy_path: str, tmp_path: Path) -> None:
        for samples, bits, photometric in ((3, 8, "RGB"), (1, 16, "MONOCHROME2")):
            size = 4 * 6 * samples * bits // 8
            ds = converted(convert_one(bytes(size), "application/octet-stream",
                                       pixel_description(4, 6, samples, bits, photometric))).dataset
            assert_iod_valid(dciodvfy_path, ds, tmp_path)


# --------------------------------------------------------------------------------------------
# SOP Class, identifiers, coercion record, character set
# --------------------------------------------------------------------------------------------


class TestSopClass:
    def test_given_sop_class_is_used(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", {"00080016": ui(SC)}))
        assert result.dataset.SOPClassUID == SC and result.dataset.ConversionType == "WSD"
        assert not any("SOP Class UID not given" in n for n in result.notes)

    def test_unsupported_sop_class(self) -> None:
        result = rejected(convert_one(media("media/jpeg-baseline"), "image/jpeg",
                                      {"00080016": ui("1.2.840.10008.5.1.4.1.1.2")}), 0x0122)
        assert "1.2.840.10008.5.1.4.1.1.2" in result.message

    def test_secondary_capture_policy(self) -> None:
        policy = ConversionPolicy(image_sop_class=ImageSopClass.SECONDARY_CAPTURE)
        ds = converted(convert_one(media("media/png-rgb"), "image/png", policy=policy)).dataset
        assert ds.SOPClassUID == SC and ds.Modality == "OT"

    def test_non_xc_modality_chooses_secondary_capture(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg",
                                       {"00080060": {"vr": "CS", "Value": ["OT"]}}))
        assert result.dataset.SOPClassUID == SC and result.dataset.Modality == "OT"

    def test_wrong_modality_for_vl_photographic_is_corrected(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(VL),
                                       {"00080060": {"vr": "CS", "Value": ["CT"]}}))
        assert result.dataset.Modality == "XC"
        assert modified_items(result.dataset)["CORRECT"].Modality == "CT"


class TestIdentifiers:
    def test_complete_identifiers_are_kept(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(VL)))
        ds = result.dataset
        assert (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == \
            ("2.25.1001", "2.25.1002", "2.25.1003")
        assert result.warning_reason is None and result.original_attributes == ()

    def test_no_supplementing(self) -> None:
        policy = ConversionPolicy(supplement_uids=False)
        result = rejected(convert_one(media("media/jpeg-baseline"), "image/jpeg", policy=policy), 0xA900)
        assert "does not supplement UIDs" in result.message
        converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(), policy=policy))

    def test_target_study_fills_a_missing_study_uid(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", study_uid="2.25.777"))
        assert result.dataset.StudyInstanceUID == "2.25.777"
        assert "StudyInstanceUID" in modified_items(result.dataset)["COERCE"]
        assert any("from the target URL" in n for n in result.notes)

    def test_a_different_study_uid_is_kept(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(),
                                       study_uid="2.25.777"))
        assert result.dataset.StudyInstanceUID == "2.25.1002"


class TestCoercionRecord:
    def test_item_shape(self) -> None:
        policy = ConversionPolicy(modifying_system="TEST-IM")
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", policy=policy))
        (item,) = result.original_attributes
        assert item.ModifyingSystem == "TEST-IM" and item.ReasonForTheAttributeModification == "COERCE"
        assert len(item.AttributeModificationDateTime) == 14 and item.SourceOfPreviousValues == ""
        (previous,) = item.ModifiedAttributesSequence
        assert sorted(e.keyword for e in previous) == ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"]
        assert all(e.value in (None, "") for e in previous)
        assert result.dataset.OriginalAttributesSequence[-1] is item

    def test_received_original_attributes_are_kept(self) -> None:
        earlier = {"vr": "SQ", "Value": [{"04000563": {"vr": "LO", "Value": ["UPSTREAM"]},
                                          "04000565": {"vr": "CS", "Value": ["COERCE"]}}]}
        ds = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", {"04000561": earlier})).dataset
        assert [i.ModifyingSystem for i in ds.OriginalAttributesSequence] == ["UPSTREAM", "WIC-CONFORMANCE-IM"]

    def test_query_only_attributes_are_discarded(self) -> None:
        result = converted(convert_one(
            media("media/jpeg-baseline"), "image/jpeg", uids(VL),
            {"00080054": {"vr": "AE", "Value": ["ARCHIVE"]}, "00081190": {"vr": "UR", "Value": ["http://x/y"]},
               "00201208": {"vr": "IS", "Value": [3]}, "00080056": {"vr": "CS", "Value": ["ONLINE"]}}))
        ds = result.dataset
        for keyword in ("RetrieveAETitle", "RetrieveURL", "NumberOfStudyRelatedInstances", "InstanceAvailability"):
            assert keyword not in ds
        assert result.warning_reason == 0xB006
        previous = modified_items(ds)["COERCE"]
        assert previous.RetrieveAETitle == "ARCHIVE" and previous.NumberOfStudyRelatedInstances == 3
        assert any("query-only" in n for n in result.notes)

    def test_file_meta_in_metadata_is_ignored(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(VL),
                                       {"00020010": ui("1.2.840.10008.1.2")}))
        assert result.dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert result.warning_reason is None and any("File Meta" in n for n in result.notes)


class TestCharacterSet:
    NAME = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Zoë", "Ideographic": "山田^太郎"}]}}

    def test_non_ascii_text_declares_utf8(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(), self.NAME))
        ds = result.dataset
        assert ds.SpecificCharacterSet == "ISO_IR 192" and result.warning_reason is None
        again = dcmread(io.BytesIO(encode(ds)))
        assert str(again.PatientName) == "Müller^Zoë=山田^太郎"

    def test_a_declared_set_that_cannot_encode_is_corrected(self) -> None:
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(), self.NAME,
                                       {"00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}))
        assert result.dataset.SpecificCharacterSet == "ISO_IR 192" and result.warning_reason == 0xB000
        assert modified_items(result.dataset)["CORRECT"].SpecificCharacterSet == "ISO_IR 100"

    def test_a_declared_set_that_encodes_is_kept(self) -> None:
        name = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Zoë"}]}}
        result = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", uids(), name,
                                       {"00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}))
        assert result.dataset.SpecificCharacterSet == "ISO_IR 100" and result.warning_reason is None

    @pytest.mark.peer
    def test_passes_dciodvfy(self, dciodvfy_path: str, tmp_path: Path) -> None:
        ds = converted(convert_one(media("media/jpeg-baseline"), "image/jpeg", self.NAME)).dataset
        assert_iod_valid(dciodvfy_path, ds, tmp_path)


# --------------------------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------------------------


class TestRejections:
    def test_uri_naming_no_part(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_opening(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("a BulkDataURI must never be dereferenced")

        fixture = INDEX["json/broken-bulk-file-uri"]
        request = stow(JSON, fixture_request(fixture))
        with monkeypatch.context() as patch:
            for target in ("builtins.open", "io.open", "urllib.request.urlopen"):
                patch.setattr(target, no_opening)
            results = convert_submission(request, policy=ConversionPolicy(), target_study=None)
        result = rejected(results[0], 0xC40A)
        assert "file:///etc/passwd" in result.message and "does not name a part" in result.message

    def test_uri_naming_two_parts(self) -> None:
        meta = json.dumps([metadata()]).encode()
        data = media("media/jpeg-baseline")
        results = convert(JSON, [({"Content-Type": JSON}, meta), bulk("image/jpeg", data), bulk("image/jpeg", data)])
        assert "names 2 parts" in rejected(results[0], 0xC40A).message

    def test_media_type_contradicting_the_bitstream(self) -> None:
        result = rejected(convert_one(media("media/jpeg-baseline"), "image/png"), 0xC000)
        assert "labelled image/png but its content is image/jpeg" in result.message

    def test_unknown_media_type(self) -> None:
        rejected(convert_one(b"GIF-but-not-really", "image/webp"), 0xC122)

    def test_nothing_to_store(self) -> None:
        meta = json.dumps([{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}}]).encode()
        result = rejected(convert(JSON, [({"Content-Type": JSON}, meta)])[0], 0xA900)
        assert "nothing to store" in result.message

    def test_unexpected_error_fails_only_that_instance(self, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
        def broken(data: bytes, declared: str | None) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(conversion, "_jpeg", broken)
        meta = json.dumps([metadata("bulk/1", uids(VL)), metadata("bulk/2", tag="00420011")]).encode()
        results = convert(JSON, [({"Content-Type": JSON}, meta), bulk("image/jpeg", media("media/jpeg-baseline")),
                                 bulk("application/pdf", media("media/pdf"), "bulk/2")])
        failure = rejected(results[0], 0x0110)
        assert failure.message == "processing failure: RuntimeError: boom"
        assert (failure.sop_class_uid, failure.sop_instance_uid) == (VL, "2.25.1001")
        assert converted(results[1]).dataset.SOPClassUID == PDF
        assert "conversion of one instance failed" in caplog.text

    def test_instances_of_one_document_are_judged_separately(self) -> None:
        meta = json.dumps([metadata("bulk/1"), metadata("bulk/missing"), metadata("bulk/2", tag="00420011")])
        results = convert(JSON, [({"Content-Type": JSON}, meta.encode()),
                                 bulk("image/jpeg", media("media/jpeg-baseline")),
                                 bulk("application/pdf", media("media/pdf"), "bulk/2")])
        assert [type(r) for r in results] == [Converted, Rejected, Converted]
        assert isinstance(results[1], Rejected) and results[1].failure_reason == 0xC40A


class TestPart10:
    @staticmethod
    def submit(data: bytes) -> Converted | Rejected:
        return convert(DICOM, [({"Content-Type": DICOM}, data)])[0]

    def test_implicit_vr_is_rejected(self) -> None:
        result = rejected(self.submit(media("part10/broken-implicit-vr")), 0xC122)
        assert "Implicit VR Little Endian" in result.message and result.sop_instance_uid

    def test_undecodable_is_rejected(self) -> None:
        assert "DICM" in rejected(self.submit(media("part10/broken-no-preamble")), 0xC000).message

    def test_missing_sop_instance_uid_is_rejected(self) -> None:
        ds = dcmread(io.BytesIO(media("part10/vl-photographic")))
        del ds.SOPInstanceUID
        ds.file_meta.MediaStorageSOPInstanceUID = UID("2.25.5")
        assert "SOPInstanceUID" in rejected(self.submit(encode(ds)), 0xA900).message

    def test_file_meta_follows_the_data_set(self) -> None:
        result = converted(self.submit(media("part10/broken-meta-mismatch")))
        ds = result.dataset
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert result.warning_reason is None and "rewritten" in result.notes[0]
        assert result.source is None  # the received bytes are not the instance to store

    def test_received_bytes_are_the_instance_to_store(self) -> None:
        data = media("part10/vl-photographic")
        request = stow(DICOM, [({"Content-Type": DICOM}, data)], None)
        result = converted(convert_submission(request, policy=ConversionPolicy(), target_study=None)[0])
        assert result.source is request.instances[0] and result.source.body.read() == data
        assert result.dataset is request.instances[0].dataset

    def test_large_values_are_not_read(self) -> None:
        ds = dcmread(io.BytesIO(media("part10/vl-photographic")))
        ds.PixelData = encapsulate([b"\xff\xd8" + bytes(3 * DEFER_SIZE) + b"\xff\xd9"], has_bot=False)
        ds["PixelData"].is_undefined_length = True
        result = converted(self.submit(encode(ds)))
        assert result.source is not None and is_deferred(result.dataset, 0x7FE00010)


class TestEncoding:
    @pytest.mark.parametrize(("key", "media_type", "sop_class", "ts"), MINIMAL_CASES)
    def test_round_trip(self, key: str, media_type: str, sop_class: str, ts: str) -> None:
        tag = "00420011" if media_type == "application/pdf" else "7FE00010"
        ds = converted(convert_one(media(key), media_type, tag=tag)).dataset
        data = encode(ds)
        assert data[128:132] == b"DICM"
        again = dcmread(io.BytesIO(data))
        assert again.file_meta.TransferSyntaxUID == ts and again.SOPClassUID == sop_class
        assert again.file_meta.MediaStorageSOPInstanceUID == again.SOPInstanceUID
