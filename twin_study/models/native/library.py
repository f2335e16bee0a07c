"""Compiling and loading the native kernels (``models/*.cpp``), one shared library each.

Instruction set. The kernels are built for a fixed x86-64 *level*, never ``-march=native``, so
that a library -- and the numbers it computes -- depends on the level, not on the CPU model:

* ``x86-64-v3`` (AVX2 + FMA, no AVX-512) on every CPU that has it (Intel since Haswell, AMD
  since Zen): the same machine code, hence the same float results, on all of them;
* ``x86-64`` (the baseline, SSE2) on an older x86-64 CPU;
* the compiler's default elsewhere (another architecture).

``-ffp-contract=off`` keeps ``a * b + c`` two rounded operations on every level instead of one
fused multiply-add where FMA exists, and no flag lets the compiler reorder a float sum; so both
x86 levels run the same float operations in the same order (tests/test_native.py compares
them). The library's cache key is its source, the shared header, the flags (the level among
them) and the compiler's version: a machine never loads a library built for another level.

``TWIN_STUDY_NATIVE_ISA`` forces a level (``x86-64``, ``x86-64-v3``); ``TWIN_STUDY_NATIVE=0``
turns the kernels off. ``build_info()`` says what this process runs, for result files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

from ...paths import cache_dir
from .ffi import Kernel, prototypes

NATIVE_ENV = "TWIN_STUDY_NATIVE"  # "0" turns the kernels off
ISA_ENV = "TWIN_STUDY_NATIVE_ISA"  # force an instruction-set level (see ISA_LEVELS)
MODELS = Path(__file__).resolve().parent.parent  # the folder holding the C++ sources
SOURCES = {
    "gsu": MODELS / "gsu_select.cpp",
    "esu": MODELS / "esu_attend.cpp",
    "rows": MODELS / "embed_rows.cpp",
    "sdim": MODELS / "sdim_pool.cpp",
}
HEADER = MODELS / "common.h"  # included by every kernel: part of each library's key
FLAGS = ["-O3", "-ffp-contract=off", "-shared", "-fPIC", "-std=c++17"]

BASELINE = "x86-64"
V3 = "x86-64-v3"
DEFAULT = "default"  # not x86-64: the compiler's own default target
ISA_LEVELS = (BASELINE, V3)
# The /proc/cpuinfo flags that x86-64-v3 requires (v2's and v3's; "pni" is SSE3, "abm" LZCNT).
V3_CPU_FLAGS = frozenset({
    "cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2",  # x86-64-v2
    "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",  # v3
})  # fmt: skip

_lock = threading.Lock()
_libs: dict[tuple[str, str], Kernel | None] = {}  # (kernel, level) -> library (None: failed)


def enabled() -> bool:
    return os.environ.get(NATIVE_ENV, "1") != "0"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is missing).
    Read once: reading /proc/cpuinfo costs more than a small kernel call."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def isa_target() -> str:
    """The instruction-set level the kernels are built for on this machine (module docstring)."""
    forced = os.environ.get(ISA_ENV)
    if forced:
        if forced not in ISA_LEVELS:
            raise ValueError(f"{ISA_ENV}={forced!r}: allowed {', '.join(ISA_LEVELS)}")
        return forced
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return DEFAULT
    return V3 if cpu_flags() >= V3_CPU_FLAGS else BASELINE


def flags(target: str | None = None) -> list[str]:
    """The compiler flags for ``target`` (default: this machine's level)."""
    target = isa_target() if target is None else target
    return FLAGS if target == DEFAULT else [*FLAGS, f"-march={target}", "-mtune=generic"]


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


@functools.lru_cache(maxsize=8)
def _compiler_version(cxx: str) -> str:
    """The first line of ``cxx --version``: another compiler may emit other float code."""
    try:
        done = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (done.stdout.splitlines() or ["unknown"])[0]


def library_path(name: str = "gsu", target: str | None = None) -> Path:
    """Where kernel ``name``'s library for ``target`` lives in the cache."""
    source = SOURCES[name]
    cxx = _compiler()
    key = hashlib.sha1(
        b"\0".join([
            source.read_bytes(), HEADER.read_bytes(), " ".join(flags(target)).encode(),
            _compiler_version(cxx).encode() if cxx else b"none",
        ])
    ).hexdigest()[:16]  # fmt: skip
    level = isa_target() if target is None else target
    return cache_dir() / "native" / f"{source.stem}_{level}_{key}.so"


def build(path: Path, source: Path, target: str | None = None) -> None:
    """Compile ``source`` into ``path`` (atomically: a temp file renamed into place)."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set $CXX or install g++)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *flags(target), "-o", tmp, str(source)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(name: str = "gsu", target: str | None = None, force: bool = False) -> Kernel | None:
    """The compiled kernel ``name`` (a key of ``SOURCES``) for ``target`` (default: this
    machine's level), building it if needed; None when unavailable (callers take the torch
    path) or switched off (``TWIN_STUDY_NATIVE=0``, unless ``force``: an op called directly).
    A failure warns once per kernel and level."""
    if not (enabled() or force):
        return None
    target = isa_target() if target is None else target
    if (name, target) in _libs:  # the common case, on every kernel call: no lock
        return _libs[name, target]
    with _lock:
        if (name, target) not in _libs:
            _libs[name, target] = None
            try:
                path = library_path(name, target)
                if not path.exists():
                    build(path, SOURCES[name], target)
                _libs[name, target] = Kernel(path, prototypes(SOURCES[name].read_text()))
            except Exception as err:  # noqa: BLE001 -- any failure means: use torch
                warnings.warn(f"native {name} kernel unavailable, using the torch path: {err}",
                              stacklevel=2)  # fmt: skip
        return _libs[name, target]


def build_info() -> dict:
    """What this process runs, JSON-serialisable, for result files: whether the kernels are
    enabled, the instruction-set level and flags they are built with, the compiler, and which
    kernels have loaded so far (``loaded``) or failed to (``failed``)."""
    target = isa_target()
    cxx = _compiler()
    mine = {name: lib for (name, level), lib in _libs.items() if level == target}
    return {
        "enabled": enabled(),
        "isa": target,
        "flags": flags(target),
        "compiler": _compiler_version(cxx) if cxx else None,
        "loaded": sorted(n for n, lib in mine.items() if lib is not None),
        "failed": sorted(n for n, lib in mine.items() if lib is None),
    }
