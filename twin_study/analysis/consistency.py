"""GSU/ESU consistency (paper Fig. 1 and Fig. 4, RQ2).

Each trained two-stage model is its own oracle: its ESU's alpha (live parameters) over ALL L
behaviours, heads merged the way CP-GSU merges them, gives the "real top-k" (k = 100). For a
GSU output size x we count how many of the GSU's x behaviours fall inside that real top-k.
At x = 100 the paper reports TWIN 94, SIM Hard 40.

Beyond the paper: the share of the oracle's attention mass that each GSU's set captures, and,
on synthetic data, the recall of the planted truly relevant behaviours.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.batching import SampleBuilder
from ..data.schema import Dataset
from ..models.ctr import CTRModel
from ..models.gsu import CpGSU
from ..models.topk import ranked_merge
from ..training.train import train_step


@dataclass
class ConsistencyResult:
    sizes: list[int]
    hits: np.ndarray  # (n_samples, n_sizes) GSU outputs inside the oracle's real top-k
    oracle_k: int
    attention_mass: np.ndarray  # (n_samples,) oracle softmax mass inside the GSU's k set
    relevant_recall_gsu: np.ndarray | None = None  # (n_samples,) planted relevant in GSU set
    relevant_recall_oracle: np.ndarray | None = None  # (n_samples,) planted relevant in oracle
    extra: dict = field(default_factory=dict)

    def mean_hits(self) -> dict[int, float]:
        return {x: float(self.hits[:, i].mean()) for i, x in enumerate(self.sizes)}

    def hits_at(self, x: int) -> float:
        return float(self.hits[:, self.sizes.index(x)].mean())


def _nanmean(a: np.ndarray | None) -> float:
    return float(np.nanmean(a)) if a is not None and np.isfinite(a).any() else np.nan


def results_frame(results: Mapping[tuple[str, str, int], ConsistencyResult]) -> pd.DataFrame:
    """Tidy table of many runs keyed ``(dataset, model, seed)``: one row per GSU output size
    with the mean hits over the samples, and the run's mean attention mass and planted-relevance
    recalls (NaN without a planted truth) repeated on each row."""
    rows = []
    for (dataset, model, seed), r in results.items():
        run = {"dataset": dataset, "model": model, "seed": seed, "n_samples": len(r.hits),
               "attention_mass": _nanmean(r.attention_mass),
               "recall_gsu": _nanmean(r.relevant_recall_gsu),
               "recall_oracle": _nanmean(r.relevant_recall_oracle)}  # fmt: skip
        for i, x in enumerate(r.sizes):
            rows.append(run | {"size": x, "hits": float(r.hits[:, i].mean())})
    return pd.DataFrame(rows)


def eligible_samples(ds: Dataset, split: str, min_history: int, n: int, seed: int) -> np.ndarray:
    """Up to n samples of ``split`` whose visible history has at least ``min_history``
    behaviours (so a real top-100 exists), one per request, seeded."""
    idx = ds.split_indices(split)
    s = ds.samples
    length = s.hist_end[idx] - ds.log.user_ptr[s.user[idx]]
    idx = idx[length >= min_history]
    _, first = np.unique(s.request[idx], return_index=True)
    idx = idx[first]
    if len(idx) == 0:
        raise ValueError(f"no {split} sample has a history of >= {min_history} behaviours")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))


def _membership(sel: torch.Tensor, sel_valid: torch.Tensor, L: int) -> torch.Tensor:
    """(B, L) bool: slot is in the selected set."""
    out = torch.zeros(sel.shape[0], L + 1, dtype=torch.bool)
    out.scatter_(1, torch.where(sel_valid, sel, L), True)
    return out[:, :L]


@torch.no_grad()
def consistency(
    model: CTRModel,
    ds: Dataset,
    sample_idx: np.ndarray,
    sizes: list[int],
    oracle_k: int = 100,
    batch_size: int = 32,
    progress: bool = True,
) -> ConsistencyResult:
    """Hits of the model's GSU in its own ESU's real top-``oracle_k``, per GSU output size."""
    model.eval()
    model.prepare_eval()
    L = model.cfg.long_len
    builder = SampleBuilder(ds, L, model.cfg.short_len)
    sizes = sorted({min(int(x), L) for x in sizes})
    hits, mass, rec_g, rec_o, order = [], [], [], [], []
    truth = ds.relevant_ptr is not None
    bar = tqdm(total=len(sample_idx), desc=f"consistency {model.cfg.long_module}",
               disable=not progress, leave=False)  # fmt: skip
    for batch in builder.batches(sample_idx, batch_size, group_requests=False):
        o_scores, valid = model.oracle_scores(batch)  # (B, heads, L), (B, L)
        o_idx, o_valid = ranked_merge(o_scores, valid, oracle_k)
        in_oracle = _membership(o_idx, o_valid, valid.shape[1])
        g_scores, g_valid = model.gsu_scores(batch)
        # One ranking, read at every x as its first x entries (see topk.ranked_merge).
        ranked, ranked_ok = ranked_merge(g_scores, g_valid, max(sizes[-1], model.cfg.k))
        row = []
        for x in sizes:
            g_idx, g_ok = ranked[:, :x], ranked_ok[:, :x]
            row.append((in_oracle.gather(1, g_idx) & g_ok).sum(1))
        hits.append(torch.stack(row, 1))
        # Oracle attention mass (softmax over all L, averaged over heads) in the GSU's k set.
        g_idx, g_ok = ranked[:, : model.cfg.k], ranked_ok[:, : model.cfg.k]
        w = torch.softmax(o_scores.masked_fill(~valid[:, None, :], float("-inf")), dim=-1)
        w = torch.nan_to_num(w).mean(1)  # (B, L)
        mass.append((w.gather(1, g_idx) * g_ok).sum(1))
        if truth:
            rel = _relevant_slots(ds, batch)  # (B, L) bool
            n_rel = rel.sum(1).clamp(min=1)
            in_gsu = _membership(g_idx, g_ok, valid.shape[1])
            rec_g.append(torch.where(rel.any(1), (rel & in_gsu).sum(1) / n_rel, torch.nan))
            rec_o.append(torch.where(rel.any(1), (rel & in_oracle).sum(1) / n_rel, torch.nan))
        order.append(batch.sample_idx)
        bar.update(len(batch.target))
    bar.close()
    res = ConsistencyResult(
        sizes=sizes,
        hits=torch.cat(hits).numpy().astype(np.float64),
        oracle_k=oracle_k,
        attention_mass=torch.cat(mass).numpy(),
    )
    if truth:
        res.relevant_recall_gsu = torch.cat(rec_g).numpy()
        res.relevant_recall_oracle = torch.cat(rec_o).numpy()
    return res


def _relevant_slots(ds: Dataset, batch) -> torch.Tensor:
    """(B, L) True at slots holding one of the sample's planted relevant behaviours."""
    pos = batch.hist_pos[batch.req]  # (B, L) absolute log index, -1 = padding
    out = torch.zeros_like(pos, dtype=torch.bool)
    for b, s in enumerate(batch.sample_idx.tolist()):
        rel = ds.relevant_idx[ds.relevant_ptr[s] : ds.relevant_ptr[s + 1]]
        if len(rel):
            out[b] = torch.from_numpy(np.isin(pos[b].numpy(), rel))
    return out


