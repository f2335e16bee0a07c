"""Life-cycle worlds (issue 26, TWIN-V2): dormant interests that come back as targets, the
control world whose evidence all lies in the last window, and the planted-truth count of
relevant behaviours beyond a window. The default world's digests are pinned in
tests/test_off_category.py; here: the knobs at 0 change nothing, and what they do when on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_study.data import Dataset, SyntheticConfig, generate, load_dataset
from twin_study.data.synthetic import (
    LIFECYCLE_WINDOW,
    LIFECYCLE_WORLDS,
    lifecycle_params,
    relevant_beyond,
)

# The generator tests' configuration and array listing (tests/ is on sys.path under pytest).
from test_synthetic import CFG, arrays  # isort: skip

WINDOW = LIFECYCLE_WINDOW["quick"]


@pytest.fixture(scope="module")
def worlds() -> dict[str, Dataset]:
    return {w: load_dataset("synthetic", **p) for w, p in LIFECYCLE_WORLDS.items()}


def most_beyond(d: Dataset, window: int) -> np.ndarray:
    """(S,) the sample has relevant behaviours and more than half lie beyond ``window``."""
    n = np.diff(d.relevant_ptr)
    return (n > 0) & (2 * relevant_beyond(d, None, window) > n)


# --- the default world ---------------------------------------------------------------------


def test_knobs_at_zero_given_explicitly_are_the_default():
    off = generate(dataclasses.replace(CFG, p_target_from_dormant=0.0, truth_window=0))
    base, same = arrays(generate(CFG)), arrays(off)
    for name in base:
        np.testing.assert_array_equal(base[name], same[name], err_msg=name)


# --- the presets ---------------------------------------------------------------------------


def test_presets_are_named_worlds_of_the_quick_size(worlds):
    assert set(worlds) == {"lifecycle", "lifecycle_control"}
    for w, d in worlds.items():
        assert d.name == w
        assert np.median(d.log.lengths()) > 4 * WINDOW  # histories well beyond the window
    paper = lifecycle_params("lifecycle_control", "paper")
    assert paper["history_len"] == 100_000 and paper["truth_window"] == 10_000


def test_control_shares_behaviours_requests_and_targets(worlds):
    a, b = worlds["lifecycle"], worlds["lifecycle_control"]
    for name in ("log.item", "log.time", "log.cross", "samples.item", "samples.hist_end"):
        np.testing.assert_array_equal(arrays(a)[name], arrays(b)[name], err_msg=name)
    np.testing.assert_array_equal(a.meta["target_dormant"], b.meta["target_dormant"])


def test_lifecycle_dormant_targets_rest_on_evidence_beyond_the_window(worlds):
    d = worlds["lifecycle"]
    dormant = d.meta["target_dormant"]
    assert dormant.mean() > 0.3  # 30 % redrawn, plus the ordinary draw's dormant picks
    assert most_beyond(d, WINDOW)[dormant].mean() > 0.8


def test_control_has_all_evidence_inside_the_window(worlds):
    d = worlds["lifecycle_control"]
    assert most_beyond(d, WINDOW).mean() < 0.01
    assert relevant_beyond(d, None, WINDOW).sum() == 0  # by construction: truth_window


def test_dormant_targets_raise_the_dormant_share_and_keep_the_behaviours():
    cfg = dataclasses.replace(CFG, dormant_frac=0.5)
    base, more = generate(cfg), generate(dataclasses.replace(cfg, p_target_from_dormant=0.5))
    np.testing.assert_array_equal(base.log.item, more.log.item)
    assert more.meta["target_dormant"].mean() > base.meta["target_dormant"].mean() + 0.2
    # only redrawn targets change, and a redrawn target is dormant: the rest keep their item
    kept = ~more.meta["target_dormant"]
    np.testing.assert_array_equal(base.samples.item[kept], more.samples.item[kept])


# --- the truth function --------------------------------------------------------------------


def brute_force_beyond(d: Dataset, window: int) -> np.ndarray:
    """One sample at a time, from the definition."""
    out = []
    for s in range(len(d.samples)):
        rel = d.relevant_idx[d.relevant_ptr[s] : d.relevant_ptr[s + 1]]
        out.append(int(np.sum(rel < d.samples.hist_end[s] - window)))
    return np.array(out)


@pytest.mark.parametrize("window", [0, 1, 50, 250, 10_000])
def test_relevant_beyond_matches_a_brute_force_recount(window):
    d = generate(dataclasses.replace(CFG, n_users=8, p_target_from_dormant=0.3))
    want = brute_force_beyond(d, window)
    np.testing.assert_array_equal(relevant_beyond(d, None, window), want)
    pick = np.array([5, 0, 5, len(d.samples) - 1])
    np.testing.assert_array_equal(relevant_beyond(d, pick, window), want[pick])
    if window == 0:
        np.testing.assert_array_equal(want, np.diff(d.relevant_ptr))


def test_truth_window_limits_relevance_to_the_last_behaviours():
    w = 100
    d = generate(dataclasses.replace(CFG, n_users=8, truth_window=w))
    owner = np.repeat(np.arange(len(d.samples)), np.diff(d.relevant_ptr))
    assert np.all(d.relevant_idx >= d.samples.hist_end[owner] - w)
    np.testing.assert_array_equal(d.meta["n_relevant"], np.diff(d.relevant_ptr))


def test_relevant_beyond_needs_truth_and_a_window(worlds):
    d = worlds["lifecycle"]
    with pytest.raises(ValueError, match="window"):
        relevant_beyond(d, None, -1)
    bare = dataclasses.replace(d, relevant_ptr=None, relevant_idx=None)
    with pytest.raises(ValueError, match="no planted relevant"):
        relevant_beyond(bare, None, WINDOW)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"p_target_from_dormant": -0.1}, "p_target_from_dormant"),
        ({"p_target_from_dormant": 1.5}, "p_target_from_dormant"),
        ({"p_target_from_dormant": 0.3, "dormant_frac": 0.0}, "needs dormant interests"),
        ({"p_target_from_dormant": 0.3, "interests": (1, 1)}, "needs dormant interests"),
        ({"truth_window": -5}, "truth_window"),
        ({"truth_window": 500.0}, "truth_window"),
        ({"dormant_end": (0.6, 0.2)}, "dormant_end"),
        ({"dormant_frac": 1.5}, "dormant_frac"),
    ],
)
def test_bad_knob_values_are_rejected_by_name(changes, field):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**changes).validate()


def test_unknown_world_or_size_is_rejected():
    with pytest.raises(ValueError, match="life-cycle world"):
        lifecycle_params("lifecyle")
    with pytest.raises(ValueError, match="life-cycle size"):
        lifecycle_params("lifecycle", "huge")
