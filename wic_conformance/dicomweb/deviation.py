"""Deviation records and the explicit strictness policy shared by every parser.

Parsers never raise findings and never repair input silently: they return
:class:`Deviation` records, and checks in ``validate/`` turn those into findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Deviation", "Strictness"]


class Strictness(StrEnum):
    """How a parser treats input that breaks the grammar but can still be read.

    ``STRICT`` stops at the first such deviation (the rest is left unparsed);
    ``LENIENT`` reads on where it unambiguously can.  Both always record the deviation.
    """

    STRICT = "strict"
    LENIENT = "lenient"


@dataclass(frozen=True, slots=True)
class Deviation:
    """One way the input departs from the standard.

    Attributes
    ----------
    code : str
        Stable machine-readable kind, e.g. ``"multipart.missing_type"``; the
        checks map codes to catalogue requirement IDs.
    message : str
        What was seen, in plain words.
    location : str
        Where: ``"part 2 headers"``, ``"byte 1024"``, ``"/0/00100010/Value/0"``.
    fatal : bool
        Whether parsing could not continue past it.
    """

    code: str
    message: str
    location: str = ""
    fatal: bool = False
