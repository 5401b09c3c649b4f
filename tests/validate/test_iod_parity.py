"""Agreement between the bundled IOD engine and dciodvfy on a corpus of mutated instances.

The Image Manager may gate every instance with ``DicomValidatorEngine(BUNDLED)`` instead of
dciodvfy only if the bundled engine refuses (with an error) what dciodvfy refuses, and
nothing dciodvfy accepts.  This corpus measures that.  Its bases are the PS3.10 fixtures the
bundled tables cover and the instances the Manager's conversion makes of the metadata
fixtures with their bulk data.  Each mutation changes one attribute of a base (top level or
one level into a sequence), deterministically: delete it, empty it, a bogus coded value, a
value one character over its VR's maximum, malformed dates, times and numbers, a wrong value
multiplicity, bad person names, control or non-ASCII characters in text, and other plausible
values of the Image Pixel Description attributes (added where a base lacks them).  A mutated
instance is written as PS3.10, read back as the Manager reads a received part, and judged by
both engines: their error/no-error verdicts must be equal, except for the known
disagreements listed below, each with its reason.  Nothing is cached across test sessions.
"""

from __future__ import annotations

import fnmatch
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VM
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from wic_conformance.actors.conversion import ConversionPolicy, Converted, convert_submission
from wic_conformance.dicomweb.exchange import Body
from wic_conformance.dicomweb.part10 import read_part10
from wic_conformance.dicomweb.stow import build_stow_request, parse_stow_request
from wic_conformance.errors import ValidatorUnavailableError
from wic_conformance.findings import Severity
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.validate import iod

INDEX = FixtureIndex.load()

#: The PS3.10 fixtures the bundled tables cover (all but the Key Object Selection document), and the
#: metadata fixtures whose conversion (with their bulk data) is a base.
BASES = [*(f"part10/{name}" for name in ("encapsulated-pdf", "secondary-capture", "video-photographic",
                                         "vl-photographic", "vl-photographic-lossless")),
         *sorted(f.key for f in INDEX if f.kind in ("json", "xml") and f.valid)]

#: Mutations (``<base>/<label>`` patterns) on which the engines disagree, with the engine that refuses and why.
KNOWN_DISAGREEMENTS: dict[str, tuple[str, str]] = {
    # dicom-validator checks DA, DT and TM values with pydicom's forms, which hold the ranges PS3.5 Table
    # 6.2-1 gives (a month 01-12, an hour 00-23, one to six fraction digits); dciodvfy checks only the
    # characters and a length of 16 for TM.  The standard is on the bundled engine's side.
    "*:da-month-13": ("bundled", "a month 13 is no date (PS3.5 Table 6.2-1 DA); dciodvfy checks the digits only"),
    "*:dt-month-13": ("bundled", "a month 13 is no date-time (PS3.5 Table 6.2-1 DT); dciodvfy checks the digits only"),
    "*:tm-hour-25": ("bundled", "an hour 25 is no time (PS3.5 Table 6.2-1 TM); dciodvfy checks the digits only"),
    "*:overlong-TM": ("bundled", "a TM of 15 characters has eight fraction digits (PS3.5 allows 14 characters, six "
                                 "digits); dciodvfy allows 16 characters"),
}

#: Mutations dciodvfy cannot judge (it aborts), left out of the comparison.
REFERENCE_ABORTS = {
    "part10/secondary-capture/BitsAllocated:=32": "dciodvfy aborts on native OB pixel data with Bits Allocated 32",
}


