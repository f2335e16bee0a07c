"""Executing the notebooks: one with papermill (``execute``), the selected ones in order with
up-to-date ones skipped and one line each (``run``), and their state without running any
(``list_notebooks``)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin_study import paths
from twin_study.results import atomic_write_bytes

from .notebooks import RunnerError
from .params import REQUIRED_PARAMETERS, Job, prepare
from .stamps import is_up_to_date, job_digest, package_digest

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
# Packages of the execution machinery whose warnings and log records are not the study's.
_MACHINERY = ("papermill", "nbclient", "nbformat", "jupyter_client", "jupyter_core", "zmq")


def resolve_timeout(profile: str, timeout: float | None) -> float | None:
    """The per-cell timeout in seconds, or None for none: the profile's default unless given."""
    if timeout is None:
        return DEFAULT_TIMEOUT if profile == paths.QUICK else None
    if timeout < 0:
        raise RunnerError(f"--timeout must be >= 0 seconds (0: no limit), got {timeout:g}")
    return None if timeout == 0 else float(timeout)


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
