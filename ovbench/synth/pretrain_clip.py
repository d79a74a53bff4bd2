"""Pre-train ovbench's tiny CLIP (``tiny-vit``) on the synthetic world's image-caption pairs, and
measure its zero-shot accuracy on crops of the synthetic val images.

The captions name every class of ``synth-ov`` (novel ones included, with their synonyms): like a
real CLIP, the pre-trained model has seen the whole vocabulary; only the detectors and segmenters
trained on top of it are restricted to base classes.

- :func:`pretrain_tiny_clip` trains contrastively (``open_clip.ClipLoss``) with a plain, seeded
  loop (AdamW, linear warm-up then cosine decay, random horizontal flips), single process, CPU by
  default; the same config and world give bit-identical weights. It writes the ``state_dict``
  (loadable by ``Clip("tiny-vit", pretrained=path)``) and a JSON report next to it.
- :func:`zero_shot_accuracy` classifies thing crops (val detection boxes, enlarged 1.2x) and stuff
  crops (48x48 windows that are >= 80 % one stuff class) against all 24 classes, with prompt
  templates averaged per name and max pooling over each class's names; top-1 accuracy is reported
  for base and novel classes separately, with chance level 1/24.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ovbench.errors import OvbenchError
from ovbench.models.clip import to_clip_input

PROTOCOL_ID = "synth-ov"


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain_tiny_clip`; ``steps`` (if set) stops early, for tests."""

    arch: str = "tiny-vit"
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0
    threads: int = 2
    flip: bool = True
    steps: int | None = None
    templates: str = "scene"
    progress: bool = True

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise OvbenchError(f"pretrain config: epochs={self.epochs}, batch_size={self.batch_size}; "
                               f"use epochs >= 1 and batch_size >= 2 (contrastive needs pairs to compare)")
        if self.steps is not None and self.steps < 1:
            raise OvbenchError(f"pretrain config: steps={self.steps}; use None or at least 1")


@dataclass
class PretrainResult:
    """What :func:`pretrain_tiny_clip` did: the files written, the report (also in the JSON) and
    the trained :class:`~ovbench.models.clip.Clip` (eval mode)."""

    weights: Path
    report_path: Path
    report: dict[str, Any] = field(default_factory=dict)
    clip: Any = None


