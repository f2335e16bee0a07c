"""The panel's analysis plan (declared in ``panel.yaml``'s ``analysis`` block).

Per world and rival, the effect is TWIN's test metric minus the rival's, averaged over the
world's draws and the training seeds. Its interval comes from a hierarchical bootstrap that
resamples every source of variance the conclusion generalises over:

1. the world draws (with replacement);
2. within each drawn world: the training seeds (with replacement), paired across models (seed
   s of TWIN against seed s of the rival), and the test users (with replacement; the same
   resampled users score every model, so the difference is paired).

A resampled user brings all of their test samples. Nothing is re-sorted per replicate:
``Scorer`` sorts each run's scores once and a replicate only re-weights the samples (AUC) or
the users (GAUC, the sample-count-weighted mean of per-user AUCs), so the weighted statistics
equal the ones computed on the materialised resample (tested), at O(n) per replicate.

Also reported per world: t over draws (mean of the per-draw effects over its standard error,
df = draws - 1: the honest degrees of freedom for a claim about the world, not one draw of it),
and the share of the Avg-Pooling -> Bayes-optimal AUC gap each model closes, on the same test
samples. Across worlds: wins / ties / losses of TWIN against each rival, the mean effect over
worlds (each world weighs the same) and TWIN's rank in each world.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..claims import core
from ..training.metrics import grouped_auc  # the study's one rank-AUC implementation

WIN, TIE, LOSS = "win", "tie", "loss"


class Scorer:
    """One run's test scores, prepared for weighted AUC and GAUC under resampling.

    ``user``: (n,) user index in ``0 .. n_users - 1`` (dense); ``label``: (n,) 0/1;
    ``score``: (n,) scores. ``auc(w)`` takes per-*user* multiplicities (n_users,).
    """

    def __init__(self, user: np.ndarray, label: np.ndarray, score: np.ndarray, n_users: int):
        score = np.asarray(score, dtype=np.float64)
        if np.isnan(score).any():
            raise ValueError("Scorer: the scores contain NaN")
        order = np.argsort(score, kind="stable")
        s = score[order]
        self.user = np.asarray(user)[order]  # (n,) sorted by score
        self.pos = (np.asarray(label)[order] > 0).astype(np.float64)
        new_block = np.r_[True, s[1:] != s[:-1]]  # a tie block: a run of equal scores
        self.block = np.cumsum(new_block) - 1  # (n,)
        self.n_blocks = int(self.block[-1]) + 1 if len(s) else 0
        self.n_users = n_users
        # Per-user AUC and sample count (users with both labels), for GAUC.
        u_orig = np.asarray(user)
        a, size = grouped_auc(u_orig, label, score)
        users_both = _users_with_both(u_orig, np.asarray(label), n_users)
        self.user_auc = np.zeros(n_users)
        self.user_n = np.zeros(n_users)
        self.user_auc[users_both] = a
        self.user_n[users_both] = size

    def auc(self, w_user: np.ndarray | None = None) -> float:
        """Weighted Mann-Whitney AUC: a sample weighs its user's multiplicity."""
        w = np.ones(len(self.pos)) if w_user is None else w_user[self.user].astype(np.float64)
        wp, wn = w * self.pos, w * (1.0 - self.pos)
        bp = np.bincount(self.block, weights=wp, minlength=self.n_blocks)
        bn = np.bincount(self.block, weights=wn, minlength=self.n_blocks)
        below = np.cumsum(bn) - bn  # negative weight strictly below each block
        total_p, total_n = bp.sum(), bn.sum()
        if total_p == 0 or total_n == 0:
            return float("nan")
        return float(np.sum(bp * (below + 0.5 * bn)) / (total_p * total_n))

    def gauc(self, w_user: np.ndarray | None = None) -> float:
        w = self.user_n if w_user is None else self.user_n * w_user
        tot = w.sum()
        return float(np.sum(w * self.user_auc) / tot) if tot > 0 else float("nan")

    def metric(self, name: str, w_user: np.ndarray | None = None) -> float:
        if name == "auc":
            return self.auc(w_user)
        if name == "gauc":
            return self.gauc(w_user)
        raise ValueError(f"unknown panel metric {name!r}; choose auc or gauc")


