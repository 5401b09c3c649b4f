from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wic_conformance.dicomweb import media_types as mt


class TestParse:
    def test_multipart_with_quoted_type(self) -> None:
        m = mt.parse_media_type('Multipart/Related; TYPE="application/dicom+json"; boundary=abc')
        assert m.essence == "multipart/related"
        assert m.param("type") == "application/dicom+json"
        assert "type" in m.quoted
        assert m.boundary == "abc"
        assert m.root_type is not None and m.root_type.is_(mt.APPLICATION_DICOM_JSON)
        assert m.deviations == ()

    def test_unquoted_type_with_slash_is_a_deviation(self) -> None:
        m = mt.parse_media_type("multipart/related; type=application/dicom; boundary=x")
        assert m.param("type") == "application/dicom"
        assert [d.code for d in m.deviations] == ["media_type.unquoted_value"]

    def test_whitespace_and_escapes(self) -> None:
        m = mt.parse_media_type('  application/dicom ;  transfer-syntax = 1.2.840.10008.1.2.1 ; x="a\\"b" ')
        assert m.transfer_syntax == "1.2.840.10008.1.2.1"
        assert m.param("x") == 'a"b'

    def test_boundary_value_keeps_case(self) -> None:
        assert mt.parse_media_type('multipart/related; boundary="AbC d"').boundary == "AbC d"

    def test_repeated_parameter_is_a_deviation(self) -> None:
        m = mt.parse_media_type("application/dicom; transfer-syntax=1.2; transfer-syntax=1.3")
        assert m.param_all("transfer-syntax") == ["1.2", "1.3"]
        assert "media_type.repeated_param" in [d.code for d in m.deviations]

    def test_garbage_is_fatal_not_an_exception(self) -> None:
        m = mt.parse_media_type("not a media type")
        assert m.essence == "/"
        assert m.deviations[0].fatal

    def test_unclosed_quote(self) -> None:
        m = mt.parse_media_type('multipart/related; type="application/dicom')
        assert "media_type.unclosed_quote" in [d.code for d in m.deviations]

    @given(st.text(max_size=80))
    def test_never_raises(self, text: str) -> None:
        mt.parse_media_type(text)
        mt.parse_accept(text)


class TestCompareAndFormat:
    def test_matches_is_case_insensitive_with_wildcards(self) -> None:
        assert mt.parse_media_type("Application/DICOM+JSON").matches(mt.APPLICATION_DICOM_JSON)
        assert mt.parse_media_type("application/*").matches(mt.APPLICATION_DICOM_XML)
        assert not mt.parse_media_type("application/dicom").matches(mt.APPLICATION_DICOM_JSON)

    def test_format_quotes_only_when_needed(self) -> None:
        text = mt.format_media_type(mt.MULTIPART_RELATED, {"type": mt.APPLICATION_DICOM, "boundary": "b1"})
        assert text == 'multipart/related; type="application/dicom"; boundary=b1'

    @given(st.dictionaries(st.sampled_from(["type", "boundary", "charset", "x-y"]),
                           st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
                           max_size=4))
    def test_format_parse_round_trip(self, params: dict[str, str]) -> None:
        parsed = mt.parse_media_type(mt.format_media_type("multipart/related", params))
        assert dict(parsed.params) == params
        assert parsed.deviations == ()

    @pytest.mark.parametrize(("text", "elements"), [
        ("", [""]),
        ("a, b,,c", ["a", " b", "", "c"]),
        ('a; p="x,y", b', ['a; p="x,y"', " b"]),
        ('a; p="x\\",y", b', ['a; p="x\\",y"', " b"]),
        ('299 - "a, b"', ['299 - "a, b"']),
    ])
    def test_split_header_list(self, text: str, elements: list[str]) -> None:
        assert mt.split_header_list(text) == elements

    def test_accept_orders_by_q(self) -> None:
        items = mt.parse_accept('application/dicom+xml;q=0.5, application/dicom+json, */*;q=0.1')
        assert [m.essence for m, _ in items] == ["application/dicom+json", "application/dicom+xml", "*/*"]