def load_caption_pairs(world_dir: Path | str) -> tuple[np.ndarray, list[str]]:
    """All caption pairs of the world: images ``(N, H, W, 3)`` uint8 and their captions."""
    world_dir = Path(world_dir)
    path = world_dir / "captions" / "captions.jsonl"
    if not path.is_file():
        raise OvbenchError(f"{path}: no caption pairs; generate the world with `ovbench data synth --out {world_dir}`")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if len(rows) < 2:
        raise OvbenchError(f"{path}: {len(rows)} caption pair(s); contrastive pre-training needs at least 2")
    images = np.stack([np.asarray(Image.open(world_dir / r["image"]).convert("RGB")) for r in rows])
    return images, [r["caption"] for r in rows]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "logit_scale" in name or "embedding" in name or "ln" in name or "bias" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_clip(world_dir: Path | str, config: PretrainConfig | None = None):
    """Train and return ``(clip, report)``: the :class:`~ovbench.models.clip.Clip` (in eval mode)
    and a dict with the config, per-epoch mean loss, step count and seconds. Writes nothing."""
    import open_clip
    from ovbench.models.clip import Clip

    config = config or PretrainConfig()
    config.validate()
    images, captions = load_caption_pairs(world_dir)
    n = len(captions)
    batch = min(config.batch_size, n)
    per_epoch = n // batch                       # drop the last partial batch: fixed-size contrastive batches
    total = per_epoch * config.epochs if config.steps is None else min(config.steps, per_epoch * config.epochs)

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        clip = Clip(config.arch, seed=config.seed)
        model = clip.model
        tokens = clip.tokenizer(captions)
        pixels = to_clip_input(images)
        opt = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
        loss_fn = open_clip.ClipLoss()
        gen = torch.Generator().manual_seed(config.seed)
        model.train()
        log: list[dict[str, Any]] = []
        step = 0
        start = time.perf_counter()
        bar = tqdm(total=total, desc=f"pretrain {config.arch}", unit="step", disable=not config.progress)
        for epoch in range(config.epochs):
            if step >= total:
                break
            order = torch.randperm(n, generator=gen)
            flips = torch.rand(n, generator=gen) < 0.5
            losses = []
            for b in range(per_epoch):
                if step >= total:
                    break
                idx = order[b * batch:(b + 1) * batch]
                x = pixels[idx]
                if config.flip:
                    f = flips[idx]
                    x[f] = x[f].flip(-1)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total, config)
                img, txt, scale = _unpack(model(x, tokens[idx]))   # scale: exp(logit_scale)
                loss = loss_fn(img, txt, scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():               # CLIP's clamp: temperature at most 100
                    model.logit_scale.clamp_(0, math.log(100))
                losses.append(loss.item())
                step += 1
                bar.update()
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
            log.append({"epoch": epoch, "steps": len(losses), "loss": float(np.mean(losses)),
                        "seconds": round(time.perf_counter() - start, 2)})
        bar.close()
        model.eval()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    report = {"config": asdict(config), "pairs": n, "batch_size": batch, "steps": step,
              "train_seconds": round(seconds, 2), "seconds_per_step": round(seconds / max(1, step), 4),
              "logit_scale": round(model.logit_scale.detach().exp().item(), 3), "log": log}
    return clip, report


def _unpack(out: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(out, dict):
        return out["image_features"], out["text_features"], out["logit_scale"]
    return out[0], out[1], out[2]


def pretrain_tiny_clip(world_dir: Path | str, out_path: Path | str, config: PretrainConfig | None = None,
                       evaluate: bool = True) -> PretrainResult:
    """Train the tiny CLIP on ``world_dir``'s caption pairs and save its ``state_dict`` to
    ``out_path`` (``.pt``) plus a report ``out_path.with_suffix(".json")`` (config, per-epoch
    loss, timing and, with ``evaluate``, :func:`zero_shot_accuracy` on the world's val images)."""
    config = config or PretrainConfig()
    out_path = Path(out_path)
    clip, report = train_clip(world_dir, config)
    if evaluate:
        t0 = time.perf_counter()
        report["zero_shot"] = zero_shot_accuracy(clip, world_dir, templates_name=config.templates)
        report["eval_seconds"] = round(time.perf_counter() - t0, 2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    torch.save(clip.model.state_dict(), tmp)
    tmp.replace(out_path)
    report_path = out_path.with_suffix(".json")
    report["weights"] = out_path.name
    report["weights_bytes"] = out_path.stat().st_size
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    return PretrainResult(out_path, report_path, report, clip)


# ---------------------------------------------------------------- zero-shot evaluation


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def val_crops(world_dir: Path | str, size: int = 64, enlarge: float = 1.2, window: int = 48, stride: int = 16,
              purity: float = 0.8, stuff_per_image: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of the world's val images: ``(crops (N, size, size, 3) uint8, labels (N,), is_thing (N,))``.

    Things: every val detection box, enlarged ``enlarge``x about its centre and clipped to the
    image. Stuff: ``window``-px windows on a ``stride`` grid whose pixels are >= ``purity`` one stuff
    class; per image at most ``stuff_per_image``, the purest first, distinct classes preferred.
    """
    from ovbench.synth.appearance import STUFF_IDS

    world_dir = Path(world_dir)
    det_path = world_dir / "detection" / "instances_val.json"
    if not det_path.is_file():
        raise OvbenchError(f"{det_path}: missing; zero-shot accuracy needs a synthetic world's val split")
    det = json.loads(det_path.read_text())
    boxes: dict[int, list[dict[str, Any]]] = {}
    for a in det["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a)
    stuff = np.zeros(256, bool)
    stuff[list(STUFF_IDS)] = True
    crops, labels, things = [], [], []
    for im in sorted(det["images"], key=lambda d: d["id"]):
        rgb = np.asarray(Image.open(world_dir / im["file_name"]).convert("RGB"))
        h, w = rgb.shape[:2]
        for a in boxes.get(im["id"], []):
            x, y, bw, bh = a["bbox"]
            cx, cy, half_w, half_h = x + bw / 2, y + bh / 2, bw * enlarge / 2, bh * enlarge / 2
            x0, y0 = max(0, int(math.floor(cx - half_w))), max(0, int(math.floor(cy - half_h)))
            x1, y1 = min(w, int(math.ceil(cx + half_w))), min(h, int(math.ceil(cy + half_h)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            crops.append(_resize(rgb[y0:y1, x0:x1], size))
            labels.append(int(a["category_id"]))
            things.append(True)
        label_path = world_dir / "annotations" / "val" / (Path(im["file_name"]).stem + ".png")
        if not label_path.is_file() or stuff_per_image <= 0:
            continue
        sem = np.asarray(Image.open(label_path))
        cands = []
        for yy in range(0, h - window + 1, stride):
            for xx in range(0, w - window + 1, stride):
                win = sem[yy:yy + window, xx:xx + window]
                counts = np.bincount(win.ravel(), minlength=256)
                cls = int(np.argmax(counts))
                frac = counts[cls] / win.size
                if stuff[cls] and frac >= purity:
                    cands.append((-frac, yy, xx, cls))
        cands.sort()
        chosen, seen = [], set()
        for c in cands:                      # distinct classes first, then the purest remaining
            if c[3] not in seen and len(chosen) < stuff_per_image:
                chosen.append(c)
                seen.add(c[3])
        for c in cands:
            if len(chosen) >= stuff_per_image:
                break
            if c not in chosen:
                chosen.append(c)
        for _, yy, xx, cls in chosen:
            crops.append(_resize(rgb[yy:yy + window, xx:xx + window], size))
            labels.append(cls)
            things.append(False)
    if not crops:
        raise OvbenchError(f"{world_dir}: no val crops (no detection boxes and no pure stuff windows)")
    return np.stack(crops), np.asarray(labels, np.int64), np.asarray(things, bool)


@torch.no_grad()
def class_text_embeddings(clip: Any, classes: Sequence[Any], templates: Sequence[str]) -> tuple[torch.Tensor, np.ndarray]:
    """Every name of every class, embedded (templates averaged): ``(names (M, D), owner class index (M,))``."""
    names, owner = [], []
    for k, c in enumerate(classes):
        for name in c.names:
            names.append(name)
            owner.append(k)
    return clip.name_embeddings(names, templates), np.asarray(owner)


@torch.no_grad()
def classify(clip: Any, crops: np.ndarray, classes: Sequence[Any], templates: Sequence[str],
             batch: int = 256) -> np.ndarray:
    """Top-1 class index (into ``classes``) of each crop, max-pooling scores over each class's names."""
    text, owner = class_text_embeddings(clip, classes, templates)
    preds = []
    for s in range(0, len(crops), batch):
        emb = clip.encode_image(to_clip_input(crops[s:s + batch]))
        sims = emb.float() @ text.float().T                            # (B, M)
        scores = torch.full((sims.shape[0], len(classes)), -float("inf"))
        for k in range(len(classes)):
            scores[:, k] = sims[:, torch.from_numpy(owner == k)].max(dim=1).values
        preds.append(scores.argmax(dim=1).numpy())
    return np.concatenate(preds)


def zero_shot_accuracy(clip: Any, world_dir: Path | str, templates_name: str = "scene",
                       classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """Zero-shot top-1 accuracy of ``clip`` on crops of ``world_dir``'s val images against all classes.

    Returns ``base`` / ``novel`` / ``all`` top-1 (over crops), ``*_mean_class`` (mean of per-class
    accuracy), ``things`` / ``stuff`` top-1, ``chance`` (1/K), crop counts and ``per_class``.
    """
    from ovbench.models.prompts import templates as prompt_templates
    from ovbench.protocols import get_protocol

    if classes is None:
        classes = get_protocol(PROTOCOL_ID).classes
    classes = list(classes)
    crops, labels, things = val_crops(world_dir)
    index = {c.id: k for k, c in enumerate(classes)}
    preds = classify(clip, crops, classes, prompt_templates(templates_name))
    pred_ids = np.asarray([classes[p].id for p in preds])
    correct = pred_ids == labels
    novel_ids = {c.id for c in classes if c.partition == "novel"}
    is_novel = np.asarray([int(l) in novel_ids for l in labels])

    def acc(mask: np.ndarray) -> float | None:
        return float(correct[mask].mean()) if mask.any() else None

    per_class = {}
    for c in classes:
        m = labels == c.id
        if m.any():
            per_class[c.name] = {"id": c.id, "partition": c.partition, "crops": int(m.sum()),
                                 "top1": float(correct[m].mean())}

    def mean_class(part: str) -> float | None:
        vals = [v["top1"] for v in per_class.values() if v["partition"] == part]
        return float(np.mean(vals)) if vals else None

    unknown = sorted({int(l) for l in labels} - set(index))
    if unknown:
        raise OvbenchError(f"val crops carry class ids {unknown} that the vocabulary lacks")
    return {"base": acc(~is_novel), "novel": acc(is_novel), "all": acc(np.ones_like(correct)),
            "base_mean_class": mean_class("base"), "novel_mean_class": mean_class("novel"),
            "things": acc(things), "stuff": acc(~things), "chance": 1.0 / len(classes),
            "crops": {"base": int((~is_novel).sum()), "novel": int(is_novel.sum()),
                      "things": int(things.sum()), "stuff": int((~things).sum())},
            "templates": templates_name, "per_class": per_class}
