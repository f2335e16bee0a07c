"""The native kernels (``gsu_select.cpp``, ``esu_attend.cpp``, ``embed_rows.cpp``,
``sdim_pool.cpp``), compiled on first use.

``select_by_table`` is ``topk.select_per_request`` over ``gsu.table_rows`` scores -- the
selection of TWIN's CP-GSU, SIM Soft, ETA and SDIM -- in one C++ pass per batch: each
behaviour's key row is read once for all candidates and heads of its request, scores are never
written out, and every (candidate, head) row keeps its k best in a heap. The torch path stays
the definition (and the fallback); tests/test_native.py checks that both select the same
behaviours. ``esu_forward`` / ``esu_backward`` are the ESU's attention pooling
(``attention._PooledAttention``); ``rows_gather`` / ``rows_scatter_add`` the concatenated
embedding lookup of K = [K_h, K_c] (``embedding.concat_lookup``); ``sdim_pool_forward`` /
``_backward`` SDIM's original aggregation (``ctr.SdimLinear``).

The kernel is compiled with the machine's C++ compiler (``$CXX``, else ``g++``, ``-O3
-march=native``) into the cache folder, keyed by the source, the flags and the CPU, so a
machine never loads a library built for another. No compiler, a failed build or
``TWIN_STUDY_NATIVE=0`` leave the torch path in use (a build failure warns once).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from ..paths import cache_dir

NATIVE_ENV = "TWIN_STUDY_NATIVE"  # "0" turns the kernels off
HERE = Path(__file__).parent
SOURCES = {
    "gsu": HERE / "gsu_select.cpp",
    "esu": HERE / "esu_attend.cpp",
    "rows": HERE / "embed_rows.cpp",
    "sdim": HERE / "sdim_pool.cpp",
}
HEADER = HERE / "common.h"  # included by every kernel: part of each library's key
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c++17"]

_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL | None] = {}  # kernel -> library (None: tried, unavailable)

_I64, _F32 = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_float)
_U8, _N = ctypes.POINTER(ctypes.c_uint8), ctypes.c_int64
_PP = ctypes.POINTER(ctypes.c_void_p)  # an array of pointers
_SIGNATURES = {
    "gsu": {
        "gsu_select": [
            _F32, _N, _N, _N,  # table, V, heads, d
            _I64, _N, _N, _I64,  # hist_item, R, L, n_valid
            _F32, _I64, _I64,  # query, order, counts
            _F32, _N, _I64, _N, _I64,  # bias, n_codes, codes, J, strides
            ctypes.c_float, _N, _I64, _F32,  # tiebreak, k, out_idx, out_val
        ],
        "gsu_select_codes": [
            _U8, _N, _N, _I64, _N, _N, _I64,  # codes, V, G16, hist_item, R, L, n_valid
            _U8, _I64, _I64, ctypes.c_float, _N, _I64, _F32,  # query .. out_val
        ],
        "merge_heads": [_I64, _N, _N, _N, _N, _I64],  # top, B, heads, k, L, out
    },
    "esu": {
        "esu_forward": [_F32, _N, _N, _N, _N, _N, _F32, _N, _F32, _U8, _F32, _F32],
        "esu_backward": [_F32, _N, _N, _N, _N, _N, _F32, _N, _F32, _F32, _F32, _F32, _F32],
    },
    "sdim": {
        "sdim_pool_forward": [
            _F32, _N, _N, _I64, _N, _N,  # Kall, V, H, codes, G, nb
            _I64, _N, _N, _I64, _I64, _N, _I64, _I64, _F32,  # hist_item, R, L, n_valid .. v
        ],
        "sdim_pool_backward": [
            _F32, _N, _I64, _N, _N,  # d_Kall, H, codes, G, nb
            _I64, _N, _N, _I64, _I64, _I64, _I64, _F32,  # hist_item, R, L, n_valid .. d_v
        ],
    },
    "rows": {
        "rows_gather": [_N, _N, _PP, _I64, _I64, _PP, _I64, _F32],
        "rows_scatter_add": [_N, _N, _PP, _I64, _PP, _I64, _F32, _N],
    },
}  # fmt: skip
_RESTYPES = {
    name: ctypes.c_int
    for name in ("gsu_select", "gsu_select_codes", "merge_heads", "rows_gather",
                 "sdim_pool_forward")
}


def enabled() -> bool:
    return os.environ.get(NATIVE_ENV, "1") != "0"


def _cpu_id() -> str:
    """What -march=native depends on: the CPU model and its flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def library_path(name: str = "gsu") -> Path:
    source = SOURCES[name]
    key = hashlib.sha1(
        source.read_bytes() + HEADER.read_bytes() + " ".join(FLAGS).encode() + _cpu_id().encode()
    ).hexdigest()[:16]
    return cache_dir() / "native" / f"{source.stem}_{key}.so"


