"""The paper's claims as data: paired effects over seeds and a verdict per claim.

``paired`` takes per-seed differences, so the spread of an effect is the spread of the
difference, not of the two metrics. ``claim_better``, ``claim_similar``, ``claim_order`` and
``combine`` return a ``Claim`` whose ``verdict`` is one of ``VERDICTS``; a claim that fails
is a verdict, never an exception. This module is the generic machinery (claim records,
verdict rules, formatting); the paper's readings, one claim set per notebook, are its
siblings in ``twin_study.claims`` (``main_results``: Table 4; ``sequence_length``: Fig. 5;
``ablations``: Fig. 6; ``consistency``: Fig. 4; ``complexity``: the cost claim).

The rules every verdict obeys (``rule_violations`` checks a stored claim against them):

* one seed is at best *partly*: without a spread there is no noise to clear;
* a directional claim whose effect has the wrong sign (or is zero) is *not reproduced*,
  never *partly*;
* "about the same" is an equivalence claim: *reproduced* only when the whole interval
  mean ± z s.e. lies inside ± tol (``claim_similar``);
* an ordering is *partly* only when every adjacent pair out of order is within z s.e. and
  Kendall's tau > 0 (``claim_order``); a conjunction ("every model ...") is *not reproduced*
  as soon as one part is (``combine``);
* each claim has a ``kind``: ``paper`` (the paper says it), ``study`` (this study's own
  question, e.g. the 60 % bar) or ``check`` (it cannot fail: deterministic, or true by
  construction). The README's tally counts paper claims and study questions apart and
  leaves checks out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.sweeps import HIGHER_IS_BETTER
from ..analysis.tables import finite_or_none

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED)
BY_CONSTRUCTION = "by construction"  # a check's verdict where the design guarantees it

# What a claim is: the paper's, the study's own question, or a check that cannot fail.
PAPER, STUDY, CHECK = "paper", "study", "check"
KINDS = (PAPER, STUDY, CHECK)

# The version of these rules a claim was judged by (stored in every claim). Bump it when a
# verdict rule changes: `twin-study reclaim` judges again every committed claim of an older
# version from the committed runs. 1: the rules before issue 24 (claims without the field).
RULES_VERSION = 2

# The rule a verdict came from (``rule_violations`` needs it: the sign of an equivalence's
# effect says nothing, that of a "better" claim everything).
BETTER, SIMILAR, ORDER, ALL = "better", "similar", "order", "all"


# --- paired effects and claims -------------------------------------------------------------


@dataclass
class Effect:
    """Per-seed paired effect: ``values`` are sum(plus) - sum(minus) per seed."""

    values: np.ndarray
    seeds: list[int]
    reference: float  # mean of the first ``minus`` selection (for relative effects)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.n else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else float("nan")

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n >= 2 else float("nan")

    @property
    def relative_pct(self) -> float:
        return 100.0 * self.mean / self.reference if self.reference else float("nan")


def _select(runs: pd.DataFrame, where: Mapping[str, Any], metric: str) -> pd.Series:
    mask = np.ones(len(runs), dtype=bool)
    for col, val in where.items():
        if col not in runs.columns:
            raise KeyError(f"no column {col!r} in the runs table (selection {dict(where)})")
        mask &= (runs[col] == val).to_numpy()
    sel = runs.loc[mask]
    if sel.empty:
        raise KeyError(f"no runs match {dict(where)}")
    if sel["seed"].duplicated().any():
        raise ValueError(f"selection {dict(where)} has several runs per seed; select more columns")
    return sel.set_index("seed")[metric]


def paired(
    runs: pd.DataFrame,
    plus: Sequence[Mapping[str, Any]],
    minus: Sequence[Mapping[str, Any]],
    metric: str = "gauc",
) -> Effect:
    """Per seed: sum of ``metric`` over the ``plus`` selections minus the ``minus`` ones.

    Each selection (``{"model": "TWIN", "long_len": 1000}``) must pick one run per seed; only
    seeds present in every selection are paired. For LogLoss the sign is flipped, so a
    positive effect always means "plus is better".
    """
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    cols = [_select(runs, w, metric) for w in plus] + [_select(runs, w, metric) for w in minus]
    seeds = sorted(set.intersection(*(set(c.index) for c in cols)))
    total = sum(c.loc[seeds].to_numpy() for c in cols[: len(plus)])
    total = total - sum(c.loc[seeds].to_numpy() for c in cols[len(plus) :])
    reference = float(cols[len(plus)].loc[seeds].mean()) if minus and seeds else float("nan")
    return Effect(sign * np.asarray(total, dtype=float), seeds, reference)


@dataclass
class Claim:
    """A claim of the paper checked on our runs; ``verdict`` is one of VERDICTS."""

    claim: str  # short name
    statement: str  # what the paper says
    verdict: str
    effect: float  # mean paired effect (metric units), or Kendall tau for orderings
    spread: float  # std over seeds of the effect (NaN with one seed)
    n_seeds: int
    metric: str
    detail: str = ""
    dataset: str = ""
    relative_pct: float = float("nan")  # effect in percent of the baseline's mean
    kind: str = PAPER  # PAPER, STUDY or CHECK (kept out of the README's tally)
    rule: str = ""  # BETTER, SIMILAR, ORDER, ALL: the rule the verdict came from
    rules: int = RULES_VERSION  # the version of the rules that judged it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim kind must be one of {KINDS}, got {self.kind!r}")

    @classmethod
    def of(cls, eff: Effect, verdict: str, metric: str, **fields: Any) -> Claim:
        """A claim whose effect, spread, seed count and relative size come from ``eff``.

        An effect with several seeds and no spread at all is deterministic (e.g. a rule
        without learned parameters): the s.e. rule cannot judge it (any positive value is
        "significant"), so the claim becomes a CHECK, kept out of the tally."""
        c = cls(verdict=verdict, effect=eff.mean, spread=eff.std, n_seeds=eff.n,
                metric=metric, relative_pct=eff.relative_pct, **fields)  # fmt: skip
        if eff.n >= 2 and eff.std == 0.0:
            c.kind = CHECK
            c.detail = (c.detail + "; " if c.detail else "") + (
                "the same value for every seed: deterministic, a check that cannot fail "
                "(not counted)"
            )
        return c

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("effect", "spread", "relative_pct"):
            d[k] = finite_or_none(d[k]) if d[k] is not None else None
        return d

    def sentence(self) -> str:
        """One line for the notebook: verdict, effect and spread in words."""
        spread = f" ± {self.spread:.4f}" if math.isfinite(self.spread) else ""
        rel = f" ({self.relative_pct:+.2f} %)" if math.isfinite(self.relative_pct) else ""
        where = f"[{self.dataset}] " if self.dataset else ""
        kinds = {STUDY: " (the study's question)", CHECK: " (a check, not counted)"}
        kind = kinds.get(self.kind, "")
        return (
            f"{where}{self.claim}{kind}: {self.verdict.upper()} — {self.metric} effect "
            f"{self.effect:+.4f}{spread}{rel} over {self.n_seeds} seed(s); {self.detail}"
        ).rstrip("; ")


def better_from_stats(
    mean: float, se: float, n: int, z: float = 2.0, min_effect: float = 0.0
) -> str:
    """``verdict_better`` from an effect's mean, standard error and seed count (a stored
    claim can be judged again from its effect, spread and seeds)."""
    if not math.isfinite(mean) or mean <= 0:
        return NOT_REPRODUCED  # wrong sign or no effect: never "partly"
    if n >= 2 and math.isfinite(se) and mean > z * se and mean > min_effect:
        return REPRODUCED
    return PARTLY  # right sign, within the noise; or one seed (no spread to judge)


def verdict_better(effect: Effect, z: float = 2.0, min_effect: float = 0.0) -> str:
    """``reproduced``: the effect is positive, above ``min_effect`` and more than ``z``
    standard errors from zero (needs >= 2 seeds); ``partly``: positive but within noise (or
    one seed: no spread to judge); ``not reproduced``: zero or negative."""
    return better_from_stats(effect.mean, effect.se, effect.n, z, min_effect)


def at_most_partly(verdict: str, n_seeds: int) -> str:
    """One seed is at best *partly*: a ``reproduced`` without a spread is capped."""
    return PARTLY if verdict == REPRODUCED and n_seeds < 2 else verdict


def claim_better(
    runs: pd.DataFrame,
    a: Mapping[str, Any] | str,
    b: Mapping[str, Any] | str,
    metric: str = "gauc",
    *,
    claim: str = "",
    statement: str = "",
    z: float = 2.0,
    min_effect: float = 0.0,
    dataset: str = "",
    kind: str = PAPER,
) -> Claim:
    """Claim "a beats b" on ``metric``, paired by seed (strings mean ``{"model": name}``)."""
    a, b = _where(a), _where(b)
    eff = paired(runs, [a], [b], metric)
    return Claim.of(
        eff, verdict_better(eff, z, min_effect), metric,
        claim=claim or f"{_name(a)} > {_name(b)}", statement=statement,
        detail=f"{_name(a)} − {_name(b)}, {z:g} s.e. rule", dataset=dataset, kind=kind,
        rule=BETTER,
    )  # fmt: skip


def claim_at_least(
    runs: pd.DataFrame,
    a: Mapping[str, Any] | str,
    metric: str,
    threshold: float,
    *,
    claim: str = "",
    statement: str = "",
    z: float = 2.0,
    dataset: str = "",
    kind: str = PAPER,
) -> Claim:
    """Claim "a's ``metric`` is at least ``threshold``" (e.g. the share of a gap it closes):
    the per-seed effect is ``metric - threshold``, judged like ``claim_better``."""
    a = _where(a)
    col = _select(runs, a, metric).sort_index()
    eff = Effect(col.to_numpy(float) - threshold, list(col.index), float("nan"))
    return Claim.of(
        eff, verdict_better(eff, z), metric,
        claim=claim or f"{_name(a)} {metric} >= {threshold:g}", statement=statement,
        detail=f"{_name(a)} {metric} − {threshold:g}, {z:g} s.e. rule", dataset=dataset,
        kind=kind, rule=BETTER,
    )  # fmt: skip


def similar_from_stats(mean: float, se: float, n: int, tol: float, z: float = 2.0) -> str:
    """The equivalence rule of ``claim_similar`` from an effect's mean, s.e. and seeds."""
    d = abs(mean)
    if not math.isfinite(d):
        return NOT_REPRODUCED
    if n < 2 or not math.isfinite(se):  # no interval: the point estimate alone, capped
        return PARTLY if d <= tol else NOT_REPRODUCED
    if d + z * se <= tol:
        return REPRODUCED  # the whole interval lies inside ± tol
    if d - z * se <= tol:
        return PARTLY  # the interval reaches inside ± tol but also beyond it
    return NOT_REPRODUCED  # the whole interval lies outside: a difference beyond tol


