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


class TestCodecsForTerms:
    def test_default_repertoire_terms_are_ascii(self) -> None:
        from wic_conformance.dicomweb.charset import codecs_for_terms

        assert codecs_for_terms(["ISO_IR 6"]) == (["ascii"], [])
        assert codecs_for_terms([]) == (["ascii"], [])
        assert codecs_for_terms(["", "ISO 2022 IR 100"])[0][0] == "ascii"
        codecs, unknown = codecs_for_terms(["ISO_IR 192", "NOT A TERM"])
        assert unknown == ["NOT A TERM"] and codecs[0] in ("UTF8", "utf_8", "utf-8", "UTF-8")

    def test_iso_ir_6_does_not_cover_latin1(self) -> None:
        from wic_conformance.dicomweb.charset import codecs_for_terms, text_encodable

        assert not text_encodable("Müller", codecs_for_terms(["ISO_IR 6"])[0])
        assert text_encodable("Müller", codecs_for_terms(["ISO_IR 100"])[0])
