from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb import multipart as mp
from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.dicomweb.exchange import Body, Headers
from wic_conformance.dicomweb.multipart import (
    MultipartDecoder,
    MultipartResult,
    Part,
    decode_multipart,
    encode_multipart,
    iter_encode_multipart,
)
from wic_conformance.errors import UsageError

STRICT = Strictness.STRICT
LENIENT = Strictness.LENIENT
CT = 'multipart/related; type="application/dicom"; boundary=b'
GOOD = (
    b"--b\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
    b"--b\r\nContent-Type: application/dicom\r\nContent-Location: /x\r\n\r\nsecond\r\n"
    b"--b--\r\n"
)


def decode(raw: bytes, *, boundary: str = "b", policy: Strictness = LENIENT, chunk: int | None = None,
           spool_threshold: int = 1 << 20, spool_dir: str | None = None, max_parts: int = 10_000,
           max_header_bytes: int = 16_384) -> MultipartResult:
    decoder = MultipartDecoder(boundary, policy=policy, spool_threshold=spool_threshold, spool_dir=spool_dir,
                               max_parts=max_parts, max_header_bytes=max_header_bytes)
    step = chunk or max(1, len(raw))
    for start in range(0, len(raw), step):
        decoder.feed(raw[start:start + step])
    return decoder.close()


def summary(result: MultipartResult) -> tuple[object, ...]:
    """What a result says, independent of where spooled parts live."""
    parts = tuple((p.index, p.headers, p.body.read()) for p in result.parts)
    return parts, result.deviations, result.complete


def codes(result: MultipartResult) -> list[str]:
    return [d.code for d in result.deviations]


def fatal_codes(result: MultipartResult) -> list[str]:
    return [d.code for d in result.deviations if d.fatal]


def bodies(result: MultipartResult) -> list[bytes]:
    return [p.body.read() for p in result.parts]


def part(ctype: str = mt.APPLICATION_DICOM, body: bytes = b"x") -> bytes:
    return f"Content-Type: {ctype}\r\n\r\n".encode() + body


def body_of(*parts: bytes, boundary: bytes = b"b", close: bytes = b"\r\n--b--\r\n") -> bytes:
    dash = b"--" + boundary
    return dash + b"\r\n" + (b"\r\n" + dash + b"\r\n").join(parts) + close.replace(b"--b", dash)


class TestGoodInput:
    @pytest.mark.parametrize("policy", [STRICT, LENIENT])
    def test_two_parts_no_deviations(self, policy: Strictness) -> None:
        result = decode_multipart(GOOD, CT, policy=policy)
        assert result.deviations == ()
        assert result.complete
        assert bodies(result) == [b"first", b"second"]
        assert [p.index for p in result.parts] == [0, 1]

    def test_no_deviation_code_on_good_input(self) -> None:
        parts = [({"Content-Type": mt.APPLICATION_DICOM_JSON}, b"[]"),
                 ({"Content-Type": mt.IMAGE_JPEG, "Content-Location": "/b"}, b"\xff\xd8")]
        ctype, raw = encode_multipart(parts, root_type=mt.APPLICATION_DICOM_JSON)
        for chunk in (1, 7, 4096):
            for policy in (STRICT, LENIENT):
                assert decode_multipart(raw, ctype, policy=policy).deviations == ()
                assert decode(raw, boundary=mt.parse_media_type(ctype).boundary or "", chunk=chunk,
                              policy=policy).deviations == ()

    def test_empty_part_body_and_empty_headers(self) -> None:
        raw = b"--b\r\n\r\n\r\n--b\r\nContent-Type: a/b\r\n\r\n\r\n--b--"
        result = decode(raw)
        assert bodies(result) == [b"", b""]
        assert result.parts[0].headers == Headers()
        assert codes(result) == ["multipart.part_without_content_type"]
        assert result.complete

    def test_headers_without_body_separator_before_crlf_delimiter(self) -> None:
        # "Content-Type: a/b CRLF" followed by the delimiter "CRLF --b": headers, empty body
        result = decode(b"--b\r\nContent-Type: a/b\r\n\r\n--b--")
        assert bodies(result) == [b""]
        assert result.deviations == ()

    def test_body_that_ends_with_crlf_keeps_it(self) -> None:
        result = decode(body_of(part(body=b"line\r\n")))
        assert bodies(result) == [b"line\r\n"]

    def test_close_is_idempotent_and_late_feed_is_a_usage_error(self) -> None:
        decoder = MultipartDecoder("b")
        decoder.feed(GOOD)
        first = decoder.close()
        assert decoder.close() is first
        with pytest.raises(UsageError, match=r"feed\(\) after close\(\)"):
            decoder.feed(b"more")


class TestPart:
    def test_content_type_is_parsed(self) -> None:
        p = Part(0, Headers.of({"content-TYPE": 'application/dicom; transfer-syntax="1.2.840.10008.1.2.1"'}),
                 Body.of(b""))
        assert p.content_type is not None
        assert p.content_type.is_(mt.APPLICATION_DICOM)
        assert p.content_type.transfer_syntax == "1.2.840.10008.1.2.1"

    def test_absent_headers_are_none(self) -> None:
        p = Part(0, Headers(), Body.of(b""))
        assert p.content_type is None
        assert p.content_location is None

    def test_header_spelling_and_order_kept(self) -> None:
        raw = body_of(b"X-B: 2\r\ncontent-location: /l\r\nContent-Type: a/b\r\n\r\nz")
        p = decode(raw).parts[0]
        assert p.headers.items == (("X-B", "2"), ("content-location", "/l"), ("Content-Type", "a/b"))
        assert p.content_location == "/l"


