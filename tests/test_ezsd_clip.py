"""EZSD's CLIP side (methods/ezsd): box crops, LayerNorm re-normalisation, CLIP proposals,
distillation regions and their cache. Hand-checkable numbers; a tiny end-to-end run at the end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from methods.ezsd import regions as regions_mod
from methods.ezsd import renorm as renorm_mod
from methods.ezsd.crops import box_crops, crop_windows
from methods.ezsd.proposals import dense_anchors, entropy_scores, nms_top_k
from methods.ezsd.regions import (ImageRegions, RegionCache, drop_gt_overlaps, keep_regions,
                                  nearest_by_l1)
from methods.ezsd.renorm import layer_norm_parameters, open_only, sigmoid_bce_loss
from ovbench.cli import run_script
from ovbench.errors import OvbenchError
from ovbench.models.clip import CLIP_MEAN, CLIP_STD, Clip
from ovbench.models.zoo import resolve_weights

MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def pixels(crop: torch.Tensor) -> torch.Tensor:
    """A CLIP-normalised crop ``(3, S, S)`` back to pixel values in [0, 255]."""
    return (crop * STD + MEAN) * 255


def coordinate_image(height: int = 20, width: int = 30) -> np.ndarray:
    """Every pixel distinct: R = 8 x + 1, G = 8 y + 1, B = 200."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack([8 * xs + 1, 8 * ys + 1, np.full_like(xs, 200)], axis=-1).astype(np.uint8)


# ---------------------------------------------------------------- crops


def test_crop_window_is_enlarged_about_the_centre_and_rounded_outwards():
    # box 10x4 at (10, 4); 1.2x: centre (15, 6), half sizes 6 and 2.4 -> x 9..21, y 3.6..8.4 -> 3..9
    assert crop_windows(torch.tensor([[10.0, 4, 20, 8]]), 20, 30, 1.2).tolist() == [[9, 3, 21, 9]]
    # clipped to the image: (-1, -1, 11, 11) -> (0, 0, 11, 11)
    assert crop_windows(torch.tensor([[0.0, 0, 10, 10]]), 20, 30, 1.2).tolist() == [[0, 0, 11, 11]]
    assert crop_windows(torch.tensor([[2.5, 3.0, 7.5, 6.0]]), 20, 30, 1.0).tolist() == [[2, 3, 8, 6]]
    with pytest.raises(OvbenchError):
        crop_windows(torch.tensor([[40.0, 0, 50, 10]]), 20, 30, 1.2)


def test_box_crop_pastes_the_window_centred_into_a_black_square():
    image = coordinate_image()
    # window (9, 3)-(21, 9): 12 wide, 6 high -> a 12x12 square, content in rows 3..8
    crop = pixels(box_crops(image, np.array([[10.0, 4, 20, 8]]), scale=1.2, size=12)[0])
    expected = torch.zeros(3, 12, 12)
    expected[:, 3:9, :] = torch.from_numpy(image[3:9, 9:21]).permute(2, 0, 1).float()
    assert torch.allclose(crop, expected, atol=1e-3)
    # a tall window: 2 wide (x 4..6), 6 high (y 0..6) -> content in columns 2..3 of a 6x6 square
    crop = pixels(box_crops(image, np.array([[4.0, 0, 6, 6]]), scale=1.0, size=6)[0])
    expected = torch.zeros(3, 6, 6)
    expected[:, :, 2:4] = torch.from_numpy(image[0:6, 4:6]).permute(2, 0, 1).float()
    assert torch.allclose(crop, expected, atol=1e-3)


def test_box_crops_resize_to_the_clip_side_and_normalise():
    image = coordinate_image()
    crops = box_crops(torch.from_numpy(image).float(), torch.tensor([[10.0, 4, 20, 8], [0, 0, 30, 20]]), 1.2, 48)
    assert crops.shape == (2, 3, 48, 48) and crops.dtype == torch.float32
    black = (-MEAN / STD).flatten()
    assert torch.allclose(crops[0, :, 0, 0], black, atol=1e-4)      # top rows are padding
    assert not torch.allclose(crops[0, :, 24, 24], black, atol=1e-2)  # the centre is content
    # the whole image, clipped: 30x20 in a 30x30 square, rows 5..24 content -> 8..39 of 48
    assert torch.allclose(crops[1, :, :6, :], black.view(3, 1, 1).expand(3, 6, 48), atol=1e-4)
    assert torch.allclose(crops[1, :, -6:, :], black.view(3, 1, 1).expand(3, 6, 48), atol=1e-4)


# ---------------------------------------------------------------- re-normalisation


