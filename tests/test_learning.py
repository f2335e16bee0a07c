"""Short training runs on synthetic data learn the planted structure (issue: model family).

A small world in which long-range retrieval matters (few items per author, relevant
behaviours spread over the whole history, dormant interests beyond the most recent 50), one
pass over the training split, one thread, three seeds. The assertions are about direction with
margins measured on this machine: TWIN learns a click model between chance and the
Bayes-optimal AUC and beats Avg-Pooling on EVERY seed and on average by a clear margin (measured
+0.04 to +0.05 AUC per seed), and its GSU retrieves the planted relevant behaviours above
chance.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin_study.analysis.consistency import consistency, eligible_samples
from twin_study.data import SyntheticConfig, bayes_auc, generate
from twin_study.models import ModelConfig
from twin_study.training import TrainConfig, run

L = 1000
SEEDS = (0, 1, 2)
# W^q = W^h scaled by 3 at init: a sharper similarity prior, which this small world needs for
# TWIN to learn within one pass (measured here: +0.043, +0.051, +0.042 AUC over Avg-Pooling).
MODEL = {"qk_init_scale": 3.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TWIN_STUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
    ds = generate(SyntheticConfig(n_users=300, n_items=2000, n_authors=200,
                                  authors_per_interest=(3, 8), history_len=L, history_min=L // 2,
                                  requests_per_user=20, seed=5))  # fmt: skip
    out = {}
    for seed in SEEDS:
        cfg = TrainConfig(epochs=1, batch_size=128, threads=1, progress=False, seed=seed,
                          eval_every=4000, eval_samples=2000)  # fmt: skip
        for m in ("twin", "avg_pool"):
            out[m, seed] = run(ds, ModelConfig(long_module=m, long_len=L, **MODEL), cfg)
    yield ds, out
    mp.undo()


def test_twin_learns_a_click_model_and_beats_avg_pooling_on_every_seed(trained):
    ds, out = trained
    bayes = bayes_auc(ds)
    twin = np.array([out["twin", s].metrics["test"]["auc"] for s in SEEDS])
    avg = np.array([out["avg_pool", s].metrics["test"]["auc"] for s in SEEDS])
    print(f"Bayes {bayes:.3f}  TWIN {twin.round(3)}  Avg-Pooling {avg.round(3)}")
    assert (twin > 0.6).all() and (twin <= bayes + 0.02).all()
    assert (avg > 0.5).all() and (avg <= bayes + 0.02).all()
    gap = twin - avg  # paired by seed: the same batches in the same order
    assert (gap > 0).all(), gap
    assert gap.mean() > 0.02, gap  # a margin several times the seed-to-seed spread


def test_twin_gsu_retrieves_planted_relevant_behaviours(trained):
    ds, out = trained
    idx = eligible_samples(ds, "test", min_history=200, n=150, seed=0)
    res = consistency(out["twin", 0].model, ds, idx, [100], progress=False)
    recall = float(np.nanmean(res.relevant_recall_gsu))
    lengths = ds.samples.hist_end[idx] - ds.log.user_ptr[ds.samples.user[idx]]
    chance = float(np.mean(100 / np.minimum(lengths, L)))
    print(f"relevant recall of TWIN's GSU {recall:.3f} (chance {chance:.3f})")
    assert recall > chance + 0.05  # measured: 0.465 vs chance 0.365
    # Plumbing, not evidence: with a fresh cache the GSU ranks with the ESU's own scores (all
    # 100 hits but where rounding splits exact ties, see tests/test_consistency.py).
    assert 99.5 <= res.hits_at(100) <= 100.0