class TestRoundTrip:
    def test_encode_then_decode(self) -> None:
        bulk_headers = Headers.of([("Content-Type", mt.APPLICATION_OCTET_STREAM),
                                   ("Content-Location", "/bulk/1")])
        parts: list[tuple[dict[str, str] | Headers, bytes]] = [
            ({"Content-Type": mt.APPLICATION_DICOM_JSON}, b'[{"00080016": {}}]'),
            (bulk_headers, b"\r\n--not-the-boundary\r\n" + bytes(range(256)))]
        ctype, raw = encode_multipart(parts, root_type=mt.APPLICATION_DICOM_JSON)
        result = decode_multipart(raw, ctype)
        assert result.complete and result.deviations == ()
        assert bodies(result) == [b for _, b in parts]
        assert result.parts[1].content_location == "/bulk/1"

    def test_content_type_header(self) -> None:
        ctype, raw = encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, b"x")],
                                      root_type=mt.APPLICATION_DICOM, boundary="abc",
                                      params={"start": "<p1>"})
        assert ctype == 'multipart/related; type="application/dicom"; boundary=abc; start="<p1>"'
        assert raw == b"--abc\r\nContent-Type: application/dicom\r\n\r\nx\r\n--abc--\r\n"

    def test_random_boundary_is_fresh_and_valid(self) -> None:
        first, _ = encode_multipart([({}, b"x")], root_type=mt.APPLICATION_DICOM)
        second, _ = encode_multipart([({}, b"x")], root_type=mt.APPLICATION_DICOM)
        b1 = mt.parse_media_type(first).boundary
        assert b1 and b1 != mt.parse_media_type(second).boundary
        assert mp.boundary_problem(b1) is None

    def test_streaming_encoder_reads_file_parts_in_chunks(self, tmp_path: Path) -> None:
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(3 << 20).replace(b"--", b"++"))
        ctype, chunks = iter_encode_multipart([({"Content-Type": mt.APPLICATION_DICOM}, Body.from_file(big))],
                                              root_type=mt.APPLICATION_DICOM, boundary="zz")
        pieces = list(chunks)
        assert max(len(p) for p in pieces) <= 1 << 20
        result = decode_multipart(b"".join(pieces), ctype, spool_dir=str(tmp_path))
        assert result.complete
        assert result.parts[0].body.sha256() == hashlib.sha256(big.read_bytes()).hexdigest()

    def test_quoted_boundary_with_spaces_and_specials(self) -> None:
        boundary = "a'()+_,-./:=? z"
        ctype, raw = encode_multipart([({"Content-Type": "text/plain"}, b"hello")], root_type="text/plain",
                                      boundary=boundary)
        assert f'boundary="{boundary}"' in ctype
        result = decode_multipart(raw, ctype)
        assert result.complete and result.deviations == ()
        assert bodies(result) == [b"hello"]


class TestEncodeErrors:
    def test_no_parts(self) -> None:
        with pytest.raises(ValueError, match="at least one part"):
            encode_multipart([], root_type=mt.APPLICATION_DICOM)

    @pytest.mark.parametrize("boundary", ["", "x" * 71, "a@b", "ends-with-space "])
    def test_bad_boundary(self, boundary: str) -> None:
        with pytest.raises(ValueError, match="invalid boundary"):
            encode_multipart([({}, b"x")], root_type=mt.APPLICATION_DICOM, boundary=boundary)

    def test_boundary_in_memory_part(self) -> None:
        with pytest.raises(ValueError, match="begins a line in part 2"):
            encode_multipart([({}, b"x"), ({}, b"a\r\n--sep\r\n")], root_type="a/b", boundary="sep")
        with pytest.raises(ValueError, match="begins a line in part 1"):
            encode_multipart([({}, b"--sep")], root_type="a/b", boundary="sep")

    def test_boundary_inside_a_line_is_allowed(self) -> None:
        ctype, raw = encode_multipart([({}, b"a--sep--")], root_type="a/b", boundary="sep")
        assert bodies(decode_multipart(raw, ctype)) == [b"a--sep--"]

    def test_boundary_in_file_part_raises_while_streaming(self, tmp_path: Path) -> None:
        path = tmp_path / "p.bin"
        path.write_bytes(b"a" * ((1 << 20) - 2) + b"\r\n--sep")  # straddles the 1 MiB chunk edge
        _, chunks = iter_encode_multipart([({}, Body.from_file(path))], root_type="a/b", boundary="sep")
        with pytest.raises(ValueError, match="begins a line in part 1"):
            list(chunks)
        path.write_bytes(b"--sep" + b"a" * (1 << 20))
        _, chunks = iter_encode_multipart([({}, Body.from_file(path))], root_type="a/b", boundary="sep")
        with pytest.raises(ValueError, match="begins a line in part 1"):
            list(chunks)

    def test_header_injection(self) -> None:
        with pytest.raises(ValueError, match="line break"):
            encode_multipart([({"X": "a\r\nY: b"}, b"x")], root_type="a/b")
        with pytest.raises(ValueError, match="invalid header name"):
            encode_multipart([({"X Y": "a"}, b"x")], root_type="a/b")

    def test_params_may_not_override(self) -> None:
        with pytest.raises(ValueError, match="params may not set"):
            encode_multipart([({}, b"x")], root_type="a/b", params={"Boundary": "q"})


