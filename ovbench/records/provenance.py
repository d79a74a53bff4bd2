"""Provenance for result records: code version, hardware, timestamps and content digests."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import ovbench


def utc_timestamp() -> str:
    """Now, as ISO-8601 UTC with microseconds (``2026-11-23T10:00:00.123456Z``); sorts by time."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def code_version() -> dict[str, Any]:
    """ovbench's version and, when run from a git checkout, its commit and whether it is dirty."""
    info: dict[str, Any] = {"version": ovbench.__version__, "git_commit": None, "git_dirty": None}
    src = Path(ovbench.__file__).resolve().parent.parent
    if shutil.which("git") is None or not (src / ".git").exists():
        return info
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        status = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return info
    if commit.returncode == 0:
        info["git_commit"] = commit.stdout.strip()
        info["git_dirty"] = bool(status.stdout.strip())
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def hardware() -> dict[str, Any]:
    """Host, CPU model, logical cores, Python and OS; GPU names when ``nvidia-smi`` is present."""
    return {"hostname": platform.node(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "gpus": _gpu_names(), "python": platform.python_version(), "os": platform.platform()}


def combined_digest(named_digests: Iterable[tuple[str, str]]) -> str:
    """SHA-256 over sorted ``(name, sha256)`` pairs: one digest for a set of files."""
    h = hashlib.sha256()
    for name, digest in sorted(named_digests):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
