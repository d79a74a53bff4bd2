"""EZSD component 1 (spec §3): re-normalise CLIP by tuning only its LayerNorm affine parameters on
crops of base-class GT boxes, and measure GT-crop classification accuracy before and after.

- Trainable: every parameter whose name contains ``ln_`` in the chosen towers (image: ``ln_pre``,
  each block's ``ln_1`` / ``ln_2``, ``ln_post``; text: each block's ``ln_1`` / ``ln_2``,
  ``ln_final``); everything else, ``logit_scale`` included, is frozen.
- Inputs: every base GT box of a batch of training images, 1.2x enlarged square crops
  (:func:`methods.ezsd.crops.box_crops`), each image flipped horizontally with probability 0.5.
- Logits ``100 * cos(image embedding, text embedding of "a photo of a {name}")`` over the base
  names; with the text LayerNorms open, the text embeddings are recomputed every step.
- Loss: per-class sigmoid binary cross-entropy against one-hot labels, averaged over boxes x
  classes (mmdet's ``CrossEntropyLoss(use_sigmoid=True)``); AdamW (lr 1e-4, weight decay 1e-4,
  constant), gradient norm clipped at 0.1.
- Evaluation (:func:`crop_accuracy`): top-1 over the val GT crops with restricted vocabularies:
  base crops among the base names, novel crops among the novel names, all crops among all names.

Command: ``python -m methods.ezsd.renorm --config CONFIG --data-root WORLD --out DIR`` writes
``DIR/clip-renorm.pt`` (the full open_clip ``state_dict``, loadable as
``Clip(name, pretrained=DIR/clip-renorm.pt)``) and ``DIR/renorm-report.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from methods.ezsd.crops import BoxAnnotations, box_crops, clip_input_size
from ovbench.cli import run_script
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip, file_digest
from ovbench.models.zoo import clip_from_config
from ovbench.records.store import atomic_write, atomic_write_json

#: EZSD's single prompt template (spec §3.3).
TEMPLATE = "a photo of a {}"
#: The logit scale of re-normalisation: OpenAI CLIP's (frozen) value, exp(4.6052) (spec §3.2).
LOGIT_SCALE = 100.0
TOWERS = ("image", "text")
CHECKPOINT_NAME = "clip-renorm.pt"
REPORT_NAME = "renorm-report.json"


@dataclass(frozen=True)
class RenormConfig:
    """A re-normalisation config (YAML). Annotation paths are relative to ``--data-root``; a
    relative ``clip.pretrained`` path is relative to the config's folder.

    ``batch`` counts images (every base GT box of each image is one crop); ``towers`` says which
    towers' LayerNorms are tuned (spec: both on COCO, image only on LVIS).
    """

    clip: Mapping[str, Any]
    epochs: int
    train_annotations: str = "detection/instances_train.json"
    val_annotations: str = "detection/instances_val.json"
    batch: int = 2
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    towers: Mapping[str, bool] = field(default_factory=lambda: {"image": True, "text": True})
    template: str = TEMPLATE
    crop_scale: float = 1.2
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 0 or self.batch < 1:
            problems.append(f"epochs ({self.epochs}) must be >= 0 and batch ({self.batch}) >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            problems.append(f"need lr > 0, weight_decay >= 0, grad_clip > 0; got {self.lr}, "
                            f"{self.weight_decay}, {self.grad_clip}")
        if set(self.towers) - set(TOWERS) or not all(isinstance(v, bool) for v in self.towers.values()) \
                or not self.tuned_towers:
            problems.append(f"towers {dict(self.towers)}: true/false for {' and '.join(TOWERS)} (default true), "
                            f"at least one true")
        if "{}" not in self.template:
            problems.append(f"template {self.template!r} has no '{{}}'")
        if self.crop_scale <= 0:
            problems.append(f"crop_scale must be > 0, got {self.crop_scale}")
        if problems:
            raise OvbenchError("invalid renorm config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RenormConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OvbenchError(f"unknown renorm config key(s) {unknown}; known: {sorted(known)}")
        if "clip" not in data or "epochs" not in data:
            raise OvbenchError("a renorm config needs 'clip' (name, pretrained) and 'epochs'")
        return cls(**data)

    @classmethod
    def load(cls, path: Path | str) -> "RenormConfig":
        path = Path(path)
        if not path.is_file():
            raise OvbenchError(f"{path}: renorm config not found")
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise OvbenchError(f"{path}: a renorm config is a YAML mapping")
        return cls.from_dict(data)

    @property
    def tuned_towers(self) -> tuple[str, ...]:
        """The towers whose LayerNorms are tuned (a tower missing from ``towers`` is)."""
        return tuple(t for t in TOWERS if self.towers.get(t, True))


def layer_norm_parameters(model: torch.nn.Module, towers: Sequence[str] = TOWERS) -> dict[str, torch.nn.Parameter]:
    """The LayerNorm affine parameters (names containing ``ln_``) of ``towers`` of an open_clip
    model: image = parameters under ``visual.``, text = the others. Name → parameter, model order."""
    if set(towers) - set(TOWERS):
        raise OvbenchError(f"towers {list(towers)}: choose among {TOWERS}")
    chosen = {}
    for name, param in model.named_parameters():
        tower = "image" if name.startswith("visual.") else "text"
        if "ln_" in name and tower in towers:
            chosen[name] = param
    return chosen


def open_only(model: torch.nn.Module, params: Mapping[str, torch.nn.Parameter]) -> int:
    """Freeze every parameter of ``model`` except ``params`` (``requires_grad``); returns how many
    scalars are trainable."""
    keep = {id(p) for p in params.values()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return sum(p.numel() for p in params.values())


def prompt_embeddings(clip: Clip, names: Sequence[str], template: str = TEMPLATE) -> torch.Tensor:
    """L2-normalised text embeddings ``(C, D)`` of ``template.format(name)`` from ``clip``'s current
    weights (no cache: the LayerNorms change during training); differentiable."""
    tokens = clip.tokenizer([template.format(n) for n in names]).to(clip.device)
    return F.normalize(clip.model.encode_text(tokens).float(), dim=-1)


def image_embeddings(clip: Clip, crops: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings ``(N, D)`` of CLIP inputs ``crops`` ``(N, 3, S, S)``; differentiable."""
    return F.normalize(clip.model.encode_image(crops.to(clip.device)).float(), dim=-1)