class TestContentType:
    def test_not_multipart_is_fatal(self) -> None:
        result = decode_multipart(GOOD, mt.APPLICATION_DICOM)
        assert fatal_codes(result) == ["multipart.not_multipart"]
        assert result.parts == () and not result.complete

    def test_other_multipart_decodes_when_lenient_only(self) -> None:
        ctype = 'multipart/mixed; type="application/dicom"; boundary=b'
        lenient = decode_multipart(GOOD, ctype)
        assert codes(lenient) == ["multipart.not_multipart"] and len(lenient.parts) == 2
        assert lenient.complete
        strict = decode_multipart(GOOD, ctype, policy=STRICT)
        assert fatal_codes(strict) == ["multipart.not_multipart"] and strict.parts == ()

    def test_missing_type(self) -> None:
        result = decode_multipart(GOOD, "multipart/related; boundary=b")
        assert codes(result) == ["multipart.missing_type"]
        assert result.complete

    def test_unquoted_type(self) -> None:
        result = decode_multipart(GOOD, "multipart/related; type=application/dicom; boundary=b")
        assert codes(result) == ["multipart.unquoted_type"]

    @pytest.mark.parametrize("ctype", ['multipart/related; type="application/dicom"',
                                       'multipart/related; type="application/dicom"; boundary=""'])
    def test_missing_boundary(self, ctype: str) -> None:
        result = decode_multipart(GOOD, ctype)
        assert fatal_codes(result) == ["multipart.missing_boundary"]
        assert result.parts == ()

    @pytest.mark.parametrize("boundary", ["x" * 71, "a@b", '"ends with space "'])
    def test_bad_boundary_lenient_decodes_strict_stops(self, boundary: str) -> None:
        value = mt.parse_media_type(f"a/b; boundary={boundary}").boundary or ""
        raw = GOOD.replace(b"--b", b"--" + value.encode())
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        lenient = decode_multipart(raw, ctype)
        assert codes(lenient) == ["multipart.bad_boundary"] and len(lenient.parts) == 2
        assert lenient.complete
        strict = decode_multipart(raw, ctype, policy=STRICT)
        assert fatal_codes(strict) == ["multipart.bad_boundary"] and strict.parts == ()

    def test_type_differs_from_root(self) -> None:
        result = decode_multipart(GOOD, 'multipart/related; type="application/dicom+json"; boundary=b')
        assert codes(result) == ["multipart.type_differs_from_root"]
        assert result.deviations[0].location == "part 1 headers"
        assert result.complete  # informative, not fatal

    def test_type_comparison_ignores_case_and_params(self) -> None:
        raw = body_of(part("Application/DICOM; transfer-syntax=1.2.840.10008.1.2.1"))
        assert decode_multipart(raw, CT).deviations == ()

    def test_parsed_media_type_accepted(self) -> None:
        assert decode_multipart(Body.of(GOOD), mt.parse_media_type(CT)).complete


class TestDelimiters:
    def test_no_opening_delimiter(self) -> None:
        result = decode_multipart(GOOD, CT.replace("boundary=b", "boundary=other"))
        assert fatal_codes(result) == ["multipart.no_opening_delimiter"]
        assert result.parts == ()

    def test_truncated_body_drops_the_half_part(self) -> None:
        raw = GOOD[: GOOD.index(b"second") + 3]
        result = decode(raw)
        assert bodies(result) == [b"first"]
        assert not result.complete
        (dev,) = [d for d in result.deviations if d.code == "multipart.no_closing_delimiter"]
        assert dev.fatal and "part 2" in dev.message and "bytes received" in dev.message
        assert dev.location == f"byte {len(raw)}"

    @pytest.mark.parametrize("cut", [b"\r\n--b", b"\r\n--b-", b"\r\n--b\r", b"\r\n--b  "])
    def test_body_ending_inside_a_delimiter_is_truncated(self, cut: bytes) -> None:
        raw = b"--b\r\nContent-Type: a/b\r\n\r\nbody" + cut
        result = decode(raw)
        assert result.parts == ()
        assert codes(result) == ["multipart.no_closing_delimiter"]

    def test_close_delimiter_without_final_crlf_is_complete(self) -> None:
        result = decode(body_of(part(), close=b"\r\n--b--"))
        assert result.complete and result.deviations == ()

    def test_preamble_content(self) -> None:
        result = decode(b"This is a preamble.\r\n" + GOOD)
        assert codes(result) == ["multipart.preamble_content"]
        dev = result.deviations[0]
        assert not dev.fatal and dev.location == "preamble" and "19 bytes" in dev.message
        assert result.complete

    def test_empty_preamble_before_crlf_is_not_content(self) -> None:
        assert decode(b"\r\n" + GOOD).deviations == ()

    def test_epilogue_content(self) -> None:
        result = decode(GOOD + b"trailing words")
        assert codes(result) == ["multipart.epilogue_content"]
        assert "14 bytes" in result.deviations[0].message
        assert result.complete

    def test_text_on_the_close_delimiter_line_is_epilogue(self) -> None:
        result = decode(GOOD[:-2] + b"junk")
        assert codes(result) == ["multipart.epilogue_content"]

    def test_transport_padding_is_informational(self) -> None:
        raw = GOOD.replace(b"--b\r\n", b"--b \t\r\n", 1)
        for policy in (STRICT, LENIENT):
            result = decode(raw, policy=policy)
            assert codes(result) == ["multipart.transport_padding"]
            assert result.complete and bodies(result) == [b"first", b"second"]

    def test_padding_after_close_delimiter(self) -> None:
        result = decode(GOOD[:-2] + b"  \r\n")
        assert codes(result) == ["multipart.transport_padding"]

    def test_boundary_not_after_crlf_is_content(self) -> None:
        inner = b"abc--b\r\nnot a delimiter --b--\r\n"
        result = decode(body_of(part(body=inner)))
        assert bodies(result) == [inner]
        assert result.deviations == ()

    def test_boundary_prefix_line_is_content_with_deviation(self) -> None:
        inner = b"a\r\n--bc\r\n--b-x\r\nz"
        result = decode(body_of(part(body=inner)))
        assert bodies(result) == [inner]
        assert codes(result) == ["multipart.boundary_in_content"]
        assert result.complete

    def test_delimiter_split_across_chunks(self) -> None:
        for chunk in range(1, 12):
            assert summary(decode(GOOD, chunk=chunk)) == summary(decode(GOOD))

    def test_no_parts(self) -> None:
        result = decode(b"--b--\r\n")
        assert fatal_codes(result) == ["multipart.no_parts"]
        assert not result.complete

    def test_no_parts_not_added_when_another_fatal_explains(self) -> None:
        assert codes(decode(b"")) == ["multipart.no_opening_delimiter"]


