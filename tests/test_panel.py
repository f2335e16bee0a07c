"""The panel of worlds (issue 24): its declaration, the new generator truths, the statistics
of the analysis plan, and one tiny world end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from twin_study.data.synthetic import SyntheticConfig, generate
from twin_study.panel import run as panel_run
from twin_study.panel import stats
from twin_study.panel.spec import PANEL_FILE, PanelError, World, load_panel, parse_panel
from twin_study.training.metrics import auc, gauc

SMALL = dict(n_users=30, n_items=600, n_authors=60, history_len=400, history_min=100,
             requests_per_user=4, seed=3)  # fmt: skip


# --- the declaration -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(PANEL_FILE.read_text())


def test_declared_panel_meets_the_issue(raw):
    spec = parse_panel(raw)
    synthetic = [w for w in spec.worlds if w.synthetic]
    assert len(synthetic) >= 5 and len(spec.data_seeds) >= 2
    assert len(spec.models) >= 6 and len(spec.budget.train_seeds) >= 2
    assert spec.budget.long_len == 10_000
    for w in spec.worlds:
        assert w.question
    assert "movielens-1m" in {w.source for w in spec.worlds}


def test_size_rules_follow_the_catalogue_not_the_world(raw):
    spec = parse_panel(raw)
    assert spec.size_rules.n_clusters_plus(20_000) == 500
    assert spec.size_rules.n_clusters_plus(2_000) == 50
    for w in spec.worlds:  # no world sets a model size by hand
        assert not {"n_clusters", "large_vocab"} & set(w.generator)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r.update(colour="red"), "unknown top-level"),
        (lambda r: r["worlds"]["default"].update(question=""), "which question"),
        (lambda r: r["worlds"]["default"].update(generator={"n_itemz": 3}), "n_itemz"),
        (lambda r: r["budget"].update(train_seeds=[0]), ">= 2 training seeds"),
        (lambda r: r["analysis"].update(reference="TWINN"), "reference"),
        (lambda r: r["worlds"]["default"].update(generator={"truth": "vibes"}), "truth"),
    ],
)
def test_malformed_panel_is_a_named_error(raw, change, match):
    bad = yaml.safe_load(yaml.safe_dump(raw))
    change(bad)
    with pytest.raises(PanelError, match=match):
        parse_panel(bad)


def test_missing_panel_file_is_a_clear_error(tmp_path):
    with pytest.raises(PanelError, match="no panel file"):
        load_panel(tmp_path / "nope.yaml")


def test_quick_scale_and_world_selection():
    spec = load_panel()
    quick = spec.at("quick")
    assert all(w.synthetic for w in quick.worlds)
    assert quick.budget.long_len < spec.budget.long_len
    assert len(quick.budget.train_seeds) >= 2 and len(quick.data_seeds) >= 2
    assert [w.name for w in spec.only(["coarse_category"]).worlds] == ["coarse_category"]
    with pytest.raises(PanelError, match="unknown world"):
        spec.only(["atlantis"])


def test_digest_follows_the_declaration():
    spec = load_panel()
    w = spec.world("default")
    other = dataclasses.replace(spec, budget=dataclasses.replace(spec.budget, k=50))
    assert spec.digest(w) == load_panel().digest(w)
    assert other.digest(w) != spec.digest(w)


def test_click_through_world_has_a_click_through_rate():
    spec = load_panel()
    cfg = spec.generator_config(spec.world("click_through"), 0)
    ds = generate(dataclasses.replace(cfg, n_users=120))
    assert 0.03 <= ds.samples.label.mean() <= 0.15


# --- the generator's new truths --------------------------------------------------------------


@pytest.fixture(scope="module")
def nearest():
    return generate(SyntheticConfig(**SMALL, truth="nearest"))


def test_nearest_truth_follows_the_stated_logit(nearest):
    ds = nearest
    cfg = SyntheticConfig(**SMALL, truth="nearest")
    z = ds.meta["item_latent"].astype(np.float64)
    engaged = ds.meta["engaged"]
    quality = ds.meta["item_quality"]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ds.samples), 25, replace=False):
        u = ds.samples.user[i]
        lo, end = ds.log.user_ptr[u], ds.samples.hist_end[i]
        b = np.arange(lo, end)
        b = b[engaged[b]]
        d2 = ((z[ds.log.item[b] - 1] - z[ds.samples.item[i] - 1]) ** 2).sum(1)
        kern = np.exp(-d2 / (2 * cfg.nearest_scale**2))
        best = kern.max() if len(kern) else 0.0
        logit = (
            cfg.base_logit
            + cfg.strength * cfg.nearest_weight * best
            + quality[ds.samples.item[i] - 1]
        )
        assert ds.p_true[i] == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-6)
        rel = set(ds.relevant_idx[ds.relevant_ptr[i] : ds.relevant_ptr[i + 1]])
        want = set(b[(kern >= 0.5 * best) & (kern >= cfg.nearest_floor)])
        assert rel == want


def test_drift_changes_which_authors_not_when():
    base = generate(SyntheticConfig(**SMALL))
    drift = generate(SyntheticConfig(**SMALL, interest_drift=0.1))
    np.testing.assert_array_equal(base.log.time, drift.log.time)
    np.testing.assert_array_equal(base.samples.time, drift.samples.time)
    assert not np.array_equal(base.log.item, drift.log.item)


def test_drift_moves_interests_over_the_lifetime():
    """Under drift an interest's early and late behaviours come from different favourites:
    the share of a user's late authors already seen early falls."""

    def overlap(ds) -> float:
        author = ds.items.features["author"]
        out = []
        for u in range(ds.n_users):
            lo, hi = ds.log.user_ptr[u], ds.log.user_ptr[u + 1]
            a = author[ds.log.item[lo:hi]]
            n = len(a)
            early, late = set(a[: n // 4]), a[3 * n // 4 :]
            out.append(np.mean([x in early for x in late]))
        return float(np.mean(out))

    assert overlap(generate(SyntheticConfig(**SMALL, interest_drift=0.05))) < overlap(
        generate(SyntheticConfig(**SMALL))
    )


# --- statistics --------------------------------------------------------------------------------


def test_weighted_scorer_equals_the_materialised_resample():
    rng = np.random.default_rng(1)
    n = 500
    user = rng.integers(0, 40, n)
    label = (rng.random(n) < 0.3).astype(float)
    score = np.round(rng.random(n) + 0.4 * label, 1)  # many ties
    _, u = np.unique(user, return_inverse=True)
    sc = stats.Scorer(u, label, score, int(u.max()) + 1)
    assert sc.auc() == pytest.approx(auc(label, score))
    assert sc.gauc() == pytest.approx(gauc(u, label, score))
    w = np.bincount(rng.integers(0, u.max() + 1, u.max() + 1), minlength=u.max() + 1)
    idx, clone = [], []
    for j in range(len(w)):
        for c in range(w[j]):
            members = np.flatnonzero(u == j)
            idx += list(members)
            clone += [j * 1000 + c] * len(members)
    idx = np.asarray(idx)
    assert sc.auc(w) == pytest.approx(auc(label[idx], score[idx]))
    assert sc.gauc(w) == pytest.approx(gauc(np.asarray(clone), label[idx], score[idx]))


def _draw(rng, n=600, users=60, better=0.0):
    user = rng.integers(0, users, n)
    truth = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * truth))).astype(float)
    scores = {}
    for s in (0, 1):
        scores[("A", s)] = truth + rng.normal(scale=1.0, size=n)
        scores[("B", s)] = truth * (1 + better) + rng.normal(scale=1.0, size=n)
    return stats.Draw.of(user, label, scores, 1 / (1 + np.exp(-2 * truth)))


