"""Reference detectors for ``synth-ovd``: connected components of the ``pixel-texture`` label map.

The trained ViLD / EZSD detectors are too large to ship, so the demo's detection rows come from
these two cheap, honest stand-ins. Both start from a :class:`PixelTextureClassifier` fitted on the
base classes of ``synth-ov`` train and turn its per-pixel labels into instances: each 8-connected
component of at least ``min_pixels`` pixels is one detection, its box the component's tight box
(pixel edges, xyxy) and its mask the component itself.

- ``texture-boxes`` (base classes only): components of each thing class of the label map; the
  label is that class, the score the mean over the component of the classifier's softmax
  probability of that class. Never having seen a novel label, it never detects a novel class.
- ``texture-boxes+clip`` (open vocabulary): components of the thing-vs-stuff partition of the label
  map (a pixel is an object pixel when its predicted class is in the vocabulary), each classified by
  the frozen tiny CLIP over the whole vocabulary from one crop of its box, enlarged
  :data:`CROP_ENLARGE` times about its centre (as the tiny CLIP's zero-shot crops); the label is
  CLIP's arg-max, the score its softmax probability at CLIP's own logit scale. One CLIP image
  forward per component.

Both follow the duck-typed detector interface of
:func:`ovbench.inference.detection.predict_protocol_detection`: ``set_vocabulary(class names)``,
then ``predict(image) -> [Detection]`` (label = index into the vocabulary, highest score first).
The label map's class ids become vocabulary entries by name: the synthetic world writes its
detection JSON from the same scenes with the semantic class id as the COCO category id
(:func:`ovbench.synth.coco.categories`), so ``synth-ovd``'s classes are ``synth-ov``'s thing classes,
same ids and names.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from baselines.reference.texture import PixelTextureClassifier
from baselines.two_stage.crops import image_tensor
from baselines.two_stage.ensemble import clip_class_probs
from baselines.vild.proposals import box_crops, clip_input_size, enlarge_boxes
from ovbench.errors import OvbenchError
from ovbench.models.detector.ov_detector import Detection
from ovbench.models.zoo import clip_from_config

#: Smallest component (pixels) that becomes a detection; smaller ones are classifier speckle.
MIN_PIXELS = 16
#: 8-connectivity for :func:`scipy.ndimage.label`.
EIGHT_CONNECTED = np.ones((3, 3), bool)
#: The frozen CLIP of ``texture-boxes+clip``: ovbench's tiny CLIP, pre-trained on the world's captions.
TINY_CLIP = {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth"}
#: CLIP's prompt template for each class name.
TEMPLATE = "a photo of a {}"
#: A component's box is enlarged this many times about its centre before cropping.
CROP_ENLARGE = 1.2


def components(mask: np.ndarray, min_pixels: int = MIN_PIXELS) -> list[np.ndarray]:
    """The 8-connected components of boolean ``mask`` ``(H, W)`` with at least ``min_pixels`` pixels,
    each a boolean ``(H, W)`` mask, in raster order of their first pixel."""
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    return [labels == k for k in range(1, count + 1) if sizes[k] >= min_pixels]


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight box ``(x0, y0, x1, y1)`` of a non-empty boolean mask ``(H, W)`` in pixel edges: the mask
    covers columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1`` (so COCO's ``[x0, y0, x1 - x0, y1 - y0]``
    is the ground truth's box of the same pixels)."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def by_score(detections: list[Detection]) -> list[Detection]:
    """Detections highest score first (ties keep their order)."""
    return sorted(detections, key=lambda d: -d.score)


def class_detections(label_map: np.ndarray, probabilities: np.ndarray, classes: np.ndarray,
                     vocabulary_index: Mapping[int, int], min_pixels: int = MIN_PIXELS) -> list[Detection]:
    """``texture-boxes``: one detection per component of each vocabulary class of ``label_map``.

    ``label_map`` ``(H, W)`` class ids; ``probabilities`` ``(H, W, K)`` with channel k the probability
    of class id ``classes[k]``; ``vocabulary_index`` maps a class id to its vocabulary index (ids not in
    it are background). Score: the component's mean probability of its class. Highest score first.
    """
    channel = {int(c): k for k, c in enumerate(classes)}
    out = []
    for class_id, label in vocabulary_index.items():
        if class_id not in channel:      # a class the classifier cannot predict (novel)
            continue
        for mask in components(label_map == class_id, min_pixels):
            score = float(probabilities[..., channel[class_id]][mask].mean())
            out.append(Detection(mask_box(mask), score, label, mask))
    return by_score(out)


def object_masks(label_map: np.ndarray, object_ids: Sequence[int], min_pixels: int = MIN_PIXELS) -> list[np.ndarray]:
    """Class-agnostic objects: the components of the pixels of ``label_map`` ``(H, W)`` whose class is in
    ``object_ids`` (the thing-vs-stuff partition), boolean ``(H, W)`` masks in raster order."""
    return components(np.isin(label_map, np.asarray(object_ids)), min_pixels)


def vocabulary_indices(class_names: Mapping[int, str], vocabulary: Sequence[Sequence[str]]) -> dict[int, int]:
    """Class id -> vocabulary index for the classes (``class_names``: id -> canonical name) named by a
    vocabulary entry (each entry one or more names); a name in two entries is an error."""
    out: dict[int, int] = {}
    for class_id, name in class_names.items():
        hits = [k for k, names in enumerate(vocabulary) if name in names]
        if len(hits) > 1:
            raise OvbenchError(f"class {name!r} (id {class_id}) is named by vocabulary entries {hits}")
        if hits:
            out[class_id] = hits[0]
    if not out:
        raise OvbenchError("the vocabulary names none of the label map's classes; nothing to detect")
    return out


class TextureBoxes:
    """``texture-boxes``: see the module docstring. ``texture``: a fitted pixel-texture classifier;
    ``class_names``: class id -> canonical name of its label maps (e.g. ``synth-ov``'s classes)."""

    name = "texture-boxes"

    def __init__(self, texture: PixelTextureClassifier, class_names: Mapping[int, str],
                 min_pixels: int = MIN_PIXELS) -> None:
        self.texture = texture
        self.class_names = dict(class_names)
        self.min_pixels = min_pixels
        self.index: dict[int, int] = {}

    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        """The K test classes, each as one or more names; label k of :meth:`predict` is class k."""
        self.index = vocabulary_indices(self.class_names, class_names)

    def predict(self, image: np.ndarray) -> list[Detection]:
        """uint8 RGB ``(H, W, 3)`` -> detections, highest score first."""
        probs = self.texture.probabilities(image)
        label_map = self.texture.classes_[probs.argmax(-1)]
        return class_detections(label_map, probs, self.texture.classes_, self.index, self.min_pixels)

    def counters(self) -> dict[str, int]:
        """``clip_image_forwards``: crops through a CLIP image encoder so far (none here)."""
        return {"clip_image_forwards": 0}

    def config(self) -> dict[str, Any]:
        """How the detections are made, for a result record."""
        return {"detector": self.name, "min_pixels": self.min_pixels,
                "instances": "8-connected components of each predicted vocabulary class",
                "score": "mean over the component of the classifier's softmax probability of its class"}


class TextureBoxesClip(TextureBoxes):
    """``texture-boxes+clip``: see the module docstring. ``clip``: the frozen CLIP's config
    (:func:`ovbench.models.zoo.clip_from_config`)."""

    name = "texture-boxes+clip"

    def __init__(self, texture: PixelTextureClassifier, class_names: Mapping[int, str],
                 min_pixels: int = MIN_PIXELS, clip: Mapping[str, Any] = TINY_CLIP) -> None:
        super().__init__(texture, class_names, min_pixels)
        self.clip_config = dict(clip)
        self.clip = clip_from_config(self.clip_config)
        self.logit_scale = float(self.clip.model.logit_scale.detach().exp())
        self.crop_size = clip_input_size(self.clip)
        self.clip_forwards = 0

    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        """Also embeds every name of every class under :data:`TEMPLATE` (a class scores its best name)."""
        super().set_vocabulary(class_names)
        flat = [(n, k) for k, names in enumerate(class_names) for n in names]
        self.name_emb = self.clip.encode_text([n for n, _ in flat], TEMPLATE)            # (M, D)
        self.name_to_class = [k for _, k in flat]                                           # (M,)
        self.num_classes = len(class_names)

    @torch.no_grad()
    def classify(self, image: np.ndarray, masks: list[np.ndarray]) -> torch.Tensor:
        """CLIP's class probabilities ``(N, K)`` float32 of the boxes of ``masks`` in uint8 ``image``."""
        height, width = image.shape[:2]
        boxes = enlarge_boxes(torch.tensor([mask_box(m) for m in masks]), CROP_ENLARGE, height, width)
        region = self.clip.encode_image(box_crops(image_tensor(image), boxes, self.crop_size)).cpu()  # (N, D)
        self.clip_forwards += len(masks)
        return clip_class_probs(region, self.name_emb, self.name_to_class, self.num_classes, self.logit_scale)

    def counters(self) -> dict[str, int]:
        """``clip_image_forwards``: box crops through the CLIP image encoder so far (one per object)."""
        return {"clip_image_forwards": self.clip_forwards}

    def config(self) -> dict[str, Any]:
        return {"detector": self.name, "min_pixels": self.min_pixels,
                "instances": "8-connected components of the pixels predicted as any vocabulary class "
                             "(thing vs stuff)",
                "classifier": {"clip": self.clip_config, "clip_digest": self.clip.digest, "template": TEMPLATE,
                               "crop_enlarge": CROP_ENLARGE, "logit_scale": round(self.logit_scale, 3)},
                "score": "CLIP softmax probability of the arg-max class over the whole vocabulary"}

    def predict(self, image: np.ndarray) -> list[Detection]:
        """uint8 RGB ``(H, W, 3)`` -> detections, highest score first."""
        label_map = self.texture.predict(image)
        masks = object_masks(label_map, list(self.index), self.min_pixels)
        if not masks:
            return []
        scores, labels = self.classify(image, masks).max(dim=-1)
        return by_score([Detection(mask_box(m), float(s), int(k), m) for m, s, k in zip(masks, scores, labels)])


#: The reference detectors by row name.
DETECTORS: dict[str, type[TextureBoxes]] = {TextureBoxes.name: TextureBoxes, TextureBoxesClip.name: TextureBoxesClip}
