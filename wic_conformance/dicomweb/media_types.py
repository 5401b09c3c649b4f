"""Media types: parse, format and compare per RFC 9110 §8.3.1, with the DICOM media type constants.

Comparison is case-insensitive on type, subtype and parameter names, and on
parameter values only where the grammar says so (``type`` values are media
types themselves).  Quoting is recorded so that checks can insist on it
(PS3.18 §8.7.3.5.1 requires ``type`` to be quoted because it holds a ``/``).

References
----------
RFC 9110 §5.6.6 (parameters), §8.3.1 (media type); DICOM PS3.18 §8.7.3 (DICOM media types).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from wic_conformance.dicomweb.deviation import Deviation

__all__ = [
    "APPLICATION_DICOM",
    "APPLICATION_DICOM_JSON",
    "APPLICATION_DICOM_XML",
    "APPLICATION_FHIR_JSON",
    "APPLICATION_JSON",
    "APPLICATION_OCTET_STREAM",
    "APPLICATION_PDF",
    "BULK_MEDIA_TYPES",
    "IMAGE_GIF",
    "IMAGE_JP2",
    "IMAGE_JPEG",
    "IMAGE_JPX",
    "IMAGE_PNG",
    "METADATA_MEDIA_TYPES",
    "MULTIPART_RELATED",
    "MediaType",
    "TEXT_PLAIN",
    "VIDEO_MP4",
    "VIDEO_MPEG",
    "VIDEO_MPEG2",
    "VIDEO_QUICKTIME",
    "format_media_type",
    "parse_media_type",
]

APPLICATION_DICOM = "application/dicom"
APPLICATION_DICOM_JSON = "application/dicom+json"
APPLICATION_DICOM_XML = "application/dicom+xml"
APPLICATION_JSON = "application/json"  # legacy DICOM JSON type (PS3.18 2013-2015)
APPLICATION_FHIR_JSON = "application/fhir+json"
APPLICATION_OCTET_STREAM = "application/octet-stream"
APPLICATION_PDF = "application/pdf"
MULTIPART_RELATED = "multipart/related"
IMAGE_JPEG = "image/jpeg"
IMAGE_PNG = "image/png"
IMAGE_GIF = "image/gif"
IMAGE_JP2 = "image/jp2"
IMAGE_JPX = "image/jpx"
VIDEO_MP4 = "video/mp4"
VIDEO_MPEG2 = "video/mpeg2"
VIDEO_MPEG = "video/mpeg"  # older editions and dcm4che
VIDEO_QUICKTIME = "video/quicktime"
TEXT_PLAIN = "text/plain"

#: Root types of a STOW-RS request that carry metadata (PS3.18 §10.5.1.4).
METADATA_MEDIA_TYPES = frozenset({APPLICATION_DICOM_JSON, APPLICATION_DICOM_XML})

#: Bulk data media types an Image Manager accepts in a metadata+bulk data request.
BULK_MEDIA_TYPES = frozenset({
    IMAGE_JPEG, IMAGE_PNG, IMAGE_GIF, IMAGE_JP2, IMAGE_JPX,
    VIDEO_MP4, VIDEO_MPEG2, VIDEO_MPEG, VIDEO_QUICKTIME,
    APPLICATION_PDF, APPLICATION_OCTET_STREAM,
})

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type.

    Attributes
    ----------
    type, subtype : str
        Lower-cased.
    params : tuple of (name, value)
        Names lower-cased, values unquoted and unescaped, in the original order
        (duplicates kept, since a repeated parameter is itself a deviation).
    quoted : frozenset of str
        Names of the parameters whose value was a quoted-string.
    deviations : tuple of Deviation
        Syntax problems met while parsing.
    """

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()
    quoted: frozenset[str] = frozenset()
    deviations: tuple[Deviation, ...] = field(default=(), compare=False)

    @property
    def essence(self) -> str:
        """Return ``type/subtype`` without parameters."""
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        """Return the first value of parameter ``name`` (case-insensitive name), or ``None``."""
        lname = name.lower()
        for key, value in self.params:
            if key == lname:
                return value
        return None

    def param_all(self, name: str) -> list[str]:
        """Return every value given for parameter ``name``."""
        lname = name.lower()
        return [value for key, value in self.params if key == lname]

    @property
    def boundary(self) -> str | None:
        """Return the ``boundary`` parameter (case-sensitive value)."""
        return self.param("boundary")

    @property
    def root_type(self) -> MediaType | None:
        """Return the ``type`` parameter of a multipart type, parsed."""
        value = self.param("type")
        return parse_media_type(value) if value else None

    @property
    def transfer_syntax(self) -> str | None:
        """Return the ``transfer-syntax`` parameter."""
        return self.param("transfer-syntax")

    @property
    def charset(self) -> str | None:
        """Return the ``charset`` parameter, lower-cased."""
        value = self.param("charset")
        return value.lower() if value is not None else None

    def matches(self, other: str | MediaType) -> bool:
        """Return whether the essences are equal (``*`` wildcards allowed on either side)."""
        o = parse_media_type(other) if isinstance(other, str) else other
        type_ok = "*" in (self.type, o.type) or self.type == o.type
        sub_ok = "*" in (self.subtype, o.subtype) or self.subtype == o.subtype
        return type_ok and sub_ok

    def is_(self, essence: str) -> bool:
        """Return whether this media type's essence equals ``essence`` (case-insensitive, no wildcards)."""
        return self.essence == essence.lower()

    def __str__(self) -> str:
        return format_media_type(self.essence, dict(self.params))


