"""Native DICOM Model (PS3.19 Annex A.1) XML documents to and from pydicom Datasets.

pydicom has no XML codec, so this module provides both directions:

* :func:`parse_document` reads one ``NativeDicomModel`` document (one instance)
  into a :class:`~wic_conformance.dicomweb.metadata.MetadataDocument`, keeping the
  element tree as the *raw* view and recording every departure from the model as a
  :class:`~wic_conformance.dicomweb.deviation.Deviation`.  It never raises for bad
  input.
* :func:`dataset_to_xml` writes a conformant document.

Security: documents are parsed with :mod:`defusedxml` with DTDs, entity
declarations and external references all forbidden.  A DTD, an entity bomb or an
external entity yields the fatal deviation ``xml.forbidden``; nothing is ever
expanded or fetched.  Bulk data is resolved only through the injected
``bulk_resolver``; this module opens no file and no URL.

Deviation codes
---------------
``xml.syntax``, ``xml.forbidden`` (fatal, document unusable);
``xml.root``, ``xml.namespace_missing``, ``xml.namespace_wrong``, ``xml.space_missing`` (root element);
``xml.tag_missing``, ``xml.tag_invalid``, ``xml.tag_lowercase``, ``xml.duplicate_tag``, ``xml.at_lowercase``,
``xml.private_creator_missing``, ``xml.private_creator_forbidden``, ``xml.private_block_sent``,
``xml.private_creator_conflict`` (tags);
``xml.keyword_missing``, ``xml.keyword_mismatch``, ``xml.vr_missing``, ``xml.vr_invalid``,
``xml.vr_mismatch``;
``xml.value_number``, ``xml.item_number``, ``xml.person_name_number``, ``xml.value_in_sq_or_pn``,
``xml.empty_value_for_zero_length``;
``xml.item_not_sq``, ``xml.person_name_not_pn``, ``xml.person_name_structure``, ``xml.unknown_element``;
``xml.bulk_reference``, ``xml.bulk_multiple``, ``xml.inline_binary_vr``, ``xml.inline_binary_multiple``,
``xml.base64``, ``xml.mixed_content``;
``xml.group_length``;
``xml.conversion``, ``xml.bulk_unresolved``, ``xml.too_deep``.

References
----------
DICOM PS3.19 Annex A.1 (Native DICOM Model), A.1.6 (schema); PS3.18 §10.5.1.4 (XML metadata in STOW-RS).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
import xml.etree.ElementTree as ET  # noqa: N817  (building only; parsing goes through defusedxml)
from collections.abc import Callable, Iterable
from typing import Any

import defusedxml.ElementTree as defused_et
from defusedxml.common import DefusedXmlException
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Deviation, Strictness
from wic_conformance.dicomweb.metadata import BulkRef, BulkResolver, MetadataDocument

__all__ = [
    "BINARY_VRS",
    "BulkUriFor",
    "MAX_DEPTH",
    "NATIVE_DICOM_NAMESPACE",
    "VALID_VRS",
    "XML_NAMESPACE",
    "dataset_to_xml",
    "local_name",
    "namespace_of",
    "parse_document",
]

log = logging.getLogger(__name__)

#: The schema namespace of the Native DICOM Model (PS3.19 A.1.6).
NATIVE_DICOM_NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
#: The namespace of the ``xml:`` prefix.
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
#: Deepest sequence nesting followed; deeper Items are reported (``xml.too_deep``) and skipped.
MAX_DEPTH = 32

#: Every VR the schema allows (PS3.19 A.1.6).
VALID_VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV",
    "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV",
})
#: VRs whose value may be carried as InlineBinary (PS3.19 A.1.5).
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_INT_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_CONTENT_KINDS = ("Value", "PersonName", "Item", "BulkData", "InlineBinary")
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
_STRUCT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_XML_SPACE = f"{{{XML_NAMESPACE}}}space"

#: Chooses a BulkData@uri for an element when writing (``None``: InlineBinary): ``(element, path) -> uri``.
BulkUriFor = Callable[[DataElement, str], str | None]

# Deviations for which the lenient reader had to guess: STRICT stops at the first of them.
_GUESSES = frozenset({
    "xml.tag_invalid", "xml.tag_missing", "xml.vr_invalid", "xml.mixed_content", "xml.conversion",
    "xml.base64", "xml.value_number", "xml.item_number", "xml.person_name_number", "xml.duplicate_tag",
    "xml.private_creator_missing", "xml.private_creator_conflict", "xml.too_deep", "xml.bulk_reference",
    "xml.bulk_multiple", "xml.inline_binary_multiple", "xml.value_in_sq_or_pn", "xml.item_not_sq",
    "xml.person_name_not_pn", "xml.inline_binary_vr",
})


class _Stop(Exception):
    """Raised inside the walker to stop conversion under ``Strictness.STRICT``."""


def local_name(tag: Any) -> str:
    """Return the local part of an ElementTree tag (``"{ns}Value"`` -> ``"Value"``)."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def namespace_of(tag: Any) -> str:
    """Return the namespace of an ElementTree tag, or ``""`` when it has none."""
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].split("}", 1)[0]
    return ""


