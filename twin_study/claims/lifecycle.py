"""Notebook 09's claim set: TWIN-V2's readings on the life-cycle worlds (issue 26).

The paper's (``/work/shared/paper/TWIN_V2_NOTES.md`` §5, secondary accounts): TWIN-V2 beats
TWIN at TWIN's GSU length (+0.0013 AUC, +0.0024 GAUC on Kuaishou), and without the cluster-size
reweighting it does worse. The study's own questions: does its GSU reach the planted relevant
behaviours older than TWIN's window, is its gain the old evidence (larger on "lifecycle" than
on the control, where it should match TWIN), and what does serving cost (about TWIN on the
window, far below TWIN over the whole history)? Every claim is paired by seed; a claim whose
arms were not run is left out.
"""

from __future__ import annotations

import pandas as pd

from ..analysis.beyond_window import TWIN_V2, TWIN_V2_NO_SIZE, TWIN_WHOLE, TWIN_WINDOW
from .core import STUDY, Claim, claim_better, claim_gap_widens, claim_similar

COST_REL = "gsu_cost_rel"  # GSU time per request over TWIN-on-the-window's, same world and seed


def relative_cost(runs: pd.DataFrame) -> pd.Series:
    """Each run's measured GSU time per request over that of TWIN on the last window with the
    same data set and seed (1 for TWIN on the window itself; NaN without it)."""
    ref = runs[runs["model"] == TWIN_WINDOW].set_index(["dataset", "seed"])["gsu_ms_per_request"]
    key = pd.MultiIndex.from_frame(runs[["dataset", "seed"]])
    return pd.Series(runs["gsu_ms_per_request"].to_numpy() / ref.reindex(key).to_numpy(),
                     index=runs.index)  # fmt: skip


