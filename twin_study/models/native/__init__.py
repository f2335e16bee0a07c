"""The native kernels (``gsu_select.cpp``, ``esu_attend.cpp``, ``embed_rows.cpp``,
``sdim_pool.cpp``): torch custom ops over ctypes, compiled on first use.

``select_by_table`` is ``topk.select_per_request`` over ``gsu.table_rows`` scores -- the
selection of TWIN's CP-GSU, SIM Soft and ETA -- in one C++ pass per batch: each behaviour's key
row is read once for all candidates and heads of its request, scores are never written out,
and every (candidate, head) row keeps its k best in a heap; ``select_by_codes`` is SDIM's.
``esu_attend`` is the ESU's attention pooling (``attention._PooledAttention``), with its
backward; ``rows_gather`` / ``rows_scatter_add`` the concatenated embedding lookup of
K = [K_h, K_c] (``embedding.concat_lookup``); ``sdim_pool_forward`` / ``_backward`` SDIM's
original aggregation (``ctr.SdimLinear``). The torch path stays the definition (and the
fallback); tests/test_native.py checks that both compute the same.

The functions here decide whether a kernel can run (enabled, built, tensors on the CPU) and
return None when it cannot, so that the caller takes the torch path; they then call the op
(``ops.py``: ``torch.ops.twin_study.*``), which checks every argument before a pointer is
passed. ``library.py`` compiles the kernels for a fixed instruction-set level (never
``-march=native``), ``build_info()`` reports it. No compiler, a failed build or
``TWIN_STUDY_NATIVE=0`` leave the torch path in use (a build failure warns once).
"""

from __future__ import annotations

import torch

from . import ops
from .ffi import Kernel
from .library import (
    ISA_ENV,
    NATIVE_ENV,
    SOURCES,
    build,
    build_info,
    enabled,
    flags,
    isa_target,
    library_path,
    load,
)

__all__ = [
    "ISA_ENV", "NATIVE_ENV", "SOURCES", "Kernel", "SdimPoolInput", "build", "build_info",
    "enabled", "esu_attend", "esu_backward", "esu_forward", "flags", "isa_target",
    "library_path", "load", "merge_heads", "rows_gather", "rows_scatter_add", "sdim_pool",
    "sdim_pool_backward", "sdim_pool_forward", "sdim_pool_lib", "select_by_codes",
    "select_by_table",
]  # fmt: skip


def _on_cpu(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or t.device.type == "cpu" for t in tensors)


def _ready(name: str, *tensors: torch.Tensor | None) -> bool:
    """Can kernel ``name`` run on these tensors: all on the CPU, and the library loads."""
    return _on_cpu(*tensors) and load(name) is not None


# ---------------------------------------------------------------------------- GSU selection


