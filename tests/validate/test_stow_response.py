from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
from pydicom import Dataset

import wic_conformance.validate.stow_response  # noqa: F401  (registers the checks)
from tests.support.datasets import part10_bytes
from tests.support.exchanges import multipart_request
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Exchange, Headers, Request, Response
from wic_conformance.dicomweb.store_response import RawAttribute, SopRef, build_store_response
from wic_conformance.findings import Finding, Severity
from wic_conformance.validate.registry import REGISTRY, CheckContext, CheckResult, Outcome, run_check

BASE = "http://pacs.test/dicom-web"
SC = "1.2.840.10008.5.1.4.1.1.7"
STUDY = "2.25.100"
SERIES = "2.25.200"
JSON = mt.APPLICATION_DICOM_JSON


# -- builders ---------------------------------------------------------------------------------------
def part10(sop_uid: str, study: str = STUDY, series: str = SERIES) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = "P1"
    ds.Modality = "OT"
    return part10_bytes(ds, sop_class=SC, sop_instance=sop_uid)


def stow_request(instances: Iterable[tuple[str, str]], *, study_in_url: str | None = None,
                 accept: str | None = JSON) -> Request:
    parts = [({"Content-Type": mt.APPLICATION_DICOM}, part10(uid, study)) for uid, study in instances]
    url = f"{BASE}/studies/{study_in_url}" if study_in_url else f"{BASE}/studies"
    return multipart_request(parts, url=url, root_type=mt.APPLICATION_DICOM,
                             headers={"Accept": accept} if accept else None)


def instance_url(uid: str, study: str = STUDY, series: str = SERIES) -> str:
    return f"{BASE}/studies/{study}/series/{series}/instances/{uid}"


def stored(uid: str, *, url: str | None = None, warning_reason: int | None = None,
           original_attributes: tuple[dict[str, RawAttribute], ...] = ()) -> SopRef:
    return SopRef(SC, uid, url or instance_url(uid), warning_reason=warning_reason,
                  original_attributes=original_attributes)


def failed(uid: str, reason: int | None = 0xA900) -> SopRef:
    return SopRef(SC, uid, failure_reason=reason)


def body_of(referenced: Iterable[SopRef] = (), fails: Iterable[SopRef] = (), other: Iterable[int] = (),
            retrieve_url: str | None = f"{BASE}/studies/{STUDY}", media_type: str = JSON) -> bytes:
    return build_store_response(referenced=list(referenced), failed=list(fails), other_failures=list(other),
                                retrieve_url=retrieve_url, media_type=media_type)


def exchange(status: int, body: bytes, *, media_type: str | None = JSON, request: Request | None = None,
             headers: dict[str, str] | None = None) -> Exchange:
    h = dict(headers or {})
    if media_type:
        h["Content-Type"] = media_type
    return Exchange(request=request, response=Response(status, "", Headers.of(h), Body.of(body)))


def run(name: str, ex: Exchange) -> CheckResult:
    return run_check(REGISTRY[name], CheckContext(), ex)


def ids(result: CheckResult) -> list[str]:
    return sorted(f.requirement for f in result.findings)


def messages(result: CheckResult) -> str:
    return " | ".join(f.message for f in result.findings)


def good_exchange(*uids: str) -> Exchange:
    uids = uids or ("2.25.1", "2.25.2")
    req = stow_request([(u, STUDY) for u in uids])
    return exchange(200, body_of([stored(u) for u in uids]), request=req)


CHECKS = [
    "stow_response_status_matches_sop_sequences", "stow_response_has_store_instances_payload",
    "stow_response_media_type_is_dicom", "stow_response_reason_codes_are_numbers",
    "stow_response_failure_reasons_known", "stow_response_warning_reasons_known",
    "stow_response_sop_references_complete", "stow_response_each_instance_accounted",
    "stow_response_retrieve_urls_match", "stow_response_study_mismatch_rejected",
    "stow_response_unsupported_media_type_is_415", "stow_response_401_has_www_authenticate",
    "stow_response_status_is_known", "stow_response_coercion_reported", "stow_response_warning_header_form",
]


