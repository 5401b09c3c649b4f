"""IOD rules the bundled tables cannot carry: consistency between attributes, value forms, conditions in prose.

:class:`~wic_conformance.validate.iod.DicomValidatorEngine` runs them on the bundled
IOD tables (``standard_path: bundled``) only, after dicom-validator has judged each
attribute's Type, condition and Enumerated Values.  Each rule is a pure function of a
data set returning :class:`~wic_conformance.validate.iod.IodMessage` errors, and encodes
one statement of PS3.3 or PS3.5, named in its docstring.

The rules refuse only what the standard refuses *and* dciodvfy, the reference engine,
refuses too: where dciodvfy is laxer than the standard's text, a rule follows dciodvfy
(each docstring says where), so that the Image Manager's gate never refuses an instance
the reference accepts.  They are on the Manager's request path: no data set copies, no
regular expression compiled per call, dictionary lookups through pydicom's data
dictionary, and a value :func:`~wic_conformance.dicomweb.part10.read_part10` deferred
(Pixel Data over 64 KiB) is never read: its length comes from the element header.

References
----------
PS3.3 C.7.3.1 (General Series), C.7.6.1 (General Image), C.7.6.3 (Image Pixel),
C.7.6.6 (Multi-frame), C.8.12.1 (VL Image); PS3.5 6.1 (character repertoires), 6.2 (Value
Representations), 8.1.1 (native pixel data), 8.2 (encapsulated pixel data), A.4 (Basic
Offset Table).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag, Tag

from wic_conformance.dicomweb.charset import codecs_for_terms
from wic_conformance.findings import Severity
from wic_conformance.validate import iod  # iod imports this module too: IodMessage is looked up when a rule runs

__all__ = [
    "frame_count_messages",
    "image_pixel_messages",
    "laterality_messages",
    "patient_orientation_messages",
    "person_name_messages",
    "rule_messages",
    "sc_modality_messages",
    "text_value_messages",
    "vl_photometric_messages",
]

# The IODs the rules know, by SOP Class UID (PS3.4 B.5).
#: The IODs with the VL Image Module (PS3.3 A.32.1, A.32.2, A.32.4 to A.32.7).
_VL_IODS = frozenset({
    "1.2.840.10008.5.1.4.1.1.77.1.1", "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # VL / Video Endoscopic
    "1.2.840.10008.5.1.4.1.1.77.1.2", "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # VL / Video Microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # VL / Video Photographic
})
#: The multi-frame Secondary Capture IODs (PS3.3 A.8.2 to A.8.5).
_MULTI_FRAME_SC_IODS = frozenset({"1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2",
                                  "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4"})
#: The Secondary Capture image IODs (PS3.3 A.8), with the SC Equipment Module.
_SC_IODS = _MULTI_FRAME_SC_IODS | {"1.2.840.10008.5.1.4.1.1.7"}
#: The image IODs: General Series, General Image and Image Pixel Modules.
_IMAGE_IODS = _VL_IODS | _SC_IODS
#: The image IODs with the Multi-frame Module; the others describe one frame.
_MULTI_FRAME_IODS = _MULTI_FRAME_SC_IODS | {"1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.840.10008.5.1.4.1.1.77.1.2.1",
                                            "1.2.840.10008.5.1.4.1.1.77.1.4.1"}

_SPECIFIC_CHARACTER_SET = Tag(0x0008, 0x0005)
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _error(tag: BaseTag | int, text: str, module: str = "") -> iod.IodMessage:
    """Return an error about ``tag``, worded and located as the engine's other messages are."""
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return iod.IodMessage(Severity.ERROR, f"{where} {text}", where, module, raw=f"{where} {text}")


def _sop_class(ds: Dataset) -> str:
    return str(ds.get("SOPClassUID", ""))


def _int(ds: Dataset, keyword: str) -> int | None:
    """Return the single integer value of ``keyword``, or ``None`` when absent, empty, multiple or not a number."""
    value = ds.get(keyword)
    if value is None or value == "" or isinstance(value, MultiValue | list):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(ds: Dataset, keyword: str) -> str:
    """Return the single string value of ``keyword`` (``""`` when absent, empty or multiple)."""
    value = ds.get(keyword)
    return value.strip() if isinstance(value, str) else ""


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""


# --------------------------------------------------------------------------------------------
# PS3.5 6.1 and 6.2: values of the text Value Representations
# --------------------------------------------------------------------------------------------