# -- the bases ------------------------------------------------------------------------------------
def base_bytes(key: str) -> bytes:
    """Return the PS3.10 bytes of a base: the fixture itself, or the Manager's conversion of it."""
    fixture = INDEX[key]
    if fixture.kind == "part10":
        return fixture.read()
    request = build_stow_request(base_url="http://127.0.0.1/dicom-web", root_type=fixture.media_type,
                                 parts=[({"Content-Type": fixture.media_type}, fixture.read()),
                                        *INDEX.bulk_parts(fixture)])
    (result,) = convert_submission(parse_stow_request(request), policy=ConversionPolicy(), target_study=None)
    assert isinstance(result, Converted), result
    return encode(result.dataset)


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- the mutations --------------------------------------------------------------------------------
#: A value one character over the VR's maximum length (PS3.5 Table 6.2-1), in the VR's repertoire.
OVERLONG = {"AE": "A" * 17, "AS": "0050YY", "CS": "A" * 17, "DA": "202405061", "DS": "1." + "0" * 15,
            "DT": "20240506070809.123456+01000", "IS": "0" * 12 + "1", "LO": "x" * 65, "LT": "x" * 10241,
            "SH": "x" * 17, "ST": "x" * 1025, "TM": "070809.12345678", "UI": "1." + "2" * 63}
#: Values that break a VR's form rather than its length.
MALFORMED = {
    "DA": {"da-dashes": "2024-05-06", "da-month-13": "20241306", "da-seven-digits": "2024050"},
    "TM": {"tm-hour-25": "250000", "tm-colons": "07:08:09", "tm-seven-digits": "0708091"},
    "DT": {"dt-iso": "2024-05-06T07:08:09", "dt-month-13": "20241306070809"},
    "AS": {"as-words": "50 years"}, "IS": {"is-fraction": "1.5"}, "DS": {"ds-letters": "abc"},
    "UI": {"ui-leading-zero": "1.02.3", "ui-letter": "1.2.x"},
}
#: Person names: long components, a long group of short components, too many components or groups.
BAD_NAMES = {"pn-long-family": "A" * 65 + "^B", "pn-long-given": "A^" + "B" * 65,
             "pn-long-group": "A" * 40 + "^" + "B" * 30, "pn-six-components": "A^B^C^D^E^F",
             "pn-four-groups": "A=B=C=D"}
#: Text values with a control character, or a character outside the default repertoire (as Latin-1 bytes).
BAD_TEXT = {"text-control": b"a\x01b", "text-non-ascii": b"M\xfcller"}
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "PN", "UC", "UT"})
#: Other plausible values of the Image Pixel Description attributes (PS3.3 C.7.6.3).
PIXEL_VALUES: dict[str, list[Any]] = {
    "SamplesPerPixel": [1, 3, 4],
    "PhotometricInterpretation": ["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR",
                                  "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"],
    "BitsAllocated": [1, 8, 12, 16, 32],
    "BitsStored": [1, 7, 8, 12, 16],
    "HighBit": [0, 6, 7, 11, 15],
    "PixelRepresentation": [0, 1],
    "PlanarConfiguration": [0, 1],
    "Rows": [0, 1, 47, 65535],
    "Columns": [0, 1, 63, 65535],
    "NumberOfFrames": [0, 1, 2, 100],
}
STRING_VRS = frozenset({*OVERLONG, "UC", "UR", "UT"})
NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
ItemPath = tuple[tuple[int, int], ...]  # (sequence tag, item index) from the top level to an element's data set


@dataclass(frozen=True)
class Mutation:
    """One change to a base: ``label`` names it (``<attribute path>:<kind>``), ``apply`` makes it in place."""

    label: str
    apply: Callable[[Dataset], None]


def _at(path: ItemPath, tag: int, edit: Callable[[Dataset, int], None]) -> Callable[[Dataset], None]:
    def apply(ds: Dataset) -> None:
        for seq, index in path:
            ds = ds[seq].value[index]
        edit(ds, tag)
    return apply


def _set(value: Any) -> Callable[[Dataset, int], None]:
    def edit(ds: Dataset, tag: int) -> None:
        ds[tag] = DataElement(tag, ds[tag].VR, value)
    return edit


def _delete(ds: Dataset, tag: int) -> None:
    del ds[tag]


def _wrong_multiplicity(elem: DataElement) -> list[Any] | None:
    """Return values whose count PS3.6 does not allow for ``elem``, or ``None`` when every count fits."""
    try:
        spec = dictionary_VM(elem.tag)
    except KeyError:
        return None
    values = list(elem.value) if isinstance(elem.value, MultiValue | list) else [elem.value]
    low, _, high = spec.partition("-")
    if not values or values[0] in (None, "") or not low.isdigit():
        return None
    if not high:
        count = int(low) + 1
    elif high.isdigit():
        count = int(high) + 1
    elif int(low) > 1:
        count = 1
    else:
        return None
    return (values * count)[:count]


