"""DICOM JSON Model <-> pydicom Dataset, with the bulk data resolver injected.

:func:`parse_document` decodes an ``application/dicom+json`` body exactly as
sent: it keeps the decoded JSON value for the model rules, collects every
``BulkDataURI``, and converts each top-level dataset object with
:meth:`pydicom.dataset.Dataset.from_json`.  It never raises for bad input and
never fetches anything: a ``BulkDataURI`` is handed to the injected resolver
and to nothing else.  Problems become :class:`~wic_conformance.dicomweb.deviation.Deviation`
records (codes ``json.*``); the checks in :mod:`wic_conformance.validate.json_model`
turn them into findings.

:func:`dataset_to_json` and :func:`datasets_to_json_bytes` write conformant
JSON: tags as 8 uppercase hex digits, attributes sorted ascending, no group
length, ``Value`` always an array, empty values as ``null``, PN as objects
without empty component groups.

References
----------
DICOM PS3.18 Annex F: F.2 (JSON model, media type and UTF-8), F.2.1
(multiple results as an array), F.2.2 (attribute objects), F.2.3 (VR to JSON
type, Table F.2.3-1), F.2.5 (empty values), F.2.6 (BulkDataURI), F.2.7
(InlineBinary).  RFC 8259 §8.1 (UTF-8, no byte order mark).
"""

from __future__ import annotations

import codecs
import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom import DataElement, Dataset
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.tag import Tag

from wic_conformance.dicomweb.deviation import Deviation, Strictness
from wic_conformance.dicomweb.media_types import APPLICATION_DICOM_JSON
from wic_conformance.dicomweb.metadata import BulkRef, BulkResolver, MetadataDocument

__all__ = [
    "ALL_VRS",
    "BINARY_VRS",
    "BULK_DATA_VRS",
    "MAX_DOCUMENT_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_SEQUENCE_DEPTH",
    "NUMBER_OR_STRING_VRS",
    "NUMBER_VRS",
    "STRING_VRS",
    "VALUE_FIELDS",
    "DEVIATION_CODES",
    "dataset_to_json",
    "datasets_to_json_bytes",
    "iter_datasets",
    "json_pointer",
    "json_type",
    "parse_document",
]

#: Every VR of PS3.5 Table 6.2-1 (2020 and later).
ALL_VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
    "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
    "UT", "UV",
})
#: VRs whose value is carried by ``InlineBinary`` or ``BulkDataURI``, never ``Value`` (F.2.2).
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs that may carry a ``BulkDataURI`` (F.2.2, 2020 and later).
BULK_DATA_VRS = frozenset({
    "DS", "FL", "FD", "IS", "LT", "OB", "OD", "OF", "OL", "OV", "OW", "SL", "SS", "ST", "SV", "UC",
    "UL", "UN", "US", "UT", "UV",
})
#: VRs whose ``Value`` items are JSON strings (Table F.2.3-1).
STRING_VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT",
})
#: VRs whose ``Value`` items are JSON numbers (Table F.2.3-1).
NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US"})
#: VRs whose ``Value`` items are JSON numbers or strings (Table F.2.3-1).
NUMBER_OR_STRING_VRS = frozenset({"DS", "IS", "SV", "UV"})
#: The members an attribute object may hold besides ``vr`` (at most one of them).
VALUE_FIELDS = ("Value", "BulkDataURI", "InlineBinary")

#: Every deviation code :func:`parse_document` emits.
DEVIATION_CODES = (
    "json.too_large", "json.bom", "json.encoding", "json.syntax", "json.non_standard_number",
    "json.number_too_long", "json.too_deep", "json.not_array", "json.not_object",
    "json.duplicate_attribute", "json.duplicate_member", "json.conversion", "json.conversion_warning",
    "json.bulk_unresolved",
)

