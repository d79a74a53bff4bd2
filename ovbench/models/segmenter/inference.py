"""Semantic inference: Σ_q softmax(class)[q, k] · sigmoid(mask)[q], with multi-name max pooling."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def max_pool_names(x: torch.Tensor, name_to_class: Sequence[int], num_classes: int | None = None,
                   dim: int = -1) -> torch.Tensor:
    """Max over the names of each class along ``dim``.

    ``x`` has one entry per name along ``dim`` (size K_names); ``name_to_class[j]`` is name j's class.
    Returns ``x`` with that dimension replaced by ``num_classes`` (default ``max + 1``) where entry c is the
    max over c's names. A class without names gets ``-inf``.
    """
    dim = dim % x.dim()
    index = torch.as_tensor(list(name_to_class), dtype=torch.int64, device=x.device)
    if index.numel() != x.shape[dim]:
        raise ValueError(f"name_to_class has {index.numel()} entries for {x.shape[dim]} names")
    c = int(num_classes) if num_classes is not None else int(index.max()) + 1
    moved = x.movedim(dim, -1)
    out = torch.full((*moved.shape[:-1], c), float("-inf"), dtype=x.dtype, device=x.device)
    out = out.scatter_reduce(-1, index.expand_as(moved), moved, reduce="amax", include_self=True)
    return out.movedim(-1, dim)


def semantic_scores(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """``S[b, k] = Σ_q softmax(pred_logits[b, q])[k] · σ(pred_masks[b, q])`` for the K real classes.

    ``pred_logits`` ``(B, N, K + 1)`` (void last, dropped after the softmax), ``pred_masks``
    ``(B, N, H, W)`` logits -> ``(B, K, H, W)``.
    """
    probs = pred_logits.softmax(-1)[..., :-1]
    return torch.einsum("bqk,bqhw->bkhw", probs, pred_masks.sigmoid())


def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                       name_to_class: Sequence[int] | None = None, out_size: tuple[int, int] | None = None,
                       num_classes: int | None = None, pool: str = "logits"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel class scores and label map.

    ``pred_logits`` ``(B, N, K_names + 1)``, ``pred_masks`` ``(B, N, h, w)``. Mask logits are resized
    (bilinear) to ``out_size`` first. With ``name_to_class`` (length K_names, a class may own several
    names) names are merged into ``num_classes`` classes by max pooling:

    - ``pool="logits"`` (GKC, spec §2.2): max over a class's name logits before the softmax (void kept);
    - ``pool="scores"``: the per-name scores ``S`` are computed first, then max-pooled per class.

    Returns ``scores`` ``(B, C, H, W)`` and ``labels`` ``(B, H, W)`` int64 (argmax over C).
    """
    if out_size is not None:
        pred_masks = F.interpolate(pred_masks, size=tuple(out_size), mode="bilinear", align_corners=False)
    if name_to_class is None:
        scores = semantic_scores(pred_logits, pred_masks)
    elif pool == "logits":
        merged = max_pool_names(pred_logits[..., :-1], name_to_class, num_classes, dim=-1)
        scores = semantic_scores(torch.cat([merged, pred_logits[..., -1:]], dim=-1), pred_masks)
    elif pool == "scores":
        scores = max_pool_names(semantic_scores(pred_logits, pred_masks), name_to_class, num_classes, dim=1)
    else:
        raise ValueError(f"pool must be 'logits' or 'scores', got {pool!r}")
    return scores, scores.argmax(1)
