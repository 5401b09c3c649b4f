"""Replay a recording's STOW-RS requests against another Image Manager and compare the outcomes.

Each recorded STOW-RS request (``POST .../studies[/{study}]``) is sent again, byte for
byte, to the same path under the new target's DICOMweb root: the body from its side file
or the inline text, the headers as recorded except Host and Content-Length (recomputed),
the hop-by-hop fields and redacted values (a redacted Authorization cannot be replayed;
the report says so, and an injected session may supply credentials instead).

The new outcome is compared with the recorded one:

* the HTTP status;
* the Referenced SOP Sequence and Failed SOP Sequence, by SOP Instance UID, with their
  Warning Reason and Failure Reason, and the Other Failures Sequence;
* what the new target stored: the instances are retrieved from the Retrieve URLs of its
  response (WADO-RS, ``transfer-syntax=*``) and judged against the recorded request by the
  conversion checks.  The recorded side need not be reachable: an error-level conversion
  finding is a difference unless the recording's own verification (``_wic``) had it too.

A truncated exchange is not replayed (its row says so) and does not count as a difference.

References
----------
PS3.18 §10.5 (Store), §10.4 (Retrieve), Annex I (Store Instances Response Module).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import requests

from wic_conformance.actors.recorder import HAR_NAME, REDACTED, load_recording
from wic_conformance.catalogue import Catalogue, default_catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Response
from wic_conformance.dicomweb.har import iter_har_exchanges
from wic_conformance.dicomweb.multipart import decode_multipart
from wic_conformance.dicomweb.store_response import SopRef, StoreResponse, parse_store_response
from wic_conformance.dicomweb.stow import parse_stow_target, stow_url
from wic_conformance.errors import UsageError
from wic_conformance.findings import Severity
from wic_conformance.validate.registry import REGISTRY, CheckContext, Outcome

__all__ = ["ReplayReport", "ReplayRow", "format_replay_table", "replay", "run_replay"]

log = logging.getLogger(__name__)

#: Not replayed as recorded: recomputed (Host, Content-Length) or hop-by-hop (RFC 9110 §7.6.1).
_NOT_REPLAYED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                           "trailer", "upgrade", "proxy-connection", "proxy-authorization"})
#: Headers a requests session adds by default; suppressed when the recorded request did not carry them.
_SESSION_DEFAULTS = ("User-Agent", "Accept-Encoding", "Accept")
_RETRIEVE_ACCEPT = mt.format_media_type(mt.MULTIPART_RELATED, {"type": mt.APPLICATION_DICOM, "transfer-syntax": "*"})


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One recorded STOW-RS exchange and its replay.

    Attributes
    ----------
    entry : int
        The entry's number in the HAR file (1-based).
    method, url : str
        The request line sent (the URL under the new target).
    recorded_status : int
        The status in the recording (0: no response was recorded).
    new_status : int or None
        The new target's status (``None`` when not replayed or no response came).
    differences : tuple of str
        What differs from the recording; empty when the outcome is the same.
    notes : tuple of str
        What was not replayed as recorded (redacted credentials, chunked framing...).
    skipped : bool
        The exchange was not replayed (a truncated recording).
    """

    entry: int
    method: str
    url: str
    recorded_status: int
    new_status: int | None
    differences: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """Return whether the replay reproduced the recorded outcome (a skipped row is not a difference)."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"entry": self.entry, "method": self.method, "url": self.url, "recorded_status": self.recorded_status,
                "new_status": self.new_status, "differences": list(self.differences), "notes": list(self.notes),
                "skipped": self.skipped, "ok": self.ok}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The outcome table of a replay.

    Attributes
    ----------
    record : str
        The recording replayed.
    target : str
        The DICOMweb root replayed to.
    rows : tuple of ReplayRow
        One per recorded STOW-RS exchange, in recording order.
    notes : tuple of str
        Remarks about the replay as a whole.
    """

    record: str
    target: str
    rows: tuple[ReplayRow, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Return whether every replayed exchange reproduced its recorded outcome."""
        return all(row.ok for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (``wic-conformance replay --format json``)."""
        return {"record": self.record, "target": self.target, "ok": self.ok,
                "rows": [row.to_dict() for row in self.rows], "notes": list(self.notes)}


def _reason(value: int | None) -> str:
    return "none" if value is None else f"0x{value:04X}"


def _by_uid(refs: tuple[SopRef, ...], attribute: str) -> dict[str, int | None]:
    return {ref.sop_instance_uid or f"(item {n + 1} without a SOP Instance UID)": getattr(ref, attribute)
            for n, ref in enumerate(refs)}


def _compare_sequence(name: str, attribute: str, before: tuple[SopRef, ...], after: tuple[SopRef, ...],
                      ) -> list[str]:
    old, new = _by_uid(before, attribute), _by_uid(after, attribute)
    out = [f"{name}: {uid} no longer listed" for uid in old if uid not in new]
    out += [f"{name}: {uid} newly listed" for uid in new if uid not in old]
    label = "Failure Reason" if attribute == "failure_reason" else "Warning Reason"
    out += [f"{name}: {uid} {label} {_reason(old[uid])} -> {_reason(new[uid])}"
            for uid in old if uid in new and old[uid] != new[uid]]
    return out


def compare_outcomes(recorded: StoreResponse, replayed: StoreResponse) -> list[str]:
    """Return the differences between two Store Instances Responses (status, sequences, reasons).

    References
    ----------
    PS3.18 §10.5.3, Annex I (Referenced SOP Sequence, Failed SOP Sequence, Other Failures Sequence).
    """
    out: list[str] = []
    if recorded.status != replayed.status:
        out.append(f"status {recorded.status} -> {replayed.status}")
    out += _compare_sequence("Referenced SOP", "warning_reason", recorded.referenced, replayed.referenced)
    out += _compare_sequence("Failed SOP", "failure_reason", recorded.failed, replayed.failed)
    if sorted(recorded.other_failures) != sorted(replayed.other_failures):
        out.append("Other Failures " + ", ".join(map(_reason, recorded.other_failures)) + " -> "
                   + ", ".join(map(_reason, replayed.other_failures)))
    return out


def _headers_to_send(recorded: Headers, session: requests.Session) -> tuple[dict[str, str | None], list[str]]:
    """Return the headers to replay (recorded order; session defaults suppressed) and notes on what was dropped."""
    named = {t.strip().lower() for v in recorded.get_all("connection") for t in v.split(",")}
    headers: dict[str, str | None] = {}
    notes: list[str] = []
    has_auth = session.auth is not None or "authorization" in {k.lower() for k in session.headers}
    for name, value in recorded:
        lname = name.lower()
        if lname in _NOT_REPLAYED or lname in named:
            if lname == "transfer-encoding":
                notes.append("sent with Content-Length instead of the recorded chunked transfer coding")
            continue
        if value == REDACTED:
            canonical = "-".join(piece.capitalize() for piece in name.split("-"))
            what = f"the recorded {canonical} was redacted and could not be replayed"
            notes.append(what + ("; the session's credentials were sent instead"
                                 if lname == "authorization" and has_auth else ""))
            continue
        if lname in {k.lower() for k in headers}:
            key = next(k for k in headers if k.lower() == lname)
            headers[key] = f"{headers[key]}, {value}"  # requests sends one field per name: combine (RFC 9110 §5.3)
        else:
            headers[name] = value
    present = {k.lower() for k in headers}
    for name in _SESSION_DEFAULTS:
        if name.lower() not in present:
            headers[name] = None  # requests drops a None header: no session default is added
    return headers, notes


def _retrieve(session: requests.Session, urls: list[str], *, verify: bool | str, timeout: float,
              ) -> tuple[list[Document], list[str]]:
    documents: list[Document] = []
    problems: list[str] = []
    for url in dict.fromkeys(urls):
        try:
            reply = session.get(url, headers={"Accept": _RETRIEVE_ACCEPT}, verify=verify, timeout=timeout)
        except requests.RequestException as exc:
            problems.append(f"stored instances could not be retrieved from {url}: {type(exc).__name__}: {exc}")
            continue
        if reply.status_code != 200:
            problems.append(f"stored instances could not be retrieved from {url}: HTTP {reply.status_code}")
            continue
        result = decode_multipart(reply.content, reply.headers.get("Content-Type", ""))
        for part in result.parts:
            if part.content_type is None or part.content_type.is_(mt.APPLICATION_DICOM):
                documents.append(Document(mt.APPLICATION_DICOM, part.body, DocumentRole.RETRIEVED,
                                          f"retrieved {url} part {part.index + 1}"))
    return documents, problems


def _recorded_conversion(entry: Mapping[str, Any]) -> set[str] | None:
    """Return the requirement IDs of the recording's own error findings when it verified what was stored, else None."""
    wic = entry.get("_wic")
    if not isinstance(wic, Mapping) or "retrieved" not in wic:
        return None
    return {str(f.get("requirement", "")) for f in wic.get("findings", []) if f.get("severity") == "error"}


def _stored_differences(exchange: Exchange, response: Response, parsed: StoreResponse, entry: Mapping[str, Any],
                        session: requests.Session, *, verify: bool | str, timeout: float,
                        catalogue: Catalogue) -> list[str]:
    urls = [r.retrieve_url for r in parsed.referenced if r.retrieve_url]
    if not urls and parsed.retrieve_url:
        urls = [parsed.retrieve_url]
    if not urls:
        return ["the new target's response names no Retrieve URL: what it stored cannot be checked"]
    documents, out = _retrieve(session, urls, verify=verify, timeout=timeout)
    if not documents:
        return out
    assert exchange.request is not None
    judged = Exchange(request=exchange.request, response=response, documents=tuple(documents), source="replay")
    results = REGISTRY.run(CheckContext(catalogue=catalogue), judged, tags=["conversion"])
    recorded = _recorded_conversion(entry)
    for result in results:
        if result.outcome is Outcome.ERROR:
            out.append(f"check {result.check} could not run: {result.error}")
        for finding in result.findings:
            if finding.severity is not Severity.ERROR:
                continue
            if recorded is not None and finding.requirement in recorded:
                continue
            where = f" at {finding.location}" if finding.location else ""
            out.append(f"stored instance: {finding.requirement} {finding.message}{where}")
    return out


def replay(
    record_dir: str | os.PathLike[str],
    target_url: str,
    *,
    verify: bool | str = True,
    session: requests.Session | None = None,
    check_stored: bool = True,
    catalogue: Catalogue | None = None,
    timeout: float = 300.0,
) -> ReplayReport:
    """Re-send a recording's STOW-RS requests to another Image Manager and compare each outcome.

    Parameters
    ----------
    record_dir : str or os.PathLike
        A recording folder (its ``recording.har`` is rebuilt from the journal first) or a HAR file.
    target_url : str
        The new Image Manager's DICOMweb root (``http://host:port/dicom-web``).
    verify : bool or str
        TLS verification of the target: ``True``, ``False`` or a CA bundle path.
    session : requests.Session, optional
        The HTTP session (e.g. carrying credentials the recording redacted).
    check_stored : bool
        Retrieve what the new target stored and judge it with the conversion checks.
    catalogue : Catalogue, optional
        Catalogue (with any rule profile) for the conversion checks.
    timeout : float
        Seconds to wait for the target.

    Returns
    -------
    ReplayReport
        One row per recorded STOW-RS exchange; ``ok`` when every outcome is reproduced.

    Raises
    ------
    UsageError
        No recording there, a side file is missing, or the target is not an http(s) URL.

    References
    ----------
    PS3.18 §10.5 (Store), Annex I; HAR 1.2.
    """
    if not target_url.lower().startswith(("http://", "https://")):
        raise UsageError(f"the replay target must be an http(s) DICOMweb root, not {target_url!r}")
    if check_stored:
        from wic_conformance.validate import all_checks  # noqa: F401  (registers the checks)
    source = Path(record_dir)
    har = load_recording(source)
    har_path = source if source.is_file() else source / HAR_NAME
    entries = har["log"]["entries"]
    base = target_url.rstrip("/")
    cat = catalogue or default_catalogue()
    rows: list[ReplayRow] = []
    report_notes: list[str] = []
    with ExitStack() as stack:
        http = session if session is not None else stack.enter_context(requests.Session())
        for exchange in iter_har_exchanges(har_path, stow_only=True):
            number = int(exchange.source.rsplit("#entry", 1)[1])
            entry = entries[number - 1]
            assert exchange.request is not None
            recorded_status = exchange.response.status if exchange.response is not None else 0
            stow = parse_stow_target(exchange.request.url)
            assert stow is not None  # iter_har_exchanges yields STOW-RS requests only
            url = stow_url(base, stow.study_uid) + (f"?{stow.query}" if stow.query else "")
            if exchange.truncated or exchange.response is None:
                rows.append(ReplayRow(number, "POST", url, recorded_status, None, skipped=True,
                                      notes=("not replayed: the recorded exchange is truncated",)))
                continue
            headers, notes = _headers_to_send(exchange.request.headers, http)
            body = exchange.request.body
            try:
                with body.open() as data:
                    reply = http.post(url, data=data if body.size else b"", headers=headers, verify=verify,
                                      timeout=timeout)
            except requests.RequestException as exc:
                rows.append(ReplayRow(number, "POST", url, recorded_status, None,
                                      (f"no response: {type(exc).__name__}: {exc}",), tuple(notes)))
                continue
            response = Response(reply.status_code, reply.reason or "", Headers.of(list(reply.headers.items())),
                                Body.of(reply.content))
            recorded = parse_store_response(exchange.response)
            parsed = parse_store_response(response)
            differences = compare_outcomes(recorded, parsed)
            if check_stored and 200 <= reply.status_code < 300 and parsed.referenced:
                differences += _stored_differences(exchange, response, parsed, entry, http, verify=verify,
                                                   timeout=timeout, catalogue=cat)
            rows.append(ReplayRow(number, "POST", url, recorded_status, reply.status_code, tuple(differences),
                                  tuple(notes)))
    if not rows:
        report_notes.append("the recording holds no STOW-RS exchange")
    redacted = sorted({n for r in rows for n in r.notes if "redacted" in n})
    report_notes += redacted
    return ReplayReport(str(source), base, tuple(rows), tuple(report_notes))


def format_replay_table(report: ReplayReport) -> str:
    """Return the report as a plain-text table: one line per exchange, its differences and notes below it."""
    lines = [f"replay of {report.record} against {report.target}"]
    width = max([len(_path(r.url)) for r in report.rows] + [len("request")]) + 5
    lines.append(f"{'#':>4}  {'request':<{width}}  {'recorded':>8}  {'replayed':>8}  result")
    for row in report.rows:
        new = "-" if row.new_status is None else str(row.new_status)
        result = "skipped" if row.skipped else ("same" if row.ok else "DIFFERENT")
        lines.append(f"{row.entry:>4}  {(row.method + ' ' + _path(row.url)):<{width}}  {row.recorded_status:>8}  "
                     f"{new:>8}  {result}")
        lines += [f"{'':>6}- {d}" for d in row.differences]
        lines += [f"{'':>6}  note: {n}" for n in row.notes]
    replayed = [r for r in report.rows if not r.skipped]
    different = sum(not r.ok for r in report.rows)
    skipped = len(report.rows) - len(replayed)
    lines.append(f"{len(replayed)} replayed, {different} different, {skipped} skipped: "
                 + ("outcomes reproduced" if report.ok else "OUTCOMES DIFFER"))
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def run_replay(
    record_dir: str | os.PathLike[str],
    target_url: str,
    *,
    out: TextIO,
    verify: bool | str = True,
    check_stored: bool = True,
    output_format: str = "text",
    catalogue: Catalogue | None = None,
    timeout: float = 300.0,
) -> int:
    """Replay a recording and print the table (or JSON) to ``out``; return 0 when reproduced, 1 when different.

    The ``replay`` subcommand; parameters are those of :func:`replay`, and
    ``output_format`` is ``"text"`` or ``"json"``.

    Raises
    ------
    UsageError
        As :func:`replay`, or an unknown ``output_format``.
    """
    if output_format not in ("text", "json"):
        raise UsageError(f"unknown output format {output_format!r}: text or json")
    report = replay(record_dir, target_url, verify=verify, check_stored=check_stored, catalogue=catalogue,
                    timeout=timeout)
    if output_format == "json":
        out.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        out.write(format_replay_table(report))
    return 0 if report.ok else 1
