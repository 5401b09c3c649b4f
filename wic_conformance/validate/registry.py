"""One registry of checks, the :func:`check` decorator and the :class:`CheckContext` they receive.

Every check has the signature ``def name(ctx: CheckContext, exchange: Exchange) -> None``
and fails by raising a :class:`~wic_conformance.findings.Finding` (or a
:class:`~wic_conformance.findings.FindingGroup`).  The first line of its
docstring is the property that must hold; reports show it.  A check runs only
when the exchange has what it ``needs``; otherwise it is *not applicable*.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wic_conformance.catalogue import Catalogue, default_catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.metadata import MetadataDocument, parse_metadata
from wic_conformance.dicomweb.part10 import Part10Instance, read_part10
from wic_conformance.errors import WicConformanceError
from wic_conformance.findings import Finding, FindingGroup, Severity

__all__ = [
    "REGISTRY",
    "CheckContext",
    "CheckFunc",
    "CheckResult",
    "CheckSpec",
    "Needs",
    "NotApplicable",
    "Outcome",
    "Registry",
    "check",
]

log = logging.getLogger(__name__)


class Needs(StrEnum):
    """What an exchange must carry for a check to apply."""

    REQUEST = "request"  # an HTTP request, or at least its headers and body (a bare multipart body)
    REQUEST_LINE = "request_line"  # a request with its method and URL
    RESPONSE = "response"  # an HTTP response
    METADATA = "metadata"  # at least one DICOM JSON/XML document (request part or file)
    INSTANCES = "instances"  # at least one PS3.10 instance (request part, file or retrieved)
    RETRIEVED = "retrieved"  # at least one instance retrieved from the Image Manager afterwards


class NotApplicable(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a check that finds, once running, that it does not apply (e.g. an unconfigured validator)."""


class Outcome(StrEnum):
    """The result of one check on one exchange."""

    PASSED = "passed"
    WARNED = "warned"  # only warning/info findings
    FAILED = "failed"  # at least one error finding
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"  # the check itself broke: a toolkit defect, not the SUT's


