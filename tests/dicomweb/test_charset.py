"""Whether text fits declared character sets (dicomweb/charset.py)."""

from __future__ import annotations

from wic_conformance.dicomweb.charset import char_encodable, text_encodable


class TestCharEncodable:
    def test_first_codec_that_encodes_wins(self) -> None:
        assert char_encodable("ü", ["ascii", "latin_1"])

    def test_no_codec_encodes(self) -> None:
        assert not char_encodable("И", ["ascii", "latin_1"])
        assert not char_encodable("ü", [])

    def test_unknown_codec_counts_as_not_encoding(self) -> None:
        assert not char_encodable("ü", ["no-such-codec"])
        assert char_encodable("ü", ["no-such-codec", "latin_1"])


class TestTextEncodable:
    def test_ascii_always_fits(self) -> None:
        assert text_encodable("Doe^Jane", [])

    def test_every_non_ascii_character_needs_a_codec(self) -> None:
        assert text_encodable("Müller Иванов", ["latin_1", "iso8859_5"])
        assert not text_encodable("Müller Иванов", ["latin_1"])