def parse_document(
    data: bytes,
    *,
    location: str = "",
    policy: Strictness = Strictness.LENIENT,
    bulk_resolver: BulkResolver | None = None,
) -> MetadataDocument:
    """Decode one Native DICOM Model document (one instance) into a :class:`MetadataDocument`.

    Parameters
    ----------
    data : bytes
        The document as received (its XML declaration decides the character encoding).
    location : str
        Where the document came from, copied onto the result.
    policy : Strictness
        ``STRICT`` stops converting at the first deviation that needs a guess (the
        dataset is then left out); ``LENIENT`` converts what it unambiguously can.
    bulk_resolver : callable, optional
        Answers a ``BulkData@uri`` with bytes, or ``None``; never asked to fetch.
        Without it every reference is reported as ``xml.bulk_unresolved``.

    Returns
    -------
    MetadataDocument
        ``raw`` is the root element (``None`` when the bytes are not usable XML);
        ``datasets`` holds one Dataset, or none after a fatal deviation.

    References
    ----------
    PS3.19 A.1.5 (description), A.1.6 (schema); PS3.18 §10.5.1.4.
    """
    try:
        root = defused_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        return _failed(location, "xml.forbidden",
                       f"forbidden XML construct (DTD, entity declaration or external reference): "
                       f"{type(exc).__name__}; nothing was expanded")
    except ET.ParseError as exc:
        return _failed(location, "xml.syntax", f"not well-formed XML: {exc}")
    except (LookupError, ValueError, TypeError, UnicodeError, RecursionError) as exc:
        return _failed(location, "xml.syntax", f"cannot decode the XML document: {exc}")
    walker = _Walker(policy, bulk_resolver)
    datasets: tuple[Dataset, ...] = ()
    try:
        ds = walker.root(root)
        if ds is not None:
            datasets = (ds,)
    except _Stop:
        datasets = ()
    except Exception as exc:  # a converter defect must not escape: parsers never raise
        log.exception("converting %s failed", location or "an XML document")
        walker.deviations.append(Deviation("xml.conversion", f"conversion stopped: {type(exc).__name__}: {exc}",
                                           "document", fatal=True))
    return MetadataDocument(
        media_type=mt.APPLICATION_DICOM_XML, location=location, raw=root, datasets=datasets,
        bulk_refs=tuple(walker.bulk_refs), deviations=tuple(walker.deviations),
    )


def _failed(location: str, code: str, message: str) -> MetadataDocument:
    return MetadataDocument(media_type=mt.APPLICATION_DICOM_XML, location=location, raw=None,
                            deviations=(Deviation(code, message, "document", fatal=True),))


def _numbered(children: list[ET.Element]) -> tuple[list[ET.Element], str | None]:
    """Order ``children`` by their ``number`` and say what is wrong with the numbering, if anything."""
    numbers: list[int] = []
    problem: str | None = None
    for pos, child in enumerate(children, start=1):
        text = child.get("number")
        if text is None:
            problem = problem or f"element {pos} has no @number"
            continue
        stripped = text.strip()
        if not stripped.isdigit() or stripped != text:
            problem = problem or f"element {pos} has @number={text!r}, not a positive integer"
            continue
        numbers.append(int(stripped))
    if problem is not None:
        return children, problem
    if numbers != list(range(1, len(children) + 1)):
        shown = ", ".join(str(n) for n in numbers[:10])
        if sorted(numbers) == list(range(1, len(children) + 1)):
            ordered = [c for _, c in sorted(zip(numbers, children, strict=True), key=lambda p: p[0])]
            return ordered, f"@number values in document order are {shown}; expected 1, 2, 3, ... in order"
        return children, f"@number values are {shown}; expected 1, 2, 3, ... with no gap or repeat"
    return children, None