def element_mutations(elem: DataElement, path: ItemPath, prefix: str) -> Iterator[Mutation]:
    """Yield the mutations of one element, labelled ``<prefix><keyword>:<kind>``."""
    name = prefix + (elem.keyword or f"{elem.tag.group:04X}{elem.tag.element:04X}")
    vr = elem.VR

    def mutation(kind: str, edit: Callable[[Dataset, int], None]) -> Mutation:
        return Mutation(f"{name}:{kind}", _at(path, elem.tag, edit))

    yield mutation("delete", _delete)
    if vr == "SQ":
        yield mutation("empty", _set(Sequence()))
        return
    yield mutation("empty", _set(None if vr in NUMERIC_VRS else b"" if vr.startswith("O") else ""))
    for value in PIXEL_VALUES.get(elem.keyword, ()):
        if value != elem.value:
            yield mutation(f"={value}", _set(value))
    if vr == "CS" or elem.keyword in ("CodeValue", "CodingSchemeDesignator"):
        current = list(elem.value) if isinstance(elem.value, MultiValue) else [elem.value]
        yield mutation("bogus", _set(["BOGUS", *current[1:]] if len(current) > 1 else "BOGUS"))
    if vr in OVERLONG:
        yield mutation(f"overlong-{vr}", _set(OVERLONG[vr]))
    for kind, value in MALFORMED.get(vr, {}).items():
        yield mutation(kind, _set(value))
    if vr == "PN":
        for kind, value in BAD_NAMES.items():
            yield mutation(kind, _set(value))
    if vr in TEXT_VRS:
        for kind, raw in BAD_TEXT.items():
            yield mutation(kind, _set(raw + b"^Hans" if vr == "PN" else raw))
    if vr in STRING_VRS or vr in NUMERIC_VRS:
        wrong = _wrong_multiplicity(elem)
        if wrong is not None:
            yield mutation(f"vm{len(wrong)}", _set(wrong))


def mutations(ds: Dataset) -> list[Mutation]:
    """Return every mutation of a base, top level and one level into sequences, in data set order."""
    out: list[Mutation] = []
    for elem in ds:
        out += element_mutations(elem, (), "")
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                for inner in item:
                    out += element_mutations(inner, ((elem.tag, index),), f"{elem.keyword}.{index}.")
    if "Rows" in ds:  # an image: the pixel description attributes it lacks, added
        for keyword, values in PIXEL_VALUES.items():
            if keyword not in ds:
                out += [Mutation(f"{keyword}:+{value}", _add(keyword, value)) for value in values]
    return out


def _add(keyword: str, value: Any) -> Callable[[Dataset], None]:
    def apply(ds: Dataset) -> None:
        setattr(ds, keyword, value)
    return apply


# -- judging --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """Both engines' errors about one mutated instance (``reference`` is ``None`` when dciodvfy aborted)."""

    label: str
    reference: tuple[str, ...] | None
    bundled: tuple[str, ...]
    raised: str = ""

    @property
    def refused_by(self) -> str:
        """Return which engine alone refuses the instance (``""`` when they agree)."""
        if bool(self.reference) == bool(self.bundled):
            return ""
        return "dciodvfy" if self.reference else "bundled"


def mutated(data: bytes, mutation: Mutation) -> bytes | None:
    """Return the PS3.10 bytes of the base with ``mutation`` made, or ``None`` when pydicom cannot write it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the very values the corpus is made of
        ds = dcmread(io.BytesIO(data))
        try:
            mutation.apply(ds)
            return encode(ds)
        except Exception:  # noqa: BLE001 - any writing failure: the mutation is skipped and counted
            return None


def judge(label: str, data: bytes, engine: iod.DicomValidatorEngine, reference: iod.Dciodvfy) -> Verdict:
    """Judge one mutated instance with both engines, as the Image Manager's gate sees a received part."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while decoding the very values the corpus is made of
        instance = read_part10(Body.of(data), location=label)
        try:
            bundled, raised = tuple(m.text for m in engine.validate(instance) if m.level is Severity.ERROR), ""
        except Exception as exc:  # noqa: BLE001 - an engine that raises is a finding of the corpus
            bundled, raised = (), f"{type(exc).__name__}: {exc}"
    try:
        errors: tuple[str, ...] | None = tuple(m.text for m in reference.validate(instance)
                                               if m.level is Severity.ERROR)
    except ValidatorUnavailableError:
        errors = None
    return Verdict(label, errors, bundled, raised)


