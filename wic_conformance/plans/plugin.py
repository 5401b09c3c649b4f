"""pytest plugin (``pytest11`` entry point): runs the Image Manager test plans; inert unless activated.

Without ``--wic-target`` or ``--wic-records`` the plugin only adds its options
(and namespaced fixtures that skip): it collects nothing and changes nothing.

``--wic-target URL``
    Every plan YAML under the ``--wic-plan`` paths (default ``testplans/manager``)
    becomes a :class:`PlanFile` whose items are :class:`CaseItem` values, with node
    IDs like ``testplans/manager/rad108_store.yaml::jpeg_json``.  Each case's tags,
    WIC options (``wic_option_jpeg``) and requirement IDs (``STOW-RESP-001``) are
    markers, so ``-k`` and ``-m`` select cases.  A case runs in the item's setup
    (the exchange with the target) and is judged in its call: a ``failed``
    outcome fails the item and prints its findings, ``skipped`` skips it, and a
    toolkit or plan problem (outcome ``error``) shows as a pytest *error*, apart
    from findings against the target.  An unreachable target stops the session
    with one sentence.
``--wic-records DIR``
    Each line of ``DIR/exchanges.ndjson`` (what the simulated Image Manager
    recorded and judged) becomes a :class:`RecordItem`, failing when its verdict
    has error-level findings.

Results go to pytest's terminal, to pytest-html (``--html``, see
:mod:`wic_conformance.report.html`), to JUnit XML (``--junitxml``) and to the
``--wic-json`` results file (:mod:`wic_conformance.report.results`); all of
them work with pytest-xdist (``-n``), as every item carries its own case
record and the controller aggregates.

References
----------
IHE RAD TF WIC (RAD-108); PS3.18 §10.5 (Store Instances).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from wic_conformance.catalogue import Catalogue, default_catalogue, load_profile
from wic_conformance.errors import WicConformanceError
from wic_conformance.findings import Finding, Severity
from wic_conformance.plans.model import Case, CaseOutcome, CaseResult, Plan, Target
from wic_conformance.report.html import EVIDENCE_KEY, Evidence, HtmlReport
from wic_conformance.report.records import (
    HAR_FILE,
    RECORDS_FILE,
    RecordedExchange,
    Redactor,
    read_records,
    record_name,
)
from wic_conformance.report.results import CASE_PROPERTY, ResultsCollector, case_property, case_record

if TYPE_CHECKING:
    from wic_conformance.dicomweb.exchange import Exchange

__all__ = ["CaseError", "CaseFailure", "CaseItem", "PlanFile", "RecordItem", "RecordsFile", "WicSettings"]

DEFAULT_PLANS = "testplans/manager"
UNREACHABLE_EXIT = 4  # pytest.ExitCode.USAGE_ERROR: the target given cannot be used
PLAN_SUFFIXES = (".yaml", ".yml")


class CaseError(WicConformanceError):
    """A case could not be judged: the toolkit, the plan or a check broke (never a finding against the target)."""


class CaseFailure(AssertionError):
    """The target failed a case: carries the findings to print."""

    def __init__(self, title: str, message: str, findings: tuple[Finding, ...],
                 exchanges: tuple[str, ...] = (), mutations: tuple[str, ...] = ()) -> None:
        super().__init__(message or title)
        self.title = title
        self.message = message
        self.findings = findings
        self.exchanges = exchanges
        self.mutations = mutations


# -- options and settings -------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``wic-conformance`` option group."""
    group = parser.getgroup("wic-conformance", "WIC conformance (IHE RAD-108 / STOW-RS test plans)")
    group.addoption("--wic-target", metavar="URL", default=None,
                    help="DICOMweb service root of the Image Manager under test; runs the test plans against it")
    group.addoption("--wic-plan", action="append", default=[], metavar="PATH",
                    help=f"test plan file or folder (repeatable; default {DEFAULT_PLANS})")
    group.addoption("--wic-options", metavar="LIST", default=None,
                    help="comma-separated WIC options the target claims, e.g. jpeg,mpeg4 (default: all)")
    group.addoption("--wic-auth", metavar="USER:PASSWORD", default=None, help="HTTP Basic credentials")
    group.addoption("--wic-token", metavar="TOKEN", default=None, help="Bearer token")
    group.addoption("--wic-header", action="append", default=[], metavar="'NAME: VALUE'",
                    help="extra request header (repeatable)")
    group.addoption("--wic-ca-bundle", metavar="FILE", default=None, help="CA bundle to verify the target's TLS")
    group.addoption("--wic-insecure", action="store_true", default=False,
                    help="do not verify the target's TLS certificate")
    group.addoption("--wic-timeout", metavar="S", type=float, default=60.0, help="per-request timeout (seconds)")
    group.addoption("--wic-json", metavar="FILE", default=None, help="write the JSON results file")
    group.addoption("--wic-records", metavar="DIR", default=None,
                    help="judge a folder of recorded exchanges (DIR/exchanges.ndjson, e.g. the simulated "
                         "Image Manager's data folder) instead of a target")
    group.addoption("--wic-rules", action="store", default=None, metavar="FILE",
                    help="rule profile (YAML) that switches off or re-levels S/D/U requirements")