class CheckContext:
    """Settings and cached parsed views shared by the checks judging an exchange.

    Parameters
    ----------
    catalogue : Catalogue, optional
        The catalogue, with any rule profile applied.
    policy : Strictness
        Parser strictness, passed explicitly to every parser.
    options : mapping, optional
        Per-check options ``{check_name: {key: value}}`` (plan or profile).
    """

    def __init__(
        self,
        *,
        catalogue: Catalogue | None = None,
        policy: Strictness = Strictness.LENIENT,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.catalogue = catalogue or default_catalogue()
        self.policy = policy
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.catalogue.profile.checks.items()}
        for name, opts in (options or {}).items():
            merged.setdefault(name, {}).update(opts)
        self._options = merged
        self._cache: dict[tuple[str, str], Any] = {}
        self._current: CheckSpec | None = None

    # -- options -----------------------------------------------------------------------------
    @property
    def options(self) -> Mapping[str, Any]:
        """Return the options of the check now running (its defaults overlaid by profile and plan)."""
        spec = self._current
        if spec is None:
            return {}
        return {**spec.options, **self._options.get(spec.name, {})}

    # -- cached views ------------------------------------------------------------------------
    def cached(self, exchange: Exchange, key: str, make: Callable[[], Any]) -> Any:
        """Return the value cached under ``key`` for ``exchange``, computing it once with ``make``."""
        ck = (exchange.id, key)
        if ck not in self._cache:
            self._cache[ck] = make()
        return self._cache[ck]

    def seed(self, exchange: Exchange, key: str, value: Any) -> None:
        """Provide an already-parsed view (e.g. the ``"stow_request"`` an actor decoded) to avoid decoding twice."""
        self._cache[(exchange.id, key)] = value

    def stow_request(self, exchange: Exchange) -> Any:
        """Return the parsed STOW-RS request (:class:`~wic_conformance.dicomweb.stow.StowRequest`) or None."""
        request = exchange.request
        if request is None:
            return None
        from wic_conformance.dicomweb.stow import parse_stow_request

        return self.cached(exchange, "stow_request", lambda: parse_stow_request(request, policy=self.policy))

    def store_response(self, exchange: Exchange) -> Any:
        """Return the parsed Store Instances Response (:mod:`~wic_conformance.dicomweb.store_response`)."""
        response = exchange.response
        if response is None:
            return None
        from wic_conformance.dicomweb.store_response import parse_store_response

        return self.cached(exchange, "store_response", lambda: parse_store_response(response, policy=self.policy))

    def metadata(self, exchange: Exchange) -> list[MetadataDocument]:
        """Return every metadata document: request metadata parts, then standalone documents."""

        def make() -> list[MetadataDocument]:
            docs: list[MetadataDocument] = []
            stow = self.stow_request(exchange)
            if stow is not None:
                docs.extend(stow.metadata)
            for doc in exchange.documents:
                if doc.media_type in (mt.APPLICATION_DICOM_JSON, mt.APPLICATION_DICOM_XML, mt.APPLICATION_JSON):
                    docs.append(parse_metadata(doc.body.read(), doc.media_type,
                                               location=doc.location, policy=self.policy))
            return docs

        result: list[MetadataDocument] = self.cached(exchange, "metadata", make)
        return result

    def instances(self, exchange: Exchange) -> list[Part10Instance]:
        """Return every PS3.10 instance: request parts, then standalone and retrieved documents."""

        def make() -> list[Part10Instance]:
            out: list[Part10Instance] = []
            stow = self.stow_request(exchange)
            if stow is not None:
                out.extend(stow.instances)
            for doc in exchange.documents:
                if doc.media_type == mt.APPLICATION_DICOM:
                    out.append(read_part10(doc.body, location=doc.location, origin=doc.role.value))
            return out

        result: list[Part10Instance] = self.cached(exchange, "instances", make)
        return result

    def has(self, exchange: Exchange, need: Needs) -> bool:
        """Return whether ``exchange`` satisfies ``need``."""
        if need is Needs.REQUEST:
            return exchange.request is not None
        if need is Needs.REQUEST_LINE:
            return exchange.request is not None and bool(exchange.request.method and exchange.request.url)
        if need is Needs.RESPONSE:
            return exchange.response is not None
        if need is Needs.METADATA:
            return bool(self.metadata(exchange))
        if need is Needs.INSTANCES:
            return bool(self.instances(exchange))
        if need is Needs.RETRIEVED:
            return bool(exchange.retrieved())
        raise AssertionError(need)


CheckFunc = Callable[[CheckContext, Exchange], None]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A registered check."""

    name: str
    func: CheckFunc
    requirements: tuple[str, ...]
    needs: frozenset[Needs]
    options: Mapping[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()

    @property
    def description(self) -> str:
        """Return the first line of the docstring: the property that must hold."""
        doc = (self.func.__doc__ or self.name).strip()
        return doc.splitlines()[0].strip()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check said about one exchange."""

    check: str
    outcome: Outcome
    findings: tuple[Finding, ...] = ()
    error: str = ""
    requirements: tuple[str, ...] = ()


