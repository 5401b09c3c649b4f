"""Tests of the checks on captured STOW-RS requests (validate/stow_request.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.support.datasets import part10_bytes, vl_photographic_json
from tests.support.exchanges import Part, stow_exchange
from tests.support.exchanges import run_named_check as run
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Exchange, Headers, Request
from wic_conformance.dicomweb.multipart import encode_multipart
from wic_conformance.findings import Severity
from wic_conformance.validate import stow_request  # noqa: F401  (registers the checks)
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

BASE = "http://127.0.0.1/dicom-web"
URL = f"{BASE}/studies"
STUDY = "2.25.1001"
SERIES = "2.25.1002"
SOP = "2.25.1003"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
PIXEL_URI = f"{BASE}/bulk/pixel-1"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


# -- builders ---------------------------------------------------------------------------------------
def json_instance(*, study: str = STUDY, pixel_uri: str | None = PIXEL_URI, sop: str = SOP,
                  extra: Mapping[str, Any] | None = None, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Return one DICOM JSON dataset object of a VL Photographic image with WIC baseline attributes."""
    return vl_photographic_json(study=study, series=SERIES, sop=sop, pixel_uri=pixel_uri, drop=drop,
                                extra={"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}, **(extra or {})})


def json_part(value: Any) -> Part:
    return {"Content-Type": mt.APPLICATION_DICOM_JSON}, json.dumps(value).encode("utf-8")


def bulk_part(location: str | None = PIXEL_URI, media_type: str = mt.IMAGE_JPEG, body: bytes = JPEG) -> Part:
    headers = {"Content-Type": media_type}
    if location is not None:
        headers["Content-Location"] = location
    return headers, body


def part10(*, ts: str = ExplicitVRLittleEndian, study: str = STUDY, sop: str = SOP,
           extra: Mapping[str, Any] | None = None) -> bytes:
    """Return a small PS3.10 Secondary Capture file."""
    ds = Dataset()
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = SERIES
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-1"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    return part10_bytes(ds, sop_class=SC, sop_instance=sop, transfer_syntax=ts)


def dicom_part(data: bytes, content_type: str = mt.APPLICATION_DICOM) -> Part:
    return {"Content-Type": content_type}, data


def xml_document(*, study: str = STUDY, pixel_uri: str = PIXEL_URI) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" xml:space="preserve">
  <DicomAttribute tag="00080016" vr="UI" keyword="SOPClassUID"><Value number="1">{VL_PHOTO}</Value>
  </DicomAttribute>
  <DicomAttribute tag="00080018" vr="UI" keyword="SOPInstanceUID"><Value number="1">{SOP}</Value>
  </DicomAttribute>
  <DicomAttribute tag="0020000D" vr="UI" keyword="StudyInstanceUID"><Value number="1">{study}</Value>
  </DicomAttribute>
  <DicomAttribute tag="7FE00010" vr="OB" keyword="PixelData"><BulkData uri="{pixel_uri}"/></DicomAttribute>
</NativeDicomModel>
""".encode()


def request(parts: Sequence[Part] | None = None, *, url: str = URL, **kw: Any) -> Exchange:
    """Build a recorded STOW-RS request; by default a good JSON + JPEG request."""
    if parts is None:
        parts = [json_part([json_instance()]), bulk_part()]
    return stow_exchange(parts, url=url, **kw)


def ids(result: CheckResult) -> list[str]:
    return sorted({f.requirement for f in result.findings})


def assert_passes(name: str, exchange: Exchange) -> None:
    result = run(name, exchange)
    assert result.outcome is Outcome.PASSED, [repr(f) for f in result.findings]


def assert_fails(name: str, exchange: Exchange, rid: str, match: str = "",
                 outcome: Outcome = Outcome.FAILED) -> CheckResult:
    result = run(name, exchange)
    assert result.outcome is outcome, [repr(f) for f in result.findings]
    assert rid in ids(result), [repr(f) for f in result.findings]
    if match:
        messages = " | ".join(f.message for f in result.findings if f.requirement == rid)
        assert match in messages, messages
    for finding in result.findings:
        assert finding.location, repr(finding)
        assert finding.confidence
    return result


# -- the good request passes everything -------------------------------------------------------------
CHECKS = [
    "stow_request_method_is_post", "stow_request_targets_studies", "stow_request_has_no_query",
    "stow_request_is_multipart_related", "stow_request_root_type_allowed",
    "stow_request_has_length_or_coding", "stow_request_has_accept", "stow_request_multipart_well_formed",
    "stow_request_parts_match_declared_type", "stow_request_bulk_data_uris_resolve",
    "stow_request_metadata_precedes_bulk", "stow_request_bulk_parts_typed", "stow_request_no_implicit_vr",
    "stow_request_study_uid_matches_target", "stow_request_charset_single",
    "stow_request_no_query_only_attributes",
]


class TestGoodRequests:
    @pytest.mark.parametrize("name", CHECKS)
    def test_json_request_passes(self, name: str) -> None:
        assert_passes(name, request())

    @pytest.mark.parametrize("name", CHECKS)
    def test_part10_request_passes(self, name: str) -> None:
        ex = request([dicom_part(part10()), dicom_part(part10(sop="2.25.1004"))],
                     root_type=mt.APPLICATION_DICOM, url=f"{URL}/{STUDY}")
        assert_passes(name, ex)

    @pytest.mark.parametrize("name", CHECKS)
    def test_xml_request_passes(self, name: str) -> None:
        ex = request([({"Content-Type": mt.APPLICATION_DICOM_XML}, xml_document()), bulk_part()],
                     root_type=mt.APPLICATION_DICOM_XML)
        assert_passes(name, ex)

    def test_every_check_is_tagged_for_the_capturer(self) -> None:
        for name in CHECKS:
            assert "capturer" in REGISTRY[name].tags
            assert REGISTRY[name].description


# -- request line -----------------------------------------------------------------------------------
class TestRequestLine:
    def test_method_must_be_post(self) -> None:
        assert_fails("stow_request_method_is_post", request(method="PUT"), "STOW-URL-001", "'PUT'")

    def test_method_is_case_sensitive(self) -> None:
        assert_fails("stow_request_method_is_post", request(method="post"), "STOW-URL-001", "case-sensitive")

    def test_target_must_be_studies(self) -> None:
        assert_fails("stow_request_targets_studies", request(url=f"{URL}/{STUDY}/series"), "STOW-URL-001",
                     "neither")

    def test_target_study_must_be_a_uid(self) -> None:
        assert_fails("stow_request_targets_studies", request(url=f"{URL}/study-one"), "STOW-URL-001",
                     "not a valid UID")

    def test_target_with_study_passes(self) -> None:
        assert_passes("stow_request_targets_studies", request(url=f"{URL}/{STUDY}"))

    def test_no_query(self) -> None:
        assert_fails("stow_request_has_no_query", request(url=f"{URL}?studyUID=1"), "STOW-URL-003",
                     "studyUID=1")

    def test_line_checks_do_not_apply_to_a_bare_body(self) -> None:
        ex = request(url="", method="")
        assert run("stow_request_method_is_post", ex).outcome is Outcome.NOT_APPLICABLE
        assert run("stow_request_has_accept", ex).outcome is Outcome.NOT_APPLICABLE


# -- headers ----------------------------------------------------------------------------------------
class TestContentType:
    def test_missing(self) -> None:
        assert_fails("stow_request_is_multipart_related", request(drop=["Content-Type"]), "STOW-HDR-001",
                     "no Content-Type")

    def test_not_multipart(self) -> None:
        ex = request(content_type=mt.APPLICATION_DICOM, body=part10())
        assert_fails("stow_request_is_multipart_related", ex, "STOW-HDR-001", "not multipart/related")

    def test_type_missing(self) -> None:
        ex = request(content_type="multipart/related; boundary=abc", body=b"--abc\r\n\r\n--abc--\r\n")
        assert_fails("stow_request_is_multipart_related", ex, "STOW-HDR-001", "no type parameter")

    def test_type_unquoted(self) -> None:
        ctype, body = encode_multipart([json_part([json_instance()])], root_type=mt.APPLICATION_DICOM_JSON,
                                       boundary="b0undary")
        ex = request(content_type="multipart/related; type=application/dicom+json; boundary=b0undary",
                     body=body)
        assert_fails("stow_request_is_multipart_related", ex, "STOW-HDR-001", "not a quoted string")

    def test_two_content_types(self) -> None:
        ex = request()
        assert ex.request is not None
        doubled = Headers(ex.request.headers.items + (("Content-Type", mt.APPLICATION_DICOM),))
        ex = Exchange(request=Request("POST", URL, doubled, ex.request.body))
        assert_fails("stow_request_is_multipart_related", ex, "STOW-HDR-001", "2 Content-Type headers")

    def test_boundary_missing(self) -> None:
        ex = request(content_type='multipart/related; type="application/dicom+json"', body=b"{}")
        assert_fails("stow_request_is_multipart_related", ex, "STOW-HDR-001", "no boundary")


class TestRootType:
    def test_other_root_type(self) -> None:
        ex = request([bulk_part()], root_type=mt.IMAGE_JPEG)
        assert_fails("stow_request_root_type_allowed", ex, "STOW-HDR-002", "'image/jpeg'")

    def test_legacy_json_is_a_warning(self) -> None:
        ex = request([({"Content-Type": mt.APPLICATION_JSON}, json.dumps([json_instance()]).encode()),
                      bulk_part()], root_type=mt.APPLICATION_JSON)
        result = assert_fails("stow_request_root_type_allowed", ex, "STOW-HDR-009", "legacy",
                              outcome=Outcome.WARNED)
        assert result.findings[0].severity is Severity.WARNING

    def test_two_transfer_syntaxes(self) -> None:
        ctype, body = encode_multipart([dicom_part(part10())], root_type=mt.APPLICATION_DICOM)
        ctype += "; transfer-syntax=1.2.840.10008.1.2.1; transfer-syntax=1.2.840.10008.1.2.4.50"
        ex = request(content_type=ctype, body=body)
        assert_fails("stow_request_root_type_allowed", ex, "STOW-HDR-002", "given 2 times")

    def test_one_transfer_syntax_passes(self) -> None:
        ctype, body = encode_multipart([dicom_part(part10())], root_type=mt.APPLICATION_DICOM)
        assert_passes("stow_request_root_type_allowed",
                      request(content_type=ctype + "; transfer-syntax=1.2.840.10008.1.2.1", body=body))


class TestLengthAndAccept:
    def test_no_length_no_coding(self) -> None:
        assert_fails("stow_request_has_length_or_coding", request(drop=["Content-Length"]), "STOW-HDR-003",
                     "neither Content-Length")

    def test_chunked_passes(self) -> None:
        ex = request(drop=["Content-Length"], headers={"Transfer-Encoding": "chunked"})
        assert_passes("stow_request_has_length_or_coding", ex)

    def test_wrong_length(self) -> None:
        assert_fails("stow_request_has_length_or_coding", request(headers={"Content-Length": "12"}),
                     "STOW-HDR-003", "says 12 bytes")

    def test_no_accept(self) -> None:
        assert_fails("stow_request_has_accept", request(drop=["Accept"]), "STOW-HDR-004", "no Accept")

    def test_accept_without_dicom_types(self) -> None:
        assert_fails("stow_request_has_accept", request(headers={"Accept": "application/json, text/html"}),
                     "STOW-HDR-004", "admits neither")

    def test_accept_excluded_by_q0(self) -> None:
        assert_fails("stow_request_has_accept", request(headers={"Accept": "application/dicom+json;q=0"}),
                     "STOW-HDR-004")

    @pytest.mark.parametrize("accept", ["*/*", "application/*", "text/html, application/dicom+xml;q=0.5"])
    def test_accept_wildcards_and_xml_pass(self, accept: str) -> None:
        assert_passes("stow_request_has_accept", request(headers={"Accept": accept}))


# -- multipart structure ----------------------------------------------------------------------------
class TestMultipartStructure:
    def test_truncated_body(self) -> None:
        ctype, body = encode_multipart([json_part([json_instance()]), bulk_part()],
                                       root_type=mt.APPLICATION_DICOM_JSON)
        cut = body[: body.rindex(b"\r\n--")]
        assert_fails("stow_request_multipart_well_formed", request(content_type=ctype, body=cut),
                     "STOW-PAY-015")

    def test_bare_lf_line_endings(self) -> None:
        ctype, body = encode_multipart([json_part([json_instance()])], root_type=mt.APPLICATION_DICOM_JSON)
        assert_fails("stow_request_multipart_well_formed",
                     request(content_type=ctype, body=body.replace(b"\r\n", b"\n")), "STOW-PAY-015")

    def test_bad_boundary(self) -> None:
        body = b"--a{b\r\nContent-Type: application/dicom+json\r\n\r\n[]\r\n--a{b--\r\n"
        ex = request(content_type='multipart/related; type="application/dicom+json"; boundary="a{b"',
                     body=body)
        assert_fails("stow_request_multipart_well_formed", ex, "STOW-PAY-015", "bchars")

    def test_part_without_content_type(self) -> None:
        ex = request([json_part([json_instance()]), ({"Content-Location": PIXEL_URI}, JPEG)])
        assert_fails("stow_request_multipart_well_formed", ex, "STOW-PAY-010")

    def test_type_differs_from_root_is_a_warning(self) -> None:
        ex = request([bulk_part(), json_part([json_instance()])], root_type=mt.APPLICATION_DICOM_JSON)
        result = assert_fails("stow_request_multipart_well_formed", ex, "STOW-PAY-014", "image/jpeg",
                              outcome=Outcome.WARNED)
        assert all(f.severity is Severity.WARNING for f in result.findings)

    def test_empty_body(self) -> None:
        ex = request(content_type='multipart/related; type="application/dicom+json"; boundary=b1', body=b"")
        assert_fails("stow_request_multipart_well_formed", ex, "STOW-PAY-001", "empty")

    def test_preamble_is_information_only(self) -> None:
        ctype, body = encode_multipart([json_part([json_instance()]), bulk_part()],
                                       root_type=mt.APPLICATION_DICOM_JSON)
        ex = request(content_type=ctype, body=b"hello\r\n" + body)
        result = run("stow_request_multipart_well_formed", ex)
        assert result.outcome is Outcome.WARNED
        assert [f.severity for f in result.findings] == [Severity.INFO]


class TestPartsMatchDeclaredType:
    name = "stow_request_parts_match_declared_type"

    def test_json_part_in_part10_request(self) -> None:
        ex = request([dicom_part(part10()), json_part([json_instance()])], root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-002", "application/dicom")

    def test_bulk_part_in_part10_request(self) -> None:
        ex = request([dicom_part(part10()), bulk_part()], root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-003", "image/jpeg")

    def test_part10_part_that_is_not_ps310(self) -> None:
        ex = request([dicom_part(b"not a dicom file")], root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-003", "not PS3.10")

    def test_part10_part_in_json_request(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(), dicom_part(part10())])
        assert_fails(self.name, ex, "STOW-PAY-002", "must not be mixed")

    def test_two_json_parts(self) -> None:
        ex = request([json_part([json_instance()]), json_part([json_instance(sop="2.25.9", pixel_uri=None)]),
                      bulk_part()])
        assert_fails(self.name, ex, "STOW-PAY-005", "2 JSON metadata parts")

    def test_json_object_instead_of_array(self) -> None:
        assert_fails(self.name, request([json_part(json_instance()), bulk_part()]), "STOW-PAY-005",
                     "not a top-level array")

    def test_empty_json_array(self) -> None:
        assert_fails(self.name, request([json_part([])]), "STOW-PAY-001", "no dataset")

    def test_json_part_in_xml_request(self) -> None:
        xml = ({"Content-Type": mt.APPLICATION_DICOM_XML}, xml_document())
        ex = request([xml, json_part([]), bulk_part()], root_type=mt.APPLICATION_DICOM_XML)
        assert_fails(self.name, ex, "STOW-PAY-004", "application/dicom+json metadata part")

    def test_json_root_without_json_part(self) -> None:
        ex = request([bulk_part()], root_type=mt.APPLICATION_DICOM_JSON)
        assert_fails(self.name, ex, "STOW-PAY-005", "no part has that type")


# -- bulk data --------------------------------------------------------------------------------------
class TestBulkDataResolution:
    name = "stow_request_bulk_data_uris_resolve"

    @pytest.mark.parametrize(("uri", "reason"), [
        ("file:///home/capture/img1.jpg", "file: URI"),
        ("http://other.example/bulk/1", "another host (other.example)"),
        ("/dicom-web/bulk/none", "path-only"),
        (f"{BASE}/bulk/unknown", "absolute URL"),
    ])
    def test_unresolved_uri_is_not_dereferenced(self, uri: str, reason: str) -> None:
        ex = request([json_part([json_instance(pixel_uri=uri)]), bulk_part()])
        result = assert_fails(self.name, ex, "STOW-PAY-012", "was not dereferenced")
        assert any(reason in f.message for f in result.findings)

    def test_relative_and_absolute_forms_are_hinted(self) -> None:
        ex = request([json_part([json_instance(pixel_uri="/dicom-web/bulk/pixel-1")]), bulk_part()])
        assert_fails(self.name, ex, "STOW-PAY-012", "same resource in another form")

    def test_uri_matching_two_parts(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(), bulk_part()])
        assert_fails(self.name, ex, "STOW-PAY-012", "matches 2 parts")

    def test_bulk_part_without_content_location(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(), bulk_part(location=None)])
        assert_fails(self.name, ex, "STOW-PAY-010", "no Content-Location")

    def test_unreferenced_bulk_part_is_a_warning(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(), bulk_part(location=f"{BASE}/bulk/extra")])
        result = assert_fails(self.name, ex, "STOW-PAY-012", "not referenced", outcome=Outcome.WARNED)
        assert result.findings[0].severity is Severity.WARNING

    def test_xml_reference_unresolved(self) -> None:
        ex = request([({"Content-Type": mt.APPLICATION_DICOM_XML}, xml_document(pixel_uri="cid:nothing")),
                      bulk_part()], root_type=mt.APPLICATION_DICOM_XML)
        assert_fails(self.name, ex, "STOW-PAY-012", "'cid:nothing'")


class TestMetadataOrder:
    def test_bulk_before_metadata(self) -> None:
        ex = request([bulk_part(), json_part([json_instance()])])
        assert_fails("stow_request_metadata_precedes_bulk", ex, "STOW-PAY-011",
                     "comes before metadata part 2")


class TestBulkPartsTyped:
    name = "stow_request_bulk_parts_typed"

    def test_pixel_data_in_a_non_pixel_type(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(media_type=mt.TEXT_PLAIN)])
        assert_fails(self.name, ex, "STOW-PAY-007", "text/plain")

    def test_other_bulk_data_must_be_octet_stream(self) -> None:
        icc = f"{BASE}/bulk/icc"
        inst = json_instance(extra={"00282000": {"vr": "OB", "BulkDataURI": icc}})
        ex = request([json_part([inst]), bulk_part(), bulk_part(location=icc, media_type=mt.IMAGE_JPEG)])
        assert_fails(self.name, ex, "STOW-PAY-007", "(0028,2000)")

    def test_octet_stream_bulk_passes(self) -> None:
        icc = f"{BASE}/bulk/icc"
        inst = json_instance(extra={"00282000": {"vr": "OB", "BulkDataURI": icc}})
        ex = request([json_part([inst]), bulk_part(),
                      bulk_part(location=icc, media_type=mt.APPLICATION_OCTET_STREAM)])
        assert_passes(self.name, ex)

    def test_document_type_differs_from_mime_type(self) -> None:
        doc = f"{BASE}/bulk/doc"
        inst = json_instance(pixel_uri=None, extra={
            "00420011": {"vr": "OB", "BulkDataURI": doc},
            "00420012": {"vr": "LO", "Value": ["application/pdf"]},
        })
        ex = request([json_part([inst]), bulk_part(location=doc, media_type=mt.APPLICATION_OCTET_STREAM,
                                                   body=b"%PDF-1.4\n%%EOF\n")])
        assert_fails(self.name, ex, "STOW-PAY-009", "'application/pdf'")

    def test_document_type_matches_mime_type(self) -> None:
        doc = f"{BASE}/bulk/doc"
        inst = json_instance(pixel_uri=None, extra={
            "00420011": {"vr": "OB", "BulkDataURI": doc},
            "00420012": {"vr": "LO", "Value": ["application/pdf"]},
        })
        ex = request([json_part([inst]), bulk_part(location=doc, media_type=mt.APPLICATION_PDF,
                                                   body=b"%PDF-1.4\n%%EOF\n")])
        assert_passes(self.name, ex)

    def test_multi_frame_in_single_frame_type(self) -> None:
        inst = json_instance(extra={"00280008": {"vr": "IS", "Value": [3]}})
        ex = request([json_part([inst]), bulk_part()])
        assert_fails(self.name, ex, "STOW-PAY-008", "3 frames")

    def test_video_split_over_parts(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(media_type=mt.VIDEO_MP4, body=MP4),
                      bulk_part(media_type=mt.VIDEO_MP4, body=b"\x00\x00\x00\x08mdat")])
        assert_fails(self.name, ex, "STOW-PAY-008", "split over 2 parts")

    def test_video_in_one_part_passes(self) -> None:
        ex = request([json_part([json_instance()]), bulk_part(media_type=mt.VIDEO_MP4, body=MP4)])
        assert_passes(self.name, ex)


# -- encodings --------------------------------------------------------------------------------------
class TestTransferSyntax:
    name = "stow_request_no_implicit_vr"

    @pytest.mark.parametrize("ts", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
    def test_forbidden_part10_encoding(self, ts: str) -> None:
        ex = request([dicom_part(part10(ts=ts))], root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-013", str(ts))

    def test_forbidden_transfer_syntax_parameter(self) -> None:
        ex = request([dicom_part(part10(), f"application/dicom; transfer-syntax={ImplicitVRLittleEndian}")],
                     root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-013", "transfer-syntax=1.2.840.10008.1.2 ")

    def test_repeated_transfer_syntax_parameter(self) -> None:
        ctype = (f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}; "
                 f"transfer-syntax={ExplicitVRLittleEndian}")
        ex = request([dicom_part(part10(), ctype)], root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-017", "2 times")

    def test_parameter_differs_from_file_meta_is_a_warning(self) -> None:
        ex = request([dicom_part(part10(), "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50")],
                     root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "STOW-PAY-018", "File Meta prevails", outcome=Outcome.WARNED)

    def test_matching_parameter_passes(self) -> None:
        ex = request([dicom_part(part10(), f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}")],
                     root_type=mt.APPLICATION_DICOM)
        assert_passes(self.name, ex)


class TestCharset:
    def test_repeated_charset(self) -> None:
        ex = request([({"Content-Type": "application/dicom+json; charset=utf-8; charset=iso-8859-1"},
                       json.dumps([json_instance()]).encode()), bulk_part()])
        assert_fails("stow_request_charset_single", ex, "STOW-PAY-016", "given 2 times")

    def test_list_in_charset(self) -> None:
        ex = request([({"Content-Type": 'application/dicom+json; charset="utf-8, latin1"'},
                       json.dumps([json_instance()]).encode()), bulk_part()])
        assert_fails("stow_request_charset_single", ex, "STOW-PAY-016", "not a single character set")

    def test_single_charset_passes(self) -> None:
        ex = request([({"Content-Type": "application/dicom+json; charset=utf-8"},
                       json.dumps([json_instance()]).encode()), bulk_part()])
        assert_passes("stow_request_charset_single", ex)


# -- target and content -----------------------------------------------------------------------------
class TestStudyMatchesTarget:
    name = "stow_request_study_uid_matches_target"

    def test_json_instance_of_another_study(self) -> None:
        ex = request([json_part([json_instance(study="2.25.999")]), bulk_part()], url=f"{URL}/{STUDY}")
        assert_fails(self.name, ex, "STOW-URL-001", "differs from the study in the target URL")

    def test_part10_instance_of_another_study(self) -> None:
        ex = request([dicom_part(part10(study="2.25.999"))], root_type=mt.APPLICATION_DICOM,
                     url=f"{URL}/{STUDY}")
        assert_fails(self.name, ex, "STOW-URL-001", "2.25.999")

    def test_instance_without_study(self) -> None:
        ex = request([json_part([json_instance(drop=["0020000D"])]), bulk_part()], url=f"{URL}/{STUDY}")
        assert_fails(self.name, ex, "STOW-URL-001", "no Study Instance UID")

    def test_matching_study_passes(self) -> None:
        assert_passes(self.name, request(url=f"{URL}/{STUDY}"))


class TestQueryOnlyAttributes:
    name = "stow_request_no_query_only_attributes"

    def test_query_attributes_are_flagged(self) -> None:
        inst = json_instance(extra={"00081190": {"vr": "UR", "Value": [f"{BASE}/studies/{STUDY}"]},
                                    "00080061": {"vr": "CS", "Value": ["XC"]}})
        result = assert_fails(self.name, request([json_part([inst]), bulk_part()]), "WIC-CA-016",
                              "RetrieveURL (0008,1190)", outcome=Outcome.WARNED)
        assert len(result.findings) == 2

    def test_part10_query_attribute(self) -> None:
        ex = request([dicom_part(part10(extra={"InstanceAvailability": "ONLINE"}))],
                     root_type=mt.APPLICATION_DICOM)
        assert_fails(self.name, ex, "WIC-CA-016", "(0008,0056)", outcome=Outcome.WARNED)

    def test_option_narrows_the_list(self) -> None:
        inst = json_instance(extra={"00080061": {"vr": "CS", "Value": ["XC"]}})
        ctx = CheckContext(options={self.name: {"attributes": ["RetrieveURL"]}})
        result = run(self.name, request([json_part([inst]), bulk_part()]), ctx)
        assert result.outcome is Outcome.PASSED

    def test_unknown_keyword_in_option_is_a_toolkit_error(self) -> None:
        ctx = CheckContext(options={self.name: {"attributes": ["NoSuchKeyword"]}})
        result = run_check(REGISTRY[self.name], ctx, request())
        assert result.outcome is Outcome.ERROR
        assert "NoSuchKeyword" in result.error
