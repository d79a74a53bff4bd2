"""Writing a whole synthetic world to disk (``ovbench data synth``).

Every item (image, video, caption pair) draws from its own random stream seeded by
``(seed, kind, split, index)``, so an item does not depend on the others or on the order in
which they are made, and the same seed gives byte-identical files.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ovbench.errors import OvbenchError
from ovbench.protocols import ClassInfo, get_protocol
from ovbench.synth import coco
from ovbench.synth.appearance import LOOKS, STUFF_IDS, THING_IDS
from ovbench.synth.captions import render_caption_pair
from ovbench.synth.images import render_image
from ovbench.synth.pngio import save_png
from ovbench.synth.videos import render_video

GENERATOR_VERSION = 2
PROTOCOL_ID = "synth-ov"
WORLD_FILE = "world.json"
SPLITS = ("train", "val")
# What a world consists of; a previous world's copies are removed before a new one is written.
OUTPUTS = ("images", "annotations", "videos", "detection", "captions", WORLD_FILE)
LAYOUT = {
    "images": "images/{split}/{id}.png",
    "labels": "annotations/{split}/{id}.png",
    "video_frames": "videos/{split}/frames/{video}/{frame:05d}.png",
    "video_semantic": "videos/{split}/semantic/{video}/{frame:05d}.png",
    "video_instances": "videos/{split}/instances/{video}/{frame:05d}.png",
    "video_index": "videos/{split}/videos.json",
    "video_tracks": "videos/{split}/instances.json",
    "detection": "detection/instances_{split}.json",
    "caption_images": "captions/images/{id}.png",
    "captions": "captions/captions.jsonl",
}
IGNORE = 255


@dataclass(frozen=True)
class WorldSizes:
    """How many items of each kind a world has, and their sizes in pixels."""

    train_images: int = 300
    val_images: int = 100
    image_size: int = 128
    train_videos: int = 8
    val_videos: int = 6
    video_frames: int = 20
    video_size: int = 128
    caption_pairs: int = 3000
    caption_size: int = 64

    def images(self, split: str) -> int:
        return self.train_images if split == "train" else self.val_images

    def videos(self, split: str) -> int:
        return self.train_videos if split == "train" else self.val_videos

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 0:
                raise OvbenchError(f"world size {f.name}={value!r}: use a non-negative integer")
        for name in ("image_size", "video_size", "caption_size"):
            if getattr(self, name) < 32:
                raise OvbenchError(f"world size {name}={getattr(self, name)}: use at least 32 pixels")
        if self.video_frames < 1:
            raise OvbenchError(f"world size video_frames={self.video_frames}: use at least 1")


def image_id(split: str, index: int) -> str:
    return f"synth_{split}_{index:06d}"


def video_id(split: str, index: int) -> str:
    return f"synth_{split}_video_{index:03d}"


def caption_id(index: int) -> str:
    return f"synth_cap_{index:06d}"


def read_world(out: Path | str) -> dict[str, Any] | None:
    """The ``world.json`` of a finished world at ``out``, or None if there is none (or unfinished)."""
    path = Path(out) / WORLD_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return info if info.get("complete") else None


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OvbenchError(f"{out}: exists and is not a folder; choose another --out for the synthetic world")
    if out.is_dir() and any(out.iterdir()):
        if not (out / WORLD_FILE).is_file():
            raise OvbenchError(f"{out}: folder is not empty and holds no synthetic world (no {WORLD_FILE}); "
                               f"choose an empty or new --out folder, or delete this one")
        for name in OUTPUTS:  # a previous world: replace it
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _base_only_lut(classes: Sequence[ClassInfo]) -> np.ndarray:
    """A uint8 lookup table that maps novel class ids to the ignore label."""
    lut = np.arange(256, dtype=np.uint8)
    for c in classes:
        if c.partition == "novel":
            lut[c.id] = IGNORE
    return lut


def generate_world(out: Path, seed: int = 0, sizes: WorldSizes | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Write the synthetic open-vocabulary world to ``out``; returns the ``world.json`` contents.

    ``out`` must be missing, empty, or a previous world (which is replaced). Train labels (image
    semantic maps, video semantic and instance maps, COCO annotations) carry base classes only;
    val labels carry every class.
    """
    out = Path(out)
    sizes = sizes or WorldSizes()
    sizes.validate()
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise OvbenchError(f"seed {seed!r}: use a non-negative integer")
    seed = int(seed)
    protocol = get_protocol(PROTOCOL_ID)
    classes = protocol.require_classes()
    if len(classes) != len(LOOKS):
        raise OvbenchError(f"protocol {PROTOCOL_ID} has {len(classes)} classes but the synthetic world "
                           f"defines {len(LOOKS)} looks; update ovbench/synth/appearance.py")
    novel = {c.id for c in classes if c.partition == "novel"}
    lut = _base_only_lut(classes)
    _prepare_out(out)
    _write_json(out / WORLD_FILE, {"generator": "ovbench.synth", "version": GENERATOR_VERSION,
                                   "complete": False})

    total = (sizes.train_images + sizes.val_images
             + (sizes.train_videos + sizes.val_videos) * sizes.video_frames + sizes.caption_pairs)
    bar = tqdm(total=total, desc="synthetic world", unit="item", disable=not progress)
    counts: dict[str, Any] = {"images": {}, "instances": {}, "videos": {}, "video_frames": {},
                              "tracks": {}, "class_images": {}}
    for split in SPLITS:
        train = split == "train"
        class_images = np.zeros(len(classes), np.int64)
        images, annotations = [], []
        n_inst = {"base": 0, "novel": 0}
        for i in range(sizes.images(split)):
            iid = image_id(split, i)
            scene = render_image(seed, split, i, sizes.image_size)
            save_png(scene.rgb, out / "images" / split / f"{iid}.png")
            save_png(lut[scene.semantic] if train else scene.semantic, out / "annotations" / split / f"{iid}.png")
            class_images[np.unique(scene.semantic)] += 1
            for cid in scene.classes:
                n_inst["novel" if cid in novel else "base"] += 1
            images.append({"id": i + 1, "file_name": f"images/{split}/{iid}.png", "image_key": iid,
                           "width": sizes.image_size, "height": sizes.image_size})
            annotations += coco.instance_annotations(
                scene.instances, scene.classes, i + 1, len(annotations) + 1,
                keep=(lambda c: c not in novel) if train else (lambda c: True))
            bar.update()
        _write_json(out / "detection" / f"instances_{split}.json",
                    coco.document(split, images, annotations, classes))
        counts["images"][split] = sizes.images(split)
        counts["instances"][split] = {**n_inst, "annotated": len(annotations)}
        counts["class_images"][split] = class_images.tolist()

        index, n_tracks, ytvis_videos, ytvis_tracks = [], 0, [], []
        for v in range(sizes.videos(split)):
            vid = video_id(split, v)
            video = render_video(seed, split, v, sizes.video_size, sizes.video_frames)
            novel_tracks = [k for k, cid in video.tracks if cid in novel]
            names = [f"{t:05d}.png" for t in range(sizes.video_frames)]
            ytvis_videos.append({"id": v + 1, "name": vid, "width": sizes.video_size, "height": sizes.video_size,
                                 "length": sizes.video_frames,
                                 "file_names": [f"videos/{split}/frames/{vid}/{n}" for n in names]})
            for t, frame in enumerate(video.frames):
                name = f"{t:05d}.png"
                inst = frame.instances
                if train and novel_tracks:
                    inst = np.where(np.isin(inst, novel_tracks), 0, inst).astype(np.uint16)
                save_png(frame.rgb, out / "videos" / split / "frames" / vid / name)
                save_png(lut[frame.semantic] if train else frame.semantic,
                         out / "videos" / split / "semantic" / vid / name)
                save_png(inst, out / "videos" / split / "instances" / vid / name)
                bar.update()
            tracks = [{"track_id": k, "category_id": cid} for k, cid in video.tracks
                      if not (train and cid in novel)]
            n_tracks += len(tracks)
            maps = [f.instances for f in video.frames]
            for t in tracks:
                ann = coco.track_annotation(maps, t["track_id"], t["category_id"], v + 1, len(ytvis_tracks) + 1)
                if any(ann["areas"]):           # a thing hidden in every frame is no ground truth
                    ytvis_tracks.append(ann)
            index.append({"video": vid, "num_frames": sizes.video_frames, "height": sizes.video_size,
                          "width": sizes.video_size, "tracks": tracks})
        _write_json(out / "videos" / split / "videos.json", index)
        _write_json(out / "videos" / split / "instances.json",
                    coco.video_document(split, ytvis_videos, ytvis_tracks, classes))
        counts["videos"][split] = sizes.videos(split)
        counts["video_frames"][split] = sizes.videos(split) * sizes.video_frames
        counts["tracks"][split] = n_tracks

    caption_classes = np.zeros(len(classes), np.int64)
    lines = []
    for i in range(sizes.caption_pairs):
        cid = caption_id(i)
        pair = render_caption_pair(seed, i, sizes.caption_size, classes)
        save_png(pair.rgb, out / "captions" / "images" / f"{cid}.png")
        caption_classes[pair.classes] += 1
        lines.append(json.dumps({"image": f"captions/images/{cid}.png", "caption": pair.caption,
                                 "classes": pair.classes}))
        bar.update()
    (out / "captions").mkdir(parents=True, exist_ok=True)
    (out / "captions" / "captions.jsonl").write_text("".join(line + "\n" for line in lines))
    counts["caption_pairs"] = sizes.caption_pairs
    counts["class_captions"] = caption_classes.tolist()
    bar.close()

    world = {
        "generator": "ovbench.synth", "version": GENERATOR_VERSION, "complete": True,
        "protocol": PROTOCOL_ID, "protocol_hash": protocol.hash, "seed": seed, "sizes": asdict(sizes),
        "ignore_label": IGNORE,
        "notes": ("train labels (annotations/train, videos/train/semantic and instances, "
                  "detection/instances_train.json) carry base classes only: novel pixels are 255 in "
                  "semantic maps and 0 in instance maps; val carries every class. class_images counts "
                  "the images that show each class (full labels, before the base-only rule)."),
        "layout": LAYOUT, "counts": counts,
        "stuff_ids": list(STUFF_IDS), "thing_ids": list(THING_IDS),
        "classes": [{"id": c.id, "name": c.name, "partition": c.partition, **LOOKS[c.id].to_dict()}
                    for c in classes],
    }
    _write_json(out / WORLD_FILE, world)
    return world
