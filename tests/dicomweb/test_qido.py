from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.sequence import Sequence

from wic_conformance.dicomweb.qido import (
    Match,
    MatchKind,
    QidoQuery,
    QidoQueryError,
    QueryLevel,
    is_bulk_data,
    level_attributes,
    matches,
    parse_qido_query,
    result_attributes,
    to_result,
    without_bulk_data,
)


def tag(keyword: str) -> int:
    value = tag_for_keyword(keyword)
    assert value is not None
    return int(value)


def instance(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID-1"
    ds.StudyDate = "20240315"
    ds.StudyTime = "143015.123"
    ds.Modality = "XC"
    ds.InstanceNumber = 7
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def hit(params: list[tuple[str, str]], ds: Dataset, level: str = "instance") -> bool:
    return matches(parse_qido_query(level, params), ds)


class TestParseQuery:
    def test_keywords_and_tags_name_the_same_attribute(self) -> None:
        q = parse_qido_query("study", [("PatientID", "A"), ("00080050", "ACC")])
        assert q.matches == (Match(tag("PatientID"), "PatientID", "A"),
                             Match(tag("AccessionNumber"), "AccessionNumber", "ACC"))
        assert q.level is QueryLevel.STUDY and q.level == "study"

    def test_defaults(self) -> None:
        q = parse_qido_query(QueryLevel.SERIES, [])
        assert q == QidoQuery(level=QueryLevel.SERIES)
        assert (q.limit, q.offset, q.fuzzy, q.include_fields, q.warnings) == (None, 0, False, (), ())

    def test_includefield_is_repeatable_and_comma_separated(self) -> None:
        q = parse_qido_query("study", [("includefield", "StudyDescription,00081032"),
                                       ("includefield", "StudyDescription"), ("includefield", "00091001")])
        assert q.include_fields == ("StudyDescription", "ProcedureCodeSequence", "00091001")
        assert q.include_tags == (tag("StudyDescription"), tag("ProcedureCodeSequence"), 0x00091001)

    def test_includefield_all_wins(self) -> None:
        q = parse_qido_query("study", [("includefield", "StudyDescription"), ("includefield", "all")])
        assert q.include_fields == "all" and q.include_tags == ()

    def test_paging_and_fuzzy(self) -> None:
        q = parse_qido_query("instance", [("limit", "10"), ("offset", "20"), ("fuzzymatching", "false")])
        assert (q.limit, q.offset, q.fuzzy, q.warnings) == (10, 20, False, ())

    def test_fuzzymatching_is_recorded_and_warned_about(self) -> None:
        q = parse_qido_query("study", [("fuzzymatching", "true")])
        assert q.fuzzy
        assert q.warnings == ("The fuzzymatching parameter is not supported. Only literal matching has been "
                              "performed.",)

    def test_accept_and_charset_are_left_to_content_negotiation(self) -> None:
        q = parse_qido_query("study", [("accept", "application/dicom+json"), ("charset", "utf-8")])
        assert q.matches == ()

    def test_sequence_paths_are_ignored_with_a_warning(self) -> None:
        q = parse_qido_query("series", [("RequestAttributesSequence.ScheduledProcedureStepID", "S1")])
        assert q.matches == ()
        assert q.include_fields == ("RequestAttributesSequence",)
        assert q.warnings == ("The following attributes are not supported for matching: "
                              "RequestAttributesSequence.ScheduledProcedureStepID",)

    def test_sequence_matching_is_ignored_but_empty_value_is_a_return_key(self) -> None:
        q = parse_qido_query("series", [("RequestAttributesSequence", "x")])
        assert q.matches == () and len(q.warnings) == 1
        q = parse_qido_query("series", [("RequestAttributesSequence", "")])
        assert q.matches[0].kind is MatchKind.UNIVERSAL and q.warnings == ()

    def test_resource_path_uids(self) -> None:
        q = parse_qido_query("instance", [], study_uid="1.2", series_uid="1.2.3")
        assert (q.study_uid, q.series_uid) == ("1.2", "1.2.3")

    def test_match_for(self) -> None:
        q = parse_qido_query("study", [("PatientID", "A")])
        assert q.match_for(tag("PatientID")) == Match(tag("PatientID"), "PatientID", "A")
        assert q.match_for(tag("PatientName")) is None


class TestParseErrors:
    @pytest.mark.parametrize(("params", "message"), [
        ([("PatientId", "x")], r"unknown attribute 'PatientId' .*did you mean 'PatientID'"),
        ([("NoSuchThing", "x")], r"unknown attribute 'NoSuchThing'"),
        ([("includefield", "Nope")], r"unknown attribute 'Nope' in query parameter 'includefield=Nope'"),
        ([("includefield", "")], r"unknown attribute ''|empty attribute name"),
        ([("limit", "-1")], r"limit='-1' is not a non-negative integer"),
        ([("limit", "ten")], r"limit='ten' is not a non-negative integer"),
        ([("limit", "0")], r"limit='0' must be at least 1"),
        ([("offset", "1.5")], r"offset='1.5' is not a non-negative integer"),
        ([("limit", "1"), ("limit", "2")], r"'limit' given more than once"),
        ([("fuzzymatching", "yes")], r"fuzzymatching='yes' must be 'true' or 'false'"),
        ([("PatientID", "a"), ("00100020", "b")], r"given more than once"),
        ([("StudyDate", "20241301")], r"neither a valid DA value nor a DA range"),
        ([("StudyDate", "2024-01-01")], r"neither a valid DA value nor a DA range"),
        ([("StudyDate", "2024*")], r"neither a valid DA value nor a DA range"),
        ([("StudyDate", "-")], r"neither a valid DA value nor a DA range"),
        ([("StudyDate", "20241231-20240101")], r"lower bound after its upper bound"),
        ([("StudyTime", "2500")], r"neither a valid TM value nor a TM range"),
        ([("StudyTime", "1300-1200")], r"lower bound after its upper bound"),
        ([("StudyInstanceUID", "1.2.*")], r"'1.2.\*' .* is not a valid UID"),
        ([("SOPInstanceUID", "1.2,abc")], r"'abc' .* is not a valid UID"),
        ([("InstanceNumber", "seven")], r"'seven' .* is not a valid IS number"),
        ([("Modality.PatientID", "x")], r"'Modality' in .* is not a sequence attribute"),
    ])
    def test_bad_parameters(self, params: list[tuple[str, str]], message: str) -> None:
        with pytest.raises(QidoQueryError, match=message):
            parse_qido_query("instance", params)

    def test_is_a_value_error(self) -> None:
        assert issubclass(QidoQueryError, ValueError)

    @pytest.mark.parametrize(("level", "study", "series", "message"), [
        ("patient", None, None, r"unknown query level 'patient'"),
        ("study", "1.2", None, r"study-level search has no Study or Series"),
        ("series", "1.2", "1.2.3", r"series-level search has no Series Instance UID"),
        ("instance", None, "1.2.3", r"needs a Study Instance UID"),
    ])
    def test_bad_resource_paths(self, level: str, study: str | None, series: str | None, message: str) -> None:
        with pytest.raises(QidoQueryError, match=message):
            parse_qido_query(level, [], study_uid=study, series_uid=series)


class TestMatchKind:
    @pytest.mark.parametrize(("keyword", "value", "kind"), [
        ("PatientID", "", MatchKind.UNIVERSAL),
        ("PatientID", "*", MatchKind.UNIVERSAL),
        ("PatientID", "A*", MatchKind.WILDCARD),
        ("PatientID", "A?", MatchKind.WILDCARD),
        ("PatientID", "A", MatchKind.SINGLE_VALUE),
        ("PatientID", "A\\B", MatchKind.MULTIPLE_VALUE),
        ("StudyInstanceUID", "1.2", MatchKind.SINGLE_VALUE),
        ("StudyInstanceUID", "1.2\\1.3", MatchKind.UID_LIST),
        ("StudyInstanceUID", "1.2,1.3", MatchKind.UID_LIST),
        ("StudyDate", "20240101", MatchKind.SINGLE_VALUE),
        ("StudyDate", "20240101-", MatchKind.RANGE),
        ("StudyDate", "-20240101", MatchKind.RANGE),
        ("AcquisitionDateTime", "20240101-0500", MatchKind.SINGLE_VALUE),
        ("AcquisitionDateTime", "2024-2025", MatchKind.RANGE),
        ("AcquisitionDateTime", "20240101-0500-20240102-0500", MatchKind.RANGE),
        ("InstanceNumber", "3", MatchKind.SINGLE_VALUE),
    ])
    def test_kinds(self, keyword: str, value: str, kind: MatchKind) -> None:
        assert Match(tag(keyword), keyword, value).kind is kind

    def test_values(self) -> None:
        assert Match(tag("StudyInstanceUID"), "StudyInstanceUID", "1.2, 1.3\\1.4").values == ("1.2", "1.3", "1.4")
        assert Match(tag("Modality"), "Modality", "CT\\MR").values == ("CT", "MR")
        assert Match(tag("Modality"), "Modality", "").values == ()


class TestUniversalMatching:
    def test_empty_value_matches_present_and_absent_attributes(self) -> None:
        assert hit([("PatientID", "")], instance())
        assert hit([("AccessionNumber", "")], instance())

    def test_lone_asterisk_is_universal(self) -> None:
        assert hit([("AccessionNumber", "*")], instance())


class TestSingleValueMatching:
    def test_exact_and_case_sensitive(self) -> None:
        assert hit([("PatientID", "PID-1")], instance())
        assert not hit([("PatientID", "pid-1")], instance())
        assert not hit([("PatientID", "PID")], instance())

    def test_padding_is_insignificant(self) -> None:
        assert hit([("PatientID", "PID-1 ")], instance(PatientID=" PID-1"))

    def test_absent_or_empty_attribute_does_not_match(self) -> None:
        assert not hit([("AccessionNumber", "A1")], instance())
        assert not hit([("AccessionNumber", "A1")], instance(AccessionNumber=""))

    def test_numbers_compare_numerically(self) -> None:
        assert hit([("InstanceNumber", "7")], instance())
        assert hit([("InstanceNumber", "07")], instance())
        assert not hit([("InstanceNumber", "8")], instance())

    def test_dates_match_literally(self) -> None:
        assert hit([("StudyDate", "20240315")], instance())
        assert not hit([("StudyDate", "20240316")], instance())

    def test_every_key_must_match(self) -> None:
        assert hit([("PatientID", "PID-1"), ("Modality", "XC")], instance())
        assert not hit([("PatientID", "PID-1"), ("Modality", "CT")], instance())

    def test_private_attribute_by_tag(self) -> None:
        ds = instance()
        ds.add_new(0x00091010, "LO", "vendor")
        assert hit([("00091010", "vendor")], ds)
        assert not hit([("00091010", "other")], ds)


class TestPersonNameMatching:
    """PN matching is case-insensitive (a documented choice; PS3.4 leaves it to the implementation)."""

    @pytest.mark.parametrize("value", ["Doe^John", "DOE^JOHN", "doe^john", "Doe^John^^", "doe*", "D?E^J*"])
    def test_matches(self, value: str) -> None:
        assert hit([("PatientName", value)], instance())

    @pytest.mark.parametrize("value", ["Doe", "Doe^Jane", "J*", "Doe^John^X"])
    def test_does_not_match(self, value: str) -> None:
        assert not hit([("PatientName", value)], instance())

    def test_component_groups_match_separately(self) -> None:
        ds = instance(PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう")
        assert hit([("PatientName", "yamada^tarou")], ds)
        assert hit([("PatientName", "山田^太郎")], ds)
        assert hit([("PatientName", "Yamada^Tarou=山田^太郎=やまだ^たろう")], ds)
        assert not hit([("PatientName", "Yamada^Hanako")], ds)


class TestWildcardMatching:
    @pytest.mark.parametrize(("value", "expected"), [
        ("PID*", True), ("*-1", True), ("P?D-?", True), ("*", True), ("P*X", False), ("PID?", False),
    ])
    def test_asterisk_and_question_mark(self, value: str, expected: bool) -> None:
        assert hit([("PatientID", value)], instance()) is expected

    def test_other_characters_are_literal(self) -> None:
        assert hit([("StudyDescription", "a.b*")], instance(StudyDescription="a.b (c)"))
        assert not hit([("StudyDescription", "a.b*")], instance(StudyDescription="axb (c)"))

    def test_wildcards_are_case_sensitive_outside_pn(self) -> None:
        assert not hit([("PatientID", "pid*")], instance())

    def test_wildcard_needs_a_value(self) -> None:
        assert not hit([("AccessionNumber", "A*")], instance())


class TestUidListMatching:
    @pytest.mark.parametrize("value", ["1.2.3", "9.9\\1.2.3", "9.9,1.2.3", "9.9, 1.2.3"])
    def test_any_listed_uid_matches(self, value: str) -> None:
        assert hit([("StudyInstanceUID", value)], instance())

    def test_no_listed_uid(self) -> None:
        assert not hit([("StudyInstanceUID", "9.9\\8.8")], instance())
        assert not hit([("StudyInstanceUID", "1.2")], instance())  # no prefix matching


class TestRangeMatching:
    @pytest.mark.parametrize(("value", "expected"), [
        ("20240101-20241231", True), ("20240315-20240315", True), ("20240316-", False), ("20240315-", True),
        ("-20240315", True), ("-20240314", False), ("20240101-20240301", False),
    ])
    def test_dates(self, value: str, expected: bool) -> None:
        assert hit([("StudyDate", value)], instance()) is expected

    @pytest.mark.parametrize(("value", "expected"), [
        ("14-15", True), ("1430-", True), ("-1430", True), ("-1429", False), ("143016-", False),
        ("143015.1-143015.2", True), ("0000-1200", False),
    ])
    def test_times_with_partial_precision(self, value: str, expected: bool) -> None:
        assert hit([("StudyTime", value)], instance()) is expected

    def test_acr_nema_time_is_read(self) -> None:
        with pytest.warns(UserWarning, match="Invalid value for VR TM"):
            ds = instance(StudyTime="14:30:15")
        assert hit([("StudyTime", "14-15")], ds)

    @pytest.mark.parametrize(("value", "expected"), [
        ("20240315-20240316", True), ("2024-", True), ("-2023", False), ("202403151430-202403151431", True),
        ("20240315143016-", False), ("20240315-0500-20240316+0100", True),
    ])
    def test_datetimes_ignore_offsets(self, value: str, expected: bool) -> None:
        ds = instance(AcquisitionDateTime="20240315143015.5+0100")
        assert hit([("AcquisitionDateTime", value)], ds) is expected

    def test_invalid_stored_value_does_not_match(self) -> None:
        with pytest.warns(UserWarning, match="Invalid value for VR DA"):
            ds = instance(StudyDate="2024-03-15")
        assert not hit([("StudyDate", "20240101-")], ds)


class TestMultipleValueMatching:
    def test_any_query_value(self) -> None:
        assert hit([("Modality", "CT\\XC")], instance())
        assert not hit([("Modality", "CT\\MR")], instance())

    def test_any_stored_value(self) -> None:
        ds = instance(ModalitiesInStudy=["OT", "XC"])
        assert hit([("ModalitiesInStudy", "XC")], ds, "study")
        assert hit([("ModalitiesInStudy", "MR\\OT")], ds, "study")
        assert not hit([("ModalitiesInStudy", "MR")], ds, "study")


class TestResourcePath:
    def test_path_uids_restrict(self) -> None:
        ds = instance()
        assert matches(parse_qido_query("instance", [], study_uid="1.2.3", series_uid="1.2.3.4"), ds)
        assert not matches(parse_qido_query("instance", [], study_uid="1.2.9"), ds)
        assert not matches(parse_qido_query("instance", [], study_uid="1.2.3", series_uid="1.2.3.9"), ds)


class TestResultAttributes:
    def test_study_table(self) -> None:
        tags = result_attributes("study")
        for keyword in ("SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
                        "ModalitiesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC", "RetrieveURL",
                        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                        "StudyID", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
            assert tag(keyword) in tags
        assert len(tags) == 17

    def test_series_table(self) -> None:
        tags = result_attributes(QueryLevel.SERIES)
        assert {tag("Modality"), tag("SeriesInstanceUID"), tag("NumberOfSeriesRelatedInstances"),
                tag("RequestAttributesSequence"), tag("PerformedProcedureStepStartTime")} <= set(tags)
        assert len(tags) == 9

    def test_instance_table(self) -> None:
        tags = result_attributes("instance")
        assert {tag("SOPClassUID"), tag("SOPInstanceUID"), tag("Rows"), tag("NumberOfFrames")} <= set(tags)
        assert len(tags) == 10

    def test_level_attributes(self) -> None:
        study = level_attributes("study")
        series = level_attributes("series")
        assert study is not None and series is not None
        assert tag("PatientBirthDate") in study and tag("SOPInstanceUID") not in study
        assert tag("Manufacturer") in series and tag("PatientName") not in series
        assert level_attributes("instance") is None


class TestToResult:
    def test_defaults_only(self) -> None:
        ds = instance(Rows=4, Columns=5, ImageComments="not returned")
        result = to_result(ds, parse_qido_query("instance", [], study_uid="1.2.3", series_uid="1.2.3.4"))
        assert set(result.keys()) == {tag(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                                       "SOPClassUID", "InstanceNumber", "Rows", "Columns")}

    def test_unscoped_series_results_carry_study_attributes(self) -> None:
        result = to_result(instance(), parse_qido_query("series", []))
        assert {tag("PatientName"), tag("StudyDate"), tag("Modality"), tag("StudyInstanceUID")} <= set(result.keys())
        assert tag("SOPInstanceUID") not in result

    def test_scoped_series_results_do_not(self) -> None:
        result = to_result(instance(), parse_qido_query("series", [], study_uid="1.2.3"))
        assert tag("PatientName") not in result and tag("StudyInstanceUID") in result

    def test_matching_keys_are_returned_even_when_empty(self) -> None:
        q = parse_qido_query("study", [("StudyDescription", ""), ("SOPInstanceUID", "1.2.3.4.5")])
        result = to_result(instance(), q)
        assert result["StudyDescription"].value in (None, "")
        assert result.SOPInstanceUID == "1.2.3.4.5"

    def test_includefield(self) -> None:
        q = parse_qido_query("study", [("includefield", "StudyDescription,IssuerOfPatientID")])
        result = to_result(instance(StudyDescription="Wound"), q)
        assert result.StudyDescription == "Wound" and "IssuerOfPatientID" in result

    def test_all_at_study_level_keeps_study_and_patient_attributes_only(self) -> None:
        ds = instance(PatientSex="F", Manufacturer="ACME", ImageComments="x")
        result = to_result(ds, parse_qido_query("study", [("includefield", "all")]))
        assert result.PatientSex == "F" and result.StudyTime == "143015.123"
        for keyword in ("Manufacturer", "ImageComments", "SOPInstanceUID", "Modality"):
            assert keyword not in result

    def test_all_at_instance_level_keeps_everything_but_bulk_data(self) -> None:
        ds = instance(ImageComments="x", Manufacturer="ACME", PixelData=b"\0" * 4, ICCProfile=b"\1" * 2000)
        ds.add_new(0x00420011, "OB", b"%PDF")
        ds.add_new(0x00020010, "UI", "1.2.840.10008.1.2.1")
        result = to_result(ds, parse_qido_query("instance", [("includefield", "all")]))
        assert result.ImageComments == "x" and result.Manufacturer == "ACME"
        for keyword in ("PixelData", "EncapsulatedDocument", "ICCProfile", "TransferSyntaxUID"):
            assert keyword not in result

    def test_bulk_data_is_never_returned(self) -> None:
        q = parse_qido_query("instance", [("includefield", "PixelData")])
        assert "PixelData" not in to_result(instance(PixelData=b"\0" * 4), q)

    def test_extra_adds_and_overrides(self) -> None:
        q = parse_qido_query("study", [])
        result = to_result(instance(), q, extra={"ModalitiesInStudy": ["XC"], tag("NumberOfStudyRelatedSeries"): 2,
                                                 "RetrieveURL": "http://h/studies/1.2.3", "PatientID": "other"})
        assert result.ModalitiesInStudy == "XC" and result.NumberOfStudyRelatedSeries == 2
        assert result.RetrieveURL == "http://h/studies/1.2.3" and result.PatientID == "other"

    def test_extra_with_an_unknown_keyword_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="unknown attribute 'Nope'"):
            to_result(instance(), parse_qido_query("study", []), extra={"Nope": 1})

    def test_source_is_not_changed(self) -> None:
        ds = instance()
        result = to_result(ds, parse_qido_query("study", []), extra={"PatientID": "other"})
        result.PatientName = "Changed"
        assert ds.PatientID == "PID-1" and ds.PatientName == "Doe^John"

    def test_result_is_dicom_json_ready(self) -> None:
        result = to_result(instance(), parse_qido_query("study", [("includefield", "all")]))
        doc = result.to_json_dict()
        assert doc["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}


class TestBulkData:
    def test_is_bulk_data(self) -> None:
        ds = instance(PixelData=b"\0" * 4, ICCProfile=b"\1" * 10)
        ds.add_new(0x60003000, "OW", b"\0" * 4)
        assert is_bulk_data(ds["PixelData"]) and is_bulk_data(ds[0x60003000])
        assert not is_bulk_data(ds["ICCProfile"]) and not is_bulk_data(ds["PatientName"])

    def test_without_bulk_data_recurses_and_leaves_the_source(self) -> None:
        icon = Dataset()
        icon.Rows = 1
        icon.PixelData = b"\0" * 4
        ds = instance(PixelData=b"\0" * 4, IconImageSequence=Sequence([icon]))
        stripped = without_bulk_data(ds)
        assert "PixelData" not in stripped and "PixelData" not in stripped.IconImageSequence[0]
        assert stripped.IconImageSequence[0].Rows == 1
        assert "PixelData" in ds and "PixelData" in ds.IconImageSequence[0]
