"""Para-Con at equal compute: what TWIN w/o Para-Con's frozen GSU cost to train, and TWIN
given as many training samples (issue 24, item 5; notebook 05).

TWIN w/o Para-Con (``long_module="twin_no_paracon"``) scores its GSU with a frozen copy of a
separately trained TWIN, the auxiliary model (``training.experiment.prerequisites``: the
same model and training config, seed + ``AUX_SEED_OFFSET``). Its pipeline has therefore seen
the training samples twice, once in each model, where TWIN has seen them once. Here:

* ``training_cost``: per seed, the samples each model saw (the learning curve's last point:
  every sample trained on, not only those up to the selected checkpoint) and its training
  seconds (``TrainResult.train_seconds``: training steps only, no evaluation), read from the
  results cache: the auxiliary TWIN, w/o Para-Con's own training, their total, TWIN, and TWIN
  at equal compute;
* ``equal_compute_setting``: TWIN trained for ``passes`` x the sweep's epochs over the same
  training split, with patience equal to those epochs, so early stopping never cuts it short.
  With the study's one-epoch budget that is exactly the auxiliary model's plus w/o
  Para-Con's samples; ``matched`` checks it per seed from the samples actually seen;
* ``equal_compute_claim``: the paper's "Para-Con helps" read at equal compute, paired by seed
  (``core.claim_better``), beside the equal-samples claim of ``claims.ablations.ablation_claims``;
* ``effects``: the three paired differences a reader needs (TWIN at equal samples and at equal
  compute against w/o Para-Con, and what the extra pass bought TWIN itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from ..claims import core
from ..models import registry
from ..training import experiment
from ..training.experiment import prerequisites
from .sweeps import Setting
from .tables import finite_or_none, fmt_mean_std

TWIN = registry.label("twin")
NO_PARACON = registry.label("twin_no_paracon")
EQUAL = "TWIN (equal compute)"
# The rows of ``training_cost``, in display order.
AUX_RUN = "auxiliary TWIN (frozen GSU source)"
OWN_RUN = "TWIN w/o Para-Con, its own training"
TOTAL_RUN = "TWIN w/o Para-Con in all (auxiliary + own)"
TWIN_RUN = "TWIN (equal samples)"
EQUAL_RUN = EQUAL
RUNS = (AUX_RUN, OWN_RUN, TOTAL_RUN, TWIN_RUN, EQUAL_RUN)

CLAIM = "Para-Con helps at equal compute (TWIN, as many samples > w/o Para-Con)"
STATEMENT = (
    "sharing the ESU's parameters with the GSU helps; here TWIN trains on as many samples as "
    "the auxiliary TWIN and w/o Para-Con together"
)


def applies(models: Iterable[str]) -> bool:
    """Whether a notebook's ``models`` (lifelong modules) hold both TWIN and w/o Para-Con."""
    return {"twin", "twin_no_paracon"} <= set(models)


def samples_seen(train_info: dict[str, Any]) -> int:
    """Training samples a run saw in all: its learning curve's last point (the curve records
    a point at the end of every epoch, so the last one counts every sample trained on)."""
    history = train_info.get("history") or []
    return int(history[-1]["samples_seen"]) if history else 0


def equal_compute_setting(twin: Setting, train, passes: int = 2, label: str = EQUAL) -> Setting:
    """``twin`` trained for ``passes`` times the sweep's epochs over the same training split
    (the same seeded ``max_train_samples`` subset, reshuffled each epoch), with patience
    equal to those epochs so early stopping cannot end it before the last one; the best
    validation point is still the one kept, as for every run. Tagged like ``twin``."""
    if passes < 1:
        raise ValueError(f"equal_compute_setting: passes must be >= 1, not {passes}")
    if twin.model.long_module != "twin":
        raise ValueError(f"equal_compute_setting: a TWIN setting, not {twin.model.long_module!r}")
    epochs = passes * int(dict(twin.train).get("epochs", train.epochs))
    overrides = {**dict(twin.train), "epochs": epochs, "patience": epochs}
    return Setting(label, twin.model, dict(twin.tags), overrides)