class Registry:
    """A named collection of checks."""

    def __init__(self) -> None:
        self._checks: dict[str, CheckSpec] = {}

    def register(self, spec: CheckSpec) -> CheckSpec:
        """Add a check; names are unique."""
        if spec.name in self._checks and self._checks[spec.name].func is not spec.func:
            raise WicConformanceError(f"check {spec.name!r} is registered twice")
        self._checks[spec.name] = spec
        return spec

    def __getitem__(self, name: str) -> CheckSpec:
        try:
            return self._checks[name]
        except KeyError:
            raise WicConformanceError(f"unknown check {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._checks

    def __iter__(self) -> Any:
        return iter(self._checks.values())

    def names(self) -> list[str]:
        """Return the registered check names, sorted."""
        return sorted(self._checks)

    def select(self, names: Iterable[str] | None = None, *, tags: Iterable[str] | None = None) -> list[CheckSpec]:
        """Return the checks named (all when ``None``), optionally only those with one of ``tags``."""
        specs = list(self._checks.values()) if names is None else [self[n] for n in names]
        if tags is not None:
            wanted = set(tags)
            specs = [s for s in specs if s.tags & wanted]
        return specs

    def run(
        self,
        ctx: CheckContext,
        exchange: Exchange,
        names: Iterable[str] | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> list[CheckResult]:
        """Run the selected checks on one exchange; never raises for a check's own failure."""
        return [run_check(spec, ctx, exchange) for spec in self.select(names, tags=tags)]


def run_check(spec: CheckSpec, ctx: CheckContext, exchange: Exchange) -> CheckResult:
    """Run one check, turning findings into a result and stamping catalogue data on them."""
    try:
        applicable = all(ctx.has(exchange, need) for need in spec.needs)
    except Exception as exc:  # a parser broke: a toolkit defect
        log.exception("preparing check %s failed", spec.name)
        return CheckResult(spec.name, Outcome.ERROR, error=f"{type(exc).__name__}: {exc}",
                           requirements=spec.requirements)
    if not applicable:
        return CheckResult(spec.name, Outcome.NOT_APPLICABLE, requirements=spec.requirements)
    raised: list[Finding] = []
    ctx._current = spec
    try:
        spec.func(ctx, exchange)
    except NotApplicable as why:
        return CheckResult(spec.name, Outcome.NOT_APPLICABLE, error=str(why), requirements=spec.requirements)
    except FindingGroup as group:
        raised = group.findings
    except Finding as finding:
        raised = [finding]
    except Exception as exc:
        log.exception("check %s raised", spec.name)
        return CheckResult(spec.name, Outcome.ERROR,
                           error="".join(traceback.format_exception_only(exc)).strip(),
                           requirements=spec.requirements)
    finally:
        ctx._current = None
    findings = _resolve(raised, ctx.catalogue, exchange, spec)
    if any(f.severity is Severity.ERROR for f in findings):
        outcome = Outcome.FAILED
    elif findings:
        outcome = Outcome.WARNED
    else:
        outcome = Outcome.PASSED
    return CheckResult(spec.name, outcome, tuple(findings), requirements=spec.requirements)


def _resolve(raised: Sequence[Finding], catalogue: Catalogue, exchange: Exchange, spec: CheckSpec) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[str, str, str, str]] = set()
    for finding in raised:
        req = catalogue.get(finding.requirement)
        if req is None:
            raise WicConformanceError(
                f"check {spec.name} raised a finding for unknown requirement {finding.requirement!r}"
            )
        if not req.enabled:
            continue
        if finding._unique_key in seen:
            continue
        seen.add(finding._unique_key)
        relevelled = "severity" in catalogue.profile.rules.get(req.id, {})
        if finding.severity is None or relevelled:
            finding.severity = req.severity
        finding.confidence = req.confidence
        finding.exchange_id = finding.exchange_id or exchange.id
        out.append(finding)
    return out


#: The registry every built-in check registers into.
REGISTRY = Registry()


def check(
    *,
    requirements: str | Sequence[str],
    needs: Iterable[Needs] = (),
    options: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    registry: Registry | None = None,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check.

    Parameters
    ----------
    requirements : str or sequence of str
        The catalogue IDs the check judges (findings must cite one of the catalogue's IDs).
    needs : iterable of Needs
        What an exchange must carry for the check to apply.
    options : mapping, optional
        Default per-check options, overridable by a rule profile or a plan.
    tags : iterable of str
        Free labels used to select groups of checks (e.g. ``"capturer"``, ``"manager"``).
    registry : Registry, optional
        Defaults to :data:`REGISTRY`.
    """
    reqs = (requirements,) if isinstance(requirements, str) else tuple(requirements)

    def decorate(func: CheckFunc) -> CheckFunc:
        (registry or REGISTRY).register(CheckSpec(
            name=func.__name__, func=func, requirements=reqs, needs=frozenset(needs),
            options=dict(options or {}), tags=frozenset(tags),
        ))
        return func

    return decorate