#: The longest component group of a PN value (PS3.5 Table 6.2-1), in characters.
_PN_GROUP_LENGTH = 64
#: The most component delimiters (``^``) in one PN component group: five components (PS3.5 6.2.1.1).
_PN_DELIMITERS = 4

#: Control characters a short text value may not hold: all but ESC (PS3.5 Table 6.2-1: SH, LO, PN, UC).
_SHORT_TEXT_CONTROLS = re.compile("[\x00-\x1a\x1c-\x1f\x7f]")
#: Control characters a long text value may not hold: all but TAB, LF, FF, CR and ESC (ST, LT, UT).
_LONG_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_TEXT_CONTROLS = {"SH": _SHORT_TEXT_CONTROLS, "LO": _SHORT_TEXT_CONTROLS, "PN": _SHORT_TEXT_CONTROLS,
                  "UC": _SHORT_TEXT_CONTROLS, "ST": _LONG_TEXT_CONTROLS, "LT": _LONG_TEXT_CONTROLS,
                  "UT": _LONG_TEXT_CONTROLS}


def _elements(ds: Dataset, vrs: frozenset[str]) -> Iterator[DataElement]:
    """Yield the elements of ``ds`` and of its items (any depth) whose VR is one of ``vrs``, in data set order.

    A value deferred by the reader, or of a VR outside ``vrs``, is not read.
    """
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        vr = raw.VR if raw is not None else None
        if vr == "SQ":
            for item in ds[tag].value or ():
                yield from _elements(item, vrs)
        elif vr in vrs and not (isinstance(raw, RawDataElement) and raw.value is None and raw.length):
            yield ds[tag]


def _strings(elem: DataElement) -> list[str]:
    value = elem.value
    values = value if isinstance(value, MultiValue | list) else [value]
    return [str(v) for v in values if v not in (None, "")]


def person_name_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return errors where a PN value has an over-long component group or too many components (PS3.5 6.2).

    PS3.5 Table 6.2-1 allows 64 characters per component group (alphabetic,
    ideographic, phonetic) and 6.2.1.1 five components (four ``^``) per group.  Every
    PN value of the data set and its items is judged.  Groups beyond the third are not
    counted: dciodvfy accepts them.
    """
    out = []
    for elem in _elements(ds, frozenset({"PN"})):
        for value in _strings(elem):
            for group in value.split("="):
                if len(group) > _PN_GROUP_LENGTH:
                    out.append(_error(elem.tag, f"{elem.name}: component group of {len(group)} characters "
                                                f"(PS3.5 Table 6.2-1 allows {_PN_GROUP_LENGTH})"))
                if group.count("^") > _PN_DELIMITERS:
                    out.append(_error(elem.tag, f"{elem.name}: {group.count('^') + 1} components in a group "
                                                "(PS3.5 6.2.1.1 allows five)"))
    return out


def text_value_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return errors where a text value holds characters its VR or the character set does not allow (PS3.5 6.1, 6.2).

    SH, LO, PN and UC values may hold no control character but ESC; ST, LT and UT
    values none but TAB, LF, FF, CR and ESC (PS3.5 Table 6.2-1).  Characters outside the
    default repertoire (ISO 646) need a Specific Character Set (0008,0005) naming a
    character set (PS3.5 6.1.2.2, PS3.3 C.12.1.1.2); which of its characters the named
    sets hold is not judged, as dciodvfy does not.  An item's own Specific Character Set
    applies to the item.
    """
    return _text_value_messages(ds, _names_charset(ds, default=False))


def _names_charset(ds: Dataset, *, default: bool) -> bool:
    """Return whether ``ds`` declares a known character set (``default``: what its parent declares)."""
    if _SPECIFIC_CHARACTER_SET not in ds:
        return default
    value = ds[_SPECIFIC_CHARACTER_SET].value
    terms = [str(v) for v in (value if isinstance(value, MultiValue | list) else [value])]
    return any(codec != "ascii" for codec in codecs_for_terms(terms)[0])


def _text_value_messages(ds: Dataset, extended: bool) -> list[iod.IodMessage]:
    out = []
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        vr = raw.VR if raw is not None else None
        if vr == "SQ":
            for item in ds[tag].value or ():
                out += _text_value_messages(item, _names_charset(item, default=extended))
            continue
        controls = _TEXT_CONTROLS.get(vr or "")
        if controls is None or (isinstance(raw, RawDataElement) and raw.value is None and raw.length):
            continue
        elem = ds[tag]
        for value in _strings(elem):
            if controls.search(value):
                out.append(_error(tag, f"{elem.name}: a control character {vr} does not allow (PS3.5 Table 6.2-1)"))
            if not extended and not value.isascii():
                out.append(_error(tag, f"{elem.name}: characters outside the default repertoire without a "
                                       "Specific Character Set (0008,0005) naming their character set (PS3.5 6.1.2)"))
    return out


