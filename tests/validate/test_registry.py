from __future__ import annotations

import pytest

from wic_conformance.catalogue import Catalogue, Requirement, RuleProfile
from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request, Response
from wic_conformance.errors import WicConformanceError
from wic_conformance.findings import Finding, Severity, raise_all
from wic_conformance.validate.registry import CheckContext, Needs, NotApplicable, Outcome, Registry, check


def _catalogue() -> Catalogue:
    def req(rid: str, conf: str, sev: Severity) -> Requirement:
        return Requirement(rid, "IM", "MUST", conf, "test", "summary", sev)

    return Catalogue({r.id: r for r in [req("T-N", "N", Severity.ERROR), req("T-S", "S", Severity.ERROR),
                                        req("T-W", "D", Severity.WARNING)]})


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @check(requirements="T-N", needs=[Needs.RESPONSE], registry=reg)
    def response_is_200(ctx: CheckContext, exchange: Exchange) -> None:
        """The response status is 200."""
        assert exchange.response is not None
        if exchange.response.status != 200:
            raise Finding(requirement="T-N", message=f"status {exchange.response.status}")

    @check(requirements=["T-S", "T-W"], registry=reg, options={"limit": 1})
    def two_findings(ctx: CheckContext, exchange: Exchange) -> None:
        """Two things hold."""
        if ctx.options["limit"] < 5:
            raise_all([Finding(requirement="T-S", message="a"), Finding(requirement="T-W", message="b"),
                       Finding(requirement="T-W", message="b")])

    @check(requirements="T-N", registry=reg)
    def unconfigured(ctx: CheckContext, exchange: Exchange) -> None:
        """Needs configuration."""
        raise NotApplicable("no standard folder")

    @check(requirements="T-N", registry=reg)
    def broken(ctx: CheckContext, exchange: Exchange) -> None:
        """Never holds."""
        raise RuntimeError("bug in the check")

    @check(requirements="T-N", registry=reg)
    def cites_unknown(ctx: CheckContext, exchange: Exchange) -> None:
        """Cites an unknown ID."""
        raise Finding(requirement="NOPE-1", message="x")

    return reg


def _exchange(status: int) -> Exchange:
    return Exchange(request=Request("POST", "http://h/studies", Headers(), Body.of(b"")),
                    response=Response(status, "", Headers(), Body.of(b"")))


class TestRun:
    def test_pass_fail_and_not_applicable(self, registry: Registry) -> None:
        ctx = CheckContext(catalogue=_catalogue())
        assert registry.run(ctx, _exchange(200), ["response_is_200"])[0].outcome is Outcome.PASSED
        failed = registry.run(ctx, _exchange(409), ["response_is_200"])[0]
        assert failed.outcome is Outcome.FAILED
        assert failed.findings[0].requirement == "T-N" and failed.findings[0].confidence == "N"
        assert failed.findings[0].severity is Severity.ERROR
        assert registry.run(ctx, Exchange(), ["response_is_200"])[0].outcome is Outcome.NOT_APPLICABLE

    def test_groups_are_flattened_deduplicated_and_stamped(self, registry: Registry) -> None:
        ex = _exchange(200)
        result = registry.run(CheckContext(catalogue=_catalogue()), ex, ["two_findings"])[0]
        assert [(f.requirement, f.severity) for f in result.findings] == [
            ("T-S", Severity.ERROR), ("T-W", Severity.WARNING)]
        assert all(f.exchange_id == ex.id for f in result.findings)

    def test_a_check_may_declare_itself_not_applicable(self, registry: Registry) -> None:
        result = registry.run(CheckContext(catalogue=_catalogue()), _exchange(200), ["unconfigured"])[0]
        assert (result.outcome, result.error) == (Outcome.NOT_APPLICABLE, "no standard folder")

    def test_a_broken_check_is_a_tool_error_not_a_finding(self, registry: Registry) -> None:
        result = registry.run(CheckContext(catalogue=_catalogue()), _exchange(200), ["broken"])[0]
        assert result.outcome is Outcome.ERROR
        assert "bug in the check" in result.error and result.findings == ()

    def test_unknown_requirement_is_refused(self, registry: Registry) -> None:
        with pytest.raises(WicConformanceError, match="unknown requirement 'NOPE-1'"):
            registry.run(CheckContext(catalogue=_catalogue()), _exchange(200), ["cites_unknown"])

    def test_duplicate_names_are_refused(self, registry: Registry) -> None:
        def response_is_200(ctx: CheckContext, exchange: Exchange) -> None:
            """Other."""

        with pytest.raises(WicConformanceError, match="registered twice"):
            check(requirements="T-N", registry=registry)(response_is_200)


class TestProfile:
    def test_disable_relevel_and_options(self, registry: Registry) -> None:
        profile = RuleProfile(rules={"T-S": {"enabled": False}, "T-W": {"severity": "error"}},
                              checks={"two_findings": {"limit": 1}})
        ctx = CheckContext(catalogue=_catalogue().with_profile(profile))
        result = registry.run(ctx, _exchange(200), ["two_findings"])[0]
        assert [(f.requirement, f.severity) for f in result.findings] == [("T-W", Severity.ERROR)]
        assert result.outcome is Outcome.FAILED

    def test_plan_options_override_defaults(self, registry: Registry) -> None:
        ctx = CheckContext(catalogue=_catalogue(), options={"two_findings": {"limit": 10}})
        assert registry.run(ctx, _exchange(200), ["two_findings"])[0].outcome is Outcome.PASSED

    def test_normative_rules_cannot_be_changed(self) -> None:
        from wic_conformance.errors import ConfigError

        with pytest.raises(ConfigError, match="confidence N"):
            _catalogue().with_profile(RuleProfile(rules={"T-N": {"enabled": False}}))
