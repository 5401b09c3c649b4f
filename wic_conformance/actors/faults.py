"""Deliberate defects for the simulated Image Manager, to show that a test plan catches a broken Manager.

A conformant simulated Image Manager passes the Image Manager test plan; that
alone does not show the plan would *fail* a broken one.  Each :class:`Fault`
turns one behaviour of :class:`~wic_conformance.actors.manager.ImageManager`
into a known defect, and the plan must report it under the requirement listed
in :data:`CAUGHT_BY`.  Faults compose: ``ImageManager(config, faults=(Fault.WRONG_STATUS,
Fault.ALTER_ATTRIBUTE))`` (or ``ManagerConfig(faults=...)``) installs both.

They are built from the manager's two hooks:

* *store hook wrappers* take the ``on_store`` intervention hook and return one
  that changes the submission before it (:func:`fetch_bulk_uri`) or the outcome
  after it (:func:`wrong_status`, :func:`drop_referenced_sequence`);
* *dataset transforms* change each converted instance after the manager's own
  IOD gate, just before it is stored (:func:`alter_attribute`,
  :func:`recompress_jpeg`, :func:`wrong_transfer_syntax`), the way a Manager
  whose storage path is broken would; they return the dataset unchanged when
  they do not apply (e.g. an instance without baseline JPEG Pixel Data).

:data:`Fault.FETCH_BULK_URI` makes the manager dereference BulkDataURIs that
name no part of the request, the one thing an Image Manager must never do.  To
keep even this fault from reaching anything but the test's own canary, only
``http``/``https`` URIs whose host is a loopback address are fetched; other
URIs (``file:``, other hosts, relative paths) are left unresolved as usual.

References
----------
PS3.18 §10.5.3 and Table 10.5.3-1 (Store response status), Annex I (Store Instances Response
Module), §10.5.2 and Table 10.5.2-1 (conversion of metadata and bulk data), §8.6.1.2 (bulk data
is resolved against the request's parts); PS3.3 C.12.1.1.9 (Original Attributes Sequence);
PS3.5 §8.2.1 (JPEG image compression).
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import UID

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Headers
from wic_conformance.dicomweb.multipart import Part
from wic_conformance.errors import ConfigError
from wic_conformance.model import media

if TYPE_CHECKING:
    from wic_conformance.actors.manager import ImageManager, StoreHook, StoreOutcome, Submission

__all__ = [
    "CAUGHT_BY",
    "Fault",
    "alter_attribute",
    "drop_referenced_sequence",
    "fetch_bulk_uri",
    "install_faults",
    "parse_faults",
    "recompress_jpeg",
    "wrong_status",
    "wrong_transfer_syntax",
]

log = logging.getLogger(__name__)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"

#: The PatientName an :data:`Fault.ALTER_ATTRIBUTE` manager stores instead of the one received.
ALTERED_PATIENT_NAME = "ALTERED^BY^FAULT"
#: The Pillow quality :data:`Fault.RECOMPRESS_JPEG` re-encodes with (another one if that changes nothing).
RECOMPRESS_QUALITY = 40

#: What :data:`Fault.WRONG_STATUS` answers instead of the due status.
WRONG_STATUS_MAP: Mapping[int, int] = {200: 202, 202: 200, 409: 200}


class Fault(StrEnum):
    """A deliberate defect of the simulated Image Manager."""

    #: 200 answered as 202, 202 as 200, and 200 where 409 is due (nothing stored).
    WRONG_STATUS = "wrong-status"
    #: The Referenced SOP Sequence is left out of the response (the instances are still stored).
    DROP_REFERENCED_SEQUENCE = "drop-referenced-sequence"
    #: PatientName is changed in the stored instance without an Original Attributes Sequence item.
    ALTER_ATTRIBUTE = "alter-attribute"
    #: Baseline/extended JPEG Pixel Data is decoded and re-encoded (Pillow, another quality) before storing.
    RECOMPRESS_JPEG = "recompress-jpeg"
    #: A baseline JPEG is stored under JPEG Lossless SV1 (1.2.840.10008.1.2.4.70).
    WRONG_TRANSFER_SYNTAX = "wrong-transfer-syntax"
    #: A BulkDataURI that names no part is fetched over HTTP (loopback hosts only) and used.
    FETCH_BULK_URI = "fetch-bulk-uri"


#: The requirement IDs under which the Image Manager test plan reports each fault.
CAUGHT_BY: Mapping[Fault, frozenset[str]] = {
    Fault.WRONG_STATUS: frozenset({"STOW-RESP-001", "STOW-MOD-009"}),
    Fault.DROP_REFERENCED_SEQUENCE: frozenset({"STOW-MOD-009", "STOW-RESP-001"}),
    Fault.ALTER_ATTRIBUTE: frozenset({"CONV-002"}),
    Fault.RECOMPRESS_JPEG: frozenset({"CONV-003"}),
    Fault.WRONG_TRANSFER_SYNTAX: frozenset({"WIC-IM-005"}),
    Fault.FETCH_BULK_URI: frozenset({"WIC-IM-011"}),
}


def parse_faults(values: Iterable[str] | str) -> tuple[Fault, ...]:
    """Return the faults named by ``values`` (member names or values, any case, ``_`` or ``-``).

    Raises
    ------
    ConfigError
        An unknown fault name.
    """
    if isinstance(values, str):
        values = [values]
    out: list[Fault] = []
    for value in values:
        text = str(value).strip()
        for member in Fault:
            if text.lower().replace("_", "-") == member.value:
                out.append(member)
                break
        else:
            raise ConfigError(f"unknown fault {value!r}; known: {', '.join(m.value for m in Fault)}")
    return tuple(dict.fromkeys(out))


# -- store hook wrappers ----------------------------------------------------------------------------


def wrong_status(inner: StoreHook) -> StoreHook:
    """Wrap a store hook so that its status is replaced as :data:`WRONG_STATUS_MAP` says.

    References
    ----------
    PS3.18 Table 10.5.3-1.
    """

    def hook(submission: Submission) -> StoreOutcome:
        outcome = inner(submission)
        return dataclasses.replace(outcome, status=WRONG_STATUS_MAP.get(outcome.status, outcome.status))

    return hook


def drop_referenced_sequence(inner: StoreHook) -> StoreHook:
    """Wrap a store hook so that the response has no Referenced SOP Sequence (status and storage unchanged).

    References
    ----------
    PS3.18 Annex I (Store Instances Response Module).
    """

    def hook(submission: Submission) -> StoreOutcome:
        return dataclasses.replace(inner(submission), referenced=())

    return hook


def _is_loopback_http(uri: str) -> bool:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def fetch_bulk_uri(inner: StoreHook, *, session: requests.Session | None = None,
                   timeout: float = 5.0) -> StoreHook:
    """Wrap a store hook so that unresolved loopback ``http(s)`` BulkDataURIs are fetched and used as parts.

    The fetched content becomes an extra part of the request (Content-Location the URI,
    Content-Type the response's, else guessed from the bytes), so the conversion then
    stores it.  Only a fault: a conformant Image Manager never dereferences a BulkDataURI.

    References
    ----------
    PS3.18 §8.6.1.2, §10.5.2.
    """
    http = session or requests.Session()

    def hook(submission: Submission) -> StoreOutcome:
        stow = submission.stow
        if stow.multipart is None:
            return inner(submission)
        extra: list[Part] = []
        seen: set[str] = set()
        for doc in stow.metadata:
            for ref in doc.bulk_refs:
                uri = ref.uri
                if uri in seen or stow.part_by_location(uri) or not _is_loopback_http(uri):
                    continue
                seen.add(uri)
                try:
                    answer = http.get(uri, timeout=timeout)
                except requests.RequestException as exc:
                    log.info("fault %s: GET %s failed: %s", Fault.FETCH_BULK_URI, uri, exc)
                    continue
                log.warning("fault %s: fetched BulkDataURI %s (%d)", Fault.FETCH_BULK_URI, uri, answer.status_code)
                if not answer.ok:
                    continue
                ctype = answer.headers.get("Content-Type") or media.guess_media_type(answer.content) \
                    or mt.APPLICATION_OCTET_STREAM
                index = len(stow.multipart.parts) + len(extra)
                extra.append(Part(index, Headers.of({"Content-Type": ctype, "Content-Location": uri}),
                                  Body.of(answer.content)))
        if not extra:
            return inner(submission)
        multipart = dataclasses.replace(stow.multipart, parts=stow.multipart.parts + tuple(extra))
        stow = dataclasses.replace(stow, multipart=multipart, bulk_parts=stow.bulk_parts + tuple(extra))
        return inner(dataclasses.replace(submission, stow=stow))

    return hook


# -- dataset transforms -----------------------------------------------------------------------------


def alter_attribute(ds: Dataset) -> Dataset:
    """Return the instance with PatientName replaced and no Original Attributes Sequence item recording it.

    References
    ----------
    PS3.18 §10.5.2; PS3.3 C.12.1.1.9.
    """
    ds.PatientName = ALTERED_PATIENT_NAME
    return ds


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _frames(ds: Dataset) -> list[bytes]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    return list(generate_frames(ds.PixelData, number_of_frames=count))


def _reencode(frame: bytes, quality: int) -> bytes:
    with Image.open(io.BytesIO(frame)) as image:
        image.load()
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, subsampling="keep", optimize=False)
    return out.getvalue()


def recompress_jpeg(ds: Dataset, *, quality: int = RECOMPRESS_QUALITY) -> Dataset:
    """Return the instance with its baseline/extended JPEG frames decoded and re-encoded at ``quality``.

    The Transfer Syntax and the Image Pixel Description stay as they are; only the
    bitstream changes (a second lossy step).  Other instances are returned unchanged.

    References
    ----------
    PS3.18 Table 10.5.2-1 (image/jpeg is encapsulated unchanged); PS3.5 §8.2.1.
    """
    if _transfer_syntax(ds) not in (JPEG_BASELINE, JPEG_EXTENDED) or "PixelData" not in ds:
        return ds
    frames = _frames(ds)
    for q in (quality, quality + 17, quality - 17):
        new = [_reencode(frame, q) for frame in frames]
        if new != frames:
            break
    ds.PixelData = encapsulate(new)
    ds["PixelData"].is_undefined_length = True
    return ds


def wrong_transfer_syntax(ds: Dataset) -> Dataset:
    """Return a baseline-JPEG instance labelled JPEG Lossless SV1 (.70); others unchanged.

    References
    ----------
    PS3.18 Table 10.5.2-1; PS3.5 §8.2.1 and Table A-1.
    """
    if _transfer_syntax(ds) == JPEG_BASELINE:
        ds.file_meta.TransferSyntaxUID = UID(JPEG_LOSSLESS_SV1)
    return ds


_WRAPPERS: Mapping[Fault, Callable[[StoreHook], StoreHook]] = {
    Fault.WRONG_STATUS: wrong_status,
    Fault.DROP_REFERENCED_SEQUENCE: drop_referenced_sequence,
    Fault.FETCH_BULK_URI: fetch_bulk_uri,
}
_TRANSFORMS: Mapping[Fault, Callable[[Dataset], Dataset]] = {
    Fault.ALTER_ATTRIBUTE: alter_attribute,
    Fault.RECOMPRESS_JPEG: recompress_jpeg,
    Fault.WRONG_TRANSFER_SYNTAX: wrong_transfer_syntax,
}


def install_faults(manager: ImageManager, faults: Iterable[str]) -> tuple[Fault, ...]:
    """Install faults on a manager: wrap its ``on_store`` hook or add dataset transforms.

    Parameters
    ----------
    manager : ImageManager
        Modified in place (``on_store``, ``dataset_transforms``).
    faults : iterable of str
        :class:`Fault` members, names or values.

    Returns
    -------
    tuple of Fault
        The faults installed, once each.

    Raises
    ------
    ConfigError
        An unknown fault name.
    """
    installed = parse_faults(faults)
    for fault in installed:
        if fault in _WRAPPERS:
            manager.on_store = _WRAPPERS[fault](manager.on_store)
        else:
            manager.dataset_transforms.append(_TRANSFORMS[fault])
        log.warning("the simulated Image Manager runs with fault %s: it is deliberately non-conformant", fault)
    return installed