@dataclass(frozen=True, slots=True)
class WicSettings:
    """The plugin's configuration for one pytest process (controller or xdist worker), built from its options.

    Attributes
    ----------
    target : Target or None
        The Image Manager under test (``--wic-target``).
    records : Path or None
        The recorded-exchanges file (``--wic-records``).
    plans : tuple of Path
        Plan files or folders whose YAML files are collected.
    catalogue : Catalogue
        The requirement catalogue, with the ``--wic-rules`` profile applied.
    redactor : Redactor
        Scrubs the run's credentials from every output.
    json_path : Path or None
        The ``--wic-json`` file.
    """

    target: Target | None
    records: Path | None
    plans: tuple[Path, ...]
    catalogue: Catalogue
    redactor: Redactor
    json_path: Path | None

    @property
    def label(self) -> str:
        """Return what the run judges: the target URL or the records file."""
        if self.target is not None:
            return self.target.url
        return str(self.records)

    def is_plan(self, path: Path) -> bool:
        """Return whether ``path`` is a plan YAML under one of the plan paths."""
        if path.suffix not in PLAN_SUFFIXES:
            return False
        resolved = path.resolve()
        return any(resolved == root or root in resolved.parents for root in self.plans)


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or re.search(r"\s", name.strip()):
        raise pytest.UsageError(f"--wic-header expects 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def _settings(config: pytest.Config) -> WicSettings | None:
    url = config.getoption("wic_target")
    records = config.getoption("wic_records")
    if not url and not records:
        return None
    if url and records:
        raise pytest.UsageError("give either --wic-target or --wic-records, not both")
    auth_text, token = config.getoption("wic_auth"), config.getoption("wic_token")
    if auth_text and token:
        raise pytest.UsageError("give either --wic-auth or --wic-token, not both")
    ca_bundle, insecure = config.getoption("wic_ca_bundle"), config.getoption("wic_insecure")
    if ca_bundle and insecure:
        raise pytest.UsageError("give either --wic-ca-bundle or --wic-insecure, not both")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise pytest.UsageError(f"--wic-ca-bundle: no such file {ca_bundle}")
    auth: tuple[str, str] | None = None
    if auth_text:
        user, sep, password = str(auth_text).partition(":")
        if not sep or not user:
            raise pytest.UsageError("--wic-auth expects USER:PASSWORD")
        auth = (user, password)
    headers = dict(_parse_header(h) for h in config.getoption("wic_header"))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = float(config.getoption("wic_timeout"))
    if timeout <= 0:
        raise pytest.UsageError("--wic-timeout must be positive")
    options = frozenset(o.strip().lower() for o in str(config.getoption("wic_options") or "").split(",") if o.strip())
    rules = config.getoption("wic_rules")
    try:
        catalogue = default_catalogue().with_profile(load_profile(rules)) if rules else default_catalogue()
    except WicConformanceError as exc:
        raise pytest.UsageError(str(exc)) from None
    redactor = Redactor.for_credentials(auth=auth, token=token, headers=headers.items())
    base = config.invocation_params.dir
    json_opt = config.getoption("wic_json")
    json_path = (base / json_opt) if json_opt else None
    target = None
    records_path = None
    if url:
        if not re.match(r"(?i)^https?://[^/\s]+", str(url)):
            raise pytest.UsageError(f"--wic-target must be an http(s) URL, not {url!r}")
        verify: bool | str = str(Path(ca_bundle).resolve()) if ca_bundle else not insecure
        target = Target(url=str(url).rstrip("/"), headers=headers, auth=auth, verify=verify, timeout=timeout,
                        options=options)
    else:
        folder = base / str(records)
        records_path = _records_file(folder)
    plan_args = config.getoption("wic_plan") or [DEFAULT_PLANS]
    plans = tuple((base / p).resolve() for p in plan_args)
    if target is not None:
        missing = [str(p) for p in plans if not p.exists()]
        if missing:
            raise pytest.UsageError(f"--wic-plan: no such file or folder: {', '.join(missing)}")
    return WicSettings(target=target, records=records_path, plans=plans, catalogue=catalogue, redactor=redactor,
                       json_path=json_path)


def _records_file(folder: Path) -> Path:
    """Return the recordings file of ``folder``: the Manager's ndjson, or the proxy's HAR (rebuilt from its journal)."""
    if not folder.is_dir():
        if folder.is_file():
            return folder
        raise pytest.UsageError(f"--wic-records: no such file or folder: {folder}")
    if (folder / RECORDS_FILE).is_file():
        return folder / RECORDS_FILE
    from wic_conformance.actors.recorder import JOURNAL_NAME, load_recording

    if (folder / JOURNAL_NAME).is_file():
        load_recording(folder)  # rebuilds recording.har, also after a crash
    if (folder / HAR_FILE).is_file():
        return folder / HAR_FILE
    raise pytest.UsageError(f"--wic-records: no {RECORDS_FILE} or {HAR_FILE} (proxy recording) in {folder}")


_SETTINGS = pytest.StashKey[WicSettings]()
_INDEX = pytest.StashKey[dict[str, int]]()
_FIXTURES = pytest.StashKey[Any]()


def _fixture_index(config: pytest.Config) -> Any:
    """Return this process's fixtures index, loaded once (the loader checks fixture keys against it)."""
    index = config.stash.get(_FIXTURES, None)
    if index is None:
        from wic_conformance.model.fixtures import FixtureIndex

        index = config.stash[_FIXTURES] = FixtureIndex.load()
    return index


def _get_settings(config: pytest.Config) -> WicSettings | None:
    return config.stash.get(_SETTINGS, None)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


_RESERVED_MARKERS = frozenset({"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings",
                                "tryfirst", "trylast", "no_cover"})


def _marker_name(text: str) -> str:
    name = re.sub(r"[^\w.-]", "_", text.strip()).lstrip("_") or "untagged"
    # a plan tag must not trigger pytest's own behaviour (a tag "skip" would skip the case)
    return f"wic_tag_{name}" if name in _RESERVED_MARKERS else name


def _register_marker(config: pytest.Config, name: str, description: str) -> None:
    if name not in {m.name for m in config._iter_registered_markers()}:
        config.addinivalue_line("markers", f"{name}: {description}")


def pytest_configure(config: pytest.Config) -> None:
    """Activate the plugin when ``--wic-target`` or ``--wic-records`` is given."""
    settings = _settings(config)
    if settings is None:
        return
    config.stash[_SETTINGS] = settings
    config.stash[_INDEX] = {}
    _register_marker(config, "wic_case", "a WIC conformance test-plan case")
    _register_marker(config, "wic_record", "a recorded exchange judged by wic-conformance")
    _register_marker(config, "slow", "long-running case")
    for req in settings.catalogue:
        _register_marker(config, req.id, f"judges requirement {req.id} ({req.actor} {req.level}, {req.confidence})")
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        # no paths on the command line: collect the plans (or the records), not the current folder
        config.args = [str(settings.records)] if settings.records is not None else [str(p) for p in settings.plans]
    results = None
    if not _is_worker(config):
        results = ResultsCollector(target=settings.redactor.text(settings.label), catalogue=settings.catalogue,
                                   actor_under_test="IM" if settings.target is not None else "IC",
                                   json_path=settings.json_path)
        config.pluginmanager.register(results, "wic-conformance-results")
    if config.pluginmanager.hasplugin("html"):
        report = HtmlReport(catalogue=settings.catalogue, redactor=settings.redactor, results=results,
                            report_path=HtmlReport.report_path(config))
        config.pluginmanager.register(report, "wic-conformance-html")


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Make sure the target answers before any case runs; stop the session with one sentence if not.

    The main process (the xdist controller, when there are workers) asks once:
    ``OPTIONS`` on the service root, and any HTTP answer will do.  A target that
    goes away during the run is met by the cases themselves (see :class:`CaseItem`).
    """
    config = session.config
    settings = _get_settings(config)
    if settings is None or settings.target is None or _is_worker(config):
        return
    from wic_conformance.actors.capturer import ImageCapturer, TargetUnreachableError
    from wic_conformance.dicomweb.exchange import Request

    target = settings.target
    capturer = ImageCapturer(target.url, headers=target.headers, auth=target.auth, verify=target.verify,
                             timeout=min(target.timeout, 30.0))
    try:
        capturer.send(Request("OPTIONS", target.url))
    except TargetUnreachableError as exc:
        pytest.exit(_unreachable_sentence(settings, str(exc)), returncode=UNREACHABLE_EXIT)
    finally:
        capturer.session.close()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Name the target (or the records) and the plans."""
    settings = _get_settings(config)
    if settings is None:
        return None
    if settings.target is None:
        return [f"wic-conformance: judging recorded exchanges in {settings.records}"]
    files = sorted({f for root in settings.plans for f in _plan_files(root)})
    options = ", ".join(sorted(settings.target.options)) or "all"
    return [f"wic-conformance: target {settings.redactor.text(settings.target.url)} (options: {options}); "
            f"{len(files)} plan file(s) from {', '.join(str(p) for p in settings.plans)}"]


def _plan_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
    elif root.is_dir():
        for suffix in PLAN_SUFFIXES:
            yield from root.rglob(f"*{suffix}")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect plan YAML files (``--wic-target``) or the recorded-exchanges file (``--wic-records``)."""
    settings = _get_settings(parent.config)
    if settings is None:
        return None
    if settings.records is not None:
        if file_path.resolve() == settings.records.resolve():
            return RecordsFile.from_parent(parent, path=file_path)
        return None
    if settings.is_plan(file_path):
        return PlanFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Give each item its collection position, so results keep collection order under xdist."""
    index = session.config.stash.get(_INDEX, None)
    if index is None:
        return
    for number, item in enumerate(session.items):
        index[item.nodeid] = number


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                          pytest.TestReport]:
    """Show a toolkit error as its one-line message, without a traceback."""
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, CaseError):
        report.longrepr = f"{type(call.excinfo.value).__name__}: {call.excinfo.value}"
    return report


