"""FPN pixel decoder and sine positional encodings.

Design choice: an FPN (lateral 1x1 convs + top-down nearest upsampling + 3x3 output convs, GroupNorm)
replaces Mask2Former's 6-layer multi-scale deformable-attention encoder. It is pure PyTorch, cheap on
CPU and accepts any trunk whose maps come finest-first (ResNet res2..res5 at strides 4..32, or ViT
layer maps that all share one stride). It returns the mask-feature map at the finest level and the
three coarsest FPN outputs that the masked-attention transformer decoder attends to.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(32, channels) groups (32 groups as in Mask2Former when channels allow)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class PositionEmbeddingSine(nn.Module):
    """DETR sine positional encoding of a map ``(B, C, H, W)`` -> ``(B, 2 * num_pos_feats, H, W)``.

    Coordinates are normalised to ``(0, 2π]`` (``normalize=True`` as Mask2Former).
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        eps, scale = 1e-6, 2 * math.pi
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)[:, None].expand(h, w)
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)[None, :].expand(h, w)
        y_embed = y_embed / (h + eps) * scale
        x_embed = x_embed / (w + eps) * scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, None] / dim_t
        pos_y = y_embed[:, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
        pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
        pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
        return pos.unsqueeze(0).expand(b, -1, -1, -1).to(x.dtype)


class FPNPixelDecoder(nn.Module):
    """FPN over a trunk's multi-scale maps.

    ``in_channels`` maps feature names to channel counts, **finest first** (e.g. ``res2: 256,
    res3: 512, res4: 1024, res5: 2048``); at least ``num_levels`` names. ``forward(features)`` takes the
    trunk's dict (``(B, C_name, H_name, W_name)`` maps) and returns

    - ``mask_features`` ``(B, mask_dim, H_0, W_0)`` at the finest level (stride 4 for ResNets);
    - ``multi_scale`` a list of ``num_levels`` maps ``(B, conv_dim, H_l, W_l)``, coarsest first
      (res5, res4, res3 for ResNets), the order Mask2Former's decoder cycles through.
    """

    def __init__(self, in_channels: Mapping[str, int], conv_dim: int = 256, mask_dim: int = 256,
                 num_levels: int = 3) -> None:
        super().__init__()
        self.names = list(in_channels)
        if len(self.names) < num_levels:
            raise ValueError(f"FPN needs >= {num_levels} trunk levels, got {self.names}")
        self.num_levels = num_levels
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[n], conv_dim, 1, bias=False), group_norm(conv_dim))
            for n in self.names)
        self.output = nn.ModuleList(
            nn.Sequential(nn.Conv2d(conv_dim, conv_dim, 3, padding=1, bias=False), group_norm(conv_dim), nn.ReLU())
            for _ in self.names)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outs: list[torch.Tensor] = []
        top: torch.Tensor | None = None
        for i in reversed(range(len(self.names))):              # coarsest -> finest
            lat = self.lateral[i](features[self.names[i]])
            if top is not None:
                lat = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            top = lat
            outs.append(self.output[i](lat))
        return self.mask_features(outs[-1]), outs[: self.num_levels]
