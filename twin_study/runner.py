"""Execute the study's notebooks with papermill: ``twin-study run``.

A run of profile P over notebooks ``notebooks/NN_*.ipynb`` (in NN order):

1. resolve each notebook's parameters: ``profile`` and ``out_dir`` (always injected), then
   the profile's overrides from ``twin_study/profiles/<P>.yaml`` (``{stem: {name: value}}``),
   then ``-p name=value`` extras; every name is checked against the notebook's ``parameters``
   cell (``papermill.inspect_notebook``) before anything executes. A profile override must
   name a parameter of its notebook; a ``-p`` extra goes to the selected notebooks that
   declare it and is an error only when none does (``-p n_users=50`` skips 01_complexity);
2. skip a notebook whose stamp (sha256 of notebook source + parameters + package sources,
   ``.cpp`` / ``.h`` / ``.yaml`` included) matches and whose results.json exists, unless
   ``force``;
3. execute it into a temp file, rename it to ``outputs/executed/P/<stem>.ipynb`` and write
   the stamp; on failure keep ``<stem>.failed.ipynb`` for inspection, no stamp, and stop:
   later notebooks are reported as not run. The executed copy of the last good run is left
   in place (only a success replaces it).

Output is one line per notebook (status and seconds); papermill's progress bars only with
``progress=True`` (``--progress``), and the kernel's own start-up log (a warning that it
talks TCP without encryption, on every start) is silenced: it is not about the study.

The functions take ``root`` (the folder holding ``notebooks/``, ``figures/``, ``outputs/``)
and ``profiles_dir`` so tests can run them on a scratch layout.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from twin_study import paths
from twin_study.assignments import UsageError, parse_assignments
from twin_study.results import RESULTS_NAME, atomic_write_bytes

NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_\w+\.ipynb$")
REQUIRED_PARAMETERS = ("profile", "out_dir")
# Per-cell execution timeout. The quick profile's cells take seconds to a minute, so 30 min
# catches a hung kernel. A paper-profile sweep is one cell that trains tens of models (07: ~47
# min at 4 x 10^5 samples per run, ~79 min at 8 x 10^5), so the paper profile has no limit by
# default; --timeout sets one for any profile (0: none).
DEFAULT_TIMEOUT = 1800  # seconds per cell (quick profile)
KERNEL_NAME = "python3"
# The kernel logs "running over TCP without encryption" at WARNING on every start, and now and
# then "KeyboardInterrupt caught in kernel" at ERROR when it is shut down after the last cell.
# Neither is about the notebook; a kernel that dies is reported by nbclient (DeadKernelError).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
# Parameters that name the data sets a notebook loads: "dataset" (comma-separated) in 00 and
# 03-05, "datasets" (a list) in 02; and those that carry a user's log (dataset "userlog").
DATASET_PARAMETERS = ("dataset", "datasets")
USERLOG_PARAMETERS = ("userlog_path", "userlog_spec", "userlog_params")
# Packages of the execution machinery whose warnings and log records are not the study's.
_MACHINERY = ("papermill", "nbclient", "nbformat", "jupyter_client", "jupyter_core", "zmq")

# Parameter annotations whose values can be checked cheaply; anything else is passed through.
_TYPE_CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


# A usage error found before anything executes (the CLI exits with code 2); one class with
# the ``-p`` parser's error (``assignments``), which ``twin-study train`` shares.
RunnerError = UsageError


def resolve_timeout(profile: str, timeout: float | None) -> float | None:
    """The per-cell timeout in seconds, or None for none: the profile's default unless given."""
    if timeout is None:
        return DEFAULT_TIMEOUT if profile == paths.QUICK else None
    if timeout < 0:
        raise RunnerError(f"--timeout must be >= 0 seconds (0: no limit), got {timeout:g}")
    return None if timeout == 0 else float(timeout)


@dataclass(frozen=True)
class Notebook:
    path: Path

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def prefix(self) -> str:
        return self.stem[:2]