def claim_similar(
    runs: pd.DataFrame,
    a: Mapping[str, Any] | str,
    b: Mapping[str, Any] | str,
    metric: str = "gauc",
    tol: float = 0.002,
    *,
    claim: str = "",
    statement: str = "",
    z: float = 2.0,
    dataset: str = "",
    kind: str = PAPER,
) -> Claim:
    """Claim "a is about the same as b", an equivalence: ``reproduced`` when the interval
    mean ± ``z`` s.e. of the paired effect lies inside ± ``tol`` (metric units); ``partly``
    when it reaches inside ± ``tol`` but not wholly (or one seed with |mean| <= ``tol``);
    ``not reproduced`` when it lies wholly outside. A point estimate inside the tolerance is
    not enough: an effect 3 s.e. from zero and just inside ``tol`` is not shown equivalent."""
    a, b = _where(a), _where(b)
    eff = paired(runs, [a], [b], metric)
    verdict = similar_from_stats(eff.mean, eff.se, eff.n, tol, z)
    if eff.n >= 2:
        lo, hi = eff.mean - z * eff.se, eff.mean + z * eff.se
        interval = f"interval [{lo:+.4f}, {hi:+.4f}] ({z:g} s.e.)"
    else:
        interval = "one seed: no interval"
    return Claim.of(
        eff, verdict, metric, claim=claim or f"{_name(a)} ≈ {_name(b)}", statement=statement,
        detail=f"{_name(a)} − {_name(b)}: {interval} vs tolerance ± {tol:g}", dataset=dataset,
        kind=kind, rule=SIMILAR,
    )  # fmt: skip