def lifecycle_claims(
    runs: pd.DataFrame,
    world: str = "lifecycle",
    control: str = "lifecycle_control",
    similar_tol: float = 0.005,
    cost_tol: float = 0.5,
    z: float = 2.0,
) -> list[Claim]:
    """The readings on ``runs`` (``analysis.beyond_window.run_arms``), in this order:

    * paper: TWIN-V2 > TWIN on the last window, AUC and GAUC, on ``world``;
    * paper: TWIN-V2 > TWIN-V2 without cluster-aware attention (AUC, ``world``);
    * study: TWIN-V2's GSU reaches more of the relevant behaviours older than the window
      than TWIN's (which reaches none by construction);
    * study: TWIN-V2's AUC lead over TWIN grows from ``control`` to ``world`` (the gain is
      the old evidence);
    * study (with ``auc_dormant`` in ``runs``): on the dormant-interest targets, TWIN-V2 beats
      TWIN on ``world``, and its lead there is larger than on ``control`` (same targets);
    * study: on ``control`` TWIN-V2 and TWIN are about the same (``similar_tol``);
    * study, cost: TWIN-V2's GSU time per request is within ``cost_tol`` (relative) of
      TWIN's on the window, and below TWIN's over the whole history.
    """
    runs = runs.assign(**{COST_REL: relative_cost(runs)})
    have = {d: set(runs.loc[runs["dataset"] == d, "model"]) for d in (world, control)}
    kw = {"z": z, "dataset": world}
    out: list[Claim] = []

    def arm(model: str, dataset: str = world) -> dict:
        return {"model": model, "dataset": dataset}

    if {TWIN_V2, TWIN_WINDOW} <= have[world]:
        for metric, paper in (("auc", "+0.0013"), ("gauc", "+0.0024")):
            out.append(claim_better(
                runs, arm(TWIN_V2), arm(TWIN_WINDOW), metric, **kw,
                claim=f"TWIN-V2 > TWIN on the last window ({metric.upper()})",
                statement=f"clustering the whole life cycle beats TWIN's recent window at the "
                f"same GSU length ({paper} {metric.upper()} on Kuaishou)",
            ))  # fmt: skip
    if {TWIN_V2, TWIN_V2_NO_SIZE} <= have[world]:
        out.append(claim_better(
            runs, arm(TWIN_V2), arm(TWIN_V2_NO_SIZE), "auc", **kw,
            claim="cluster-aware attention helps (TWIN-V2 > w/o size bias)",
            statement="without the cluster-size reweighting (alpha + ln n) performance drops",
        ))  # fmt: skip
    if {TWIN_V2, TWIN_WINDOW} <= have[world]:
        out.append(claim_better(
            runs, arm(TWIN_V2), arm(TWIN_WINDOW), "recall_old", **kw, kind=STUDY,
            claim="TWIN-V2's GSU reaches relevant behaviours beyond the window",
            statement="a selected virtual item stands for all its members, so the GSU reaches "
            "old evidence that TWIN's window cannot hold",
        ))  # fmt: skip
    if {TWIN_V2, TWIN_WINDOW} <= have[world] & have[control]:
        c = claim_gap_widens(runs, TWIN_V2, TWIN_WINDOW, "dataset", control, world,
                             metric="auc", z=z, dataset=world, kind=STUDY)  # fmt: skip
        c.claim = f"TWIN-V2's lead over TWIN is larger on {world} than on {control} (AUC)"
        c.statement = "the gain comes from evidence older than the window"
        out.append(c)
    if {TWIN_V2, TWIN_WINDOW} <= have[world] and "auc_dormant" in runs:
        out.append(claim_better(
            runs, arm(TWIN_V2), arm(TWIN_WINDOW), "auc_dormant", **kw, kind=STUDY,
            claim="TWIN-V2 > TWIN on the last window, on dormant-interest targets (AUC)",
            statement="where a target's evidence lies beyond the window, only the compressed "
            "life cycle can see it",
        ))  # fmt: skip
        if {TWIN_V2, TWIN_WINDOW} <= have[control]:
            c = claim_gap_widens(runs, TWIN_V2, TWIN_WINDOW, "dataset", control, world,
                                 metric="auc_dormant", z=z, dataset=world, kind=STUDY)  # fmt: skip
            c.claim = (f"on dormant-interest targets, TWIN-V2's lead over TWIN is larger on "
                       f"{world} than on {control} (AUC)")  # fmt: skip
            c.statement = ("the same targets, whose click counts the old evidence in one world "
                           "and ignores it in the other")  # fmt: skip
            out.append(c)
    if {TWIN_V2, TWIN_WINDOW} <= have[world] & have[control]:
        out.append(claim_similar(
            runs, arm(TWIN_V2, control), arm(TWIN_WINDOW, control), "auc", similar_tol, z=z,
            dataset=control, kind=STUDY,
            claim=f"TWIN-V2 ≈ TWIN on {control} (AUC, ± {similar_tol:g})",
            statement="where only the last window matters, TWIN-V2 should match TWIN",
        ))  # fmt: skip
    if {TWIN_V2, TWIN_WINDOW} <= have[world]:
        out.append(claim_similar(
            runs, arm(TWIN_V2), arm(TWIN_WINDOW), COST_REL, cost_tol, **kw, kind=STUDY,
            claim=f"TWIN-V2's GSU costs about TWIN's on the window (± {cost_tol:.0%})",
            statement="the GSU length equals TWIN's, so online compute is about TWIN's "
            "(secondary accounts; unconfirmed)",
        ))  # fmt: skip
    if {TWIN_V2, TWIN_WHOLE} <= have[world]:
        out.append(claim_better(
            runs, arm(TWIN_WHOLE), arm(TWIN_V2), "gsu_ms_per_request", **kw, kind=STUDY,
            claim="TWIN-V2's GSU is cheaper per request than TWIN over the whole history",
            statement="compression, not a longer GSU, is what makes the life cycle servable",
        ))  # fmt: skip
    return out
