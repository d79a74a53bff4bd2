"""The detector's R-CNN heads: the conv/FC box head, the open-vocabulary box predictor and the RoI heads.

Class indices follow torchvision: 0 is background, ``1..K`` the vocabulary's classes. The predictor
scores a region embedding against frozen text embeddings (ViLD-text / EZSD, spec ``ezsd.md`` §5.2) and
regresses 4 class-agnostic deltas; :class:`OVRoIHeads` wires it into torchvision's RoI heads and adds
the distillation loss (§5.3) and a class-agnostic mask head. With an :class:`ImageBranch` the heads are
ViLD-ensemble's (§10): the image branch learns only from distillation, the text branch only from
classification, and test scores combine both (:func:`ensemble_scores`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.ops import boxes as box_ops

from ovbench.errors import OvbenchError

#: ViLD-ensemble's λ: seen classes score p_text^λ p_img^(1-λ), unseen ones p_text^(1-λ) p_img^λ.
ENSEMBLE_WEIGHT = 2.0 / 3.0


def _conv(in_channels: int, out_channels: int, norm: str) -> list[nn.Module]:
    """3x3 conv (+ BatchNorm) + ReLU, Kaiming-initialised."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none")
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return [conv, *([nn.BatchNorm2d(out_channels)] if norm == "bn" else []), nn.ReLU(inplace=True)]


def _stack(in_channels: int, resolution: int, spatial: bool, convs: int, fcs: int, conv_dim: int, fc_dim: int,
           norm: str, flatten: bool) -> tuple[nn.Sequential, int, bool]:
    """``convs`` convs then ``fcs`` FCs (+ ReLU) on ``(R, C, S, S)`` maps (``spatial``) or ``(R, C)`` vectors;
    returns the module, its output width (channels if still spatial) and whether it is still spatial.
    ``flatten``: flatten a spatial output."""
    layers: list[nn.Module] = []
    width = in_channels
    for _ in range(convs):
        layers += _conv(width, conv_dim, norm)
        width = conv_dim
    if spatial and (fcs or flatten):
        layers.append(nn.Flatten(1))
        width, spatial = width * resolution * resolution, False
    for _ in range(fcs):
        layers += [nn.Linear(width, fc_dim), nn.ReLU(inplace=True)]
        width = fc_dim
    return nn.Sequential(*layers), width, spatial


