from __future__ import annotations

from pathlib import Path

from wic_conformance.catalogue import default_catalogue
from wic_conformance.dicomweb import media_types as mt
from wic_conformance.dicomweb.exchange import Body, Document, DocumentRole, Exchange, Headers, Request, Response
from wic_conformance.findings import Finding, Severity
from wic_conformance.report.html import ASSET_DIR, Evidence, HtmlReport
from wic_conformance.report.records import Redactor
from wic_conformance.report.results import ResultsCollector, case_property, case_record

CAT = default_catalogue()


def exchange(body: bytes, content_type: str) -> Exchange:
    request = Request("POST", "http://user:pw123456@im/dicom-web/studies",
                      Headers.of([("Content-Type", mt.MULTIPART_RELATED), ("Authorization", "Bearer tok-123456"),
                                  ("Cookie", "sid=1")]), Body.of(b"\x00\x01"))
    response = Response(200, "OK", Headers.of({"Content-Type": content_type}), Body.of(body))
    retrieved = Document(mt.APPLICATION_DICOM, Body.of(b"D" * 2048), DocumentRole.RETRIEVED, "http://im/x (part 1)")
    return Exchange(request, response, (retrieved,))


def report(tmp_path: Path, results: ResultsCollector | None = None) -> HtmlReport:
    return HtmlReport(catalogue=CAT, redactor=Redactor.for_credentials(auth=("user", "pw123456"), token="tok-123456"),
                      results=results, report_path=tmp_path / "report.html", inline_limit=1000)


class TestExtras:
    def test_small_text_inline_large_and_binary_as_linked_files(self, tmp_path: Path) -> None:
        plugin = report(tmp_path)
        small = exchange(b'{"a": "tok-123456"}', mt.APPLICATION_DICOM_JSON)
        large = exchange(b'{"a": "' + b"x" * 5000 + b'"}', mt.APPLICATION_DICOM_JSON)
        binary = exchange(b"\x00DICM" * 10, mt.APPLICATION_DICOM)
        extras = plugin.extras("plans/p.yaml::c", Evidence((small, large, binary), ()))
        block = extras[0]["content"]
        assert extras[0]["format_type"] == "html"
        assert "<pre>{&quot;a&quot;: &quot;&lt;redacted&gt;&quot;}</pre>" in block
        assert "Authorization: &lt;redacted&gt;" in block and "Cookie: &lt;redacted&gt;" in block
        assert "tok-123456" not in block and "pw123456" not in block
        links = {e["content"] for e in extras[1:]}
        assert all(e["format_type"] == "url" for e in extras[1:])
        assert f"{ASSET_DIR}/plans_p.yaml__c-2-response.json" in links
        assert f"{ASSET_DIR}/plans_p.yaml__c-3-response.dcm" in links
        assert (tmp_path / ASSET_DIR / "plans_p.yaml__c-3-response.dcm").read_bytes() == b"\x00DICM" * 10
        assert (tmp_path / ASSET_DIR / "plans_p.yaml__c-1-request.multipart").read_bytes() == b"\x00\x01"
        assert "Retrieved instances" in block and "2.0 KiB" in block

    def test_findings_table_and_metadata_diff(self, tmp_path: Path) -> None:
        findings = (Finding(requirement="CONV-003", message="PatientName changed", title="ConversionMismatch",
                            severity=Severity.ERROR, location="(0010,0010)"),
                    Finding(requirement="STOW-RESP-001", message="status <409>", severity=Severity.WARNING))
        block = report(tmp_path).extras("n", Evidence((), findings))[0]["content"]
        assert "<td>CONV-003</td>" in block and "status &lt;409&gt;" in block
        assert "Metadata diff" in block and "CONV-003: PatientName changed at (0010,0010)" in block
        assert block.index("CONV-003") < block.index("STOW-RESP-001")  # errors first

    def test_without_a_report_path_bodies_are_described_not_kept(self) -> None:
        plugin = HtmlReport(catalogue=CAT, redactor=Redactor(), results=None, report_path=None)
        extras = plugin.extras("n", Evidence((exchange(b"\x00" * 10, mt.APPLICATION_DICOM),), ()))
        assert len(extras) == 1 and "(not kept)" in extras[0]["content"]


class _Rep:
    def __init__(self, props: list[tuple[str, object]]) -> None:
        self.user_properties = props


class TestTable:
    def test_header_and_row_cells(self, tmp_path: Path) -> None:
        plugin = report(tmp_path)
        header = ["<th>Result</th>", "<th>Test</th>", "<th>Duration</th>", "<th>Links</th>"]
        plugin.pytest_html_results_table_header(header)
        assert [h.split(">")[1].split("<")[0] for h in header] == [
            "Result", "Test", "Requirement(s)", "Option", "Verdict", "Duration", "Links"]
        rec = case_record(nodeid="p::c", index=0, case_id="c", title="t", requirements=["STOW-RESP-001", "LOCAL-1"],
                          options=["jpeg", "mpeg4"], outcome="skipped", findings=[], message="option not claimed")
        cells = ["r", "t", "d", "l"]
        plugin.pytest_html_results_table_row(_Rep([case_property(rec)]), cells)  # type: ignore[arg-type]
        assert cells[2:5] == ['<td class="col-requirements">STOW-RESP-001 [N], LOCAL-1 [?]</td>',
                              '<td class="col-option">jpeg, mpeg4</td>',
                              '<td class="col-verdict">skipped: option not claimed</td>']
        plain = ["r", "t", "d", "l"]
        plugin.pytest_html_results_table_row(_Rep([]), plain)  # type: ignore[arg-type]
        assert len(plain) == 7

    def test_verdicts(self) -> None:
        failed = {"outcome": "failed", "findings": [{"requirement": "A", "severity": "error"},
                                                    {"requirement": "A", "severity": "error"}]}
        assert HtmlReport.verdict(failed) == "failed: 2 error finding(s) (A)"
        assert HtmlReport.verdict({"outcome": "passed", "findings": [{"severity": "warning"}]}) == \
            "passed (1 warning(s))"
        assert HtmlReport.verdict({"outcome": "error", "message": "boom"}) == "error: boom"


class TestSummary:
    def test_paragraph_and_matrix(self, tmp_path: Path) -> None:
        results = ResultsCollector(target="http://user:pw123456@im/dicom-web", catalogue=CAT)
        plugin = report(tmp_path, results)
        prefix: list[str] = []
        plugin.pytest_html_results_summary(prefix, [], [], None)  # type: ignore[arg-type]
        assert len(prefix) == 2
        assert "0 case(s)" in prefix[0] and "No requirement failed" in prefix[0]
        assert "pw123456" not in prefix[0] and "&lt;redacted&gt;@im" in prefix[0]
        assert prefix[1].count('<tr class="wic-req') == len(CAT)
        HtmlReport(catalogue=CAT, redactor=Redactor(), results=None, report_path=None).pytest_html_results_summary(
            prefix, [], [], None)  # type: ignore[arg-type]
        assert len(prefix) == 2
