"""Execute one test-plan case against an Image Manager and judge what it did.

:func:`run_case` builds the case's payload from the fixtures (re-identified with
fresh UIDs, overrides applied, bulk parts swapped or padded), applies the
labelled mutations, resolves the target form, sends the request through the
simulated :class:`~wic_conformance.actors.capturer.ImageCapturer`, and then
verifies what was really stored -- a 200 is not proof:

* every instance the response references is retrieved with WADO-RS
  (``transfer-syntax=*``), from its Retrieve URL or a URL built from the UIDs;
* every submitted SOP Instance UID is searched with QIDO-RS, which finds
  instances stored although the response said they failed;
* a :class:`Canary` (a loopback HTTP server) stands in for the foreign resource
  of a ``foreign_bulk_uri`` mutation: any request it receives means the Image
  Manager dereferenced a BulkDataURI outside the request.

The retrieved instances travel with the judged exchange, the selected checks of
the registry run on it, and the case's expectation (status, storage, reporting)
adds its own findings.  A manager plan judges the Image Manager: the instance
view the checks see holds the *retrieved* instances only, so that a payload the
toolkit broke on purpose is not held against the target.

References
----------
PS3.18 §10.5 (Store), §10.4 (Retrieve), §10.6 (Search), Table 10.5.3-1 (statuses),
§10.5.2 (BulkDataURIs resolve within the request); IHE RAD WIC (RAD-108); ISO/IEC
14496-12 §8.1.2 (the ``free`` box).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import http.server
import io
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword

from wic_conformance.actors.capturer import ImageCapturer, TargetUnreachableError
from wic_conformance.catalogue import Catalogue, default_catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb import xml_model
from wic_conformance.dicomweb.exchange import Body, Document, Exchange, Headers, Request
from wic_conformance.dicomweb.json_model import dataset_to_json
from wic_conformance.dicomweb.multipart import iter_encode_multipart
from wic_conformance.dicomweb.part10 import read_part10
from wic_conformance.dicomweb.store_response import StoreResponse, parse_store_response
from wic_conformance.dicomweb.stow import build_stow_request, stow_url
from wic_conformance.errors import UsageError, WicConformanceError
from wic_conformance.findings import BadStatus, Finding, Severity
from wic_conformance.fuzz.mutations import Mutation, MutationKind, apply
from wic_conformance.model.fixtures import Fixture, FixtureIndex
from wic_conformance.model.instances import new_uid
from wic_conformance.plans.model import Case, CaseOutcome, CaseResult, Encoding, Target
from wic_conformance.validate.registry import CheckContext, CheckResult, Outcome

__all__ = ["Canary", "CanaryHit", "SETUP_FIXTURE", "run_case"]

log = logging.getLogger(__name__)

#: The PS3.10 instance stored first to create the study of a ``target: study`` case.
SETUP_FIXTURE = "part10/vl-photographic"
#: Patient and study attributes an append copies from the existing study (WIC-UC-002).
_CONTEXT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDescription",
)
_MP4_FAMILY = (mt.VIDEO_MP4, mt.VIDEO_QUICKTIME)
_SPOOL_BODY = 16 << 20  # built request bodies larger than this go to a file
_KEEP_HEAD = 64 << 10  # what is kept of a spooled body once the case's temporary folder is gone
_CANARY_GRACE = 0.25  # seconds left to an Image Manager that would fetch a foreign URI after answering
_STATUS_RULE = {400: "STOW-RESP-003", 409: "STOW-RESP-004", 415: "STOW-RESP-005"}


# =====================================================================================================
# Canary
# =====================================================================================================
@dataclass(frozen=True, slots=True)
class CanaryHit:
    """One request the canary received."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    received: float


