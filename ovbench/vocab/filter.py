"""GKC's CLIP plausibility filter of synonyms, per training segment (spec §3.1 step 2).

For every training image of a semantic-segmentation protocol and every class present in it (a
*segment* is the class's whole region in that image), the segment's tight bounding box is cut
from the image (unmasked, as in GKC's ``syn_CLIP_sim.py``), resized to the CLIP input size
(bicubic, aspect not kept) and scored against that class's candidate synonyms only:
``softmax_s(100 · cos(image, text("a photo of {s}.")))``. The file written is

``{"format": "ovbench-synonym-filter/1", "protocol", "protocol_hash", "split",
"clip": {"name", "digest"}, "prompt", "logit_scale", "threshold", "synonyms_source",
"segments": {image_id: {class_id: {synonym: probability}}}}``

with each segment's synonyms in table order (the class name first). Training draws a synonym
among :func:`kept`. Classes whose only candidate is their name get probability 1 without a
CLIP forward.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ovbench.data.training import SemsegTrainingSet
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip, to_clip_input
from ovbench.protocols import Protocol
from ovbench.vocab.tables import synonyms_by_class

FORMAT = "ovbench-synonym-filter/1"
PROMPT = "a photo of {}."
#: CLIP's logit scale used for the softmax over a class's candidates (GKC: 100, OpenAI CLIP's).
LOGIT_SCALE = 100.0
DEFAULT_THRESHOLD = 0.1
#: A (image id, class id, crop uint8 (S, S, 3)) waiting for its CLIP forward.
Pending = tuple[str, int, np.ndarray]


def kept(probabilities: Mapping[str, float], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """The synonyms of one segment with probability > ``threshold``, in stored order; the first
    key (the class name) is always kept.

    GKC draws ``random.choice`` among the synonyms above 0.1 and crashes when none is (with more
    than 10 candidates that can happen); keeping the class name makes the list never empty.
    """
    names = list(probabilities)
    return [n for i, n in enumerate(names) if i == 0 or probabilities[n] > threshold]


def segment_boxes(label: np.ndarray, class_ids: Iterable[int]) -> dict[int, tuple[int, int, int, int]]:
    """Tight box ``(y0, y1, x0, x1)`` (pixels, ends exclusive) of every class of ``class_ids``
    present in ``label`` ``(H, W)``, by increasing class id."""
    wanted = set(class_ids)
    boxes = {}
    for k in (int(v) for v in np.unique(label) if int(v) in wanted):
        ys, xs = np.nonzero(label == k)
        boxes[k] = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return boxes


def crop_resized(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """``image`` ``(H, W, 3)`` uint8 cut to ``box`` and resized (bicubic) to ``(size, size, 3)``."""
    y0, y1, x0, x1 = box
    return np.asarray(Image.fromarray(image[y0:y1, x0:x1]).resize((size, size), Image.BICUBIC))


def clip_input_size(clip: Clip) -> int:
    """The square input side (pixels) of ``clip``'s image tower."""
    size = clip.model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def filter_synonyms(clip: Clip, protocol: Protocol, data_root: Path | str, table: Mapping[str, Any],
                    split: str = "train", threshold: float = DEFAULT_THRESHOLD, batch_size: int = 64,
                    progress: bool = True) -> dict[str, Any]:
    """Score every segment of ``protocol``'s ``split`` images below ``data_root`` against its
    class's candidates in ``table`` (a loaded synonym table of ``protocol``); returns the file
    object described in the module doc. Crops go through CLIP ``batch_size`` at a time."""
    if protocol.task != "semseg":
        raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol; the synonym filter reads "
                           f"semantic-segmentation training labels (pick a semseg protocol, `ovbench list`)")
    if table["protocol"] != protocol.id:
        raise OvbenchError(f"the synonym table is for protocol {table['protocol']}, not {protocol.id}; pass the "
                           f"table of {protocol.id} (`ovbench vocab synonyms --protocol {protocol.id}`)")
    if not 0.0 <= threshold < 1.0 or batch_size < 1:
        raise OvbenchError(f"threshold {threshold} / batch size {batch_size}: use 0 <= threshold < 1 and a "
                           f"batch size >= 1")
    synonyms = synonyms_by_class(table)
    dataset = SemsegTrainingSet(protocol, data_root, class_ids=protocol.class_ids(), split=split)
    size = clip_input_size(clip)
    segments: dict[str, dict[int, dict[str, float]]] = {iid: {} for iid in dataset.ids}
    pending: list[Pending] = []
    for index in tqdm(range(len(dataset)), desc=f"synonym filter {protocol.id}/{split}", unit="img",
                      disable=not progress):
        image, label = dataset.read(index)
        iid = dataset.ids[index]
        for k, box in segment_boxes(label, synonyms).items():
            if len(synonyms[k]) == 1:
                segments[iid][k] = {synonyms[k][0]: 1.0}
                continue
            pending.append((iid, k, crop_resized(image, box, size)))
            if len(pending) == batch_size:
                _score(clip, pending, synonyms, segments)
    if pending:
        _score(clip, pending, synonyms, segments)
    return {"format": FORMAT, "protocol": protocol.id, "protocol_hash": protocol.hash, "split": split,
            "clip": {"name": clip.name, "digest": clip.digest}, "prompt": PROMPT, "logit_scale": LOGIT_SCALE,
            "threshold": threshold, "synonyms_source": table["source"],
            "segments": {iid: {str(k): seg[k] for k in sorted(seg)} for iid, seg in segments.items()}}


def _score(clip: Clip, pending: list[Pending], synonyms: Mapping[int, list[str]],
           segments: dict[str, dict[int, dict[str, float]]]) -> None:
    """CLIP-score the ``pending`` crops into ``segments`` and empty ``pending``."""
    images = clip.encode_image(to_clip_input(np.stack([crop for _, _, crop in pending]))).cpu()   # (B, D)
    for (iid, k, _), image in zip(pending, images):
        texts = clip.encode_text(synonyms[k], PROMPT)                                                # (N_k, D)
        probs = torch.softmax(LOGIT_SCALE * texts @ image, dim=0)
        segments[iid][k] = {s: round(float(p), 6) for s, p in zip(synonyms[k], probs)}
    pending.clear()


def load_filter(path: Path | str, protocol: Protocol) -> dict[str, Any]:
    """A filter file written by ``ovbench vocab filter-synonyms`` for ``protocol``, checked."""
    import json
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OvbenchError(f"{path}: synonym filter not found; write it with `ovbench vocab filter-synonyms "
                           f"--protocol {protocol.id} ... --out {path}`") from None
    except (OSError, ValueError) as e:
        raise OvbenchError(f"{path}: not a readable synonym filter ({e}); re-run `ovbench vocab filter-synonyms`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("segments"), dict):
        raise OvbenchError(f"{path}: not an {FORMAT} file; write it with `ovbench vocab filter-synonyms`")
    if data.get("protocol") != protocol.id or data.get("protocol_hash") != protocol.hash:
        raise OvbenchError(f"{path}: written for protocol {data.get('protocol')} (hash {data.get('protocol_hash')}), "
                           f"not {protocol.id} (hash {protocol.hash}); re-run `ovbench vocab filter-synonyms`")
    return data
