"""Read HAR 1.2 recordings into :class:`~wic_conformance.dicomweb.exchange.Exchange` values.

Bodies may be text, base64 (``encoding: "base64"``), or stored in a side file
named by the ``_file`` member (a path relative to the HAR file), which the
recording proxy uses for large bodies.

References
----------
HAR 1.2 specification (W3C Web Performance working group draft, 2012).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request, Response
from wic_conformance.errors import UsageError

__all__ = ["iter_har_entries", "iter_har_exchanges", "read_har"]


def _headers(items: Any) -> Headers:
    if not isinstance(items, list):
        return Headers()
    return Headers(tuple((str(h.get("name", "")), str(h.get("value", ""))) for h in items if isinstance(h, Mapping)))


def _body(node: Mapping[str, Any] | None, base: Path) -> Body:
    if not node:
        return Body()
    side = node.get("_file")
    if side:
        path = (base / str(side)).resolve()
        if not path.is_file():
            raise UsageError(f"HAR body side file not found: {side}")
        return Body.from_file(path)
    text = node.get("text")
    if text is None:
        return Body()
    if node.get("encoding") == "base64":
        try:
            return Body.of(base64.b64decode(text, validate=True))
        except ValueError:
            raise UsageError("HAR body is marked base64 but does not decode") from None
    return Body.of(str(text).encode("utf-8"))


def read_har(path: str | Path) -> dict[str, Any]:
    """Load and shape-check a HAR file.

    Raises
    ------
    UsageError
        Not JSON, or no ``log.entries`` list.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read HAR file {p}: {exc}") from None
    entries = data.get("log", {}).get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{p} is not a HAR file: no log.entries list")
    return data


def iter_har_exchanges(path: str | Path, *, stow_only: bool = True) -> Iterator[Exchange]:
    """Yield an :class:`Exchange` per HAR entry (only STOW-RS POSTs when ``stow_only``)."""
    for _number, _entry, exchange in iter_har_entries(path, stow_only=stow_only):
        yield exchange


def iter_har_entries(path: str | Path, *, stow_only: bool = True) -> Iterator[tuple[int, Mapping[str, Any], Exchange]]:
    """Yield (1-based entry number, raw entry, :class:`Exchange`) per HAR entry.

    The raw entry gives access to extension members such as ``_wic`` (verdicts recorded by the proxy).
    """
    p = Path(path)
    data = read_har(p)
    for number, entry in enumerate(data["log"]["entries"], start=1):
        if not isinstance(entry, Mapping):
            continue
        req = entry.get("request") or {}
        method = str(req.get("method", "")).upper()
        url = str(req.get("url", ""))
        if stow_only and not (method == "POST" and "/studies" in url):
            continue
        request = Request(method, url, _headers(req.get("headers")), _body(req.get("postData"), p.parent),
                          str(req.get("httpVersion") or "HTTP/1.1"))
        res = entry.get("response")
        response = None
        if isinstance(res, Mapping) and res.get("status"):
            response = Response(int(res["status"]), str(res.get("statusText", "")), _headers(res.get("headers")),
                                _body(res.get("content"), p.parent), str(res.get("httpVersion") or "HTTP/1.1"))
        yield number, entry, Exchange(request=request, response=response, source=f"{p}#entry{number}",
                                      elapsed=float(entry.get("time") or 0) / 1000.0,
                                      truncated=bool(entry.get("_truncated", False)))