def build(path: Path, source: Path) -> None:
    """Compile ``source`` into ``path`` (atomically: a temp file renamed into place)."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set $CXX or install g++)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, "-o", tmp, str(source)], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(name: str = "gsu") -> ctypes.CDLL | None:
    """The compiled kernel ``name`` (a key of ``SOURCES``), building it if needed; None when
    unavailable (the caller takes the torch path)."""
    if not enabled():
        return None
    with _lock:
        if name not in _libs:
            _libs[name] = None
            try:
                path = library_path(name)
                if not path.exists():
                    build(path, SOURCES[name])
                lib = ctypes.CDLL(str(path))
                for fn, argtypes in _SIGNATURES[name].items():
                    getattr(lib, fn).argtypes = argtypes
                    getattr(lib, fn).restype = _RESTYPES.get(fn)
                _libs[name] = lib
            except Exception as err:  # noqa: BLE001 -- any failure means: use torch
                warnings.warn(f"native {name} kernel unavailable, using the torch path: {err}",
                              stacklevel=2)  # fmt: skip
        return _libs[name]


def _ptr(t: torch.Tensor | None, kind):  # noqa: ANN001, ANN202
    return ctypes.cast(t.data_ptr(), kind) if t is not None else None


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
    ``select_per_request`` leaves them."""
    tensors = [table, hist_item, n_valid, query, req] + (list(bias) if bias else [])
    lib = _gsu_lib(tensors)
    if lib is None:
        return None
    V, heads, d = table.shape
    table = table.detach().float().contiguous()
    query = query.detach().float().contiguous()
    b_table = codes = strides = None
    n_codes = J = 0
    if bias is not None:
        b_table = bias[0].detach().float().contiguous()
        codes, strides = bias[1].long().contiguous(), bias[2].long().contiguous()
        n_codes, J = b_table.shape[1], codes.shape[-1]

    def call(hist_item, R, L, n_valid, order, counts, k, out_idx, out_val):  # noqa: ANN001, ANN202
        return lib.gsu_select(
            _ptr(table, _F32), V, heads, d,
            _ptr(hist_item, _I64), R, L, _ptr(n_valid, _I64),
            _ptr(query, _F32), _ptr(order, _I64), _ptr(counts, _I64),
            _ptr(b_table, _F32), n_codes, _ptr(codes, _I64), J, _ptr(strides, _I64),
            float(tiebreak), k, _ptr(out_idx, _I64), _ptr(out_val, _F32),
        )  # fmt: skip

    out_idx, out_val, rc = _run_select(call, hist_item, n_valid, req, k, heads)
    if rc == -2:
        raise IndexError(f"GSU kernel: a cross-feature code is outside the bias table of {n_codes}")
    _raise_bad_item(rc, V)
    return out_idx, out_val


# Bucket ids of select_by_codes are bytes; the padding of the table and of the queries are two
# values no id takes, so padded groups never collide.
_CODE_PAD_TABLE, _CODE_PAD_QUERY = 255, 254


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
    lib = _gsu_lib([codes, hist_item, n_valid, query, req])
    if lib is None or (codes.numel() and int(codes.max()) >= _CODE_PAD_QUERY):
        return None
    V, G = codes.shape
    G16 = -(-G // 16) * 16  # whole 16-byte vectors
    table = torch.full((V, G16), _CODE_PAD_TABLE, dtype=torch.uint8)
    table[:, :G] = codes
    q = torch.full((len(query), G16), _CODE_PAD_QUERY, dtype=torch.uint8)
    q[:, :G] = query

    def call(hist_item, R, L, n_valid, order, counts, k, out_idx, out_val):  # noqa: ANN001, ANN202
        return lib.gsu_select_codes(
            _ptr(table, _U8), V, G16, _ptr(hist_item, _I64), R, L, _ptr(n_valid, _I64),
            _ptr(q, _U8), _ptr(order, _I64), _ptr(counts, _I64), float(tiebreak), k,
            _ptr(out_idx, _I64), _ptr(out_val, _F32),
        )  # fmt: skip

    out_idx, out_val, rc = _run_select(call, hist_item, n_valid, req, k, 1)
    _raise_bad_item(rc, V)
    return out_idx, out_val


def _gsu_lib(tensors: list[torch.Tensor]) -> ctypes.CDLL | None:
    if any(t.device.type != "cpu" for t in tensors):
        return None
    return load("gsu")


def _run_select(call, hist_item, n_valid, req, k, heads):  # noqa: ANN001, ANN202
    """What the selection kernels share: the samples grouped by request, the outputs
    (B, heads, min(k, L)), and the kernel's return code."""
    R, L = hist_item.shape
    k = min(k, L)
    hist_item = hist_item.long().contiguous()
    n_valid = n_valid.long().contiguous()
    order = torch.argsort(req, stable=True)  # the samples of each request, contiguous
    counts = torch.bincount(req, minlength=R).long()
    out_idx = torch.empty(len(req), heads, k, dtype=torch.long)
    out_val = torch.empty(len(req), heads, k, dtype=torch.float32)
    rc = call(hist_item, R, L, n_valid, order, counts, k, out_idx, out_val)
    return out_idx, out_val, rc


def _raise_bad_item(rc: int, V: int) -> None:
    if rc == -1:
        raise IndexError(f"GSU kernel: an item id in the history is outside the table of {V}")


def _esu_lib(K: torch.Tensor, *others: torch.Tensor) -> ctypes.CDLL | None:
    """The ESU kernel when it can run on these tensors: float32 on the CPU, K's rows
    contiguous and evenly spaced (a column slice is fine); else None."""
    rows_ok = K.stride(-1) == 1 and K.stride(0) == K.shape[1] * K.stride(1)
    cpu = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (K, *others))
    return load("esu") if rows_ok and cpu else None


