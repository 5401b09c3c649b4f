"""pytest-html hook implementations for conformance runs: columns, per-case extras, coverage summary.

Nothing here renders a report of its own: pytest-html does, and this module
only fills its hooks.

* ``pytest_html_results_table_header`` / ``_row``: *Requirement(s)* (each with
  its confidence, e.g. ``STOW-RESP-001 [N]``), *Option* and *Verdict* columns.
* ``pytest_runtest_makereport``: per-case extras through ``pytest_html.extras``:
  each exchange's request head (``Authorization`` and ``Cookie`` redacted), the
  response status, headers and body (small text bodies inline; large and binary
  bodies written as files next to the report and linked), the findings table,
  the metadata diff (the conversion findings) and the retrieved instances.
* ``pytest_html_results_summary``: a paragraph a vendor reads in ten seconds and
  the requirement coverage matrix over the whole catalogue.

The plans plugin hands each item's evidence over in ``item.stash[EVIDENCE_KEY]``
and each item's case record in ``user_properties`` (see :mod:`.results`), so
the table and the summary work with pytest-xdist: extras are built in the
worker, the summary in the controller.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pytest_html import extras as html_extras

from wic_conformance.catalogue import Catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Exchange, Headers
from wic_conformance.findings import Finding, Severity
from wic_conformance.report.records import Redactor
from wic_conformance.report.results import RequirementStatus, ResultsCollector, find_case_record

__all__ = ["EVIDENCE_KEY", "Evidence", "HtmlReport"]

INLINE_LIMIT = 64 * 1024  # text bodies up to this size are shown inline
REQUEST_BODY_LIMIT = 8 << 20  # request bodies up to this size are written next to the report
ASSET_DIR = "wic-assets"

_STATUS_STYLE = {
    RequirementStatus.PASSED: "color:#2e7d32",
    RequirementStatus.FAILED: "color:#c62828;font-weight:bold",
    RequirementStatus.NOT_TESTED: "color:#666",
    RequirementStatus.NOT_APPLICABLE: "color:#999",
}
_TABLE = 'style="border-collapse:collapse;margin:4px 0" border="1" cellpadding="3"'


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a test item leaves for the report: its exchanges and findings.

    Attributes
    ----------
    exchanges : tuple of Exchange
        In the order they happened.
    findings : tuple of Finding
        Every finding of the item.
    notes : tuple of str
        Extra lines (why the case was skipped, checks that broke).
    """

    exchanges: tuple[Exchange, ...] = ()
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()


EVIDENCE_KEY = pytest.StashKey[Evidence]()


def _strip_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="<redacted>@" + parts.netloc.rpartition("@")[2]))


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = mt.parse_media_type(content_type)
    return (media.type == "text" or media.subtype in ("json", "xml")
            or media.subtype.endswith(("+json", "+xml")))


def _extension(content_type: str | None) -> str:
    if not content_type:
        return "bin"
    media = mt.parse_media_type(content_type)
    if media.is_(mt.APPLICATION_DICOM):
        return "dcm"
    if media.type == "multipart":
        return "multipart"
    if media.subtype in ("json", "xml") or media.subtype.endswith(("+json", "+xml")):
        return media.subtype.rpartition("+")[2]
    if media.type == "text":
        return "txt"
    return "bin"


def _head(headers: Headers) -> str:
    return "".join(f"{k}: {v}\n" for k, v in headers.items)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


