"""Trunks as ``nn.Module``s returning a dict of multi-scale maps (finest first)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ovbench.models.clip import Clip


class ClipTrunk(nn.Module):
    """``Clip.trunk_features`` as a module: registers the CLIP visual tower so that its parameters are
    trained / moved with the segmenter. ``forward(images (B, 3, H, W))`` -> ``res2``…``res5`` (ResNets) or
    ``layer{i}`` maps (ViTs)."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.visual = clip.model.visual
        self._clip = clip

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._clip.trunk_features(images)


class TorchvisionResNetTrunk(nn.Module):
    """A torchvision ResNet's ``layer1``…``layer4`` outputs as ``res2``…``res5`` (strides 4…32)."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(images)
        out = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[f"res{i + 2}"] = x
        return out


@torch.no_grad()
def probe_channels(trunk: nn.Module, image_size: int = 64) -> OrderedDict[str, int]:
    """Channel count of each trunk map, ordered finest first (largest area first), from one zero image."""
    was_training = trunk.training
    trunk.eval()
    try:
        param = next(trunk.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        feats = trunk(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        trunk.train(was_training)
    order = sorted(feats, key=lambda k: -feats[k].shape[-2] * feats[k].shape[-1])
    return OrderedDict((k, int(feats[k].shape[1])) for k in order)
