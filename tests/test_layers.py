"""Issue 25, layering: the package's import graph, read from the source with ``ast``.

Every module of ``twin_study`` belongs to one layer (``LAYERS``, lowest first). The checks:

* no import circle among the modules (imports inside functions count);
* no import from a lower layer to a higher one (models never import training, training never
  imports analysis or the runner, ...); a layer may import itself and any layer below;
* no private name (``_x``) taken from another module of the package, neither
  ``from m import _x`` nor ``m._x`` on an imported module;
* every import inside a function says why it is there: a ``# lazy: <why>`` comment on its
  line(s) or the line above (a heavy optional dependency, or a CLI entry point that must not
  import torch). Everything else is imported at the top of its file.

A new module has to be placed in a layer here; the checks also run on a deliberately bad toy
package, so that they can be seen to fail.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import twin_study

PACKAGE = "twin_study"
ROOT = Path(twin_study.__file__).parent

# Lowest first. An entry names a module or a package (then every module below it); the most
# specific entry wins. The root package ``twin_study`` (its __init__) is the lowest.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("twin_study", "twin_study.paths", "twin_study.seed", "twin_study.results",
     "twin_study.runtime", "twin_study.assignments",
     "twin_study.paper"),  # foundation: no torch, no data
    ("twin_study.data",),
    ("twin_study.models",),
    ("twin_study.training",),
    ("twin_study.analysis", "twin_study.claims", "twin_study.panel"),
    ("twin_study.plots",),
    ("twin_study.report", "twin_study.runner", "twin_study.cli", "twin_study.bench"),
)  # fmt: skip

LAZY = re.compile(r"#\s*lazy:\s*\S")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module of the package
    names: tuple[str, ...]  # names taken from it (``from target import a, b``), else ()
    line: int
    in_function: bool
    lazy: bool  # a ``# lazy:`` comment on its lines or the line above


@dataclass(frozen=True)
class Module:
    name: str
    source: str
    is_package: bool = False  # an __init__.py


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Module]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        out[name] = Module(name, path.read_text(), is_package)
    return out


def _absolute(module: Module, level: int, name: str | None) -> str:
    if not level:
        return name or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _function_imports(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function (at any depth)."""
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(n) for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom))
    return inside


def _lazy(lines: list[str], node: ast.stmt) -> bool:
    """A ``# lazy:`` comment on the import's own lines, or on the comment line above it or
    above the run of one-line imports it closes (one reason may head a block of imports)."""
    if any(LAZY.search(text) for text in lines[node.lineno - 1 : node.end_lineno]):
        return True
    i = node.lineno - 2
    while i >= 0 and lines[i].strip().startswith(("import ", "from ")):
        i -= 1
    above = lines[i].strip() if i >= 0 else ""
    return above.startswith("#") and bool(LAZY.search(above))


@dataclass
class Scan:
    imports: list[Import]
    function_imports: list[tuple[str, int, str, bool]]  # module, line, text, lazy (all of them)
    private_uses: list[str]  # ``module:line: name`` of ``alias._x`` on a package module