def sigmoid_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over boxes x classes of the per-class sigmoid BCE of ``logits`` ``(N, C)`` against
    one-hot targets of ``labels`` ``(N,)`` (class indices); a scalar."""
    targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets)


def flip_horizontally(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` ``(H, W, 3)`` mirrored left-right and its boxes ``(N, 4)`` xyxy mirrored with it."""
    width = image.shape[1]
    flipped = boxes[:, [2, 1, 0, 3]].copy()
    flipped[:, [0, 2]] = width - flipped[:, [0, 2]]
    return np.ascontiguousarray(image[:, ::-1]), flipped


@torch.no_grad()
def crop_accuracy(clip: Clip, annotations: BoxAnnotations, class_ids: Sequence[int], names: Sequence[str],
                  template: str = TEMPLATE, scale: float = 1.2) -> float:
    """Top-1 accuracy (a fraction) over the GT crops of ``annotations`` whose category is in
    ``class_ids``, classified among ``names`` (``names[i]`` names class ``class_ids[i]``). Crops are
    ``scale``x enlarged squares; the argmax of the cosines decides (the logit scale does not matter)."""
    if len(class_ids) != len(names) or not class_ids:
        raise OvbenchError(f"crop_accuracy: {len(class_ids)} class ids and {len(names)} names; give one name per id")
    text = prompt_embeddings(clip, names, template)
    index = {cid: i for i, cid in enumerate(class_ids)}
    size = clip_input_size(clip.model)
    correct = total = 0
    for image_id in annotations.images:
        boxes, cats = annotations.gt(image_id, list(class_ids))
        if not len(boxes):
            continue
        emb = image_embeddings(clip, box_crops(annotations.image(image_id), boxes, scale, size))
        predicted = (emb @ text.T).argmax(dim=1).cpu()
        correct += int((predicted == torch.tensor([index[int(c)] for c in cats])).sum())
        total += len(boxes)
    if total == 0:
        raise OvbenchError(f"{annotations.path}: no GT boxes of classes {list(class_ids)[:10]} to measure accuracy on")
    return correct / total


def vocabularies(annotations: BoxAnnotations) -> dict[str, list[int]]:
    """The spec's three restricted vocabularies: ``{"base": ids, "novel": ids, "all": ids}``."""
    return {part: annotations.class_ids(None if part == "all" else part) for part in ("base", "novel", "all")}


def accuracy_report(clip: Clip, annotations: BoxAnnotations, template: str = TEMPLATE,
                    scale: float = 1.2) -> dict[str, float]:
    """``{"base": acc, "novel": acc, "all": acc}``: base crops among the base names, novel crops
    among the novel names, all crops among all names (:func:`crop_accuracy`, rounded to 4 digits)."""
    clip.model.eval()
    return {part: round(crop_accuracy(clip, annotations, ids, annotations.names(ids), template, scale), 4)
            for part, ids in vocabularies(annotations).items()}


def box_counts(annotations: BoxAnnotations, class_ids: Sequence[int]) -> tuple[int, int]:
    """``(images with a box of class_ids, boxes of class_ids)`` in ``annotations``."""
    counts = [len(annotations.gt(i, list(class_ids))[0]) for i in annotations.images]
    return sum(1 for c in counts if c), sum(counts)


