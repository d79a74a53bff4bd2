"""The open-vocabulary Mask2Former-style segmenter (GKC's segmentation framework, spec §2)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ovbench.models.segmenter.backbones import probe_channels
from ovbench.models.segmenter.classifier import CosineClassifier
from ovbench.models.segmenter.inference import semantic_inference
from ovbench.models.segmenter.losses import Segment, SetCriterion
from ovbench.models.segmenter.pixel_decoder import FPNPixelDecoder
from ovbench.models.segmenter.transformer_decoder import MaskedTransformerDecoder


class Segmenter(nn.Module):
    """trunk -> FPN pixel decoder -> masked-attention transformer decoder -> cosine classifier.

    ``trunk`` is a module mapping images ``(B, 3, H, W)`` (normalised by the caller) to a dict of maps
    (:class:`~ovbench.models.segmenter.backbones.ClipTrunk`,
    :class:`~ovbench.models.segmenter.backbones.TorchvisionResNetTrunk`); ``in_channels`` (finest
    first) is probed from it when not given. ``embed_dim`` is the text-embedding width D.
    """

    def __init__(self, trunk: nn.Module, embed_dim: int, in_channels: Mapping[str, int] | None = None,
                 num_queries: int = 100, hidden_dim: int = 256, conv_dim: int = 256, mask_dim: int = 256,
                 nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 9,
                 criterion: SetCriterion | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        channels = in_channels if in_channels is not None else probe_channels(trunk)
        self.pixel_decoder = FPNPixelDecoder(channels, conv_dim=conv_dim, mask_dim=mask_dim)
        self.transformer_decoder = MaskedTransformerDecoder(
            conv_dim, embed_dim, hidden_dim=hidden_dim, num_queries=num_queries, nheads=nheads,
            dim_feedforward=dim_feedforward, dec_layers=dec_layers, mask_dim=mask_dim)
        self.classifier = CosineClassifier(embed_dim)
        self.criterion = criterion if criterion is not None else SetCriterion()

    def forward(self, images: torch.Tensor, text_embeddings: torch.Tensor,
                syn_text_embeddings: torch.Tensor | None = None) -> dict:
        """``images`` ``(B, 3, H, W)``, ``text_embeddings`` ``(K, D)`` or ``(B, K, D)`` -> dict with
        ``pred_logits`` ``(B, N, K + 1)``, ``pred_masks`` ``(B, N, H/4, W/4)`` (the finest trunk level),
        ``pred_embeds`` ``(B, N, D)``, ``query_embeds`` ``(B, N, C)`` and ``aux_outputs`` (one such dict
        per earlier decoder output). With ``syn_text_embeddings`` ``(B, K_syn, D)`` (per-image synonym
        vocabularies, GKC's text diversification) every output also has ``pred_syn_logits``
        ``(B, N, K_syn + 1)`` from the same classifier."""
        mask_features, multi_scale = self.pixel_decoder(self.trunk(images))
        out = self.transformer_decoder(multi_scale, mask_features)
        for o in [out, *out["aux_outputs"]]:
            o["pred_logits"] = self.classifier(o["pred_embeds"], text_embeddings)
            if syn_text_embeddings is not None:
                o["pred_syn_logits"] = self.classifier(o["pred_embeds"], syn_text_embeddings)
        return out

    def losses(self, outputs: dict, targets: Sequence[Sequence[Segment]]) -> dict[str, torch.Tensor]:
        """Deep-supervised losses (:class:`SetCriterion`); ``targets`` per image ``[(class, mask (H, W)), …]``
        with class indexing the text embeddings' rows. ``loss_total`` is the one to back-propagate."""
        return self.criterion(outputs, targets)

    @torch.no_grad()
    def semantic_inference(self, outputs: dict, name_to_class: Sequence[int] | None = None,
                           out_size: tuple[int, int] | None = None, num_classes: int | None = None,
                           pool: str = "logits") -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(B, C, H, W)`` and label map ``(B, H, W)``; see
        :func:`~ovbench.models.segmenter.inference.semantic_inference`."""
        return semantic_inference(outputs["pred_logits"], outputs["pred_masks"], name_to_class, out_size,
                                  num_classes, pool)
