"""Text-guided knowledge distillation (TGKD), GKC spec §4: pure building blocks.

- :func:`region_crops` builds the frozen CLIP teacher's inputs (§4.1): one grey-background,
  box-cropped, resized, CLIP-normalised image per GT region.
- :func:`subsample` keeps at most ``MAX_LIST_LEN`` = 200 regions per batch (§4.1).
- :func:`tgkd_loss` is the loss as GKC's code computes it with ``TEXT_KD_WEIGHT = -1`` (§4.2): the
  N plain mimicry terms and the Σ_b N_b² text-guided relational terms, concatenated, one mean.
- :class:`TGKDHead` holds the student projections (``kd_proj`` and ``aux_kd_porj_i``) and the learnable
  ``alpha`` (``text_kd_logit_scale``), and returns one loss per decoder output (§4.4, §5.1).

Wiring into training (Hungarian matching, teacher forward, ``KD_WEIGHT``) lives elsewhere.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ovbench.models.clip import CLIP_MEAN, CLIP_STD

#: GKC's ``MAX_LIST_LEN``: at most this many regions are distilled per (GPU) batch.
MAX_LIST_LEN = 200
#: GKC's teacher input side (CLIP RN50).
TEACHER_SIZE = 224
#: Grey painted outside the region mask.
GREY = 128


def region_crops(images: torch.Tensor, masks: Sequence[torch.Tensor], owners: Sequence[int], size: int,
                 fill: int = GREY) -> torch.Tensor:
    """Teacher inputs, one per region (spec §4.1).

    For region ``r``: take ``images[owners[r]]``, paint the pixels outside ``masks[r]`` grey
    ``(fill, fill, fill)``, crop to the mask's tight bounding box, resize to ``size`` × ``size``
    (bicubic, aspect ratio not kept, antialiased, clamped to [0, 255]) and CLIP-normalise
    (RGB in [0, 1], :data:`~ovbench.models.clip.CLIP_MEAN` / ``CLIP_STD``).

    Args:
        images: uint8 ``(B, 3, H, W)``, RGB.
        masks: ``R`` bool ``(H, W)`` masks, each non-empty.
        owners: ``R`` image indices in ``[0, B)``: region ``r`` lies in ``images[owners[r]]``.
        size: output side (224 for CLIP RN50).
        fill: grey level outside the mask.

    Returns:
        float32 ``(R, 3, size, size)`` on ``images.device``; ``(0, 3, size, size)`` when ``R = 0``.

    Raises:
        ValueError: an empty mask, a mask whose shape is not ``(H, W)``, or ``len(masks) != len(owners)``.

    Note (spec §10 item 6): GKC's mapper crops the *original, un-augmented* image (no flip, scale or
    crop) while the student sees the augmented training crop, a mismatch the spec calls a quirk.
    ovbench instead passes the augmented training crop the student sees, so teacher and student
    look at the same pixels.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if len(masks) != len(owners):
        raise ValueError(f"{len(masks)} masks but {len(owners)} owners")
    height, width = images.shape[-2:]
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(3, 1, 1)
    out = torch.empty((len(masks), 3, size, size), dtype=torch.float32, device=images.device)
    for r, (mask, owner) in enumerate(zip(masks, owners)):
        mask = mask.to(device=images.device, dtype=torch.bool)
        if mask.shape != (height, width):
            raise ValueError(f"mask {r} has shape {tuple(mask.shape)}, images are {height}x{width}")
        rows = torch.nonzero(mask.any(dim=1)).flatten()
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        if rows.numel() == 0:
            raise ValueError(f"mask {r} is empty")
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        crop = images[int(owner), :, y0:y1, x0:x1].float()
        crop = torch.where(mask[y0:y1, x0:x1], crop, torch.full_like(crop, float(fill)))
        crop = F.interpolate(crop[None], size=(size, size), mode="bicubic", align_corners=False,
                             antialias=True)[0].clamp_(0.0, 255.0)
        out[r] = (crop / 255.0 - mean) / std
    return out


