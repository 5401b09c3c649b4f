"""Read test plans (YAML), validate them against ``plan.schema.json`` and expand them into cases.

A plan is data (``testplans/<actor-under-test>/<transaction>_<topic>.yaml``, read
with :func:`yaml.safe_load`); the format is documented at the top of the
package's ``plans/plan.schema.json`` and in ``testplans/README.md``.  Loading
happens in four steps, each failing with a :class:`~wic_conformance.errors.PlanError`
that names the file, the case and the JSON path:

1. the header (``plan``, ``title``, ``actor``, ``transaction``, ``defaults``,
   ``cases``) is validated against the schema;
2. ``defaults`` is merged into every case (mappings merge recursively, any other
   value in the case wins) and ``variants`` expand a case into one case per
   combination, with ``{name}`` placeholders substituted in every string value;
3. each expanded case is validated against ``$defs/case`` (an error in a value
   that came from ``defaults`` is reported at ``/defaults/...``);
4. requirement IDs are looked up in the catalogue, fixture keys in the fixtures
   index, checks (names or tags) in the check registry, and mutation kinds and
   parameters in :mod:`wic_conformance.fuzz.mutations`.

References
----------
JSON Schema 2020-12 (https://json-schema.org/draft/2020-12); RFC 6901 (JSON
pointers in the messages); IHE RAD WIC (RAD-108).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from wic_conformance.catalogue import Catalogue, default_catalogue
from wic_conformance.errors import PlanError, UsageError
from wic_conformance.fuzz.mutations import OPERATORS, parse_kind
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.plans.model import (
    BulkReplacement,
    Case,
    Encoding,
    Expectation,
    MutationSpec,
    Payload,
    Plan,
)

__all__ = ["PLAN_SUFFIXES", "WIC_OPTIONS", "load_plan", "load_plans", "plan_schema"]

#: File name endings of plan files.
PLAN_SUFFIXES = (".yaml", ".yml")
#: The WIC storage options a case may name (and a target may claim).
WIC_OPTIONS = ("jpeg", "mpeg4", "evidence", "dicom", "png", "quicktime")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_MESSAGE = 300


@functools.cache
def plan_schema() -> dict[str, Any]:
    """Return the plan JSON Schema shipped with the package (``plans/plan.schema.json``)."""
    text = resources.files("wic_conformance.plans").joinpath("plan.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validators() -> tuple[Draft202012Validator, Draft202012Validator, Draft202012Validator]:
    schema = plan_schema()
    defs = schema["$defs"]
    header = Draft202012Validator(schema)
    case = Draft202012Validator({"$schema": schema["$schema"], "$defs": defs, "$ref": "#/$defs/case"})
    variants = Draft202012Validator({"$schema": schema["$schema"], "$defs": defs,
                                     "type": "object",
                                     "properties": {"variants": defs["case"]["properties"]["variants"]}})
    return header, case, variants


def _pointer(parts: Iterable[str | int]) -> str:
    text = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return text or "/"


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


class _Where:
    """Formats plan errors: ``<file>: case '<id>': <json path>: <message>``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, pointer: str, message: str, case: str | None = None) -> PlanError:
        where = f"{self.path}: case {case!r}: " if case is not None else f"{self.path}: "
        return PlanError(f"{where}{pointer}: {_short(message)}")


def _first_error(validator: Draft202012Validator, instance: Any) -> ValidationError | None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    return best_match(errors) or errors[0]


