"""EZSD component 2 (spec §4.1): CLIP proposals.

Dense anchors on one grid (:func:`dense_anchors`) are clipped to the image, cropped without
enlargement (scale 1.0, zero-padded squares), embedded by the (re-normalised) CLIP image tower in
batches and classified by a softmax over ``100 * cos`` against the text embeddings of the full
vocabulary (base + novel names). An anchor's score is ``log C - H(p)``: confident (low-entropy)
crops rank first. Class-agnostic NMS at IoU 0.7 and the top 1000 follow (:func:`clip_proposals`).

Spec defaults are for COCO at 1333x800 (stride 32, sides 32-512); the 128-px synthetic world
needs a finer grid (e.g. stride 16, sides 16/32/64/128).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from methods.ezsd.crops import box_crops, clip_input_size
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip

#: CLIP's logit scale for classifying crops (spec §3.2, §4.1).
LOGIT_SCALE = 100.0


def dense_anchors(height: int, width: int, stride: int = 32, sides: Sequence[float] = (32, 64, 128, 256, 512),
                  ratios: Sequence[float] = (0.5, 1.0, 2.0)) -> torch.Tensor:
    """Anchors ``(A, 4)`` float32 xyxy in pixels, clipped to the ``height x width`` image, those
    left without area dropped.

    As mmdet's single-level ``AnchorGenerator`` (centre offset 0): centres at ``(stride * j,
    stride * i)`` for ``i < ceil(height / stride)``, ``j < ceil(width / stride)``; per centre one
    anchor per (ratio, side), ratio-major, of area ``side**2`` and ``height / width = ratio``.
    Order: row-major centres, then ratios, then sides.
    """
    if stride <= 0 or not sides or not ratios or min(sides) <= 0 or min(ratios) <= 0:
        raise OvbenchError(f"anchors need stride > 0 and positive sides and ratios; got {stride}, "
                           f"{list(sides)}, {list(ratios)}")
    h_ratio = torch.tensor(ratios, dtype=torch.float64).sqrt()[:, None]
    side = torch.tensor(sides, dtype=torch.float64)[None, :]
    half_w = (side / h_ratio / 2).flatten()
    half_h = (side * h_ratio / 2).flatten()
    base = torch.stack([-half_w, -half_h, half_w, half_h], dim=1)                # (R * S, 4)
    ys = torch.arange(math.ceil(height / stride), dtype=torch.float64) * stride
    xs = torch.arange(math.ceil(width / stride), dtype=torch.float64) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
    anchors = (centres + base[None]).reshape(-1, 4)
    anchors[:, 0::2] = anchors[:, 0::2].clamp(0, width)
    anchors[:, 1::2] = anchors[:, 1::2].clamp(0, height)
    keep = (anchors[:, 2] > anchors[:, 0]) & (anchors[:, 3] > anchors[:, 1])
    return anchors[keep].float()


def entropy_scores(probs: torch.Tensor) -> torch.Tensor:
    """``log C - H(p)`` ``(N,)`` of probability rows ``(N, C)``, H in nats (``0 log 0 = 0``):
    0 for a uniform row, ``log C`` for a one-hot row."""
    entropy = -torch.special.xlogy(probs, probs).sum(dim=1)
    return math.log(probs.shape[1]) - entropy


@torch.no_grad()
def classify_boxes(clip: Clip, image: np.ndarray | torch.Tensor, boxes: torch.Tensor, text_emb: torch.Tensor,
                   scale: float, batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (un-normalised) CLIP image embeddings ``(N, D)`` of ``scale``x square crops of ``boxes``
    ``(N, 4)`` and their class probabilities ``(N, C)``: softmax of ``100 * cos`` against the
    L2-normalised ``text_emb`` ``(C, D)``. Crops are built and encoded ``batch`` at a time; CPU tensors."""
    size = clip_input_size(clip.model)
    text = text_emb.to(clip.device).float()
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    embeddings, probs = [torch.zeros((0, clip.embed_dim))], [torch.zeros((0, text.shape[0]))]
    for chunk in boxes.split(batch) if len(boxes) else ():
        raw = clip.model.encode_image(box_crops(image, chunk, scale, size).to(clip.device)).float()
        logits = LOGIT_SCALE * F.normalize(raw, dim=-1) @ text.T
        embeddings.append(raw.cpu())
        probs.append(logits.softmax(dim=1).cpu())
    return torch.cat(embeddings), torch.cat(probs)


def score_anchors(clip: Clip, image: np.ndarray | torch.Tensor, anchors: torch.Tensor, text_emb: torch.Tensor,
                  batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(A,)`` = ``log C - H(p)`` and class probabilities ``(A, C)`` of ``anchors``
    ``(A, 4)`` cropped at scale 1.0; ``text_emb`` ``(C, D)`` holds the full vocabulary."""
    _, probs = classify_boxes(clip, image, anchors, text_emb, scale=1.0, batch=batch)
    return entropy_scores(probs), probs


def nms_top_k(boxes: torch.Tensor, scores: torch.Tensor, iou: float = 0.7, top_k: int = 1000) -> torch.Tensor:
    """Indices (int64, best first) of the at most ``top_k`` boxes ``(N, 4)`` that survive
    class-agnostic NMS at ``iou`` by ``scores`` ``(N,)``."""
    return nms(boxes.float(), scores.float(), iou)[:top_k]


@dataclass
class Proposals:
    """CLIP proposals of one image, best first: ``boxes`` ``(K, 4)`` xyxy pixels, ``scores``
    ``(K,)`` (``log C - H``), ``labels`` ``(K,)`` arg-max class index into the vocabulary."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def clip_proposals(clip: Clip, image: np.ndarray | torch.Tensor, text_emb: torch.Tensor, stride: int = 32,
                   sides: Sequence[float] = (32, 64, 128, 256, 512), ratios: Sequence[float] = (0.5, 1.0, 2.0),
                   nms_iou: float = 0.7, top_k: int = 1000, batch: int = 100) -> tuple[Proposals, int]:
    """The CLIP proposals of an RGB ``image`` ``(H, W, 3)`` against the vocabulary ``text_emb``
    ``(C, D)``, and the number of anchors scored."""
    anchors = dense_anchors(image.shape[0], image.shape[1], stride, sides, ratios)
    scores, probs = score_anchors(clip, image, anchors, text_emb, batch)
    keep = nms_top_k(anchors, scores, nms_iou, top_k)
    return Proposals(anchors[keep], scores[keep], probs[keep].argmax(dim=1)), len(anchors)