def staleness_hits(
    model: CTRModel,
    ds: Dataset,
    sample_idx: np.ndarray,
    steps: list[int],
    lr: float = 1e-3,
    batch_size: int = 256,
    oracle_k: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict[int, float]:
    """Hits at GSU output ``oracle_k`` when the item cache is N training steps old.

    For each N: copy the trained TWIN, rebuild its cache, keep training N more steps on the
    training split WITHOUT refreshing the cache (as a serving cache lags the trainer), then
    measure hits of the stale-cache GSU against the live ESU.
    """
    if not isinstance(model.gsu, CpGSU):
        raise ValueError("staleness applies to TWIN's CP-GSU only")
    builder = SampleBuilder(ds, model.cfg.long_len, model.cfg.short_len)
    out: dict[int, float] = {}
    train_idx = ds.split_indices("train")
    for n in steps:
        m = copy.deepcopy(model)
        m.gsu.cache.rebuild(*m.gsu._src)
        m.gsu.cache.refresh_every = 10**12  # never refreshed from here on
        m.emb.sparse_grads = False  # plain Adam below: dense gradients
        m.train()
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
        done = 0
        while done < n:
            for batch in builder.batches(train_idx, batch_size, shuffle=True, seed=seed + done):
                train_step(m, batch, [opt])  # the cache clock advances, never rebuilds
                done += 1
                if done >= n:
                    break
        m.eval()
        r = consistency(m, ds, sample_idx, [oracle_k], oracle_k, progress=progress)
        out[n] = r.hits_at(oracle_k)
    return out