def _users_with_both(user: np.ndarray, label: np.ndarray, n_users: int) -> np.ndarray:
    """Sorted user indices having both labels (the order ``grouped_auc`` returns them in)."""
    npos = np.bincount(user, weights=label > 0, minlength=n_users)
    n = np.bincount(user, minlength=n_users)
    return np.flatnonzero((npos > 0) & (npos < n))


@dataclass
class Draw:
    """One draw of a world: its test set and every run's test scores."""

    user: np.ndarray  # (n,) dense user index 0 .. n_users - 1
    label: np.ndarray  # (n,)
    scores: Mapping[tuple[str, int], np.ndarray]  # (model, training seed) -> (n,)
    p_true: np.ndarray | None = None  # (n,) planted click probability, when known
    scorers: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, user, label, scores, p_true=None) -> Draw:
        _, dense = np.unique(np.asarray(user), return_inverse=True)
        return cls(dense, np.asarray(label), dict(scores), p_true)

    @property
    def n_users(self) -> int:
        return int(self.user.max()) + 1 if len(self.user) else 0

    def scorer(self, key) -> Scorer:
        if key not in self.scorers:
            score = self.p_true if key == "bayes" else self.scores[key]
            self.scorers[key] = Scorer(self.user, self.label, score, self.n_users)
        return self.scorers[key]


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    return float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a))


def verdict_of(lo: float, hi: float) -> str:
    """The declared per-world rule: win when the interval lies above 0, loss below, else tie."""
    if math.isfinite(lo) and lo > 0:
        return WIN
    if math.isfinite(hi) and hi < 0:
        return LOSS
    return TIE


def t_over_draws(per_draw: Sequence[float]) -> tuple[float, int, float]:
    """(t, df, two-sided p) of the per-draw effects against 0; NaN with one draw."""
    x = np.asarray(per_draw, dtype=float)
    if len(x) < 2 or np.std(x, ddof=1) == 0:
        return float("nan"), len(x) - 1, float("nan")
    t = float(x.mean() / (x.std(ddof=1) / math.sqrt(len(x))))
    return t, len(x) - 1, float(2 * scipy_stats.t.sf(abs(t), len(x) - 1))