def _needs_quoting(value: str) -> bool:
    return value == "" or any(ch not in _TCHARS for ch in value)


def format_media_type(essence: str, params: dict[str, str] | None = None) -> str:
    """Format a media type, quoting parameter values that are not tokens.

    >>> format_media_type("multipart/related", {"type": "application/dicom", "boundary": "b1"})
    'multipart/related; type="application/dicom"; boundary=b1'
    """
    out = essence
    for name, value in (params or {}).items():
        if _needs_quoting(value):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            out += f'; {name}="{escaped}"'
        else:
            out += f"; {name}={value}"
    return out


@functools.lru_cache(maxsize=1024)
def parse_media_type(text: str) -> MediaType:
    """Parse a Content-Type / Accept element into a :class:`MediaType`, recording deviations.

    Never raises: an unusable value yields the empty type ``"/"`` with a fatal deviation.
    The result is immutable, so the same text gets the same value from a bounded cache
    (a request's types are parsed by several checks).

    References
    ----------
    RFC 9110 §8.3.1: ``media-type = type "/" subtype parameters``.
    """
    deviations: list[Deviation] = []
    s = text.strip(_OWS)
    slash = s.find("/")
    semi = s.find(";")
    head = s if semi < 0 else s[:semi]
    if slash < 0 or (semi >= 0 and slash > semi):
        deviations.append(Deviation("media_type.syntax", f"no type/subtype in {text!r}", fatal=True))
        return MediaType("", "", deviations=tuple(deviations))
    mtype, _, subtype = head.strip(_OWS).partition("/")
    if not mtype or not subtype or any(c not in _TCHARS for c in mtype + subtype):
        deviations.append(Deviation("media_type.syntax", f"invalid type/subtype {head.strip()!r}"))
    params: list[tuple[str, str]] = []
    quoted: set[str] = set()
    i = len(head)
    n = len(s)
    while i < n:
        if s[i] != ";":
            deviations.append(Deviation("media_type.syntax", f"unexpected {s[i]!r} at offset {i}"))
            nxt = s.find(";", i)
            if nxt < 0:
                break
            i = nxt
        i += 1
        while i < n and s[i] in _OWS:
            i += 1
        if i >= n or s[i] == ";":
            continue  # empty parameter, allowed by RFC 9110
        eq = s.find("=", i)
        if eq < 0:
            deviations.append(Deviation("media_type.syntax", f"parameter without '=': {s[i:]!r}"))
            break
        name = s[i:eq].strip(_OWS).lower()
        if not name or any(c not in _TCHARS for c in name):
            deviations.append(Deviation("media_type.syntax", f"invalid parameter name {name!r}"))
        i = eq + 1
        if i < n and s[i] == '"':
            i += 1
            buf: list[str] = []
            closed = False
            while i < n:
                ch = s[i]
                if ch == "\\" and i + 1 < n:
                    buf.append(s[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    closed = True
                    i += 1
                    break
                buf.append(ch)
                i += 1
            if not closed:
                deviations.append(Deviation("media_type.unclosed_quote", f"unclosed quote in parameter {name!r}"))
            value = "".join(buf)
            quoted.add(name)
        else:
            end = s.find(";", i)
            end = n if end < 0 else end
            value = s[i:end].strip(_OWS)
            if any(c not in _TCHARS for c in value):
                deviations.append(Deviation(
                    "media_type.unquoted_value",
                    f"parameter {name}={value!r} holds characters that require a quoted-string",
                ))
            i = end
        while i < n and s[i] in _OWS:
            i += 1
        params.append((name, value))
    seen: set[str] = set()
    for name, _value in params:
        if name in seen:
            deviations.append(Deviation("media_type.repeated_param", f"parameter {name!r} given more than once"))
        seen.add(name)
    return MediaType(
        mtype.lower(), subtype.lower(), tuple(params), frozenset(quoted), tuple(deviations)
    )


def parse_accept(text: str) -> list[tuple[MediaType, float]]:
    """Parse an Accept header into (media type, q) pairs, highest preference first."""
    out: list[tuple[MediaType, float]] = []
    for element in split_header_list(text):
        if not element.strip():
            continue
        mt = parse_media_type(element)
        q_text = mt.param("q")
        try:
            q = float(q_text) if q_text is not None else 1.0
        except ValueError:
            q = 0.0
        params = tuple((k, v) for k, v in mt.params if k != "q")
        out.append((MediaType(mt.type, mt.subtype, params, mt.quoted, mt.deviations), q))
    return sorted(out, key=lambda pair: -pair[1])


def split_header_list(text: str) -> list[str]:
    """Split a list-valued header field on the commas that are outside quoted-strings.

    The elements are returned as written (not stripped; empty ones kept); a backslash
    inside a quoted-string escapes the next character.

    References
    ----------
    RFC 9110 §5.6.1 (lists), §5.6.4 (quoted-string).
    """
    parts: list[str] = []
    buf: list[str] = []
    in_quote = False
    escape = False
    for ch in text:
        if escape:
            buf.append(ch)
            escape = False
            continue
        if ch == "\\" and in_quote:
            buf.append(ch)
            escape = True
            continue
        if ch == '"':
            in_quote = not in_quote
        if ch == "," and not in_quote:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return parts


__all__ += ["parse_accept", "split_header_list"]