#: Largest document :func:`parse_document` decodes (a toolkit limit, not a DICOM rule).
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
#: Deepest sequence nesting :func:`parse_document` follows (a toolkit limit).
MAX_SEQUENCE_DEPTH = 64
#: Deepest JSON nesting accepted: each sequence level adds dataset, attribute and ``Value``
#: levels; a PN object inside the innermost ``Value`` adds the last one.
MAX_JSON_DEPTH = 3 * MAX_SEQUENCE_DEPTH + 5

_MAX_MESSAGE = 300
_UTF8_BOM = codecs.BOM_UTF8
_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def json_pointer(*parts: str | int) -> str:
    """Return the RFC 6901 JSON pointer made of ``parts`` (``"~"`` and ``"/"`` escaped).

    >>> json_pointer(0, "00081115", "Value", 0)
    '/0/00081115/Value/0'
    """
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# -- decoding ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Decoder:
    """Mutable state of one :func:`parse_document` call."""

    policy: Strictness
    deviations: list[Deviation] = field(default_factory=list)
    # id(object) -> (object, repeated names); the object is held so that its id cannot be reused
    duplicates: dict[int, tuple[Any, list[str]]] = field(default_factory=dict)

    def repeated(self, obj: Any) -> list[str]:
        """Return the member names repeated in the decoded object ``obj``."""
        entry = self.duplicates.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else []

    def add(self, code: str, message: str, location: str = "", *, fatal: bool = False) -> None:
        if len(message) > _MAX_MESSAGE:  # pydicom messages may quote whole values
            message = message[: _MAX_MESSAGE - 3] + "..."
        self.deviations.append(Deviation(code, message, location, fatal))

    @property
    def strict(self) -> bool:
        return self.policy is Strictness.STRICT

    def decode_text(self, data: bytes) -> str | None:
        """Return the UTF-8 text of ``data`` (``None`` when decoding must stop)."""
        if data.startswith(_UTF8_BOM):
            self.add("json.bom", "the body starts with a UTF-8 byte order mark (RFC 8259 §8.1 forbids it)",
                     "byte 0", fatal=self.strict)
            if self.strict:
                return None
            data = data[len(_UTF8_BOM):]
        for bom, name in _OTHER_BOMS:
            if data.startswith(bom):
                self.add("json.encoding", f"the body is {name.upper()} (byte order mark), not UTF-8",
                         "byte 0", fatal=self.strict)
                if self.strict:
                    return None
                try:
                    return data.decode(name)
                except UnicodeDecodeError as exc:
                    self.add("json.encoding", f"invalid {name.upper()}: {exc.reason}", f"byte {exc.start}",
                             fatal=True)
                    return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.add("json.encoding", f"invalid UTF-8 ({exc.reason}) at byte {exc.start}",
                     f"byte {exc.start}", fatal=self.strict)
            if self.strict:
                return None
            return data.decode("utf-8", errors="replace")

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """Build a JSON object, remembering repeated member names (``json`` keeps only the last)."""
        obj: dict[str, Any] = {}
        repeated: list[str] = []
        for key, value in pairs:
            if key in obj and key not in repeated:
                repeated.append(key)
            obj[key] = value
        if repeated:
            self.duplicates[id(obj)] = (obj, repeated)
        return obj

    def constant(self, name: str) -> float:
        """Accept ``NaN`` / ``Infinity`` (which RFC 8259 does not) and record them."""
        self.add("json.non_standard_number", f"{name} is not a JSON number (RFC 8259 §6)")
        return float(name)

    def load(self, text: str) -> tuple[Any, bool]:
        """Return ``(value, ok)`` for the JSON ``text``."""
        try:
            value = json.loads(text, object_pairs_hook=self.object_pairs, parse_constant=self.constant)
        except json.JSONDecodeError as exc:
            self.add("json.syntax", f"{exc.msg} at line {exc.lineno}, column {exc.colno} (char {exc.pos})",
                     f"line {exc.lineno}, column {exc.colno}", fatal=True)
            return None, False
        except RecursionError:
            self.add("json.too_deep", "the JSON nesting is too deep to decode", fatal=True)
            return None, False
        except ValueError as exc:  # e.g. an integer literal beyond the interpreter's digit limit
            self.add("json.number_too_long", f"a number cannot be decoded: {exc}", fatal=True)
            return None, False
        depth = _nesting_depth(value)
        if depth > MAX_JSON_DEPTH:
            self.add("json.too_deep",
                     f"JSON nesting depth {depth} exceeds the toolkit limit of {MAX_JSON_DEPTH} "
                     f"(about {MAX_SEQUENCE_DEPTH} sequence levels); the document is not judged further",
                     fatal=True)
            self.duplicates.clear()
            return None, False
        return value, True


