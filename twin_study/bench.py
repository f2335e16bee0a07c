"""``twin-study bench``: CP-GSU scoring cost and training throughput, side by side.

The tables of notebooks/01_complexity.ipynb outside the notebook:

1. scoring: for each history length L, one request with B candidates (each ``--candidates``)
   and a training batch, the wall time (median of ``--repeats``), the FLOPs and the peak
   memory of scoring the L behaviours with raw MHTA (``live_scores``: projects [K_h, K_c] of
   every behaviour) and with TWIN (``CpGSU.scores``: reads K_h W^h from the item cache), and
   their ratios; then TWIN's fast path (scoring fused with the top-k) against the roofline;
2. training: samples/s and peak RSS of every lifelong module (``--modules``) at each
   ``--train-L``, fast path beside the reference path, each probe in its own process.

    twin-study bench --L 1000 1e4 --candidates 1 100 --repeats 5
    twin-study bench --train-L 1e4 --modules twin avg_pool sim_hard
    twin-study bench --L 100 --train-L 1e4 --catalogue 2e4 1e6 --modules twin sim_hard
    twin-study bench --device cuda --L 1e4 1e5
"""

from __future__ import annotations

import argparse
import sys

MAX_L = 10**6
MAX_CATALOGUE = 10**8


def _integer(text: str) -> int | None:
    """``"1000"``, ``"1e4"`` or ``"10_000"`` -> int; None when not a whole number."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _bounded(text: str, lo: int, hi: int, what: str, unit: str, example: str) -> int:
    """A whole number in [lo, hi] from ``text``, or an argparse error naming ``what``."""
    value = _integer(text)
    if value is None or not lo <= value <= hi:
        raise argparse.ArgumentTypeError(
            f"invalid {what} {text!r}: a whole number of {unit} between {lo} and {hi:.0e}, "
            f"e.g. {example}"
        )
    return value


def history_length(text: str) -> int:
    return _bounded(text, 1, MAX_L, "L", "behaviours", "1000 or 1e4")


def catalogue_size(text: str) -> int:
    return _bounded(text, 100, MAX_CATALOGUE, "catalogue", "items", "2e4 or 1e6")


def positive(text: str) -> int:
    value = _integer(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: need a positive integer")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--L",
        nargs="+",
        type=history_length,
        default=[100, 1000, 10_000],
        metavar="L",
        help="history lengths (default: %(default)s)",
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        type=positive,
        default=[1, 100, 1000],
        metavar="B",
        help="candidates of one request (default: %(default)s)",
    )
    parser.add_argument(
        "--train-batch",
        type=int,
        default=256,
        metavar="N",
        help="also a training batch of N samples, 5 per request; 0 = skip (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    parser.add_argument(
        "--repeats",
        type=positive,
        default=3,
        help="timed calls per point, median reported (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: stable timings on a shared machine; "
        "0 = torch's default)",
    )
    parser.add_argument(
        "--train-L",
        nargs="*",
        type=history_length,
        default=[1000, 10_000],
        metavar="L",
        help="history lengths of the training-throughput probes; none = skip them "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--modules",
        nargs="+",
        default=None,
        metavar="MODULE",
        help="lifelong modules of the training probes (default: all of them)",
    )
    parser.add_argument(
        "--train-steps", type=positive, default=3, help="timed steps per probe (default 3)"
    )
    parser.add_argument(
        "--catalogue",
        nargs="*",
        type=catalogue_size,
        default=[],
        metavar="V",
        help="also train every module's fast path at each --train-L on catalogues of V items "
        "(e.g. 2e4 1e5 1e6 1e7; one author per 10 items): samples/s, peak RSS and the speed "
        "relative to the smallest V, instead of the fast-vs-reference table (default: skip)",
    )
    parser.add_argument(
        "--clustering",
        type=int,
        default=100_000,
        metavar="N",
        help="also time TWIN-V2's offline clustering of one user's N behaviours, one thread "
        "(default: %(default)s; 0 = skip)",
    )
    parser.add_argument("--heads", type=positive, default=4, help="attention heads (default 4)")
    parser.add_argument("--d-k", type=positive, default=16, help="key size per head (default 16)")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak memory (one extra call a point)"
    )


def main(args: argparse.Namespace) -> int:

    # lazy: the CLI imports this module to parse `bench`; parsing must not import torch
    from twin_study import runtime
    from twin_study.analysis import complexity as cx
    from twin_study.analysis import cost_model as cm
    from twin_study.analysis import timing
    from twin_study.models import registry

    if args.train_batch < 0:
        print("twin-study bench: error: --train-batch must be >= 0", file=sys.stderr)
        return 2
    modules = args.modules or registry.names()
    unknown = sorted(set(modules) - set(registry.names()))
    if unknown:
        print(f"twin-study bench: error: unknown module(s) {unknown}; choose from "
              f"{sorted(registry.names())}", file=sys.stderr)  # fmt: skip
        return 2
    try:
        device = timing.resolve_device(args.device)
    except ValueError as exc:
        print(f"twin-study bench: error: {exc}", file=sys.stderr)
        return 2
    runtime.configure(args.threads)
    models = cx.build_models(heads=args.heads, d_k=args.d_k, device=device)
    env = timing.environment()
    print(f"CP-GSU scoring, raw MHTA vs TWIN on {device} (torch {env['torch']}, "
          f"{env['threads']} threads, load {env['load_1min']:.1f}); "
          f"median of {args.repeats}; dims {cm.dims_dict(cm.Dims.of(models['twin']))}")  # fmt: skip
    scoring = cx.measure_scoring(models, args.L, args.candidates, train_batch=args.train_batch,
                                 repeats=args.repeats, memory=not args.no_memory)  # fmt: skip
    print(cx.format_side_by_side(cx.side_by_side(scoring)))
    print("speed-up = raw time / TWIN time; FLOP ratio = raw FLOPs / TWIN FLOPs (analytic); "
          "MiB = peak tensor memory allocated by the call")  # fmt: skip
    peaks = cx.machine_peaks(device)
    fast = cx.measure_fast_select(models, scoring, peaks, repeats=args.repeats)
    print(f"\nTWIN fast path (scoring alone, and fused with the merged top-100) against the "
          f"scoring roofline "
          f"(matmul {peaks['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s, "
          f"copy {peaks['copy_bytes_per_s'] / 1e9:.1f} GB/s):")  # fmt: skip
    cols = ["setting", "L", "B", "method", "time_s", "flops_per_s", "roofline_fraction"]
    print(fast[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.train_L and not args.catalogue:  # --catalogue: its own table instead
        from twin_study.analysis import throughput as tp  # lazy: as above

        print(f"\nTraining throughput, batch {args.train_batch or 256}, {args.threads} thread(s), "
              f"{args.train_steps} timed steps per probe, each in its own process:")  # fmt: skip
        df = tp.train_throughput(modules, args.train_L, batch_size=args.train_batch or 256,
                                 steps=args.train_steps, threads=args.threads,
                                 device=str(device))  # fmt: skip
        print(tp.format_side_by_side(tp.side_by_side(df)))
        print("speed-up = fast / reference samples/s in this run; vs TWIN = this module's fast "
              "samples/s / TWIN's; peak MB = the probe process's VmHWM")  # fmt: skip
    if args.clustering > 0:
        from twin_study.analysis import throughput as tp  # lazy: as above

        c = tp.clustering_probe(args.clustering)
        print(f"\nTWIN-V2 clustering of one user's {c['behaviours']:,} behaviours (keys d = "
              f"{c['d']}, one thread): {c['seconds']:.2f} s; {c['ratio']:.3f} virtual items "
              f"per clustered behaviour, mean cluster size {c['mean_size']:.1f}")  # fmt: skip
    if args.catalogue and args.train_L:
        from twin_study.analysis import throughput as tp  # lazy: as above

        print(f"\nTraining throughput against the catalogue (fast path, batch "
              f"{args.train_batch or 256}, {args.threads} thread(s), {args.train_steps} timed "
              f"steps per probe, each in its own process):")  # fmt: skip
        df = tp.catalogue_throughput(modules, args.train_L, args.catalogue,
                                     batch_size=args.train_batch or 256, steps=args.train_steps,
                                     threads=args.threads, device=str(device))  # fmt: skip
        print(tp.format_catalogue(tp.catalogue_side_by_side(df)))
        print("samples = samples/s; vs = samples/s over the same module's at the smallest "
              "catalogue in this run; MB = the probe process's VmHWM; distinct = distinct "
              "items among a timed batch's behaviours (mean); nan = the probe failed "
              "(its error is in the data frame)")  # fmt: skip
    return 0