# -- lazily imported collaborators (the plan loader, the runner, the capturer's error) -----------------
def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _unreachable_error() -> type[BaseException]:
    try:
        error: type[BaseException] = _module("wic_conformance.actors.capturer").TargetUnreachableError
    except (ImportError, AttributeError):  # pragma: no cover - the capturer ships with the plans
        return _NeverRaised
    return error


class _NeverRaised(Exception):
    pass


# -- plan collection ---------------------------------------------------------------------------------------
class PlanFile(pytest.File):
    """A test plan YAML file; its items are the plan's cases."""

    def collect(self) -> Iterable[pytest.Item]:
        """Load the plan (validated against the plan schema) and yield one item per case.

        Plans whose actor under test is not the Image Manager (``actor: capturer``) yield nothing.
        """
        settings = _get_settings(self.config)
        assert settings is not None
        plans: list[Plan] = _module("wic_conformance.plans.loader").load_plans(
            [self.path], index=_fixture_index(self.config), catalogue=settings.catalogue)
        for plan in plans:
            if plan.actor != "manager":
                continue
            for case in plan.cases:
                yield CaseItem.from_parent(self, name=case.id, case=case)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | Any:  # type: ignore[override]
        """Show a plan error as its message (file, case, JSON path), without a traceback."""
        if isinstance(excinfo.value, WicConformanceError):
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo)


