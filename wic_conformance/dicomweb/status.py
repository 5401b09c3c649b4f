"""Status tables for STOW-RS: HTTP status codes and the Failure/Warning Reason codes of Annex I.

Laid out like pynetdicom's ``status.py``: each table maps a code to
``(category, description)``.  Reason codes that the standard defines as ranges
(A7xx, A9xx, Cxxx) are listed in :data:`FAILURE_REASON_RANGES` and understood by
:func:`classify_reason`.

References
----------
PS3.18 §10.5.3 (Table 10.5.3-1, Store Transaction status codes), §8.5 (Table 8.5-1, general status codes),
Annex I (I.2.1 Warning Reason, I.2.2 Failure Reason).
"""

from __future__ import annotations

__all__ = [
    "CATEGORY_FAILURE",
    "CATEGORY_SUCCESS",
    "CATEGORY_WARNING",
    "FAILURE_REASONS",
    "FAILURE_REASON_RANGES",
    "HTTP_STATUS",
    "STOW_STATUS",
    "WARNING_REASONS",
    "classify_reason",
    "format_reason",
]

CATEGORY_SUCCESS = "Success"
CATEGORY_WARNING = "Warning"
CATEGORY_FAILURE = "Failure"

#: HTTP status codes a STOW-RS origin server may answer, ``{code: (category, description)}``.
#: Table 10.5.3-1 defines 200, 202, 400, 409 and 415 for the Store transaction; the rest
#: come from the general Table 8.5-1.
HTTP_STATUS: dict[int, tuple[str, str]] = {
    200: (CATEGORY_SUCCESS, "OK: the origin server successfully stored all Instances"),
    202: (CATEGORY_WARNING, "Accepted: some Instances were stored; warnings or failures for others "
                            "are in the Store Instances Response"),
    400: (CATEGORY_FAILURE, "Bad Request: no Instances were stored because of bad syntax in the request"),
    401: (CATEGORY_FAILURE, "Unauthorized: authentication is required (the response carries "
                            "WWW-Authenticate)"),
    403: (CATEGORY_FAILURE, "Forbidden: the user agent is not authorized to store"),
    404: (CATEGORY_FAILURE, "Not Found: the target resource does not exist"),
    406: (CATEGORY_FAILURE, "Not Acceptable: no acceptable media type for the response (e.g. no Accept)"),
    409: (CATEGORY_FAILURE, "Conflict: the request was well formed but no Instances were stored "
                            "(e.g. SOP Class not supported, Study Instance UID mismatch)"),
    411: (CATEGORY_FAILURE, "Length Required: the request has neither Content-Length nor a transfer coding"),
    413: (CATEGORY_FAILURE, "Payload Too Large: the request is larger than the origin server will process"),
    415: (CATEGORY_FAILURE, "Unsupported Media Type: the Content-Type of the request is not supported"),
    500: (CATEGORY_FAILURE, "Internal Server Error"),
    501: (CATEGORY_FAILURE, "Not Implemented (§8.5 also names it for SOP Class Not Supported; "
                            "§10.5.3 uses 409 for that)"),
    503: (CATEGORY_FAILURE, "Service Unavailable: the origin server is busy or down"),
}

#: The codes Table 10.5.3-1 defines for the Store transaction itself.
STOW_STATUS = frozenset({200, 202, 400, 409, 415})

#: Single Failure Reason values of Annex I.2.2, ``{code: (category, description)}``.
FAILURE_REASONS: dict[int, tuple[str, str]] = {
    0xA700: (CATEGORY_FAILURE, "Refused: Out of Resources"),
    0xA900: (CATEGORY_FAILURE, "Error: Data Set does not match SOP Class"),
    0xC000: (CATEGORY_FAILURE, "Error: Cannot understand"),
    0xC122: (CATEGORY_FAILURE, "Referenced Transfer Syntax not supported"),
    0x0110: (CATEGORY_FAILURE, "Processing failure"),
    0x0122: (CATEGORY_FAILURE, "Referenced SOP Class not supported"),
}

#: Failure Reason ranges of Annex I.2.2, ``(first, last, category, description)``, both ends included.
FAILURE_REASON_RANGES: tuple[tuple[int, int, str, str], ...] = (
    (0xA700, 0xA7FF, CATEGORY_FAILURE, "Refused: Out of Resources"),
    (0xA900, 0xA9FF, CATEGORY_FAILURE, "Error: Data Set does not match SOP Class"),
    (0xC000, 0xCFFF, CATEGORY_FAILURE, "Error: Cannot understand"),
)

#: Warning Reason values of Annex I.2.1, ``{code: (category, description)}``.
WARNING_REASONS: dict[int, tuple[str, str]] = {
    0xB000: (CATEGORY_WARNING, "Coercion of Data Elements"),
    0xB006: (CATEGORY_WARNING, "Elements Discarded"),
    0xB007: (CATEGORY_WARNING, "Data Set does not match SOP Class"),
}


def classify_reason(code: int) -> tuple[str, str] | None:
    """Return ``(category, description)`` for a Failure or Warning Reason, or ``None`` when unknown.

    Exact entries win over ranges, so ``0xC122`` is "Referenced Transfer Syntax
    not supported" while ``0xC123`` falls in the Cxxx "Cannot understand" range.

    Parameters
    ----------
    code : int
        The reason code (the US value, e.g. ``290`` for 0x0122).

    Returns
    -------
    tuple of (str, str) or None
        ``("Failure", ...)`` or ``("Warning", ...)``; ``None`` for codes outside every
        table and range (implementation-specific codes belong in the Conformance Statement).

    References
    ----------
    PS3.18 Annex I.2.1, I.2.2.

    Examples
    --------
    >>> classify_reason(0xA701)
    ('Failure', 'Refused: Out of Resources')
    >>> classify_reason(45056)
    ('Warning', 'Coercion of Data Elements')
    >>> classify_reason(1) is None
    True
    """
    if code in FAILURE_REASONS:
        return FAILURE_REASONS[code]
    if code in WARNING_REASONS:
        return WARNING_REASONS[code]
    for first, last, category, description in FAILURE_REASON_RANGES:
        if first <= code <= last:
            return category, description
    return None


def format_reason(code: int) -> str:
    """Return ``"0xA700 (42752)"``: the hexadecimal form the standard uses, with the encoded number."""
    return f"0x{code:04X} ({code})"
