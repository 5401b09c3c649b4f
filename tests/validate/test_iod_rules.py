"""Tests of the bundled IOD engine's rules (validate/iod_rules.py): each refuses bad data sets and passes good ones."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.uid import UID

from wic_conformance.dicomweb.exchange import Body
from wic_conformance.dicomweb.part10 import DEFER_SIZE, is_deferred, read_part10
from wic_conformance.findings import Severity
from wic_conformance.validate import iod, iod_rules

# Setting the invalid values these tests are about makes pydicom warn.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PART10 = Path(__file__).resolve().parents[2] / "fixtures" / "part10"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def load(name: str) -> Dataset:
    return dcmread(PART10 / f"{name}.dcm")


def tags(messages: list[iod.IodMessage]) -> list[str]:
    assert all(m.level is Severity.ERROR and m.text.startswith(m.tag) for m in messages)
    return [m.tag for m in messages]


@pytest.mark.parametrize("name", ["vl-photographic", "vl-photographic-lossless", "video-photographic",
                                  "secondary-capture", "encapsulated-pdf", "kos"])
def test_good_fixtures_pass_every_rule(name: str) -> None:
    assert iod_rules.rule_messages(load(name)) == []


class TestPersonNames:
    @pytest.mark.parametrize("name", ["A" * 64, "A" * 30 + "^" + "B" * 33, "A^B^C^D^E", "A=B=C=D", "=" + "A" * 64])
    def test_good(self, name: str) -> None:
        ds = load("vl-photographic")
        ds.PatientName = name
        assert iod_rules.person_name_messages(ds) == []

    @pytest.mark.parametrize(("name", "says"), [("A" * 65, "65 characters"), ("A" * 70 + "^B", "72 characters"),
                                                ("A" * 30 + "^" + "B" * 34, "65 characters"),
                                                ("A^B^C^D^E^F", "6 components"), ("X=A^B^C^D^E^F", "6 components")])
    def test_bad(self, name: str, says: str) -> None:
        ds = load("vl-photographic")
        ds.PatientName = name
        (message,) = iod_rules.person_name_messages(ds)
        assert message.tag == "(0010,0010)" and says in message.text

    def test_values_and_items_are_judged(self) -> None:
        ds = load("vl-photographic")
        item = Dataset()
        item.PersonName = "A" * 70
        ds.ContentSequence = [item]
        ds.OperatorsName = ["B", "C" * 65]
        assert tags(iod_rules.person_name_messages(ds)) == ["(0008,1070)", "(0040,A123)"]


class TestTextValues:
    @pytest.mark.parametrize(("keyword", "value"), [("StudyDescription", "a\x1bb"), ("ImageComments", "a\tb\r\nc"),
                                                    ("PatientName", "Doe^Jane")])
    def test_allowed_controls(self, keyword: str, value: str) -> None:
        ds = load("vl-photographic")
        setattr(ds, keyword, value)
        assert iod_rules.text_value_messages(ds) == []

    @pytest.mark.parametrize(("keyword", "value"), [("StudyDescription", "a\tb"), ("AccessionNumber", "a\nb"),
                                                    ("PatientName", "a\x01b"), ("ImageComments", "a\x00b"),
                                                    ("ImageComments", "a\x7fb")])
    def test_forbidden_controls(self, keyword: str, value: str) -> None:
        ds = load("vl-photographic")
        setattr(ds, keyword, value)
        (message,) = iod_rules.text_value_messages(ds)
        assert "control character" in message.text

    def test_non_ascii_needs_a_character_set(self) -> None:
        ds = load("vl-photographic")
        ds["PatientName"] = DataElement(0x00100010, "PN", "Müller".encode("latin-1"))
        (message,) = iod_rules.text_value_messages(ds)
        assert message.tag == "(0010,0010)" and "Specific Character Set" in message.text
        ds.SpecificCharacterSet = "BOGUS"  # names no character set
        assert len(iod_rules.text_value_messages(ds)) == 1
        ds.SpecificCharacterSet = "ISO_IR 100"
        assert iod_rules.text_value_messages(ds) == []

    def test_an_item_with_its_own_character_set(self) -> None:
        ds = load("vl-photographic")
        item = Dataset()
        item.SpecificCharacterSet = "ISO_IR 192"
        item.CodeMeaning = "Müller"
        ds.AnatomicRegionSequence = [item]
        assert iod_rules.text_value_messages(ds) == []
        del item.SpecificCharacterSet
        assert tags(iod_rules.text_value_messages(ds)) == ["(0008,0104)"]


class TestImagePixel:
    @pytest.mark.parametrize(("changes", "tag"), [
        ({"PhotometricInterpretation": "MONOCHROME2"}, "(0028,0002)"),  # with 3 samples
        ({"SamplesPerPixel": 1}, "(0028,0002)"),  # YBR_FULL_422 with 1 sample (and a Planar Configuration)
        ({"PhotometricInterpretation": "XYB"}, "(0028,0004)"),
        ({"PhotometricInterpretation": "YBR_PARTIAL_422"}, "(0028,0004)"),  # retired
        ({"Rows": 0}, "(0028,0010)"), ({"Columns": 0}, "(0028,0011)"), ({"BitsStored": 0}, "(0028,0101)"),
        ({"HighBit": 8}, "(0028,0102)"), ({"BitsStored": 12}, "(0028,0101)"), ({"HighBit": 5}, "(0028,0101)"),
        ({"PixelData": None}, "(7FE0,0010)"), ({"PixelData": b""}, "(7FE0,0010)"),
    ])
    def test_bad(self, changes: dict[str, object], tag: str) -> None:
        ds = load("vl-photographic")
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        assert tag in tags(iod_rules.image_pixel_messages(ds))

    @pytest.mark.parametrize("changes", [{}, {"HighBit": 0}, {"BitsStored": 6},
                                         {"PhotometricInterpretation": "YBR_ICT"}])
    def test_good_or_accepted_by_the_reference(self, changes: dict[str, object]) -> None:
        ds = load("secondary-capture")  # native RGB
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        assert iod_rules.image_pixel_messages(ds) == []

    def test_planar_configuration_with_one_sample(self) -> None:
        ds = load("vl-photographic-lossless")  # MONOCHROME2
        assert iod_rules.image_pixel_messages(ds) == []
        ds.PlanarConfiguration = 0
        assert tags(iod_rules.image_pixel_messages(ds)) == ["(0028,0006)"]

    def test_pixel_data_provider_url_replaces_pixel_data(self) -> None:
        ds = load("vl-photographic")
        del ds.PixelData
        ds.PixelDataProviderURL = "http://127.0.0.1/pixels"
        assert iod_rules.image_pixel_messages(ds) == []

    @pytest.mark.parametrize(("length", "errors"), [(9216, 0), (9214, 1), (9218, 1)])
    def test_native_pixel_data_length(self, length: int, errors: int) -> None:
        ds = load("secondary-capture")  # 64 x 48 RGB, 8 bits
        ds.PixelData = bytes(length)
        assert len(iod_rules.image_pixel_messages(ds)) == errors

    def test_native_length_rules_of_photometric_interpretation_and_bits(self) -> None:
        ds = load("secondary-capture")
        ds.PhotometricInterpretation = "YBR_FULL_422"  # two samples' worth per pixel (PS3.3 C.7.6.3.1.2)
        ds.PixelData = bytes(48 * 64 * 2)
        assert iod_rules.image_pixel_messages(ds) == []
        ds.PixelData = bytes(48 * 64 * 3)
        assert tags(iod_rules.image_pixel_messages(ds)) == ["(7FE0,0010)"]
        ds = load("secondary-capture")
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = (
            1, "MONOCHROME2", 1, 1, 0)
        del ds.PlanarConfiguration
        ds.PixelData = bytes(48 * 64 // 8)  # packed bits
        assert iod_rules.image_pixel_messages(ds) == []

    def test_native_word_pixels_are_ow(self) -> None:
        ds = load("secondary-capture")
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = (
            1, "MONOCHROME2", 16, 12, 11)
        del ds.PlanarConfiguration
        ds.PixelData = bytes(48 * 64 * 2)
        ds["PixelData"].VR = "OW"
        assert iod_rules.image_pixel_messages(ds) == []
        ds["PixelData"].VR = "OB"
        (message,) = iod_rules.image_pixel_messages(ds)
        assert "OW is required" in message.text

    def test_partial_420_only_encapsulated(self) -> None:
        ds = load("video-photographic")  # MPEG-4 AVC, YBR_PARTIAL_420
        assert iod_rules.image_pixel_messages(ds) == []
        ds = load("secondary-capture")
        ds.PhotometricInterpretation = "YBR_PARTIAL_420"
        assert "(0028,0004)" in tags(iod_rules.image_pixel_messages(ds))

    def test_deferred_pixel_data_are_not_read(self) -> None:
        ds = load("secondary-capture")
        ds.Rows = 512
        ds.PixelData = bytes(512 * 64 * 3 + 2)  # more than DEFER_SIZE, two bytes too many
        assert len(ds.PixelData) > DEFER_SIZE
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        instance = read_part10(Body.of(buffer.getvalue()))
        assert instance.dataset is not None and is_deferred(instance.dataset, 0x7FE00010)
        (message,) = iod_rules.image_pixel_messages(instance.dataset)
        assert "98306 bytes" in message.text and "98304" in message.text
        assert is_deferred(instance.dataset, 0x7FE00010)

    def test_other_iods_are_not_judged(self) -> None:
        ds = load("encapsulated-pdf")
        ds.Rows = 0
        assert iod_rules.image_pixel_messages(ds) == []


class TestVlPhotometric:
    @pytest.mark.parametrize(("syntax", "photometric", "errors"), [
        (JPEG_BASELINE, "YBR_FULL_422", 0), (JPEG_BASELINE, "MONOCHROME2", 0), (JPEG_BASELINE, "RGB", 1),
        ("1.2.840.10008.1.2.4.57", "RGB", 0), ("1.2.840.10008.1.2.4.57", "YBR_FULL_422", 1),
        (EXPLICIT_LE, "RGB", 0), (EXPLICIT_LE, "YBR_ICT", 1), ("1.2.840.10008.1.2.4.91", "YBR_ICT", 0),
        ("1.2.840.10008.1.2.4.90", "YBR_ICT", 1), ("1.2.840.10008.1.2.4.100", "MONOCHROME2", 1),
        ("1.2.840.10008.1.2.4.102", "RGB", 0),  # MPEG-4 AVC: not judged, as dciodvfy does not
    ])
    def test_by_transfer_syntax(self, syntax: str, photometric: str, errors: int) -> None:
        ds = load("vl-photographic")
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds.PhotometricInterpretation = photometric
        messages = iod_rules.vl_photometric_messages(ds)
        assert len(messages) == errors and all(m.tag == "(0028,0004)" for m in messages)

    def test_other_iods_are_not_judged(self) -> None:
        ds = load("secondary-capture")
        ds.file_meta.TransferSyntaxUID = UID(JPEG_BASELINE)
        assert iod_rules.vl_photometric_messages(ds) == []


class TestFrameCount:
    def test_single_frame_iod(self) -> None:
        ds = load("vl-photographic")
        ds.NumberOfFrames = 1
        assert iod_rules.frame_count_messages(ds) == []
        ds.NumberOfFrames = 2
        assert tags(iod_rules.frame_count_messages(ds)) == ["(0028,0008)"]

    @pytest.mark.parametrize(("frames", "errors"), [(10, 0), (2, 0), (0, 1)])
    def test_multi_frame_iod(self, frames: int, errors: int) -> None:
        ds = load("video-photographic")
        ds.NumberOfFrames = frames
        assert len(iod_rules.frame_count_messages(ds)) == errors

    def test_basic_offset_table_has_one_offset_per_frame(self) -> None:
        ds = load("vl-photographic")  # one offset in its Basic Offset Table
        assert ds.PixelData[4:8] == b"\x04\x00\x00\x00"
        assert iod_rules.frame_count_messages(ds) == []
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4.1"  # a multi-frame IOD
        ds.NumberOfFrames = 3
        (message,) = iod_rules.frame_count_messages(ds)
        assert message.tag == "(7FE0,0010)" and "1 offset(s) for 3 frame(s)" in message.text


class TestPatientOrientation:
    @pytest.mark.parametrize("value", [["L", "F"], ["LP", "F"], ["A", "HR"], "", ["", ""]])
    def test_good(self, value: object) -> None:
        ds = load("vl-photographic")
        ds.PatientOrientation = value
        assert iod_rules.patient_orientation_messages(ds) == []

    @pytest.mark.parametrize(("value", "says"), [(["A", "X"], "made of"), (["l", "f"], "made of"),
                                                 (["LRL", "F"], "opposite"), (["LP", "FH"], "opposite")])
    def test_bad(self, value: list[str], says: str) -> None:
        ds = load("vl-photographic")
        ds.PatientOrientation = value
        messages = iod_rules.patient_orientation_messages(ds)
        assert messages and all(m.tag == "(0020,0020)" and says in m.text for m in messages)

    def test_quadruped(self) -> None:
        ds = load("vl-photographic")
        ds.AnatomicalOrientationType = "QUADRUPED"
        ds.PatientOrientation = ["RT", "CR"]
        assert iod_rules.patient_orientation_messages(ds) == []
        ds.PatientOrientation = ["L", "F"]
        assert tags(iod_rules.patient_orientation_messages(ds)) == ["(0020,0020)"]

    def test_required_in_image_iods_only(self) -> None:
        ds = load("secondary-capture")
        del ds.PatientOrientation
        assert tags(iod_rules.patient_orientation_messages(ds)) == ["(0020,0020)"]
        assert iod_rules.patient_orientation_messages(load("encapsulated-pdf")) == []


class TestLaterality:
    @staticmethod
    def region(value: str, scheme: str = "SCT") -> Dataset:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, "x"
        return item

    def test_a_paired_region_needs_it(self) -> None:
        ds = load("vl-photographic")  # Anatomic Region: Hand
        assert iod_rules.laterality_messages(ds) == []
        del ds.Laterality
        assert tags(iod_rules.laterality_messages(ds)) == ["(0020,0060)"]
        ds.ImageLaterality = "R"
        assert iod_rules.laterality_messages(ds) == []

    def test_an_image_naming_no_body_part_needs_it(self) -> None:
        ds = load("secondary-capture")
        del ds.Laterality
        assert tags(iod_rules.laterality_messages(ds)) == ["(0020,0060)"]
        ds.BodyPartExamined = "CHEST"
        assert iod_rules.laterality_messages(ds) == []
        ds.BodyPartExamined = "KNEE"
        assert tags(iod_rules.laterality_messages(ds)) == ["(0020,0060)"]

    @pytest.mark.parametrize(("code", "errors"), [("818981001", 0), ("85562004", 1), ("999999", 0)])
    def test_regions_not_known_to_be_paired_do_not(self, code: str, errors: int) -> None:
        ds = load("vl-photographic")
        del ds.Laterality
        ds.AnatomicRegionSequence = [self.region(code)]  # Abdomen, Hand, unknown
        assert len(iod_rules.laterality_messages(ds)) == errors

    def test_other_iods_are_not_judged(self) -> None:
        assert iod_rules.laterality_messages(load("encapsulated-pdf")) == []


class TestScModality:
    @pytest.mark.parametrize(("sop_class", "value", "errors"), [
        ("1.2.840.10008.5.1.4.1.1.7", "", 1), ("1.2.840.10008.5.1.4.1.1.7.4", "", 1),
        ("1.2.840.10008.5.1.4.1.1.7", "OT", 0), ("1.2.840.10008.5.1.4.1.1.7", None, 0),
        ("1.2.840.10008.5.1.4.1.1.77.1.4", "", 0),  # not a Secondary Capture: its Modality is the tables' matter
    ])
    def test_present_means_with_a_value(self, sop_class: str, value: str | None, errors: int) -> None:
        ds = load("secondary-capture")
        ds.SOPClassUID = sop_class
        if value is None:
            del ds.Modality
        else:
            ds.Modality = value
        found = iod_rules.sc_modality_messages(ds)
        assert len(found) == errors and all(m.tag == "(0008,0060)" for m in found)


def test_every_rule_is_run() -> None:
    ds = load("vl-photographic")
    ds.PatientName = "A" * 65
    ds.StudyDescription = "a\x01b"
    ds.Rows = 0
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    ds.NumberOfFrames = 2
    del ds.PatientOrientation, ds.Laterality
    assert tags(iod_rules.rule_messages(ds)) == ["(0010,0010)", "(0008,1030)", "(0028,0010)", "(7FE0,0010)",
                                                 "(0028,0004)", "(0028,0008)", "(0020,0020)", "(0020,0060)"]
