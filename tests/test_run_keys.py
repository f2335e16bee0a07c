"""Results-cache keys (issue 25): a run is keyed on the config fields that differ from their
defaults plus the code version, entries of the older every-field scheme are adopted on lookup,
and result.json records what computed a run.

Key-level tests use a stand-in data set (only its fingerprint enters a key) and a scratch
cache; one end-to-end test trains a tiny run. Nothing here touches the real cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from types import SimpleNamespace

import pytest

from twin_study import paths
from twin_study.models import ModelConfig, native
from twin_study.training import TrainConfig, experiment, parallel

FAKE_DS = SimpleNamespace(meta={"_fingerprint": "0123456789abcdef"})  # what fingerprint() reads
BASE = ModelConfig(long_len=100, k=20)
TRAIN = TrainConfig(epochs=1, batch_size=64, threads=1, progress=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runs"


ADDED_SINCE = {"options"}  # ModelConfig fields added after the legacy scheme (issue 25)


def _old_run_key(ds, model, train) -> str:
    """``run_key`` as it was at CACHE_VERSION 5 (commit f19bd07), verbatim: every field of
    that time (a field added since, such as ``ModelConfig.options``, did not exist)."""
    t = {k: v for k, v in dataclasses.asdict(train).items()
         if k not in {"progress", "device", "threads", "eval_batch_size"}}  # fmt: skip
    m = {k: v for k, v in dataclasses.asdict(model).items() if k not in ADDED_SINCE}
    blob = json.dumps({"v": 5, "data": experiment.fingerprint(ds), "model": m, "train": t},
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _with_field(cls, name: str, default):
    """``cls`` with one more field, defaulted: what adding a knob to the config does."""
    return dataclasses.make_dataclass(
        f"{cls.__name__}Plus", [(name, type(default), dataclasses.field(default=default))],
        bases=(cls,),
    )  # fmt: skip


def key(model=BASE, train=TRAIN) -> str:
    return experiment.run_key(FAKE_DS, model, train)


def test_an_added_defaulted_field_leaves_keys_unchanged():
    ModelPlus = _with_field(ModelConfig, "new_knob", 7)
    TrainPlus = _with_field(TrainConfig, "warmup_steps", 0)
    plus_model = ModelPlus(long_len=100, k=20)
    plus_train = TrainPlus(epochs=1, batch_size=64, threads=1, progress=False)
    assert key(plus_model, plus_train) == key()
    assert key(ModelPlus(), TrainPlus()) == key(ModelConfig(), TrainConfig())
    # ... and once it is set to something else, it is part of the key.
    assert key(dataclasses.replace(plus_model, new_knob=8), plus_train) != key()
    assert key(plus_model, dataclasses.replace(plus_train, warmup_steps=100)) != key()


def test_keys_see_every_non_default_value_and_nothing_else():
    assert key(dataclasses.replace(BASE, k=21)) != key()
    assert key(dataclasses.replace(BASE, long_module="sdim")) != key()
    assert key(train=dataclasses.replace(TRAIN, seed=1)) != key()
    assert key(train=dataclasses.replace(TRAIN, lr=2e-3)) != key()
    assert key(dataclasses.replace(BASE, extra={"note": 1})) != key()
    # A value spelled as its default is the default; options outside the key stay outside.
    assert key(dataclasses.replace(BASE, mlp=[200, 80], heads=4)) == key()
    assert key(train=dataclasses.replace(TRAIN, threads=4, progress=True, device="cuda:1",
                                         eval_batch_size=7)) == key()  # fmt: skip
    # The data set and the code version are in it too.
    other = SimpleNamespace(meta={"_fingerprint": "fedcba9876543210"})
    assert experiment.run_key(other, BASE, TRAIN) != key()
    assert experiment.non_default_fields(BASE) == {"long_len": 100, "k": 20}


def test_code_version_is_in_the_key(monkeypatch):
    before = key()
    monkeypatch.setattr(experiment, "CACHE_VERSION", experiment.CACHE_VERSION + 1)
    assert key() != before


# Config defaults a run's key takes for granted, by CACHE_VERSION. A run whose fields are all at
# their defaults keeps its key when a default changes, so changing one means a new
# CACHE_VERSION: add its defaults here (the failure prints them).
DEFAULTS_BY_VERSION = {5: experiment.LEGACY_DEFAULTS}


def _current_defaults() -> dict[str, dict]:
    """Every field's default, as JSON reads it back (as keys compare them)."""
    configs = {"model": ModelConfig(), "train": TrainConfig()}
    return {part: json.loads(json.dumps(dataclasses.asdict(c))) for part, c in configs.items()}


