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