def _format_findings(title: str, message: str, findings: Iterable[Finding], exchanges: Iterable[str],
                     mutations: Iterable[str], redactor: Redactor) -> str:
    lines = [title + (f": {redactor.text(message)}" if message else "")]
    ordered = sorted(findings, key=lambda f: -(f.severity or Severity.ERROR).rank)
    for f in ordered:
        severity = (f.severity or Severity.ERROR).value.upper()
        where = f"\n      at {redactor.text(f.location)}" if f.location else ""
        lines.append(f"  {severity:7} {f.requirement} [{f.confidence or '?'}] {redactor.text(f.message)}{where}")
    if not ordered:
        lines.append("  (no findings recorded)")
    lines.extend(f"  exchange: {redactor.text(e)}" for e in exchanges)
    lines.extend(f"  {redactor.text(m)}" for m in mutations)
    return "\n".join(lines)


def _exchange_line(exchange: Exchange) -> str:
    req, resp = exchange.request, exchange.response
    head = f"{req.method} {req.url}" if req is not None else "(no request)"
    return f"{head} -> {resp.status if resp is not None else 'no response'}"


def _exchange_summary(exchange: Exchange) -> dict[str, Any]:
    req, resp = exchange.request, exchange.response
    return {"method": req.method if req else None, "url": req.url if req else None,
            "status": resp.status if resp else None}


