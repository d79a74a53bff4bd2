"""The declared inputs of a speed measurement and the numerics they switch on.

One :class:`Setting` is one labelled measurement: input size, vocabulary size, batch, precision,
memory format, compilation, device, and what is timed (``model-only``: ``forward`` on pre-loaded,
pre-processed tensors; ``end-to-end``: PNG decode + preprocess + forward + postprocess to the
original size). Precisions: ``fp32`` (TF32 off), ``tf32`` (TF32 matmul and cuDNN on, CUDA only),
``bf16`` / ``fp16`` (``torch.autocast`` around the model, fp32 weights).
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch

from ovbench.errors import OvbenchError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
MEASURED = ("model-only", "end-to-end")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def parse_input_size(text: str) -> tuple[int, int]:
    """``"640x640"`` or ``"800x1216"`` (height x width, pixels) -> ``(640, 640)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise OvbenchError(f"--input {text!r}: give HEIGHTxWIDTH in pixels, e.g. 640x640 or 800x1216")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class Setting:
    """One labelled measurement (see the module docstring); ``vocab`` is None for models without one."""

    input: tuple[int, int]
    vocab: int | None
    batch: int = 1
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    device: str = "cpu"
    measured: str = "model-only"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise OvbenchError(f"--precision {self.precision!r}: choose from {', '.join(PRECISIONS)}")
        if self.measured not in MEASURED:
            raise OvbenchError(f"unknown measurement {self.measured!r}; choose from {', '.join(MEASURED)}")
        if self.batch < 1 or (self.vocab is not None and self.vocab < 1):
            raise OvbenchError(f"--batch and --vocab must be >= 1, got {self.batch} and {self.vocab}")
        if self.precision == "tf32" and torch.device(self.device).type != "cuda":
            raise OvbenchError("--precision tf32 is a CUDA mode; on the CPU use fp32, bf16 or fp16")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["input"] = f"{self.input[0]}x{self.input[1]}"
        return out

    def label(self) -> str:
        """Short text naming the setting, e.g. ``640x640 K=150 b1 bf16 channels-last model-only``."""
        parts = [f"{self.input[0]}x{self.input[1]}", f"K={self.vocab}" if self.vocab is not None else "no vocab",
                 f"b{self.batch}", self.precision]
        parts += ["channels-last"] * self.channels_last + ["compiled"] * self.compile + [self.measured]
        return " ".join(parts)


@contextlib.contextmanager
def numerics(setting: Setting, inference: bool = True) -> Iterator[None]:
    """TF32 flags and autocast for ``setting``, restored on exit; ``torch.inference_mode`` throughout
    (``torch.no_grad`` with ``inference=False``: FLOP counting, whose operator names read better)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = setting.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    device_type = torch.device(setting.device).type
    autocast = (torch.autocast(device_type, dtype=AUTOCAST[setting.precision]) if setting.precision in AUTOCAST
                else contextlib.nullcontext())
    try:
        with torch.inference_mode() if inference else torch.no_grad(), autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