def test_a_changed_default_needs_a_new_cache_version():
    current = _current_defaults()
    seen = DEFAULTS_BY_VERSION.get(experiment.CACHE_VERSION)
    assert seen is not None, (
        f"CACHE_VERSION {experiment.CACHE_VERSION}: record its defaults in "
        f"DEFAULTS_BY_VERSION: {json.dumps(current)}"
    )
    for part in ("model", "train"):
        changed = {n: (v, current[part][n]) for n, v in seen[part].items()
                   if n in current[part] and current[part][n] != v}  # fmt: skip
        assert not changed, (
            f"{part} defaults changed (was, now): {changed}. Runs at the default would keep "
            "their cached results: bump CACHE_VERSION"
        )


@pytest.mark.parametrize(
    "model, train",
    [
        (ModelConfig(), TrainConfig()),
        (BASE, TRAIN),
        (ModelConfig(long_module="sim_soft", sim_vectors="item_id", mlp=(64,), extra={"a": 1}),
         TrainConfig(seed=3, emb_lr=0.05, eval_every=1000)),
    ],
)  # fmt: skip
def test_legacy_key_is_the_old_scheme(model, train):
    assert experiment.legacy_run_key(FAKE_DS, model, train) == _old_run_key(FAKE_DS, model, train)


def test_legacy_key_survives_an_added_field_at_its_default(monkeypatch):
    plus = _with_field(ModelConfig, "new_knob", 7)(long_len=100, k=20)
    assert experiment.legacy_run_key(FAKE_DS, plus, TRAIN) == _old_run_key(FAKE_DS, BASE, TRAIN)
    # No legacy entry can hold a value of a field it did not have, nor a newer code version.
    assert experiment.legacy_run_key(FAKE_DS, dataclasses.replace(plus, new_knob=8), TRAIN) is None
    monkeypatch.setattr(experiment, "CACHE_VERSION", experiment.LEGACY_CACHE_VERSION + 1)
    assert experiment.legacy_run_key(FAKE_DS, BASE, TRAIN) is None


def _legacy_entry(cache, model=BASE, train=TRAIN) -> str:
    old = _old_run_key(FAKE_DS, model, train)
    experiment.store_run(old, {"model.pt": b"weights", "result.json": b'{"metrics": {}}',
                               experiment.PREDICTIONS: b"preds"})  # fmt: skip
    return old


def test_lookup_adopts_a_legacy_entry_by_links(cache):
    old = _legacy_entry(cache)
    new = key()
    assert new != old and not (cache / new).exists()
    assert experiment.is_cached(new)
    assert sorted(p.name for p in (cache / new).iterdir()) == sorted(
        p.name for p in (cache / old).iterdir()
    )
    for p in (cache / old).iterdir():  # the same files, not copies; the old entry stays
        assert (cache / new / p.name).read_bytes() == p.read_bytes()
        assert (cache / new / p.name).stat().st_ino == p.stat().st_ino
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert experiment.is_cached(new)  # a second lookup finds it directly


def test_lookup_ignores_an_unfinished_or_foreign_legacy_entry(cache, monkeypatch):
    old = _old_run_key(FAKE_DS, BASE, TRAIN)
    (cache / old).mkdir(parents=True)
    (cache / old / "result.json").write_text("{}")  # no model.pt: unfinished
    assert not experiment.is_cached(key())
    assert not (cache / key()).exists()
    # An entry of another run is never adopted.
    _legacy_entry(cache, dataclasses.replace(BASE, k=21))
    assert not experiment.is_cached(key())
    # Nor one of the legacy scheme once the code version has moved on.
    (cache / old / "model.pt").write_bytes(b"weights")
    monkeypatch.setattr(experiment, "CACHE_VERSION", experiment.CACHE_VERSION + 1)
    assert not experiment.is_cached(key())