class _WicItem(pytest.Item):
    """Shared reporting of a judged item: case record, evidence, failure display."""

    def _settings(self) -> WicSettings:
        settings = _get_settings(self.config)
        assert settings is not None, "wic-conformance items exist only when the plugin is active"
        return settings

    def _publish(self, *, case_id: str, title: str, requirements: tuple[str, ...], options: tuple[str, ...],
                 outcome: str, findings: tuple[Finding, ...], message: str, exchanges: tuple[Exchange, ...],
                 notes: tuple[str, ...] = (), partial: bool = False) -> None:
        settings = self._settings()
        index = self.config.stash.get(_INDEX, {}).get(self.nodeid, 0)
        record = case_record(nodeid=self.nodeid, index=index, case_id=case_id, title=title,
                             requirements=requirements, options=options, outcome=outcome, findings=findings,
                             message=message, exchanges=[_exchange_summary(e) for e in exchanges],
                             redactor=settings.redactor, partial=partial)
        self.user_properties = [p for p in self.user_properties if p[0] != CASE_PROPERTY]
        self.user_properties.append(case_property(record))
        self.stash[EVIDENCE_KEY] = Evidence(exchanges, findings, notes)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        """Print the findings of a failed case (no traceback), or a toolkit error's message."""
        value = excinfo.value
        if isinstance(value, CaseFailure):
            return _format_findings(value.title, value.message, value.findings, value.exchanges,
                                    value.mutations, self._settings().redactor)
        if isinstance(value, CaseError):
            return f"{type(value).__name__}: {value}"
        return super().repr_failure(excinfo, style)