# --------------------------------------------------------------------------------------------
# PS3.3 C.7.6.3: the Image Pixel Module; PS3.5 8: pixel data
# --------------------------------------------------------------------------------------------

#: Samples per Pixel each Photometric Interpretation allows (PS3.3 C.7.6.3.1.2; retired values left out).
_PHOTOMETRIC_SAMPLES = {"MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "YBR_FULL": 3,
                        "YBR_FULL_422": 3, "YBR_PARTIAL_420": 3, "YBR_ICT": 3, "YBR_RCT": 3}
#: Transfer Syntaxes whose pixel data are native (not encapsulated; PS3.5 8.1, A.1 to A.3, A.5).
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
                              "1.2.840.10008.1.2.2"})
#: Native Transfer Syntaxes with explicit VRs, where the Pixel Data VR is the writer's choice (PS3.5 A.2).
_EXPLICIT_NATIVE_SYNTAXES = _NATIVE_SYNTAXES - {"1.2.840.10008.1.2"}


def image_pixel_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return errors against the Image Pixel Module's consistency rules (PS3.3 C.7.6.3), for the image IODs.

    * Photometric Interpretation (0028,0004) is one C.7.6.3.1.2 defines (no Transfer
      Syntax supports another) and used with the Samples per Pixel it requires; YBR_PARTIAL_420
      only for encapsulated pixel data.  dciodvfy also accepts YBR_ICT and YBR_RCT for native
      pixel data, so they are not refused there.
    * Planar Configuration (0028,0006) is absent when Samples per Pixel is 1 (C.7.6.3.1.3).
    * Rows and Columns are not zero; Bits Stored is not zero and fits below High Bit, which
      is less than Bits Allocated.  High Bit one less than Bits Stored is not required
      beyond that, and a High Bit of 0 is not compared with Bits Stored: dciodvfy accepts both.
    * Pixel Data (7FE0,0010) is present unless Pixel Data Provider URL (0028,7FE0) is
      (Type 1C) and not empty; native pixel data are exactly Rows x Columns x Number of
      Frames x Samples per Pixel (2 for YBR_FULL_422, C.7.6.3.1.2) x Bits Allocated bits,
      padded to even length (PS3.5 8.1.1), and OW when Bits Allocated exceeds 8 in an
      explicit VR Transfer Syntax (PS3.5 A.2).
    """
    if _sop_class(ds) not in _IMAGE_IODS:
        return []
    out = []
    samples = _int(ds, "SamplesPerPixel")
    photometric = _text(ds, "PhotometricInterpretation")
    syntax = _transfer_syntax(ds)
    native = syntax in _NATIVE_SYNTAXES
    module = "Image Pixel"
    if photometric:
        wanted = _PHOTOMETRIC_SAMPLES.get(photometric)
        if wanted is None:
            out.append(_error(0x00280004, f"Photometric Interpretation {photometric!r} is not one PS3.3 C.7.6.3.1.2 "
                                          "defines", module))
        elif samples is not None and samples != wanted:
            out.append(_error(0x00280002, f"Samples per Pixel is {samples}; Photometric Interpretation "
                                          f"{photometric} requires {wanted} (PS3.3 C.7.6.3.1.2)", module))
        if native and photometric == "YBR_PARTIAL_420":
            out.append(_error(0x00280004, "Photometric Interpretation YBR_PARTIAL_420 is only for encapsulated "
                                          "pixel data (PS3.3 C.7.6.3.1.2)", module))
    if samples == 1 and "PlanarConfiguration" in ds:
        out.append(_error(0x00280006, "Planar Configuration is present with one sample per pixel "
                                      "(PS3.3 C.7.6.3.1.3)", module))
    for keyword, tag in (("Rows", 0x00280010), ("Columns", 0x00280011), ("BitsStored", 0x00280101)):
        if _int(ds, keyword) == 0:
            out.append(_error(tag, f"{keyword} is zero", module))
    allocated, stored, high = _int(ds, "BitsAllocated"), _int(ds, "BitsStored"), _int(ds, "HighBit")
    if allocated is not None and high is not None and high >= allocated:
        out.append(_error(0x00280102, f"High Bit {high} is not below Bits Allocated {allocated} (PS3.3 C.7.6.3)",
                          module))
    if stored is not None and high and stored > high + 1:
        out.append(_error(0x00280101, f"Bits Stored {stored} exceeds High Bit {high} + 1 (PS3.3 C.7.6.3)", module))
    out += _pixel_data_messages(ds, syntax, samples, photometric, allocated)
    return out


def _pixel_data_messages(ds: Dataset, syntax: str, samples: int | None, photometric: str,
                         allocated: int | None) -> list[iod.IodMessage]:
    module = "Image Pixel"
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if raw is None:
        if "PixelDataProviderURL" not in ds:
            return [_error(_PIXEL_DATA, "Pixel Data is missing (Type 1C: Pixel Data Provider URL is absent)",
                           module)]
        return []
    length = _value_length(raw)
    if length == 0:
        return [_error(_PIXEL_DATA, "Pixel Data is empty (Type 1C)", module)]
    if syntax not in _NATIVE_SYNTAXES:
        return []
    out = []
    if syntax in _EXPLICIT_NATIVE_SYNTAXES and raw.VR == "OB" and allocated is not None and allocated > 8:
        out.append(_error(_PIXEL_DATA, f"native Pixel Data is OB with Bits Allocated {allocated}; OW is required "
                                       "above 8 (PS3.5 A.2)", module))
    rows, columns, frames = _int(ds, "Rows"), _int(ds, "Columns"), _int(ds, "NumberOfFrames") or 1
    if None in (rows, columns, samples, allocated) or length == _UNDEFINED_LENGTH:
        return out
    planes = 2 if photometric == "YBR_FULL_422" else samples
    expected = (rows * columns * frames * planes * allocated + 7) // 8  # type: ignore[operator]
    expected += expected % 2
    if length != expected:
        out.append(_error(_PIXEL_DATA, f"native Pixel Data holds {length} bytes; Rows, Columns, Number of Frames, "
                                       f"Samples per Pixel and Bits Allocated make {expected} (PS3.5 8.1.1)", module))
    return out


def _value_length(raw: DataElement | RawDataElement) -> int:
    """Return a value's length in bytes without reading a deferred value (the header's length)."""
    if isinstance(raw, RawDataElement) and raw.value is None:
        return raw.length
    return len(raw.value) if raw.value is not None else 0


#: The Photometric Interpretations a VL Image allows per Transfer Syntax (PS3.3 C.8.12.1.1.1): RGB for native
#: and lossless syntaxes without a colour transformation, YBR_FULL_422 for lossy JPEG, YBR_RCT/YBR_ICT for JPEG
#: 2000, YBR_PARTIAL_420 (only) for MPEG-2.  dciodvfy does not check the MPEG-4 AVC and HEVC syntaxes, nor do these.
_VL_PHOTOMETRIC = {
    **dict.fromkeys(("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57",
                     "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
                    frozenset({"MONOCHROME2", "RGB"})),
    **dict.fromkeys(("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"), frozenset({"MONOCHROME2", "YBR_FULL_422"})),
    "1.2.840.10008.1.2.4.90": frozenset({"MONOCHROME2", "YBR_RCT"}),
    "1.2.840.10008.1.2.4.91": frozenset({"MONOCHROME2", "YBR_ICT", "YBR_RCT"}),
    **dict.fromkeys(("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"), frozenset({"YBR_PARTIAL_420"})),
}


def vl_photometric_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return an error where a VL image's Photometric Interpretation does not fit its Transfer Syntax.

    PS3.3 C.8.12.1.1.1: RGB for uncompressed or lossless compressed Transfer Syntaxes
    without a colour space transformation, YBR_ICT for irreversible and YBR_RCT for
    reversible JPEG 2000, YBR_PARTIAL_420 for MPEG-2 and YBR_FULL_422 for lossy JPEG
    (MONOCHROME2 with any but MPEG-2, whose PS3.5 8.2.5 requires YBR_PARTIAL_420).  The
    MPEG-4 AVC and HEVC Transfer Syntaxes are not judged: dciodvfy accepts any value there.
    """
    if _sop_class(ds) not in _VL_IODS:
        return []
    allowed = _VL_PHOTOMETRIC.get(_transfer_syntax(ds))
    photometric = _text(ds, "PhotometricInterpretation")
    if allowed is None or not photometric or photometric in allowed:
        return []
    return [_error(0x00280004, f"Photometric Interpretation {photometric} does not fit Transfer Syntax "
                               f"{_transfer_syntax(ds)}; it allows {', '.join(sorted(allowed))} (PS3.3 C.8.12.1.1.1)",
                   "VL Image")]


