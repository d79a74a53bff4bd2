"""The MaskCLIP segmenter: cosine logits of CLIP's dense embeddings against the class names' text
embeddings, max-pooled over each class's names, upsampled bilinearly to the image, arg-maxed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ovbench.errors import OvbenchError
from ovbench.models.api import Batch, StagedSegmenter, check_image
from ovbench.models.clip import Clip, text_tower, to_clip_input
from ovbench.models.prompts import templates as template_set
from ovbench.models.segmenter.inference import max_pool_names
from ovbench.models.zoo import clip_from_config, register_model

#: Keys of a ``maskclip`` model config (``clip`` is required).
CONFIG_KEYS = ("kind", "clip", "templates", "input_size", "logit_scale")
#: CLIP's learned logit scale (exp of 4.6052): cosine similarities are multiplied by it.
CLIP_LOGIT_SCALE = 100.0


class MaskClipSegmenter(StagedSegmenter):
    """MaskCLIP over a :class:`Clip` (ViT or ResNet), training-free.

    ``templates`` names a prompt template set (:mod:`ovbench.models.prompts`); a name's text
    embedding is its embedding averaged over the set. ``input_size`` (pixels) resizes each image so
    that its shorter side is about ``input_size``, keeping the aspect ratio; ``None`` keeps the
    image's size. Either way each side is then rounded to the nearest multiple of the CLIP's
    :attr:`Clip.stride` (patch size or 32, at least one cell). ``logit_scale`` multiplies cosine
    similarities (it does not change the arg-max).
    """

    name = "maskclip"

    def __init__(self, clip: Clip, templates: str = "scene", input_size: int | None = None,
                 logit_scale: float = CLIP_LOGIT_SCALE) -> None:
        if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                       or input_size < 1):
            raise OvbenchError(f"maskclip: input_size {input_size!r}: use a positive number of pixels or null")
        self.clip = clip
        self.templates = template_set(templates)
        self.input_size = input_size
        self.logit_scale = float(logit_scale)
        self._text: torch.Tensor | None = None        # (N, D) one row per name
        self._owner: torch.Tensor | None = None       # (N,) class index of each name
        self._classes = 0
        self._forwards = 0

    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        if not class_names or any(isinstance(c, str) or not c for c in class_names):
            raise OvbenchError("maskclip: the vocabulary is a non-empty list of classes, each a non-empty "
                               "list of names")
        names = [n for names in class_names for n in names]
        owner = [k for k, names in enumerate(class_names) for _ in names]
        self._text = self.clip.name_embeddings(names, self.templates).to(self.clip.device)
        self._owner = torch.tensor(owner, device=self.clip.device)
        self._classes = len(class_names)

    def preprocess(self, image: np.ndarray) -> Batch:
        """``{"images": (1, 3, h, w)}`` CLIP-normalised, resized to :meth:`model_size`, on CLIP's device."""
        check_image(image, "maskclip")
        height, width = image.shape[:2]
        x = to_clip_input(torch.from_numpy(np.array(image, copy=True))[None].to(self.clip.device))
        size = self.model_size(height, width)
        if size != (height, width):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return {"images": x}

    @torch.no_grad()
    def forward(self, inputs: Batch) -> Batch:
        """``{"logits": (B, K, h / stride, w / stride)}``: :meth:`class_logits` of the dense embeddings."""
        if self._text is None:
            raise OvbenchError("maskclip: call set_vocabulary() before predict()")
        images = inputs["images"]
        self._forwards += int(images.shape[0])
        return {"logits": self.class_logits(self.clip.dense_embeddings(images))}

    def postprocess(self, outputs: Batch, image_size: tuple[int, int]) -> list[np.ndarray]:
        """Logits upsampled bilinearly to ``image_size``, arg-maxed."""
        logits = F.interpolate(outputs["logits"].float(), size=tuple(image_size), mode="bilinear",
                               align_corners=False)
        return list(logits.argmax(1).cpu().numpy().astype(np.int64))

    def towers(self) -> dict[str, list[nn.Module]]:
        return {"image": [self.clip.model.visual], "text": [text_tower(self.clip)]}

    def to(self, device: torch.device | str) -> "MaskClipSegmenter":
        self.clip.to(device)
        if self._text is not None:
            self._text, self._owner = self._text.to(device), self._owner.to(device)
        return self

    def clear_text_cache(self) -> None:
        self.clip.clear_text_cache()

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(H, W)`` in pixels an image of ``height`` x ``width`` is resized to (see the class doc)."""
        scale = 1.0 if self.input_size is None else self.input_size / min(height, width)
        stride = self.clip.stride
        return tuple(max(stride, round(side * scale / stride) * stride) for side in (height, width))

    def class_logits(self, dense: torch.Tensor) -> torch.Tensor:
        """Dense embeddings ``(B, D, h, w)`` (normalised) -> class logits ``(B, K, h, w)``: the scaled
        cosine similarity with each name, max-pooled over the class's names."""
        names = torch.einsum("bdhw,nd->bnhw", dense, self._text) * self.logit_scale
        return max_pool_names(names, self._owner.tolist(), self._classes, dim=1)

    def counters(self) -> dict[str, int]:
        return {"clip_image_forwards": self._forwards}


@register_model("maskclip")
def build_maskclip(config: Mapping[str, Any], base_dir: Path) -> MaskClipSegmenter:
    """``{"kind": "maskclip", "clip": {clip_from_config keys}, "templates": "scene", "input_size": null,
    "logit_scale": 100}`` (all but ``clip`` optional)."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise OvbenchError(f"maskclip config: unknown keys {unknown}; known: {', '.join(CONFIG_KEYS)}")
    if "clip" not in config:
        raise OvbenchError("maskclip config: needs 'clip' ({name: ARCH, pretrained: ...})")
    return MaskClipSegmenter(clip_from_config(config["clip"], base_dir), templates=config.get("templates", "scene"),
                             input_size=config.get("input_size"),
                             logit_scale=config.get("logit_scale", CLIP_LOGIT_SCALE))
