"""Training throughput of two revisions of the package, side by side in one run.

A refactor must not slow training (issue 25: "training speed at L = 10^4 unchanged or better,
before and after, in one run"). This script exports revision ``--before`` (any git revision)
into a temporary folder and trains the same probe (``analysis.throughput.train_probe``: a
synthetic world, ``--steps`` timed steps after a warm-up, one thread, each probe in a fresh
process) from that folder and from the working tree, the two taking turns ``--rounds`` times,
so that load from other processes hits both alike. It prints samples/s per round, the median
per revision and the ratio after / before.

    python benchmarks/revisions.py --before d77e830 [--modules twin] [--L 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export(rev: str, into: Path) -> Path:
    """The package of revision ``rev`` (``git archive``), unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "twin_study"],
                             check=True, capture_output=True).stdout  # fmt: skip
    tar = into / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into


def probe(tree: Path, **kwargs: object) -> dict:
    """One training probe with ``tree`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "twin_study.analysis.throughput", json.dumps(kwargs)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"probe failed in {tree}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision to compare against")
    ap.add_argument("--modules", nargs="+", default=["twin"])
    ap.add_argument("--L", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--n-items", type=int, default=20_000)
    args = ap.parse_args()
    if args.rounds < 1 or args.steps < 1:
        ap.error("--rounds and --steps must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": export(args.before, Path(tmp)), "after": ROOT}
        for m in args.modules:
            rates: dict[str, list[float]] = {"before": [], "after": []}
            for r in range(args.rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for side in order:
                    res = probe(trees[side], L=args.L, long_module=m, steps=args.steps,
                                n_items=args.n_items)  # fmt: skip
                    rates[side].append(res["samples_per_s"])
                    print(f"{m} L={args.L:,} round {r} {side:6s} {res['samples_per_s']:8,.0f} "
                          f"samples/s  peak {res['peak_rss_mb']:,.0f} MB", flush=True)  # fmt: skip
            before, after = (statistics.median(rates[s]) for s in ("before", "after"))
            print(f"{m} L={args.L:,}: before ({args.before}) {before:,.0f}, after (working "
                  f"tree) {after:,.0f} samples/s (medians of {args.rounds}); after / before "
                  f"{after / before:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