def _nesting_depth(value: Any) -> int:
    """Return the nesting depth of a decoded JSON value (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return deepest


def iter_datasets(dataset: dict[str, Any], pointer: str = "", depth: int = 0
                  ) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Yield ``(pointer, dataset, depth)`` for a decoded dataset object and every sequence item in it.

    Items nested deeper than :data:`MAX_SEQUENCE_DEPTH` are not visited.

    References
    ----------
    PS3.18 F.2.2 (SQ: ``Value`` is an array of dataset objects).
    """
    yield pointer, dataset, depth
    if depth >= MAX_SEQUENCE_DEPTH:
        return
    for key, attr in dataset.items():
        if isinstance(attr, dict) and attr.get("vr") == "SQ" and isinstance(attr.get("Value"), list):
            for j, item in enumerate(attr["Value"]):
                if isinstance(item, dict):
                    yield from iter_datasets(item, f"{pointer}{json_pointer(key, 'Value', j)}", depth + 1)


def _scan(decoder: _Decoder, index: int, pointer: str, dataset: dict[str, Any], depth: int = 0
          ) -> list[BulkRef]:
    """Collect the BulkDataURIs of one dataset in document order and report repeated member names."""
    refs: list[BulkRef] = []
    for name in decoder.repeated(dataset):
        decoder.add("json.duplicate_attribute", f"attribute {name!r} is repeated in one dataset",
                    pointer + json_pointer(name))
    for key, attr in dataset.items():
        if not isinstance(attr, dict):
            continue
        at = pointer + json_pointer(key)
        for name in decoder.repeated(attr):
            decoder.add("json.duplicate_member", f"member {name!r} is repeated in attribute {key}",
                        at + json_pointer(name))
        vr = attr["vr"] if isinstance(attr.get("vr"), str) else ""
        uri = attr.get("BulkDataURI")
        uris = [uri] if isinstance(uri, str) else []
        if isinstance(uri, list):  # not the model (F.2.6), but pydicom reads it: keep the reference
            uris = [u for u in uri if isinstance(u, str)]
        refs.extend(BulkRef(uri=u, instance=index, path=at, tag=key, vr=vr) for u in uris)
        value = attr.get("Value")
        if not isinstance(value, list):
            continue
        for j, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            if vr == "SQ" and depth < MAX_SEQUENCE_DEPTH:
                refs.extend(_scan(decoder, index, at + json_pointer("Value", j), item, depth + 1))
            elif vr == "PN":
                for name in decoder.repeated(item):
                    decoder.add("json.duplicate_member", f"member {name!r} is repeated in a person name of "
                                f"attribute {key}", at + json_pointer("Value", j, name))
    return refs


