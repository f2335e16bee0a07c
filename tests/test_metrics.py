"""The rank-based AUC / GAUC against sklearn's ROC integration, user by user."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from twin_study.training import all_metrics, auc, gauc


def sklearn_gauc(user, label, score):
    total = weight = 0.0
    for u in np.unique(user):
        m = user == u
        if 0 < label[m].sum() < m.sum():
            total += roc_auc_score(label[m], score[m]) * m.sum()
            weight += m.sum()
    return total / weight


@pytest.mark.parametrize("levels", [0, 3, 20])  # 0: continuous scores; else that many values
def test_auc_and_gauc_match_sklearn_with_ties(levels):
    rng = np.random.default_rng(levels)
    n = 3000
    user = rng.integers(0, 300, n)
    label = (rng.random(n) < 0.3).astype(np.float32)
    score = rng.random(n) + 0.3 * label
    if levels:  # heavy ties, inside and across users
        score = np.round(score * levels) / levels
    assert auc(label, score) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    assert gauc(user, label, score) == pytest.approx(sklearn_gauc(user, label, score), abs=1e-12)
    # The user ids need not be sorted or contiguous, and the samples' order does not matter.
    perm = rng.permutation(n)
    assert gauc(user[perm] * 7 + 5, label[perm], score[perm]) == pytest.approx(
        gauc(user, label, score), abs=1e-12
    )


def test_auc_edge_cases():
    assert auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.9, 0.1, 0.8, 0.2])) == 0.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5  # a tie counts half
    assert np.isnan(auc(np.ones(5), np.arange(5.0)))  # one class: undefined
    assert np.isnan(auc(np.zeros(0), np.zeros(0)))  # no samples: undefined, not an error
    assert np.isnan(gauc(np.zeros(0), np.zeros(0), np.zeros(0)))
    # Users with one label only are left out; none left: NaN.
    user = np.array([0, 0, 1, 1, 1])
    label = np.array([0, 1, 1, 1, 1])
    assert gauc(user, label, np.array([0.2, 0.4, 0.1, 0.2, 0.3])) == 1.0
    assert np.isnan(gauc(np.array([0, 1]), np.array([0, 1]), np.array([0.3, 0.4])))
    with pytest.raises(ValueError, match="NaN"):
        auc(np.array([0, 1]), np.array([0.3, np.nan]))
    m = all_metrics(user, label, np.array([0.2, 0.4, 0.1, 0.2, 0.3]))
    assert m["n"] == 5 and m["logloss"] > 0