def test_parallel_planning_adopts_legacy_entries(cache):
    _legacy_entry(cache)
    assert parallel.plan(FAKE_DS, [(BASE, TRAIN)]) == []  # nothing left to train
    assert (cache / key() / "model.pt").is_file()


@pytest.fixture(scope="module")
def tiny_ds():
    from twin_study.data import SyntheticConfig, generate

    cfg = SyntheticConfig(n_users=30, n_items=500, n_authors=50, history_len=100,
                          history_min=60, authors_per_interest=(3, 8), seed=1)  # fmt: skip
    return generate(cfg)


def test_run_reads_a_legacy_entry_and_records_what_computed_it(tiny_ds, cache):
    first = experiment.run(tiny_ds, BASE, TRAIN)
    assert not first.cached and first.key == experiment.run_key(tiny_ds, BASE, TRAIN)
    saved = json.loads((cache / first.key / "result.json").read_text())
    assert saved["code"] == first.code
    assert saved["code"]["cache_version"] == experiment.CACHE_VERSION
    assert saved["code"]["kernel_sources"] == experiment.kernel_sources_digest()
    assert saved["code"]["native"] == experiment.native_facts()

    # Turn the entry into one the legacy code wrote: its old key, no "code" in result.json.
    old = _old_run_key(tiny_ds, BASE, TRAIN)
    shutil.copytree(cache / first.key, cache / old)
    shutil.rmtree(cache / first.key)
    del saved["code"]
    (cache / old / "result.json").write_text(json.dumps(saved))

    again = experiment.run(tiny_ds, BASE, TRAIN)
    assert again.cached and again.key == first.key and again.code is None
    assert again.metrics == first.metrics
    assert (cache / old / "model.pt").is_file()  # still there for older code
    pred = experiment.predictions_on_test(tiny_ds, again, TRAIN)
    assert pred.tolist() == experiment.predictions_on_test(tiny_ds, first, TRAIN).tolist()


def test_native_facts(monkeypatch):
    monkeypatch.delattr(native, "build_info", raising=False)
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert experiment.native_facts() == {"enabled": False, "isa": experiment.cpu_isa()}
    monkeypatch.setenv(native.NATIVE_ENV, "1")
    assert experiment.native_facts()["enabled"] is True
    # Once the kernels module reports its own build, that is what is recorded.
    info = {"enabled": True, "loaded": ["gsu"], "isa": "avx512"}
    monkeypatch.setattr(native, "build_info", lambda: info, raising=False)
    assert experiment.native_facts() == info


@pytest.mark.parametrize(
    "flags, isa",
    [(["fpu", "sse2", "avx", "avx2", "avx512f", "avx512bw"], "avx512"),
     (["fpu", "sse2", "avx", "avx2", "fma"], "avx2"), (["fpu", "sse2", "avx"], "baseline")],
)  # fmt: skip
def test_cpu_isa(flags, isa):
    assert experiment.cpu_isa(flags) == isa


def _package_copy(tmp_path, monkeypatch):
    copy = tmp_path / "twin_study"
    shutil.copytree(paths.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "PACKAGE_DIR", copy)
    return copy


def test_a_kernel_edit_is_recorded_but_keeps_run_keys(tmp_path, monkeypatch):
    """The choice documented in experiment's docstring: kernel sources are not in the key
    (that would orphan the cache on every kernel edit); result.json records their digest."""
    before_key, before_code = key(), experiment.code_facts()
    copy = _package_copy(tmp_path, monkeypatch)
    assert experiment.code_facts() == before_code  # the copy is the same sources
    for name in ("gsu_select.cpp", "common.h"):
        source = copy / "models" / name
        source.write_text(source.read_text() + "\n// edited\n")
        after = experiment.code_facts()
        assert after["kernel_sources"] != before_code["kernel_sources"]
        before_code = after
    (copy / "models" / "notes.py").write_text("# python is not a kernel source\n")
    assert experiment.code_facts() == before_code
    assert key() == before_key