class _BulkHandler:
    """The ``bulk_data_uri_handler`` given to pydicom: asks the resolver, never opens anything."""

    def __init__(self, refs: list[BulkRef], resolver: BulkResolver | None, decoder: _Decoder,
                 instance_pointer: str) -> None:
        self._pending = list(refs)
        self._resolver = resolver
        self._decoder = decoder
        self._pointer = instance_pointer

    def _where(self, tag: str, uri: str) -> str:
        for i, ref in enumerate(self._pending):
            if ref.tag == tag and ref.uri == uri:
                del self._pending[i]
                return ref.path
        return self._pointer

    def __call__(self, tag: str, vr: str, uri: str) -> Any:
        where = self._where(tag, uri)
        empty = empty_value_for_VR(vr)
        if self._resolver is None:
            return empty  # not asked to resolve: the reference stays in bulk_refs
        try:
            data = self._resolver(uri)
        except Exception as exc:  # a resolver must not raise; record it as unresolved
            self._decoder.add("json.bulk_unresolved", f"BulkDataURI {uri!r} could not be resolved: "
                              f"{type(exc).__name__}: {exc}", where)
            return empty
        if data is None:
            self._decoder.add("json.bulk_unresolved", f"BulkDataURI {uri!r} does not resolve", where)
            return empty
        if vr in BINARY_VRS or " or " in vr:
            return bytes(data)
        raw = RawDataElement(Tag(int(tag, 16)), vr, len(data), bytes(data), 0, False, True)
        return convert_raw_data_element(raw, encoding=["utf_8"]).value


def _locate_failure(dataset: dict[str, Any], pointer: str, depth: int = 0) -> str:
    """Return the pointer of the first attribute (innermost item) that pydicom cannot convert."""

    def noop(tag: str, vr: str, uri: str) -> None:
        return None

    for key, attr in dataset.items():
        try:
            Dataset.from_json({key: attr}, bulk_data_uri_handler=noop)
            continue
        except (Exception, RecursionError):
            pass
        at = pointer + json_pointer(key)
        if (depth < MAX_SEQUENCE_DEPTH and isinstance(attr, dict) and attr.get("vr") == "SQ"
                and isinstance(attr.get("Value"), list)):
            for j, item in enumerate(attr["Value"]):
                if isinstance(item, dict):
                    inner = _locate_failure(item, at + json_pointer("Value", j), depth + 1)
                    if inner:
                        return inner
                else:
                    return at + json_pointer("Value", j)
        return at
    return ""


