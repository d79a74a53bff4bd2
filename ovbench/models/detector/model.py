"""The detector network: torchvision's Mask R-CNN (ResNet-FPN, RPN) with open-vocabulary RoI heads.

:func:`build_detector` assembles it from a :class:`DetectorSpec`; :func:`detector_loss` is the engine's
``loss_fn``. Inputs follow torchvision: a list of float images ``(3, H, W)`` in [0, 1] (any sizes) and,
in training, one target dict per image with ``boxes`` ``(N, 4)`` xyxy pixels, ``labels`` ``(N,)`` int64 in
``1..K`` (indices into the training vocabulary, 0 being background), ``masks`` ``(N, H, W)`` uint8 when
the spec has a mask head, and optionally ``distill_boxes`` ``(N', 4)`` (pixels of the input image; the
transform rescales them with the image), ``distill_embeddings`` ``(N', D)`` and ``distill_weights`` ``(N',)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torchvision
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.detector.heads import ConvFCBoxHead, ImageBranch, OVBoxPredictor, OVRoIHeads
from ovbench.models.detector.spec import DetectorSpec, box_head_layout

#: torchvision's ImageNet normalisation (RGB in [0, 1]) for the ResNet backbones.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
#: Names of the four FPN maps the RoI heads pool from (P2-P5; "pool", P6, feeds the RPN only).
ROI_LEVELS = ["0", "1", "2", "3"]


class DetectorTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform that also rescales targets' ``distill_boxes`` with the image."""

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        size = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is not None and "distill_boxes" in target:
            target["distill_boxes"] = resize_boxes(target["distill_boxes"].float().reshape(-1, 4), size,
                                                   image.shape[-2:])
        return image, target


class OVMaskRCNN(GeneralizedRCNN):
    """Mask R-CNN whose classifier is a swappable text vocabulary (see :class:`OVBoxPredictor`).

    ``forward(images, targets)`` is torchvision's: losses in training, detections in eval mode
    (``boxes`` xyxy in input pixels, ``scores``, ``labels`` in ``1..K``, ``masks`` ``(n, 1, H, W)`` probabilities).
    """

    @property
    def predictor(self) -> OVBoxPredictor:
        return self.roi_heads.box_predictor

    def set_text(self, text: torch.Tensor, name_class: Sequence[int] | None = None,
                 seen: Sequence[bool] | None = None) -> None:
        """The vocabulary's name embeddings ``(M, D)``, each name's 0-based class (default one name per
        class) and whether each class was seen in training (default all; the ensemble's weights)."""
        self.predictor.set_text(text, name_class, seen)


def build_backbone(spec: DetectorSpec, base_dir: Path | str = ".") -> nn.Module:
    """ResNet-FPN (``spec.fpn_channels`` channels, P2-P6) of ``spec``: random weights or ``spec.backbone_weights``."""
    norm = FrozenBatchNorm2d if spec.backbone_norm == "frozen_bn" else nn.BatchNorm2d
    resnet = getattr(torchvision.models, spec.backbone)(weights=None, norm_layer=norm)
    if spec.backbone_weights is not None:
        path = Path(spec.backbone_weights).expanduser()
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise OvbenchError(f"{path}: backbone weights not found; give a local torchvision {spec.backbone} "
                               f"state dict (ovbench never downloads weights)")
        try:
            resnet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RuntimeError as e:
            raise OvbenchError(f"{path}: not a torchvision {spec.backbone} state dict "
                               f"({str(e).splitlines()[0]})") from None
    return resnet_fpn(resnet, spec.trainable_backbone_layers, spec.fpn_channels)


#: ResNet stages, last first: ``trainable_layers = n`` trains the first ``n`` (torchvision's convention).
RESNET_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")


