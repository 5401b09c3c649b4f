"""Enumerated values and defined terms used by the WIC sample-instance builders and the checks.

Each enum is named ``<Attribute>Values`` after the attribute whose values it
lists; members are UPPER_CASE and the enums are :class:`enum.StrEnum` (``str``
subclasses whose ``str()`` is the value), so a member can be assigned to a
pydicom attribute directly and serialises as its value.
Only the values the toolkit uses are listed; the standard may define more.

References
----------
PS3.3 C.7.3.1 (General Series: Modality, Laterality), C.7.6.1 (General Image:
Image Type, Lossy Image Compression), C.8.6.1 (SC Equipment: Conversion Type),
C.7.6.3 (Image Pixel: Photometric Interpretation), C.17 (SR Document), C.17.6
(Key Object Document); PS3.4 B.5 (Storage SOP Classes); PS3.5 Annex A (Transfer Syntaxes).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BurnedInAnnotationValues",
    "ContinuityOfContentValues",
    "ConversionTypeValues",
    "IOD_MODALITY",
    "LateralityValues",
    "LossyImageCompressionMethodValues",
    "LossyImageCompressionValues",
    "ModalityValues",
    "PatientExaminationCharacteristicsValues",
    "PatientSexValues",
    "PhotometricInterpretationValues",
    "PixelDataCharacteristicsValues",
    "RecognizableVisualFeaturesValues",
    "RelationshipTypeValues",
    "SOPClassUIDValues",
    "TransferSyntaxUIDValues",
    "ValueTypeValues",
]


class ModalityValues(StrEnum):
    """Modality (0008,0060) defined terms used by WIC content (PS3.3 C.7.3.1.1.1)."""

    XC = "XC"  # External-camera Photography: VL Photographic and Video Photographic Image
    DOC = "DOC"  # Document: Encapsulated PDF
    OT = "OT"  # Other: common for Secondary Capture
    KO = "KO"  # Key Object Selection
    PR = "PR"  # Presentation State


class ConversionTypeValues(StrEnum):
    """Conversion Type (0008,0064) defined terms (PS3.3 C.8.6.1)."""

    DV = "DV"  # Digitized Video
    DI = "DI"  # Digital Interface
    DF = "DF"  # Digitized Film
    WSD = "WSD"  # Workstation
    SD = "SD"  # Scanned Document
    SI = "SI"  # Scanned Image
    DRW = "DRW"  # Drawing
    SYN = "SYN"  # Synthetic Image


class LossyImageCompressionValues(StrEnum):
    """Lossy Image Compression (0028,2110) enumerated values (PS3.3 C.7.6.1.1.5)."""

    NONE = "00"  # has not been subjected to lossy compression
    LOSSY = "01"  # has been subjected to lossy compression


class LossyImageCompressionMethodValues(StrEnum):
    """Lossy Image Compression Method (0028,2114) defined terms (PS3.3 C.7.6.1.1.5.1)."""

    ISO_10918_1 = "ISO_10918_1"  # JPEG lossy
    ISO_14495_1 = "ISO_14495_1"  # JPEG-LS near-lossless
    ISO_15444_1 = "ISO_15444_1"  # JPEG 2000
    ISO_13818_2 = "ISO_13818_2"  # MPEG-2
    ISO_14496_10 = "ISO_14496_10"  # MPEG-4 AVC/H.264
    ISO_23008_2 = "ISO_23008_2"  # HEVC/H.265


class PhotometricInterpretationValues(StrEnum):
    """Photometric Interpretation (0028,0004) values used by the builders (PS3.3 C.7.6.3.1.2)."""

    MONOCHROME2 = "MONOCHROME2"
    RGB = "RGB"
    YBR_FULL = "YBR_FULL"
    YBR_FULL_422 = "YBR_FULL_422"
    YBR_PARTIAL_420 = "YBR_PARTIAL_420"


class PixelDataCharacteristicsValues(StrEnum):
    """Value 1 of Image Type (0008,0008) (PS3.3 C.7.6.1.1.2)."""

    ORIGINAL = "ORIGINAL"
    DERIVED = "DERIVED"


class PatientExaminationCharacteristicsValues(StrEnum):
    """Value 2 of Image Type (0008,0008) (PS3.3 C.7.6.1.1.2)."""

    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"


class LateralityValues(StrEnum):
    """Laterality (0020,0060) enumerated values (PS3.3 C.7.3.1)."""

    R = "R"  # right
    L = "L"  # left


class PatientSexValues(StrEnum):
    """Patient's Sex (0010,0040) enumerated values (PS3.3 C.7.1.1)."""

    M = "M"
    F = "F"
    O = "O"  # noqa: E741 - the standard's value