def _convert(decoder: _Decoder, obj: dict[str, Any], pointer: str, index: int, refs: list[BulkRef],
             resolver: BulkResolver | None) -> Dataset | None:
    """Convert one dataset object, recording a failure as ``json.conversion``.

    pydicom reports doubtful values through :mod:`warnings`; they are recorded as
    ``json.conversion_warning`` (``warnings.catch_warnings`` is process-wide, so
    concurrent conversions in other threads may see their warnings land here).
    """
    handler = _BulkHandler(refs, resolver, decoder, pointer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = Dataset.from_json(obj, bulk_data_uri_handler=handler)
        except (Exception, RecursionError) as exc:
            where = _locate_failure(obj, pointer) or pointer
            decoder.add("json.conversion",
                        f"instance {index} cannot be converted: {type(exc).__name__}: {exc}", where)
            return None
    for warning in caught:
        decoder.add("json.conversion_warning", f"instance {index}: {warning.message}", pointer)
    return dataset


def parse_document(
    data: bytes,
    *,
    location: str = "",
    policy: Strictness = Strictness.LENIENT,
    bulk_resolver: BulkResolver | None = None,
    media_type: str = APPLICATION_DICOM_JSON,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> MetadataDocument:
    """Decode a DICOM JSON document into its raw value, bulk data references and Datasets.

    Never raises for bad input and never opens a file or URL.

    Parameters
    ----------
    data : bytes
        The body as received.
    location : str, optional
        Where the document came from (``"request part 1"``, a file path).
    policy : Strictness
        ``LENIENT`` strips a byte order mark, replaces invalid UTF-8, reads a
        lone dataset object as one instance and converts what it can.
        ``STRICT`` converts nothing once a deviation has been met (the raw
        value is kept when the JSON decoded).
    bulk_resolver : callable, optional
        ``uri -> bytes | None``, called only with the ``BulkDataURI`` strings of
        this document.  ``None`` leaves bulk data elements empty without a
        deviation (their references are still in ``bulk_refs``); a resolver
        answering ``None`` (or raising) yields ``json.bulk_unresolved``.
    media_type : str
        ``APPLICATION_DICOM_JSON`` or the legacy ``APPLICATION_JSON``, recorded on the result.
    max_bytes : int
        Larger bodies are not decoded (``json.too_large``).

    Returns
    -------
    MetadataDocument
        ``raw`` is the decoded JSON value (``None`` after a fatal deviation);
        ``datasets`` holds the instances that converted, in document order;
        ``bulk_refs`` every ``BulkDataURI`` with its instance index and JSON pointer.

    Notes
    -----
    Deviation codes are listed in :data:`DEVIATION_CODES`.  Locations are JSON
    pointers (``"/0/7FE00010"``), ``"line L, column C"`` (counted after a
    stripped byte order mark) or ``"byte N"``.

    References
    ----------
    PS3.18 F.2 (media type, UTF-8), F.2.1 (array of results), F.2.2
    (attribute objects), F.2.6 (BulkDataURI); RFC 8259 §8.1.
    """
    decoder = _Decoder(policy)

    def result(raw: Any = None, datasets: Iterable[Dataset] = (), refs: Iterable[BulkRef] = ()
               ) -> MetadataDocument:
        return MetadataDocument(media_type=media_type, location=location, raw=raw, datasets=tuple(datasets),
                                bulk_refs=tuple(refs), deviations=tuple(decoder.deviations))

    if len(data) > max_bytes:
        decoder.add("json.too_large", f"the body has {len(data)} bytes, more than the toolkit limit of "
                    f"{max_bytes}", fatal=True)
        return result()
    text = decoder.decode_text(bytes(data))
    if text is None:
        return result()
    raw, ok = decoder.load(text)
    if not ok:
        return result()

    instances: list[tuple[int, str, dict[str, Any]]] = []
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if isinstance(item, dict):
                instances.append((i, json_pointer(i), item))
            else:
                decoder.add("json.not_object",
                            f"array element {i} is {json_type(item)}, not a dataset object", json_pointer(i))
    elif isinstance(raw, dict):
        decoder.add("json.not_array", "the top-level value is a single object, not an array of datasets",
                    "", fatal=decoder.strict)
        if not decoder.strict:
            instances.append((0, "", raw))
    else:
        decoder.add("json.not_array", f"the top-level value is {json_type(raw)}, not an array of datasets",
                    "", fatal=True)

    refs: list[BulkRef] = []
    per_instance: dict[int, list[BulkRef]] = {}
    for index, pointer, obj in instances:
        found = _scan(decoder, index, pointer, obj)
        per_instance[index] = found
        refs.extend(found)

    if decoder.strict and decoder.deviations:
        return result(raw, (), refs)
    datasets: list[Dataset] = []
    for index, pointer, obj in instances:
        converted = _convert(decoder, obj, pointer, index, per_instance[index], bulk_resolver)
        if converted is not None:
            datasets.append(converted)
    return result(raw, datasets, refs)


def json_type(value: Any) -> str:
    """Return the JSON type name of a decoded value, with an article."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# -- encoding ----------------------------------------------------------------------------------------

BulkDataElementHandler = Callable[[DataElement], str]


def _resolved_element(elem: DataElement, ds: Dataset) -> DataElement:
    """Return ``elem`` with one VR, resolving ``"US or SS"``-style dictionary VRs from its dataset."""
    vr = str(elem.VR)
    if " or " not in vr:
        return elem
    choices = vr.split(" or ")
    try:
        fixed = correct_ambiguous_vr_element(DataElement(elem.tag, vr, elem.value), ds, True)
    except Exception:  # pydicom could not decide: choose below
        fixed = elem
    if " or " not in str(fixed.VR):
        return DataElement(elem.tag, str(fixed.VR), fixed.value)
    binary = isinstance(elem.value, bytes | bytearray)
    chosen = next((c for c in choices if (c in BINARY_VRS) == binary), choices[0])
    return DataElement(elem.tag, chosen, elem.value)


def _element_to_json(elem: DataElement, ds: Dataset, handler: BulkDataElementHandler | None,
                     threshold: int) -> dict[str, Any]:
    elem = _resolved_element(elem, ds)
    vr = str(elem.VR)
    if vr == "SQ":
        items = [dataset_to_json(item, bulk_data_element_handler=handler, bulk_threshold=threshold)
                 for item in (elem.value or [])]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    out = elem.to_json_dict(bulk_data_element_handler=handler, bulk_data_threshold=threshold)
    values = out.get("Value")
    if isinstance(values, list):
        cleaned: list[Any] = []
        for v in values:
            if vr == "PN" and isinstance(v, dict):
                groups = {k: g for k, g in v.items() if g}
                cleaned.append(groups or None)
            elif isinstance(v, str) and v == "":
                cleaned.append(None)
            else:
                cleaned.append(v)
        if not cleaned or cleaned == [None]:
            out.pop("Value")
        else:
            out["Value"] = cleaned
    return out


def dataset_to_json(
    ds: Dataset,
    *,
    bulk_data_element_handler: BulkDataElementHandler | None = None,
    bulk_threshold: int = 1024,
) -> dict[str, Any]:
    """Return the DICOM JSON Model object of ``ds``.

    Attributes come out ascending by tag, without group length elements;
    ambiguous dictionary VRs are resolved; empty values are ``null`` and
    all-empty attributes carry no ``Value``; PN values omit empty groups.

    Parameters
    ----------
    ds : Dataset
        The dataset (sequence items are converted recursively).
    bulk_data_element_handler : callable, optional
        ``DataElement -> URI`` for binary values above ``bulk_threshold``
        (then written as ``BulkDataURI``); without it binary values are ``InlineBinary``.
    bulk_threshold : int
        Base64 length above which the handler is used.

    Returns
    -------
    dict
        ``{"GGGGEEEE": {"vr": ..., ...}, ...}``.

    References
    ----------
    PS3.18 F.2.2 (attribute objects, ordering, no group length), F.2.3
    (Table F.2.3-1), F.2.5 (empty values), F.2.6, F.2.7.
    """
    out: dict[str, Any] = {}
    for elem in ds:  # pydicom iterates in ascending tag order
        if elem.tag.element == 0:
            continue  # group length (gggg,0000) is not part of the model
        out[f"{int(elem.tag):08X}"] = _element_to_json(elem, ds, bulk_data_element_handler, bulk_threshold)
    return out


def datasets_to_json_bytes(
    datasets: Iterable[Dataset],
    *,
    bulk_data_element_handler: BulkDataElementHandler | None = None,
    bulk_threshold: int = 1024,
) -> bytes:
    """Return an ``application/dicom+json`` body: a UTF-8 JSON array of the datasets.

    Parameters
    ----------
    datasets : iterable of Dataset
        The instances, in order.
    bulk_data_element_handler, bulk_threshold
        As for :func:`dataset_to_json`.

    Returns
    -------
    bytes
        Compact UTF-8 JSON with member names sorted ascending at every level.

    Raises
    ------
    ValueError
        A float value is NaN or infinite, which JSON cannot carry.

    References
    ----------
    PS3.18 F.2 (UTF-8), F.2.1 (array), F.2.2 (ascending order).
    """
    body = [dataset_to_json(ds, bulk_data_element_handler=bulk_data_element_handler,
                            bulk_threshold=bulk_threshold) for ds in datasets]
    return json.dumps(body, ensure_ascii=False, sort_keys=True, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")
