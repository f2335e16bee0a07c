"""TWIN-V2 clustering (data/lifecycle.py): speed per 10^5 behaviours and compression per cap.

Issue 26 asks that one user's 10^5 behaviours cluster in well under a second on one core. This
script generates a synthetic world whose users have ``--length`` behaviours each, clusters it
with the hidden item latent vectors as keys (the ideal embedding; a model's K_h costs the same),
and prints, per cap: the compression ratio, the mean cluster size, the share of a cluster's
members that share its representative's author (purity), and the clustering time per user.
Run it on one thread, e.g. ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``.

    python benchmarks/lifecycle_speed.py [--users 3] [--length 100000] [--caps 5 10 20 50]
"""

from __future__ import annotations

import argparse

import numpy as np

from twin_study.data import SyntheticConfig, generate
from twin_study.data.lifecycle import ClusterConfig, compress_log


def purity(ds, comp) -> float:
    """Share of clustered behaviours whose author is their representative's."""
    author = ds.items.features["author"]
    c = comp.cluster_of
    keep = c >= 0
    return float((author[ds.log.item[keep]] == author[comp.item[c[keep]]]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--length", type=int, default=100_000)
    ap.add_argument("--caps", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--block", type=int, default=1000)
    args = ap.parse_args()
    n = args.length
    ds = generate(SyntheticConfig(n_users=args.users, history_len=n, history_min=n,
                                  history_max=n, requests_per_user=1, seed=0))  # fmt: skip
    latent = ds.meta["item_latent"]
    keys = np.vstack([np.zeros((1, latent.shape[1])), latent])
    print(f"{args.users} users x {n} behaviours, keys d = {keys.shape[1]}, block {args.block}")
    print("cap  ratio  mean size  purity  s/user (median)")
    for cap in args.caps:
        comp = compress_log(ds, keys, ClusterConfig(cap=cap, block=args.block), progress=False)
        print(f"{cap:3d}  {comp.ratio:.3f}  {comp.size.mean():9.2f}  {purity(ds, comp):.3f}  "
              f"{np.median(comp.seconds):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