class CaseItem(_WicItem):
    """One plan case run against the target: exchange in setup, verdict in call."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.result: CaseResult | None = None
        self._mutations: tuple[str, ...] = ()
        config = self.config
        self.add_marker("wic_case")
        for tag in case.tags:
            name = _marker_name(tag)
            _register_marker(config, name, "test-plan tag")
            self.add_marker(name)
        for option in case.options:
            name = f"wic_option_{_marker_name(option)}"
            _register_marker(config, name, f"needs the WIC option {option}")
            self.add_marker(name)
        for rid in case.requirements:
            name = _marker_name(rid)
            _register_marker(config, name, f"judges requirement {rid}")
            self.add_marker(name)
        if case.slow:
            self.add_marker("slow")

    def setup(self) -> None:
        """Run the case against the target (the runner returns a result; it never raises on a bad target)."""
        settings = self._settings()
        assert settings.target is not None
        try:
            runner = _module("wic_conformance.plans.runner")
            result: CaseResult = runner.run_case(self.case, settings.target, catalogue=settings.catalogue,
                                                 index=_fixture_index(self.config))
        except _unreachable_error() as exc:
            _stop_unreachable(self, settings, str(exc))
            raise  # pragma: no cover - _stop_unreachable does not return
        except WicConformanceError as exc:
            result = CaseResult(self.case, CaseOutcome.ERROR, message=str(exc))
        except Exception as exc:  # a toolkit defect: report it as an error of this case, keep going
            result = CaseResult(self.case, CaseOutcome.ERROR, message=f"{type(exc).__name__}: {exc}")
        if result.outcome is CaseOutcome.ERROR and result.message.lower().startswith(_RUNNER_UNREACHABLE):
            # the runner reports a target that stopped answering as an error outcome with this prefix
            _stop_unreachable(self, settings, result.message[len(_RUNNER_UNREACHABLE):].strip())
        self.result = result
        case = self.case
        mutations = tuple(
            f"{'Negative request' if m.negative else 'Variation'} ({m.kind}, {m.requirement}): {m.description}"
            for m in getattr(result, "mutations", ()))
        notes = ((result.message,) if result.message and result.outcome is not CaseOutcome.FAILED else ()) + mutations
        self._mutations = mutations
        self._publish(case_id=case.id, title=case.title, requirements=case.requirements, options=case.options,
                      outcome=result.outcome.value, findings=result.findings, message=result.message,
                      exchanges=result.exchanges, notes=notes)
        if result.outcome is CaseOutcome.SKIPPED:
            # reported at the plan file, not at this line of the plugin
            raise pytest.skip.Exception(settings.redactor.text(result.message or "skipped by the runner"),
                                        _use_item_location=True)
        if result.outcome is CaseOutcome.ERROR:
            raise CaseError(settings.redactor.text(result.message or "the case could not be run"))

    def runtest(self) -> None:
        """Fail when the target failed the case."""
        result = self.result
        assert result is not None
        if result.outcome is CaseOutcome.FAILED:
            raise CaseFailure(f"case {self.case.id} failed", result.message, result.findings,
                              tuple(_exchange_line(e) for e in result.exchanges), self._mutations)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Return the plan file and the case ID."""
        return self.path, 0, f"{self.path.name}::{self.case.id} ({self.case.title})"


_RUNNER_UNREACHABLE = "target unreachable:"


def _unreachable_sentence(settings: WicSettings, detail: str) -> str:
    detail = settings.redactor.text(detail).rstrip(".") or f"cannot connect to {settings.label}"
    return f"Target unreachable, run stopped: {detail}."


def _stop_unreachable(item: pytest.Item, settings: WicSettings, detail: str) -> None:
    sentence = _unreachable_sentence(settings, detail)
    if _is_worker(item.config):
        # a worker cannot end the whole run with pytest.exit; stopping its session makes the controller stop
        item.session.shouldstop = sentence
        raise CaseError(sentence)
    pytest.exit(sentence, returncode=UNREACHABLE_EXIT)


# -- recorded exchanges ------------------------------------------------------------------------------------
class RecordsFile(pytest.File):
    """A recorded-exchanges file; one item per exchange."""

    def collect(self) -> Iterable[pytest.Item]:
        """Read the file and yield one item per recorded exchange."""
        try:
            records = list(read_records(self.path))
        except ValueError as exc:
            raise CaseError(str(exc)) from None
        for record in records:
            req, resp = record.exchange.request, record.exchange.response
            name = record_name(record.index, req.method if req else "?", req.url if req else "",
                               resp.status if resp else None)
            yield RecordItem.from_parent(self, name=name, record=record)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | Any:  # type: ignore[override]
        """Show an unreadable line as its message."""
        if isinstance(excinfo.value, WicConformanceError):
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo)