@dataclass
class Job:
    """One notebook with its resolved parameters and where its run goes."""

    notebook: Notebook
    parameters: dict[str, Any]
    out_dir: Path
    executed: Path  # executed copy, outputs/executed/<profile>/<stem>.ipynb
    not_applied: tuple[str, ...] = ()  # -p names this notebook does not declare

    @property
    def stamp_path(self) -> Path:
        return self.executed.with_name(f"{self.notebook.stem}.stamp.json")

    @property
    def failed_path(self) -> Path:
        return self.executed.with_name(f"{self.notebook.stem}.failed.ipynb")


@dataclass
class Outcome:
    stem: str
    status: str  # "ran" | "skipped" | "failed" | "not run"
    seconds: float = 0.0
    error: str = ""


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status in ("ran", "skipped") for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


# --- discovery and selection -------------------------------------------------------------


def _notebooks_dir(root: Path | None) -> Path:
    try:
        return paths.notebooks_dir(root)
    except FileNotFoundError as exc:
        raise RunnerError(str(exc)) from exc


def discover(notebooks_dir: Path) -> list[Notebook]:
    """``NN_*.ipynb`` in ``notebooks_dir``, sorted by name (so by NN)."""
    return [
        Notebook(p)
        for p in sorted(Path(notebooks_dir).iterdir())
        if p.is_file() and NOTEBOOK_PATTERN.match(p.name)
    ]


def select(notebooks: Sequence[Notebook], only: Iterable[str] | None) -> list[Notebook]:
    """Keep the notebooks named in ``only`` (in discovery order); all when empty.

    A name is a stem (``01_complexity``), a file name (``01_complexity.ipynb``) or the NN
    prefix alone (``01``). Unknown names raise RunnerError listing what exists.
    """
    only = list(only or [])
    if not only:
        return list(notebooks)
    wanted: set[str] = set()
    unknown = []
    for name in only:
        key = paths.notebook_stem(name)
        hits = [nb.stem for nb in notebooks if key in (nb.stem, nb.prefix)]
        if hits:
            wanted.update(hits)
        else:
            unknown.append(name)
    if unknown:
        available = ", ".join(nb.stem for nb in notebooks) or "(none)"
        raise RunnerError(f"unknown notebook(s): {', '.join(unknown)}; available: {available}")
    return [nb for nb in notebooks if nb.stem in wanted]


# --- parameters --------------------------------------------------------------------------


def load_profile(profile: str, profiles_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The profile's overrides ``{notebook_stem: {param: value}}``; ``{}`` when no file."""
    try:
        paths.check_profile(profile)
    except ValueError as exc:
        raise RunnerError(str(exc)) from exc
    path = Path(profiles_dir or paths.PROFILES_DIR) / f"{profile}.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise RunnerError(f"{path}: expected a mapping {{notebook_stem: {{param: value}}}}")
    return {str(stem): dict(values or {}) for stem, values in data.items()}


def inspect_parameters(notebook: Notebook) -> dict[str, dict[str, Any]]:
    """The notebook's ``parameters`` cell as papermill reads it: ``{name: {inferred_type_name,
    default, help, ...}}``. A notebook without one, or without ``profile``/``out_dir``, is an
    error."""
    import nbformat  # lazy: heavy; importing the runner (cli.py) must not pay for it
    import papermill  # lazy: heavy; importing the runner (cli.py) must not pay for it

    try:
        params = papermill.inspect_notebook(str(notebook.path))
    except ValueError as exc:  # e.g. no kernelspec in the notebook metadata
        raise RunnerError(f"{notebook.path.name}: cannot read parameters: {exc}") from exc
    if not params:
        raise RunnerError(f"{notebook.path.name}: no code cell tagged 'parameters'")
    # papermill silently drops a line holding more than one "=" (say in its comment); such a
    # parameter could not be overridden, so name it instead of calling it unknown later.
    cell = next(
        c
        for c in nbformat.read(notebook.path, as_version=4).cells
        if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    unread = [name for name in _assigned_names(cell.source) if name not in params]
    if unread:
        raise RunnerError(
            f"{notebook.path.name}: papermill cannot read parameter(s) {', '.join(unread)}; "
            "write each as one line `name: type = value  # meaning` with a single '='"
        )
    missing = [name for name in REQUIRED_PARAMETERS if name not in params]
    if missing:
        raise RunnerError(
            f"{notebook.path.name}: the parameters cell must define {', '.join(missing)} "
            '(profile: str = "quick" and out_dir: str = "")'
        )
    return params


def _assigned_names(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the kernel will report it
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def check_parameters(
    notebook: Notebook, values: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]]
) -> None:
    """Raise RunnerError for a name the notebook does not declare or a value of the wrong
    simple type (bool/int/float/str annotations)."""
    allowed = ", ".join(declared)
    for name, value in values.items():
        if name not in declared:
            raise RunnerError(
                f"{notebook.path.name}: unknown parameter {name!r}; allowed: {allowed}"
            )
        type_name = str(declared[name].get("inferred_type_name", "None"))
        check = _TYPE_CHECKS.get(type_name)
        if check is not None and not check(value):
            raise RunnerError(
                f"{notebook.path.name}: parameter {name!r} is {type_name}, "
                f"got {type(value).__name__} {value!r}"
            )


def _value(name: str, values: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]]):
    """A parameter's value for this run: given, else the notebook's saved default."""
    if name in values:
        return values[name]
    try:
        return ast.literal_eval(str(declared[name].get("default")))
    except (ValueError, SyntaxError):
        return None


