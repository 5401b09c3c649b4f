# ruff: noqa: D401 - a check's first docstring line states the property that must hold, not a command
"""Checks of the Native DICOM Model (PS3.19 Annex A.1) over DICOM XML metadata documents.

Each check reads the deviations that :mod:`wic_conformance.dicomweb.xml_model`
recorded while decoding a document (request metadata parts and standalone
``application/dicom+xml`` files alike) and turns those of its rule into
:class:`~wic_conformance.findings.InvalidDicomXml` findings, all at once.

References
----------
DICOM PS3.19 Annex A.1 (Native DICOM Model), A.1.6 (schema); PS3.18 §10.5.1.4.
"""

from __future__ import annotations

from collections.abc import Iterator

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Deviation
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.metadata import MetadataDocument
from wic_conformance.findings import InvalidDicomXml, Severity, raise_all
from wic_conformance.validate.registry import CheckContext, Needs, check

__all__ = [
    "CODES_BY_REQUIREMENT",
    "dicom_xml_attributes_have_keyword_and_vr",
    "dicom_xml_binary_values_are_bulk_or_inline",
    "dicom_xml_has_no_group_length",
    "dicom_xml_is_well_formed",
    "dicom_xml_private_creator_only_on_private_tags",
    "dicom_xml_root_is_native_dicom_model",
    "dicom_xml_sequences_and_names_are_structured",
    "dicom_xml_tags_are_uppercase_hex",
    "dicom_xml_value_numbers_are_sequential",
]

#: Which decoder deviation codes each requirement judges.
CODES_BY_REQUIREMENT: dict[str, frozenset[str]] = {
    "XML-001": frozenset({"xml.syntax", "xml.forbidden", "xml.root", "xml.namespace_missing",
                          "xml.namespace_wrong", "xml.space_missing"}),
    "XML-002": frozenset({"xml.tag_missing", "xml.tag_invalid", "xml.tag_lowercase", "xml.at_lowercase",
                          "xml.duplicate_tag", "xml.private_creator_missing", "xml.private_creator_forbidden",
                          "xml.private_block_sent", "xml.private_creator_conflict"}),
    "XML-003": frozenset({"xml.keyword_missing", "xml.keyword_mismatch", "xml.vr_missing", "xml.vr_invalid",
                          "xml.vr_mismatch"}),
    "XML-004": frozenset({"xml.value_number", "xml.value_in_sq_or_pn", "xml.empty_value_for_zero_length"}),
    "XML-005": frozenset({"xml.item_number", "xml.person_name_number", "xml.item_not_sq",
                          "xml.person_name_not_pn", "xml.person_name_structure", "xml.unknown_element"}),
    "XML-006": frozenset({"xml.bulk_reference", "xml.bulk_multiple", "xml.inline_binary_vr",
                          "xml.inline_binary_multiple", "xml.base64", "xml.mixed_content"}),
    "XML-007": frozenset({"xml.group_length"}),
}


def _xml_documents(ctx: CheckContext, exchange: Exchange) -> Iterator[MetadataDocument]:
    for doc in ctx.metadata(exchange):
        if doc.media_type == mt.APPLICATION_DICOM_XML:
            yield doc


def _where(doc: MetadataDocument, dev: Deviation) -> str:
    parts = [p for p in (doc.location, dev.location) if p]
    return " > ".join(parts) or "document"


def _findings(ctx: CheckContext, exchange: Exchange, codes: frozenset[str], requirement: str,
              title: str, severities: dict[str, Severity] | None = None) -> list[InvalidDicomXml]:
    out: list[InvalidDicomXml] = []
    for doc in _xml_documents(ctx, exchange):
        for dev in doc.deviations:
            if dev.code in codes:
                out.append(InvalidDicomXml(
                    requirement=requirement, title=title, message=dev.message, location=_where(doc, dev),
                    evidence=dev.code, severity=(severities or {}).get(dev.code),
                ))
    return out


