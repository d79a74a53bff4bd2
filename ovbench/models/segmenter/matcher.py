"""Hungarian matching of queries to ground-truth segments (scipy ``linear_sum_assignment``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ovbench.models.segmenter.points import point_sample


def pairwise_sigmoid_ce(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over P points of sigmoid BCE between every prediction ``(N, P)`` logits and every target
    ``(M, P)`` in {0, 1} -> ``(N, M)``."""
    p = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / p


def pairwise_dice(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss ``1 - (2|p∩t| + 1) / (|p| + |t| + 1)`` between all ``(N, P)`` logits and ``(M, P)``
    targets -> ``(N, M)``."""
    p = inputs.sigmoid()
    numerator = 2 * p @ targets.T
    denominator = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher:
    """Cost = ``cost_class`` · (−softmax prob of the target class) + ``cost_mask`` · BCE + ``cost_dice``
    · Dice, the mask costs on ``num_points`` uniform random points shared by predictions and targets
    (Mask2Former defaults 2 / 5 / 5, 12544 points).

    ``__call__(pred_logits, pred_masks, targets)``: ``pred_logits`` ``(B, N, K + 1)``, ``pred_masks``
    ``(B, N, H, W)``, ``targets`` a list of B dicts with ``labels`` ``(M_b,)`` long and ``masks``
    ``(M_b, H_t, W_t)`` float in {0, 1} (any resolution). Returns B pairs ``(query_idx, target_idx)``
    of int64 tensors, each of length ``min(N, M_b)``.
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544) -> None:
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    tgt_masks: torch.Tensor) -> torch.Tensor:
        """Cost ``(N, M)`` for one image: ``logits`` ``(N, K + 1)``, ``masks`` ``(N, H, W)``, ``labels`` ``(M,)``,
        ``tgt_masks`` ``(M, H_t, W_t)``."""
        cost_class = -logits.softmax(-1)[:, labels]
        coords = torch.rand(1, self.num_points, 2, device=masks.device)
        out = point_sample(masks[:, None], coords.expand(masks.shape[0], -1, -1))[:, 0]
        tgt = point_sample(tgt_masks[:, None].to(masks.dtype), coords.expand(tgt_masks.shape[0], -1, -1))[:, 0]
        return (self.cost_class * cost_class + self.cost_mask * pairwise_sigmoid_ce(out, tgt)
                + self.cost_dice * pairwise_dice(out, tgt))

    @torch.no_grad()
    def __call__(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: list[dict]
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        indices = []
        for b, tgt in enumerate(targets):
            if len(tgt["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            cost = self.cost_matrix(pred_logits[b].float(), pred_masks[b].float(), tgt["labels"], tgt["masks"])
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
