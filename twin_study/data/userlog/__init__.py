"""Users' own behaviour logs (CSV, TSV or Parquet) loaded into the shared schema.

A log is one table with one row per behaviour, optionally with a second table of impressions
(the samples, with labels). ``UserLogSpec`` says which column is what::

    spec = UserLogSpec(
        user="user_id", item="video_id", time="time_ms", time_unit="ms", label="is_click",
        item_features={"category": "tag", "author": "author_id"},
        cross_features={"tab": "tab", "liked": "is_like", "play_time": "play_time_ms"},
    )
    ds = load_dataset("userlog", path="log.csv", spec=spec)        # or spec="spec.yaml" / a dict

Columns and how they are read:

* ``user``, ``item``: any raw ids. Users sorted by raw id become ``0..n_users-1``, items sorted by
  raw id become ``1..n_items`` (0 is the padding item).
* ``time``: unix time as numbers (``time_unit`` ``"s"``, ``"ms"``, ``"us"``, ``"ns"``) or ISO-8601
  datetime strings (``"iso"``; zone-less values are read as UTC). ``"auto"`` (default): strings are
  ISO, numbers are seconds unless their size says milliseconds (> 1e11) or finer. The schema
  stores whole seconds.
* ``label``: 0/1 (also ``true``/``false``), raw values translated by ``label_map`` (e.g. Taobao's
  behaviour type ``{"buy": 1, "cart": 1, "pv": 0, "fav": 0}``), or numbers cut at
  ``label_threshold`` (a rating >= 4 -> 1, else 0). A null label means the row is a behaviour
  only, never a sample. Any other value is an error naming its row.
* ``impressions``: a second file (path relative to the log's folder) whose rows are the
  samples: user, item, time and label, in columns named as in the log unless
  ``impression_columns`` renames them (``{"label": "clicked"}``). Impression rows never enter
  anyone's history, and the log's rows are then never samples (its label column, if it has
  one, only serves ``history="positive"``). An impression sees the behaviours strictly before
  its time, so the behaviour logged for the click it records (same time) is not visible to it.
  Item feature columns present in the impressions file describe items only seen there.
* ``item_features``: schema feature name -> column (a list means the same names). A feature
  named ``category`` is required (SIM Hard retrieves by it); map it to whatever column plays
  that role (a genre, a tag, a leaf category). Item features are inherent to the item: the value
  of an item's first row in time order is used, and ``meta["inconsistent_item_features"]``
  counts items whose rows disagree. ``item_table`` (+ ``item_table_key``) reads them from a
  second file joined on the item id instead (KuaiRand ships video features apart).
  ``multi_value_sep`` keeps the first token of list-valued cells (``"28,11"`` -> ``"28"``).
* ``cross_features``: name -> column, request-independent user-item features stored with each
  behaviour. Categorical columns become codes ``1..K`` (sorted raw values, numbers numerically);
  numeric columns (listed in ``numeric``, or by default: float columns and integer columns with
  more than 64 distinct values) become quantile buckets ``1..B`` with at most ``n_buckets``
  buckets, edges from the whole log (no label is used). Null cells of any feature get one
  extra code. Code 0 is always the padding slot. The time gap to the request is not stored:
  the batch builder computes it (``batching.time_gap_bucket``).
* ``user_features``: name -> column, per-user categorical features (first row's value).

How samples are made (the same rule as MovieLens): rows are sorted by (user, time, item raw id,
file order) -- a stable tie-break for equal timestamps. With ``history="all"`` every row is a
behaviour; with ``history="positive"`` only rows labelled 1 (or unlabelled) are, so that
impressions without a click are not part of anyone's history. Each row with a non-null label
whose visible history (behaviours of the same user strictly before it in that order) has at least
``min_history`` entries becomes one sample (one request), target = its item, label = its label.
Splits (``split``):

* ``"global"`` (default): by request time at global quantiles (``split_quantiles``, default
  0.8/0.9): train <= q0 < valid <= q1 < test. No split sees the future of an earlier one,
  across users too; but a user active only late has all samples in valid/test and none in
  training.
* ``"per_user"``: each user's samples in time order, the last ``1 - q1`` of them (rounded, at
  least one for a user with 2+ samples) go to test and the ``q1 - q0`` before them (at least
  one for 3+ samples) to valid; a user keeps at least one training sample. Every test user has
  training samples, at the cost of leakage across users: one user's test may lie before
  another user's training samples in time.

Validation errors name the column and the row (rows are counted from 0 in file order, header not
counted): a missing column, an unparseable time, a non-binary label, an empty file, and
duplicate (user, item, time) rows, which are an error unless ``duplicates="drop"`` (keeps the
first of each group).

Public data sets that fit (see docs/data.md, "Bring your own logs"):

* **KuaiRand** (``log_standard_*.csv`` + ``video_features_basic_*.csv``): ``user="user_id"``,
  ``item="video_id"``, ``time="time_ms"``, ``time_unit="ms"``, ``label="is_click"``,
  ``cross_features={"tab": "tab", "liked": "is_like", "play_time": "play_time_ms"}``,
  ``numeric=["play_time"]``,
  ``item_table="video_features_basic_pure.csv"``, ``item_features={"category": "tag",
  "author": "author_id"}``, ``multi_value_sep=","``, and ``history="positive"`` (only clicked
  videos are behaviours).
* **Taobao UserBehavior** (``UserBehavior.csv``, no header): ``columns=["user", "item",
  "category", "behaviour", "timestamp"]``, ``user="user"``, ``item="item"``,
  ``time="timestamp"``, ``label="behaviour"``, ``label_map={"buy": 1, "cart": 1, "pv": 0,
  "fav": 0}`` (conversion after a click; every row is a click), ``item_features=["category"]``,
  ``cross_features={"behaviour": "behaviour"}``, ``duplicates="drop"``.

The package, one job a module: ``spec`` (the spec, the loader options, the error), ``read``
(reading and validating the files), ``preflight`` (``check_userlog``: the headers only) and
``load`` (``load_userlog`` and the ``userlog`` data set). The events -> Dataset assembly it
shares with MovieLens is ``twin_study.data.events``.
"""

from .load import NUMERIC_MIN_DISTINCT, load_userlog
from .preflight import check_userlog
from .spec import TIME_UNITS, UserLogConfig, UserLogError, UserLogSpec

__all__ = [
    "NUMERIC_MIN_DISTINCT",
    "TIME_UNITS",
    "UserLogConfig",
    "UserLogError",
    "UserLogSpec",
    "check_userlog",
    "load_userlog",
]