class ConvFCBoxHead(nn.Module):
    """mmdet's ConvFCBBoxHead: shared convs/FCs, then a classification and a regression branch.

    ``layout`` = (shared convs, shared FCs, cls convs, cls FCs, reg convs, reg FCs) (see
    :func:`~ovbench.models.detector.spec.box_head_layout`). ``forward(x (R, in_channels, S, S))`` ->
    ``(h_cls (R, cls_dim), h_reg (R, reg_dim))``; a branch without layers passes the (flattened) shared output.
    """

    def __init__(self, in_channels: int, resolution: int, layout: Sequence[int], conv_dim: int = 256,
                 fc_dim: int = 1024, norm: str = "none") -> None:
        super().__init__()
        shared_convs, shared_fcs, cls_convs, cls_fcs, reg_convs, reg_fcs = layout
        self.shared, width, spatial = _stack(in_channels, resolution, True, shared_convs, shared_fcs, conv_dim,
                                             fc_dim, norm, flatten=False)
        self.cls_branch, self.cls_dim, _ = _stack(width, resolution, spatial, cls_convs, cls_fcs, conv_dim, fc_dim,
                                                  norm, flatten=True)
        self.reg_branch, self.reg_dim, _ = _stack(width, resolution, spatial, reg_convs, reg_fcs, conv_dim, fc_dim,
                                                  norm, flatten=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shared = self.shared(x)
        return self.cls_branch(shared), self.reg_branch(shared)

    def classification_features(self, x: torch.Tensor) -> torch.Tensor:
        """``h_cls`` alone (the distillation path): ``(R, in_channels, S, S)`` -> ``(R, cls_dim)``."""
        return self.cls_branch(self.shared(x))


class OVBoxPredictor(nn.Module):
    """Open-vocabulary classifier and class-agnostic box regressor.

    Region embedding ``r = L2norm(W_proj h_cls + b)`` (``embed_dim``, CLIP's joint width). Logits
    ``(R, 1 + K)``: column 0 is the background, ``T (w_bg . r)`` (``w_bg`` a learned vector, L2-normalised
    first when ``normalize_background``), column ``k`` is ``T max_{names n of class k} (r . t_n)`` with
    ``t_n`` the frozen, L2-normalised text embeddings (:meth:`set_text`; ``seen`` ``(K,)`` bool marks the
    classes among the training names, for the ViLD ensemble). ``T = exp(log_temperature)``,
    learnt when ``learn_temperature``. Box deltas ``(R, 4)`` come from a linear layer on ``h_reg``, or with
    ``semantic_regression`` on ``[h_reg ; e]`` where ``e`` is the text embedding of each RoI's class
    (:meth:`class_embeddings`; zero for background).
    """

    def __init__(self, cls_dim: int, reg_dim: int, embed_dim: int, temperature_init: float = 100.0,
                 learn_temperature: bool = True, normalize_background: bool = False,
                 semantic_regression: bool = False) -> None:
        super().__init__()
        self.embed_dim, self.normalize_background = embed_dim, normalize_background
        self.semantic_regression = semantic_regression
        self.proj = nn.Linear(cls_dim, embed_dim)
        self.background = nn.Parameter(torch.randn(embed_dim) * 0.01)
        log_t = torch.tensor(math.log(temperature_init))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self.regressor = nn.Linear(reg_dim + (embed_dim if semantic_regression else 0), 4)
        nn.init.normal_(self.regressor.weight, std=0.001)
        nn.init.zeros_(self.regressor.bias)
        # the vocabulary: swapped at will, never saved with the weights
        self.register_buffer("text", torch.zeros(0, embed_dim), persistent=False)
        self.register_buffer("name_class", torch.zeros(0, dtype=torch.int64), persistent=False)
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.num_classes = 0

    def set_text(self, text: torch.Tensor, name_class: Sequence[int] | None = None,
                 seen: Sequence[bool] | None = None) -> None:
        """The vocabulary: ``text`` ``(M, D)`` name embeddings (L2-normalised here), ``name_class``
        ``(M,)``, the 0-based class of each name (default: one name per class, ``0..M-1``), and ``seen``
        ``(K,)``, whether each class was a training class (default: all)."""
        if text.ndim != 2 or text.shape[1] != self.embed_dim or not len(text):
            raise OvbenchError(f"text embeddings must be (M >= 1, {self.embed_dim}), got {tuple(text.shape)}")
        classes = torch.arange(len(text)) if name_class is None else torch.as_tensor(name_class, dtype=torch.int64)
        num_classes = int(classes.max()) + 1
        if classes.shape != (len(text),) or classes.min() < 0 or len(set(classes.tolist())) != num_classes:
            raise OvbenchError("name_class must give each name a class in 0..K-1, every class at least one name")
        seen_mask = torch.ones(num_classes, dtype=torch.bool) if seen is None else \
            torch.as_tensor(seen, dtype=torch.bool)
        if seen_mask.shape != (num_classes,):
            raise OvbenchError(f"seen must hold one flag per class ({num_classes}), got {tuple(seen_mask.shape)}")
        device = self.proj.weight.device
        self.text = F.normalize(text.detach().float(), dim=-1).to(device)
        self.name_class = classes.to(device)
        self.seen = seen_mask.to(device)
        self.num_classes = num_classes

    @property
    def temperature(self) -> torch.Tensor:
        """T, a scalar tensor."""
        return self.log_temperature.exp()

    def embed(self, h_cls: torch.Tensor) -> torch.Tensor:
        """Region embeddings ``(R, D)``, L2-normalised, from classification features ``(R, cls_dim)``."""
        return F.normalize(self.proj(h_cls), dim=-1)

    def class_logits(self, r: torch.Tensor) -> torch.Tensor:
        """``(R, 1 + K)`` logits of region embeddings ``r`` ``(R, D)`` (see the class docstring)."""
        background = F.normalize(self.background, dim=0) if self.normalize_background else self.background
        return torch.cat([self.temperature * (r @ background)[:, None], self.foreground_logits(r)], dim=1)

    def foreground_logits(self, r: torch.Tensor) -> torch.Tensor:
        """``(R, K)`` class logits without the background column: ``T max_{names n of k} (r . t_n)``."""
        if not self.num_classes:
            raise OvbenchError("the box predictor has no vocabulary; call set_text / set_vocabulary first")
        names = r @ self.text.T                                                  # (R, M)
        pooled = names.new_full((len(r), self.num_classes), float("-inf"))
        pooled = pooled.scatter_reduce(1, self.name_class.expand_as(names), names, reduce="amax")
        return self.temperature * pooled

    def class_embeddings(self, r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Text embedding ``(R, D)`` of each RoI's class ``labels`` ``(R,)`` (0 = background -> zeros);
        for a class with several names, the name closest to the RoI's embedding ``r``."""
        sims = (r.detach() @ self.text.T).masked_fill(self.name_class[None] != (labels[:, None] - 1), float("-inf"))
        e = self.text[sims.argmax(dim=1)]
        return e * (labels > 0)[:, None].to(e.dtype)

    def box_deltas(self, h_reg: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        """Class-agnostic deltas ``(R, 4)`` from ``h_reg`` ``(R, reg_dim)`` (and ``e`` ``(R, D)`` when semantic)."""
        if self.semantic_regression:
            if e is None:
                raise OvbenchError("semantic box regression needs the class embeddings e")
            h_reg = torch.cat([h_reg, e.to(h_reg.dtype)], dim=1)
        return self.regressor(h_reg)

    def forward(self, h_cls: torch.Tensor, h_reg: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits (R, 1 + K), deltas (R, 4), r (R, D))``. Semantic regression uses the class of
        ``labels`` (training: each RoI's assigned GT class, 0 = background) or, when ``labels`` is None,
        the arg-max of the logits (testing)."""
        r = self.embed(h_cls)
        logits = self.class_logits(r)
        e = None
        if self.semantic_regression:
            e = self.class_embeddings(r, logits.argmax(dim=1) if labels is None else labels)
        return logits, self.box_deltas(h_reg, e), r


class ImageBranch(nn.Module):
    """ViLD-ensemble's image branch (spec ``ezsd.md`` §10): its own box-head convs/FCs and projection,
    trained only by distillation. ``forward(x (R, C, S, S))`` -> L2-normalised embeddings ``(R, D)``."""

    def __init__(self, head: ConvFCBoxHead, embed_dim: int) -> None:
        super().__init__()
        self.head = head
        self.proj = nn.Linear(head.cls_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.head.classification_features(x)), dim=-1)


def ensemble_scores(p_text: torch.Tensor, p_img: torch.Tensor, seen: torch.Tensor,
                    weight: float = ENSEMBLE_WEIGHT) -> torch.Tensor:
    """ViLD-ensemble's geometric mean ``(R, K)`` of the text branch's class probabilities ``p_text``
    ``(R, K)`` and the image branch's ``p_img`` ``(R, K)``: ``p_text^w p_img^(1-w)`` for ``seen``
    ``(K,)`` classes, ``p_text^(1-w) p_img^w`` for the others."""
    w_text = torch.where(seen, weight, 1.0 - weight).to(p_text.dtype)
    return p_text.pow(w_text) * p_img.pow(1.0 - w_text)


class OVRoIHeads(RoIHeads):
    """torchvision's RoIHeads with a :class:`ConvFCBoxHead`, an :class:`OVBoxPredictor`, class-agnostic
    box regression and masks, and the distillation loss.

    Training losses: ``loss_classifier`` (softmax cross-entropy over ``1 + K``), ``loss_box_reg`` (on the
    positives' class-agnostic deltas, summed and divided by the number of sampled RoIs), ``loss_mask``
    (class-agnostic, when there is a mask head) and, when every target has ``distill_boxes``,
    ``loss_distill`` = λ (1/N) Σ_j w_j ||r_j - v̂_j||_1 over the batch's N distillation regions, where
    ``r_j`` is the region embedding of ``distill_boxes[j]`` (``(N_i, 4)`` xyxy, in the resized image)
    through the same RoIAlign, shared convs, classification branch and projection, ``v̂_j`` the
    L2-normalised ``distill_embeddings[j]`` (``(N_i, D)``) and ``w_j`` the ``distill_weights`` (``(N_i,)``,
    default ones) divided by their mean in each image.

    With an ``image_branch`` (ViLD-ensemble) the distillation regions' ``r_j`` come from that branch
    instead, so the text branch learns only from classification; test scores are
    :func:`ensemble_scores` of the text branch's softmax over ``1 + K`` (background dropped) and the
    image branch's softmax over the ``K`` class logits (ViLD's code gives it no background). Positional
    and other keyword arguments are torchvision's ``RoIHeads``'.
    """

    def __init__(self, *args: Any, box_loss: str = "l1", distill_weight: float = 1.0,
                 image_branch: ImageBranch | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.box_loss, self.distill_weight = box_loss, distill_weight
        self.image_branch = image_branch

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]] | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            return [], self._losses(features, proposals, image_shapes, targets)
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        logits, deltas, _ = self.box_predictor(*self.box_head(pooled))
        class_scores = F.softmax(logits, -1)[:, 1:]
        if self.image_branch is not None:
            p_img = F.softmax(self.box_predictor.foreground_logits(self.image_branch(pooled)), -1)
            class_scores = ensemble_scores(class_scores, p_img, self.box_predictor.seen)
        boxes, scores, labels = self.postprocess_agnostic(class_scores, deltas, proposals, image_shapes)
        result = [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)]
        if self.has_mask():
            mask_logits = self._mask_logits(features, boxes, image_shapes)
            for r, probs in zip(result, maskrcnn_inference(mask_logits, [torch.zeros_like(lab) for lab in labels])):
                r["masks"] = probs
        return result, {}

    def _losses(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]] | None
                ) -> dict[str, torch.Tensor]:
        if targets is None:
            raise OvbenchError("the detector needs targets in training mode")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        h_cls, h_reg = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        all_labels = torch.cat(labels)
        logits, deltas, _ = self.box_predictor(h_cls, h_reg, all_labels)
        losses = {"loss_classifier": F.cross_entropy(logits, all_labels),
                  "loss_box_reg": self.box_regression_loss(deltas, all_labels, torch.cat(regression_targets))}
        if self.has_mask():
            positive = [torch.where(lab > 0)[0] for lab in labels]
            mask_proposals = [p[i] for p, i in zip(proposals, positive)]
            mask_logits = self._mask_logits(features, mask_proposals, image_shapes)
            losses["loss_mask"] = maskrcnn_loss(mask_logits, mask_proposals, [t["masks"] for t in targets],
                                                [torch.zeros_like(t["labels"]) for t in targets],
                                                [m[i] for m, i in zip(matched_idxs, positive)])
        has_distill = ["distill_boxes" in t for t in targets]
        if any(has_distill):
            if not all(has_distill):
                raise OvbenchError("distill_boxes must be given for every image of a batch or for none")
            losses["loss_distill"] = self.distillation_loss(features, image_shapes, targets)
        return losses

    def box_regression_loss(self, deltas: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of the positives' deltas ``(R, 4)`` against their targets, summed, / R (sampled RoIs)."""
        positive = labels > 0
        if self.box_loss == "l1":
            total = (deltas[positive] - targets[positive]).abs().sum()
        else:
            total = F.smooth_l1_loss(deltas[positive], targets[positive], beta=1 / 9, reduction="sum")
        return total / max(labels.numel(), 1)

    def distillation_loss(self, features: dict[str, torch.Tensor], image_shapes: list[tuple[int, int]],
                          targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """λ (1/N) Σ_j w_j ||r_j - v̂_j||_1 (see the class docstring); zero when N = 0."""
        boxes = [t["distill_boxes"].float().reshape(-1, 4) for t in targets]
        count = sum(len(b) for b in boxes)
        if count == 0:
            return self.box_predictor.proj.weight.sum() * 0.0
        weights = []
        for t, b in zip(targets, boxes):
            w = t["distill_weights"].float() if "distill_weights" in t else b.new_ones(len(b))
            weights.append(w / w.mean().clamp_min(1e-12) if len(w) else w)
        target = F.normalize(torch.cat([t["distill_embeddings"].float().reshape(len(b), -1)
                                        for t, b in zip(targets, boxes)]), dim=-1)
        if target.shape[1] != self.box_predictor.embed_dim:
            raise OvbenchError(f"distill_embeddings are {target.shape[1]}-d; the detector's CLIP space is "
                               f"{self.box_predictor.embed_dim}-d (extract them with the same CLIP)")
        pooled = self.box_roi_pool(features, boxes, image_shapes)
        if self.image_branch is not None:
            r = self.image_branch(pooled)
        else:
            r = self.box_predictor.embed(self.box_head.classification_features(pooled))
        return self.distill_weight * (torch.cat(weights) * (r - target.to(r.dtype)).abs().sum(dim=1)).sum() / count

    def _mask_logits(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                     image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """Class-agnostic mask logits ``(R, 1, M, M)`` of ``boxes``."""
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_shapes)))

    def postprocess_agnostic(self, scores: torch.Tensor, deltas: torch.Tensor, proposals: list[torch.Tensor],
                             image_shapes: list[tuple[int, int]]
                             ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per image: boxes ``(n, 4)`` (one decoded box per RoI, shared by its classes), scores ``(n,)``
        and labels ``(n,)`` in ``1..K`` from the class ``scores`` ``(R, K)`` and ``deltas`` ``(R, 4)`` of
        all RoIs, after the score floor, per-class NMS and the cap."""
        boxes_per_image = [len(p) for p in proposals]
        decoded = self.box_coder.decode(deltas, proposals).reshape(-1, 4)
        out_boxes, out_scores, out_labels = [], [], []
        for b, s, shape in zip(decoded.split(boxes_per_image), scores.split(boxes_per_image), image_shapes):
            b = box_ops.clip_boxes_to_image(b, shape)
            roi, label = torch.where(s > self.score_thresh)
            b, s, label = b[roi], s[roi, label], label + 1
            keep = box_ops.remove_small_boxes(b, min_size=1e-2)
            b, s, label = b[keep], s[keep], label[keep]
            keep = box_ops.batched_nms(b, s, label, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(b[keep])
            out_scores.append(s[keep])
            out_labels.append(label[keep])
        return out_boxes, out_scores, out_labels
