"""The requirement catalogue (package data) and the rule profile that adjusts it.

Every check cites requirement IDs from this catalogue.  Rules whose confidence
is ``S`` (secondary source), ``D`` (derived) or ``U`` (unverified) may be
switched off or re-levelled by a *rule profile* (a YAML file), so a vendor who
holds the WIC supplement can align the toolkit with it.  ``N`` rules (normative
DICOM text read directly) are enforced as written: a profile that tries to
change one is rejected.

Profile format::

    rules:
      WIC-CA-003: {enabled: false}
      WIC-CA-004: {severity: error}
    checks:
      wic_content_has_critical_attributes: {require: [WIC-CA-001, WIC-CA-002]}
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wic_conformance.errors import ConfigError
from wic_conformance.findings import Severity

__all__ = ["Catalogue", "Requirement", "RuleProfile", "default_catalogue", "load_profile"]

_LEVEL_SEVERITY = {"MUST": Severity.ERROR, "SHOULD": Severity.WARNING, "MAY": Severity.INFO,
                   "INFO": Severity.INFO}
CONFIDENCES = ("N", "S", "D", "U")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One catalogue entry.

    Attributes
    ----------
    id : str
        Stable ID, e.g. ``"STOW-RESP-001"``.
    actor : str
        ``IC`` (Image Capturer), ``IM`` (Image Manager), ``IC/IM`` or ``PX`` (toolkit-level rule).
    level : str
        ``MUST``, ``SHOULD``, ``MAY`` or ``INFO``.
    confidence : str
        ``N``, ``S``, ``D`` or ``U``.
    source : str
        Where the rule comes from (standard section or public source).
    summary : str
        The rule in a sentence.
    severity : Severity
        Severity of a finding against this rule.
    enabled : bool
        Whether findings against this rule are reported.
    """

    id: str
    actor: str
    level: str
    confidence: str
    source: str
    summary: str
    severity: Severity
    enabled: bool = True

    @property
    def configurable(self) -> bool:
        """Return whether a rule profile may switch off or re-level this rule."""
        return self.confidence != "N"


@dataclass(frozen=True, slots=True)
class RuleProfile:
    """Adjustments to the catalogue and per-check options, read from a YAML file."""

    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""


class Catalogue:
    """An immutable mapping of requirement ID to :class:`Requirement`."""

    def __init__(self, requirements: Mapping[str, Requirement], profile: RuleProfile | None = None) -> None:
        self._items = dict(requirements)
        self.profile = profile or RuleProfile()

    def __getitem__(self, rid: str) -> Requirement:
        try:
            return self._items[rid]
        except KeyError:
            raise KeyError(f"unknown requirement ID {rid!r}") from None

    def get(self, rid: str) -> Requirement | None:
        """Return the requirement, or ``None`` for an unknown ID."""
        return self._items.get(rid)

    def __contains__(self, rid: object) -> bool:
        return rid in self._items

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def with_profile(self, profile: RuleProfile) -> Catalogue:
        """Return a copy with a rule profile applied.

        Raises
        ------
        ConfigError
            An unknown ID, an unknown key, a bad severity, or an attempt to change an ``N`` rule.
        """
        items = dict(self._items)
        for rid, change in profile.rules.items():
            req = items.get(rid)
            where = f"{profile.source or 'profile'}: rules.{rid}"
            if req is None:
                raise ConfigError(f"{where}: unknown requirement ID")
            if not isinstance(change, Mapping):
                raise ConfigError(f"{where}: expected a mapping like {{enabled: false}}")
            unknown = set(change) - {"enabled", "severity"}
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
            if not req.configurable:
                raise ConfigError(f"{where}: confidence N (normative text) rules are enforced as written")
            new = req
            if "enabled" in change:
                if not isinstance(change["enabled"], bool):
                    raise ConfigError(f"{where}.enabled: expected true or false")
                new = replace(new, enabled=change["enabled"])
            if "severity" in change:
                try:
                    new = replace(new, severity=Severity(str(change["severity"]).lower()))
                except ValueError:
                    raise ConfigError(f"{where}.severity: expected error, warning or info") from None
            items[rid] = new
        return Catalogue(items, profile)


def _requirement_from(raw: Mapping[str, Any]) -> Requirement:
    level = str(raw["level"]).upper()
    confidence = str(raw["confidence"]).upper()
    if confidence not in CONFIDENCES:
        raise ConfigError(f"requirement {raw.get('id')}: bad confidence {confidence!r}")
    severity = Severity(raw["severity"]) if raw.get("severity") else _LEVEL_SEVERITY.get(level, Severity.ERROR)
    return Requirement(
        id=str(raw["id"]), actor=str(raw["actor"]), level=level, confidence=confidence,
        source=str(raw.get("source", "")), summary=" ".join(str(raw["summary"]).split()),
        severity=severity,
    )


@functools.cache
def default_catalogue() -> Catalogue:
    """Return the catalogue shipped with the package (``data/requirements.yaml``)."""
    text = resources.files("wic_conformance").joinpath("data/requirements.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    items: dict[str, Requirement] = {}
    for raw in data["requirements"]:
        req = _requirement_from(raw)
        if req.id in items:
            raise ConfigError(f"duplicate requirement ID {req.id} in the shipped catalogue")
        items[req.id] = req
    return Catalogue(items)


def load_profile(path: str | Path) -> RuleProfile:
    """Read a rule profile YAML file.

    Raises
    ------
    ConfigError
        The file cannot be read or is not of the documented shape.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read rule profile {p}: {exc}") from None
    if not isinstance(data, Mapping) or set(data) - {"rules", "checks"}:
        raise ConfigError(f"{p}: a rule profile has only 'rules' and 'checks' mappings")
    rules = data.get("rules") or {}
    checks = data.get("checks") or {}
    if not isinstance(rules, Mapping) or not isinstance(checks, Mapping):
        raise ConfigError(f"{p}: 'rules' and 'checks' must be mappings")
    return RuleProfile(rules=rules, checks=checks, source=str(p))
