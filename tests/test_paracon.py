"""Issue 24, item 5: Para-Con at equal compute. The auxiliary TWIN's training cost is counted
beside w/o Para-Con's own, and TWIN at equal compute sees exactly their total; its claim sits
beside the equal-samples one."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from twin_study.analysis import paracon, sweeps
from twin_study.claims import ablations, core
from twin_study.data import SyntheticConfig, generate
from twin_study.models import ModelConfig
from twin_study.models.lifelong.twin_ablations import AUX_SEED_OFFSET
from twin_study.training import TrainConfig

L = 100
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=24, n_items=1500, n_authors=200, history_len=150,
                                    history_min=30, requests_per_user=3, seed=5))  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWIN_STUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def settings(train: TrainConfig):
    base = ModelConfig(long_module="twin", long_len=L, k=20, gsu_chunk=128)
    twin, no_paracon = sweeps.module_settings(base, ["twin", "twin_no_paracon"])
    return twin, no_paracon, paracon.equal_compute_setting(twin, train)


@pytest.fixture(scope="module")
def trained(ds, cache):
    """The notebook's section on a tiny log: TWIN and w/o Para-Con as the ablation sweep trains
    them, TWIN at equal compute, and the cost read back from the results cache. A seeded subset
    of the training split, so that the subset is what is counted (not the whole split)."""
    n_train = len(ds.split_indices("train"))
    train = TrainConfig(epochs=1, batch_size=64, max_train_samples=n_train - 7,
                        eval_every=40, eval_samples=30, progress=False)  # fmt: skip
    twin, no_paracon, equal = settings(train)
    runs = pd.concat([sweeps.sweep(ds, s, SEEDS, train, progress=False)
                      for s in ([twin, no_paracon], [equal])], ignore_index=True)  # fmt: skip
    cost = paracon.training_cost(ds, twin, no_paracon, equal, train, SEEDS)
    return train, runs, cost


def test_equal_compute_setting_doubles_the_epochs_and_cannot_stop_early():
    train = TrainConfig(epochs=3, patience=1)
    twin, _, equal = settings(train)
    assert equal.label == paracon.EQUAL and equal.model == twin.model
    cfg = equal.train_config(train, 4)
    assert (cfg.epochs, cfg.patience, cfg.seed) == (6, 6, 4)
    assert paracon.equal_compute_setting(twin, train, passes=3).train["epochs"] == 9
    with pytest.raises(ValueError):
        paracon.equal_compute_setting(dataclasses.replace(twin, model=ModelConfig(
            long_module="twin_no_paracon", long_len=L)), train)  # fmt: skip


def test_auxiliary_plus_own_samples_equal_twin_at_equal_compute(ds, trained):
    train, runs, cost = trained
    per_run = cost.set_index(["seed", "run"])["samples_seen"]
    n = train.max_train_samples
    for seed in SEEDS:
        aux, own = per_run[seed, paracon.AUX_RUN], per_run[seed, paracon.OWN_RUN]
        # Each model of the w/o Para-Con pipeline saw the seeded subset once ...
        assert aux == own == n == per_run[seed, paracon.TWIN_RUN]
        # ... and TWIN at equal compute saw their total, trained to its last epoch.
        assert per_run[seed, paracon.TOTAL_RUN] == aux + own == 2 * n
        assert per_run[seed, paracon.EQUAL_RUN] == aux + own
    assert paracon.matched(cost)["equal"].all()
    # The cost comes with the training seconds of the cached runs; the total adds up.
    t = cost.set_index(["seed", "run"])["train_seconds"]
    assert (t > 0).all()
    for seed in SEEDS:
        assert t[seed, paracon.TOTAL_RUN] == pytest.approx(
            t[seed, paracon.AUX_RUN] + t[seed, paracon.OWN_RUN]
        )
    summary = paracon.cost_summary(cost)
    assert list(summary["run"]) == list(paracon.RUNS)
    assert summary.set_index("run")["vs_twin"].to_dict() == {
        paracon.AUX_RUN: 1.0, paracon.OWN_RUN: 1.0, paracon.TOTAL_RUN: 2.0,
        paracon.TWIN_RUN: 1.0, paracon.EQUAL_RUN: 2.0}  # fmt: skip


def test_the_auxiliary_run_is_w_o_paracons_own_prerequisite(ds, trained):
    """The cost reads the very run whose frozen parameters drive w/o Para-Con's GSU: a TWIN
    with the same settings and seed + AUX_SEED_OFFSET (not retrained: a cache hit)."""
    from twin_study.training import run

    train, _, _ = trained
    twin, _, _ = settings(train)
    aux = run(ds, twin.model, dataclasses.replace(train, seed=SEEDS[0] + AUX_SEED_OFFSET))
    assert aux.cached
    assert paracon.samples_seen(aux.train) == train.max_train_samples


def test_the_equal_compute_claim_appears_beside_the_equal_samples_claim(trained):
    train, runs, cost = trained
    summary = sweeps.summarize(runs)
    claims = ablations.ablation_claims(runs, summary, "synthetic")
    claims.append(paracon.equal_compute_claim(runs, "synthetic"))
    names = [c.claim for c in claims]
    assert "Para-Con helps (TWIN > w/o Para-Con)" in names and paracon.CLAIM in names
    new = claims[-1]
    assert new.verdict in core.VERDICTS and new.n_seeds == len(SEEDS)
    assert new.kind == core.STUDY
    assert new.dataset == "synthetic" and "TWIN (equal compute) − TWIN w/o Para-Con" in new.detail
    # The effect is the paired per-seed difference of the sweep rows.
    r = runs.set_index(["model", "seed"])["gauc"]
    diff = [r[paracon.EQUAL, s] - r[paracon.NO_PARACON, s] for s in SEEDS]
    assert new.effect == pytest.approx(sum(diff) / len(diff))
    eff = paracon.effects(runs, "synthetic")
    assert set(eff["comparison"]) == {c for c, _, _ in paracon.COMPARISONS}
    row = eff[(eff.comparison == paracon.COMPARISONS[1][0]) & (eff.metric == "gauc")]
    assert row["effect"].item() == pytest.approx(new.effect)
    # Its results.json block is plain JSON.
    import json

    rec = paracon.record(cost, runs, settings(train)[2])
    assert rec["equal_compute_train"] == {"epochs": 2, "patience": 2}
    assert rec["matched"] == {"synthetic": True}
    assert (
        rec["cost"]["synthetic"][paracon.TOTAL_RUN]["samples_seen"]
        == (rec["cost"]["synthetic"][paracon.EQUAL_RUN]["samples_seen"])
    )
    json.dumps(rec, allow_nan=False)
    table = paracon.table(cost, runs, "synthetic")
    assert list(table["run"]) == list(paracon.RUNS) and table["test gauc"].iloc[1] == ""


@pytest.mark.parametrize(
    ("gain", "verdict"), [(0.01, core.REPRODUCED), (-0.01, core.NOT_REPRODUCED)]
)
def test_equal_compute_claim_verdicts(gain, verdict):
    noise = (0.0, 0.002, -0.001)  # the paired differences vary by seed
    rows = [{"dataset": "synthetic", "model": m, "seed": s, "gauc": g + 0.001 * s}
            for s in range(3)
            for m, g in ((paracon.NO_PARACON, 0.70), (paracon.EQUAL, 0.70 + gain + noise[s]),
                         (paracon.TWIN, 0.69))]  # fmt: skip
    c = paracon.equal_compute_claim(pd.DataFrame(rows), "synthetic")
    assert c.verdict == verdict and c.effect == pytest.approx(gain + sum(noise) / 3)
    # The study's own question, beside the paper's equal-samples claim (counted once).
    assert c.kind == core.STUDY and c.claim == paracon.CLAIM


def test_notebook_05_reads_the_claim_and_records_the_cost():
    """The notebook's wiring: the parameter, the claim added to its claims (beside the
    equal-samples one, left in place), and the results.json block."""
    import json

    from twin_study import paths

    nb = json.loads((paths.NOTEBOOKS_DIR / "05_ablations.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    params = next(
        "".join(c["source"]) for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])
    )
    assert "equal_compute: bool = True" in params
    claims_cell = next(s for s in code if "ablations.ablation_claims(" in s)
    assert "claims += paracon_claims" in claims_cell
    assert any("paracon.equal_compute_claim(" in s for s in code)
    assert any('"paracon": paracon_record' in s for s in code)
