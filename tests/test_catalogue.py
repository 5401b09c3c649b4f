"""Tests of the shipped requirement catalogue and of rule profiles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from wic_conformance.catalogue import (
    CONFIDENCES,
    Catalogue,
    RuleProfile,
    default_catalogue,
    load_profile,
)
from wic_conformance.errors import ConfigError
from wic_conformance.findings import Severity

#: Every ID cited in the tables of the requirement catalogue document (kept here on purpose,
#: so that the test does not depend on a file outside the package).
CATALOGUE_DOCUMENT_IDS = """
    CONV-001 CONV-002 CONV-003 CONV-004 CONV-005 CONV-006 CONV-007 CONV-008 CONV-009 JSON-001
    JSON-002 JSON-003 JSON-004 JSON-005 JSON-006 JSON-007 JSON-008 JSON-009 JSON-010 JSON-011
    JSON-012 JSON-013 JSON-014 JSON-015 JSON-016 JSON-017 JSON-018 JSON-019 JSON-020 JSON-021
    STOW-BEH-001 STOW-BEH-002 STOW-BEH-003 STOW-BEH-004 STOW-BEH-005 STOW-BEH-006 STOW-HDR-001
    STOW-HDR-002 STOW-HDR-003 STOW-HDR-004 STOW-HDR-005 STOW-HDR-006 STOW-HDR-007 STOW-HDR-008
    STOW-MOD-001 STOW-MOD-002 STOW-MOD-003 STOW-MOD-004 STOW-MOD-005 STOW-MOD-006 STOW-MOD-007
    STOW-MOD-008 STOW-MOD-009 STOW-PAY-001 STOW-PAY-002 STOW-PAY-003 STOW-PAY-004 STOW-PAY-005
    STOW-PAY-006 STOW-PAY-007 STOW-PAY-008 STOW-PAY-009 STOW-PAY-010 STOW-PAY-011 STOW-PAY-012
    STOW-PAY-013 STOW-PAY-014 STOW-PAY-015 STOW-PAY-016 STOW-RESP-001 STOW-RESP-002 STOW-RESP-003
    STOW-RESP-004 STOW-RESP-005 STOW-RESP-006 STOW-RESP-007 STOW-RESP-008 STOW-RESP-009
    STOW-RESP-010 STOW-URL-001 STOW-URL-002 STOW-URL-003 WIC-ACT-001 WIC-ACT-002 WIC-ACT-003
    WIC-ACT-004 WIC-CA-001 WIC-CA-002 WIC-CA-003 WIC-CA-004 WIC-CA-005 WIC-CA-006 WIC-CA-007
    WIC-CA-008 WIC-CA-009 WIC-CA-010 WIC-CA-011 WIC-CA-012 WIC-CA-013 WIC-CA-014 WIC-CA-015
    WIC-ID-001 WIC-ID-002 WIC-ID-003 WIC-ID-004 WIC-IM-001 WIC-IM-002 WIC-IM-003 WIC-IM-004
    WIC-IM-005 WIC-IM-006 WIC-IM-007 WIC-IM-008 WIC-IM-009 WIC-IM-010 WIC-IM-011 WIC-IM-012
    WIC-IM-013 WIC-IM-020 WIC-IM-021 WIC-IM-022 WIC-OPT-001 WIC-OPT-002 WIC-OPT-003 WIC-OPT-004
    WIC-OPT-005 WIC-OPT-006 WIC-OPT-007 WIC-OPT-010 WIC-OPT-011 WIC-UC-001 WIC-UC-002 WIC-UC-003
    WIC-UC-004 WIC-UC-005 XML-001 XML-002 XML-003 XML-004 XML-005 XML-006 XML-007
