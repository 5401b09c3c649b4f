"""Judge the fixtures index against its own labels (``wic-conformance validate --fixtures``).

Each PS3.10, DICOM JSON and DICOM XML fixture is judged twice: as a standalone
file, and inside a STOW-RS request built around it (with the bulk data parts
its index entry names).  A good fixture must draw no error-level finding; a
broken one must draw a finding for every requirement it is labelled with.
"""

from __future__ import annotations

from dataclasses import dataclass

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange
from wic_conformance.dicomweb.stow import build_stow_request
from wic_conformance.findings import Finding, Severity
from wic_conformance.model.fixtures import Fixture, FixtureIndex
from wic_conformance.validate.registry import REGISTRY, CheckContext, Outcome, Registry

__all__ = ["FixtureVerdict", "judge_fixtures"]

_JUDGED_KINDS = {"part10": mt.APPLICATION_DICOM, "json": mt.APPLICATION_DICOM_JSON, "xml": mt.APPLICATION_DICOM_XML}


@dataclass(frozen=True, slots=True)
class FixtureVerdict:
    """Whether a fixture's findings agree with its label."""

    key: str
    valid: bool
    expected: tuple[str, ...]
    findings: tuple[Finding, ...]
    tool_errors: tuple[str, ...]

    @property
    def found(self) -> frozenset[str]:
        """Return the requirement IDs of all findings."""
        return frozenset(f.requirement for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Return the error-level findings."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def missing(self) -> tuple[str, ...]:
        """Return the labelled requirements that drew no finding."""
        return tuple(r for r in self.expected if r not in self.found)

    @property
    def agrees(self) -> bool:
        """Return whether the verdict matches the label (and no check broke)."""
        if self.tool_errors:
            return False
        return not self.errors if self.valid else not self.missing


def exchanges_for_fixture(index: FixtureIndex, fixture: Fixture) -> list[Exchange]:
    """Return the standalone and the in-request exchanges for one fixture."""
    media_type = _JUDGED_KINDS[fixture.kind]
    data = fixture.read()
    standalone = Exchange(documents=(Document(media_type, Body.of(data), DocumentRole.FILE, fixture.key),),
                          source=fixture.key)
    parts = [({"Content-Type": media_type}, data)]
    if fixture.kind in ("json", "xml"):
        parts.extend(index.bulk_parts(fixture))
    request = build_stow_request(base_url="http://127.0.0.1/dicom-web", root_type=media_type, parts=parts)
    return [standalone, Exchange(request=request, source=f"{fixture.key} (in a STOW-RS request)")]


def judge_fixtures(index: FixtureIndex, *, ctx: CheckContext, registry: Registry = REGISTRY) -> list[FixtureVerdict]:
    """Judge every PS3.10, JSON and XML fixture of ``index`` and compare with its label."""
    verdicts = []
    for fixture in index:
        if fixture.kind not in _JUDGED_KINDS:
            continue
        findings: list[Finding] = []
        errors: list[str] = []
        for exchange in exchanges_for_fixture(index, fixture):
            for result in registry.run(ctx, exchange):
                findings.extend(result.findings)
                if result.outcome is Outcome.ERROR:
                    errors.append(f"{result.check}: {result.error}")
        verdicts.append(FixtureVerdict(fixture.key, fixture.valid, fixture.broken_requirements,
                                       tuple(findings), tuple(errors)))
    return verdicts