class TestGoodExchange:
    @pytest.mark.parametrize("name", CHECKS)
    def test_clean_store_passes(self, name: str) -> None:
        result = run(name, good_exchange())
        assert result.outcome is Outcome.PASSED, result

    @pytest.mark.parametrize("name", CHECKS)
    def test_not_applicable_without_response(self, name: str) -> None:
        ex = Exchange(request=stow_request([("2.25.1", STUDY)]))
        assert run(name, ex).outcome is Outcome.NOT_APPLICABLE

    @pytest.mark.parametrize("name", CHECKS)
    def test_other_transactions_are_not_judged(self, name: str) -> None:
        ex = Exchange(request=Request("GET", f"{BASE}/studies/1/metadata"),
                      response=Response(418, "", Headers.of({"Content-Type": "text/plain"}), Body.of(b"x")))
        assert run(name, ex).outcome is Outcome.PASSED

    def test_descriptions(self) -> None:
        for name in CHECKS:
            assert REGISTRY[name].description.endswith((".", ")")), name


class TestStatusMatchesSequences:
    name = "stow_response_status_matches_sop_sequences"

    def test_200_with_failures(self) -> None:
        result = run(self.name, exchange(200, body_of([stored("2.25.1")], [failed("2.25.2")])))
        assert ids(result) == ["STOW-MOD-009"] and result.outcome is Outcome.FAILED
        assert "200 OK" in messages(result) and "202" in messages(result)

    def test_200_with_other_failures(self) -> None:
        assert ids(run(self.name, exchange(200, body_of([stored("2.25.1")], other=[0x0110])))) == ["STOW-MOD-009"]

    def test_409_with_referenced(self) -> None:
        result = run(self.name, exchange(409, body_of([stored("2.25.1")], [failed("2.25.2")])))
        assert ids(result) == ["STOW-MOD-009"] and "nothing was stored" in messages(result)

    def test_202_without_failures_or_warnings(self) -> None:
        result = run(self.name, exchange(202, body_of([stored("2.25.1")])))
        assert ids(result) == ["STOW-MOD-009"] and "status is 200" in messages(result)

    def test_202_with_nothing_stored(self) -> None:
        assert ids(run(self.name, exchange(202, body_of(fails=[failed("2.25.2")])))) == ["STOW-RESP-004"]

    def test_400_with_per_instance_failures(self) -> None:
        result = run(self.name, exchange(400, body_of(fails=[failed("2.25.2")])))
        assert ids(result) == ["STOW-RESP-003"] and result.outcome is Outcome.WARNED

    def test_200_without_referenced(self) -> None:
        assert ids(run(self.name, exchange(200, body_of()))) == ["STOW-RESP-001"]

    @pytest.mark.parametrize("status", [200, 202])
    def test_all_stored_with_warnings_is_informational(self, status: int) -> None:
        result = run(self.name, exchange(status, body_of([stored("2.25.1", warning_reason=0xB000)])))
        assert ids(result) == ["STOW-RESP-002"]
        assert result.findings[0].severity is Severity.INFO and result.outcome is Outcome.WARNED

    @pytest.mark.parametrize(("status", "body"), [
        (202, body_of([stored("2.25.1")], [failed("2.25.2")])),
        (409, body_of(fails=[failed("2.25.2")])),
        (400, b""),
    ])
    def test_consistent(self, status: int, body: bytes) -> None:
        assert run(self.name, exchange(status, body)).outcome is Outcome.PASSED


class TestPayload:
    name = "stow_response_has_store_instances_payload"

    def test_empty_body(self) -> None:
        result = run(self.name, exchange(200, b"", media_type=None))
        assert ids(result) == ["STOW-RESP-007"] and "without a body" in messages(result)

    def test_undecodable_body(self) -> None:
        assert ids(run(self.name, exchange(202, b"OK", media_type=mt.TEXT_PLAIN))) == ["STOW-RESP-007"]
        assert ids(run(self.name, exchange(200, b'{"00081199":'))) == ["STOW-RESP-007"]

    def test_module_without_sequences(self) -> None:
        result = run(self.name, exchange(200, b'{"00081190": {"vr": "UR"}}'))
        assert ids(result) == ["STOW-RESP-007"] and "neither" in messages(result)

    def test_409_may_have_no_body(self) -> None:
        assert run(self.name, exchange(409, b"", media_type=None)).outcome is Outcome.PASSED

    def test_xml_payload(self) -> None:
        body = body_of([stored("2.25.1")], media_type=mt.APPLICATION_DICOM_XML)
        assert run(self.name, exchange(200, body, media_type=mt.APPLICATION_DICOM_XML)).outcome is Outcome.PASSED


