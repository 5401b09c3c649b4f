"""Test plans as data: frozen Plan / Case / Payload / Expectation values, and what a run of a case yields.

A plan file (``testplans/<actor-under-test>/<transaction>_<topic>.yaml``) is
read by :mod:`.loader`, validated against ``plans/plan.schema.json`` and
expanded into :class:`Case` values (one per variant); :mod:`.runner` executes
a case against a target and returns a :class:`CaseResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.findings import Finding, Severity

if TYPE_CHECKING:
    from wic_conformance.fuzz.mutations import Mutation

__all__ = [
    "BulkReplacement",
    "CaseOutcome",
    "CaseResult",
    "Case",
    "Encoding",
    "Expectation",
    "MutationSpec",
    "Payload",
    "Plan",
    "Target",
]


class Encoding(StrEnum):
    """How the payload is encoded in the STOW-RS request (PS3.18 §10.5.1.4)."""

    PART10 = "part10"  # multipart/related; type="application/dicom"
    JSON = "json"  # type="application/dicom+json" + bulk data parts
    XML = "xml"  # type="application/dicom+xml" + bulk data parts


@dataclass(frozen=True, slots=True)
class MutationSpec:
    """A labelled change that makes a request negative (why it must be rejected)."""

    kind: str  # a fuzz.mutations.MutationKind value
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BulkReplacement:
    """A bulk data part swapped for another media fixture (e.g. Pixel Data as PNG instead of JPEG).

    Attributes
    ----------
    fixture : str
        A ``media/...`` fixture key.
    media_type : str or None
        The part's Content-Type (parameters allowed); the fixture's media type by default.
    """

    fixture: str
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """What to send: fixtures (by index key) re-identified with fresh UIDs, overrides, mutations.

    Attributes
    ----------
    encoding : Encoding
    fixtures : tuple of str
        Fixture keys (``part10/...`` for PS3.10, ``json/...`` or ``xml/...`` for metadata), one instance each.
    overrides : mapping
        Attribute keyword -> value (``None`` deletes) applied to every instance before encoding.
    mutations : tuple of MutationSpec
        Applied to the encoded request, in order.
    fresh_uids : bool
        Give every instance new Study/Series/SOP Instance UIDs so that cases are independent.
    same_study : bool
        Put all instances of the payload in one new study.
    accept : str or None
        The Accept header (``None`` sends none).
    chunked : bool
        Send the body with chunked transfer coding instead of Content-Length.
    bulk : mapping
        Attribute tag (8 hex digits) -> :class:`BulkReplacement`: the bulk data part of
        that attribute is replaced (metadata payloads only).
    pad_bytes : int
        Grow every MP4-family bulk part to this size with a trailing ISO BMFF ``free`` box.
    resend : bool
        Store the identical request once before the judged one (a duplicate SOP Instance UID).
    """

    encoding: Encoding
    fixtures: tuple[str, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    mutations: tuple[MutationSpec, ...] = ()
    fresh_uids: bool = True
    same_study: bool = True
    accept: str | None = "application/dicom+json"
    chunked: bool = False
    bulk: Mapping[str, BulkReplacement] = field(default_factory=dict)
    pad_bytes: int = 0
    resend: bool = False


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the Image Manager must do with the request.

    Attributes
    ----------
    status : tuple of int
        Acceptable HTTP statuses.
    stored : bool or None
        ``True``: every instance must be retrievable afterwards; ``False``: none may be; ``None``: not judged.
    failure_requirement : str
        The requirement a wrong status or a wrongly stored instance violates.
    findings : tuple of str
        Requirement IDs that the checks are *expected* to raise (e.g. against a known-bad peer); empty normally.
    stored_only : tuple of int or None
        When set, exactly these payload instances (0-based, in fixture order) must be stored and the
        others must not (a request mixing good and bad instances); ``stored`` is then not used.
    reported : bool
        Every submitted instance must be reported: in the Failed SOP Sequence, or with a Warning
        Reason; an instance accepted silently is a finding (e.g. a resend of a stored instance).
    """

    status: tuple[int, ...] = (200,)
    stored: bool | None = True
    failure_requirement: str = "STOW-RESP-001"
    findings: tuple[str, ...] = ()
    stored_only: tuple[int, ...] | None = None
    reported: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    """One executable test case (a plan entry, or one variant of it)."""

    id: str
    title: str
    plan: str
    requirements: tuple[str, ...]
    options: tuple[str, ...]
    payload: Payload
    expect: Expectation
    target: str = "studies"  # "studies", "study" (append to a study stored first), "other-study" (mismatch)
    checks: tuple[str, ...] = ("manager",)  # check tags or names run on the exchange
    check_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    slow: bool = False
    source: str = ""  # "testplans/manager/rad108_store.yaml::case_id"
    description: str = ""
    variant: Mapping[str, str] = field(default_factory=dict)  # variant name -> value this case was expanded with


@dataclass(frozen=True, slots=True)
class Plan:
    """A test plan file: its cases after variant expansion."""

    id: str
    title: str
    actor: str
    transaction: str
    path: str
    cases: tuple[Case, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to reach the Image Manager under test."""

    url: str  # DICOMweb service root, e.g. http://127.0.0.1:8042/dicom-web
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers, Authorization included
    auth: tuple[str, str] | None = None  # HTTP Basic
    verify: bool | str = True  # TLS: True, False (insecure) or a CA bundle path
    timeout: float = 60.0
    options: frozenset[str] = frozenset()  # WIC options the target claims (empty = all)


class CaseOutcome(StrEnum):
    """How a case ended."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # e.g. the option is not claimed by the target
    ERROR = "error"  # the toolkit or the plan broke, not the target


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What running a case produced: the exchanges, the findings, the outcome."""

    case: Case
    outcome: CaseOutcome
    exchanges: tuple[Exchange, ...] = ()
    findings: tuple[Finding, ...] = ()
    message: str = ""
    checks_run: tuple[str, ...] = ()
    mutations: tuple[Mutation, ...] = ()  # the labelled changes applied to the judged request

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Return the error-level findings."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)
