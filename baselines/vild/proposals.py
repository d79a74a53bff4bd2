"""ViLD's offline distillation regions (spec ``ezsd.md`` §4.4, §10): RPN proposals and their CLIP embeddings.

For every training image (the images of the protocol's training annotations that keep a box of the
run's training classes, i.e. base classes), the RPN of a base-trained detector (eval mode, its test
pre/post-NMS counts) gives proposals ranked by objectness; the top ``top`` (ViLD: 300) are kept in
original-image pixels. Each is embedded by the frozen CLIP image tower as the mean of the L2-normalised
embeddings of a 1x and a 1.5x crop, re-normalised (:func:`region_embeddings`). A crop is the box
enlarged about its centre and clipped to the image, resampled to CLIP's square input by bilinear
RoIAlign (no aspect-ratio padding) and CLIP-normalised (:func:`box_crops`).

The cache folder holds one ``<image_id>.npz`` per image (``boxes`` float32 ``(N, 4)`` xyxy pixels,
``embeddings`` float16 ``(N, D)``, unit norm) and ``manifest.json`` (written last, so a cache without
it is incomplete): the detector file and its sha256, the CLIP (name, weights, digest), ``top``, the crop
scales, the image and proposal counts and the command that rebuilds it. Every file is written atomically.

``python -m baselines.vild.proposals --model RUN/model.pt --data-root W --out DIR [--top 300]
[--clip-name tiny-vit --clip-weights builtin:tiny-vit-synth]`` (CLIP default: the detector's own).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import roi_align
from tqdm import tqdm

from ovbench.cli import run_script
from ovbench.data.detection_training import DetectionTrainingSet, image_path, read_rgb
from ovbench.engine.distributed import default_device
from ovbench.engine.segmenter_training import training_vocabulary
from ovbench.errors import OvbenchError
from ovbench.models.clip import CLIP_MEAN, CLIP_STD, Clip
from ovbench.models.detector.model import OVMaskRCNN
from ovbench.models.detector.ov_detector import load_detector_file, read_detector_file
from ovbench.models.zoo import clip_from_config
from ovbench.protocols import get_protocol
from ovbench.records.store import atomic_write, atomic_write_json

CACHE_FORMAT = "ovbench-vild-proposals/1"
MANIFEST = "manifest.json"
#: ViLD's crop ensemble: each region is embedded from its 1x and 1.5x crops.
CROP_SCALES = (1.0, 1.5)
#: ViLD's distillation regions per image (``max_num_rois``).
DEFAULT_TOP = 300
#: Regions cropped and embedded per CLIP forward pass.
CROP_BATCH = 128


# ---------------------------------------------------------------- crops and embeddings


def enlarge_boxes(boxes: torch.Tensor, scale: float, height: int, width: int) -> torch.Tensor:
    """Boxes ``(N, 4)`` xyxy pixels with width and height multiplied by ``scale`` about their centres,
    clipped to the ``height x width`` image; float32 ``(N, 4)``."""
    boxes = boxes.float().reshape(-1, 4)
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    limit = boxes.new_tensor([width, height])
    return torch.cat([(centre - half).clamp(min=0), torch.minimum(centre + half, limit)], dim=1)


def box_crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP inputs ``(N, 3, size, size)`` of boxes ``(N, 4)`` xyxy (continuous pixel coordinates) of
    ``image`` float ``(3, H, W)`` in [0, 1]: bilinear RoIAlign (pixel centres at half-integers, adaptive
    sampling so that shrinking averages), then CLIP's mean/std normalisation."""
    crops = roi_align(image[None].float(), [boxes.float().to(image.device)], output_size=size, spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)
    mean = torch.tensor(CLIP_MEAN, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=image.device).view(1, 3, 1, 1)
    return (crops - mean) / std


def clip_input_size(clip: Clip) -> int:
    """The square input side (pixels) of ``clip``'s image tower."""
    size = clip.model.visual.image_size
    return int(size if isinstance(size, int) else size[0])


@torch.no_grad()
def region_embeddings(clip: Clip, image: torch.Tensor, boxes: torch.Tensor,
                      scales: Sequence[float] = CROP_SCALES) -> torch.Tensor:
    """ViLD's ensembled CLIP embeddings ``(N, D)`` float32 of boxes ``(N, 4)`` xyxy pixels of ``image``
    float ``(3, H, W)`` in [0, 1]: ``L2norm(mean_s L2norm(CLIP(crop_s)))`` over the crop ``scales``."""
    height, width = image.shape[-2:]
    size = clip_input_size(clip)
    boxes = boxes.float().reshape(-1, 4)
    if not len(boxes):
        return torch.zeros(0, clip.embed_dim)
    out = []
    for chunk in boxes.split(CROP_BATCH):
        total = sum(clip.encode_image(box_crops(image, enlarge_boxes(chunk, s, height, width), size)).cpu()
                    for s in scales)
        out.append(F.normalize(total, dim=-1))
    return torch.cat(out)


