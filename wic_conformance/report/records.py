"""Recorded exchanges on disk, and the scrubbing of secrets out of everything a report writes.

The simulated Image Manager appends one JSON line per exchange it receives to
``DATA_DIR/exchanges.ndjson``::

    {"verdict": {"id", "received", "method", "url", "status", "findings": [...], "check_errors": [...]},
     "request": {"method", "url", "headers": [[name, value], ...], "body_file", "body_offset", "body_size"},
     "response": {"status", "headers": [[name, value], ...], "body": "..."}}

:func:`read_records` turns those lines back into :class:`RecordedExchange`
values (an :class:`~wic_conformance.dicomweb.exchange.Exchange` plus the
verdict's findings), which the pytest plugin collects as test items with
``--wic-records DIR`` and the HTML report renders like any other exchange.

:class:`Redactor` removes credentials: the ``Authorization`` and ``Cookie``
header values (:meth:`Headers.redacted`) and, as a second line of defence, any
known secret (password, token, header value) quoted inside free text such as a
finding's evidence.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request, Response
from wic_conformance.findings import Finding, Severity

__all__ = ["HAR_FILE", "RECORDS_FILE", "REDACTED", "RecordedExchange", "Redactor", "read_records", "record_name"]

RECORDS_FILE = "exchanges.ndjson"  # the simulated Image Manager's recordings
HAR_FILE = "recording.har"  # the recording proxy's recordings (HAR 1.2 with ``_wic`` verdicts)
REDACTED = "<redacted>"
SECRET_HEADERS = ("authorization", "cookie", "set-cookie", "proxy-authorization")


@dataclass(frozen=True, slots=True)
class Redactor:
    """Scrubs credentials out of headers and text.

    Parameters
    ----------
    secrets : tuple of str
        Literal values that must never appear in a report (passwords, tokens, secret header values).
    """

    secrets: tuple[str, ...] = ()

    @classmethod
    def for_credentials(cls, *, auth: tuple[str, str] | None = None, token: str | None = None,
                        headers: Iterable[tuple[str, str]] = ()) -> Redactor:
        """Collect the secrets of a run: Basic credentials (plain and base64), a Bearer token, secret headers."""
        found: list[str] = []
        if auth is not None:
            user, password = auth
            if password:
                found.append(password)
            found.append(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))
        if token:
            found.append(token)
        for name, value in headers:
            if name.lower() in SECRET_HEADERS and value:
                found.append(value)
                _, _, credentials = value.partition(" ")
                if credentials.strip():
                    found.append(credentials.strip())
        # longest first, so that a value containing another is replaced whole; very short ones are too
        # likely to match innocent text and are still covered by the header redaction
        unique = sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)
        return cls(tuple(unique))

    def headers(self, headers: Headers) -> Headers:
        """Return ``headers`` with secret header values replaced and known secrets scrubbed from the rest."""
        cleaned = headers.redacted(SECRET_HEADERS)
        if not self.secrets:
            return cleaned
        return Headers(tuple((k, self.text(v)) for k, v in cleaned.items))

    def text(self, text: str) -> str:
        """Return ``text`` with every known secret replaced by ``<redacted>``."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """Scrub every string inside a JSON-like value (dicts, lists, tuples)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """One line of ``exchanges.ndjson``: the exchange and the verdict drawn on it.

    Attributes
    ----------
    index : int
        1-based line number in the file.
    exchange : Exchange
        Request head (headers already redacted by the recorder) and the response with its body.
    findings : tuple of Finding
        The findings of the verdict.
    check_errors : tuple of str
        Checks that broke while judging the exchange (toolkit defects, not findings).
    request_body_file : str or None
        Where the recorder spooled the request body, if it kept it.
    """

    index: int
    exchange: Exchange
    findings: tuple[Finding, ...] = ()
    check_errors: tuple[str, ...] = ()
    request_body_file: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    judged: tuple[str, ...] = ()  # requirements of the checks that ran on the exchange (passed or not)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Return the error-level findings."""
        return tuple(f for f in self.findings if (f.severity or Severity.ERROR) is Severity.ERROR)

    @property
    def requirements(self) -> tuple[str, ...]:
        """Return the requirement IDs judged: those of the checks that ran, then those cited by findings."""
        return tuple(dict.fromkeys([*self.judged, *(f.requirement for f in self.findings)]))


def record_name(index: int, method: str, url: str, status: int | None) -> str:
    """Return a readable, unique item name for a recorded exchange: ``0003-POST-dicom-web/studies-200``.

    Parameters
    ----------
    index : int
        The line number, which makes the name unique.
    method, url : str
        The request line.
    status : int or None
        The response status (``None`` when there was no response).
    """
    path = urlsplit(url).path.strip("/") or "-"
    path = re.sub(r"[^\w./-]", "_", path)
    if len(path) > 80:
        path = path[:38] + "..." + path[-39:]
    return f"{index:04d}-{method.upper()}-{path}-{status if status is not None else 'none'}"


