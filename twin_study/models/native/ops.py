"""The native kernels as torch custom ops: ``torch.ops.twin_study.<name>``.

Each op checks every argument's dtype, device, rank and sizes (named, so that a mismatch says
which argument and which size) in both its real and its fake kernel, and the real kernel also
checks the values that size a loop or an output row (request ids, valid counts); the kernels
themselves check every id they look a row up by (item, bucket, bias column, slot) before
reading the row and return an error code, raised here. Only then are pointers passed
(``ffi.Kernel.call``). The fake kernels give torch.compile and ``opcheck`` the output shapes;
``register_autograd`` gives the differentiable ops their hand-written backward ops.

    gsu_select         table-keyed per-head top-k (TWIN's CP-GSU, SIM Soft, ETA)
    gsu_select_codes   SDIM's collision-count top-k over bucket bytes
    merge_heads        per-head lists -> one list of unique slots
    esu_attend         masked softmax attention pooling (+ esu_attend_backward)
    rows_gather        concatenated embedding lookup (+ rows_scatter_add, in place)
    sdim_pool          SDIM's bucket sums (+ sdim_pool_backward)

An op needs its library: calling one where the kernel is unavailable raises RuntimeError. The
public functions in ``native/__init__.py`` decide when to call an op, and otherwise return None
so that the caller takes the torch path.
"""

import torch
from torch import Tensor

from .ffi import Kernel
from .library import load

OPS = ("gsu_select", "gsu_select_codes", "merge_heads", "esu_attend", "esu_attend_backward",
       "rows_gather", "rows_scatter_add", "sdim_pool", "sdim_pool_backward")  # fmt: skip

# Bucket ids of gsu_select_codes are bytes; the padding of the table and of the queries are two
# values no id takes, so padded groups never collide.
CODE_PAD_TABLE, CODE_PAD_QUERY = 255, 254


class Args:
    """An op's argument checks. ``tensor`` binds each named dimension to a size on first sight
    and compares every later use of the name with it: ``query`` "B heads d" after ``table``
    "V heads d" must have table's heads and d."""

    def __init__(self, op: str):
        self.op = op
        self.size: dict[str, int] = {}
        self.seen_in: dict[str, str] = {}

    def fail(self, name: str, why: str) -> None:
        raise ValueError(f"twin_study::{self.op}: {name} {why}")

    def tensor(self, name: str, t: object, dtype: torch.dtype, dims: str) -> Tensor:
        """``t`` is a CPU tensor of ``dtype`` with the named dimensions (``_`` = any size)."""
        if not isinstance(t, Tensor):
            self.fail(name, f"must be a tensor, got {type(t).__name__}")
        if t.dtype != dtype:
            self.fail(name, f"must be {dtype}, got {t.dtype}")
        if t.device.type not in ("cpu", "meta"):
            self.fail(name, f"must be on the CPU, got {t.device}")
        names = dims.split()
        if t.dim() != len(names):
            self.fail(name, f"must have shape ({', '.join(names)}), got {tuple(t.shape)}")
        for dim, size in zip(names, t.shape, strict=True):
            if dim == "_":
                continue
            if dim in self.size and size != self.size[dim]:
                self.fail(name, f"has shape {tuple(t.shape)} = ({', '.join(names)}), but {dim} is "
                                f"{self.size[dim]} in {self.seen_in[dim]}")  # fmt: skip
            self.size.setdefault(dim, size)
            self.seen_in.setdefault(dim, name)
        return t

    def require(self, ok: bool, name: str, why: str) -> None:
        if not ok:
            self.fail(name, why)

    def requests(self, req: Tensor, n_valid: Tensor) -> None:
        """Values: every sample's request in [0, R) (else its output rows stay unwritten) and
        no negative valid count (it would size the padding loop)."""
        R = self.size["R"]
        self.require(not len(req) or (int(req.min()) >= 0 and int(req.max()) < R), "req",
                     f"holds a request outside [0, {R})")  # fmt: skip
        self.require(not len(n_valid) or int(n_valid.min()) >= 0, "n_valid",
                     "holds a negative count")  # fmt: skip


