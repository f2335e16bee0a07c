"""Tables of the study: Table 4 beside the paper, number formatting, records for
results.json and markdown tables for the README report (no tabulate dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..models.config import ModelConfig
from ..results import atomic_write_bytes
from .sweeps import METRICS, PAPER_TABLE4, with_relative


def paper_relative(baseline: str, metrics: Sequence[str] = ("auc", "gauc")) -> pd.DataFrame:
    """The paper's Table 4 with relative improvements (percent) over ``baseline``."""
    paper = PAPER_TABLE4.rename(columns={m: f"{m}_mean" for m in metrics})
    return with_relative(paper, baseline, metrics, within=())


def beside_paper(
    summary: pd.DataFrame, baseline: str = "Avg-Pooling", paper: bool = True
) -> pd.DataFrame:
    """Our Table 4 beside the paper's, one row per model (in ``summary``'s order).

    Columns: model, ours ``auc``/``gauc`` as "mean ± std", our relative improvement over
    ``baseline`` (percent), and with ``paper`` the paper's value and relative improvement
    (for models in Table 4), then our LogLoss and the seed count.
    """
    ours = with_relative(summary, baseline, within=())
    theirs = paper_relative(baseline).set_index("model") if paper else None
    rows = []
    for _, r in ours.iterrows():
        row = {"model": r["model"]}
        for m in ("auc", "gauc"):
            row[f"{m} (ours)"] = fmt_mean_std(r[f"{m}_mean"], r[f"{m}_std"])
            row[f"{m} rel. % (ours)"] = round(float(r[f"{m}_rel_pct"]), 2)
            if theirs is not None and r["model"] in theirs.index:
                row[f"{m} (paper)"] = f"{theirs.loc[r['model'], f'{m}_mean']:.4f}"
                row[f"{m} rel. % (paper)"] = round(float(theirs.loc[r["model"], f"{m}_rel_pct"]), 2)
        row["logloss (ours)"] = fmt_mean_std(r["logloss_mean"], r["logloss_std"])
        row["n_seeds"] = int(r["n_seeds"])
        rows.append(row)
    return pd.DataFrame(rows)


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``"0.7962 ± 0.0012"``; just the mean when the spread is unknown (one seed)."""
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_records(
    summary: pd.DataFrame,
    keys: Sequence[str] = ("dataset", "model"),
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """Nested ``{key1: {key2: ... {metric: {mean, std, n_seeds}}}}`` for results.json (keys
    as strings; std None for one seed), e.g. ``{"synthetic": {"TWIN": {"auc": {...}}}}``."""
    out: dict[str, Any] = {}
    for _, r in summary.iterrows():
        leaf = out
        for k in keys[:-1]:
            leaf = leaf.setdefault(str(r[k]), {})
        leaf[str(r[keys[-1]])] = {
            m: {
                "mean": float(r[f"{m}_mean"]),
                "std": finite_or_none(r[f"{m}_std"]),
                "n_seeds": int(r["n_seeds"]),
            }
            for m in metrics
        }
    return out


def nested(frame: pd.DataFrame, keys: Sequence[str], value: str) -> dict[str, Any]:
    """``{key1: {key2: ... value}}`` from a tidy frame (keys as strings), for results.json."""
    out: dict[str, Any] = {}
    for _, r in frame.iterrows():
        leaf = out
        for k in keys[:-1]:
            leaf = leaf.setdefault(str(r[k]), {})
        leaf[str(r[keys[-1]])] = finite_or_none(r[value])
    return out


def config_record(model: ModelConfig, train, **data: Any) -> dict[str, Any]:
    """The settings a notebook ran with, for results.json: model config, the training options
    that change results, and the data parameters given."""
    drop = {"progress", "device", "threads", "eval_batch_size"}
    t = {k: v for k, v in train.to_dict().items() if k not in drop}
    return {"model": model.to_dict(), "train": t, "data": data}


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for NaN / infinity (strict JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


# --- markdown tables (no tabulate dependency) -----------------------------------------------


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub markdown table; floats formatted with ``floatfmt``, NaN/None as empty (so
    columns that need other precision are best given as strings)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        if isinstance(v, float | np.floating):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(path, df: pd.DataFrame, caption: str = "", floatfmt: str = ".2f"):
    """Write ``df`` as a markdown table (with a caption line) for the README report; the file
    is left untouched when its content is unchanged."""
    text = (f"{caption}\n\n" if caption else "") + to_markdown(df, floatfmt)
    return atomic_write_bytes(path, text.encode())
