"""``twin-study run`` on the command line: its options and exit codes (registered in
``twin_study.cli.SUBCOMMANDS`` through the package ``twin_study.runner``)."""

from __future__ import annotations

import argparse
import os
import sys

from twin_study import paths
from twin_study.assignments import parse_assignments

from .execution import DEFAULT_TIMEOUT, list_notebooks, run
from .notebooks import RunnerError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default=paths.QUICK,
        choices=paths.available_profiles(),
        help="quick: the CI-sized defaults saved in the notebooks; paper: full scale, "
        "figures into figures/ (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help='notebooks to run: "01", "01_complexity" or "01_complexity.ipynb"',
    )
    parser.add_argument("--force", action="store_true", help="rerun up-to-date notebooks too")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"per-cell execution timeout, 0 for none (default: {DEFAULT_TIMEOUT} s for the "
        "quick profile, none for the others: a paper-profile sweep is one long cell)",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra parameter for the selected notebooks that have it (an error if none "
        "has it), value parsed as YAML; repeatable",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the notebooks and their state (with the -p values), run nothing",
    )
    parser.add_argument(
        "--progress", action="store_true", help="show papermill's per-cell progress bars"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="train the sweeps' missing runs in N worker processes, one thread each "
        "(sets $TWIN_STUDY_JOBS for the notebooks; default: 1, one after another)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="train them on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' "
        "for a LocalCluster of --jobs workers (sets $TWIN_STUDY_DASK)",
    )


def main(args: argparse.Namespace) -> int:
    # --jobs / --dask reach the notebooks' kernels through the environment; set them for this
    # command only, so a caller (a test, a notebook calling main) keeps its own.
    saved = {k: os.environ.get(k) for k in ("TWIN_STUDY_JOBS", "TWIN_STUDY_DASK")}
    try:
        return _main(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _main(args: argparse.Namespace) -> int:
    try:
        extra = parse_assignments(args.param)
        if args.jobs is not None or args.dask:
            # Checked here, before anything runs; the notebooks' kernels inherit the variables
            # and their sweeps read them as defaults (twin_study.training.parallel).
            from twin_study.training.parallel import ParallelConfig  # lazy: imports torch

            try:
                os.environ.update(ParallelConfig.resolve(args.jobs, args.dask).to_env())
            except ValueError as exc:
                raise RunnerError(str(exc)) from exc
        if args.list:
            list_notebooks(args.profile, args.only, extra=extra)
            return 0
        summary = run(
            args.profile,
            args.only,
            force=args.force,
            timeout=args.timeout,
            extra=extra,
            progress=args.progress,
        )
    except RunnerError as exc:
        print(f"twin-study run: error: {exc}", file=sys.stderr)
        return 2
    return 0 if summary.ok else 1