class HtmlReport:
    """pytest plugin that feeds pytest-html: columns, per-case extras and the summary.

    Parameters
    ----------
    catalogue : Catalogue
        Supplies the confidence, actor and level of each requirement.
    redactor : Redactor
        Scrubs credentials from everything written.
    results : ResultsCollector or None
        The controller's results (``None`` in an xdist worker, which builds extras only).
    report_path : Path or None
        Where pytest-html writes the report; large bodies are written under ``wic-assets/`` beside it.
    inline_limit : int
        Largest text body shown inline.
    """

    def __init__(self, *, catalogue: Catalogue, redactor: Redactor, results: ResultsCollector | None,
                 report_path: Path | None, inline_limit: int = INLINE_LIMIT) -> None:
        self.catalogue = catalogue
        self.redactor = redactor
        self.results = results
        self.report_dir = report_path.parent if report_path is not None else None
        self.inline_limit = inline_limit

    @classmethod
    def report_path(cls, config: pytest.Config) -> Path | None:
        """Return the report file pytest-html writes (resolved the way pytest-html does), or ``None``."""
        path = config.getoption("htmlpath", None)
        if not path:
            return None
        return Path.cwd() / Path(os.path.expandvars(str(path))).expanduser()

    # -- table ----------------------------------------------------------------------------------
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        """Add the Requirement(s), Option and Verdict columns after the test ID."""
        cells[2:2] = [
            '<th class="sortable" data-column-type="requirements">Requirement(s)</th>',
            '<th class="sortable" data-column-type="option">Option</th>',
            '<th data-column-type="verdict">Verdict</th>',
        ]

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        """Fill the added columns from the case record the report carries."""
        record = find_case_record(getattr(report, "user_properties", ()))
        if record is None:
            cells[2:2] = ['<td class="col-requirements"></td>', '<td class="col-option"></td>',
                          '<td class="col-verdict"></td>']
            return
        reqs = ", ".join(escape(self.requirement_label(r)) for r in record.get("requirements", ()))
        options = ", ".join(escape(str(o)) for o in record.get("options", ())) or "&mdash;"
        cells[2:2] = [f'<td class="col-requirements">{reqs}</td>', f'<td class="col-option">{options}</td>',
                      f'<td class="col-verdict">{escape(self.verdict(record))}</td>']

    def requirement_label(self, rid: str) -> str:
        """Return ``"STOW-RESP-001 [N]"`` (``[?]`` for an ID outside the catalogue)."""
        req = self.catalogue.get(rid)
        return f"{rid} [{req.confidence if req else '?'}]"

    @staticmethod
    def verdict(record: dict[str, Any]) -> str:
        """Return a one-line verdict of a case record."""
        outcome = str(record.get("outcome"))
        findings = record.get("findings", [])
        errors = [f for f in findings if f.get("severity") == Severity.ERROR.value]
        if outcome == "failed":
            cited = ", ".join(dict.fromkeys(str(f["requirement"]) for f in errors))
            text = f"failed: {len(errors)} error finding(s)"
            return f"{text} ({cited})" if cited else (f"{text}: {record.get('message')}" if record.get("message")
                                                       else text)
        if outcome in ("skipped", "error"):
            return f"{outcome}: {record.get('message') or 'no reason given'}"
        warnings = sum(f.get("severity") == Severity.WARNING.value for f in findings)
        return f"passed ({warnings} warning(s))" if warnings else "passed"

    # -- extras ---------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                            pytest.TestReport]:
        """Attach the item's evidence to its call report (or to a failed/skipped setup report)."""
        report = yield
        evidence = item.stash.get(EVIDENCE_KEY, None)
        if evidence is None:
            return report
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            report.extras = [*getattr(report, "extras", []), *self.extras(item.nodeid, evidence)]  # type: ignore[attr-defined]
        return report

    def extras(self, nodeid: str, evidence: Evidence) -> list[dict[str, Any]]:
        """Return the pytest-html extras of one item: an HTML block plus links to body files."""
        links: list[dict[str, Any]] = []
        parts: list[str] = ['<div class="wic-evidence">']
        for note in evidence.notes:
            parts.append(f"<p>{escape(self.redactor.text(note))}</p>")
        for number, exchange in enumerate(evidence.exchanges, start=1):
            parts.append(self._exchange_html(nodeid, number, exchange, links))
        parts.append(self.findings_html(evidence.findings))
        diff = [f for f in evidence.findings if f.title == "ConversionMismatch" or f.requirement.startswith("CONV-")]
        if diff:
            parts.append("<h4>Metadata diff (submitted vs. stored)</h4><ul>")
            parts.extend(f"<li>{escape(f.requirement)}: {escape(self.redactor.text(f.message))}"
                         f"{' at ' + escape(f.location) if f.location else ''}</li>" for f in diff)
            parts.append("</ul>")
        retrieved = [(d, e) for e in evidence.exchanges for d in e.retrieved()]
        if retrieved:
            parts.append(f"<h4>Retrieved instances</h4><table {_TABLE}><tr><th>location</th><th>media type</th>"
                         "<th>size</th></tr>")
            parts.extend(f"<tr><td>{escape(_strip_userinfo(d.location))}</td><td>{escape(d.media_type)}</td>"
                         f"<td>{_size(d.body.size)}</td></tr>" for d, _ in retrieved)
            parts.append("</table>")
        parts.append("</div>")
        return [html_extras.html("".join(parts)), *links]

    def findings_html(self, findings: Sequence[Finding]) -> str:
        """Return the findings table (errors first)."""
        if not findings:
            return "<h4>Findings</h4><p>none</p>"
        rows = sorted(findings, key=lambda f: -(f.severity or Severity.ERROR).rank)
        out = [f"<h4>Findings</h4><table {_TABLE}><tr><th>requirement</th><th>confidence</th><th>severity</th>"
               "<th>finding</th><th>message</th><th>location</th></tr>"]
        for f in rows:
            req = self.catalogue.get(f.requirement)
            confidence = f.confidence or (req.confidence if req else "?")
            out.append(f"<tr><td>{escape(f.requirement)}</td><td>{escape(confidence)}</td>"
                       f"<td>{escape((f.severity or Severity.ERROR).value)}</td><td>{escape(f.title)}</td>"
                       f"<td>{escape(self.redactor.text(f.message))}</td>"
                       f"<td>{escape(self.redactor.text(f.location))}</td></tr>")
        out.append("</table>")
        return "".join(out)

    def _exchange_html(self, nodeid: str, number: int, exchange: Exchange, links: list[dict[str, Any]]) -> str:
        out: list[str] = []
        req, resp = exchange.request, exchange.response
        title = f"Exchange {number}"
        if req is not None:
            title += f": {req.method} {_strip_userinfo(req.url)}"
        if resp is not None:
            title += f" \u2192 {resp.status}"
        out.append(f"<h4>{escape(self.redactor.text(title))}</h4>")
        if exchange.truncated:
            out.append("<p><em>Large bodies of this exchange were cut to their first bytes when it was "
                       "recorded.</em></p>")
        if req is not None:
            head = f"{req.method} {_strip_userinfo(req.url)} {req.http_version}\n" + _head(self.redactor.headers(
                req.headers))
            out.append(f"<p>Request</p><pre>{escape(self.redactor.text(head))}</pre>")
            if req.body.size:
                out.append(self._body_html(nodeid, f"{number}-request", req.body, req.content_type, links,
                                           inline=False, limit=REQUEST_BODY_LIMIT, label="request body"))
        if resp is not None:
            head = f"{resp.http_version} {resp.status} {resp.reason}".rstrip() + "\n" + _head(
                self.redactor.headers(resp.headers))
            out.append(f"<p>Response</p><pre>{escape(self.redactor.text(head))}</pre>")
            if resp.body.size:
                out.append(self._body_html(nodeid, f"{number}-response", resp.body, resp.content_type, links,
                                           inline=True, limit=None, label="response body"))
        elif exchange.request is not None:
            out.append("<p>No response.</p>")
        return "".join(out)

    def _body_html(self, nodeid: str, stem: str, body: Body, content_type: str | None,
                   links: list[dict[str, Any]], *, inline: bool, limit: int | None, label: str) -> str:
        text = _is_text(content_type)
        if inline and text and body.size <= self.inline_limit:
            try:
                decoded = body.read().decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                return f"<pre>{escape(self.redactor.text(decoded))}</pre>"
        description = f"{label}: {_size(body.size)}, {content_type or 'no Content-Type'}"
        if self.report_dir is None or (limit is not None and body.size > limit):
            return f"<p>{escape(description)} (not kept)</p>"
        relative = self._write_asset(nodeid, stem, body, _extension(content_type), redact=text)
        links.append(html_extras.url(relative, name=f"{stem} body"))
        return f'<p><a href="{escape(relative)}">{escape(description)}</a></p>'

    def _write_asset(self, nodeid: str, stem: str, body: Body, extension: str, *, redact: bool) -> str:
        assert self.report_dir is not None
        folder = self.report_dir / ASSET_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]", "_", nodeid)[-120:] + f"-{stem}.{extension}"
        target = folder / name
        if redact:
            target.write_text(self.redactor.text(body.read().decode("utf-8", "replace")), "utf-8")
        else:
            with open(target, "wb") as handle:
                for chunk in body.chunks():
                    handle.write(chunk)
        return f"{ASSET_DIR}/{name}"

    # -- summary --------------------------------------------------------------------------------
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        """Put the ten-second paragraph and the coverage matrix at the top of the report."""
        if self.results is None:
            return
        prefix.append(self.summary_html())
        prefix.append(self.coverage_html())

    def summary_html(self) -> str:
        """Return the one-paragraph summary: target, case counts, failed requirements."""
        assert self.results is not None
        counts = self.results.counts()
        total = sum(counts.values())
        statuses = self.results.statuses()
        failed = [rid for rid, st in statuses.items() if st is RequirementStatus.FAILED]
        tally = {st: sum(1 for s in statuses.values() if s is st) for st in RequirementStatus}
        what = "Recorded exchanges in" if self.results.actor_under_test == "IC" else "Image Manager"
        verdict = ("<strong style=\"color:#c62828\">NOT CONFORMANT</strong>" if failed or counts["failed"]
                   else "<strong style=\"color:#2e7d32\">no failures</strong>")
        text = (f"{what} <code>{escape(self.redactor.text(_strip_userinfo(self.results.target)))}</code>: "
                f"{verdict}. {total} case(s): {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped, {counts['error']} error. ")
        if failed:
            text += "Requirements failed: " + ", ".join(
                f"<strong>{escape(self.requirement_label(r))}</strong>" for r in failed) + ". "
        else:
            text += "No requirement failed. "
        text += (f"Coverage: {tally[RequirementStatus.PASSED]} requirement(s) passed, "
                 f"{tally[RequirementStatus.FAILED]} failed, {tally[RequirementStatus.NOT_TESTED]} not tested, "
                 f"{tally[RequirementStatus.NOT_APPLICABLE]} not applicable.")
        if counts["error"]:
            text += " Cases in error are toolkit or plan problems, not findings against the target."
        return f'<p class="wic-summary" style="font-size:1.1em">{text}</p>'

    def coverage_html(self) -> str:
        """Return the requirement coverage matrix over the whole catalogue."""
        assert self.results is not None
        statuses = self.results.statuses()
        by_req: dict[str, list[str]] = {}
        for case in self.results.cases:
            for rid in dict.fromkeys([*case.get("requirements", ()),
                                      *(f["requirement"] for f in case.get("findings", ()))]):
                by_req.setdefault(str(rid), []).append(f"{case.get('case') or case['id']} ({case['outcome']})")
        rows = []
        for rid, status in statuses.items():
            req = self.catalogue.get(rid)
            actor, level, confidence, summary = ((req.actor, req.level, req.confidence, req.summary) if req
                                                 else ("?", "?", "?", "not in the catalogue"))
            cases = by_req.get(rid, [])
            rows.append(f'<tr class="wic-req wic-{status.value}"><td title="{escape(summary)}">{escape(rid)}</td>'
                        f"<td>{escape(actor)}</td><td>{escape(level)}</td><td>{escape(confidence)}</td>"
                        f'<td style="{_STATUS_STYLE[status]}">{status.value.replace("_", " ")}</td>'
                        f"<td>{escape('; '.join(cases[:6]) + (f'; +{len(cases) - 6} more' if len(cases) > 6 else ''))}"
                        "</td></tr>")
        tally = ", ".join(f"{sum(1 for s in statuses.values() if s is st)} {st.value.replace('_', ' ')}"
                          for st in RequirementStatus)
        return (f'<details class="wic-coverage" open><summary><strong>Requirement coverage</strong> '
                f"({len(statuses)} requirements: {tally})</summary>"
                f'<table {_TABLE} class="wic-coverage-matrix"><tr><th>requirement</th><th>actor</th>'
                "<th>level</th><th>confidence</th><th>status</th><th>cases</th></tr>"
                + "".join(rows) + "</table></details>")