class TestMediaType:
    name = "stow_response_media_type_is_dicom"

    def test_plain_json_type(self) -> None:
        result = run(self.name, exchange(200, body_of([stored("2.25.1")]), media_type=mt.APPLICATION_JSON))
        assert ids(result) == ["STOW-RESP-008"] and "pre-2016" in messages(result)

    def test_missing_content_type(self) -> None:
        assert ids(run(self.name, exchange(200, body_of([stored("2.25.1")]), media_type=None))) == [
            "STOW-RESP-008"]

    def test_type_does_not_match_body(self) -> None:
        body = body_of([stored("2.25.1")], media_type=mt.APPLICATION_DICOM_XML)
        result = run(self.name, exchange(200, body, media_type=JSON))
        assert ids(result) == ["STOW-RESP-008"] and "the body is XML" in messages(result)

    def test_not_in_accept(self) -> None:
        req = stow_request([("2.25.1", STUDY)], accept=mt.APPLICATION_DICOM_XML)
        result = run(self.name, exchange(200, body_of([stored("2.25.1")]), request=req))
        assert ids(result) == ["STOW-RESP-008"] and "Accept" in messages(result)

    @pytest.mark.parametrize("accept", ["application/dicom+xml, application/dicom+json;q=0.5", "*/*",
                                        "application/*", None])
    def test_accept_allows(self, accept: str | None) -> None:
        req = stow_request([("2.25.1", STUDY)], accept=accept)
        assert run(self.name, exchange(200, body_of([stored("2.25.1")]), request=req)).outcome is Outcome.PASSED

    def test_xml_with_xml_type(self) -> None:
        body = body_of([stored("2.25.1")], media_type=mt.APPLICATION_DICOM_XML)
        assert run(self.name, exchange(200, body, media_type=f"{mt.APPLICATION_DICOM_XML}; charset=utf-8")
                   ).outcome is Outcome.PASSED


def failed_with(reason: object, vr: str = "US") -> bytes:
    return json.dumps({"00081190": {"vr": "UR"}, "00081198": {"vr": "SQ", "Value": [{
        "00081150": {"vr": "UI", "Value": [SC]}, "00081155": {"vr": "UI", "Value": ["2.25.1"]},
        "00081197": {"vr": vr, "Value": [reason]}}]}}).encode()


class TestReasonCodes:
    def test_hex_string(self) -> None:
        result = run("stow_response_reason_codes_are_numbers", exchange(409, failed_with("A700")))
        assert ids(result) == ["STOW-MOD-008"]
        assert "'A700'" in messages(result)
        assert result.findings[0].location == "response body > /00081198/Value/0/00081197"

    def test_wrong_vr(self) -> None:
        result = run("stow_response_reason_codes_are_numbers", exchange(409, failed_with(290, vr="SH")))
        assert ids(result) == ["STOW-MOD-008"] and result.findings[0].evidence == "response.reason_wrong_vr"

    def test_numbers_pass(self) -> None:
        assert run("stow_response_reason_codes_are_numbers", exchange(409, failed_with(290))).outcome \
            is Outcome.PASSED

    def test_failure_reason_categories(self) -> None:
        name = "stow_response_failure_reasons_known"
        wrong = run(name, exchange(409, body_of(fails=[failed("2.25.1", 0xB000)])))
        assert ids(wrong) == ["STOW-MOD-007"] and wrong.outcome is Outcome.FAILED
        assert "warning code" in messages(wrong)
        unknown = run(name, exchange(409, body_of(fails=[failed("2.25.1", 0x1234)], other=[0xD001])))
        assert ids(unknown) == ["STOW-MOD-007", "STOW-MOD-007"] and unknown.outcome is Outcome.WARNED
        assert all(f.severity is Severity.WARNING for f in unknown.findings)
        ok = run(name, exchange(409, body_of(fails=[failed("2.25.1", 0xA7FE), failed("2.25.2", 0xC122)],
                                             other=[0x0110])))
        assert ok.outcome is Outcome.PASSED

    def test_warning_reason_categories(self) -> None:
        name = "stow_response_warning_reasons_known"
        wrong = run(name, exchange(200, body_of([stored("2.25.1", warning_reason=0xA700)])))
        assert ids(wrong) == ["STOW-MOD-006"] and wrong.outcome is Outcome.FAILED
        unknown = run(name, exchange(200, body_of([stored("2.25.1", warning_reason=0x0001)])))
        assert unknown.outcome is Outcome.WARNED
        for code in (0xB000, 0xB006, 0xB007):
            assert run(name, exchange(200, body_of([stored("2.25.1", warning_reason=code)]))).outcome \
                is Outcome.PASSED


