"""Findings: the only way the toolkit says that a system under test is non-conformant.

A :class:`Finding` is an :class:`AssertionError`, so a check may simply ``raise``
one and pytest reports it as a test failure.  Several findings from one check
travel together in a :class:`FindingGroup`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "BadReasonCode",
    "BadStatus",
    "ConversionMismatch",
    "Finding",
    "FindingGroup",
    "InvalidDicomJson",
    "InvalidDicomXml",
    "IodViolation",
    "MalformedMultipart",
    "MissingAttribute",
    "Severity",
    "StatusSequenceMismatch",
    "UnexpectedMediaType",
    "UnresolvedBulkData",
    "raise_all",
]


class Severity(StrEnum):
    """How much a finding weighs; ``ERROR`` findings fail a verdict."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Return 2 for errors, 1 for warnings and 0 for information."""
        return {"error": 2, "warning": 1, "info": 0}[self.value]


class Finding(AssertionError):
    """A requirement of the catalogue that the system under test does not meet.

    Parameters
    ----------
    requirement : str
        Catalogue ID, e.g. ``"STOW-RESP-001"``.
    message : str
        What is wrong, specific enough to act on.
    title : str, optional
        Short label; defaults to the class name.
    location : str, optional
        Where: ``"request part 2 > (0010,0010)"``, ``"response body"``, a file path.
    evidence : str, optional
        Raw material backing the verdict (a validator's output line, a header value).
    severity : Severity, optional
        ``None`` lets the check registry take it from the catalogue and the rule profile.
    exchange_id : str, optional
        The exchange the finding belongs to.
    confidence : str, optional
        Catalogue confidence (N, S, D, U), stamped by the registry.
    """

    def __init__(
        self,
        *,
        requirement: str,
        message: str,
        title: str | None = None,
        location: str = "",
        evidence: str = "",
        severity: Severity | None = None,
        exchange_id: str = "",
        confidence: str = "",
    ) -> None:
        super().__init__(f"[{requirement}] {message}")
        self.requirement = requirement
        self.message = message
        self.title = title or type(self).__name__
        self.location = location
        self.evidence = evidence
        self.severity = severity
        self.exchange_id = exchange_id
        self.confidence = confidence

    @property
    def _unique_key(self) -> tuple[str, str, str, str]:
        """Identity used to drop duplicate findings."""
        return (type(self).__name__, self.requirement, self.location, self.message)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form used by ``validate --format json`` and the reports."""
        return {
            "requirement": self.requirement,
            "severity": (self.severity or Severity.ERROR).value,
            "confidence": self.confidence,
            "title": self.title,
            "message": self.message,
            "location": self.location,
            "evidence": self.evidence,
            "exchange_id": self.exchange_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding written by :meth:`to_dict` (as a plain :class:`Finding`)."""
        finding = cls(
            requirement=str(data["requirement"]),
            message=str(data["message"]),
            title=data.get("title") or None,
            location=str(data.get("location", "")),
            evidence=str(data.get("evidence", "")),
            severity=Severity(data.get("severity", "error")),
            exchange_id=str(data.get("exchange_id", "")),
            confidence=str(data.get("confidence", "")),
        )
        return finding

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.requirement!r}, {self.message!r}, location={self.location!r})"


class FindingGroup(ExceptionGroup[Finding]):
    """Several findings raised together by one check."""

    @property
    def findings(self) -> list[Finding]:
        """Return the flat list of findings in the group."""
        out: list[Finding] = []
        for exc in self.exceptions:
            if isinstance(exc, FindingGroup):
                out.extend(exc.findings)
            elif isinstance(exc, Finding):
                out.append(exc)
        return out


def raise_all(findings: Iterable[Finding], message: str = "findings") -> None:
    """Raise nothing, the single finding, or a :class:`FindingGroup` of all of them."""
    found = list(findings)
    if len(found) == 1:
        raise found[0]
    if found:
        raise FindingGroup(message, found)


class MalformedMultipart(Finding):
    """The multipart/related body breaks RFC 2046/2387 or PS3.18 §8.6."""


class UnexpectedMediaType(Finding):
    """A Content-Type, type parameter or Accept value is not the one required."""


class StatusSequenceMismatch(Finding):
    """The HTTP status contradicts the Referenced/Failed SOP sequences."""


class BadStatus(Finding):
    """The HTTP status is not the one the situation calls for."""


class BadReasonCode(Finding):
    """A Failure or Warning Reason is missing, badly encoded or out of range."""


class MissingAttribute(Finding):
    """A required attribute is absent or empty."""


class InvalidDicomJson(Finding):
    """The DICOM JSON Model (PS3.18 Annex F) is violated."""


class InvalidDicomXml(Finding):
    """The Native DICOM Model (PS3.19 Annex A) is violated."""


class UnresolvedBulkData(Finding):
    """A BulkDataURI does not resolve to exactly one part of the same request."""


class IodViolation(Finding):
    """An instance does not conform to its IOD (PS3.3) as judged by an IOD validator."""


class ConversionMismatch(Finding):
    """The stored instance does not faithfully carry what the Capturer submitted."""
