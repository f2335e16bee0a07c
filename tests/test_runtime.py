"""Process settings for training (``twin_study.runtime``)."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from twin_study import runtime


def _in_fresh_process(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)  # fmt: skip
    return out.stdout.strip()


def test_allocator_tuning_is_applied_once_and_can_be_switched_off():
    import platform

    code = "from twin_study import runtime as r; print(r.tune_allocator(), r.tune_allocator())"
    if platform.libc_ver()[0] == "glibc":  # elsewhere mallopt is not there to call
        assert _in_fresh_process(code, TWIN_STUDY_MALLOC="1") == "True True"
    assert _in_fresh_process(code, TWIN_STUDY_MALLOC="0") == "False False"


def test_configure_sets_the_thread_count_and_zero_keeps_torchs_default():
    before = torch.get_num_threads()
    try:
        runtime.configure(1)
        assert torch.get_num_threads() == 1
        runtime.configure(0)  # 0 = leave it
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_huge_page_tensors_keep_values_shape_and_dtype_and_are_aligned(monkeypatch):
    """``on_huge_pages`` moves a large table into 2 MiB-aligned memory (where huge pages can
    be asked for) without changing a value; small or non-CPU tensors stay where they are."""
    big = torch.randn(runtime.HUGE_PAGE_MIN_BYTES // 4 + 123, dtype=torch.float32).view(-1, 1)
    moved = runtime.on_huge_pages(big)
    assert moved.shape == big.shape and moved.dtype == big.dtype and moved.is_contiguous()
    assert torch.equal(moved, big)
    if runtime.huge_page_advice() is not None:
        assert moved.data_ptr() % runtime.HUGE_PAGE == 0 and moved.data_ptr() != big.data_ptr()
    small = torch.randn(10, 3)
    assert runtime.on_huge_pages(small) is small
    empty = runtime.huge_empty((5, 0, 7), torch.int64)
    assert empty.shape == (5, 0, 7) and empty.dtype == torch.int64


def test_huge_pages_can_be_switched_off():
    code = ("from twin_study import runtime; import torch;"
            "t = torch.zeros(runtime.HUGE_PAGE_MIN_BYTES);"
            "print(runtime.huge_page_advice() is None, runtime.on_huge_pages(t) is t)")  # fmt: skip
    env = {**os.environ, "TWIN_STUDY_HUGEPAGES": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True"], out.stderr