def _kernel(name: str) -> Kernel:
    """The library of an op that was called: ``TWIN_STUDY_NATIVE=0`` steers the public
    functions to the torch path, but does not stop an op called directly (or the backward of
    a forward that ran before the switch)."""
    lib = load(name, force=True)
    if lib is None:
        raise RuntimeError(f"the native {name} kernel is unavailable (no compiler, or its "
                           "build failed)")  # fmt: skip
    return lib


def _grouped(req: Tensor, R: int) -> tuple[Tensor, Tensor]:
    """The samples grouped by request: order (B,) and counts (R,), as the kernels walk them."""
    return torch.argsort(req, stable=True), torch.bincount(req, minlength=R)


def _raise_rc(op: str, rc: int, what: dict[int, str]) -> None:
    if rc != 0:
        raise IndexError(f"twin_study::{op}: " + what.get(rc, f"kernel error {rc}"))


# ---------------------------------------------------------------------------- GSU selection


def _check_select(op: str, hist_item: Tensor, n_valid: Tensor, req: Tensor, k: int) -> Args:
    a = Args(op)
    a.tensor("hist_item", hist_item, torch.int64, "R L")
    a.tensor("n_valid", n_valid, torch.int64, "R")
    a.tensor("req", req, torch.int64, "B")
    a.require(k >= 1, "k", f"must be >= 1, got {k}")
    return a


def _check_gsu_select(table, hist_item, n_valid, query, req, bias_table, bias_codes,  # noqa: ANN001
                      bias_strides, k) -> Args:  # fmt: skip
    a = _check_select("gsu_select", hist_item, n_valid, req, k)
    a.tensor("table", table, torch.float32, "V heads d")
    a.tensor("query", query, torch.float32, "B heads d")
    bias = (bias_table, bias_codes, bias_strides)
    a.require(all(t is None for t in bias) or all(t is not None for t in bias), "bias_table",
              "must come with bias_codes and bias_strides: all three or none")  # fmt: skip
    if bias_table is not None:
        a.tensor("bias_table", bias_table, torch.float32, "heads n_codes")
        a.tensor("bias_codes", bias_codes, torch.int64, "R L J")
        a.tensor("bias_strides", bias_strides, torch.int64, "J")
        a.require(a.size["n_codes"] >= 1, "bias_table", "has no columns")
    return a


def _select_outputs(ref: Tensor, B: int, heads: int, k: int) -> tuple[Tensor, Tensor]:
    return (ref.new_empty(B, heads, k, dtype=torch.int64),
            ref.new_empty(B, heads, k, dtype=torch.float32))  # fmt: skip