def scan(modules: Mapping[str, Module], package: str = PACKAGE) -> Scan:
    """Every import of every module (package imports resolved to modules), every import
    inside a function, and every ``alias._x`` on an imported package module."""
    imports: list[Import] = []
    function_imports: list[tuple[str, int, str, bool]] = []
    private_uses: list[str] = []

    def ours(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    for mod in modules.values():
        tree = ast.parse(mod.source)
        lines = mod.source.splitlines()
        inside = _function_imports(tree)
        aliases: dict[str, str] = {}  # local name -> package module it is bound to
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            in_fn, lazy = id(node) in inside, _lazy(lines, node)
            if in_fn:
                text = " ".join(lines[node.lineno - 1].split())
                function_imports.append((mod.name, node.lineno, text, lazy))
            if isinstance(node, ast.Import):
                for a in node.names:
                    if ours(a.name):
                        imports.append(Import(mod.name, a.name, (), node.lineno, in_fn, lazy))
                        if a.asname:
                            aliases[a.asname] = a.name
                continue
            base = _absolute(mod, node.level, node.module)
            if not ours(base):
                continue
            taken = []
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in modules:  # ``from pkg import module``
                    imports.append(Import(mod.name, sub, (), node.lineno, in_fn, lazy))
                    aliases[a.asname or a.name] = sub
                else:
                    taken.append(a.name)
            if taken:
                imports.append(Import(mod.name, base, tuple(taken), node.lineno, in_fn, lazy))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
                and aliases[node.value.id] != mod.name
            ):
                private_uses.append(f"{mod.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return Scan(imports, function_imports, private_uses)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_of(module: str, layers: Iterable[Iterable[str]] = LAYERS) -> int | None:
    """The index of the most specific entry naming ``module`` or a package above it."""
    best: tuple[int, int] | None = None  # (entry length, layer)
    for i, entries in enumerate(layers):
        for e in entries:
            root_only = e.count(".") == 0  # the root package entry holds its __init__ only
            hit = module == e or (not root_only and module.startswith(e + "."))
            if hit and (best is None or len(e) > best[0]):
                best = (len(e), i)
    return None if best is None else best[1]


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a self-import
    (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1 or node in edges.get(node, ()):
                    out.append(sorted(comp))
    return out


def problems(modules: Mapping[str, Module], layers=LAYERS, package: str = PACKAGE) -> list[str]:
    """Every breach of the rules in the module docstring, one line each (empty: none)."""
    s = scan(modules, package)
    out = []
    for name in modules:
        if layer_of(name, layers) is None:
            out.append(f"no layer: {name} (add it to LAYERS)")
    edges: dict[str, set[str]] = {}
    for imp in s.imports:
        if imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
        src, dst = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if src is not None and dst is not None and dst > src:
            out.append(f"upward: {imp.source}:{imp.line} imports {imp.target} "
                       f"(layer {src} -> {dst})")  # fmt: skip
        if imp.target != imp.source:
            for n in imp.names:
                if _private(n):
                    out.append(f"private: {imp.source}:{imp.line} imports {imp.target}.{n}")
    out += [f"private: {use}" for use in s.private_uses]
    for comp in cycles(edges):
        out.append("circle: " + " <-> ".join(comp))
    for mod, line, text, lazy in s.function_imports:
        if not lazy:
            out.append(f"lazy without '# lazy:' reason: {mod}:{line}: {text}")
    return out


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return package_modules()


def test_the_package_keeps_its_layers(modules):
    assert problems(modules) == []


def test_the_scan_sees_the_package(modules):
    """The graph is not empty by accident: known edges, and function-level imports, are read."""
    s = scan(modules)
    edges = {(i.source, i.target) for i in s.imports}
    assert ("twin_study.training.experiment", "twin_study.models.ctr") in edges
    assert ("twin_study.analysis.sweeps", "twin_study.training.params") in edges
    assert ("twin_study.models.ctr", "twin_study.models.registry") in edges  # from . import
    assert len(modules) > 50 and len(edges) > 100
    # The CLI entry points keep torch out by importing their work inside functions.
    assert any(
        m.startswith("twin_study.runner") and "papermill" in t for m, _, t, _ in s.function_imports
    )
    assert all(lazy for *_, lazy in s.function_imports)


def test_models_never_import_training_and_training_never_imports_above(modules):
    s = scan(modules)
    for imp in s.imports:
        if imp.source.startswith("twin_study.models"):
            assert not imp.target.startswith(("twin_study.training", "twin_study.analysis"))
        if imp.source.startswith("twin_study.training"):
            assert not imp.target.startswith(
                ("twin_study.analysis", "twin_study.runner", "twin_study.plots")
            ), imp


def test_every_module_has_a_layer(modules):
    assert [m for m in modules if layer_of(m) is None] == []
    assert layer_of("twin_study") == 0 and layer_of("twin_study.models.native.ops") == 2
    assert layer_of("twin_study.somewhere_new") is None  # the root entry covers its __init__ only


# ------------------------------------------------------------- the checks can fail: a toy


TOY_LAYERS = (("toy", "toy.base"), ("toy.low",), ("toy.high",))


def toy(files: Mapping[str, str]) -> dict[str, Module]:
    mods = {"toy": Module("toy", "", True)}
    for name, text in files.items():
        mods[name] = Module(name, text, name.endswith("pkg"))
    return mods


def test_a_clean_toy_passes():
    mods = toy({
        "toy.base": "X = 1\n",
        "toy.low": "from .base import X\n",
        "toy.high": "from toy import low\nfrom toy.base import X\n"
                    "def f():\n    import json  # lazy: just to show the comment\n",
    })  # fmt: skip
    assert problems(mods, TOY_LAYERS, "toy") == []


def test_an_upward_import_fails():
    mods = toy({"toy.base": "", "toy.low": "from toy.high import thing\n", "toy.high": "thing=1\n"})
    found = problems(mods, TOY_LAYERS, "toy")
    assert found == ["upward: toy.low:1 imports toy.high (layer 1 -> 2)"]


def test_an_upward_import_inside_a_function_fails_too():
    mods = toy({
        "toy.base": "",
        "toy.low": "def f():\n    from .high import thing  # lazy: hiding it does not help\n",
        "toy.high": "thing = 1\n",
    })  # fmt: skip
    assert problems(mods, TOY_LAYERS, "toy") == [
        "upward: toy.low:2 imports toy.high (layer 1 -> 2)"
    ]


def test_a_circle_fails():
    mods = toy({
        "toy.base": "",
        "toy.low": "from . import high2\n",
        "toy.high2": "def f():\n    from toy import low  # lazy: a circle all the same\n",
    })  # fmt: skip
    layers = (("toy", "toy.base"), ("toy.low", "toy.high2"))
    assert problems(mods, layers, "toy") == ["circle: toy.high2 <-> toy.low"]


def test_a_longer_circle_and_a_self_import_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_private_names_across_modules_fail():
    mods = toy({
        "toy.base": "_secret = 1\n__version__ = '1'\n",
        "toy.low": "from .base import _secret, __version__\n"
                   "from toy import base as b\nY = b._secret\n",
        "toy.high": "",
    })  # fmt: skip
    assert problems(mods, TOY_LAYERS, "toy") == [
        "private: toy.low:1 imports toy.base._secret",
        "private: toy.low:3: b._secret",
    ]


def test_a_function_level_import_needs_its_reason():
    mods = toy({
        "toy.base": "def f():\n    import json\n",
        "toy.low": "def g():\n    # lazy: a heavy dependency\n    import json\n    import re\n",
        "toy.high": "def h():\n    # lazy: only the first\n    import json\n\n    import re\n",
    })  # fmt: skip
    assert problems(mods, TOY_LAYERS, "toy") == [
        "lazy without '# lazy:' reason: toy.base:2: import json",
        "lazy without '# lazy:' reason: toy.high:5: import re",
    ]


def test_a_module_outside_every_layer_fails():
    mods = toy({"toy.base": "", "toy.low": "", "toy.high": "", "toy.stray": ""})
    assert problems(mods, TOY_LAYERS, "toy") == ["no layer: toy.stray (add it to LAYERS)"]