class _Walker:
    """Converts the element tree to a Dataset, collecting deviations and bulk references."""

    def __init__(self, policy: Strictness, resolver: BulkResolver | None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.deviations: list[Deviation] = []
        self.bulk_refs: list[BulkRef] = []

    def dev(self, code: str, message: str, path: str, *, fatal: bool = False) -> None:
        self.deviations.append(Deviation(code, message, path, fatal=fatal))
        if self.policy is Strictness.STRICT and (fatal or code in _GUESSES):
            raise _Stop

    # -- root ----------------------------------------------------------------------------------
    def root(self, root: ET.Element) -> Dataset | None:
        name = local_name(root.tag)
        path = f"/{name}"
        if name != "NativeDicomModel":
            self.dev("xml.root", f"root element is <{name}>, not <NativeDicomModel>", path, fatal=True)
            return None
        ns = namespace_of(root.tag)
        if not ns:
            self.dev("xml.namespace_missing",
                     "<NativeDicomModel> is in no namespace; the schema namespace is "
                     f"{NATIVE_DICOM_NAMESPACE}", path)
        elif ns != NATIVE_DICOM_NAMESPACE:
            self.dev("xml.namespace_wrong",
                     f"<NativeDicomModel> is in namespace {ns!r}, not {NATIVE_DICOM_NAMESPACE}", path)
        space = root.get(_XML_SPACE)
        if space != "preserve":
            seen = "absent" if space is None else f"{space!r}"
            self.dev("xml.space_missing", f'xml:space="preserve" is required on the root; it is {seen}', path)
        return self.dataset(root, path, 0)

    # -- data sets -----------------------------------------------------------------------------
    def dataset(self, parent: ET.Element, path: str, depth: int) -> Dataset:
        ds = Dataset()
        seen: set[int] = set()
        for child in parent:
            name = local_name(child.tag)
            if name != "DicomAttribute":
                if isinstance(child.tag, str):
                    self.dev("xml.unknown_element", f"unexpected element <{name}> in a data set", path)
                continue
            self.attribute(child, path, depth, ds, seen)
        return ds

    def attribute(self, elem: ET.Element, path: str, depth: int, ds: Dataset, seen: set[int]) -> None:
        tag_text = elem.get("tag")
        if tag_text is None:
            self.dev("xml.tag_missing", "DicomAttribute without @tag", f"{path}/DicomAttribute")
            return
        here = f"{path}/DicomAttribute[@tag='{tag_text}']"
        if not _HEX8.fullmatch(tag_text):
            self.dev("xml.tag_invalid", f"@tag={tag_text!r} is not 8 hexadecimal digits", here)
            return
        if tag_text != tag_text.upper():
            self.dev("xml.tag_lowercase", f"@tag={tag_text!r} uses lowercase hexadecimal digits", here)
        tag = BaseTag(int(tag_text, 16))
        creator = elem.get("privateCreator")
        keyword = elem.get("keyword")
        vr_text = elem.get("vr")
        if tag.element == 0:
            self.dev("xml.group_length", f"group length attribute {tag_text.upper()} must not be included",
                     here)
        real_tag = self.private_tag(tag, creator, ds, here)
        if real_tag is None:
            return
        if real_tag in seen:
            self.dev("xml.duplicate_tag",
                     f"attribute {tag_text.upper()} appears more than once in the data set", here)
            return
        seen.add(real_tag)
        vr = self.check_vr_keyword(tag, vr_text, keyword, creator, here)
        value = self.content(elem, tag_text.upper(), vr, here, depth)
        if value is _SKIP:
            return
        try:
            ds.add(DataElement(real_tag, vr, value, validation_mode=0))
        except Exception as exc:  # pydicom raises several kinds for values it cannot hold
            self.dev("xml.conversion", f"cannot build the {vr} element {tag_text.upper()}: {exc}", here)

    def private_tag(self, tag: BaseTag, creator: str | None, ds: Dataset, here: str) -> BaseTag | None:
        """Return the tag to store under, allocating a private block from ``@privateCreator``."""
        shown = f"{int(tag):08X}"
        if not tag.is_private:
            if creator is not None:
                self.dev("xml.private_creator_forbidden",
                         f"@privateCreator={creator!r} on the standard attribute {shown}", here)
            return tag
        if creator is None:
            if 0x10 <= tag.element <= 0xFF:
                return tag  # a Private Creator Data Element itself
            self.dev("xml.private_creator_missing",
                     f"private attribute {shown} has no @privateCreator", here)
            return tag
        block_byte, low = tag.element >> 8, tag.element & 0xFF
        if block_byte:
            self.dev("xml.private_block_sent",
                     f"private attribute {shown} carries its block number; PS3.19 requires the form gggg00ee",
                     here)
            creator_tag = BaseTag((tag.group << 16) | block_byte)
            existing = ds.get(creator_tag)
            if existing is None:
                ds.add(DataElement(creator_tag, "LO", creator, validation_mode=0))
            elif str(existing.value) != creator:
                self.dev("xml.private_creator_conflict",
                         f"@privateCreator={creator!r} but block {block_byte:02X} of group {tag.group:04X} "
                         f"belongs to {existing.value!r}", here)
            return tag
        try:
            block = ds.private_block(tag.group, creator, create=True)
        except (ValueError, KeyError) as exc:
            self.dev("xml.conversion", f"cannot allocate a private block for {creator!r}: {exc}", here)
            return None
        return BaseTag(block.get_tag(low))

    def check_vr_keyword(self, tag: BaseTag, vr_text: str | None, keyword: str | None, creator: str | None,
                         here: str) -> str:
        """Check @vr and @keyword against the data dictionary and return the VR to convert with."""
        known_kw = "" if tag.is_private else keyword_for_tag(tag)
        try:
            dict_vr = "" if tag.is_private else dictionary_VR(tag)
        except KeyError:
            dict_vr = ""
        if tag.is_private and creator is None and 0x10 <= tag.element <= 0xFF:
            dict_vr = "LO"
        allowed = [v.strip() for v in dict_vr.split(" or ")] if dict_vr else []
        shown = f"{int(tag):08X}"
        if known_kw:
            if keyword is None:
                self.dev("xml.keyword_missing",
                         f"@keyword is missing for {shown}, a standard attribute ({known_kw})", here)
            elif keyword != known_kw:
                self.dev("xml.keyword_mismatch", f"@keyword={keyword!r} for {shown}; the dictionary says "
                         f"{known_kw!r}", here)
        fallback = allowed[0] if allowed else "UN"
        if vr_text is None:
            self.dev("xml.vr_missing", f"@vr is missing for {shown} (the receiver needs it)", here)
            return fallback
        if vr_text not in VALID_VRS:
            self.dev("xml.vr_invalid", f"@vr={vr_text!r} for {shown} is not a DICOM VR", here)
            return fallback
        if allowed and vr_text not in allowed and not (vr_text == "UN"):
            self.dev("xml.vr_mismatch", f"@vr={vr_text!r} for {shown}; the dictionary says {dict_vr}", here)
        return vr_text

    # -- content -------------------------------------------------------------------------------
    def content(self, elem: ET.Element, tag: str, vr: str, here: str, depth: int) -> Any:
        groups: dict[str, list[ET.Element]] = {k: [] for k in _CONTENT_KINDS}
        for child in elem:
            name = local_name(child.tag)
            if name in groups:
                groups[name].append(child)
            elif isinstance(child.tag, str):
                self.dev("xml.unknown_element", f"unexpected element <{name}> in DicomAttribute {tag}", here)
        kinds = [k for k in _CONTENT_KINDS if groups[k]]
        if len(kinds) > 1:
            self.dev("xml.mixed_content", f"DicomAttribute {tag} mixes {' and '.join(kinds)}; "
                     "exactly one kind of content is allowed", here)
        if groups["Item"] and vr != "SQ":
            self.dev("xml.item_not_sq", f"<Item> inside {tag}, whose VR is {vr}, not SQ", here)
        if groups["PersonName"] and vr != "PN":
            self.dev("xml.person_name_not_pn", f"<PersonName> inside {tag}, whose VR is {vr}, not PN", here)
        if groups["Value"] and vr in ("SQ", "PN"):
            self.dev("xml.value_in_sq_or_pn", f"<Value> is not used for VR {vr} (attribute {tag})", here)
        if groups["InlineBinary"] and vr not in BINARY_VRS:
            self.dev("xml.inline_binary_vr",
                     f"<InlineBinary> inside {tag} with VR {vr}; allowed only for OB OD OF OL OV OW UN", here)
        if len(groups["InlineBinary"]) > 1:
            self.dev("xml.inline_binary_multiple", f"{tag} has {len(groups['InlineBinary'])} <InlineBinary>; "
                     "a single one covers the whole value field", here)
        if len(groups["BulkData"]) > 1:
            self.dev("xml.bulk_multiple", f"{tag} has {len(groups['BulkData'])} <BulkData>; "
                     "a single one covers the whole value field", here)

        if vr == "SQ":
            return self.items(groups["Item"], here, depth)
        if groups["BulkData"]:
            return self.bulk(groups["BulkData"][0], tag, vr, here)
        if groups["InlineBinary"]:
            return self.inline(groups["InlineBinary"][0], tag, vr, here)
        if vr == "PN":
            if groups["PersonName"]:
                return self.person_names(groups["PersonName"], tag, here)
            if groups["Value"]:
                return self.values(groups["Value"], tag, "LO", here)
            return None
        if groups["Value"]:
            if vr in BINARY_VRS:
                self.dev("xml.conversion", f"{tag} has VR {vr} but its value is given as <Value> elements; "
                         "use InlineBinary or BulkData", here)
                return _SKIP
            return self.values(groups["Value"], tag, vr, here)
        return None

    def items(self, items: list[ET.Element], here: str, depth: int) -> Sequence:
        ordered, problem = _numbered(items)
        if problem:
            self.dev("xml.item_number", f"Item numbering: {problem}", here)
        if depth + 1 > MAX_DEPTH:
            self.dev("xml.too_deep", f"sequence nesting deeper than {MAX_DEPTH} levels is not followed", here,
                     fatal=True)
            return Sequence([])
        out: list[Dataset] = []
        for pos, item in enumerate(ordered, start=1):
            out.append(self.dataset(item, f"{here}/Item[{pos}]", depth + 1))
        return Sequence(out)

    def values(self, elems: list[ET.Element], tag: str, vr: str, here: str) -> Any:
        ordered, problem = _numbered(elems)
        if problem:
            self.dev("xml.value_number", f"Value numbering in {tag}: {problem}", here)
        texts = [e.text or "" for e in ordered]
        for pos, e in enumerate(ordered, start=1):
            if len(e):
                self.dev("xml.unknown_element", f"<Value> {pos} of {tag} holds child elements", here)
        if len(texts) == 1 and texts[0] == "":
            self.dev("xml.empty_value_for_zero_length",
                     f"{tag} has a single empty <Value>; a zero-length attribute has no <Value> element",
                     here)
            return None
        out: list[Any] = []
        for pos, text in enumerate(texts, start=1):
            if text == "":
                out.append(None if vr in _INT_VRS | _FLOAT_VRS | {"AT", "DS"} else "")
                continue
            try:
                out.append(self.convert_text(text, vr, tag, here))
            except ValueError:
                self.dev("xml.conversion", f"<Value> {pos} of {tag} is {text!r}, not a valid {vr} value",
                         here)
                return _SKIP
        return out[0] if len(out) == 1 else out

    def convert_text(self, text: str, vr: str, tag: str, here: str) -> Any:
        if vr in _INT_VRS:
            return int(text.strip())
        if vr in _FLOAT_VRS:
            return float(text.strip())
        if vr == "DS":
            float(text.strip())
            return text.strip()
        if vr == "AT":
            stripped = text.strip()
            if not _HEX8.fullmatch(stripped):
                raise ValueError(text)
            if stripped != stripped.upper():
                self.dev("xml.at_lowercase", f"AT value {stripped!r} of {tag} uses lowercase digits", here)
            return BaseTag(int(stripped, 16))
        return text

    def person_names(self, elems: list[ET.Element], tag: str, here: str) -> Any:
        ordered, problem = _numbered(elems)
        if problem:
            self.dev("xml.person_name_number", f"PersonName numbering in {tag}: {problem}", here)
        names: list[str] = []
        for pos, pn in enumerate(ordered, start=1):
            where = f"{here}/PersonName[{pos}]"
            groups: dict[str, str] = {}
            for group in pn:
                gname = local_name(group.tag)
                if gname not in _PN_GROUPS:
                    if isinstance(group.tag, str):
                        self.dev("xml.person_name_structure",
                                 f"unexpected <{gname}> in PersonName; only Alphabetic, Ideographic "
                                 "and Phonetic", where)
                    continue
                if gname in groups:
                    self.dev("xml.person_name_structure", f"<{gname}> appears twice in one PersonName", where)
                    continue
                comps: dict[str, str] = {}
                for comp in group:
                    cname = local_name(comp.tag)
                    if cname not in _PN_COMPONENTS:
                        if isinstance(comp.tag, str):
                            self.dev("xml.person_name_structure",
                                     f"unexpected <{cname}> in <{gname}>; components are "
                                     + ", ".join(_PN_COMPONENTS), where)
                        continue
                    if cname in comps:
                        self.dev("xml.person_name_structure", f"<{cname}> appears twice in <{gname}>", where)
                        continue
                    comps[cname] = comp.text or ""
                if (group.text or "").strip():
                    self.dev("xml.person_name_structure",
                             f"<{gname}> holds text {group.text!r} outside the name component elements",
                             where)
                parts = [comps.get(c, "") for c in _PN_COMPONENTS]
                while parts and parts[-1] == "":
                    parts.pop()
                groups[gname] = "^".join(parts)
            seq = [groups.get(g, "") for g in _PN_GROUPS]
            while seq and seq[-1] == "":
                seq.pop()
            names.append("=".join(seq))
        if len(names) == 1:
            return PersonName(names[0])
        return [PersonName(n) for n in names]

    def inline(self, elem: ET.Element, tag: str, vr: str, here: str) -> Any:
        text = "".join((elem.text or "").split())
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            self.dev("xml.base64", f"<InlineBinary> of {tag} is not valid base64: {exc}", here)
            return _SKIP
        return self.from_bytes(data, tag, vr, here)

    def bulk(self, elem: ET.Element, tag: str, vr: str, here: str) -> Any:
        uri = elem.get("uri")
        uuid = elem.get("uuid")
        if uri is not None and uuid is not None:
            self.dev("xml.bulk_reference", f"<BulkData> of {tag} has both @uri and @uuid; @uuid is only "
                     "for when there is no @uri", here)
        if uri is None and uuid is None:
            self.dev("xml.bulk_reference", f"<BulkData> of {tag} has neither @uri nor @uuid", here)
            return None
        data: bytes | None = None
        if uri is not None:
            self.bulk_refs.append(BulkRef(uri=uri, instance=0, path=here, tag=tag, vr=vr))
            data = self.resolver(uri) if self.resolver is not None else None
            shown = f"@uri={uri!r}"
        else:
            assert uuid is not None
            shown = f"@uuid={uuid!r}"
            if self.resolver is not None:
                data = self.resolver(uuid)
                if data is None:
                    data = self.resolver(f"urn:uuid:{uuid}")
        if data is None:
            self.dev("xml.bulk_unresolved", f"<BulkData {shown}> of {tag} resolves to no bulk data part",
                     here)
            return None
        return self.from_bytes(data, tag, vr, here)

    def from_bytes(self, data: bytes, tag: str, vr: str, here: str) -> Any:
        """Interpret a little-endian value field (bulk data or inline binary) for ``vr``."""
        if vr in BINARY_VRS:
            return data
        if vr in _STRUCT:
            size = struct.calcsize("<" + _STRUCT[vr])
            if len(data) % size:
                self.dev("xml.conversion", f"{len(data)} bytes of bulk data for {tag} is not a multiple of "
                         f"{size} ({vr})", here)
                return _SKIP
            vals = list(struct.unpack(f"<{len(data) // size}{_STRUCT[vr]}", data))
            return vals[0] if len(vals) == 1 else vals
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.dev("xml.conversion", f"bulk data for {tag} ({vr}) is not UTF-8 text", here)
            return _SKIP
        text = text.rstrip("\x00 ")
        if vr in ("LT", "ST", "UT", "UR"):
            return text
        parts = text.split("\\")
        try:
            out = [self.convert_text(p, vr, tag, here) if p else None for p in parts]
        except ValueError:
            self.dev("xml.conversion", f"bulk data for {tag} is not a valid {vr} value", here)
            return _SKIP
        return out[0] if len(out) == 1 else out


class _SkipType:
    """Marker: the attribute could not be converted and is left out of the Dataset."""


_SKIP: Any = _SkipType()


# -- writing ------------------------------------------------------------------------------------
def dataset_to_xml(ds: Dataset, *, bulk_uri_for: BulkUriFor | None = None) -> bytes:
    """Write ``ds`` as a Native DICOM Model document (UTF-8, with an XML declaration).

    Parameters
    ----------
    ds : Dataset
        The instance.  File Meta Information is not written; group length
        attributes are skipped; Private Creator elements are folded into the
        ``privateCreator`` attribute of their private data elements, whose tags take
        the form ``gggg00ee``.
    bulk_uri_for : callable, optional
        ``(element, path) -> uri or None``; when it returns a URI for a binary
        element, a ``BulkData@uri`` is written instead of ``InlineBinary``.

    Returns
    -------
    bytes
        The document, with ``xml:space="preserve"`` and the schema namespace, uppercase
        tags, ``keyword`` (for dictionary attributes) and ``vr`` on every attribute.

    References
    ----------
    PS3.19 A.1.5, A.1.6.
    """
    root = ET.Element("NativeDicomModel")
    root.set("xmlns", NATIVE_DICOM_NAMESPACE)
    root.set(_XML_SPACE, "preserve")
    _write_dataset(root, ds, "/NativeDicomModel", bulk_uri_for)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _write_dataset(parent: ET.Element, ds: Dataset, path: str, bulk_uri_for: BulkUriFor | None) -> None:
    for elem in sorted(ds, key=lambda e: int(e.tag)):
        tag = BaseTag(elem.tag)
        if tag.element == 0:
            continue
        if tag.is_private and 0x10 <= tag.element <= 0xFF:
            continue  # Private Creator: conveyed by @privateCreator on its data elements
        attrs: dict[str, str] = {}
        if tag.is_private:
            creator_elem = ds.get(BaseTag((tag.group << 16) | (tag.element >> 8)))
            if creator_elem is not None and creator_elem.value:
                tag_text = f"{tag.group:04X}00{tag.element & 0xFF:02X}"
                attrs["privateCreator"] = str(creator_elem.value)
            else:
                tag_text = f"{int(tag):08X}"
        else:
            tag_text = f"{int(tag):08X}"
            keyword = keyword_for_tag(tag)
            if keyword:
                attrs["keyword"] = keyword
        vr = str(elem.VR).split(" or ")[0]
        node = ET.SubElement(parent, "DicomAttribute", {"tag": tag_text, "vr": vr, **attrs})
        here = f"{path}/DicomAttribute[@tag='{tag_text}']"
        _write_value(node, elem, vr, here, bulk_uri_for)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes | PersonName) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _write_value(node: ET.Element, elem: DataElement, vr: str, here: str,
                 bulk_uri_for: BulkUriFor | None) -> None:
    value = elem.value
    if vr == "SQ":
        for pos, item in enumerate(value or [], start=1):
            child = ET.SubElement(node, "Item", {"number": str(pos)})
            _write_dataset(child, item, f"{here}/Item[{pos}]", bulk_uri_for)
        return
    if vr in BINARY_VRS:
        if value is None or value == b"":
            return
        uri = bulk_uri_for(elem, here) if bulk_uri_for is not None else None
        if uri:
            ET.SubElement(node, "BulkData", {"uri": uri})
            return
        raw = value if isinstance(value, bytes) else bytes(value)
        ET.SubElement(node, "InlineBinary").text = base64.b64encode(raw).decode("ascii")
        return
    values = _as_list(value)
    if vr == "PN":
        for pos, name in enumerate(values, start=1):
            pn = ET.SubElement(node, "PersonName", {"number": str(pos)})
            groups = str(name or "").split("=")
            for gname, gtext in zip(_PN_GROUPS, groups, strict=False):
                if not gtext:
                    continue
                group = ET.SubElement(pn, gname)
                for cname, ctext in zip(_PN_COMPONENTS, gtext.split("^"), strict=False):
                    if ctext:
                        ET.SubElement(group, cname).text = ctext
        return
    if values == [""]:
        return  # zero length: no Value element
    for pos, v in enumerate(values, start=1):
        child = ET.SubElement(node, "Value", {"number": str(pos)})
        child.text = _value_text(v, vr)


def _value_text(value: Any, vr: str) -> str:
    if value is None:
        return ""
    if vr == "AT":
        return f"{int(value):08X}"
    if vr in _FLOAT_VRS:
        return repr(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