# -- merging and expansion -------------------------------------------------------------------------------
def _merge(defaults: Mapping[str, Any], case: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``defaults`` overlaid by ``case``: mappings merge recursively, other values are replaced."""
    out: dict[str, Any] = copy.deepcopy(dict(defaults))
    for key, value in case.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _substitute(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: names.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    return value


def _expand(case: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Yield (case, variant values) for every combination of the case's ``variants``."""
    variants: Mapping[str, Sequence[Any]] = case.get("variants") or {}
    body = {k: v for k, v in case.items() if k != "variants"}
    if not variants:
        yield body, {}
        return
    names = list(variants)
    for combo in itertools.product(*(variants[n] for n in names)):
        values = {n: str(v) for n, v in zip(names, combo, strict=True)}
        expanded = _substitute(body, values)
        raw_id = str(case.get("id", ""))
        new_id = _PLACEHOLDER.sub(functools.partial(_id_part, values), raw_id)
        missing = [n for n in names if "{" + n + "}" not in raw_id]
        if missing:
            new_id += "".join("_" + _ID_UNSAFE.sub("_", values[n]) for n in missing)
        expanded["id"] = new_id
        yield expanded, values


def _id_part(values: Mapping[str, str], match: re.Match[str]) -> str:
    """Return the id-safe text of a variant value standing for ``{name}`` in a case id."""
    return _ID_UNSAFE.sub("_", values.get(match.group(1), match.group(0)))


def _origin(raw_case: Mapping[str, Any], rel: Sequence[str | int], index: int) -> str:
    """Return the raw-file pointer of a path inside an expanded case (``/cases/N/...`` or ``/defaults/...``)."""
    node: Any = raw_case
    for element in rel:
        if isinstance(node, Mapping) and element in node:
            node = node[element]
        elif isinstance(node, list) and isinstance(element, int) and element < len(node):
            node = node[element]
        else:
            return _pointer(["defaults", *rel])
    return _pointer(["cases", index, *rel])


# -- loading -------------------------------------------------------------------------------------------
class _Loader:
    def __init__(self, path: Path, index: FixtureIndex, catalogue: Catalogue) -> None:
        from wic_conformance.validate.all_checks import REGISTRY

        self.path = path
        self.where = _Where(path.as_posix())
        self.index = index
        self.catalogue = catalogue
        self.check_names = set(REGISTRY.names())
        self.check_tags = {tag for spec in REGISTRY for tag in spec.tags}

    def read(self) -> Any:
        try:
            text = self.path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"{self.path.as_posix()}: cannot read the plan: {exc}") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise PlanError(f"{self.path.as_posix()}: {at}not valid YAML: {problem}") from None

    def load(self) -> Plan:
        data = self.read()
        if not isinstance(data, dict):
            kind = "empty" if data is None else type(data).__name__
            raise self.where.error("/", f"expected a mapping with the plan header and its cases, got {kind}")
        header_validator, case_validator, variants_validator = _validators()
        error = _first_error(header_validator, data)
        if error is not None:
            parts = list(error.absolute_path)
            case_id = None
            if len(parts) >= 2 and parts[0] == "cases" and isinstance(parts[1], int):
                raw = data["cases"][parts[1]]
                case_id = str(raw.get("id")) if isinstance(raw, dict) and "id" in raw else None
            raise self.where.error(_pointer(parts), error.message, case_id)
        defaults: Mapping[str, Any] = data.get("defaults") or {}
        cases: list[Case] = []
        seen: dict[str, str] = {}
        for number, raw_case in enumerate(data["cases"]):
            raw_id = str(raw_case["id"])
            merged = _merge(defaults, raw_case)
            error = _first_error(variants_validator, merged)
            if error is not None:
                raise self.where.error(_origin(raw_case, list(error.absolute_path), number), error.message, raw_id)
            for expanded, variant in _expand(merged):
                case_id = str(expanded["id"])
                error = _first_error(case_validator, expanded)
                if error is not None:
                    rel = list(error.absolute_path)
                    raise self.where.error(_origin(raw_case, rel, number), error.message, case_id)
                if case_id in seen:
                    raise self.where.error(_pointer(["cases", number, "id"]),
                                           f"duplicate case id (also at {seen[case_id]})", case_id)
                seen[case_id] = _pointer(["cases", number])
                cases.append(self.build(expanded, variant, raw_case, number, str(data["plan"])))
        return Plan(id=str(data["plan"]), title=str(data["title"]), actor=str(data["actor"]),
                    transaction=str(data["transaction"]), path=self.path.as_posix(), cases=tuple(cases))

    # -- semantic checks and construction ---------------------------------------------------------------
    def build(self, case: Mapping[str, Any], variant: Mapping[str, str], raw: Mapping[str, Any], number: int,
              plan_id: str) -> Case:
        case_id = str(case["id"])

        def fail(rel: Sequence[str | int], message: str) -> PlanError:
            suffix = f" (variant {', '.join(f'{k}={v}' for k, v in variant.items())})" if variant else ""
            return self.where.error(_origin(raw, rel, number), message + suffix, case_id)

        for i, rid in enumerate(case["requirements"]):
            if rid not in self.catalogue:
                raise fail(["requirements", i], f"unknown requirement ID {rid!r} (not in the catalogue)")
        expect_raw: Mapping[str, Any] = case.get("expect") or {}
        if "failure_requirement" in expect_raw and expect_raw["failure_requirement"] not in self.catalogue:
            raise fail(["expect", "failure_requirement"],
                       f"unknown requirement ID {expect_raw['failure_requirement']!r} (not in the catalogue)")
        for i, rid in enumerate(expect_raw.get("findings", ())):
            if rid not in self.catalogue:
                raise fail(["expect", "findings", i], f"unknown requirement ID {rid!r} (not in the catalogue)")
        checks = tuple(case.get("checks") or ("manager",))
        for i, name in enumerate(checks):
            if name not in self.check_names and name not in self.check_tags:
                raise fail(["checks", i], f"{name!r} is neither a registered check nor a check tag "
                                          f"(tags: {', '.join(sorted(self.check_tags))})")
        for name in case.get("check_options") or {}:
            if name not in self.check_names:
                raise fail(["check_options", name], f"no registered check is named {name!r}")
        payload = self.payload(case["payload"], fail)
        stored_only = expect_raw.get("stored_only")
        if stored_only is not None:
            for i, position in enumerate(stored_only):
                if position >= len(payload.fixtures):
                    raise fail(["expect", "stored_only", i],
                               f"instance {position} does not exist (the payload has {len(payload.fixtures)})")
        defaults = Expectation()
        expect = Expectation(
            status=tuple(expect_raw.get("status", defaults.status)),
            stored=expect_raw.get("stored", defaults.stored),
            failure_requirement=str(expect_raw.get("failure_requirement", defaults.failure_requirement)),
            findings=tuple(expect_raw.get("findings", ())),
            stored_only=tuple(stored_only) if stored_only is not None else None,
            reported=bool(expect_raw.get("reported", False)),
        )
        return Case(
            id=case_id, title=str(case["title"]), plan=plan_id, requirements=tuple(case["requirements"]),
            options=tuple(case.get("options") or ()), payload=payload, expect=expect,
            target=str(case.get("target", "studies")), checks=checks,
            check_options={k: dict(v) for k, v in (case.get("check_options") or {}).items()},
            tags=tuple(case.get("tags") or ()), slow=bool(case.get("slow", False)),
            source=f"{self.path.as_posix()}::{case_id}", description=str(case.get("description", "")),
            variant=dict(variant),
        )

    def payload(self, raw: Mapping[str, Any], fail: Callable[[Sequence[str | int], str], PlanError]) -> Payload:
        kinds: list[str] = []
        for i, key in enumerate(raw["fixtures"]):
            try:
                fixture = self.index[key]
            except Exception:
                raise fail(["payload", "fixtures", i], f"unknown fixture key {key!r} (not in "
                                                       f"{(self.index.root / 'index.json').as_posix()})") from None
            if fixture.kind not in ("part10", "json", "xml"):
                raise fail(["payload", "fixtures", i],
                           f"fixture {key!r} is {fixture.kind} content, not an instance; send media files as bulk "
                           "data with payload.bulk")
            kinds.append(fixture.kind)
        encoding = raw.get("encoding") or kinds[0]
        for i, kind in enumerate(kinds):
            if kind != encoding:
                raise fail(["payload", "fixtures", i],
                           f"fixture {raw['fixtures'][i]!r} is a {kind} instance but the payload encoding is "
                           f"{encoding}; one request carries one encoding (STOW-PAY-002)")
        bulk: dict[str, BulkReplacement] = {}
        for tag, spec in (raw.get("bulk") or {}).items():
            if encoding == "part10":
                raise fail(["payload", "bulk", tag], "bulk data replacements apply to json and xml payloads only")
            key = spec if isinstance(spec, str) else spec["fixture"]
            try:
                media = self.index[key]
            except Exception:
                raise fail(["payload", "bulk", tag], f"unknown fixture key {key!r}") from None
            if media.kind != "media":
                raise fail(["payload", "bulk", tag], f"fixture {key!r} is a {media.kind} instance, not media")
            bulk[tag] = BulkReplacement(key, None if isinstance(spec, str) else spec.get("media_type"))
        mutations: list[MutationSpec] = []
        for i, item in enumerate(raw.get("mutations") or ()):
            try:
                kind = parse_kind(item["kind"])
            except UsageError as exc:
                raise fail(["payload", "mutations", i, "kind"], str(exc)) from None
            info = OPERATORS[kind]
            if encoding not in info.encodings:
                raise fail(["payload", "mutations", i, "kind"],
                           f"{kind} applies to {', '.join(sorted(info.encodings))} payloads, not {encoding}")
            params = dict(item.get("params") or {})
            unknown = sorted(set(params) - info.params)
            if unknown:
                raise fail(["payload", "mutations", i, "params"],
                           f"unknown parameter(s) {unknown} for {kind}; allowed: {sorted(info.params) or 'none'}")
            mutations.append(MutationSpec(kind.value, params))
        defaults = Payload(encoding=Encoding(encoding), fixtures=())
        return Payload(
            encoding=Encoding(encoding), fixtures=tuple(raw["fixtures"]),
            overrides=dict(raw.get("overrides") or {}), mutations=tuple(mutations),
            fresh_uids=bool(raw.get("fresh_uids", defaults.fresh_uids)),
            same_study=bool(raw.get("same_study", defaults.same_study)),
            accept=raw["accept"] if "accept" in raw else defaults.accept,
            chunked=bool(raw.get("chunked", False)), bulk=bulk, pad_bytes=int(raw.get("pad_bytes", 0)),
            resend=bool(raw.get("resend", False)),
        )