def training_cost(
    ds,
    twin: Setting,
    no_paracon: Setting,
    equal: Setting,
    train,
    seeds: Iterable[int],
    runner: Callable | None = None,
) -> pd.DataFrame:
    """Per seed, what each model of the comparison cost to train, read from the results
    cache (``runner`` trains what is missing; default ``training.run``).

    One row per (seed, run), runs in ``RUNS`` order: ``dataset, seed, run, samples_seen``
    (every sample trained on), ``best_samples`` (where the kept checkpoint was; empty for the
    total), ``train_seconds`` (training steps only) and ``wall_seconds`` (with evaluation)."""
    if runner is None:
        runner = experiment.run
    rows = []

    def row(seed: int, run: str, info: dict[str, Any]) -> dict[str, Any]:
        return {"dataset": ds.name, "seed": seed, "run": run, "samples_seen": samples_seen(info),
                "best_samples": info.get("best_samples"),
                "train_seconds": float(info.get("train_seconds", float("nan"))),
                "wall_seconds": float(info.get("wall_seconds", float("nan")))}  # fmt: skip

    for seed in seeds:
        own_train = no_paracon.train_config(train, seed)
        pre = prerequisites(no_paracon.model, own_train)
        if len(pre) != 1:
            raise ValueError(f"training_cost: {no_paracon.label} has no auxiliary TWIN")
        aux = row(seed, AUX_RUN, runner(ds, *pre[0]).train)
        own = row(seed, OWN_RUN, runner(ds, no_paracon.model, own_train).train)
        total = {**own, "run": TOTAL_RUN, "best_samples": None}
        for col in ("samples_seen", "train_seconds", "wall_seconds"):
            total[col] = aux[col] + own[col]
        rows += [aux, own, total]
        for setting, name in ((twin, TWIN_RUN), (equal, EQUAL_RUN)):
            res = runner(ds, setting.model, setting.train_config(train, seed))
            rows.append(row(seed, name, res.train))
    return pd.DataFrame(rows, columns=["dataset", "seed", "run", "samples_seen", "best_samples",
                                       "train_seconds", "wall_seconds"])  # fmt: skip


def matched(cost: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, seed): the samples w/o Para-Con's pipeline saw in all, TWIN's at equal
    compute, and ``equal`` (True when they are the same number)."""
    wide = cost.pivot_table(index=["dataset", "seed"], columns="run", values="samples_seen",
                            aggfunc="first", sort=False)  # fmt: skip
    out = pd.DataFrame({"no_paracon_samples": wide[TOTAL_RUN],
                        "equal_compute_samples": wide[EQUAL_RUN]})  # fmt: skip
    out["equal"] = out["no_paracon_samples"] == out["equal_compute_samples"]
    return out.reset_index()


def cost_summary(cost: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (dataset, run), in ``RUNS`` order: samples seen, the kept
    checkpoint, training seconds and wall seconds, and ``vs_twin``: the samples as a multiple
    of TWIN's (equal samples)."""
    g = cost.groupby(["dataset", "run"], sort=False)
    out = g[["samples_seen", "best_samples", "train_seconds", "wall_seconds"]].mean()
    out["n_seeds"] = g["seed"].nunique()
    out = out.reset_index()
    twin = out[out["run"] == TWIN_RUN].set_index("dataset")["samples_seen"]
    out["vs_twin"] = out["samples_seen"] / out["dataset"].map(twin)
    order = {r: i for i, r in enumerate(RUNS)}
    return out.sort_values(["dataset", "run"], key=lambda s: s.map(order) if s.name == "run"
                           else s, kind="stable").reset_index(drop=True)  # fmt: skip


# The paired differences ``effects`` reports: (label, plus, minus).
COMPARISONS = (
    ("TWIN − w/o Para-Con, equal samples", TWIN, NO_PARACON),
    ("TWIN − w/o Para-Con, equal compute", EQUAL, NO_PARACON),
    ("TWIN at equal compute − TWIN (what the extra pass bought)", EQUAL, TWIN),
)


