"""ZSSeg's second stage arithmetic (Xu et al. 2022, "A Simple Baseline for Open-Vocabulary Semantic
Segmentation with Pre-trained Vision-language Model", §3.3 and its inference code): CLIP class
probabilities of the region crops, the geometric ensemble with the proposer's own class
probabilities (separate CLIP weights for seen and unseen classes) and the semantic map."""
from __future__ import annotations

from typing import AbstractSet, Sequence

import torch

from ovbench.models.segmenter.inference import max_pool_names


def clip_class_probs(region_emb: torch.Tensor, name_emb: torch.Tensor, name_to_class: Sequence[int],
                     num_classes: int, logit_scale: float = 100.0) -> torch.Tensor:
    """CLIP's class probabilities of N regions, float32 ``(N, K)``.

    ``region_emb`` ``(N, D)`` and ``name_emb`` ``(M, D)`` are L2-normalised; name j belongs to class
    ``name_to_class[j]``. Logits are ``logit_scale`` · cosine; a class's logit is the max over its
    names; the softmax runs over the K classes (no void: ZSSeg drops its background prompt before
    the softmax).
    """
    logits = logit_scale * region_emb.float() @ name_emb.float().to(region_emb.device).T
    return max_pool_names(logits, name_to_class, num_classes, dim=-1).softmax(dim=-1)


def seen_classes(class_names: Sequence[Sequence[str]], training_names: AbstractSet[str]) -> torch.Tensor:
    """Boolean ``(K,)``: class k is seen when any of its names is one the proposer was trained with
    (FC-CLIP's category-overlap rule; exact string match)."""
    return torch.tensor([any(n in training_names for n in names) for names in class_names], dtype=torch.bool)


def class_clip_weights(seen: torch.Tensor, weight_seen: float, weight_unseen: float) -> torch.Tensor:
    """Per-class CLIP weight λ_k, float32 ``(K,)``: ``weight_seen`` for seen classes, else ``weight_unseen``."""
    return torch.where(seen, torch.tensor(float(weight_seen)), torch.tensor(float(weight_unseen)))


def geometric_ensemble(p_seg: torch.Tensor, p_clip: torch.Tensor, clip_weight: torch.Tensor) -> torch.Tensor:
    """``p[q, k] = p_seg[q, k]^(1 - λ_k) · p_clip[q, k]^λ_k``, float32 ``(Q, K)``.

    ``p_seg``, ``p_clip`` ``(Q, K)`` probabilities, ``clip_weight`` λ ``(K,)`` in [0, 1]; λ = 0 is the
    proposer alone, λ = 1 CLIP alone (0^0 = 1). Queries whose mask is empty carry ``p_clip = 1``
    (ZSSeg's ``map_back_clip_cls``), keeping ``p_seg^(1 - λ)``. The result is not renormalised.
    """
    lam = clip_weight.to(device=p_seg.device, dtype=torch.float32)
    return p_seg.float().pow(1.0 - lam) * p_clip.to(p_seg.device).float().pow(lam)


def semantic_map(probs: torch.Tensor, mask_prob: torch.Tensor) -> torch.Tensor:
    """``S[k, h, w] = Σ_q probs[q, k] · mask_prob[q, h, w]``: ``(Q, K)``, ``(Q, H, W)`` -> ``(K, H, W)``."""
    return torch.einsum("qk,qhw->khw", probs.float(), mask_prob.float())