class TestLineEndings:
    LF_BODY = b"--b\nContent-Type: a/b\n\none\n--b\nContent-Type: a/b\n\ntwo\n--b--\n"

    def test_lenient_accepts_lf_and_records_once(self) -> None:
        result = decode(self.LF_BODY)
        assert bodies(result) == [b"one", b"two"]
        assert codes(result) == ["multipart.lf_line_endings"]
        assert not result.deviations[0].fatal
        assert result.complete

    def test_strict_stops_at_first_lf(self) -> None:
        result = decode(self.LF_BODY, policy=STRICT)
        assert result.parts == ()
        assert fatal_codes(result) == ["multipart.lf_line_endings"]
        assert result.deviations[0].location == "byte 3"
        assert not result.complete

    def test_strict_keeps_parts_before_the_lf(self) -> None:
        raw = b"--b\r\nContent-Type: a/b\r\n\r\none\r\n--b\r\nContent-Type: a/b\r\n\r\ntwo\n--b--\r\n"
        result = decode(raw, policy=STRICT)
        assert bodies(result) == [b"one"]
        assert fatal_codes(result) == ["multipart.lf_line_endings"]
        lenient = decode(raw)
        assert bodies(lenient) == [b"one", b"two"] and lenient.complete

    def test_lf_only_in_part_headers(self) -> None:
        raw = b"--b\r\nContent-Type: a/b\nX: y\r\n\r\nz\r\n--b--"
        assert codes(decode(raw)) == ["multipart.lf_line_endings"]
        assert fatal_codes(decode(raw, policy=STRICT)) == ["multipart.lf_line_endings"]

    def test_lf_blank_line(self) -> None:
        raw = b"--b\r\nContent-Type: a/b\r\n\nz\r\n--b--"
        result = decode(raw)
        assert codes(result) == ["multipart.lf_line_endings"] and bodies(result) == [b"z"]


class TestPartHeaders:
    def test_part_without_content_type(self) -> None:
        result = decode(b"--b\r\nContent-Location: /x\r\n\r\nz\r\n--b--\r\n")
        assert codes(result) == ["multipart.part_without_content_type"]
        assert result.deviations[0].location == "part 1 headers"
        assert not result.deviations[0].fatal

    @pytest.mark.parametrize("line", [b"no colon here", b"Bad Name: v", b"\xe9t\xe9: v", b"X: a\rb",
                                      b" continuation first"])
    def test_malformed_line_lenient_goes_on_strict_stops(self, line: bytes) -> None:
        raw = body_of(line + b"\r\n" + part(), part(body=b"y"))
        lenient = decode(raw)
        assert "multipart.malformed_part_headers" in codes(lenient)
        assert bodies(lenient) == [b"x", b"y"] and lenient.complete
        strict = decode(raw, policy=STRICT)
        assert fatal_codes(strict) == ["multipart.malformed_part_headers"]
        assert strict.parts == () and not strict.complete

    def test_folded_header_is_unfolded_and_recorded(self) -> None:
        raw = body_of(b"Content-Type: application/dicom;\r\n transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nx")
        for policy in (LENIENT, STRICT):
            result = decode(raw, policy=policy)
            assert codes(result) == ["multipart.malformed_part_headers"]
            assert "folded" in result.deviations[0].message
            ctype = result.parts[0].content_type
            assert ctype is not None and ctype.transfer_syntax == "1.2.840.10008.1.2.1"

    def test_whitespace_before_colon(self) -> None:
        result = decode(body_of(b"Content-Type : a/b\r\n\r\nx"))
        assert codes(result) == ["multipart.malformed_part_headers"]
        assert result.parts[0].headers.items == (("Content-Type", "a/b"),)

    def test_one_deviation_per_part(self) -> None:
        result = decode(body_of(b"bad1\r\nbad2\r\nbad3\r\n" + part()))
        (dev,) = [d for d in result.deviations if d.code == "multipart.malformed_part_headers"]
        assert "2 more" in dev.message

    def test_no_blank_line_before_next_delimiter(self) -> None:
        raw = b"--b\r\nContent-Type: a/b\r\n--b\r\nContent-Type: a/b\r\n\r\ny\r\n--b--"
        lenient = decode(raw)
        assert codes(lenient) == ["multipart.malformed_part_headers"]
        assert bodies(lenient) == [b"", b"y"]
        assert fatal_codes(decode(raw, policy=STRICT)) == ["multipart.malformed_part_headers"]