@check(requirements=["XML-001"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_is_well_formed(ctx: CheckContext, exchange: Exchange) -> None:
    """Every DICOM XML document is well-formed XML without DTD, entity declaration or external reference.

    A document that cannot be read as XML cannot be a Native DICOM Model infoset.
    DTDs are refused outright, so entity bombs and external entities are reported
    without being expanded or fetched.

    References
    ----------
    PS3.19 A.1.5 (an XML Infoset); PS3.18 §10.5.1.4.
    """
    raise_all(_findings(ctx, exchange, frozenset({"xml.syntax", "xml.forbidden"}), "XML-001",
                        "Malformed DICOM XML"))


@check(requirements=["XML-001"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_root_is_native_dicom_model(ctx: CheckContext, exchange: Exchange) -> None:
    """The root element is NativeDicomModel in the PS3.19 namespace with xml:space="preserve".

    A root element without any namespace is reported as a warning (the schema
    namespace is only given by the schema, and older producers omit it); a
    different namespace, another root element or a missing ``xml:space`` is an error.

    References
    ----------
    PS3.19 A.1.5 (Table A.1.5-1), A.1.6 (``default namespace``).
    """
    codes = frozenset({"xml.root", "xml.namespace_missing", "xml.namespace_wrong", "xml.space_missing"})
    raise_all(_findings(ctx, exchange, codes, "XML-001", "Wrong NativeDicomModel root",
                        {"xml.namespace_missing": Severity.WARNING}))


@check(requirements=["XML-002"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_tags_are_uppercase_hex(ctx: CheckContext, exchange: Exchange) -> None:
    """Every DicomAttribute@tag is 8 uppercase hexadecimal digits, unique within its data set.

    AT values follow the same form.

    References
    ----------
    PS3.19 A.1.5 (Table A.1.5-2, ``tag``; ``Value`` for AT), A.1.6 (pattern ``[0-9A-F]{8}``).
    """
    codes = frozenset({"xml.tag_missing", "xml.tag_invalid", "xml.tag_lowercase", "xml.at_lowercase",
                       "xml.duplicate_tag"})
    raise_all(_findings(ctx, exchange, codes, "XML-002", "Bad DicomAttribute tag"))


@check(requirements=["XML-002"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_private_creator_only_on_private_tags(ctx: CheckContext, exchange: Exchange) -> None:
    """Private data elements carry @privateCreator and the tag form gggg00ee; standard ones carry none.

    References
    ----------
    PS3.19 A.1.5 (Table A.1.5-2, ``tag`` and ``privateCreator``).
    """
    codes = frozenset({"xml.private_creator_missing", "xml.private_creator_forbidden",
                       "xml.private_block_sent", "xml.private_creator_conflict"})
    raise_all(_findings(ctx, exchange, codes, "XML-002", "Bad private attribute"))


@check(requirements=["XML-003"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_attributes_have_keyword_and_vr(ctx: CheckContext, exchange: Exchange) -> None:
    """Each attribute known to the dictionary has its @keyword; every attribute has a valid, matching @vr.

    ``@vr`` is optional in PS3.19, but the Image Manager needs it to build the
    PS3.10 object, so its absence is reported.  A missing keyword or VR takes the
    catalogue's severity; a keyword or VR that contradicts the data dictionary, or
    a VR the schema does not list, is an error.

    References
    ----------
    PS3.19 A.1.5 (Table A.1.5-2, ``keyword``, ``vr``); PS3.6 (data dictionary).
    """
    wrong = {code: Severity.ERROR for code in ("xml.keyword_mismatch", "xml.vr_invalid", "xml.vr_mismatch")}
    raise_all(_findings(ctx, exchange, CODES_BY_REQUIREMENT["XML-003"], "XML-003",
                        "Missing or wrong keyword/VR", wrong))


@check(requirements=["XML-004"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_value_numbers_are_sequential(ctx: CheckContext, exchange: Exchange) -> None:
    """Value@number runs 1, 2, 3, ... and Value is used neither for SQ and PN nor for zero-length attributes.

    References
    ----------
    PS3.19 A.1.5 (Table A.1.5-2, ``Value`` and ``number``).
    """
    raise_all(_findings(ctx, exchange, CODES_BY_REQUIREMENT["XML-004"], "XML-004", "Bad Value elements"))


@check(requirements=["XML-005"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_sequences_and_names_are_structured(ctx: CheckContext, exchange: Exchange) -> None:
    """SQ values are numbered Items and PN values numbered PersonName groups of the defined components.

    Unknown elements anywhere in the model are reported here too.

    References
    ----------
    PS3.19 A.1.5 (``Item``, ``PersonName``, ``Alphabetic``/``Ideographic``/``Phonetic``), A.1.6.
    """
    raise_all(_findings(ctx, exchange, CODES_BY_REQUIREMENT["XML-005"], "XML-005",
                        "Bad Item or PersonName structure"))


@check(requirements=["XML-006"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_binary_values_are_bulk_or_inline(ctx: CheckContext, exchange: Exchange) -> None:
    """A single BulkData (with @uri, or @uuid when there is no uri) or InlineBinary (binary VRs) per value.

    ``BulkData@uri`` is accepted in STOW-RS requests, where it must match a part's
    Content-Location, although the 2020 text reserves it for WADO-RS metadata.

    References
    ----------
    PS3.19 A.1.5 (``BulkData``, ``uuid``, ``uri``, ``InlineBinary``); PS3.18 §8.6.1.2.
    """
    raise_all(_findings(ctx, exchange, CODES_BY_REQUIREMENT["XML-006"], "XML-006",
                        "Bad BulkData or InlineBinary"))


@check(requirements=["XML-007"], needs=[Needs.METADATA], tags=["capturer", "xml"])
def dicom_xml_has_no_group_length(ctx: CheckContext, exchange: Exchange) -> None:
    """No Group Length (gggg,0000) attribute appears in a Native DICOM Model document.

    References
    ----------
    PS3.19 A.1.1.
    """
    raise_all(_findings(ctx, exchange, CODES_BY_REQUIREMENT["XML-007"], "XML-007", "Group length present"))