def load_plan(path: str | Path, *, index: FixtureIndex | None = None, catalogue: Catalogue | None = None) -> Plan:
    """Read, validate and expand one plan file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    index : FixtureIndex, optional
        The fixtures index fixture keys are checked against (default: :meth:`FixtureIndex.load`).
    catalogue : Catalogue, optional
        The catalogue requirement IDs are checked against (default: the packaged one).

    Returns
    -------
    Plan
        With one :class:`Case` per case and variant.

    Raises
    ------
    PlanError
        Unreadable file, invalid YAML, a schema violation, a duplicate case id, or an unknown
        requirement ID, fixture key, check name or tag, or mutation kind or parameter.  The message
        names the file, the case and the JSON path.
    FixtureNotFoundError
        No fixtures index could be found.

    References
    ----------
    JSON Schema 2020-12; RFC 6901.
    """
    return _Loader(Path(path), index if index is not None else FixtureIndex.load(),
                   catalogue if catalogue is not None else default_catalogue()).load()


def load_plans(paths: str | Path | Iterable[str | Path], *, index: FixtureIndex | None = None,
               catalogue: Catalogue | None = None) -> list[Plan]:
    """Load plan files and every ``*.yaml`` / ``*.yml`` below plan folders, in path order.

    Raises
    ------
    PlanError
        As :func:`load_plan`, for a path that does not exist, or for two plans with the same id.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in PLAN_SUFFIXES and f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise PlanError(f"{p.as_posix()}: no such plan file or folder")
    idx = index if index is not None else FixtureIndex.load()
    cat = catalogue if catalogue is not None else default_catalogue()
    plans: list[Plan] = []
    ids: dict[str, str] = {}
    for f in files:
        plan = load_plan(f, index=idx, catalogue=cat)
        if plan.id in ids:
            raise PlanError(f"{plan.path}: /plan: plan id {plan.id!r} is also used by {ids[plan.id]}")
        ids[plan.id] = plan.path
        plans.append(plan)
    return plans
