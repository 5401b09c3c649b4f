"""Recorded exchanges for the check tests, and running one registered check on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

__all__ = ["Part", "check_context", "file_exchange", "multipart_request", "run_named_check", "stow_exchange"]

#: One multipart/related body part: its headers and its bytes.
Part = tuple[Mapping[str, str], bytes]


def stow_exchange(parts: Sequence[Part], *, url: str, root_type: str = mt.APPLICATION_DICOM_JSON,
                  method: str = "POST", content_type: str | None = None, body: bytes | None = None,
                  headers: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> Exchange:
    """Return a recorded STOW-RS request (no response) carrying ``parts``.

    Content-Type comes from the encoder unless ``content_type`` is given; Content-Length and
    ``Accept: application/dicom+json`` are added. ``body`` replaces the encoded parts (then
    only ``content_type`` sets a Content-Type), ``headers`` add or replace headers and
    ``drop`` removes them.
    """
    if body is None:
        ctype, body = encode_multipart(list(parts), root_type=root_type)
        content_type = content_type if content_type is not None else ctype
    all_headers: dict[str, str] = {}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers["Content-Length"] = str(len(body))
    all_headers["Accept"] = mt.APPLICATION_DICOM_JSON
    all_headers.update(headers or {})
    for name in drop:
        all_headers.pop(name, None)
    return Exchange(request=Request(method, url, Headers.of(all_headers), Body.of(body)))


def multipart_request(parts: Sequence[Part], *, url: str, root_type: str,
                      headers: Mapping[str, str] | None = None) -> Request:
    """Return a POST of ``parts`` as multipart/related: a Content-Type header, then ``headers``."""
    content_type, body = encode_multipart(list(parts), root_type=root_type)
    return Request("POST", url, Headers.of({"Content-Type": content_type, **(headers or {})}), Body.of(body))


def file_exchange(data: bytes, media_type: str, location: str) -> Exchange:
    """Return an exchange that holds one document judged as a file (no request, no response)."""
    return Exchange(documents=(Document(media_type, Body.of(data), DocumentRole.FILE, location),))


def check_context(name: str, options: Mapping[str, Any]) -> CheckContext:
    """Return a context that gives the check ``name`` these options (none: its defaults)."""
    return CheckContext(options={name: options} if options else None)


def run_named_check(name: str, exchange: Exchange, ctx: CheckContext | None = None) -> CheckResult:
    """Run the registered check ``name``; a toolkit error (outcome ERROR) fails the test."""
    result = run_check(REGISTRY[name], ctx or CheckContext(), exchange)
    assert result.outcome is not Outcome.ERROR, result.error
    return result