def kendall_tau(expected: Sequence[str], values: Mapping[str, float]) -> float:
    """Kendall's tau between the expected order (weakest first) and the measured values."""
    from scipy.stats import kendalltau  # lazy: scipy is heavy; only this claim needs it

    names = [n for n in expected if n in values]
    if len(names) < 2:
        return float("nan")
    return float(kendalltau(np.arange(len(names)), [values[n] for n in names]).statistic)


def _pair_effect(
    summary: pd.DataFrame,
    runs: pd.DataFrame | None,
    weaker: str,
    stronger: str,
    metric: str,
    by: str,
) -> tuple[float, float, int]:
    """(mean, s.e., seeds) of ``stronger`` − ``weaker`` (positive: in the expected order).

    Paired by seed when ``runs`` is given; otherwise from the summary's means and stds, as
    two independent samples (a larger s.e. than the paired one when seeds correlate)."""
    if runs is not None:
        eff = paired(runs, [{by: stronger}], [{by: weaker}], metric)
        return eff.mean, eff.se, eff.n
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    rows = summary.set_index(by)
    a, b = rows.loc[weaker], rows.loc[stronger]
    n = int(min(a["n_seeds"], b["n_seeds"]))
    mean = sign * float(b[f"{metric}_mean"] - a[f"{metric}_mean"])
    if n < 2:
        return mean, float("nan"), n
    var = sum(float(r[f"{metric}_std"]) ** 2 / float(r["n_seeds"]) for r in (a, b))
    return mean, math.sqrt(var), n


