"""The simulated Image Manager: a strict STOW-RS origin server that converts, stores and judges.

It answers RAD-108 (STOW-RS) the way PS3.18 §10.5 asks, converts JSON/XML
metadata plus bulk data into PS3.10 instances (:mod:`.conversion`), keeps them
in an :class:`~.store.InstanceStore`, serves them back through QIDO-RS and
WADO-RS, offers a PDQm Patient Demographics Supplier subset under ``/fhir``,
and judges every request it receives with the shared check registry.

Hooks follow two kinds:

* one *intervention* hook, ``on_store(submission) -> StoreOutcome``, decides the
  answer to a well-formed STOW-RS request (default: :meth:`ImageManager.store_submission`);
* any number of *notification* hooks (observers) are called with each recorded
  :class:`~wic_conformance.dicomweb.exchange.Exchange` and its check results.

References
----------
PS3.18 §10.5 (Store), §10.6 (Search), §10.4 (Retrieve), §8 (common rules);
IHE RAD WIC (RAD-108); IHE ITI PDQm (ITI-78).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.uid import ExplicitVRLittleEndian
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Mount, Route

from wic_conformance.actors.conversion import Converted, FailureReason
from wic_conformance.actors.store import DuplicatePolicy, InstanceStore, PutResult
from wic_conformance.catalogue import Catalogue, default_catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request, Response
from wic_conformance.dicomweb.multipart import iter_encode_multipart
from wic_conformance.dicomweb.part10 import Part10Instance
from wic_conformance.dicomweb.qido import QidoQueryError, parse_qido_query
from wic_conformance.dicomweb.store_response import SopRef, build_store_response
from wic_conformance.dicomweb.stow import StowKind, StowRequest, parse_stow_request
from wic_conformance.errors import ConfigError, ValidatorUnavailableError
from wic_conformance.findings import Finding, Severity
from wic_conformance.validate.iod import (
    BUNDLED,
    Dciodvfy,
    DicomValidatorEngine,
    IodMessage,
    seed_bundled,
    seed_dciodvfy,
)
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome

if TYPE_CHECKING:
    from wic_conformance.actors.server import AsgiServer

__all__ = [
    "Auth",
    "FailureReason",
    "ImageManager",
    "ManagerConfig",
    "StoreOutcome",
    "Submission",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Auth:
    """Credentials the Image Manager requires: HTTP Basic, or a Bearer token."""

    username: str | None = None
    password: str | None = None
    token: str | None = None
    realm: str = "wic-conformance"

    def allows(self, header: str | None) -> bool:
        """Return whether an Authorization header value carries the configured credentials."""
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if self.token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip(), self.token)
        if self.username is not None and scheme.lower() == "basic":
            try:
                user, _, pw = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user, self.username) and hmac.compare_digest(pw, self.password or "")
        return False

    @property
    def challenge(self) -> str:
        """Return the WWW-Authenticate value for a 401."""
        scheme = "Bearer" if self.token is not None else "Basic"
        return f'{scheme} realm="{self.realm}"'


#: The IOD gate's engines (``ManagerConfig.iod_engine``).
IOD_ENGINES = ("dciodvfy", "tables")
#: Largest instance the ``tables`` gate judges in process (dicom-validator reads every value below
#: Pixel Data into memory, an encapsulated document's included); larger ones go to dciodvfy.
TABLES_GATE_MAX_BYTES = 64 << 20

#: Request bodies up to this size are read into memory and written to the spool folder after the answer.
MEMORY_BODY_BYTES = 1 << 20
#: The file in the spool folder those bodies are appended to (larger ones have a file each).
SPOOLED_BODIES = "bodies.bin"


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """How the simulated Image Manager behaves; every field can come from a YAML ``--config`` file.

    Attributes
    ----------
    root : str
        Path of the DICOMweb service root (STOW-RS at ``{root}/studies``).
    fhir_root : str
        Path where the PDQm supplier is mounted.
    data_dir : Path or None
        Storage folder (Part-10 files, SQLite index, recorded exchanges); ``None`` = a temporary one.
    patients : Path or None
        Synthetic patients for PDQm (default: none, PDQm answers empty bundles).
    max_body_bytes, max_parts, max_header_bytes : int
        Request limits, answered with 413 (body, parts) or 400 (headers).
    body_timeout : float
        Longest wait for the next body chunk from a slow client (answered with 408).
    duplicate : DuplicatePolicy
        What a resend of a stored SOP Instance UID gets: REJECT (Failed SOP, 0xC40B) or REPLACE (B000 warning).
    require_accept : bool
        Answer 406 to a STOW-RS request without Accept (PS3.18 §8.7.7 allows it; default off).
    all_stored_with_warnings_status : int
        200 or 202 when every instance was stored but some with warnings (STOW-RESP-002).
    validate_iod : bool
        Run the IOD gate on each instance before storing it; invalid ones are rejected.
    iod_engine : str
        The IOD gate's engine.  ``"tables"`` (default): dicom-validator in process on the
        bundled IOD tables, with the rules they cannot carry (:mod:`~wic_conformance.validate.iod_rules`:
        consistency between attributes, conditions in prose, value representations), for the
        SOP Classes they describe and instances up to :data:`TABLES_GATE_MAX_BYTES`; about 1 ms
        per image.  It refuses what dciodvfy refuses on a corpus of 3000 single-attribute
        mutations (``tests/validate/test_iod_parity.py``), and is stricter on the ranges of
        dates and times; its known gaps are listed in ``tests/validate/test_iod.py``.  Other
        instances go to dciodvfy.  Judging reuses the gate's verdicts: when the tables judged
        every PS3.10 part, dciodvfy is not run on them again (so its warnings are not reported).
        ``"dciodvfy"``: dciodvfy (the reference) gates every instance, about 5 ms of CPU each
        to start it, and judging reuses its verdict.
    durable_writes : bool
        fsync each stored file (and its folder) and commit the index with ``synchronous = FULL``, so
        that a stored instance survives a power loss.  Off by default: the atomic rename and the
        index transaction already keep the store consistent when the process crashes, and an
        fsync per instance is a disk flush in the request path.
    judge : bool
        Judge every received request with the check registry.
    auth : Auth or None
        Credentials to require (401 with WWW-Authenticate otherwise).
    conversion : mapping
        Options of the conversion engine (see :class:`~.conversion.ConversionPolicy`).
    faults : tuple of str
        Deliberate defects (:class:`~.faults.Fault` names or values) that make this Image Manager
        non-conformant, to show that a test plan catches them; empty for a conformant manager.
    """

    root: str = "/dicom-web"
    fhir_root: str = "/fhir"
    data_dir: Path | None = None
    patients: Path | None = None
    max_body_bytes: int = 4 << 30
    max_parts: int = 1000
    max_header_bytes: int = 16_384
    body_timeout: float = 30.0
    duplicate: DuplicatePolicy = DuplicatePolicy.REJECT
    require_accept: bool = False
    all_stored_with_warnings_status: int = 200
    validate_iod: bool = True
    iod_engine: str = "tables"
    durable_writes: bool = False
    judge: bool = True
    auth: Auth | None = None
    conversion: Mapping[str, Any] = field(default_factory=dict)
    faults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.iod_engine not in IOD_ENGINES:
            raise ValueError(f"iod_engine must be one of {', '.join(IOD_ENGINES)}")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ManagerConfig:
        """Read a YAML configuration file (keys are the attribute names).

        Raises
        ------
        ConfigError
            Unreadable file, unknown key or bad value.
        """
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read manager configuration {p}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of settings")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(data, source=str(p))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "configuration") -> ManagerConfig:
        """Build from a plain mapping, converting paths, enums and the auth block."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        try:
            for key in ("data_dir", "patients"):
                if values.get(key) is not None:
                    values[key] = Path(values[key])
            if "duplicate" in values:
                values["duplicate"] = DuplicatePolicy(str(values["duplicate"]).lower())
            if isinstance(values.get("auth"), Mapping):
                values["auth"] = Auth(**values["auth"])
            if values.get("faults") is not None:
                from wic_conformance.actors.faults import parse_faults

                values["faults"] = tuple(str(f) for f in parse_faults(values["faults"]))
            config = cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if config.all_stored_with_warnings_status not in (200, 202):
            raise ConfigError(f"{source}: all_stored_with_warnings_status must be 200 or 202")
        return config


