"""The analytic cost of CP-GSU scoring: FLOPs and bytes of raw MHTA and of TWIN, by hand.

Raw MHTA scores a request's L behaviours by projecting their full features [K_h, K_c]
(H + C wide) into heads x d_k keys: L (H + C) heads d_k multiply-adds, all of it per request.
TWIN (Eq. 4-6) reads K_h W^h from the item cache (a gather of L x heads x d_k floats), adds J
scalar cross biases per behaviour and head from per-code tables, and keeps only the dot with
the candidates' queries. ``analytic_cost`` re-derives both costs (FLOPs and the bytes a call
must move), next to the model's own ``TwinAttention.scoring_flops`` (``model_flops``);
``analysis.complexity`` checks them against ``torch.utils.flop_counter`` and times them.

Conventions: FLOPs count a multiply-add as 2 (as ``FlopCounterMode`` does); "matmul FLOPs" are
the ones ``FlopCounterMode`` sees (mm/bmm), "other FLOPs" the element-wise adds it ignores;
gathers move bytes and count no FLOPs. Bytes are the compulsory traffic of a call (inputs read
once, the score tensor written once, fp32 values and int64 codes), not what the implementation's
temporaries add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from ..models.attention import TwinAttention
from ..models.ctr import CTRModel
from ..paper import PROJECTION_ROWS

F32, I64 = 4, 8  # bytes per value and per code
METHODS = ("raw", "twin")  # raw MHTA (no split, no cache) and TWIN (split + item cache)


@dataclass(frozen=True)
class Dims:
    """The sizes that set the cost of scoring. Defaults: the synthetic data set's features."""

    H: int = 144  # K_h width: item id 64 + author 64 + category 8 + duration 8
    vocab: tuple[int, ...] = (10, 2, 16)  # codes per cross feature (play ratio, liked, time gap)
    cross_dim: int = 8  # embedding size of a cross feature (paper: 8)
    heads: int = 4
    d_k: int = 16
    item_codes: int = 3  # item-table features looked up besides the id (author, category, ...)

    @property
    def J(self) -> int:
        return len(self.vocab)

    @property
    def C(self) -> int:
        return self.J * self.cross_dim

    @property
    def hd(self) -> int:
        return self.heads * self.d_k

    @classmethod
    def of(cls, model: CTRModel) -> Dims:
        e = model.emb
        return cls(H=e.H, vocab=tuple(m.num_embeddings for m in e.cross_emb),
                   cross_dim=e.cross_dim, heads=model.cfg.heads, d_k=model.cfg.d_k,
                   item_codes=len(e.item_feature_names))  # fmt: skip


def analytic_cost(method: str, L: int, B: int, dims: Dims, R: int = 1) -> dict[str, int]:
    """FLOPs and compulsory bytes of scoring R requests of L behaviours against B candidates
    in all (spread evenly over the requests), derived by hand.

    raw:  query B H hd, keys R L (H + C) hd, dot B L hd (multiply-adds);
          reads ids and item codes, K_h and K_c embeddings, W^k; writes B heads L scores.
    twin: query B H hd, tables sum(vocab) cross_dim heads, dot B L hd (multiply-adds);
          adds: heads (sum(vocab) [beta] + R L (J - 1) [sum of J lookups] + B L [into scores]);
          reads ids, cache rows (L hd floats), cross codes, J lookups per head; writes scores.
    """
    d, hd = dims, dims.hd
    mm = {"query": 2 * B * d.H * hd, "keys": 0, "tables": 0, "dot": 2 * B * L * hd}
    other = 0
    rows = R * L
    nbytes = {"ids": rows * I64, "query": B * (1 + d.item_codes) * I64 + B * d.H * F32,
              "weights": d.H * hd * F32, "scores": B * d.heads * L * F32}  # fmt: skip
    if method == "raw":
        mm["keys"] = 2 * rows * (d.H + d.C) * hd
        nbytes["weights"] += (d.H + d.C) * hd * F32
        nbytes["keys"] = rows * (d.item_codes * I64 + d.H * F32 + d.J * I64 + d.C * F32)
    elif method == "twin":
        mm["tables"] = 2 * sum(d.vocab) * d.cross_dim * d.heads
        other = d.heads * (sum(d.vocab) + rows * (d.J - 1) + B * L)
        nbytes["keys"] = rows * (hd * F32 + d.J * I64 + d.J * d.heads * F32)
        nbytes["weights"] += sum(d.vocab) * d.cross_dim * F32 + d.J * d.cross_dim * d.heads * F32
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    flops_mm = sum(mm.values())
    return {
        **{f"flops_{k}": v for k, v in mm.items()},
        "flops_matmul": flops_mm,
        "flops_other": other,
        "flops": flops_mm + other,
        "key_side_flops": flops_mm + other - mm["query"],  # all but the candidates' W^q
        "bytes": sum(nbytes.values()),
    }


def cost_table(L_values: Sequence[int], B_values: Sequence[int], dims: Dims) -> pd.DataFrame:
    """``analytic_cost`` of one request for every (L, B, method), with per-behaviour costs,
    arithmetic intensity and TWIN's reduction of the key side."""
    rows = []
    for L in L_values:
        for B in B_values:
            for m in METHODS:
                c = analytic_cost(m, L, B, dims)
                rows.append({"L": L, "B": B, "method": m, **c,
                             "key_side_flops_per_behaviour": c["key_side_flops"] / L,
                             "intensity": c["flops"] / c["bytes"]})  # fmt: skip
    df = pd.DataFrame(rows)
    raw = df[df.method == "raw"][["L", "B", "key_side_flops"]]
    raw = df[["L", "B"]].merge(raw, on=["L", "B"], how="left")["key_side_flops"].to_numpy()
    df["key_side_reduction"] = 1 - df["key_side_flops"] / raw
    return df


def paper_claim(
    dims: Dims, L: int = PROJECTION_ROWS, B_values: Sequence[int] = (1, 100, 1000)
) -> dict:
    """The paper's "-99.3 %" in FLOPs, our way, with what is compared to what.

    ``projection``: the projection of L rows of K_h (raw: of [K_h, K_c]) against what replaces it
    in TWIN (a gather: no FLOPs) -> 100 % by construction. ``key_side``: everything scoring does
    per request except the candidates' own W^q (raw: projection + dot; TWIN: cross tables, bias
    adds + dot), for B candidates; the dot is the same in both, so the cut shrinks as B grows.
    """
    raw, twin = (analytic_cost(m, L, 1, dims) for m in METHODS)
    out = {"L": L, "projection_raw_flops": raw["flops_keys"],
           "projection_twin_flops": twin["flops_keys"],
           "projection_reduction": 1 - twin["flops_keys"] / raw["flops_keys"],
           "twin_gather_bytes": L * dims.hd * F32}  # fmt: skip
    for B in B_values:
        r, t = analytic_cost("raw", L, B, dims), analytic_cost("twin", L, B, dims)
        out[f"key_side_reduction_B{B}"] = 1 - t["key_side_flops"] / r["key_side_flops"]
    return out


def model_flops(att: TwinAttention, L: int, B: int, vocab: Sequence[int]) -> dict[str, int]:
    """The model's own count (``TwinAttention.scoring_flops``), split as FlopCounterMode sees it."""
    f = att.scoring_flops(L, B, vocab)
    return {"matmul": f["query"] + f["keys"] + f["tables"] + f["dot"], "other": f["bias"]}


def dims_dict(dims: Dims) -> dict:
    return {**asdict(dims), "J": dims.J, "C": dims.C}
