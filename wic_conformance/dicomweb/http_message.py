"""Read HTTP/1.1 messages stored as files (``.http``: start line, headers, blank line, body).

Used by ``wic-conformance validate`` to judge a captured STOW-RS request or
response offline.  The head may use CRLF or bare LF line ends (files are often
edited by hand); the body is taken byte for byte.  A ``Transfer-Encoding:
chunked`` body is de-chunked so that checks see the payload.

References
----------
RFC 9112 §2 (message format), §7.1 (chunked transfer coding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wic_conformance.dicomweb.exchange import Body, Headers, Request, Response
from wic_conformance.errors import UsageError

__all__ = ["HttpMessage", "dechunk", "parse_http_message"]

_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) (HTTP/\d(?:\.\d)?)$")
_STATUS_LINE = re.compile(rb"^(HTTP/\d(?:\.\d)?) (\d{3})(?: (.*))?$")


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """A parsed message file: exactly one of ``request`` and ``response`` is set."""

    request: Request | None = None
    response: Response | None = None


def dechunk(data: bytes) -> bytes:
    """Decode a chunked transfer-coded body.

    Raises
    ------
    UsageError
        The chunk framing is broken.
    """
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise UsageError("chunked body: missing chunk-size line")
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UsageError(f"chunked body: bad chunk size {size_text[:20]!r}") from None
        pos = eol + 2
        if size == 0:
            return bytes(out)
        if pos + size > len(data):
            raise UsageError("chunked body: truncated chunk")
        out += data[pos:pos + size]
        pos += size + 2


def parse_http_message(data: bytes, *, default_scheme: str = "http") -> HttpMessage:
    """Parse one HTTP/1.1 request or response stored as bytes.

    Raises
    ------
    UsageError
        The start line or header block cannot be read.
    """
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        head, body = data, b""
    else:
        head, body = data[: match.start()], data[match.end():]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    start = lines[0].strip()
    pairs: list[tuple[str, str]] = []
    for raw in lines[1:]:
        if not raw.strip():
            continue
        if raw[:1] in (b" ", b"\t") and pairs:  # obs-fold: join to the previous header
            prev_name, prev_value = pairs[-1]
            pairs[-1] = (prev_name, f"{prev_value} {raw.strip().decode('latin-1')}")
            continue
        raw_name, sep, raw_value = raw.partition(b":")
        if not sep or not raw_name.strip():
            raise UsageError(f"not an HTTP header line: {raw[:60]!r}")
        pairs.append((raw_name.strip().decode("latin-1"), raw_value.strip().decode("latin-1")))
    headers = Headers(tuple(pairs))
    if (headers.get("transfer-encoding") or "").lower().endswith("chunked"):
        body = dechunk(body)
    if m := _REQUEST_LINE.match(start):
        method, target, version = (g.decode("latin-1") for g in m.groups())
        if target.startswith("/"):
            host = headers.get("host")
            if not host:
                raise UsageError("request target is a path but there is no Host header")
            target = f"{default_scheme}://{host}{target}"
        return HttpMessage(request=Request(method, target, headers, Body.of(body), version))
    if m := _STATUS_LINE.match(start):
        version = m.group(1).decode("latin-1")
        reason = (m.group(3) or b"").decode("latin-1")
        return HttpMessage(response=Response(int(m.group(2)), reason, headers, Body.of(body), version))
    raise UsageError(f"not an HTTP request or status line: {start[:80]!r}")
