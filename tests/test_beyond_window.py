"""Issue 26, notebook 09 (analysis/beyond_window.py, claims/lifecycle.py): the arms, what a
GSU's selection reaches of the planted relevant behaviours beyond the window, and the claims.
Fast: no model is trained (untrained models select as well as trained ones for these checks)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from twin_study.analysis import beyond_window as bw
from twin_study.analysis import sweeps
from twin_study.claims import core, lifecycle
from twin_study.models import ModelConfig, build_model
from twin_study.training.train import builder_for

W = 300  # the window
SMALL = dict(n_users=6, n_items=600, n_authors=60, history_len=1200, history_min=900,
             history_max=1500, requests_per_user=4)  # fmt: skip


@pytest.fixture(scope="module")
def worlds():
    return bw.load_worlds(bw.WORLDS, "quick", W, SMALL)


def small_cfg(module: str, L: int, k: int = 30, **options) -> ModelConfig:
    return ModelConfig(long_module=module, long_len=L, k=k, options=options, id_dim=16,
                       mlp=(16,), gsu_chunk=128)  # fmt: skip


def model(ds, module: str, L: int, k: int = 30, **options):
    torch.manual_seed(0)
    return build_model(small_cfg(module, L, k, **options), ds)


def test_world_params_set_the_controls_truth_window():
    life = bw.world_params("lifecycle", "quick", W, n_users=6)
    ctrl = bw.world_params("lifecycle_control", "quick", W, n_users=6)
    assert "truth_window" not in life and ctrl["truth_window"] == W
    assert life["n_users"] == ctrl["n_users"] == 6 and ctrl["name"] == "lifecycle_control"
    assert bw.world_params("lifecycle_control", "quick")["truth_window"] == 500  # the size's
    with pytest.raises(ValueError, match="unknown life-cycle world"):
        bw.world_params("default")


def test_worlds_share_the_log_and_only_the_control_keeps_evidence_in_the_window(worlds):
    life, ctrl = worlds["lifecycle"], worlds["lifecycle_control"]
    assert np.array_equal(life.log.item, ctrl.log.item)
    assert bw.old_share(ctrl, W) == 0.0 and bw.old_share(life, W) > 0.3
    assert bw.longest_history(life) <= SMALL["history_max"]
    idx = bw.eval_samples(life, 10)
    assert len(idx) == 10 and np.all(np.diff(life.relevant_ptr)[idx] > 0)
    assert set(idx) <= set(life.split_indices("test"))


def test_arm_settings():
    base = small_cfg("twin", W)
    arms = bw.arm_settings(base, W, 1500, {"block": 100, "cap": 10},
                           whole_train={"max_train_samples": 50})  # fmt: skip
    assert [s.label for s in arms] == list(bw.ARMS)
    by = {s.label: s for s in arms}
    assert by[bw.TWIN_WINDOW].model.long_len == W and by[bw.TWIN_V2].model.long_len == W
    assert by[bw.TWIN_WHOLE].model.long_len == by[bw.SIM_HARD_WHOLE].model.long_len == 1500
    assert by[bw.TWIN_V2].model.options == {"block": 100, "cap": 10}
    assert by[bw.TWIN_V2_NO_SIZE].model.options["size_bias"] is False
    assert dict(by[bw.TWIN_WHOLE].train) == {"max_train_samples": 50}
    assert all(not s.train for s in arms if s.label != bw.TWIN_WHOLE)  # the same budget
    assert all(s.model.k == base.k for s in arms)
    no_ablation = bw.arm_settings(base, W, 1500, {"block": 100}, ablation=False)
    assert bw.TWIN_V2_NO_SIZE not in [s.label for s in no_ablation]
    with pytest.raises(ValueError, match="block"):
        bw.arm_settings(base, W, 1500, {"block": W})
    with pytest.raises(ValueError, match="k"):
        bw.arm_settings(small_cfg("twin", W, k=400), W, 1500, {"block": 100})


def test_twin_on_the_window_reaches_nothing_older_and_matches_its_slots(worlds):
    ds = worlds["lifecycle"]
    m = model(ds, "twin", W)
    idx = bw.eval_samples(ds, 20)
    per = bw.gsu_reach(m, ds, idx, W)
    assert list(per["sample"]) == sorted(idx)  # every sample once
    assert (per["old_reached"] == 0).all() and (per["n_old"] > 0).any()
    assert (per["slots"] == per["covered"]).all() and (per["slots"] <= W).all()
    # The same count from the batch's own log positions (hist_pos), sample by sample.
    m.eval()
    batch = builder_for(m, ds).build(idx)
    sel, ok = m.gsu.select(m.gsu_input(batch), m.cfg.k)
    pos = batch.hist_pos[batch.req].numpy()
    for b, s in enumerate(batch.sample_idx.tolist()):
        rel = ds.relevant_idx[ds.relevant_ptr[s] : ds.relevant_ptr[s + 1]]
        chosen = pos[b, sel[b][ok[b]].numpy()]
        row = per.set_index("sample").loc[s]
        assert row["recent_reached"] == np.isin(rel, chosen).sum()


def test_a_gsu_that_keeps_everything_reaches_everything(worlds):
    ds = worlds["lifecycle"]
    L = bw.longest_history(ds)
    per = bw.gsu_reach(model(ds, "twin", L, k=L), ds, bw.eval_samples(ds, 10), W)
    assert (per["old_reached"] == per["n_old"]).all()
    assert (per["recent_reached"] == per["n_recent"]).all()


def test_a_selected_virtual_item_reaches_its_members(worlds):
    """gsu_reach (via cluster_of) = the slow way: every member of every selected cluster
    (``compressed.members``) plus the selected raw behaviours."""
    ds = worlds["lifecycle"]
    m = model(ds, "twin_v2", W, block=100, cap=10)
    idx = bw.eval_samples(ds, 12)
    per = bw.gsu_reach(m, ds, idx, W).set_index("sample")
    builder = builder_for(m, ds)
    batch = builder.build(idx)
    sel, ok = m.gsu.select(m.gsu_input(batch), m.cfg.k)
    pos, cluster = builder.slot_sources(batch.sample_idx.numpy())
    comp = builder.compressed
    old_total = 0
    for b, s in enumerate(batch.sample_idx.tolist()):
        r, slots = int(batch.req[b]), sel[b][ok[b]].numpy()
        reached = set(pos[r, slots][cluster[r, slots] < 0].tolist())
        for c in cluster[r, slots][cluster[r, slots] >= 0]:
            reached |= set(comp.members(int(c)).tolist())
        rel = ds.relevant_idx[ds.relevant_ptr[s] : ds.relevant_ptr[s + 1]]
        old = rel < ds.samples.hist_end[s] - W
        hit = np.isin(rel, list(reached))
        assert per.loc[s, "old_reached"] == (hit & old).sum()
        assert per.loc[s, "recent_reached"] == (hit & ~old).sum()
        old_total += (hit & old).sum()
    assert old_total > 0  # clusters do reach beyond the window
    assert (per["slots"] <= W).all() and (per["covered"] > per["slots"]).all()


def test_reach_columns(worlds):
    ds = worlds["lifecycle"]
    idx = bw.eval_samples(ds, 10)
    v2 = bw.reach_columns(model(ds, "twin_v2", W, block=100, cap=10), ds, idx, W)
    twin = bw.reach_columns(model(ds, "twin", W), ds, idx, W)
    assert set(v2) == set(bw.REACH_METRICS)
    assert 0 < v2["compression_ratio"] < 1 and v2["cluster_s_per_user"] >= 0
    assert np.isnan(twin["compression_ratio"]) and twin["recall_old"] == 0.0
    assert twin["slots_per_request"] == W and v2["covered_per_request"] > W
    assert v2["gsu_ms_per_request"] > 0
    ctrl = worlds["lifecycle_control"]
    c = bw.reach_columns(model(ctrl, "twin", W), ctrl, bw.eval_samples(ctrl, 10), W)
    assert np.isnan(c["recall_old"])  # nothing beyond the window on the control


def test_auc_by_kind_of_target(worlds):
    life, ctrl = worlds["lifecycle"], worlds["lifecycle_control"]
    dormant = bw.dormant_targets(life)
    assert dormant.shape == (len(life.split_indices("test")),)
    assert np.array_equal(dormant, bw.dormant_targets(ctrl))  # the worlds share their targets
    assert 0 < dormant.mean() < 1
    label = life.samples.label[life.split_indices("test")]
    got = bw.target_group_auc(life, label.astype(np.float64))  # a perfect score in each group
    for m, mask in zip(bw.GROUP_METRICS, (dormant, ~dormant), strict=True):
        expect = 1.0 if 0 < label[mask].sum() < mask.sum() else np.nan
        assert got[m] == pytest.approx(expect, nan_ok=True)
    with pytest.raises(ValueError, match="3 predictions for a test split of"):
        bw.target_group_auc(life, np.zeros(3))
    meta = {k: v for k, v in life.meta.items() if k != "target_dormant"}
    other = dataclasses.replace(life, meta=meta)  # e.g. a user's own log
    with pytest.raises(ValueError, match="does not record which targets are dormant"):
        bw.dormant_targets(other)


def fake_runs(v2_gain: float = 0.02, seeds: int = 3) -> pd.DataFrame:
    """A runs table as run_arms returns it: TWIN-V2 ahead on lifecycle only."""
    rows = []
    for world in bw.WORLDS:
        for seed in range(seeds):
            noise = 0.001 * seed
            auc = {
                bw.TWIN_WINDOW: 0.70,
                bw.TWIN_V2: 0.70 + noise / 10,
                bw.TWIN_V2_NO_SIZE: 0.69,
                bw.TWIN_WHOLE: 0.71,
                bw.SIM_HARD_WHOLE: 0.72,
            }
            if world == "lifecycle":
                auc[bw.TWIN_V2] += v2_gain + 0.002 * (seed % 2)
            ms = {bw.TWIN_WINDOW: 1.0, bw.TWIN_V2: 0.9 + noise, bw.TWIN_V2_NO_SIZE: 0.9,
                  bw.TWIN_WHOLE: 5.0 + noise, bw.SIM_HARD_WHOLE: 2.0}  # fmt: skip
            for arm in bw.ARMS:
                rows.append({"dataset": world, "model": arm, "seed": seed,
                             "auc": auc[arm] + noise, "gauc": auc[arm] + 2 * noise,
                             "recall_old": (0.0 if arm == bw.TWIN_WINDOW else 0.4 + noise)
                             if world == "lifecycle" else np.nan,
                             "gsu_ms_per_request": ms[arm]})  # fmt: skip
    return pd.DataFrame(rows)


def test_lifecycle_claims_read_the_numbers():
    found = {c.claim: c for c in lifecycle.lifecycle_claims(fake_runs())}
    assert len(found) == 8
    assert {c.verdict for c in found.values()} <= set(core.VERDICTS)
    better = found["TWIN-V2 > TWIN on the last window (AUC)"]
    assert better.verdict == core.REPRODUCED and better.kind == core.PAPER
    assert better.effect == pytest.approx(0.02, abs=1e-3) and better.n_seeds == 3
    assert found["cluster-aware attention helps (TWIN-V2 > w/o size bias)"].verdict == (
        core.REPRODUCED
    )
    widens = [c for n, c in found.items() if "larger on lifecycle" in n][0]
    assert widens.verdict == core.REPRODUCED and widens.kind == core.STUDY
    null = [c for n, c in found.items() if n.startswith("TWIN-V2 ≈ TWIN")][0]
    assert null.verdict == core.REPRODUCED and null.dataset == "lifecycle_control"
    cheaper = [c for n, c in found.items() if "whole history" in n][0]
    assert cheaper.verdict == core.REPRODUCED
    # No gain on lifecycle: the paper's main claim fails, the null still holds.
    worse = {c.claim: c for c in lifecycle.lifecycle_claims(fake_runs(v2_gain=-0.02))}
    assert worse["TWIN-V2 > TWIN on the last window (AUC)"].verdict == core.NOT_REPRODUCED
    # Arms that were not run leave their claims out.
    runs = fake_runs()
    partial = lifecycle.lifecycle_claims(runs[runs.model != bw.TWIN_V2_NO_SIZE])
    assert len(partial) == 7


def test_dormant_target_claims():
    """TWIN-V2 ahead on the dormant targets of lifecycle only: both claims reproduced; ahead
    on both worlds alike: the lead is no larger where the old evidence counts."""

    def with_dormant(gain_life: float, gain_ctrl: float) -> pd.DataFrame:
        runs = fake_runs()
        v2 = runs.model == bw.TWIN_V2
        life = runs.dataset == "lifecycle"
        gain = np.where(life, gain_life, gain_ctrl) * v2
        return runs.assign(auc_dormant=0.6 + gain + 0.001 * runs.seed * (1 + v2 * (runs.seed % 2)))

    def get(runs):
        found = {c.claim: c for c in lifecycle.lifecycle_claims(runs)}
        assert len(found) == 10
        better = found["TWIN-V2 > TWIN on the last window, on dormant-interest targets (AUC)"]
        widens = [c for n, c in found.items() if n.startswith("on dormant-interest targets")][0]
        return better, widens

    better, widens = get(with_dormant(0.05, 0.0))
    assert better.verdict == core.REPRODUCED and better.effect == pytest.approx(0.05, abs=2e-3)
    assert widens.verdict == core.REPRODUCED and widens.kind == core.STUDY
    better, widens = get(with_dormant(0.05, 0.05))
    assert better.verdict == core.REPRODUCED and widens.verdict != core.REPRODUCED


def test_relative_cost_and_the_reading():
    runs = fake_runs()
    rel = lifecycle.relative_cost(runs)
    assert (rel[runs.model == bw.TWIN_WINDOW] == 1.0).all()
    assert rel[runs.model == bw.TWIN_WHOLE].min() > 4.9
    summary = sweeps.summarize(runs, by=("dataset", "model"),
                               metrics=("auc", "gauc", "recall_old"))  # fmt: skip
    text = bw.verdict_markdown(summary, lifecycle.lifecycle_claims(runs), W)
    assert "**lifecycle**" in text and "No planted relevant behaviour lies beyond" in text
    assert "**Verdicts:**" in text
