"""Notebook 02's claim set, verdict text and tables: does the GSU retrieve what the ESU wants?

Generated from the numbers, so they hold at every profile. ``consistency_claims`` gives the
paper's Fig. 4 claims in the format of ``twin-study report`` (``analysis.reclaim`` judges them
again from the committed files); ``fig4_verdict``, ``staleness_verdict`` and ``recall_verdict``
write the notebook's markdown. ``plots.consistency`` draws the figures and imports these too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..models import registry
from ..paper import FIG4_HITS, FIG4_TWIN_MISSES
from .core import RULES_VERSION, at_most_partly

# ``"sim_hard"`` -> ``"SIM Hard"``: the module's label in the registry (plots and notebook 02
# read it under this name).
model_label = registry.label


_FINER = ("sim_hard", "sim_cluster", "sim_soft", "twin")  # paper: finer retrieval is better


def size_needed(curve: pd.DataFrame, hits: float) -> int | None:
    """Smallest GSU output size whose mean hits reach ``hits`` (``curve``: size, mean)."""
    ok = curve.loc[curve["mean"] >= hits - 1e-9, "size"]
    return int(ok.min()) if len(ok) else None


def fig4_verdict(
    dataset: str, hits: Mapping[str, float], curves: pd.DataFrame, k: int = 100
) -> str:
    """Markdown: hits at GSU output ``k`` per model against the paper, the paper's retrieval
    order, and the GSU output size each model needs for 90 % of the real top-``k``
    (``hits``: model -> mean hits at k; ``curves``: model, size, mean)."""
    order = sorted(hits, key=hits.get)
    out = [f"**{dataset}**, hits at GSU output {k}: "
           + ", ".join(f"{model_label(m)} {hits[m]:.1f}" for m in order) + "."]  # fmt: skip
    if "twin" in hits:
        out.append(
            f"- TWIN: {hits['twin']:.1f} (paper {FIG4_HITS['twin']:.0f}). With a fresh cache the "
            f"CP-GSU ranks by the ESU's own scores, so {k} is expected by construction; a "
            "shortfall could only come from floating-point ties at the cut."
        )
    if "sim_hard" in hits:
        far = "twin" in hits and hits["sim_hard"] <= hits["twin"] - 0.2 * k
        out.append(
            f"- SIM Hard: {hits['sim_hard']:.1f} (paper {FIG4_HITS['sim_hard']:.0f}), "
            f"{'far' if far else 'not far'} below TWIN. It keeps only behaviours of the target's "
            "category, most recent first, so only the same-category part of the real top-k can "
            "ever be a hit."
        )
    finer = [m for m in _FINER if m in hits]
    if len(finer) > 1:
        holds = all(hits[a] <= hits[b] for a, b in zip(finer, finer[1:], strict=False))
        chain = " < ".join(model_label(m) for m in finer)
        out.append(
            f"- The paper's order by retrieval fineness ({chain}) "
            f"{'holds' if holds else 'does **not** hold'} here."
        )
    if "twin_no_paracon" in hits:
        out.append(
            f"- TWIN w/o Para-Con: {hits['twin_no_paracon']:.1f}. Same GSU structure, but its "
            "scores come from a separately trained TWIN: structure alone does not make the two "
            "stages agree; shared parameters do."
        )
    need = {m: size_needed(curves[curves["model"] == m], 0.9 * k) for m in hits}
    out.append(
        f"- GSU output needed to hold {0.9 * k:.0f} of the real top-{k}: "
        + ", ".join(f"{model_label(m)} {'> L' if n is None else f'{n:,}'}" for m, n in need.items())
        + "."
    )
    return "\n".join(out)


def staleness_verdict(dataset: str, hits: Mapping[int, float], k: int = 100) -> tuple[str, str]:
    """(verdict, markdown) on whether a stale cache loses as many hits as the paper's 6 misses
    (``hits``: cache age in steps -> hits at GSU output k; age 0 is the fresh cache)."""
    fresh = hits.get(0, float(k))
    stale = {n: h for n, h in sorted(hits.items()) if n > 0}
    ages = ", ".join(f"{n:,} steps old {h:.1f}" for n, h in stale.items())
    text = f"**{dataset}**: fresh cache {fresh:.1f}" + (f"; {ages}." if ages else ".")
    misses = FIG4_TWIN_MISSES * k / 100
    lost = [n for n, h in stale.items() if fresh - h >= misses]
    if lost:
        return "reproduced", (
            f"{text} A cache {lost[0]:,} step(s) old already loses at least {misses:.0f} of the "
            f"real top-{k}: staleness alone produces misses of the size the paper reports."
        )
    if stale and min(stale.values()) < fresh:
        return "partly", (
            f"{text} Staleness costs hits, but up to {max(stale):,} steps fewer than the paper's "
            f"{misses:.0f}: at these lags it explains the misses only partly."
        )
    return "not reproduced", f"{text} No loss at these lags: staleness explains no misses here."


def recall_verdict(
    dataset: str, gsu: Mapping[str, float], oracle: Mapping[str, float], margin: float = 0.05
) -> str:
    """Markdown on the recall of the planted relevant behaviours by each GSU's set and by the
    model's own oracle top-k; differences within ``margin`` count as equal."""
    models = list(gsu)
    pairs = ", ".join(f"{model_label(m)} {gsu[m]:.2f} / {oracle[m]:.2f}" for m in models)
    best = model_label(max(models, key=gsu.get))
    text = [f"**{dataset}**, recall of the planted relevant behaviours, GSU / own oracle: {pairs}."]
    text.append(f"Best GSU: {best}.")
    lost = [f"{model_label(m)} ({oracle[m] - gsu[m]:.2f})" for m in models
            if oracle[m] - gsu[m] > margin]  # fmt: skip
    ahead = [model_label(m) for m in models if gsu[m] - oracle[m] > margin]
    if lost:
        text.append(
            "The GSU drops relevant behaviours that the model's own ESU would rank in its top-k "
            f"(a consistency loss that costs signal): {', '.join(lost)}."
        )
    if ahead:
        text.append(
            "The GSU keeps more of them than the model's own ESU would rank first, so that ESU "
            "has not learned to prefer them (a training question, not a retrieval one): "
            f"{', '.join(ahead)}."
        )
    return " ".join(text)


