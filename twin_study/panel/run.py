"""Running the panel: each world's draws, its models (by the declared size rules) and one
record per world.

``run_world`` generates (or loads) every draw of one world, trains every model with every
training seed through ``analysis.sweeps.sweep`` (so ``--jobs`` / ``--dask`` and the results
cache apply), reads each run's test scores and learning curve, and returns a ``WorldRecord``:
plain data that notebook 08 writes to ``figures/08_panel/worlds/<world>.json`` as soon as the
world is done, so a panel that outlives a session keeps every finished world.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import sweeps
from ..analysis.tables import finite_or_none
from ..data import load_dataset
from ..data.schema import Dataset
from ..data.synthetic import generate
from ..models import registry
from ..models.config import ModelConfig
from ..results import atomic_write_bytes
from ..training.experiment import predictions_on_test
from ..training.experiment import run as run_one
from . import stats
from .spec import PanelError, PanelSpec, World

# Table-4 labels -> lifelong module (SIM Cluster+ is SIM Cluster with the rule's cluster count).
MODULE_OF = {registry.label(module): module for module in registry.names()} | {
    "SIM Cluster+": "sim_cluster"
}


def settings(spec: PanelSpec, world: World, ds: Dataset) -> list[sweeps.Setting]:
    """One Setting per declared model; sizes from the panel's rules, never set per world.
    A world whose L is below the budget's k (a short user log) keeps all L: k = min(k, L)."""
    long_len = spec.long_len_of(world)
    base = ModelConfig(
        long_len=long_len,
        k=min(spec.budget.k, long_len),
        large_vocab=spec.size_rules.large_vocab,
    ).validate()
    out = []
    for label in spec.models:
        if label not in MODULE_OF:
            raise PanelError(f"unknown panel model {label!r}; known: {sorted(MODULE_OF)}")
        cfg = dataclasses.replace(base, long_module=MODULE_OF[label])
        if label == "SIM Cluster+":
            cfg = dataclasses.replace(
                cfg, n_clusters=spec.size_rules.n_clusters_plus(ds.items.n_items)
            )
        out.append(sweeps.Setting(label, cfg.validate()))
    return out


def train_config(spec: PanelSpec, progress: bool = False):
    b = spec.budget
    return sweeps.train_config(
        epochs=b.epochs, batch_size=b.batch_size, max_train_samples=b.max_train_samples,
        eval_every=b.eval_every, eval_samples=b.eval_samples, progress=progress,
    )  # fmt: skip


def load_draw(spec: PanelSpec, world: World, data_seed: int) -> Dataset:
    """One draw of a world: generated (synthetic) or loaded (real data; named by the world)."""
    if world.synthetic:
        return generate(spec.generator_config(world, data_seed))
    ds = load_dataset(world.source, **dict(world.load))
    if ds.name != world.name:
        ds.name = world.name  # before any run: the name is part of the data fingerprint
    return ds


@dataclass
class WorldRecord:
    """Everything the analysis needs from one world (JSON-friendly but for ``draws``)."""

    world: str
    question: str
    digest: str
    runs: pd.DataFrame  # one row per (draw, model, seed): test/valid metrics, training facts
    curves: pd.DataFrame  # learning curves, long format
    draw_facts: list[dict[str, Any]]  # per draw: name, positive rate, Bayes AUC, sizes
    seconds: float
    draws: list[stats.Draw] = field(default_factory=list, repr=False)


def run_world(
    spec: PanelSpec,
    world: World,
    jobs: int | None = None,
    progress: bool = True,
) -> WorldRecord:
    """Train every declared model with every seed on every draw of ``world``."""
    t0 = time.perf_counter()
    train = train_config(spec)
    seeds = list(spec.budget.train_seeds)
    runs, curves, facts, draws = [], [], [], []
    for data_seed in spec.seeds_of(world):
        t_gen = time.perf_counter()
        ds = load_draw(spec, world, data_seed)
        gen_s = time.perf_counter() - t_gen
        sets = settings(spec, world, ds)
        r = sweeps.sweep(ds, sets, seeds, train, progress=progress, jobs=jobs)
        valid = sweeps.sweep(ds, sets, seeds, train, split="valid", progress=False)
        r["valid_auc"] = valid["auc"].to_numpy()
        r["valid_logloss"] = valid["logloss"].to_numpy()
        r.insert(0, "draw", data_seed)
        runs.append(r)
        c = sweeps.learning_curves(ds, sets, seeds, train)
        curves.append(c.assign(draw=data_seed))
        idx = ds.split_indices("test")
        s = ds.samples
        scores = {}
        for st in sets:
            for seed in seeds:
                tc = st.train_config(train, seed)
                scores[(st.label, seed)] = predictions_on_test(ds, run_one(ds, st.model, tc), tc)
        p_true = None if ds.p_true is None else ds.p_true[idx]
        draws.append(stats.Draw.of(s.user[idx], s.label[idx], scores, p_true))
        facts.append({
            "draw": data_seed, "dataset": ds.name, "n_users": int(ds.n_users),
            "n_behaviours": int(ds.log.n_behaviours), "n_items": int(ds.items.n_items),
            "n_train": int(len(ds.split_indices("train"))), "n_test": int(len(idx)),
            "positive_rate": float(s.label.mean()),
            "test_positive_rate": float(s.label[idx].mean()),
            "bayes_auc": None if p_true is None else draws[-1].scorer("bayes").auc(),
            "n_clusters_plus": spec.size_rules.n_clusters_plus(ds.items.n_items),
            "long_len": spec.long_len_of(world), "load_seconds": gen_s,
            # The noise of one learning-curve reading (s.e. of the validation LogLoss on the
            # eval_samples subset), beside the flattening tolerance it must stay below.
            "curve_logloss_se": sweeps.eval_logloss_se(ds, spec.budget.eval_samples),
        })  # fmt: skip
        del ds
    return WorldRecord(
        world=world.name, question=world.question, digest=spec.digest(world),
        runs=pd.concat(runs, ignore_index=True), curves=pd.concat(curves, ignore_index=True),
        draw_facts=facts, seconds=time.perf_counter() - t0, draws=draws,
    )  # fmt: skip


