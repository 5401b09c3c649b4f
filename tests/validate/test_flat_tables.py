"""FlatTablesValidator validates exactly as dicom-validator's IODValidator on the bundled tables."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicom_validator.validator.error_handler import NullValidationResultHandler
from dicom_validator.validator.iod_validator import IODValidator
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence

from wic_conformance.validate import iod
from wic_conformance.validate.flat_tables import FlatTablesValidator, is_flat

PART10 = Path(__file__).resolve().parents[2] / "fixtures" / "part10"
INFO = iod.load_dicom_info(iod.BUNDLED)
SHARED: dict[tuple[Any, ...], Any] = {}  # one cache across every variant, as an engine keeps it
COVERED = sorted(p for p in PART10.glob("*.dcm") if str(dcmread(p, stop_before_pixels=True).SOPClassUID) in INFO.iods)


def result(validator: IODValidator) -> tuple[Any, ...]:
    """Everything a validation result says, comparable across validators."""
    outcome = validator.validate()
    errors = sorted(
        (module, int(tag.tag), tuple(int(p) for p in tag.parents or ()), str(error.code), str(error.type),
         repr(sorted((error.context or {}).items(), key=str)))
        for module, tags in outcome.module_errors.items() for tag, error in tags.items())
    return outcome.status, outcome.errors, errors


def variants() -> Iterator[tuple[str, Dataset]]:
    """Each covered fixture, then each with one top-level attribute deleted, emptied or given a bogus value."""
    for path in COVERED:
        base = dcmread(path)
        yield path.name, base
        for elem in list(base):
            if elem.tag.group == 0x7FE0:
                continue
            deleted = copy.deepcopy(base)
            del deleted[elem.tag]
            yield f"{path.name} without {elem.keyword}", deleted
            emptied = copy.deepcopy(base)
            emptied[elem.tag].value = Sequence() if elem.VR == "SQ" else None
            yield f"{path.name} with {elem.keyword} empty", emptied
            if elem.VR in ("CS", "LO", "SH"):
                bogus = copy.deepcopy(base)
                bogus[elem.tag].value = "BOGUS VALUE"
                yield f"{path.name} with {elem.keyword} bogus", bogus
            if elem.VR == "SQ" and elem.value:  # an item attribute deleted (a tag with parents)
                inner = copy.deepcopy(base)
                item = inner[elem.tag].value[0]
                first = next(iter(item), None)
                if first is not None:
                    del item[first.tag]
                    yield f"{path.name} with {elem.keyword}[0] without {first.keyword}", inner


def test_the_bundled_tables_are_flat() -> None:
    assert is_flat(INFO.modules)
    assert not is_flat({"M": {"(0010,0010)": {"type": "2"}, "include": [{"ref": "C.7.1"}]}})
    assert not is_flat({"M": {"(0040,0275)": {"items": {"include": [{"ref": "C.7.1"}]}}}})


def test_the_variants_cover_errors_in_items() -> None:
    found = [result(FlatTablesValidator(ds, INFO, error_handler=NullValidationResultHandler(), cache={}))
             for _name, ds in variants()]
    assert len(found) > 200
    assert sum(1 for _status, errors, _ in found if errors) > 50
    assert any(parents for _s, _e, errors in found for (_m, _t, parents, *_rest) in errors)


@pytest.mark.parametrize(("name", "ds"), list(variants()), ids=lambda v: v if isinstance(v, str) else "")
def test_same_result_as_iod_validator(name: str, ds: Dataset) -> None:
    expected = result(IODValidator(ds, INFO, error_handler=NullValidationResultHandler()))
    for cache in ({}, SHARED):  # a cold cache, and one warmed by the other variants
        assert result(FlatTablesValidator(ds, INFO, error_handler=NullValidationResultHandler(), cache=cache)) \
            == expected, name


def test_a_tag_met_at_two_depths_keeps_its_parents() -> None:
    """Patient Name required both at the top level and in a sequence item: the item's error names its sequence."""
    from dicom_validator.validator.dicom_info import DicomInfo

    sop = "1.2.3.4"
    module = {"(0008,0016)": {"type": "1"}, "(0010,0010)": {"type": "1"},
              "(0040,0275)": {"type": "3", "items": {"(0010,0010)": {"type": "1"}}}}
    info = DicomInfo(INFO.dictionary, {sop: {"title": "Test", "modules": {"Test": {"ref": "T", "use": "M"}},
                                             "group_macros": {}}}, {"T": module})
    ds = Dataset()
    ds.SOPClassUID = sop
    ds.PatientName = "Doe^Jane"
    ds.RequestAttributesSequence = Sequence([Dataset()])
    expected = result(IODValidator(ds, info, error_handler=NullValidationResultHandler()))
    assert [(tag, parents) for _m, tag, parents, *_ in expected[2]] == [(0x00100010, (0x00400275,))]
    assert result(FlatTablesValidator(ds, info, error_handler=NullValidationResultHandler(), cache={})) == expected
