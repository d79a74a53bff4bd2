"""The environment card of a speed measurement: what ran it, so that speeds are compared only
within one device class (prior-art spec §5.2 item 10)."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from typing import Any

import torch

from ovbench.records.provenance import hardware

#: nvidia-smi fields of the card (``--query-gpu``), in this order.
GPU_QUERY = ("name", "uuid", "driver_version", "pstate", "clocks.sm", "clocks.max.sm", "clocks.mem",
             "power.draw", "power.limit", "temperature.gpu", "memory.used", "memory.total")


def device_class(device: torch.device | str) -> str:
    """``cpu``, or the GPU's name as a slug (``nvidia-h100-80gb-hbm3``): the unit within which
    latencies may be compared."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU model."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else hardware()["cpu"]


def _nvidia_smi(*args: str) -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def gpu_card(device: torch.device | str) -> dict[str, Any]:
    """Name, compute capability, memory (MiB) from torch, and nvidia-smi's view of the same GPU
    (driver, clocks, power, temperature, other compute processes) where nvidia-smi is present."""
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    card: dict[str, Any] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                            "total_memory_mib": props.total_memory // 2**20,
                            "multiprocessors": props.multi_processor_count}
    rows = _nvidia_smi(f"--id={index}", f"--query-gpu={','.join(GPU_QUERY)}", "--format=csv,noheader")
    if rows:
        card["nvidia_smi"] = dict(zip(GPU_QUERY, (v.strip() for v in rows[0].split(","))))
        card["compute_processes"] = _nvidia_smi(f"--id={index}", "--query-compute-apps=pid,process_name,used_memory",
                                                "--format=csv,noheader")
    return card


def environment_card(device: torch.device | str) -> dict[str, Any]:
    """Versions, numerics flags and thread counts for a measurement on ``device``, and the host's
    1/5/15-minute load average (other work on a shared CPU slows every measurement on it)."""
    device = torch.device(device)
    host = hardware()
    card: dict[str, Any] = {
        "device_class": device_class(device),
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32,
                 "float32_matmul_precision": torch.get_float32_matmul_precision()},
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cpu": host["cpu"], "cpu_count": host["cpu_count"],
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "os": host["os"], "hostname": host["hostname"],
    }
    if device.type == "cuda":
        card["gpu"] = gpu_card(device)
    return card
