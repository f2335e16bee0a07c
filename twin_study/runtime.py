"""Process settings that make CPU training fast: intra-op threads and the C allocator.

A training step at L = 10^4 allocates and frees tens of tensors of 1-20 MB (the ESU's
(B, 100, H + C) gradient, concatenations, score rows). glibc's malloc serves every block above
its mmap threshold with a fresh ``mmap`` and returns it with ``munmap`` on free, so each step
page-faults those megabytes in again (the kernel zeroes every page). Raising the mmap and trim
thresholds keeps freed blocks in the heap for reuse. Measured with ``time.process_time`` on the
2-core machine (TWIN, L = 10^4, batch 256, one thread): 1,494 -> 1,963 samples/s on the fast
path, 650 -> 736 on the reference path. What jemalloc / tcmalloc give through LD_PRELOAD,
without a preload.

Set ``TWIN_STUDY_MALLOC=0`` to leave the allocator alone. Only glibc (Linux) is tuned; other C
libraries are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit (HEAP_MAX / 2); blocks above it still mmap.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 1 * 2**30  # keep up to 1 GiB of freed heap before returning it to the system

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep freed large blocks in the heap for reuse (idempotent). True when glibc took the
    settings; False when disabled (``TWIN_STUDY_MALLOC=0``) or not glibc."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("TWIN_STUDY_MALLOC", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _tuned = ok
    return ok


# Transparent huge pages (issue 27). A step reads rows of the catalogue-sized tables (item
# embeddings, their AdaGrad state, SIM Soft's vectors, TWIN's item-key cache) at random. Once a
# table outgrows the caches, every such read also misses the TLB with 4 KiB pages; with 2 MiB
# pages a 10^6-item table spans a few hundred TLB entries. Measured on the 2-core machine (SIM
# Soft's GSU select, 52 requests x 10^4 behaviours, 10^6 x 144 table, one thread): 191 -> 114
# ms (a 2 x 10^4-item table: 81 ms). Linux only; a no-op where the kernel says "never" or
# ``TWIN_STUDY_HUGEPAGES=0``. Values are untouched: only where the bytes live changes.
HUGE_PAGE = 2 * 2**20
HUGE_PAGE_MIN_BYTES = 8 * 2**20  # smaller tables fit the caches; no page is worth advising
_MADV_HUGEPAGE = 14  # linux/mman.h
_madvise = None


def huge_page_advice():  # noqa: ANN202 -- a ctypes function or None
    """libc's madvise when huge pages can be asked for here, else None (cached)."""
    global _madvise
    if _madvise is None:
        _madvise = False
        mode = "never"
        try:
            with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
                mode = f.read()
        except OSError:  # not Linux, or no THP
            pass
        if os.environ.get("TWIN_STUDY_HUGEPAGES", "1") != "0" and "[never]" not in mode:
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                fn = libc.madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _madvise = fn
            except (OSError, AttributeError):
                pass
    return _madvise or None


def huge_empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``torch.empty(shape, dtype)`` on CPU whose bytes lie in 2 MiB-aligned memory advised for
    transparent huge pages (before any page is touched, so the first writes fault huge pages
    in). A plain ``torch.empty`` when the tensor is small or huge pages are unavailable. The
    result is a contiguous slice of a slightly larger buffer (at most 2 MiB more)."""
    n = 1
    for s in shape:
        n *= int(s)
    item = torch.empty(0, dtype=dtype).element_size()
    madvise = huge_page_advice()
    if madvise is None or n * item < HUGE_PAGE_MIN_BYTES:
        return torch.empty(shape, dtype=dtype)
    pad = HUGE_PAGE // item
    buf = torch.empty(n + pad, dtype=dtype)
    start = (-buf.data_ptr()) % HUGE_PAGE // item  # elements to the first 2 MiB boundary
    out = buf[start : start + n]
    madvise(out.data_ptr(), n * item // HUGE_PAGE * HUGE_PAGE, _MADV_HUGEPAGE)  # advice only
    return out.view(shape)


def on_huge_pages(t: torch.Tensor) -> torch.Tensor:
    """A copy of CPU tensor ``t`` in ``huge_empty`` memory (``t`` itself when small, not on the
    CPU, or huge pages are unavailable): same values, shape and dtype."""
    if t.device.type != "cpu" or t.numel() * t.element_size() < HUGE_PAGE_MIN_BYTES:
        return t
    if huge_page_advice() is None:
        return t
    return huge_empty(tuple(t.shape), t.dtype).copy_(t)


def configure(threads: int) -> None:
    """A training or timing process: ``threads`` intra-op threads (0 = torch's default) and
    the allocator settings above."""
    if threads:
        torch.set_num_threads(threads)
    tune_allocator()
