"""wic-conformance: conformance tests and validators for IHE Web-based Image Capture (RAD-108, STOW-RS)."""

from __future__ import annotations

from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.findings import Finding, Severity
from wic_conformance.validate.registry import CheckContext, check

__version__ = "0.1.0"

__all__ = ["CheckContext", "Exchange", "Finding", "Severity", "__version__", "check"]