def run_corpus(key: str) -> tuple[list[Verdict], int]:
    """Judge every mutation of one base; return the verdicts and how many mutations pydicom could not write."""
    data = base_bytes(key)
    engine, reference = iod.DicomValidatorEngine(iod.BUNDLED), iod.Dciodvfy()
    verdicts, skipped = [], 0
    for mutation in mutations(dcmread(io.BytesIO(data))):
        written = mutated(data, mutation)
        if written is None:
            skipped += 1
        else:
            verdicts.append(judge(f"{key}/{mutation.label}", written, engine, reference))
    return verdicts, skipped


def known(label: str) -> str:
    """Return the engine that alone refuses a mutation by a known disagreement (``""``: the engines agree)."""
    for pattern, (engine, _reason) in KNOWN_DISAGREEMENTS.items():
        if fnmatch.fnmatchcase(label, pattern):
            return engine
    return ""


# -- the tests ------------------------------------------------------------------------------------
@pytest.mark.peer
@pytest.mark.usefixtures("no_network")
class TestBundledEngineAgreesWithDciodvfy:
    @pytest.fixture(autouse=True)
    def _dciodvfy(self, dciodvfy_path: str) -> None:
        """Require the peer."""

    @pytest.mark.parametrize("base", BASES)
    def test_same_verdict_on_every_mutation(self, base: str) -> None:
        verdicts, skipped = run_corpus(base)
        assert not [(v.label, v.raised) for v in verdicts if v.raised], "the bundled engine raised"
        aborted = {v.label for v in verdicts if v.reference is None}
        assert aborted == {label for label in REFERENCE_ABORTS if label.startswith(f"{base}/")}
        judged = [v for v in verdicts if v.reference is not None]
        # every disagreement is a known one, and every mutation a known one names still disagrees as listed
        unexpected = [(v.label, v.refused_by, v.reference or v.bundled) for v in judged
                      if v.refused_by != known(v.label)]
        assert not unexpected, unexpected
        assert skipped * 20 <= len(verdicts) + skipped, f"{skipped} mutations of {base} could not be written"


@pytest.fixture(scope="module")
def labels() -> dict[str, list[str]]:
    """The mutation labels of every base (generated, not judged)."""
    return {base: [m.label for m in mutations(dcmread(io.BytesIO(base_bytes(base))))] for base in BASES}


class TestCorpus:
    """The corpus cannot shrink unnoticed, and the known disagreements stay a small part of it."""

    def test_every_covered_base_is_mutated(self, labels: dict[str, list[str]]) -> None:
        assert len(labels) == 12
        assert all(len(found) >= 150 for found in labels.values()), {b: len(f) for b, f in labels.items()}

    def test_size_and_agreement(self, labels: dict[str, list[str]]) -> None:
        every = [f"{base}/{label}" for base, found in labels.items() for label in found]
        assert len(every) >= 3000
        assert len(set(every)) == len(every)  # labels name one mutation each
        disagreeing = [label for label in every if known(label)]
        assert len(disagreeing) / len(every) <= 0.05, len(disagreeing)

    def test_every_known_disagreement_and_abort_names_a_mutation(self, labels: dict[str, list[str]]) -> None:
        every = [f"{base}/{label}" for base, found in labels.items() for label in found]
        assert all(any(fnmatch.fnmatchcase(label, pattern) for label in every) for pattern in KNOWN_DISAGREEMENTS)
        assert set(REFERENCE_ABORTS) <= set(every)