def subsample(num_regions: int, max_regions: int = MAX_LIST_LEN,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of the regions to distill: sorted int64, at most ``max_regions`` of ``range(num_regions)``.

    Drawn uniformly without replacement (a random permutation's prefix); all of them, in order,
    when ``num_regions <= max_regions``. GKC keeps ``MAX_LIST_LEN = 200`` per GPU batch.
    """
    if num_regions < 0 or max_regions < 0:
        raise ValueError(f"num_regions ({num_regions}) and max_regions ({max_regions}) must be >= 0")
    if num_regions <= max_regions:
        return torch.arange(num_regions, dtype=torch.int64)
    keep = torch.randperm(num_regions, generator=generator)[:max_regions]
    return keep.sort().values.to(torch.int64)


def tgkd_loss(student: torch.Tensor, teacher: torch.Tensor, text: torch.Tensor, image_index: torch.Tensor,
              alpha: torch.Tensor) -> torch.Tensor:
    """TGKD loss as GKC's code computes it with ``TEXT_KD_WEIGHT = -1`` (spec §4.2).

    With ``s``, ``c``, ``t`` the L2-normalised student, teacher and text embeddings (normalised here,
    so raw projections may be passed) the terms are

    - plain: ``‖s_i − c_i‖²`` for every region i (N terms);
    - relational: ``(α²·⟨t_i, t_j⟩ − ⟨s_i, c_j⟩)²`` for every ordered pair (i, j) of regions of the
      same image, i = j included (Σ_b N_b² terms); pairs across images do not count;

    and the loss is the single mean over all N + Σ_b N_b² terms (not two separately averaged terms).

    Args:
        student: ``(N, D)`` student KD projections.
        teacher: ``(N, D)`` teacher (CLIP image) embeddings of the same regions.
        text: ``(N, D)`` text embeddings of the regions' (synonym) labels.
        image_index: ``(N,)`` integer image id of each region.
        alpha: learnable scalar (``text_kd_logit_scale``).

    Returns:
        A float32 scalar (computed in float32, autocast off, whatever the inputs' dtype). For ``N = 0``
        a zero that still depends on ``student`` and ``alpha``.
    """
    if not (student.shape == teacher.shape == text.shape) or student.dim() != 2:
        raise ValueError(f"student {tuple(student.shape)}, teacher {tuple(teacher.shape)} and text "
                         f"{tuple(text.shape)} must all be the same (N, D)")
    if image_index.shape != student.shape[:1]:
        raise ValueError(f"image_index {tuple(image_index.shape)} must be ({student.shape[0]},)")
    if student.shape[0] == 0:
        return student.float().sum() * 0 + alpha.float().sum() * 0
    # float32 whatever the inputs' dtype, autocast off (AMP would run the matmuls in half precision)
    with torch.autocast(device_type=student.device.type, enabled=False):
        s = F.normalize(student.float(), dim=-1)
        c = F.normalize(teacher.float(), dim=-1)
        t = F.normalize(text.float(), dim=-1)
        plain = (s - c).pow(2).sum(dim=-1)                               # (N,)
        relation = (alpha.float() ** 2 * (t @ t.T) - s @ c.T).pow(2)     # (N, N), entry [i, j]
        same_image = image_index[:, None] == image_index[None, :]
        total = plain.sum() + (relation * same_image).sum()
        count = plain.numel() + same_image.sum()
        return total / count


class TGKDHead(nn.Module):
    """Student projections and ``alpha`` for TGKD, one loss per decoder output.

    ``projections[k]`` is output ``k``'s own ``Linear(in_dim, teacher_dim)`` (GKC's ``kd_proj`` for
    the final output and ``aux_kd_porj_i`` for the auxiliary ones; which index is which is the
    caller's convention); ``alpha`` is one learnable scalar shared by all outputs, initialised to 1.0
    (GKC's ``text_kd_logit_scale``).
    """

    def __init__(self, in_dim: int, teacher_dim: int, num_outputs: int) -> None:
        super().__init__()
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
        self.projections = nn.ModuleList(nn.Linear(in_dim, teacher_dim) for _ in range(num_outputs))
        self.alpha = nn.Parameter(torch.tensor(1.0))

    def forward(self, query_embeds: Sequence[torch.Tensor], teacher: torch.Tensor, text: torch.Tensor,
                image_index: torch.Tensor) -> list[torch.Tensor]:
        """Per-output TGKD losses.

        Args:
            query_embeds: one ``(R, in_dim)`` tensor per decoder output (``num_outputs`` of them): the
                matched queries' 256-d embeddings, rows in the same region order at every output.
            teacher: ``(R, teacher_dim)`` teacher embeddings of the regions.
            text: ``(R, teacher_dim)`` text embeddings of the regions' labels.
            image_index: ``(R,)`` image id of each region.

        Returns:
            ``num_outputs`` scalar losses (:func:`tgkd_loss`), in ``query_embeds`` order.
        """
        if len(query_embeds) != len(self.projections):
            raise ValueError(f"{len(query_embeds)} decoder outputs, head built for {len(self.projections)}")
        return [tgkd_loss(proj(q), teacher, text, image_index, self.alpha)
                for proj, q in zip(self.projections, query_embeds)]
