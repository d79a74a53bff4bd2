"""Mask2Former point sampling (``grid_sample``) and uncertainty-based importance sampling."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` ``(M, C, H, W)`` at ``coords`` ``(M, P, 2)`` in ``[0, 1]²`` (x, y)
    -> ``(M, C, P)``. Coordinates are resolution-free, so masks of different sizes share points."""
    grid = 2.0 * coords.unsqueeze(2) - 1.0
    return F.grid_sample(maps, grid, align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Point uncertainty ``-|logit|`` (highest at the decision boundary), same shape as ``logits``."""
    return -logits.abs()


def uncertain_point_coords(mask_logits: torch.Tensor, num_points: int, oversample_ratio: float = 3.0,
                           importance_ratio: float = 0.75) -> torch.Tensor:
    """Mask2Former's importance sampling for mask logits ``(M, 1, H, W)`` -> coords ``(M, num_points, 2)``.

    Draw ``oversample_ratio · num_points`` uniform points, keep the ``importance_ratio · num_points`` most
    uncertain ones and fill the rest with fresh uniform points.
    """
    m = mask_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(m, num_sampled, 2, device=mask_logits.device)
    point_unc = uncertainty(point_sample(mask_logits, coords))[:, 0]                 # (M, S)
    num_uncertain = int(importance_ratio * num_points)
    idx = torch.topk(point_unc, k=num_uncertain, dim=1)[1]
    chosen = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rand = torch.rand(m, num_points - num_uncertain, 2, device=mask_logits.device)
    return torch.cat([chosen, rand], dim=1)
