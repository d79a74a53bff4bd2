"""Mask2Former-style open-vocabulary segmenter (GKC's framework): FPN pixel decoder, masked-attention
transformer decoder with deep supervision, cosine classifier against frozen text embeddings, Hungarian
matching, point-sampled mask losses and semantic inference with multi-name max pooling."""
from ovbench.models.segmenter.backbones import ClipTrunk, TorchvisionResNetTrunk, probe_channels
from ovbench.models.segmenter.classifier import CosineClassifier
from ovbench.models.segmenter.inference import max_pool_names, semantic_inference, semantic_scores
from ovbench.models.segmenter.losses import SetCriterion, dice_loss, prepare_targets, sigmoid_ce_loss
from ovbench.models.segmenter.matcher import HungarianMatcher
from ovbench.models.segmenter.model import Segmenter
from ovbench.models.segmenter.pixel_decoder import FPNPixelDecoder, PositionEmbeddingSine
from ovbench.models.segmenter.transformer_decoder import MaskedTransformerDecoder, attention_mask

__all__ = ["ClipTrunk", "TorchvisionResNetTrunk", "probe_channels", "CosineClassifier", "max_pool_names",
           "semantic_inference", "semantic_scores", "SetCriterion", "dice_loss", "prepare_targets",
           "sigmoid_ce_loss", "HungarianMatcher", "Segmenter", "FPNPixelDecoder", "PositionEmbeddingSine",
           "MaskedTransformerDecoder", "attention_mask"]
