"""The native kernels' contracts as torch ops (``twin_study.models.native``):

* every op is a ``torch.library`` custom op that passes ``torch.library.opcheck`` (schema,
  fake kernel, autograd registration, AOT dispatch with dynamic shapes);
* a wrong shape, dtype or count for any argument raises ValueError naming the argument
  before a pointer is passed (these run without a compiler too), and an id outside its table
  raises IndexError without touching memory;
* the ctypes calls are generated from the C prototypes;
* the instruction-set level is fixed (never ``-march=native``), and the two x86-64 levels
  compute bit-identical results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from twin_study.models import native
from twin_study.models.native import library, ops
from twin_study.models.native.ffi import prototypes


@pytest.fixture(scope="module")
def kernels():
    """The ops need their libraries (built even with TWIN_STUDY_NATIVE=0: an op called
    directly runs its kernel)."""
    if any(library.load(name, force=True) is None for name in native.SOURCES):
        pytest.skip("no C++ compiler: the native kernels are not built here")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- small valid inputs


def gsu_select_args() -> dict:
    g = _gen()
    V, heads, d, R, L, B, J = 12, 2, 4, 3, 10, 5, 2
    return dict(
        table=torch.randn(V, heads, d, generator=g),
        hist_item=torch.randint(0, V, (R, L), generator=g),
        n_valid=torch.tensor([10, 3, 0]), query=torch.randn(B, heads, d, generator=g),
        req=torch.tensor([0, 1, 0, 2, 1]), bias_table=torch.randn(heads, 6, generator=g),
        bias_codes=torch.randint(0, 2, (R, L, J), generator=g), bias_strides=torch.tensor([3, 1]),
        tiebreak=0.5, k=4,
    )  # fmt: skip


def gsu_select_codes_args() -> dict:
    g = _gen()
    V, G, R, L = 12, 5, 3, 10
    return dict(
        codes=torch.randint(0, 8, (V, G), generator=g, dtype=torch.uint8),
        hist_item=torch.randint(0, V, (R, L), generator=g), n_valid=torch.tensor([10, 3, 0]),
        query=torch.randint(0, 8, (5, G), generator=g, dtype=torch.uint8),
        req=torch.tensor([0, 1, 0, 2, 1]), tiebreak=1.0, k=4,
    )  # fmt: skip


def merge_heads_args() -> dict:
    g = _gen()
    top = torch.stack([torch.stack([torch.randperm(20, generator=g)[:6] for _ in range(3)])
                       for _ in range(4)])  # fmt: skip
    return dict(top=top, length=20)


def esu_attend_args() -> dict:
    g = _gen()
    B, n, Hv, heads, width = 3, 7, 10, 2, 6
    valid = torch.rand(B, n, generator=g) > 0.3
    valid[1] = False  # nothing to attend to
    return dict(K=torch.randn(B, n, Hv, generator=g), q=torch.randn(B, heads, width, generator=g),
                bias=torch.randn(B, n, heads, generator=g), valid=valid)  # fmt: skip


def esu_attend_backward_args() -> dict:
    a = esu_attend_args()
    pooled, w = ops.esu_attend(**a) if library.load("esu", force=True) else (None, None)
    w = torch.rand(3, 7, 2, generator=_gen(1)) if w is None else w
    return dict(K=a["K"], q=a["q"], w=w, d_pooled=torch.randn(3, 2, 10, generator=_gen(2)))


def rows_gather_args() -> dict:
    g = _gen()
    codes = torch.randint(0, 4, (9, 2), generator=g)
    return dict(tables=[torch.randn(6, 5, generator=g), torch.randn(4, 3, generator=g)],
                indices=[torch.randint(0, 6, (9,), generator=g), codes[:, 1]])  # fmt: skip


def rows_scatter_add_args() -> dict:
    a = rows_gather_args()
    return dict(grads=[torch.zeros(6, 5), torch.zeros(4, 3)], indices=a["indices"],
                d_out=torch.randn(9, 8, generator=_gen(1)))  # fmt: skip


def _sdim_inputs() -> dict:
    g = _gen()
    V, G, nb, R, L = 15, 3, 4, 3, 12
    return dict(codes=torch.randint(0, nb, (V, G), generator=g),
                hist_item=torch.randint(0, V, (R, L), generator=g),
                n_valid=torch.tensor([12, 5, 0]),
                target=torch.randint(0, V, (5,), generator=g), req=torch.tensor([0, 1, 0, 2, 1]),
                nb=nb)  # fmt: skip


def sdim_pool_args() -> dict:
    return dict(Kall=torch.randn(15, 6, generator=_gen(1)), **_sdim_inputs())


def sdim_pool_backward_args() -> dict:
    return dict(d_v=torch.randn(5, 3, 6, generator=_gen(1)), **_sdim_inputs())


ARGS = {
    "gsu_select": gsu_select_args, "gsu_select_codes": gsu_select_codes_args,
    "merge_heads": merge_heads_args, "esu_attend": esu_attend_args,
    "esu_attend_backward": esu_attend_backward_args, "rows_gather": rows_gather_args,
    "rows_scatter_add": rows_scatter_add_args, "sdim_pool": sdim_pool_args,
    "sdim_pool_backward": sdim_pool_backward_args,
}  # fmt: skip
DIFFERENTIABLE = {"esu_attend": ["K", "q", "bias"], "rows_gather": ["tables"],
                  "sdim_pool": ["Kall"]}  # fmt: skip


def test_every_op_is_registered_and_has_inputs_here():
    assert set(ARGS) == set(ops.OPS)
    for name in ops.OPS:
        assert isinstance(getattr(torch.ops.twin_study, name).default, torch._ops.OpOverload)


# ------------------------------------------------------------------------------- opcheck


def _with_grads(name: str, args: dict) -> dict:
    for key in DIFFERENTIABLE.get(name, []):
        v = args[key]
        args[key] = [t.requires_grad_() for t in v] if isinstance(v, list) else v.requires_grad_()
    return args


@pytest.mark.parametrize("name", ops.OPS)
def test_opcheck(kernels, name):
    """Schema (mutations declared), fake kernel against the real one, autograd registration,
    and AOT dispatch with dynamic shapes; differentiable inputs require grad."""
    op = getattr(torch.ops.twin_study, name).default
    result = torch.library.opcheck(op, (), _with_grads(name, ARGS[name]()))
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_gsu_select_without_bias_and_esu_on_a_column_slice(kernels, bias):
    a = gsu_select_args()
    if not bias:
        a.update(bias_table=None, bias_codes=None, bias_strides=None)
    torch.library.opcheck(torch.ops.twin_study.gsu_select.default, (), a)
    e = esu_attend_args()
    e["K"] = torch.randn(3, 7, 14)[..., :10].requires_grad_()  # rows longer than Hv: strided
    torch.library.opcheck(torch.ops.twin_study.esu_attend.default, (), e)


def test_op_backward_equals_autograd_of_the_torch_definition(kernels):
    """register_autograd's backward ops against torch autograd on the same maths (float32)."""
    a = _with_grads("sdim_pool", sdim_pool_args())
    v = ops.sdim_pool(**a)
    w = torch.randn(v.shape, generator=_gen(3))
    (grad,) = torch.autograd.grad((v * w).sum(), [a["Kall"]])
    hist, req, tgt = a["hist_item"], a["req"], a["target"]
    codes, n = a["codes"], a["n_valid"]
    want = torch.zeros_like(v)
    Kall = a["Kall"].detach().requires_grad_()
    for b in range(len(req)):
        items = hist[req[b], : n[req[b]]]
        hit = (codes[items] == codes[tgt[b]]).float()  # (n, G)
        want[b] = hit.T @ Kall[items]
    torch.testing.assert_close(v, want)
    torch.testing.assert_close(grad, torch.autograd.grad((want * w).sum(), [Kall])[0])

    g = rows_gather_args()
    tables = [t.requires_grad_() for t in g["tables"]]
    out = ops.rows_gather(tables, g["indices"])
    ref = torch.cat([t[i] for t, i in zip(tables, g["indices"], strict=True)], 1)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    w = torch.randn(out.shape, generator=_gen(4))
    got = torch.autograd.grad((out * w).sum(), tables)
    for a_, b_ in zip(got, torch.autograd.grad((ref * w).sum(), tables), strict=True):
        torch.testing.assert_close(a_, b_)