def consistency_claims(
    dataset: str,
    hits: Mapping[str, float],
    std: Mapping[str, float],
    n_seeds: int,
    stale: Mapping[int, float] | None = None,
    k: int = 100,
) -> list[dict]:
    """The paper's Fig. 4 claims with a verdict each, in the format of ``twin-study report``.

    Effects are signed so that positive means the paper's direction (TWIN's hits minus SIM
    Hard's; hits a stale cache loses). One seed is at best *partly* (the staleness study runs
    one seed), as everywhere in ``claims.core``; the fresh-cache hits are a ``check``."""
    out = []
    if "twin" in hits:
        t = hits["twin"]
        out.append({
            "claim": f"TWIN's GSU output 100 holds ~{FIG4_HITS['twin']:.0f} of the real top-100 "
                     "(Fig. 4)",
            "dataset": dataset, "effect": t - FIG4_HITS["twin"] * k / 100,
            "spread": std.get("twin", 0.0),
            # With a fresh cache the GSU scores ARE the ESU's, so k hits prove the plumbing
            # (cache, bias tables, head merge), not the paper's claim; the staleness claim
            # below is the evidence. Fewer than k would mean a bug.
            "verdict": "by construction" if t >= k - 1e-6 else "not reproduced",
            "n_seeds": n_seeds, "kind": "check", "rule": "", "rules": RULES_VERSION,
            "detail": f"{t:.1f} hits: a plumbing check (fresh cache: the GSU ranks with the "
                      f"ESU's own scores), not evidence; see the cache-delay claim",
        })  # fmt: skip
    if "twin" in hits and "sim_hard" in hits:
        d = hits["twin"] - hits["sim_hard"]
        verdict = "reproduced" if d >= 0.2 * k else "not reproduced"  # "far": >= 20 % of k
        out.append({
            "claim": "SIM Hard's GSU is far less consistent than TWIN's "
            f"({FIG4_HITS['sim_hard']:.0f} vs {FIG4_HITS['twin']:.0f})",
            "dataset": dataset, "effect": d, "spread": std.get("sim_hard", 0.0),
            "verdict": at_most_partly(verdict, n_seeds), "n_seeds": n_seeds,
            "kind": "paper", "rule": "better", "rules": RULES_VERSION,
            "detail": f"TWIN {hits['twin']:.1f} − SIM Hard {hits['sim_hard']:.1f} hits; "
                      f"'far': at least {0.2 * k:g}",
        })  # fmt: skip
    if stale and len(stale) > 1:
        verdict, _ = staleness_verdict(dataset, stale, k)
        ages = ", ".join(f"{n:,} steps {h:.1f}" for n, h in sorted(stale.items()))
        out.append({
            "claim": "A delayed item cache can cost TWIN the paper's "
                     f"{FIG4_TWIN_MISSES:.0f} misses",
            "dataset": dataset,
            "effect": stale.get(0, float(k)) - min(stale.values()),
            "verdict": at_most_partly(verdict, 1), "n_seeds": 1,
            "kind": "paper", "rule": "better", "rules": RULES_VERSION,
            "detail": f"hits by cache age: {ages}; effect = hits lost; one seed: at best partly",
        })  # fmt: skip
    return out


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table of ``df``; floats rounded to ``digits``, NaN left empty."""

    def fmt(v) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = [" | ".join(map(str, df.columns)), " | ".join("---" for _ in df.columns)]
    lines += [" | ".join(fmt(v) for v in row) for row in df.itertuples(index=False)]
    return "".join(f"| {line} |\n" for line in lines)