def world_effects(
    draws: Sequence[Draw],
    models: Sequence[str],
    seeds: Sequence[int],
    reference: str = "TWIN",
    metrics: Sequence[str] = ("auc", "gauc"),
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """TWIN (``reference``) minus every other model in one world, with the hierarchical
    bootstrap interval, the verdict, and t over draws.

    Rows: rival, metric, effect, lo, hi, verdict, t, df, p, per_draw (list), n_draws,
    n_seeds."""
    if not draws:
        raise ValueError("world_effects: no draws")
    rivals = [m for m in models if m != reference]
    seeds = list(seeds)
    # Point values: every (draw, model, seed, metric) on the full test set.
    point = {
        (d, m, s, k): draws[d].scorer((m, s)).metric(k)
        for d in range(len(draws)) for m in models for s in seeds for k in metrics
    }  # fmt: skip
    rng = np.random.default_rng(seed)
    boot = {(r, k): np.empty(n_boot) for r in rivals for k in metrics}
    for b in range(n_boot):
        sums = {key: 0.0 for key in boot}
        picked = rng.integers(0, len(draws), len(draws))
        count = 0
        for d in picked:
            dr = draws[d]
            w = np.bincount(rng.integers(0, dr.n_users, dr.n_users), minlength=dr.n_users)
            for s in rng.choice(seeds, len(seeds)):
                vals = {(m, k): dr.scorer((m, int(s))).metric(k, w) for m in models
                        for k in metrics}  # fmt: skip
                for r, k in boot:
                    sums[(r, k)] += vals[(reference, k)] - vals[(r, k)]
                count += 1
        for key in boot:
            boot[key][b] = sums[key] / count
    rows = []
    for r in rivals:
        for k in metrics:
            per_draw = [
                float(np.mean([point[(d, reference, s, k)] - point[(d, r, s, k)] for s in seeds]))
                for d in range(len(draws))
            ]
            lo, hi = _interval(boot[(r, k)], level)
            t, df, p = t_over_draws(per_draw)
            rows.append({"rival": r, "metric": k, "effect": float(np.mean(per_draw)),
                         "lo": lo, "hi": hi, "verdict": verdict_of(lo, hi), "t": t, "df": df,
                         "p": p, "per_draw": per_draw, "n_draws": len(draws),
                         "n_seeds": len(seeds)})  # fmt: skip
    return pd.DataFrame(rows)


def world_metrics(
    draws: Sequence[Draw], models: Sequence[str], seeds: Sequence[int]
) -> pd.DataFrame:
    """Per model: mean and std over (draw, seed) of test AUC and GAUC, and the rank by AUC."""
    rows = []
    for m in models:
        vals = {k: [draws[d].scorer((m, s)).metric(k) for d in range(len(draws)) for s in seeds]
                for k in ("auc", "gauc")}  # fmt: skip
        rows.append({"model": m, **{f"{k}_mean": float(np.mean(v)) for k, v in vals.items()},
                     **{f"{k}_std": float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
                        for k, v in vals.items()}, "n_runs": len(vals["auc"])})  # fmt: skip
    out = pd.DataFrame(rows)
    out["rank_auc"] = out["auc_mean"].rank(ascending=False, method="min").astype(int)
    out["rank_gauc"] = out["gauc_mean"].rank(ascending=False, method="min").astype(int)
    return out


def gap_closure(
    draws: Sequence[Draw],
    models: Sequence[str],
    seeds: Sequence[int],
    baseline: str = "Avg-Pooling",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame | None:
    """Share of the baseline -> Bayes-optimal test AUC gap each model closes, paired by draw
    and seed on the same test samples; bootstrap interval as in ``world_effects``. None when a
    draw has no planted truth (real data)."""
    if any(d.p_true is None for d in draws):
        return None

    def closure(d: int, m: str, s: int, w=None) -> float:
        dr = draws[d]
        base = dr.scorer((baseline, s)).auc(w)
        gap = dr.scorer("bayes").auc(w) - base
        return (dr.scorer((m, s)).auc(w) - base) / gap if gap > 0 else float("nan")

    rng = np.random.default_rng(seed + 1)
    boot = {m: np.empty(n_boot) for m in models}
    for b in range(n_boot):
        acc = {m: [] for m in models}
        for d in rng.integers(0, len(draws), len(draws)):
            dr = draws[d]
            w = np.bincount(rng.integers(0, dr.n_users, dr.n_users), minlength=dr.n_users)
            for s in rng.choice(list(seeds), len(seeds)):
                for m in models:
                    acc[m].append(closure(int(d), m, int(s), w))
        for m in models:
            boot[m][b] = np.nanmean(acc[m]) if np.isfinite(acc[m]).any() else np.nan
    bayes = float(np.mean([dr.scorer("bayes").auc() for dr in draws]))
    rows = []
    for m in models:
        vals = [closure(d, m, s) for d in range(len(draws)) for s in seeds]
        lo, hi = _interval(boot[m], level)
        rows.append({"model": m, "closure": float(np.nanmean(vals)), "lo": lo, "hi": hi,
                     "bayes_auc": bayes})  # fmt: skip
    return pd.DataFrame(rows)


def across_worlds(
    effects: pd.DataFrame, ranks: pd.DataFrame, reference: str = "TWIN"
) -> pd.DataFrame:
    """The summary of TWIN against each rival over the worlds.

    ``effects``: ``world_effects`` rows with a ``world`` column; ``ranks``: ``world_metrics``
    rows with a ``world`` column. Rows per (rival, metric): wins, ties, losses, the mean
    effect over worlds (equal weight), its min and max, and the worlds of each verdict."""
    rows = []
    for (r, k), g in effects.groupby(["rival", "metric"], sort=False):
        rows.append({
            "rival": r, "metric": k,
            "wins": int((g.verdict == WIN).sum()), "ties": int((g.verdict == TIE).sum()),
            "losses": int((g.verdict == LOSS).sum()), "n_worlds": int(len(g)),
            "mean_effect": float(g.effect.mean()), "min_effect": float(g.effect.min()),
            "max_effect": float(g.effect.max()),
            "won_in": ", ".join(g.world[g.verdict == WIN]),
            "lost_in": ", ".join(g.world[g.verdict == LOSS]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def reference_ranks(ranks: pd.DataFrame, reference: str = "TWIN") -> pd.DataFrame:
    """TWIN's rank (by mean test AUC and GAUC) in each world, out of how many models."""
    g = ranks.groupby("world", sort=False)
    n = g["model"].count()
    mine = ranks[ranks.model == reference].set_index("world")
    return pd.DataFrame({"world": mine.index, "rank_auc": mine.rank_auc.to_numpy(),
                         "rank_gauc": mine.rank_gauc.to_numpy(),
                         "n_models": n.loc[mine.index].to_numpy()})  # fmt: skip


def headline(summary: pd.DataFrame, ranks: pd.DataFrame, n_worlds: int, level: float,
             reference: str = "TWIN", metric: str = "auc",
             missing: Sequence[str] = ()) -> str:  # fmt: skip
    """The README's first results paragraph, written from the across-world summary alone;
    ``missing``: declared worlds without results yet (said first, so a partial panel never
    reads as the whole)."""
    s = summary[summary.metric == metric]
    r = reference_ranks(ranks, reference)
    firsts = int((r.rank_auc == 1).sum())
    rank_txt = ", ".join(f"{w} {int(a)}" for w, a in zip(r.world, r.rank_auc, strict=True))
    parts = []
    for row in s.itertuples():
        parts.append(
            f"{row.rival}: {row.wins} win(s), {row.ties} tie(s), {row.losses} loss(es), "
            f"mean {row.mean_effect:+.4f} (range {row.min_effect:+.4f} to {row.max_effect:+.4f})"
        )
    beats_all = s[(s.losses == 0) & (s.wins == s.n_worlds)]
    loses = s[s.losses > 0]
    verdict = (
        f"{reference} beats every rival in every world"
        if len(beats_all) == len(s)
        else f"{reference} beats no rival in every world"
        if beats_all.empty
        else f"{reference} beats {', '.join(beats_all.rival)} in every world, but not the others"
    )
    if not loses.empty:
        verdict += (
            f"; it loses to {', '.join(f'{x.rival} ({x.lost_in})' for x in loses.itertuples())}"
        )
    partial = (
        f"**Partial panel: {n_worlds} of {n_worlds + len(missing)} declared worlds have run** "
        f"(not yet: {', '.join(missing)}). "
        if missing
        else ""
    )
    return partial + (
        f"**Across the panel's {n_worlds} worlds** ({metric.upper()}, {reference} minus each "
        f"rival; a world counts as a win or a loss when its {level:.0%} hierarchical-bootstrap "
        f"interval — world draws, training seeds and test users resampled — excludes zero): "
        f"{verdict}. Per rival: {'; '.join(parts)}. {reference} ranks first by mean test "
        f"{metric.upper()} in {firsts} of {len(r)} worlds (rank per world: {rank_txt})."
    )


def panel_claims(
    summary: pd.DataFrame, reference: str = "TWIN", n_seeds: int = 2, missing: Sequence[str] = ()
) -> list:
    """The paper's "TWIN beats every baseline" judged per rival and metric across the worlds,
    by the rule declared in panel.yaml: *reproduced* when TWIN wins in every world; *partly*
    when it loses in none, wins in at least one and its mean effect is > 0; *not
    reproduced* otherwise. ``summary``: ``across_worlds`` rows. With declared worlds
    ``missing`` (a partial panel) *reproduced* is capped at *partly*: the claim is about every
    world. Returns ``core.Claim``s (kind paper, rule "all": one per rival and metric,
    dataset "panel")."""
    out = []
    for r in summary.itertuples():
        if r.wins == r.n_worlds:
            verdict = core.REPRODUCED
        elif r.losses == 0 and r.wins >= 1 and r.mean_effect > 0:
            verdict = core.PARTLY
        else:
            verdict = core.NOT_REPRODUCED
        detail = f"{r.wins} win(s), {r.ties} tie(s), {r.losses} loss(es) over {r.n_worlds} worlds"
        if r.lost_in:
            detail += f"; lost in {r.lost_in}"
        if missing:
            verdict = core.PARTLY if verdict == core.REPRODUCED else verdict
            detail += f"; partial panel, not yet run: {', '.join(missing)}"
        out.append(core.Claim(
            claim=f"{reference} > {r.rival} across worlds ({r.metric.upper()})",
            statement="TWIN beats every baseline of Table 4",
            verdict=verdict, effect=float(r.mean_effect),
            spread=float(r.max_effect - r.min_effect), n_seeds=n_seeds,
            metric=f"{r.metric} (mean over worlds; spread = range)", detail=detail,
            dataset="panel", kind=core.PAPER, rule=core.ALL,
        ))  # fmt: skip
    return out