def check_data(
    notebook: Notebook, values: dict[str, Any], declared: Mapping[str, Mapping[str, Any]]
) -> None:
    """Check the data a notebook will load before anything runs, so a typo fails in a second
    rather than inside a notebook minutes in: the data set names are registered, and a user
    log (data set ``userlog``) has its parameters, files, spec and options in order (the
    files' header rows are read, not the whole log).

    Relative ``userlog_path`` / ``userlog_spec`` values are made absolute here (in
    ``values``), against the caller's folder: papermill runs the notebook in notebooks/.
    """
    from twin_study.data.registry import available, dataset_names  # lazy: data imports torch

    where = notebook.path.name
    names: list[str] = []
    for key in DATASET_PARAMETERS:
        if key in declared:
            try:
                names += dataset_names(_value(key, values, declared))
            except (ValueError, TypeError) as exc:
                raise RunnerError(f"{where}: parameter {key!r}: {exc}") from exc
    if not names:
        return
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise RunnerError(
            f"{where}: unknown data set(s) {', '.join(unknown)}; available: "
            f"{', '.join(available())}"
        )
    for key in ("userlog_path", "userlog_spec"):
        if isinstance(values.get(key), str) and values[key]:
            values[key] = str(Path(values[key]).expanduser().resolve())
    if "userlog" not in names:
        return
    missing = [k for k in USERLOG_PARAMETERS if k not in declared]
    if missing:
        raise RunnerError(
            f"{where}: data set 'userlog' needs the parameters {', '.join(USERLOG_PARAMETERS)}; "
            f"this notebook lacks {', '.join(missing)}"
        )
    from twin_study.data.userlogs import check_userlog  # lazy: data imports torch

    options = _value("userlog_params", values, declared) or {}
    if not isinstance(options, Mapping):
        raise RunnerError(f"{where}: userlog_params must be a mapping, got {options!r}")
    try:
        check_userlog(
            _value("userlog_path", values, declared),
            _value("userlog_spec", values, declared),
            options,
        )
    except ValueError as exc:
        raise RunnerError(
            f"{where}: userlog: {exc} (set -p userlog_path=LOG -p userlog_spec=SPEC.yaml "
            "and loader options as -p 'userlog_params={min_history: 5}')"
        ) from exc


