"""The synthetic generator: determinism, the planted truth, and its configuration errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_study.data import Dataset, SyntheticConfig, bayes_auc, generate, load_dataset
from twin_study.data.synthetic import DAY

CFG = SyntheticConfig(
    n_users=60, n_items=3000, n_authors=400, history_len=600, history_min=100,
    requests_per_user=4, seed=7,
)  # fmt: skip


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return generate(CFG)


def arrays(d: Dataset) -> dict[str, np.ndarray]:
    """Every generated array, by name."""
    out = {f"items.{k}": v for k, v in d.items.features.items()}
    out |= {f"log.{k}": getattr(d.log, k) for k in ("user_ptr", "item", "time", "cross")}
    out |= {f"samples.{f.name}": getattr(d.samples, f.name) for f in dataclasses.fields(d.samples)}
    out |= {"p_true": d.p_true, "relevant_ptr": d.relevant_ptr, "relevant_idx": d.relevant_idx}
    return out


def owners(d: Dataset) -> np.ndarray:
    """The sample each entry of ``relevant_idx`` belongs to."""
    return np.repeat(np.arange(len(d.samples)), np.diff(d.relevant_ptr))


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays(ds):
    again = generate(dataclasses.replace(CFG))
    a, b = arrays(ds), arrays(again)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_different_seed_gives_different_data(ds):
    other = arrays(generate(dataclasses.replace(CFG, seed=CFG.seed + 1)))
    mine = arrays(ds)
    for name in ("log.item", "log.time", "samples.item", "samples.label"):
        a, b = mine[name], other[name]
        assert a.shape != b.shape or not np.array_equal(a, b), name


# --- statistics ----------------------------------------------------------------------------


def test_history_lengths_within_range_and_median_near_history_len(ds):
    lengths = ds.log.lengths()
    assert lengths.min() >= CFG.history_min and lengths.max() <= CFG.history_max
    # log-normal, sigma 0.3: the median of 60 users is within ~5 % of history_len (1 s.e.)
    assert abs(np.median(lengths) / CFG.history_len - 1) < 0.15


def test_history_length_clipping():
    d = generate(SyntheticConfig(n_users=50, n_items=500, n_authors=100, history_len=200,
                                 history_sigma=2.0, history_min=150, history_max=260,
                                 requests_per_user=1))  # fmt: skip
    lengths = d.log.lengths()
    assert lengths.min() == 150 and lengths.max() == 260  # sigma 2 hits both clips


def test_sizes_and_label_rate(ds):
    per_user = CFG.requests_per_user * CFG.candidates_per_request
    assert len(ds.samples) == CFG.n_users * per_user
    assert np.array_equal(np.bincount(ds.samples.user), np.full(CFG.n_users, per_user))
    assert 0.05 < ds.samples.label.mean() < 0.6
    # every request holds candidates_per_request samples of one user, time and history
    s = ds.samples
    for name in ("user", "time", "hist_end"):
        col = getattr(s, name).reshape(-1, CFG.candidates_per_request)
        assert (col == col[:, :1]).all(), name


def test_splits_follow_request_time(ds):
    s = ds.samples
    t = [s.time[s.split == i] for i in range(3)]
    assert all(len(x) for x in t)
    assert t[0].max() <= t[1].min() and t[1].max() <= t[2].min()


def test_requests_come_late_and_see_everything_before_them(ds):
    s, log = ds.samples, ds.log
    span = CFG.history_days * DAY
    assert s.time.min() >= (1 - CFG.request_window) * span and s.time.max() < span
    start, stop = log.user_ptr[s.user], log.user_ptr[s.user + 1]
    before = log.time[np.maximum(s.hist_end - 1, start)]
    assert (before < s.time).all()  # strictly before the request
    after = log.time[np.minimum(s.hist_end, stop - 1)]
    assert ((s.hist_end == stop) | (after >= s.time)).all()  # nothing earlier is hidden


def test_relevant_behaviours_are_engaged_visible_and_counted(ds):
    s, log = ds.samples, ds.log
    own = owners(ds)
    idx = ds.relevant_idx
    assert (idx >= log.user_ptr[s.user[own]]).all() and (idx < s.hist_end[own]).all()
    assert (log.time[idx] < s.time[own]).all()
    assert ds.meta["engaged"][idx].all()
    assert (log.cross[idx, 0] >= CFG.engaged_bucket).all()
    # engaged <=> play bucket >= engaged_bucket, for every behaviour
    np.testing.assert_array_equal(ds.meta["engaged"], log.cross[:, 0] >= CFG.engaged_bucket)
    np.testing.assert_array_equal(ds.meta["n_relevant"], np.diff(ds.relevant_ptr))
    # each sample lists distinct behaviours, in log order
    for i in range(0, len(s), 37):
        r = idx[ds.relevant_ptr[i] : ds.relevant_ptr[i + 1]]
        assert (np.diff(r) > 0).all()


def test_relevant_behaviours_are_exactly_the_visible_engaged_same_author_ones(ds):
    s, log = ds.samples, ds.log
    author = ds.items.features["author"]
    own = owners(ds)
    assert (author[log.item[ds.relevant_idx]] == author[s.item[own]]).all()
    engaged = log.cross[:, 0] >= CFG.engaged_bucket
    for i in range(0, len(s), 11):  # and none is missing
        lo = log.user_ptr[s.user[i]]
        seen = np.arange(lo, s.hist_end[i])
        want = seen[(author[log.item[seen]] == author[s.item[i]]) & engaged[seen]]
        got = ds.relevant_idx[ds.relevant_ptr[i] : ds.relevant_ptr[i + 1]]
        np.testing.assert_array_equal(got, want)


def test_dormant_targets_relevant_behaviours_are_old(ds):
    """(Almost) all of a dormant target's evidence predates the end of the interest and lies
    beyond the 100 most recent behaviours. "Almost": a popular noise item by the same author,
    watched to the end after the interest stopped, is relevant too (rare: < 1 % measured)."""
    s, log = ds.samples, ds.log
    span = CFG.history_days * DAY
    own = owners(ds)
    dormant = ds.meta["target_dormant"][own]
    assert dormant.sum() > 20  # enough evidence to look at
    t = log.time[ds.relevant_idx[dormant]]
    # a dormant interest stops by dormant_end[1] of the span; requests start at 1 - window
    assert np.mean(t < CFG.dormant_end[1] * span) > 0.97
    gap_days = (s.time[own[dormant]] - t) / DAY
    min_gap = (1 - CFG.request_window - CFG.dormant_end[1]) * CFG.history_days
    assert np.mean(gap_days >= min_gap) > 0.97
    rank = s.hist_end[own[dormant]] - 1 - ds.relevant_idx[dormant]
    assert np.mean(rank >= 100) > 0.97
    # active-interest targets, by contrast, have evidence among the most recent 100
    active = ds.meta["target_from_interest"][own] & ~dormant
    assert np.mean(s.hist_end[own[active]] - 1 - ds.relevant_idx[active] < 100) > 0.05
    # dormant targets are a subset of targets drawn from interests
    assert not (ds.meta["target_dormant"] & ~ds.meta["target_from_interest"]).any()


def test_true_probability_follows_the_stated_logit(ds):
    s = ds.samples
    n_rel = np.diff(ds.relevant_ptr)
    logit = CFG.base_logit + CFG.strength * np.log1p(n_rel) + ds.meta["item_quality"][s.item - 1]
    np.testing.assert_allclose(ds.p_true, 1 / (1 + np.exp(-logit)), rtol=1e-12)
    assert bayes_auc(ds, "test") > 0.6 and bayes_auc(ds, "train") > 0.6


def test_bayes_auc_needs_ground_truth(ds):
    with pytest.raises(ValueError, match="no ground truth"):
        bayes_auc(dataclasses.replace(ds, p_true=None))


# --- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"history_min": 700, "history_len": 600}, "history_min"),
        ({"history_max": 500, "history_len": 600}, "history_max"),
        ({"engaged_bucket": 10, "play_buckets": 10}, "engaged_bucket"),
        ({"n_categories": 500, "n_authors": 400}, "n_categories"),
        ({"split_quantiles": (0.9, 0.8)}, "split_quantiles"),
        ({"noise_frac": 1.0}, "noise_frac"),
        ({"request_window": 0.0}, "request_window"),
        ({"interests": (0, 2)}, "interests"),
        ({"n_categories": 3, "interests": (3, 6)}, "n_categories=3"),  # was numpy's own error
        ({"candidates_per_request": 0}, "candidates_per_request"),
    ],
)
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        generate(dataclasses.replace(CFG, **changes))


def test_load_dataset_rejects_unknown_parameter():
    with pytest.raises(ValueError, match="bogus"):
        load_dataset("synthetic", bogus=1)


def test_load_dataset_rejects_unknown_name():
    with pytest.raises(ValueError, match="no-such-data.*synthetic"):
        load_dataset("no-such-data")


def test_load_dataset_passes_parameters():
    d = load_dataset("synthetic", n_users=5, n_items=300, n_authors=50, history_len=150,
                     history_min=50, requests_per_user=2, seed=3)  # fmt: skip
    assert d.n_users == 5 and d.items.n_items == 300 and len(d.samples) == 5 * 2 * 5
    assert d.meta["config"]["seed"] == 3