def frame_count_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return errors in Number of Frames (0028,0008) and the Basic Offset Table, for the image IODs.

    Number of Frames is not zero (PS3.3 C.7.6.6); an IOD without the Multi-frame Module
    describes one frame, so a Number of Frames it carries is 1; a Basic Offset Table that
    is not empty has one offset per frame (PS3.5 A.4).  Deferred pixel data are not read.
    """
    sop = _sop_class(ds)
    if sop not in _IMAGE_IODS or "NumberOfFrames" not in ds:
        frames = 1
    else:
        frames = _int(ds, "NumberOfFrames") or 0
        if frames == 0:
            return [_error(0x00280008, "Number of Frames is zero or not a number (PS3.3 C.7.6.6)", "Multi-frame")]
        if sop not in _MULTI_FRAME_IODS and frames != 1:
            return [_error(0x00280008, f"Number of Frames is {frames} in a single-frame IOD")]
    if sop not in _IMAGE_IODS or _transfer_syntax(ds) in _NATIVE_SYNTAXES:
        return []
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    value = raw.value if raw is not None else None
    if not isinstance(value, bytes) or len(value) < 8 or value[:4] != b"\xfe\xff\x00\xe0":
        return []
    offsets = int.from_bytes(value[4:8], "little")
    if offsets and offsets != 4 * frames:
        return [_error(_PIXEL_DATA, f"the Basic Offset Table holds {offsets // 4} offset(s) for {frames} frame(s) "
                                    "(PS3.5 A.4)", "Image Pixel")]
    return []


# --------------------------------------------------------------------------------------------
# PS3.3 C.7.6.1 and C.7.3.1: conditions and values stated in prose
# --------------------------------------------------------------------------------------------

#: Patient Orientation of a biped: letters A, P, R, L, H, F (PS3.3 C.7.6.1.1.1).
_BIPED_ORIENTATION = re.compile("[APRLHF]+")
#: Patient Orientation of a quadruped: the abbreviations of PS3.3 C.7.6.1.1.1.
_QUADRUPED_ORIENTATION = re.compile("(?:CD|CR|DI|LE|PA|PL|PR|RT|D|L|M|R|V)+")
_OPPOSITES = (("L", "R"), ("A", "P"), ("H", "F"))


def patient_orientation_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return errors against Patient Orientation (0020,0020) of the General Image Module (PS3.3 C.7.6.1).

    It is Type 2C, required when the image does not require Image Orientation (Patient)
    or (Slide): none of the image IODs of the tables does, so it is required there.  Its
    values (C.7.6.1.1.1) are made of the letters A, P, R, L, H and F, never two opposite
    ones in one value, or for a quadruped (Anatomical Orientation Type QUADRUPED) of the
    abbreviations LE, RT, D, V, CR, CD, R, M, L, PR, DI, PA and PL; they are judged
    whatever the IOD, as dciodvfy does.
    """
    if "PatientOrientation" not in ds:
        if _sop_class(ds) in _IMAGE_IODS:
            return [_error(0x00200020, "Patient Orientation is missing (Type 2C: the IOD does not require Image "
                                       "Orientation (Patient))", "General Image")]
        return []
    quadruped = _text(ds, "AnatomicalOrientationType") == "QUADRUPED"
    out = []
    for value in _strings(ds["PatientOrientation"]):
        if quadruped:
            if not _QUADRUPED_ORIENTATION.fullmatch(value):
                out.append(_error(0x00200020, f"Patient Orientation value {value!r} is not made of the quadruped "
                                              "abbreviations of PS3.3 C.7.6.1.1.1", "General Image"))
        elif not _BIPED_ORIENTATION.fullmatch(value):
            out.append(_error(0x00200020, f"Patient Orientation value {value!r} is not made of A, P, R, L, H and F "
                                          "(PS3.3 C.7.6.1.1.1)", "General Image"))
        elif any(a in value and b in value for a, b in _OPPOSITES):
            out.append(_error(0x00200020, f"Patient Orientation value {value!r} holds opposite directions "
                                          "(PS3.3 C.7.6.1.1.1)", "General Image"))
    return out