class RecordItem(_WicItem):
    """One recorded exchange: fails when its verdict has error-level findings."""

    def __init__(self, *, record: RecordedExchange, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record = record
        self.add_marker("wic_record")
        for rid in record.requirements:
            name = _marker_name(rid)
            _register_marker(self.config, name, f"judges requirement {rid}")
            self.add_marker(name)

    def _outcome(self) -> str:
        if self.record.check_errors:
            return CaseOutcome.ERROR.value
        return CaseOutcome.FAILED.value if self.record.errors else CaseOutcome.PASSED.value

    def setup(self) -> None:
        """Publish the record; a check that broke while judging it is a toolkit error."""
        record = self.record
        outcome = self._outcome()
        self._publish(case_id=self.name, title=_exchange_line(record.exchange), requirements=record.requirements,
                      options=(), outcome=outcome, findings=record.findings,
                      message="; ".join(record.check_errors), exchanges=(record.exchange,),
                      notes=tuple(f"check error: {e}" for e in record.check_errors), partial=True)
        if outcome == CaseOutcome.ERROR.value:
            raise CaseError("checks broke while judging this exchange: " + "; ".join(record.check_errors))

    def runtest(self) -> None:
        """Fail when the verdict has error-level findings."""
        if self.record.errors:
            raise CaseFailure(f"exchange {self.name} is not conformant", "", self.record.findings,
                              (_exchange_line(self.record.exchange),))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Return the records file and the line number."""
        return self.path, self.record.index - 1, f"{self.path.name}:{self.record.index} {self.name}"


# -- fixtures (namespaced; they skip when the plugin is not active) ----------------------------------------
@pytest.fixture(scope="session")
def wic_settings(pytestconfig: pytest.Config) -> WicSettings:
    """Return the plugin's settings; skip unless ``--wic-target`` or ``--wic-records`` is given."""
    settings = _get_settings(pytestconfig)
    if settings is None:
        pytest.skip("needs --wic-target or --wic-records")
    return settings


@pytest.fixture(scope="session")
def wic_target(wic_settings: WicSettings) -> Target:
    """Return the Image Manager under test, built from the ``--wic-*`` options of this process."""
    if wic_settings.target is None:
        pytest.skip("needs --wic-target")
    return wic_settings.target


@pytest.fixture(scope="session")
def wic_catalogue(pytestconfig: pytest.Config) -> Catalogue:
    """Return the requirement catalogue with the ``--wic-rules`` profile applied."""
    settings = _get_settings(pytestconfig)
    if settings is not None:
        return settings.catalogue
    rules = pytestconfig.getoption("wic_rules")
    return default_catalogue().with_profile(load_profile(rules)) if rules else default_catalogue()


@pytest.fixture(scope="session")
def wic_plans(pytestconfig: pytest.Config, wic_settings: WicSettings) -> tuple[Plan, ...]:
    """Return the test plans under the ``--wic-plan`` paths, loaded and validated."""
    loader = _module("wic_conformance.plans.loader")
    files = sorted({f for root in wic_settings.plans for f in _plan_files(root)})
    plans = loader.load_plans(files, index=_fixture_index(pytestconfig), catalogue=wic_settings.catalogue)
    return tuple(p for p in plans if p.actor == "manager")


@pytest.fixture
def wic_case(wic_target: Target, wic_plans: tuple[Plan, ...],
             wic_catalogue: Catalogue) -> Callable[[str], CaseResult]:
    """Run one plan case by ID (``jpeg_json`` or ``rad108_store.yaml::jpeg_json``) and return its result."""
    runner = _module("wic_conformance.plans.runner")

    def run(case_id: str) -> CaseResult:
        for plan in wic_plans:
            for case in plan.cases:
                if case_id in (case.id, case.source) or case.source.endswith("/" + case_id):
                    result: CaseResult = runner.run_case(case, wic_target, catalogue=wic_catalogue)
                    return result
        raise LookupError(f"no case {case_id!r} in the plans")

    return run


@pytest.fixture(scope="session")
def make_wic_capturer(wic_target: Target) -> Callable[..., Any]:
    """Return a factory of simulated Image Capturers aimed at the target (keywords go to the capturer)."""
    capturer = _module("wic_conformance.actors.capturer")

    def make(**kwargs: Any) -> Any:
        options: dict[str, Any] = {"headers": wic_target.headers, "auth": wic_target.auth,
                                   "verify": wic_target.verify, "timeout": wic_target.timeout, **kwargs}
        return capturer.ImageCapturer(wic_target.url, **options)

    return make