def esu_forward(
    K: torch.Tensor, q: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``attention._PooledAttention``'s forward: K (B, n, Hv) (its rows may be longer: a
    column slice), q (B, heads, width <= Hv), bias (B, n, heads), valid (B, n) -> weights
    (B, n, heads) and pooled (B, heads, Hv); None when the kernel cannot run."""
    lib = _esu_lib(K, q, bias)
    if lib is None:
        return None
    B, n, Hv = K.shape
    heads, width = q.shape[1:]
    q, bias = q.contiguous(), bias.contiguous()
    valid = valid.to(torch.uint8).contiguous()
    w = torch.empty(B, n, heads)
    pooled = torch.empty(B, heads, Hv)
    lib.esu_forward(
        _ptr(K, _F32), B, n, K.stride(1), Hv, width, _ptr(q, _F32), heads,
        _ptr(bias, _F32), _ptr(valid, _U8), _ptr(w, _F32), _ptr(pooled, _F32),
    )  # fmt: skip
    return w, pooled


def esu_backward(
    K: torch.Tensor, q: torch.Tensor, w: torch.Tensor, d_pooled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The gradients of ``esu_forward``: d_K (B, n, Hv), d_q (B, heads, width) and d_alpha
    (B, n, heads), the bias's; None when the kernel cannot run."""
    lib = _esu_lib(K, q, w, d_pooled)
    if lib is None:
        return None
    B, n, Hv = K.shape
    heads, width = q.shape[1:]
    q, w, d_pooled = q.contiguous(), w.contiguous(), d_pooled.contiguous()
    d_K = torch.empty(B, n, Hv)
    d_q = torch.empty(B, heads, width)
    d_alpha = torch.empty(B, n, heads)
    lib.esu_backward(_ptr(K, _F32), B, n, K.stride(1), Hv, width, _ptr(q, _F32), heads,
                     _ptr(w, _F32), _ptr(d_pooled, _F32), _ptr(d_K, _F32), _ptr(d_q, _F32),
                     _ptr(d_alpha, _F32))  # fmt: skip
    return d_K, d_q, d_alpha


