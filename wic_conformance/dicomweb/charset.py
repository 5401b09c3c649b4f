"""Whether text fits the character sets a Specific Character Set (0008,0005) declares.

The callers map the defined terms to Python codecs (each in its own way: the Image
Manager's conversion and the checks read the ASCII terms differently); this module
answers, for those codecs, whether the text can be encoded.

References
----------
PS3.3 C.12.1.1.2 (Specific Character Set); PS3.5 §6.1 and PS3.3 Tables C.12-2 to C.12-5
(defined terms).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["char_encodable", "text_encodable"]


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
