"""Declarative training configuration: one dataclass, serialisable to/from dict, JSON and YAML."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ovbench.errors import OvbenchError

SCHEDULES = ("poly", "cosine", "step")
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the engine needs besides the model, the loss and the data.

    Units: ``iterations``, ``warmup_iterations``, ``milestones``, ``checkpoint_period`` and
    ``log_period`` count optimizer steps; ``global_batch_size`` counts samples per step summed
    over all ranks (per-rank batch = global / world size); ``lr`` is the peak learning rate
    reached after warmup; ``grad_clip`` is a max L2 norm over all parameters (None: no clipping).

    Schedules (multiplied by the linear warmup factor, which rises from ``warmup_factor`` at
    step 0 to 1 at ``warmup_iterations``, as in detectron2):
    ``poly``: ``(1 - it / iterations) ** poly_power``; ``cosine``: ``0.5 (1 + cos(pi it / iterations))``;
    ``step``: ``gamma ** (number of milestones <= it)``.

    ``optimizer``: ``adamw`` (with ``betas``) or ``sgd`` (with ``momentum``, as Mask R-CNN recipes use).
    ``amp`` enables float16 autocast + GradScaler, and only on CUDA (ignored on CPU).
    ``num_workers`` is the DataLoader worker count when the data is a map-style Dataset.
    ``lr_multipliers`` maps a parameter-name prefix to a factor on ``lr`` (GKC: ``{"trunk.": 0.1}``,
    the backbone at a tenth of the rate); the longest matching prefix wins.
    """

    iterations: int
    global_batch_size: int
    lr: float
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iterations: int = 0
    warmup_factor: float = 0.001
    schedule: str = "poly"
    poly_power: float = 0.9
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    grad_clip: float | None = None
    amp: bool = False
    seed: int = 0
    checkpoint_period: int = 1000
    log_period: int = 20
    output_dir: str = "output"
    num_workers: int = 0
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    optimizer: str = "adamw"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        problems = []
        for name in ("iterations", "global_batch_size", "checkpoint_period", "log_period"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.warmup_iterations <= self.iterations:
            problems.append(f"warmup_iterations must be in [0, iterations], got {self.warmup_iterations}")
        if not 0 < self.warmup_factor <= 1:
            problems.append(f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if list(self.milestones) != sorted(self.milestones):
            problems.append(f"milestones must be increasing, got {self.milestones}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not all(isinstance(v, (int, float)) and v >= 0 for v in self.lr_multipliers.values()):
            problems.append(f"lr_multipliers must map name prefixes to factors >= 0, got {self.lr_multipliers}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if problems:
            raise OvbenchError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON types (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, dict) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they are usually typos)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OvbenchError(f"unknown training config key(s) {unknown}; known keys: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING and f.name not in data)
        if missing:
            raise OvbenchError(f"training config lacks required key(s) {missing}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        text = (yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml")
                else json.dumps(self.to_dict(), indent=2) + "\n")
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config written by :meth:`save` (or by hand) from JSON or YAML."""
        path = Path(path)
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
        if not isinstance(data, dict):
            raise OvbenchError(f"{path}: a training config must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)
