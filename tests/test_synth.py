"""The synthetic world: determinism, layout and formats, base-only train labels, COCO, captions."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovbench.errors import OvbenchError
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world, read_world

TINY = WorldSizes(train_images=10, val_images=8, image_size=64, train_videos=2, val_videos=2,
                  video_frames=8, video_size=64, caption_pairs=48, caption_size=48)
PROTOCOL = get_protocol("synth-ov")
NOVEL = set(PROTOCOL.class_ids("novel"))
BASE = set(PROTOCOL.class_ids("base"))
ALL = NOVEL | BASE
# pycocotools' decode trips numpy 2's __array__ copy-keyword deprecation
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "synth"
    generate_world(out, seed=0, sizes=TINY, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _png(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    again = tmp_path / "again"
    generate_world(again, seed=0, sizes=TINY, progress=False)
    a, b = _files(world), _files(again)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    other = tmp_path / "other"
    generate_world(other, seed=1, sizes=TINY, progress=False)
    c = _files(other)
    assert sorted(c) == sorted(a)
    differing = [k for k in a if k.endswith(".png") and a[k] != c[k]]
    assert len(differing) > 0.9 * sum(k.endswith(".png") for k in a)


def test_world_json(world):
    info = read_world(world)
    assert info is not None and info["complete"] and info["seed"] == 0
    assert info["sizes"]["train_images"] == TINY.train_images
    assert [c["name"] for c in info["classes"]] == [c.name for c in PROTOCOL.classes]
    assert info["counts"]["images"] == {"train": TINY.train_images, "val": TINY.val_images}
    assert all("colour" in c and "texture" in c for c in info["classes"])


def test_image_splits(world):
    for split, n in (("train", TINY.train_images), ("val", TINY.val_images)):
        images = sorted((world / "images" / split).glob("*.png"))
        labels = sorted((world / "annotations" / split).glob("*.png"))
        assert len(images) == len(labels) == n
        assert [p.name for p in images] == [p.name for p in labels]
        assert images[0].name == f"synth_{split}_000000.png"
        seen: set[int] = set()
        for ip, lp in zip(images, labels):
            mode, img = _png(ip)
            assert mode == "RGB" and img.shape == (TINY.image_size, TINY.image_size, 3)
            mode, lab = _png(lp)
            assert mode == "L" and lab.shape == img.shape[:2] and lab.dtype == np.uint8
            values = set(np.unique(lab).tolist())
            assert values <= ALL | {255}
            seen |= values
        if split == "train":
            assert not seen & NOVEL, "train labels must not carry novel classes"
            assert 255 in seen, "novel pixels of train images are marked ignore"
        else:
            assert 255 not in seen
            assert seen & NOVEL, "val labels carry novel classes"


def test_videos(world):
    for split, n in (("train", TINY.train_videos), ("val", TINY.val_videos)):
        index = json.loads((world / "videos" / split / "videos.json").read_text())
        assert len(index) == n
        for entry in index:
            assert entry["num_frames"] == TINY.video_frames
            assert entry["height"] == entry["width"] == TINY.video_size
            tracks = {t["track_id"]: t["category_id"] for t in entry["tracks"]}
            assert tracks and all(k >= 1 for k in tracks)
            if split == "train":
                assert not set(tracks.values()) & NOVEL
            vid = entry["video"]
            frames = sorted((world / "videos" / split / "frames" / vid).glob("*.png"))
            assert [p.name for p in frames] == [f"{t:05d}.png" for t in range(TINY.video_frames)]
            seen_tracks: set[int] = set()
            for f in frames:
                mode, rgb = _png(f)
                assert mode == "RGB" and rgb.shape == (TINY.video_size, TINY.video_size, 3)
                mode, sem = _png(world / "videos" / split / "semantic" / vid / f.name)
                assert mode == "L" and sem.shape == rgb.shape[:2]
                mode, inst = _png(world / "videos" / split / "instances" / vid / f.name)
                assert mode == "I;16" and inst.dtype == np.uint16 and inst.shape == rgb.shape[:2]
                ids = set(np.unique(inst).tolist()) - {0}
                assert ids <= set(tracks), "every instance id is a listed track"
                for k in ids:  # one class per track, the listed one
                    assert set(np.unique(sem[inst == k]).tolist()) == {tracks[k]}
                seen_tracks |= ids
                # every thing pixel (a class with a COCO category) belongs to a track
                thing_px = np.isin(sem, [c for c in tracks.values()])
                assert (inst[thing_px] > 0).all()
                if split == "train":
                    assert not set(np.unique(sem).tolist()) & NOVEL
            assert seen_tracks, f"{vid}: no track is visible"


def test_coco_detection(world):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    thing_ids = {c["id"] for c in json.loads((world / "world.json").read_text())["classes"]
                 if c["kind"] == "thing"}
    for split in ("train", "val"):
        coco = COCO(str(world / "detection" / f"instances_{split}.json"))
        cats = coco.loadCats(coco.getCatIds())
        assert {c["id"] for c in cats} == thing_ids and len(cats) == 16
        assert all(c["name"] == PROTOCOL.classes[c["id"]].name for c in cats)
        assert all(c["partition"] in ("base", "novel") and len(c["synonyms"]) == 2 for c in cats)
        assert len(coco.getImgIds()) == TINY.images(split)
        annotated_cats = set()
        for img in coco.loadImgs(coco.getImgIds()):
            assert (world / img["file_name"]).is_file()
            _, sem = _png(world / img["file_name"].replace("images/", "annotations/", 1))
            union = {}
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                m = coco.annToMask(ann).astype(bool)
                assert m.sum() == ann["area"] == mask_utils.area(ann["segmentation"]) > 0
                ys, xs = np.nonzero(m)
                assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
                assert (sem[m] == ann["category_id"]).all()
                c = ann["category_id"]
                assert not (union.get(c, np.zeros_like(m)) & m).any(), "visible masks do not overlap"
                union[c] = union.get(c, np.zeros_like(m)) | m
                annotated_cats.add(c)
            for c in thing_ids:  # the masks of a class cover exactly its labelled pixels
                if split == "train" and c in NOVEL:
                    continue
                assert (union.get(c, np.zeros(sem.shape, bool)) == (sem == c)).all()
        if split == "train":
            assert not annotated_cats & NOVEL
        else:
            assert annotated_cats & NOVEL


def test_captions(world):
    lines = (world / "captions" / "captions.jsonl").read_text().splitlines()
    assert len(lines) == TINY.caption_pairs
    records = [json.loads(line) for line in lines]
    text = " ".join(r["caption"] for r in records)
    for r in records:
        mode, img = _png(world / r["image"])
        assert mode == "RGB" and img.shape == (TINY.caption_size, TINY.caption_size, 3)
        assert r["caption"] and set(r["classes"]) <= ALL
    for c in PROTOCOL.classes:  # every class, novel ones included, is named in some caption
        assert any(re.search(rf"\b{re.escape(n)}\b", text) for n in c.names), c.name
    synonyms = [s for c in PROTOCOL.classes if c.partition == "novel" for s in c.synonyms]
    assert any(re.search(rf"\b{re.escape(s)}\b", text) for s in synonyms)


def test_foreign_folder_is_refused(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OvbenchError, match=r"mine.*world\.json"):
        generate_world(foreign, sizes=TINY, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not (foreign / "images").exists()


def test_previous_world_is_replaced(tmp_path):
    out = tmp_path / "w"
    generate_world(out, seed=0, sizes=TINY, progress=False)
    smaller = WorldSizes(**{**TINY.__dict__, "train_images": 3, "caption_pairs": 5})
    info = generate_world(out, seed=2, sizes=smaller, progress=False)
    assert info["seed"] == 2
    assert len(list((out / "images" / "train").glob("*.png"))) == 3
    assert len(list((out / "captions" / "images").glob("*.png"))) == 5


def test_bad_sizes_and_seed(tmp_path):
    with pytest.raises(OvbenchError, match="image_size"):
        generate_world(tmp_path / "a", sizes=WorldSizes(image_size=8), progress=False)
    with pytest.raises(OvbenchError, match="seed"):
        generate_world(tmp_path / "b", seed=-1, sizes=TINY, progress=False)


def test_synth_ovd_scores_the_ground_truth_perfectly(world, tmp_path):
    """The detection protocol reads the world's val JSON; its own annotations score AP 100."""
    from ovbench.evaluation.detection import evaluate_detection_submission
    from ovbench.protocols import get_protocol

    protocol = get_protocol("synth-ovd")
    gt = json.loads((world / "detection" / "instances_val.json").read_text())
    assert [c["id"] for c in gt["categories"]] == [c.id for c in protocol.classes]
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
             "segmentation": a["segmentation"]} for a in gt["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    m = evaluate_detection_submission(protocol, tmp_path / "dets.json", world, progress=False).metrics
    for iou in ("bbox", "segm"):
        assert m[iou]["AP_all@100"] == m[iou]["AP_novel@300"] == 100.0


def test_video_tracks_in_youtube_vis_format(world):
    from pycocotools import mask as mask_utils

    for split in ("train", "val"):
        doc = json.loads((world / "videos" / split / "instances.json").read_text())
        index = {e["video"]: e for e in json.loads((world / "videos" / split / "videos.json").read_text())}
        assert [v["name"] for v in doc["videos"]] == sorted(index)
        assert {c["id"] for c in doc["categories"]} == {c.id for c in PROTOCOL.classes if c.id >= 8}
        by_video: dict[int, list] = {}
        for ann in doc["annotations"]:
            by_video.setdefault(ann["video_id"], []).append(ann)
            assert len(ann["segmentations"]) == len(ann["areas"]) == TINY.video_frames and any(ann["areas"])
            if split == "train":
                assert ann["category_id"] not in NOVEL
        for video in doc["videos"]:
            vid = video["name"]
            assert video["length"] == TINY.video_frames and (world / video["file_names"][0]).is_file()
            tracks = {t["track_id"]: t["category_id"] for t in index[vid]["tracks"]}
            for t in range(TINY.video_frames):
                _, inst = _png(world / "videos" / split / "instances" / vid / f"{t:05d}.png")
                shown = {a["id"] for a in by_video.get(video["id"], []) if a["segmentations"][t] is not None}
                assert len(shown) == len(set(np.unique(inst).tolist()) - {0})
                for ann in by_video.get(video["id"], []):
                    seg = ann["segmentations"][t]
                    if seg is None:
                        continue
                    m = mask_utils.decode(seg).astype(bool)
                    k = int(np.unique(inst[m])[0])
                    assert (inst == k).sum() == m.sum() == ann["areas"][t] and tracks[k] == ann["category_id"]
