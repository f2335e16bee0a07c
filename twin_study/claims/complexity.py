"""Notebook 01's claim set: the paper's cost claim (C3), the feature split's 99.3 % saving, in
FLOPs and in wall time, from the numbers notebook 01 measured."""

from __future__ import annotations

from ..paper import PROJECTION_COST_CUT
from .core import RULES_VERSION


def complexity_claims(results: dict) -> list[dict]:
    """The paper's cost claim (C3) as verdicts, in the format ``twin-study report`` reads.

    The paper: the split cuts "the linear projection of K_h with 10^4 rows" by 99.3 %. It gives
    no time or FLOP breakdown, so FLOPs are checked against 99 %, and wall time (which the
    paper does not claim) is reported as the practical reading of the same claim.

    The FLOP count is arithmetic on the design (the K_h projection is cached, so it is 100 %
    gone), and the notebook asserts it: a check that cannot fail, kept out of the tally. Wall
    time is this study's own question, one measurement: at best *partly* (one run, no spread),
    and a saving short of the claimed 99.3 % is *not reproduced*, never *partly* (its effect,
    measured against 99.3 %, has the wrong sign)."""
    flops = results["flop_reduction_at_1e4"]
    time_red = results.get("key_side_time_reduction_at_1e4")
    cut = f"{100 * PROJECTION_COST_CUT:.1f} %"  # the paper's "99.3 %"
    claims = [{
        "claim": f"the feature split cuts the K_h projection cost by {cut} at L = 10^4 (FLOPs)",
        "dataset": "-", "n_seeds": 1, "spread": None, "kind": "check", "rule": "better",
        "rules": RULES_VERSION,
        "effect": flops - PROJECTION_COST_CUT,
        "verdict": "reproduced" if flops >= 0.99 else "not reproduced",
        "detail": f"key-side FLOPs −{100 * flops:.2f} % for one candidate; the projection "
                  f"itself −{100 * results['projection_flop_reduction_at_1e4']:.0f} % (cached); "
                  "analytic, from the design (the notebook asserts it): a check that cannot "
                  "fail, not counted",
    }]  # fmt: skip
    if time_red is not None:
        effect = time_red - PROJECTION_COST_CUT
        claims.append({
            "claim": "… and the same saving in wall time (not claimed by the paper)",
            "dataset": "-", "n_seeds": 1, "spread": None, "kind": "study", "rule": "better",
            "rules": RULES_VERSION,
            "effect": effect,
            # One timing run: no spread, so at best "partly"; short of 99.3 %: not reproduced.
            "verdict": "partly" if effect > 0 else "not reproduced",
            "detail": f"key-side time −{100 * time_red:.1f} % per request (B = 1), "
                      f"{results['time_speedup_at_1e4']:.2f}× faster; a training batch "
                      f"{results.get('time_speedup_train_batch_at_1e4', float('nan')):.2f}×; "
                      f"effect = measured saving − {cut}",
        })  # fmt: skip
    return claims