class TestReferencesComplete:
    name = "stow_response_sop_references_complete"

    def test_missing_members(self) -> None:
        body = json.dumps({
            "00081190": {"vr": "UR"},
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["2.25.1"]}}]},
            "00081198": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": [SC]},
                                                "00081155": {"vr": "UI", "Value": ["2.25.2"]}}]},
            "0008119A": {"vr": "SQ", "Value": [{}]},
        }).encode()
        result = run(self.name, exchange(202, body))
        assert ids(result) == ["STOW-MOD-002", "STOW-MOD-003", "STOW-MOD-003", "STOW-MOD-005"]
        assert "Retrieve URL" in messages(result) and "Failure Reason" in messages(result)

    def test_empty_sequence_and_empty_uid(self) -> None:
        body = json.dumps({
            "00081198": {"vr": "SQ", "Value": []},
            "00081199": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": [SC]},
                                                "00081155": {"vr": "UI"}, "00081190": {"vr": "UR"}}]},
        }).encode()
        result = run(self.name, exchange(200, body))
        assert ids(result) == ["STOW-MOD-002", "STOW-MOD-003"]
        assert "Type 1C" in messages(result) and "empty Referenced SOP Instance UID" in messages(result)

    def test_type2_retrieve_url_may_be_empty(self) -> None:
        ref = SopRef(SC, "2.25.1", None)
        assert run(self.name, exchange(200, body_of([ref]))).outcome is Outcome.PASSED


class TestEachInstanceAccounted:
    name = "stow_response_each_instance_accounted"

    def test_missing_and_duplicated(self) -> None:
        req = stow_request([("2.25.1", STUDY), ("2.25.2", STUDY), ("2.25.3", STUDY)])
        body = body_of([stored("2.25.1")], [failed("2.25.1"), failed("2.25.9")])
        result = run(self.name, exchange(202, body, request=req))
        assert ids(result) == ["STOW-MOD-009"] * 4
        text = messages(result)
        assert "2.25.2" in text and "2.25.3" in text and "appears 2 times" in text and "did not send" in text
        assert "request part 2" in text

    def test_request_failed_as_a_whole(self) -> None:
        req = stow_request([("2.25.1", STUDY)])
        assert run(self.name, exchange(409, body_of(other=[0xA700]), request=req)).outcome is Outcome.PASSED

    def test_all_accounted(self) -> None:
        req = stow_request([("2.25.1", STUDY), ("2.25.2", STUDY)])
        body = body_of([stored("2.25.1", warning_reason=0xB000)], [failed("2.25.2")])
        assert run(self.name, exchange(202, body, request=req)).outcome is Outcome.PASSED


