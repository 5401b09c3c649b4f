# ruff: noqa: D401 - a check's first docstring line states the property that must hold, not a command
"""Checks on the Image Manager's conversion of a STOW-RS submission into stored PS3.10 instances.

Each check compares what a Capturer submitted (the exchange's request: DICOM
JSON/XML metadata with bulk data parts, or PS3.10 parts) with the instances the
Image Manager stored and that were retrieved afterwards (the exchange's
``retrieved`` documents).  Submitted and stored instances are paired by SOP
Instance UID; an Original Attributes Sequence item recording a changed SOP
Instance UID also pairs them; a submitted instance without a SOP Instance UID
(the Image Manager supplemented one) is paired by order with the stored
instances nobody else claims, which ``conversion_preserves_attributes`` reports
as information (WIC-IM-010).

Finding IDs per check (the first is the main one):

* ``conversion_is_part10``: CONV-001 (preamble, DICM, File Meta, encoding, Media Storage
  UIDs); WIC-IM-012 (Implicit VR Little Endian); WIC-IM-001 (info: a submitted instance
  was not retrieved, so it is not judged).
* ``conversion_preserves_attributes``: CONV-002 (unrecorded change or removal);
  WIC-IM-003 (info: recorded coercion); WIC-IM-010 (info: paired by order).
* ``conversion_keeps_compressed_bitstream``: CONV-003.
* ``conversion_transfer_syntax_matches_media``: WIC-IM-005 (image/jpeg, jp2, jpx, video),
  WIC-IM-006 (image/png, image/gif), WIC-IM-008 (application/pdf), WIC-IM-020 (declared
  transfer-syntax parameter not honoured), WIC-IM-021 (a contradicting declared
  transfer syntax stored as is).
* ``conversion_pixel_description_matches_bitstream``: CONV-004 (values), WIC-IM-007
  (attribute missing), WIC-IM-022 (lossy JPEG: Lossy Image Compression, Photometric
  Interpretation), WIC-IM-006 (GIF frames).
* ``conversion_video_attributes_match_stream``: CONV-005.
* ``conversion_encapsulated_document_matches``: CONV-006; WIC-IM-008 (document missing).
* ``conversion_character_set_declared``: CONV-009.
* ``conversion_instances_share_submitted_study``: CONV-008.

References
----------
DICOM PS3.18 §10.5.2 and Table 10.5.2-1 (conversion of metadata and bulk data); PS3.18
§8.7.3.5.2 (transfer-syntax parameter); PS3.5 §8.2 (encapsulated transfer syntaxes), §A.4
(encapsulation of pixel data), §6.1 (character sets); PS3.10 §7.1 (File Meta Information);
PS3.3 §C.12.1 (SOP Common: Original Attributes Sequence), §C.7.6.3 (Image Pixel Module),
§C.7.6.5 and §C.7.6.6 (Cine and Multi-frame Modules), §A.45.1.4.1 (Encapsulated Document).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.uid import UID

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.charset import codecs_for_terms, text_encodable
from wic_conformance.dicomweb.exchange import Body, Exchange
from wic_conformance.dicomweb.part10 import Part10Instance
from wic_conformance.findings import ConversionMismatch, Finding, MissingAttribute, Severity, raise_all
from wic_conformance.model import media
from wic_conformance.model.media import MediaProbeError
from wic_conformance.validate.registry import CheckContext, Needs, check

if TYPE_CHECKING:
    from wic_conformance.dicomweb.stow import StowRequest

__all__ = [
    "Conversion",
    "Pair",
    "SubmittedInstance",
    "SubmittedMedia",
    "attribute_changes",
    "conversion_character_set_declared",
    "conversion_encapsulated_document_matches",
    "conversion_instances_share_submitted_study",
    "conversion_is_part10",
    "conversion_keeps_compressed_bitstream",
    "conversion_pixel_description_matches_bitstream",
    "conversion_preserves_attributes",
    "conversion_transfer_syntax_matches_media",
    "conversion_video_attributes_match_stream",
    "elements_equal",
    "encodable",
    "first_difference",
    "pair_instances",
    "part10_findings",
    "split_encapsulated",
    "stored_bitstream",
    "submitted_instances",
]

_NEEDS = (Needs.REQUEST, Needs.RETRIEVED)
_TAGS = ("manager", "conversion")

_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})
_ENCAPSULATED_DOCUMENT = 0x00420011
_ORIGINAL_ATTRIBUTES = 0x04000561
_MODIFIED_ATTRIBUTES = 0x04000550
_FRAME_TIME = 0x00181063
_FRAME_TIME_VECTOR = 0x00181065

_JPEG_MEDIA = frozenset({mt.IMAGE_JPEG})
_J2K_MEDIA = frozenset({mt.IMAGE_JP2, mt.IMAGE_JPX})
_MP4_MEDIA = frozenset({mt.VIDEO_MP4, mt.VIDEO_QUICKTIME})
_MPEG2_MEDIA = frozenset({mt.VIDEO_MPEG2, mt.VIDEO_MPEG})
_VIDEO_MEDIA = _MP4_MEDIA | _MPEG2_MEDIA
_COMPRESSED_MEDIA = _JPEG_MEDIA | _J2K_MEDIA | _VIDEO_MEDIA
_LOSSLESS_MEDIA = frozenset({mt.IMAGE_PNG, mt.IMAGE_GIF})
_IMAGE_MEDIA = _JPEG_MEDIA | _J2K_MEDIA | _LOSSLESS_MEDIA

_J2K_LOSSLESS, _J2K = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"
_J2K_P2_LOSSLESS, _J2K_P2 = "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"
_JPEG_RETIRED_PROGRESSIVE = "1.2.840.10008.1.2.4.55"

_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
_TRAILING_ONLY_VRS = frozenset({"LT", "ST", "UT", "UC"})
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UR", "UT", "UI",
                         "PN", "DS", "IS"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_INT_VRS = frozenset({"US", "SS", "UL", "SL", "SV", "UV", "AT"})
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                              b"UT", b"UV"})
_ALL_VRS = _LONG_LENGTH_VRS | frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS",
                                         b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                                         b"US"})

#: Default Photometric Interpretations accepted for a three-component lossy JPEG (WIC-IM-022, confidence D).
DEFAULT_JPEG_LOSSY_PHOTOMETRIC = ("YBR_FULL_422", "YBR_FULL", "RGB")

#: Default transfer syntaxes accepted for image/png and image/gif (uncompressed or lossless only).
DEFAULT_LOSSLESS_TRANSFER_SYNTAXES = tuple(sorted(media.UNCOMPRESSED_OR_LOSSLESS - {media.TS_IMPLICIT_LE}))


# =====================================================================================================
# What was submitted, what was stored, and how they pair
# =====================================================================================================


@dataclass(frozen=True, slots=True)
class SubmittedMedia:
    """A bulk data part that carries an instance's Pixel Data or Encapsulated Document.

    Attributes
    ----------
    tag : int
        The attribute the BulkDataURI belongs to ((7FE0,0010) or (0042,0011)).
    uri : str
        The BulkDataURI (``""`` for an inline value).
    media_type : str
        The part's media type essence (``""`` when it has no Content-Type).
    declared_ts : str or None
        The part's ``transfer-syntax`` parameter.
    body : Body
        The part content.
    """

    tag: int
    uri: str
    media_type: str
    declared_ts: str | None
    body: Body


@dataclass(frozen=True, slots=True)
class SubmittedInstance:
    """One instance as the Capturer submitted it.

    Attributes
    ----------
    dataset : Dataset
        From the metadata (bulk data resolved or empty) or from a PS3.10 part.
    where : str
        ``"request part 1, instance 1"``.
    bulk_tags : frozenset of int
        Tags that carried a BulkDataURI (anywhere in the dataset).
    media : tuple of SubmittedMedia
        The bulk parts holding Pixel Data or an Encapsulated Document.
    part10 : bool
        Whether it was submitted as a PS3.10 part.
    """

    dataset: Dataset
    where: str
    bulk_tags: frozenset[int] = frozenset()
    media: tuple[SubmittedMedia, ...] = ()
    part10: bool = False

    @property
    def sop_instance_uid(self) -> str | None:
        """Return the submitted (0008,0018), or ``None`` when absent or empty."""
        value = _safe_value(self.dataset, 0x00080018)
        return (str(value).strip("\x00 ") or None) if value else None


@dataclass(frozen=True, slots=True)
class Pair:
    """A submitted instance and the stored instance it became."""

    submitted: SubmittedInstance
    stored: Part10Instance
    how: str  # "uid", "original-uid" or "order"

    @property
    def dataset(self) -> Dataset:
        """Return the stored dataset."""
        assert self.stored.dataset is not None
        return self.stored.dataset

    @property
    def uid(self) -> str:
        """Return the stored SOP Instance UID (or the submitted one, or a placeholder)."""
        value = _safe_value(self.dataset, 0x00080018)
        return str(value) if value else (self.submitted.sop_instance_uid or "<no SOP Instance UID>")

    def at(self, tag: int | None = None) -> str:
        """Return a finding location: ``"instance 2.25.1 (0010,0010)"``."""
        return f"instance {self.uid}" + (f" {_tag(tag)}" if tag is not None else "")

    def medium(self, tags: Iterable[int] = (_PIXEL_DATA,)) -> SubmittedMedia | None:
        """Return the submitted bulk part for one of ``tags``, if any."""
        wanted = set(tags)
        return next((m for m in self.submitted.media if m.tag in wanted), None)


@dataclass(frozen=True, slots=True)
class Conversion:
    """Every pairing of one exchange, plus the notes the pairing produced."""

    pairs: tuple[Pair, ...] = ()
    unpaired: tuple[SubmittedInstance, ...] = ()
    notes: tuple[Finding, ...] = field(default=())


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _name(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return f"{keyword} {_tag(tag)}" if keyword else f"{_tag(tag)}"


def _safe_value(ds: Dataset, tag: int) -> Any:
    """Return the value of ``tag`` in ``ds``; ``None`` when absent or undecodable."""
    try:
        return ds[tag].value if tag in ds else None
    except Exception:  # a stored value pydicom cannot decode: judged by the checks that read it
        return None


def submitted_instances(stow: StowRequest) -> list[SubmittedInstance]:
    """Return the instances of a STOW-RS request: metadata datasets first, then PS3.10 parts."""
    out: list[SubmittedInstance] = []
    for doc in stow.metadata:
        for index, ds in enumerate(doc.datasets):
            refs = [r for r in doc.bulk_refs if r.instance == index]
            tags: set[int] = set()
            found: list[SubmittedMedia] = []
            for ref in refs:
                try:
                    tag = int(ref.tag, 16)
                except ValueError:
                    continue
                tags.add(tag)
                if tag not in _PIXEL_TAGS and tag != _ENCAPSULATED_DOCUMENT:
                    continue
                parts = stow.part_by_location(ref.uri)
                if len(parts) != 1:
                    continue  # unresolvable: judged by the request checks
                ctype = parts[0].content_type
                found.append(SubmittedMedia(tag=tag, uri=ref.uri, media_type=ctype.essence if ctype else "",
                                            declared_ts=ctype.transfer_syntax if ctype else None,
                                            body=parts[0].body))
            out.append(SubmittedInstance(dataset=ds, where=f"{doc.location}, instance {index + 1}",
                                         bulk_tags=frozenset(tags), media=tuple(found)))
    for inst in stow.instances:
        if inst.dataset is not None:
            out.append(SubmittedInstance(dataset=inst.dataset, where=inst.location, part10=True))
    return out


def _modified_items(ds: Dataset) -> list[Dataset]:
    """Return the Modified Attributes Sequence items of every Original Attributes Sequence item."""
    items: list[Dataset] = []
    oas = _safe_value(ds, _ORIGINAL_ATTRIBUTES)
    for item in oas or ():
        mas = _safe_value(item, _MODIFIED_ATTRIBUTES)
        items.extend(mas or ())
    return items


def pair_instances(submitted: Sequence[SubmittedInstance], stored: Sequence[Part10Instance]) -> Conversion:
    """Pair submitted and stored instances (by UID, by recorded original UID, then by order).

    References
    ----------
    PS3.18 §10.5.2 (supplemented UIDs, coercion); PS3.3 §C.12.1.1.9 (Original Attributes Sequence).
    """
    readable = [s for s in stored if s.dataset is not None]
    by_uid: dict[str, list[int]] = {}
    by_original: dict[str, list[int]] = {}
    for i, inst in enumerate(readable):
        assert inst.dataset is not None
        uid = _safe_value(inst.dataset, 0x00080018)
        if uid:
            by_uid.setdefault(str(uid), []).append(i)
        for item in _modified_items(inst.dataset):
            original = _safe_value(item, 0x00080018)
            if original:
                by_original.setdefault(str(original), []).append(i)
    claimed: set[int] = set()
    pairs: list[tuple[int, Pair]] = []
    unpaired: list[SubmittedInstance] = []
    notes: list[Finding] = []
    without_uid: list[tuple[int, SubmittedInstance]] = []
    submitted_uids = {s.sop_instance_uid for s in submitted if s.sop_instance_uid}
    for order, sub in enumerate(submitted):
        uid = sub.sop_instance_uid
        if uid is None:
            without_uid.append((order, sub))
            continue
        for how, table in (("uid", by_uid), ("original-uid", by_original)):
            free = [i for i in table.get(uid, []) if i not in claimed]
            if free:
                claimed.add(free[0])
                pairs.append((order, Pair(sub, readable[free[0]], how)))
                break
        else:
            unpaired.append(sub)
    spare = [i for i, inst in enumerate(readable)
             if i not in claimed and inst.dataset is not None
             and str(_safe_value(inst.dataset, 0x00080018) or "") not in submitted_uids]
    for (order, sub), index in zip(without_uid, spare, strict=False):
        claimed.add(index)
        pair = Pair(sub, readable[index], "order")
        pairs.append((order, pair))
        notes.append(ConversionMismatch(
            requirement="WIC-IM-010", severity=Severity.INFO, location=pair.at(),
            message=f"{sub.where} was submitted without a SOP Instance UID; the Image Manager supplemented "
                    f"{pair.uid} and the instances were paired by order",
        ))
    unpaired.extend(sub for _order, sub in without_uid[len(spare):])
    pairs.sort(key=lambda item: item[0])
    return Conversion(tuple(p for _o, p in pairs), tuple(unpaired), tuple(notes))


def conversion_of(ctx: CheckContext, exchange: Exchange) -> Conversion:
    """Return the (cached) pairing of the exchange's submitted and retrieved instances."""

    def make() -> Conversion:
        stow = ctx.stow_request(exchange)
        submitted = submitted_instances(stow) if stow is not None else []
        stored = [i for i in ctx.instances(exchange) if i.origin == "retrieved"]
        return pair_instances(submitted, stored)

    result: Conversion = ctx.cached(exchange, "conversion.pairs", make)
    return result


