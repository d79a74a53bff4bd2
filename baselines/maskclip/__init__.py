"""``maskclip``: training-free open-vocabulary segmentation from CLIP's dense embeddings
(MaskCLIP, Zhou et al., ECCV 2022, "Extract Free Dense Labels from CLIP"), without the paper's
pseudo-label training or key smoothing / prompt denoising refinements."""
from __future__ import annotations

from baselines.maskclip.model import MaskClipSegmenter, build_maskclip

__all__ = ["MaskClipSegmenter", "build_maskclip"]