class TestRetrieveUrls:
    name = "stow_response_retrieve_urls_match"

    def test_instance_url_problems(self) -> None:
        req = stow_request([("2.25.1", STUDY), ("2.25.2", STUDY), ("2.25.3", STUDY)])
        refs = [stored("2.25.1", url=instance_url("2.25.999")),
                stored("2.25.2", url=f"{BASE}/instances/2.25.2"),
                stored("2.25.3", url=instance_url("2.25.3", study="2.25.555", series="2.25.666"))]
        result = run(self.name, exchange(200, body_of(refs, retrieve_url=None), request=req))
        assert ids(result) == ["STOW-MOD-009"] * 4
        text = messages(result)
        assert "2.25.999" in text and "does not end with" in text and "2.25.555" in text and "2.25.666" in text

    def test_study_url_problems(self) -> None:
        req = stow_request([("2.25.1", STUDY)], study_in_url=STUDY)
        result = run(self.name, exchange(200, body_of([stored("2.25.1")],
                                                      retrieve_url=f"{BASE}/studies/2.25.7"), request=req))
        assert ids(result) == ["STOW-MOD-001"] and "targeted" in messages(result)
        result = run(self.name, exchange(200, body_of([stored("2.25.1")], retrieve_url=f"{BASE}/series/1")))
        assert ids(result) == ["STOW-MOD-001"]
        result = run(self.name, exchange(200, body_of([stored("2.25.1")], retrieve_url=f"{BASE}/studies/2.25.7")))
        assert ids(result) == ["STOW-MOD-001"] and "stored instances are in" in messages(result)

    def test_study_url_absent_or_ut(self) -> None:
        base = json.loads(body_of([stored("2.25.1")]))
        del base["00081190"]
        result = run(self.name, exchange(200, json.dumps(base).encode()))
        assert ids(result) == ["STOW-MOD-001"] and "absent" in messages(result)
        base["00081190"] = {"vr": "UT", "Value": [f"{BASE}/studies/{STUDY}"]}
        result = run(self.name, exchange(200, json.dumps(base).encode()))
        assert ids(result) == ["STOW-MOD-001"] and result.outcome is Outcome.WARNED

    def test_empty_study_url_is_allowed(self) -> None:
        refs = [stored("2.25.1"), stored("2.25.2", url=instance_url("2.25.2", study="2.25.101"))]
        assert run(self.name, exchange(200, body_of(refs, retrieve_url=None))).outcome is Outcome.PASSED


class TestStudyMismatch:
    name = "stow_response_study_mismatch_rejected"

    def test_mismatched_instance_stored(self) -> None:
        req = stow_request([("2.25.1", "2.25.999")], study_in_url=STUDY)
        result = run(self.name, exchange(200, body_of([stored("2.25.1")]), request=req))
        assert ids(result) == ["STOW-URL-002", "STOW-URL-002"]
        kinds = sorted(type(f).__name__ for f in result.findings)
        assert kinds == ["BadStatus", "StatusSequenceMismatch"]

    def test_mismatch_not_in_failed_sequence(self) -> None:
        req = stow_request([("2.25.1", STUDY), ("2.25.2", "2.25.999")], study_in_url=STUDY)
        result = run(self.name, exchange(200, body_of([stored("2.25.1")]), request=req))
        assert ids(result) == ["STOW-URL-002"] and "Failed SOP Sequence" in messages(result)

    def test_nothing_stored_needs_409(self) -> None:
        req = stow_request([("2.25.1", "2.25.999")], study_in_url=STUDY)
        result = run(self.name, exchange(400, b"", media_type=None, request=req))
        assert ids(result) == ["STOW-URL-002"] and "409" in messages(result)

    def test_correct_handling(self) -> None:
        req = stow_request([("2.25.1", "2.25.999")], study_in_url=STUDY)
        assert run(self.name, exchange(409, body_of(fails=[failed("2.25.1", 0xA900)]), request=req)).outcome \
            is Outcome.PASSED
        req = stow_request([("2.25.1", STUDY), ("2.25.2", "2.25.999")], study_in_url=STUDY)
        body = body_of([stored("2.25.1")], [failed("2.25.2", 0xC000)])
        assert run(self.name, exchange(202, body, request=req)).outcome is Outcome.PASSED


class TestUnsupportedMediaType:
    name = "stow_response_unsupported_media_type_is_415"

    def request(self, content_type: str | None) -> Request:
        headers = {"Content-Type": content_type} if content_type else {}
        return Request("POST", f"{BASE}/studies", Headers.of(headers), Body.of(b"data"))

    @pytest.mark.parametrize("content_type", ["application/dicom", None,
                                              'multipart/related; type="image/png"; boundary=x'])
    def test_accepted_with_2xx(self, content_type: str | None) -> None:
        result = run(self.name, exchange(200, body_of([stored("2.25.1")]), request=self.request(content_type)))
        assert ids(result) == ["STOW-HDR-008"] and isinstance(result.findings[0], Finding)

    def test_wrong_error_status(self) -> None:
        result = run(self.name, exchange(400, b"", media_type=None, request=self.request(mt.TEXT_PLAIN)))
        assert ids(result) == ["STOW-RESP-005"] and "415" in messages(result)

    def test_415(self) -> None:
        assert run(self.name, exchange(415, b"", media_type=None, request=self.request(mt.TEXT_PLAIN))).outcome \
            is Outcome.PASSED


