"""Train the runs of a sweep in parallel: joblib (loky) on this machine, or a Dask cluster.

A sweep is many independent ``run(ds, model, train)`` calls. ``train_missing`` takes them,
keeps those whose key is not in the results cache, and trains them in worker processes with
one torch thread each; the sweep then reads every run from the cache in its own order, so
its table is the same whichever engine trained it.

* **Engines.** ``jobs = N`` trains in N loky processes (``joblib.Parallel``); ``dask = ADDRESS``
  submits the same task to a ``dask.distributed`` scheduler (``"local"``: a ``LocalCluster``
  of ``jobs`` single-threaded worker processes on this machine). ``jobs = 1`` without Dask
  does nothing here: the sweep trains in its own process, exactly as before.
* **Defaults from the environment.** ``$TWIN_STUDY_JOBS`` and ``$TWIN_STUDY_DASK`` (set by
  ``twin-study run --jobs N --dask ADDRESS``) reach the notebooks' kernels, so a notebook runs
  in parallel without a new parameter.
* **Prerequisites first.** SIM Soft / Cluster need a DIN run, TWIN w/o Para-Con an auxiliary
  TWIN (``experiment.prerequisites``). Runs are trained in waves by dependency depth, so a
  prerequisite is trained once, before the runs that load it, never by two workers at once.
* **No shared disk needed.** A worker trains into a private temp cache seeded with the
  prerequisites' entries and returns the finished entry's files; the parent writes them into
  its results cache with ``store_run`` (one atomic rename per entry). Workers on other
  machines therefore need the package and its dependencies, not the parent's cache folder.
* **The data set travels with the task.** It is pickled per task (joblib memory-maps its
  large arrays: written once per sweep to a temp folder and shared by the workers' page
  cache) or scattered once to every Dask worker. Regenerating it in the worker from its
  loader parameters is not possible in general (user logs, MovieLens parsed in the parent)
  and would cost more than shipping it (see docs/running.md, "Running bigger").
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from .. import runtime
from ..data.schema import Dataset
from ..models.config import ModelConfig
from . import experiment
from .train import TrainConfig

JOBS_ENV = "TWIN_STUDY_JOBS"
DASK_ENV = "TWIN_STUDY_DASK"
LOCAL = "local"  # dask = "local": a LocalCluster on this machine
CONNECT_TIMEOUT = 15.0  # seconds to reach a Dask scheduler before giving up
_ADDRESS = re.compile(r"^([a-z][a-z0-9+]*://)?[\w.\-\[\]:]+:\d+/?$")

Run = tuple[ModelConfig, TrainConfig]


@dataclass(frozen=True)
class ParallelConfig:
    """Where the runs of a sweep are trained."""

    jobs: int = 1  # worker processes (joblib) or LocalCluster workers (dask="local"); 1 = serial
    # "" = joblib on this machine; "local"; or a scheduler address "tcp://host:8786" (its
    # workers decide the parallelism there, and jobs is not used)
    dask: str = ""

    def validate(self) -> ParallelConfig:
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got {self.jobs!r}")
        if self.dask and self.dask != LOCAL and not _ADDRESS.match(self.dask):
            raise ValueError(
                f"dask must be {LOCAL!r} or a scheduler address like tcp://scheduler-host:8786, "
                f"got {self.dask!r}"
            )
        return self

    @property
    def serial(self) -> bool:
        return self.jobs == 1 and not self.dask

    def to_env(self) -> dict[str, str]:
        """The environment variables that make ``resolve()`` return this config."""
        return {JOBS_ENV: str(self.jobs), DASK_ENV: self.dask}

    @classmethod
    def resolve(cls, jobs: int | None = None, dask: str | None = None) -> ParallelConfig:
        """Explicit values, else ``$TWIN_STUDY_JOBS`` / ``$TWIN_STUDY_DASK``, else serial."""
        if jobs is None:
            raw = os.environ.get(JOBS_ENV, "").strip()
            try:
                jobs = int(raw) if raw else 1
            except ValueError:
                raise ValueError(f"${JOBS_ENV} must be an integer >= 1, got {raw!r}") from None
        if dask is None:
            dask = os.environ.get(DASK_ENV, "").strip()
        return cls(jobs, dask or "").validate()


# --- planning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    key: str
    model: ModelConfig
    train: TrainConfig
    needs: tuple[str, ...]  # keys of every run it loads (prerequisites, transitively)


def plan(ds: Dataset, runs: Sequence[Run]) -> list[list[_Task]]:
    """Waves of the runs (and their prerequisites) missing from the results cache.

    Wave i holds the runs whose prerequisites are at most i levels deep, so every run's
    prerequisites are in the cache before its wave starts. A key appears once, however many
    runs share it (the Table 4 DIN is also SIM Soft's pre-training run)."""
    tasks: dict[str, tuple[int, _Task]] = {}

    def visit(model: ModelConfig, train: TrainConfig) -> tuple[str, int, tuple[str, ...]]:
        model, train = model.validate(), train.validate()
        key = experiment.run_key(ds, model, train)
        if key not in tasks:
            depth, needs = 0, []
            for pm, pt in experiment.prerequisites(model, train):
                pkey, pdepth, pneeds = visit(pm, pt)
                depth = max(depth, pdepth + 1)
                needs += [pkey, *pneeds]
            tasks[key] = (depth, _Task(key, model, train, tuple(dict.fromkeys(needs))))
        depth, task = tasks[key]
        return key, depth, task.needs

    for model, train in runs:
        visit(model, train)
    missing = [(d, t) for d, t in tasks.values() if not experiment.is_cached(t.key)]
    n_waves = max((d for d, _ in missing), default=-1) + 1
    return [[t for d, t in missing if d == w] for w in range(n_waves)]


# --- the task a worker runs ----------------------------------------------------------------

# One run at a time per worker process: the task points $TWIN_STUDY_CACHE at its own temp
# folder, which is process-wide, and a run should own its one thread anyway.
_WORKER_LOCK = threading.Lock()


def train_task(
    ds: Dataset, model: ModelConfig, train: TrainConfig, given: dict[str, dict[str, bytes]]
) -> tuple[str, dict[str, bytes], float]:
    """Train one run in a private results cache holding ``given`` (prerequisite entries);
    return its key, the files of its cache entry and the wall seconds."""
    with _WORKER_LOCK, tempfile.TemporaryDirectory(prefix="twin-study-worker-") as scratch:
        before = os.environ.get("TWIN_STUDY_CACHE")
        os.environ["TWIN_STUDY_CACHE"] = scratch
        try:
            for key, files in given.items():
                experiment.store_run(key, files)
            runtime.configure(1)  # N workers on N cores: more threads only contend
            t0 = time.perf_counter()
            res = experiment.run(ds, model, dataclasses.replace(train, threads=1, progress=False))
            seconds = time.perf_counter() - t0
            folder = experiment.runs_dir() / res.key
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        finally:
            if before is None:
                os.environ.pop("TWIN_STUDY_CACHE", None)
            else:
                os.environ["TWIN_STUDY_CACHE"] = before
    return res.key, files, seconds


def _read_entry(key: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((experiment.runs_dir() / key).iterdir())}


# --- engines -------------------------------------------------------------------------------


def _joblib_results(ds: Dataset, wave: list[_Task], jobs: int, given) -> Iterator[tuple]:
    from joblib import Parallel, delayed, parallel_config  # lazy: only jobs > 1 needs loky

    # mmap_mode "c": the data set's large arrays reach the workers as copy-on-write memory
    # maps (read-only ones would make torch.as_tensor warn); one thread per worker.
    with parallel_config(backend="loky", inner_max_num_threads=1):
        par = Parallel(n_jobs=jobs, mmap_mode="c", return_as="generator_unordered")
        yield from par(
            delayed(train_task)(ds, t.model, t.train, {k: given[k] for k in t.needs}) for t in wave
        )


_CLIENTS: dict[tuple[str, int], object] = {}


def dask_client(address: str, jobs: int = 2):
    """A ``dask.distributed.Client`` for ``address`` (``"local"``: a LocalCluster of ``jobs``
    single-threaded worker processes, one per core when ``jobs`` is 1), kept for the life of
    this process."""
    try:
        from distributed import Client, LocalCluster  # lazy: dask is heavy and optional
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError(
            "dask=... needs dask.distributed: pip install 'dask[distributed]'"
        ) from exc
    ident = (address, jobs if address == LOCAL else 0)
    client = _CLIENTS.get(ident)
    if client is not None and client.status == "running":
        return client
    if address == LOCAL:
        cluster = LocalCluster(
            n_workers=jobs if jobs > 1 else os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot reach a Dask scheduler at {address!r} within {CONNECT_TIMEOUT:g} s "
                f"({exc}); start one with `dask scheduler` and `dask worker {address} "
                "--nthreads 1`, or use dask='local'"
            ) from exc
    _CLIENTS[ident] = client
    return client


def _dask_results(data, wave: list[_Task], client, given) -> Iterator[tuple]:
    from distributed import as_completed  # lazy: dask is heavy and optional

    futures = [
        client.submit(
            train_task, data, t.model, t.train, {k: given[k] for k in t.needs}, pure=False
        )
        for t in wave
    ]
    for fut in as_completed(futures):
        yield fut.result()


# --- entry point ---------------------------------------------------------------------------


def train_missing(
    ds: Dataset,
    runs: Sequence[Run],
    jobs: int | None = None,
    dask: str | None = None,
    progress: bool = True,
) -> set[str]:
    """Train every run in ``runs`` (and the runs they need first) that the results cache
    lacks, in parallel, and store them in the cache. Returns the keys trained here.

    ``jobs`` / ``dask``: see ``ParallelConfig``; ``None`` reads ``$TWIN_STUDY_JOBS`` /
    ``$TWIN_STUDY_DASK``. Serial (jobs = 1, no Dask) trains nothing and returns an empty set:
    the caller's own ``run`` calls train in its process."""
    cfg = ParallelConfig.resolve(jobs, dask)
    if cfg.serial:
        return set()
    experiment.fingerprint(ds)  # computed once here; the workers get it with the data set's meta
    waves = plan(ds, runs)
    todo = sum(len(w) for w in waves)
    if not todo:
        return set()
    client = dask_client(cfg.dask, cfg.jobs) if cfg.dask else None
    # Dask: the data set goes to every worker once, not with each task; this future keeps it
    # there until the last wave (a unique key: a re-scatter under the same one could race
    # with the release of this one).
    data = client.scatter(ds, broadcast=True, hash=False) if client is not None else None
    where = f"Dask {cfg.dask}" if cfg.dask else f"{cfg.jobs} processes"
    bar = tqdm(total=todo, desc=f"train {ds.name} ({where})", disable=not progress)
    trained: set[str] = set()
    given: dict[str, dict[str, bytes]] = {}
    try:
        for wave in waves:
            for key in {k for t in wave for k in t.needs}:
                given[key] = _read_entry(key)
            results = (
                _dask_results(data, wave, client, given)
                if client is not None
                else _joblib_results(ds, wave, cfg.jobs, given)
            )
            for key, files, seconds in results:
                experiment.store_run(key, files)
                trained.add(key)
                bar.update(1)
                bar.set_postfix_str(f"last {seconds:.0f} s")
    finally:
        bar.close()
    return trained