def train_layer_norms(clip: Clip, annotations: BoxAnnotations, config: RenormConfig,
                      progress: bool = True) -> list[dict[str, float]]:
    """Tune ``clip``'s LayerNorms in place on the base GT crops of ``annotations`` (spec §3.4);
    returns the per-epoch log ``[{"epoch", "steps", "loss", "seconds"}]``. The model is left in eval mode."""
    base_ids = annotations.class_ids("base")
    names = annotations.names(base_ids)
    label_of = {cid: i for i, cid in enumerate(base_ids)}
    images = [i for i in annotations.images if len(annotations.gt(i, base_ids)[0])]
    if not images:
        raise OvbenchError(f"{annotations.path}: no image has a base-class box to train on")
    params = layer_norm_parameters(clip.model, config.tuned_towers)
    open_only(clip.model, params)
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr, weight_decay=config.weight_decay)
    size = clip_input_size(clip.model)
    generator = torch.Generator().manual_seed(config.seed)
    text_open = "text" in config.tuned_towers
    if not text_open:
        with torch.no_grad():
            fixed_text = prompt_embeddings(clip, names, config.template)
    clip.model.eval()                       # no dropout in CLIP; LayerNorm has no running statistics
    log, start = [], time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=generator).tolist()
        batches = [order[i:i + config.batch] for i in range(0, len(order), config.batch)]
        losses = []
        for batch in tqdm(batches, desc=f"renorm epoch {epoch + 1}/{config.epochs}", disable=not progress,
                          leave=False):
            crops, labels = [], []
            for k in batch:
                image = annotations.image(images[k])
                boxes, cats = annotations.gt(images[k], base_ids)
                if config.flip and torch.rand((), generator=generator) < 0.5:
                    image, boxes = flip_horizontally(image, boxes)
                crops.append(box_crops(image, boxes, config.crop_scale, size))
                labels += [label_of[int(c)] for c in cats]
            text = prompt_embeddings(clip, names, config.template) if text_open else fixed_text
            logits = LOGIT_SCALE * image_embeddings(clip, torch.cat(crops)) @ text.T
            loss = sigmoid_bce_loss(logits, torch.tensor(labels, device=clip.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params.values(), config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        log.append({"epoch": epoch + 1, "steps": len(batches), "loss": round(float(np.mean(losses)), 6),
                    "seconds": round(time.perf_counter() - start, 2)})
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs}: loss {log[-1]['loss']:.5f} ({log[-1]['seconds']} s)",
                  file=sys.stderr)
    for p in clip.model.parameters():
        p.requires_grad_(False)
    return log


def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """The full open_clip ``state_dict`` to ``path`` (atomically), loadable as ``pretrained``."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def renormalise(config: RenormConfig, data_root: Path | str, out: Path | str, base_dir: Path | str = ".",
                device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Measure, train, measure again; write ``out/clip-renorm.pt`` and ``out/renorm-report.json``;
    return the report ``{"before", "after", "trainable_parameters", …}``."""
    out = Path(out)
    train = BoxAnnotations.load(data_root, config.train_annotations)
    val = BoxAnnotations.load(data_root, config.val_annotations)
    clip = clip_from_config(config.clip, base_dir, device=device)
    trainable = sum(p.numel() for p in layer_norm_parameters(clip.model, config.tuned_towers).values())
    before = accuracy_report(clip, val, config.template, config.crop_scale)
    start = time.perf_counter()
    log = train_layer_norms(clip, train, config, progress)
    seconds = time.perf_counter() - start
    after = accuracy_report(clip, val, config.template, config.crop_scale)
    checkpoint = out / CHECKPOINT_NAME
    save_checkpoint(clip.model, checkpoint)
    train_images, train_boxes = box_counts(train, train.class_ids("base"))
    report = {
        "before": before, "after": after, "trainable_parameters": trainable,
        "val_crops": {part: box_counts(val, ids)[1] for part, ids in vocabularies(val).items()},
        "train": {"annotations": str(train.path), "images": train_images, "boxes": train_boxes,
                  "seconds": round(seconds, 2), "log": log},
        "clip": {"name": clip.name, "source_digest": clip.digest, "checkpoint": CHECKPOINT_NAME,
                 "digest": file_digest(checkpoint)},
        "config": dataclasses.asdict(config),
    }
    atomic_write_json(out / REPORT_NAME, report)
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """Before/after crop accuracies as a small table."""
    lines = [f"{'vocabulary':<10} {'crops':>6} {'before':>8} {'after':>8}"]
    for part in ("base", "novel", "all"):
        lines.append(f"{part:<10} {report['val_crops'][part]:>6} {100 * report['before'][part]:>7.1f}% "
                     f"{100 * report['after'][part]:>7.1f}%")
    lines.append(f"trainable parameters: {report['trainable_parameters']}; training {report['train']['seconds']} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods.ezsd.renorm",
                                     description="EZSD step 1: tune CLIP's LayerNorms on base-class GT crops")
    parser.add_argument("--config", type=Path, required=True, help="renorm config (YAML)")
    parser.add_argument("--data-root", type=Path, required=True, help="root of the annotation files and images")
    parser.add_argument("--out", type=Path, required=True, help="folder for clip-renorm.pt and renorm-report.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = RenormConfig.load(args.config)
    report = renormalise(config, args.data_root, args.out, args.config.parent, args.device,
                         progress=not args.no_progress)
    print(format_report(report))
    print(f"wrote {args.out / CHECKPOINT_NAME} and {args.out / REPORT_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, "python -m methods.ezsd.renorm"))