def plan(
    notebooks: Sequence[Notebook],
    profile: str,
    *,
    root: Path | None = None,
    profiles_dir: Path | None = None,
    extra: Mapping[str, Any] | None = None,
    all_stems: Iterable[str] | None = None,
) -> list[Job]:
    """Resolve and validate the parameters of every notebook; executes nothing.

    ``all_stems`` (default: the stems of ``notebooks``) are the notebooks that exist; a
    profile entry for any other stem is an error (a typo would silently do nothing).
    ``extra`` (``-p``) names go to the notebooks that declare them: notebooks differ in their
    parameters (01_complexity has no ``n_users``), so a name is an error only when no
    notebook in ``notebooks`` declares it.
    """
    overrides = load_profile(profile, profiles_dir)
    known = set(all_stems if all_stems is not None else (nb.stem for nb in notebooks))
    stray = sorted(set(overrides) - known)
    if stray:
        raise RunnerError(
            f"profile {profile!r} names unknown notebook(s): {', '.join(stray)}; "
            f"available: {', '.join(sorted(known)) or '(none)'}"
        )
    extra = dict(extra or {})
    jobs, declared_by = [], {}
    for nb in notebooks:
        declared = declared_by[nb] = inspect_parameters(nb)
        out_dir = paths.output_dir(profile, nb.stem, root)
        values = {"profile": profile, "out_dir": str(out_dir)}
        values.update(overrides.get(nb.stem, {}))
        check_parameters(nb, values, declared)
        mine = {k: v for k, v in extra.items() if k in declared}
        check_parameters(nb, mine, declared)
        values.update(mine)
        check_data(nb, values, declared)
        executed = paths.executed_dir(profile, root) / f"{nb.stem}.ipynb"
        not_applied = tuple(k for k in extra if k not in declared)
        jobs.append(Job(nb, values, out_dir, executed, not_applied))
    nobody = [k for k in extra if all(k in job.not_applied for job in jobs)]
    if nobody and jobs:
        have = "; ".join(f"{nb.path.name}: {', '.join(d)}" for nb, d in declared_by.items())
        raise RunnerError(
            f"unknown parameter(s) {', '.join(map(repr, nobody))}: no selected notebook has "
            f"it ({have})"
        )
    return jobs


def prepare(
    profile: str,
    only: Iterable[str] | None = None,
    *,
    root: Path | None = None,
    profiles_dir: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, list[Job]]:
    """Discover, select and plan: the notebooks folder and the validated jobs."""
    nb_dir = _notebooks_dir(root)
    available = discover(nb_dir)
    jobs = plan(
        select(available, only),
        profile,
        root=root,
        profiles_dir=profiles_dir,
        extra=extra,
        all_stems=[nb.stem for nb in available],
    )
    return nb_dir, jobs


# --- up-to-date stamps -------------------------------------------------------------------


def package_digest() -> str:
    """sha256 over every source of the package (``paths.package_sources``: path and content
    of the Python modules, the C++ kernels and ``common.h``, the yaml profiles and
    ``panel.yaml``), so an edited kernel or profile leaves every notebook out of date."""
    return paths.digest_files(paths.package_sources(), paths.PACKAGE_DIR)


def job_digest(job: Job, package: str) -> str:
    h = hashlib.sha256()
    h.update(job.notebook.path.read_bytes() + b"\0")
    h.update(json.dumps(job.parameters, sort_keys=True, default=str).encode() + b"\0")
    h.update(package.encode())
    return h.hexdigest()


def is_up_to_date(job: Job, digest: str) -> bool:
    """The stamp matches and the notebook's results.json exists."""
    try:
        stamp = json.loads(job.stamp_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        stamp.get("sha256") == digest
        and job.executed.is_file()
        and (job.out_dir / RESULTS_NAME).is_file()
    )


# --- execution ---------------------------------------------------------------------------


@contextlib.contextmanager
def _machinery_quiet(progress: bool) -> Iterator[None]:
    """Hide the execution machinery's warnings and log records (not the notebook's own
    output, which goes into the executed copy); with ``progress`` they stay."""
    if progress:
        yield
        return
    loggers = [logging.getLogger(name) for name in _MACHINERY]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=rf"({'|'.join(_MACHINERY)})(\.|$)")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def execute(
    job: Job, *, cwd: Path, timeout: float | None = DEFAULT_TIMEOUT, progress: bool = False
):
    """Run one notebook with papermill; raise on failure with nothing marked as done.

    The executed copy is written to a temp name and renamed on success. On failure it is
    kept as ``<stem>.failed.ipynb``; the stamp is gone (the run is not up to date), but the
    executed copy of the last good run stays.
    """
    with _machinery_quiet(progress):
        import papermill  # lazy: papermill is heavy; only executing a notebook needs it

        job.executed.parent.mkdir(parents=True, exist_ok=True)
        for stale in (job.stamp_path, job.failed_path):
            stale.unlink(missing_ok=True)
        partial = job.executed.with_name(f".{job.notebook.stem}.partial.ipynb")
        try:
            papermill.execute_notebook(
                str(job.notebook.path),
                str(partial),
                parameters=dict(job.parameters),
                kernel_name=KERNEL_NAME,
                execution_timeout=timeout,
                progress_bar=progress,
                cwd=str(cwd),
                extra_arguments=KERNEL_ARGUMENTS,
            )
        except BaseException:
            if partial.exists():
                partial.replace(job.failed_path)
            raise
        partial.replace(job.executed)


