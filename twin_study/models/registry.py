"""The lifelong modules of the study, one entry each (issue 25).

Every CTR model of the study shares one trunk (embeddings, short-term branch, other features,
MLP; ``models/ctr.py``) and differs only in its lifelong branch (paper §4.3). A lifelong module
is declared once, in its own file under ``models/lifelong/``, by a ``LifelongModule``:

* its **label** (what tables and figures print) and a one-line **description**;
* whether it is **two-stage** (a GSU selects k behaviours, the shared ESU attends over them) or
  a single-stage branch that returns the interest vector itself;
* how it is **built** (``build(ctx)``: a ``GSU`` for a two-stage module, else the branch);
* the flat ``ModelConfig`` **fields** it reads beyond the trunk, and its own typed **options**
  (a dataclass, given as ``ModelConfig.options``: a new module adds settings without adding
  fields to ``ModelConfig``, so no existing cache key moves);
* its **prerequisite**, if it needs another model trained first (pre-trained item vectors, an
  auxiliary model), and what that model hands over;
* its **sample builder**, if its batches are not the raw log's (TWIN-V2: virtual items).

Labels, prerequisites, throughput probes, plots and notebooks read this registry; adding a
module is one new file plus its tests (``tests/test_registry.py`` registers a toy module in
one file and trains it through ``run()``).

This module imports nothing of the study, so that ``models.config`` can validate against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class RegistryError(ValueError):
    """A module declared twice, or asked for under a name nobody declared."""


@dataclass(frozen=True)
class Prerequisite:
    """A model trained (or loaded from the results cache) before this one.

    module: its ``long_module``; the rest of its ``ModelConfig`` is this run's, with the fields
    in ``reset`` set back to their defaults (fields the auxiliary model does not read, so that
    every variant that needs it shares one auxiliary run). seed_offset: its ``TrainConfig.seed``
    is this run's plus this (0: the same seed). provide(cfg, trained) -> the keyword arguments
    of this module's ``build`` context (``BuildContext.extras``); it runs once per run, never
    per step, and is where once-per-run O(V) work belongs (k-means over item vectors)."""

    module: str
    provide: Callable[[Any, Any], dict[str, Any]]  # (ModelConfig, trained CTRModel) -> extras
    reset: tuple[str, ...] = ()
    seed_offset: int = 0


@dataclass
class BuildContext:
    """What a module's ``build`` gets: the validated config, the data set, the trunk's
    ``FeatureEmbedder`` and, for a two-stage module, the ESU it shares (None otherwise), the
    extras its prerequisite provided, and ``owner``: the CTR model being built, for a module
    that must register a sub-module of its own beside the branch (w/o Para-Con's frozen
    copy)."""

    cfg: Any  # ModelConfig
    ds: Any  # data.schema.Dataset
    emb: Any  # models.embedding.FeatureEmbedder
    esu: Any  # models.attention.TwinAttention | None
    extras: dict[str, Any] = field(default_factory=dict)
    owner: Any = None  # models.ctr.CTRModel

    def need(self, name: str, how: str) -> Any:
        """The extra ``name``, or a clear error saying how to provide it."""
        if self.extras.get(name) is None:
            raise ValueError(f"{self.cfg.long_module} needs {name}=... ({how})")
        return self.extras[name]

    @property
    def options(self) -> Any:
        """This module's typed options (``options_of``)."""
        return options_of(self.cfg)


@dataclass(frozen=True)
class LifelongModule:
    name: str  # the ModelConfig.long_module value
    label: str  # short name in tables and figures
    description: str  # one line: what it retrieves and how
    build: Callable[[BuildContext], Any]  # -> a GSU (two-stage) or the whole branch
    two_stage: bool = True
    esu_mode: str = "split"  # TwinAttention mode of the shared ESU (two-stage only)
    fields: tuple[str, ...] = ()  # flat ModelConfig fields it reads beyond the trunk
    options: type | None = None  # dataclass of its own settings (ModelConfig.options)
    prerequisite: Prerequisite | None = None
    # (model, ds) -> a data.batching.SampleBuilder, when the module reads something other than
    # the raw log (TWIN-V2's virtual items); None: the plain SampleBuilder.
    sample_builder: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise RegistryError(f"module name {self.name!r} must be an identifier")
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise RegistryError(f"{self.name}: options must be a dataclass, got {self.options}")


_REGISTRY: dict[str, LifelongModule] = {}


def register(module: LifelongModule) -> LifelongModule:
    """Add ``module``; a name can be declared once (``unregister`` first to replace it)."""
    if module.name in _REGISTRY:
        raise RegistryError(f"lifelong module {module.name!r} is already registered")
    _REGISTRY[module.name] = module
    return module


def unregister(name: str) -> None:
    """Remove a module (tests that register a toy one clean up with this)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> LifelongModule:
    if name not in _REGISTRY:
        raise RegistryError(f"unknown long_module {name!r}; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> list[str]:
    """Every registered module, in registration order (Table 4's, then the ablations)."""
    return list(_REGISTRY)


def modules() -> Mapping[str, LifelongModule]:
    return dict(_REGISTRY)


def label(name: str) -> str:
    """The module's label; an unknown name is returned as it is (tables of old results)."""
    return _REGISTRY[name].label if name in _REGISTRY else name


def module_of(label_text: str) -> str:
    """The module whose label is ``label_text``."""
    for m in _REGISTRY.values():
        if m.label == label_text:
            return m.name
    raise RegistryError(
        f"no lifelong module is labelled {label_text!r}; labels: "
        f"{sorted(m.label for m in _REGISTRY.values())}"
    )


def two_stage() -> list[str]:
    """The two-stage modules (a GSU, then the shared ESU)."""
    return [m.name for m in _REGISTRY.values() if m.two_stage]


def options_of(cfg: Any) -> Any:
    """``cfg.options`` as the module's typed options dataclass (defaults filled in); None for
    a module without options. An option the module does not declare is an error."""
    spec = get(cfg.long_module)
    given = dict(cfg.options or {})
    if spec.options is None:
        if given:
            raise ValueError(
                f"ModelConfig: {cfg.long_module} takes no options, got {sorted(given)}"
            )
        return None
    known = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(
            f"ModelConfig: unknown option(s) {unknown} for {cfg.long_module}; "
            f"its options: {sorted(known)}"
        )
    return spec.options(**given)
