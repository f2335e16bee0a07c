"""Schema validation: every error names the table, the column and, where there is one, the row.

The data sets are built by hand (two users, five behaviours, three samples) and broken one
field at a time.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_study.data import BehaviourLog, Dataset, ItemTable, Samples, SchemaError


def make() -> Dataset:
    """A valid tiny data set. User 0: behaviours 0-2 at t = 10, 20, 30; user 1: 3-4 at 5, 15."""
    items = ItemTable(
        n_items=4,
        features={"category": np.array([0, 1, 1, 2, 2]), "author": np.array([0, 1, 2, 3, 1])},
        vocab={"category": 3, "author": 4},
    )
    log = BehaviourLog(
        user_ptr=np.array([0, 3, 5]),
        item=np.array([1, 2, 3, 4, 1], dtype=np.int32),
        time=np.array([10, 20, 30, 5, 15]),
        cross=np.array([[1, 0], [2, 1], [0, 0], [3, 1], [1, 0]], dtype=np.int16),
        cross_names=["play", "liked"],
        cross_vocab=[4, 2],
    )
    samples = Samples(
        user=np.array([0, 0, 1]),
        item=np.array([4, 3, 2]),
        label=np.array([1.0, 0.0, 1.0], dtype=np.float32),
        time=np.array([25, 35, 20]),
        hist_end=np.array([2, 3, 5]),  # sees t=10,20 | t=10,20,30 | t=5,15
        split=np.array([0, 1, 2], dtype=np.int8),
        request=np.array([0, 1, 2]),
    )
    return Dataset("tiny", items, log, samples)


def broken(table: str, **changes) -> Dataset:
    """``make()`` with fields of one table (``items``, ``log`` or ``samples``) replaced."""
    ds = make()
    return dataclasses.replace(ds, **{table: dataclasses.replace(getattr(ds, table), **changes)})


def with_array(table: str, column: str, row: int, value) -> Dataset:
    """``make()`` with one entry of one column changed."""
    arr = getattr(getattr(make(), table), column).copy()
    arr[row] = value
    return broken(table, **{column: arr})


def test_the_hand_built_data_set_is_valid():
    ds = make()
    assert ds.validate() is ds
    assert ds.summary()["n_behaviours"] == 5
    assert ds.split_indices("valid").tolist() == [1]


# --- items ---------------------------------------------------------------------------------


def test_missing_category_is_named():
    ds = broken("items", features={"author": np.array([0, 1, 2, 3, 1])}, vocab={"author": 4})
    with pytest.raises(SchemaError, match=r"items: the feature 'category' is required"):
        ds.validate()


def test_item_code_outside_vocabulary_names_column_and_row():
    feats = dict(make().items.features, category=np.array([0, 1, 3, 2, 2]))
    with pytest.raises(SchemaError, match=r"items\.category: code 3 at row 2 .*\[0, 3\)"):
        broken("items", features=feats).validate()


def test_item_feature_without_vocabulary_is_named():
    feats = dict(make().items.features, duration=np.array([0, 1, 1, 1, 1]))
    with pytest.raises(SchemaError, match=r"items\.duration: no vocabulary"):
        broken("items", features=feats).validate()


def test_item_feature_of_wrong_length_or_dtype_is_named():
    feats = dict(make().items.features, author=np.array([0, 1, 2, 3]))
    with pytest.raises(SchemaError, match=r"items\.author: expected length 5, got 4"):
        broken("items", features=feats).validate()
    feats = dict(make().items.features, author=np.array([0, 1, 2, 3, 1], dtype=float))
    with pytest.raises(SchemaError, match=r"items\.author: expected integers"):
        broken("items", features=feats).validate()


def test_padding_item_must_hold_code_zero():
    feats = dict(make().items.features, category=np.array([1, 1, 1, 2, 2]))
    with pytest.raises(SchemaError, match=r"items\.category: row 0 is the padding item"):
        broken("items", features=feats).validate()


# --- behaviour log -------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [9, 0, -1])
def test_bad_item_id_in_the_log_names_the_row(bad_id):
    with pytest.raises(SchemaError, match=rf"behaviours\.item: item id {bad_id} at row 3 "):
        with_array("log", "item", 3, bad_id).validate()


def test_unsorted_times_name_the_user_and_row():
    # user 1's second behaviour (row 4) comes before its first
    with pytest.raises(SchemaError, match=r"behaviours\.time: user 1 is not sorted .* row 4"):
        with_array("log", "time", 4, 1).validate()
    # user 0, rows 1-2
    with pytest.raises(SchemaError, match=r"behaviours\.time: user 0 is not sorted .* row 2"):
        with_array("log", "time", 2, 15).validate()


def test_time_may_drop_between_users():
    ds = make()  # user 0 ends at t=30, user 1 starts at t=5
    assert ds.log.time[2] > ds.log.time[3]
    ds.validate()


def test_equal_times_within_a_user_are_allowed():
    with_array("log", "time", 1, 10).validate()  # t = 10, 10, 30


def test_cross_code_outside_vocabulary_names_feature_and_row():
    cross = make().log.cross.copy()
    cross[2, 1] = 2  # liked has 2 codes
    with pytest.raises(SchemaError, match=r"behaviours\.cross\[liked\]: code 2 at row 2"):
        broken("log", cross=cross).validate()


def test_cross_shape_and_names_must_agree():
    with pytest.raises(SchemaError, match=r"behaviours\.cross: expected shape \(5, J\)"):
        broken("log", cross=make().log.cross[:4]).validate()
    with pytest.raises(SchemaError, match=r"behaviours\.cross: names"):
        broken("log", cross_names=["play"]).validate()


def test_user_ptr_must_start_at_zero_and_not_decrease():
    with pytest.raises(SchemaError, match=r"behaviours\.user_ptr"):
        broken("log", user_ptr=np.array([0, 4, 3])).validate()
    with pytest.raises(SchemaError, match=r"behaviours\.user_ptr"):
        broken("log", user_ptr=np.array([1, 3, 5])).validate()


def test_log_column_of_wrong_length_is_named():
    with pytest.raises(SchemaError, match=r"behaviours\.time: expected length 5, got 4"):
        broken("log", time=np.array([10, 20, 30, 5])).validate()


# --- samples -------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "value"), [(1, 4), (2, 2)])
def test_hist_end_outside_the_users_range_names_the_row(row, value):
    # row 1 belongs to user 0 (behaviours 0-2): 4 reaches into user 1; row 2 (user 1, 3-4): 2
    with pytest.raises(SchemaError, match=rf"samples\.hist_end: row {row} points outside"):
        with_array("samples", "hist_end", row, value).validate()


def test_leakage_names_the_row():
    # row 0 sees behaviours at t=10, 20 but its request is at t=15
    with pytest.raises(SchemaError, match=r"samples: row 0 sees a behaviour after .*leakage"):
        with_array("samples", "time", 0, 15).validate()


def test_history_ending_at_request_time_is_not_leakage():
    with_array("samples", "time", 0, 20).validate()  # last visible behaviour at t=20


def test_empty_history_is_valid():
    with_array("samples", "hist_end", 2, 3).validate()  # user 1 sees nothing


def test_sample_fields_are_checked():
    with pytest.raises(
        SchemaError, match=r"samples\.label: labels must be 0 or 1, got 0.5 at row 1"
    ):
        with_array("samples", "label", 1, 0.5).validate()
    with pytest.raises(SchemaError, match=r"samples\.user: code 2 at row 0"):
        with_array("samples", "user", 0, 2).validate()
    with pytest.raises(
        SchemaError, match=r"samples\.item: target id 5 at row 1 is not in \[1, 4\]"
    ):
        with_array("samples", "item", 1, 5).validate()
    with pytest.raises(SchemaError, match=r"samples\.split: code 3 at row 2"):
        with_array("samples", "split", 2, 3).validate()
    with pytest.raises(SchemaError, match=r"samples\.request: expected length 3, got 2"):
        broken("samples", request=np.array([0, 1])).validate()


def test_no_samples_is_an_error():
    empty = make().samples.subset(np.array([], dtype=np.int64))
    with pytest.raises(SchemaError, match=r"samples: no samples"):
        dataclasses.replace(make(), samples=empty).validate()


# --- data set ------------------------------------------------------------------------------


def test_user_features_and_ground_truth_are_checked():
    ds = dataclasses.replace(make(), user_features={"age": np.array([1, 2])})
    with pytest.raises(SchemaError, match=r"users\.age: no vocabulary"):
        ds.validate()
    ds = dataclasses.replace(ds, user_vocab={"age": 2})
    with pytest.raises(SchemaError, match=r"users\.age: code 2 at row 1"):
        ds.validate()
    with pytest.raises(SchemaError, match=r"p_true"):
        dataclasses.replace(make(), p_true=np.array([0.5, 0.5])).validate()
    with pytest.raises(SchemaError, match=r"relevant_ptr and relevant_idx"):
        dataclasses.replace(make(), relevant_ptr=np.array([0, 0, 0, 0])).validate()


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        make().split_indices("dev")
