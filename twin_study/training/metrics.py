"""AUC, GAUC (paper §4.3: per-user AUC weighted by the user's sample count) and LogLoss."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def auc(label: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(label)) < 2:
        return float("nan")
    return float(roc_auc_score(label, score))


def gauc(user: np.ndarray, label: np.ndarray, score: np.ndarray) -> float:
    """Sample-count-weighted mean of per-user AUCs over users having both labels."""
    order = np.argsort(user, kind="stable")
    user, label, score = user[order], label[order], score[order]
    bounds = np.flatnonzero(np.diff(user)) + 1
    total, weight = 0.0, 0
    for lab, sc in zip(np.split(label, bounds), np.split(score, bounds), strict=True):
        if 0 < lab.sum() < len(lab):
            total += roc_auc_score(lab, sc) * len(lab)
            weight += len(lab)
    return float(total / weight) if weight else float("nan")


def logloss(label: np.ndarray, prob: np.ndarray) -> float:
    return float(log_loss(label, np.clip(prob, 1e-7, 1 - 1e-7), labels=[0, 1]))


def all_metrics(user: np.ndarray, label: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(label, prob),
        "gauc": gauc(user, label, prob),
        "logloss": logloss(label, prob),
        "n": int(len(label)),
    }