def effects(
    runs: pd.DataFrame, dataset: str, metrics: Sequence[str] = ("auc", "gauc")
) -> pd.DataFrame:
    """The ``COMPARISONS`` on one data set, paired by seed: ``dataset, comparison, metric,
    effect`` (mean of the per-seed differences; positive: the first is better), ``se``
    (standard error of that mean; NaN with one seed), ``t`` and ``n_seeds``."""
    runs = runs[runs["dataset"] == dataset]
    have = set(runs["model"])
    rows = []
    for name, plus, minus in COMPARISONS:
        if not {plus, minus} <= have:
            continue
        for m in metrics:
            eff = core.paired(runs, [{"model": plus}], [{"model": minus}], m)
            t = eff.mean / eff.se if eff.se > 0 else float("nan")  # NaN se: one seed
            rows.append({"dataset": dataset, "comparison": name, "metric": m,
                         "effect": eff.mean, "se": eff.se, "t": t, "n_seeds": eff.n})  # fmt: skip
    return pd.DataFrame(rows, columns=["dataset", "comparison", "metric", "effect", "se", "t",
                                       "n_seeds"])  # fmt: skip


def equal_compute_claim(
    runs: pd.DataFrame, dataset: str, metric: str = "gauc", z: float = 2.0
) -> core.Claim:
    """The paper's "Para-Con helps" at equal compute: TWIN trained on as many samples as the
    auxiliary TWIN and w/o Para-Con together beats w/o Para-Con, paired by seed (the
    verdict rule of ``core.claim_better``). ``runs``: sweep rows holding ``EQUAL`` and
    w/o Para-Con.

    A question of this study (kind ``study``), not a second paper claim: the paper compares
    at equal samples per model, which ``claims.ablations.ablation_claims``' "Para-Con helps" reads
    and the tally counts once."""
    return core.claim_better(runs[runs["dataset"] == dataset], EQUAL, NO_PARACON, metric,
                                 claim=CLAIM, statement=STATEMENT, z=z, dataset=dataset,
                                 kind=core.STUDY)  # fmt: skip


def table(cost: pd.DataFrame, runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One data set's comparison for the README: per run of ``RUNS``, samples seen and
    training seconds (mean over seeds), and the test AUC / GAUC (mean ± std) of the models
    that were evaluated (the auxiliary TWIN's GSU is a part of w/o Para-Con, not a model of
    the comparison)."""
    s = cost_summary(cost[cost["dataset"] == dataset])
    r = runs[runs["dataset"] == dataset]
    model_of = {OWN_RUN: NO_PARACON, TOTAL_RUN: NO_PARACON, TWIN_RUN: TWIN, EQUAL_RUN: EQUAL}
    rows = []
    for _, x in s.iterrows():
        row = {"run": x["run"], "samples seen": f"{x['samples_seen']:,.0f}",
               "x TWIN's": f"{x['vs_twin']:.2f}",
               "train s": f"{x['train_seconds']:.1f}"}  # fmt: skip
        model = model_of.get(x["run"])
        sel = r[r["model"] == model] if model and x["run"] != OWN_RUN else r.iloc[:0]
        for m in ("auc", "gauc"):
            v = sel[m]
            row[f"test {m}"] = fmt_mean_std(v.mean(), v.std()) if len(v) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def record(cost: pd.DataFrame, runs: pd.DataFrame, equal: Setting) -> dict[str, Any]:
    """results.json's ``paracon`` block: the training options of TWIN at equal compute
    (``equal.train``), the cost per data set and run (mean over seeds), whether every seed's
    compute matched, and the paired effects (the claim goes into the notebook's ``claims``)."""
    s = cost_summary(cost)
    out: dict[str, Any] = {"equal_compute_train": dict(equal.train), "cost": {}, "matched": {},
                           "effects": {}}  # fmt: skip
    for _, x in s.iterrows():
        out["cost"].setdefault(str(x["dataset"]), {})[str(x["run"])] = {
            "samples_seen": finite_or_none(x["samples_seen"]),
            "best_samples": finite_or_none(x["best_samples"]) if pd.notna(x["best_samples"])
            else None,
            "train_seconds": finite_or_none(x["train_seconds"]),
            "wall_seconds": finite_or_none(x["wall_seconds"]),
            "n_seeds": int(x["n_seeds"]),
        }  # fmt: skip
    for d, g in matched(cost).groupby("dataset", sort=False):
        out["matched"][str(d)] = bool(g["equal"].all())
    for d in cost["dataset"].unique():
        for _, e in effects(runs, d).iterrows():
            out["effects"].setdefault(str(d), {}).setdefault(e["comparison"], {})[e["metric"]] = {
                "effect": finite_or_none(e["effect"]), "se": finite_or_none(e["se"]),
                "n_seeds": int(e["n_seeds"])}  # fmt: skip
    return out
