"""The panel of worlds as typed data: ``load_panel()`` reads ``panel.yaml`` (the declaration
committed before any panel result) and checks every key, so a typo is an error, not a silently
ignored setting.

``PanelSpec.at(profile)`` gives the panel at the notebook's scale: the paper profile is the
declaration as written; the quick profile applies the file's ``quick`` block (tiny worlds, the
same plan) so CI runs every code path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..assignments import dataclass_values
from ..data.synthetic import SyntheticConfig

PANEL_FILE = Path(__file__).resolve().parent / "panel.yaml"
SYNTHETIC = "synthetic"


class PanelError(ValueError):
    """A malformed panel declaration (names the key)."""


@dataclass(frozen=True)
class World:
    """One world of the panel: a synthetic generator setting, or a real data source."""

    name: str
    question: str
    generator: Mapping[str, Any] = field(default_factory=dict)  # SyntheticConfig fields
    source: str = SYNTHETIC  # "synthetic", or a registered data set ("movielens-1m", "userlog")
    long_len: int = 0  # 0: the budget's L; else this world's (its histories are shorter)
    load: Mapping[str, Any] = field(default_factory=dict)  # loader options of a real source

    @property
    def synthetic(self) -> bool:
        return self.source == SYNTHETIC


@dataclass(frozen=True)
class Budget:
    """One training budget for every world and model (TrainConfig / ModelConfig fields)."""

    long_len: int = 10_000
    k: int = 100
    epochs: int = 1
    batch_size: int = 256
    max_train_samples: int = 0
    eval_every: int = 20_000
    eval_samples: int = 5_000
    train_seeds: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class Analysis:
    """The analysis plan (see ``twin_study.panel.stats``)."""

    reference: str = "TWIN"
    metrics: tuple[str, ...] = ("auc", "gauc")
    bootstrap: int = 1000
    level: float = 0.95
    gap_baseline: str = "Avg-Pooling"
    curve_tail: float = 0.25
    curve_tol: float = 0.002


@dataclass(frozen=True)
class SizeRules:
    """Model sizes that follow the catalogue by one rule in every world."""

    items_per_cluster_plus: int = 40
    large_vocab: int = 100

    def n_clusters_plus(self, n_items: int) -> int:
        return max(2, round(n_items / self.items_per_cluster_plus))


@dataclass(frozen=True)
class PanelSpec:
    worlds: tuple[World, ...]
    shared_generator: Mapping[str, Any]
    data_seeds: tuple[int, ...]
    size_rules: SizeRules
    models: tuple[str, ...]
    budget: Budget
    analysis: Analysis
    quick: Mapping[str, Any] = field(default_factory=dict)

    def world(self, name: str) -> World:
        for w in self.worlds:
            if w.name == name:
                return w
        raise PanelError(f"no world {name!r} in the panel; worlds: {[w.name for w in self.worlds]}")

    def seeds_of(self, world: World) -> tuple[int, ...]:
        """Data draws of a world: the declared seeds for synthetic worlds, one for real data."""
        return self.data_seeds if world.synthetic else (0,)

    def long_len_of(self, world: World) -> int:
        return world.long_len or self.budget.long_len

    def generator_config(self, world: World, data_seed: int) -> SyntheticConfig:
        """The SyntheticConfig of one draw of a synthetic world (validated)."""
        if not world.synthetic:
            raise PanelError(f"world {world.name!r} is real data ({world.source}), not generated")
        params = {**self.shared_generator, **world.generator, "seed": data_seed,
                  "name": f"{world.name}-d{data_seed}"}  # fmt: skip
        cfg = _typed(SyntheticConfig, params, f"world {world.name!r} generator")
        try:
            return cfg.validate()
        except ValueError as e:
            raise PanelError(f"world {world.name!r} generator: {e}") from e

    def at(self, profile: str) -> PanelSpec:
        """The panel at a notebook profile's scale: ``paper`` as declared, ``quick`` with the
        file's ``quick`` block (smaller worlds and budget; real data dropped unless kept)."""
        if profile != "quick":
            return self
        q = dict(self.quick)
        worlds = self.worlds if q.pop("movielens", False) else tuple(
            w for w in self.worlds if w.synthetic
        )  # fmt: skip
        budget = _typed(Budget, {**dataclasses.asdict(self.budget), **q.pop("budget", {})},
                        "quick.budget")  # fmt: skip
        analysis = dataclasses.replace(self.analysis, bootstrap=int(q.pop("bootstrap", 50)))
        out = dataclasses.replace(
            self,
            worlds=worlds,
            shared_generator={**self.shared_generator, **q.pop("shared_generator", {})},
            models=tuple(q.pop("models", self.models)),
            budget=budget,
            analysis=analysis,
            quick={},
        )
        if q:
            raise PanelError(f"unknown key(s) in the panel's quick block: {sorted(q)}")
        return out

    def only(self, names: list[str] | tuple[str, ...]) -> PanelSpec:
        """The panel restricted to the named worlds (in the declared order); empty: all."""
        if not names:
            return self
        unknown = sorted(set(names) - {w.name for w in self.worlds})
        if unknown:
            raise PanelError(
                f"unknown world(s) {unknown}; the panel declares {[w.name for w in self.worlds]}"
            )
        return dataclasses.replace(self, worlds=tuple(w for w in self.worlds if w.name in names))

    def with_world(self, world: World) -> PanelSpec:
        """The panel plus one more world (a user's own log), after the declared ones."""
        if any(w.name == world.name for w in self.worlds):
            raise PanelError(f"a world named {world.name!r} is already in the panel")
        return dataclasses.replace(self, worlds=(*self.worlds, world))

    def digest(self, world: World) -> str:
        """A digest of everything that decides one world's results (its declaration, the
        shared generator settings, seeds, size rules, models, budget and plan): a committed
        per-world result is reused only while this is unchanged."""
        blob = json.dumps(
            {"world": dataclasses.asdict(world), "shared": dict(self.shared_generator),
             "data_seeds": self.seeds_of(world), "rules": dataclasses.asdict(self.size_rules),
             "models": self.models, "budget": dataclasses.asdict(self.budget),
             "analysis": dataclasses.asdict(self.analysis)},
            sort_keys=True, default=str,
        )  # fmt: skip
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _typed(cls, params: Mapping[str, Any], where: str):
    """``cls(**params)`` with lists made tuples where the field is a tuple; unknown keys are
    a PanelError naming them."""
    values, unknown = dataclass_values(cls, params)
    if unknown:
        known = sorted(f.name for f in dataclasses.fields(cls))
        raise PanelError(f"{where}: unknown key(s) {unknown}; known: {known}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise PanelError(f"{where}: {e}") from e


def _world(name: str, raw: Any) -> World:
    if not isinstance(raw, Mapping):
        raise PanelError(f"world {name!r} must be a mapping, got {type(raw).__name__}")
    if not raw.get("question"):
        raise PanelError(f"world {name!r} must say which question it answers (question: ...)")
    return _typed(World, {"name": name, **raw}, f"world {name!r}")


def parse_panel(raw: Mapping[str, Any]) -> PanelSpec:
    """A validated PanelSpec from the YAML's mapping."""
    if not isinstance(raw, Mapping):
        raise PanelError("the panel file must hold a mapping")
    known = {f.name for f in dataclasses.fields(PanelSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PanelError(f"unknown top-level key(s) {unknown}; known: {sorted(known)}")
    missing = sorted({"worlds", "models", "budget"} - set(raw))
    if missing:
        raise PanelError(f"the panel file lacks {missing}")
    worlds = tuple(_world(n, w) for n, w in (raw["worlds"] or {}).items())
    if not worlds:
        raise PanelError("the panel declares no world")
    spec = PanelSpec(
        worlds=worlds,
        shared_generator=dict(raw.get("shared_generator") or {}),
        data_seeds=tuple(raw.get("data_seeds") or (0,)),
        size_rules=_typed(SizeRules, raw.get("size_rules") or {}, "size_rules"),
        models=tuple(raw["models"]),
        budget=_typed(Budget, raw["budget"], "budget"),
        analysis=_typed(Analysis, raw.get("analysis") or {}, "analysis"),
        quick=dict(raw.get("quick") or {}),
    )
    if spec.analysis.reference not in spec.models:
        raise PanelError(f"the reference {spec.analysis.reference!r} is not among the models")
    if spec.analysis.gap_baseline not in spec.models:
        raise PanelError(f"the gap baseline {spec.analysis.gap_baseline!r} is not a model")
    if len(spec.budget.train_seeds) < 2:
        raise PanelError("the panel needs >= 2 training seeds (a spread to judge)")
    for w in spec.worlds:  # every synthetic world's generator must be valid as declared
        if w.synthetic:
            spec.generator_config(w, spec.data_seeds[0])
    return spec


def load_panel(path: Path | str | None = None) -> PanelSpec:
    """The declared panel (``twin_study/panel/panel.yaml`` unless ``path``)."""
    path = Path(path) if path else PANEL_FILE
    if not path.is_file():
        raise PanelError(f"no panel file at {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PanelError(f"{path}: not valid YAML: {e}") from e
    return parse_panel(raw)
