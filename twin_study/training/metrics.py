"""AUC, GAUC (paper §4.3: per-user AUC weighted by the user's sample count) and LogLoss.

Both AUCs are computed from ranks (the Mann-Whitney statistic, ties at their mean rank), which
equals the area under the ROC curve that ``sklearn.metrics.roc_auc_score`` integrates. GAUC is
vectorised over users: calling sklearn once per user cost ~3 ms a call, about 17 s of every
paper-profile run (25,000 validation samples over ~2,500 users, ten evaluations a run) --
a fifth of a run's time.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss


def grouped_auc(group: np.ndarray, label: np.ndarray, score: np.ndarray):
    """Per-group AUC from ranks; returns (AUCs, sample counts) of the groups having both
    labels. One lexsort by (group, score) gives both the groups and the tie blocks."""
    group, label = np.asarray(group), np.asarray(label)
    score = np.asarray(score, dtype=np.float64)
    if np.isnan(score).any():
        raise ValueError("AUC: the scores contain NaN")
    if len(score) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)  # no group has both labels
    order = np.lexsort((score, group))
    g, s, pos = group[order], score[order], label[order] > 0
    n = len(s)
    idx = np.arange(n, dtype=np.float64)
    new_group = np.r_[True, g[1:] != g[:-1]]
    gid = np.cumsum(new_group) - 1  # (n,) group of each sorted sample
    group_start = idx[new_group][gid]
    # A tie block: a run of equal scores inside one group; each gets its block's mean rank.
    new_block = new_group | np.r_[True, s[1:] != s[:-1]]
    first = idx[new_block]
    last = np.r_[first[1:] - 1, n - 1]
    rank = (first + last)[np.cumsum(new_block) - 1] / 2 - group_start + 1  # 1-based, in group
    size = np.bincount(gid)
    n_pos = np.bincount(gid, weights=pos, minlength=len(size))
    rank_sum = np.bincount(gid, weights=np.where(pos, rank, 0.0), minlength=len(size))
    n_neg = size - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    u = rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2  # Mann-Whitney U of the positives
    return u / (n_pos[both] * n_neg[both]), size[both]


def auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when ``label`` holds only one class."""
    a, _ = grouped_auc(np.zeros(len(label), dtype=np.int64), label, score)
    return float(a[0]) if len(a) else float("nan")


def gauc(user: np.ndarray, label: np.ndarray, score: np.ndarray) -> float:
    """Sample-count-weighted mean of per-user AUCs over users having both labels."""
    a, w = grouped_auc(user, label, score)
    return float(np.sum(a * w) / np.sum(w)) if len(a) else float("nan")


def logloss(label: np.ndarray, prob: np.ndarray) -> float:
    return float(log_loss(label, np.clip(prob, 1e-7, 1 - 1e-7), labels=[0, 1]))


def all_metrics(user: np.ndarray, label: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(label, prob),
        "gauc": gauc(user, label, prob),
        "logloss": logloss(label, prob),
        "n": int(len(label)),
    }