def test_world_effects_see_a_real_difference_and_call_a_tie_a_tie():
    rng = np.random.default_rng(2)
    strong = [_draw(rng, better=3.0), _draw(rng, better=3.0)]
    eff = stats.world_effects(strong, ["A", "B"], [0, 1], reference="B", n_boot=200)
    row = eff[eff.metric == "auc"].iloc[0]
    assert row.effect > 0 and row.verdict == stats.WIN and row.lo > 0 and row.df == 1
    same = [_draw(rng), _draw(rng)]
    eff = stats.world_effects(same, ["A", "B"], [0, 1], reference="B", n_boot=200)
    assert set(eff.verdict) == {stats.TIE}
    assert (eff.lo < 0).all() and (eff.hi > 0).all()


def test_one_draw_has_no_t_and_the_rule_reads_the_interval():
    assert np.isnan(stats.t_over_draws([0.01])[0])
    t, df, p = stats.t_over_draws([0.01, 0.03])
    assert df == 1 and t == pytest.approx(2.0) and 0.2 < p < 0.4  # t(1) is heavy-tailed
    assert stats.verdict_of(0.001, 0.01) == stats.WIN
    assert stats.verdict_of(-0.01, -0.001) == stats.LOSS
    assert stats.verdict_of(-0.01, 0.01) == stats.TIE
    assert stats.verdict_of(float("nan"), float("nan")) == stats.TIE


def test_gap_closure_of_the_truth_is_one():
    rng = np.random.default_rng(3)
    draws = [_draw(rng), _draw(rng)]
    for d in draws:
        for s in (0, 1):
            d.scores[("Bayes", s)] = d.p_true
    gap = stats.gap_closure(draws, ["A", "Bayes"], [0, 1], baseline="A", n_boot=50)
    g = gap.set_index("model")
    assert g.loc["A", "closure"] == pytest.approx(0.0)
    assert g.loc["Bayes", "closure"] == pytest.approx(1.0)
    real = [stats.Draw.of(d.user, d.label, d.scores) for d in draws]  # no planted truth
    assert stats.gap_closure(real, ["A"], [0, 1], baseline="A") is None