class TestLimits:
    def test_too_many_parts(self) -> None:
        raw = body_of(*[part() for _ in range(5)])
        result = decode(raw, max_parts=3)
        assert len(result.parts) == 3
        assert fatal_codes(result) == ["multipart.too_many_parts"]
        assert not result.complete
        assert decode(raw, max_parts=5).complete

    def test_header_too_large(self) -> None:
        raw = body_of(b"X-Long: " + b"a" * 200 + b"\r\n" + part())
        result = decode(raw, max_header_bytes=100)
        assert fatal_codes(result) == ["multipart.header_too_large"]
        assert result.deviations[0].location == "part 1 headers"
        assert decode(raw, max_header_bytes=300).complete

    @pytest.mark.parametrize("chunk", [1, 7, 4096])
    def test_header_limit_independent_of_chunking(self, chunk: int) -> None:
        header = b"X: " + b"a" * 90 + b"\r\n"  # 95 bytes of header lines
        raw = body_of(header + part())
        for limit in (80, 95 + 30, 200):
            assert summary(decode(raw, max_header_bytes=limit, chunk=chunk)) == summary(
                decode(raw, max_header_bytes=limit))

    def test_endless_header_block_is_bounded(self) -> None:
        decoder = MultipartDecoder("b", max_header_bytes=1000)
        decoder.feed(b"--b\r\nX: ")
        for _ in range(100):
            decoder.feed(b"a" * 1000)
        assert len(decoder._buf) < 2000  # noqa: SLF001 - the sliding buffer stays small
        assert fatal_codes(decoder.close()) == ["multipart.header_too_large"]

    def test_endless_transport_padding_is_bounded(self) -> None:
        decoder = MultipartDecoder("b")
        decoder.feed(b"--b\r\nContent-Type: a/b\r\n\r\nx\r\n--b")
        for _ in range(100):
            decoder.feed(b" " * 1000)
        assert len(decoder._buf) < 2000  # noqa: SLF001
        assert "multipart.boundary_in_content" in codes(decoder.close())

    def test_large_preamble_is_not_kept(self) -> None:
        decoder = MultipartDecoder("b")
        for _ in range(100):
            decoder.feed(b"p" * 10_000)
        assert len(decoder._buf) < 100  # noqa: SLF001
        decoder.feed(b"\r\n" + GOOD)
        result = decoder.close()
        assert codes(result) == ["multipart.preamble_content"]
        assert "1000000 bytes" in result.deviations[0].message


class TestChunking:
    CORPUS = [
        GOOD,
        b"pre\r\n" + GOOD + b"epi",
        TestLineEndings.LF_BODY,
        GOOD[:-9],
        b"--b\r\n--b--",
        b"--b\r\nX\r\n\r\na\r\n--bc\r\n--b \r\n\r\n\r\n--b--  \n",
        b"\n--b\r\n\r\n\r\n--b--",
        b"--b--",
        b"",
        b"--b\r\n\r\n" + b"\r\n--b-" * 5 + b"\r\n--b--",
    ]

    @pytest.mark.parametrize("chunk", [1, 7, 4096])
    @pytest.mark.parametrize("policy", [STRICT, LENIENT])
    def test_result_independent_of_chunk_size(self, chunk: int, policy: Strictness) -> None:
        for raw in self.CORPUS:
            expected = summary(decode(raw, policy=policy))
            assert summary(decode(raw, chunk=chunk, policy=policy)) == expected, raw

    def test_large_body_chunk_edges(self) -> None:
        data = os.urandom(50_000).replace(b"\n", b"\n-")
        raw = body_of(part(body=data), part(body=data[::-1]))
        expected = summary(decode(raw))
        assert bodies(decode(raw)) == [data, data[::-1]]
        for chunk in (1, 7, 31, 4096, 65_537):
            assert summary(decode(raw, chunk=chunk, spool_threshold=1 << 30)) == expected


class TestSpooling:
    def test_large_part_goes_to_disk(self, tmp_path: Path) -> None:
        big = os.urandom(300_000)
        raw = body_of(part(body=b"small"), part(body=big))
        result = decode(raw, chunk=65_536, spool_threshold=100_000, spool_dir=str(tmp_path))
        small, spooled = result.parts
        assert small.body.in_memory and small.body.read() == b"small"
        assert not spooled.body.in_memory
        assert spooled.body.path is not None and spooled.body.path.parent == tmp_path
        assert spooled.body.size == len(big)
        assert spooled.body.sha256() == hashlib.sha256(big).hexdigest()
        assert spooled.body.read() == big

    def test_threshold_is_inclusive_for_memory(self, tmp_path: Path) -> None:
        raw = body_of(part(body=b"a" * 100), part(body=b"a" * 101))
        result = decode(raw, chunk=7, spool_threshold=100, spool_dir=str(tmp_path))
        assert [p.body.in_memory for p in result.parts] == [True, False]

    def test_dropped_part_leaves_no_file(self, tmp_path: Path) -> None:
        raw = body_of(part(body=b"a" * 1000))[:-20]
        result = decode(raw, spool_threshold=10, spool_dir=str(tmp_path))
        assert result.parts == () and "multipart.no_closing_delimiter" in codes(result)
        assert list(tmp_path.iterdir()) == []

    def test_strict_stop_leaves_no_file(self, tmp_path: Path) -> None:
        raw = body_of(part(body=b"a" * 1000), close=b"\n--b--")
        result = decode(raw, spool_threshold=10, spool_dir=str(tmp_path), policy=STRICT)
        assert result.parts == ()
        assert list(tmp_path.iterdir()) == []

    def test_decode_multipart_reads_file_bodies(self, tmp_path: Path) -> None:
        src = tmp_path / "body.bin"
        src.write_bytes(GOOD)
        result = decode_multipart(Body.from_file(src), CT, spool_threshold=2, spool_dir=str(tmp_path))
        assert [p.body.in_memory for p in result.parts] == [False, False]
        assert bodies(result) == [b"first", b"second"]