#: Paired anatomic regions of CID 4031 (PS3.16 Annex L), by pydicom concept keyword.
_PAIRED_REGIONS = (
    "AcromioclavicularJoint", "AnkleJoint", "ApexOfLung", "BoneOfLowerLimb", "BoneOfUpperLimb", "Breast", "Calcaneus",
    "Clavicle", "ElbowJoint", "Eye", "EyeRegion", "Femur", "Fibula", "Finger", "Foot", "Forearm", "Hand", "Hip",
    "HipJoint", "Humerus", "InternalAuditoryCanal", "Knee", "LowerLeg", "LowerLimb", "MastoidBone", "MuscleOfLowerLimb",
    "MuscleOfUpperLimb", "OpticCanal", "OrbitalStructure", "ParotidGland", "Patella", "Rib", "SacroiliacJoint",
    "Scapula", "SesamoidBonesOfFoot", "Shoulder", "SternoclavicularJoint", "SubmandibularGland", "TarsalJoint",
    "TemporomandibularJoint", "Thigh", "Thumb", "Toe", "UpperArm", "UpperLimb", "Ureter", "WristJoint", "Zygoma",
)
_PAIRED_CODES = frozenset((getattr(codes.SCT, name).scheme_designator, getattr(codes.SCT, name).value)
                          for name in _PAIRED_REGIONS)