class BurnedInAnnotationValues(StrEnum):
    """Burned In Annotation (0028,0301) enumerated values (PS3.3 C.7.6.1)."""

    YES = "YES"
    NO = "NO"


class RecognizableVisualFeaturesValues(StrEnum):
    """Recognizable Visual Features (0028,0302) enumerated values (PS3.3 C.7.6.1)."""

    YES = "YES"
    NO = "NO"


class ValueTypeValues(StrEnum):
    """Value Type (0040,A040) values used by the KOS builder (PS3.3 C.17.3.2.1)."""

    CONTAINER = "CONTAINER"
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    COMPOSITE = "COMPOSITE"


class ContinuityOfContentValues(StrEnum):
    """Continuity Of Content (0040,A050) enumerated values (PS3.3 C.17.3)."""

    SEPARATE = "SEPARATE"
    CONTINUOUS = "CONTINUOUS"


class RelationshipTypeValues(StrEnum):
    """Relationship Type (0040,A010) values used by the KOS builder (PS3.3 C.17.3.2.4)."""

    CONTAINS = "CONTAINS"
    HAS_OBS_CONTEXT = "HAS OBS CONTEXT"
    HAS_CONCEPT_MOD = "HAS CONCEPT MOD"


class SOPClassUIDValues(StrEnum):
    """Storage SOP Class UIDs of the WIC content types (PS3.4 B.5)."""

    SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
    VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
    VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
    KEY_OBJECT_SELECTION_DOCUMENT_STORAGE = "1.2.840.10008.5.1.4.1.1.88.59"
    GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE = "1.2.840.10008.5.1.4.1.1.11.1"


class TransferSyntaxUIDValues(StrEnum):
    """Transfer Syntax UIDs that WIC content is stored with (PS3.5 Annex A; PS3.18 Table 10.5.2-1)."""

    IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"  # not allowed on the web (PS3.18 §8.7.3)
    EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
    EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"  # retired; not allowed on the web
    JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"
    JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
    JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
    JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
    MPEG2_MPML = "1.2.840.10008.1.2.4.100"
    MPEG2_MPHL = "1.2.840.10008.1.2.4.101"
    MPEG4_HP41 = "1.2.840.10008.1.2.4.102"
    MPEG4_HP41_BD = "1.2.840.10008.1.2.4.103"
    MPEG4_HP42_2D = "1.2.840.10008.1.2.4.104"
    MPEG4_HP42_3D = "1.2.840.10008.1.2.4.105"
    MPEG4_HP42_STEREO = "1.2.840.10008.1.2.4.106"
    HEVC_MP51 = "1.2.840.10008.1.2.4.107"
    HEVC_M10P51 = "1.2.840.10008.1.2.4.108"


#: Modality (0008,0060) as an IOD's own text fixes it (PS3.3 A.32.1.3.1, A.32.2.3.1, A.32.4.3.1, A.32.5.3.1,
#: A.32.6.3.1, A.32.7.3.1), by SOP Class UID: a constraint that no module table carries.
IOD_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.77.1.1": "ES", "1.2.840.10008.5.1.4.1.1.77.1.1.1": "ES",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "GM", "1.2.840.10008.5.1.4.1.1.77.1.2.1": "GM",
    SOPClassUIDValues.VL_PHOTOGRAPHIC_IMAGE_STORAGE.value: ModalityValues.XC.value,
    SOPClassUIDValues.VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE.value: ModalityValues.XC.value,
}
