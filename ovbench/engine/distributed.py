"""Process-group set-up for torchrun (or any launcher that sets RANK/WORLD_SIZE/LOCAL_RANK)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def default_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(init_method: str = "env://") -> torch.device:
    """Join the process group described by torchrun's env vars and return this rank's device.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; backend is nccl on CUDA and gloo on CPU.
    With ``WORLD_SIZE`` unset or 1 no group is created (a plain single-process run).
    ``init_method="env://"`` also needs ``MASTER_ADDR``/``MASTER_PORT`` (torchrun sets them);
    tests may pass ``file://<path>`` instead.
    """
    device = default_device()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=init_method,
                                rank=int(os.environ["RANK"]), world_size=world_size)
    return device


def get_rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the only rank that writes logs and checkpoints."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()
