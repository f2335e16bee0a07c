"""Users' own logs: CSV/Parquet fixtures, spec forms, sample rules and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from twin_study.data.registry import load_dataset
from twin_study.data.userlog import UserLogError, UserLogSpec, load_userlog

# A KuaiRand-shaped log: two users, times in ms, two rows of user 7 in the same millisecond.
KUAI = pd.DataFrame(
    {
        "user_id": [7, 7, 7, 7, 7, 3, 3, 3, 3],
        "video_id": [50, 10, 30, 20, 40, 10, 20, 30, 50],
        "time_ms": [5000, 1000, 2000, 2000, 9000, 1500, 2500, 3500, 4500],
        "is_click": [1, 1, 0, 1, 1, 1, 0, 1, 1],
        "tab": [1, 2, 1, 1, 3, 2, 2, 1, 1],
        "is_like": [0, 1, 0, 0, 1, 0, 0, 1, 0],
        "play_time_ms": [100.0, 5000.0, 0.0, 800.0, 12000.0, 300.0, 0.0, 7000.0, 50.0],
    }
)
VIDEOS = pd.DataFrame(
    {
        "video_id": [10, 20, 30, 40, 50],
        "author_id": [900, 901, 900, 902, 901],
        "tag": ["28,11", "5", "28", "11,5", "5,28"],
    }
)
KUAI_SPEC = {
    "user": "user_id",
    "item": "video_id",
    "time": "time_ms",
    "time_unit": "ms",
    "label": "is_click",
    "item_features": {"category": "tag", "author": "author_id"},
    "cross_features": {"tab": "tab", "liked": "is_like", "play_time": "play_time_ms"},
    "item_table": "videos.csv",
    "multi_value_sep": ",",
}


@pytest.fixture
def kuai(tmp_path: Path) -> Path:
    KUAI.to_csv(tmp_path / "log.csv", index=False)
    VIDEOS.to_csv(tmp_path / "videos.csv", index=False)
    return tmp_path / "log.csv"


def test_kuairand_shaped_csv(kuai: Path) -> None:
    ds = load_dataset("userlog", path=str(kuai), spec=KUAI_SPEC, min_history=1, n_buckets=3)
    assert (ds.n_users, ds.items.n_items, ds.log.n_behaviours) == (2, 5, 9)
    np.testing.assert_array_equal(ds.meta["user_raw_ids"], [3, 7])
    np.testing.assert_array_equal(ds.meta["item_raw_ids"], [10, 20, 30, 40, 50])
    # category = first tag, codes in numeric order of the tags (5 -> 1, 11 -> 2, 28 -> 3)
    np.testing.assert_array_equal(ds.items.features["category"], [0, 3, 1, 3, 2, 1])
    np.testing.assert_array_equal(ds.items.features["author"], [0, 1, 2, 1, 3, 2])
    # user 7 (id 1): sorted by (time, video id): 10@1000, 20@2000, 30@2000, 50@5000, 40@9000
    lo, hi = ds.log.user_ptr[1], ds.log.user_ptr[2]
    np.testing.assert_array_equal(ds.log.item[lo:hi], [1, 2, 3, 5, 4])
    np.testing.assert_array_equal(ds.log.time[lo:hi], [1, 2, 2, 5, 9])  # whole seconds
    assert ds.log.cross_names == ["tab", "liked", "play_time"]
    assert ds.log.cross_vocab[:2] == [4, 3]  # tab 1..3, like 0/1 -> codes 1..2
    play = ds.log.cross[:, 2]
    assert play.min() >= 1 and play.max() <= 3 == ds.log.cross_vocab[2] - 1
    # longer play time never gets a lower bucket
    order = np.argsort(KUAI["play_time_ms"].to_numpy()[_log_rows(ds)])
    assert np.all(np.diff(play[order]) >= 0)
    # every row with >= 1 earlier behaviour is a sample; history ends at its own index
    assert len(ds.samples) == 9 - 2
    np.testing.assert_array_equal(ds.log.item[ds.samples.hist_end], ds.samples.item)


def _log_rows(ds) -> np.ndarray:
    """Original row of each log entry (for the fixture above, via (user, item))."""
    users = ds.meta["user_raw_ids"][np.repeat(np.arange(ds.n_users), ds.log.lengths())]
    items = ds.meta["item_raw_ids"][ds.log.item - 1]
    key = {(u, i): r for r, (u, i) in enumerate(zip(KUAI.user_id, KUAI.video_id, strict=True))}
    return np.array([key[(u, i)] for u, i in zip(users, items, strict=True)])


def test_history_positive_keeps_unclicked_rows_out_of_histories(kuai: Path) -> None:
    ds = load_userlog(kuai, KUAI_SPEC, min_history=1, history="positive")
    assert ds.log.n_behaviours == int(KUAI.is_click.sum())
    # user 3 (id 0): clicked 10@1.5, skipped 20@2.5, clicked 30@3.5 and 50@4.5
    s = ds.samples
    u0 = s.user == 0
    np.testing.assert_array_equal(s.item[u0], [2, 3, 5])
    np.testing.assert_array_equal(s.label[u0], [0, 1, 1])
    np.testing.assert_array_equal(s.hist_end[u0] - ds.log.user_ptr[0], [1, 1, 2])
    assert_no_leakage(ds)


def assert_no_leakage(ds) -> None:
    log, s = ds.log, ds.samples
    start = log.user_ptr[s.user]
    last = np.maximum(s.hist_end - 1, 0)
    assert np.all((s.hist_end == start) | (log.time[last] <= s.time))
    present = [s.time[s.split == i] for i in range(3) if (s.split == i).any()]
    for a, b in zip(present, present[1:], strict=False):
        assert a.max() < b.min()


def test_parquet_iso_times_yaml_spec_and_label_map(tmp_path: Path) -> None:
    """A Taobao-shaped log: behaviour types as labels, ISO times, Parquet, spec from YAML."""
    df = pd.DataFrame(
        {
            "user": ["u2", "u2", "u2", "u1", "u1", "u1", "u1"],
            "item": ["i9", "i8", "i9", "i8", "i7", "i8", "i9"],
            "category": ["c1", "c2", "c1", "c2", "c1", "c2", "c1"],
            "behaviour": ["pv", "pv", "buy", "pv", "pv", "cart", "pv"],
            "timestamp": [
                "2017-11-25T10:00:00Z",
                "2017-11-25T10:00:05Z",
                "2017-11-25T10:01:00Z",
                "2017-11-26 08:00:00",
                "2017-11-26 09:00:00",
                "2017-11-26 10:00:00+01:00",
                "2017-11-27 10:00:00",
            ],
        }
    )
    df.to_parquet(tmp_path / "log.parquet")
    spec = {
        "user": "user",
        "item": "item",
        "time": "timestamp",
        "label": "behaviour",
        "label_map": {"buy": 1, "cart": 1, "pv": 0, "fav": 0},
        "item_features": ["category"],
        "cross_features": {"behaviour": "behaviour"},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    ds = load_dataset(
        "userlog",
        path=str(tmp_path / "log.parquet"),
        spec=str(tmp_path / "spec.yaml"),
        min_history=1,
    )
    assert (ds.n_users, ds.items.n_items, ds.log.n_behaviours, len(ds.samples)) == (2, 3, 7, 5)
    t0 = pd.Timestamp("2017-11-26 08:00:00", tz="UTC").value // 10**9
    lo = ds.log.user_ptr[0]  # u1
    np.testing.assert_array_equal(ds.log.time[lo : lo + 4] - t0, [0, 3600, 3600, 26 * 3600])
    np.testing.assert_array_equal(ds.samples.label, [0, 1, 0, 0, 1])
    assert ds.meta["cross_features"]["behaviour"]["values"] == ["buy", "cart", "pv"]
    # a header-less CSV with column names from the spec gives the same data set
    df.to_csv(tmp_path / "UserBehavior.csv", header=False, index=False)
    spec2 = UserLogSpec(**spec, columns=list(df.columns))
    ds2 = load_userlog(tmp_path / "UserBehavior.csv", spec2, min_history=1)
    np.testing.assert_array_equal(ds2.log.time, ds.log.time)
    np.testing.assert_array_equal(ds2.samples.hist_end, ds.samples.hist_end)


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "log.csv") -> Path:
    df.to_csv(tmp_path / name, index=False)
    return tmp_path / name


SIMPLE = {"user": "u", "item": "i", "time": "t", "label": "y", "item_features": {"category": "c"}}


def simple_log(n_users: int = 2, per_user: int = 4) -> pd.DataFrame:
    rows = [
        {"u": u, "i": j, "t": 100 * j + u, "y": j % 2, "c": j % 3}
        for u in range(n_users)
        for j in range(per_user)
    ]
    return pd.DataFrame(rows)


def test_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, simple_log().drop(columns="t"))
    with pytest.raises(UserLogError, match=r"log.csv: column 't' \(time\) not found"):
        load_userlog(path, SIMPLE, min_history=1)
    with pytest.raises(UserLogError, match=r"column 'play' \(cross feature p\) not found"):
        load_userlog(_write(tmp_path, simple_log()), {**SIMPLE, "cross_features": {"p": "play"}})


def test_unparseable_timestamp(tmp_path: Path) -> None:
    df = simple_log().astype({"t": object})
    df.loc[3, "t"] = "yesterday"
    with pytest.raises(UserLogError, match=r"column 't', row 3: cannot parse 'yesterday'"):
        load_userlog(_write(tmp_path, df), {**SIMPLE, "time_unit": "s"}, min_history=1)
    iso = simple_log().astype({"t": object})
    iso["t"] = "2024-01-01T00:00:00"
    iso.loc[5, "t"] = "2024-13-45"
    with pytest.raises(UserLogError, match=r"column 't', row 5: cannot parse '2024-13-45' as an"):
        load_userlog(_write(tmp_path, iso), SIMPLE, min_history=1)


def test_duplicate_rows_error_or_drop(tmp_path: Path) -> None:
    df = pd.concat([simple_log(), simple_log().iloc[[2]]], ignore_index=True)
    df.loc[8, "y"] = 1 - df.loc[8, "y"]  # same (user, item, time), other label
    path = _write(tmp_path, df)
    with pytest.raises(UserLogError, match=r"rows 2 and 8 are duplicates \(same 'u', 'i', 't'\)"):
        load_userlog(path, SIMPLE, min_history=1)
    ds = load_userlog(path, SIMPLE, min_history=1, duplicates="drop")
    assert ds.log.n_behaviours == 8 and ds.meta["duplicates_dropped"] == 1
    assert ds.samples.label[ds.samples.item == 3].tolist() == [0, 0]  # first kept


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserLogError, match="empty.csv is empty"):
        load_userlog(tmp_path / "empty.csv", SIMPLE)
    (tmp_path / "header.csv").write_text("u,i,t,y,c\n")
    with pytest.raises(UserLogError, match="header.csv has no rows"):
        load_userlog(tmp_path / "header.csv", SIMPLE)
    simple_log().iloc[:0].to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(UserLogError, match="empty.parquet has no rows"):
        load_userlog(tmp_path / "empty.parquet", SIMPLE)


def test_labels_must_be_binary(tmp_path: Path) -> None:
    df = simple_log()
    df.loc[6, "y"] = 3
    with pytest.raises(UserLogError, match=r"column 'y', row 6: label 3 is not binary"):
        load_userlog(_write(tmp_path, df), SIMPLE, min_history=1)
    df = simple_log().astype({"y": object})
    df["y"] = df["y"].map({0: "view", 1: "click"})
    df.loc[5, "y"] = "like"
    with pytest.raises(UserLogError, match=r"row 5: value 'like' is not in label_map"):
        load_userlog(_write(tmp_path, df), {**SIMPLE, "label_map": {"view": 0, "click": 1}})
    # null labels are behaviours only; true/false strings are fine
    df = simple_log().astype({"y": object})
    df["y"] = ["true", "false", None, "TRUE"] * 2
    ds = load_userlog(_write(tmp_path, df), SIMPLE, min_history=1)
    assert ds.log.n_behaviours == 8 and len(ds.samples) == 4  # rows 1 and 3 of each user


def test_spec_and_parameter_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, simple_log())
    with pytest.raises(UserLogError, match="a feature named 'category' is required"):
        load_userlog(path, {**SIMPLE, "item_features": {"genre": "c"}})
    with pytest.raises(UserLogError, match=r"unknown spec field\(s\) \['colour'\]"):
        load_userlog(path, {**SIMPLE, "colour": "c"})
    with pytest.raises(
        UserLogError,
        match=r"required field 'label' missing \(a label column in the log, or an impressions",
    ):
        load_userlog(path, {k: v for k, v in SIMPLE.items() if k != "label"})
    with pytest.raises(ValueError, match=r"unknown userlog parameter\(s\) \['window'\]"):
        load_dataset("userlog", path=str(path), spec=SIMPLE, window=3)
    with pytest.raises(ValueError, match="needs path="):
        load_dataset("userlog", spec=SIMPLE)
    with pytest.raises(ValueError, match="no samples"):
        load_userlog(path, SIMPLE, min_history=10)


def test_splits_follow_time(tmp_path: Path) -> None:
    ds = load_userlog(
        _write(tmp_path, simple_log(n_users=5, per_user=30)), SIMPLE, split_quantiles=(0.6, 0.8)
    )
    assert set(np.unique(ds.samples.split)) == {0, 1, 2}
    assert_no_leakage(ds)
    assert ds.summary()["n_samples"] == 5 * 10


def test_name_parameter_reaches_the_loader(tmp_path: Path, capsys) -> None:
    from twin_study.cli import main

    path = _write(tmp_path, simple_log())
    ds = load_dataset("userlog", path=str(path), spec=SIMPLE, name="my-log", min_history=1)
    assert ds.name == "my-log"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SIMPLE))
    argv = ["data", "info", "userlog", "-p", f"path={path}", "-p", f"spec={tmp_path}/spec.yaml"]
    assert main([*argv, "-p", "name=x", "-p", "min_history=1"]) == 0
    assert capsys.readouterr().out.startswith("x: 2 users")


# --- two tables: behaviours and impressions; label_threshold; per-user split; checks -------


def test_impressions_are_samples_and_never_history(tmp_path: Path) -> None:
    from logs import ONLY_IN_IMPRESSIONS, write_click_log

    log_path, spec_path = write_click_log(tmp_path)
    log, imp = pd.read_csv(log_path), pd.read_csv(tmp_path / "impressions.csv")
    ds = load_dataset("userlog", path=str(log_path), spec=str(spec_path), min_history=3)
    assert ds.log.n_behaviours == len(log)  # every log row, no impression among them
    # Expected visible history of each impression: its user's behaviours STRICTLY before it
    # (the click logged at the same second is not visible to the impression it records).
    before = imp.apply(
        lambda r: int(((log.user_id == r.user_id) & (log.ts < r.ts)).sum()), axis=1
    ).to_numpy()
    expected = imp[before >= 3]
    assert len(ds.samples) == len(expected)
    s = ds.samples
    user_raw = ds.meta["user_raw_ids"][s.user]
    item_raw = ds.meta["item_raw_ids"][s.item - 1]
    got = pd.DataFrame({"user_id": user_raw, "item_id": item_raw, "ts": s.time})
    got["seen"] = s.hist_end - ds.log.user_ptr[s.user]
    got["label"] = s.label
    merged = got.merge(expected.assign(want=before[before >= 3]), on=["user_id", "item_id", "ts"])
    assert len(merged) == len(expected)
    np.testing.assert_array_equal(merged.seen, merged.want)
    np.testing.assert_array_equal(merged.label, merged.clicked)
    # an item only ever shown is a sample target, never a behaviour, and has its category
    only = int(np.flatnonzero(ds.meta["item_raw_ids"] == ONLY_IN_IMPRESSIONS)[0]) + 1
    assert only in set(s.item) and only not in set(ds.log.item)
    assert ds.meta["items_only_in_impressions"] == len(set(imp.item_id) - set(log.item_id))
    assert ds.meta["item_feature_values"]["category"][ds.items.features["category"][only] - 1] == 6
    assert ds.log.cross.min() >= 1  # impressions left no padding rows in the log


def test_single_table_candidates_enter_later_histories(tmp_path: Path) -> None:
    """What the impressions file fixes: in one table a labelled row is also a behaviour."""
    path = _write(tmp_path, simple_log(n_users=1, per_user=4))
    ds = load_userlog(path, SIMPLE, min_history=1)
    assert ds.log.n_behaviours == 4 and set(ds.samples.item) <= set(ds.log.item)


def test_impression_errors(tmp_path: Path) -> None:
    from logs import SPEC, write_click_log

    log_path, _ = write_click_log(tmp_path, n_users=2)
    imp = pd.read_csv(tmp_path / "impressions.csv")
    with pytest.raises(UserLogError, match=r"impressions file .*nope.csv does not exist"):
        load_userlog(log_path, {**SPEC, "impressions": "nope.csv"}, min_history=1)
    imp.loc[3, "clicked"] = None
    imp.to_csv(tmp_path / "impressions.csv", index=False)
    with pytest.raises(UserLogError, match=r"impressions.csv: column 'clicked', row 3: empty"):
        load_userlog(log_path, SPEC, min_history=1)
    imp.drop(columns="clicked").to_csv(tmp_path / "impressions.csv", index=False)
    with pytest.raises(UserLogError, match=r"impressions.csv: column 'clicked' \(label\) not"):
        load_userlog(log_path, SPEC, min_history=1)
    with pytest.raises(UserLogError, match=r"impression_columns: unknown role\(s\) \['click'\]"):
        load_userlog(log_path, {**SPEC, "impression_columns": {"click": "c"}})


def test_label_threshold(tmp_path: Path) -> None:
    df = simple_log(n_users=2, per_user=6)
    df["y"] = pd.Series([1, 5, 3, 4, 2, 4.5] * 2, dtype=object)  # ratings
    spec = {**SIMPLE, "label_threshold": 4}
    ds = load_userlog(_write(tmp_path, df), spec, min_history=1)
    np.testing.assert_array_equal(ds.samples.label, [1, 0, 1, 0, 1] * 2)
    df.loc[7, "y"] = "great"
    with pytest.raises(UserLogError, match=r"row 7: label 'great' is not a number"):
        load_userlog(_write(tmp_path, df), spec, min_history=1)
    with pytest.raises(UserLogError, match="label_map or label_threshold, not both"):
        load_userlog(_write(tmp_path, df), {**spec, "label_map": {5: 1}})


def _early_and_late(tmp_path: Path) -> Path:
    """User 0 active at times 0..19, user 1 only at 1000..1003: one sample per row."""
    rows = [
        {"u": u, "i": j, "t": 1000 * u + j, "y": j % 2, "c": j % 3}
        for u, n in ((0, 20), (1, 4))
        for j in range(n)
    ]
    return _write(tmp_path, pd.DataFrame(rows))


def test_global_split_leaves_late_users_without_training(tmp_path: Path) -> None:
    ds = load_userlog(_early_and_late(tmp_path), SIMPLE, min_history=0)
    s = ds.samples
    assert (s.user == 1).sum() == 4 and set(s.split[s.user == 1]) <= {1, 2}  # no training
    assert_no_leakage(ds)


def test_per_user_split(tmp_path: Path) -> None:
    ds = load_userlog(_early_and_late(tmp_path), SIMPLE, min_history=0, split="per_user")
    s = ds.samples
    np.testing.assert_array_equal(s.split[s.user == 0], [0] * 16 + [1] * 2 + [2] * 2)  # 80/10/10
    np.testing.assert_array_equal(s.split[s.user == 1], [0, 0, 1, 2])  # the late user trains
    # a few samples per user: at least one test (n >= 2), one valid (n >= 3), one train
    from twin_study.data.events import per_user_split

    users = np.repeat([0, 1, 2, 3], [1, 2, 3, 4])
    np.testing.assert_array_equal(per_user_split(users, (0.8, 0.9)), [0, 0, 2, 0, 1, 2, 0, 0, 1, 2])
    np.testing.assert_array_equal(per_user_split(np.zeros(3, int), (0.1, 0.2)), [0, 1, 2])
    with pytest.raises(ValueError, match=r"split must be one of \('global', 'per_user'\)"):
        load_userlog(_early_and_late(tmp_path), SIMPLE, split="random")


def test_max_users(tmp_path: Path) -> None:
    ds = load_userlog(
        _write(tmp_path, simple_log(n_users=5, per_user=4)), SIMPLE, min_history=1, max_users=2
    )
    assert ds.n_users == 2 and ds.meta["user_raw_ids"].tolist() == [0, 1]


def test_check_userlog_reads_only_headers(tmp_path: Path) -> None:
    from logs import SPEC, write_click_log

    from twin_study.data.userlog import check_userlog

    log_path, spec_path = write_click_log(tmp_path, n_users=2)
    check_userlog(log_path, spec_path, {"min_history": 3, "split": "per_user"})
    with pytest.raises(UserLogError, match="needs path="):
        check_userlog("", spec_path, {})
    with pytest.raises(UserLogError, match=r"log file .*missing.csv does not exist"):
        check_userlog(tmp_path / "missing.csv", spec_path, {})
    with pytest.raises(UserLogError, match=r"spec file .*nope.yaml does not exist"):
        check_userlog(log_path, tmp_path / "nope.yaml", {})
    with pytest.raises(ValueError, match=r"unknown userlog parameter\(s\) \['window'\]"):
        check_userlog(log_path, spec_path, {"window": 3})
    with pytest.raises(UserLogError, match=r"log.csv: column 'dwell' \(cross feature dwell\)"):
        check_userlog(log_path, {**SPEC, "cross_features": {"dwell": "dwell"}}, {})
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserLogError, match="is empty"):
        check_userlog(tmp_path / "empty.csv", spec_path, {})