@torch.library.custom_op("twin_study::gsu_select", mutates_args=())
def gsu_select(
    table: Tensor, hist_item: Tensor, n_valid: Tensor, query: Tensor, req: Tensor,
    bias_table: Tensor | None, bias_codes: Tensor | None, bias_strides: Tensor | None,
    tiebreak: float, k: int,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Per-head top-k slots of table-keyed scores (``native.select_by_table``): table
    (V, heads, d), hist_item (R, L), n_valid (R,), query (B, heads, d), req (B,), optional bias
    (heads, n_codes) with codes (R, L, J) and strides (J,) -> slots and scores (B, heads,
    min(k, L)), best first; padding slots n..k'-1 at -inf for a request with n < k' valid."""
    a = _check_gsu_select(table, hist_item, n_valid, query, req, bias_table, bias_codes,
                          bias_strides, k)  # fmt: skip
    a.requests(req, n_valid)
    (V, heads, d), (R, L), B = table.shape, hist_item.shape, len(req)
    kk = min(k, L)
    out_idx, out_val = _select_outputs(table, B, heads, kk)
    if B == 0 or kk == 0:
        return out_idx, out_val
    order, counts = _grouped(req, R)
    has_bias = bias_table is not None
    rc = _kernel("gsu").call(
        "gsu_select", table=table.contiguous(), V=V, heads=heads, d=d,
        hist_item=hist_item.contiguous(), R=R, L=L, n_valid=n_valid.contiguous(),
        query=query.contiguous(), order=order, counts=counts,
        bias=bias_table.contiguous() if has_bias else None,
        n_codes=bias_table.shape[1] if has_bias else 0,
        codes=bias_codes.contiguous() if has_bias else None,
        J=bias_codes.shape[2] if has_bias else 0,
        strides=bias_strides.contiguous() if has_bias else None,
        tiebreak=float(tiebreak), k=kk, out_idx=out_idx, out_val=out_val,
    )  # fmt: skip
    _raise_rc(
        "gsu_select",
        rc,
        {
            -1: f"an item id in hist_item is outside the table's {V} rows",
            -2: "a cross-feature code is outside bias_table's columns",
        },
    )
    return out_idx, out_val


@gsu_select.register_fake
def _(table, hist_item, n_valid, query, req, bias_table, bias_codes, bias_strides, tiebreak, k):  # noqa: ANN001, ANN202
    a = _check_gsu_select(table, hist_item, n_valid, query, req, bias_table, bias_codes,
                          bias_strides, k)  # fmt: skip
    return _select_outputs(table, a.size["B"], a.size["heads"], min(k, a.size["L"]))


def _check_gsu_select_codes(codes, hist_item, n_valid, query, req, k) -> Args:  # noqa: ANN001
    a = _check_select("gsu_select_codes", hist_item, n_valid, req, k)
    a.tensor("codes", codes, torch.uint8, "V G")
    a.tensor("query", query, torch.uint8, "B G")
    return a


def _pad_codes(codes: Tensor, pad: int) -> Tensor:
    """(N, G) bucket bytes -> (N, G16), G16 = G rounded up to whole 16-byte vectors."""
    G = codes.shape[1]
    out = torch.full((len(codes), -(-G // 16) * 16), pad, dtype=torch.uint8)
    out[:, :G] = codes
    return out


@torch.library.custom_op("twin_study::gsu_select_codes", mutates_args=())
def gsu_select_codes(
    codes: Tensor, hist_item: Tensor, n_valid: Tensor, query: Tensor, req: Tensor,
    tiebreak: float, k: int,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """SDIM's selection (``native.select_by_codes``): codes (V, G) and query (B, G) uint8
    bucket ids below 254, the rest as ``gsu_select`` -> (B, 1, min(k, L)) slots and scores."""
    a = _check_gsu_select_codes(codes, hist_item, n_valid, query, req, k)
    a.requests(req, n_valid)
    for name, t in (("codes", codes), ("query", query)):
        a.require(not t.numel() or int(t.max()) < CODE_PAD_QUERY, name,
                  f"holds a bucket id >= {CODE_PAD_QUERY} (reserved for padding)")  # fmt: skip
    (V, _), (R, L), B = codes.shape, hist_item.shape, len(req)
    kk = min(k, L)
    out_idx, out_val = _select_outputs(hist_item, B, 1, kk)
    if B == 0 or kk == 0:
        return out_idx, out_val
    table, q = _pad_codes(codes, CODE_PAD_TABLE), _pad_codes(query, CODE_PAD_QUERY)
    order, counts = _grouped(req, R)
    rc = _kernel("gsu").call(
        "gsu_select_codes", codes=table, V=V, G16=table.shape[1],
        hist_item=hist_item.contiguous(), R=R, L=L, n_valid=n_valid.contiguous(), query=q,
        order=order, counts=counts, tiebreak=float(tiebreak), k=kk, out_idx=out_idx,
        out_val=out_val,
    )  # fmt: skip
    _raise_rc("gsu_select_codes", rc, {-1: f"an item id in hist_item is outside codes' {V} rows"})
    return out_idx, out_val


@gsu_select_codes.register_fake
def _(codes, hist_item, n_valid, query, req, tiebreak, k):  # noqa: ANN001, ANN202
    a = _check_gsu_select_codes(codes, hist_item, n_valid, query, req, k)
    return _select_outputs(hist_item, a.size["B"], 1, min(k, a.size["L"]))


def _check_merge_heads(top: Tensor, length: int) -> Args:
    a = Args("merge_heads")
    a.tensor("top", top, torch.int64, "B heads k")
    a.require(length >= 1, "length", f"must be >= 1, got {length}")
    return a


@torch.library.custom_op("twin_study::merge_heads", mutates_args=())
def merge_heads(top: Tensor, length: int) -> Tensor:
    """``topk.merge_heads``: top (B, heads, k) slots in [0, length), each head's list
    duplicate-free -> (B, k) unique slots, rank-major over the heads."""
    _check_merge_heads(top, length)
    B, heads, k = top.shape
    out = top.new_empty(B, k)
    rc = _kernel("gsu").call("merge_heads", top=top.contiguous(), B=B, heads=heads, k=k,
                             L=length, out=out)  # fmt: skip
    if rc == -2:
        raise ValueError("twin_study::merge_heads: top repeats a slot within a head's list")
    _raise_rc("merge_heads", rc, {-1: f"top holds a slot outside [0, {length})"})
    return out


@merge_heads.register_fake
def _(top, length):  # noqa: ANN001, ANN202
    _check_merge_heads(top, length)
    return top.new_empty(top.shape[0], top.shape[2])


# ------------------------------------------------------------------------------------ ESU


def _check_esu(op: str, K: Tensor, q: Tensor, more: dict[str, tuple]) -> Args:
    """K (B, n, Hv) and q (B, heads, width <= Hv), then ``more``: name -> (tensor, dtype,
    dims)."""
    a = Args(op)
    a.tensor("K", K, torch.float32, "B n Hv")
    a.tensor("q", q, torch.float32, "B heads width")
    a.require(
        a.size["width"] <= a.size["Hv"],
        "q",
        f"has width {a.size['width']} > Hv = {a.size['Hv']} (keys are K's first columns)",
    )
    for name, (t, dtype, dims) in more.items():
        a.tensor(name, t, dtype, dims)
    return a


def _check_esu_attend(K, q, bias, valid) -> Args:  # noqa: ANN001
    more = {"bias": (bias, torch.float32, "B n heads"), "valid": (valid, torch.bool, "B n")}
    return _check_esu("esu_attend", K, q, more)


def _check_esu_backward(K, q, w, d_pooled) -> Args:  # noqa: ANN001
    more = {
        "w": (w, torch.float32, "B n heads"),
        "d_pooled": (d_pooled, torch.float32, "B heads Hv"),
    }
    return _check_esu("esu_attend_backward", K, q, more)


def _rows(K: Tensor) -> tuple[Tensor, int]:
    """K itself when its rows are evenly spaced with dense columns (a column slice of a wider
    tensor is), so that the kernel can step through them by one row stride; else a copy. And
    that row stride."""
    B, n, Hv = K.shape
    if K.numel() == 0:
        return K, Hv
    even = K.stride(2) == 1 and K.stride(1) >= Hv and K.stride(0) == n * K.stride(1)
    K = K if even else K.contiguous()
    return K, K.stride(1)


@torch.library.custom_op("twin_study::esu_attend", mutates_args=())
def esu_attend(K: Tensor, q: Tensor, bias: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """``attention._PooledAttention``'s forward: K (B, n, Hv), q (B, heads, width <= Hv),
    bias (B, n, heads), valid (B, n) bool -> pooled (B, heads, Hv) and weights (B, n, heads)."""
    _check_esu_attend(K, q, bias, valid)
    (B, n, Hv), (heads, width) = K.shape, q.shape[1:]
    pooled, w = K.new_empty(B, heads, Hv), K.new_empty(B, n, heads)
    K, ldk = _rows(K)
    _kernel("esu").call(
        "esu_forward", K=K, B=B, n=n, ldk=ldk, Hv=Hv, width=width,
        q=q.contiguous(), heads=heads, bias=bias.contiguous(),
        valid=valid.contiguous().view(torch.uint8), w=w, pooled=pooled,
    )  # fmt: skip
    return pooled, w


@esu_attend.register_fake
def _(K, q, bias, valid):  # noqa: ANN001, ANN202
    _check_esu_attend(K, q, bias, valid)
    (B, n, Hv), heads = K.shape, q.shape[1]
    return K.new_empty(B, heads, Hv), K.new_empty(B, n, heads)


@torch.library.custom_op("twin_study::esu_attend_backward", mutates_args=())
def esu_attend_backward(
    K: Tensor, q: Tensor, w: Tensor, d_pooled: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of ``esu_attend`` from d_pooled (B, heads, Hv) and its weights w:
    d_K (B, n, Hv), d_q (B, heads, width), d_bias (B, n, heads)."""
    _check_esu_backward(K, q, w, d_pooled)
    (B, n, Hv), (heads, width) = K.shape, q.shape[1:]
    d_K, d_q = K.new_empty(B, n, Hv), q.new_empty(B, heads, width)
    d_alpha = w.new_empty(B, n, heads)
    K, ldk = _rows(K)
    _kernel("esu").call(
        "esu_backward", K=K, B=B, n=n, ldk=ldk, Hv=Hv, width=width,
        q=q.contiguous(), heads=heads, w=w.contiguous(), d_pooled=d_pooled.contiguous(),
        d_K=d_K, d_q=d_q, d_alpha=d_alpha,
    )  # fmt: skip
    return d_K, d_q, d_alpha


@esu_attend_backward.register_fake
def _(K, q, w, d_pooled):  # noqa: ANN001, ANN202
    _check_esu_backward(K, q, w, d_pooled)
    return K.new_empty(K.shape), q.new_empty(q.shape), w.new_empty(w.shape)


def _esu_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    K, q, _, _ = inputs
    ctx.save_for_backward(K, q, output[1])
    ctx.mark_non_differentiable(output[1])  # the weights are reported, not trained through


def _esu_backward(ctx, d_pooled, _d_w):  # noqa: ANN001, ANN202
    K, q, w = ctx.saved_tensors
    d_K, d_q, d_bias = esu_attend_backward(K, q, w, d_pooled)
    return d_K, d_q, d_bias, None


esu_attend.register_autograd(_esu_backward, setup_context=_esu_setup)


# ------------------------------------------------------------------- concatenated lookup


def _check_rows(op: str, tables: list[Tensor], indices: list[Tensor], what: str) -> Args:
    a = Args(op)
    a.require(len(tables) >= 1, what, "must hold at least one table")
    a.require(len(indices) == len(tables), "indices",
              f"must hold one index per table: {len(tables)}, got {len(indices)}")  # fmt: skip
    for p, (t, i) in enumerate(zip(tables, indices, strict=True)):
        a.tensor(f"{what}[{p}]", t, torch.float32, "_ _")
        a.tensor(f"indices[{p}]", i, torch.int64, "N")
    return a


@torch.library.custom_op("twin_study::rows_gather", mutates_args=())
def rows_gather(tables: list[Tensor], indices: list[Tensor]) -> Tensor:
    """``torch.cat([t.index_select(0, i) for t, i in zip(tables, indices)], 1)`` in one pass:
    tables (V_p, w_p) float32, indices (N,) int64 (strided is fine) -> (N, sum w_p)."""
    a = _check_rows("rows_gather", tables, indices, "tables")
    tables = [t.contiguous() for t in tables]
    out = tables[0].new_empty(a.size["N"], sum(t.shape[1] for t in tables))
    rc = _kernel("rows").call(
        "rows_gather", N=a.size["N"], P=len(tables), tabs=tables, V=_sizes(tables, 0),
        widths=_sizes(tables, 1), idx=indices, istride=_strides(indices), out=out,
    )  # fmt: skip
    _raise_index(rc, tables)
    return out


def _sizes(tables: list[Tensor], dim: int) -> list[int]:
    return [t.shape[dim] for t in tables]


def _strides(indices: list[Tensor]) -> list[int]:
    return [i.stride(0) for i in indices]


def _raise_index(rc: int, tables: list[Tensor]) -> None:
    if rc < 0:
        p = -rc - 1
        raise IndexError(f"embedding lookup: an index of feature table {p} is outside its "
                         f"{tables[p].shape[0]} rows")  # fmt: skip


@rows_gather.register_fake
def _(tables, indices):  # noqa: ANN001, ANN202
    a = _check_rows("rows_gather", tables, indices, "tables")
    return tables[0].new_empty(a.size["N"], sum(t.shape[1] for t in tables))


@torch.library.custom_op("twin_study::rows_scatter_add", mutates_args=("grads",))
def rows_scatter_add(grads: list[Tensor], indices: list[Tensor], d_out: Tensor) -> None:
    """The backward of ``rows_gather``, in place: grads[p] (V_p, w_p) contiguous float32 +=
    d_out's column block p (N, w_p) at the rows indices[p]."""
    a = _check_rows("rows_scatter_add", grads, indices, "grads")
    for p, g in enumerate(grads):
        a.require(g.is_contiguous(), f"grads[{p}]", "must be contiguous (it is added to)")
    W = sum(g.shape[1] for g in grads)
    a.tensor("d_out", d_out, torch.float32, "N W")
    a.require(a.size["W"] == W, "d_out", f"must have sum of the grads' widths = {W} columns")
    if d_out.stride(-1) != 1 or (len(d_out) > 1 and d_out.stride(0) < W):
        d_out = d_out.contiguous()
    rc = _kernel("rows").call(
        "rows_scatter_add", N=a.size["N"], P=len(grads), grads=grads, V=_sizes(grads, 0),
        widths=_sizes(grads, 1), idx=indices, istride=_strides(indices), d_out=d_out,
        ldo=d_out.stride(0) if len(d_out) > 1 else W,
    )  # fmt: skip
    _raise_index(rc, grads)


@rows_scatter_add.register_fake
def _(grads, indices, d_out):  # noqa: ANN001, ANN202
    _check_rows("rows_scatter_add", grads, indices, "grads")


def _rows_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    tables, indices = inputs
    ctx.save_for_backward(*indices)
    ctx.shapes = [t.shape for t in tables]


def _rows_backward(ctx, d_out):  # noqa: ANN001, ANN202
    indices = list(ctx.saved_tensors)
    grads = [d_out.new_zeros(s) for s in ctx.shapes]
    rows_scatter_add(grads, indices, d_out)
    return grads, [None] * len(indices)


rows_gather.register_autograd(_rows_backward, setup_context=_rows_setup)


# ------------------------------------------------------------------------------ SDIM pool


def _check_sdim(op: str, codes, hist_item, n_valid, target, req, nb) -> Args:  # noqa: ANN001
    a = Args(op)
    a.tensor("codes", codes, torch.int64, "V G")
    a.tensor("hist_item", hist_item, torch.int64, "R L")
    a.tensor("n_valid", n_valid, torch.int64, "R")
    a.tensor("target", target, torch.int64, "B")
    a.tensor("req", req, torch.int64, "B")
    a.require(nb >= 1, "nb", f"must be >= 1, got {nb}")
    return a


def _sdim_args(codes, hist_item, n_valid, target, req, nb, R) -> dict:  # noqa: ANN001
    """What both passes of the SDIM kernel read besides the features, by C name."""
    order, counts = _grouped(req, R)
    return dict(codes=codes.contiguous(), G=codes.shape[1], nb=nb,
                hist_item=hist_item.contiguous(), R=R, L=hist_item.shape[1],
                n_valid=n_valid.contiguous(), target=target.contiguous(), B=len(target),
                order=order, counts=counts)  # fmt: skip


_SDIM_ERRORS = {-1: "an item id outside the {V} items or a bucket id outside [0, {nb})"}


@torch.library.custom_op("twin_study::sdim_pool", mutates_args=())
def sdim_pool(Kall: Tensor, codes: Tensor, hist_item: Tensor, n_valid: Tensor, target: Tensor,
              req: Tensor, nb: int) -> Tensor:  # fmt: skip
    """SDIM's bucket sums (``ctr.SdimLinear``): Kall (V, H) features of every item, codes
    (V, G) bucket ids in [0, nb), histories (R, L) with n_valid (R,), targets (B,) and their
    requests (B,) -> v (B, G, H), per sample and group the sum of the rows of the request's
    valid behaviours whose bucket equals the target's."""
    a = _check_sdim_pool(Kall, codes, hist_item, n_valid, target, req, nb)
    a.requests(req, n_valid)
    (V, H), B, G = Kall.shape, len(target), codes.shape[1]
    v = Kall.new_empty(B, G, H)
    rest = _sdim_args(codes, hist_item, n_valid, target, req, nb, a.size["R"])
    rc = _kernel("sdim").call("sdim_pool_forward", Kall=Kall.contiguous(), V=V, H=H, v=v, **rest)
    _raise_rc("sdim_pool", rc, {-1: _SDIM_ERRORS[-1].format(V=V, nb=nb)})
    return v


def _check_sdim_pool(Kall, codes, hist_item, n_valid, target, req, nb) -> Args:  # noqa: ANN001
    a = _check_sdim("sdim_pool", codes, hist_item, n_valid, target, req, nb)
    a.tensor("Kall", Kall, torch.float32, "V H")
    return a


@sdim_pool.register_fake
def _(Kall, codes, hist_item, n_valid, target, req, nb):  # noqa: ANN001, ANN202
    _check_sdim_pool(Kall, codes, hist_item, n_valid, target, req, nb)
    return Kall.new_empty(len(target), codes.shape[1], Kall.shape[1])


def _check_sdim_backward(d_v, codes, hist_item, n_valid, target, req, nb) -> Args:  # noqa: ANN001
    a = _check_sdim("sdim_pool_backward", codes, hist_item, n_valid, target, req, nb)
    a.tensor("d_v", d_v, torch.float32, "B G H")
    return a


@torch.library.custom_op("twin_study::sdim_pool_backward", mutates_args=())
def sdim_pool_backward(d_v: Tensor, codes: Tensor, hist_item: Tensor, n_valid: Tensor,
                       target: Tensor, req: Tensor, nb: int) -> Tensor:  # fmt: skip
    """The gradient of ``sdim_pool`` with respect to Kall, (V, H), from d_v (B, G, H)."""
    a = _check_sdim_backward(d_v, codes, hist_item, n_valid, target, req, nb)
    a.requests(req, n_valid)
    V, H = codes.shape[0], d_v.shape[2]
    d_Kall = d_v.new_zeros(V, H)
    rest = _sdim_args(codes, hist_item, n_valid, target, req, nb, a.size["R"])
    rc = _kernel("sdim").call("sdim_pool_backward", d_Kall=d_Kall, V=V, H=H,
                              d_v=d_v.contiguous(), **rest)  # fmt: skip
    _raise_rc("sdim_pool_backward", rc, {-1: _SDIM_ERRORS[-1].format(V=V, nb=nb)})
    return d_Kall


@sdim_pool_backward.register_fake
def _(d_v, codes, hist_item, n_valid, target, req, nb):  # noqa: ANN001, ANN202
    _check_sdim_backward(d_v, codes, hist_item, n_valid, target, req, nb)
    return d_v.new_empty(codes.shape[0], d_v.shape[2])


def _sdim_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs[1:6])
    ctx.nb = inputs[6]


def _sdim_backward(ctx, d_v):  # noqa: ANN001, ANN202
    d_Kall = sdim_pool_backward(d_v, *ctx.saved_tensors, ctx.nb)
    return d_Kall, None, None, None, None, None, None


sdim_pool.register_autograd(_sdim_backward, setup_context=_sdim_setup)