def _stored_ts(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    value = _safe_value(meta, 0x00020010) if meta is not None else None
    return str(value).strip("\x00 ") if value else None


def _ts_label(uid: str) -> str:
    name = UID(uid).name
    return f"{uid} ({name})" if name and name != uid else uid


# =====================================================================================================
# CONV-001 / WIC-IM-012: PS3.10 structure
# =====================================================================================================


def _element_walk_ok(buf: bytes, pos: int, *, explicit: bool, little: bool, count: int = 4) -> bool:
    """Return whether the first ``count`` data elements at ``pos`` parse under the given encoding."""
    order: Literal["little", "big"] = "little" if little else "big"
    previous = -1
    for _ in range(count):
        if pos == len(buf):
            return True
        if pos + 8 > len(buf):
            return False
        tag = (int.from_bytes(buf[pos:pos + 2], order) << 16) | int.from_bytes(buf[pos + 2:pos + 4], order)
        group = tag >> 16
        if tag <= previous or group in (0x0002, 0xFFFE) or (group < 0x0008 and group != 0x0004):
            return False
        previous = tag
        if explicit:
            vr = buf[pos + 4:pos + 6]
            if vr not in _ALL_VRS:
                return False
            if vr in _LONG_LENGTH_VRS:
                if pos + 12 > len(buf):
                    return False
                length, header = int.from_bytes(buf[pos + 8:pos + 12], order), 12
            else:
                length, header = int.from_bytes(buf[pos + 6:pos + 8], order), 8
        else:
            length, header = int.from_bytes(buf[pos + 4:pos + 8], order), 8
        if length == 0xFFFFFFFF:
            return True  # undefined length (a sequence or encapsulated pixel data): stop here
        pos += header + length
        if pos > len(buf):
            return False
    return True


def _dataset_start(buf: bytes) -> int | None:
    """Return the offset of the first data element after the File Meta group (explicit VR LE)."""
    pos = 132
    while pos + 8 <= len(buf):
        group = int.from_bytes(buf[pos:pos + 2], "little")
        if group != 0x0002:
            return pos
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_LENGTH_VRS:
            if pos + 12 > len(buf):
                return None
            pos += 12 + int.from_bytes(buf[pos + 8:pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(buf[pos + 6:pos + 8], "little")
    return pos if pos == len(buf) else None


def part10_findings(inst: Part10Instance) -> list[Finding]:
    """Return the CONV-001 / WIC-IM-012 findings for one retrieved object.

    References
    ----------
    PS3.10 §7.1 (preamble, DICM prefix, File Meta Information); PS3.18 §8.7.3.
    """
    where = inst.location or "retrieved instance"
    if inst.dataset is None:
        reasons = "; ".join(d.message for d in inst.deviations) or "it cannot be decoded"
        return [ConversionMismatch(requirement="CONV-001", location=where,
                                   message=f"the retrieved object is not a readable PS3.10 file: {reasons}")]
    ds = inst.dataset
    out: list[Finding] = []
    uid = _safe_value(ds, 0x00080018)
    if uid:
        where = f"instance {uid}"
    meta = getattr(ds, "file_meta", None) or Dataset()
    ts = _stored_ts(ds)
    if ts is None:
        out.append(MissingAttribute(
            requirement="CONV-001", location=f"{where} (0002,0010)",
            message="the File Meta Information has no Transfer Syntax UID (0002,0010)"))
    for meta_tag, data_tag in ((0x00020002, 0x00080016), (0x00020003, 0x00080018)):
        meta_value, data_value = _safe_value(meta, meta_tag), _safe_value(ds, data_tag)
        if not meta_value:
            out.append(MissingAttribute(requirement="CONV-001", location=f"{where} {_tag(meta_tag)}",
                                        message=f"the File Meta Information has no {_name(meta_tag)}"))
        elif str(meta_value).strip("\x00 ") != str(data_value or "").strip("\x00 "):
            out.append(ConversionMismatch(
                requirement="CONV-001", location=f"{where} {_tag(meta_tag)}",
                message=f"{_name(meta_tag)} is {str(meta_value)!r} but {_name(data_tag)} is "
                        f"{str(data_value or '')!r}; they must be equal",
            ))
    if ts is None:
        return out
    if ts == media.TS_IMPLICIT_LE:
        out.append(ConversionMismatch(
            requirement="WIC-IM-012", location=f"{where} (0002,0010)",
            message="the stored object uses Implicit VR Little Endian (1.2.840.10008.1.2), which web "
                    "exchange must not use; Explicit VR Little Endian is the default",
        ))
    uid_ts = UID(ts)
    if ts != media.TS_DEFLATED and uid_ts.is_transfer_syntax:
        buf = inst.body.read()
        start = _dataset_start(buf)
        declared = (not uid_ts.is_implicit_VR, uid_ts.is_little_endian)
        if start is not None and not _element_walk_ok(buf, start, explicit=declared[0], little=declared[1]):
            actual = next((f"{'Explicit' if e else 'Implicit'} VR {'Little' if le else 'Big'} Endian"
                           for e, le in ((True, True), (False, True), (True, False))
                           if (e, le) != declared and _element_walk_ok(buf, start, explicit=e, little=le)),
                          "an encoding that could not be identified")
            out.append(ConversionMismatch(
                requirement="CONV-001", location=f"{where} (0002,0010)",
                message=f"(0002,0010) declares {_ts_label(ts)} but the dataset is encoded in {actual}",
            ))
    elif not uid_ts.is_transfer_syntax:
        out.append(ConversionMismatch(requirement="CONV-001", location=f"{where} (0002,0010)",
                                      message=f"(0002,0010) {ts!r} is not a known Transfer Syntax UID"))
    return out


@check(requirements=["CONV-001", "WIC-IM-012", "WIC-IM-001"], needs=_NEEDS, tags=_TAGS)
def conversion_is_part10(ctx: CheckContext, exchange: Exchange) -> None:
    """Every retrieved instance is a PS3.10 file whose File Meta Information agrees with its dataset.

    Preamble and "DICM"; (0002,0010) present and equal to the encoding actually used (never
    Implicit VR Little Endian); (0002,0002)/(0002,0003) equal to (0008,0016)/(0008,0018).
    A submitted instance that was not retrieved is reported as information (WIC-IM-001).
    """
    findings: list[Finding] = []
    for inst in ctx.instances(exchange):
        if inst.origin == "retrieved":
            findings.extend(part10_findings(inst))
    for sub in conversion_of(ctx, exchange).unpaired:
        findings.append(ConversionMismatch(
            requirement="WIC-IM-001", severity=Severity.INFO, location=sub.where,
            message=f"no retrieved instance corresponds to {sub.where} "
                    f"(SOP Instance UID {sub.sop_instance_uid or 'absent'}); it was not judged",
        ))
    raise_all(findings, "conversion_is_part10")


# =====================================================================================================
# CONV-002: attribute preservation
# =====================================================================================================


def _values(elem: DataElement) -> list[Any]:
    value = elem.value
    if value is None or (isinstance(value, str | bytes) and len(value) == 0):
        return []
    if elem.VR in _BINARY_VRS and isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _pn_key(value: Any) -> tuple[tuple[str, ...], ...]:
    groups = [tuple(c.strip() for c in g.split("^")) for g in str(value).split("=")]
    trimmed = []
    for comps in groups:
        comps_list = list(comps)
        while comps_list and not comps_list[-1]:
            comps_list.pop()
        trimmed.append(tuple(comps_list))
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    return tuple(trimmed)


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def _item_equal(vr: str, a: Any, b: Any) -> bool:
    if vr == "PN":
        return _pn_key(a) == _pn_key(b)
    if vr in ("DS", "IS"):
        x, y = _number(a), _number(b)
        if x is None or y is None:
            return str(a).strip() == str(b).strip()
        if x == y:
            return True
        return vr == "DS" and math.isclose(float(x), float(y), rel_tol=1e-12)
    if vr in _TRAILING_ONLY_VRS:
        return str(a).rstrip(" \x00") == str(b).rstrip(" \x00")
    if vr in _STRING_VRS:
        return str(a).strip(" \x00") == str(b).strip(" \x00")
    if vr in _INT_VRS:
        try:
            return int(a) == int(b)
        except (TypeError, ValueError):
            return False
    if vr == "FL":
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-38)
        except (TypeError, ValueError):
            return False
    if vr == "FD":
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-300)
        except (TypeError, ValueError):
            return False
    if isinstance(a, bytes | bytearray) and isinstance(b, bytes | bytearray):
        return _unpad(bytes(b), len(a)) == bytes(a)
    return bool(a == b)


def _text(elem: DataElement) -> str:
    if isinstance(elem.value, bytes | bytearray):
        return bytes(elem.value).decode("latin-1").rstrip(" \x00")
    return "\\".join(str(v) for v in _values(elem)).rstrip(" \x00")


def elements_equal(submitted: DataElement, stored: DataElement) -> bool:
    """Return whether two elements hold the same value after VR normalisation (sequences recursively).

    Padding is ignored; DS and IS compare as numbers; PN compares component by
    component (trailing empty components ignored); multi-values compare item by
    item; binary values ignore one trailing 0x00 pad byte.
    """
    if submitted.VR == "SQ" or stored.VR == "SQ":
        if submitted.VR != stored.VR:
            return False
        a, b = list(submitted.value or ()), list(stored.value or ())
        return len(a) == len(b) and all(not _dataset_changes(x, y, where="")
                                        for x, y in zip(a, b, strict=True))
    if submitted.VR != stored.VR and "UN" in (submitted.VR, stored.VR):
        return _text(submitted) == _text(stored)
    xs, ys = _values(submitted), _values(stored)
    return len(xs) == len(ys) and all(_item_equal(submitted.VR, x, y) for x, y in zip(xs, ys, strict=True))


def _show(elem: DataElement | None) -> str:
    if elem is None:
        return "<absent>"
    if elem.VR == "SQ":
        return f"<{len(elem.value or ())} item(s)>"
    if isinstance(elem.value, bytes | bytearray):
        return f"<{len(elem.value)} bytes>"
    values = _values(elem)
    if not values:
        return "<empty>"
    text = "\\".join(str(v) for v in values)
    return repr(text if len(text) <= 120 else text[:117] + "...")


@dataclass(frozen=True, slots=True)
class AttributeChange:
    """One submitted attribute that the stored instance does not carry unchanged.

    ``top`` is the top-level tag (what an Original Attributes Sequence item records),
    ``tag`` the changed tag itself and ``where`` its path (``"(0040,A730)[0] > (0040,A160)"``).
    """

    top: int
    tag: int
    where: str
    old: DataElement
    new: DataElement | None
    note: str = ""


def _dataset_changes(
    submitted: Dataset,
    stored: Dataset,
    *,
    where: str,
    skip: frozenset[int] = frozenset(),
    top: int | None = None,
    fill_empty: bool = True,
) -> list[AttributeChange]:
    out: list[AttributeChange] = []
    for elem in submitted:
        tag = int(elem.tag)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0 or tag >> 16 == 0xFFFE or tag in skip:
            continue
        top_tag = tag if top is None else top
        path = f"{where} {_tag(tag)}".strip()
        try:
            new = stored[tag] if tag in stored else None
        except Exception as exc:  # the stored value does not decode
            out.append(AttributeChange(top_tag, tag, path, elem, None,
                                       f"the stored value cannot be decoded: {exc}"))
            continue
        if new is None:
            out.append(AttributeChange(top_tag, tag, path, elem, None))
            continue
        if elem.VR == "SQ" and new.VR == "SQ":
            old_items, new_items = list(elem.value or ()), list(new.value or ())
            if len(old_items) != len(new_items):
                out.append(AttributeChange(top_tag, tag, path, elem, new))
                continue
            for i, (a, b) in enumerate(zip(old_items, new_items, strict=True)):
                out.extend(_dataset_changes(a, b, where=f"{path}[{i}] >", skip=skip, top=top_tag,
                                            fill_empty=fill_empty))
            continue
        if fill_empty and elem.VR != "SQ" and not _values(elem):
            continue  # an empty (Type 2) value the Image Manager filled in: supplementing, not coercing
        try:
            same = elements_equal(elem, new)
        except Exception as exc:
            out.append(AttributeChange(top_tag, tag, path, elem, None,
                                       f"the stored value cannot be decoded: {exc}"))
            continue
        if not same:
            out.append(AttributeChange(top_tag, tag, path, elem, new))
    return out


def attribute_changes(
    submitted: SubmittedInstance, stored: Dataset, *, fill_empty: bool = True, ignore: Iterable[int] = (),
) -> list[AttributeChange]:
    """Return every submitted attribute (recursively) that the stored dataset lacks or holds differently.

    Group 0002, group lengths, Pixel Data, the Encapsulated Document and every attribute
    that carried a BulkDataURI are not compared here (the bulk data checks judge them).
    """
    skip = frozenset(submitted.bulk_tags | _PIXEL_TAGS | {_ENCAPSULATED_DOCUMENT, *ignore})
    return _dataset_changes(submitted.dataset, stored, where="", skip=skip, fill_empty=fill_empty)


def recorded_original(elem: DataElement, stored: Dataset) -> str | None:
    """Return ``"same"`` when an Original Attributes Sequence item records ``elem``'s submitted value.

    ``"different"`` when items record the attribute only with other values, ``None`` when none records it.

    References
    ----------
    PS3.3 §C.12.1.1.9 (Original Attributes Sequence, Modified Attributes Sequence).
    """
    tag = int(elem.tag)
    seen = False
    for item in _modified_items(stored):
        if tag not in item:
            continue
        seen = True
        try:
            if elements_equal(elem, item[tag]):
                return "same"
        except Exception:
            continue
    return "different" if seen else None


def _keyword_or_tag(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    found = tag_for_keyword(text)
    if found is not None:
        return int(found)
    digits = text.strip("()").replace(",", "")
    try:
        return int(digits, 16) if len(digits) == 8 else None
    except ValueError:
        return None


@check(requirements=["CONV-002", "WIC-IM-004", "WIC-IM-003", "WIC-IM-010"], needs=_NEEDS, tags=_TAGS,
       options={"fill_empty": True, "ignore": []})
def conversion_preserves_attributes(ctx: CheckContext, exchange: Exchange) -> None:
    """Every submitted attribute is stored unchanged, or its change is recorded in (0400,0561).

    Compared after VR normalisation (padding, DS/IS as numbers, PN by component,
    multi-values item by item), recursively in sequences.  A change recorded in
    (0400,0561) is information (WIC-IM-003); an unrecorded change or removal is a
    CONV-002 finding naming the attribute and both values.

    Options
    -------
    fill_empty : bool
        Accept a stored value where the submitted value was empty (a supplemented Type 2 attribute).
    ignore : list of str
        Keywords or tags (``"00080020"``) never compared.
    """
    opts = ctx.options
    ignore = [t for t in (_keyword_or_tag(v) for v in opts.get("ignore", [])) if t is not None]
    conv = conversion_of(ctx, exchange)
    findings: list[Finding] = list(conv.notes)
    for pair in conv.pairs:
        changes = attribute_changes(pair.submitted, pair.dataset,
                                    fill_empty=bool(opts.get("fill_empty", True)), ignore=ignore)
        reported_top: set[int] = set()
        for change in changes:
            top_elem = pair.submitted.dataset[change.top]
            record = recorded_original(top_elem, pair.dataset)
            name = _name(change.tag)
            location = f"instance {pair.uid} {change.where}"
            if record == "same":
                if change.top not in reported_top:
                    reported_top.add(change.top)
                    findings.append(ConversionMismatch(
                        requirement="WIC-IM-003", severity=Severity.INFO, location=location,
                        message=f"{name} was coerced from {_show(change.old)} to {_show(change.new)}; the "
                                f"Original Attributes Sequence (0400,0561) records the submitted value",
                    ))
                continue
            suffix = ("an Original Attributes Sequence (0400,0561) item records a different original value"
                      if record == "different" else
                      "no Original Attributes Sequence (0400,0561) item records the change")
            if change.new is None:
                detail = f" ({change.note})" if change.note else ""
                findings.append(MissingAttribute(
                    requirement="CONV-002", location=location,
                    message=f"{name} was submitted as {_show(change.old)} but is absent from the stored "
                            f"instance{detail}; {suffix}",
                ))
            else:
                findings.append(ConversionMismatch(
                    requirement="CONV-002", location=location,
                    message=f"{name} was submitted as {_show(change.old)} but is stored as "
                            f"{_show(change.new)}; {suffix}",
                ))
    raise_all(findings, "conversion_preserves_attributes")


# =====================================================================================================
# CONV-003: the compressed bitstream is kept unchanged
# =====================================================================================================


def _unpad(stored: bytes, original_length: int) -> bytes:
    """Drop one trailing 0x00 pad byte when the original length is odd and the stored one is one longer."""
    if original_length % 2 == 1 and len(stored) == original_length + 1 and stored[-1:] == b"\x00":
        return stored[:-1]
    return stored


def first_difference(a: bytes, b: bytes) -> int | None:
    """Return the first offset where ``a`` and ``b`` differ (the shorter length if one is a prefix)."""
    if a == b:
        return None
    n = min(len(a), len(b))
    step = 1 << 16
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        if a[lo:hi] != b[lo:hi]:
            return next(i for i in range(lo, hi) if a[i] != b[i])
    return n


@dataclass(frozen=True, slots=True)
class EncapsulatedPixelData:
    """Encapsulated Pixel Data split into its Basic Offset Table and fragments.

    ``problem`` explains why the value is not valid encapsulated data (``""`` when it is).
    """

    offsets: bytes
    fragments: tuple[bytes, ...]
    problem: str = ""

    @property
    def joined(self) -> bytes:
        """Return every fragment concatenated (the single frame or video stream)."""
        return b"".join(self.fragments)


def split_encapsulated(value: bytes) -> EncapsulatedPixelData:
    """Split an encapsulated Pixel Data value (items after the undefined-length header).

    References
    ----------
    PS3.5 §A.4 and Table A.4-1 (Basic Offset Table item, fragment items, sequence delimiter).
    """
    pos = 0
    items: list[bytes] = []
    problem = ""
    while pos + 8 <= len(value):
        group = int.from_bytes(value[pos:pos + 2], "little")
        element = int.from_bytes(value[pos + 2:pos + 4], "little")
        length = int.from_bytes(value[pos + 4:pos + 8], "little")
        if (group, element) == (0xFFFE, 0xE0DD):
            break
        if (group, element) != (0xFFFE, 0xE000):
            problem = f"unexpected tag ({group:04X},{element:04X}) at offset {pos} instead of an item"
            break
        if length == 0xFFFFFFFF or pos + 8 + length > len(value):
            problem = f"item at offset {pos} has a bad length {length}"
            break
        items.append(value[pos + 8:pos + 8 + length])
        pos += 8 + length
    else:
        if pos != len(value):
            problem = f"{len(value) - pos} stray bytes at the end of the encapsulated data"
    if not items:
        return EncapsulatedPixelData(b"", (), problem or "no Basic Offset Table item")
    return EncapsulatedPixelData(items[0], tuple(items[1:]), problem)


def stored_bitstream(ds: Dataset) -> tuple[bytes | None, str]:
    """Return the stored encapsulated frame bytes of Pixel Data and a problem description (``""`` if none)."""
    ts = _stored_ts(ds)
    try:
        elem = ds[_PIXEL_DATA] if _PIXEL_DATA in ds else None
    except Exception as exc:
        return None, f"Pixel Data cannot be read: {exc}"
    if elem is None:
        return None, "the stored instance has no Pixel Data (7FE0,0010)"
    if ts is None or not UID(ts).is_encapsulated:
        return None, f"Pixel Data is stored native (Transfer Syntax {ts or 'unknown'}), not encapsulated"
    if not elem.is_undefined_length:
        return None, "encapsulated Pixel Data must have undefined length"
    split = split_encapsulated(bytes(elem.value or b""))
    if split.problem:
        return None, f"encapsulated Pixel Data is malformed: {split.problem}"
    return split.joined, ""


def _expected_bitstreams(medium: SubmittedMedia, data: bytes) -> list[tuple[str, bytes]]:
    """Return the acceptable encapsulated forms of a submitted part (JP2: the codestream or the file)."""
    if medium.media_type in _J2K_MEDIA:
        try:
            info = media.probe_j2k(data)
        except MediaProbeError:
            return [("the submitted part", data)]
        if info.wrapper != "j2k":
            start, length = info.codestream_offset, info.codestream_length
            return [("the JPEG 2000 codestream of the submitted part", data[start:start + length]),
                    ("the submitted part", data)]
    return [("the submitted part", data)]


def _storable(medium: SubmittedMedia, data: bytes, *, high_profile_only: bool = False) -> bool | None:
    """Return whether a non-retired Transfer Syntax can carry the submitted bitstream unchanged.

    ``None`` when the bitstream cannot be probed.
    """
    try:
        if medium.media_type in _JPEG_MEDIA:
            return bool(media.jpeg_transfer_syntaxes(media.probe_jpeg(data)))
        if medium.media_type in _MP4_MEDIA:
            info = media.probe_mp4(data)
            return bool(media.mp4_transfer_syntaxes(info, high_profile_only=high_profile_only))
        if medium.media_type in _MPEG2_MEDIA:
            return bool(media.mpeg2_transfer_syntaxes(media.probe_mpeg2(data[:1 << 22])))
    except MediaProbeError:
        return None
    return True


def _lossless_stream(data: bytes, ts: str) -> bool:
    if ts in media.UNCOMPRESSED_OR_LOSSLESS:
        return True
    try:
        return media.probe_jpeg(data).lossless
    except MediaProbeError:
        return False


@check(requirements=["CONV-003", "WIC-IM-005"], needs=_NEEDS, tags=_TAGS)
def conversion_keeps_compressed_bitstream(ctx: CheckContext, exchange: Exchange) -> None:
    """Compressed image and video parts are stored encapsulated and byte for byte unchanged.

    For image/jpeg, image/jp2, image/jpx, video/mp4, video/quicktime and video/mpeg2:
    Pixel Data has undefined length, a Basic Offset Table item and fragments whose
    concatenation equals the submitted part (one trailing 0x00 pad byte allowed when
    the part has odd length; for JP2/JPX the bare codestream is also accepted).  A
    bitstream that no current transfer syntax can carry (progressive JPEG, for
    example) may instead be stored natively or re-encoded losslessly.
    """
    findings: list[Finding] = []
    for pair in conversion_of(ctx, exchange).pairs:
        medium = pair.medium()
        if medium is None or medium.media_type not in _COMPRESSED_MEDIA:
            continue
        data = medium.body.read()
        storable = _storable(medium, data)
        frame, problem = stored_bitstream(pair.dataset)
        ts = _stored_ts(pair.dataset) or ""
        where = pair.at(_PIXEL_DATA)
        if frame is None:
            if storable is False and ts in media.UNCOMPRESSED_OR_LOSSLESS and "no Pixel Data" not in problem:
                continue  # decompressed without further loss: the only way to store it
            cls = MissingAttribute if "no Pixel Data" in problem else ConversionMismatch
            findings.append(cls(requirement="CONV-003", location=where,
                                message=f"the submitted {medium.media_type} part ({len(data)} bytes) is not "
                                        f"stored unchanged: {problem}"))
            continue
        candidates = _expected_bitstreams(medium, data)
        if any(_unpad(frame, len(expected)) == expected for _label, expected in candidates):
            continue
        if storable is False and _lossless_stream(frame, ts):
            continue
        label, expected = candidates[0]
        stored = _unpad(frame, len(expected))
        offset = first_difference(expected, stored)
        findings.append(ConversionMismatch(
            requirement="CONV-003", location=where,
            message=f"the stored Pixel Data fragments ({len(frame)} bytes) differ from {label} "
                    f"({medium.media_type}, {len(expected)} bytes) first at byte offset {offset}; "
                    f"the bitstream must be encapsulated unchanged",
        ))
    raise_all(findings, "conversion_keeps_compressed_bitstream")


# =====================================================================================================
# WIC-IM-005/006/008/020/021: the Transfer Syntax fits the media
# =====================================================================================================


@dataclass(frozen=True, slots=True)
class MediaTransferSyntaxes:
    """What the submitted bitstream allows: the preferred and the acceptable transfer syntaxes."""

    preferred: str | None
    acceptable: frozenset[str]
    describe: str
    requirement: str


def media_transfer_syntaxes(
    medium: SubmittedMedia,
    data: bytes,
    *,
    high_profile_only: bool = False,
    lossless: Iterable[str] = DEFAULT_LOSSLESS_TRANSFER_SYNTAXES,
) -> MediaTransferSyntaxes | None:
    """Return the transfer syntaxes Table 10.5.2-1 and the bitstream allow; ``None`` for other media.

    References
    ----------
    PS3.18 Table 10.5.2-1 and Table 8.7.3-5; PS3.5 §8.2 and Table A-1.
    """
    kind = medium.media_type
    try:
        if kind in _JPEG_MEDIA:
            info = media.probe_jpeg(data)
            desc = (f"JPEG SOF 0x{info.sof:02X} {info.process}, {info.precision}-bit, "
                    f"{info.components} component(s)"
                    + (f", predictor {info.predictor}" if info.predictor is not None else "")
                    + (f", NEAR {info.near}" if info.near is not None else ""))
            return MediaTransferSyntaxes(media.jpeg_transfer_syntax(info), media.jpeg_transfer_syntaxes(info),
                                         desc, "WIC-IM-005")
        if kind in _J2K_MEDIA:
            j2k = media.probe_j2k(data)
            uids = {_J2K} | ({_J2K_LOSSLESS} if j2k.reversible is not False else set())
            if kind == mt.IMAGE_JPX:
                uids |= {_J2K_P2} | ({_J2K_P2_LOSSLESS} if j2k.reversible is not False else set())
            wavelet = {True: "reversible 5-3", False: "irreversible 9-7", None: "unknown"}[j2k.reversible]
            return MediaTransferSyntaxes(_J2K_LOSSLESS if j2k.reversible else _J2K, frozenset(uids),
                                         f"JPEG 2000 ({j2k.wrapper}, {wavelet} wavelet)", "WIC-IM-005")
        if kind in _MP4_MEDIA:
            mp4 = media.probe_mp4(data)
            desc = f"{mp4.codec} profile_idc {mp4.profile_idc} level_idc {mp4.level_idc}"
            return MediaTransferSyntaxes(
                media.mp4_transfer_syntax(mp4, high_profile_only=high_profile_only),
                media.mp4_transfer_syntaxes(mp4, high_profile_only=high_profile_only), desc, "WIC-IM-005")
        if kind in _MPEG2_MEDIA:
            mpeg = media.probe_mpeg2(data[:1 << 22])
            pl = f"0x{mpeg.profile_level:02X}" if mpeg.profile_level is not None else "none (MPEG-1)"
            return MediaTransferSyntaxes(
                media.mpeg2_transfer_syntax(mpeg), media.mpeg2_transfer_syntaxes(mpeg),
                f"MPEG video, profile_and_level_indication {pl}", "WIC-IM-005")
    except MediaProbeError as exc:
        return MediaTransferSyntaxes(None, frozenset(), f"an unreadable bitstream ({exc})", "WIC-IM-005")
    if kind in _LOSSLESS_MEDIA:
        return MediaTransferSyntaxes(media.TS_EXPLICIT_LE, frozenset(lossless),
                                     f"{kind} (uncompressed or lossless only)", "WIC-IM-006")
    if kind == mt.APPLICATION_PDF:
        return MediaTransferSyntaxes(media.TS_EXPLICIT_LE, frozenset({media.TS_EXPLICIT_LE}),
                                     "an encapsulated PDF", "WIC-IM-008")
    return None


def _stored_stream_fits(ds: Dataset, kind: str, ts: str, *, high_profile_only: bool) -> bool:
    """Return whether a re-encoded stored bitstream is described by its own Transfer Syntax."""
    if ts in media.UNCOMPRESSED_OR_LOSSLESS and kind in _JPEG_MEDIA:
        return True
    frame, _problem = stored_bitstream(ds)
    if frame is None:
        return False
    try:
        if kind in _JPEG_MEDIA:
            return ts in media.jpeg_transfer_syntaxes(media.probe_jpeg(frame))
        if kind in _MP4_MEDIA:
            info = media.probe_mp4(frame)
            return ts in media.mp4_transfer_syntaxes(info, high_profile_only=high_profile_only)
        if kind in _MPEG2_MEDIA:
            return ts in media.mpeg2_transfer_syntaxes(media.probe_mpeg2(frame[:1 << 22]))
    except MediaProbeError:
        return False
    return False


@check(requirements=["WIC-IM-005", "WIC-IM-006", "WIC-IM-008", "WIC-IM-020", "WIC-IM-021"], needs=_NEEDS,
       tags=_TAGS, options={"accept_equivalent": True, "honour_declared_transfer_syntax": True,
                            "h264_high_profile_only": False,
                            "lossless_transfer_syntaxes": list(DEFAULT_LOSSLESS_TRANSFER_SYNTAXES)})
def conversion_transfer_syntax_matches_media(ctx: CheckContext, exchange: Exchange) -> None:
    """The stored Transfer Syntax is the one Table 10.5.2-1 and the submitted bitstream call for.

    image/jpeg: from the SOF marker (SOF0 → .50, SOF1 → .51, SOF3 predictor 1 → .70,
    other predictors → .57, JPEG-LS → .80/.81); image/jp2, image/jpx: JPEG 2000 (.90
    only for a reversible wavelet); video/mp4: from the codec profile and level;
    video/mpeg2: MP@ML .100 or MP@HL .101; image/png, image/gif: uncompressed or a
    lossless-only syntax; application/pdf: Explicit VR Little Endian.  A declared
    ``transfer-syntax`` parameter that fits the bitstream must be kept (WIC-IM-020);
    one that contradicts it must not be stored as is (WIC-IM-021).

    Options
    -------
    accept_equivalent : bool
        Accept every transfer syntax that describes the bitstream (e.g. .51 for a baseline
        JPEG, .57 for predictor 1); when false only the preferred one.
    honour_declared_transfer_syntax : bool
        Require the declared parameter to be kept when it fits the bitstream.
    h264_high_profile_only : bool
        Count only High Profile (profile_idc 100) streams as fitting .102/.104.
    lossless_transfer_syntaxes : list of str
        The transfer syntaxes accepted for image/png and image/gif.
    """
    opts = ctx.options
    high_only = bool(opts.get("h264_high_profile_only", False))
    findings: list[Finding] = []
    for pair in conversion_of(ctx, exchange).pairs:
        medium = pair.medium((_PIXEL_DATA, _ENCAPSULATED_DOCUMENT))
        ts = _stored_ts(pair.dataset)
        if medium is None or ts is None:
            continue
        data = medium.body.read()
        allowed = media_transfer_syntaxes(
            medium, data, high_profile_only=high_only,
            lossless=opts.get("lossless_transfer_syntaxes", DEFAULT_LOSSLESS_TRANSFER_SYNTAXES))
        if allowed is None:
            continue
        acceptable = allowed.acceptable
        if not opts.get("accept_equivalent", True) and allowed.preferred:
            acceptable = frozenset({allowed.preferred})
        where = pair.at(0x00020010)
        declared = medium.declared_ts
        if acceptable and declared and declared in allowed.acceptable and ts != declared \
                and opts.get("honour_declared_transfer_syntax", True) and ts in allowed.acceptable:
            findings.append(ConversionMismatch(
                requirement="WIC-IM-020", location=where,
                message=f"the {medium.media_type} part declares transfer-syntax={declared}, which fits "
                        f"{allowed.describe}, but the instance is stored as {_ts_label(ts)}",
            ))
            continue
        if ts in acceptable:
            continue
        if not allowed.acceptable and _stored_stream_fits(pair.dataset, medium.media_type, ts,
                                                          high_profile_only=high_only):
            continue  # re-encoded or decompressed: CONV-003 judges whether that lost information
        if acceptable:
            expected = ("one of " if len(acceptable) > 1 else "") + ", ".join(sorted(acceptable))
        else:
            expected = "none: no current transfer syntax carries it unchanged (decompress losslessly or reject)"
        if declared and ts == declared and declared not in allowed.acceptable:
            findings.append(ConversionMismatch(
                requirement="WIC-IM-021", location=where,
                message=f"the {medium.media_type} part declares transfer-syntax={declared}, which "
                        f"contradicts {allowed.describe}, and the instance is stored under it; "
                        f"expected {expected}",
            ))
            continue
        findings.append(ConversionMismatch(
            requirement=allowed.requirement, location=where,
            message=f"stored as {_ts_label(ts)}, which does not fit the submitted {medium.media_type} "
                    f"({allowed.describe}); expected {expected}",
        ))
    raise_all(findings, "conversion_transfer_syntax_matches_media")


# =====================================================================================================
# CONV-004 / WIC-IM-007 / WIC-IM-022: Image Pixel Description
# =====================================================================================================


@dataclass(frozen=True, slots=True)
class Expectation:
    """An attribute value the bitstream implies: the allowed values and the requirement it falls under."""

    tag: int
    allowed: frozenset[Any]
    requirement: str = "CONV-004"
    reason: str = ""


def _expect(tag: int, values: Iterable[Any], requirement: str = "CONV-004", reason: str = "") -> Expectation:
    return Expectation(tag, frozenset(values), requirement, reason)


_ROWS, _COLUMNS, _SAMPLES, _PHOTOMETRIC = 0x00280010, 0x00280011, 0x00280002, 0x00280004
_BITS_ALLOCATED, _BITS_STORED, _HIGH_BIT, _PLANAR = 0x00280100, 0x00280101, 0x00280102, 0x00280006
_PIXEL_REPRESENTATION, _LOSSY, _FRAMES = 0x00280103, 0x00282110, 0x00280008


def pixel_expectations(
    kind: str,
    data: bytes,
    ts: str,
    *,
    jpeg_lossy_photometric: Iterable[str] = DEFAULT_JPEG_LOSSY_PHOTOMETRIC,
) -> tuple[list[Expectation], str]:
    """Return what the bitstream implies for the Image Pixel Description, and a description of it.

    References
    ----------
    PS3.18 §10.5.2 and Table 10.5.2-1 notes; PS3.5 §8.2.1 (JPEG image compression), §8.2.4
    (JPEG 2000); PS3.3 §C.7.6.3.1 (Image Pixel Description macro attributes).
    """
    native = ts in (media.TS_EXPLICIT_LE, media.TS_IMPLICIT_LE, media.TS_DEFLATED, media.TS_RLE)
    encapsulated = bool(ts) and UID(ts).is_encapsulated
    planar = [0] if encapsulated else [0, 1]
    out: list[Expectation] = []
    try:
        if kind in _JPEG_MEDIA:
            info = media.probe_jpeg(data)
            bits = 8 if info.precision <= 8 else 16
            if info.rows:
                out.append(_expect(_ROWS, [info.rows]))
            out += [_expect(_COLUMNS, [info.columns]), _expect(_SAMPLES, [info.components]),
                    _expect(_BITS_STORED, [info.precision]), _expect(_BITS_ALLOCATED, [bits]),
                    _expect(_HIGH_BIT, [info.precision - 1])]
            if info.components > 1:
                out.append(_expect(_PLANAR, [0]))
            lossy = info.sof in (0xC0, 0xC1) or (info.jpeg_ls and not info.lossless)
            if info.components == 1:
                out.append(_expect(_PHOTOMETRIC, ["MONOCHROME2", "MONOCHROME1"]))
            elif lossy and info.components == 3:
                allowed = {"RGB"} if info.color_transform == "RGB" else set(jpeg_lossy_photometric)
                out.append(_expect(_PHOTOMETRIC, allowed, "WIC-IM-022",
                                   f"a lossy colour JPEG ({info.color_transform or 'unknown'} coded)"))
            if lossy:
                out.append(_expect(_LOSSY, ["01"], "WIC-IM-022", "a lossy JPEG process"))
            return out, f"JPEG SOF 0x{info.sof:02X} {info.columns}x{info.rows}, {info.precision}-bit"
        if kind in _J2K_MEDIA:
            j2k = media.probe_j2k(data)
            out += [_expect(_ROWS, [j2k.rows]), _expect(_COLUMNS, [j2k.columns]),
                    _expect(_SAMPLES, [j2k.components]), _expect(_BITS_STORED, [j2k.precision]),
                    _expect(_PIXEL_REPRESENTATION, [1 if j2k.signed else 0])]
            if j2k.components > 1:
                out.append(_expect(_PLANAR, [0]))
            return out, f"JPEG 2000 {j2k.columns}x{j2k.rows}, {j2k.precision}-bit"
        if kind == mt.IMAGE_PNG:
            png = media.probe_png(data)
            samples = [3, 1] if png.palette else [png.samples_per_pixel]
            if png.bit_depth == 16:
                stored_bits, allocated = [16], [16]
            else:
                stored_bits = sorted({png.bit_depth, 8}) if png.color_type == 0 else [8]
                allocated = [8, 1] if png.bit_depth == 1 else [8]
            out += [_expect(_ROWS, [png.height]), _expect(_COLUMNS, [png.width]),
                    _expect(_SAMPLES, samples, reason="alpha is discarded" if png.alpha else ""),
                    _expect(_BITS_STORED, stored_bits), _expect(_BITS_ALLOCATED, allocated)]
            if png.samples_per_pixel == 3 and not png.palette:
                out.append(_expect(_PLANAR, planar))
                if native:
                    out.append(_expect(_PHOTOMETRIC, ["RGB"]))
            elif png.palette:
                out.append(_expect(_PHOTOMETRIC, ["RGB", "PALETTE COLOR"] if native else
                                   ["RGB", "PALETTE COLOR", "YBR_RCT", "YBR_FULL"]))
            else:
                out.append(_expect(_PHOTOMETRIC, ["MONOCHROME2"]))
            return out, f"PNG {png.width}x{png.height}, colour type {png.color_type}, {png.bit_depth}-bit"
        if kind == mt.IMAGE_GIF:
            gif = media.probe_gif(data)
            out += [_expect(_ROWS, [gif.height]), _expect(_COLUMNS, [gif.width]), _expect(_SAMPLES, [3, 1]),
                    _expect(_BITS_STORED, [8]), _expect(_BITS_ALLOCATED, [8]),
                    _expect(_PHOTOMETRIC, ["RGB", "PALETTE COLOR"] if native else
                            ["RGB", "PALETTE COLOR", "YBR_RCT", "YBR_FULL"])]
            if gif.frames > 1:
                out.append(_expect(_FRAMES, [gif.frames], "WIC-IM-006",
                                   "an animated GIF becomes multi-frame"))
            return out, f"GIF {gif.width}x{gif.height}, {gif.frames} frame(s)"
    except MediaProbeError as exc:
        return [], f"unreadable ({exc})"
    return [], ""


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip(" \x00")
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value).strip(" \x00")


@check(requirements=["CONV-004", "WIC-IM-007", "WIC-IM-022", "WIC-IM-006"], needs=_NEEDS, tags=_TAGS,
       options={"jpeg_lossy_photometric": list(DEFAULT_JPEG_LOSSY_PHOTOMETRIC)})
def conversion_pixel_description_matches_bitstream(ctx: CheckContext, exchange: Exchange) -> None:
    """The stored Image Pixel Description agrees with the submitted bitstream.

    Rows, Columns, Bits Stored (= precision), Bits Allocated, High Bit, Samples per
    Pixel (= components; PNG/GIF: 3 for colour with alpha dropped, 1 for grey or a
    kept palette) and Planar Configuration 0 (JPEG, JPEG 2000, any encapsulated
    syntax).  For lossy JPEG also Lossy Image Compression "01" and a Photometric
    Interpretation from the ``jpeg_lossy_photometric`` option (WIC-IM-022, confidence
    D: PS3.5 §8.2.1 was not read; RGB is required when the stream is RGB-coded).

    Options
    -------
    jpeg_lossy_photometric : list of str
        Photometric Interpretations accepted for a 3-component lossy JPEG.
    """
    photometric = ctx.options.get("jpeg_lossy_photometric", DEFAULT_JPEG_LOSSY_PHOTOMETRIC)
    findings: list[Finding] = []
    for pair in conversion_of(ctx, exchange).pairs:
        medium = pair.medium()
        if medium is None or medium.media_type not in _IMAGE_MEDIA:
            continue
        ds = pair.dataset
        expectations, describe = pixel_expectations(medium.media_type, medium.body.read(),
                                                    _stored_ts(ds) or "", jpeg_lossy_photometric=photometric)
        for exp in expectations:
            value = _safe_value(ds, exp.tag)
            why = f" ({exp.reason})" if exp.reason else ""
            if value is None or value == "":
                findings.append(MissingAttribute(
                    requirement="WIC-IM-007" if exp.requirement == "CONV-004" else exp.requirement,
                    location=pair.at(exp.tag),
                    message=f"{_name(exp.tag)} is absent from the stored instance; the Image Manager must "
                            f"derive it from the bitstream ({describe}): {_fmt(exp.allowed)}{why}"))
                continue
            got = _coerce(value)
            if got not in exp.allowed:
                findings.append(ConversionMismatch(
                    requirement=exp.requirement, location=pair.at(exp.tag),
                    message=f"{_name(exp.tag)} is {got!r} but the submitted {medium.media_type} bitstream "
                            f"({describe}) implies {_fmt(exp.allowed)}{why}"))
    raise_all(findings, "conversion_pixel_description_matches_bitstream")


def _fmt(values: Iterable[Any]) -> str:
    items = sorted(values, key=str)
    return repr(items[0]) if len(items) == 1 else "one of " + ", ".join(repr(v) for v in items)


# =====================================================================================================
# CONV-005: video attributes
# =====================================================================================================


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What the probe of a submitted video says (``None`` where it cannot tell)."""

    frames: int | None
    frame_rate: float | None
    width: int | None
    height: int | None
    describe: str


def video_facts(kind: str, body: Body) -> VideoFacts | None:
    """Probe a submitted video part (MP4/QuickTime via seeks, MPEG-2 from its first 4 MiB)."""
    try:
        if kind in _MP4_MEDIA:
            info = media.probe_mp4(body)
            return VideoFacts(info.frames, info.frame_rate, info.width, info.height,
                              f"{info.codec}, {info.frames} frames at {info.frame_rate or 0:.3f} fps")
        if kind in _MPEG2_MEDIA:
            mpeg = media.probe_mpeg2(body.head(1 << 22))
            return VideoFacts(None, mpeg.frame_rate, mpeg.width, mpeg.height,
                              f"MPEG video at {mpeg.frame_rate or 0:.3f} fps")
    except MediaProbeError:
        return None
    return None


def _tag_values(value: Any) -> list[int]:
    items = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
    out: list[int] = []
    for item in items:
        try:
            out.append(int(item))
        except (TypeError, ValueError):
            continue
    return out


@check(requirements=["CONV-005"], needs=_NEEDS, tags=_TAGS, options={"frame_time_tolerance": 0.01})
def conversion_video_attributes_match_stream(ctx: CheckContext, exchange: Exchange) -> None:
    """A stored video has the Number of Frames, Frame Increment Pointer and Frame Time of its stream.

    Number of Frames equals the number of video samples; Frame Increment Pointer is
    present and points to Frame Time (or Frame Time Vector); Frame Time is 1000 / frame
    rate ms within the relative ``frame_time_tolerance``; Rows/Columns equal the coded size.

    Options
    -------
    frame_time_tolerance : float
        Relative tolerance on Frame Time (default 0.01 = 1 %).
    """
    tolerance = float(ctx.options.get("frame_time_tolerance", 0.01))
    findings: list[Finding] = []
    for pair in conversion_of(ctx, exchange).pairs:
        medium = pair.medium()
        if medium is None or medium.media_type not in _VIDEO_MEDIA:
            continue
        facts = video_facts(medium.media_type, medium.body)
        if facts is None:
            continue
        ds = pair.dataset
        frames = _safe_value(ds, _FRAMES)
        if frames is None or frames == "":
            findings.append(MissingAttribute(requirement="CONV-005", location=pair.at(_FRAMES),
                                             message=f"{_name(_FRAMES)} is absent from the stored video "
                                                     f"({facts.describe})"))
        elif facts.frames is not None and _coerce(frames) != facts.frames:
            findings.append(ConversionMismatch(
                requirement="CONV-005", location=pair.at(_FRAMES),
                message=f"{_name(_FRAMES)} is {_coerce(frames)!r} but the stream has {facts.frames} frames"))
        pointer = _safe_value(ds, 0x00280009)
        targets = _tag_values(pointer) if pointer is not None else []
        if not targets:
            findings.append(MissingAttribute(
                requirement="CONV-005", location=pair.at(0x00280009),
                message="Frame Increment Pointer (0028,0009) is absent from the stored video; it must point "
                        "to Frame Time (0018,1063) or Frame Time Vector (0018,1065)"))
        elif not {_FRAME_TIME, _FRAME_TIME_VECTOR} & set(targets):
            findings.append(ConversionMismatch(
                requirement="CONV-005", location=pair.at(0x00280009),
                message=f"Frame Increment Pointer (0028,0009) points to "
                        f"{', '.join(_name(t) for t in targets)}, not to Frame Time (0018,1063) or "
                        f"Frame Time Vector (0018,1065)"))
        frame_time = _safe_value(ds, _FRAME_TIME)
        if (_FRAME_TIME in targets or not targets) and frame_time in (None, ""):
            findings.append(MissingAttribute(requirement="CONV-005", location=pair.at(_FRAME_TIME),
                                             message=f"{_name(_FRAME_TIME)} is absent from the stored video "
                                                     f"({facts.describe})"))
        elif frame_time not in (None, "") and facts.frame_rate:
            expected = 1000.0 / facts.frame_rate
            number = _number(frame_time)
            if number is None or not math.isclose(float(number), expected, rel_tol=tolerance):
                findings.append(ConversionMismatch(
                    requirement="CONV-005", location=pair.at(_FRAME_TIME),
                    message=f"{_name(_FRAME_TIME)} is {str(frame_time)!r} ms but the stream runs at "
                            f"{facts.frame_rate:.3f} fps, i.e. {expected:.3f} ms per frame"))
        for tag, want in ((_ROWS, facts.height), (_COLUMNS, facts.width)):
            got = _safe_value(ds, tag)
            if want and got not in (None, "") and _coerce(got) != want:
                findings.append(ConversionMismatch(
                    requirement="CONV-005", location=pair.at(tag),
                    message=f"{_name(tag)} is {_coerce(got)!r} but the video is coded at "
                            f"{facts.width}x{facts.height}"))
    raise_all(findings, "conversion_video_attributes_match_stream")


# =====================================================================================================
# CONV-006 / WIC-IM-008: encapsulated documents
# =====================================================================================================


@check(requirements=["CONV-006", "WIC-IM-008"], needs=_NEEDS, tags=_TAGS)
def conversion_encapsulated_document_matches(ctx: CheckContext, exchange: Exchange) -> None:
    """The stored Encapsulated Document holds exactly the submitted document part.

    (0042,0011) equals the part's bytes (one trailing 0x00 pad byte allowed for an odd
    length); MIME Type of Encapsulated Document (0042,0012) equals the part's media
    type (application/pdf for a PDF); Encapsulated Document Length (0042,0015), when
    present, equals the unpadded length.
    """
    findings: list[Finding] = []
    for pair in conversion_of(ctx, exchange).pairs:
        medium = pair.medium((_ENCAPSULATED_DOCUMENT,))
        if medium is None:
            continue
        data = medium.body.read()
        ds = pair.dataset
        stored = _safe_value(ds, _ENCAPSULATED_DOCUMENT)
        where = pair.at(_ENCAPSULATED_DOCUMENT)
        if not stored:
            findings.append(MissingAttribute(
                requirement="WIC-IM-008", location=where,
                message=f"Encapsulated Document (0042,0011) is absent or empty; it must hold the submitted "
                        f"{medium.media_type or 'document'} part ({len(data)} bytes)"))
        else:
            stored_bytes = _unpad(bytes(stored), len(data))
            offset = first_difference(data, stored_bytes)
            if offset is not None:
                findings.append(ConversionMismatch(
                    requirement="CONV-006", location=where,
                    message=f"Encapsulated Document (0042,0011) ({len(bytes(stored))} bytes) differs from "
                            f"the submitted {medium.media_type or 'document'} part ({len(data)} bytes) first "
                            f"at byte offset {offset}"))
        mime = _safe_value(ds, 0x00420012)
        expected_mime = medium.media_type or mt.APPLICATION_PDF
        if mime in (None, ""):
            findings.append(MissingAttribute(
                requirement="CONV-006", location=pair.at(0x00420012),
                message=f"MIME Type of Encapsulated Document (0042,0012) is absent; "
                        f"expected {expected_mime!r}"))
        elif str(mime).strip().lower() != expected_mime:
            findings.append(ConversionMismatch(
                requirement="CONV-006", location=pair.at(0x00420012),
                message=f"MIME Type of Encapsulated Document (0042,0012) is {str(mime)!r} but the "
                        f"document part is {expected_mime!r}"))
        length = _safe_value(ds, 0x00420015)
        if length not in (None, "") and _coerce(length) != len(data):
            findings.append(ConversionMismatch(
                requirement="CONV-006", location=pair.at(0x00420015),
                message=f"Encapsulated Document Length (0042,0015) is {_coerce(length)!r} but the "
                        f"document is {len(data)} bytes long (without padding)"))
    raise_all(findings, "conversion_encapsulated_document_matches")


# =====================================================================================================
# CONV-009: Specific Character Set
# =====================================================================================================


def non_ascii_texts(ds: Dataset, where: str = "") -> Iterator[tuple[str, int, str]]:
    """Yield ``(path, tag, text)`` for every text value with a non-ASCII character (recursively)."""
    for elem in ds:
        path = f"{where} {_tag(int(elem.tag))}".strip()
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or ()):
                yield from non_ascii_texts(item, f"{path}[{i}] >")
        elif elem.VR in _TEXT_VRS:
            for value in _values(elem):
                text = str(value)
                if not text.isascii():
                    yield path, int(elem.tag), text


def encodable(text: str, terms: Sequence[str]) -> bool:
    """Return whether every character of ``text`` can be encoded by one of the character sets ``terms``.

    References
    ----------
    PS3.5 §6.1 and Table C.12-2 to C.12-5 (defined terms of Specific Character Set).
    """
    codecs, _unknown = codecs_for_terms(terms)
    return text_encodable(text, codecs)


@check(requirements=["CONV-009", "WIC-CA-012"], needs=_NEEDS, tags=_TAGS)
def conversion_character_set_declared(ctx: CheckContext, exchange: Exchange) -> None:
    """A stored instance declares a Specific Character Set that encodes the non-ASCII text received.

    JSON is UTF-8, so "ISO_IR 192" always fits; another declared set must encode every
    non-ASCII character of the submitted text values (SH, LO, ST, LT, UT, UC, PN).
    """
    findings: list[Finding] = []
    for pair in conversion_of(ctx, exchange).pairs:
        texts = list(non_ascii_texts(pair.submitted.dataset))
        if not texts:
            continue
        value = _safe_value(pair.dataset, 0x00080005)
        terms = [str(v) for v in _tag_values_str(value)]
        path, tag, text = texts[0]
        sample = f"{_name(tag)} at {path} = {text[:60]!r}"
        if not any(t.strip() for t in terms):
            findings.append(MissingAttribute(
                requirement="CONV-009", location=pair.at(0x00080005),
                message=f"Specific Character Set (0008,0005) is absent or empty but the submission holds "
                        f"non-ASCII text ({sample}); expected 'ISO_IR 192' or a set that encodes it"))
            continue
        _codecs_found, unknown = codecs_for_terms(terms)
        if unknown:
            findings.append(ConversionMismatch(
                requirement="CONV-009", location=pair.at(0x00080005),
                message=f"Specific Character Set (0008,0005) has unknown term(s) {unknown!r}"))
            continue
        bad = next(((p, t, x) for p, t, x in texts if not encodable(x, terms)), None)
        declared = "\\".join(terms)
        if bad is not None:
            findings.append(ConversionMismatch(
                requirement="CONV-009", location=pair.at(0x00080005),
                message=f"Specific Character Set (0008,0005) {declared!r} cannot encode "
                        f"{_name(bad[1])} at {bad[0]} = {bad[2][:60]!r}; expected 'ISO_IR 192'"))
    raise_all(findings, "conversion_character_set_declared")


def _tag_values_str(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


# =====================================================================================================
# CONV-008: one submitted study stays one study
# =====================================================================================================


@check(requirements=["CONV-008"], needs=_NEEDS, tags=_TAGS)
def conversion_instances_share_submitted_study(ctx: CheckContext, exchange: Exchange) -> None:
    """Instances submitted in one study are stored in one study, and different studies are not merged.

    The submitted study is the instance's Study Instance UID, or the study of the
    target URL (``/studies/{uid}``).  A change recorded in the Original Attributes
    Sequence is not a split or merge.
    """
    stow = ctx.stow_request(exchange)
    target_study = stow.target.study_uid if stow is not None and stow.target is not None else None
    by_submitted: dict[str, dict[str, list[Pair]]] = {}
    by_stored: dict[str, set[str]] = {}
    for pair in conversion_of(ctx, exchange).pairs:
        value = _safe_value(pair.submitted.dataset, 0x0020000D)
        submitted = str(value).strip("\x00 ") if value else target_study
        stored_value = _safe_value(pair.dataset, 0x0020000D)
        if not submitted or not stored_value:
            continue
        stored = str(stored_value).strip("\x00 ")
        if stored != submitted and value and \
                recorded_original(pair.submitted.dataset[0x0020000D], pair.dataset) == "same":
            continue
        by_submitted.setdefault(submitted, {}).setdefault(stored, []).append(pair)
        by_stored.setdefault(stored, set()).add(submitted)
    findings: list[Finding] = []
    for submitted, landed in by_submitted.items():
        if len(landed) > 1:
            detail = "; ".join(f"{stored}: {', '.join(p.uid for p in pairs)}"
                               for stored, pairs in landed.items())
            findings.append(ConversionMismatch(
                requirement="CONV-008", location=f"study {submitted} (0020,000D)",
                message=f"instances submitted in study {submitted} were stored in {len(landed)} studies "
                        f"({detail})"))
    for stored, sources in by_stored.items():
        if len(sources) > 1:
            findings.append(ConversionMismatch(
                requirement="CONV-008", location=f"study {stored} (0020,000D)",
                message=f"instances submitted in {len(sources)} different studies "
                        f"({', '.join(sorted(sources))}) were merged into study {stored}"))
    raise_all(findings, "conversion_instances_share_submitted_study")