def claim_order(
    summary: pd.DataFrame,
    order: Sequence[str],
    metric: str = "gauc",
    *,
    by: str = "model",
    claim: str = "",
    statement: str = "",
    dataset: str = "",
    runs: pd.DataFrame | None = None,
    z: float = 2.0,
    kind: str = PAPER,
) -> Claim:
    """Claim "the models rank as ``order`` (weakest first)", judged pair by adjacent pair
    (paired by seed when ``runs`` holds the per-seed rows, else from ``summary``):

    * ``reproduced``: every adjacent pair in order by more than ``z`` s.e. (>= 2 seeds);
    * ``partly``: every adjacent pair out of order is within ``z`` s.e. (noise could have
      swapped it) and Kendall's tau > 0 (more pairs agree than disagree); with one seed,
      every pair in order (no noise to judge a swapped pair by);
    * ``not reproduced``: a pair out of order beyond the noise, or tau <= 0.

    Kendall's tau > 0 alone was too lenient: a table with a neighbour clearly swapped is not
    the paper's order. The effect is tau; the spread is the median seed-to-seed std of the
    models (compare it with the gaps between means)."""
    col = f"{metric}_mean"
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    present = summary[summary[by].isin(order)]
    values = {str(r[by]): sign * float(r[col]) for _, r in present.iterrows()}
    names = [n for n in order if n in values]
    missing = [n for n in order if n not in values]
    pairs = [(a, b, *_pair_effect(present, runs, a, b, metric, by))
             for a, b in zip(names, names[1:], strict=False)]  # fmt: skip
    broken = [(a, b, m, se) for a, b, m, se, _ in pairs if m <= 0]
    significant = [m > z * se for _, _, m, se, n in pairs if n >= 2 and math.isfinite(se)]
    tau = kendall_tau(names, values)
    n_seeds = int(present["n_seeds"].min()) if "n_seeds" in present and len(present) else 0
    if len(names) < 2:
        verdict = NOT_REPRODUCED
    elif n_seeds < 2:
        verdict = PARTLY if not broken else NOT_REPRODUCED
    elif len(significant) == len(pairs) and all(significant):
        verdict = REPRODUCED
    elif all(abs(m) <= z * se for *_, m, se in broken) and tau > 0:
        verdict = PARTLY
    else:
        verdict = NOT_REPRODUCED
    n_pairs = len(pairs)
    detail = f"{n_pairs - len(broken)}/{n_pairs} adjacent pairs in order"
    if pairs and n_seeds >= 2:
        detail += f", {sum(significant)} by more than {z:g} s.e."
    if broken:
        detail += "; out of order: " + ", ".join(
            f"{a} ≥ {b} ({m:+.4f}" + (f", {abs(m) / se:.1f} s.e.)" if se > 0 else ")")
            for a, b, m, se in broken
        )
    if missing:
        detail += "; not run: " + ", ".join(missing)
    std_col = f"{metric}_std"
    spread = float(present[std_col].median()) if std_col in present and len(present) else math.nan
    return Claim(
        claim=claim or " < ".join(order),
        statement=statement,
        verdict=verdict,
        effect=tau,
        spread=spread,
        n_seeds=n_seeds,
        metric=f"{metric} (Kendall tau)",
        detail=detail,
        dataset=dataset,
        kind=kind,
        rule=ORDER,
    )


def combine(
    parts: Sequence[Claim],
    claim: str,
    statement: str = "",
    dataset: str = "",
    kind: str = PAPER,
) -> Claim:
    """A claim made of several that must all hold (e.g. "every model improves with L"):
    ``reproduced`` when all parts are, ``not reproduced`` as soon as one part is (one clear
    counter-example falsifies an "every"), ``partly`` otherwise (each part reproduced or
    within the noise). Effect and spread are the parts' means."""
    if not parts:
        raise ValueError("combine needs at least one claim")
    verdicts = [p.verdict for p in parts]
    if all(v == REPRODUCED for v in verdicts):
        verdict = REPRODUCED
    elif any(v == NOT_REPRODUCED for v in verdicts):
        verdict = NOT_REPRODUCED
    else:
        verdict = PARTLY
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    return Claim(
        claim=claim,
        statement=statement,
        verdict=verdict,
        effect=float(np.nanmean([p.effect for p in parts])),
        spread=float(np.nanmean([p.spread for p in parts]))
        if any(math.isfinite(p.spread) for p in parts)
        else float("nan"),
        n_seeds=min(p.n_seeds for p in parts),
        metric=parts[0].metric,
        detail=f"{counts}: " + "; ".join(f"{p.claim} {p.verdict}" for p in parts),
        dataset=dataset,
        kind=kind,
        rule=ALL,
    )