def select_by_table(
    table: torch.Tensor,
    hist_item: torch.Tensor,
    n_valid: torch.Tensor,
    query: torch.Tensor,
    req: torch.Tensor,
    k: int,
    bias: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    tiebreak: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-head top-k slots of every sample, or None when the kernel cannot run (no library,
    a tensor not on the CPU): then the caller takes the torch path.

    table (V, heads, d); hist_item (R, L); n_valid (R,); query (B, heads, d); req (B,);
    bias = (table (heads, n_codes), codes (R, L, J), strides (J,)) as
    ``TwinAttention.joint_bias_table`` gives it, or None; ``tiebreak`` times the recency term.
    Returns slots (B, heads, k') best first and their scores (B, heads, k'), k' = min(k, L);
    a request with n < k' valid slots gets padding slots n .. k'-1 at -inf, as
    ``select_per_request`` leaves them. A wrong shape raises ValueError, an item id or bias
    code outside its table IndexError."""
    b_table, b_codes, b_strides = bias if bias is not None else (None, None, None)
    if not _ready("gsu", table, hist_item, n_valid, query, req, b_table, b_codes, b_strides):
        return None
    return ops.gsu_select(
        table.detach().float(), hist_item.long(), n_valid.long(), query.detach().float(),
        req.long(), None if b_table is None else b_table.detach().float(),
        None if b_codes is None else b_codes.long(),
        None if b_strides is None else b_strides.long(), float(tiebreak), int(k),
    )  # fmt: skip


def select_by_codes(
    codes: torch.Tensor,
    hist_item: torch.Tensor,
    n_valid: torch.Tensor,
    query: torch.Tensor,
    req: torch.Tensor,
    k: int,
    tiebreak: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """SDIM's selection: score = the number of groups g with codes[item, g] == query[b, g],
    plus ``tiebreak`` times the recency term -- the same scores as ``select_by_table`` over the
    groups' one-hot table, from one byte per group. codes (V, G) and query (B, G) int ids in
    [0, 254); the rest and the returns as ``select_by_table`` (one head). None when the kernel
    cannot run or an id does not fit in a byte."""
    if not _ready("gsu", codes, hist_item, n_valid, query, req):
        return None
    for t in (codes, query):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= ops.CODE_PAD_QUERY):
            return None  # not a byte below the padding values: the torch path handles it
    byte = torch.uint8
    return ops.gsu_select_codes(codes.to(byte), hist_item.long(), n_valid.long(), query.to(byte),
                                req.long(), float(tiebreak), int(k))  # fmt: skip


def merge_heads(top: torch.Tensor, length: int) -> torch.Tensor | None:
    """``topk.merge_heads(top, k)`` for slots in [0, length): top (B, heads, k) -> (B, k);
    None when the kernel cannot run."""
    if top.dtype != torch.long or not _ready("gsu", top):
        return None
    return ops.merge_heads(top, int(length))


# ------------------------------------------------------------------------------------ ESU


def _esu_ready(K: torch.Tensor, *others: torch.Tensor) -> bool:
    return all(t.dtype == torch.float32 for t in (K, *others)) and _ready("esu", K, *others)


def esu_attend(
    K: torch.Tensor, q: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``attention._PooledAttention.apply``, differentiable (K, q and bias get gradients, the
    weights are not differentiable): K (B, n, Hv) (a column slice is fine), q (B, heads,
    width <= Hv), bias (B, n, heads), valid (B, n) -> pooled (B, heads, Hv) and weights
    (B, n, heads); None when the kernel cannot run."""
    if not _esu_ready(K, q, bias):
        return None
    return ops.esu_attend(K, q, bias, valid.bool())


def esu_forward(
    K: torch.Tensor, q: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``esu_attend`` without autograd, returned as weights (B, n, heads) and pooled
    (B, heads, Hv); None when the kernel cannot run."""
    if not _esu_ready(K, q, bias):
        return None
    with torch.no_grad():
        pooled, w = ops.esu_attend(K, q, bias, valid.bool())
    return w, pooled


def esu_backward(
    K: torch.Tensor, q: torch.Tensor, w: torch.Tensor, d_pooled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The gradients of ``esu_forward``: d_K (B, n, Hv), d_q (B, heads, width) and d_alpha
    (B, n, heads), the bias's; None when the kernel cannot run."""
    if not _esu_ready(K, q, w, d_pooled):
        return None
    return ops.esu_attend_backward(K, q, w, d_pooled)


# ------------------------------------------------------------------- concatenated lookup


def rows_gather(tables: list[torch.Tensor], indices: list[torch.Tensor]) -> torch.Tensor | None:
    """``torch.cat([t.index_select(0, i) for t, i in zip(tables, indices)], dim=1)`` in one
    pass: tables (V_p, w_p), indices (N,) int64 (strided is fine) -> (N, sum w_p), with a
    gradient for the tables; None when the kernel cannot run. An index outside its table
    raises IndexError, indices of different lengths ValueError."""
    if not tables or any(t.dtype != torch.float32 for t in tables):
        return None
    if any(i.dtype != torch.long for i in indices) or not _ready("rows", *tables, *indices):
        return None
    return ops.rows_gather(list(tables), list(indices))


def rows_scatter_add(
    grads: list[torch.Tensor], indices: list[torch.Tensor], d_out: torch.Tensor
) -> None:
    """The backward of ``rows_gather``, in place: grads[p] (V_p, w_p), contiguous float32, +=
    the rows of d_out's column block p (N, w_p) at indices[p]. Without the kernel (switched off
    since the forward, or off the CPU), the same sums with one index_add per table."""
    if _ready("rows", *grads, *indices, d_out):
        ops.rows_scatter_add(list(grads), list(indices), d_out)
        return
    off = 0
    for g, i in zip(grads, indices, strict=True):
        g.index_add_(0, i, d_out[:, off : off + g.shape[1]])
        off += g.shape[1]


# ------------------------------------------------------------------------------ SDIM pool


class SdimPoolInput:
    """What ``sdim_pool_forward`` / ``_backward`` read besides the features: bucket ids codes
    (V, G) in [0, nb), the histories (R, L) with their valid prefixes n_valid (R,), the
    samples' targets (B,) and requests (B,); prepared once for both passes."""

    def __init__(self, codes, nb, hist_item, n_valid, target, req):  # noqa: ANN001
        self.codes, self.nb = codes.long().contiguous(), int(nb)
        self.hist_item = hist_item.long().contiguous()
        self.n_valid, self.target = n_valid.long().contiguous(), target.long().contiguous()
        self.req = req.long().contiguous()

    def args(self) -> tuple:
        """The op's arguments after the features: codes, hist_item, n_valid, target, req, nb."""
        return self.codes, self.hist_item, self.n_valid, self.target, self.req, self.nb


def sdim_pool_lib(*tensors: torch.Tensor) -> Kernel | None:
    """The SDIM aggregation kernel when it can run on these tensors (CPU), else None."""
    return load("sdim") if _on_cpu(*tensors) else None


def sdim_pool(Kall: torch.Tensor, inp: SdimPoolInput) -> torch.Tensor:
    """v (B, G, H): per sample and signature group, the sum of Kall's rows (V, H) over the
    request's valid behaviours whose bucket equals the target's; differentiable in Kall.
    Needs the kernel (``sdim_pool_lib``). Raises IndexError for an item or bucket id out of
    range, ValueError for a wrong shape."""
    return ops.sdim_pool(Kall.float(), *inp.args())


def sdim_pool_forward(lib: Kernel, Kall: torch.Tensor, inp: SdimPoolInput) -> torch.Tensor:
    """``sdim_pool`` without autograd (``lib`` from ``sdim_pool_lib``, kept for callers)."""
    with torch.no_grad():
        return ops.sdim_pool(Kall.detach().float(), *inp.args())


def sdim_pool_backward(lib: Kernel, d_v: torch.Tensor, V: int, inp: SdimPoolInput) -> torch.Tensor:
    """The gradient of ``sdim_pool_forward`` with respect to Kall: (V, H)."""
    if len(inp.codes) != V:
        raise ValueError(f"sdim_pool_backward: V = {V}, but codes has {len(inp.codes)} rows")
    return ops.sdim_pool_backward(d_v.float(), *inp.args())