def test_only_layer_norm_parameters_are_trainable():
    clip = Clip("tiny-vit")
    params = layer_norm_parameters(clip.model)
    trainable = open_only(clip.model, params)
    norms = [m for m in clip.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert trainable == sum(p.numel() for m in norms for p in m.parameters())
    assert {n for n, p in clip.model.named_parameters() if p.requires_grad} == set(params)
    assert all("ln_" in n for n in params)
    image_only = layer_norm_parameters(clip.model, ("image",))
    visual_norms = [m for m in clip.model.visual.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert sum(p.numel() for p in image_only.values()) == sum(p.numel() for m in visual_norms
                                                              for p in m.parameters())
    assert all(n.startswith("visual.") for n in image_only)


def test_renorm_config_towers_and_keys():
    config = renorm_mod.RenormConfig.from_dict({"clip": {"name": "tiny-vit"}, "epochs": 1, "towers": {"text": False}})
    assert config.tuned_towers == ("image",)
    with pytest.raises(OvbenchError):
        renorm_mod.RenormConfig.from_dict({"clip": {"name": "tiny-vit"}, "epochs": 1, "lr_schedule": "cosine"})
    with pytest.raises(OvbenchError):
        renorm_mod.RenormConfig.from_dict({"clip": {"name": "tiny-vit"}, "epochs": 1,
                                           "towers": {"image": False, "text": False}})


def test_sigmoid_bce_is_the_mean_over_boxes_and_classes():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 1.2, -2.0]])
    labels = torch.tensor([0, 2])

    def bce(x: float, y: int) -> float:
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(2.0, 1) + bce(-1.0, 0) + bce(0.5, 0) + bce(-0.3, 0) + bce(1.2, 0) + bce(-2.0, 1)) / 6
    assert sigmoid_bce_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- proposals


def test_dense_anchors_by_hand():
    anchors = dense_anchors(16, 16, stride=8, sides=(8, 16), ratios=(1.0,))
    # centres (0,0), (8,0), (0,8), (8,8); per centre side 8 then side 16; clipped to [0, 16]
    assert anchors.tolist() == [[0, 0, 4, 4], [0, 0, 8, 8], [4, 0, 12, 4], [0, 0, 16, 8],
                                [0, 4, 4, 12], [0, 0, 8, 16], [4, 4, 12, 12], [0, 0, 16, 16]]
    assert len(dense_anchors(128, 128, stride=16, sides=(16, 32, 64, 128))) == 8 * 8 * 4 * 3
    assert len(dense_anchors(800, 1216)) == 25 * 38 * 15           # spec: ~14,250 anchors
    # ratio = height / width at constant area: the last centre (32, 32) of a 64x64 image
    wide, tall = dense_anchors(64, 64, stride=32, sides=(32,), ratios=(0.5, 2.0))[-2:]
    w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)
    assert wide.tolist() == pytest.approx([32 - w / 2, 32 - h / 2, 32 + w / 2, 32 + h / 2], abs=1e-4)
    assert tall.tolist() == pytest.approx([32 - h / 2, 32 - w / 2, 32 + h / 2, 32 + w / 2], abs=1e-4)


def test_score_is_log_c_minus_entropy():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    expected = [math.log(3), math.log(3) - (0.5 * math.log(2) + 0.5 * math.log(4))]
    assert entropy_scores(probs).tolist() == pytest.approx(expected, abs=1e-6)


def test_nms_keeps_the_right_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # B overlaps A at 90/110 > 0.7: gone; C overlaps A at 0.5: stays
    assert nms_top_k(boxes, scores, 0.7, 10).tolist() == [3, 0, 2]
    assert nms_top_k(boxes, scores, 0.7, 2).tolist() == [3, 0]


# ---------------------------------------------------------------- regions


def test_proposals_near_base_gt_are_dropped_in_order():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    boxes = torch.tensor([[50.0, 50, 60, 60],   # IoU 0: kept
                          [0, 0, 10, 20],       # 0.5: dropped
                          [7, 0, 17, 10],       # 30/170: kept
                          [0, 0, 10, 3],        # exactly 0.3: dropped
                          [5, 0, 15, 10],       # 1/3: dropped
                          [20, 0, 30, 10]])     # 0: kept
    assert drop_gt_overlaps(boxes, gt, 0.3).tolist() == [0, 2, 5]
    assert drop_gt_overlaps(boxes, torch.zeros(0, 4), 0.3).tolist() == list(range(6))


def test_base_filter_and_keep_preserve_order():
    is_base = torch.tensor([True, False, True])
    labels = torch.tensor([0, 1, 2, 1, 1, 0])
    assert keep_regions(labels, is_base, base_filter=True, keep=300).tolist() == [1, 3, 4]
    assert keep_regions(labels, is_base, base_filter=True, keep=2).tolist() == [1, 3]
    assert keep_regions(labels, is_base, base_filter=False, keep=2).tolist() == [0, 1]


def write_cache(root: Path, regions: int = 250, dim: int = 4) -> None:
    boxes = np.stack([np.arange(regions)] * 2 + [np.arange(regions) + 5] * 2, axis=1).astype(np.float32)
    ImageRegions(boxes=boxes, embeddings=np.repeat(np.arange(regions, dtype=np.float32)[:, None], dim, 1),
                 confidences=np.arange(regions, dtype=np.float32) / 1000, category_ids=np.zeros(regions, np.int64),
                 scores=np.zeros(regions, np.float32),
                 gt_boxes=np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
                 gt_embeddings=np.array([[1.0] * dim, [2.0] * dim], np.float32),
                 gt_category_ids=np.array([8, 9]), counts=np.array([1, 1, 1])).save(root / "regions" / "7.npz")
    (root / "manifest.json").write_text(json.dumps({"schema": regions_mod.SCHEMA, "images": [7], "complete": True}))


