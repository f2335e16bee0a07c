"""Complexity analysis: FLOP counts (model, by hand, FlopCounterMode), memory tracking, the
bench command's arguments. Fast: tiny catalogues and histories, no timing asserts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from twin_study import cli
from twin_study.analysis import complexity as cx
from twin_study.analysis import cost_model as cm
from twin_study.analysis import timing
from twin_study.models.attention import TwinAttention


@pytest.fixture(scope="module")
def models():
    return cx.build_models(n_items=500, seed=1)


@pytest.mark.parametrize("L, B", [(300, 1), (2100, 7)])  # 2100: two GSU chunks, a ragged one
def test_flop_counts_agree_with_flop_counter(models, L, B):
    check = cx.counter_check(models, L, B)
    assert (check["counter"] == check["hand"]).all(), check
    has_model = check["model"].notna()
    assert has_model.sum() == 3
    assert (check.loc[has_model, "model"] == check.loc[has_model, "counter"]).all(), check
    # TWIN's bias adds are real work the counter cannot see; they are reported, not dropped.
    assert check["other_flops_not_counted"].iloc[2] > 0


def test_scoring_flops_by_mode():
    vocab = (10, 2, 16)
    counts = {}
    for mode in ("split", "raw", "nobias"):
        att = TwinAttention(H=144, J=3, cross_dim=8, heads=4, d_k=16, mode=mode)
        counts[mode] = att.scoring_flops(L=1000, B=5, vocab=vocab)
    assert counts["raw"]["keys"] == 2 * 1000 * (144 + 24) * 64
    assert counts["split"]["keys"] == counts["nobias"]["keys"] == 0  # read from the cache
    assert counts["nobias"]["tables"] == counts["nobias"]["bias"] == 0
    assert counts["split"]["bias"] == 4 * (28 + 1000 * (2 + 5))
    assert len({c["dot"] for c in counts.values()}) == 1  # the dot is the same in all modes


def test_analytic_reduction_at_1e4_and_its_dependence_on_B():
    dims = cm.Dims()
    claim = cm.paper_claim(dims, 10_000, (1, 100, 1000))
    assert claim["projection_reduction"] == 1.0
    assert claim["key_side_reduction_B1"] >= 0.99
    # The dot with the queries is shared, so the cut shrinks with the candidate count.
    assert claim["key_side_reduction_B1"] > claim["key_side_reduction_B100"]
    assert claim["key_side_reduction_B100"] > claim["key_side_reduction_B1000"] > 0
    costs = cm.cost_table([100, 10_000], [1], dims)
    raw = costs[costs.method == "raw"]
    per_behaviour = 2 * (dims.H + dims.C) * dims.hd + 2 * dims.hd  # projection + dot (B = 1)
    assert (raw["key_side_flops_per_behaviour"] == per_behaviour).all()
    assert (costs["bytes"] > 0).all()


def test_peak_allocated_tracks_cpu_tensor_allocations():
    def two_live_buffers():
        a = torch.empty(1000, 1000)  # 4 MB
        b = a + 1  # 4 MB more while a is alive
        del a
        return b * 2  # b is still alive: 8 MB at the peak

    peak = timing.peak_allocated(two_live_buffers, torch.device("cpu"))
    assert 8_000_000 <= peak < 8_100_000


def test_pick_and_tags():
    import pandas as pd

    df = pd.DataFrame({"L": [100, 10_000], "B": [1, 1], "v": [0.5, 2.0]})
    assert cx.pick(df, "v", L=10_000, B=1) == 2.0
    assert cx.pick(df, "v", L=1000) is None
    assert [cx.L_tag(L) for L in (1000, 10_000, 5000)] == ["1e3", "1e4", "5000"]


def test_stage_times_charge_each_stage_its_own_time(models, monkeypatch):
    """A fake clock that only the model's stages advance, each by its own power of two: every
    stage must come back with exactly its amount (scoring inside the select is not charged to
    the merge, the ESU's attention not to the short-term branch's, the MLP to the rest)."""
    model = models["twin"]
    now = [0.0]
    monkeypatch.setattr(cx, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def costing(seconds, fn):
        def wrapper(*args, **kwargs):
            now[0] += seconds(*args) if callable(seconds) else seconds
            return fn(*args, **kwargs)

        return wrapper

    gsu_cls = type(model.gsu)
    monkeypatch.setattr(gsu_cls, "scores", costing(1.0, gsu_cls.scores))
    monkeypatch.setattr(gsu_cls, "select", costing(2.0, gsu_cls.select))

    def esu_or_short(self, att, *_):  # noqa: ANN001, ANN202
        return 4.0 if att is self.esu else 8.0

    monkeypatch.setattr(type(model), "_attend", costing(esu_or_short, type(model)._attend))
    hook = model.mlp.register_forward_pre_hook(lambda *_: now.__setitem__(0, now[0] + 16.0))
    try:
        t = cx.stage_times(model, cx.random_batch(model, 300, 4, 2), repeats=3)
    finally:
        hook.remove()
    assert t == {"CP-GSU scoring": 1.0, "top-k merge": 2.0, "ESU": 4.0, "short-term": 8.0,
                 "embeddings + MLP": 16.0, "total": 31.0}  # fmt: skip
    assert list(t)[:-1] == list(cx.STAGES)
    assert "scores" not in vars(model.gsu) and "_attend" not in vars(model)  # clock removed


def test_random_batch_shapes(models):
    b = cx.random_batch(models["raw"], 50, 10, 3)
    assert b.hist_item.shape == (3, 50) and b.hist_cross.shape == (3, 50, 3)
    assert b.req.tolist() == sorted(b.req.tolist()) and set(b.req.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="R <= B"):
        cx.random_batch(models["raw"], 50, 2, 3)


@pytest.mark.parametrize("bad", ["0", "-5", "abc", "1.5", "1e9"])
def test_bench_rejects_bad_L(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--L", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"invalid L {bad!r}" in err and "whole number of behaviours" in err


def test_bench_rejects_bad_candidates_and_device(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--candidates", "0"])
    assert "need a positive integer" in capsys.readouterr().err
    assert cli.main(["bench", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["bench", "--device", "cuda"]) == 2
        assert "sees no GPU" in capsys.readouterr().err


def test_bench_prints_side_by_side_table(capsys):
    # Small training probes too: with the defaults (every module, L = 10^3 and 10^4, both
    # implementations) this check of the table's layout took 344 s (beside a training run).
    args = ["bench", "--L", "64", "1e2", "--candidates", "2", "--train-batch", "10",
            "--repeats", "1", "--train-L", "64", "--modules", "twin",
            "--train-steps", "1", "--clustering", "3000"]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    for column in ("raw ms", "TWIN ms", "speed-up", "FLOP ratio", "raw MiB", "TWIN MiB"):
        assert column in out
    assert "train batch" in out and "request" in out
    assert "TWIN-V2 clustering of one user's 3,000 behaviours" in out


def test_train_probe_in_a_subprocess():
    from twin_study.analysis import throughput as tp

    r = tp.train_probe_subprocess(L=64, batch_size=16, steps=1, threads=1)
    assert r["L"] == 64 and r["steps"] == 1 and len(r["step_s"]) == 1
    assert r["long_module"] == "twin" and r["impl"] == "fast" and r["threads"] == 1
    assert r["samples_per_s"] > 0 and r["peak_rss_mb"] > 50  # a whole Python + torch process


def test_train_throughput_side_by_side():
    from twin_study.analysis import throughput as tp

    df = tp.train_throughput(["twin", "din"], [64], batch_size=16, steps=1, progress=False)
    assert len(df) == 4 and set(df.impl) == {"fast", "reference"}
    wide = tp.side_by_side(df)
    assert list(wide.long_module) == ["twin", "din"]
    assert (wide.speedup > 0).all() and wide.loc[wide.long_module == "twin", "vs_twin"].item() == 1
    text = tp.format_side_by_side(wide)
    assert "speed-up" in text and "vs TWIN" in text
    with pytest.raises(ValueError, match="unknown module"):
        tp.train_throughput(["twinn"], [64])
    with pytest.raises(ValueError, match="unknown impl"):
        tp.train_throughput(["twin"], [64], impls=["slow"])


def test_complexity_claims_verdicts_follow_the_numbers():
    from twin_study.claims.complexity import complexity_claims

    base = {"flop_reduction_at_1e4": 0.9935, "projection_flop_reduction_at_1e4": 1.0,
            "key_side_time_reduction_at_1e4": 0.74, "time_speedup_at_1e4": 3.7,
            "time_speedup_train_batch_at_1e4": 5.0}  # fmt: skip
    flops, time_claim = complexity_claims(base)
    # the FLOP count is a check (analytic); a time saving short of 99.3 % is not reproduced
    assert flops["verdict"] == "reproduced" and flops["kind"] == "check"
    assert time_claim["verdict"] == "not reproduced" and time_claim["kind"] == "study"
    worse = base | {"flop_reduction_at_1e4": 0.9, "key_side_time_reduction_at_1e4": -0.1}
    flops, time_claim = complexity_claims(worse)
    assert flops["verdict"] == "not reproduced" and time_claim["verdict"] == "not reproduced"
