"""Typed builders for the WIC sample instances, producing PS3.10-ready pydicom Datasets.

Each builder is a :class:`pydicom.Dataset` subclass (the highdicom pattern) that
checks its arguments eagerly: a wrong type raises :class:`TypeError`, a wrong
value raises :class:`ValueError`, before any attribute is set.  Every built
instance carries ``file_meta`` (with the Transfer Syntax the content needs) and
a preamble, so :meth:`CompositeInstance.to_bytes` writes a complete PS3.10 file.

The patient, study, series and equipment context is passed as keyword-only
arguments shared by every builder (see :class:`InstanceContext`).  UIDs default
to ``2.25.<uuid int>``; :func:`uid_from_name` gives reproducible ones.

The JPEG and MP4 streams are read with the probes of :mod:`wic_conformance.model.media`
to fill the Image Pixel Description Macro and to choose the Transfer Syntax of the
built instance (as PS3.18 §10.5.2 asks of an Image Manager).

References
----------
PS3.3 A.32.4 (VL Photographic Image IOD), A.32.7 (Video Photographic Image IOD),
A.45.1 (Encapsulated PDF IOD), A.8.1 (Secondary Capture Image IOD), A.35.4 (Key
Object Selection Document IOD); PS3.5 §8.2 and Annex A.4 (encapsulation);
PS3.10 §7.1 (File Meta Information); PS3.18 §10.5.2 and Table 10.5.2-1.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import re
import uuid
from collections.abc import Sequence
from typing import Any, NotRequired, Required, TypedDict, Unpack

from pydicom import Dataset, config, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID
from pydicom.valuerep import PersonName, validate_value

from wic_conformance.model import media
from wic_conformance.model.enums import (
    BurnedInAnnotationValues,
    ContinuityOfContentValues,
    ConversionTypeValues,
    LateralityValues,
    LossyImageCompressionMethodValues,
    LossyImageCompressionValues,
    ModalityValues,
    PatientExaminationCharacteristicsValues,
    PatientSexValues,
    PhotometricInterpretationValues,
    PixelDataCharacteristicsValues,
    RecognizableVisualFeaturesValues,
    RelationshipTypeValues,
    SOPClassUIDValues,
    TransferSyntaxUIDValues,
    ValueTypeValues,
)

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "CompositeInstance",
    "EncapsulatedPDF",
    "InstanceContext",
    "KeyObjectSelectionDocument",
    "SecondaryCaptureImage",
    "VLPhotographicImage",
    "VideoPhotographicImage",
    "encode_part10",
    "new_uid",
    "uid_from_name",
]

_UID_NAMESPACE = uuid.UUID("6f3c1f43-52a6-5b2a-9d55-0c8e8f7a1c21")

#: (0002,0012) written into every File Meta built here.
IMPLEMENTATION_CLASS_UID = "2.25." + str(uuid.uuid5(_UID_NAMESPACE, "wic_conformance implementation").int)
#: (0002,0013) written into every File Meta built here (SH, at most 16 characters).
IMPLEMENTATION_VERSION_NAME = "WIC_CONF_0_1"

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def new_uid() -> str:
    """Return a fresh UID of the form ``2.25.<uuid4 as decimal>`` (PS3.5 Annex B.2)."""
    return f"2.25.{uuid.uuid4().int}"


def uid_from_name(name: str) -> str:
    """Return the reproducible UID ``2.25.<uuid5(name) as decimal>`` for ``name``.

    Parameters
    ----------
    name : str
        Any stable label, e.g. ``"fixtures/vl-photographic/sop"``.

    References
    ----------
    PS3.5 Annex B.2 (UUID-derived UIDs).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


# --------------------------------------------------------------------------------------------
# Bitstreams (read with the probes of model/media.py)
# --------------------------------------------------------------------------------------------

#: The MP4 video sample entries the Video Photographic builder accepts.
_MP4_VIDEO_CODECS = frozenset({"avc1", "avc3", "hvc1", "hev1"})


def _jpeg_transfer_syntax(info: media.JpegInfo) -> TransferSyntaxUIDValues:
    """Return the Transfer Syntax that holds a JPEG stream unchanged (PS3.18 §1.6.1 mapping).

    Raises
    ------
    ValueError
        For processes with no (non-retired) DICOM Transfer Syntax, e.g. progressive or arithmetic.
    """
    uid = media.jpeg_transfer_syntax(info)
    if uid is None:
        raise ValueError(f"JPEG process SOF{info.sof - 0xC0} (precision {info.precision}) has no "
                         "non-retired DICOM transfer syntax")
    return TransferSyntaxUIDValues(uid)