@torch.no_grad()
def rpn_proposals(net: OVMaskRCNN, image: torch.Tensor, top: int) -> torch.Tensor:
    """The ``top`` best RPN proposals ``(n <= top, 4)`` float32 xyxy in pixels of ``image`` float
    ``(3, H, W)`` in [0, 1] (``net`` in eval mode: test-time resize and RPN counts), objectness order."""
    images, _ = net.transform([image])
    proposals, _ = net.rpn(images, net.backbone(images.tensors))
    boxes = resize_boxes(proposals[0][:top], images.image_sizes[0], image.shape[-2:]).cpu()
    height, width = image.shape[-2:]
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([width, height, width, height], dtype=boxes.dtype))
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])].float()


# ---------------------------------------------------------------- the cache


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_command(model: Path, data_root: Path, out: Path, top: int, clip_config: Mapping[str, Any] | None) -> str:
    """The shell command that (re)builds a cache with these settings."""
    args = ["python", "-m", "baselines.vild.proposals", "--model", str(model), "--data-root", str(data_root),
            "--out", str(out), "--top", str(top)]
    if clip_config is not None:
        args += ["--clip-name", str(clip_config["name"])]
        if clip_config.get("pretrained") is not None:
            args += ["--clip-weights", str(clip_config["pretrained"])]
    return shlex.join(args)


