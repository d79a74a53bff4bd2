"""Atomic checkpoint files: ``<dir>/checkpoint_<iter>.pt`` plus a ``last_checkpoint`` pointer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ovbench.records.store import atomic_write

POINTER = "last_checkpoint"


def checkpoint_path(output_dir: str | Path, iteration: int) -> Path:
    """Where the checkpoint taken after ``iteration`` completed steps lives."""
    return Path(output_dir) / f"checkpoint_{iteration:07d}.pt"


def save_checkpoint(state: dict[str, Any], output_dir: str | Path, iteration: int) -> Path:
    """Save ``state`` atomically, then point ``last_checkpoint`` at it (also atomically).

    A failure at any point leaves the previous checkpoint and pointer untouched and no
    partial file behind.
    """
    path = checkpoint_path(output_dir, iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write(path.parent / POINTER, lambda f: f.write(path.name.encode() + b"\n"))
    return path


def load_last_checkpoint(output_dir: str | Path) -> dict[str, Any] | None:
    """The checkpoint named by ``<output_dir>/last_checkpoint``, on CPU; None when there is none.

    Loaded with ``weights_only=True``: checkpoints hold only tensors and plain python values.
    """
    pointer = Path(output_dir) / POINTER
    if not pointer.is_file():
        return None
    return torch.load(pointer.parent / pointer.read_text().strip(), map_location="cpu", weights_only=True)
