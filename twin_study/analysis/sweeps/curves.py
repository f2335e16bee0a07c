"""Learning curves: every run's validation history in long format (``learning_curves``, read
from the results cache when the sweep trained the runs already), and ``curve_status``, which
tells whether each run's validation LogLoss flattened before its budget ran out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ...training import experiment
from .settings import Setting


def learning_curves(
    ds, settings: Sequence[Setting], seeds: Iterable[int], train, runner: Callable | None = None
) -> pd.DataFrame:
    """Every run's learning curve (``TrainResult.history``), long format: dataset, model,
    <tags>, seed, epoch, samples_seen, train_loss, valid_auc, valid_logloss, selected (the
    point the model was taken from), constant_logloss (the base-rate predictor's). The runs
    come from the results cache when ``sweep`` trained them already."""
    if runner is None:
        runner = experiment.run
    rows = []
    for setting in settings:
        for seed in seeds:
            res = runner(ds, setting.model, setting.train_config(train, seed))
            t = res.train
            for point in t.get("history", []):
                selected = (point.get("samples_seen") == t.get("best_samples")
                            and point.get("epoch") == t.get("best_epoch"))  # fmt: skip
                rows.append({"dataset": ds.name, "model": setting.label, **setting.tags,
                             "seed": seed, **point, "selected": selected,
                             "constant_logloss": t.get("constant_logloss")})  # fmt: skip
    return pd.DataFrame(rows)


def curve_status(
    curves: pd.DataFrame,
    by: Sequence[str] = ("dataset", "model", "seed"),
    tail: float = 0.25,
    tol: float = 0.002,
) -> pd.DataFrame:
    """Did each run's validation LogLoss flatten before its budget ran out?

    ``gain_in_tail``: how much the best validation LogLoss so far still fell during the last
    ``tail`` share of the samples seen, read from the curve point nearest the start of that
    share (``tail_from``). Checkpoints land a batch past each multiple of ``eval_every``, so
    "the last point <= the start" read one interval early: with points every 50,000 of
    400,000 samples it measured the last 3/8, not the last quarter (the off-by-one af1b46d
    fixed in 06's budget reading); ties go to the earlier point. Below ``tol`` the curve
    counts as flattened (the run reached its plateau); otherwise the budget stopped it while
    it was still learning, and a comparison with it understates what the model can do."""
    rows = []
    for key, g in curves.groupby(list(by), sort=False):
        g = g.sort_values(["epoch", "samples_seen"])
        seen = g["samples_seen"].to_numpy(float)
        loss = np.fmin.accumulate(g["valid_logloss"].to_numpy(float))  # best so far
        cut = seen[-1] * (1 - tail)
        # The nearest point among all but the last (the last cannot start its own tail).
        i = int(np.abs(seen[:-1] - cut).argmin()) if len(seen) > 1 else -1
        gain = float(loss[i] - loss[-1]) if i >= 0 else np.nan
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "points": len(g),
                "samples_seen": int(seen[-1]),
                "tail_from": int(seen[i]) if i >= 0 else -1,
                "best_logloss": float(loss[-1]),
                "gain_in_tail": gain,
                "flattened": bool(np.isfinite(gain) and gain < tol),
            }
        )
    return pd.DataFrame(rows)
