"""Notebook 05's claim set: the paper's readings of Fig. 6 (ablations)."""

from __future__ import annotations

import pandas as pd

from .core import Claim, claim_better, claim_order, claim_similar

# Fig. 6 readings: (better, worse, short name, what the paper says).
ABLATION_BETTER = (
    ("TWIN", "TWIN w/o Para-Con", "Para-Con helps (TWIN > w/o Para-Con)",
     "sharing the ESU's parameters with the GSU helps"),
    ("TWIN w/o Para-Con", "SIM Soft", "structure helps (w/o Para-Con > SIM Soft)",
     "the GSU's structure matters more than shared parameters"),
    ("TWIN", "TWIN w/o Bias", "cross-feature bias helps (TWIN > w/o Bias)",
     "removing the cross features: clear GAUC drop"),
)  # fmt: skip


def ablation_claims(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    dataset: str,
    timing: pd.DataFrame | None = None,
    similar_tol: float = 0.002,
    z: float = 2.0,
) -> list[Claim]:
    """The paper's Fig. 6 readings on one data set, for the models that were run."""
    runs = runs[runs["dataset"] == dataset]
    summary = summary[summary["dataset"] == dataset]
    have = set(summary["model"])
    kw = {"z": z, "dataset": dataset}
    out = [
        claim_better(runs, a, b, claim=name, statement=said, **kw)
        for a, b, name, said in ABLATION_BETTER
        if {a, b} <= have
    ]
    order = ["SIM Soft", "TWIN w/o Para-Con", "TWIN"]
    if set(order) <= have:
        out.append(claim_order(summary, order, claim=" < ".join(order), statement="Fig. 6(a)",
                               dataset=dataset, runs=runs, z=z))  # fmt: skip
    raw = "TWIN w/ Raw MHTA"
    if {"TWIN", raw} <= have:
        said = "full projection of [K_h, K_c]: GAUC about the same"
        out.append(claim_similar(runs, raw, "TWIN", "gauc", similar_tol, **kw,
                                 claim="Raw MHTA: GAUC about the same",
                                 statement=said))  # fmt: skip
    if timing is not None and {"TWIN", raw} <= set(timing["model"]):
        t = timing[timing["dataset"] == dataset] if "dataset" in timing else timing
        t = t.groupby(["model", "seed"], as_index=False)["ms_per_1k"].median()
        said = "full projection: inference time much higher"
        out.append(claim_better(t, raw, "TWIN", "ms_per_1k", **kw,
                                claim="Raw MHTA: inference slower", statement=said))  # fmt: skip
    return out