# --- one tiny world end to end -----------------------------------------------------------------


def test_a_tiny_world_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path / "cache"))
    spec = load_panel().at("quick")
    spec = dataclasses.replace(
        spec,
        worlds=(World("tiny", "a test world", dict(SMALL)),),
        shared_generator={},
        models=("Avg-Pooling", "SIM Cluster+", "TWIN"),
        analysis=dataclasses.replace(spec.analysis, bootstrap=20),
    )
    w = spec.world("tiny")
    sets = panel_run.settings(spec, w, generate(spec.generator_config(w, 0)))
    assert [s.model.n_clusters for s in sets if s.label == "SIM Cluster+"] == [15]  # 600 / 40
    assert all(s.model.large_vocab == spec.size_rules.large_vocab for s in sets)
    rec = panel_run.analyse_world(spec, panel_run.run_world(spec, w, progress=False))
    assert len(rec["draws"]) == len(spec.data_seeds)
    assert {e["rival"] for e in rec["effects"]} == {"Avg-Pooling", "SIM Cluster+"}
    # The recorded test metric is the one the saved predictions give.
    runs = [r for r in rec["runs"] if r["model"] == "TWIN"]
    mine = [m for m in rec["metrics"] if m["model"] == "TWIN"][0]
    assert mine["auc_mean"] == pytest.approx(np.mean([r["auc"] for r in runs]))
    panel_run.save_world(tmp_path, rec)
    assert panel_run.committed_world(tmp_path, "tiny", rec["digest"])["world"] == "tiny"
    assert panel_run.committed_world(tmp_path, "tiny", "another-digest") is None
    tab = panel_run.world_table({"tiny": rec})
    assert tab.loc[0, "TWIN rank"] in (1, 2, 3) and tab.loc[0, "draws"] == len(spec.data_seeds)
    assert tab.loc[0, "positive rate"] == pytest.approx(rec["positive_rate"])
    summary = panel_run.summarise({"tiny": rec}, spec)
    assert "Across the panel's 1 worlds" in summary["headline"]


def test_panel_claims_follow_the_declared_rule():
    import pandas as pd

    from twin_study.claims.core import rule_violations

    rows = [  # rival, wins, ties, losses, mean effect
        ("all wins", 5, 0, 0, 0.01),
        ("some wins", 2, 3, 0, 0.004),
        ("ties only", 0, 5, 0, 0.001),
        ("one loss", 4, 0, 1, 0.008),
        ("wins but mean <= 0", 1, 4, 0, -0.001),
    ]
    summary = pd.DataFrame(
        [{"rival": r, "metric": "auc", "wins": w, "ties": t, "losses": lo, "n_worlds": 5,
          "mean_effect": m, "min_effect": m - 0.01, "max_effect": m + 0.01, "won_in": "",
          "lost_in": "x" if lo else ""} for r, w, t, lo, m in rows]
    )  # fmt: skip
    claims = {c.claim.split(" > ")[1].split(" across")[0]: c for c in stats.panel_claims(summary)}
    assert claims["all wins"].verdict == "reproduced"
    assert claims["some wins"].verdict == "partly"
    assert claims["ties only"].verdict == "not reproduced"
    assert claims["one loss"].verdict == "not reproduced"
    assert claims["wins but mean <= 0"].verdict == "not reproduced"
    assert all(not rule_violations(c) and c.kind == "paper" for c in claims.values())


def test_a_partial_panel_says_so_and_caps_its_claims():
    import pandas as pd

    summary = pd.DataFrame([{"rival": "SIM Soft", "metric": "auc", "wins": 2, "ties": 0,
                             "losses": 0, "n_worlds": 2, "mean_effect": 0.01, "min_effect": 0.005,
                             "max_effect": 0.015, "won_in": "a, b", "lost_in": ""}])  # fmt: skip
    pairs = (("TWIN", 1), ("SIM Soft", 2))
    ranks = pd.DataFrame([{"world": w, "model": m, "rank_auc": r, "rank_gauc": r}
                          for w in ("a", "b") for m, r in pairs])  # fmt: skip
    text = stats.headline(summary, ranks, 2, 0.95, missing=["c", "d"])
    assert text.startswith("**Partial panel: 2 of 4 declared worlds have run** (not yet: c, d)")
    (full,) = stats.panel_claims(summary)
    (part,) = stats.panel_claims(summary, missing=["c", "d"])
    assert full.verdict == "reproduced" and part.verdict == "partly"
    assert "not yet run: c, d" in part.detail
