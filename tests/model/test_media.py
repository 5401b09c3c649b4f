from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body
from wic_conformance.model import media
from wic_conformance.model.media import MediaProbeError

av = pytest.importorskip("av")
imagecodecs = pytest.importorskip("imagecodecs")
Image = pytest.importorskip("PIL.Image")


# -- generated media -------------------------------------------------------------------------------------


def _rgb(width: int = 64, height: int = 48) -> Any:
    data = (np.arange(width * height * 3) % 251).astype("uint8").reshape(height, width, 3)
    return Image.fromarray(data)


def _jpeg(**kwargs: Any) -> bytes:
    out = io.BytesIO()
    _rgb().save(out, "JPEG", quality=kwargs.pop("quality", 90), **kwargs)
    return out.getvalue()


def _png(mode: str) -> bytes:
    out = io.BytesIO()
    _rgb().convert(mode).save(out, "PNG")
    return out.getvalue()


def _video(codec: str = "libx264", *, fmt: str = "mp4", rate: int = 25, frames: int = 10,
           options: dict[str, str] | None = None, container_options: dict[str, str] | None = None,
           width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if options:
            stream.options = options
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), i * 10, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
def h264() -> bytes:
    return _video(options={"profile": "high", "level": "4.1"})


@pytest.fixture(scope="module")
def hevc() -> bytes:
    return _video("libx265", options={"x265-params": "log-level=none"})


# -- JPEG ------------------------------------------------------------------------------------------------


class TestProbeJpeg:
    def test_baseline(self) -> None:
        info = media.probe_jpeg(_jpeg())
        assert (info.sof, info.precision, info.rows, info.columns, info.components) == (0xC0, 8, 48, 64, 3)
        assert info.jfif and not info.lossless and not info.progressive
        assert info.color_transform == "YCbCr"
        assert info.sampling[0] == (2, 2)
        assert media.jpeg_transfer_syntax(info) == "1.2.840.10008.1.2.4.50"
        assert media.jpeg_transfer_syntaxes(info) == {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}

    def test_progressive_has_no_current_transfer_syntax(self) -> None:
        info = media.probe_jpeg(_jpeg(progressive=True))
        assert info.sof == 0xC2 and info.progressive
        assert media.jpeg_transfer_syntax(info) is None
        assert media.jpeg_transfer_syntaxes(info) == frozenset()

    def test_lossless_predictor(self) -> None:
        grey = (np.arange(64 * 48) % 4096).astype("uint16").reshape(48, 64)
        data = imagecodecs.ljpeg_encode(grey, bitspersample=12)
        info = media.probe_jpeg(data)
        assert info.sof == 0xC3 and info.lossless and info.precision == 12 and info.components == 1
        assert info.predictor not in (None, 1)
        assert media.jpeg_transfer_syntax(info) == "1.2.840.10008.1.2.4.57"
        # Selection value 1 (first-order prediction) maps to .70 (and .57 still describes it).
        sos = data.index(b"\xff\xda")
        ns = data[sos + 4]
        at = sos + 5 + 2 * ns
        patched = data[:at] + b"\x01" + data[at + 1:]
        info1 = media.probe_jpeg(patched)
        assert info1.predictor == 1
        assert media.jpeg_transfer_syntax(info1) == "1.2.840.10008.1.2.4.70"
        assert media.jpeg_transfer_syntaxes(info1) == {"1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57"}

    @pytest.mark.parametrize(("near", "uid"), [(0, "1.2.840.10008.1.2.4.80"), (3, "1.2.840.10008.1.2.4.81")])
    def test_jpeg_ls(self, near: int, uid: str) -> None:
        grey = (np.arange(64 * 48) % 256).astype("uint8").reshape(48, 64)
        info = media.probe_jpeg(imagecodecs.jpegls_encode(grey, level=near))
        assert info.jpeg_ls and info.near == near and info.lossless is (near == 0)
        assert media.jpeg_transfer_syntax(info) == uid

    def test_adobe_rgb_transform(self) -> None:
        data = _jpeg()
        adobe = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
        info = media.probe_jpeg(data[:2] + adobe + data[2:])
        assert info.adobe_transform == 0 and info.color_transform == "RGB"

    @pytest.mark.parametrize(("changes", "conversion", "builders"), [
        ({"components": 1, "component_ids": (1,), "sampling": ((1, 1),)}, "MONOCHROME2", "MONOCHROME2"),
        ({}, "YBR_FULL_422", "YBR_FULL_422"),
        ({"sampling": ((1, 1),) * 3}, "YBR_FULL_422", "YBR_FULL"),
        ({"adobe_transform": 0}, "RGB", "RGB"),
        ({"component_ids": (0x52, 0x47, 0x42), "jfif": True}, "YBR_FULL_422", "RGB"),
        ({"component_ids": (0x52, 0x47, 0x42), "jfif": False}, "RGB", "RGB"),
        ({"sof": 0xC3, "predictor": 1}, "RGB", "RGB"),
        ({"sof": 0xC3, "predictor": 1, "adobe_transform": 1}, "YBR_FULL", "RGB"),
    ])
    def test_photometric_interpretation(self, changes: dict[str, Any], conversion: str, builders: str) -> None:
        info = media.probe_jpeg(_jpeg(subsampling=2))
        assert (info.components, info.jfif, len(set(info.sampling))) == (3, True, 2)
        info = replace(info, **changes)
        assert media.jpeg_photometric_interpretation(info) == conversion
        assert media.jpeg_photometric_interpretation(info, by_sampling=True) == builders

    def test_extended_12_bit_header(self) -> None:
        data = bytearray(_jpeg())
        sof = data.index(b"\xff\xc0")
        data[sof + 1] = 0xC1
        data[sof + 4] = 12
        info = media.probe_jpeg(bytes(data))
        assert info.sof == 0xC1 and info.precision == 12
        assert media.jpeg_transfer_syntax(info) == "1.2.840.10008.1.2.4.51"

    @pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xd9",
                                      b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00",
                                      b"\xff\xd8\xff\xe0\xff\xff"])
    def test_garbage_raises_probe_error(self, data: bytes) -> None:
        with pytest.raises(MediaProbeError):
            media.probe_jpeg(data)

    def test_every_truncation_raises_probe_error_or_parses(self) -> None:
        data = _jpeg()
        sos = data.index(b"\xff\xda")
        for end in range(sos + 14):
            with pytest.raises(MediaProbeError):
                media.probe_jpeg(data[:end])
        assert media.probe_jpeg(data[:sos + 14]).columns == 64


