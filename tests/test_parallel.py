"""Parallel sweeps (issue: scale out): joblib and Dask workers give the serial sweep's numbers,
train each prerequisite once, and leave a results cache that two writers cannot corrupt.

Tiny runs (30 users, L = 100, one epoch): the point is the plumbing, not the metrics. The
serial sweep trains with one thread, as the workers do, so the numbers must match exactly.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os

import pytest

from twin_study import cli, runner
from twin_study.analysis import sweeps
from twin_study.data import SyntheticConfig, generate
from twin_study.models import ModelConfig
from twin_study.training import TrainConfig, experiment, parallel
from twin_study.training.parallel import ParallelConfig

METRICS = ["auc", "gauc", "logloss"]
BASE = ModelConfig(long_len=100, k=20)
TRAIN = TrainConfig(epochs=1, batch_size=64, threads=1, progress=False)


@pytest.fixture(scope="module")
def ds():
    cfg = SyntheticConfig(n_users=30, n_items=500, n_authors=50, history_len=100,
                          history_min=60, authors_per_interest=(3, 8), seed=1)  # fmt: skip
    return generate(cfg)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path / "cache"))
    for name in (parallel.JOBS_ENV, parallel.DASK_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


# SIM Soft needs a DIN run first: three trainings in two waves.
SETTINGS = sweeps.module_settings(BASE, ["sim_soft", "twin"])


@pytest.fixture(scope="module")
def serial(ds, tmp_path_factory):
    with pytest.MonkeyPatch.context() as m:
        m.setenv("TWIN_STUDY_CACHE", str(tmp_path_factory.mktemp("serial")))
        return sweeps.sweep(ds, SETTINGS, [0], TRAIN, progress=False, jobs=1)


def test_config_checks_and_environment(monkeypatch):
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
            ParallelConfig(bad).validate()
    with pytest.raises(ValueError, match="scheduler address"):
        ParallelConfig(2, "my cluster").validate()
    monkeypatch.setenv(parallel.JOBS_ENV, "two")
    with pytest.raises(ValueError, match="TWIN_STUDY_JOBS"):
        ParallelConfig.resolve()
    cfg = ParallelConfig(3, "tcp://127.0.0.1:8786").validate()
    for name, value in cfg.to_env().items():
        monkeypatch.setenv(name, value)
    assert ParallelConfig.resolve() == cfg
    assert ParallelConfig.resolve(jobs=1, dask="").serial  # explicit values win


def test_plan_trains_each_prerequisite_once_and_first(ds, cache):
    runs = [
        (dataclasses.replace(BASE, long_module=m), dataclasses.replace(TRAIN, seed=s))
        for m in ("sim_soft", "sim_cluster", "din", "twin_no_paracon")
        for s in (0, 1)
    ]
    waves = parallel.plan(ds, runs)
    modules = [sorted(t.model.long_module for t in w) for w in waves]
    # DIN (seeds 0, 1; also SIM Soft's and SIM Cluster's pre-training: one key each) and the
    # auxiliary TWINs (seeds 1000, 1001) first; then the runs that load them.
    assert modules == [
        ["din", "din", "twin", "twin"],
        ["sim_cluster"] * 2 + ["sim_soft"] * 2 + ["twin_no_paracon"] * 2,
    ]
    assert {t.train.seed for t in waves[0] if t.model.long_module == "twin"} == {1000, 1001}
    assert all(len(t.needs) == 1 and t.needs[0] in {u.key for u in waves[0]} for t in waves[1])
    # Cached runs drop out ...
    for t in waves[0]:
        experiment.store_run(t.key, {"model.pt": b"", "result.json": b"{}"})
    assert [len(w) for w in parallel.plan(ds, runs)] == [0, 6]
    # ... but a cached run whose prerequisite is not cached still needs it: run() loads it.
    for t in waves[1]:
        experiment.store_run(t.key, {"model.pt": b"", "result.json": b"{}"})
    (cache / "runs" / waves[0][0].key / "result.json").unlink()
    assert [[t.key for t in w] for w in parallel.plan(ds, runs)] == [[waves[0][0].key]]


def _write_many(keys: list[str], writer: str, barrier) -> None:
    barrier.wait()
    for key in keys:
        experiment.store_run(
            key, {"model.pt": writer.encode() * 1000, "result.json": json.dumps(writer).encode()}
        )


def test_two_processes_writing_the_same_keys_leave_whole_entries(cache):
    keys = [f"k{i:02d}" for i in range(30)]
    # A leftover of an interrupted older write: replaced, not trusted.
    (cache / "runs" / keys[0]).mkdir(parents=True)
    (cache / "runs" / keys[0] / "model.pt.tmp").write_bytes(b"partial")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(keys, w, barrier)) for w in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for key in keys:
        folder = cache / "runs" / key
        writer = json.loads((folder / "result.json").read_text())
        assert (folder / "model.pt").read_bytes() == writer.encode() * 1000, key  # not mixed
        assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "result.json"]
    assert not [p for p in (cache / "runs").iterdir() if p.name.startswith(".")]  # no temp left


def _rows(runs):
    return runs.drop(columns=["train_seconds", "samples_per_second", "cached"])


def test_joblib_sweep_matches_the_serial_sweep_and_resumes(ds, cache, serial):
    runs = sweeps.sweep(ds, SETTINGS, [0], TRAIN, progress=False, jobs=2)
    assert _rows(runs).equals(_rows(serial))  # same keys, exactly the same metrics
    assert not runs["cached"].any()
    # The DIN pre-training run is in the cache too, trained once, in the first wave.
    din = experiment.run_key(ds, experiment.prerequisites(SETTINGS[0].model, TRAIN)[0][0], TRAIN)
    entries = sorted(p.name for p in (cache / "runs").iterdir())
    assert entries == sorted([*runs["key"], din])
    again = sweeps.sweep(ds, SETTINGS, [0], TRAIN, progress=False, jobs=2)
    assert again["cached"].all() and _rows(again).equals(_rows(serial))


def test_dask_local_cluster_sweep_matches_the_serial_sweep(ds, cache, serial):
    runs = sweeps.sweep(ds, SETTINGS, [0], TRAIN, progress=False, jobs=2, dask="local")
    assert _rows(runs).equals(_rows(serial))
    client = parallel.dask_client("local", 2)
    assert len(client.scheduler_info()["workers"]) == 2
    client.close()
    client.cluster.close()


def test_environment_sets_the_default(ds, cache, serial, monkeypatch):
    monkeypatch.setenv(parallel.JOBS_ENV, "0")
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        sweeps.sweep(ds, SETTINGS, [0], TRAIN, progress=False)


def test_unreachable_dask_scheduler_is_a_clear_error(ds, cache, monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(
        ConnectionError, match="cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'"
    ):
        parallel.train_missing(ds, [(BASE, TRAIN)], dask="tcp://127.0.0.1:9", progress=False)


def test_run_command_passes_the_setting_to_the_notebooks(monkeypatch, capsys):
    for name in (parallel.JOBS_ENV, parallel.DASK_ENV):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["run", "--jobs", "0", "--list"]) == 2
    assert "jobs must be an integer >= 1" in capsys.readouterr().err
    seen = {}

    def record(*args, **kwargs):  # what the notebooks' kernels would inherit
        seen.update({k: os.environ.get(k) for k in (parallel.JOBS_ENV, parallel.DASK_ENV)})

    monkeypatch.setattr(runner.command, "list_notebooks", record)  # where `run` looks it up
    # a loopback address: nothing connects here (--list runs no notebook)
    assert cli.main(["run", "--jobs", "2", "--dask", "tcp://127.0.0.1:8786", "--list"]) == 0
    assert seen == {parallel.JOBS_ENV: "2", parallel.DASK_ENV: "tcp://127.0.0.1:8786"}
    # ... and only for that command: the caller's environment is left as it was
    assert parallel.JOBS_ENV not in os.environ and parallel.DASK_ENV not in os.environ