""".split()

#: IDs the package adds for its own checks.
ADDED_IDS = ["STOW-HDR-009", "STOW-PAY-017", "STOW-PAY-018", "WIC-CA-016"]

ID_PATTERN = re.compile(
    r"^(WIC-(ID|ACT|OPT|UC|CA|IM)|STOW-(URL|HDR|PAY|BEH|RESP|MOD)|JSON|XML|CONV)-\d{3}$"
)
ACTORS = {"IC", "IM", "IC/IM", "PX"}
LEVELS = {"MUST", "SHOULD", "MAY", "INFO"}


def _raw_entries() -> list[dict[str, object]]:
    from importlib import resources

    text = resources.files("wic_conformance").joinpath("data/requirements.yaml").read_text("utf-8")
    entries = yaml.safe_load(text)["requirements"]
    assert isinstance(entries, list)
    return entries


class TestShippedCatalogue:
    def test_loads(self) -> None:
        cat = default_catalogue()
        assert isinstance(cat, Catalogue)
        assert len(cat) >= len(set(CATALOGUE_DOCUMENT_IDS))

    def test_ids_unique_in_file(self) -> None:
        ids = [str(e["id"]) for e in _raw_entries()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        assert duplicates == []

    def test_ids_well_formed(self) -> None:
        bad = [r.id for r in default_catalogue() if not ID_PATTERN.match(r.id)]
        assert bad == []

    def test_every_document_id_present(self) -> None:
        cat = default_catalogue()
        missing = sorted(set(CATALOGUE_DOCUMENT_IDS) - {r.id for r in cat})
        assert missing == []

    def test_expected_id_list_is_sane(self) -> None:
        assert len(CATALOGUE_DOCUMENT_IDS) == len(set(CATALOGUE_DOCUMENT_IDS)) == 142
        assert all(ID_PATTERN.match(i) for i in CATALOGUE_DOCUMENT_IDS)
        for rid in ("WIC-IM-020", "WIC-IM-021", "WIC-IM-022", "WIC-OPT-010", "WIC-OPT-011"):
            assert rid in CATALOGUE_DOCUMENT_IDS

    def test_added_ids_are_derived_or_secondary(self) -> None:
        cat = default_catalogue()
        for rid in ADDED_IDS:
            req = cat[rid]
            assert req.confidence in {"D", "S"}, rid
            assert req.source, rid
        assert {r.id for r in cat} == set(CATALOGUE_DOCUMENT_IDS) | set(ADDED_IDS)

    def test_fields_are_in_their_vocabularies(self) -> None:
        for req in default_catalogue():
            assert req.actor in ACTORS, req.id
            assert req.level in LEVELS, req.id
            assert req.confidence in CONFIDENCES, req.id
            assert req.source.strip(), req.id
            assert 20 <= len(req.summary) <= 400, req.id
            assert req.enabled

    def test_only_known_keys(self) -> None:
        allowed = {"id", "actor", "level", "confidence", "source", "summary", "severity"}
        for entry in _raw_entries():
            assert set(entry) <= allowed, entry["id"]

    @pytest.mark.parametrize(
        ("rid", "severity"),
        [
            ("JSON-005", Severity.WARNING),
            ("JSON-018", Severity.WARNING),
            ("STOW-PAY-014", Severity.WARNING),
            ("STOW-RESP-009", Severity.WARNING),
            ("XML-003", Severity.WARNING),
            ("STOW-RESP-002", Severity.INFO),
            ("STOW-URL-001", Severity.ERROR),
            ("WIC-CA-003", Severity.WARNING),
            ("WIC-ID-001", Severity.INFO),
        ],
    )
    def test_severities(self, rid: str, severity: Severity) -> None:
        assert default_catalogue()[rid].severity is severity

    @pytest.mark.parametrize(
        ("rid", "confidence"),
        [
            ("WIC-IM-001", "S"),  # S+N: the weaker one
            ("CONV-004", "D"),  # N/D
            ("WIC-IM-009", "U"),  # D/U
            ("STOW-PAY-012", "U"),  # D / U
            ("WIC-CA-014", "N"),
            ("STOW-HDR-001", "N"),
            ("WIC-CA-003", "U"),
        ],
    )
    def test_mixed_confidence_takes_the_weakest(self, rid: str, confidence: str) -> None:
        assert default_catalogue()[rid].confidence == confidence

    def test_descriptive_entries_are_info(self) -> None:
        cat = default_catalogue()
        assert cat["WIC-ID-001"].level == "INFO"
        assert cat["JSON-020"].level == "INFO"

    def test_unknown_id_lookup(self) -> None:
        cat = default_catalogue()
        assert cat.get("STOW-XYZ-001") is None
        assert "STOW-XYZ-001" not in cat
        with pytest.raises(KeyError, match="unknown requirement ID"):
            cat["STOW-XYZ-001"]


class TestRuleProfile:
    def test_relevel_and_disable(self) -> None:
        profile = RuleProfile(rules={"WIC-CA-003": {"enabled": False}, "STOW-PAY-012": {"severity": "info"},
                                     "WIC-CA-006": {"severity": "ERROR"}})
        cat = default_catalogue().with_profile(profile)
        assert cat["WIC-CA-003"].enabled is False
        assert cat["STOW-PAY-012"].severity is Severity.INFO
        assert cat["WIC-CA-006"].severity is Severity.ERROR
        assert cat.profile is profile
        # the shipped catalogue is untouched
        assert default_catalogue()["WIC-CA-003"].enabled is True
        assert default_catalogue()["WIC-CA-006"].severity is Severity.WARNING

    def test_normative_rule_cannot_be_changed(self) -> None:
        assert default_catalogue()["STOW-HDR-001"].confidence == "N"
        with pytest.raises(ConfigError, match=r"rules\.STOW-HDR-001: confidence N"):
            default_catalogue().with_profile(RuleProfile(rules={"STOW-HDR-001": {"enabled": False}}))
        with pytest.raises(ConfigError, match="enforced as written"):
            default_catalogue().with_profile(RuleProfile(rules={"JSON-005": {"severity": "error"}}))

    def test_unknown_id_rejected(self) -> None:
        with pytest.raises(ConfigError, match=r"rules\.WIC-CA-999: unknown requirement ID"):
            default_catalogue().with_profile(RuleProfile(rules={"WIC-CA-999": {"enabled": False}}))

    def test_unknown_key_rejected(self) -> None:
        with pytest.raises(ConfigError, match=r"unknown key\(s\) \['level'\]"):
            default_catalogue().with_profile(RuleProfile(rules={"WIC-CA-003": {"level": "MAY"}}))

    def test_bad_severity_rejected(self) -> None:
        with pytest.raises(ConfigError, match="expected error, warning or info"):
            default_catalogue().with_profile(RuleProfile(rules={"WIC-CA-003": {"severity": "fatal"}}))

    def test_load_profile_file(self, tmp_path: Path) -> None:
        path = tmp_path / "vendor.yaml"
        path.write_text(
            "rules:\n  WIC-CA-003: {enabled: false}\n  STOW-PAY-012: {severity: warning}\n"
            "checks:\n  wic_content_has_patient_identity: {require_issuer: false}\n",
            encoding="utf-8",
        )
        profile = load_profile(path)
        cat = default_catalogue().with_profile(profile)
        assert cat["WIC-CA-003"].enabled is False
        assert cat["STOW-PAY-012"].severity is Severity.WARNING
        assert profile.checks["wic_content_has_patient_identity"] == {"require_issuer": False}

    def test_load_profile_rejects_other_top_level_keys(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("requirements: []\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="only 'rules' and 'checks'"):
            load_profile(path)

    def test_shipped_example_profile_applies(self) -> None:
        path = Path(__file__).resolve().parents[1] / "profiles" / "wic-baseline.yaml"
        if not path.exists():
            pytest.skip("example profile not written yet")
        default_catalogue().with_profile(load_profile(path))
