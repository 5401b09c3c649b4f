"""Bitstream probes for the bulk data media types an Image Manager converts.

Each ``probe_*`` function reads only the headers it needs and returns a frozen
value object describing the bitstream.  The probes are pure (stdlib only, no
codec) and bounds-checked: on input that is not, or not enough of, the expected
format they raise :class:`MediaProbeError` (a :class:`ValueError`) and nothing
else.  The ``*_transfer_syntax`` functions map a probe result to the DICOM
Transfer Syntax that can carry the bitstream unchanged; the
``*_transfer_syntaxes`` functions return every Transfer Syntax that describes it.
:func:`guess_media_type` never raises: it returns ``None`` for unknown bytes.

References
----------
DICOM PS3.18 §10.5.2 and Table 10.5.2-1 (bulk data media types and their conversion).
DICOM PS3.5 §8.2 (transfer syntaxes for encapsulated pixel data) and §A.4 (encapsulation).
ISO/IEC 10918-1 Annex B (JPEG markers); ISO/IEC 14495-1 (JPEG-LS); ISO/IEC 15444-1 Annexes A and I
(JPEG 2000 codestream and JP2 boxes); ISO/IEC 15948 / W3C PNG; GIF89a specification;
ISO/IEC 14496-12 (ISO base media file format) and 14496-15 (AVC and HEVC configuration records);
ISO/IEC 13818-2 §6.2.2 (MPEG-2 video sequence header and extension).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body

__all__ = [
    "GifInfo",
    "J2kInfo",
    "JpegInfo",
    "MediaProbeError",
    "Mp4Info",
    "Mpeg2Info",
    "PngInfo",
    "TS_DEFLATED",
    "TS_EXPLICIT_LE",
    "TS_IMPLICIT_LE",
    "TS_RLE",
    "UNCOMPRESSED_OR_LOSSLESS",
    "guess_media_type",
    "jpeg_photometric_interpretation",
    "jpeg_transfer_syntax",
    "jpeg_transfer_syntaxes",
    "mp4_transfer_syntax",
    "mp4_transfer_syntaxes",
    "mpeg2_transfer_syntax",
    "mpeg2_transfer_syntaxes",
    "probe_gif",
    "probe_j2k",
    "probe_jpeg",
    "probe_mp4",
    "probe_mpeg2",
    "probe_png",
]


class MediaProbeError(ValueError):
    """The bytes are not, or not enough of, the bitstream the probe expects.

    This is the only exception a probe raises for bad input (an I/O error of a
    caller-supplied file object is passed through unchanged).
    """


# -- Transfer Syntax UIDs (PS3.5 Table A-1 / PS3.6 Annex A) ------------------------------------------

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_DEFLATED = "1.2.840.10008.1.2.1.99"
TS_RLE = "1.2.840.10008.1.2.5"
_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
_JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
_JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
_JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
_JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
_J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
_J2K_PART2_LOSSLESS = "1.2.840.10008.1.2.4.92"
_HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
_HTJ2K_RPCL_LOSSLESS = "1.2.840.10008.1.2.4.202"
_MPEG2_MPML = "1.2.840.10008.1.2.4.100"
_MPEG2_MPHL = "1.2.840.10008.1.2.4.101"
_AVC_HP41 = "1.2.840.10008.1.2.4.102"
_AVC_HP41_BD = "1.2.840.10008.1.2.4.103"
_AVC_HP42_2D = "1.2.840.10008.1.2.4.104"
_HEVC_MAIN = "1.2.840.10008.1.2.4.107"
_HEVC_MAIN10 = "1.2.840.10008.1.2.4.108"

#: Transfer syntaxes that store pixels without loss: native encodings and lossless-only compression.
#: JPEG 2000 .91 and HTJ2K .203 ("lossless or lossy") are deliberately absent.
UNCOMPRESSED_OR_LOSSLESS = frozenset({
    TS_IMPLICIT_LE, TS_EXPLICIT_LE, TS_DEFLATED, TS_RLE,
    _JPEG_LOSSLESS_SV1, _JPEG_LOSSLESS, _JPEG_LS_LOSSLESS, _J2K_LOSSLESS, _J2K_PART2_LOSSLESS,
    _HTJ2K_LOSSLESS, _HTJ2K_RPCL_LOSSLESS,
})


def _fragmentable(uids: set[str]) -> frozenset[str]:
    """Add the "Fragmentable" ``.1`` variants that PS3.5 editions from 2022 on define for video."""
    return frozenset(uids | {f"{uid}.1" for uid in uids})


def _be16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "big")


def _be32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 4], "big")


# =====================================================================================================
# JPEG (ISO/IEC 10918-1) and JPEG-LS (ISO/IEC 14495-1)
# =====================================================================================================

_SOF_PROCESS = {
    0xC0: "baseline sequential DCT, Huffman (Process 1)",
    0xC1: "extended sequential DCT, Huffman (Processes 2 and 4)",
    0xC2: "progressive DCT, Huffman (Processes 10 and 12)",
    0xC3: "lossless, Huffman (Process 14)",
    0xC5: "differential sequential DCT, Huffman (hierarchical)",
    0xC6: "differential progressive DCT, Huffman (hierarchical)",
    0xC7: "differential lossless, Huffman (hierarchical)",
    0xC9: "extended sequential DCT, arithmetic",
    0xCA: "progressive DCT, arithmetic",
    0xCB: "lossless, arithmetic",
    0xCD: "differential sequential DCT, arithmetic (hierarchical)",
    0xCE: "differential progressive DCT, arithmetic (hierarchical)",
    0xCF: "differential lossless, arithmetic (hierarchical)",
    0xF7: "JPEG-LS",
}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_RGB_COMPONENT_IDS = (0x52, 0x47, 0x42)  # "R", "G", "B"
_MAX_JPEG_SEGMENTS = 10_000


@dataclass(frozen=True, slots=True)
class JpegInfo:
    """What the frame header and the first scan header of a JPEG or JPEG-LS stream say.

    Attributes
    ----------
    sof : int
        The start-of-frame marker code: 0xC0..0xCF (JPEG) or 0xF7 (JPEG-LS SOF55).
    process : str
        Human-readable coding process for ``sof``.
    precision : int
        Sample precision P in bits.
    rows, columns : int
        Number of lines Y (0 when a DNL segment defines it) and samples per line X.
    components : int
        Number of image components Nf.
    component_ids : tuple of int
        The component identifiers Ci, in frame order.
    sampling : tuple of (int, int)
        Horizontal and vertical sampling factors per component.
    predictor : int or None
        Lossless processes: the predictor selection value (Ss of the first scan).
    point_transform : int or None
        Lossless processes and JPEG-LS: Al of the first scan.
    near : int or None
        JPEG-LS: the NEAR parameter of the first scan (0 = lossless).
    jfif : bool
        Whether an APP0 "JFIF" segment precedes the frame.
    adobe_transform : int or None
        The colour transform flag of an APP14 "Adobe" segment (0 none, 1 YCbCr, 2 YCCK).
    """

    sof: int
    process: str
    precision: int
    rows: int
    columns: int
    components: int
    component_ids: tuple[int, ...]
    sampling: tuple[tuple[int, int], ...]
    predictor: int | None = None
    point_transform: int | None = None
    near: int | None = None
    jfif: bool = False
    adobe_transform: int | None = None

    @property
    def jpeg_ls(self) -> bool:
        """Return whether the stream is JPEG-LS (SOF55)."""
        return self.sof == 0xF7

    @property
    def lossless(self) -> bool:
        """Return whether the coding process is lossless (JPEG lossless, or JPEG-LS with NEAR 0)."""
        if self.jpeg_ls:
            return self.near == 0
        return self.sof in (0xC3, 0xC7, 0xCB, 0xCF)

    @property
    def progressive(self) -> bool:
        """Return whether the coding process is progressive."""
        return self.sof in (0xC2, 0xC6, 0xCA, 0xCE)

    @property
    def hierarchical(self) -> bool:
        """Return whether the frame is a differential (hierarchical) frame."""
        return self.sof in (0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF)

    @property
    def arithmetic(self) -> bool:
        """Return whether entropy coding is arithmetic."""
        return 0xC9 <= self.sof <= 0xCF

    @property
    def color_transform(self) -> str | None:
        """Return ``"YCbCr"``, ``"RGB"`` or ``None`` (unknown) for a three-component DCT stream.

        An Adobe APP14 transform flag decides; otherwise JFIF implies YCbCr;
        otherwise component identifiers "R", "G", "B" imply RGB and 1, 2, 3 the
        usual libjpeg default, YCbCr.  Lossless and JPEG-LS streams give ``None``
        unless an Adobe segment says otherwise.
        """
        if self.components != 3:
            return None
        if self.adobe_transform is not None:
            return {0: "RGB", 1: "YCbCr"}.get(self.adobe_transform)
        if self.lossless or self.jpeg_ls:
            return None
        if self.jfif:
            return "YCbCr"
        if self.component_ids == _RGB_COMPONENT_IDS:
            return "RGB"
        if self.component_ids == (1, 2, 3):
            return "YCbCr"
        return None


def probe_jpeg(data: bytes | bytearray | memoryview) -> JpegInfo:
    """Read the markers of a JPEG or JPEG-LS stream up to its first scan header.

    Parameters
    ----------
    data : bytes-like
        The stream, starting with SOI (FFD8).  Only the bytes up to the first SOS are read.

    Returns
    -------
    JpegInfo

    Raises
    ------
    MediaProbeError
        No SOI, a malformed or truncated segment, no frame header before the first scan.

    References
    ----------
    ISO/IEC 10918-1 §B.1.1.3 (marker assignments), §B.2.2 (frame header), §B.2.3 (scan header);
    ISO/IEC 14495-1 §C.2 (JPEG-LS SOF55 and scan header); Adobe Technical Note 5116 (APP14).
    """
    buf = bytes(data)
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        raise MediaProbeError("not a JPEG stream: it does not start with SOI (FFD8)")
    pos = 2
    frame: tuple[int, bytes] | None = None
    jfif = False
    adobe: int | None = None
    for _ in range(_MAX_JPEG_SEGMENTS):
        if pos >= n:
            raise MediaProbeError("JPEG stream ends before its first scan (SOS)")
        if buf[pos] != 0xFF:
            raise MediaProbeError(f"JPEG: expected a marker at byte {pos}, found 0x{buf[pos]:02X}")
        while pos < n and buf[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise MediaProbeError("JPEG stream ends inside a marker")
        marker = buf[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0x00, 0xD8, 0xD9):
            raise MediaProbeError(f"JPEG: unexpected marker 0xFF{marker:02X} at byte {pos - 2}")
        if pos + 2 > n:
            raise MediaProbeError(f"JPEG: segment 0xFF{marker:02X} at byte {pos - 2} is truncated")
        length = _be16(buf, pos)
        if length < 2 or pos + length > n:
            raise MediaProbeError(
                f"JPEG: segment 0xFF{marker:02X} at byte {pos - 2} has a bad length {length}")
        seg = buf[pos + 2:pos + length]
        pos += length
        if marker == 0xE0 and seg.startswith(b"JFIF\x00"):
            jfif = True
        elif marker == 0xEE and seg.startswith(b"Adobe") and len(seg) >= 12:
            adobe = seg[11]
        elif marker in _SOF_PROCESS:
            if frame is not None:
                raise MediaProbeError("JPEG: a second frame header before the first scan")
            frame = (marker, seg)
        elif marker == 0xDA:
            if frame is None:
                raise MediaProbeError("JPEG: scan header (SOS) before any frame header (SOF)")
            return _jpeg_info(frame[0], frame[1], seg, jfif=jfif, adobe=adobe)
    raise MediaProbeError("JPEG: too many segments before the first scan")


def _jpeg_info(sof: int, frame: bytes, scan: bytes, *, jfif: bool, adobe: int | None) -> JpegInfo:
    if len(frame) < 6:
        raise MediaProbeError("JPEG: frame header too short")
    precision, rows, columns, nf = frame[0], _be16(frame, 1), _be16(frame, 3), frame[5]
    if nf == 0 or len(frame) < 6 + 3 * nf:
        raise MediaProbeError(f"JPEG: frame header declares {nf} components but is {len(frame)} bytes long")
    if columns == 0:
        raise MediaProbeError("JPEG: frame header has zero samples per line")
    ids = tuple(frame[6 + 3 * i] for i in range(nf))
    sampling = tuple((frame[7 + 3 * i] >> 4, frame[7 + 3 * i] & 0x0F) for i in range(nf))
    if not scan:
        raise MediaProbeError("JPEG: empty scan header")
    ns = scan[0]
    if ns == 0 or len(scan) < 1 + 2 * ns + 3:
        raise MediaProbeError("JPEG: scan header too short")
    ss, al = scan[1 + 2 * ns], scan[3 + 2 * ns] & 0x0F
    lossless_dct = sof in (0xC3, 0xC7, 0xCB, 0xCF)
    return JpegInfo(
        sof=sof, process=_SOF_PROCESS[sof], precision=precision, rows=rows, columns=columns,
        components=nf, component_ids=ids, sampling=sampling,
        predictor=ss if lossless_dct else None,
        point_transform=al if (lossless_dct or sof == 0xF7) else None,
        near=ss if sof == 0xF7 else None,
        jfif=jfif, adobe_transform=adobe,
    )


def jpeg_transfer_syntax(info: JpegInfo) -> str | None:
    """Return the Transfer Syntax that stores this JPEG bitstream unchanged, or ``None``.

    SOF0 → 1.2.840.10008.1.2.4.50; SOF1 → .51; SOF3 with predictor 1 → .70, other
    predictors → .57; JPEG-LS with NEAR 0 → .80, otherwise .81.  Progressive,
    hierarchical and arithmetic processes only have retired transfer syntaxes:
    ``None`` (the Image Manager must transcode without loss or reject).

    References
    ----------
    PS3.5 §8.2.1, §A.4.1 and Table A-1; PS3.18 Table 8.7.3-5 (default TS of image/jpeg).
    """
    candidates = jpeg_transfer_syntaxes(info)
    for uid in (_JPEG_BASELINE, _JPEG_EXTENDED, _JPEG_LOSSLESS_SV1, _JPEG_LOSSLESS, _JPEG_LS_LOSSLESS,
                _JPEG_LS_NEAR):
        if uid in candidates:
            return uid
    return None


def jpeg_transfer_syntaxes(info: JpegInfo) -> frozenset[str]:
    """Return every (non-retired) Transfer Syntax whose decoders accept this bitstream unchanged.

    Beyond :func:`jpeg_transfer_syntax`: a baseline stream is also valid under
    JPEG Extended (.51, a superset of Process 1), a predictor-1 lossless stream
    under .57 (any predictor), and a NEAR 0 JPEG-LS stream under .81.
    """
    if info.sof == 0xC0:
        return frozenset({_JPEG_BASELINE, _JPEG_EXTENDED}) if info.precision == 8 else frozenset()
    if info.sof == 0xC1:
        return frozenset({_JPEG_EXTENDED}) if info.precision in (8, 12) else frozenset()
    if info.sof == 0xC3 and info.predictor is not None and 2 <= info.precision <= 16:
        if info.predictor == 1:
            return frozenset({_JPEG_LOSSLESS_SV1, _JPEG_LOSSLESS})
        if 2 <= info.predictor <= 7:
            return frozenset({_JPEG_LOSSLESS})
        return frozenset()
    if info.jpeg_ls and 2 <= info.precision <= 16:
        return frozenset({_JPEG_LS_LOSSLESS, _JPEG_LS_NEAR}) if info.near == 0 else frozenset({_JPEG_LS_NEAR})
    return frozenset()


def jpeg_photometric_interpretation(info: JpegInfo, *, by_sampling: bool = False) -> str:
    """Return the Photometric Interpretation of the pixels a JPEG stream of 1 or 3 components holds.

    One component is MONOCHROME2.  Three components are read one of two ways:

    - by default (the Image Manager's conversion), the colour transform the stream signals
      (:attr:`JpegInfo.color_transform`) decides: an RGB-coded stream is RGB; any other lossy
      stream is YBR_FULL_422 whether or not its chrominance is subsampled (dciodvfy rejects
      YBR_FULL with the lossy JPEG transfer syntaxes); a lossless stream is YBR_FULL when an
      Adobe segment says YCbCr, RGB otherwise.
    - with ``by_sampling`` (the sample-instance builders), a lossless stream, an Adobe transform
      flag 0 or component identifiers "R", "G", "B" mean RGB; any other stream is YCbCr, and
      YBR_FULL_422 only when its components are sampled differently (YBR_FULL when not).  JFIF
      markers are not consulted.

    Parameters
    ----------
    info : JpegInfo
    by_sampling : bool
        Use the second reading.

    References
    ----------
    PS3.5 §8.2.1 (JPEG image compression and Photometric Interpretation); PS3.3 C.7.6.3.1.2.
    """
    if info.components == 1:
        return "MONOCHROME2"
    if by_sampling:
        if info.lossless or info.adobe_transform == 0 or info.component_ids == _RGB_COMPONENT_IDS:
            return "RGB"
        return "YBR_FULL_422" if len(set(info.sampling)) > 1 else "YBR_FULL"
    transform = info.color_transform
    if transform == "RGB":
        return "RGB"
    if not info.lossless:
        return "YBR_FULL_422"
    return "YBR_FULL" if transform == "YCbCr" else "RGB"


# =====================================================================================================
# JPEG 2000 (ISO/IEC 15444-1)
# =====================================================================================================

_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"


@dataclass(frozen=True, slots=True)
class J2kInfo:
    """The image and coding-style header of a JPEG 2000 codestream (raw or inside a JP2/JPX file).

    Attributes
    ----------
    rows, columns : int
        Image size from SIZ (Ysiz - YOsiz, Xsiz - XOsiz).
    components : int
        Csiz.
    precision : int
        Bit depth of the first component.
    signed : bool
        Whether the first component is signed.
    reversible : bool or None
        Whether COD selects the reversible 5-3 wavelet (``None`` without a COD segment).
    mct : bool or None
        Whether COD enables the multiple component transform.
    wrapper : str
        ``"j2k"`` (raw codestream), ``"jp2"`` or ``"jpx"`` (from the ftyp brand).
    codestream_offset, codestream_length : int
        Where the codestream lies in the probed bytes (the contents of the ``jp2c`` box).
    """

    rows: int
    columns: int
    components: int
    precision: int
    signed: bool
    reversible: bool | None
    mct: bool | None
    wrapper: str
    codestream_offset: int
    codestream_length: int


def probe_j2k(data: bytes | bytearray | memoryview) -> J2kInfo:
    """Read SIZ and COD of a JPEG 2000 codestream, unwrapping a JP2/JPX file when present.

    Raises
    ------
    MediaProbeError
        Neither a JP2 signature nor a codestream starting with SOC/SIZ; truncated headers.

    References
    ----------
    ISO/IEC 15444-1 §A.5.1 (SIZ), §A.6.1 (COD), §I.5 (JP2 boxes); PS3.5 §8.2.4 (the JP2 header
    is not part of the encapsulated stream).
    """
    buf = bytes(data)
    wrapper, start, length = "j2k", 0, len(buf)
    if buf.startswith(_JP2_SIGNATURE):
        wrapper = "jp2"
        found = False
        for typ, payload, end in _iter_boxes_bytes(buf, 0, len(buf)):
            if typ == "ftyp" and end - payload >= 4 and buf[payload:payload + 4] == b"jpx ":
                wrapper = "jpx"
            if typ == "jp2c":
                start, length, found = payload, end - payload, True
                break
        if not found:
            raise MediaProbeError("JP2: no contiguous codestream box (jp2c)")
    cs = buf[start:start + length]
    if not cs.startswith(_J2K_SOC_SIZ):
        raise MediaProbeError("not a JPEG 2000 codestream: no SOC followed by SIZ")
    if len(cs) < 6:
        raise MediaProbeError("JPEG 2000: truncated SIZ")
    lsiz = _be16(cs, 4)
    if lsiz < 41 or 4 + lsiz > len(cs):
        raise MediaProbeError("JPEG 2000: bad SIZ length")
    siz = cs[6:4 + lsiz]
    xsiz, ysiz, xo, yo = _be32(siz, 2), _be32(siz, 6), _be32(siz, 10), _be32(siz, 14)
    csiz = _be16(siz, 34)
    if csiz == 0 or len(siz) < 36 + 3 * csiz or xsiz <= xo or ysiz <= yo:
        raise MediaProbeError("JPEG 2000: inconsistent SIZ")
    ssiz = siz[36]
    reversible: bool | None = None
    mct: bool | None = None
    pos = 4 + lsiz
    for _ in range(_MAX_JPEG_SEGMENTS):  # main header markers until SOT/SOD/EOC
        if pos + 4 > len(cs) or cs[pos] != 0xFF:
            break
        marker = cs[pos + 1]
        if marker in (0x90, 0x93, 0xD9):
            break
        seg_len = _be16(cs, pos + 2)
        if seg_len < 2 or pos + 2 + seg_len > len(cs):
            break
        if marker == 0x52 and seg_len >= 12:  # COD
            seg = cs[pos + 4:pos + 2 + seg_len]
            mct = bool(seg[4])
            reversible = seg[9] == 1
        pos += 2 + seg_len
    return J2kInfo(rows=ysiz - yo, columns=xsiz - xo, components=csiz, precision=(ssiz & 0x7F) + 1,
                   signed=bool(ssiz & 0x80), reversible=reversible, mct=mct, wrapper=wrapper,
                   codestream_offset=start, codestream_length=length)


# =====================================================================================================
# PNG and GIF
# =====================================================================================================

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_MAX_PNG_CHUNKS = 100_000


@dataclass(frozen=True, slots=True)
class PngInfo:
    """The IHDR of a PNG image plus what the chunks before the image data add.

    Attributes
    ----------
    width, height : int
        Image size.
    bit_depth, color_type, interlace : int
        IHDR fields (colour type 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
    palette : bool
        Colour type 3 (indexed colour).
    alpha : bool
        An alpha channel (colour type 4 or 6) or a tRNS transparency chunk.
    frames : int
        1, or ``num_frames`` of an APNG acTL chunk.
    """

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int
    palette: bool
    alpha: bool
    frames: int = 1

    @property
    def samples_per_pixel(self) -> int:
        """Return the DICOM Samples per Pixel after conversion: 1 for grey, 3 otherwise (alpha dropped).

        A palette image converts to RGB (3); PS3.18 Table 10.5.2-1 also lets it
        stay PALETTE COLOR (1), which the checks allow separately.
        """
        return 1 if self.color_type in (0, 4) else 3


def probe_png(data: bytes | bytearray | memoryview) -> PngInfo:
    """Read the IHDR and the ancillary chunks before the first IDAT of a PNG image.

    Raises
    ------
    MediaProbeError
        No PNG signature, no valid IHDR as first chunk.

    References
    ----------
    W3C PNG (Third Edition) §5.3 (chunk layout), §11.2.1 (IHDR), §11.3.1.3 (tRNS); APNG acTL.
    """
    buf = bytes(data)
    if not buf.startswith(_PNG_SIGNATURE):
        raise MediaProbeError("not a PNG image: no PNG signature")
    if len(buf) < 33 or buf[12:16] != b"IHDR" or _be32(buf, 8) != 13:
        raise MediaProbeError("PNG: the first chunk is not a 13-byte IHDR")
    width, height = _be32(buf, 16), _be32(buf, 20)
    depth, ctype, compression, filt, interlace = buf[24], buf[25], buf[26], buf[27], buf[28]
    if width == 0 or height == 0 or width > 0x7FFFFFFF or height > 0x7FFFFFFF:
        raise MediaProbeError(f"PNG: invalid image size {width}x{height}")
    if depth not in _PNG_DEPTHS.get(ctype, ()):
        raise MediaProbeError(f"PNG: invalid bit depth {depth} for colour type {ctype}")
    if compression != 0 or filt != 0 or interlace not in (0, 1):
        raise MediaProbeError("PNG: unknown compression, filter or interlace method")
    alpha = ctype in (4, 6)
    frames = 1
    pos = 33
    for _ in range(_MAX_PNG_CHUNKS):
        if pos + 8 > len(buf):
            break
        length, name = _be32(buf, pos), buf[pos + 4:pos + 8]
        if length > 0x7FFFFFFF or pos + 12 + length > len(buf):
            break
        if name in (b"IDAT", b"IEND"):
            break
        if name == b"tRNS":
            alpha = True
        elif name == b"acTL" and length >= 8:
            frames = max(1, _be32(buf, pos + 8))
        pos += 12 + length
    return PngInfo(width=width, height=height, bit_depth=depth, color_type=ctype, interlace=interlace,
                   palette=ctype == 3, alpha=alpha, frames=frames)


@dataclass(frozen=True, slots=True)
class GifInfo:
    """The logical screen and the frames of a GIF image.

    Attributes
    ----------
    version : str
        ``"87a"`` or ``"89a"``.
    width, height : int
        Logical screen size.
    frames : int
        Number of image descriptors.
    delays : tuple of int
        Per frame, the Graphic Control Extension delay in hundredths of a second (0 when none).
    transparent : bool
        Whether any frame declares a transparent colour index.
    """

    version: str
    width: int
    height: int
    frames: int
    delays: tuple[int, ...] = ()
    transparent: bool = False


def probe_gif(data: bytes | bytearray | memoryview) -> GifInfo:
    """Walk the blocks of a GIF image and count its frames.

    Raises
    ------
    MediaProbeError
        No GIF signature, an unknown block, a truncated block or no frame at all.

    References
    ----------
    GIF89a specification §17-§27 (header, logical screen descriptor, image descriptor,
    graphic control extension, trailer).
    """
    buf = bytes(data)
    if len(buf) < 13 or buf[:3] != b"GIF" or buf[3:6] not in (b"87a", b"89a"):
        raise MediaProbeError("not a GIF image: no GIF87a/GIF89a signature")
    width, height = int.from_bytes(buf[6:8], "little"), int.from_bytes(buf[8:10], "little")
    packed = buf[10]
    pos = 13
    if packed & 0x80:
        pos += 3 * (2 << (packed & 0x07))
    frames = 0
    delays: list[int] = []
    transparent = False
    pending_delay = 0
    n = len(buf)

    def skip_sub_blocks(at: int) -> int:
        while True:
            if at >= n:
                raise MediaProbeError("GIF: truncated data sub-blocks")
            size = buf[at]
            at += 1
            if size == 0:
                return at
            at += size

    while True:
        if pos > n:
            raise MediaProbeError("GIF: truncated colour table")
        if pos == n:
            break  # tolerated: no trailer
        block = buf[pos]
        if block == 0x3B:
            break
        if block == 0x21:
            if pos + 2 > n:
                raise MediaProbeError("GIF: truncated extension")
            label = buf[pos + 1]
            if label == 0xF9 and pos + 7 < n and buf[pos + 2] == 4:
                pending_delay = int.from_bytes(buf[pos + 4:pos + 6], "little")
                transparent = transparent or bool(buf[pos + 3] & 0x01)
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:
            if pos + 10 > n:
                raise MediaProbeError("GIF: truncated image descriptor")
            local = buf[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 << (local & 0x07))
            pos += 1  # LZW minimum code size
            if pos > n:
                raise MediaProbeError("GIF: truncated image data")
            pos = skip_sub_blocks(pos)
            frames += 1
            delays.append(pending_delay)
            pending_delay = 0
        else:
            raise MediaProbeError(f"GIF: unknown block 0x{block:02X} at byte {pos}")
    if frames == 0:
        raise MediaProbeError("GIF: no image")
    if width == 0 or height == 0:
        raise MediaProbeError("GIF: zero logical screen size")
    return GifInfo(version=buf[3:6].decode("ascii"), width=width, height=height, frames=frames,
                   delays=tuple(delays), transparent=transparent)


# =====================================================================================================
# ISO base media file format (MP4, QuickTime) with AVC / HEVC video
# =====================================================================================================

_MAX_BOXES = 1_000_000
_TOP_LEVEL_FIRST = frozenset({"ftyp", "moov", "mdat", "free", "skip", "wide", "pnot", "styp"})
_CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "mvex", "moof", "traf"})
_AVC = frozenset({"avc1", "avc2", "avc3", "avc4"})
_HEVC = frozenset({"hvc1", "hev1"})
_MAX_STTS_ENTRIES = 16_000_000


@dataclass(frozen=True, slots=True)
class Mp4Info:
    """The video track of an ISO base media file (MP4 or QuickTime).

    Attributes
    ----------
    major_brand : str
        ftyp major brand (``""`` for a QuickTime file without ftyp).
    compatible_brands : tuple of str
        ftyp compatible brands.
    codec : str or None
        The four-character code of the video sample entry (``avc1``, ``hvc1``...).
    profile_idc, level_idc : int or None
        AVC: AVCProfileIndication and AVCLevelIndication of avcC; HEVC: general_profile_idc and
        general_level_idc of hvcC (level = 30 × the level number).
    constraint_flags : int or None
        AVC: the profile_compatibility byte (constraint_set0..5 flags).
    tier : int or None
        HEVC: general_tier_flag.
    width, height : int or None
        Sample entry size in pixels.
    timescale, duration : int or None
        From the video track's mdhd.
    frames : int or None
        Number of video samples (stts, or the trun boxes of a fragmented file).
    frame_rate : float or None
        Samples per second, from the stts durations (``None`` for fragmented files).
    fragmented : bool
        Whether the moov carries an mvex box.
    """

    major_brand: str
    compatible_brands: tuple[str, ...]
    codec: str | None
    profile_idc: int | None
    level_idc: int | None
    constraint_flags: int | None
    tier: int | None
    width: int | None
    height: int | None
    timescale: int | None
    duration: int | None
    frames: int | None
    frame_rate: float | None
    fragmented: bool = False

    @property
    def is_avc(self) -> bool:
        """Return whether the video is H.264/AVC."""
        return self.codec in _AVC

    @property
    def is_hevc(self) -> bool:
        """Return whether the video is H.265/HEVC."""
        return self.codec in _HEVC


class _Source:
    """Random access to a binary file object or to bytes, with the total size known."""

    def __init__(self, handle: BinaryIO) -> None:
        self._h = handle
        self._h.seek(0, io.SEEK_END)
        self.size = self._h.tell()

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        self._h.seek(offset)
        return self._h.read(min(length, self.size - offset))


def _iter_boxes(
    src: _Source, start: int, end: int, *, tolerant: bool = False,
) -> Iterator[tuple[str, int, int]]:
    """Yield ``(type, payload_start, box_end)`` for the boxes in ``[start, end)``.

    Fewer than 8 trailing bytes (QuickTime terminators, padding) end the walk.
    ``tolerant`` (top level) also stops at a bad box header and clips a truncated
    last box instead of raising.
    """
    pos = start
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            return
        head = src.read(pos, 16)
        size, typ = _be32(head, 0), head[4:8].decode("latin-1")
        header = 8
        if size == 1:
            if len(head) < 16:
                raise MediaProbeError(f"ISO BMFF: truncated large box header at offset {pos}")
            size, header = int.from_bytes(head[8:16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header:
            if tolerant:
                return
            raise MediaProbeError(f"ISO BMFF: box {typ!r} at offset {pos} has a bad size {size}")
        if pos + size > end:
            if not tolerant:
                raise MediaProbeError(f"ISO BMFF: box {typ!r} at offset {pos} overruns its parent")
            yield typ, pos + header, end
            return
        yield typ, pos + header, pos + size
        pos += size
    raise MediaProbeError("ISO BMFF: too many boxes")


def _iter_boxes_bytes(buf: bytes, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    return _iter_boxes(_Source(io.BytesIO(buf)), start, end, tolerant=True)


@dataclass(slots=True)
class _Track:
    track_id: int = 0
    handler: str = ""
    codec: str | None = None
    config: bytes = b""
    width: int | None = None
    height: int | None = None
    timescale: int | None = None
    duration: int | None = None
    samples: int = 0
    total_delta: int = 0


def _full_payload(src: _Source, payload: int, end: int, limit: int = 4096) -> bytes:
    return src.read(payload, min(end - payload, limit))


def _parse_trak(src: _Source, start: int, end: int) -> _Track:
    track = _Track()

    def walk(lo: int, hi: int, parent: str) -> None:
        for typ, payload, box_end in _iter_boxes(src, lo, hi):
            if typ in ("mdia", "minf", "stbl"):
                walk(payload, box_end, typ)
            elif typ == "tkhd":
                body = _full_payload(src, payload, box_end)
                at = 20 if body[:1] == b"\x01" else 12
                if len(body) >= at + 4:
                    track.track_id = _be32(body, at)
            elif typ == "hdlr" and parent == "mdia":  # QuickTime also has a data handler in minf
                body = _full_payload(src, payload, box_end)
                if len(body) >= 12:
                    track.handler = body[8:12].decode("latin-1")
            elif typ == "mdhd":
                body = _full_payload(src, payload, box_end)
                if body[:1] == b"\x01" and len(body) >= 32:
                    track.timescale, track.duration = _be32(body, 20), int.from_bytes(body[24:32], "big")
                elif len(body) >= 20:
                    track.timescale, track.duration = _be32(body, 12), _be32(body, 16)
            elif typ == "stsd":
                _parse_stsd(src, payload, box_end, track)
            elif typ == "stts":
                _parse_stts(src, payload, box_end, track)

    walk(start, end, "trak")
    return track


def _parse_stsd(src: _Source, payload: int, end: int, track: _Track) -> None:
    if end - payload < 8:
        raise MediaProbeError("ISO BMFF: truncated stsd")
    for typ, entry, entry_end in _iter_boxes(src, payload + 8, end):
        body = src.read(entry, min(entry_end - entry, 78))
        if len(body) < 78:
            return  # not a visual sample entry (audio, text...)
        track.codec = typ
        track.width, track.height = _be16(body, 24), _be16(body, 26)
        for child, child_payload, child_end in _iter_boxes(src, entry + 78, entry_end, tolerant=True):
            if child in ("avcC", "hvcC"):
                track.config = src.read(child_payload, min(child_end - child_payload, 64))
        return


def _parse_stts(src: _Source, payload: int, end: int, track: _Track) -> None:
    head = src.read(payload, 8)
    if len(head) < 8:
        raise MediaProbeError("ISO BMFF: truncated stts")
    count = _be32(head, 4)
    if count > _MAX_STTS_ENTRIES or payload + 8 + 8 * count > end:
        raise MediaProbeError("ISO BMFF: stts entry count exceeds its box")
    at = payload + 8
    remaining = count
    while remaining:
        batch = min(remaining, 65536)
        chunk = src.read(at, 8 * batch)
        for i in range(0, len(chunk) - 7, 8):
            samples, delta = _be32(chunk, i), _be32(chunk, i + 4)
            track.samples += samples
            track.total_delta += samples * delta
        at += 8 * batch
        remaining -= batch


def _trun_samples(src: _Source, start: int, end: int, track_id: int) -> int:
    total = 0
    for typ, payload, box_end in _iter_boxes(src, start, end):
        if typ != "traf":
            continue
        tid: int | None = None
        count = 0
        for child, cp, _ce in _iter_boxes(src, payload, box_end):
            if child == "tfhd":
                body = src.read(cp, 8)
                tid = _be32(body, 4) if len(body) >= 8 else None
            elif child == "trun":
                body = src.read(cp, 8)
                count += _be32(body, 4) if len(body) >= 8 else 0
        if tid is None or tid == track_id:
            total += count
    return total


def probe_mp4(source: bytes | bytearray | memoryview | BinaryIO | Body) -> Mp4Info:
    """Walk the boxes of an MP4 or QuickTime file and describe its (first) video track.

    Only box headers and small header boxes are read; a file object is accessed
    with ``seek``/``read``, so a multi-gigabyte ``mdat`` is never loaded.

    Parameters
    ----------
    source : bytes-like, binary file object or Body
        The whole file.  A file object must be seekable; its position is changed.  A
        file-backed :class:`~wic_conformance.dicomweb.exchange.Body` is opened and closed here.

    Raises
    ------
    MediaProbeError
        Not an ISO base media file, no moov box, no video track, malformed boxes.

    References
    ----------
    ISO/IEC 14496-12 §4.2 (box), §4.3 (ftyp), §8.2.2 (mvhd), §8.3.2 (tkhd), §8.4.2 (mdhd),
    §8.4.3 (hdlr), §8.5.2 (stsd, VisualSampleEntry), §8.6.1.2 (stts), §8.8 (movie fragments);
    ISO/IEC 14496-15 §5.3.3.1 (AVCDecoderConfigurationRecord), §8.3.3.1 (HEVCDecoderConfigurationRecord).
    """
    if isinstance(source, Body):
        with source.open() as opened:
            return probe_mp4(opened)
    handle: BinaryIO = (io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray | memoryview)
                        else source)
    src = _Source(handle)
    major = ""
    brands: tuple[str, ...] = ()
    moov: tuple[int, int] | None = None
    moofs: list[tuple[int, int]] = []
    first = True
    for typ, payload, end in _iter_boxes(src, 0, src.size, tolerant=True):
        if first and typ not in _TOP_LEVEL_FIRST:
            raise MediaProbeError(f"not an ISO base media file: first box is {typ!r}")
        first = False
        if typ == "ftyp":
            body = src.read(payload, min(end - payload, 1024))
            if len(body) < 8:
                raise MediaProbeError("ISO BMFF: truncated ftyp")
            major = body[:4].decode("latin-1")
            brands = tuple(body[i:i + 4].decode("latin-1") for i in range(8, len(body) - 3, 4))
        elif typ == "moov" and moov is None:
            moov = (payload, end)
        elif typ == "moof":
            moofs.append((payload, end))
    if first:
        raise MediaProbeError("not an ISO base media file: no box")
    if moov is None:
        raise MediaProbeError("ISO BMFF: no moov box")
    video: _Track | None = None
    fragmented = False
    for typ, payload, end in _iter_boxes(src, moov[0], moov[1]):
        if typ == "mvex":
            fragmented = True
        elif typ == "trak" and video is None:
            track = _parse_trak(src, payload, end)
            if track.handler == "vide" or (not track.handler and track.codec is not None):
                video = track
    if video is None or video.codec is None:
        raise MediaProbeError("ISO BMFF: no video track")
    profile = level = flags = tier = None
    cfg = video.config
    if video.codec in _AVC and len(cfg) >= 4:
        profile, flags, level = cfg[1], cfg[2], cfg[3]
    elif video.codec in _HEVC and len(cfg) >= 13:
        profile, tier, level = cfg[1] & 0x1F, (cfg[1] >> 5) & 0x01, cfg[12]
    frames: int | None = video.samples or None
    rate: float | None = None
    if frames and video.total_delta and video.timescale:
        rate = frames * video.timescale / video.total_delta
    if not frames and fragmented and moofs:
        frames = sum(_trun_samples(src, lo, hi, video.track_id) for lo, hi in moofs) or None
    return Mp4Info(
        major_brand=major, compatible_brands=brands, codec=video.codec, profile_idc=profile,
        level_idc=level, constraint_flags=flags, tier=tier, width=video.width, height=video.height,
        timescale=video.timescale, duration=video.duration, frames=frames, frame_rate=rate,
        fragmented=fragmented,
    )


def mp4_transfer_syntax(
    info: Mp4Info, *, high_profile_only: bool = False, profile_and_level_only: bool = False,
) -> str | None:
    """Return the Transfer Syntax that carries this MP4 video unchanged, or ``None``.

    H.264 up to level 4.1 → 1.2.840.10008.1.2.4.102; H.264 High Profile level 4.2
    → .104 (2D); HEVC Main up to level 5.1 → .107; HEVC Main 10 up to level 5.1 → .108.
    BD-compatible (.103), 3D (.105) and stereo (.106) cannot be told from the headers
    read here and are never chosen.

    Parameters
    ----------
    info : Mp4Info
    high_profile_only : bool
        When false (default) Main and Constrained Baseline H.264 streams count as
        High Profile streams (a High Profile decoder decodes them); when true only
        profile_idc 100 does.
    profile_and_level_only : bool
        When true, decide from profile_idc and level_idc alone, as the sample-instance
        builders do: every Baseline stream counts, not only Constrained Baseline (the
        constraint_set1 flag is not read), and the HEVC tier is not read.

    References
    ----------
    PS3.5 §8.2.8 (MPEG-4 AVC/H.264), §8.2.9 (HEVC/H.265) and Table A-1; PS3.18 Table 10.5.2-1.
    """
    candidates = mp4_transfer_syntaxes(info, high_profile_only=high_profile_only,
                                       profile_and_level_only=profile_and_level_only)
    for uid in (_AVC_HP41, _AVC_HP42_2D, _HEVC_MAIN, _HEVC_MAIN10):
        if uid in candidates:
            return uid
    return None


def mp4_transfer_syntaxes(
    info: Mp4Info, *, high_profile_only: bool = False, profile_and_level_only: bool = False,
) -> frozenset[str]:
    """Return every video Transfer Syntax that describes this MP4 video (with Fragmentable variants).

    A stream within H.264 level 4.1 also meets level 4.2 (.104); a 1920x1080 or
    1280x720 stream additionally may be labelled BD-compatible (.103), which is
    accepted without checking the other Blu-ray constraints.  An HEVC Main stream
    is also a Main 10 stream (.108).  The parameters are those of :func:`mp4_transfer_syntax`.
    """
    profile, level = info.profile_idc, info.level_idc
    if profile is None or level is None:
        return frozenset()
    if info.is_avc:
        high = profile == 100
        constrained = profile_and_level_only or bool((info.constraint_flags or 0) & 0x40)
        compatible = high or (not high_profile_only and (profile == 77 or (profile == 66 and constrained)))
        if not compatible:
            return frozenset()
        if level <= 41:
            uids = {_AVC_HP41, _AVC_HP42_2D}
            if (info.width, info.height) in ((1920, 1080), (1280, 720)):
                uids.add(_AVC_HP41_BD)
            return _fragmentable(uids)
        if level == 42:
            return _fragmentable({_AVC_HP42_2D})
        return frozenset()
    if info.is_hevc and (profile_and_level_only or info.tier in (0, None)) and level <= 153:
        if profile == 1:
            return frozenset({_HEVC_MAIN, _HEVC_MAIN10})
        if profile == 2:
            return frozenset({_HEVC_MAIN10})
    return frozenset()


# =====================================================================================================
# MPEG-2 video (ISO/IEC 13818-2), elementary or program stream
# =====================================================================================================

_MPEG2_FRAME_RATES = {1: 24000 / 1001, 2: 24.0, 3: 25.0, 4: 30000 / 1001, 5: 30.0, 6: 50.0,
                      7: 60000 / 1001, 8: 60.0}


@dataclass(frozen=True, slots=True)
class Mpeg2Info:
    """The first sequence header (and sequence extension) of an MPEG-1/MPEG-2 video stream.

    Attributes
    ----------
    width, height : int
        horizontal_size_value and vertical_size_value.
    frame_rate : float or None
        From frame_rate_code.
    profile_level : int or None
        profile_and_level_indication of the sequence extension (``None`` for MPEG-1).
    """

    width: int
    height: int
    frame_rate: float | None
    profile_level: int | None


def probe_mpeg2(data: bytes | bytearray | memoryview) -> Mpeg2Info:
    """Find the first video sequence header (00 00 01 B3) and its extension in ``data``.

    Pass the first megabytes of the stream; the scan stops at the end of ``data``.

    Raises
    ------
    MediaProbeError
        No sequence header.

    References
    ----------
    ISO/IEC 13818-2 §6.2.2.1 (sequence_header), §6.2.2.3 (sequence_extension), Table 6-4 (frame rates).
    """
    buf = bytes(data)
    at = buf.find(b"\x00\x00\x01\xb3")
    if at < 0 or at + 12 > len(buf):
        raise MediaProbeError("MPEG video: no sequence header")
    b = buf[at + 4:at + 12]
    width = (b[0] << 4) | (b[1] >> 4)
    height = ((b[1] & 0x0F) << 8) | b[2]
    if width == 0 or height == 0:
        raise MediaProbeError("MPEG video: zero picture size")
    rate = _MPEG2_FRAME_RATES.get(b[3] & 0x0F)
    profile_level: int | None = None
    ext = buf.find(b"\x00\x00\x01\xb5", at + 12)
    while 0 <= ext and ext + 6 <= len(buf):
        e = buf[ext + 4:ext + 6]
        if e[0] >> 4 == 1:  # sequence_extension
            profile_level = ((e[0] & 0x0F) << 4) | (e[1] >> 4)
            break
        if buf.find(b"\x00\x00\x01\x00", at, ext) >= 0:  # a picture started: no sequence extension
            break
        ext = buf.find(b"\x00\x00\x01\xb5", ext + 4)
    return Mpeg2Info(width=width, height=height, frame_rate=rate, profile_level=profile_level)


def mpeg2_transfer_syntax(info: Mpeg2Info) -> str | None:
    """Return .100 for MPEG-2 Main Profile @ Main Level (0x48), .101 for Main @ High Level (0x44).

    References
    ----------
    PS3.5 §8.2.5, §8.2.6 and Table A-1.
    """
    return {0x48: _MPEG2_MPML, 0x44: _MPEG2_MPHL}.get(info.profile_level or -1)


def mpeg2_transfer_syntaxes(info: Mpeg2Info) -> frozenset[str]:
    """Return the transfer syntaxes describing this stream (with Fragmentable variants)."""
    uid = mpeg2_transfer_syntax(info)
    return _fragmentable({uid}) if uid else frozenset()


# =====================================================================================================
# Magic numbers
# =====================================================================================================

_QUICKTIME_BRANDS = frozenset({"qt  "})
_STILL_IMAGE_BRANDS = frozenset({"heic", "heix", "heim", "heis", "mif1", "msf1", "avif", "avis"})


def guess_media_type(data: bytes | bytearray | memoryview) -> str | None:
    """Guess a media type from the first bytes; ``None`` when nothing matches.  Never raises.

    Recognises JPEG and JPEG-LS (image/jpeg), PNG, GIF, JP2/JPX, MP4 and QuickTime
    (ftyp brand), MPEG-2 program or elementary streams (video/mpeg2), PDF and
    PS3.10 files ("DICM" at byte 128).

    References
    ----------
    PS3.18 Table 10.5.2-1; PS3.10 §7.1.
    """
    head = bytes(data[:512])
    if head.startswith(b"\xff\xd8\xff"):
        return mt.IMAGE_JPEG
    if head.startswith(_PNG_SIGNATURE):
        return mt.IMAGE_PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return mt.IMAGE_GIF
    if head.startswith(_JP2_SIGNATURE):
        return mt.IMAGE_JPX if b"ftypjpx " in head[12:40] else mt.IMAGE_JP2
    if head.startswith(b"%PDF-"):
        return mt.APPLICATION_PDF
    if len(head) >= 132 and head[128:132] == b"DICM":
        return mt.APPLICATION_DICOM
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12].decode("latin-1")
        if brand in _QUICKTIME_BRANDS:
            return mt.VIDEO_QUICKTIME
        if brand.startswith(("jp2", "jpx")) or brand in _STILL_IMAGE_BRANDS:
            return None
        return mt.VIDEO_MP4
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"pnot"):
        return mt.VIDEO_QUICKTIME
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return mt.VIDEO_MPEG2
    return None
