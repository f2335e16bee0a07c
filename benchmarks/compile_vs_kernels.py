"""torch.compile (inductor, CPU) on the fast torch paths against the hand kernels, side by side.

The two kernels whose torch path is a few plain ops, so that a compiler could plausibly fuse
it as well as the hand-written C++ does:

* the ESU's attention pooling (``esu_attend.cpp``; torch: baddbmm, masked softmax, bmm), and
* the concatenated embedding gather (``embed_rows.cpp``; torch: index_selects + cat),

each timed forward + backward at TWIN's training size (B = 256 samples, k = 100 finalists,
H + C = 168 feature columns, 4 heads), one thread, median of ``--repeats`` calls after warm-up,
the implementations taking turns.
The clock is the calling thread's CPU time (all the work runs on it at one thread), so that
another process sharing the cores slows both sides alike instead of whichever it preempts.
The rule (issue 25): where compile comes within 10 % of the hand kernel, drop the kernel.

    python benchmarks/compile_vs_kernels.py [--repeats 41] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from twin_study.models import native
from twin_study.models.attention import TwinAttention, _PooledAttention

B, N_FINAL, HEADS, WIDTH = 256, 100, 4, 144  # samples, finalists each, heads, key width (H)
TABLES = [(20_001, 96), (10, 16), (2, 16), (16, 16), (5, 8), (5, 8), (5, 8)]  # (rows, width)


def esu_inputs(g: torch.Generator) -> tuple[torch.Tensor, ...]:
    Hv = sum(w for _, w in TABLES)  # 168 = H + C
    K = torch.randn(B, N_FINAL, Hv, generator=g, requires_grad=True)
    q = torch.randn(B, HEADS, WIDTH, generator=g, requires_grad=True)
    bias = torch.randn(B, N_FINAL, HEADS, generator=g, requires_grad=True)
    valid = torch.rand(B, N_FINAL, generator=g) > 0.05
    return K, q, bias, valid


def esu_torch(K, q, bias, valid):  # noqa: ANN001, ANN201 -- the plain formulation to compile
    alpha = torch.baddbmm(bias, K[..., : q.shape[-1]], q.transpose(1, 2))  # (B, n, heads)
    w = TwinAttention._softmax(alpha, valid[..., None], dim=1)
    return torch.bmm(w.transpose(1, 2), K), w  # (B, heads, Hv)


def gather_inputs(g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    n = B * N_FINAL
    tables = [torch.randn(v, w, generator=g, requires_grad=True) for v, w in TABLES]
    codes = torch.randint(0, 5, (n, 3), generator=g)  # cross codes: strided columns
    indices = [torch.randint(0, v, (n,), generator=g) for v, _ in TABLES[:4]]
    return tables, indices + [codes[:, j] for j in range(3)]


def gather_torch(tables, indices):  # noqa: ANN001, ANN201
    return torch.cat([t.index_select(0, i) for t, i in zip(tables, indices, strict=True)], 1)


def fwd_bwd(fn: Callable, args: tuple, params: list[torch.Tensor]) -> Callable[[], None]:
    """One training-like call: forward, then the gradient of a weighted sum of the output."""
    out = fn(*args)
    out = out[0] if isinstance(out, tuple) else out
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))

    def step() -> None:
        out = fn(*args)
        out = out[0] if isinstance(out, tuple) else out
        torch.autograd.grad((out * w).sum(), params)

    return step


def interleaved_ms(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median thread CPU time of each step, the steps taken in turn (A B C A B C ...), so that
    load that comes and goes hits each alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.thread_time()
            step()
            times[name].append(time.thread_time() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def run(repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    K, q, bias, valid = esu_inputs(g)
    tables, indices = gather_inputs(g)
    esu_args, esu_params = (K, q, bias, valid), [K, q, bias]
    cases = {
        "ESU attention pooling": (esu_args, esu_params, {
            "hand kernel (twin_study::esu_attend)": native.esu_attend,
            "torch eager (_PooledAttention)": _PooledAttention.apply,
            "torch.compile (inductor)": torch.compile(esu_torch, dynamic=False),
        }),
        "concatenated gather": ((tables, indices), tables, {
            "hand kernel (twin_study::rows_gather)": native.rows_gather,
            "torch eager (index_select + cat)": gather_torch,
            "torch.compile (inductor)": torch.compile(gather_torch, dynamic=False),
        }),
    }  # fmt: skip
    rows = []
    for case, (args, params, impls) in cases.items():
        steps, first = {}, {}
        for impl, fn in impls.items():
            t0 = time.perf_counter()
            steps[impl] = fwd_bwd(fn, args, params)
            steps[impl]()  # a compiled function compiles its forward and backward here
            first[impl] = time.perf_counter() - t0
        for impl, ms in interleaved_ms(steps, repeats).items():
            rows.append({"case": case, "impl": impl, "ms": ms,
                         "compile_s": first[impl] if "compile" in impl else None})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=41, help="timed calls, median reported")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if native.load("esu") is None or native.load("rows") is None:
        raise SystemExit("the native kernels are unavailable here (TWIN_STUDY_NATIVE=0 or no g++)")
    rows = run(a.repeats)
    print(
        f"forward + backward, B={B}, k={N_FINAL}, H+C={sum(w for _, w in TABLES)}, "
        f"heads={HEADS}, {a.threads} thread(s), median thread CPU time of {a.repeats}; "
        f"torch {torch.__version__}, kernels {native.build_info()['isa']}"
    )
    for case in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == case]
        hand = mine[0]["ms"]
        print(f"\n{case}")
        for r in mine:
            extra = f"  (compile {r['compile_s']:.0f} s)" if r["compile_s"] else ""
            print(f"  {r['impl']:40s} {r['ms']:8.2f} ms  {r['ms'] / hand:5.2f}x the kernel{extra}")


if __name__ == "__main__":
    main()