#: Paired Body Part Examined (0018,0015) Defined Terms (PS3.16 Annex L).
_PAIRED_BODY_PARTS = frozenset({
    "ACJOINT", "ANKLE", "ARM", "BREAST", "CALCANEUS", "CLAVICLE", "ELBOW", "EYE", "FEMUR", "FIBULA", "FINGER", "FOOT",
    "FOREARM", "HAND", "HIP", "HUMERUS", "KIDNEY", "KNEE", "LEG", "ORBIT", "PAROTID", "PATELLA", "RADIUS", "SCAPULA",
    "SCJOINT", "SHOULDER", "SIJOINT", "THIGH", "THUMB", "TIBIA", "TMJ", "TOE", "ULNA", "WRIST", "ZYGOMA",
})
_OTHER_LATERALITIES = ("ImageLaterality", "FrameLaterality", "MeasurementLaterality")


def laterality_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return an error where Laterality (0020,0060) of the General Series Module is missing though required.

    PS3.3 C.7.3.1: Type 2C, required when the body part examined is a paired structure
    and neither Image, Frame nor Measurement Laterality is present.  The body part is the
    Body Part Examined (0018,0015) and the Anatomic Region Sequence (0008,2218) codes; an
    image that names neither is held to the requirement, as dciodvfy holds it.  A body
    part not known to be paired (PS3.16 Annex L), or an image with functional groups
    (which may carry Frame Laterality), is not.
    """
    if (_sop_class(ds) not in _IMAGE_IODS or "Laterality" in ds
            or any(keyword in ds for keyword in _OTHER_LATERALITIES)
            or "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds):
        return []
    body_part = _text(ds, "BodyPartExamined").upper()
    regions = [(str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeValue", "")))
               for item in ds.get("AnatomicRegionSequence") or ()]
    if (body_part or regions) and body_part not in _PAIRED_BODY_PARTS and _PAIRED_CODES.isdisjoint(regions):
        return []
    what = "an image that does not name its body part" if not (body_part or regions) else "a paired body part"
    return [_error(0x00200060, f"Laterality is missing (Type 2C: required for {what} without Image Laterality)",
                   "General Series")]


def sc_modality_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return an error where a Secondary Capture image has an empty Modality (0008,0060).

    PS3.3 C.8.6.1: the SC Equipment Module's Modality (Type 3) overrides the General Series
    Module's, so it may be absent; dciodvfy holds a present one to Type 1C (it must have a
    value), and the gate follows it, so that what it stores passes dciodvfy.
    """
    if _sop_class(ds) not in _SC_IODS or "Modality" not in ds or _text(ds, "Modality"):
        return []
    return [_error(0x00080060, "Modality is present but empty (held to Type 1C, as dciodvfy holds it)",
                   "General Series")]


def rule_messages(ds: Dataset) -> list[iod.IodMessage]:
    """Return the errors of every rule of this module, in a fixed order."""
    return [*person_name_messages(ds), *text_value_messages(ds), *image_pixel_messages(ds),
            *vl_photometric_messages(ds), *frame_count_messages(ds), *patient_orientation_messages(ds),
            *laterality_messages(ds), *sc_modality_messages(ds)]