def analyse_world(spec: PanelSpec, rec: WorldRecord) -> dict[str, Any]:
    """The declared per-world analysis of a freshly run world, as plain records."""
    a = spec.analysis
    seeds = list(spec.budget.train_seeds)
    eff = stats.world_effects(rec.draws, spec.models, seeds, a.reference, a.metrics,
                              a.bootstrap, a.level)  # fmt: skip
    met = stats.world_metrics(rec.draws, spec.models, seeds)
    gap = stats.gap_closure(rec.draws, spec.models, seeds, a.gap_baseline, a.bootstrap, a.level)
    status = sweeps.curve_status(rec.curves, by=("dataset", "model", "seed"), tail=a.curve_tail,
                                 tol=a.curve_tol)  # fmt: skip
    flat = status.groupby("model", sort=False)["flattened"].mean()
    return {
        "world": rec.world, "question": rec.question, "digest": rec.digest,
        "seconds": rec.seconds, "draws": rec.draw_facts,
        "positive_rate": float(np.mean([f["positive_rate"] for f in rec.draw_facts])),
        "bayes_auc": _mean_or_none([f["bayes_auc"] for f in rec.draw_facts]),
        "metrics": met.to_dict("records"), "effects": eff.to_dict("records"),
        "gap_closed": None if gap is None else gap.to_dict("records"),
        "flattened": {m: float(v) for m, v in flat.items()},
        "curve_status": status.to_dict("records"),
        "curves": rec.curves.drop(columns=["dataset"], errors="ignore").to_dict("records"),
        "runs": sweeps.stable_runs(rec.runs).to_dict("records"),
        "train_seconds": float(rec.runs["train_seconds"].sum()),
    }  # fmt: skip


def frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """``df.to_dict("records")`` with missing values as None. A frame built from records
    where a field is None for some rows (a t over one draw, MovieLens's Bayes AUC) holds NaN
    there, which strict JSON (``results.to_jsonable``) rightly refuses."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def _mean_or_none(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return float(np.mean(v)) if v else None


def summarise(
    worlds: Mapping[str, dict[str, Any]], spec: PanelSpec, declared: Sequence[str] = ()
) -> dict[str, Any]:
    """The across-world summary of per-world analyses (``analyse_world`` records);
    ``declared``: every world the panel declares, so a partial run says what is missing."""
    eff = pd.DataFrame([{**e, "world": w} for w, r in worlds.items() for e in r["effects"]])
    met = pd.DataFrame([{**m, "world": w} for w, r in worlds.items() for m in r["metrics"]])
    ref = spec.analysis.reference
    summary = stats.across_worlds(eff, met, ref)
    ranks = stats.reference_ranks(met, ref)
    missing = [w for w in declared if w not in worlds]
    claims = stats.panel_claims(summary, ref, len(spec.budget.train_seeds), missing)
    return {
        "summary": frame_records(summary),
        "claims": [c.to_dict() for c in claims],
        "ranks": frame_records(ranks),
        "missing_worlds": missing,
        "headline": stats.headline(
            summary, met, len(worlds), spec.analysis.level, ref, missing=missing
        ),
        "headline_gauc": stats.headline(
            summary, met, len(worlds), spec.analysis.level, ref, metric="gauc"
        ),  # the AUC paragraph before it already says which worlds are missing
    }


def world_path(out_dir, name: str):
    """Where a finished world's record goes: ``<out_dir>/worlds/<name>.json``."""
    return Path(out_dir) / "worlds" / f"{name}.json"


def save_world(out_dir, record: Mapping[str, Any]) -> None:
    """Write one world's analysis record atomically (a crash leaves no half-written file)."""
    def clean(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            x = x.item()
        return finite_or_none(x) if isinstance(x, float) else x

    text = json.dumps(clean(record), indent=1, sort_keys=True, allow_nan=False)
    atomic_write_bytes(world_path(out_dir, record["world"]), text.encode())


def committed_world(out_dir, name: str, digest: str) -> dict[str, Any] | None:
    """A world's record written earlier under the same declaration (digest), else None."""
    path = world_path(out_dir, name)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    return rec if rec.get("digest") == digest else None


def world_table(records: Mapping[str, Mapping[str, Any]], reference: str = "TWIN") -> pd.DataFrame:
    """One row per world: its question, draws, positive rate, Bayes AUC, the best model,
    ``reference``'s rank and test AUC, the gap it closes and its curves' flattened share."""
    rows = []
    for w, r in records.items():
        met = pd.DataFrame(r["metrics"]).set_index("model")
        gap = {g["model"]: g["closure"] for g in (r.get("gap_closed") or [])}
        rows.append({
            "world": w, "question": r["question"], "draws": len(r["draws"]),
            "positive rate": r["positive_rate"], "Bayes AUC": r["bayes_auc"],
            "best (AUC)": str(met["auc_mean"].idxmax()),
            f"{reference} rank": int(met.loc[reference, "rank_auc"]),
            f"{reference} AUC": float(met.loc[reference, "auc_mean"]),
            f"{reference} gap closed": gap.get(reference),
            f"{reference} flattened": r["flattened"].get(reference),
            "minutes": r["seconds"] / 60,
        })  # fmt: skip
    return pd.DataFrame(rows)