def describe_error(exc: BaseException) -> str:
    """One or two lines for the failing cell: ``In [3]: ValueError: ...``."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename is not None:
        return f"cell In [{getattr(exc, 'exec_count', '?')}]: {ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}".strip()


def _say(msg: str, end: str = "\n") -> None:
    print(msg, end=end, flush=True)


def run(
    profile: str = paths.QUICK,
    only: Iterable[str] | None = None,
    *,
    force: bool = False,
    timeout: float | None = None,
    extra: Mapping[str, Any] | None = None,
    root: Path | None = None,
    profiles_dir: Path | None = None,
    progress: bool = False,
) -> Summary:
    """Validate everything, then execute (or skip) the selected notebooks in order.

    Raises RunnerError for usage errors before executing anything; notebook failures are
    reported in the returned Summary (``summary.ok``) and stop the run.
    """
    timeout = resolve_timeout(profile, timeout)
    nb_dir, jobs = prepare(profile, only, root=root, profiles_dir=profiles_dir, extra=extra)
    summary = Summary()
    if not jobs:
        _say(f"no notebooks (NN_*.ipynb) in {nb_dir}")
        return summary

    package = package_digest()
    started = time.perf_counter()
    width = max(len(j.notebook.stem) for j in jobs)
    where = jobs[0].executed.parent
    _say(f"profile {profile}: {len(jobs)} notebook(s); executed copies in {where}")
    for name, stems in _not_applied(jobs).items():
        _say(f"  (-p {name} is not a parameter of {', '.join(stems)}: not applied there)")
    for i, job in enumerate(jobs):
        stem = job.notebook.stem
        digest = job_digest(job, package)
        if not force and is_up_to_date(job, digest):
            summary.outcomes.append(Outcome(stem, "skipped"))
            _say(f"  {stem:<{width}}  skipped  up to date ({job.out_dir})")
            continue
        # One line per notebook: the status completes the line once the notebook is done.
        # papermill's progress bars, when asked for, need lines of their own: then the
        # status line is written whole afterwards.
        head = f"  {stem:<{width}}  "
        _say(f"{head}running" if progress else head, end="\n" if progress else "")
        head = head if progress else ""
        t0 = time.perf_counter()
        try:
            execute(job, cwd=nb_dir, timeout=timeout, progress=progress)
        except Exception as exc:  # papermill, nbclient (timeouts, dead kernels) and I/O
            seconds = time.perf_counter() - t0
            error = describe_error(exc)
            summary.outcomes.append(Outcome(stem, "failed", seconds, error))
            _say(f"{head}FAILED   {seconds:.1f} s\n      {error}")
            if job.failed_path.exists():
                _say(f"      executed notebook with the error: {job.failed_path}")
            summary.outcomes += [Outcome(j.notebook.stem, "not run") for j in jobs[i + 1 :]]
            for rest in jobs[i + 1 :]:
                _say(f"  {rest.notebook.stem:<{width}}  not run")
            break
        seconds = time.perf_counter() - t0
        stamp = {"sha256": digest, "parameters": job.parameters, "seconds": round(seconds, 1)}
        atomic_write_bytes(job.stamp_path, json.dumps(stamp, indent=2, default=str).encode())
        summary.outcomes.append(Outcome(stem, "ran", seconds))
        _say(f"{head}ran      {seconds:.1f} s")
    total = time.perf_counter() - started
    _say(
        f"{summary.count('ran')} ran, {summary.count('skipped')} skipped, "
        f"{summary.count('failed')} failed, {summary.count('not run')} not run "
        f"in {total:.1f} s"
    )
    return summary


def _not_applied(jobs: Sequence[Job]) -> dict[str, list[str]]:
    """``{-p name: [stems of the notebooks that do not declare it]}``."""
    out: dict[str, list[str]] = {}
    for job in jobs:
        for name in job.not_applied:
            out.setdefault(name, []).append(job.notebook.stem)
    return out


def list_notebooks(
    profile: str = paths.QUICK,
    only: Iterable[str] | None = None,
    *,
    root: Path | None = None,
    profiles_dir: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Print the notebooks, their state for ``profile`` with the ``extra`` (``-p``)
    parameters, exactly as ``run`` would judge it, and the parameters that differ from the
    saved defaults (profile overrides and extras)."""
    nb_dir, jobs = prepare(profile, only, root=root, profiles_dir=profiles_dir, extra=extra)
    package = package_digest()
    _say(f"notebooks in {nb_dir} (profile {profile}):")
    for job in jobs:
        state = "up to date" if is_up_to_date(job, job_digest(job, package)) else "to run"
        changed = {k: v for k, v in job.parameters.items() if k not in REQUIRED_PARAMETERS}
        shown = "  " + ", ".join(f"{k}={v!r}" for k, v in changed.items()) if changed else ""
        _say(f"  {job.notebook.stem:<24} {state:<10}{shown}")
    for name, stems in _not_applied(jobs).items():
        _say(f"  (-p {name} is not a parameter of {', '.join(stems)}: not applied there)")
    if not jobs:
        _say("  (none)")


