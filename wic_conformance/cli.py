"""The ``wic-conformance`` command line.

Subcommands
-----------
validate PATH...   judge files offline (Part-10, DICOM JSON/XML, .http messages, HAR, bare multipart)
checks             list the registered checks and the requirements they judge
requirements       list the requirement catalogue (with a rule profile applied)
bench [NAME...]    run benchmarks and write reports/bench.json
manager            run the simulated Image Manager
test-manager URL   run the Image Manager test plans against URL (through pytest)
selftest           run the test plans against the simulated Image Manager
report DATA-DIR    render the HTML report of the exchanges recorded in DATA-DIR

Exit status: 0 no error-level finding, 1 at least one, 2 usage problem or a
file that could not be judged.  ``test-manager``, ``selftest`` and ``report``
return pytest's exit status (0 all passed, 1 some failed, 4 unreachable target
or bad usage).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
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

    overrides = {"data_dir": args.data, "patients": args.patients,
                 "faults": args.fault or None}
    if args.config:
        config = ManagerConfig.from_file(args.config, **overrides)
    else:
        config = ManagerConfig.from_mapping({k: v for k, v in overrides.items() if v is not None})
    manager = ImageManager(config, catalogue=_catalogue(args.rules))
    server = manager.make_server(host=args.host, port=args.port)

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


PLUGIN = "wic_conformance.plans.plugin"
DEFAULT_PLANS = Path("testplans") / "manager"


def _default_plans() -> Path:
    """Return ``testplans/manager`` of the current folder, else that of the checkout the package runs from."""
    if DEFAULT_PLANS.exists():
        return DEFAULT_PLANS
    checkout = Path(__file__).resolve().parent.parent / DEFAULT_PLANS
    return checkout if checkout.exists() else DEFAULT_PLANS


def _rootdir_for(paths: Sequence[str | Path]) -> Path:
    """Return the folder node IDs are relative to: the current one if it holds every path, else their checkout.

    Plans under ``<checkout>/testplans/`` get node IDs like ``testplans/manager/rad108_store.yaml::case``.
    """
    cwd = Path.cwd().resolve()
    resolved = [Path(p).resolve() for p in paths]
    if all(p == cwd or cwd in p.parents for p in resolved):
        return cwd
    anchors = []
    for p in resolved:
        parts = p.parts
        anchors.append(Path(*parts[:parts.index("testplans")]) if "testplans" in parts[:-1] else p.parent)
    return Path(os.path.commonpath(anchors))


def _pytest_main(args: list[str], *, rootdir: Path | None = None) -> int:
    """Run pytest with the plugin, isolated from any pytest configuration of the current folder.

    An empty ini file in a temporary folder (``-c``) keeps the current folder's
    ``pyproject.toml``/``pytest.ini`` out, ``--noconftest`` its ``conftest.py``
    files, and ``--rootdir`` keeps node IDs relative to the current folder.
    """
    import pytest

    with tempfile.TemporaryDirectory(prefix="wic-pytest-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", "utf-8")
        argv = ["-c", str(ini), "--rootdir", str(rootdir or Path.cwd()), "--noconftest", "-p", "no:cacheprovider",
                "-p", PLUGIN, "-o", "junit_suite_name=wic-conformance", "-o", "junit_family=xunit2", "-ra",
                # plugins imported before pytest.main (anyio, by the simulated Image Manager) cannot be rewritten
                "-W", "ignore::pytest.PytestAssertRewriteWarning",
                *args]
        log.info("pytest %s", " ".join(argv))
        return int(pytest.main(argv))


def _report_args(args: argparse.Namespace, prefix: str) -> list[str]:
    """Return the pytest arguments for the HTML, JUnit and JSON outputs and the selection options."""
    out: list[str] = []
    html = args.html or f"reports/{prefix}-report.html"
    junit = args.junitxml or f"reports/{prefix}-junit.xml"
    results = args.json or f"reports/{prefix}-results.json"
    out += ["--html", html, "--junitxml", junit, "--wic-json", results]
    if getattr(args, "keyword", None):
        out += ["-k", args.keyword]
    if getattr(args, "markexpr", None):
        out += ["-m", args.markexpr]
    if getattr(args, "numprocesses", None):
        out += ["-n", str(args.numprocesses)]
    if getattr(args, "exitfirst", False):
        out.append("-x")
    out += ["-v"] * getattr(args, "pytest_verbose", 0)
    return out


def _plans(args: argparse.Namespace) -> list[str]:
    return list(args.plan or [str(_default_plans())])


def _plan_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for plan in _plans(args):
        out += ["--wic-plan", plan]
    if args.rules:
        out += ["--wic-rules", args.rules]
    return out


def _cmd_test_manager(args: argparse.Namespace, out: TextIO) -> int:
    pytest_args = ["--wic-target", args.url, *_plan_args(args)]
    if args.options:
        pytest_args += ["--wic-options", args.options]
    if args.auth:
        pytest_args += ["--wic-auth", args.auth]
    if args.token:
        pytest_args += ["--wic-token", args.token]
    for header in args.header or ():
        pytest_args += ["--wic-header", header]
    if args.ca_bundle:
        pytest_args += ["--wic-ca-bundle", args.ca_bundle]
    if args.insecure:
        pytest_args.append("--wic-insecure")
    if args.timeout is not None:
        pytest_args += ["--wic-timeout", str(args.timeout)]
    return _pytest_main(pytest_args + _report_args(args, "manager"), rootdir=_rootdir_for(_plans(args)))


def _cmd_selftest(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.actors.manager import ImageManager, ManagerConfig

    patients = Path("fixtures") / "patients.json"
    if not patients.is_file():
        patients = Path(__file__).resolve().parent.parent / "fixtures" / "patients.json"
    with tempfile.TemporaryDirectory(prefix="wic-selftest-") as data:
        config = ManagerConfig(data_dir=Path(data), patients=patients if patients.is_file() else None)
        with ImageManager(config, catalogue=_catalogue(args.rules)) as manager:
            out.write(f"wic-conformance selftest: simulated Image Manager at {manager.url}\n")
            out.flush()
            status = _pytest_main(["--wic-target", manager.url, *_plan_args(args), *_report_args(args, "selftest")],
                                  rootdir=_rootdir_for(_plans(args)))
            manager.check_errors()
    return status


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    folder = Path(args.data_dir)
    recorded = ("exchanges.ndjson", "recording.har", "journal.ndjson")
    if not any((folder / name).is_file() for name in recorded) and not (
            folder.is_file() and folder.suffix in (".ndjson", ".har")):
        raise UsageError(f"{folder} holds no exchanges.ndjson (a simulated Image Manager's data folder) "
                         "and no recording.har or journal.ndjson (a recording proxy's folder)")
    pytest_args = ["--wic-records", str(folder)]
    if args.rules:
        pytest_args += ["--wic-rules", args.rules]
    return _pytest_main(pytest_args + _report_args(args, "records"),
                        rootdir=folder.resolve() if folder.is_dir() else folder.resolve().parent)


def _add_report_options(parser: argparse.ArgumentParser, prefix: str, *, select: bool = True) -> None:
    parser.add_argument("--html", metavar="FILE", help=f"HTML report (default reports/{prefix}-report.html)")
    parser.add_argument("--junitxml", metavar="FILE", help=f"JUnit XML (default reports/{prefix}-junit.xml)")
    parser.add_argument("--json", metavar="FILE", help=f"JSON results (default reports/{prefix}-results.json)")
    parser.add_argument("--rules", metavar="FILE", help="rule profile (YAML) adjusting S/D/U requirements")
    if select:
        parser.add_argument("-k", dest="keyword", metavar="EXPR", help="select cases by keyword expression")
        parser.add_argument("-m", dest="markexpr", metavar="EXPR",
                            help="select cases by marker: tags, wic_option_<option>, requirement IDs")
        parser.add_argument("-n", dest="numprocesses", metavar="N",
                            help="run cases in N processes (pytest-xdist; 'auto' for one per CPU)")
        parser.add_argument("-x", dest="exitfirst", action="store_true", help="stop at the first failure")
    parser.add_argument("-V", "--pytest-verbose", dest="pytest_verbose", action="count", default=0,
                        help="more pytest output (repeatable)")


def _cmd_proxy(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.actors.proxy import run_proxy

    def announce(url: str) -> None:
        out.write(f"wic-conformance recording proxy\n  listening {url}\n  upstream  {args.upstream}\n"
                  f"  recording {args.record or '(not kept)'}\n")
        out.flush()

    return run_proxy(args.upstream, host=args.host, port=args.port, record_dir=args.record,
                     redact=not args.no_redact, verify=False if args.insecure else (args.ca_bundle or True),
                     judge=not args.no_judge, verify_stored=args.verify_stored, body_threshold=args.body_threshold,
                     ssl_certfile=args.cert, ssl_keyfile=args.key, catalogue=_catalogue(args.rules),
                     announce=announce)


def _cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from wic_conformance.actors.replay import run_replay

    return run_replay(args.recording, args.target, out=out,
                      verify=False if args.insecure else (args.ca_bundle or True),
                      check_stored=not args.no_stored_check, output_format=args.format,
                      catalogue=_catalogue(args.rules), timeout=args.timeout)


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
                     help="local DICOM standard folder for dicom-validator (never downloaded), or 'bundled' "
                          "for the tables shipped with the toolkit (WIC IODs only)")
    val.set_defaults(func=_cmd_validate)

    man = sub.add_parser("manager", help="run the simulated Image Manager (STOW-RS, QIDO-RS, WADO-RS, PDQm)")
    man.add_argument("--host", default="127.0.0.1")
    man.add_argument("--port", type=int, default=8042)
    man.add_argument("--data", metavar="DIR", help="storage folder (kept across restarts)")
    man.add_argument("--config", metavar="FILE", help="YAML settings (see ManagerConfig)")
    man.add_argument("--patients", metavar="FILE", help="synthetic patients for PDQm (e.g. fixtures/patients.json)")
    man.add_argument("--rules", metavar="FILE", help="rule profile used to judge the Capturer")
    man.add_argument("--fault", action="append", metavar="NAME",
                     help="behave non-conformantly on purpose (repeatable): wrong-status, drop-referenced-sequence, "
                          "alter-attribute, recompress-jpeg, wrong-transfer-syntax, fetch-bulk-uri")
    man.set_defaults(func=_cmd_manager)

    prx = sub.add_parser("proxy", help="relay a real Capturer to a real Manager, record (HAR 1.2) and judge both sides")
    prx.add_argument("upstream", metavar="UPSTREAM", help="base URL of the upstream Image Manager")
    prx.add_argument("--host", default="127.0.0.1")
    prx.add_argument("--port", type=int, default=8043)
    prx.add_argument("--record", metavar="DIR", help="keep the recording (journal, recording.har, bodies/) here")
    prx.add_argument("--no-redact", action="store_true", help="keep Authorization and Cookie values in the record")
    tls = prx.add_mutually_exclusive_group()
    tls.add_argument("--insecure", action="store_true", help="do not verify the upstream's TLS certificate")
    tls.add_argument("--ca-bundle", metavar="FILE", help="CA bundle for the upstream's TLS certificate")
    prx.add_argument("--no-judge", action="store_true", help="record only")
    prx.add_argument("--verify-stored", action="store_true",
                     help="retrieve what the Manager stored (WADO-RS) and run the conversion and IOD checks")
    prx.add_argument("--body-threshold", type=int, default=65536, metavar="BYTES",
                     help="bodies above this go to side files")
    prx.add_argument("--cert", metavar="FILE", help="listen with TLS: certificate")
    prx.add_argument("--key", metavar="FILE", help="listen with TLS: private key")
    prx.add_argument("--rules", metavar="FILE")
    prx.set_defaults(func=_cmd_proxy)

    rpl = sub.add_parser("replay", help="re-send a recording to another Image Manager and compare the outcomes")
    rpl.add_argument("recording", metavar="RECORDING", help="a proxy recording folder or its recording.har")
    rpl.add_argument("target", metavar="TARGET_URL", help="base URL of the Image Manager to replay to")
    tls = rpl.add_mutually_exclusive_group()
    tls.add_argument("--insecure", action="store_true")
    tls.add_argument("--ca-bundle", metavar="FILE")
    rpl.add_argument("--no-stored-check", action="store_true", help="compare statuses and sequences only")
    rpl.add_argument("--format", choices=["text", "json"], default="text")
    rpl.add_argument("--rules", metavar="FILE")
    rpl.add_argument("--timeout", type=float, default=300.0)
    rpl.set_defaults(func=_cmd_replay)

    tm = sub.add_parser("test-manager", help="run the Image Manager test plans against a DICOMweb service",
                        description="Run the Image Manager test plans against URL through pytest and write an "
                                    "HTML report, JUnit XML and JSON results.")
    tm.add_argument("url", metavar="URL", help="DICOMweb service root, e.g. http://pacs:8080/dicom-web")
    tm.add_argument("--plan", action="append", metavar="PATH",
                    help="plan file or folder (repeatable; default testplans/manager)")
    tm.add_argument("--options", metavar="LIST", help="WIC options the target claims, e.g. jpeg,mpeg4 (default: all)")
    auth = tm.add_mutually_exclusive_group()
    auth.add_argument("--auth", metavar="USER:PASSWORD", help="HTTP Basic credentials")
    auth.add_argument("--token", metavar="TOKEN", help="Bearer token")
    tm.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="extra header (repeatable)")
    tls = tm.add_mutually_exclusive_group()
    tls.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify the target's TLS certificate")
    tls.add_argument("--insecure", action="store_true", help="do not verify the target's TLS certificate")
    tm.add_argument("--timeout", type=float, metavar="S", help="per-request timeout in seconds (default 60)")
    _add_report_options(tm, "manager")
    tm.set_defaults(func=_cmd_test_manager)

    st = sub.add_parser("selftest", help="run the test plans against the simulated Image Manager",
                        description="Start the simulated Image Manager on 127.0.0.1 (any free port), run "
                                    "test-manager against it and stop it.")
    st.add_argument("--plan", action="append", metavar="PATH",
                    help="plan file or folder (repeatable; default testplans/manager)")
    _add_report_options(st, "selftest")
    st.set_defaults(func=_cmd_selftest)

    rep = sub.add_parser("report", help="render the report of the exchanges recorded in a data folder or by the proxy",
                         description="Judge the exchanges the simulated Image Manager recorded in DATA-DIR "
                                     "(exchanges.ndjson) and write an HTML report, JUnit XML and JSON results.")
    rep.add_argument("data_dir", metavar="DATA-DIR")
    _add_report_options(rep, "records", select=False)
    rep.set_defaults(func=_cmd_report)

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
