"""The Image Manager's conversion engine: STOW-RS instances in, PS3.10-ready datasets (or rejections) out.

:func:`convert_submission` takes a parsed STOW-RS request and returns, per
instance, either a :class:`Converted` dataset (with ``file_meta``, ready for
``dcmwrite(..., enforce_file_format=True)``) or a :class:`Rejected` record
carrying the Failure Reason for the Failed SOP Sequence.

* PS3.10 parts (``application/dicom``) are accepted as they are, unless they do
  not decode, use a non-web Transfer Syntax (Implicit VR Little Endian, Explicit
  VR Big Endian) or lack the identifying UIDs.
* DICOM JSON / XML metadata plus bulk data is converted as PS3.18 §10.5.2 and
  Table 10.5.2-1 ask.  The Image Pixel Description is derived from the bitstream;
  the SOP Class is the metadata's when it fits the content, otherwise it is chosen
  from the content; whatever the target IOD still needs is supplemented:

  ===========================  ===============================================  ==========================
  bulk data                    stored as                                        Transfer Syntax
  ===========================  ===============================================  ==========================
  image/jpeg                   encapsulated unchanged; VL Photographic (8-bit,  from the SOF marker: .50,
                               YBR_FULL_422 / MONOCHROME2 / lossless RGB) or    .51, .70, .57
                               Secondary Capture (12-bit, RGB-coded lossy)
  image/jp2, image/jpx         the codestream encapsulated unchanged            .90/.91 (.92/.93 for jpx)
  image/png, image/gif         decoded (Pillow): palette to RGB, alpha dropped, Explicit VR Little Endian
                               16-bit grey kept; an animation is Multi-frame
                               True Color Secondary Capture
  video/mp4, video/quicktime,  Video Photographic (or Endoscopic/Microscopic     from profile and level:
  video/3gpp                   by Modality), the file encapsulated unchanged    .102, .104, .107
  video/mpeg2, video/mpeg      Video Photographic, encapsulated unchanged       .100, .101
  application/pdf              Encapsulated PDF, the document byte for byte     Explicit VR Little Endian
  application/octet-stream     native pixels described by the metadata          Explicit VR Little Endian
  ===========================  ===============================================  ==========================

What is changed is recorded, never silently done:

* values that contradict the bitstream (or the SOP Class) are *corrected*, and
  supplemented Study / Series / SOP Instance UIDs and discarded query-only
  attributes are *coerced*; each kind gets one Original Attributes Sequence
  (0400,0561) item whose one Modified Attributes Sequence item holds the previous
  values (a supplemented attribute: present and empty).  Warning Reason 0xB000
  (Coercion of Data Elements) follows, or 0xB006 (Elements Discarded) when the
  only change was discarding attributes or an alpha channel;
* attributes the Capturer did not send and the IOD needs with an empty value
  (Type 2), the SOP Class chosen from the content and documented defaults (Type 1
  values such as Modality or Conversion Type, Series/Instance Number, dates and
  times of the conversion) are listed in :attr:`Converted.notes`; they change
  nothing that was received, so they are not coercions.

Bulk data is looked up only among the parts of the same request (by
Content-Location); no URI is ever dereferenced and no file or URL is opened.
An unexpected error while converting one instance rejects that instance with
Failure Reason 0x0110 (Processing failure), never the whole request.

References
----------
PS3.18 §10.5.2 and Table 10.5.2-1 (conversion of metadata and bulk data), §10.5.3 and Annex I
(Store Instances Response, Failure/Warning Reasons), §8.7.3.5.2 (transfer-syntax parameter);
PS3.3 A.32.4 (VL Photographic Image IOD), A.32.7 (Video Photographic Image IOD), A.45.1
(Encapsulated PDF IOD), A.8 (Secondary Capture Image IODs), C.12.1.1.9 (Original Attributes
Sequence); PS3.5 §8.2 (encapsulated transfer syntaxes), §A.4 (encapsulation), §6.1 (character sets);
PS3.10 §7.1 (File Meta Information).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

from PIL import Image, ImageSequence
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.charset import codecs_for_terms, text_encodable
from wic_conformance.dicomweb.metadata import BulkRef, MetadataDocument
from wic_conformance.dicomweb.multipart import Part
from wic_conformance.dicomweb.part10 import Part10Instance
from wic_conformance.dicomweb.stow import StowRequest
from wic_conformance.errors import ConfigError
from wic_conformance.model import media
from wic_conformance.model.enums import (
    IOD_MODALITY,
    ConversionTypeValues,
    LossyImageCompressionMethodValues,
    ModalityValues,
    SOPClassUIDValues,
    TransferSyntaxUIDValues,
)
from wic_conformance.model.instances import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, new_uid

__all__ = [
    "ConversionPolicy",
    "FailureReason",
    "Converted",
    "ImageSopClass",
    "Rejected",
    "convert_submission",
]

log = logging.getLogger(__name__)

# -- Failure and Warning Reasons -----------------------------------------------------------------------


class FailureReason(IntEnum):
    """Failure and Warning Reason codes the simulated Image Manager uses (its conformance statement).

    The Annex I codes are used where one fits; ``0xC4xx`` codes are this
    implementation's own members of the "cannot understand" range.

    References
    ----------
    PS3.18 Annex I, Tables I.2-1 and I.2-2.
    """

    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
    STUDY_UID_MISMATCH = 0xC409
    BULK_DATA_UNRESOLVED = 0xC40A
    DUPLICATE_SOP_INSTANCE = 0xC40B
    COERCED = 0xB000
    ELEMENTS_DISCARDED = 0xB006


#: ``video/3gpp`` (WIC-OPT-007); not among the media type constants of ``dicomweb.media_types``.
VIDEO_3GPP = "video/3gpp"

# -- SOP Classes (PS3.4 Annex B) ---------------------------------------------------------------------------

_VL_PHOTOGRAPHIC = SOPClassUIDValues.VL_PHOTOGRAPHIC_IMAGE_STORAGE.value
_VIDEO_PHOTOGRAPHIC = SOPClassUIDValues.VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE.value
_VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
_VIDEO_MICROSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.2.1"
_SECONDARY_CAPTURE = SOPClassUIDValues.SECONDARY_CAPTURE_IMAGE_STORAGE.value
_MF_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"
_MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
_MF_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
_ENCAPSULATED_PDF = SOPClassUIDValues.ENCAPSULATED_PDF_STORAGE.value

_SOP_CLASS_NAMES = {
    _VL_PHOTOGRAPHIC: "VL Photographic Image Storage",
    _VIDEO_PHOTOGRAPHIC: "Video Photographic Image Storage",
    _VIDEO_ENDOSCOPIC: "Video Endoscopic Image Storage",
    _VIDEO_MICROSCOPIC: "Video Microscopic Image Storage",
    _SECONDARY_CAPTURE: "Secondary Capture Image Storage",
    _MF_GRAYSCALE_BYTE_SC: "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    _MF_GRAYSCALE_WORD_SC: "Multi-frame Grayscale Word Secondary Capture Image Storage",
    _MF_TRUE_COLOR_SC: "Multi-frame True Color Secondary Capture Image Storage",
    _ENCAPSULATED_PDF: "Encapsulated PDF Storage",
}
_IMAGE_CLASSES = frozenset({_VL_PHOTOGRAPHIC, _SECONDARY_CAPTURE, _MF_GRAYSCALE_BYTE_SC, _MF_GRAYSCALE_WORD_SC,
                            _MF_TRUE_COLOR_SC})
_VIDEO_CLASSES = frozenset({_VIDEO_PHOTOGRAPHIC, _VIDEO_ENDOSCOPIC, _VIDEO_MICROSCOPIC})
_MULTIFRAME_SC = frozenset({_MF_GRAYSCALE_BYTE_SC, _MF_GRAYSCALE_WORD_SC, _MF_TRUE_COLOR_SC})
_SC_EQUIPMENT = frozenset({_SECONDARY_CAPTURE, *_MULTIFRAME_SC, _ENCAPSULATED_PDF})
_VL_IMAGE = frozenset({_VL_PHOTOGRAPHIC, *_VIDEO_CLASSES})
#: Modality each IOD fixes (PS3.3 A.32.4.3.1, A.32.7.3.1 and the video siblings).
_FIXED_MODALITY = {uid: IOD_MODALITY[uid] for uid in (_VL_PHOTOGRAPHIC, _VIDEO_PHOTOGRAPHIC, _VIDEO_ENDOSCOPIC,
                                                       _VIDEO_MICROSCOPIC)}
_DEFAULT_MODALITY = {_SECONDARY_CAPTURE: ModalityValues.OT.value, _ENCAPSULATED_PDF: ModalityValues.DOC.value,
                     **{uid: ModalityValues.OT.value for uid in _MULTIFRAME_SC}}
#: Photometric Interpretations the VL Image Module allows (PS3.3 C.8.12.1.1.X).
_VL_PHOTOMETRIC = frozenset({"MONOCHROME2", "RGB", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"})
_TRUE_COLOR_PHOTOMETRIC = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"})

# -- Transfer Syntaxes -------------------------------------------------------------------------------------

_EXPLICIT_LE = TransferSyntaxUIDValues.EXPLICIT_VR_LITTLE_ENDIAN.value
_IMPLICIT_LE = TransferSyntaxUIDValues.IMPLICIT_VR_LITTLE_ENDIAN.value
_EXPLICIT_BE = TransferSyntaxUIDValues.EXPLICIT_VR_BIG_ENDIAN.value
_NON_WEB = {_IMPLICIT_LE: "Implicit VR Little Endian", _EXPLICIT_BE: "Explicit VR Big Endian"}
_J2K_LOSSLESS, _J2K = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"
_J2K_P2_LOSSLESS, _J2K_P2 = "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"
_HEVC_MAIN10 = TransferSyntaxUIDValues.HEVC_M10P51.value

# -- Tags --------------------------------------------------------------------------------------------------

_PIXEL_DATA = 0x7FE00010
_ENCAPSULATED_DOCUMENT = 0x00420011
_FRAME_TIME = 0x00181063
_FRAME_TIME_VECTOR = 0x00181065
#: Attributes defined only for query responses; an Image Manager discards them (dcm4chee #1125, WIC-CA list).
_QUERY_ONLY = frozenset({0x00080054, 0x00080056, 0x00080061, 0x00080062, 0x00081190,
                         *range(0x00201200, 0x0020120A)})
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
_UNICODE = "ISO_IR 192"
_MAX_FRAGMENT = 0xFFFF_FFF0  # an item length must stay below 0xFFFFFFFF and be even (PS3.5 §A.4)

#: Placeholder for the Anatomic Region Sequence that the video IODs require (Type 1C) when the
#: Capturer gave none: SNOMED CT 87100004 "Topography unknown" says nothing about the body part.
_UNKNOWN_TOPOGRAPHY = ("87100004", "SCT", "Topography unknown")

_REASON_COERCE = "COERCE"
_REASON_CORRECT = "CORRECT"

_IMAGE, _VIDEO, _DOCUMENT = "image", "video", "document"


# =====================================================================================================
# Public values
# =====================================================================================================


class ImageSopClass(StrEnum):
    """The SOP Class an image gets when the Capturer names none (WIC-IM-009, configurable)."""

    VL_PHOTOGRAPHIC = "vl-photographic"
    SECONDARY_CAPTURE = "secondary-capture"


def _check_modifying_system(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("modifying_system must be a non-empty string (Modifying System (0400,0563), LO)")
    if len(value) > 64 or "\\" in value or any(ord(c) < 0x20 for c in value):
        raise ConfigError(f"modifying_system {value!r} is not a valid LO value (at most 64 characters, "
                          "no backslash or control characters)")
    return value


@dataclass(frozen=True, slots=True)
class ConversionPolicy:
    """How the conversion engine behaves; every field can come from the manager's ``conversion`` settings.

    Attributes
    ----------
    image_sop_class : ImageSopClass
        SOP Class for an ``image/*`` instance whose metadata names none (WIC-IM-009).  VL
        Photographic Image needs 8-bit samples and an XC modality; an image that does not fit
        becomes Secondary Capture instead (the notes say why).
    supplement_uids : bool
        Supplement missing Study, Series and SOP Instance UIDs (WIC-IM-010); when false such an
        instance is rejected with 0xA900.
    modifying_system : str
        Modifying System (0400,0563) of the Original Attributes Sequence items written.
    accept_png, accept_gif, accept_quicktime, accept_3gpp : bool
        Whether ``image/png``, ``image/gif``, ``video/quicktime`` and ``video/3gpp`` bulk data is
        accepted (WIC-OPT-005..007: the options differ between WIC revisions); a switched-off
        media type is rejected with 0xC122.

    References
    ----------
    PS3.18 §10.5.2; IHE RAD WIC options (confidence S/U, see the requirement catalogue).
    """

    image_sop_class: ImageSopClass = ImageSopClass.VL_PHOTOGRAPHIC
    supplement_uids: bool = True
    modifying_system: str = "WIC-CONFORMANCE-IM"
    accept_png: bool = True
    accept_gif: bool = True
    accept_quicktime: bool = True
    accept_3gpp: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.image_sop_class, ImageSopClass):
            raise ConfigError(f"image_sop_class must be an ImageSopClass, not {self.image_sop_class!r}")
        _check_modifying_system(self.modifying_system)
        for f in fields(self):
            if f.name not in ("image_sop_class", "modifying_system") and not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"{f.name} must be true or false, not {getattr(self, f.name)!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ConversionPolicy:
        """Build a policy from plain settings (the manager's YAML ``conversion:`` block).

        ``image_sop_class`` takes ``"vl-photographic"`` or ``"secondary-capture"`` (the member
        names, any case, are accepted too); the switches take booleans.

        Raises
        ------
        ConfigError
            Not a mapping, an unknown key or a bad value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"conversion settings must be a mapping, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown conversion setting(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "image_sop_class" in values:
            values["image_sop_class"] = _image_sop_class(values["image_sop_class"])
        return cls(**values)


def _image_sop_class(value: object) -> ImageSopClass:
    if isinstance(value, ImageSopClass):
        return value
    text = str(value).strip()
    for member in ImageSopClass:
        if text.lower() == member.value or text.upper().replace("-", "_") == member.name:
            return member
    allowed = ", ".join(m.value for m in ImageSopClass)
    raise ConfigError(f"image_sop_class {value!r} is not one of: {allowed}")


@dataclass(frozen=True, slots=True)
class Converted:
    """An instance ready to be stored.

    Attributes
    ----------
    dataset : Dataset
        The instance, with ``file_meta`` (Media Storage SOP Class/Instance UID equal to the data
        set's, Transfer Syntax UID of the encoding chosen) and a preamble: ready for
        ``dcmwrite(buffer, dataset, enforce_file_format=True)``.
    warning_reason : int or None
        0xB000 when a received value was coerced or corrected or a UID supplemented; 0xB006 when
        attributes (or an alpha channel) were only discarded; ``None`` otherwise.
    notes : tuple of str
        What was changed, supplemented, chosen or discarded, in plain words.
    original_attributes : tuple of Dataset
        The Original Attributes Sequence items this conversion added to the dataset (they may
        also be returned in the Store Instances Response).
    source : Part10Instance or None
        The received PS3.10 part when its bytes are the instance to store, unchanged (its
        ``dataset`` is ``dataset``); ``None`` when ``dataset`` must be encoded (a converted
        instance, or a PS3.10 part whose File Meta was rewritten).

    References
    ----------
    PS3.18 §10.5.2, Annex I.2.1; PS3.3 C.12.1.1.9.
    """

    dataset: Dataset
    warning_reason: int | None
    notes: tuple[str, ...] = ()
    original_attributes: tuple[Dataset, ...] = ()
    source: Part10Instance | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An instance that is not stored, with its Failed SOP Sequence entry.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid : str or None
        As received (``None`` when the instance did not carry them).
    failure_reason : int
        The Failure Reason (PS3.18 Annex I.2.2).
    message : str
        Why, in plain words.
    """

    sop_class_uid: str | None
    sop_instance_uid: str | None
    failure_reason: int
    message: str


class _Reject(Exception):
    """Raised inside the conversion of one instance; becomes a :class:`Rejected`."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# =====================================================================================================
# Entry point
# =====================================================================================================


def convert_submission(
    stow: StowRequest,
    *,
    policy: ConversionPolicy,
    target_study: str | None,
) -> list[Converted | Rejected]:
    """Convert every instance of a STOW-RS request, or say why it cannot be stored.

    Parameters
    ----------
    stow : StowRequest
        The parsed request: its metadata documents (with their bulk data parts) and its PS3.10 parts.
    policy : ConversionPolicy
        SOP Class defaults, UID supplementing, accepted media types.
    target_study : str or None
        The Study Instance UID of the target URL (``/studies/{uid}``).  An instance whose
        metadata has no Study Instance UID gets it; a different one is kept (the caller
        rejects the mismatch).

    Returns
    -------
    list of Converted or Rejected
        One entry per instance: the metadata instances in document order, then the PS3.10 parts.

    References
    ----------
    PS3.18 §10.5.2 and Table 10.5.2-1; Annex I (Failure and Warning Reasons).
    """
    now = dt.datetime.now().replace(microsecond=0)
    out: list[Converted | Rejected] = []
    for doc in stow.metadata:
        for raw, dataset, index in _instances_of(doc):
            if dataset is None:
                out.append(Rejected(_raw_uid(raw, "00080016"), _raw_uid(raw, "00080018"),
                                    FailureReason.CANNOT_UNDERSTAND,
                                    f"{doc.location}, instance {index + 1}: the metadata of this instance could "
                                    f"not be decoded{_first_problem(doc)}"))
                continue
            conversion = _MetadataConversion(stow, doc, index, dataset, policy, target_study, now)
            out.append(_guarded(conversion.run, dataset))
    for instance in stow.instances:
        out.append(_guarded(functools.partial(_accept_part10, instance), instance.dataset))
    return out


def _guarded(convert: Callable[[], Converted], received: Dataset | None) -> Converted | Rejected:
    """Run one instance's conversion; a rejection or an unexpected error fails that instance only."""
    try:
        return convert()
    except _Reject as rejection:
        return Rejected(_uid_of(received, "SOPClassUID"), _uid_of(received, "SOPInstanceUID"), rejection.reason,
                        rejection.message)
    except Exception as exc:  # a defect of this engine, not of the request: reported per instance
        log.exception("conversion of one instance failed")
        return Rejected(_uid_of(received, "SOPClassUID"), _uid_of(received, "SOPInstanceUID"),
                        FailureReason.PROCESSING_FAILURE, f"processing failure: {type(exc).__name__}: {exc}")


def _uid_of(ds: Dataset | None, keyword: str) -> str | None:
    if ds is None:
        return None
    try:
        value = ds.get(keyword)
    except Exception:  # an undecodable value
        return None
    text = str(value).strip("\x00 ") if value is not None else ""
    return text or None


def _raw_uid(raw: Any, tag: str) -> str | None:
    try:
        value = raw[tag]["Value"][0]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) and value else None


def _first_problem(doc: MetadataDocument) -> str:
    problem = next((d for d in doc.deviations if d.fatal), doc.deviations[0] if doc.deviations else None)
    return f": {problem.message}" if problem is not None else ""


def _instances_of(doc: MetadataDocument) -> Iterator[tuple[Any, Dataset | None, int]]:
    """Yield ``(raw object, dataset or None, instance index)`` for every instance of a metadata document.

    The instance index is the one the document's BulkRefs use.  A JSON array element that
    did not convert is yielded with ``None`` (it is rejected, not silently dropped); the
    converted datasets are paired with the array elements in order, by SOP Instance UID
    when some elements failed.
    """
    datasets = list(doc.datasets)
    if not doc.is_json:
        for index, ds in enumerate(datasets):
            yield None, ds, index
        return
    raw = doc.raw
    if isinstance(raw, dict):
        items: list[tuple[int, Any]] = [(0, raw)]
    elif isinstance(raw, list):
        items = list(enumerate(raw))
    else:
        for index, ds in enumerate(datasets):
            yield None, ds, index
        return
    objects = [(i, item) for i, item in items if isinstance(item, dict)]
    paired: dict[int, Dataset] = {}
    if len(objects) == len(datasets):
        paired = {i: ds for (i, _item), ds in zip(objects, datasets, strict=True)}
    else:
        pending = iter(datasets)
        current = next(pending, None)
        for i, item in objects:
            if current is not None and _raw_uid(item, "00080018") == _uid_of(current, "SOPInstanceUID"):
                paired[i] = current
                current = next(pending, None)
    for i, item in items:
        yield item, paired.get(i), i


# =====================================================================================================
# PS3.10 parts: accepted as they are
# =====================================================================================================


def _accept_part10(instance: Part10Instance) -> Converted:
    """Accept a PS3.10 part unchanged, or reject it (undecodable, non-web Transfer Syntax, no UIDs).

    The part's bytes are the instance to store (:attr:`Converted.source`) unless its File
    Meta Media Storage SOP Class/Instance UIDs had to be rewritten to match the data set.
    Large values the part's dataset has not read yet (Pixel Data) are not read here.

    References
    ----------
    PS3.18 §10.5.2, §8.7.3 (explicit VR little endian only on the web); PS3.10 §7.1.
    """
    ds = instance.dataset
    if ds is None:
        why = "; ".join(d.message for d in instance.deviations) or "it does not decode"
        raise _Reject(FailureReason.CANNOT_UNDERSTAND, f"{instance.location}: cannot decode the PS3.10 part: {why}")
    ts = instance.transfer_syntax
    if ts is None:
        raise _Reject(FailureReason.CANNOT_UNDERSTAND,
                      f"{instance.location}: the File Meta Information has no Transfer Syntax UID (0002,0010)")
    if ts in _NON_WEB:
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                      f"{instance.location}: Transfer Syntax {ts} ({_NON_WEB[ts]}) is not allowed in a STOW-RS "
                      "request; use an explicit VR little endian transfer syntax (PS3.18 §8.7.3)")
    missing = [kw for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
               if _uid_of(ds, kw) is None]
    if missing:
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"{instance.location}: Type 1 attribute(s) missing or empty: {', '.join(missing)}")
    notes: list[str] = []
    rewrites = {}
    for meta_kw, ds_kw in (("MediaStorageSOPClassUID", "SOPClassUID"),
                           ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        value = _uid_of(ds, ds_kw)
        if str(ds.file_meta.get(meta_kw, "") or "") != value:
            notes.append(f"File Meta {meta_kw} {str(ds.file_meta.get(meta_kw, '') or '')!r} rewritten as {value!r} "
                         f"to match {ds_kw} (PS3.10 §7.1)")
            rewrites[meta_kw] = UID(str(value))
    if rewrites:  # on a copy that has its own File Meta: judging sees the request's File Meta as sent
        ds = copy.copy(ds)
        ds.file_meta = copy.deepcopy(ds.file_meta)
        for meta_kw, uid in rewrites.items():
            setattr(ds.file_meta, meta_kw, uid)
    return Converted(ds, None, tuple(notes), (), source=None if notes else instance)


# =====================================================================================================
# Media: what a bulk data part holds and how it is stored
# =====================================================================================================


_Info = TypeVar("_Info")


@dataclass(slots=True)
class _Media:
    """A bulk data part, probed and turned into what the stored instance carries.

    ``description`` holds the values the content implies (keyword → value; ``None`` = the
    metadata must give it); ``acceptable`` other received values that also fit the content;
    ``defaults`` values set only when the metadata has none.
    """

    kind: str
    media_type: str
    transfer_syntax: str
    value: bytes
    describe: str
    encapsulated: bool = False
    vr: str = "OB"
    description: dict[str, Any] = field(default_factory=dict)
    acceptable: dict[str, frozenset[Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    frames: int = 1
    lossy_colour_jpeg: bool = False
    notes: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)


def _probed(probe: Callable[[bytes], _Info], data: bytes, media_type: str) -> _Info:
    """Return what ``probe`` reads from a bulk data part; a bitstream it cannot read rejects the part."""
    try:
        return probe(data)
    except media.MediaProbeError as exc:
        raise _Reject(FailureReason.CANNOT_UNDERSTAND, f"the {media_type} part cannot be read: {exc}") from None


def _transfer_syntax(declared: str | None, allowed: frozenset[str], preferred: str | None, describe: str,
                     media_type: str, *, none_fits: str) -> str:
    """Return the declared transfer syntax, else ``preferred``, for a bitstream that ``allowed`` describes.

    The part is rejected when no transfer syntax fits the bitstream (``none_fits`` says why)
    or the declared one contradicts it.
    """
    if not allowed:
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED, none_fits)
    _check_declared(declared, allowed, describe, media_type)
    ts = declared or preferred
    assert ts is not None
    return ts


def _check_declared(declared: str | None, allowed: frozenset[str], describe: str, media_type: str) -> None:
    """Reject a transfer-syntax parameter that contradicts the bitstream (WIC-IM-021)."""
    if declared and declared not in allowed:
        fits = ", ".join(sorted(allowed)) or "none"
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                      f"the {media_type} part declares transfer-syntax={declared}, which contradicts the bitstream "
                      f"({describe}); transfer syntaxes that fit it: {fits} (WIC-IM-021)")


def _pixel_description(
    *, rows: int | None, columns: int, samples: int, bits_stored: int, photometric: str,
    photometric_ok: frozenset[str] = frozenset(), signed: bool = False, signed_ok: bool = False,
) -> tuple[dict[str, Any], dict[str, frozenset[Any]]]:
    description: dict[str, Any] = {
        "SamplesPerPixel": samples, "PhotometricInterpretation": photometric, "Rows": rows, "Columns": columns,
        "BitsAllocated": 8 if bits_stored <= 8 else 16, "BitsStored": bits_stored, "HighBit": bits_stored - 1,
        "PixelRepresentation": 1 if signed else 0,
    }
    if samples > 1:
        description["PlanarConfiguration"] = 0
    acceptable: dict[str, frozenset[Any]] = {}
    if photometric_ok:
        acceptable["PhotometricInterpretation"] = photometric_ok
    if signed_ok:
        acceptable["PixelRepresentation"] = frozenset({0, 1})
    return description, acceptable


def _jpeg(data: bytes, declared: str | None) -> _Media:
    """Describe an ``image/jpeg`` part: encapsulated unchanged, TS from the SOF marker.

    References
    ----------
    PS3.5 §8.2.1 and Table A-1; PS3.18 Table 10.5.2-1 and Table 8.7.3-5; ISO/IEC 10918-1 B.2.2.
    """
    info = _probed(media.probe_jpeg, data, mt.IMAGE_JPEG)
    describe = f"JPEG SOF 0x{info.sof:02X} {info.process}, {info.precision}-bit, {info.components} component(s)"
    if info.jpeg_ls:
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                      f"the image/jpeg part is a JPEG-LS stream ({describe}); JPEG-LS is image/jls, not image/jpeg")
    ts = _transfer_syntax(
        declared, media.jpeg_transfer_syntaxes(info), media.jpeg_transfer_syntax(info), describe, mt.IMAGE_JPEG,
        none_fits=f"the image/jpeg part is a {describe} stream, which no current transfer syntax carries "
                  "unchanged (only retired ones do); send a baseline, extended or lossless JPEG")
    if info.components not in (1, 3):
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"the image/jpeg part has {info.components} components; 1 (grey) or 3 (colour) expected")
    lossy = not info.lossless
    photometric = media.jpeg_photometric_interpretation(info)
    if photometric == "MONOCHROME2":
        ok = frozenset({"MONOCHROME2", "MONOCHROME1"})
    elif photometric == "RGB" and info.color_transform is None:
        ok = frozenset({"RGB", "YBR_FULL"})  # a lossless stream that does not say how it is coded
    else:
        ok = frozenset({photometric})
    description, acceptable = _pixel_description(
        rows=info.rows or None, columns=info.columns, samples=info.components, bits_stored=info.precision,
        photometric=photometric, photometric_ok=ok, signed_ok=not lossy)
    result = _Media(_IMAGE, mt.IMAGE_JPEG, ts, _encapsulated(data), describe, encapsulated=True,
                    description=description, acceptable=acceptable, lossy_colour_jpeg=lossy and info.components == 3)
    _lossy_attributes(result, lossy, LossyImageCompressionMethodValues.ISO_10918_1.value,
                      ratio_of=len(data), samples=info.components, rows=info.rows, columns=info.columns,
                      bits=info.precision)
    return result


def _lossy_attributes(result: _Media, lossy: bool, method: str, *, ratio_of: int, samples: int, rows: int,
                      columns: int, bits: int, frames: int = 1) -> None:
    """Lossy Image Compression "01" (forced) with method and ratio defaults, or "00" by default."""
    if lossy:
        result.description["LossyImageCompression"] = "01"
        result.defaults["LossyImageCompressionMethod"] = method
        if ratio_of and rows and columns:
            size = rows * columns * samples * frames * (1 if bits <= 8 else 2)
            result.defaults["LossyImageCompressionRatio"] = f"{size / ratio_of:.4g}"
    else:
        result.description["LossyImageCompression"] = "00"
        result.acceptable["LossyImageCompression"] = frozenset({"00", "01"})


def _j2k(data: bytes, media_type: str, declared: str | None) -> _Media:
    """Describe an ``image/jp2`` or ``image/jpx`` part: the codestream encapsulated unchanged.

    References
    ----------
    PS3.5 §8.2.4 (the JP2 header is not part of the encapsulated stream) and Table A-1;
    ISO/IEC 15444-1 A.5.1, A.6.1.
    """
    info = _probed(media.probe_j2k, data, media_type)
    reversible = info.reversible is not False
    allowed = {_J2K} | ({_J2K_LOSSLESS} if reversible else set())
    if media_type == mt.IMAGE_JPX:
        allowed |= {_J2K_P2} | ({_J2K_P2_LOSSLESS} if reversible else set())
    wavelet = {True: "reversible 5-3", False: "irreversible 9-7", None: "unknown"}[info.reversible]
    describe = f"JPEG 2000 ({info.wrapper}, {wavelet} wavelet), {info.precision}-bit, {info.components} component(s)"
    _check_declared(declared, frozenset(allowed), describe, media_type)
    ts = declared or (_J2K_LOSSLESS if info.reversible else _J2K)
    if info.components not in (1, 3):
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"the {media_type} part has {info.components} components; 1 (grey) or 3 (colour) expected")
    if info.components == 1:
        photometric = "MONOCHROME2"
    elif info.mct:
        photometric = "YBR_RCT" if info.reversible else "YBR_ICT"
    else:
        photometric = "RGB"
    codestream = data[info.codestream_offset:info.codestream_offset + info.codestream_length]
    description, acceptable = _pixel_description(
        rows=info.rows, columns=info.columns, samples=info.components, bits_stored=info.precision,
        photometric=photometric, signed=info.signed)
    result = _Media(_IMAGE, media_type, ts, _encapsulated(codestream), describe, encapsulated=True,
                    description=description, acceptable=acceptable)
    if info.wrapper != "j2k":
        result.notes.append(f"the {info.wrapper.upper()} file header was removed: the JPEG 2000 codestream is "
                            "encapsulated unchanged (PS3.5 §8.2.4)")
    _lossy_attributes(result, not info.reversible, LossyImageCompressionMethodValues.ISO_15444_1.value,
                      ratio_of=len(codestream), samples=info.components, rows=info.rows, columns=info.columns,
                      bits=info.precision)
    return result


def _encapsulated(data: bytes) -> bytes:
    """Encapsulate one frame or video stream unchanged (empty Basic Offset Table; odd length padded)."""
    fragments = max(1, math.ceil(len(data) / _MAX_FRAGMENT))
    return encapsulate([data], fragments_per_frame=fragments, has_bot=False)


_MP4_FAMILY = {mt.VIDEO_MP4: frozenset({mt.VIDEO_MP4}), mt.VIDEO_QUICKTIME: frozenset({mt.VIDEO_QUICKTIME,
                                                                                    mt.VIDEO_MP4}),
               VIDEO_3GPP: frozenset({mt.VIDEO_MP4})}


def _video_description(result: _Media, *, rows: int | None, columns: int | None, frames: int | None,
                       frame_rate: float | None) -> None:
    """Image Pixel, Multi-frame and Cine values of a video (PS3.3 C.8.12.1, C.7.6.5, C.7.6.6)."""
    result.description.update({
        "SamplesPerPixel": 3, "PhotometricInterpretation": "YBR_PARTIAL_420", "PlanarConfiguration": 0,
        "Rows": rows, "Columns": columns, "BitsAllocated": 8, "BitsStored": 8, "HighBit": 7,
        "PixelRepresentation": 0, "NumberOfFrames": frames, "LossyImageCompression": "01",
        "FrameIncrementPointer": _FRAME_TIME,
        "FrameTime": f"{1000.0 / frame_rate:.6g}" if frame_rate else None,
    })
    if frame_rate:
        result.defaults["CineRate"] = max(1, round(frame_rate))
    if frames:
        result.frames = frames


def _mp4(data: bytes, media_type: str, declared: str | None) -> _Media:
    """Describe an MP4-family video part (``video/mp4``, ``video/quicktime``, ``video/3gpp``): encapsulated unchanged.

    References
    ----------
    PS3.5 §8.2.8 (MPEG-4 AVC/H.264), §8.2.9 (HEVC/H.265); PS3.18 Table 10.5.2-1;
    ISO/IEC 14496-12 and 14496-15.
    """
    info = _probed(media.probe_mp4, data, media_type)
    describe = f"{info.codec} profile_idc {info.profile_idc} level_idc {info.level_idc}"
    if not (info.is_avc or info.is_hevc):
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                      f"the {media_type} part holds {info.codec!r} video; only H.264/AVC and H.265/HEVC can be "
                      "stored unchanged")
    ts = _transfer_syntax(
        declared, media.mp4_transfer_syntaxes(info), media.mp4_transfer_syntax(info), describe, media_type,
        none_fits=f"the {media_type} part is {describe}, which no DICOM transfer syntax covers "
                  "(H.264 up to level 4.2, HEVC Main/Main 10 up to level 5.1)")
    if ts.startswith(_HEVC_MAIN10) or (info.is_hevc and info.profile_idc == 2):
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                      f"the {media_type} part is an HEVC Main 10 stream ({describe}); the VL Image Module of the "
                      "video IODs describes 8-bit samples only")
    result = _Media(_VIDEO, media_type, ts, _encapsulated(data), describe, encapsulated=True)
    _video_description(result, rows=info.height, columns=info.width, frames=info.frames,
                       frame_rate=info.frame_rate)
    method = (LossyImageCompressionMethodValues.ISO_14496_10 if info.is_avc
              else LossyImageCompressionMethodValues.ISO_23008_2)
    result.defaults["LossyImageCompressionMethod"] = method.value
    return result


def _mpeg2(data: bytes, media_type: str, declared: str | None) -> _Media:
    """Describe a ``video/mpeg2`` (or legacy ``video/mpeg``) part: encapsulated unchanged.

    The frame count is the number of picture start codes (the metadata's Number of Frames,
    when given, is kept: field pictures cannot be told apart here).

    References
    ----------
    PS3.5 §8.2.5, §8.2.6; ISO/IEC 13818-2 §6.2.2.
    """
    info = _probed(media.probe_mpeg2, data[:1 << 22], media_type)
    level = f"0x{info.profile_level:02X}" if info.profile_level is not None else "none (MPEG-1)"
    describe = f"MPEG video {info.width}x{info.height}, profile_and_level_indication {level}"
    ts = _transfer_syntax(
        declared, media.mpeg2_transfer_syntaxes(info), media.mpeg2_transfer_syntax(info), describe, media_type,
        none_fits=f"the {media_type} part is {describe}; only MPEG-2 Main Profile at Main or High Level can be "
                  "stored unchanged")
    result = _Media(_VIDEO, media_type, ts, _encapsulated(data), describe, encapsulated=True)
    pictures = data.count(b"\x00\x00\x01\x00")
    _video_description(result, rows=info.height, columns=info.width, frames=pictures or None,
                       frame_rate=info.frame_rate)
    if pictures:
        del result.description["NumberOfFrames"]
        result.defaults["NumberOfFrames"] = pictures
    result.defaults["LossyImageCompressionMethod"] = LossyImageCompressionMethodValues.ISO_13818_2.value
    return result


def _pdf(data: bytes, received: Dataset) -> _Media:
    """Describe an ``application/pdf`` part: the Encapsulated Document, byte for byte.

    References
    ----------
    PS3.3 A.45.1, C.24.2 (Encapsulated Document Module); PS3.18 §10.5.1.4.
    """
    mime = str(received.get("MIMETypeOfEncapsulatedDocument", "") or "").strip()
    result = _Media(_DOCUMENT, mt.APPLICATION_PDF, _EXPLICIT_LE, data, f"a PDF document of {len(data)} bytes")
    result.description["MIMETypeOfEncapsulatedDocument"] = mt.APPLICATION_PDF
    if mime.lower() == mt.APPLICATION_PDF:
        result.acceptable["MIMETypeOfEncapsulatedDocument"] = frozenset({mime})
    result.description["EncapsulatedDocumentLength"] = len(data)
    return result


def _raster(data: bytes, media_type: str) -> _Media:
    """Decode an ``image/png`` or ``image/gif`` part into native pixels (Explicit VR Little Endian).

    Palette images become RGB, alpha and transparency are discarded, greyscale stays
    MONOCHROME2 (16-bit grey PNG keeps 16 bits), and an animation becomes multi-frame.

    References
    ----------
    PS3.18 Table 10.5.2-1 and its notes (Transform); PS3.3 C.7.6.3 (Image Pixel Module).
    """
    depth = 8
    if media_type == mt.IMAGE_PNG:
        png = _probed(media.probe_png, data, mt.IMAGE_PNG)
        if png.bit_depth == 16 and png.color_type != 0:
            raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                          "the image/png part has 16-bit colour samples, which this Image Manager cannot convert "
                          "without loss; send 8-bit colour or 16-bit greyscale")
        depth = png.bit_depth if png.color_type == 0 else 8
        describe = f"PNG {png.width}x{png.height}, colour type {png.color_type}, {png.bit_depth}-bit"
    else:
        gif = _probed(media.probe_gif, data, mt.IMAGE_GIF)
        describe = f"GIF {gif.width}x{gif.height}, {gif.frames} frame(s)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            frames, durations, modes, transparency = _decode_frames(data)
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise _Reject(FailureReason.CANNOT_UNDERSTAND, f"the {media_type} part cannot be decoded: {exc}") from None
    grey16 = depth == 16
    grey = grey16 or all(m in ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B") for m in modes)
    target = "I;16" if grey16 else "L" if grey else "RGB"
    width, height = frames[0].size
    if width > 0xFFFF or height > 0xFFFF:
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"the {media_type} image is {width}x{height}; Rows and Columns cannot exceed 65535")
    pixels = bytearray()
    for frame in frames:
        if frame.size != (width, height):
            raise _Reject(FailureReason.CANNOT_UNDERSTAND, f"the frames of the {media_type} part differ in size")
        pixels += (frame if frame.mode == target else frame.convert(target)).tobytes()
    if len(pixels) % 2:
        pixels += b"\x00"
    samples = 1 if grey else 3
    description, acceptable = _pixel_description(
        rows=height, columns=width, samples=samples, bits_stored=16 if grey16 else 8,
        photometric="MONOCHROME2" if grey else "RGB")
    result = _Media(_IMAGE, media_type, _EXPLICIT_LE, bytes(pixels), describe, vr="OW" if grey16 else "OB",
                    description=description, acceptable=acceptable, frames=len(frames))
    result.description["LossyImageCompression"] = "00"
    result.acceptable["LossyImageCompression"] = frozenset({"00", "01"})
    if any(m in ("P", "PA") for m in modes) and not grey:
        result.notes.append(f"the {media_type} palette was converted to RGB (PS3.18 Table 10.5.2-1)")
    if depth < 8 and grey:
        result.notes.append(f"{depth}-bit grey samples were scaled to 8 bits")
    if transparency or any(m in ("RGBA", "RGBa", "LA", "La", "PA") for m in modes):
        result.discarded.append(f"the alpha channel / transparency of the {media_type} part")
    if len(frames) > 1:
        result.description["NumberOfFrames"] = len(frames)
        _frame_timing(result, durations)
    return result


def _decode_frames(data: bytes) -> tuple[list[Image.Image], list[int], set[str], bool]:
    """Return every frame (loaded), their durations in ms, the modes seen and whether transparency was declared."""
    frames: list[Image.Image] = []
    durations: list[int] = []
    modes: set[str] = set()
    transparency = False
    with Image.open(io.BytesIO(data)) as image:
        for frame in ImageSequence.Iterator(image):
            frame.load()
            modes.add(frame.mode)
            transparency = transparency or "transparency" in frame.info
            durations.append(int(frame.info.get("duration", 0) or 0))
            frames.append(frame.copy())
    if not frames:
        raise ValueError("no frame")
    return frames, durations, modes, transparency


def _frame_timing(result: _Media, durations: list[int]) -> None:
    """Frame Time (equal delays) or Frame Time Vector, with the Frame Increment Pointer (PS3.3 C.7.6.5/6)."""
    fixed = [d if d > 0 else 100 for d in durations]
    if fixed != durations:
        result.notes.append("frames without a display duration were given 100 ms (the usual GIF/APNG default)")
    if len(set(fixed)) == 1:
        result.description["FrameIncrementPointer"] = _FRAME_TIME
        result.description["FrameTime"] = f"{fixed[0]:.6g}"
        result.defaults["CineRate"] = max(1, round(1000 / fixed[0]))
    else:
        result.description["FrameIncrementPointer"] = _FRAME_TIME_VECTOR
        result.description["FrameTimeVector"] = ["0"] + [f"{d:.6g}" for d in fixed[:-1]]


_PIXEL_KEYWORDS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                   "PixelRepresentation", "PhotometricInterpretation")


def _native(data: bytes, received: Dataset, declared: str | None) -> _Media:
    """Describe an ``application/octet-stream`` Pixel Data part: native pixels described by the metadata.

    References
    ----------
    PS3.18 Table 10.5.2-1 (application/octet-stream); PS3.5 §8.1.1 (native pixel data), §8.2 note.
    """
    if declared and declared not in (_EXPLICIT_LE, _IMPLICIT_LE):
        raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                      f"the application/octet-stream part declares transfer-syntax={declared}; native little "
                      f"endian pixel data ({_EXPLICIT_LE}) is expected")
    needed = list(_PIXEL_KEYWORDS)
    spp = _int_value(received, "SamplesPerPixel")
    if spp is not None and spp > 1:
        needed.append("PlanarConfiguration")

    def absent(keyword: str) -> bool:
        if keyword == "PhotometricInterpretation":
            return not str(received.get(keyword, "") or "").strip()
        return _int_value(received, keyword) is None

    missing = [kw for kw in needed if absent(kw)]
    if missing:
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      "application/octet-stream Pixel Data needs the full Image Pixel Description in the metadata; "
                      f"missing or empty: {', '.join(missing)} (PS3.18 §10.5.2)")
    rows, columns = _int_value(received, "Rows") or 0, _int_value(received, "Columns") or 0
    allocated = _int_value(received, "BitsAllocated") or 0
    frames = _int_value(received, "NumberOfFrames") or 1
    samples = spp or 1
    if allocated not in (1, 8, 16, 32) or not rows or not columns:
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"the Image Pixel Description is not usable: Rows {rows}, Columns {columns}, "
                      f"Bits Allocated {allocated}")
    expected = math.ceil(rows * columns * samples * frames * allocated / 8)
    if not (len(data) == expected or (expected % 2 == 1 and len(data) == expected + 1)):
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"the application/octet-stream part has {len(data)} bytes but the Image Pixel Description "
                      f"({rows}x{columns}, {samples} sample(s), {allocated} bits allocated, {frames} frame(s)) "
                      f"implies {expected}")
    if frames > 1 and received.get("FrameIncrementPointer") in (None, ""):
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"multi-frame application/octet-stream Pixel Data ({frames} frames) needs Frame Increment "
                      "Pointer (0028,0009) and the attribute it points to in the metadata")
    value = data[:expected] + (b"\x00" if expected % 2 else b"")
    photometric = str(received.get("PhotometricInterpretation")).strip()
    return _Media(_IMAGE, mt.APPLICATION_OCTET_STREAM, _EXPLICIT_LE, value,
                  f"native pixels {columns}x{rows}, {samples} sample(s), {allocated}-bit, {photometric}",
                  vr="OB" if allocated <= 8 else "OW", frames=frames)


def _int_value(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
    except Exception:  # an undecodable value
        return None
    values = _values(value)
    return _int_or_none(values[0] if values else None)


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# =====================================================================================================
# One metadata instance
# =====================================================================================================


@dataclass(slots=True)
class _Record:
    """The previous values of one kind of change (one Original Attributes Sequence item)."""

    reason: str
    elements: dict[int, DataElement] = field(default_factory=dict)

    def keep(self, elem: DataElement) -> None:
        self.elements.setdefault(int(elem.tag), copy.deepcopy(elem))


class _MetadataConversion:
    """Convert one dataset of a metadata document plus its bulk data into a storable instance."""

    def __init__(self, stow: StowRequest, doc: MetadataDocument, index: int, received: Dataset,
                 policy: ConversionPolicy, target_study: str | None, now: dt.datetime) -> None:
        self.stow = stow
        self.doc = doc
        self.index = index
        self.received = received
        self.policy = policy
        self.target_study = target_study
        self.now = now
        self.where = doc.location if len(doc.datasets) == 1 else f"{doc.location}, instance {index + 1}"
        self.ds = Dataset()
        self.records = {_REASON_COERCE: _Record(_REASON_COERCE), _REASON_CORRECT: _Record(_REASON_CORRECT)}
        self.notes: list[str] = []
        self.discarded: list[str] = []
        self.corrected: list[str] = []
        self.supplemented: list[str] = []
        self.defaults: list[str] = []
        self.empties: list[str] = []

    # -- the steps ------------------------------------------------------------------------------------
    def run(self) -> Converted:
        content = self._content()
        self._copy_received()
        sop_class = self._sop_class(content)
        self._uids()
        self._apply_content(content, sop_class)
        self._complete(sop_class, content)
        self._character_set()
        items = self._original_attributes()
        self._file_meta(sop_class, content.transfer_syntax)
        self.discarded.extend(content.discarded)
        warning = (FailureReason.COERCED if self.supplemented or self.corrected
                   else FailureReason.ELEMENTS_DISCARDED if self.discarded else None)
        notes: list[str] = []  # what changed what was received first, then what was only added
        if self.supplemented:
            notes.append("supplemented " + "; ".join(self.supplemented) + " (recorded in (0400,0561))")
        if self.corrected:
            notes.append("corrected to fit the content and the SOP Class: " + "; ".join(self.corrected)
                         + " (recorded in (0400,0561))")
        if self.discarded:
            notes.append("discarded " + "; ".join(self.discarded))
        notes += self.notes + content.notes
        if self.defaults:
            notes.append("set (absent from the metadata): " + "; ".join(self.defaults))
        if self.empties:
            notes.append("added empty Type 2 attributes (not a coercion): " + ", ".join(self.empties))
        return Converted(self.ds, warning, tuple(notes), tuple(items))

    def _content(self) -> _Media:
        """Find the instance's Pixel Data or Encapsulated Document and turn it into :class:`_Media`."""
        refs = [r for r in self.doc.bulk_refs if r.instance == self.index]
        for ref in refs:
            found = self.stow.part_by_location(ref.uri)
            if len(found) != 1:
                how = "does not name a part" if not found else f"names {len(found)} parts"
                raise _Reject(FailureReason.BULK_DATA_UNRESOLVED,
                              f"{self.where}: BulkDataURI {ref.uri!r} of {_tag_text(ref.tag)} {how} of this request "
                              "(bulk data is resolved against the Content-Location of the request's parts only)")
        top = [r for r in refs if self._top_level(r) and r.tag.upper() in ("7FE00010", "00420011")]
        if len(top) > 1:
            raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                          f"{self.where}: more than one Pixel Data / Encapsulated Document reference")
        try:
            if top:
                ref = top[0]
                part = self.stow.part_by_location(ref.uri)[0]
                return self._from_part(part, int(ref.tag, 16))
            for tag in (_PIXEL_DATA, _ENCAPSULATED_DOCUMENT):
                value = self.received.get(tag)
                if value is not None and value.value:
                    data = bytes(value.value)
                    if tag == _PIXEL_DATA:
                        return _native(data, self.received, None)
                    if media.guess_media_type(data) != mt.APPLICATION_PDF:
                        raise _Reject(FailureReason.CANNOT_UNDERSTAND, "the inline Encapsulated Document is not a PDF")
                    return _pdf(data, self.received)
        except _Reject as rejection:
            if rejection.message.startswith(self.where):
                raise
            raise _Reject(rejection.reason, f"{self.where}: {rejection.message}") from None
        raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                      f"{self.where}: neither Pixel Data (7FE0,0010) nor Encapsulated Document (0042,0011) is "
                      "given; there is nothing to store (WIC-IM-011)")

    def _top_level(self, ref: BulkRef) -> bool:
        if self.doc.is_json:  # a JSON pointer: nested attributes lie below ".../Value/<item>/"
            return "/Value/" not in ref.path
        return ref.path.count("DicomAttribute") == 1

    def _from_part(self, part: Part, tag: int) -> _Media:
        ctype = part.content_type
        label = f"part {part.index + 1}"
        if ctype is None:
            raise _Reject(FailureReason.CANNOT_UNDERSTAND, f"{self.where}: bulk data {label} has no Content-Type")
        kind = ctype.essence
        declared = ctype.transfer_syntax
        data = part.body.read()
        guess = media.guess_media_type(data)
        policy = self.policy
        switched_off = {mt.IMAGE_PNG: not policy.accept_png, mt.IMAGE_GIF: not policy.accept_gif,
                        mt.VIDEO_QUICKTIME: not policy.accept_quicktime, VIDEO_3GPP: not policy.accept_3gpp}
        if switched_off.get(kind):
            raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                          f"{self.where}: {kind} bulk data is not accepted by this Image Manager's configuration")
        if tag == _ENCAPSULATED_DOCUMENT:
            if kind != mt.APPLICATION_PDF:
                raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                              f"{self.where}: the Encapsulated Document part is {kind}; only application/pdf is "
                              "supported")
            if guess != mt.APPLICATION_PDF:
                raise _Reject(FailureReason.CANNOT_UNDERSTAND,
                              f"{self.where}: {label} is labelled application/pdf but its "
                              f"content is {guess or 'not a PDF'}")
            if declared and declared != _EXPLICIT_LE:
                raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                              f"{self.where}: the application/pdf part declares transfer-syntax={declared}; an "
                              f"Encapsulated PDF is stored as {_EXPLICIT_LE}")
            return _pdf(data, self.received)
        if kind == mt.APPLICATION_PDF:
            raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                          f"{self.where}: a PDF was given as Pixel Data; it belongs in Encapsulated Document "
                          "(0042,0011)")
        if kind == mt.APPLICATION_OCTET_STREAM:
            return _native(data, self.received, declared)
        compatible = {mt.IMAGE_JPEG: {mt.IMAGE_JPEG}, mt.IMAGE_PNG: {mt.IMAGE_PNG}, mt.IMAGE_GIF: {mt.IMAGE_GIF},
                      mt.IMAGE_JP2: {mt.IMAGE_JP2}, mt.IMAGE_JPX: {mt.IMAGE_JPX, mt.IMAGE_JP2},
                      mt.VIDEO_MPEG2: {mt.VIDEO_MPEG2}, mt.VIDEO_MPEG: {mt.VIDEO_MPEG2}, **_MP4_FAMILY}.get(kind)
        if compatible is None:
            raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                          f"{self.where}: bulk data of media type {kind!r} is not supported (PS3.18 Table 10.5.2-1)")
        if guess is not None and guess not in compatible:
            raise _Reject(FailureReason.CANNOT_UNDERSTAND,
                          f"{self.where}: {label} is labelled {kind} but its content is {guess}")
        if kind == mt.IMAGE_JPEG:
            return _jpeg(data, declared)
        if kind in (mt.IMAGE_JP2, mt.IMAGE_JPX):
            return _j2k(data, kind, declared)
        if kind in (mt.IMAGE_PNG, mt.IMAGE_GIF):
            if declared and declared != _EXPLICIT_LE:
                raise _Reject(FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                              f"{self.where}: the {kind} part declares transfer-syntax={declared}; {kind} is "
                              f"transformed into {_EXPLICIT_LE}")
            return _raster(data, kind)
        if kind in (mt.VIDEO_MPEG2, mt.VIDEO_MPEG):
            return _mpeg2(data, kind, declared)
        return _mp4(data, kind, declared)

    def _copy_received(self) -> None:
        """Copy the received attributes; drop File Meta and group lengths, discard query-only attributes."""
        ignored: list[str] = []
        query: list[str] = []
        for elem in self.received:
            tag = int(elem.tag)
            if tag in (_PIXEL_DATA, _ENCAPSULATED_DOCUMENT):
                continue
            if tag >> 16 == 0x0002:
                ignored.append(_tag_text(tag))
                continue
            if tag & 0xFFFF == 0:
                continue
            if tag in _QUERY_ONLY:
                self.records[_REASON_COERCE].keep(elem)
                query.append(_name(tag))
                continue
            self.ds.add(copy.deepcopy(elem))
        if ignored:
            self.notes.append(f"File Meta attributes in the metadata were ignored ({', '.join(ignored)}): the File "
                              "Meta Information is rebuilt")
        if query:
            self.discarded.append("query-only attributes " + ", ".join(query))

    def _sop_class(self, content: _Media) -> str:
        """Use the metadata's SOP Class when it fits the content; otherwise choose one from the content."""
        given = _uid_of(self.received, "SOPClassUID")
        if given is not None:
            if given not in _SOP_CLASS_NAMES:
                raise _Reject(FailureReason.SOP_CLASS_NOT_SUPPORTED,
                              f"{self.where}: SOP Class {given} is not one this Image Manager builds from metadata "
                              f"and bulk data (supported: {', '.join(sorted(_SOP_CLASS_NAMES))})")
            problem = self._misfit(given, content)
            if problem:
                raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                              f"{self.where}: the metadata names {_SOP_CLASS_NAMES[given]} ({given}) but "
                              f"{problem}")
            return given
        chosen, why = self._choose(content)
        self.notes.append(f"SOP Class UID not given: chose {_SOP_CLASS_NAMES[chosen]} ({chosen}) for the "
                          f"{content.media_type} content{why} (WIC-IM-009)")
        self._set("SOPClassUID", chosen)
        return chosen

    def _choose(self, content: _Media) -> tuple[str, str]:
        modality = str(self.received.get("Modality", "") or "").strip()
        if content.kind == _DOCUMENT:
            return _ENCAPSULATED_PDF, ""
        if content.kind == _VIDEO:
            by_modality = {"ES": _VIDEO_ENDOSCOPIC, "GM": _VIDEO_MICROSCOPIC}
            return by_modality.get(modality, _VIDEO_PHOTOGRAPHIC), f" (Modality {modality!r})" if modality else ""
        if content.frames > 1:
            for candidate in (_MF_TRUE_COLOR_SC, _MF_GRAYSCALE_BYTE_SC, _MF_GRAYSCALE_WORD_SC):
                if not self._misfit(candidate, content):
                    return candidate, f" ({content.frames} frames)"
            raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                          f"{self.where}: no multi-frame SOP Class fits {content.describe}")
        if self.policy.image_sop_class is ImageSopClass.VL_PHOTOGRAPHIC:
            problem = self._misfit(_VL_PHOTOGRAPHIC, content)
            if not problem and modality not in ("", "XC"):
                problem = f"the metadata's Modality is {modality!r}"
            if not problem:
                return _VL_PHOTOGRAPHIC, " (policy image_sop_class=vl-photographic)"
            return _SECONDARY_CAPTURE, f" (VL Photographic Image does not fit: {problem})"
        return _SECONDARY_CAPTURE, " (policy image_sop_class=secondary-capture)"

    def _misfit(self, sop_class: str, content: _Media) -> str:
        """Return why ``sop_class`` cannot hold ``content`` (``""`` when it can)."""
        if content.kind == _DOCUMENT:
            return "" if sop_class == _ENCAPSULATED_PDF else f"the content is {content.describe}"
        if sop_class == _ENCAPSULATED_PDF:
            return f"the content is {content.media_type} Pixel Data, not a PDF document"
        if content.kind == _VIDEO:
            return "" if sop_class in _VIDEO_CLASSES else f"the content is a video ({content.describe})"
        if sop_class in _VIDEO_CLASSES:
            return f"the content is a still image ({content.describe})"
        samples = self._pixel(content, "SamplesPerPixel")
        photometric = str(self._pixel(content, "PhotometricInterpretation") or "").strip()
        allocated = self._pixel(content, "BitsAllocated")
        stored = self._pixel(content, "BitsStored")
        if sop_class in _MULTIFRAME_SC:
            if sop_class == _MF_TRUE_COLOR_SC and (samples != 3 or photometric not in _TRUE_COLOR_PHOTOMETRIC
                                                   or allocated != 8):
                return f"it needs 8-bit colour samples ({content.describe})"
            if sop_class == _MF_GRAYSCALE_BYTE_SC and (samples != 1 or photometric != "MONOCHROME2"
                                                       or allocated != 8):
                return f"it needs 8-bit MONOCHROME2 samples ({content.describe})"
            if sop_class == _MF_GRAYSCALE_WORD_SC and (samples != 1 or photometric != "MONOCHROME2"
                                                       or allocated != 16 or not 9 <= (stored or 0) <= 16):
                return f"it needs 9- to 16-bit MONOCHROME2 samples ({content.describe})"
            return ""
        if content.frames > 1:
            return f"it holds one frame and the content has {content.frames} ({content.describe})"
        if sop_class == _VL_PHOTOGRAPHIC:
            if allocated != 8 or stored != 8:
                return f"VL Photographic Image needs 8-bit samples ({content.describe})"
            if photometric not in _VL_PHOTOMETRIC:
                return (f"VL Photographic Image does not allow Photometric Interpretation {photometric!r} "
                        f"({content.describe})")
            if content.lossy_colour_jpeg and photometric != "YBR_FULL_422":
                return (f"VL Photographic Image needs YBR_FULL_422 for a lossy colour JPEG, and this one is "
                        f"{photometric} coded ({content.describe})")
            if self._pixel(content, "PixelRepresentation") not in (0, None):
                return "VL Photographic Image needs unsigned samples"
        return ""

    def _pixel(self, content: _Media, keyword: str) -> Any:
        """Return the value an Image Pixel attribute will have: derived, or received when that fits too."""
        derived = content.description.get(keyword)
        received = self.received.get(keyword)
        allowed = content.acceptable.get(keyword, frozenset())
        keep = received is not None and received != "" and (
            derived is None or any(_same(received, a) for a in allowed))
        values = _values(received if keep else derived)
        first = values[0] if values else None
        if keyword == "PhotometricInterpretation":
            return str(first).strip() if first is not None else None
        return _int_or_none(first)

    def _uids(self) -> None:
        """Supplement missing Study / Series / SOP Instance UIDs (WIC-IM-010), or reject."""
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if _uid_of(self.ds, keyword) is not None:
                continue
            if not self.policy.supplement_uids:
                raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                              f"{self.where}: {_name(tag_for_keyword(keyword) or 0)} is missing or empty and this "
                              "Image Manager does not supplement UIDs")
            if keyword == "StudyInstanceUID" and self.target_study:
                value, origin = self.target_study, "from the target URL"
            else:
                value, origin = new_uid(), "new"
            self._record_and_set(_REASON_COERCE, keyword, value)
            self.supplemented.append(f"{keyword} {value} ({origin})")

    def _apply_content(self, content: _Media, sop_class: str) -> None:
        """Put the bitstream in and derive what it implies; correct contradicting received values."""
        for keyword, value in content.description.items():
            if value is None:
                if self._empty(keyword):
                    raise _Reject(FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                                  f"{self.where}: {keyword} cannot be told from {content.describe} and the metadata "
                                  "does not give it")
                continue
            self._derive(keyword, value, content.acceptable.get(keyword, frozenset()))
        if content.description.get("SamplesPerPixel") == 1 and "PlanarConfiguration" in self.ds:
            self._remove(_REASON_CORRECT, "PlanarConfiguration", "only allowed with more than one sample")
        if "FrameTimeVector" in content.description and "FrameTime" in self.ds:
            self._remove(_REASON_CORRECT, "FrameTime", "the frames have different durations")
        for keyword, value in content.defaults.items():
            self._default(keyword, value)
        if content.kind == _DOCUMENT:
            self.ds.EncapsulatedDocument = content.value + (b"\x00" if len(content.value) % 2 else b"")
            self.ds["EncapsulatedDocument"].VR = "OB"
        else:
            self.ds.add(DataElement(_PIXEL_DATA, content.vr, content.value,
                                    is_undefined_length=content.encapsulated))
        fixed = _FIXED_MODALITY.get(sop_class)
        if fixed is not None and not self._empty("Modality") and str(self.ds.Modality).strip() != fixed:
            self._derive("Modality", fixed, frozenset())

    def _complete(self, sop_class: str, content: _Media) -> None:
        """Supplement what the target IOD still needs: documented Type 1 defaults and empty Type 2 attributes."""
        now = self.now
        date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        self._default("Modality", _FIXED_MODALITY.get(sop_class) or _DEFAULT_MODALITY[sop_class])
        self._default("SeriesNumber", "1")
        self._default("InstanceNumber", "1")
        self._default("InstanceCreationDate", date)
        self._default("InstanceCreationTime", time)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                        "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer"):
            self._type2(keyword)
        if sop_class in _SC_EQUIPMENT:
            self._default("ConversionType", ConversionTypeValues.WSD.value)
        if content.kind in (_IMAGE, _VIDEO):
            self._default("ContentDate", date)
            self._default("ContentTime", time)
            self._type2("PatientOrientation")
            self._type2("Laterality")
        if sop_class in _VL_IMAGE:
            self._default("ImageType", ["ORIGINAL", "PRIMARY"])
            self._type2("AcquisitionContextSequence")
            self._type2("LossyImageCompression")
        if sop_class in _VIDEO_CLASSES and self._empty("AnatomicRegionSequence"):
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _UNKNOWN_TOPOGRAPHY
            self._default("AnatomicRegionSequence", DicomSequence([code]),
                          shown="Anatomic Region Sequence (87100004, SCT, 'Topography unknown'): the video IOD "
                                "requires it")
        if sop_class in _MULTIFRAME_SC:
            self._default("BurnedInAnnotation", "YES")
            if str(self.ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
                self._default("PresentationLUTShape", "IDENTITY")
                self._default("RescaleIntercept", "0")
                self._default("RescaleSlope", "1")
                self._default("RescaleType", "US")
        if sop_class == _ENCAPSULATED_PDF:
            self._default("BurnedInAnnotation", "YES")
            self._default("ContentDate", date)
            self._default("ContentTime", time)
            for keyword in ("AcquisitionDateTime", "DocumentTitle", "ConceptNameCodeSequence"):
                self._type2(keyword)

    def _character_set(self) -> None:
        """Declare "ISO_IR 192" when non-ASCII text is present and the declared set cannot encode it (CONV-009)."""
        texts = [t for t in (*_texts(self.ds), *_texts(self.received)) if not t.isascii()]
        if not texts:
            return
        declared = self.ds.get("SpecificCharacterSet")
        terms = [str(t) for t in (declared if isinstance(declared, list | tuple) or
                                  type(declared).__name__ == "MultiValue" else [declared or ""])]
        if not any(t.strip() for t in terms):
            self._default("SpecificCharacterSet", _UNICODE,
                          shown=f"Specific Character Set {_UNICODE!r}: the metadata holds non-ASCII text")
            return
        if all(_encodable(t, terms) for t in texts):
            return
        self._record_and_set(_REASON_CORRECT, "SpecificCharacterSet", _UNICODE)
        self.corrected.append(f"SpecificCharacterSet {chr(92).join(terms)!r} -> {_UNICODE!r} (it cannot encode "
                              "the text received)")

    def _original_attributes(self) -> list[Dataset]:
        """Write one Original Attributes Sequence item per kind of change (PS3.3 C.12.1.1.9)."""
        items: list[Dataset] = []
        for record in self.records.values():
            if not record.elements:
                continue
            modified = Dataset()
            for tag in sorted(record.elements):
                modified.add(record.elements[tag])
            item = Dataset()
            item.AttributeModificationDateTime = self.now.strftime("%Y%m%d%H%M%S")
            item.ModifyingSystem = self.policy.modifying_system
            item.ReasonForTheAttributeModification = record.reason
            item.SourceOfPreviousValues = ""
            item.ModifiedAttributesSequence = DicomSequence([modified])
            items.append(item)
        if items:
            existing = list(self.ds.get("OriginalAttributesSequence") or [])
            self.ds.OriginalAttributesSequence = DicomSequence(existing + items)
        return items

    def _file_meta(self, sop_class: str, transfer_syntax: str) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class)
        meta.MediaStorageSOPInstanceUID = UID(str(self.ds.SOPInstanceUID))
        meta.TransferSyntaxUID = UID(transfer_syntax)
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        self.ds.file_meta = meta
        self.ds.preamble = b"\x00" * 128

    # -- element helpers ------------------------------------------------------------------------------
    def _empty(self, keyword: str) -> bool:
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in self.ds:
            return True
        return _is_empty(self.ds[tag])

    def _set(self, keyword: str, value: Any) -> None:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        if tag in self.ds:
            del self.ds[tag]
        vr = {"PixelData": "OB", "FrameIncrementPointer": "AT"}.get(keyword) or dictionary_VR(tag)
        self.ds.add(DataElement(tag, vr, value))

    def _record_and_set(self, reason: str, keyword: str, value: Any) -> None:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        vr = dictionary_VR(tag)
        previous = self.ds[tag] if tag in self.ds else DataElement(tag, vr, empty_value_for_VR(vr))
        self.records[reason].keep(previous)
        self._set(keyword, value)

    def _remove(self, reason: str, keyword: str, why: str) -> None:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        self.records[reason].keep(self.ds[tag])
        self.corrected.append(f"{keyword} {_show(self.ds[tag].value)} removed ({why})")
        del self.ds[tag]

    def _derive(self, keyword: str, value: Any, acceptable: frozenset[Any]) -> None:
        """Set a value the content implies; a contradicting received value is corrected and recorded."""
        if self._empty(keyword):
            self._set(keyword, value)
            return
        current = self.ds[keyword].value
        if _same(current, value) or any(_same(current, a) for a in acceptable):
            return
        self._record_and_set(_REASON_CORRECT, keyword, value)
        self.corrected.append(f"{keyword} {_show(current)} -> {_show(value)}")

    def _default(self, keyword: str, value: Any, *, shown: str = "") -> None:
        """Set a documented default when the metadata has no (or an empty) value."""
        if not self._empty(keyword):
            return
        self._set(keyword, value)
        self.defaults.append(shown or f"{keyword} {_show(value)}")

    def _type2(self, keyword: str) -> None:
        """Add a Type 2 attribute with an empty value when it is absent (never invents a value)."""
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        if tag in self.ds:
            return
        vr = dictionary_VR(tag)
        self.ds.add(DataElement(tag, vr, DicomSequence() if vr == "SQ" else empty_value_for_VR(vr)))
        self.empties.append(keyword)


# =====================================================================================================
# Value helpers
# =====================================================================================================


def _tag_text(tag: int | str) -> str:
    value = int(tag, 16) if isinstance(tag, str) else tag
    return f"({value >> 16:04X},{value & 0xFFFF:04X})"


def _name(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return f"{keyword} {_tag_text(tag)}" if keyword else _tag_text(tag)


def _is_empty(elem: DataElement) -> bool:
    value = elem.value
    if value is None:
        return True
    if isinstance(value, str | bytes):
        return not value.strip(" \x00") if isinstance(value, str) else not value
    if isinstance(value, list | tuple) or type(value).__name__ in ("MultiValue", "Sequence"):
        return len(value) == 0
    return str(value).strip() == ""


def _values(value: Any) -> list[Any]:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            return Decimal(int(value))
        if isinstance(value, float | Decimal):
            return Decimal(repr(float(value))) if isinstance(value, float) else value
        if isinstance(value, str):
            return Decimal(value.strip())
    except (InvalidOperation, ValueError):
        return None
    return None


def _same(a: Any, b: Any) -> bool:
    """Compare a received value with a derived one after VR normalisation (padding, numbers, multi-values)."""
    left, right = _values(a), _values(b)
    if len(left) != len(right):
        return False
    for x, y in zip(left, right, strict=True):
        nx, ny = _number(x), _number(y)
        if nx is not None and ny is not None:
            if nx == ny:
                continue
            if (nx == nx.to_integral_value() and ny == ny.to_integral_value()) or \
                    not math.isclose(float(nx), float(ny), rel_tol=0.01):
                return False
            continue
        if str(x).strip(" \x00") != str(y).strip(" \x00"):
            return False
    return True


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, int) and not isinstance(value, bool) and type(value).__name__ == "BaseTag":
        return _tag_text(value)
    values = _values(value)
    if not values or values == [None] or values == [""]:
        return "<empty>"
    return repr("\\".join(str(v) for v in values))


def _texts(ds: Dataset) -> Iterator[str]:
    """Yield every text value (SH, LO, ST, LT, UT, UC, PN), recursively."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _texts(item)
        elif elem.VR in _TEXT_VRS and elem.value is not None:
            for value in _values(elem.value):
                if value is not None:
                    yield str(value)


def _encodable(text: str, terms: list[str]) -> bool:
    """Return whether every character of ``text`` is encodable by one of the character sets ``terms``.

    References
    ----------
    PS3.5 §6.1 and PS3.3 Tables C.12-2 to C.12-5 (Specific Character Set defined terms).
    """
    codecs, unknown = codecs_for_terms(terms)
    if unknown:
        return False
    return text_encodable(text, codecs)