def _probe_video(data: bytes) -> media.Mp4Info:
    """Read the first video track of an MP4 file that starts with an ``ftyp`` box.

    Raises
    ------
    ValueError
        ``data`` is not such an MP4 file, or has no H.264/HEVC video track with samples.

    References
    ----------
    ISO/IEC 14496-12 (boxes), 14496-15 (avcC, hvcC); PS3.3 C.7.6.5 and C.7.6.6 (Cine, Multi-frame).
    """
    if data[4:8] != b"ftyp":
        raise ValueError("not an MP4 file: no leading ftyp box")
    info = media.probe_mp4(data)
    if info.codec not in _MP4_VIDEO_CODECS:
        raise ValueError(f"unsupported MP4 video codec {info.codec!r}")
    if info.profile_idc is None:
        raise ValueError(f"{info.codec} sample entry has no {'avcC' if info.is_avc else 'hvcC'} box")
    if not info.frames or not info.frame_rate:
        raise ValueError("MP4 video track has no samples")
    return info


def _video_transfer_syntax(info: media.Mp4Info) -> TransferSyntaxUIDValues:
    """Return the MPEG-4 AVC/H.264 or HEVC Transfer Syntax matching profile and level.

    Baseline (66), Main (77) and High (100) H.264 streams decode with a High Profile decoder.

    Raises
    ------
    ValueError
        When no DICOM Transfer Syntax covers the stream's profile and level.

    References
    ----------
    PS3.5 §8.2.7 and §8.2.8; PS3.18 Table 10.5.2-1.
    """
    uid = media.mp4_transfer_syntax(info, profile_and_level_only=True)
    if uid is None:
        if info.is_avc:
            raise ValueError(f"H.264 profile_idc {info.profile_idc} level_idc {info.level_idc} "
                             "has no DICOM transfer syntax")
        raise ValueError(f"{info.codec} profile {info.profile_idc} level {info.level_idc} "
                         "has no DICOM transfer syntax")
    return TransferSyntaxUIDValues(uid)


# --------------------------------------------------------------------------------------------
# Eager argument checks
# --------------------------------------------------------------------------------------------


def _check_type(name: str, value: object, types: type | tuple[type, ...]) -> None:
    if not isinstance(value, types):
        expected = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")


def _check_value(name: str, vr: str, value: object) -> None:
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _uid(name: str, value: object) -> str:
    _check_type(name, value, str)
    assert isinstance(value, str)
    if len(value) > 64 or not _UID_RE.match(value):
        raise ValueError(f"{name} {value!r} is not a valid UID (PS3.5 §9.1)")
    return value


def _text(name: str, value: object, vr: str) -> str:
    _check_type(name, value, str)
    assert isinstance(value, str)
    _check_value(name, vr, value)
    return value