def _headers(raw: Any) -> Headers:
    if not isinstance(raw, list):
        return Headers()
    return Headers(tuple((str(pair[0]), str(pair[1])) for pair in raw if isinstance(pair, list) and len(pair) == 2))


def _spooled(path: Any, size: Any, offset: Any = None) -> Body:
    """Return the request body the recorder spooled, when it is still there.

    A record with ``body_offset`` names a byte range (the simulated Image Manager appends
    small bodies to one spool file); an older one names a whole file of the recorded size.
    """
    if not isinstance(path, str) or not path:
        return Body()
    try:
        if isinstance(offset, int) and isinstance(size, int):
            return Body.from_file(path, offset=offset, size=size)
        body = Body.from_file(path)
    except (OSError, ValueError):
        return Body()
    return body if size is None or body.size == size else Body()


def _record(index: int, data: dict[str, Any], source: str) -> RecordedExchange:
    verdict = data.get("verdict") or {}
    req = data.get("request") or {}
    resp = data.get("response")
    # the recorder redacts already; redact again so that an older or foreign file cannot leak
    request = Request(method=str(req.get("method") or verdict.get("method") or "?"),
                      url=str(req.get("url") or verdict.get("url") or ""),
                      headers=_headers(req.get("headers")).redacted(SECRET_HEADERS),
                      body=_spooled(req.get("body_file"), req.get("body_size"), req.get("body_offset")))
    response = None
    if isinstance(resp, dict):
        body = str(resp.get("body") or "").encode("utf-8")
        response = Response(status=int(resp.get("status") or verdict.get("status") or 0),
                            headers=_headers(resp.get("headers")).redacted(SECRET_HEADERS), body=Body.of(body))
    findings = tuple(Finding.from_dict(f) for f in verdict.get("findings") or () if isinstance(f, dict))
    exchange = Exchange(request=request, response=response, id=str(verdict.get("id") or f"record-{index}"),
                        started=float(verdict.get("received") or 0.0), source=f"{source}:{index}")
    return RecordedExchange(index=index, exchange=exchange, findings=findings,
                            check_errors=tuple(str(e) for e in verdict.get("check_errors") or ()),
                            request_body_file=req.get("body_file"), raw=data,
                            judged=tuple(str(r) for c in verdict.get("checks") or () if isinstance(c, dict)
                                         for r in c.get("requirements") or ()))


def _har_records(path: Path) -> Iterator[RecordedExchange]:
    """Read a proxy recording: each HAR entry with the verdict the proxy recorded in its ``_wic`` member."""
    from wic_conformance.dicomweb.har import iter_har_entries

    for number, entry, exchange in iter_har_entries(path, stow_only=False):
        raw_wic = entry.get("_wic")
        wic: dict[str, Any] = raw_wic if isinstance(raw_wic, dict) else {}
        request = exchange.request
        if request is not None:
            request = Request(request.method, request.url, request.headers.redacted(SECRET_HEADERS), request.body,
                              request.http_version)
        response = exchange.response
        if response is not None:
            response = Response(response.status, response.reason, response.headers.redacted(SECRET_HEADERS),
                                response.body, response.http_version)
        findings = tuple(Finding.from_dict(f) for f in wic.get("findings") or () if isinstance(f, dict))
        judged = tuple(str(r) for c in wic.get("results") or () if isinstance(c, dict)
                       and c.get("outcome") != "not_applicable" for r in c.get("requirements") or ())
        yield RecordedExchange(index=number, exchange=Exchange(request=request, response=response,
                                                                id=str(wic.get("id") or f"entry-{number}"),
                                                                source=exchange.source, truncated=exchange.truncated),
                               findings=findings, check_errors=tuple(str(e) for e in wic.get("check_errors") or ()),
                               raw=dict(entry), judged=judged)


def read_records(path: str | Path) -> Iterator[RecordedExchange]:
    """Read recorded exchanges: the Image Manager's ``exchanges.ndjson`` or the proxy's ``recording.har``.

    A folder is searched for ``exchanges.ndjson``, then ``recording.har``.

    Blank lines are skipped.

    Parameters
    ----------
    path : str or Path
        The ``exchanges.ndjson`` file, or the folder that holds it.

    Yields
    ------
    RecordedExchange
        One per line, in file order.

    Raises
    ------
    ValueError
        A line is not a JSON object (the message names the line).
    OSError
        The file cannot be read.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RECORDS_FILE if (p / RECORDS_FILE).is_file() or not (p / HAR_FILE).is_file() else p / HAR_FILE
    if p.suffix.lower() == ".har":
        yield from _har_records(p)
        return
    with open(p, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{number}: not a JSON line ({exc.msg})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{p}:{number}: expected a JSON object")
            yield _record(number, data, str(p))
