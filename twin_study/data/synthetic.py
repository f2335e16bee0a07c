"""Synthetic lifelong behaviour data with a planted ground truth.

Why synthetic data: the paper's data is private, and public logs are short (Taobao <= ~500
behaviours per user). Here every user has thousands of behaviours, and we know (a) the true
click probability of every sample, hence the Bayes-optimal AUC, and (b) which behaviours truly
decide each click, hence a retrieval ground truth for every GSU.

The generative story (all numbers are ``SyntheticConfig`` fields):

* Items belong to authors, authors to one of ``n_categories`` categories (37 as in the paper).
  Items carry inherent features (item id, author, category, duration bucket) and a hidden latent
  vector clustered by category and author (kept in ``meta`` for analyses; no model sees it).
* A user has several interests; an interest is one category and a handful of favourite authors
  in it. Some interests are *dormant*: active only early in the user's six-month history, so
  the most recent behaviours say nothing about them — only a lifelong model can use them.
* Each behaviour is either noise (a popular item, rarely watched to the end) or drawn from an
  interest active at that time. Two request-independent cross features are stored per
  behaviour: the play-time ratio bucket (engaged behaviours are watched longer) and a like flag.
  The time gap to the request is the third cross feature, computed at batch time.
* How well category predicts relevance is a knob, ``off_category_items`` (default 0): the
  share of items filed under a category other than their author's (each such item gets one of
  the other categories at random). At 0 an author's items all share the author's category, so
  a relevant behaviour (same author as the target, below) always has the target's category and
  SIM Hard's category filter never drops one; at 1 no item sits in its author's category and
  the target's category says almost nothing about which behaviours are relevant. Only the
  item table's ``category`` feature changes: behaviours, requests, clicks, the planted truth
  and the hidden latent vectors (which follow the author) are the same at every value, so
  worlds that differ only in this knob are paired. The re-filing is drawn from its own random
  stream, so the default generates exactly the data it did before the knob existed.
* Requests come late in the history; each has a few candidate targets, half of them from the
  user's interests (dormant ones included). The click logit is
  ``base + strength * log1p(n_rel) + quality[item]`` where ``n_rel`` counts the *relevant*
  behaviours visible before the request: same author as the target AND engaged (play-time
  bucket >= ``engaged_bucket``). A few such behaviours among thousands decide the click.
  That is the ``truth = "count"`` world: evidence adds up over behaviours, the shape a
  target-attention pooling models well.
* ``truth = "nearest"`` plants a click truth that is *not* attention-shaped: the click is
  driven by the single engaged visible behaviour whose hidden latent vector is nearest the
  target's, ``base + strength * nearest_weight * max_b exp(-|z_t - z_b|^2 / (2 s^2))`` with
  ``s = nearest_scale``: one good match decides, more matches add nothing. Its relevant
  behaviours (the retrieval ground truth) are the engaged visible ones whose kernel is at
  least half the maximum (and >= ``nearest_floor``).
* ``interest_drift`` > 0 lets interests drift over a lifetime: each interest's favourite
  authors are ordered, and at time fraction tau of the history a behaviour (or a target at
  request time) picks the favourite at position ``clip(tau + drift * N(0, 1), 0, 1)`` of the
  list instead of a uniform one, so the authors a user watched early are not the ones they
  watch late. The drift draws come from their own random stream and the main stream is
  consumed as at 0, so worlds that differ only in drift share everything else.

Life-cycle worlds (TWIN-V2, issue 26; presets in ``LIFECYCLE_WORLDS``/``lifecycle_params``).
TWIN-V2 claims that clustering the whole lifelong history (10^5 behaviours) beats TWIN, which
reads only the last ``window`` (10^4) behaviours, and that the gain comes from targets whose
evidence lies beyond that window: interests that went quiet long ago and come back.

* ``p_target_from_dormant`` (default 0: off): a share of the candidates is redrawn from the
  user's dormant interests, which stopped at ``dormant_end`` of the span, long before the
  requests (the last ``request_window``). With ``count`` truth their click counts the user's
  lifetime relevant behaviours, which then all lie beyond a window that covers less than the
  time since ``dormant_end``. The redraws use their own random stream, so a world with this
  knob shares every behaviour and every other target with the world without it.
* ``truth_window`` (default 0: the whole visible history counts): the click truth and the
  relevant behaviours are limited to the last ``truth_window`` behaviours before the request.
  Set to the window, everything that matters lies inside it: the *control* world, in which
  TWIN-V2 should match TWIN and not beat it (no model can beat the Bayes truth, and it reads
  only what TWIN reads). Only ``p_true``, the labels and the relevant sets change: the
  behaviours, requests and targets are those of the world at 0, so the pair differs only in
  where the evidence lies.

``relevant_beyond`` counts, per sample, the planted relevant behaviours older than a window:
the quantity the gain should concentrate on.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .schema import BehaviourLog, Dataset, ItemTable, Samples

DAY = 86_400
TRUTHS = {
    "count": "click logit grows with log1p(# engaged visible same-author behaviours)",
    "nearest": "click logit grows with the kernel of the single nearest engaged behaviour",
}


@dataclass
class SyntheticConfig:
    n_users: int = 1000  # users
    n_items: int = 20_000  # items (ids 1..n_items)
    n_categories: int = 37  # categories, as in the paper's SIM Hard setting
    n_authors: int = 2_000  # authors; each belongs to one category
    n_durations: int = 8  # duration buckets (an inherent feature with no signal)
    latent_dim: int = 16  # hidden item latent vectors (analysis only)
    history_len: int = 10_000  # median history length per user
    history_sigma: float = 0.3  # log-normal spread of history lengths
    history_min: int = 200  # shortest history
    history_max: int = 100_000  # longest history (the paper cuts at 10^5)
    history_days: int = 180  # span of a history (the paper: 6 months)
    interests: tuple[int, int] = (3, 6)  # interests per user, inclusive range
    authors_per_interest: tuple[int, int] = (10, 30)  # favourite authors per interest
    dormant_frac: float = 0.4  # share of interests that are dormant
    dormant_end: tuple[float, float] = (0.2, 0.6)  # a dormant interest stops at this share of time
    noise_frac: float = 0.6  # share of behaviours that come from no interest
    # P(engaged | behaviour from an interest) is the user's affinity to that favourite author,
    # drawn uniformly from this range: how fully a user watched an author's past videos is
    # what later decides whether they click that author's next one.
    affinity_range: tuple[float, float] = (0.0, 0.8)
    engaged_if_noise: float = 0.05  # P(engaged | noise behaviour)
    play_buckets: int = 10  # play-time ratio buckets; >= engaged_bucket means engaged
    engaged_bucket: int = 5
    requests_per_user: int = 10  # requests per user, in the last `request_window` of time
    candidates_per_request: int = 5  # targets scored per request
    request_window: float = 0.2  # requests fall in the last 20 % of the history's span
    p_target_from_interest: float = 0.5  # share of candidates drawn from the user's interests
    base_logit: float = -2.0  # click logit with no relevant behaviour
    strength: float = 1.2  # logit per log1p(relevant behaviours)
    quality_sigma: float = 0.5  # per-item click quality (learnable from the item id)
    # Share of items filed under another category than their author's, in [0, 1]: how badly
    # category predicts relevance (0: perfectly, SIM Hard's premise; 1: hardly at all).
    off_category_items: float = 0.0
    # The click truth (see the module docstring): "count" = log1p(relevant behaviours), the
    # shape attention pools well; "nearest" = the single nearest engaged behaviour decides.
    truth: str = "count"
    nearest_weight: float = 3.0  # "nearest": evidence of a perfect match (log1p(20) ~ 3.0)
    nearest_scale: float = 1.0  # "nearest": kernel width in latent units (same author ~ 0.5)
    nearest_floor: float = 0.05  # "nearest": a behaviour below this kernel value is irrelevant
    # Interest drift over a lifetime (0: none; the favourite authors are drawn uniformly).
    interest_drift: float = 0.0
    # Life-cycle knobs (see "Life-cycle worlds" in the module docstring; 0 = off for both).
    # Share of candidates whose target is drawn from one of the user's dormant interests, on
    # top of the interest draw above (0: only that draw, which may land on a dormant interest).
    p_target_from_dormant: float = 0.0
    # Behaviours the click truth reaches back: only relevant behaviours among the last
    # ``truth_window`` before the request count (0: the whole visible history counts).
    truth_window: int = 0
    name: str = ""  # data set name; empty: "synthetic" (plus the off-category marker)
    split_quantiles: tuple[float, float] = (0.8, 0.9)  # request-time cut points train|valid|test
    seed: int = 0

    def validate(self) -> SyntheticConfig:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"SyntheticConfig: {msg}")

        need(self.n_users > 0 and self.n_items > 0, "n_users and n_items must be positive")
        need(
            0 < self.n_categories <= self.n_authors <= self.n_items,
            "need n_categories <= n_authors <= n_items",
        )
        need(
            1 <= self.history_min <= self.history_len <= self.history_max,
            "need 1 <= history_min <= history_len <= history_max",
        )
        need(1 <= self.interests[0] <= self.interests[1], "interests must be a range >= 1")
        need(
            self.interests[1] <= self.n_categories,
            f"interests up to {self.interests[1]} need as many categories (each interest has its "
            f"own), got n_categories={self.n_categories}",
        )
        need(
            1 <= self.authors_per_interest[0] <= self.authors_per_interest[1],
            "authors_per_interest must be a range >= 1",
        )
        need(0 <= self.noise_frac < 1, "noise_frac must be in [0, 1)")
        need(0 < self.request_window < 1, "request_window must be in (0, 1)")
        need(0 < self.engaged_bucket < self.play_buckets, "engaged_bucket must split play_buckets")
        need(
            self.requests_per_user >= 1 and self.candidates_per_request >= 1,
            "requests_per_user and candidates_per_request must be >= 1",
        )
        need(
            0.0 <= self.off_category_items <= 1.0,
            f"off_category_items must be in [0, 1], got {self.off_category_items}",
        )
        need(
            self.off_category_items == 0.0 or self.n_categories >= 2,
            "off_category_items > 0 needs n_categories >= 2 (another category to file items in)",
        )
        need(
            self.truth in TRUTHS,
            f"unknown truth {self.truth!r}; choose one of {sorted(TRUTHS)}",
        )
        need(
            self.nearest_scale > 0 and 0 <= self.nearest_floor < 1,
            "nearest_scale must be > 0 and nearest_floor in [0, 1)",
        )
        need(self.interest_drift >= 0, f"interest_drift must be >= 0, got {self.interest_drift}")
        self._validate_lifecycle(need)
        q0, q1 = self.split_quantiles
        need(0 < q0 < q1 < 1, "split_quantiles must be 0 < train < valid < 1")
        return self

    def _validate_lifecycle(self, need: Callable[[bool, str], None]) -> None:
        """The dormancy and life-cycle knobs: ranges, and dormant targets need dormant interests."""
        a, b = self.dormant_end
        need(0.0 <= a <= b <= 1.0, f"dormant_end must be 0 <= start <= end <= 1, got {(a, b)}")
        need(
            0.0 <= self.dormant_frac <= 1.0,
            f"dormant_frac must be in [0, 1], got {self.dormant_frac}",
        )
        p = self.p_target_from_dormant
        need(0.0 <= p <= 1.0, f"p_target_from_dormant must be in [0, 1], got {p}")
        need(
            p == 0.0 or (self.dormant_frac > 0 and self.interests[1] >= 2),
            "p_target_from_dormant > 0 needs dormant interests: dormant_frac > 0 and interests "
            f"up to >= 2 (the first stays active), got dormant_frac={self.dormant_frac}, "
            f"interests={self.interests}",
        )
        w = self.truth_window
        need(
            isinstance(w, int | np.integer) and not isinstance(w, bool) and w >= 0,
            f"truth_window must be a whole number of behaviours >= 0 (0: no limit), got {w!r}",
        )


def _items(cfg: SyntheticConfig, rng: np.random.Generator):
    """Item table: author -> category, items -> author, latent vectors, popularity."""
    author_cat = np.concatenate(
        [
            np.arange(cfg.n_categories),
            rng.integers(0, cfg.n_categories, cfg.n_authors - cfg.n_categories),
        ]
    )
    rng.shuffle(author_cat)
    item_author = np.concatenate(
        [np.arange(cfg.n_authors), rng.integers(0, cfg.n_authors, cfg.n_items - cfg.n_authors)]
    )
    rng.shuffle(item_author)
    cat_centre = rng.normal(size=(cfg.n_categories, cfg.latent_dim))
    author_off = 0.5 * rng.normal(size=(cfg.n_authors, cfg.latent_dim))
    latent = (
        cat_centre[author_cat[item_author]]
        + author_off[item_author]
        + 0.2 * rng.normal(size=(cfg.n_items, cfg.latent_dim))
    ).astype(np.float32)
    popularity = rng.zipf(1.6, cfg.n_items).astype(np.float64)
    popularity = np.minimum(popularity, 1e4)
    popularity /= popularity.sum()
    quality = rng.normal(0.0, cfg.quality_sigma, cfg.n_items)
    item_cat = _off_category(cfg, author_cat[item_author])
    # Shift author and category codes by one so that code 0 is reserved for the padding item.
    pad = np.zeros(1, dtype=np.int32)
    features = {
        "author": np.concatenate([pad, item_author + 1]).astype(np.int32),
        "category": np.concatenate([pad, item_cat + 1]).astype(np.int32),
        "duration": np.concatenate([pad, rng.integers(1, cfg.n_durations + 1, cfg.n_items)]).astype(
            np.int32
        ),
    }
    vocab = {
        "author": cfg.n_authors + 1,
        "category": cfg.n_categories + 1,
        "duration": cfg.n_durations + 1,
    }
    items = ItemTable(n_items=cfg.n_items, features=features, vocab=vocab)
    # Item ids of each author (0-based author -> 1-based item ids), for drawing from interests.
    order = np.argsort(item_author, kind="stable")
    author_ptr = np.concatenate([[0], np.cumsum(np.bincount(item_author, minlength=cfg.n_authors))])
    authors_of_cat = [np.flatnonzero(author_cat == c) for c in range(cfg.n_categories)]
    return items, latent, popularity, quality, author_cat, order + 1, author_ptr, authors_of_cat


# Entropy mixed into the seed of the knob's own random stream (any fixed number would do).
_OFF_CATEGORY_STREAM = 0x0FFCA7


def _off_category(cfg: SyntheticConfig, cat: np.ndarray) -> np.ndarray:
    """0-based category per item: the author's, except for a share ``off_category_items``
    filed under one of the other categories.

    The draws come from a separate stream seeded by ``(seed, _OFF_CATEGORY_STREAM)``, never
    from the generator's main stream, so the knob changes nothing else, and at 0 nothing at all
    (the main stream is not touched). The same uniforms serve every value of the knob, so the
    items re-filed at 0.5 are a subset of those at 1.0, with the same new categories.
    """
    x = cfg.off_category_items
    if x == 0.0:
        return cat
    rng = np.random.default_rng([cfg.seed, _OFF_CATEGORY_STREAM])
    u = rng.random(len(cat))
    shift = rng.integers(1, cfg.n_categories, len(cat))  # never 0: a different category
    return np.where(u < x, (cat + shift) % cfg.n_categories, cat)


# Entropy of the interest-drift stream (any fixed number would do).
_DRIFT_STREAM = 0xD21F7


def dataset_name(cfg: SyntheticConfig) -> str:
    """``"synthetic"``, or ``"synthetic-offcat<x>"`` when ``off_category_items`` is x > 0.

    The knob changes only the item table, which the results cache's data fingerprint
    (``training.experiment.fingerprint``: the name, the log and the samples) does not read;
    the name is what keeps runs on different worlds from sharing cache entries. It also labels
    the world in tables. At 0 the name stays ``"synthetic"``, so existing cache keys hold.
    A non-empty ``cfg.name`` (the panel's worlds) is used as it is.
    """
    if cfg.name:
        return cfg.name
    x = cfg.off_category_items
    return "synthetic" if x == 0.0 else f"synthetic-offcat{x:g}"


# --- life-cycle worlds (issue 26, TWIN-V2) ------------------------------------------------

# TWIN's window, in behaviours, at each size: the paper's 10^4 and a quick tenth-scale one.
LIFECYCLE_WINDOW = {"quick": 500, "paper": 10_000}
# The size of each world. "quick": seconds to generate (tests, notebook drafts); "paper":
# histories of 10^5 (the paper's cut; about half the users reach it), 10x TWIN's window;
# 200 users x 10^5 (1.8e7 behaviours): peak 0.8 GB, ~17 s (measured for issue 26; both grow
# linearly with n_users, so a few hundred users fit a 24 GB machine with room to spare).
_LIFECYCLE_SIZE: dict[str, dict[str, Any]] = {
    "quick": {"n_users": 40, "n_items": 2000, "n_authors": 200, "history_len": 3000,
              "history_sigma": 0.2, "history_min": 1500, "history_max": 5000},
    "paper": {"n_users": 200, "history_len": 100_000, "history_sigma": 0.3,
              "history_min": 40_000, "history_max": 100_000},
}  # fmt: skip
# What makes a world life-cycle: half the interests dormant, stopping within the first 40 %
# of the span, so beyond the window at every request (requests start at 80 % of the span and
# the window covers at most ~40 % of it at the shortest histories), and 30 % of candidates
# drawn from them.
_LIFECYCLE_SHAPE: dict[str, Any] = {
    "dormant_frac": 0.5,
    "dormant_end": (0.1, 0.4),
    "p_target_from_dormant": 0.3,
}


def lifecycle_params(world: str = "lifecycle", size: str = "quick") -> dict[str, Any]:
    """``SyntheticConfig`` overrides of a life-cycle world, for ``load_dataset("synthetic",
    **params)``: ``world`` "lifecycle" or "lifecycle_control", ``size`` "quick" or "paper".

    * "lifecycle" tests TWIN-V2's main claim (V2 > TWIN at equal GSU length, the gain on
      targets whose relevant behaviours lie beyond ``LIFECYCLE_WINDOW[size]``, growing with
      history length): dormant interests come back as targets, and their click counts the
      lifetime relevant behaviours.
    * "lifecycle_control" tests the null: the same world with ``truth_window`` equal to the
      window, so everything that matters lies in the last window and V2 should match TWIN,
      not beat it. It shares behaviours, requests and targets with "lifecycle".
    """
    if world not in ("lifecycle", "lifecycle_control"):
        raise ValueError(
            f"unknown life-cycle world {world!r}; choose lifecycle or lifecycle_control"
        )
    if size not in _LIFECYCLE_SIZE:
        raise ValueError(
            f"unknown life-cycle size {size!r}; choose one of {sorted(_LIFECYCLE_SIZE)}"
        )
    control = {"truth_window": LIFECYCLE_WINDOW[size]} if world == "lifecycle_control" else {}
    return {**_LIFECYCLE_SIZE[size], **_LIFECYCLE_SHAPE, **control, "name": world}


# The two worlds at the quick size (``lifecycle_params(world, "paper")`` for the paper's).
LIFECYCLE_WORLDS: dict[str, dict[str, Any]] = {
    w: lifecycle_params(w) for w in ("lifecycle", "lifecycle_control")
}


def generate(cfg: SyntheticConfig | None = None, progress: bool = False) -> Dataset:
    """Generate a synthetic lifelong-behaviour data set; deterministic for ``cfg.seed``."""
    cfg = (cfg or SyntheticConfig()).validate()
    t0 = _time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    items, latent, popularity, quality, author_cat, author_items, author_ptr, authors_of_cat = (
        _items(cfg, rng)
    )
    item_author0 = items.features["author"] - 1  # 0-based author per item id (row 0 = -1)
    span = cfg.history_days * DAY

    lengths = np.exp(rng.normal(np.log(cfg.history_len), cfg.history_sigma, cfg.n_users))
    lengths = np.clip(np.round(lengths), cfg.history_min, cfg.history_max).astype(np.int64)
    user_ptr = np.concatenate([[0], np.cumsum(lengths)])
    n_total = int(user_ptr[-1])
    b_item = np.empty(n_total, dtype=np.int32)
    b_time = np.empty(n_total, dtype=np.int64)
    b_cross = np.empty((n_total, 2), dtype=np.int16)  # play-time bucket, like flag
    b_engaged = np.empty(n_total, dtype=bool)

    n_req = cfg.n_users * cfg.requests_per_user
    n_smp = n_req * cfg.candidates_per_request
    s_user = np.repeat(np.arange(cfg.n_users), cfg.requests_per_user * cfg.candidates_per_request)
    s_item = np.empty(n_smp, dtype=np.int64)
    s_time = np.empty(n_smp, dtype=np.int64)
    s_end = np.empty(n_smp, dtype=np.int64)
    s_nrel = np.empty(n_smp, dtype=np.int64)
    s_from_interest = np.empty(n_smp, dtype=bool)
    s_dormant = np.zeros(n_smp, dtype=bool)
    rel_chunks: list[np.ndarray] = []
    rel_counts = np.empty(n_smp, dtype=np.int64)

    drift = cfg.interest_drift
    rng_drift = np.random.default_rng([cfg.seed, _DRIFT_STREAM]) if drift > 0 else None
    lifecycle = cfg.p_target_from_dormant > 0
    rng_life = np.random.default_rng([cfg.seed, _LIFECYCLE_STREAM]) if lifecycle else None
    nearest = cfg.truth == "nearest"
    s_evidence = np.empty(n_smp, dtype=np.float64)  # what the logit reads per sample

    def drifted(u: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Position in [0, 1) of the favourite to pick: uniform ``u`` without drift, else near
        the time fraction ``tau`` (the main stream's ``u`` is drawn either way)."""
        if rng_drift is None:
            return u
        return np.clip(tau + drift * rng_drift.normal(size=len(tau)), 0.0, 1.0 - 1e-9)

    users = range(cfg.n_users)
    if progress:
        users = tqdm(users, desc="synthetic users")
    per_user = cfg.requests_per_user * cfg.candidates_per_request
    for u in users:
        lo, n = int(user_ptr[u]), int(lengths[u])
        # --- interests: a category, favourite authors, an activity window ---
        k = int(rng.integers(cfg.interests[0], cfg.interests[1] + 1))
        cats = rng.choice(cfg.n_categories, size=k, replace=False)
        fav, aff = [], []
        for c in cats:
            pool = authors_of_cat[c]
            m = min(
                len(pool),
                int(rng.integers(cfg.authors_per_interest[0], cfg.authors_per_interest[1] + 1)),
            )
            fav.append(rng.choice(pool, size=m, replace=False))
            aff.append(rng.uniform(*cfg.affinity_range, size=m))
        dormant = rng.random(k) < cfg.dormant_frac
        dormant[0] = False  # every user keeps at least one active interest
        end = np.where(dormant, rng.uniform(*cfg.dormant_end, size=k), 1.0) * span
        # --- behaviours ---
        t = np.sort(rng.integers(0, span, n))
        noise = rng.random(n) < cfg.noise_frac
        # Choose an interest among those active at time t (weights 1 when active, else 0).
        active = t[:, None] < end[None, :]  # (n, k)
        w = active * rng.random((n, k))
        which = np.argmax(w, axis=1)
        noise |= ~active.any(axis=1)
        fav_len = np.array([len(f) for f in fav])
        fav_pick = (drifted(rng.random(n), t / span) * fav_len[which]).astype(np.int64)
        fav_flat = np.concatenate(fav)
        fav_off = np.concatenate([[0], np.cumsum(fav_len)[:-1]])
        author = fav_flat[fav_off[which] + fav_pick]
        p_engaged = np.concatenate(aff)[fav_off[which] + fav_pick]
        a_lo, a_hi = author_ptr[author], author_ptr[author + 1]
        item = author_items[a_lo + (rng.random(n) * (a_hi - a_lo)).astype(np.int64)]
        noise_items = rng.choice(cfg.n_items, size=int(noise.sum()), p=popularity) + 1
        item[noise] = noise_items
        author[noise] = item_author0[noise_items]  # relevance must use the item actually seen
        engaged = rng.random(n) < np.where(noise, cfg.engaged_if_noise, p_engaged)
        play = np.where(
            engaged,
            rng.integers(cfg.engaged_bucket, cfg.play_buckets, n),
            rng.integers(0, cfg.engaged_bucket, n),
        )
        like = rng.random(n) < np.where(engaged, 0.4, 0.02)
        b_item[lo : lo + n] = item
        b_time[lo : lo + n] = t
        b_cross[lo : lo + n, 0] = play
        b_cross[lo : lo + n, 1] = like
        b_engaged[lo : lo + n] = engaged

        # --- requests and candidates ---
        r_time = np.sort(
            rng.integers(int((1 - cfg.request_window) * span), span, cfg.requests_per_user)
        )
        r_end = np.searchsorted(t, r_time, side="left")  # strictly before the request
        c = cfg.candidates_per_request
        from_int = rng.random(per_user) < cfg.p_target_from_interest
        pick_int = rng.integers(0, k, per_user)
        draws = [rng.integers(0, len(fav[i])) for i in pick_int]  # main stream, as at 0
        if rng_drift is not None:  # a drifting interest: the favourite of the request's time
            pos = drifted(np.zeros(per_user), np.repeat(r_time, c) / span)
            draws = [min(int(p * len(fav[i])), len(fav[i]) - 1)
                     for i, p in zip(pick_int, pos, strict=True)]  # fmt: skip
        if rng_life is not None:  # a share of targets from dormant interests (own stream)
            from_int, pick_int, draws = _dormant_targets(
                cfg.p_target_from_dormant, rng_life, dormant, fav, from_int, pick_int, draws
            )
        pick_auth = np.array([fav[i][j] for i, j in zip(pick_int, draws, strict=True)])
        a_lo, a_hi = author_ptr[pick_auth], author_ptr[pick_auth + 1]
        tgt = np.where(
            from_int,
            author_items[a_lo + (rng.random(per_user) * (a_hi - a_lo)).astype(np.int64)],
            rng.choice(cfg.n_items, size=per_user, p=popularity) + 1,
        )
        sl = slice(u * per_user, (u + 1) * per_user)
        s_item[sl] = tgt
        s_time[sl] = np.repeat(r_time, c)
        ends = np.repeat(r_end, c)
        s_end[sl] = lo + ends
        s_from_interest[sl] = from_int
        s_dormant[sl] = from_int & dormant[pick_int]
        visible = _truth_visible(engaged, ends, cfg.truth_window)
        if nearest:
            rel, s_evidence[sl] = _nearest_relevant(cfg, latent, tgt, item, visible)
        else:
            # Relevant: same author as the target, engaged, and visible before the request.
            rel = (author[None, :] == item_author0[tgt][:, None]) & visible
        rows, cols = np.nonzero(rel)
        rel_counts[sl] = np.bincount(rows, minlength=per_user)
        rel_chunks.append(lo + cols)
        s_nrel[sl] = rel_counts[sl]

    evidence = s_evidence if nearest else np.log1p(s_nrel)
    logit = cfg.base_logit + cfg.strength * evidence + quality[s_item - 1]
    p_true = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n_smp) < p_true).astype(np.float32)
    q0, q1 = np.quantile(s_time, cfg.split_quantiles)
    split = np.where(s_time <= q0, 0, np.where(s_time <= q1, 1, 2)).astype(np.int8)
    log = BehaviourLog(
        user_ptr=user_ptr.astype(np.int64),
        item=b_item,
        time=b_time,
        cross=b_cross,
        cross_names=["play_ratio", "liked"],
        cross_vocab=[cfg.play_buckets, 2],
    )
    samples = Samples(
        user=s_user.astype(np.int64),
        item=s_item,
        label=label,
        time=s_time,
        hist_end=s_end,
        split=split,
        request=np.arange(n_smp, dtype=np.int64) // cfg.candidates_per_request,
    )
    ds = Dataset(
        name=dataset_name(cfg),
        items=items,
        log=log,
        samples=samples,
        user_features={"user": np.arange(cfg.n_users, dtype=np.int64)},
        user_vocab={"user": cfg.n_users},
        p_true=p_true.astype(np.float64),
        relevant_ptr=np.concatenate([[0], np.cumsum(rel_counts)]).astype(np.int64),
        relevant_idx=np.concatenate(rel_chunks).astype(np.int64)
        if rel_chunks
        else np.zeros(0, np.int64),
        meta={
            "config": asdict(cfg),
            "item_latent": latent,
            "item_quality": quality,
            "engaged": b_engaged,
            "n_relevant": s_nrel,
            "target_from_interest": s_from_interest,
            "target_dormant": s_dormant,
            "generation_seconds": _time.perf_counter() - t0,
        },
    )
    return ds.validate()