# --- command line (registered in twin_study.cli.SUBCOMMANDS) -----------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default=paths.QUICK,
        choices=paths.available_profiles(),
        help="quick: the CI-sized defaults saved in the notebooks; paper: full scale, "
        "figures into figures/ (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help='notebooks to run: "01", "01_complexity" or "01_complexity.ipynb"',
    )
    parser.add_argument("--force", action="store_true", help="rerun up-to-date notebooks too")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"per-cell execution timeout, 0 for none (default: {DEFAULT_TIMEOUT} s for the "
        "quick profile, none for the others: a paper-profile sweep is one long cell)",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra parameter for the selected notebooks that have it (an error if none "
        "has it), value parsed as YAML; repeatable",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the notebooks and their state (with the -p values), run nothing",
    )
    parser.add_argument(
        "--progress", action="store_true", help="show papermill's per-cell progress bars"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="train the sweeps' missing runs in N worker processes, one thread each "
        "(sets $TWIN_STUDY_JOBS for the notebooks; default: 1, one after another)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="train them on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' "
        "for a LocalCluster of --jobs workers (sets $TWIN_STUDY_DASK)",
    )


def main(args: argparse.Namespace) -> int:
    # --jobs / --dask reach the notebooks' kernels through the environment; set them for this
    # command only, so a caller (a test, a notebook calling main) keeps its own.
    saved = {k: os.environ.get(k) for k in ("TWIN_STUDY_JOBS", "TWIN_STUDY_DASK")}
    try:
        return _main(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _main(args: argparse.Namespace) -> int:
    try:
        extra = parse_assignments(args.param)
        if args.jobs is not None or args.dask:
            # Checked here, before anything runs; the notebooks' kernels inherit the variables
            # and their sweeps read them as defaults (twin_study.training.parallel).
            from twin_study.training.parallel import ParallelConfig  # lazy: imports torch

            try:
                os.environ.update(ParallelConfig.resolve(args.jobs, args.dask).to_env())
            except ValueError as exc:
                raise RunnerError(str(exc)) from exc
        if args.list:
            list_notebooks(args.profile, args.only, extra=extra)
            return 0
        summary = run(
            args.profile,
            args.only,
            force=args.force,
            timeout=args.timeout,
            extra=extra,
            progress=args.progress,
        )
    except RunnerError as exc:
        print(f"twin-study run: error: {exc}", file=sys.stderr)
        return 2
    return 0 if summary.ok else 1
