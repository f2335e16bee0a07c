"""Timing and memory on a device: ``resolve_device``, ``sync``, the interleaved timer
``time_calls``, the peak-memory probe ``peak_allocated`` and the ``environment`` the timings
depend on. Shared by the cost measurements (``analysis.complexity``) and the training
throughput probes (``analysis.throughput``).

Peak memory is the peak of tensor bytes allocated during a call above what was allocated
before it: ``torch.cuda.max_memory_allocated`` on a GPU and the same quantity on the CPU from
the profiler's allocation events (``peak_allocated``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (an error without a GPU) or ``auto`` (cuda when available)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no GPU; use cpu or auto")
    return torch.device(device)


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); a no-op on CPU. Timers call it around a step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function, repeats interleaved (raw, twin, raw, twin, ...) so
    that load from other processes hits both alike; ``warmup`` untimed calls first."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(repeats):
            for name, fn in fns.items():
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                out[name].append(time.perf_counter() - t0)
    return out


def peak_allocated(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensors allocated while ``fn()`` runs, above what was allocated before
    (its result included while it is alive).

    GPU: ``torch.cuda.max_memory_allocated`` after a reset. CPU: the same quantity from the
    profiler's allocation events (every allocation and free of torch's CPU allocator, in order):
    the running sum's maximum. Python objects and the allocator's free lists are not counted.
    """
    with torch.no_grad():
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            out = fn()
            sync(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            del out
            return int(peak)
        from torch._C._profiler import _EventType  # lazy: torch's private API, profiler only

        os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # no start/stop line per profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
        del out
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    cur = peak = 0
    for _, size in sorted(events):
        cur += size
        peak = max(peak, cur)
    return int(peak)


def environment() -> dict:
    """What the timings depend on: torch version, threads, CPU count and load."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "load_1min": load[0], "cuda": gpu}  # fmt: skip