# -- JPEG 2000 -------------------------------------------------------------------------------------------


class TestProbeJ2k:
    @pytest.mark.parametrize("fmt", ["jp2", "j2k"])
    def test_reversible(self, fmt: str) -> None:
        grey = (np.arange(64 * 48) % 256).astype("uint8").reshape(48, 64)
        data = imagecodecs.jpeg2k_encode(grey, level=0, codecformat=fmt)
        info = media.probe_j2k(data)
        assert (info.rows, info.columns, info.components, info.precision) == (48, 64, 1, 8)
        assert info.reversible is True and info.wrapper == fmt
        codestream = data[info.codestream_offset:info.codestream_offset + info.codestream_length]
        assert codestream.startswith(b"\xff\x4f\xff\x51")
        assert media.guess_media_type(data) == (mt.IMAGE_JP2 if fmt == "jp2" else None)

    def test_garbage(self) -> None:
        with pytest.raises(MediaProbeError):
            media.probe_j2k(b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x08junk")


# -- PNG and GIF -----------------------------------------------------------------------------------------


class TestProbePng:
    @pytest.mark.parametrize(("mode", "ctype", "depth", "samples", "alpha"), [
        ("L", 0, 8, 1, False), ("RGB", 2, 8, 3, False), ("RGBA", 6, 8, 3, True), ("P", 3, 8, 3, False),
        ("LA", 4, 8, 1, True), ("1", 0, 1, 1, False), ("I;16", 0, 16, 1, False),
    ])
    def test_types(self, mode: str, ctype: int, depth: int, samples: int, alpha: bool) -> None:
        info = media.probe_png(_png(mode))
        assert (info.width, info.height, info.color_type, info.bit_depth) == (64, 48, ctype, depth)
        assert info.samples_per_pixel == samples and info.alpha is alpha and info.palette is (ctype == 3)
        assert info.frames == 1

    def test_palette_with_transparency(self) -> None:
        out = io.BytesIO()
        _rgb().convert("P").save(out, "PNG", transparency=0)
        info = media.probe_png(out.getvalue())
        assert info.palette and info.alpha

    def test_bad_header(self) -> None:
        good = _png("RGB")
        with pytest.raises(MediaProbeError):
            media.probe_png(good[:20])
        bad_depth = good[:24] + b"\x03" + good[25:]
        with pytest.raises(MediaProbeError, match="bit depth"):
            media.probe_png(bad_depth)


class TestProbeGif:
    def test_animated(self) -> None:
        out = io.BytesIO()
        img = _rgb()
        img.save(out, "GIF", save_all=True, append_images=[img.rotate(90), img.rotate(180)], duration=40)
        info = media.probe_gif(out.getvalue())
        assert (info.width, info.height, info.frames) == (64, 48, 3)
        assert info.delays == (4, 4, 4)

    def test_single_and_truncated(self) -> None:
        out = io.BytesIO()
        _rgb().save(out, "GIF")
        data = out.getvalue()
        assert media.probe_gif(data).frames == 1
        with pytest.raises(MediaProbeError):
            media.probe_gif(data[:len(data) // 2])
        with pytest.raises(MediaProbeError, match="no image"):
            media.probe_gif(b"GIF89a\x40\x00\x30\x00\x00\x00\x00\x3b")


# -- MP4 / QuickTime / MPEG-2 ----------------------------------------------------------------------------


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


class TestProbeMp4:
    def test_h264_high_41(self, h264: bytes) -> None:
        info = media.probe_mp4(h264)
        assert info.codec == "avc1" and info.is_avc
        assert (info.profile_idc, info.level_idc) == (100, 41)
        assert (info.width, info.height, info.frames) == (64, 48, 10)
        assert info.frame_rate == pytest.approx(25.0)
        assert media.mp4_transfer_syntax(info) == "1.2.840.10008.1.2.4.102"
        assert {"1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.104",
                "1.2.840.10008.1.2.4.102.1"} <= media.mp4_transfer_syntaxes(info)
        assert media.guess_media_type(h264) == mt.VIDEO_MP4

    def test_h264_level_42(self) -> None:
        info = media.probe_mp4(_video(rate=30, options={"profile": "high", "level": "4.2"}))
        assert info.level_idc == 42 and info.frame_rate == pytest.approx(30.0)
        assert media.mp4_transfer_syntax(info) == "1.2.840.10008.1.2.4.104"

    def test_main_profile_only_counts_when_allowed(self) -> None:
        info = media.probe_mp4(_video(options={"profile": "main", "level": "3.0"}))
        assert info.profile_idc == 77
        assert media.mp4_transfer_syntax(info) == "1.2.840.10008.1.2.4.102"
        assert media.mp4_transfer_syntax(info, high_profile_only=True) is None

    def test_profile_and_level_only(self) -> None:
        info = media.probe_mp4(_video(options={"profile": "baseline", "level": "3.0"}))
        assert info.profile_idc == 66
        unconstrained = replace(info, constraint_flags=(info.constraint_flags or 0) & ~0x40)
        assert media.mp4_transfer_syntax(unconstrained) is None
        assert media.mp4_transfer_syntax(unconstrained, profile_and_level_only=True) == "1.2.840.10008.1.2.4.102"

    def test_hevc_high_tier_counts_only_by_profile_and_level(self, hevc: bytes) -> None:
        info = replace(media.probe_mp4(hevc), tier=1)
        assert media.mp4_transfer_syntax(info) is None
        assert media.mp4_transfer_syntax(info, profile_and_level_only=True) == "1.2.840.10008.1.2.4.107"

    def test_hevc_main(self, hevc: bytes) -> None:
        info = media.probe_mp4(hevc)
        assert info.is_hevc and info.profile_idc == 1 and info.tier == 0
        assert media.mp4_transfer_syntax(info) == "1.2.840.10008.1.2.4.107"
        assert media.mp4_transfer_syntaxes(info) == {"1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"}

    def test_quicktime(self) -> None:
        data = _video(fmt="mov")
        info = media.probe_mp4(data)
        assert info.major_brand == "qt  " and info.codec == "avc1" and info.frames == 10
        assert media.guess_media_type(data) == mt.VIDEO_QUICKTIME

    def test_fragmented_counts_trun_samples(self) -> None:
        info = media.probe_mp4(_video(container_options={"movflags": "frag_keyframe+empty_moov"}))
        assert info.fragmented and info.frames == 10 and info.frame_rate is None

    def test_file_object_is_read_by_seeking(self, h264: bytes, tmp_path: Any) -> None:
        padded = h264 + (8 + 4_000_000).to_bytes(4, "big") + b"free" + bytes(4_000_000)
        reader = _CountingReader(padded)
        assert media.probe_mp4(reader).frames == 10
        assert reader.bytes_read < 64_000
        path = tmp_path / "video.mp4"
        path.write_bytes(padded)
        with path.open("rb") as handle:
            assert media.probe_mp4(handle).level_idc == 41
        assert media.probe_mp4(Body.from_file(path)).frames == 10

    def test_no_video_track(self) -> None:
        with pytest.raises(MediaProbeError, match="moov"):
            media.probe_mp4(b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00")
        with pytest.raises(MediaProbeError):
            media.probe_mp4(b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00\x00\x00\x00\x08moov")

    def test_every_truncation_is_a_probe_error_or_a_result(self, h264: bytes) -> None:
        for end in range(0, len(h264), max(1, len(h264) // 300)):
            try:
                media.probe_mp4(h264[:end])
            except MediaProbeError:
                pass


class TestProbeMpeg2:
    def test_program_stream_mp_ml(self) -> None:
        data = _video("mpeg2video", fmt="mpeg", width=720, height=576)
        info = media.probe_mpeg2(data)
        assert (info.width, info.height, info.frame_rate, info.profile_level) == (720, 576, 25.0, 0x48)
        assert media.mpeg2_transfer_syntax(info) == "1.2.840.10008.1.2.4.100"
        assert media.guess_media_type(data) == mt.VIDEO_MPEG2

    def test_no_sequence_header(self) -> None:
        with pytest.raises(MediaProbeError):
            media.probe_mpeg2(b"\x00\x00\x01\xba" + bytes(100))


# -- magic numbers ---------------------------------------------------------------------------------------


class TestGuessMediaType:
    @pytest.mark.parametrize(("data", "expected"), [
        (b"\xff\xd8\xff\xe0rest", mt.IMAGE_JPEG),
        (b"\x89PNG\r\n\x1a\n....", mt.IMAGE_PNG),
        (b"GIF89a......", mt.IMAGE_GIF),
        (b"%PDF-1.7\n", mt.APPLICATION_PDF),
        (bytes(128) + b"DICM" + bytes(10), mt.APPLICATION_DICOM),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", mt.VIDEO_MP4),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", mt.VIDEO_QUICKTIME),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", None),
        (b"\x00\x00\x01\xb3\x2d\x02\x40\x33", mt.VIDEO_MPEG2),
        (b"hello world", None),
        (b"", None),
    ])
    def test_magic(self, data: bytes, expected: str | None) -> None:
        assert media.guess_media_type(data) == expected


# -- arbitrary input -------------------------------------------------------------------------------------

_PROBES = [media.probe_jpeg, media.probe_png, media.probe_gif, media.probe_mp4, media.probe_j2k,
           media.probe_mpeg2]
_PREFIXES = [b"", b"\xff\xd8", b"\xff\xd8\xff\xc0", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"GIF89a",
             b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x14ftypisom",
             b"\x00\x00\x01\xb3"]


@given(prefix=st.sampled_from(_PREFIXES), tail=st.binary(max_size=600))
def test_probes_raise_only_probe_errors(prefix: bytes, tail: bytes) -> None:
    data = prefix + tail
    for probe in _PROBES:
        try:
            probe(data)
        except MediaProbeError:
            pass
    media.guess_media_type(data)


@given(cut=st.integers(min_value=0, max_value=4000), flips=st.lists(
    st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6))
def test_mutated_jpeg_and_mp4_raise_only_probe_errors(cut: int, flips: list[tuple[int, int]]) -> None:
    for source, probe in ((_MUTATION_JPEG, media.probe_jpeg), (_MUTATION_MP4, media.probe_mp4)):
        data = bytearray(source[:max(0, len(source) - cut)])
        for at, value in flips:
            if data:
                data[at % len(data)] = value
        try:
            info = probe(bytes(data))
        except MediaProbeError:
            continue
        if isinstance(info, media.JpegInfo):
            media.jpeg_transfer_syntaxes(info)
        else:
            media.mp4_transfer_syntaxes(info)


_MUTATION_JPEG = _jpeg()
_MUTATION_MP4 = _video(frames=3)