def _pointers(tensors: list[torch.Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


def _index_columns(indices: list[torch.Tensor]) -> tuple[ctypes.Array, torch.Tensor]:
    """Each index (N,) int64 with a stride (a column of a (N, J) code matrix is fine)."""
    strides = torch.tensor([t.stride(0) for t in indices], dtype=torch.long)
    return _pointers(indices), strides


def rows_gather(tables: list[torch.Tensor], indices: list[torch.Tensor]) -> torch.Tensor | None:
    """``torch.cat([t.index_select(0, i) for t, i in zip(tables, indices)], dim=1)`` in one
    pass: tables (V_p, w_p), indices (N,) int64 (strided is fine) -> (N, sum w_p); None when
    the kernel cannot run. An index outside its table raises IndexError."""
    if not tables or any(
        t.device.type != "cpu" or t.dtype != torch.float32 for t in tables
    ) or any(i.device.type != "cpu" or i.dtype != torch.long or i.dim() != 1 for i in indices):
        return None
    lib = load("rows")
    if lib is None:
        return None
    N = len(indices[0])
    if len(tables) != len(indices) or any(len(i) != N for i in indices):
        raise ValueError(
            f"rows_gather: one index of the same length per table, got {len(tables)} tables and "
            f"index lengths {[len(i) for i in indices]}"
        )
    tables = [t.detach().contiguous() for t in tables]
    V = torch.tensor([t.shape[0] for t in tables], dtype=torch.long)
    widths = torch.tensor([t.shape[1] for t in tables], dtype=torch.long)
    idx_ptrs, strides = _index_columns(indices)
    out = torch.empty(N, int(widths.sum()))
    rc = lib.rows_gather(
        N, len(tables), ctypes.cast(_pointers(tables), _PP), _ptr(V, _I64), _ptr(widths, _I64),
        ctypes.cast(idx_ptrs, _PP), _ptr(strides, _I64), _ptr(out, _F32),
    )  # fmt: skip
    if rc < 0:
        p = -rc - 1
        raise IndexError(
            f"embedding lookup: an index of feature table {p} is outside its {tables[p].shape[0]}"
            " rows"
        )
    return out


def rows_scatter_add(
    grads: list[torch.Tensor], indices: list[torch.Tensor], d_out: torch.Tensor
) -> None:
    """The backward of ``rows_gather``: grads[p] (V_p, w_p), contiguous float32, += the rows
    of d_out's column block p at indices[p]. d_out (N, >= sum w_p) may be a column slice."""
    lib = load("rows")
    if d_out.stride(-1) != 1:
        d_out = d_out.contiguous()
    widths = torch.tensor([g.shape[1] for g in grads], dtype=torch.long)
    idx_ptrs, strides = _index_columns(indices)
    lib.rows_scatter_add(
        len(indices[0]), len(grads), ctypes.cast(_pointers(grads), _PP), _ptr(widths, _I64),
        ctypes.cast(idx_ptrs, _PP), _ptr(strides, _I64), _ptr(d_out, _F32), d_out.stride(0),
    )  # fmt: skip


class SdimPoolInput:
    """What ``sdim_pool_forward`` / ``_backward`` read besides the features: bucket ids codes
    (V, G) in [0, nb), the histories (R, L) with their valid prefixes n_valid (R,), the
    samples' targets (B,) and requests (B,); prepared once for both passes."""

    def __init__(self, codes, nb, hist_item, n_valid, target, req):  # noqa: ANN001
        self.codes, self.nb = codes.long().contiguous(), int(nb)
        self.hist_item = hist_item.long().contiguous()
        self.n_valid, self.target = n_valid.long().contiguous(), target.long().contiguous()
        self.order = torch.argsort(req, stable=True)
        self.counts = torch.bincount(req, minlength=hist_item.shape[0]).long()

    def args(self) -> list:
        R, L = self.hist_item.shape
        return [_ptr(self.codes, _I64), self.codes.shape[1], self.nb, _ptr(self.hist_item, _I64),
                R, L, _ptr(self.n_valid, _I64), _ptr(self.target, _I64)]  # fmt: skip


def sdim_pool_lib(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The SDIM aggregation kernel when it can run on these tensors (CPU), else None."""
    if any(t.device.type != "cpu" for t in tensors):
        return None
    return load("sdim")


def sdim_pool_forward(lib: ctypes.CDLL, Kall: torch.Tensor, inp: SdimPoolInput) -> torch.Tensor:
    """v (B, G, H): per sample and signature group, the sum of Kall's rows (V, H) over the
    request's valid behaviours whose bucket equals the target's. Raises IndexError for an
    item or bucket id out of range."""
    Kall = Kall.detach().float().contiguous()
    V, H = Kall.shape
    B, G = len(inp.target), inp.codes.shape[1]
    v = torch.empty(B, G, H)
    rc = lib.sdim_pool_forward(_ptr(Kall, _F32), V, H, *inp.args(), B, _ptr(inp.order, _I64),
                               _ptr(inp.counts, _I64), _ptr(v, _F32))  # fmt: skip
    if rc != 0:
        raise IndexError(
            f"SDIM kernel: an item id outside the {V} items or a bucket id outside [0, {inp.nb})"
        )
    return v


def sdim_pool_backward(
    lib: ctypes.CDLL, d_v: torch.Tensor, V: int, inp: SdimPoolInput
) -> torch.Tensor:
    """The gradient of ``sdim_pool_forward`` with respect to Kall: (V, H)."""
    d_v = d_v.float().contiguous()
    H = d_v.shape[-1]
    d_Kall = torch.zeros(V, H)
    lib.sdim_pool_backward(_ptr(d_Kall, _F32), H, *inp.args(), _ptr(inp.order, _I64),
                           _ptr(inp.counts, _I64), _ptr(d_v, _F32))  # fmt: skip
    return d_Kall


def merge_heads(top: torch.Tensor, length: int) -> torch.Tensor | None:
    """``topk.merge_heads(top, k)`` for slots in [0, length): top (B, heads, k) -> (B, k);
    None when the kernel cannot run."""
    if top.device.type != "cpu" or top.dtype != torch.long:
        return None
    lib = load("gsu")
    if lib is None:
        return None
    B, heads, k = top.shape
    top = top.contiguous()
    out = torch.empty(B, k, dtype=torch.long)
    if lib.merge_heads(_ptr(top, _I64), B, heads, k, length, _ptr(out, _I64)) != 0:
        raise IndexError(f"merge_heads: a slot outside [0, {length})")
    return out