@dataclass(frozen=True, slots=True)
class Submission:
    """A well-formed STOW-RS request handed to the ``on_store`` intervention hook.

    ``iod_messages`` is where a hook that ran an IOD engine on a PS3.10 part exactly as
    received leaves the verdict, keyed by the part's position in ``stow.instances``, as
    ``(engine, messages)`` with engine ``"dciodvfy"`` or ``"tables"`` (dicom-validator on
    the bundled tables); judging the request reuses it instead of validating again.
    """

    request: Request
    stow: StowRequest
    base_url: str
    response_type: str
    iod_messages: dict[int, tuple[str, list[IodMessage]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """The Image Manager's answer to a submission (status, sequences, Warning header text)."""

    status: int
    referenced: tuple[SopRef, ...] = ()
    failed: tuple[SopRef, ...] = ()
    other_failures: tuple[int, ...] = ()
    retrieve_url: str | None = None
    warnings: tuple[str, ...] = ()


Observer = Callable[[Exchange, list[CheckResult]], None]
StoreHook = Callable[[Submission], StoreOutcome]
DatasetTransform = Callable[[Dataset], Dataset]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A recorded exchange's summary with the findings it drew."""

    exchange_id: str
    received: float
    method: str
    url: str
    status: int
    findings: tuple[Finding, ...]
    errors: tuple[str, ...]
    judged: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (check, outcome, requirements) of checks that ran

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form served at ``/wic/exchanges``."""
        return {"id": self.exchange_id, "received": self.received, "method": self.method, "url": self.url,
                "status": self.status, "findings": [f.to_dict() for f in self.findings],
                "check_errors": list(self.errors),
                "checks": [{"check": c, "outcome": o, "requirements": list(r)} for c, o, r in self.judged]}


@dataclass(frozen=True, slots=True)
class _Stored:
    """A submission and the ``on_store`` hook's answer to it."""

    submission: Submission
    outcome: StoreOutcome


@dataclass(frozen=True, slots=True)
class _Gated:
    """What the IOD gate and the store made of one instance."""

    put: PutResult | None  # None: not stored, it breaks its IOD
    iod_errors: str = ""
    unverified: str = ""  # why dciodvfy could not judge it (stored anyway)


class _BodyTooLarge(Exception):
    pass


class _SlowClient(Exception):
    pass


class ImageManager:
    """A STOW-RS / QIDO-RS / WADO-RS origin server with a PDQm subset, that judges its clients.

    Parameters
    ----------
    config : ManagerConfig
        Behaviour and limits.
    on_store : callable, optional
        The intervention hook; defaults to :meth:`store_submission`.
    observers : iterable of callables
        Notification hooks called with each judged exchange.
    catalogue : Catalogue, optional
        Catalogue (with any rule profile) used to judge requests.
    faults : iterable of str
        Deliberate defects (:class:`~.faults.Fault`), added to ``config.faults``; each wraps
        ``on_store`` or appends to :attr:`dataset_transforms` (applied to every converted
        instance that passed the IOD gate, just before it is stored).
    """

    def __init__(
        self,
        config: ManagerConfig | None = None,
        *,
        on_store: StoreHook | None = None,
        observers: Iterable[Observer] = (),
        catalogue: Catalogue | None = None,
        faults: Iterable[str] = (),
    ) -> None:
        from wic_conformance.actors.conversion import ConversionPolicy
        from wic_conformance.validate import all_checks  # noqa: F401  (registers the checks)

        self.config = config or ManagerConfig()
        self._tmp: str | None = None
        if self.config.data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="wic-manager-")
            self.data_dir = Path(self._tmp)
        else:
            self.data_dir = self.config.data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir = self.data_dir / "spool"
        self.spool_dir.mkdir(exist_ok=True)
        self.store = InstanceStore(self.data_dir, durable=self.config.durable_writes)
        self.conversion_policy = ConversionPolicy.from_mapping(self.config.conversion)
        self.on_store: StoreHook = on_store or self.store_submission
        self.observers = list(observers)
        self.catalogue = catalogue or default_catalogue()
        self._iod = Dciodvfy() if self.config.validate_iod else None
        self._tables = (DicomValidatorEngine(BUNDLED)
                        if self.config.validate_iod and self.config.iod_engine == "tables" else None)
        self._lock = threading.Lock()
        self._spool_lock = threading.Lock()
        self._bodies: IO[bytes] | None = None  # spool/bodies.bin, open for appending once a body is spooled
        self._exchanges: list[Exchange] = []
        self._verdicts: list[Verdict] = []
        self._server: Any = None
        self.dataset_transforms: list[DatasetTransform] = []
        self.faults: tuple[str, ...] = ()
        wanted = (*self.config.faults, *faults)
        if wanted:
            from wic_conformance.actors.faults import install_faults

            self.faults = install_faults(self, wanted)
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, *, host: str = "127.0.0.1", port: int = 0, ssl_certfile: str | None = None,
              ssl_keyfile: str | None = None) -> ImageManager:
        """Serve on ``host:port`` in a background thread (port 0 = any free port), over TLS when given a certificate."""
        self._server = self.make_server(host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
        self._server.start()
        return self

    def make_server(self, *, host: str = "127.0.0.1", port: int = 0, ssl_certfile: str | None = None,
                    ssl_keyfile: str | None = None) -> AsgiServer:
        """Return the (not yet started) server for this Manager's application, as :meth:`start` and the CLI run it."""
        from wic_conformance.actors.server import AsgiServer

        # httptools (the C parser) and uvloop: about 5 % and 3 % more requests per second than h11 and
        # asyncio's own loop (bench manager, A/B).
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        return AsgiServer(self.app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                          h11_max_incomplete_event_size=self.config.max_header_bytes, http="httptools", loop=loop)

    def stop(self) -> None:
        """Stop serving; a temporary data folder is removed."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        with self._spool_lock:
            if self._bodies is not None:
                self._bodies.close()
                self._bodies = None
        self.store.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ImageManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the DICOMweb service root URL (``http://127.0.0.1:PORT/dicom-web``)."""
        if self._server is None:
            raise RuntimeError("the Image Manager is not running")
        return self._server.url + self.config.root

    @property
    def fhir_url(self) -> str:
        """Return the PDQm (FHIR) base URL."""
        if self._server is None:
            raise RuntimeError("the Image Manager is not running")
        return self._server.url + self.config.fhir_root

    def check_errors(self) -> None:
        """Re-raise errors raised inside request handlers (for tests)."""
        if self._server is not None:
            self._server.check_errors()

    # -- recorded exchanges and verdicts --------------------------------------------------------
    @property
    def exchanges(self) -> list[Exchange]:
        """Return the STOW-RS exchanges recorded so far."""
        with self._lock:
            return list(self._exchanges)

    @property
    def verdicts(self) -> list[Verdict]:
        """Return the verdicts on the recorded exchanges."""
        with self._lock:
            return list(self._verdicts)

    def clear(self) -> None:
        """Forget recorded exchanges and verdicts (stored instances stay)."""
        with self._lock:
            self._exchanges.clear()
            self._verdicts.clear()

    def check(self) -> list[Finding]:
        """Return every finding drawn by the recorded exchanges."""
        return [f for v in self.verdicts for f in v.findings]

    def _judge(self, exchange: Exchange, stow: StowRequest | None, body_read: bool = True,
               iod_messages: Mapping[int, tuple[str, list[IodMessage]]] | None = None) -> None:
        results: list[CheckResult] = []
        if self.config.judge and body_read:
            options: dict[str, dict[str, Any]] = {}
            if self._tables is not None:  # the IOD check on the bundled tables reports the gate's verdicts
                options = {"part10_instance_conforms_to_iod_dicom_validator": {"standard_path": BUNDLED}}
            ctx = CheckContext(catalogue=self.catalogue, options=options)
            names: list[str] | None = None
            if stow is not None:
                ctx.seed(exchange, "stow_request", stow)
                verdicts = iod_messages or {}
                for index, (engine, messages) in verdicts.items():
                    if engine == "tables":
                        seed_bundled(ctx, exchange, index, messages)
                    else:
                        seed_dciodvfy(ctx, exchange, index, messages)
                if {engine for engine, _ in verdicts.values()} == {"tables"} and len(verdicts) == len(stow.instances):
                    # the tables judged every PS3.10 part: dciodvfy, which they agree with, is not run again
                    names = [spec.name for spec in REGISTRY.select(tags=["capturer"])
                             if spec.name != "part10_instance_conforms_to_iod"]
            results = REGISTRY.run(ctx, exchange, names, tags=["capturer"])
        exchange = self._spooled(exchange)
        findings = tuple(f for r in results for f in r.findings)
        errors = tuple(f"{r.check}: {r.error}" for r in results if r.outcome is Outcome.ERROR)
        assert exchange.request is not None and exchange.response is not None
        judged = tuple((r.check, r.outcome.value, r.requirements) for r in results
                       if r.outcome is not Outcome.NOT_APPLICABLE)
        verdict = Verdict(exchange.id, exchange.started, exchange.request.method, exchange.request.url,
                          exchange.response.status, findings, errors, judged)
        with self._lock:
            self._exchanges.append(exchange)
            self._verdicts.append(verdict)
        self._write_record(exchange, verdict)
        for observer in self.observers:
            try:
                observer(exchange, results)
            except Exception:
                log.exception("exchange observer %r failed", observer)

    def _write_record(self, exchange: Exchange, verdict: Verdict) -> None:
        assert exchange.request is not None and exchange.response is not None
        record = {
            "verdict": verdict.to_dict(),
            "request": {"method": exchange.request.method, "url": exchange.request.url,
                        "headers": list(map(list, exchange.request.headers.redacted().items)),
                        "body_file": str(exchange.request.body.path) if exchange.request.body.path else None,
                        "body_offset": exchange.request.body.offset, "body_size": exchange.request.body.size},
            "response": {"status": exchange.response.status,
                         "headers": list(map(list, exchange.response.headers.items)),
                         "body": exchange.response.body.read().decode("utf-8", "replace")},
        }
        with self._lock, open(self.data_dir / "exchanges.ndjson", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    # -- the application ------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        root = self.config.root.rstrip("/")
        routes: list[Any] = [
            Route(f"{root}/studies", self._stow, methods=["POST"]),
            Route(f"{root}/studies/{{study}}", self._stow, methods=["POST"]),
            Route(f"{root}/studies", self._qido, methods=["GET"]),
            Route(f"{root}/series", self._qido, methods=["GET"]),
            Route(f"{root}/instances", self._qido, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/series", self._qido, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/instances", self._qido, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/series/{{series}}/instances", self._qido, methods=["GET"]),
            Route(f"{root}/studies/{{study}}", self._wado, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/series/{{series}}", self._wado, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/series/{{series}}/instances/{{sop}}", self._wado, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/metadata", self._metadata, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/series/{{series}}/metadata", self._metadata, methods=["GET"]),
            Route(f"{root}/studies/{{study}}/series/{{series}}/instances/{{sop}}/metadata", self._metadata,
                  methods=["GET"]),
            Route("/wic/exchanges", self._verdict_list, methods=["GET"]),
        ]
        from wic_conformance.actors.pdqm import load_patients, pdqm_app

        patients = load_patients(self.config.patients) if self.config.patients else ()
        routes.append(Mount(self.config.fhir_root.rstrip("/"), app=pdqm_app(patients)))
        app = Starlette(routes=routes, exception_handlers={Exception: _internal_error})
        app.add_middleware(_HeaderLimit, max_bytes=self.config.max_header_bytes)
        return app

    def _unauthorized(self, request: StarletteRequest) -> StarletteResponse | None:
        auth = self.config.auth
        if auth is None or auth.allows(request.headers.get("authorization")):
            return None
        return StarletteResponse("authentication required\n", 401, media_type=mt.TEXT_PLAIN,
                                 headers={"WWW-Authenticate": auth.challenge})

    # -- STOW-RS --------------------------------------------------------------------------------
    async def _stow(self, request: StarletteRequest) -> StarletteResponse:
        started = time.time()
        headers = Headers(tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]))
        url = str(request.url)

        def unread(response: StarletteResponse) -> StarletteResponse:
            """Record an exchange whose body was not (fully) read; it is not judged."""
            return self._finish(Request(request.method, url, headers, Body()), None, response, started,
                                body_read=False)

        denied = self._unauthorized(request)
        if denied is not None:
            return unread(denied)
        response_type = self._negotiate(headers.get("accept"))
        if response_type is None:
            return unread(StarletteResponse(
                "none of the Accept media types can be served: application/dicom+json or application/dicom+xml\n",
                406, media_type=mt.TEXT_PLAIN))
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.config.max_body_bytes:
            return unread(self._error(413, f"Content-Length {declared} exceeds the limit of "
                                           f"{self.config.max_body_bytes} bytes", response_type))
        try:
            body = await self._spool_body(request)
        except _BodyTooLarge:
            return unread(self._error(413, f"the body exceeds the limit of {self.config.max_body_bytes} bytes",
                                      response_type))
        except _SlowClient:
            return unread(self._error(408, f"no body data for {self.config.body_timeout} s", response_type))
        except ClientDisconnect:
            log.info("client disconnected during upload to %s; nothing stored", url)
            return unread(StarletteResponse(status_code=400))
        req = Request(request.method, url, headers, body, f"HTTP/{request.scope.get('http_version', '1.1')}")
        ctype = mt.parse_media_type(headers.get("content-type") or "")
        root_type = ctype.root_type
        if not ctype.is_(mt.MULTIPART_RELATED) or (
                root_type is not None and root_type.essence not in
                (mt.APPLICATION_DICOM, mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML)):
            what = headers.get("content-type") or "no Content-Type"
            return self._finish(req, None, self._error(415, f"unsupported media type: {what}", response_type),
                                started)
        base = str(request.base_url).rstrip("/") + self.config.root
        stow, answer = await run_in_threadpool(self._parse_and_store, req, base, response_type)
        if isinstance(answer, tuple):
            return self._finish(req, stow, self._error(answer[0], answer[1], response_type), started)
        return self._finish(req, stow, self._outcome_response(answer.outcome, response_type), started,
                            iod_messages=answer.submission.iod_messages)

    def _parse_and_store(self, req: Request, base: str,
                         response_type: str) -> tuple[StowRequest, tuple[int, str] | _Stored]:
        """Decode a STOW-RS request and, unless it is malformed, hand it to ``on_store`` (one worker-thread trip).

        Returns the parsed request and either (status, reason) of a rejected request or
        what ``on_store`` answered.
        """
        stow = parse_stow_request(req, policy=Strictness.LENIENT, spool_dir=str(self.spool_dir),
                                  max_parts=self.config.max_parts, max_header_bytes=self.config.max_header_bytes)
        rejection = self._reject_malformed(stow)
        if rejection is not None:
            return stow, rejection
        submission = Submission(req, stow, base, response_type)
        return stow, _Stored(submission, self.on_store(submission))

    async def _spool_body(self, request: StarletteRequest) -> Body:
        """Read the request body: in memory up to :data:`MEMORY_BODY_BYTES`, past that into a spool file.

        A body kept in memory is written to the spool folder when its exchange is recorded
        (after the answer), so every recorded request body ends up in a file.
        """
        chunks: list[bytes] = []
        handle: IO[bytes] | None = None
        name = ""
        size = 0
        try:
            stream: AsyncIterator[bytes] = request.stream().__aiter__()
            while True:
                try:
                    async with asyncio.timeout(self.config.body_timeout):
                        chunk = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise _SlowClient from None
                size += len(chunk)
                if size > self.config.max_body_bytes:
                    raise _BodyTooLarge
                if handle is None and size <= MEMORY_BODY_BYTES:
                    chunks.append(chunk)
                    continue
                if handle is None:
                    fd, name = tempfile.mkstemp(prefix="stow-", suffix=".body", dir=self.spool_dir)
                    handle = os.fdopen(fd, "wb")
                    handle.writelines(chunks)
                    chunks = []
                handle.write(chunk)
        except BaseException:
            if handle is not None:
                handle.close()
                os.unlink(name)
            raise
        if handle is None:
            return Body.of(b"".join(chunks))
        handle.close()
        return Body.from_file(name)

    def _spooled(self, exchange: Exchange) -> Exchange:
        """Return ``exchange`` with a request body kept in memory appended to the spool (and read from there).

        Bodies read into memory go one after the other into ``spool/bodies.bin``, which stays
        open (no file to create per request); the exchange then refers to its byte range.
        """
        req = exchange.request
        assert req is not None
        if req.body.path is not None or not req.body.size:
            return exchange
        data = req.body.read()
        with self._spool_lock:
            if self._bodies is None:
                self._bodies = open(self.spool_dir / SPOOLED_BODIES, "ab")  # noqa: SIM115 - closed by stop()
            offset = self._bodies.tell()
            self._bodies.write(data)
            self._bodies.flush()
        body = Body.from_file(self.spool_dir / SPOOLED_BODIES, offset=offset, size=len(data))
        return dataclasses.replace(exchange, request=dataclasses.replace(req, body=body))

    def _reject_malformed(self, stow: StowRequest) -> tuple[int, str] | None:
        """Return (status, reason) when the request cannot be read at all (400/413), else None."""
        mp = stow.multipart
        if mp is None:
            return 400, "the body is not a readable multipart/related payload"
        codes = {d.code for d in mp.deviations}
        if "multipart.too_many_parts" in codes:
            return 413, f"more than {self.config.max_parts} parts"
        fatal = [d for d in mp.deviations if d.fatal]
        if fatal:
            return 400, f"malformed multipart body: {fatal[0].message}"
        if not mp.complete:
            return 400, "the multipart body is incomplete (no closing delimiter): nothing was stored"
        if not mp.parts:
            return 400, "the multipart body has no parts"
        if stow.kind is StowKind.UNKNOWN:
            return 415, "cannot tell what the parts are: no supported type parameter or root part"
        if stow.kind in (StowKind.JSON, StowKind.XML) and not stow.metadata:
            return 400, "a metadata request without a metadata part"
        for doc in stow.metadata:
            fatal_doc = [d for d in doc.deviations if d.fatal]
            if fatal_doc and not doc.datasets:
                return 400, f"{doc.location}: {fatal_doc[0].message}"
        return None

    @staticmethod
    def _negotiate(accept: str | None) -> str | None:
        """Pick the response media type from Accept (JSON by default); ``None`` when nothing fits."""
        if accept is None or not accept.strip():
            return mt.APPLICATION_DICOM_JSON
        offers = (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML)
        for media, q in mt.parse_accept(accept):
            if q <= 0:
                continue
            if media.is_(mt.APPLICATION_JSON):
                return mt.APPLICATION_DICOM_JSON
            for offer in offers:
                if media.matches(offer):
                    return offer
        return None

    def _error(self, status: int, message: str, response_type: str) -> StarletteResponse:
        """Answer a request that failed as a whole: a Store Instances Response with Other Failures."""
        if status in (406, 408, 413, 415):
            return StarletteResponse(message + "\n", status, media_type=mt.TEXT_PLAIN,
                                     headers={"Warning": f'299 wic-conformance "{_quote(message)}"'})
        reason = int(FailureReason.CANNOT_UNDERSTAND)
        body = build_store_response(other_failures=[reason], retrieve_url=None, media_type=response_type)
        return StarletteResponse(body, status, media_type=response_type,
                                 headers={"Warning": f'299 wic-conformance "{_quote(message)}"'})

    def _outcome_response(self, outcome: StoreOutcome, response_type: str) -> StarletteResponse:
        body = build_store_response(referenced=outcome.referenced, failed=outcome.failed,
                                    other_failures=outcome.other_failures, retrieve_url=outcome.retrieve_url,
                                    media_type=response_type)
        headers = {}
        if outcome.warnings:
            headers["Warning"] = ", ".join(f'299 wic-conformance "{_quote(w)}"' for w in outcome.warnings[:5])
        return StarletteResponse(body, outcome.status, media_type=response_type, headers=headers)

    def _finish(self, req: Request, stow: StowRequest | None, response: StarletteResponse,
                started: float, *, body_read: bool = True,
                iod_messages: Mapping[int, tuple[str, list[IodMessage]]] | None = None) -> StarletteResponse:
        """Record the exchange and judge it after the response is sent (an unread body is not judged).

        ``iod_messages`` are the IOD gate's verdicts on request parts (by position) that judging reuses.
        """
        res = Response(response.status_code, "", Headers(tuple(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers)), Body.of(response.body))
        exchange = Exchange(request=req, response=res, started=started, elapsed=time.time() - started,
                            source="manager")
        from starlette.background import BackgroundTask

        response.background = BackgroundTask(run_in_threadpool, self._judge, exchange, stow, body_read,
                                             iod_messages or {})
        return response

    # -- the default store policy ---------------------------------------------------------------
    def store_submission(self, submission: Submission) -> StoreOutcome:
        """Convert, validate and store every instance of a submission (the default ``on_store``).

        A PS3.10 part is stored byte for byte: its bytes are written once, to the store's
        temporary file, which the IOD gate judges before it is moved into place; the
        gate's verdict is kept in :attr:`Submission.iod_messages`, so judging the request
        does not validate it again.
        """
        from wic_conformance.actors.conversion import convert_submission

        stow = submission.stow
        target = stow.target.study_uid if stow.target else None
        results = convert_submission(stow, policy=self.conversion_policy, target_study=target)
        positions = {id(instance): index for index, instance in enumerate(stow.instances)}
        referenced: list[SopRef] = []
        failed: list[SopRef] = []
        warnings: list[str] = []  # failures first: the Warning header carries only the first few
        notes: list[str] = []
        studies: set[str] = set()
        for result in results:
            if not isinstance(result, Converted):
                failed.append(SopRef(result.sop_class_uid, result.sop_instance_uid,
                                     failure_reason=result.failure_reason))
                warnings.append(result.message)
                continue
            ds = result.dataset
            sop_class, sop_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
            study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            if target is not None and study != target:
                failed.append(SopRef(sop_class, sop_uid, failure_reason=FailureReason.STUDY_UID_MISMATCH))
                warnings.append(f"{sop_uid}: Study Instance UID {study} differs from the target {target}")
                continue
            gated = self._gate_and_store(result, positions, submission.iod_messages)
            if gated.unverified:
                notes.append(f"{sop_uid}: stored without an IOD verdict ({gated.unverified})")
            if gated.put is None:
                failed.append(SopRef(sop_class, sop_uid,
                                     failure_reason=FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS))
                warnings.append(f"{sop_uid}: not stored, the converted instance breaks its IOD: {gated.iod_errors}")
                continue
            put = gated.put
            if not put.stored:
                failed.append(SopRef(sop_class, sop_uid, failure_reason=FailureReason.DUPLICATE_SOP_INSTANCE))
                warnings.append(f"{sop_uid}: already stored; resend rejected")
                continue
            warning = result.warning_reason
            if put.replaced:
                warning = warning or int(FailureReason.COERCED)
                warnings.append(f"{sop_uid}: already stored; replaced by the resend")
            notes.extend(f"{sop_uid}: {note}" for note in result.notes)
            studies.add(study)
            referenced.append(SopRef(
                sop_class, sop_uid,
                retrieve_url=f"{submission.base_url}/studies/{study}/series/{series}/instances/{sop_uid}",
                warning_reason=warning, original_attributes=tuple(result.original_attributes)))
        retrieve_url = f"{submission.base_url}/studies/{studies.pop()}" if len(studies) == 1 else None
        if target is not None and retrieve_url is None and referenced:
            retrieve_url = f"{submission.base_url}/studies/{target}"
        return StoreOutcome(self._status(referenced, failed), tuple(referenced), tuple(failed), (),
                            retrieve_url, tuple(warnings + notes))

    def _gate_and_store(self, result: Converted, positions: Mapping[int, int],
                        verdicts: dict[int, tuple[str, list[IodMessage]]]) -> _Gated:
        """Run the IOD gate on one instance and store it if it passes (``put`` is ``None`` when it fails).

        The bytes are staged once in the store and the gate judges that file; a PS3.10 part
        stored unchanged has its verdict recorded in ``verdicts`` under its part position.
        With deliberate defects installed (:attr:`dataset_transforms`), the gate judges the
        instance before they are applied, and the altered instance is stored.
        """
        ds = result.dataset
        source = result.source
        data: bytes | Body = source.body if source is not None else _encode(ds)
        if self.dataset_transforms:  # deliberate defects (faults.py): after the checks a Manager runs itself
            unverified = ""
            if self.config.validate_iod:
                _engine, messages, unverified = self._gate(Part10Instance("converted instance", Body.of(data), ds))
                errors = _errors(messages)
                if errors:
                    return _Gated(None, errors, unverified)
            for transform in self.dataset_transforms:
                ds = transform(ds)
            return _Gated(self.store.put(ds, _encode(ds), on_duplicate=self.config.duplicate), "", unverified)
        if not self.config.validate_iod:
            return _Gated(self.store.put(ds, data, on_duplicate=self.config.duplicate))
        with self.store.stage(ds, data) as staged:
            engine, messages, unverified = self._gate(
                Part10Instance("converted instance", Body.from_file(staged.path), ds))
            if source is not None and messages is not None and id(source) in positions:
                verdicts[positions[id(source)]] = (engine, messages)
            errors = _errors(messages)
            if errors:
                return _Gated(None, errors, unverified)
            return _Gated(staged.commit(on_duplicate=self.config.duplicate), "", unverified)

    def _gate(self, instance: Part10Instance) -> tuple[str, list[IodMessage] | None, str]:
        """Judge ``instance``: return the engine, its messages and why it went unjudged.

        The messages (``None`` when the engine could not judge, with the reason last) are the
        engine's own, as its check would compute them, so judging can reuse them.  With the
        ``tables`` engine, an instance of a SOP Class the bundled tables describe (and of at
        most :data:`TABLES_GATE_MAX_BYTES`) is judged in process; any other instance goes to
        dciodvfy.
        """
        assert self._iod is not None
        ds = instance.dataset
        if (self._tables is not None and ds is not None and instance.body.size <= TABLES_GATE_MAX_BYTES
                and self._tables.covers(instance)):
            return "tables", self._tables.validate(instance), ""
        try:
            return "dciodvfy", self._iod.validate(instance), ""
        except ValidatorUnavailableError as exc:  # e.g. a transfer syntax dciodvfy cannot read
            sop = instance.dataset.get("SOPInstanceUID") if instance.dataset is not None else None
            log.warning("IOD of %s not verified: %s", sop, exc)
            return "dciodvfy", None, str(exc)

    def _status(self, referenced: list[SopRef], failed: list[SopRef]) -> int:
        if referenced and not failed:
            has_warning = any(r.warning_reason is not None for r in referenced)
            return self.config.all_stored_with_warnings_status if has_warning else 200
        if referenced:
            return 202
        return 409

    # -- QIDO-RS --------------------------------------------------------------------------------
    async def _qido(self, request: StarletteRequest) -> StarletteResponse:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        path = request.url.path
        level = "instance" if path.endswith("/instances") else "series" if path.endswith("/series") else "study"
        params = list(request.query_params.multi_items())
        try:
            query = parse_qido_query(level, params, study_uid=request.path_params.get("study"),
                                     series_uid=request.path_params.get("series"))
        except QidoQueryError as exc:
            return StarletteResponse(f"{exc}\n", 400, media_type=mt.TEXT_PLAIN)
        base = str(request.base_url).rstrip("/") + self.config.root
        results = await run_in_threadpool(self.store.search, query, base_url=base)
        if not results:
            return StarletteResponse(status_code=204)
        return JSONResponse(results, media_type=mt.APPLICATION_DICOM_JSON)

    # -- WADO-RS --------------------------------------------------------------------------------
    async def _wado(self, request: StarletteRequest) -> StarletteResponse:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        p = request.path_params
        refs = self.store.instances(study=p.get("study"), series=p.get("series"), sop=p.get("sop"))
        if not refs:
            return StarletteResponse("no such resource\n", 404, media_type=mt.TEXT_PLAIN)
        wanted = _wanted_transfer_syntax(request.headers.get("accept"))
        if wanted is None:
            return StarletteResponse("only multipart/related; type=\"application/dicom\" is served\n", 406,
                                     media_type=mt.TEXT_PLAIN)
        parts: list[tuple[dict[str, str], bytes]] = []
        for ref in refs:
            data = Path(ref.path).read_bytes()
            payload, ts = _as_transfer_syntax(data, wanted)
            if payload is None:
                return StarletteResponse(
                    f"instance {ref.sop_uid} is stored as {ts} and cannot be transcoded to "
                    f"{wanted}; ask for transfer-syntax=*\n", 406, media_type=mt.TEXT_PLAIN)
            parts.append(({"Content-Type": mt.format_media_type(mt.APPLICATION_DICOM, {"transfer-syntax": ts})},
                          payload))
        ctype, chunks = iter_encode_multipart(parts, root_type=mt.APPLICATION_DICOM)
        return StreamingResponse(chunks, media_type=ctype)

    async def _metadata(self, request: StarletteRequest) -> StarletteResponse:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        p = request.path_params
        items = self.store.metadata(p["study"], p.get("series"), p.get("sop"))
        if not items:
            return StarletteResponse("no such resource\n", 404, media_type=mt.TEXT_PLAIN)
        return JSONResponse(items, media_type=mt.APPLICATION_DICOM_JSON)

    async def _verdict_list(self, request: StarletteRequest) -> StarletteResponse:
        return JSONResponse([v.to_dict() for v in self.verdicts])


async def _internal_error(request: StarletteRequest, exc: Exception) -> StarletteResponse:
    """Answer an unexpected handler error with a 500 that names its cause (the server keeps serving)."""
    return StarletteResponse(f"internal error: {type(exc).__name__}: {exc}\n", 500, media_type=mt.TEXT_PLAIN)


class _HeaderLimit:
    """ASGI middleware: a request head larger than ``max_bytes`` gets 431 (RFC 6585) before any handler runs."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
            if size > self.max_bytes:
                response = StarletteResponse(
                    f"request header fields total {size} bytes, over the limit of {self.max_bytes}\n", 431,
                    media_type=mt.TEXT_PLAIN)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'").replace("\r", " ").replace("\n", " ")[:300]


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _errors(messages: list[IodMessage] | None) -> str:
    """Return the errors among an IOD engine's messages, joined ('' when there are none)."""
    return "; ".join(m.text for m in messages or () if m.level is Severity.ERROR)


def _wanted_transfer_syntax(accept: str | None) -> str | None:
    """Return the transfer syntax asked for ('*' = as stored), or ``None`` if nothing servable is accepted."""
    if not accept:
        return ExplicitVRLittleEndian
    for media, q in mt.parse_accept(accept):
        if q <= 0:
            continue
        if media.is_(mt.MULTIPART_RELATED):
            root = media.root_type
            if root is None or root.is_(mt.APPLICATION_DICOM):
                return media.transfer_syntax or ExplicitVRLittleEndian
        if media.essence in ("*/*", "multipart/*"):
            return ExplicitVRLittleEndian
    return None


def _as_transfer_syntax(data: bytes, wanted: str) -> tuple[bytes | None, str]:
    """Return the instance encoded in ``wanted`` ('*' = stored bytes) and the syntax used."""
    ds = dcmread(io.BytesIO(data))
    stored = str(ds.file_meta.TransferSyntaxUID)
    if wanted in ("*", stored):
        return data, stored
    if wanted != ExplicitVRLittleEndian:
        return None, stored
    try:
        ds.decompress()
    except Exception as exc:  # pydicom raises several kinds when no decoder fits
        log.info("cannot transcode %s: %s", stored, exc)
        return None, stored
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return _encode(ds), ExplicitVRLittleEndian

