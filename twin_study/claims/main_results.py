"""Notebooks 03 and 07's claim set: the paper's readings of Table 4, and the study's bar on
the share of the Avg-Pooling -> Bayes-optimal gap that trained TWIN closes."""

from __future__ import annotations

import pandas as pd

from ..paper import FINER_RETRIEVAL, TABLE4_ORDER, TWIN_OVER_SIM_SOFT_PCT
from .core import STUDY, Claim, claim_at_least, claim_better, claim_order, combine


def table4_claims(
    runs: pd.DataFrame, summary: pd.DataFrame, dataset: str, z: float = 2.0
) -> list[Claim]:
    """The paper's readings of Table 4, checked on one data set's runs."""
    runs = runs[runs["dataset"] == dataset]
    summary = summary[summary["dataset"] == dataset]
    have = set(summary["model"])
    out = []
    gain = TWIN_OVER_SIM_SOFT_PCT
    if {"TWIN", "SIM Soft"} <= have:
        for m in ("auc", "gauc"):
            out.append(claim_better(
                runs, "TWIN", "SIM Soft", m, z=z, dataset=dataset,
                claim=f"TWIN > SIM Soft ({m.upper()})",
                statement=f"TWIN beats SIM Soft: +{gain['auc']:.2f} % AUC, "
                          f"+{gain['gauc']:.2f} % GAUC (relative)",
            ))  # fmt: skip
    baselines = summary[summary["model"] != "TWIN"]
    if "TWIN" in have and len(baselines):
        best = str(baselines.sort_values("gauc_mean").iloc[-1]["model"])
        out.append(claim_better(
            runs, "TWIN", best, "gauc", z=z, dataset=dataset,
            claim=f"TWIN best (vs strongest baseline, {best})",
            statement="TWIN has the best AUC and GAUC of all nine models",
        ))  # fmt: skip
    if "TWIN" in have and "DIN" in have:
        out.append(claim_better(
            runs, "TWIN", "DIN", "gauc", z=z, dataset=dataset,
            claim="TWIN > DIN (lifelong search beats the recent 100)",
            statement="every two-stage lifelong model beats DIN over the most recent 100",
        ))  # fmt: skip
    finer = [m for m in FINER_RETRIEVAL if m in have]
    if len(finer) >= 3:
        out.append(claim_order(
            summary, finer, "gauc", dataset=dataset, claim="finer retrieval helps (GAUC)",
            statement="Hard < Cluster < Cluster+ < Soft < TWIN, monotonically", runs=runs, z=z,
        ))  # fmt: skip
    if len(have & set(TABLE4_ORDER)) >= 3:
        out.append(claim_order(
            summary, list(TABLE4_ORDER), "gauc", dataset=dataset, runs=runs, z=z,
            claim="Table 4 order (GAUC)", statement="the nine models rank as in Table 4",
        ))  # fmt: skip
    e2e = [m for m in ("ETA", "SDIM") if m in have]
    if e2e and "SIM Soft" in have:
        parts = [claim_better(runs, "SIM Soft", m, "gauc", z=z, dataset=dataset) for m in e2e]
        out.append(combine(
            parts, "end-to-end hashing is not enough (ETA, SDIM < SIM Soft)",
            "ETA and SDIM, trained end to end, trail SIM Soft", dataset,
        ))  # fmt: skip
    return out


def claim_gap_closed(closed: pd.DataFrame, dataset: str, z: float = 2.0, bar: float = 0.6) -> Claim:
    """The study's bar on trained TWIN: it closes at least ``bar`` of the Avg-Pooling ->
    Bayes-optimal AUC gap. ``closed``: ``sweeps.gap_closure`` rows (a ``closure`` per run).
    The paper states no such bar: a STUDY question, counted apart from the paper's claims."""
    return claim_at_least(
        closed, "TWIN", "closure", bar, dataset=dataset, z=z, kind=STUDY,
        claim=f"TWIN closes >= {bar * 100:g} % of the Avg-Pooling -> Bayes AUC gap",
        statement="trained TWIN gets most of the way from Avg-Pooling to the optimum",
    )  # fmt: skip
