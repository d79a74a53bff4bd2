"""Cosine classifier against frozen text embeddings plus a learned void ("no-object") embedding."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """``logits = τ · cos(v, [t_1 … t_K, e_void])`` with τ = exp(``logit_scale``) clamped at ``max_scale``.

    ``logit_scale`` is learned, initialised to ``ln(1 / init_temperature)`` (CLIP: 0.07 -> τ₀ ≈ 14.29) and
    clamped as CLIP clamps it (τ ≤ 100). The void embedding ``(1, D)`` is learned, init N(0, D^-0.5).

    ``forward(embeds, text)``: ``embeds`` ``(B, N, D)`` query embeddings, ``text`` ``(K, D)`` (shared) or
    ``(B, K, D)`` (per-image vocabularies) frozen text embeddings; returns logits ``(B, N, K + 1)``,
    the void class last.
    """

    def __init__(self, embed_dim: int, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.void_embedding = nn.Parameter(torch.randn(1, embed_dim) * embed_dim ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log_scale = math.log(max_scale)

    def forward(self, embeds: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        text = text.detach().to(embeds.dtype)
        if text.dim() == 2:
            text = text.unsqueeze(0).expand(embeds.shape[0], -1, -1)
        bank = torch.cat([text, self.void_embedding.unsqueeze(0).expand(text.shape[0], -1, -1)], dim=1)
        cos = torch.einsum("bnd,bkd->bnk", F.normalize(embeds, dim=-1), F.normalize(bank, dim=-1))
        return self.logit_scale.clamp(max=self.max_log_scale).exp() * cos
