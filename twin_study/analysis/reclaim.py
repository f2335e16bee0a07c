"""``twin-study reclaim``: the committed claims judged again by the current verdict rules.

The claims in ``figures/<notebook>/results.json`` were computed by the rules in force when the
notebook ran. When the rules change (``claims.core``: one seed at best *partly*, equivalence for
"about the same", stricter orderings and "every" claims, kinds), rerunning the paper profile
to refresh them costs hours of training. Every number the claims need is committed, though:
the per-seed rows (``runs.csv``) and the measured values in results.json. This module
rebuilds each notebook's claims from those files with the current code -- the same package
functions the notebooks call, nothing trained -- and writes them back, with
``claims_source`` saying so (the README prints its ``note`` under the notebook's table).

A stored claim the files cannot rebuild (05's inference time: its per-seed timings are not
committed; 06's data-budget claims: their per-seed curve readings are not either) is kept
and judged again from its stored effect, spread and seed count by the current "better"
rule, and listed under ``claims_source["kept"]``. Only results.json whose claims an older
version of the rules judged (``core.RULES_VERSION``, stored in every claim) are rebuilt: a
notebook rerun on the current code writes current claims (and no ``claims_source``), which
this command leaves alone.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from twin_study import paths
from twin_study.results import RESULTS_NAME, load_results, save_results

from ..claims import ablations, core, main_results, sequence_length
from ..claims.complexity import complexity_claims
from ..claims.consistency import consistency_claims
from . import retrieval_wins, sweeps

Z = 2.0  # the paper profile's z in every notebook
SIMILAR_TOL = 0.002  # notebook 05's similar_tol in the paper profile

Claims = list[dict[str, Any]]


def _runs(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "runs.csv")


def _dicts(claims: list[core.Claim]) -> Claims:
    return [c.to_dict() for c in claims]


def _complexity(folder: Path, res: dict) -> tuple[Claims, list[str]]:
    return complexity_claims(res), [RESULTS_NAME]


def _consistency(folder: Path, res: dict) -> tuple[Claims, list[str]]:
    out: Claims = []
    for d in res["datasets"]:
        hits = res["hits_at_100"][d]
        mean = {m: v["mean"] for m, v in hits.items()}
        std = {m: (0.0 if v["std"] is None else v["std"]) for m, v in hits.items()}
        stale = {int(n): h for n, h in res.get("staleness_hits", {}).get(d, {}).items()}
        out += consistency_claims(d, mean, std, len(res["seeds"][d]), stale or None,
                                  int(res["oracle_k"]))  # fmt: skip
    return out, [RESULTS_NAME]


def _table4(folder: Path, res: dict) -> tuple[Claims, list[str]]:
    """03 and 07: Table 4's readings per data set, then the gap-closure bar where the Bayes
    optimum is known (as the notebooks order them)."""
    runs = _runs(folder)
    summary = sweeps.summarize(runs)
    names = list(dict.fromkeys(runs["dataset"]))
    claims = [c for n in names for c in main_results.table4_claims(runs, summary, n, z=Z)]
    bayes = res.get("bayes_auc")
    bayes = bayes if isinstance(bayes, dict) else {names[0]: bayes}
    for name, b in bayes.items():
        sel = runs[runs["dataset"] == name]
        if b is None or "TWIN" not in set(sel["model"]):
            continue
        closed = sweeps.gap_closure(sel, res.get("baseline", "Avg-Pooling"), float(b))
        claims.append(main_results.claim_gap_closed(closed, name, z=Z))
    if "ordering_holds" in res:  # derived from the claims: keep it in step
        res["ordering_holds"] = {c.dataset: c.verdict == core.REPRODUCED for c in claims
                                 if c.claim.startswith("Table 4 order")}  # fmt: skip
    return _dicts(claims), ["runs.csv", RESULTS_NAME]


def _lengths(folder: Path, res: dict) -> tuple[Claims, list[str]]:
    runs = _runs(folder)
    names = list(dict.fromkeys(runs["dataset"]))
    claims = [c for n in names for c in sequence_length.length_claims(runs, n, z=Z)]
    return _dicts(claims), ["runs.csv"]


def _ablations(folder: Path, res: dict) -> tuple[Claims, list[str]]:
    runs = _runs(folder)
    summary = sweeps.summarize(runs)
    names = list(dict.fromkeys(runs["dataset"]))
    claims = [c for n in names  # no timing: its per-seed rows are not committed
              for c in ablations.ablation_claims(runs, summary, n, None, SIMILAR_TOL, z=Z)]
    return _dicts(claims), ["runs.csv"]


def _retrieval(folder: Path, res: dict) -> tuple[Claims, list[str]]:
    claims = retrieval_wins.claims(_runs(folder), "TWIN", "SIM Hard", "auc", z=Z)
    return _dicts(claims), ["runs.csv"]


def _never(c: dict) -> bool:
    return False


# notebook stem -> (rebuild; which stored claims it cannot rebuild, kept and judged again;
# their kind). A stored claim the rebuild no longer makes, and not kept, was replaced by the
# current rules (04's "TWIN best at L = 10^4" by "TWIN leads at every length").
RECIPES: dict[str, tuple[Callable[[Path, dict], tuple[Claims, list[str]]],
                         Callable[[dict], bool], str]] = {
    "01_complexity": (_complexity, _never, core.STUDY),
    "02_consistency": (_consistency, _never, core.PAPER),
    "03_main_results": (_table4, _never, core.PAPER),
    "04_sequence_length": (_lengths, _never, core.PAPER),
    # per-seed inference timings are not committed (only each model's median)
    "05_ablations": (_ablations, lambda c: c.get("metric") == "ms_per_1k", core.PAPER),
    # the data-budget runs' per-seed curve readings are not committed (only summaries)
    "06_retrieval": (_retrieval, lambda c: c.get("metric") in ("valid_auc_gain", "auc")
                     and "samples" in str(c.get("claim", "")), core.STUDY),
    "07_plateau": (_table4, _never, core.PAPER),
}  # fmt: skip


def rejudge(stored: dict[str, Any], kind: str, z: float = Z) -> dict[str, Any] | None:
    """A stored "better" claim (a paired effect against zero by the s.e. rule) judged again
    from its effect, spread and seed count; None for any other rule (it cannot be)."""
    detail = str(stored.get("detail", ""))
    rule = stored.get("rule") or (core.BETTER if "s.e. rule" in detail else "")
    if rule != core.BETTER or stored.get("effect") is None:
        return None
    n = int(stored.get("n_seeds") or 0)
    std = stored.get("spread")
    se = float(std) / math.sqrt(n) if std is not None and n >= 2 else float("nan")
    out = dict(stored, rule=rule, kind=stored.get("kind") or kind, rules=core.RULES_VERSION)
    out["verdict"] = core.better_from_stats(float(stored["effect"]), se, n, z)
    if n >= 2 and std == 0.0:
        out["kind"] = core.CHECK  # deterministic, as ``core.Claim.of`` marks it
    return out


def current(res: dict[str, Any]) -> bool:
    """Every claim of ``res`` was judged by the current rules (``core.RULES_VERSION``):
    a notebook run on this code, or an earlier reclaim."""
    return all(c.get("rules") == core.RULES_VERSION for c in res.get("claims") or [])


def reclaim_results(folder: Path, res: dict[str, Any]) -> dict[str, Any] | None:
    """``res`` (the folder's results.json) with its claims rebuilt by the current rules and
    ``claims_source`` set; None when the notebook has no recipe, no claims, or claims the
    current rules already judged (a notebook rerun is never overwritten)."""
    recipe = RECIPES.get(folder.name)
    if recipe is None or not res.get("claims") or current(res):
        return None
    rebuild, cannot, kept_kind = recipe
    res = dict(res)
    res.pop("claims_source", None)
    claims, inputs = rebuild(folder, res)
    have = {(c["claim"], c.get("dataset", "")) for c in claims}
    kept, lost, replaced = [], [], []
    for old in res["claims"]:
        if (old["claim"], old.get("dataset", "")) in have:
            continue
        if not cannot(old):  # the same runs give the current rules' claims instead
            replaced.append(old["claim"])
            continue
        again = rejudge(old, kept_kind)
        if again is not None:
            claims.append(again)
            kept.append(old["claim"])
        else:
            lost.append(old["claim"])
    for c in claims:
        bad = core.rule_violations(c)
        if bad:
            raise AssertionError(f"{folder.name}: {c['claim']}: {'; '.join(bad)}")
    note = (f"Claims recomputed from the committed {', '.join(inputs)} by the current verdict "
            "rules (`twin-study reclaim`), nothing retrained")  # fmt: skip
    if kept:
        note += (f"; judged again from their stored effect and spread (their per-seed inputs "
                 f"are not committed): {'; '.join(kept)}")  # fmt: skip
    if replaced:
        note += f"; replaced by the current rules' readings: {'; '.join(replaced)}"
    if lost:
        note += f"; dropped (a rule that has changed and no inputs to redo it): {'; '.join(lost)}"
    res["claims"] = claims
    res["claims_source"] = {"by": "twin-study reclaim", "inputs": inputs, "kept": kept,
                            "replaced": replaced, "dropped": lost,
                            "note": note + "."}  # fmt: skip
    return res


def reclaim(figures_dir: Path, check: bool = False) -> list[str]:
    """Rebuild the claims of every notebook folder under ``figures_dir`` that has a recipe;
    return the stems whose results.json changed (with ``check``: would change; nothing is
    written then)."""
    changed = []
    for folder in sorted(p for p in Path(figures_dir).iterdir() if p.is_dir()):
        if not (folder / RESULTS_NAME).is_file():
            continue
        old = load_results(folder)
        new = reclaim_results(folder, old)
        if new is None or new == old:
            continue
        changed.append(folder.name)
        if not check:
            save_results(folder, new)
    return changed


# --- command line (registered in twin_study.cli.SUBCOMMANDS) -----------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--figures",
        type=Path,
        default=paths.FIGURES_DIR,
        help="paper-profile outputs, one folder per notebook (default: figures/)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a results.json's claims are not those of the "
        "current rules",
    )


def main(args: argparse.Namespace) -> int:
    changed = reclaim(args.figures, check=args.check)
    verb = "out of date" if args.check else "rewritten"
    for stem in changed:
        print(f"{args.figures / stem / RESULTS_NAME}: claims {verb}")
    if not changed:
        print("every results.json's claims follow the current rules")
    return 1 if args.check and changed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(argparse.Namespace(figures=paths.FIGURES_DIR, check=False)))