def _enum(name: str, value: object, enum: type[Any]) -> str:
    _check_type(name, value, str)
    try:
        return str(enum(value).value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ValueError(f"{name} {value!r} is not one of: {allowed}") from None


def _person_name(name: str, value: object) -> str:
    _check_type(name, value, (str, PersonName))
    text = str(value)
    for group in text.split("="):
        if len(group) > 64:
            raise ValueError(f"{name}: a component group is longer than 64 characters")
        if group.count("^") > 4:
            raise ValueError(f"{name}: a component group has more than 5 components")
    if "\\" in text:
        raise ValueError(f"{name} must not contain a backslash")
    return text


def _date(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime.date or a DA string, not datetime")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return _text(name, value, "DA")


def _time(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.time):
        return value.strftime("%H%M%S")
    return _text(name, value, "TM")


def _int(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    return bytes(value)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_part10(dataset: Dataset, *, transfer_syntax_uid: str | None = None) -> bytes:
    """Write ``dataset`` as a PS3.10 file: 128-byte preamble, ``DICM``, File Meta, data set.

    Parameters
    ----------
    dataset : pydicom.Dataset
        A data set with ``file_meta`` (as every builder here makes).
    transfer_syntax_uid : str, optional
        Re-encode with this Transfer Syntax instead of the one in ``file_meta`` (for native
        encodings only; used to make deliberately non-conformant fixtures).

    Returns
    -------
    bytes

    References
    ----------
    PS3.10 §7.1 (DICOM File Meta Information).
    """
    _check_type("dataset", dataset, Dataset)
    meta = getattr(dataset, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise ValueError("dataset has no file_meta with a TransferSyntaxUID")
    ds = dataset
    if transfer_syntax_uid is not None:
        ds = Dataset()
        for elem in dataset:
            ds.add(elem)
        ds.file_meta = copy.deepcopy(meta)
        ds.file_meta.TransferSyntaxUID = UID(_uid("transfer_syntax_uid", transfer_syntax_uid))
    if not getattr(ds, "preamble", None):
        ds.preamble = b"\x00" * 128
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


class InstanceContext(TypedDict, total=False):
    """Patient, study, series, equipment and instance context shared by every builder.

    ``patient_name``, ``patient_id`` and ``study_instance_uid`` are required;
    the rest default to empty Type 2 values, fresh UIDs, ``1`` for numbers and the
    current date and time.
    """

    patient_name: Required[str]
    patient_id: Required[str]
    study_instance_uid: Required[str]
    patient_birth_date: NotRequired[dt.date | str | None]
    patient_sex: NotRequired[PatientSexValues | str | None]
    issuer_of_patient_id: NotRequired[str | None]
    accession_number: NotRequired[str]
    study_id: NotRequired[str]
    study_date: NotRequired[dt.date | str | None]
    study_time: NotRequired[dt.time | str | None]
    referring_physician_name: NotRequired[str]
    study_description: NotRequired[str | None]
    series_instance_uid: NotRequired[str | None]
    series_number: NotRequired[int]
    series_description: NotRequired[str | None]
    sop_instance_uid: NotRequired[str | None]
    instance_number: NotRequired[int]
    manufacturer: NotRequired[str]
    content_datetime: NotRequired[dt.datetime | None]


class CompositeInstance(Dataset):
    """Base of the builders: Patient, General Study, series, General Equipment and SOP Common.

    Parameters
    ----------
    sop_class_uid : SOPClassUIDValues
        The SOP Class of the instance.
    modality : ModalityValues
        Modality (0008,0060) of its series.
    transfer_syntax_uid : TransferSyntaxUIDValues
        (0002,0010) of its File Meta.
    **context
        See :class:`InstanceContext`.

    References
    ----------
    PS3.3 C.7.1.1 (Patient), C.7.2.1 (General Study), C.7.3.1 (General Series),
    C.7.5.1 (General Equipment), C.12.1 (SOP Common); PS3.10 §7.1.
    """

    def __init__(
        self,
        *,
        sop_class_uid: SOPClassUIDValues,
        modality: ModalityValues,
        transfer_syntax_uid: TransferSyntaxUIDValues,
        **context: Unpack[InstanceContext],
    ) -> None:
        super().__init__()
        unknown = set(context) - set(InstanceContext.__annotations__)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        for key in ("patient_name", "patient_id", "study_instance_uid"):
            if key not in context:
                raise TypeError(f"missing required keyword argument {key!r}")
        patient_name = _person_name("patient_name", context["patient_name"])
        patient_id = _text("patient_id", context["patient_id"], "LO")
        study_uid = _uid("study_instance_uid", context["study_instance_uid"])
        birth_date = _date("patient_birth_date", context.get("patient_birth_date"))
        sex_value = context.get("patient_sex")
        sex = "" if sex_value is None else _enum("patient_sex", sex_value, PatientSexValues)
        issuer = context.get("issuer_of_patient_id")
        if issuer is not None:
            _text("issuer_of_patient_id", issuer, "LO")
        accession = _text("accession_number", context.get("accession_number", ""), "SH")
        study_id = _text("study_id", context.get("study_id", ""), "SH")
        when = context.get("content_datetime")
        if when is None:
            when = dt.datetime.now().replace(microsecond=0)
        _check_type("content_datetime", when, dt.datetime)
        study_date = _date("study_date", context.get("study_date", when.date()))
        study_time = _time("study_time", context.get("study_time", when.time()))
        referring = _person_name("referring_physician_name", context.get("referring_physician_name", ""))
        study_description = context.get("study_description")
        if study_description is not None:
            _text("study_description", study_description, "LO")
        series_uid_value = context.get("series_instance_uid")
        series_uid = new_uid() if series_uid_value is None else _uid("series_instance_uid", series_uid_value)
        series_number = _int("series_number", context.get("series_number", 1))
        series_description = context.get("series_description")
        if series_description is not None:
            _text("series_description", series_description, "LO")
        sop_uid_value = context.get("sop_instance_uid")
        sop_uid = new_uid() if sop_uid_value is None else _uid("sop_instance_uid", sop_uid_value)
        instance_number = _int("instance_number", context.get("instance_number", 1))
        manufacturer = _text("manufacturer", context.get("manufacturer", ""), "LO")

        texts = [patient_name, patient_id, referring, accession, study_id, manufacturer,
                 issuer or "", study_description or "", series_description or ""]
        if any(not t.isascii() for t in texts):
            self.SpecificCharacterSet = "ISO_IR 192"
        self.SOPClassUID = sop_class_uid.value
        self.SOPInstanceUID = sop_uid
        self.InstanceCreationDate = when.strftime("%Y%m%d")
        self.InstanceCreationTime = when.strftime("%H%M%S")
        self.StudyDate = study_date
        self.StudyTime = study_time
        self.AccessionNumber = accession
        self.Modality = modality.value
        self.Manufacturer = manufacturer
        self.ReferringPhysicianName = referring
        if study_description is not None:
            self.StudyDescription = study_description
        if series_description is not None:
            self.SeriesDescription = series_description
        self.PatientName = patient_name
        self.PatientID = patient_id
        if issuer is not None:
            self.IssuerOfPatientID = issuer
        self.PatientBirthDate = birth_date
        self.PatientSex = sex
        self.StudyInstanceUID = study_uid
        self.SeriesInstanceUID = series_uid
        self.StudyID = study_id
        self.SeriesNumber = series_number
        self.InstanceNumber = instance_number

        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = UID(sop_class_uid.value)
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        meta.TransferSyntaxUID = UID(transfer_syntax_uid.value)
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        self.file_meta = meta
        self.preamble = b"\x00" * 128
        self._when = when

    def _set_content_datetime(self) -> None:
        self.ContentDate = self._when.strftime("%Y%m%d")
        self.ContentTime = self._when.strftime("%H%M%S")

    def to_bytes(self) -> bytes:
        """Return the instance as a PS3.10 file (see :func:`encode_part10`)."""
        return encode_part10(self)

    def reference(self) -> Dataset:
        """Return an SOP Instance Reference Macro item pointing at this instance (PS3.3 Table 10-11)."""
        item = Dataset()
        item.ReferencedSOPClassUID = self.SOPClassUID
        item.ReferencedSOPInstanceUID = self.SOPInstanceUID
        return item


class _PixelInstance(CompositeInstance):
    """Image Pixel, General Image, General Acquisition and VL Image content shared by the VL builders."""

    def _set_image_common(
        self,
        *,
        rows: int,
        columns: int,
        samples_per_pixel: int,
        photometric: PhotometricInterpretationValues,
        bits: int,
        lossy_method: LossyImageCompressionMethodValues | None,
        lossy_ratio: float | None,
        burned_in_annotation: str,
        patient_orientation: Sequence[str],
        laterality: str | None,
        anatomic_region: Dataset | None,
    ) -> None:
        self._set_content_datetime()
        self.ImageType = [PixelDataCharacteristicsValues.ORIGINAL.value,
                          PatientExaminationCharacteristicsValues.PRIMARY.value]
        self.AcquisitionDateTime = self._when.strftime("%Y%m%d%H%M%S")
        self.Laterality = laterality or ""
        self.PatientOrientation = list(patient_orientation) if patient_orientation else ""
        self.BurnedInAnnotation = burned_in_annotation
        self.AcquisitionContextSequence = DicomSequence()
        if anatomic_region is not None:
            self.AnatomicRegionSequence = DicomSequence([anatomic_region])
        self.SamplesPerPixel = samples_per_pixel
        self.PhotometricInterpretation = photometric.value
        if samples_per_pixel > 1:
            self.PlanarConfiguration = 0
        self.Rows = rows
        self.Columns = columns
        self.BitsAllocated = 8 if bits <= 8 else 16
        self.BitsStored = bits
        self.HighBit = bits - 1
        self.PixelRepresentation = 0
        if lossy_method is None:
            self.LossyImageCompression = LossyImageCompressionValues.NONE.value
        else:
            self.LossyImageCompression = LossyImageCompressionValues.LOSSY.value
            if lossy_ratio is not None:
                self.LossyImageCompressionRatio = f"{lossy_ratio:.4g}"
            self.LossyImageCompressionMethod = lossy_method.value


def _code_item(name: str, value: object) -> Dataset | None:
    """Check a ``(code value, coding scheme designator, code meaning)`` triple and build the item."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 3:
        raise TypeError(f"{name} must be a (code value, coding scheme designator, code meaning) triple")
    code, scheme, meaning = value
    return _code(_text(f"{name} code value", code, "SH"), _text(f"{name} coding scheme", scheme, "SH"),
                 _text(f"{name} code meaning", meaning, "LO"))


def _orientation(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError("patient_orientation must be a sequence of two CS values")
    items = list(value)
    if items and len(items) != 2:
        raise ValueError("patient_orientation must hold two values (row and column direction)")
    for item in items:
        _text("patient_orientation", item, "CS")
    return items


class VLPhotographicImage(_PixelInstance):
    """VL Photographic Image (Modality XC) with a JPEG stream encapsulated unchanged.

    The Image Pixel Description Macro and the Transfer Syntax come from the JPEG
    frame header (SOF0 → 1.2.840.10008.1.2.4.50, SOF1 → .51, SOF3 → .70 or .57).

    Parameters
    ----------
    jpeg : bytes
        An 8-bit JPEG stream (the VL Image Module allows only 8 bits stored).
    laterality : LateralityValues or str, optional
        Laterality (0020,0060) of a paired body part; empty (Type 2C) when ``None``.
    patient_orientation : sequence of str, optional
        Patient Orientation (0020,0020); empty (Type 2C) by default.
    burned_in_annotation : BurnedInAnnotationValues or str
        Burned In Annotation (0028,0301).
    recognizable_visual_features : RecognizableVisualFeaturesValues or str, optional
        Recognizable Visual Features (0028,0302).
    **context
        See :class:`InstanceContext`.

    Raises
    ------
    TypeError, ValueError
        On any bad argument, before anything is set.

    References
    ----------
    PS3.3 A.32.4 (VL Photographic Image IOD), C.8.12.1 (VL Image Module), C.7.6.1
    (General Image Module); PS3.5 §8.2.1 (JPEG Image Compression), A.4 (encapsulation).
    """

    def __init__(
        self,
        *,
        jpeg: bytes,
        laterality: LateralityValues | str | None = None,
        patient_orientation: Sequence[str] = (),
        burned_in_annotation: BurnedInAnnotationValues | str = BurnedInAnnotationValues.NO,
        recognizable_visual_features: RecognizableVisualFeaturesValues | str | None = None,
        anatomic_region: tuple[str, str, str] | None = None,
        **context: Unpack[InstanceContext],
    ) -> None:
        stream = _bytes("jpeg", jpeg)
        info = media.probe_jpeg(stream)
        if info.jpeg_ls:
            raise ValueError("no JPEG frame header (SOFn) found")  # SOF55 (JPEG-LS) is not one
        if info.precision != 8:
            raise ValueError(f"the VL Image Module needs 8-bit samples; this JPEG has {info.precision}")
        if info.components not in (1, 3):
            raise ValueError(f"JPEG has {info.components} components; 1 or 3 expected")
        tsuid = _jpeg_transfer_syntax(info)
        lat = None if laterality is None else _enum("laterality", laterality, LateralityValues)
        orientation = _orientation(patient_orientation)
        burned = _enum("burned_in_annotation", burned_in_annotation, BurnedInAnnotationValues)
        region = _code_item("anatomic_region", anatomic_region)
        visual = (None if recognizable_visual_features is None
                  else _enum("recognizable_visual_features", recognizable_visual_features,
                             RecognizableVisualFeaturesValues))
        super().__init__(sop_class_uid=SOPClassUIDValues.VL_PHOTOGRAPHIC_IMAGE_STORAGE,
                         modality=ModalityValues.XC, transfer_syntax_uid=tsuid, **context)
        ratio = None if info.lossless else info.rows * info.columns * info.components / len(stream)
        self._set_image_common(
            rows=info.rows, columns=info.columns, samples_per_pixel=info.components,
            photometric=PhotometricInterpretationValues(media.jpeg_photometric_interpretation(info, by_sampling=True)),
            bits=8,
            lossy_method=None if info.lossless else LossyImageCompressionMethodValues.ISO_10918_1,
            lossy_ratio=ratio, burned_in_annotation=burned, patient_orientation=orientation, laterality=lat,
            anatomic_region=region,
        )
        if visual is not None:
            self.RecognizableVisualFeatures = visual
        self.PixelData = encapsulate([stream])
        self["PixelData"].VR = "OB"


class VideoPhotographicImage(_PixelInstance):
    """Video Photographic Image (Modality XC) with an MP4 H.264/HEVC file encapsulated unchanged.

    Number of Frames, Frame Time, Rows, Columns and the Transfer Syntax come from
    the MP4 file (:func:`~wic_conformance.model.media.probe_mp4`): High Profile up to Level 4.1 gives
    1.2.840.10008.1.2.4.102, Level 4.2 gives .104.  The Basic Offset Table is empty
    (PS3.5 §8.2.8), and the file is kept as received (PS3.18 Table 10.5.2-1 "Unchanged").

    Parameters
    ----------
    mp4 : bytes
        An MP4 file with one H.264 (or HEVC) video track.
    laterality, patient_orientation, burned_in_annotation
        As for :class:`VLPhotographicImage`.
    **context
        See :class:`InstanceContext`.

    References
    ----------
    PS3.3 A.32.7 (Video Photographic Image IOD), C.7.6.5 (Cine Module), C.7.6.6
    (Multi-frame Module), C.8.12.1 (VL Image Module); PS3.5 §8.2.8.
    """

    def __init__(
        self,
        *,
        mp4: bytes,
        laterality: LateralityValues | str | None = None,
        patient_orientation: Sequence[str] = (),
        burned_in_annotation: BurnedInAnnotationValues | str = BurnedInAnnotationValues.NO,
        anatomic_region: tuple[str, str, str] | None = None,
        **context: Unpack[InstanceContext],
    ) -> None:
        stream = _bytes("mp4", mp4)
        region = _code_item("anatomic_region", anatomic_region)
        if region is None:
            raise ValueError("anatomic_region is required: the VL Image Module makes Anatomic Region "
                             "Sequence Type 1C for Video Photographic Image")
        info = _probe_video(stream)
        tsuid = _video_transfer_syntax(info)
        lat = None if laterality is None else _enum("laterality", laterality, LateralityValues)
        orientation = _orientation(patient_orientation)
        burned = _enum("burned_in_annotation", burned_in_annotation, BurnedInAnnotationValues)
        super().__init__(sop_class_uid=SOPClassUIDValues.VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE,
                         modality=ModalityValues.XC, transfer_syntax_uid=tsuid, **context)
        method = (LossyImageCompressionMethodValues.ISO_14496_10 if info.is_avc
                  else LossyImageCompressionMethodValues.ISO_23008_2)
        rows, columns, frames, rate = info.height, info.width, info.frames, info.frame_rate
        assert rows is not None and columns is not None and frames and rate  # checked by _probe_video
        frame_time = round(1000.0 / rate, 6)
        ratio = rows * columns * 3 * frames / len(stream)
        self._set_image_common(
            rows=rows, columns=columns, samples_per_pixel=3,
            photometric=PhotometricInterpretationValues.YBR_PARTIAL_420, bits=8,
            lossy_method=method, lossy_ratio=ratio, burned_in_annotation=burned,
            patient_orientation=orientation, laterality=lat, anatomic_region=region,
        )
        self.FrameTime = f"{frame_time:.6g}"
        self.CineRate = round(1000.0 / frame_time)
        self.NumberOfFrames = frames
        self.FrameIncrementPointer = 0x00181063  # Frame Time
        self.PixelData = encapsulate([stream], has_bot=False)
        self["PixelData"].VR = "OB"


class EncapsulatedPDF(CompositeInstance):
    """Encapsulated PDF (Modality DOC) holding a PDF document.

    Parameters
    ----------
    pdf : bytes
        The PDF file (must start with ``%PDF-``).
    document_title : str
        Document Title (0042,0010).
    conversion_type : ConversionTypeValues or str
        Conversion Type (0008,0064) of the SC Equipment Module.
    burned_in_annotation : BurnedInAnnotationValues or str
        Burned In Annotation (0028,0301).
    **context
        See :class:`InstanceContext`.

    References
    ----------
    PS3.3 A.45.1 (Encapsulated PDF IOD), C.24.1 (Encapsulated Document Series),
    C.24.2 (Encapsulated Document Module), C.8.6.1 (SC Equipment Module).
    """

    def __init__(
        self,
        *,
        pdf: bytes,
        document_title: str,
        conversion_type: ConversionTypeValues | str = ConversionTypeValues.WSD,
        burned_in_annotation: BurnedInAnnotationValues | str = BurnedInAnnotationValues.NO,
        **context: Unpack[InstanceContext],
    ) -> None:
        document = _bytes("pdf", pdf)
        if not document.startswith(b"%PDF-"):
            raise ValueError("pdf does not start with '%PDF-'")
        title = _text("document_title", document_title, "ST")
        conversion = _enum("conversion_type", conversion_type, ConversionTypeValues)
        burned = _enum("burned_in_annotation", burned_in_annotation, BurnedInAnnotationValues)
        super().__init__(sop_class_uid=SOPClassUIDValues.ENCAPSULATED_PDF_STORAGE,
                         modality=ModalityValues.DOC,
                         transfer_syntax_uid=TransferSyntaxUIDValues.EXPLICIT_VR_LITTLE_ENDIAN, **context)
        self.ConversionType = conversion
        self._set_content_datetime()
        self.AcquisitionDateTime = self._when.strftime("%Y%m%d%H%M%S")
        self.BurnedInAnnotation = burned
        self.DocumentTitle = title
        self.ConceptNameCodeSequence = DicomSequence()
        self.MIMETypeOfEncapsulatedDocument = "application/pdf"
        self.EncapsulatedDocument = document + (b"\x00" if len(document) % 2 else b"")
        self.EncapsulatedDocumentLength = len(document)


class SecondaryCaptureImage(CompositeInstance):
    """Secondary Capture Image (Modality OT) with native 8-bit pixels, Explicit VR Little Endian.

    This is what an Image Manager may store for an ``image/png`` or ``image/gif``
    part (PS3.18 Table 10.5.2-1 "Transform"); PS3.3 A.8.1.1 notes that VL
    Photographic Image is the more specific choice for camera pictures.

    Parameters
    ----------
    pixel_data : bytes
        Rows x Columns x Samples bytes, colour-by-pixel (Planar Configuration 0).
    rows, columns : int
        Image size.
    samples_per_pixel : int
        1 (MONOCHROME2) or 3 (RGB).
    conversion_type : ConversionTypeValues or str
        Conversion Type (0008,0064).
    **context
        See :class:`InstanceContext`.

    References
    ----------
    PS3.3 A.8.1 (Secondary Capture Image IOD), C.8.6.1 (SC Equipment), C.8.6.2 (SC Image),
    C.7.6.3 (Image Pixel Module).
    """

    def __init__(
        self,
        *,
        pixel_data: bytes,
        rows: int,
        columns: int,
        samples_per_pixel: int = 3,
        conversion_type: ConversionTypeValues | str = ConversionTypeValues.WSD,
        laterality: LateralityValues | str | None = None,
        **context: Unpack[InstanceContext],
    ) -> None:
        pixels = _bytes("pixel_data", pixel_data)
        nrows = _int("rows", rows, minimum=1)
        ncols = _int("columns", columns, minimum=1)
        spp = _int("samples_per_pixel", samples_per_pixel, minimum=1)
        if spp not in (1, 3):
            raise ValueError("samples_per_pixel must be 1 or 3")
        if len(pixels) != nrows * ncols * spp:
            raise ValueError(f"pixel_data has {len(pixels)} bytes; rows*columns*samples is "
                             f"{nrows * ncols * spp}")
        conversion = _enum("conversion_type", conversion_type, ConversionTypeValues)
        lat = None if laterality is None else _enum("laterality", laterality, LateralityValues)
        super().__init__(sop_class_uid=SOPClassUIDValues.SECONDARY_CAPTURE_IMAGE_STORAGE,
                         modality=ModalityValues.OT,
                         transfer_syntax_uid=TransferSyntaxUIDValues.EXPLICIT_VR_LITTLE_ENDIAN, **context)
        self.ConversionType = conversion
        self._set_content_datetime()
        self.Laterality = lat or ""
        self.PatientOrientation = ""
        self.SamplesPerPixel = spp
        self.PhotometricInterpretation = (PhotometricInterpretationValues.RGB if spp == 3
                                          else PhotometricInterpretationValues.MONOCHROME2).value
        if spp == 3:
            self.PlanarConfiguration = 0
        self.Rows = nrows
        self.Columns = ncols
        self.BitsAllocated = 8
        self.BitsStored = 8
        self.HighBit = 7
        self.PixelRepresentation = 0
        self.LossyImageCompression = LossyImageCompressionValues.NONE.value
        self.PixelData = pixels + (b"\x00" if len(pixels) % 2 else b"")
        self["PixelData"].VR = "OB"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


class KeyObjectSelectionDocument(CompositeInstance):
    """Key Object Selection Document (Modality KO, "Of Interest", TID 2010) referencing instances.

    Parameters
    ----------
    referenced_instances : sequence of pydicom.Dataset
        Instances to flag (each needs SOP Class/Instance, Study and Series Instance UIDs).
    description : str, optional
        Key Object Description (113012, DCM) TEXT content item.
    **context
        See :class:`InstanceContext`.

    References
    ----------
    PS3.3 A.35.4 (Key Object Selection Document IOD), C.17.6.1 (Key Object Document
    Series), C.17.6.2 (Key Object Document Module), C.17.3 (SR Document Content),
    Table C.17-3 (Hierarchical SOP Instance Reference Macro); PS3.16 TID 2010.
    """

    def __init__(
        self,
        *,
        referenced_instances: Sequence[Dataset],
        description: str | None = None,
        **context: Unpack[InstanceContext],
    ) -> None:
        if isinstance(referenced_instances, Dataset) or not isinstance(referenced_instances, Sequence):
            raise TypeError("referenced_instances must be a sequence of pydicom Datasets")
        if not referenced_instances:
            raise ValueError("referenced_instances must not be empty")
        refs: list[tuple[str, str, str, str]] = []
        for i, ref in enumerate(referenced_instances):
            _check_type(f"referenced_instances[{i}]", ref, Dataset)
            try:
                refs.append((_uid("StudyInstanceUID", ref.StudyInstanceUID),
                             _uid("SeriesInstanceUID", ref.SeriesInstanceUID),
                             _uid("SOPClassUID", ref.SOPClassUID),
                             _uid("SOPInstanceUID", ref.SOPInstanceUID)))
            except AttributeError as exc:
                raise ValueError(f"referenced_instances[{i}] lacks a UID: {exc}") from None
        if description is not None:
            _text("description", description, "UT")
        super().__init__(sop_class_uid=SOPClassUIDValues.KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
                         modality=ModalityValues.KO,
                         transfer_syntax_uid=TransferSyntaxUIDValues.EXPLICIT_VR_LITTLE_ENDIAN, **context)
        self.ReferencedPerformedProcedureStepSequence = DicomSequence()
        self._set_content_datetime()
        self.ValueType = ValueTypeValues.CONTAINER.value
        self.ConceptNameCodeSequence = DicomSequence([_code("113000", "DCM", "Of Interest")])
        self.ContinuityOfContent = ContinuityOfContentValues.SEPARATE.value
        template = Dataset()
        template.MappingResource = "DCMR"
        template.TemplateIdentifier = "2010"
        self.ContentTemplateSequence = DicomSequence([template])

        studies: dict[str, dict[str, list[Dataset]]] = {}
        content: list[Dataset] = []
        if description is not None:
            text = Dataset()
            text.RelationshipType = RelationshipTypeValues.CONTAINS.value
            text.ValueType = ValueTypeValues.TEXT.value
            text.ConceptNameCodeSequence = DicomSequence([_code("113012", "DCM", "Key Object Description")])
            text.TextValue = description
            content.append(text)
        for study_uid, series_uid, class_uid, instance_uid in refs:
            sop = Dataset()
            sop.ReferencedSOPClassUID = class_uid
            sop.ReferencedSOPInstanceUID = instance_uid
            studies.setdefault(study_uid, {}).setdefault(series_uid, []).append(sop)
            item = Dataset()
            item.RelationshipType = RelationshipTypeValues.CONTAINS.value
            image = class_uid not in (SOPClassUIDValues.ENCAPSULATED_PDF_STORAGE.value,
                                      SOPClassUIDValues.KEY_OBJECT_SELECTION_DOCUMENT_STORAGE.value)
            item.ValueType = (ValueTypeValues.IMAGE if image else ValueTypeValues.COMPOSITE).value
            ref_item = Dataset()
            ref_item.ReferencedSOPClassUID = class_uid
            ref_item.ReferencedSOPInstanceUID = instance_uid
            item.ReferencedSOPSequence = DicomSequence([ref_item])
            content.append(item)
        evidence: list[Dataset] = []
        for study_uid, series in studies.items():
            study_item = Dataset()
            series_items: list[Dataset] = []
            for series_uid, sops in series.items():
                series_item = Dataset()
                series_item.ReferencedSOPSequence = DicomSequence(sops)
                series_item.SeriesInstanceUID = series_uid
                series_items.append(series_item)
            study_item.ReferencedSeriesSequence = DicomSequence(series_items)
            study_item.StudyInstanceUID = study_uid
            evidence.append(study_item)
        self.CurrentRequestedProcedureEvidenceSequence = DicomSequence(evidence)
        self.ContentSequence = DicomSequence(content)
