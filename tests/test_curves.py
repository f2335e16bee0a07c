"""Learning-curve reading (issue 24, item 6): the flattening rule reads the last quarter of
the samples seen, and the noise of a validation LogLoss read on a subset of requests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from twin_study.analysis import sweeps


def curve(losses: list[float], every: int = 50_000, batch: int = 256) -> pd.DataFrame:
    """One run's curve as training writes it: a point a batch past each multiple of
    ``every`` (the step that crosses it), the last at the end of the budget."""
    seen = [k * every + batch for k in range(1, len(losses))] + [len(losses) * every]
    return pd.DataFrame({"dataset": "d", "model": "M", "seed": 0, "epoch": 1,
                         "samples_seen": seen, "valid_logloss": losses})  # fmt: skip


def test_flattening_reads_the_last_quarter_not_the_last_three_eighths():
    # 400,000 samples, points every 50,000: the last quarter starts at 300,000, whose point is
    # 300,256. The loss fell 0.0095 between 250,256 and 300,256 and is flat after it.
    losses = [0.60, 0.55, 0.52, 0.50, 0.49, 0.4805, 0.4802, 0.4800]
    st = sweeps.curve_status(curve(losses), tail=0.25, tol=0.002).iloc[0]
    assert st.gain_in_tail == pytest.approx(0.0005)  # the old rule read 0.01 from 250,256
    assert st.flattened
    assert st.tail_from == 300_256


def test_flattening_tail_start_ties_go_to_the_earlier_point_and_one_point_is_unknown():
    tie = curve([0.6, 0.5, 0.45, 0.44]).assign(samples_seen=[100, 200, 300, 400])
    st = sweeps.curve_status(tie, tail=0.375).iloc[0]  # the tail starts at 250: 200 or 300
    assert st.tail_from == 200 and st.gain_in_tail == pytest.approx(0.06)
    one = sweeps.curve_status(curve([0.6]), tail=0.25).iloc[0]
    assert np.isnan(one.gain_in_tail) and not one.flattened


def test_logloss_se_matches_the_textbook_and_scales_to_a_subset():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 0.9, 20_000)
    y = (rng.random(20_000) < p).astype(float)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    se = sweeps.logloss_se(y, p)
    assert se == pytest.approx(loss.std(ddof=1) / np.sqrt(20_000))
    assert sweeps.logloss_se(y, p, n=5_000) == pytest.approx(2 * se)  # sqrt(20,000 / 5,000)
    # Samples of a request move together: clustered, the s.e. grows; singletons change nothing.
    assert sweeps.logloss_se(y, p, groups=np.arange(20_000)) == pytest.approx(se, rel=1e-3)
    same = np.repeat(np.arange(2_000), 10)
    y2, p2 = np.repeat(y[:2_000], 10), np.repeat(p[:2_000], 10)
    assert sweeps.logloss_se(y2, p2, groups=same) > 2 * sweeps.logloss_se(y2, p2)


def test_eval_logloss_se_reads_the_validation_split():
    n = 4_000
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 0.9, n)
    samples = SimpleNamespace(label=(rng.random(n) < p).astype(np.float32),
                              request=np.arange(n) // 4)  # fmt: skip
    splits = {"train": np.arange(0, 2_000), "valid": np.arange(2_000, n)}
    ds = SimpleNamespace(samples=samples, p_true=p, split_indices=splits.__getitem__)
    full = sweeps.eval_logloss_se(ds, 0)
    assert sweeps.eval_logloss_se(ds, 500) == pytest.approx(full * 2)
    no_truth = SimpleNamespace(samples=samples, p_true=None, split_indices=splits.__getitem__)
    assert 0 < sweeps.eval_logloss_se(no_truth, 500) < 0.1