def build_cache(model: Path | str, data_root: Path | str, out: Path | str, clip_config: Mapping[str, Any] | None = None,
                top: int = DEFAULT_TOP, protocol: str | None = None, split: str | None = None,
                annotations: str | None = None, images: str | None = None, device: str | torch.device | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Write the proposal cache of detector file ``model`` for the training images below ``data_root``
    into ``out`` (see the module docstring); returns the manifest.

    ``clip_config``: the teacher ``{name, pretrained}`` (default: the detector's CLIP). ``protocol`` /
    ``split`` default to the detector run's; ``annotations`` / ``images`` override the protocol's
    training annotation file and image template, as a run config's ``data`` section does.
    """
    if top < 1:
        raise OvbenchError(f"--top must be >= 1, got {top}")
    model, data_root, out = Path(model).resolve(), Path(data_root), Path(out)
    device = torch.device(device) if device is not None else default_device()
    summary = read_detector_file(model).get("summary", {})
    detector = load_detector_file(model, base_dir=model.parent, device=str(device))
    net = detector.net.eval()
    clip = detector.clip if clip_config is None else clip_from_config(clip_config, device=str(device))
    protocol_def = get_protocol(protocol or summary.get("protocol") or "", data_root)
    class_ids, _ = training_vocabulary(protocol_def, str(summary.get("classes", "base")))
    split = split or str(summary.get("split", "train"))
    dataset = DetectionTrainingSet(protocol_def, data_root, class_ids, split=split, annotations=annotations,
                                   images=images, flip=False)
    (out / MANIFEST).unlink(missing_ok=True)          # a rebuild stops being a valid cache until it completes
    counts = []
    for entry in tqdm(dataset.images, desc="vild proposals", disable=not progress):
        pixels = read_rgb(image_path(dataset.image_template, data_root, entry))
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255.0).to(device)
        boxes = rpn_proposals(net, image, top)
        embeddings = region_embeddings(clip, image, boxes).numpy().astype(np.float16)
        atomic_write(out / f"{int(entry['id'])}.npz",
                     lambda f: np.savez(f, boxes=boxes.numpy(), embeddings=embeddings))
        counts.append(len(boxes))
    manifest = {
        "format": CACHE_FORMAT,
        "detector": {"path": str(model), "sha256": file_sha256(model)},
        "clip": {"name": clip.name, "pretrained": (clip_config or detector.spec.clip).get("pretrained"),
                 "digest": clip.digest, "embed_dim": clip.embed_dim},
        "top": top, "crop_scales": list(CROP_SCALES),
        "protocol": protocol_def.id, "split": split, "annotations": str(dataset.path),
        "images": len(counts), "proposals": int(sum(counts)),
        "min_per_image": min(counts, default=0), "max_per_image": max(counts, default=0),
        "command": build_command(model, data_root, out, top, clip_config),
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


@dataclass(frozen=True)
class ProposalCache:
    """A proposal cache folder and its manifest (:meth:`open` checks both)."""

    folder: Path
    manifest: Mapping[str, Any]

    @classmethod
    def open(cls, folder: Path | str) -> "ProposalCache":
        folder = Path(folder)
        path = folder / MANIFEST
        rebuild = (f"build it with `python -m baselines.vild.proposals --model RUN/model.pt --data-root DATA "
                   f"--out {folder}`")
        if not path.is_file():
            raise OvbenchError(f"{path}: no ViLD proposal cache here (or an incomplete one); {rebuild}")
        try:
            manifest = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise OvbenchError(f"{path}: corrupt manifest ({e}); {rebuild}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
            raise OvbenchError(f"{path}: not a ViLD proposal cache manifest (format {CACHE_FORMAT}); {rebuild}")
        return cls(folder, manifest)

    @property
    def command(self) -> str:
        """The command that rebuilds this cache."""
        return str(self.manifest["command"])

    def path(self, image_id: int) -> Path:
        return self.folder / f"{int(image_id)}.npz"

    def check_clip(self, clip: Clip) -> None:
        """A clear error unless the cache was embedded by ``clip`` (same architecture and weights digest)."""
        built = self.manifest["clip"]
        if (built["name"], built["digest"]) != (clip.name, clip.digest):
            raise OvbenchError(f"{self.folder}: proposals embedded by CLIP {built['name']} (digest {built['digest']}) "
                               f"but this run's CLIP is {clip.name} (digest {clip.digest}); rebuild the cache with "
                               f"the run's CLIP (--clip-name / --clip-weights): {self.command}")

    def check_images(self, image_ids: Sequence[int]) -> None:
        """A clear error naming the first of ``image_ids`` without a cache file."""
        missing = [i for i in image_ids if not self.path(i).is_file()]
        if missing:
            raise OvbenchError(f"{self.path(missing[0])}: proposals of {len(missing)} training image(s) missing "
                               f"from the ViLD cache; regenerate it with `{self.command}`")

    def load(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(N, 4)`` float32 xyxy original pixels and embeddings ``(N, D)`` float32 of one image."""
        path = self.path(image_id)
        if not path.is_file():
            raise OvbenchError(f"{path}: image {image_id} missing from the ViLD proposal cache; "
                               f"regenerate it with `{self.command}`")
        try:
            with np.load(path) as data:
                boxes, embeddings = data["boxes"].astype(np.float32), data["embeddings"].astype(np.float32)
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise OvbenchError(f"{path}: corrupt ViLD proposal file ({type(e).__name__}); "
                               f"regenerate the cache with `{self.command}`") from None
        if boxes.ndim != 2 or boxes.shape[1] != 4 or embeddings.shape[0] != len(boxes):
            raise OvbenchError(f"{path}: corrupt ViLD proposal file (boxes {boxes.shape}, embeddings "
                               f"{embeddings.shape}); regenerate the cache with `{self.command}`")
        return boxes, embeddings


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.vild.proposals",
                                     description="ViLD: cache a base-trained RPN's top proposals and their "
                                                 "ensembled (1x + 1.5x crop) CLIP embeddings per training image")
    parser.add_argument("--model", type=Path, required=True, help="a base-trained detector's model.pt")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the cache folder")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="proposals kept per image (ViLD: 300)")
    parser.add_argument("--clip-name", help="teacher CLIP architecture (default: the detector's CLIP)")
    parser.add_argument("--clip-weights", help="teacher CLIP checkpoint: a path or builtin:NAME")
    parser.add_argument("--protocol", help="detection protocol (default: the detector run's)")
    parser.add_argument("--split", help="training split (default: the detector run's)")
    parser.add_argument("--annotations", help="training annotation JSON relative to --data-root")
    parser.add_argument("--images", help="image path template relative to --data-root, with {file_name}")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.clip_weights and not args.clip_name:
        parser.error("--clip-weights needs --clip-name")
    clip_config = None if args.clip_name is None else {"name": args.clip_name, "pretrained": args.clip_weights}
    manifest = build_cache(args.model, args.data_root, args.out, clip_config, args.top, args.protocol, args.split,
                           args.annotations, args.images, args.device, not args.no_progress)
    print(f"wrote {manifest['proposals']} proposals of {manifest['images']} images "
          f"({manifest['min_per_image']}-{manifest['max_per_image']} each) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, "python -m baselines.vild.proposals"))
