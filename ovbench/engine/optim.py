"""AdamW or SGD with decay-free norms/biases, and the per-iteration LR schedule (linear warmup × poly/cosine/step)."""
from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from ovbench.engine.config import TrainConfig


def _is_norm(module: nn.Module) -> bool:
    """Normalisation layers, recognised by class name: every torch one (BatchNorm*, SyncBatchNorm,
    GroupNorm, LayerNorm, InstanceNorm*, RMSNorm, LocalResponseNorm) and custom ones such as LayerNorm2d."""
    return "norm" in type(module).__name__.lower()


def _multiplier(name: str, multipliers: dict[str, float]) -> float:
    """The factor of the longest prefix of ``name`` in ``multipliers`` (1 when none matches)."""
    matches = [p for p in multipliers if name.startswith(p)]
    return float(multipliers[max(matches, key=len)]) if matches else 1.0


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (``cfg.betas``) or SGD (``cfg.momentum``), as ``cfg.optimizer`` says, over the trainable
    parameters of ``model``, grouped by (weight decay, LR multiplier).

    Parameters of normalisation layers (see :func:`_is_norm`) and every parameter named ``bias``
    get no weight decay — decaying scales and offsets only fights the normalisation, as in
    detectron2/Mask2Former; the rest get ``cfg.weight_decay``. Each group's rate is ``cfg.lr`` times
    the multiplier of the parameter's name (``cfg.lr_multipliers``). A parameter shared by several
    modules is put in one group only.
    """
    seen: set[int] = set()
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full = f"{module_name}.{name}" if module_name else name
            decay = not (_is_norm(module) or name == "bias")
            groups.setdefault((decay, _multiplier(full, cfg.lr_multipliers)), []).append(param)
    param_groups = [{"params": params, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": cfg.lr * factor}
                    for (decay, factor), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` for the optimizer step taken at 0-based ``iteration``."""
    if iteration < cfg.warmup_iterations:
        alpha = iteration / cfg.warmup_iterations
        warmup = cfg.warmup_factor * (1 - alpha) + alpha
    else:
        warmup = 1.0
    progress = min(iteration / cfg.iterations, 1.0)
    if cfg.schedule == "poly":
        main = (1 - progress) ** cfg.poly_power
    elif cfg.schedule == "cosine":
        main = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        main = cfg.gamma ** bisect.bisect_right(cfg.milestones, iteration)
    return warmup * main


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepped once per iteration: lr of step ``it`` = base lr × :func:`lr_factor` (it, cfg)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
