"""A short training run on synthetic data learns the planted structure (issue: model family).

Small data, one thread, two epochs: the numbers are far from the paper-profile ones, so the
assertions are about direction, with margins measured on this machine (see the closing note of
the model issue): TWIN learns a click model above chance, beats Avg-Pooling and stays below
the Bayes-optimal AUC, and its GSU retrieves the planted relevant behaviours above chance.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin_study.analysis.consistency import consistency, eligible_samples
from twin_study.data import SyntheticConfig, bayes_auc, generate
from twin_study.models import ModelConfig
from twin_study.training import TrainConfig, run

L = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TWIN_STUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
    ds = generate(SyntheticConfig(n_users=150, n_items=3000, n_authors=300,
                                  authors_per_interest=(3, 8), history_len=L, history_min=150,
                                  requests_per_user=20, seed=5))  # fmt: skip
    cfg = TrainConfig(epochs=2, batch_size=128, threads=1, progress=False)
    out = {m: run(ds, ModelConfig(long_module=m, long_len=L), cfg) for m in ("twin", "avg_pool")}
    yield ds, out
    mp.undo()


def test_twin_learns_a_click_model_between_chance_and_bayes(trained):
    ds, out = trained
    bayes = bayes_auc(ds)
    twin = out["twin"].metrics["test"]["auc"]
    avg = out["avg_pool"].metrics["test"]["auc"]
    print(f"Bayes {bayes:.3f}  TWIN {twin:.3f}  Avg-Pooling {avg:.3f}")
    assert 0.55 < twin <= bayes + 0.02
    assert 0.5 < avg <= bayes + 0.02
    # Measured here: Bayes 0.742, TWIN 0.602, Avg-Pooling 0.596 (seeded, one thread). TWIN
    # beats Avg-Pooling, but a two-epoch run on 2,400 samples is far from the Bayes AUC.
    assert twin > avg


def test_twin_gsu_retrieves_planted_relevant_behaviours(trained):
    ds, out = trained
    idx = eligible_samples(ds, "test", min_history=200, n=150, seed=0)
    res = consistency(out["twin"].model, ds, idx, [100], progress=False)
    recall = float(np.nanmean(res.relevant_recall_gsu))
    lengths = ds.samples.hist_end[idx] - ds.log.user_ptr[ds.samples.user[idx]]
    chance = float(np.mean(100 / np.minimum(lengths, L)))
    print(f"relevant recall of TWIN's GSU {recall:.3f} (chance {chance:.3f})")
    assert recall > chance + 0.05  # measured: 0.465 vs chance 0.365
    assert res.hits_at(100) == pytest.approx(100.0)  # fresh cache: GSU = ESU ranking
