"""Issue 25, the model registry: a lifelong module is one file. This file is that one file for
a toy module -- its options, its GSU, its registration -- and the tests train it through
``run()`` and read it from the places that list modules, with no other file changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from twin_study.analysis import sweeps, throughput
from twin_study.data import SyntheticConfig, generate
from twin_study.models import ModelConfig, build_model, registry
from twin_study.models.gsu import GSU, GsuInput
from twin_study.training import TrainConfig, run
from twin_study.training.experiment import prerequisites, run_key

# ---------------------------------------------------------------- the toy module, in full


@dataclasses.dataclass(frozen=True)
class OldestOptions:
    """The toy's own settings (``ModelConfig.options``); ModelConfig gains no field."""

    skip: int = 0  # behaviours at the oldest end left out before the k are taken


class OldestGSU(GSU):
    """Keeps the k OLDEST valid behaviours (DIN keeps the newest), after ``skip`` of them."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip = skip

    def scores(self, x: GsuInput) -> tuple[torch.Tensor, torch.Tensor]:
        # recency() is highest for the newest slot; the oldest valid ones score highest here.
        s = -x.recency().expand(len(x.target), -1)[:, None, :]  # (B, 1, L)
        rank_from_oldest = x.n_valid()[x.req][:, None] - 1 - torch.arange(x.length)  # (B, L)
        return s, x.sample_valid() & (rank_from_oldest >= self.skip)


def build_oldest(ctx: registry.BuildContext) -> OldestGSU:
    return OldestGSU(ctx.options.skip)


TOY = registry.LifelongModule(
    name="toy_oldest", label="Toy Oldest", description="the k oldest behaviours",
    build=build_oldest, options=OldestOptions,
)  # fmt: skip

# ---------------------------------------------------------------- the tests


@pytest.fixture
def toy():
    registry.register(TOY)
    yield TOY
    registry.unregister(TOY.name)


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=40, n_items=600, n_authors=60, history_len=120,
                                    history_min=30, requests_per_user=3, seed=2))  # fmt: skip


def cfg(**kw) -> ModelConfig:
    return ModelConfig(long_module="toy_oldest", long_len=100, k=10, id_dim=16, mlp=(16,), **kw)


def test_a_toy_module_in_one_file_trains_through_run(toy, ds, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path))
    train = TrainConfig(epochs=1, batch_size=64, max_train_samples=256, progress=False)
    res = run(ds, cfg(options={"skip": 3}), train)
    assert np.isfinite(res.metrics["test"]["auc"]) and res.metrics["test"]["n"] > 0
    assert isinstance(res.model.gsu, OldestGSU) and res.model.gsu.skip == 3
    assert res.model.esu is not None  # two-stage: the shared ESU attends over its picks
    # The results cache keys it like any run, options included; the second call is a hit.
    assert run(ds, cfg(options={"skip": 3}), train).cached
    assert run_key(ds, cfg(options={"skip": 3}), train) != run_key(ds, cfg(), train)
    assert prerequisites(cfg(), train) == []


def test_the_toy_selects_what_its_file_says(toy, ds):
    from twin_study.data import SampleBuilder

    model = build_model(cfg(options={"skip": 2}), ds)
    batch = SampleBuilder(ds, 100).build(ds.split_indices("train")[:20])
    idx, valid = model.gsu.select(model.gsu_input(batch), 10)
    n = batch.hist_len[batch.req]
    for b in range(len(idx)):  # slot 0 is the newest: the oldest kept are n-3, n-4, ...
        want = set(range(int(n[b]) - 3, max(int(n[b]) - 13, -1), -1))
        assert set(idx[b][valid[b]].tolist()) == want


def test_the_places_that_list_modules_read_the_registry(toy):
    assert "toy_oldest" in registry.names() and "toy_oldest" in registry.two_stage()
    assert registry.label("toy_oldest") == "Toy Oldest"
    assert registry.module_of("Toy Oldest") == "toy_oldest"
    assert throughput.known_modules(["toy_oldest", "twin"]) == ["toy_oldest", "twin"]
    base = ModelConfig(long_len=100, k=10)
    (setting,) = sweeps.module_settings(base, ["toy_oldest"])
    assert setting.label == "Toy Oldest" and setting.model.long_module == "toy_oldest"


def test_gone_once_unregistered():
    assert "toy_oldest" not in registry.names()
    with pytest.raises(ValueError, match="unknown long_module 'toy_oldest'"):
        cfg().validate()


def test_options_are_checked_against_the_module(toy):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['skp'\] for toy_oldest"):
        cfg(options={"skp": 1}).validate()
    with pytest.raises(ValueError, match="twin takes no options"):
        ModelConfig(options={"skip": 1}).validate()
    assert registry.options_of(cfg()) == OldestOptions()
    assert registry.options_of(ModelConfig()) is None


def test_a_name_is_declared_once(toy):
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register(TOY)
    with pytest.raises(registry.RegistryError, match="must be an identifier"):
        registry.LifelongModule(name="toy oldest", label="x", description="x", build=build_oldest)


def test_every_builtin_module_declares_what_the_study_reads():
    """Table 4's modules, the ablations and SDIM's linear form, each with a label of its own;
    the prerequisites are the documented ones."""
    names = registry.names()
    assert names[:9] == ["avg_pool", "din", "sim_hard", "eta", "sdim", "sdim_linear",
                         "sim_cluster", "sim_soft", "twin"]  # fmt: skip
    labels = [registry.label(m) for m in names]
    assert len(set(labels)) == len(labels)
    assert not registry.get("avg_pool").two_stage and not registry.get("sdim_linear").two_stage
    pre = {m: registry.get(m).prerequisite for m in names}
    assert {m: p.module for m, p in pre.items() if p} == {
        "sim_cluster": "din", "sim_soft": "din", "twin_no_paracon": "twin"}  # fmt: skip
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for m in names:
        assert set(registry.get(m).fields) <= fields, m
