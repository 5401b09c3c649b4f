"""The ``wic-conformance`` command line.

Subcommands
-----------
validate PATH...   judge files offline (Part-10, DICOM JSON/XML, .http messages, HAR, bare multipart)
checks             list the registered checks and the requirements they judge
requirements       list the requirement catalogue (with a rule profile applied)
bench [NAME...]    run benchmarks and write reports/bench.json

Exit status: 0 no error-level finding, 1 at least one, 2 usage problem or a
file that could not be judged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from wic_conformance import __version__
from wic_conformance.catalogue import Catalogue, default_catalogue, load_profile
from wic_conformance.dicomweb.deviation import Strictness
from wic_conformance.errors import UsageError, WicConformanceError
from wic_conformance.findings import Severity

__all__ = ["main"]

log = logging.getLogger(__name__)


def _catalogue(rules: str | None) -> Catalogue:
    cat = default_catalogue()
    return cat.with_profile(load_profile(rules)) if rules else cat


def _cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.validate import all_checks  # noqa: F401  (registers the checks)
    from wic_conformance.validate.files import FileKind, judge_file
    from wic_conformance.validate.registry import CheckContext, Outcome

    options: dict[str, dict[str, Any]] = {}
    if args.standard:
        options["part10_instance_conforms_to_iod_dicom_validator"] = {"standard_path": args.standard}
    ctx = CheckContext(catalogue=_catalogue(args.rules), options=options,
                       policy=Strictness.STRICT if args.strict else Strictness.LENIENT)
    if args.fixtures is not None:
        return _validate_fixtures(args, ctx, out)
    if not args.paths:
        raise UsageError("give at least one PATH, or --fixtures")
    kind = FileKind(args.kind) if args.kind else None
    several = len(args.paths) > 1
    findings: list[dict[str, Any]] = []
    tool_errors: list[dict[str, str]] = []
    for path in args.paths:
        verdict = judge_file(path, ctx=ctx, kind=kind, content_type=args.content_type,
                             checks=args.check or None)
        for exchange, results in verdict.results:
            for result in results:
                if result.outcome is Outcome.ERROR:
                    tool_errors.append({"file": verdict.path, "check": result.check, "error": result.error})
                for finding in result.findings:
                    item = finding.to_dict()
                    item["check"] = result.check
                    if several:
                        item["file"] = verdict.path
                    if exchange.source and exchange.source != verdict.path:
                        item["exchange"] = exchange.source
                    findings.append(item)
    summary = {
        "errors": sum(f["severity"] == Severity.ERROR.value for f in findings),
        "warnings": sum(f["severity"] == Severity.WARNING.value for f in findings),
        "info": sum(f["severity"] == Severity.INFO.value for f in findings),
    }
    if args.format == "json":
        doc: dict[str, Any] = {"findings": findings, "summary": summary}
        if tool_errors:
            doc["tool_errors"] = tool_errors
        json.dump(doc, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        _print_text(findings, summary, tool_errors, out)
    if tool_errors:
        return 2
    return 1 if summary["errors"] else 0


def _validate_fixtures(args: argparse.Namespace, ctx: Any, out: TextIO) -> int:
    from wic_conformance.model.fixtures import FixtureIndex
    from wic_conformance.validate.fixture_check import judge_fixtures

    index = FixtureIndex.load(args.fixtures or None)
    verdicts = judge_fixtures(index, ctx=ctx)
    report = []
    for v in verdicts:
        label = "good" if v.valid else "broken: " + ", ".join(v.expected)
        state = "ok  " if v.agrees else "FAIL"
        detail = ""
        if v.tool_errors:
            detail = "; check errors: " + "; ".join(v.tool_errors)
        elif v.valid and v.errors:
            detail = "; unexpected: " + "; ".join(f"{f.requirement} {f.message}" for f in v.errors[:3])
        elif not v.valid and v.missing:
            detail = "; no finding for " + ", ".join(v.missing)
        report.append({"fixture": v.key, "label": label, "agrees": v.agrees,
                       "found": sorted(v.found), "missing": list(v.missing),
                       "errors": [f.to_dict() for f in v.errors], "tool_errors": list(v.tool_errors)})
        if args.format == "text":
            out.write(f"{state} {v.key:40} ({label}){detail}\n")
    bad = sum(not v.agrees for v in verdicts)
    if args.format == "json":
        json.dump({"fixtures": report, "summary": {"judged": len(verdicts), "disagreeing": bad}}, out, indent=2)
        out.write("\n")
    else:
        out.write(f"{len(verdicts)} fixtures judged from {index.root}, {bad} disagree with their labels\n")
    return 1 if bad else 0


def _print_text(findings: list[dict[str, Any]], summary: dict[str, int],
                tool_errors: list[dict[str, str]], out: TextIO) -> None:
    order = {"error": 0, "warning": 1, "info": 2}
    for f in sorted(findings, key=lambda f: (f.get("file", ""), order[f["severity"]], f["requirement"])):
        prefix = f"{f['file']}: " if "file" in f else ""
        where = f" at {f['location']}" if f.get("location") else ""
        out.write(f"{prefix}{f['severity'].upper():7} {f['requirement']} [{f['confidence'] or '?'}] "
                  f"{f['message']}{where}\n")
    for err in tool_errors:
        out.write(f"{err['file']}: TOOL ERROR in check {err['check']}: {err['error']}\n")
    out.write(f"{summary['errors']} error(s), {summary['warnings']} warning(s), {summary['info']} info\n")


def _cmd_checks(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.validate.all_checks import REGISTRY

    for spec in sorted(REGISTRY, key=lambda s: s.name):
        out.write(f"{spec.name}  [{', '.join(spec.requirements)}]\n    {spec.description}\n")
    return 0


def _cmd_requirements(args: argparse.Namespace, out: TextIO) -> int:
    for req in _catalogue(args.rules):
        state = "" if req.enabled else " (disabled)"
        out.write(f"{req.id:14} {req.actor:5} {req.level:6} {req.confidence} {req.severity.value:7}"
                  f"{state}  {req.summary}\n")
    return 0


def _cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.bench import BENCHMARKS

    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise WicConformanceError(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    results = []
    for name in names:
        log.info("running benchmark %s", name)
        result = BENCHMARKS[name](args.quick)
        results.append(result)
        out.write(json.dumps(result, indent=2) + "\n")
    target = Path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"quick": args.quick, "results": results}, indent=2) + "\n", "utf-8")
    out.write(f"wrote {target}\n")
    return 0 if all(r.get("met", True) for r in results) else 1


def _cmd_manager(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.actors.manager import ImageManager, ManagerConfig
    from wic_conformance.actors.server import AsgiServer

    overrides = {"data_dir": args.data, "patients": args.patients}
    if args.config:
        config = ManagerConfig.from_file(args.config, **overrides)
    else:
        config = ManagerConfig.from_mapping({k: v for k, v in overrides.items() if v is not None})
    manager = ImageManager(config, catalogue=_catalogue(args.rules))
    server = AsgiServer(manager.app, host=args.host, port=args.port,
                        h11_max_incomplete_event_size=config.max_header_bytes)
    def announce(url: str) -> None:
        out.write(f"wic-conformance Image Manager\n  STOW-RS  {url}{config.root}/studies\n"
                  f"  PDQm     {url}{config.fhir_root}/Patient\n  verdicts {url}/wic/exchanges\n"
                  f"  data     {manager.data_dir}\n")
        out.flush()

    try:
        server.serve_forever(announce=announce)
    finally:
        manager.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``wic-conformance`` command."""
    parser = argparse.ArgumentParser(prog="wic-conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    val = sub.add_parser("validate", help="judge files offline")
    val.add_argument("paths", nargs="*", metavar="PATH")
    val.add_argument("--fixtures", nargs="?", const="", default=None, metavar="DIR",
                     help="judge every fixture of DIR/index.json (default: ./fixtures) against its label")
    val.add_argument("--kind", choices=["part10", "json", "xml", "http", "har", "multipart"],
                     help="the kind of every PATH (default: detected)")
    val.add_argument("--content-type", help="Content-Type of a bare multipart body")
    val.add_argument("--format", choices=["text", "json"], default="text")
    val.add_argument("--rules", metavar="FILE", help="rule profile (YAML) adjusting S/D/U requirements")
    val.add_argument("--check", action="append", metavar="NAME", help="run only this check (repeatable)")
    val.add_argument("--strict", action="store_true", help="parse strictly: stop at the first grammar deviation")
    val.add_argument("--standard", metavar="DIR",
                     help="local DICOM standard folder for dicom-validator (never downloaded)")
    val.set_defaults(func=_cmd_validate)

    man = sub.add_parser("manager", help="run the simulated Image Manager (STOW-RS, QIDO-RS, WADO-RS, PDQm)")
    man.add_argument("--host", default="127.0.0.1")
    man.add_argument("--port", type=int, default=8042)
    man.add_argument("--data", metavar="DIR", help="storage folder (kept across restarts)")
    man.add_argument("--config", metavar="FILE", help="YAML settings (see ManagerConfig)")
    man.add_argument("--patients", metavar="FILE", help="synthetic patients for PDQm (e.g. fixtures/patients.json)")
    man.add_argument("--rules", metavar="FILE", help="rule profile used to judge the Capturer")
    man.set_defaults(func=_cmd_manager)

    chk = sub.add_parser("checks", help="list the registered checks")
    chk.set_defaults(func=_cmd_checks)

    req = sub.add_parser("requirements", help="list the requirement catalogue")
    req.add_argument("--rules", metavar="FILE")
    req.set_defaults(func=_cmd_requirements)

    bench = sub.add_parser("bench", help="run benchmarks (ratios against a baseline in the same run)")
    bench.add_argument("names", nargs="*", metavar="NAME")
    bench.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    bench.add_argument("--out", default="reports/bench.json")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        pkg_log = logging.getLogger("wic_conformance")
        pkg_log.addHandler(handler)
        pkg_log.setLevel(logging.INFO)
    stream = out or sys.stdout
    try:
        status: int = args.func(args, stream)
        return status
    except WicConformanceError as exc:
        sys.stderr.write(f"wic-conformance: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
