"""EZSD's detector training method (methods/ezsd/method.py): settings, the distillation regions fed to the
detector (GT + sampled CLIP proposals, flips), cache checks, the text_clip swap, a tiny `ovbench train` /
`predict` of synth-ovd.yaml, and the real-scale configs."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from methods.ezsd import regions as regions_mod
from methods.ezsd.crops import BoxAnnotations
from methods.ezsd.method import EZSDRegions, EZSDSettings, dataset_gt_boxes, ezsd_training
from methods.ezsd.regions import ImageRegions, RegionCache, RegionSettings, build_region_cache
from ovbench.cli import main
from ovbench.engine.detector_training import DetectorRunConfig, build_detector_for_training
from ovbench.engine.segmenter_training import training_vocabulary
from ovbench.errors import OvbenchError
from ovbench.models.detector.model import build_detector, detector_loss
from ovbench.models.detector.ov_detector import read_detector_file
from ovbench.models.zoo import clip_from_config
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world

CONFIGS = Path(__file__).resolve().parents[1] / "methods" / "ezsd" / "configs"
TINY_CLIP = {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth"}
#: synth-ovd.yaml's model narrowed further so that a training step takes about a second.
TINY = {"clip": TINY_CLIP, "conv_dim": 16, "fc_dim": 32, "box_batch_size_per_image": 32,
        "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 50, "detections_per_img": 20}
WORLD = WorldSizes(train_images=3, val_images=2, image_size=128, train_videos=0, val_videos=0, caption_pairs=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=4, sizes=WORLD, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_clip():
    return clip_from_config(TINY_CLIP)


@pytest.fixture(scope="module")
def cache_dir(world, tiny_clip, tmp_path_factory) -> Path:
    """A real region cache of every training image, by the tiny CLIP (coarse anchors, 30 regions kept)."""
    out = tmp_path_factory.mktemp("regions")
    build_region_cache(tiny_clip, BoxAnnotations.load(world, "detection/instances_train.json"), out,
                       RegionSettings(stride=32, sides=(32, 64), top_k=60, keep=30), progress=False)
    return out


def synth_run(**method) -> DetectorRunConfig:
    """synth-ovd.yaml with the tiny model and the given method keys."""
    raw = yaml.safe_load((CONFIGS / "synth-ovd.yaml").read_text())
    raw["model"].update(TINY)
    raw["method"].update(method)
    return DetectorRunConfig.from_dict(raw)


def hand_cache(root: Path, digest: str, regions: int = 250) -> RegionCache:
    """One image (id 7) whose region i has box (i, i, i + 5, i + 5), embedding (i, i, i, i) and confidence
    i / 1000; cached GT boxes (0, 0, 10, 10) -> embedding 1s, (20, 20, 40, 40) -> embedding 2s."""
    index = np.arange(regions, dtype=np.float32)
    ImageRegions(boxes=np.stack([index, index, index + 5, index + 5], axis=1),
                 embeddings=np.repeat(index[:, None], 4, axis=1), confidences=index / 1000,
                 category_ids=np.zeros(regions, np.int64), scores=np.zeros(regions, np.float32),
                 gt_boxes=np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
                 gt_embeddings=np.array([[1.0] * 4, [2.0] * 4], np.float32), gt_category_ids=np.array([8, 9]),
                 counts=np.array([1, 1, 1])).save(root / "regions" / "7.npz")
    (root / "manifest.json").write_text(json.dumps({"schema": regions_mod.SCHEMA, "images": [7], "complete": True,
                                                    "clip": {"name": "tiny-vit", "digest": digest}}))
    return RegionCache(root)


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_validation():
    settings = EZSDSettings.from_dict({"kind": "ezsd"})
    assert (settings.regions, settings.proposals_per_image, settings.use_gt, settings.use_proposals,
            settings.weighting, settings.text_clip) == (None, 200, True, True, "confidence", None)
    with pytest.raises(OvbenchError, match=r"unknown ezsd method key\(s\) \['proposals'\]"):
        EZSDSettings.from_dict({"kind": "ezsd", "proposals": 3})
    with pytest.raises(OvbenchError, match="weighting must be one of"):
        EZSDSettings(weighting="objectness")
    with pytest.raises(OvbenchError, match="proposals_per_image must be >= 1"):
        EZSDSettings(proposals_per_image=0)
    with pytest.raises(OvbenchError, match="nothing to distil"):
        EZSDSettings(regions="cache", use_gt=False, use_proposals=False)
    assert not EZSDSettings(use_gt=False, use_proposals=False).use_gt        # no regions: nothing distilled anyway


# ---------------------------------------------------------------- distillation regions


def test_extra_targets_are_gt_then_proposals_drawn_with_replacement(tmp_path):
    cache = hand_cache(tmp_path, "d")
    gt = {7: np.array([[21.0, 19.0, 40.0, 41.0], [1.0, 0.0, 10.0, 10.0]], np.float32)}   # the dataset's boxes
    targets = EZSDRegions(cache, EZSDSettings(regions="c"), gt)(7, np.random.default_rng(0))
    boxes, embeddings, weights = targets["distill_boxes"], targets["distill_embeddings"], targets["distill_weights"]
    assert boxes.shape == (202, 4) and embeddings.shape == (202, 4) and weights.shape == (202,)
    assert all(t.dtype == torch.float32 for t in targets.values())
    # GT first: the dataset's own boxes, the cached feature at the smallest L1 distance, weight 1
    assert torch.equal(boxes[:2], torch.from_numpy(gt[7]))
    assert embeddings[:2, 0].tolist() == [2.0, 1.0] and weights[:2].tolist() == [1.0, 1.0]
    # then 200 proposals drawn with replacement from the first 200, weighted by confidence
    index = np.random.default_rng(0).choice(200, 200, replace=True)
    assert embeddings[2:, 0].long().tolist() == index.tolist() and boxes[2:, 0].long().tolist() == index.tolist()
    assert index.max() < 200 and len(np.unique(index)) < 200
    assert torch.allclose(weights[2:], torch.from_numpy(index / 1000).float())
    again = EZSDRegions(cache, EZSDSettings(regions="c"), gt)(7, np.random.default_rng(0))
    assert all(torch.equal(again[k], targets[k]) for k in targets)
    other = EZSDRegions(cache, EZSDSettings(regions="c"), gt)(7, np.random.default_rng(1))
    assert not torch.equal(other["distill_boxes"], boxes)


def test_extra_targets_switches_and_errors(tmp_path):
    cache = hand_cache(tmp_path, "d")
    gt = {7: np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)}
    rng = np.random.default_rng
    gt_only = EZSDRegions(cache, EZSDSettings(regions="c", use_proposals=False), gt)(7, rng(0))
    assert gt_only["distill_boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]] and gt_only["distill_weights"].tolist() == [1]
    uniform = EZSDRegions(cache, EZSDSettings(regions="c", weighting="uniform", proposals_per_image=50), gt)(7, rng(0))
    assert len(uniform["distill_weights"]) == 51 and torch.equal(uniform["distill_weights"], torch.ones(51))
    proposals_only = EZSDRegions(cache, EZSDSettings(regions="c", use_gt=False), {})(7, rng(0))
    assert len(proposals_only["distill_boxes"]) == 200 and proposals_only["distill_weights"].max() < 0.2
    too_many = {7: np.zeros((3, 4), np.float32) + np.arange(1, 4, dtype=np.float32)[:, None]}
    with pytest.raises(OvbenchError, match="3 training GT boxes but 2 cached GT features"):
        EZSDRegions(cache, EZSDSettings(regions="c"), too_many)(7, rng(0))


def test_gt_regions_are_the_dataset_boxes_and_flip_with_the_image(world, cache_dir):
    setup = build_detector_for_training(synth_run(regions=str(cache_dir)), CONFIGS, world)
    ezsd_training(setup.run.method, setup)
    data = setup.dataset
    gt = dataset_gt_boxes(data)
    flips = set()
    for index in range(len(data)):
        _, target = data.read(index)
        assert np.array_equal(gt[int(target["image_id"])], target["boxes"].numpy())
        for epoch in range(4):
            _, sample = data[(index, epoch)]
            count = len(sample["boxes"])
            # the GT regions are the (possibly flipped) training boxes; proposals are flipped alike
            assert torch.equal(sample["distill_boxes"][:count], sample["boxes"])
            flipped = not torch.equal(sample["boxes"], target["boxes"])
            flips.add(flipped)
            cached = RegionCache(cache_dir).sample(int(target["image_id"]), 200,
                                                   np.random.default_rng([0, index, epoch, 1]))
            proposals = torch.from_numpy(cached.boxes)
            assert len(sample["distill_boxes"]) == count + len(proposals) and len(proposals) in (0, 200)
            if flipped:
                width = WORLD.image_size
                proposals = torch.stack([width - proposals[:, 2], proposals[:, 1], width - proposals[:, 0],
                                         proposals[:, 3]], dim=1)
            assert torch.allclose(sample["distill_boxes"][count:], proposals)
    assert flips == {False, True}


def test_cache_checks_name_the_command(world, cache_dir, tmp_path, tiny_clip):
    def train_setup(**method):
        setup = build_detector_for_training(synth_run(**method), CONFIGS, world)
        return ezsd_training(setup.run.method, setup)

    with pytest.raises(OvbenchError, match="manifest.json missing.*python -m methods.ezsd.regions"):
        train_setup(regions=str(tmp_path / "nothing"))
    foreign = tmp_path / "foreign"
    hand_cache(foreign, "0123456789abcdef")
    with pytest.raises(OvbenchError, match=rf"digest 0123456789abcdef.*digest {tiny_clip.digest}.*"
                                           r"python -m methods.ezsd.regions --data-root DATA --clip-name tiny-vit"):
        train_setup(regions=str(foreign))
    partial = tmp_path / "partial"
    hand_cache(partial, tiny_clip.digest)
    with pytest.raises(OvbenchError, match="no regions for .* training images"):
        train_setup(regions=str(partial))
    run = synth_run(regions=str(cache_dir))
    setup = build_detector_for_training(dataclasses.replace(run, data=dataclasses.replace(run.data, classes="all")),
                                        CONFIGS, world)
    with pytest.raises(OvbenchError, match="base-class GT features only"):
        ezsd_training(setup.run.method, setup)


# ---------------------------------------------------------------- text_clip


def test_text_clip_swaps_the_classifier_text(world, cache_dir, tiny_clip, tmp_path):
    tuned = clip_from_config(TINY_CLIP)
    with torch.no_grad():
        tuned.model.ln_final.bias.add_(torch.randn(tuned.model.ln_final.bias.shape, generator=torch.Generator()
                                                   .manual_seed(0)))  # a "re-normalised" text tower
    torch.save(tuned.model.state_dict(), tmp_path / "clip-b.pt")
    run = synth_run(regions=None, text_clip=str(tmp_path / "clip-b.pt"))
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, output_dir=str(tmp_path / "out")))
    setup = build_detector_for_training(run, CONFIGS, world)
    before = setup.net.predictor.text.clone()
    assert torch.allclose(before, tiny_clip.encode_text(setup.names, "a photo of a {}"), atol=1e-6)
    ezsd_training(run.method, setup)
    other = clip_from_config({"name": "tiny-vit", "pretrained": str(tmp_path / "clip-b.pt")})
    expected = F.normalize(other.encode_text(setup.names, "a photo of a {}"), dim=-1)
    assert torch.allclose(setup.net.predictor.text, expected, atol=1e-6)
    assert (setup.net.predictor.text - before).abs().max() > 0.05 and torch.equal(setup.text, setup.net.predictor.text)
    # model.pt keeps model.clip; OUTPUT/model.yaml predicts with the text tower the classifier learnt
    config = yaml.safe_load((tmp_path / "out" / "model.yaml").read_text())
    assert config == {"kind": "detector", "checkpoint": "model.pt", "name": "ezsd",
                      "clip": {"name": "tiny-vit", "pretrained": str((tmp_path / "clip-b.pt").resolve())}}
    # the distillation targets must come from the text CLIP: a cache of the run's CLIP is refused
    refused = dataclasses.replace(run, method={**run.method, "regions": str(cache_dir)},
                                  train=dataclasses.replace(run.train, output_dir=str(tmp_path / "refused")))
    setup = build_detector_for_training(refused, CONFIGS, world)
    with pytest.raises(OvbenchError, match=f"digest {other.digest}"):
        ezsd_training(refused.method, setup)
    assert not (tmp_path / "refused").exists()                   # nothing written for a refused run


# ---------------------------------------------------------------- ovbench train / predict


def test_train_and_predict_synth_ovd(world, cache_dir, tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [f"model.{k}={json.dumps(v)}" for k, v in TINY.items()] + [
        f"method.regions={cache_dir}", "method.proposals_per_image=20", "train.iterations=3",
        "train.global_batch_size=2", "train.warmup_iterations=1", "train.milestones=[]", "train.log_period=1",
        "train.checkpoint_period=3"]
    args = ["train", str(CONFIGS / "synth-ovd.yaml"), "--data-root", str(world), "--output-dir", str(out),
            "--no-progress"]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(r["loss_distill"] > 0 and math.isfinite(r["loss_distill"]) for r in rows)
    state = read_detector_file(out / "model.pt")
    assert state["summary"]["method"]["kind"] == "ezsd" and state["spec"]["semantic_regression"]
    assert not (out / "model.yaml").exists()                     # no text_clip: model.pt predicts as trained
    capsys.readouterr()
    results = tmp_path / "val.json"
    assert main(["predict", "--model", str(out / "model.pt"), "--protocol", "synth-ovd", "--data-root", str(world),
                 "--out", str(results), "--limit", "2", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2 and results.is_file()


# ---------------------------------------------------------------- real scale


@pytest.mark.parametrize("config", ["coco-ovd-r50", "lvis-r50"])
def test_real_scale_configs_build_and_step_at_reduced_size(config):
    run = DetectorRunConfig.from_dict(yaml.safe_load((CONFIGS / f"{config}.yaml").read_text()))
    spec, train = run.model, run.train
    assert (spec.backbone, spec.backbone_norm, spec.trainable_backbone_layers, spec.box_head, spec.head_norm) == \
        ("resnet50", "frozen_bn", 3, "convfc-301212", "none")
    assert spec.learn_temperature and spec.temperature_init == 100 and not spec.normalize_background
    assert spec.semantic_regression and spec.box_loss == "l1" and spec.detections_per_img == 300
    assert spec.clip["name"] == "ViT-B-32" and spec.template == "a photo of a {}"
    assert (train.optimizer, train.lr, train.global_batch_size, train.weight_decay, train.warmup_iterations,
            train.grad_clip) == ("sgd", 0.005, 4, 1e-4, 500, 10.0)
    epoch = train.iterations / 12 if config == "coco-ovd-r50" else train.iterations / 48
    assert [m / epoch for m in train.milestones] == ([8, 11] if config == "coco-ovd-r50" else [32, 44])
    if config == "coco-ovd-r50":
        assert (spec.min_size, spec.max_size, spec.distill_weight, train.iterations) == (800, 1333, 1.0, 321000)
    else:
        assert (spec.min_size, spec.distill_weight) == ((640, 672, 704, 736, 768, 800), 0.5)
    assert EZSDSettings.from_dict(run.method) == EZSDSettings(regions=f"../../../runs/{config.split('-')[0]}/"
                                                                      f"ezsd-regions")
    protocol = get_protocol(run.data.protocol)
    names = training_vocabulary(protocol, "base")[1] if protocol.classes else ["apple", "banjo", "yak"]
    spec = dataclasses.replace(spec, clip={"name": "ViT-B-32", "pretrained": None}, backbone_weights=None,
                               box_batch_size_per_image=128)
    net = build_detector(spec, clip_from_config(spec.clip), names)
    heads = net.roi_heads
    assert heads.box_predictor.regressor.in_features == 1024 + 512 and heads.box_predictor.proj.out_features == 512
    assert sum(isinstance(m, torch.nn.Conv2d) for m in heads.box_head.modules()) == 5
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 1
    net.transform.min_size, net.transform.max_size = (128,), 213
    masks = torch.zeros(1, 96, 160, dtype=torch.uint8)
    masks[0, 20:60, 30:90] = 1
    target = {"boxes": torch.tensor([[30.0, 20.0, 90.0, 60.0]]), "labels": torch.tensor([2]), "masks": masks,
              "distill_boxes": torch.tensor([[30.0, 20.0, 90.0, 60.0], [40.0, 10.0, 150.0, 90.0]]),
              "distill_embeddings": torch.randn(2, 512), "distill_weights": torch.tensor([1.0, 0.4])}
    losses = detector_loss(net.train(), ([torch.rand(3, 96, 160)], [target]))
    assert len(losses) == 6 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert heads.box_predictor.log_temperature.grad is not None and net.backbone.body.layer1[0].conv1.weight.grad is None
