"""Metadata documents (DICOM JSON or DICOM XML) parsed into raw form and pydicom Datasets.

A :class:`MetadataDocument` keeps both views: the *raw* form (the decoded JSON
value or the XML element tree) for the model rules, which must see exactly what
was sent, and the pydicom Datasets for content and conversion rules.

References
----------
PS3.18 Annex F (DICOM JSON Model); PS3.19 Annex A (Native DICOM Model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Deviation, Strictness

__all__ = ["BulkRef", "BulkResolver", "MetadataDocument", "parse_metadata"]

#: Resolves a BulkDataURI to bytes, or returns ``None`` when it cannot (it never fetches).
BulkResolver = Callable[[str], bytes | None]


@dataclass(frozen=True, slots=True)
class BulkRef:
    """A BulkDataURI (JSON) or ``BulkData@uri`` (XML) found in metadata.

    ``instance`` is the index of the dataset in the document; ``path`` the JSON
    pointer or XML path of the attribute; ``tag`` its 8-hex-digit tag; ``vr`` its VR.
    """

    uri: str
    instance: int
    path: str
    tag: str
    vr: str = ""


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """One metadata part or file.

    Attributes
    ----------
    media_type : str
        ``APPLICATION_DICOM_JSON`` or ``APPLICATION_DICOM_XML`` (or the legacy ``APPLICATION_JSON``).
    location : str
        Where it came from: ``"request part 1"``, a file path.
    raw : Any
        The decoded JSON value, or the XML root element; ``None`` if it did not decode.
    datasets : tuple of Dataset
        One per instance, as far as conversion succeeded (bulk data resolved when a resolver was given).
    bulk_refs : tuple of BulkRef
        Every bulk data reference, in document order.
    deviations : tuple of Deviation
        Syntax and model problems met while decoding and converting.
    """

    media_type: str
    location: str
    raw: Any
    datasets: tuple[Dataset, ...] = ()
    bulk_refs: tuple[BulkRef, ...] = ()
    deviations: tuple[Deviation, ...] = field(default=())

    @property
    def is_json(self) -> bool:
        """Return whether this is a JSON document."""
        return self.media_type in (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON)


def parse_metadata(
    data: bytes,
    media_type: str,
    *,
    location: str = "",
    policy: Strictness = Strictness.LENIENT,
    bulk_resolver: BulkResolver | None = None,
) -> MetadataDocument:
    """Decode a DICOM JSON or DICOM XML document.

    Never raises for bad input: problems become deviations on the result.
    ``bulk_resolver`` is only asked about URIs found in the document; it must
    answer from the same request's parts and never dereference anything.
    """
    if media_type in (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_JSON):
        from wic_conformance.dicomweb.json_model import parse_document as parse_json

        return parse_json(
            data, location=location, policy=policy, bulk_resolver=bulk_resolver, media_type=media_type
        )
    if media_type == mt.APPLICATION_DICOM_XML:
        from wic_conformance.dicomweb.xml_model import parse_document as parse_xml

        return parse_xml(data, location=location, policy=policy, bulk_resolver=bulk_resolver)
    return MetadataDocument(
        media_type=media_type, location=location, raw=None,
        deviations=(Deviation("metadata.media_type", f"{media_type!r} is not a DICOM metadata media type",
                              location, fatal=True),),
    )