class TestHeaders:
    def test_401_without_challenge(self) -> None:
        result = run("stow_response_401_has_www_authenticate", exchange(401, b"", media_type=None))
        assert ids(result) == ["STOW-RESP-006"] and result.outcome is Outcome.FAILED

    def test_401_with_challenge(self) -> None:
        ex = exchange(401, b"", media_type=None, headers={"WWW-Authenticate": 'Bearer realm="pacs"'})
        assert run("stow_response_401_has_www_authenticate", ex).outcome is Outcome.PASSED

    def test_unknown_status(self) -> None:
        result = run("stow_response_status_is_known", exchange(418, b"", media_type=None))
        assert ids(result) == ["STOW-RESP-006"] and "418" in messages(result)
        assert run("stow_response_status_is_known", exchange(501, b"", media_type=None)).findings[0].severity \
            is Severity.INFO
        assert run("stow_response_status_is_known", exchange(503, b"", media_type=None)).outcome is Outcome.PASSED

    def test_malformed_warning_header(self) -> None:
        ex = exchange(200, body_of([stored("2.25.1", warning_reason=0xB000)]),
                      headers={"Warning": "coerced some things"})
        result = run("stow_response_warning_header_form", ex)
        assert ids(result) == ["STOW-RESP-010"] and "coerced some things" in messages(result)

    def test_warnings_without_header(self) -> None:
        result = run("stow_response_warning_header_form",
                     exchange(202, body_of([stored("2.25.1")], [failed("2.25.2")])))
        assert ids(result) == ["STOW-RESP-010"] and result.outcome is Outcome.WARNED

    @pytest.mark.parametrize("value", ["A700 <service>: Out of memory, retry later",
                                       '299 pacs.test "B000: attributes coerced"',
                                       '299 pacs.test "a, b", 199 - "second"',
                                       'B000 pacs:443 "coerced" "Sat, 01 Jan 2000 00:00:00 GMT"'])
    def test_well_formed_warning_header(self, value: str) -> None:
        ex = exchange(200, body_of([stored("2.25.1", warning_reason=0xB000)]), headers={"Warning": value})
        assert run("stow_response_warning_header_form", ex).outcome is Outcome.PASSED


def coercion(**changes: RawAttribute | None) -> dict[str, RawAttribute]:
    item: dict[str, RawAttribute | None] = {
        "04000562": RawAttribute("DT", ("20240101120000",)),
        "04000563": RawAttribute("LO", ("IM",)),
        "04000565": RawAttribute("CS", ("COERCE",)),
        "04000550": RawAttribute("SQ", items=({"00100020": RawAttribute("LO", ("OLD",))},)),
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


class TestCoercion:
    name = "stow_response_coercion_reported"

    def test_incomplete_items(self) -> None:
        bad = coercion(**{"04000563": None, "04000565": RawAttribute("CS", ("FIXED",)),
                          "04000550": RawAttribute("SQ", items=({}, {}))})
        ref = stored("2.25.1", warning_reason=0xB000, original_attributes=(bad,))
        result = run(self.name, exchange(200, body_of([ref])))
        assert ids(result) == ["STOW-MOD-004"] * 3
        text = messages(result)
        assert "Modifying System" in text and "'FIXED'" in text and "2 item(s)" in text

    def test_complete_item(self) -> None:
        ref = stored("2.25.1", warning_reason=0xB000, original_attributes=(coercion(),))
        assert run(self.name, exchange(200, body_of([ref]))).outcome is Outcome.PASSED
        xml = body_of([ref], media_type=mt.APPLICATION_DICOM_XML)
        assert run(self.name, exchange(200, xml, media_type=mt.APPLICATION_DICOM_XML)).outcome is Outcome.PASSED
