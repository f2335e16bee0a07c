"""Beyond the window: TWIN-V2 against TWIN on the life-cycle worlds (issue 26; notebook 09).

TWIN-V2 claims that compressing a user's whole life cycle into size-capped clusters lets a
GSU of TWIN's length reach interests older than TWIN's window, and that this beats TWIN at
about TWIN's serving cost. The life-cycle worlds (``data.synthetic.lifecycle_params``) plant
exactly that: in "lifecycle" dormant interests come back as targets whose click counts
behaviours far older than the window; in "lifecycle_control" the same log's click counts only
the last ``window`` behaviours, so nothing beyond it helps.

The pieces:

* ``world_params`` / ``load_worlds``: the two worlds at a size, with the control's truth
  window set to the study's window;
* ``arm_settings``: the arms at equal training budget: TWIN on the last ``window`` behaviours,
  TWIN-V2 over the compressed life cycle (GSU length ``window``), optionally TWIN-V2 without
  cluster-aware attention (``size_bias=False``), and TWIN and SIM Hard over the whole history
  (TWIN there at a budget of its own when given: a reduced, stated one);
* ``gsu_reach``: per test sample, what the trained GSU's selection reaches of the planted
  relevant behaviours, older than the window and inside it, with the slots it scores, the
  behaviours those slots stand for and the GSU select time; ``reach_columns`` sums it up per
  run (the sweep's ``on_run`` hook), with TWIN-V2's compression ratio and clustering time;
* ``run_arms``: every arm x seed on every world through ``sweeps.sweep`` (results cache,
  ``--jobs``), with those columns;
* ``verdict_markdown``: the reading in words, generated from the numbers.

The claims checked on these runs are in ``twin_study.claims.lifecycle``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..claims import core
from ..data import load_dataset
from ..data.lifecycle import LifecycleSampleBuilder
from ..data.schema import Dataset
from ..data.synthetic import lifecycle_params, relevant_beyond
from ..models.config import ModelConfig
from ..training.experiment import predictions_on_test
from ..training.metrics import auc
from ..training.train import builder_for
from . import sweeps

# Arm labels (the runs table's ``model`` column), in the order tables and figures show them.
TWIN_WINDOW = "TWIN, last window"
TWIN_V2 = "TWIN-V2"
TWIN_V2_NO_SIZE = "TWIN-V2 w/o size bias"
TWIN_WHOLE = "TWIN, whole history"
SIM_HARD_WHOLE = "SIM Hard, whole history"
ARMS = (TWIN_WINDOW, TWIN_V2, TWIN_V2_NO_SIZE, TWIN_WHOLE, SIM_HARD_WHOLE)
WORLDS = ("lifecycle", "lifecycle_control")

# Columns ``reach_columns`` adds to every run (NaN where they do not apply).
REACH_METRICS = (
    "recall_old",  # share of the planted relevant behaviours older than the window reached
    "recall_recent",  # the same for those inside the window
    "slots_per_request",  # behaviours (or virtual items) the GSU scores per request
    "covered_per_request",  # behaviours those slots stand for (raw: 1 each; cluster: its size)
    "gsu_ms_per_request",  # measured GSU select time per request (varies between reruns)
    "compression_ratio",  # TWIN-V2: virtual items per clustered behaviour
    "cluster_s_per_user",  # TWIN-V2: clustering seconds per user (users with a full block)
)
# Test AUC by kind of candidate (``target_group_auc``), also added to every run.
GROUP_METRICS = (
    "auc_dormant",  # candidates drawn from a dormant interest (their evidence is old)
    "auc_active",  # the other candidates
)


# --- the worlds ------------------------------------------------------------------------------


def world_params(
    world: str, size: str = "quick", window: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """``SyntheticConfig`` fields of one life-cycle world: ``lifecycle_params(world, size)``
    with ``overrides`` (e.g. fewer users), and for the control the truth window set to
    ``window`` (default: the size's own), so that "nothing beyond the window helps" holds for
    the window the arms use."""
    params = {**lifecycle_params(world, size), **overrides}
    if world == "lifecycle_control" and window is not None:
        params["truth_window"] = int(window)
    return params


def load_worlds(
    worlds: Iterable[str],
    size: str = "quick",
    window: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Dataset]:
    """Each named world generated (or loaded from the data cache), keyed by its name."""
    out = {}
    for w in worlds:
        out[w] = load_dataset("synthetic", **world_params(w, size, window, **dict(overrides or {})))
    if not out:
        raise ValueError(f"give at least one world of {WORLDS}")
    return out


def longest_history(ds: Dataset) -> int:
    """The longest visible history of any sample: a GSU of this length reads everything."""
    start = ds.log.user_ptr[ds.samples.user]
    return int((ds.samples.hist_end - start).max())


# --- the arms --------------------------------------------------------------------------------


def arm_settings(
    base: ModelConfig,
    window: int,
    whole_len: int,
    v2_options: Mapping[str, Any],
    ablation: bool = True,
    whole_train: Mapping[str, Any] | None = None,
) -> list[sweeps.Setting]:
    """The arms, all from ``base`` (same k, heads, sizes), tagged with ``arm`` (short name) and
    ``long_len``. ``v2_options``: TWIN-V2's ``TwinV2Options`` (``block`` below ``window``);
    ``ablation``: add TWIN-V2 without cluster-aware attention; ``whole_train``: TrainConfig
    overrides of TWIN over the whole history (its reduced budget; None: the common one)."""
    if window < base.k:
        raise ValueError(f"window ({window}) must be >= k ({base.k})")
    if whole_len < window:
        raise ValueError(f"the whole history ({whole_len}) is shorter than the window ({window})")
    v2 = dict(v2_options)
    if int(v2.get("block", 256)) >= window:
        raise ValueError(f"TWIN-V2's block ({v2.get('block', 256)}) must be below the window "
                         f"({window}): a request's raw part takes up to a block")  # fmt: skip

    def cfg(module: str, L: int, **options: Any) -> ModelConfig:
        return dataclasses.replace(base, long_module=module, long_len=L, options=options)

    S = sweeps.Setting
    out = [
        S(TWIN_WINDOW, cfg("twin", window), {"arm": "twin_window", "long_len": window}),
        S(TWIN_V2, cfg("twin_v2", window, **v2), {"arm": "twin_v2", "long_len": window}),
    ]
    if ablation:
        out.append(S(TWIN_V2_NO_SIZE, cfg("twin_v2", window, **v2, size_bias=False),
                     {"arm": "twin_v2_no_size", "long_len": window}))  # fmt: skip
    out += [
        S(TWIN_WHOLE, cfg("twin", whole_len), {"arm": "twin_whole", "long_len": whole_len},
          dict(whole_train or {})),
        S(SIM_HARD_WHOLE, cfg("sim_hard", whole_len),
          {"arm": "sim_hard_whole", "long_len": whole_len}),
    ]  # fmt: skip
    return out


# --- what the GSU reaches ---------------------------------------------------------------------


def eval_samples(ds: Dataset, n: int, split: str = "test", seed: int = 0) -> np.ndarray:
    """Up to ``n`` samples of ``split`` (seeded, sorted) with at least one planted relevant
    behaviour: the samples the recalls are measured on (on the control world none of them
    lies beyond the window, so its old-recall is NaN)."""
    if ds.relevant_ptr is None:
        raise ValueError(f"data set {ds.name!r} has no planted relevant behaviours")
    idx = ds.split_indices(split)
    idx = idx[np.diff(ds.relevant_ptr)[idx] > 0]
    if not len(idx):
        raise ValueError(f"no {split} sample of {ds.name!r} has a planted relevant behaviour")
    if n and len(idx) > n:
        idx = np.random.default_rng(seed).choice(idx, n, replace=False)
    return np.sort(idx)


def old_share(ds: Dataset, window: int, split: str = "test") -> float:
    """Share of ``split``'s planted relevant behaviours (pooled) older than ``window``: what
    a window-``window`` GSU cannot see (0 on the control world by construction)."""
    idx = ds.split_indices(split)
    n = np.diff(ds.relevant_ptr)[idx].sum()
    return float(relevant_beyond(ds, idx, window).sum() / n) if n else float("nan")


def _sources(builder, batch, sample_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """(R, W) log index and cluster id (-1: raw) behind each slot of ``batch``, and the
    compressed log's ``cluster_of`` (None for a raw batch)."""
    if isinstance(builder, LifecycleSampleBuilder):
        pos, cluster = builder.slot_sources(sample_idx)
        return pos, cluster, builder.compressed.cluster_of
    pos = batch.hist_pos.numpy()
    return pos, np.full_like(pos, -1), None


@torch.no_grad()
def gsu_reach(
    model: Any, ds: Dataset, sample_idx: np.ndarray, window: int, batch_size: int = 64
) -> pd.DataFrame:
    """What the trained GSU's k selected slots reach, per sample of ``sample_idx``.

    A selected raw slot reaches its behaviour (log index ``hist_end - 1 - slot``); a selected
    virtual item reaches every member of its cluster (``slot_sources`` names the cluster; a
    behaviour is reached when ``compressed.cluster_of`` of it is a selected cluster: the
    inverse of ``compressed.members``). Relevant = the planted truth (``ds.relevant_idx``);
    "old" = older than the last ``window`` behaviours before the request.

    Columns: ``sample, n_old, old_reached, n_recent, recent_reached, slots, covered,
    gsu_seconds`` (``slots``: valid slots the GSU scored for the sample's request;
    ``covered``: behaviours behind them; ``gsu_seconds``: the request's share of its batch's
    GSU select time, so the column sums to the time spent)."""
    if ds.relevant_ptr is None or ds.relevant_idx is None:
        raise ValueError(f"data set {ds.name!r} has no planted relevant behaviours")
    if model.gsu is None:
        raise ValueError(f"{model.cfg.long_module} has no GSU to select with")
    model.eval()
    model.prepare_eval()
    builder = builder_for(model, ds)
    rows, warm = [], False
    for batch in builder.batches(np.asarray(sample_idx, dtype=np.int64), batch_size):
        x = model.gsu_input(batch)
        if not warm:  # the first call may build a native kernel or a cache: not timed
            model.gsu.select(x, model.cfg.k)
            warm = True
        t0 = time.perf_counter()
        sel, ok = model.gsu.select(x, model.cfg.k)  # (B, k) slots of each sample's row
        seconds = time.perf_counter() - t0
        samples = batch.sample_idx.numpy()
        pos, cluster, cluster_of = _sources(builder, batch, samples)
        req = batch.req.numpy()
        size = np.ones(pos.shape) if batch.hist_size is None else batch.hist_size.numpy()
        valid = pos >= 0
        per_req = seconds / len(pos)
        sel, ok = sel.numpy(), ok.numpy()
        for b, s in enumerate(samples):
            r = req[b]
            slots = sel[b][ok[b]]
            raw = pos[r, slots][cluster[r, slots] < 0]
            clusters = cluster[r, slots][cluster[r, slots] >= 0]
            rel = ds.relevant_idx[ds.relevant_ptr[s] : ds.relevant_ptr[s + 1]]
            reached = np.isin(rel, raw)
            if cluster_of is not None and len(clusters):
                reached |= np.isin(cluster_of[rel], clusters) & (cluster_of[rel] >= 0)
            old = rel < ds.samples.hist_end[s] - window
            rows.append((int(s), int(old.sum()), int((reached & old).sum()),
                         int((~old).sum()), int((reached & ~old).sum()), int(valid[r].sum()),
                         float(size[r][valid[r]].sum()), per_req / np.sum(req == r)))  # fmt: skip
    return pd.DataFrame(rows, columns=["sample", "n_old", "old_reached", "n_recent",
                                       "recent_reached", "slots", "covered",
                                       "gsu_seconds"])  # fmt: skip


def _share(reached: pd.Series, n: pd.Series) -> float:
    """Mean over samples with n > 0 of reached / n (NaN when none has any)."""
    keep = n > 0
    return float((reached[keep] / n[keep]).mean()) if keep.any() else float("nan")


def reach_columns(model: Any, ds: Dataset, sample_idx: np.ndarray, window: int) -> dict[str, float]:
    """One run's ``REACH_METRICS``: ``gsu_reach`` summed up (recalls as the mean per-sample
    share; slots, covered behaviours and GSU time per request), and for TWIN-V2 the
    compression ratio and the mean clustering time per user of the clusters it served with."""
    per = gsu_reach(model, ds, sample_idx, window)
    per_request = per.groupby(ds.samples.request[per["sample"].to_numpy()])
    out = {
        "recall_old": _share(per["old_reached"], per["n_old"]),
        "recall_recent": _share(per["recent_reached"], per["n_recent"]),
        "slots_per_request": float(per_request["slots"].first().mean()),
        "covered_per_request": float(per_request["covered"].first().mean()),
        "gsu_ms_per_request": 1000 * float(per["gsu_seconds"].sum()) / per_request.ngroups,
        "compression_ratio": float("nan"),
        "cluster_s_per_user": float("nan"),
    }
    clusters = getattr(model.gsu, "clusters", None)
    if clusters is not None:
        comp = clusters(ds)
        out["compression_ratio"] = float(comp.ratio)
        timed = comp.seconds[np.diff(comp.block_ptr) > 0]
        out["cluster_s_per_user"] = float(timed.mean()) if len(timed) else float("nan")
    return out


def dormant_targets(ds: Dataset, split: str = "test") -> np.ndarray:
    """(n_split,) bool, in ``split``'s order: the candidate was drawn from one of the user's
    dormant interests (``meta["target_dormant"]``, written by the generator). The flag is the
    same in "lifecycle" and its control, which share every target: on "lifecycle" these are
    the candidates whose evidence lies beyond the window; on the control their click ignores
    that evidence. Comparing the two isolates what old evidence is worth."""
    if "target_dormant" not in ds.meta:
        raise ValueError(f"data set {ds.name!r} does not record which targets are dormant "
                         "(a synthetic world with meta['target_dormant'])")  # fmt: skip
    return np.asarray(ds.meta["target_dormant"], dtype=bool)[ds.split_indices(split)]


def _auc_or_nan(label: np.ndarray, prob: np.ndarray) -> float:
    """AUC, or NaN for a group without both labels (too small a world to split)."""
    return auc(label, prob) if 0 < label.sum() < len(label) else float("nan")


def target_group_auc(ds: Dataset, prob: np.ndarray) -> dict[str, float]:
    """``auc_dormant`` / ``auc_active``: test AUC of ``prob`` (the test split's click
    probabilities, in split order) on the dormant-interest candidates and on the others."""
    label = ds.samples.label[ds.split_indices("test")]
    if len(prob) != len(label):
        raise ValueError(f"{len(prob)} predictions for a test split of {len(label)}")
    dormant = dormant_targets(ds)
    return {"auc_dormant": _auc_or_nan(label[dormant], prob[dormant]),
            "auc_active": _auc_or_nan(label[~dormant], prob[~dormant])}  # fmt: skip


# --- the sweep -------------------------------------------------------------------------------


def run_arms(
    worlds: Mapping[str, Dataset],
    settings: Mapping[str, Sequence[sweeps.Setting]],
    seeds: Iterable[int],
    train,
    window: int,
    n_eval: int = 200,
    jobs: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Every arm x seed on every world (``settings[world]``: the arms, whose whole-history
    length depends on the world), trained through the results cache (``--jobs``), each run
    measured by ``reach_columns`` on up to ``n_eval`` test samples with a planted relevant
    behaviour, and its test AUC split by ``dormant_targets``. One row per (world, arm, seed):
    the sweep's columns plus ``REACH_METRICS``."""
    seeds = list(seeds)
    frames = []
    for name, ds in worlds.items():
        idx = eval_samples(ds, n_eval)

        def measure(setting, seed, res, ds=ds, idx=idx):
            prob = predictions_on_test(ds, res, setting.train_config(train, seed))
            return reach_columns(res.model, ds, idx, window) | target_group_auc(ds, prob)

        frames.append(sweeps.sweep(ds, settings[name], seeds, train, jobs=jobs, on_run=measure,
                                   progress=progress))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


# --- the reading -----------------------------------------------------------------------------


def cost_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per world and arm: slots scored and behaviours covered per request (analytic: they
    follow from the window, the history and the clusters), measured GSU time per request, and
    TWIN-V2's compression ratio and clustering time per user (mean over seeds)."""
    cols = ["dataset", "model", "long_len", *[f"{m}_mean" for m in REACH_METRICS[2:]]]
    out = summary[cols].copy()
    out.columns = [c.removesuffix("_mean") for c in cols]
    return out


def verdict_markdown(summary: pd.DataFrame, found: Sequence[Any], window: int) -> str:
    """The section's reading in words from ``summary`` (``sweeps.summarize`` by dataset and
    model over ``auc, gauc`` and ``REACH_METRICS``) and the claims' verdicts."""
    lines = []
    for name, g in summary.groupby("dataset", sort=False):
        g = g.set_index("model")
        parts = [f"{m} {r.auc_mean:.4f}" + (f" ± {r.auc_std:.4f}" if np.isfinite(r.auc_std)
                                             else "") for m, r in g.iterrows()]  # fmt: skip
        recall = [f"{m} {r.recall_old_mean:.2f}" for m, r in g.iterrows()
                  if np.isfinite(r.recall_old_mean)]  # fmt: skip
        reach = (f"Share of the planted relevant behaviours older than the window ({window:,}) "
                 "that the GSU reaches: " + "; ".join(recall) + "." if recall else
                 "No planted relevant behaviour lies beyond the window here.")  # fmt: skip
        lines.append(f"**{name}**: test AUC " + "; ".join(parts) + ". " + reach)
    if found:
        lines.append(core.verdicts_line(found))
    return "\n\n".join(lines)