def resnet_fpn(resnet: nn.Module, trainable_layers: int, channels: int) -> BackboneWithFPN:
    """An FPN of ``channels`` channels on ``resnet``'s C2-C5 (P2-P5, plus P6 by max-pooling P5), the
    parameters of all but the last ``trainable_layers`` stages frozen (5 also trains the stem's norm)."""
    trained = [*RESNET_STAGES[:trainable_layers], *(["bn1"] if trainable_layers == 5 else [])]
    for name, parameter in resnet.named_parameters():
        if not any(name.startswith(stage) for stage in trained):
            parameter.requires_grad_(False)
    stage2 = resnet.inplanes // 8
    return BackboneWithFPN(resnet, {f"layer{k}": str(k - 1) for k in range(1, 5)},
                           [stage2 * 2 ** (k - 1) for k in range(1, 5)], channels, extra_blocks=LastLevelMaxPool())


def build_detector(spec: DetectorSpec, clip: Clip, training_names: Sequence[str], base_dir: Path | str = "."
                   ) -> OVMaskRCNN:
    """The network of ``spec``, its classifier set to ``clip``'s embeddings of ``training_names`` under
    ``spec.template`` (one name per class; replace them with :meth:`OVMaskRCNN.set_text`)."""
    backbone = build_backbone(spec, base_dir)
    channels = backbone.out_channels
    anchors = AnchorGenerator(tuple((s,) for s in spec.anchor_sizes), ((0.5, 1.0, 2.0),) * len(spec.anchor_sizes))
    rpn = RegionProposalNetwork(
        anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
        batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": spec.rpn_pre_nms_top_n_train, "testing": spec.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": spec.rpn_post_nms_top_n_train, "testing": spec.rpn_post_nms_top_n_test},
        nms_thresh=spec.rpn_nms_thresh)
    layout = box_head_layout(spec.box_head)
    box_head = ConvFCBoxHead(channels, 7, layout, spec.conv_dim, spec.fc_dim, spec.head_norm)
    image_branch = None
    if spec.ensemble:
        image_head = ConvFCBoxHead(channels, 7, (*layout[:4], 0, 0), spec.conv_dim, spec.fc_dim, spec.head_norm)
        image_branch = ImageBranch(image_head, clip.embed_dim)
    predictor = OVBoxPredictor(box_head.cls_dim, box_head.reg_dim, clip.embed_dim, spec.temperature_init,
                               spec.learn_temperature, spec.normalize_background, spec.semantic_regression)
    masks: dict[str, Any] = {}
    if spec.mask:
        masks = {"mask_roi_pool": MultiScaleRoIAlign(ROI_LEVELS, 14, 2),
                 "mask_head": MaskRCNNHeads(channels, [spec.conv_dim] * 4, 1),
                 "mask_predictor": MaskRCNNPredictor(spec.conv_dim, spec.conv_dim, 1)}
    roi_heads = OVRoIHeads(
        MultiScaleRoIAlign(ROI_LEVELS, 7, 2), box_head, predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
        batch_size_per_image=spec.box_batch_size_per_image, positive_fraction=spec.box_positive_fraction,
        bbox_reg_weights=None, score_thresh=spec.box_score_thresh, nms_thresh=spec.box_nms_thresh,
        detections_per_img=spec.detections_per_img, box_loss=spec.box_loss, distill_weight=spec.distill_weight,
        image_branch=image_branch, **masks)
    transform = DetectorTransform(spec.min_size, spec.max_size, list(IMAGE_MEAN), list(IMAGE_STD))
    net = OVMaskRCNN(backbone, rpn, roi_heads, transform)
    if training_names:
        net.set_text(clip.encode_text(list(training_names), spec.template))
    return net


def detector_loss(model: nn.Module, batch: tuple[Sequence[torch.Tensor], Sequence[dict[str, torch.Tensor]]]
                  ) -> dict[str, torch.Tensor]:
    """The engine's ``loss_fn``: ``batch`` = (images, targets) lists (see the module docstring) ->
    ``loss_classifier``, ``loss_box_reg``, ``loss_objectness``, ``loss_rpn_box_reg``, and ``loss_mask`` /
    ``loss_distill`` when the spec has a mask head / the targets carry distillation regions."""
    images, targets = batch
    return dict(model(list(images), list(targets)))