class Canary:
    """A loopback HTTP server that records every request it gets: proof that something was dereferenced.

    ``foreign_bulk_uri`` mutations point their BulkDataURI at :meth:`uri`; an
    Image Manager resolves BulkDataURIs against the parts of the request only, so
    a conformant one never touches the canary.

    Examples
    --------
    >>> with Canary() as canary:  # doctest: +SKIP
    ...     uri = canary.uri("pixel-data")
    ...     assert not canary.touched

    References
    ----------
    PS3.18 §10.5.2 and §8.6.1.2 (bulk data parts of the request); WIC-IM-011.
    """

    def __init__(self) -> None:
        self._hits: list[CanaryHit] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Canary:
        """Listen on 127.0.0.1, port 0, in a daemon thread."""
        if self._server is not None:
            return self
        canary = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                canary._add(CanaryHit(self.command, self.path, tuple(self.headers.items()), time.time()))
                body = b"wic-conformance canary: this resource must never be fetched\n"
                self.send_response(200)
                self.send_header("Content-Type", mt.TEXT_PLAIN)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_OPTIONS = do_PATCH = _record  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                log.debug("canary: " + format, *args)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="wic-canary", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Canary:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add(self, hit: CanaryHit) -> None:
        with self._lock:
            self._hits.append(hit)

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("the canary is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def uri(self, name: str = "") -> str:
        """Return a fresh URI under the canary (unique per call)."""
        return f"{self.url}/wic-canary/{name or 'bulk'}/{uuid.uuid4().hex[:12]}"

    @property
    def hits(self) -> list[CanaryHit]:
        """Return the requests received so far."""
        with self._lock:
            return list(self._hits)

    @property
    def touched(self) -> bool:
        """Return whether any request was received."""
        with self._lock:
            return bool(self._hits)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._hits.clear()


# =====================================================================================================
# Payload building
# =====================================================================================================
@dataclass(slots=True)
class _Instance:
    """One instance of the payload, with the UIDs it was sent with."""

    fixture: str
    sop_class: str | None = None
    study: str | None = None
    series: str | None = None
    sop: str | None = None


@dataclass(slots=True)
class _Built:
    root_type: str
    parts: list[tuple[dict[str, str], bytes | Body]]
    instances: list[_Instance] = field(default_factory=list)


class _Spool:
    """Where large built bodies and responses go for the duration of a case."""

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wic-case-")
            self.path = Path(self._tmp.name)
        else:
            self.path = Path(folder)
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def temporary(self) -> bool:
        return self._tmp is not None

    def file(self, suffix: str) -> tuple[int, str]:
        return tempfile.mkstemp(prefix="case-", suffix=suffix, dir=self.path)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class _Builder:
    """Builds a case's STOW-RS request from fixtures (pure, apart from reading fixture files)."""

    def __init__(self, case: Case, index: FixtureIndex, spool: _Spool) -> None:
        self.case = case
        self.payload = case.payload
        self.index = index
        self.spool = spool

    def uids(self, count: int) -> list[tuple[str, str, str]]:
        study = new_uid()
        out = []
        for _ in range(count):
            out.append((study if self.payload.same_study else new_uid(), new_uid(), new_uid()))
        return out

    def build(self, context: Dataset | None = None) -> _Built:
        fixtures = [self.index[key] for key in self.payload.fixtures]
        uids = self.uids(len(fixtures)) if self.payload.fresh_uids else [None] * len(fixtures)
        encoding = self.payload.encoding
        if encoding is Encoding.PART10:
            built = _Built(mt.APPLICATION_DICOM, [])
            for fixture, ids in zip(fixtures, uids, strict=True):
                data, inst = self.part10(fixture, ids, context)
                built.parts.append(({"Content-Type": mt.APPLICATION_DICOM}, data))
                built.instances.append(inst)
        elif encoding is Encoding.JSON:
            built = self.json(fixtures, uids, context)
        else:
            built = self.xml(fixtures, uids, context)
        if self.payload.pad_bytes:
            self.pad(built)
        return built

    # -- PS3.10 -----------------------------------------------------------------------------------
    def part10(self, fixture: Fixture, ids: tuple[str, str, str] | None, context: Dataset | None
               ) -> tuple[bytes, _Instance]:
        ds = dcmread(fixture.path)
        old_sop = str(ds.get("SOPInstanceUID", ""))
        if ids is not None:
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = ids
            meta = getattr(ds, "file_meta", None)
            if meta is not None and str(meta.get("MediaStorageSOPInstanceUID", "")) == old_sop:
                meta.MediaStorageSOPInstanceUID = ids[2]  # a deliberate mismatch in a broken fixture stays
        _apply_dataset_changes(ds, context, self.payload.overrides)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=False)
        return buffer.getvalue(), _instance_of(fixture.key, ds)

    # -- DICOM JSON -------------------------------------------------------------------------------
    def json(self, fixtures: list[Fixture], uids: Sequence[tuple[str, str, str] | None],
             context: Dataset | None) -> _Built:
        documents: list[dict[str, Any]] = []
        bulk: list[tuple[dict[str, str], bytes | Body]] = []
        instances: list[_Instance] = []
        several = len(fixtures) > 1
        for number, (fixture, ids) in enumerate(zip(fixtures, uids, strict=True), start=1):
            value = json.loads(fixture.read())
            if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
                raise UsageError(f"fixture {fixture.key!r} must hold exactly one DICOM JSON dataset")
            ds_json: dict[str, Any] = value[0]
            if ids is not None:
                for tag, uid in zip(("0020000D", "0020000E", "00080018"), ids, strict=True):
                    ds_json[tag] = {"vr": "UI", "Value": [uid]}
            changes = _json_changes(context, self.payload.overrides)
            for tag, attr in changes.items():
                if attr is None:
                    ds_json.pop(tag, None)
                else:
                    ds_json[tag] = attr
            parts = self.bulk_parts(fixture)
            uri_map = self.swap(parts, _json_bulk_uris(ds_json), fixture.key)
            if several:
                uri_map = {old: f"{new}/{number}" for old, new in uri_map.items()}
            _rewrite_json_uris(ds_json, uri_map)
            for headers, data in parts:
                location = headers["Content-Location"]
                headers["Content-Location"] = uri_map.get(location, location)
                bulk.append((headers, data))
            documents.append(dict(sorted(ds_json.items())))
            instances.append(_Instance(fixture.key, _json_uid(ds_json, "00080016"), _json_uid(ds_json, "0020000D"),
                                       _json_uid(ds_json, "0020000E"), _json_uid(ds_json, "00080018")))
        body = json.dumps(documents, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return _Built(mt.APPLICATION_DICOM_JSON, [({"Content-Type": mt.APPLICATION_DICOM_JSON}, body), *bulk],
                      instances)

    # -- DICOM XML --------------------------------------------------------------------------------
    def xml(self, fixtures: list[Fixture], uids: Sequence[tuple[str, str, str] | None],
            context: Dataset | None) -> _Built:
        metadata: list[tuple[dict[str, str], bytes | Body]] = []
        bulk: list[tuple[dict[str, str], bytes | Body]] = []
        instances: list[_Instance] = []
        several = len(fixtures) > 1
        for number, (fixture, ids) in enumerate(zip(fixtures, uids, strict=True), start=1):
            parts = self.bulk_parts(fixture)
            by_location = {h["Content-Location"]: d for h, d in parts}
            doc = xml_model.parse_document(fixture.read(), location=fixture.key,
                                           bulk_resolver=functools.partial(_resolve, by_location))
            if len(doc.datasets) != 1:
                problems = "; ".join(d.message for d in doc.deviations) or "no dataset"
                raise UsageError(f"fixture {fixture.key!r} does not convert: {problems}")
            ds = doc.datasets[0]
            if ids is not None:
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = ids
            _apply_dataset_changes(ds, context, self.payload.overrides)
            top_level = {ref.tag.upper(): ref.uri for ref in doc.bulk_refs if "/Item" not in ref.path}
            uri_map = self.swap(parts, top_level, fixture.key)
            if several:
                uri_map = {old: f"{new}/{number}" for old, new in uri_map.items()}
            uri_for_tag = {tag: uri_map.get(uri, uri) for tag, uri in top_level.items()}

            def bulk_uri_for(elem: Any, path: str, table: Mapping[str, str] = uri_for_tag) -> str | None:
                return table.get(f"{int(elem.tag):08X}") if "/Item" not in path else None

            metadata.append(({"Content-Type": mt.APPLICATION_DICOM_XML},
                             xml_model.dataset_to_xml(ds, bulk_uri_for=bulk_uri_for)))
            for headers, data in parts:
                location = headers["Content-Location"]
                headers["Content-Location"] = uri_map.get(location, location)
                bulk.append((headers, data))
            instances.append(_instance_of(fixture.key, ds))
        return _Built(mt.APPLICATION_DICOM_XML, metadata + bulk, instances)

    # -- bulk data --------------------------------------------------------------------------------
    def bulk_parts(self, fixture: Fixture) -> list[tuple[dict[str, str], bytes | Body]]:
        return [(dict(h), d) for h, d in self.index.bulk_parts(fixture)]

    def swap(self, parts: list[tuple[dict[str, str], bytes | Body]], uris: Mapping[str, str], key: str
             ) -> dict[str, str]:
        """Apply ``payload.bulk`` to the parts; return old location -> new location for every part."""
        mapping = {h["Content-Location"]: h["Content-Location"] for h, _d in parts}
        for tag, replacement in self.payload.bulk.items():
            uri = uris.get(tag)
            if uri is None:
                raise UsageError(f"fixture {key!r} has no BulkDataURI on ({tag[:4]},{tag[4:]}) to replace")
            media = self.index[replacement.fixture]
            new_location = f"bulk/{replacement.fixture.rsplit('/', 1)[-1]}"
            for i, (headers, _data) in enumerate(parts):
                if headers["Content-Location"] == uri:
                    parts[i] = ({"Content-Type": replacement.media_type or media.media_type,
                                 "Content-Location": uri}, media.read())
                    mapping[uri] = new_location
                    break
            else:
                raise UsageError(f"fixture {key!r}: no bulk part has Content-Location {uri!r}")
        return mapping

    def pad(self, built: _Built) -> None:
        """Grow MP4-family bulk parts to ``pad_bytes`` with a trailing ``free`` box (ISO/IEC 14496-12 §8.1.2)."""
        target = self.payload.pad_bytes
        grown = 0
        for i, (headers, data) in enumerate(built.parts):
            ctype = mt.parse_media_type(headers.get("Content-Type", ""))
            if ctype.essence not in _MP4_FAMILY:
                continue
            raw = data if isinstance(data, bytes) else data.read()
            extra = target - len(raw)
            if extra < 16:
                raise UsageError(f"pad_bytes={target} leaves no room for a free box after {len(raw)} bytes")
            fd, path = self.spool.file(".mp4")
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                if extra <= 0xFFFFFFFF:
                    handle.write(extra.to_bytes(4, "big") + b"free")
                    left = extra - 8
                else:
                    handle.write((1).to_bytes(4, "big") + b"free" + extra.to_bytes(8, "big"))
                    left = extra - 16
                zeros = bytes(1 << 20)
                while left > 0:
                    handle.write(zeros[: min(left, len(zeros))])
                    left -= min(left, len(zeros))
            built.parts[i] = (headers, Body.from_file(path))
            grown += 1
        if not grown:
            raise UsageError("pad_bytes needs an MP4-family (video/mp4, video/quicktime) bulk data part")

    def request(self, built: _Built, base_url: str, study: str | None) -> Request:
        """Encode the request: in memory, or into a spool file when a part is file-backed or large."""
        total = sum(len(d) for _h, d in built.parts)
        if total <= _SPOOL_BODY and all(isinstance(d, bytes) for _h, d in built.parts):
            parts = [(h, d if isinstance(d, bytes) else d.read()) for h, d in built.parts]
            return build_stow_request(base_url=base_url, root_type=built.root_type, parts=parts, study_uid=study,
                                      accept=self.payload.accept)
        content_type, chunks = iter_encode_multipart(built.parts, root_type=built.root_type)
        fd, path = self.spool.file(".body")
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        body = Body.from_file(path)
        headers = {"Content-Type": content_type, "Content-Length": str(body.size)}
        if self.payload.accept is not None:
            headers["Accept"] = self.payload.accept
        return Request("POST", stow_url(base_url, study), Headers.of(headers), body)


def _resolve(parts: Mapping[str, bytes | Body], uri: str) -> bytes | None:
    """Resolve a BulkData@uri of a fixture against the fixture's own bulk parts (nothing is fetched)."""
    return _bytes_of(parts.get(uri))


def _bytes_of(data: bytes | Body | None) -> bytes | None:
    if data is None:
        return None
    return data if isinstance(data, bytes) else data.read()


def _json_uid(ds_json: Mapping[str, Any], tag: str) -> str | None:
    attr = ds_json.get(tag)
    if isinstance(attr, dict) and isinstance(attr.get("Value"), list) and attr["Value"]:
        return str(attr["Value"][0])
    return None


def _json_bulk_uris(ds_json: Mapping[str, Any]) -> dict[str, str]:
    return {tag.upper(): attr["BulkDataURI"] for tag, attr in ds_json.items()
            if isinstance(attr, dict) and isinstance(attr.get("BulkDataURI"), str)}


def _rewrite_json_uris(value: Any, mapping: Mapping[str, str]) -> None:
    if isinstance(value, dict):
        uri = value.get("BulkDataURI")
        if isinstance(uri, str) and uri in mapping:
            value["BulkDataURI"] = mapping[uri]
        for child in value.values():
            _rewrite_json_uris(child, mapping)
    elif isinstance(value, list):
        for child in value:
            _rewrite_json_uris(child, mapping)


def _keyword_tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise UsageError(f"override {keyword!r} is not a DICOM attribute keyword")
    return int(tag)


def _apply_dataset_changes(ds: Dataset, context: Dataset | None, overrides: Mapping[str, Any]) -> None:
    """Copy the append context, then apply the overrides (``None`` deletes)."""
    if context is not None:
        for elem in context:
            ds[elem.tag] = copy.deepcopy(elem)
    for keyword, value in overrides.items():
        tag = _keyword_tag(keyword)
        if value is None:
            if tag in ds:
                del ds[tag]
        else:
            setattr(ds, keyword, value)


def _json_changes(context: Dataset | None, overrides: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Return tag -> DICOM JSON attribute object (``None`` deletes), typed by the pydicom dictionary VR."""
    changes: dict[str, dict[str, Any] | None] = {}
    ds = Dataset()
    if context is not None:
        for elem in context:
            ds[elem.tag] = copy.deepcopy(elem)
    deleted: list[str] = []
    for keyword, value in overrides.items():
        tag = _keyword_tag(keyword)
        if value is None:
            deleted.append(f"{tag:08X}")
            if tag in ds:
                del ds[tag]
        else:
            setattr(ds, keyword, value)
    for key, attr in dataset_to_json(ds).items():
        changes[key] = attr
    for key in deleted:
        changes[key] = None
    return changes


def _instance_of(key: str, ds: Dataset) -> _Instance:
    def uid(name: str) -> str | None:
        value = ds.get(name)
        return str(value) if value else None

    return _Instance(key, uid("SOPClassUID"), uid("StudyInstanceUID"), uid("SeriesInstanceUID"),
                     uid("SOPInstanceUID"))


# =====================================================================================================
# Running a case
# =====================================================================================================
class _CaseBroken(WicConformanceError):
    """The case could not be carried out: its setup failed, or the target gave the judged request no answer."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass(slots=True)
class _Verification:
    documents: list[Document] = field(default_factory=list)
    stored: list[bool] = field(default_factory=list)  # per submitted instance
    findings: list[Finding] = field(default_factory=list)


class _Run:
    def __init__(self, case: Case, target: Target, capturer: ImageCapturer, index: FixtureIndex,
                 catalogue: Catalogue, spool: _Spool, canary: Canary | None) -> None:
        self.case = case
        self.target = target
        self.capturer = capturer
        self.index = index
        self.catalogue = catalogue
        self.spool = spool
        self.canary = canary
        self.builder = _Builder(case, index, spool)
        self.mutations: list[Mutation] = []
        self.canary_uris: list[str] = []
        self.built = _Built("", [])

    # -- target forms -----------------------------------------------------------------------------
    def existing_study(self) -> Dataset:
        """Store a plain PS3.10 instance to create a study; return its patient and study context."""
        fixture = self.index[SETUP_FIXTURE]
        ds = dcmread(fixture.path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        exchange = self.capturer.store(root_type=mt.APPLICATION_DICOM,
                                       parts=[({"Content-Type": mt.APPLICATION_DICOM}, buffer.getvalue())])
        assert exchange.response is not None
        if exchange.response.status not in (200, 202):
            raise _CaseBroken(BadStatus(
                requirement="STOW-BEH-001", location="setup request",
                message=f"the study to append to could not be created: storing the valid PS3.10 instance "
                        f"{SETUP_FIXTURE} got HTTP {exchange.response.status}, not 200"))
        study = str(ds.StudyInstanceUID)
        search = self.capturer.search("studies", {"StudyInstanceUID": study})
        if not any(_json_uid(item, "0020000D") == study for item in self.capturer.search_results(search)):
            raise _CaseBroken(Finding(
                requirement="STOW-BEH-001", location="setup search",
                message=f"the study {study} stored to append to is not found by QIDO-RS "
                        f"(HTTP {search.response.status if search.response else '?'})"))
        context = Dataset()
        for keyword in _CONTEXT_KEYWORDS:
            if keyword in ds:
                context[_keyword_tag(keyword)] = copy.deepcopy(ds[keyword])
        return context

    # -- mutations --------------------------------------------------------------------------------
    def mutate(self, request: Request) -> Request:
        for spec in self.case.payload.mutations:
            params = dict(spec.params)
            if spec.kind == MutationKind.FOREIGN_BULK_URI and not params.get("uri"):
                if self.canary is None:
                    raise UsageError("foreign_bulk_uri without a uri needs a canary")
                uri = self.canary.uri(self.case.id)
                params["uri"] = uri
                self.canary_uris.append(uri)
            request, record = apply(spec.kind, request, params)
            self.mutations.append(record)
        return request

    # -- verification -----------------------------------------------------------------------------
    def known(self, sop: str) -> _Instance | None:
        return next((i for i in self.built.instances if i.sop == sop), None)

    def search_instance(self, sop: str) -> tuple[str | None, str | None] | None:
        """QIDO-RS for one SOP Instance UID; return (study, series) when found."""
        exchange = self.capturer.search("instances", {"SOPInstanceUID": sop, "includefield": "0020000E"})
        for item in self.capturer.search_results(exchange):
            if _json_uid(item, "00080018") == sop:
                return _json_uid(item, "0020000D"), _json_uid(item, "0020000E")
        return None

    def verify(self, exchange: Exchange, parsed: StoreResponse, preexisting: set[str]) -> _Verification:
        out = _Verification()
        base = self.capturer.base_url
        submitted: list[str] = [i.sop for i in self.built.instances if i.sop]
        found: dict[str, tuple[str | None, str | None]] = {}
        for sop in submitted:
            hit = self.search_instance(sop)
            if hit is not None:
                found[sop] = hit
        urls: dict[str, str] = {}
        for ref in parsed.referenced:
            if not ref.sop_instance_uid:
                continue
            sop = ref.sop_instance_uid
            url = ref.retrieve_url
            if not url:
                inst = self.known(sop)
                study, series = found.get(sop, (inst.study, inst.series) if inst else (None, None))
                url = f"{base}/studies/{study}/series/{series}/instances/{sop}" if study and series else ""
            if url:
                urls[sop] = url
        for sop, (study, series) in found.items():
            if sop not in urls and study and series:
                urls[sop] = f"{base}/studies/{study}/series/{series}/instances/{sop}"
        retrieved: set[str] = set()
        unmatched = 0
        failures: dict[str, str] = {}
        for sop, url in urls.items():
            fetch, documents = self.capturer.retrieve(url)
            status = fetch.response.status if fetch.response else 0
            uids = [_sop_of(d) for d in documents]
            if sop in uids:
                retrieved.add(sop)
            else:
                failures[sop] = f"HTTP {status}" + (f", {len(documents)} other instance(s)" if documents else "")
            for doc, uid in zip(documents, uids, strict=True):
                out.documents.append(doc)
                if uid and uid not in submitted:
                    unmatched += 1
        referenced = {r.sop_instance_uid for r in parsed.referenced if r.sop_instance_uid}
        failed = {r.sop_instance_uid for r in parsed.failed if r.sop_instance_uid}
        for sop in sorted(referenced):
            if sop not in retrieved:
                out.findings.append(Finding(
                    requirement="STOW-BEH-001", title="NotRetrievable", location=f"instance {sop}",
                    message=f"the response lists {sop} as stored (Referenced SOP Sequence) but WADO-RS cannot "
                            f"retrieve it ({failures.get(sop, 'no Retrieve URL and no UIDs to build one')}); "
                            "a 2xx status is not proof of storage"))
        status = exchange.response.status if exchange.response else 0
        for sop in submitted:
            stored_now = (sop in retrieved or sop in found) and sop not in preexisting
            if not stored_now or sop in referenced:
                continue
            if sop in failed:
                rule, why = "STOW-MOD-009", "the response lists it in the Failed SOP Sequence"
            elif status >= 400:
                rule, why = _STATUS_RULE.get(status, "STOW-MOD-009"), f"the response status is {status}"
            else:
                rule, why = "STOW-MOD-009", "the response does not list it in the Referenced SOP Sequence"
            out.findings.append(Finding(
                requirement=rule, title="StoredDespiteFailure", location=f"instance {sop}",
                message=f"instance {sop} was stored (found by QIDO-RS/WADO-RS) although {why}"))
        for inst in self.built.instances:
            if inst.sop:
                out.stored.append(inst.sop in retrieved or inst.sop in found)
            else:
                out.stored.append(unmatched > 0)
                unmatched -= 1 if unmatched > 0 else 0
        return out

    def expectation(self, exchange: Exchange, parsed: StoreResponse, verified: _Verification,
                    preexisting: set[str]) -> list[Finding]:
        expect = self.case.expect
        rule = expect.failure_requirement
        found: list[Finding] = []
        response = exchange.response
        assert response is not None
        if response.status not in expect.status:
            warning = response.headers.get("warning")
            found.append(BadStatus(
                requirement=rule, location="response status", evidence=warning or "",
                message=f"expected HTTP {' or '.join(map(str, expect.status))} but got {response.status}"
                        + (f" {response.reason}" if response.reason else "")
                        + (f" (Warning: {warning[:200]})" if warning else "")))
        wanted: list[bool | None]
        if expect.stored_only is not None:
            wanted = [i in expect.stored_only for i in range(len(self.built.instances))]
        else:
            wanted = [expect.stored] * len(self.built.instances)
        for position, (inst, want, got) in enumerate(zip(self.built.instances, wanted, verified.stored,
                                                         strict=True)):
            if want is None or inst.sop in preexisting:
                continue
            what = f"instance {position} ({inst.fixture}, SOP Instance UID {inst.sop or 'left to the Image Manager'})"
            if want and not got:
                found.append(Finding(requirement=rule, title="NotStored", location=f"instance {position}",
                                     message=f"{what} must be stored but cannot be found or retrieved"))
            elif got and not want:
                found.append(Finding(requirement=rule, title="StoredAnyway", location=f"instance {position}",
                                     message=f"{what} was stored although the case expects it to be refused"))
        if expect.reported:
            warned = {r.sop_instance_uid for r in parsed.referenced if r.warning_reason is not None}
            failed = {r.sop_instance_uid for r in parsed.failed}
            for inst in self.built.instances:
                if inst.sop and inst.sop not in warned and inst.sop not in failed:
                    found.append(Finding(
                        requirement=rule, title="SilentlyAccepted", location=f"instance {inst.sop}",
                        message=f"instance {inst.sop} was neither refused (Failed SOP Sequence) nor flagged "
                                "(Warning Reason): the response must report what happened to it"))
        if self.canary_uris and self.canary is not None:
            deadline = time.monotonic() + _CANARY_GRACE
            while time.monotonic() < deadline and not self._canary_hits():
                time.sleep(0.02)
            for hit in self._canary_hits():
                found.append(Finding(
                    requirement="WIC-IM-011", title="ForeignBulkDataFetched", location="canary",
                    evidence=f"{hit.method} {hit.path}",
                    message="the Image Manager dereferenced a BulkDataURI outside the request (security): "
                            f"the canary received {hit.method} {hit.path}"))
        return found

    def _canary_hits(self) -> list[CanaryHit]:
        if self.canary is None:
            return []
        paths = {u.split("/", 3)[-1] for u in self.canary_uris}
        return [h for h in self.canary.hits if h.path.lstrip("/") in paths]

    # -- the whole case ---------------------------------------------------------------------------
    def run(self) -> tuple[list[Exchange], list[Finding], list[CheckResult], Exchange]:
        case = self.case
        context: Dataset | None = None
        study_target: str | None = None
        if case.target == "study":
            context = self.existing_study()
            study_target = str(context.StudyInstanceUID)
        elif case.target == "other-study":
            study_target = new_uid()
        self.built = self.builder.build(context)
        request = self.mutate(self.builder.request(self.built, self.capturer.base_url, study_target))
        preexisting: set[str] = set()
        if case.payload.resend:
            self.capturer.send(request, chunked=case.payload.chunked)
        if case.payload.resend or not case.payload.fresh_uids:
            preexisting = {i.sop for i in self.built.instances if i.sop and self.search_instance(i.sop)}
        try:
            judged = self.capturer.send(request, chunked=case.payload.chunked)
        except TargetUnreachableError as exc:
            if exc.reason not in ("closed", "timeout"):
                raise
            raise _CaseBroken(Finding(
                requirement=case.expect.failure_requirement, title="NoResponse", location="response",
                message=f"no HTTP response to the judged request ({exc}); expected HTTP "
                        f"{' or '.join(map(str, case.expect.status))}")) from None
        assert judged.response is not None
        parsed = parse_store_response(judged.response)
        verified = self.verify(judged, parsed, preexisting)
        judged = dataclasses.replace(judged, documents=tuple(verified.documents))
        results = self.checks(judged)
        findings = [f for r in results for f in r.findings]
        own = verified.findings + self.expectation(judged, parsed, verified, preexisting)
        findings.extend(self.stamp(own, judged))
        exchanges = [judged if e.id == judged.id else e for e in self.capturer.exchanges]
        return exchanges, findings, results, judged

    def checks(self, exchange: Exchange) -> list[CheckResult]:
        from wic_conformance.validate.all_checks import REGISTRY

        ctx = CheckContext(catalogue=self.catalogue, options=self.case.check_options)
        ctx.seed(exchange, "instances", [read_part10(d.body, location=d.location, origin="retrieved")
                                         for d in exchange.retrieved()])
        names = [c for c in self.case.checks if c in REGISTRY]
        tags = [c for c in self.case.checks if c not in REGISTRY]
        results: list[CheckResult] = []
        if names:
            results.extend(REGISTRY.run(ctx, exchange, names))
        if tags:
            done = {r.check for r in results}
            results.extend(REGISTRY.run(ctx, exchange, [s.name for s in REGISTRY.select(tags=tags)
                                                        if s.name not in done]))
        return results

    def stamp(self, findings: list[Finding], exchange: Exchange | None) -> list[Finding]:
        """Give the runner's own findings the catalogue's severity and confidence (disabled rules drop out)."""
        out: list[Finding] = []
        for finding in findings:
            req = self.catalogue.get(finding.requirement)
            if req is None or not req.enabled:
                continue
            if finding.severity is None or "severity" in self.catalogue.profile.rules.get(req.id, {}):
                finding.severity = req.severity
            finding.confidence = req.confidence
            finding.exchange_id = finding.exchange_id or (exchange.id if exchange is not None else "")
            out.append(finding)
        return out


def _sop_of(document: Document) -> str | None:
    try:
        with document.body.open() as handle:
            ds = dcmread(handle, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception:  # an unreadable retrieved object: the conversion checks report it
        return None
    value = ds.get("SOPInstanceUID")
    return str(value) if value else None


def _detach(exchanges: Sequence[Exchange], folder: Path) -> list[Exchange]:
    """Replace bodies kept in ``folder`` (about to be removed) by their first bytes, marking the exchange."""

    def inside(body: Body) -> bool:
        return body.path is not None and folder in body.path.parents

    out: list[Exchange] = []
    for exchange in exchanges:
        changed = False
        request, response = exchange.request, exchange.response
        if request is not None and inside(request.body):
            request = dataclasses.replace(request, body=Body.of(request.body.head(_KEEP_HEAD)))
            changed = True
        if response is not None and inside(response.body):
            response = dataclasses.replace(response, body=Body.of(response.body.head(_KEEP_HEAD)))
            changed = True
        documents = []
        for doc in exchange.documents:
            if inside(doc.body):
                doc = dataclasses.replace(doc, body=Body.of(doc.body.head(_KEEP_HEAD)))
                changed = True
            documents.append(doc)
        out.append(dataclasses.replace(exchange, request=request, response=response, documents=tuple(documents),
                                       truncated=True) if changed else exchange)
    return out


def _summary(errors: Sequence[Finding], missing: Sequence[str]) -> str:
    lines = [f"[{f.requirement}] {f.message}" for f in errors[:10]]
    if len(errors) > 10:
        lines.append(f"... and {len(errors) - 10} more error finding(s)")
    if missing:
        lines.append(f"expected finding(s) absent: {', '.join(missing)}")
    return "\n".join(lines)


def run_case(
    case: Case,
    target: Target,
    *,
    session: requests.Session | None = None,
    index: FixtureIndex | None = None,
    catalogue: Catalogue | None = None,
    canary: Canary | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
) -> CaseResult:
    """Run one case against the Image Manager at ``target`` and judge it.

    Parameters
    ----------
    case : Case
        A loaded case (see :func:`wic_conformance.plans.loader.load_plan`).
    target : Target
        The DICOMweb service root and how to reach it; ``target.options`` (when not
        empty) lists the WIC options the Image Manager claims.
    session : requests.Session, optional
        Injected HTTP session (a new one by default).
    index : FixtureIndex, optional
        The fixtures index (default: :meth:`FixtureIndex.load`).
    catalogue : Catalogue, optional
        Catalogue with any rule profile (default: the packaged one).
    canary : Canary, optional
        A running canary for ``foreign_bulk_uri`` mutations without a ``uri``; a
        temporary one is started for the case when needed and none is given.
    spool_dir : str or os.PathLike, optional
        Where large request and response bodies are kept; by default a temporary folder
        removed when the case ends (those bodies are then cut to their first 64 KiB and
        the exchange is marked ``truncated``).

    Returns
    -------
    CaseResult
        ``SKIPPED`` when the target claims none of the case's options; ``ERROR`` when the
        toolkit, the plan or the fixtures broke, or the target could not be reached;
        ``FAILED`` when an error-level finding is not among ``expect.findings`` or an
        expected finding is absent; ``PASSED`` otherwise.  Every exchange is returned,
        setup, searches and retrievals included; the judged one carries the retrieved
        instances.

    References
    ----------
    PS3.18 §10.5 (Store), §10.4 (Retrieve), §10.6 (Search); IHE RAD WIC (RAD-108).
    """
    if target.options and case.options and not set(case.options) & set(target.options):
        return CaseResult(case, CaseOutcome.SKIPPED,
                          message=f"the target claims none of the options {', '.join(case.options)} "
                                  f"(it claims {', '.join(sorted(target.options))})")
    spool = _Spool(spool_dir)
    capturer = ImageCapturer(target.url, session=session, headers=dict(target.headers), auth=target.auth,
                             verify=target.verify, timeout=target.timeout, spool_dir=spool.path)
    needs_canary = canary is None and any(
        m.kind == MutationKind.FOREIGN_BULK_URI and not m.params.get("uri") for m in case.payload.mutations)
    own_canary = Canary() if needs_canary else None
    try:
        with own_canary if own_canary is not None else contextlib.nullcontext():
            run = _Run(case, target, capturer, index if index is not None else FixtureIndex.load(),
                       catalogue if catalogue is not None else default_catalogue(), spool, canary or own_canary)
            try:
                exchanges, findings, results, _judged = run.run()
            except _CaseBroken as broken:
                found = run.stamp([broken.finding], capturer.exchanges[-1] if capturer.exchanges else None)
                return _finish(CaseResult(case, CaseOutcome.FAILED, tuple(capturer.exchanges), tuple(found),
                                          f"[{broken.finding.requirement}] {broken.finding.message}",
                                          mutations=tuple(run.mutations)), spool)
            except TargetUnreachableError as exc:
                return _finish(CaseResult(case, CaseOutcome.ERROR, tuple(capturer.exchanges),
                                          message=f"target unreachable: {exc}", mutations=tuple(run.mutations)),
                               spool)
            except WicConformanceError as exc:
                return _finish(CaseResult(case, CaseOutcome.ERROR, tuple(capturer.exchanges),
                                          message=f"{type(exc).__name__}: {exc}", mutations=tuple(run.mutations)),
                               spool)
        broken_checks = [r for r in results if r.outcome is Outcome.ERROR]
        checks_run = tuple(r.check for r in results if r.outcome is not Outcome.NOT_APPLICABLE)
        expected = set(case.expect.findings)
        errors = [f for f in findings if f.severity is Severity.ERROR and f.requirement not in expected]
        present = {f.requirement for f in findings}
        missing = sorted(expected - present)
        if broken_checks:
            outcome = CaseOutcome.ERROR
            message = "check(s) broke: " + "; ".join(f"{r.check}: {r.error}" for r in broken_checks)
        elif errors or missing:
            outcome = CaseOutcome.FAILED
            message = _summary(errors, missing)
        else:
            outcome = CaseOutcome.PASSED
            message = ""
        return _finish(CaseResult(case, outcome, tuple(exchanges), tuple(findings), message, checks_run,
                                  mutations=tuple(run.mutations)), spool)
    finally:
        spool.close()


def _finish(result: CaseResult, spool: _Spool) -> CaseResult:
    if spool.temporary:
        return dataclasses.replace(result, exchanges=tuple(_detach(result.exchanges, spool.path)))
    return result
