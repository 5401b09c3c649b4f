"""Toolkit errors: problems of the toolkit, its usage, a plan, a fixture or a configuration.

These never describe a defect of the system under test; that is what
:class:`wic_conformance.findings.Finding` is for.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FixtureNotFoundError",
    "PlanError",
    "UsageError",
    "ValidatorUnavailableError",
    "WicConformanceError",
]


class WicConformanceError(Exception):
    """Base class of every toolkit error."""


class UsageError(WicConformanceError):
    """The toolkit was called wrongly (bad argument, unreadable file, unknown kind)."""


class ConfigError(WicConformanceError):
    """A configuration or rule-profile file is invalid."""


class PlanError(WicConformanceError):
    """A test plan is invalid; the message names the file, the case and the JSON path."""


class FixtureNotFoundError(WicConformanceError):
    """A fixture key or path does not exist in ``fixtures/index.json``."""


class ValidatorUnavailableError(WicConformanceError):
    """An external validator (dciodvfy, dicom-validator standard folder) is not available."""