def test_sampling_is_with_replacement_from_the_fixed_subset(tmp_path):
    write_cache(tmp_path)
    cache = RegionCache(tmp_path)
    a = cache.sample(7, 200, np.random.default_rng(0))
    b = cache.sample(7, 200, np.random.default_rng(0))
    index = a.embeddings[:, 0].astype(int)                         # region i has embedding i
    assert index.tolist() == np.random.default_rng(0).choice(200, 200, replace=True).tolist()
    assert index.max() < 200 and len(np.unique(index)) < 200       # first 200 only; duplicates
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.weights, b.weights)
    assert np.allclose(a.weights, index / 1000) and np.array_equal(a.boxes[:, 0], index)
    gt = cache.gt_features(7, np.array([[21, 19, 40, 41], [1, 0, 10, 10]], np.float32))
    assert gt.embeddings[:, 0].tolist() == [2.0, 1.0] and gt.weights.tolist() == [1.0, 1.0]
    assert nearest_by_l1(np.zeros((0, 4)), np.zeros((0, 4))).tolist() == []


# ---------------------------------------------------------------- end to end


def tiny_world(root: Path) -> None:
    """3 train + 2 val images of 32x32 px; categories 8, 9 base and 14 novel; the train file also
    holds one novel box, which regions must never read."""
    rng = np.random.default_rng(0)
    cats = [{"id": 8, "name": "ball", "partition": "base"}, {"id": 9, "name": "box", "partition": "base"},
            {"id": 14, "name": "dog", "partition": "novel"}]
    for split, count in (("train", 3), ("val", 2)):
        images, anns = [], []
        for i in range(count):
            name = f"images/{split}/{i}.png"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name)
            images.append({"id": i + 1, "file_name": name, "width": 32, "height": 32})
            for k, (cat, bbox) in enumerate([(8, [2, 2, 10, 12]), (9, [16, 14, 12, 10]), (14, [4, 18, 8, 8])]):
                if cat == 14 and split == "train" and i > 0:
                    continue
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": bbox,
                             "area": bbox[2] * bbox[3], "iscrowd": 0})
        (root / "detection").mkdir(exist_ok=True)
        (root / "detection" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_renorm_and_regions_end_to_end(tmp_path):
    world, out = tmp_path / "world", tmp_path / "renorm"
    tiny_world(world)
    config = tmp_path / "renorm.yaml"
    config.write_text("clip: {name: tiny-vit, pretrained: 'builtin:tiny-vit-synth'}\nepochs: 1\nbatch: 2\n")
    assert renorm_mod.main(["--config", str(config), "--data-root", str(world), "--out", str(out),
                            "--no-progress"]) == 0
    report = json.loads((out / renorm_mod.REPORT_NAME).read_text())
    assert set(report["before"]) == set(report["after"]) == {"base", "novel", "all"}
    assert report["val_crops"] == {"base": 4, "novel": 2, "all": 6}
    tuned = Clip("tiny-vit", pretrained=out / renorm_mod.CHECKPOINT_NAME)
    original = Clip("tiny-vit", pretrained=resolve_weights("builtin:tiny-vit-synth"))
    before = dict(original.model.named_parameters())
    changed = {n for n, p in tuned.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(layer_norm_parameters(tuned.model))
    assert report["trainable_parameters"] == sum(p.numel() for p in layer_norm_parameters(tuned.model).values())

    cache_dir = tmp_path / "regions"
    args = ["--data-root", str(world), "--clip-name", "tiny-vit", "--clip-weights", str(out / "clip-renorm.pt"),
            "--out", str(cache_dir), "--stride", "16", "--sides", "16", "32", "--keep", "5", "--limit", "2",
            "--no-progress"]
    assert regions_mod.main(args) == 0
    cache = RegionCache(cache_dir)
    assert cache.image_ids == [1, 2] and cache.manifest["counts"]["anchors_per_image"] == 2 * 2 * 2 * 3
    for image_id in cache.image_ids:
        regions = cache.load(image_id)
        assert len(regions.boxes) <= 5 and regions.embeddings.shape == (len(regions.boxes), 64)
        assert not np.isin(regions.category_ids, [8, 9]).any()      # base filter
        assert regions.gt_category_ids.tolist() == [8, 9]           # base GT only, never the novel box
        assert regions.gt_embeddings.shape == (2, 64)
        sample = cache.sample(image_id, 10, np.random.default_rng(1))
        assert len(sample.boxes) == (10 if len(regions.boxes) else 0)
    assert regions_mod.main(args) == 0                              # rerun: every image cached already
    refused = run_script(regions_mod.main, "regions", args[:-1] + ["--keep", "6", "--no-progress"])
    assert refused == 2                                             # other settings: refused, exit 2
