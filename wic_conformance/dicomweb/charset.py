"""Whether text fits the character sets a Specific Character Set (0008,0005) declares.

:func:`codecs_for_terms` maps the defined terms to Python codecs (the ASCII terms to
``ascii``, the others through pydicom's table); :func:`text_encodable` answers, for
those codecs, whether the text can be encoded.

References
----------
PS3.3 C.12.1.1.2 (Specific Character Set); PS3.5 §6.1 and PS3.3 Tables C.12-2 to C.12-5
(defined terms).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.charset import python_encoding

__all__ = ["ASCII_TERMS", "char_encodable", "codecs_for_terms", "text_encodable"]

#: Defined terms (and the empty first value) that name the default repertoire, ISO 646 (ASCII).
ASCII_TERMS = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})


def codecs_for_terms(terms: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return (Python codecs, unknown terms) for the values of Specific Character Set.

    The default repertoire terms give ``ascii``; no term at all means the default repertoire.
    """
    codecs: list[str] = []
    unknown: list[str] = []
    for raw in terms:
        term = raw.strip()
        if term in ASCII_TERMS:
            codecs.append("ascii")
        elif term in python_encoding:
            codecs.append(python_encoding[term])
        else:
            unknown.append(term)
    return codecs or ["ascii"], unknown


def char_encodable(char: str, codecs: Sequence[str]) -> bool:
    """Return whether one of the Python ``codecs`` encodes ``char``; an unknown codec does not."""
    for codec in codecs:
        try:
            char.encode(codec)
        except (UnicodeEncodeError, LookupError):
            continue
        return True
    return False


def text_encodable(text: str, codecs: Sequence[str]) -> bool:
    """Return whether every non-ASCII character of ``text`` is encoded by one of ``codecs``.

    ASCII characters always fit: every DICOM character set holds the default repertoire.

    References
    ----------
    PS3.5 §6.1 (support of character repertoires).
    """
    return all(char.isascii() or char_encodable(char, codecs) for char in set(text))