def decode_source(source: Body, *, policy: Strictness = LENIENT, chunk: int = 1 << 20, spool_threshold: int = 1 << 20,
                  spool_dir: str | None = None, max_parts: int = 10_000,
                  max_header_bytes: int = 16_384) -> MultipartResult:
    """Decode a file-backed body fed from the file, with the decoder told the source."""
    decoder = MultipartDecoder("b", policy=policy, spool_threshold=spool_threshold, spool_dir=spool_dir,
                               max_parts=max_parts, max_header_bytes=max_header_bytes, source=source)
    for piece in source.chunks(chunk):
        decoder.feed(piece)
    return decoder.close()


def full_summary(result: MultipartResult) -> tuple[object, ...]:
    """Like :func:`summary`, with each part's size and whether it is in memory."""
    return summary(result), tuple((p.body.size, p.body.in_memory) for p in result.parts)


class TestFileSource:
    BIG = bytes(range(256)) * 40  # 10240 bytes
    CORPUS = [
        *TestChunking.CORPUS,
        body_of(part(body=b"small"), part(body=BIG), part(body=b"")),
        body_of(part(body=BIG), part(mt.APPLICATION_DICOM_JSON, b"[]"), part(body=BIG[::-1])),
        body_of(part(body=BIG + b"\r\n--bX\r\n" + BIG)),  # boundary_in_content inside a big part
        body_of(part(body=BIG))[:-20],  # truncated inside the close delimiter line's part
        body_of(part(body=b"small"), part(body=BIG))[:len(BIG) // 2],  # truncated inside a big part
        body_of(part(body=BIG), part(body=b"a" * 64))[:-30],  # truncated inside a small part
        body_of(part(body=BIG), close=b"\n--b--"),  # bare LF before the close delimiter
        body_of(b"bad line\r\n" + part(body=BIG), part(body=BIG)),  # malformed headers
        b"pre\r\n" + body_of(part(body=BIG), part(body=BIG)) + b"epilogue",
        body_of(part(body=BIG)).replace(b"\r\n", b"\n"),
    ]

    @pytest.fixture(autouse=True, params=["memmem", "bytes.find"])
    def search(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
        if request.param == "bytes.find":
            monkeypatch.setattr(mp, "_MEMMEM", None)
        elif mp._MEMMEM is None:  # noqa: SLF001
            pytest.skip("no memmem in this C library")

    @pytest.fixture
    def spool(self, tmp_path: Path) -> Path:
        spool = tmp_path / "spool"
        spool.mkdir()
        return spool

    @pytest.mark.parametrize("policy", [STRICT, LENIENT])
    @pytest.mark.parametrize("threshold", [0, 100, 1 << 20])
    def test_same_result_as_bytes(self, tmp_path: Path, spool: Path, policy: Strictness, threshold: int) -> None:
        path = tmp_path / "body.bin"
        for raw in self.CORPUS:
            path.write_bytes(raw)
            expected = full_summary(decode(raw, policy=policy, spool_threshold=threshold, spool_dir=str(spool)))
            for spooled in spool.iterdir():
                spooled.unlink()
            for chunk in (1, 7, 4096, 1 << 20):
                if chunk == 1 and len(raw) > 2000:
                    continue
                got = decode_source(Body.from_file(path), policy=policy, chunk=chunk, spool_threshold=threshold,
                                    spool_dir=str(spool))
                assert full_summary(got) == expected, (raw[:60], chunk)
                assert all(p.body.path == path for p in got.parts if not p.body.in_memory)
                assert list(spool.iterdir()) == []

    @pytest.mark.parametrize("policy", [STRICT, LENIENT])
    def test_decode_multipart_same_result_both_ways(self, tmp_path: Path, spool: Path, policy: Strictness) -> None:
        path = tmp_path / "body.bin"
        for raw in self.CORPUS:
            path.write_bytes(raw)
            for threshold in (0, 1000):
                from_bytes = decode_multipart(raw, CT, policy=policy, spool_threshold=threshold,
                                              spool_dir=str(spool))
                from_file = decode_multipart(Body.from_file(path), CT, policy=policy, spool_threshold=threshold,
                                             spool_dir=str(spool))
                assert full_summary(from_file) == full_summary(from_bytes)
                assert all(p.body.path == path for p in from_file.parts if not p.body.in_memory)
                assert len(list(spool.iterdir())) == sum(not p.body.in_memory for p in from_bytes.parts)
                for spooled in spool.iterdir():
                    spooled.unlink()

    def test_large_parts_are_ranges_of_the_source_and_nothing_is_spooled(self, tmp_path: Path,
                                                                          spool: Path) -> None:
        big = os.urandom(300_000)
        raw = body_of(part(body=b"small"), part(body=big), part(body=big[::-1]))
        path = tmp_path / "body.bin"
        path.write_bytes(raw)
        result = decode_multipart(Body.from_file(path), CT, spool_threshold=100_000, spool_dir=str(spool))
        assert result.complete and result.deviations == ()
        small, first, second = result.parts
        assert small.body == Body.of(b"small")
        assert first.body == Body.from_file(path, offset=raw.index(big), size=len(big))
        assert second.body == Body.from_file(path, offset=raw.index(big[::-1]), size=len(big))
        assert first.body.read() == big and second.body.sha256() == hashlib.sha256(big[::-1]).hexdigest()
        assert list(spool.iterdir()) == []

    def test_threshold_is_inclusive_for_memory(self, tmp_path: Path, spool: Path) -> None:
        path = tmp_path / "body.bin"
        path.write_bytes(body_of(part(body=b"a" * 100), part(body=b"a" * 101)))
        result = decode_source(Body.from_file(path), chunk=7, spool_threshold=100, spool_dir=str(spool))
        assert [p.body.in_memory for p in result.parts] == [True, False]
        assert list(spool.iterdir()) == []

    @pytest.mark.parametrize("chunk", [1, 7, 4096])
    def test_source_range_of_a_larger_file(self, tmp_path: Path, spool: Path, chunk: int) -> None:
        raw = body_of(part(body=b"x" * 500), part(body=b"small"))
        path = tmp_path / "container.bin"
        path.write_bytes(b"P" * 1234 + raw + b"S" * 99)
        source = Body.from_file(path, offset=1234, size=len(raw))
        result = decode_source(source, chunk=chunk, spool_threshold=100, spool_dir=str(spool))
        assert summary(result) == summary(decode(raw))
        assert result.parts[0].body == Body.from_file(path, offset=1234 + raw.index(b"x" * 500), size=500)
        assert list(spool.iterdir()) == []

    def test_memoryview_chunks(self, tmp_path: Path, spool: Path) -> None:
        raw = body_of(part(body=self.BIG), part(body=b"small"))
        path = tmp_path / "body.bin"
        path.write_bytes(raw)
        decoder = MultipartDecoder("b", spool_threshold=100, spool_dir=str(spool), source=Body.from_file(path))
        for start in range(0, len(raw), 1000):
            decoder.feed(memoryview(raw)[start:start + 1000])
        assert summary(decoder.close()) == summary(decode(raw))
        assert list(spool.iterdir()) == []

    def test_dropped_parts_leave_nothing(self, tmp_path: Path, spool: Path) -> None:
        path = tmp_path / "body.bin"
        path.write_bytes(body_of(part(body=b"a" * 1000))[:-20])
        result = decode_source(Body.from_file(path), chunk=64, spool_threshold=10, spool_dir=str(spool))
        assert result.parts == () and "multipart.no_closing_delimiter" in codes(result)
        assert list(spool.iterdir()) == [] and path.exists()

    def test_in_memory_source_changes_nothing(self, spool: Path) -> None:
        raw = body_of(part(body=b"a" * 1000))
        decoder = MultipartDecoder("b", spool_threshold=10, spool_dir=str(spool), source=Body.of(raw))
        decoder.feed(raw)
        (only,) = decoder.close().parts
        assert only.body.path is not None and only.body.path.parent == spool
        assert only.body.read() == b"a" * 1000

    def test_the_file_is_read_not_the_fed_bytes(self, tmp_path: Path, spool: Path) -> None:
        # the documented contract: the decoder cannot tell when the fed bytes differ from the file's
        raw = body_of(part(body=b"a" * 1000))
        path = tmp_path / "body.bin"
        path.write_bytes(raw.replace(b"a" * 1000, b"z" * 1000))
        decoder = MultipartDecoder("b", spool_threshold=10, spool_dir=str(spool), source=Body.from_file(path))
        decoder.feed(raw)
        assert bodies(decoder.close()) == [b"z" * 1000]


@pytest.mark.skipif(mp._MEMMEM is None, reason="no memmem in this C library")  # noqa: SLF001
class TestSearch:
    @settings(max_examples=200, deadline=None)
    @given(haystack=st.binary(max_size=200) | st.lists(st.sampled_from([b"\n", b"--", b"b", b"\n--b", b"x"]),
                                                       max_size=30).map(b"".join),
           needle=st.sampled_from([b"\n--b", b"\n--bb", b"\n--b\n--b", b"\x00", b"\n--" + b"z" * 70]))
    def test_memmem_agrees_with_bytes_find(self, haystack: bytes, needle: bytes) -> None:
        assert mp._MEMMEM is not None  # noqa: SLF001
        assert mp._MEMMEM(haystack, needle) == haystack.find(needle)  # noqa: SLF001

    def test_bytearray_and_memoryview_chunks_use_the_slow_paths(self) -> None:
        data = os.urandom(50_000).replace(b"\n", b"\n-")
        raw = body_of(part(body=data), part(body=b"small"))
        expected = summary(decode(raw))
        for wrap in (bytearray, memoryview):
            decoder = MultipartDecoder("b", spool_threshold=1 << 30)
            for start in range(0, len(raw), 4096):
                decoder.feed(wrap(raw[start:start + 4096]))
            assert summary(decoder.close()) == expected

    @pytest.mark.parametrize("chunk", [64, 4096, 65_537])
    def test_same_result_with_bytes_find(self, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
        data = os.urandom(200_000).replace(b"\n", b"\n-")
        raw = body_of(part(body=data), part(body=data[:5000] + b"\r\n--bX" + data[5000:]))
        expected = summary(decode(raw, chunk=chunk, spool_threshold=1 << 30))
        monkeypatch.setattr(mp, "_MEMMEM", None)
        assert summary(decode(raw, chunk=chunk, spool_threshold=1 << 30)) == expected
        assert bodies(decode(raw, chunk=chunk)) == [data, data[:5000] + b"\r\n--bX" + data[5000:]]

# -- properties ------------------------------------------------------------------------------------------

boundaries = st.text(alphabet="abcXYZ019'()+_,-./:=? ", min_size=1, max_size=12).filter(
    lambda b: not b.endswith(" "))
part_bodies = st.binary(max_size=200) | st.sampled_from([b"", b"\r\n", b"--", b"\r\n--", b"\n--b"])
header_maps = st.dictionaries(st.sampled_from(["Content-Type", "Content-Location", "X-A"]),
                              st.text(alphabet="abc/;=+ 0", max_size=20).map(str.strip), max_size=3)


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    return [raw[a:b] for a, b in zip(points, points[1:], strict=False)]


def decode_chunks(chunks: list[bytes], boundary: str, policy: Strictness) -> MultipartResult:
    decoder = MultipartDecoder(boundary, policy=policy, spool_threshold=1 << 30)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.close()


class TestProperties:
    @settings(max_examples=150, deadline=None)
    @given(raw=st.binary(max_size=300) | st.lists(st.sampled_from(
        [b"--b", b"\r\n", b"\n", b"--", b" ", b"X: y", b"Content-Type: a/b", b":", b"\r", b"z"]),
        max_size=40).map(b"".join),
        cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
        policy=st.sampled_from([STRICT, LENIENT]))
    def test_arbitrary_bytes_never_raise_and_chunking_is_irrelevant(self, raw: bytes, cuts: list[int],
                                                                    policy: Strictness) -> None:
        whole = decode_chunks([raw], "b", policy)
        assert summary(decode_chunks(split(raw, cuts), "b", policy)) == summary(whole)
        assert summary(decode_chunks([raw[i:i + 1] for i in range(len(raw))], "b", policy)) == summary(whole)
        assert all(d.code in mp.DEVIATION_CODES for d in whole.deviations)
        if whole.complete:
            assert whole.parts and not any(d.fatal for d in whole.deviations)

    @settings(max_examples=100, deadline=None)
    @given(boundary=boundaries, parts=st.lists(st.tuples(header_maps, part_bodies), min_size=1, max_size=4),
           cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6))
    def test_round_trip(self, boundary: str, parts: list[tuple[dict[str, str], bytes]],
                        cuts: list[int]) -> None:
        if any(b"\n--" + boundary.encode() in b"\n" + body for _, body in parts):
            with pytest.raises(ValueError, match="begins a line in part"):
                encode_multipart(parts, root_type="a/b", boundary=boundary)
            return
        ctype, raw = encode_multipart(parts, root_type="a/b", boundary=boundary)
        result = decode_chunks(split(raw, cuts), boundary, STRICT)
        assert bodies(result) == [body for _, body in parts]
        assert [dict(p.headers.items) for p in result.parts] == [h for h, _ in parts]
        assert result.complete
        assert set(codes(result)) <= {"multipart.part_without_content_type"}
        assert codes(decode_multipart(raw, ctype)) == codes(result) + (
            ["multipart.type_differs_from_root"] if result.parts[0].content_type is not None
            and result.parts[0].content_type.essence != "a/b" else [])

    @settings(max_examples=100, deadline=None)
    @given(raw=st.lists(st.sampled_from([b"--b", b"\r\n", b"\n", b"--", b" ", b"X: y", b"Content-Type: a/b",
                                         b"z" * 40, b"\r"]), max_size=40).map(b"".join),
           cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
           threshold=st.sampled_from([0, 5, 50]), policy=st.sampled_from([STRICT, LENIENT]))
    def test_file_source_gives_the_same_result(self, raw: bytes, cuts: list[int], threshold: int,
                                               policy: Strictness) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "body.bin"
            path.write_bytes(b"#" * 3 + raw)
            spool = Path(tmp) / "spool"
            spool.mkdir()
            decoder = MultipartDecoder("b", policy=policy, spool_threshold=threshold, spool_dir=str(spool),
                                       source=Body.from_file(path, offset=3))
            for piece in split(raw, cuts):
                decoder.feed(piece)
            got = decoder.close()
            assert list(spool.iterdir()) == []
            expected = MultipartDecoder("b", policy=policy, spool_threshold=threshold, spool_dir=str(spool))
            expected.feed(raw)
            assert full_summary(got) == full_summary(expected.close())

    @settings(max_examples=100, deadline=None)
    @given(data=st.data(), policy=st.sampled_from([STRICT, LENIENT]))
    def test_mutated_bodies_never_raise(self, data: st.DataObject, policy: Strictness) -> None:
        raw = bytearray(GOOD)
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(raw)))
            op = data.draw(st.sampled_from(["insert", "delete", "flip"]))
            if op == "insert":
                raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
            elif op == "delete":
                del raw[at:at + data.draw(st.integers(1, 6))]
            elif at < len(raw):
                raw[at] ^= data.draw(st.integers(1, 255))
        cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=5))
        whole = decode_chunks([bytes(raw)], "b", policy)
        assert summary(decode_chunks(split(bytes(raw), cuts), "b", policy)) == summary(whole)
        decode_multipart(bytes(raw), CT, policy=policy)
