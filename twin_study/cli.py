"""``twin-study`` command line: argparse subcommands registered in SUBCOMMANDS.

Adding a subcommand (e.g. ``bench`` in twin_study/bench.py) is one line here plus two
functions in your module::

    # twin_study/cli.py
    SUBCOMMANDS["bench"] = ("twin_study.bench", "time the GSU/ESU kernels")  # or in the dict

    # twin_study/bench.py
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...  # options of `bench`
    def main(args: argparse.Namespace) -> int: ...                   # exit code

Nested commands (``twin-study data fetch``, ``twin-study data info``) are subparsers that
the module's ``add_arguments`` creates itself (``parser.add_subparsers(...)``), dispatching
in its ``main``. Modules are imported lazily: only the module of the command being run is
imported, so ``twin-study run`` does not pay for a module that imports torch at the top.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from twin_study import __version__

# name -> (module exposing add_arguments(parser) and main(args) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("twin_study.runner", "execute the notebooks with papermill (skips up-to-date ones)"),
    "data": ("twin_study.data.cli", "fetch data sets (MovieLens) and print their summaries"),
    "report": ("twin_study.report", "regenerate README.md's headline and docs/results.md"),
    "reclaim": ("twin_study.analysis.reclaim", "judge figures/'s claims again by the current "
                "rules, from the committed per-seed files (nothing retrained)"),
    "bench": ("twin_study.bench", "time CP-GSU scoring, raw MHTA vs TWIN, side by side"),
    "train": ("twin_study.training.distributed", "train one run; data-parallel under torchrun"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="twin-study",
        description="Reproducible study of the TWIN CTR model (KDD 2023).",
    )
    parser.add_argument("--version", action="version", version=f"twin-study {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(handler=module.main)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The first argument that names a subcommand (options before it take no values)."""
    return next((arg for arg in argv if arg in SUBCOMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