# Entropy of the life-cycle (dormant target) stream (any fixed number would do).
_LIFECYCLE_STREAM = 0x11FEC7C1E


def _dormant_targets(
    p: float,
    rng_life: np.random.Generator,
    dormant: np.ndarray,
    fav: list[np.ndarray],
    from_int: np.ndarray,
    pick_int: np.ndarray,
    draws: list[int],
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Redraw a share ``p`` of one user's candidates from the user's dormant interests.

    Returns the new ``(from_int, pick_int, draws)``: for a redrawn candidate, a dormant
    interest uniformly and a favourite author of it uniformly (interest drift is not applied
    to them). Why a stream of its own: the main stream's draws stay as they are, so worlds
    that differ only in ``p`` share every behaviour and every other target. Three uniforms
    per candidate are drawn whatever ``p`` is and whether or not the user has a dormant
    interest, so the candidates redrawn at a smaller ``p`` are a subset of those at a larger
    one, with the same targets. A user without dormant interests keeps the main draw.
    """
    u, v, w = rng_life.random((3, len(pick_int)))
    sleeping = np.flatnonzero(dormant)
    if len(sleeping) == 0:
        return from_int, pick_int, draws
    take = u < p
    pick = np.where(take, sleeping[(v * len(sleeping)).astype(np.int64)], pick_int)
    new = [int(wj * len(fav[i])) if t else d
           for t, i, wj, d in zip(take, pick, w, draws, strict=True)]  # fmt: skip
    return from_int | take, pick, new


def _truth_visible(engaged: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """(C, n) the behaviours the click truth may read: engaged, before the request, and with
    ``window`` > 0 among the last ``window`` behaviours before it (the life-cycle control)."""
    pos = np.arange(len(engaged))[None, :]
    visible = engaged[None, :] & (pos < ends[:, None])
    if window > 0:
        visible &= pos >= ends[:, None] - window
    return visible


def relevant_beyond(
    ds: Dataset, sample_idx: np.ndarray | None = None, window: int = 10_000
) -> np.ndarray:
    """(len(sample_idx),) how many of each sample's relevant behaviours lie beyond ``window``:
    older than the last ``window`` behaviours before its request.

    Why: TWIN-V2's claim is a gain on targets whose evidence a window-``window`` model (TWIN)
    cannot see, so the analysis buckets samples by this count (or by the share
    ``relevant_beyond(...) / np.diff(ds.relevant_ptr)[sample_idx]``). "Relevant" is the
    planted truth, ``ds.relevant_ptr/relevant_idx``: the behaviours that drive ``p_true``.
    ``sample_idx`` None means every sample. Vectorised over the CSR arrays: ~10^4 samples
    with thousands of relevant behaviours each take milliseconds.
    """
    if ds.relevant_ptr is None or ds.relevant_idx is None:
        raise ValueError(f"data set {ds.name!r} has no planted relevant behaviours")
    if window < 0:
        raise ValueError(f"window must be >= 0 behaviours, got {window}")
    n = len(ds.samples)
    idx = np.arange(n) if sample_idx is None else np.asarray(sample_idx, dtype=np.int64)
    start = ds.relevant_ptr[idx]
    count = ds.relevant_ptr[idx + 1] - start
    owner = np.repeat(np.arange(len(idx)), count)
    pos = np.arange(int(count.sum())) + np.repeat(start - (np.cumsum(count) - count), count)
    old = ds.relevant_idx[pos] < ds.samples.hist_end[idx][owner] - window
    return np.bincount(owner[old], minlength=len(idx)).astype(np.int64)


def _nearest_relevant(
    cfg: SyntheticConfig,
    latent: np.ndarray,
    tgt: np.ndarray,
    item: np.ndarray,
    visible: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The "nearest" truth for one user's candidates: ``(relevant, evidence)``.

    ``tgt``: (C,) target item ids; ``item``: (n,) behaviour item ids; ``visible``: (C, n)
    engaged behaviours before each request. The kernel of a behaviour is
    ``exp(-|z_t - z_b|^2 / (2 s^2))`` on the hidden latent vectors; the evidence is
    ``nearest_weight`` times the largest kernel among visible behaviours (0 when none), and
    the relevant behaviours are those within half of that maximum (and >= ``nearest_floor``).
    """
    zt = latent[tgt - 1].astype(np.float64)  # (C, d)
    zb = latent[item - 1].astype(np.float64)  # (n, d)
    d2 = (zt**2).sum(1)[:, None] + (zb**2).sum(1)[None, :] - 2.0 * zt @ zb.T  # (C, n)
    kern = np.where(visible, np.exp(-np.maximum(d2, 0.0) / (2.0 * cfg.nearest_scale**2)), 0.0)
    best = kern.max(axis=1) if kern.shape[1] else np.zeros(len(tgt))  # (C,)
    rel = (kern >= 0.5 * best[:, None]) & (kern >= cfg.nearest_floor) & visible
    return rel, cfg.nearest_weight * best


def bayes_auc(ds: Dataset, split: str = "test") -> float:
    """AUC of the true click probability: no model can do better in expectation."""
    from sklearn.metrics import roc_auc_score  # lazy: sklearn is heavy; generation needs none

    if ds.p_true is None:
        raise ValueError(f"data set {ds.name!r} has no ground truth (p_true)")
    idx = ds.split_indices(split)
    return float(roc_auc_score(ds.samples.label[idx], ds.p_true[idx]))