# ------------------------------------------------------------------------ wrong arguments


def _shorter(t: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return t.narrow(dim, 0, t.shape[dim] - 1)


def _longer(t: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.cat([t, t.narrow(dim, 0, 1)], dim)


# (op, the argument the error must name, the change) -- every argument of every op
WRONG = [
    ("gsu_select", "table", lambda a: {"table": _shorter(a["table"], 1)}),  # heads
    ("gsu_select", "table", lambda a: {"table": a["table"].double()}),
    ("gsu_select", "hist_item", lambda a: {"hist_item": _longer(a["hist_item"], 0)}),
    ("gsu_select", "hist_item", lambda a: {"hist_item": a["hist_item"][0]}),
    ("gsu_select", "n_valid", lambda a: {"n_valid": _shorter(a["n_valid"])}),
    ("gsu_select", "query", lambda a: {"query": _shorter(a["query"])}),  # d
    ("gsu_select", "query", lambda a: {"query": _shorter(a["query"], 0)}),  # B
    ("gsu_select", "req", lambda a: {"req": a["req"].int()}),
    ("gsu_select", "bias_table", lambda a: {"bias_table": _longer(a["bias_table"], 0)}),
    ("gsu_select", "bias_table", lambda a: {"bias_table": None}),
    ("gsu_select", "bias_codes", lambda a: {"bias_codes": _shorter(a["bias_codes"], 1)}),
    ("gsu_select", "bias_strides", lambda a: {"bias_strides": _longer(a["bias_strides"])}),
    ("gsu_select", "k", lambda a: {"k": 0}),
    ("gsu_select_codes", "codes", lambda a: {"codes": _shorter(a["codes"])}),  # G
    ("gsu_select_codes", "codes", lambda a: {"codes": a["codes"].long()}),
    ("gsu_select_codes", "hist_item", lambda a: {"hist_item": _longer(a["hist_item"], 0)}),
    ("gsu_select_codes", "n_valid", lambda a: {"n_valid": a["n_valid"][:, None]}),
    ("gsu_select_codes", "query", lambda a: {"query": _longer(a["query"])}),
    ("gsu_select_codes", "req", lambda a: {"req": _shorter(a["req"])}),
    ("gsu_select_codes", "k", lambda a: {"k": -1}),
    ("merge_heads", "top", lambda a: {"top": a["top"][0]}),
    ("merge_heads", "top", lambda a: {"top": a["top"].float()}),
    ("merge_heads", "length", lambda a: {"length": 0}),
    ("esu_attend", "K", lambda a: {"K": _longer(a["K"], 1)}),  # n
    ("esu_attend", "K", lambda a: {"K": a["K"].half()}),
    ("esu_attend", "q", lambda a: {"q": _shorter(a["q"], 0)}),  # B
    ("esu_attend", "q", lambda a: {"q": torch.cat([a["q"]] * 2, -1)}),  # width > Hv
    ("esu_attend", "bias", lambda a: {"bias": _longer(a["bias"])}),  # heads
    ("esu_attend", "valid", lambda a: {"valid": _shorter(a["valid"])}),
    ("esu_attend", "valid", lambda a: {"valid": a["valid"].float()}),
    ("esu_attend_backward", "K", lambda a: {"K": _shorter(a["K"], 0)}),
    ("esu_attend_backward", "q", lambda a: {"q": a["q"][0]}),
    ("esu_attend_backward", "w", lambda a: {"w": _shorter(a["w"], 1)}),
    ("esu_attend_backward", "d_pooled", lambda a: {"d_pooled": _longer(a["d_pooled"])}),
    ("rows_gather", "tables", lambda a: {"tables": []}),
    ("rows_gather", r"tables\[1\]", lambda a: {"tables": [a["tables"][0], a["tables"][1][0]]}),
    ("rows_gather", r"indices\[1\]",
     lambda a: {"indices": [a["indices"][0], _shorter(a["indices"][1])]}),
    ("rows_gather", "indices", lambda a: {"indices": a["indices"][:1]}),
    ("rows_scatter_add", r"grads\[0\]", lambda a: {"grads": [torch.zeros(5, 6).T, a["grads"][1]]}),
    ("rows_scatter_add", r"indices\[0\]",
     lambda a: {"indices": [a["indices"][0].int(), a["indices"][1]]}),
    ("rows_scatter_add", "d_out", lambda a: {"d_out": _longer(a["d_out"])}),
    ("rows_scatter_add", "d_out", lambda a: {"d_out": _shorter(a["d_out"], 0)}),
    ("sdim_pool", "Kall", lambda a: {"Kall": _shorter(a["Kall"], 0)}),  # V
    ("sdim_pool", "codes", lambda a: {"codes": a["codes"].int()}),
    ("sdim_pool", "hist_item", lambda a: {"hist_item": _shorter(a["hist_item"], 0)}),
    ("sdim_pool", "n_valid", lambda a: {"n_valid": _longer(a["n_valid"])}),
    ("sdim_pool", "target", lambda a: {"target": _shorter(a["target"])}),
    ("sdim_pool", "req", lambda a: {"req": a["req"][:, None]}),
    ("sdim_pool", "nb", lambda a: {"nb": 0}),
    ("sdim_pool_backward", "d_v", lambda a: {"d_v": _shorter(a["d_v"], 1)}),  # G
    ("sdim_pool_backward", "codes", lambda a: {"codes": _longer(a["codes"])}),
    ("sdim_pool_backward", "target", lambda a: {"target": _longer(a["target"])}),
    ("sdim_pool_backward", "hist_item", lambda a: {"hist_item": a["hist_item"].float()}),
    ("sdim_pool_backward", "n_valid", lambda a: {"n_valid": _shorter(a["n_valid"])}),
    ("sdim_pool_backward", "req", lambda a: {"req": _longer(a["req"])}),
    ("sdim_pool_backward", "nb", lambda a: {"nb": -2}),
]  # fmt: skip


def _ids(case: tuple) -> str:
    return f"{case[0]}-{case[1].replace(chr(92), '')}"


@pytest.mark.parametrize("case", WRONG, ids=[_ids(c) for c in WRONG])
def test_wrong_argument_raises_value_error_naming_it(case):
    """No kernel is needed: the checks come first."""
    name, arg, change = case
    a = ARGS[name]()
    a.update(change(a))
    with pytest.raises(ValueError, match=rf"twin_study::{name}: (.*\W)?{arg}(?!\w)"):
        getattr(torch.ops.twin_study, name)(**a)


def test_every_argument_of_every_op_has_a_wrong_shape_case():
    for name in ops.OPS:
        schema = getattr(torch.ops.twin_study, name).default._schema
        checked = {re.sub(r"\\\[\d\\\]", "", arg) for op, arg, _ in WRONG if op == name}
        wanted = {a.name for a in schema.arguments if a.name != "tiebreak"}  # any float will do
        assert wanted <= checked, f"{name}: no wrong-argument case for {wanted - checked}"


def test_fake_kernels_check_shapes_too():
    """torch.compile sees the same errors: the fake kernel runs the same checks."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        a = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
             for k, v in esu_attend_args().items()}  # fmt: skip
        pooled, w = torch.ops.twin_study.esu_attend(**a)
        assert pooled.shape == (3, 2, 10) and w.shape == (3, 7, 2)
        a["bias"] = mode.from_tensor(torch.zeros(3, 7, 5))
        with pytest.raises(ValueError, match="bias"):
            torch.ops.twin_study.esu_attend(**a)


@pytest.mark.parametrize("op,arg,value", [
    ("gsu_select", "req", torch.tensor([0, 1, 0, 3, 1])),  # request 3 of 3
    ("gsu_select", "req", torch.tensor([0, 1, 0, -1, 1])),
    ("gsu_select", "n_valid", torch.tensor([10, -1, 0])),
    ("gsu_select_codes", "codes", torch.full((12, 5), 254, dtype=torch.uint8)),
    ("gsu_select_codes", "query", torch.full((5, 5), 255, dtype=torch.uint8)),
    ("sdim_pool", "req", torch.tensor([0, 1, 0, 2, 7])),
    ("sdim_pool_backward", "n_valid", torch.tensor([-3, 5, 0])),
])  # fmt: skip
def test_values_that_size_a_loop_are_checked(op, arg, value):
    a = ARGS[op]()
    a[arg] = value
    with pytest.raises(ValueError, match=arg):
        getattr(torch.ops.twin_study, op)(**a)


@pytest.mark.parametrize("op,arg,bad", [
    ("gsu_select", "hist_item", lambda a: a["hist_item"] + 12),
    ("gsu_select", "bias_codes", lambda a: a["bias_codes"] + 5),
    ("gsu_select_codes", "hist_item", lambda a: a["hist_item"] - 13),
    ("merge_heads", "top", lambda a: a["top"] + 20),
    ("rows_gather", "indices", lambda a: [a["indices"][0], a["indices"][1] + 4]),
    ("rows_scatter_add", "indices", lambda a: [a["indices"][0] - 7, a["indices"][1]]),
    ("sdim_pool", "codes", lambda a: a["codes"] + 4),
    ("sdim_pool_backward", "hist_item", lambda a: a["hist_item"] + 15),
    ("sdim_pool_backward", "target", lambda a: a["target"] - 16),
])  # fmt: skip
def test_ids_outside_their_table_raise_index_error(kernels, op, arg, bad):
    """The kernels check each id before reading or writing its row; the op raises. A failed
    scatter-add has added nothing."""
    a = ARGS[op]()
    a[arg] = bad(a)
    with pytest.raises(IndexError, match="outside"):
        getattr(torch.ops.twin_study, op)(**a)
    if op == "rows_scatter_add":
        assert all(g.abs().sum() == 0 for g in a["grads"])


def test_merge_heads_rejects_a_head_list_that_repeats_a_slot(kernels):
    top = torch.tensor([[[1, 1, 2], [1, 2, 1]]])  # 2 unique slots for k = 3
    with pytest.raises(ValueError, match="repeats"):
        torch.ops.twin_study.merge_heads(top, 5)


# ----------------------------------------------------------------- prototypes and builds


def test_ctypes_calls_come_from_the_c_prototypes(kernels):
    """Every extern "C" function is parsed from its source and called by an op; a call by
    name cannot leave out, invent or mistype an argument."""
    called = set(re.findall(r'\.call\(\s*"(\w+)"', Path(ops.__file__).read_text()))
    declared = set()
    for name, source in native.SOURCES.items():
        protos = prototypes(source.read_text())
        assert protos, name
        assert library.load(name, force=True).prototypes == protos
        declared |= set(protos)
    assert declared == called
    lib = library.load("gsu", force=True)
    top = merge_heads_args()["top"]
    with pytest.raises(TypeError, match=r"missing arguments \['out'\]"):
        lib.call("merge_heads", top=top, B=4, heads=3, k=6, L=20)
    with pytest.raises(TypeError, match="int64"):
        lib.call("merge_heads", top=top.int(), B=4, heads=3, k=6, L=20, out=top.clone())
    with pytest.raises(ValueError, match="cannot pass"):
        prototypes('extern "C" {\nint f(double x) {\n}\n}  // extern "C"')


def test_flags_never_contain_native_and_name_one_level():
    for target in (*library.ISA_LEVELS, library.DEFAULT, native.isa_target()):
        f = native.flags(target)
        assert not any("native" in x for x in f), f
        assert [x for x in f if x.startswith("-march=")] == (
            [] if target == library.DEFAULT else [f"-march={target}"]
        )
    assert "-ffp-contract=off" in native.flags()


def test_level_is_v3_on_an_avx2_cpu_else_the_baseline(monkeypatch):
    monkeypatch.delenv(native.ISA_ENV, raising=False)
    monkeypatch.setattr(library.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(library, "cpu_flags", lambda: library.V3_CPU_FLAGS | {"avx512f"})
    assert native.isa_target() == "x86-64-v3"  # AVX-512 is not used: one level for both
    monkeypatch.setattr(library, "cpu_flags", lambda: library.V3_CPU_FLAGS - {"avx2"})
    assert native.isa_target() == "x86-64"
    monkeypatch.setattr(library.platform, "machine", lambda: "aarch64")
    assert native.isa_target() == library.DEFAULT
    monkeypatch.setenv(native.ISA_ENV, "x86-64")
    assert native.isa_target() == "x86-64"
    monkeypatch.setenv(native.ISA_ENV, "native")
    with pytest.raises(ValueError, match="allowed"):
        native.isa_target()


def test_build_info_is_json_and_says_what_runs(kernels):
    info = json.loads(json.dumps(native.build_info()))
    assert info["isa"] == native.isa_target() and info["flags"] == native.flags()
    assert set(info["loaded"]) == set(native.SOURCES) and info["failed"] == []
    assert isinstance(info["enabled"], bool) and info["compiler"]


def test_both_x86_levels_compute_bit_identical_results(kernels, monkeypatch):
    """The baseline build (SSE2) and the x86-64-v3 build (AVX2) run the same float operations
    in the same order (no contraction into FMA, no reordered sums): equal bits, so results do
    not depend on which level a CPU gets."""
    if library.isa_target() != library.V3:
        pytest.skip("this CPU runs the baseline level only")
    got = []
    for level in library.ISA_LEVELS:
        monkeypatch.setenv(native.ISA_ENV, level)
        e = _with_grads("esu_attend", esu_attend_args())
        pooled, w = ops.esu_attend(**e)
        grads = torch.autograd.grad(pooled.pow(2).sum(), [e["K"], e["q"], e["bias"]])
        got.append([*ops.gsu_select(**gsu_select_args()), pooled, w, *grads])
    for a, b in zip(*got, strict=True):
        assert torch.equal(a, b)
