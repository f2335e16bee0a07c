"""The fast and reference paths on a GPU (skipped where torch sees none, as in CI).

The same checks as tests/test_fast_path.py, on CUDA: the fast path's selection, loss and
gradients match the reference path's, and the training probe runs and reports GPU memory.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from twin_study.data import SampleBuilder, SyntheticConfig, generate
from twin_study.models import ModelConfig, build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

L, K = 1500, 40


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=16, n_items=3000, n_authors=300, history_len=1800,
                                    history_min=20, requests_per_user=4, seed=5))  # fmt: skip


@pytest.mark.parametrize("module", ["twin", "sim_hard", "eta", "sdim", "avg_pool", "twin_raw"])
def test_fast_path_matches_reference_on_cuda(ds, module):
    batch = SampleBuilder(ds, L).build(ds.split_indices("train")[:80]).to("cuda")
    models = []
    for impl in ("fast", "reference"):
        torch.manual_seed(0)
        models.append(build_model(ModelConfig(long_module=module, long_len=L, k=K, impl=impl),
                                  ds).cuda().train())  # fmt: skip
    models[1].load_state_dict(models[0].state_dict())
    losses = []
    for m in models:
        m.cache_step()
        loss = F.binary_cross_entropy_with_logits(m(batch), batch.label)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        if p.grad is not None or q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4, msg=name)


def test_training_probe_on_cuda():
    from twin_study.analysis import throughput as tp

    r = tp.train_probe(L=1000, batch_size=64, steps=1, device="cuda")
    assert r["device"].startswith("cuda") and r["samples_per_s"] > 0
    assert r["cuda_peak_mb"] > 0
