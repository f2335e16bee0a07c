"""Calling a compiled kernel through ctypes, with its C prototypes as the one source of truth.

``prototypes`` reads the ``extern "C"`` functions of a kernel's source; ``Kernel.call`` takes
the arguments *by their C names*, so an argument can neither be forgotten nor passed in
another position, and it checks each tensor against its parameter's C type (dtype, CPU,
innermost dimension dense) before its pointer is passed; an ``int64_t*`` also takes a list
of ints (a few sizes, cheaper than a tensor). A prototype edited in the .cpp is
picked up with the next build; no hand copy of the signatures can drift from it.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from pathlib import Path

import torch

# C parameter type (``const`` dropped, stars kept) -> (ctypes type, tensor dtype of a pointer)
_POINTERS = {"float*": torch.float32, "int64_t*": torch.int64, "uint8_t*": torch.uint8}
_ARRAYS = {"float**": torch.float32, "int64_t**": torch.int64}  # one pointer per tensor
_SCALARS = {"int64_t": ctypes.c_int64, "float": ctypes.c_float}
_RESTYPES = {"int": ctypes.c_int, "void": None}

_EXTERN_C = re.compile(r'extern "C" \{(.*)\}\s*//\s*extern "C"', re.S)
_FUNCTION = re.compile(r"^(int|void)\s+(\w+)\s*\(([^)]*)\)\s*\{", re.M)
_PARAM = re.compile(r"(\w+)\s*(\**)\s*(\w+)")


@dataclass(frozen=True)
class Prototype:
    restype: str  # "int" or "void"
    params: tuple[tuple[str, str], ...]  # (name, type) in order, e.g. ("table", "float*")


def prototypes(source: str) -> dict[str, Prototype]:
    """The ``extern "C"`` functions of a kernel's source text, by name. Raises ValueError for a
    parameter type this module cannot pass (add it to the tables above)."""
    block = _EXTERN_C.search(source)
    if block is None:
        raise ValueError('no extern "C" { ... }  // extern "C" block in the source')
    out = {}
    for restype, name, params in _FUNCTION.findall(block.group(1)):
        parsed = []
        for param in params.split(","):
            decl = re.sub(r"\s*\*\s*", "*", re.sub(r"\bconst\b", " ", param)).strip()
            m = _PARAM.fullmatch(decl)
            ctype = m and m.group(1) + m.group(2)
            if ctype not in (*_POINTERS, *_ARRAYS, *_SCALARS):
                raise ValueError(f"{name}: cannot pass parameter {param.strip()!r}")
            parsed.append((m.group(3), ctype))
        out[name] = Prototype(restype, tuple(parsed))
    return out


def _argtype(ctype: str):  # noqa: ANN202 -- a ctypes type
    return _SCALARS.get(ctype, ctypes.c_void_p)


class Kernel:
    """A loaded kernel library; ``call(fn, **args)`` runs its C function ``fn``."""

    def __init__(self, path: Path | str, protos: dict[str, Prototype]):
        self.path, self.prototypes = Path(path), protos
        self._lib = ctypes.CDLL(str(path))
        for fn, proto in protos.items():
            f = getattr(self._lib, fn)
            f.argtypes = [_argtype(t) for _, t in proto.params]
            f.restype = _RESTYPES[proto.restype]

    def call(self, fn: str, **args: object) -> int:
        """C function ``fn`` with arguments by name; its return code (0 for a void one)."""
        proto = self.prototypes[fn]
        names = [n for n, _ in proto.params]
        if set(args) != set(names):
            missing, extra = set(names) - set(args), set(args) - set(names)
            raise TypeError(f"{fn}: missing arguments {sorted(missing)}, unknown {sorted(extra)}")
        values = [_c_value(fn, n, t, args[n]) for n, t in proto.params]
        rc = getattr(self._lib, fn)(*values)
        return 0 if rc is None else int(rc)


def _c_value(fn: str, name: str, ctype: str, value: object):  # noqa: ANN202
    if ctype in _SCALARS:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
        return value
    if ctype in _ARRAYS:
        tensors = list(value)  # type: ignore[call-overload]
        for i, t in enumerate(tensors):
            _check_pointer(fn, f"{name}[{i}]", _ARRAYS[ctype], t, dense=False)
        return (ctypes.c_void_p * max(1, len(tensors)))(*(t.data_ptr() for t in tensors))
    if value is None:
        return None  # a null pointer: the kernel's documented "absent" (e.g. no bias)
    if ctype == "int64_t*" and isinstance(value, (list, tuple)):  # a few sizes: no tensor
        return (ctypes.c_int64 * max(1, len(value)))(*value)
    _check_pointer(fn, name, _POINTERS[ctype], value, dense=True)
    return value.data_ptr()  # type: ignore[union-attr]


def _check_pointer(fn: str, name: str, dtype: torch.dtype, t: object, dense: bool) -> None:
    """The last guard before a pointer is passed: the right dtype, on the CPU, and (``dense``)
    the innermost dimension contiguous. Shapes are the op's checks (``ops.py``)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a tensor, got {type(t).__name__}")
    if t.dtype != dtype or t.device.type != "cpu":
        raise TypeError(f"{fn}: {name} must be a CPU {dtype} tensor, got {t.dtype} on {t.device}")
    if dense and t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{fn}: {name}'s last dimension must be contiguous")
