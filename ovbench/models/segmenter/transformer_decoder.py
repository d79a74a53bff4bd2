"""Mask2Former masked-attention transformer decoder with an open-vocabulary embedding head.

Shapes: B images, N queries, C hidden width, D CLIP embedding width, (H, W) mask-feature size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ovbench.models.segmenter.pixel_decoder import PositionEmbeddingSine


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them; ``(..., in_dim) -> (..., out_dim)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def attention_mask(mask_logits: torch.Tensor, size: tuple[int, int], num_heads: int) -> torch.Tensor:
    """Mask2Former's masked-attention rule.

    ``mask_logits`` ``(B, N, H, W)`` are resized (bilinear) to ``size`` = ``(h, w)``; a query may attend to
    a location where ``sigmoid >= 0.5``. A query whose mask is empty everywhere attends everywhere.
    Returns a bool mask ``(B * num_heads, N, h * w)``, ``True`` = not allowed (``nn.MultiheadAttention``).
    """
    m = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    blocked = m.sigmoid().flatten(2) < 0.5
    blocked[blocked.all(dim=-1)] = False
    return blocked.repeat_interleave(num_heads, dim=0).detach()


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention: queries ``(N, B, C)`` attend to memory ``(HW, B, C)``."""

    def __init__(self, dim: int, nheads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, nheads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, attn_mask: torch.Tensor | None,
                pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        out = self.attn(tgt + query_pos, memory + pos, memory, attn_mask=attn_mask, need_weights=False)[0]
        return self.norm(tgt + out)


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among queries ``(N, B, C)``."""

    def __init__(self, dim: int, nheads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, nheads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = tgt + query_pos
        return self.norm(tgt + self.attn(q, q, tgt, need_weights=False)[0])


class FFNLayer(nn.Module):
    """Post-norm feed-forward block ``(N, B, C) -> (N, B, C)``."""

    def __init__(self, dim: int, dim_feedforward: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.Linear(dim, dim_feedforward), nn.ReLU(), nn.Linear(dim_feedforward, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.ffn(tgt))


class MaskedTransformerDecoder(nn.Module):
    """N learnable queries refined by ``dec_layers`` layers (masked cross-attn, self-attn, FFN) that cycle
    over the ``num_levels`` multi-scale maps coarsest first.

    Predictions are made on the initial queries and after every layer (``dec_layers + 1`` outputs, deep
    supervision). Each output has

    - ``query_embeds`` ``(B, N, C)``: ``class_embed(LN(q))`` with ``class_embed`` a shared ``Linear(C, C)``
      (GKC's 256-d query embedding, the input of its distillation projections);
    - ``pred_embeds`` ``(B, N, D)``: ``proj_i(query_embeds)`` with ``proj_i = ReLU, Linear(C, D)`` one per
      output (GKC's ``embed_proj`` / ``aux_embed_porj_i``);
    - ``pred_masks`` ``(B, N, H, W)``: ``MLP(LN(q)) · mask_features``.

    ``forward(multi_scale, mask_features)`` takes ``num_levels`` maps ``(B, in_channels, h_l, w_l)`` and
    ``mask_features`` ``(B, mask_dim, H, W)``; returns the final output dict with ``aux_outputs`` (list of
    the ``dec_layers`` earlier output dicts, first to last).
    """

    def __init__(self, in_channels: int, embed_dim: int, hidden_dim: int = 256, num_queries: int = 100,
                 nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 9, mask_dim: int = 256,
                 num_levels: int = 3) -> None:
        super().__init__()
        self.num_heads = nheads
        self.num_levels = num_levels
        self.pe = PositionEmbeddingSine(hidden_dim // 2)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, 1) if in_channels != hidden_dim else nn.Identity()
            for _ in range(num_levels))
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.cross = nn.ModuleList(CrossAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.self_attn = nn.ModuleList(SelfAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.ffn = nn.ModuleList(FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, hidden_dim)
        self.embed_proj = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Linear(hidden_dim, embed_dim))
                                        for _ in range(dec_layers + 1))
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def heads(self, output: torch.Tensor, mask_features: torch.Tensor, index: int) -> dict[str, torch.Tensor]:
        """Prediction heads on queries ``(N, B, C)`` -> ``query_embeds`` ``(B, N, C)``, ``pred_embeds``
        ``(B, N, D)`` and ``pred_masks`` ``(B, N, H, W)``."""
        q = self.decoder_norm(output).transpose(0, 1)
        query = self.class_embed(q)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(q), mask_features)
        return {"query_embeds": query, "pred_embeds": self.embed_proj[index](query), "pred_masks": masks}

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor) -> dict:
        if len(multi_scale) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} feature levels, got {len(multi_scale)}")
        srcs, poss, sizes = [], [], []
        for lvl, x in enumerate(multi_scale):
            sizes.append(tuple(x.shape[-2:]))
            poss.append(self.pe(x).flatten(2).permute(2, 0, 1))                   # (hw, B, C)
            src = self.input_proj[lvl](x).flatten(2) + self.level_embed.weight[lvl][None, :, None]
            srcs.append(src.permute(2, 0, 1))
        b = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)           # (N, B, C)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, b, 1)
        outs = [self.heads(output, mask_features, 0)]
        for i in range(len(self.cross)):
            lvl = i % self.num_levels
            mask = attention_mask(outs[-1]["pred_masks"], sizes[lvl], self.num_heads)
            output = self.cross[i](output, srcs[lvl], mask, poss[lvl], query_pos)
            output = self.self_attn[i](output, query_pos)
            output = self.ffn[i](output)
            outs.append(self.heads(output, mask_features, i + 1))
        final = dict(outs[-1])
        final["aux_outputs"] = outs[:-1]
        return final
