"""Notebook 04's claim set: the paper's readings of Fig. 5 (sequence length)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..analysis.sweeps import HIGHER_IS_BETTER
from .core import Claim, claim_better, claim_gap_widens, claim_trend, combine


def length_claims(
    runs: pd.DataFrame,
    dataset: str,
    x: str = "long_len",
    metric: str = "gauc",
    fixed: Iterable[str] = ("DIN",),
    z: float = 2.0,
) -> list[Claim]:
    """The paper's Fig. 5 readings on one data set: every model improves from the shortest
    to the longest ``x`` (models in ``fixed`` read the same behaviours at every length and
    are left out), TWIN's lead widens, and TWIN leads at every length (one part per length:
    TWIN against the best other model there; a lead at the longest length alone does not
    make "every length")."""
    runs = runs[runs["dataset"] == dataset]
    lo, hi = runs[x].min(), runs[x].max()
    models = list(dict.fromkeys(runs["model"]))
    out = []
    growing = [m for m in models if m not in set(fixed)]
    if growing and lo != hi:
        kw = {"metric": metric, "z": z, "dataset": dataset}
        parts = [claim_trend(runs, m, x, lo, hi, **kw) for m in growing]
        out.append(
            combine(
                parts,
                f"every model improves with {x}",
                "all models improve as the GSU input grows (output fixed)",
                dataset,
            )
        )
    others = [m for m in models if m != "TWIN"]
    if "TWIN" in models and others and lo != hi:
        parts = [
            claim_gap_widens(runs, "TWIN", m, x, lo, hi, metric=metric, z=z, dataset=dataset)
            for m in others
        ]
        out.append(
            combine(
                parts,
                f"TWIN's lead widens with {x}",
                "TWIN's advantage grows with the sequence length",
                dataset,
            )
        )
    if "TWIN" in models and others:
        parts = []
        for L in sorted(runs[x].unique()):
            at = runs[runs[x] == L].groupby("model")[metric].mean().drop("TWIN", errors="ignore")
            if "TWIN" not in set(runs.loc[runs[x] == L, "model"]) or at.empty:
                continue
            best = str(at.idxmax() if HIGHER_IS_BETTER.get(metric, True) else at.idxmin())
            c = claim_better(runs, {"model": "TWIN", x: L}, {"model": best, x: L}, metric,
                             z=z, dataset=dataset)  # fmt: skip
            c.claim = f"{x} = {L} vs {best}"
            parts.append(c)
        out.append(combine(
            parts, f"TWIN leads at every {x} (vs the best other model at each)",
            "TWIN leads at every length, most at the longest", dataset,
        ))  # fmt: skip
    return out
