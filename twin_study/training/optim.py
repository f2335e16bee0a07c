"""AdaGrad whose step costs what the batch touched (issue 27).

The paper trains its embeddings with AdaGrad. With row-sparse gradients
(``FeatureEmbedder.sparse_grads``) only the rows a batch read need an update: an untouched
row has a zero gradient, and AdaGrad (no weight decay, no learning-rate decay) leaves both it
and its accumulator as they are. torch's own ``Adagrad`` does accept sparse gradients, but
coalesces them and adds them into the dense state through generic sparse kernels: on a
10^6-row table it took ~65 ms for 4 x 10^4 rows where the gathers and scatters below take
~30 ms (one thread, this study's machine). Dense gradients get exactly torch's dense update.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .. import runtime
from ..models.unique import unique_ids


class RowSparseAdagrad(torch.optim.Optimizer):
    """AdaGrad (lr, eps; no weight decay, no lr decay, zero initial accumulator):

        sum += g * g;   param -= lr * g / (sqrt(sum) + eps)

    For a sparse COO gradient the rows are summed per unique row first (duplicate lookups of
    one row add up, as in the dense gradient), then only those rows of ``sum`` and ``param``
    are read and written. Equal to torch's dense ``Adagrad`` up to float rounding
    (tests/test_catalogue.py)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, eps: float = 1e-10):
        if lr <= 0 or eps < 0:
            raise ValueError(f"RowSparseAdagrad: need lr > 0 and eps >= 0, got {lr}, {eps}")
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 -- torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["sum"] = _zero_state(p)
                state["step"] += 1
                if p.grad.is_sparse:
                    _sparse_step(p, state["sum"], p.grad, lr, eps)
                else:  # torch's dense AdaGrad, operation for operation
                    g = p.grad
                    state["sum"].addcmul_(g, g, value=1)
                    p.addcdiv_(g, state["sum"].sqrt().add_(eps), value=-lr)
        return loss


def _zero_state(p: torch.Tensor) -> torch.Tensor:
    """AdaGrad's zero accumulator for ``p``; a large CPU table's on huge pages, as the table
    itself (runtime.py): the sparse step reads its rows at random too."""
    if p.device.type == "cpu" and p.is_contiguous():
        return runtime.huge_empty(tuple(p.shape), p.dtype).zero_()
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def _sparse_step(
    p: torch.Tensor, acc: torch.Tensor, grad: torch.Tensor, lr: float, eps: float
) -> None:
    """The AdaGrad update of the rows a sparse COO gradient (n_rows, w) names."""
    idx, vals = grad._indices()[0], grad._values()  # (N,), (N, w); rows may repeat
    rows, inv = unique_ids(idx, p.shape[0])
    g = vals.new_zeros(len(rows), vals.shape[1]).index_add_(0, inv, vals)  # (U, w) per row
    s = acc.index_select(0, rows).addcmul_(g, g)
    acc.index_copy_(0, rows, s)
    p.index_add_(0, rows, g.div_(s.sqrt_().add_(eps)).mul_(-lr))
