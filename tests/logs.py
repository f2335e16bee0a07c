"""A small two-table user log (behaviours + impressions) with a learnable signal, written by
the tests that load it directly and by the runner's end-to-end test of notebooks on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SPEC = {
    "user": "user_id",
    "item": "item_id",
    "time": "ts",
    "item_features": {"category": "category"},
    "cross_features": {"tab": "tab", "dwell": "dwell_s"},
    "numeric": ["dwell"],
    "impressions": "impressions.csv",
    "impression_columns": {"label": "clicked"},
}
ONLY_IN_IMPRESSIONS = 10_000  # an item id shown but never clicked by anyone


def write_click_log(
    folder: Path,
    n_users: int = 12,
    per_user: int = 40,
    impressions_per_user: int = 20,
    n_items: int = 120,
    n_categories: int = 6,
    seed: int = 0,
    p_true: bool = False,
) -> tuple[Path, Path]:
    """Write ``log.csv``, ``impressions.csv`` and ``spec.yaml`` into ``folder``.

    Each user has a favourite category: most behaviours are in it, and an impression is
    clicked with probability 0.85 when its item is in it, 0.15 otherwise. A clicked
    impression also appears in the behaviour log at the same second (the click), as real
    logs have it. With ``p_true`` the impressions carry that click probability in a column
    ``p_click`` and the spec names it (``spec.p_true``). Returns (log path, spec path).
    """
    rng = np.random.default_rng(seed)
    category = rng.integers(0, n_categories, n_items)
    favourite = rng.integers(0, n_categories, n_users)
    rows, shown = [], []
    for u in range(n_users):
        t0 = 1_600_000_000 + int(rng.integers(0, 86_400))
        times = t0 + np.sort(rng.choice(200_000, per_user + impressions_per_user, replace=False))
        mine = np.flatnonzero(category == favourite[u])
        for t in times[:per_user]:
            item = rng.choice(mine) if rng.random() < 0.8 else rng.integers(0, n_items)
            rows.append((f"u{u}", int(item), int(t), int(category[item]), 1 + u % 2, rng.random()))
        # impressions interleaved with the behaviours in time (after the first few)
        imp_times = np.sort(rng.choice(times[5:], impressions_per_user, replace=False)) + 1
        for t in imp_times:
            item = rng.choice(mine) if rng.random() < 0.5 else rng.integers(0, n_items)
            p = 0.85 if category[item] == favourite[u] else 0.15
            clicked = int(rng.random() < p)
            shown.append((f"u{u}", int(item), int(t), int(category[item]), clicked, p))
            if clicked:
                rows.append((f"u{u}", int(item), int(t), int(category[item]), 1, 30.0))
    shown.append(("u0", ONLY_IN_IMPRESSIONS, int(shown[-1][2]) + 1, n_categories, 0, 0.15))
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "category", "tab", "dwell_s"])
    log = log.drop_duplicates(["user_id", "item_id", "ts"])
    imp = pd.DataFrame(
        shown, columns=["user_id", "item_id", "ts", "category", "clicked", "p_click"]
    )
    imp = imp.drop_duplicates(["user_id", "item_id", "ts"])
    if not p_true:
        imp = imp.drop(columns="p_click")
    folder.mkdir(parents=True, exist_ok=True)
    log.sample(frac=1.0, random_state=seed).to_csv(folder / "log.csv", index=False)
    imp.to_csv(folder / "impressions.csv", index=False)
    spec = SPEC | ({"p_true": "p_click"} if p_true else {})
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "log.csv", folder / "spec.yaml"