def claim_trend(runs: pd.DataFrame, model: str, x: str, lo: Any, hi: Any, **kw: Any) -> Claim:
    """Claim "``model`` is better at ``x = hi`` than at ``x = lo``" (paired by seed);
    ``kw`` as for ``claim_better`` (metric, z, dataset)."""
    c = claim_better(runs, {"model": model, x: hi}, {"model": model, x: lo}, **kw)
    c.claim = f"{model}: {x} {lo} → {hi}"
    return c


def claim_gap_widens(
    runs: pd.DataFrame, model: str, other: str, x: str, lo: Any, hi: Any, **kw: Any
) -> Claim:
    """Claim "``model``'s lead over ``other`` is larger at ``x = hi`` than at ``lo``": the
    per-seed difference in differences; ``kw``: metric, z, dataset."""
    metric, z = kw.get("metric", "gauc"), kw.get("z", 2.0)
    eff = paired(
        runs,
        plus=[{"model": model, x: hi}, {"model": other, x: lo}],
        minus=[{"model": other, x: hi}, {"model": model, x: lo}],
        metric=metric,
    )
    eff.reference = float("nan")  # a difference of differences has no baseline to divide by
    return Claim.of(
        eff, verdict_better(eff, z), metric, claim=f"{model} − {other} widens {x} {lo} → {hi}",
        statement="", detail="difference in differences", dataset=kw.get("dataset", ""),
        kind=kw.get("kind", PAPER), rule=BETTER,
    )  # fmt: skip


def rule_violations(c: Claim | Mapping[str, Any]) -> list[str]:
    """The rules of this module that a claim (a ``Claim`` or its results.json dict) breaks;
    empty when it obeys them all. Tests run it over every committed claim."""
    d = c.to_dict() if isinstance(c, Claim) else dict(c)
    kind, verdict, rule = d.get("kind"), d.get("verdict"), d.get("rule", "")
    n = int(d.get("n_seeds") or 0)
    effect = d.get("effect")
    effect = float("nan") if effect is None else float(effect)
    out = []
    if kind not in KINDS:
        out.append(f"kind {kind!r} is not one of {KINDS}")
    if verdict not in VERDICTS and not (kind == CHECK and verdict == BY_CONSTRUCTION):
        out.append(f"verdict {verdict!r} is not one of {VERDICTS}")
    if d.get("rules") != RULES_VERSION:
        out.append(f"judged by rules {d.get('rules', 1)}, not the current {RULES_VERSION}")
    if kind != CHECK and verdict == REPRODUCED and n < 2:
        out.append(f"reproduced from {n} seed(s): one seed is at best partly")
    if rule in (BETTER, ALL, ORDER) and verdict in (REPRODUCED, PARTLY) and not effect > 0:
        out.append(f"{verdict} with effect {effect:+.4g}: the wrong sign is not reproduced")
    return out


def verdicts_line(claims: Iterable[Claim]) -> str:
    """One markdown paragraph of the claims' verdicts, effects and spreads ("" for none): how
    a notebook's generated reading ends."""
    parts = [
        f"{c.claim}: *{c.verdict}* ({c.effect:+.4f}"
        + (f" ± {c.spread:.4f}" if math.isfinite(c.spread) else "")
        + f", {c.n_seeds} seed(s))."
        for c in claims
    ]
    return "**Verdicts:** " + " ".join(parts) if parts else ""


def claims_frame(claims: Iterable[Claim]) -> pd.DataFrame:
    cols = [f.name for f in dataclasses.fields(Claim)]
    return pd.DataFrame([dataclasses.asdict(c) for c in claims], columns=cols)


def _where(x: Mapping[str, Any] | str) -> dict[str, Any]:
    return {"model": x} if isinstance(x, str) else dict(x)


def _name(where: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in where.items() if k != "model")
    name = str(where.get("model", ""))
    return f"{name} ({rest})" if rest and name else name or rest
