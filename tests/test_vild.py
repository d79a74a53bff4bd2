"""ViLD (baselines/vild): crop-ensembled CLIP targets, the offline proposal cache and its errors, the
``vild`` training method, the ViLD-ensemble branch and score arithmetic, and the real-scale configs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from baselines.vild.method import CachedRegions, ViLDSettings, vild_training
from baselines.vild.proposals import (CACHE_FORMAT, ProposalCache, box_crops, build_cache, enlarge_boxes,
                                      region_embeddings, rpn_proposals)
from ovbench.cli import main
from ovbench.data.detection_training import collate
from ovbench.engine.detector_training import DetectorRunConfig, build_detector_for_training
from ovbench.engine.segmenter_training import training_vocabulary
from ovbench.errors import OvbenchError
from ovbench.models.clip import CLIP_MEAN, CLIP_STD
from ovbench.models.detector.heads import ensemble_scores
from ovbench.models.detector.model import build_detector, detector_loss
from ovbench.models.detector.ov_detector import load_detector, save_detector_file
from ovbench.models.zoo import clip_from_config
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world

CONFIGS = Path(__file__).resolve().parents[1] / "baselines" / "vild" / "configs"
TINY_CLIP = {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth"}
#: The synth ViLD config's model, narrowed further so that a step takes about a second.
TINY = {"conv_dim": 16, "fc_dim": 32, "box_batch_size_per_image": 32, "rpn_pre_nms_top_n_train": 100,
        "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
        "detections_per_img": 20}
TOP = 6
pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = WorldSizes(train_images=2, val_images=1, image_size=128, train_videos=0, val_videos=0, caption_pairs=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=3, sizes=WORLD, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_clip():
    return clip_from_config(TINY_CLIP)


def synth_run(name: str = "synth-ovd-text", **model: object) -> dict:
    """A synth ViLD config as a dict, with the :data:`TINY` model sizes and ``model`` overrides."""
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    raw["model"].update(TINY, **model)
    return raw


@pytest.fixture(scope="module")
def cache(world, tmp_path_factory) -> tuple[Path, Path]:
    """(detector model file with random weights, its proposal cache of the 2 training images, top 6)."""
    folder = tmp_path_factory.mktemp("vild")
    setup = build_detector_for_training(DetectorRunConfig.from_dict(synth_run()), CONFIGS, world)
    summary = {"name": "vild-text", "protocol": "synth-ovd", "split": "train", "classes": "base"}
    model = save_detector_file(folder / "model.pt", setup.net, setup.run.model, setup.names, summary)
    build_cache(model, world, folder / "cache", TINY_CLIP, top=TOP, device="cpu", progress=False)
    return model, folder / "cache"


# ---------------------------------------------------------------- crops and the crop ensemble


def test_enlarged_boxes_and_crops_by_hand():
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    # 1.5x about the centre (15, 20): half sizes 7.5 x 15; the second box is clipped at the top-left corner
    assert torch.equal(enlarge_boxes(boxes, 1.5, 40, 60),
                       torch.tensor([[7.5, 5.0, 22.5, 35.0], [0.0, 0.0, 12.5, 12.5]]))
    assert torch.equal(enlarge_boxes(torch.tensor([[50.0, 30.0, 60.0, 40.0]]), 2.0, 40, 60),
                       torch.tensor([[45.0, 25.0, 60.0, 40.0]]))                       # clipped at W, H
    assert torch.equal(enlarge_boxes(boxes, 1.0, 40, 60), boxes)
    image = torch.rand(3, 8, 8)
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    # the whole 8x8 image at CLIP's 8 px input: every sample lands on a pixel centre
    assert torch.allclose(box_crops(image, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), 8)[0], (image - mean) / std, atol=1e-5)
    # a box of one colour gives a crop of that colour, whatever the resampling
    image[:, 1:7, 0:8] = torch.tensor([0.2, 0.5, 0.9]).view(3, 1, 1)      # one pixel beyond the box: bilinear taps
    crop = box_crops(image, torch.tensor([[1.0, 2.0, 7.0, 6.0]]), 5)[0]
    assert torch.allclose(crop, ((torch.tensor([0.2, 0.5, 0.9]).view(3, 1, 1) - mean) / std).expand(3, 5, 5), atol=1e-5)


class StubClip:
    """Records its inputs; call ``i`` embeds every crop as the unit vector ``e_i`` (a 4-d space)."""

    name, digest, embed_dim = "stub", "stub-digest", 4

    def __init__(self) -> None:
        self.model = type("M", (), {"visual": type("V", (), {"image_size": 8})()})()
        self.inputs: list[torch.Tensor] = []

    def encode_image(self, crops: torch.Tensor) -> torch.Tensor:
        self.inputs.append(crops)
        return torch.eye(4)[len(self.inputs) - 1].expand(len(crops), 4)


def test_region_embedding_is_the_normalised_mean_of_the_1x_and_1_5x_crop_embeddings(tiny_clip):
    image = torch.rand(3, 40, 60)
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    stub = StubClip()
    out = region_embeddings(stub, image, boxes)
    # e_0 (1x crops) and e_1 (1.5x crops), averaged and re-normalised: (1, 1, 0, 0) / sqrt(2)
    assert torch.allclose(out, torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2) / math.sqrt(2))
    assert len(stub.inputs) == 2 and stub.inputs[0].shape == (2, 3, 8, 8)
    assert torch.equal(stub.inputs[0], box_crops(image, boxes, 8))
    assert torch.equal(stub.inputs[1], box_crops(image, torch.tensor([[7.5, 5.0, 22.5, 35.0], [0, 0, 12.5, 12.5]]), 8))
    # the tiny CLIP: L2norm(v_1x + v_1.5x) of its (normalised) image embeddings
    v1 = tiny_clip.encode_image(box_crops(image, boxes, 64))
    v15 = tiny_clip.encode_image(box_crops(image, enlarge_boxes(boxes, 1.5, 40, 60), 64))
    expected = (v1 + v15) / (v1 + v15).norm(dim=1, keepdim=True)
    assert torch.allclose(region_embeddings(tiny_clip, image, boxes), expected, atol=1e-5)
    assert region_embeddings(tiny_clip, image, torch.zeros(0, 4)).shape == (0, 64)


# ---------------------------------------------------------------- the proposal cache


def test_proposal_cache_round_trip_and_method_targets(world, cache, tiny_clip):
    model, folder = cache
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == CACHE_FORMAT and manifest["top"] == TOP and manifest["crop_scales"] == [1.0, 1.5]
    assert manifest["detector"] == {"path": str(model.resolve()),
                                    "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    assert manifest["clip"] == {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth",
                                "digest": tiny_clip.digest, "embed_dim": 64}
    assert (manifest["protocol"], manifest["split"]) == ("synth-ovd", "train")
    assert "python -m baselines.vild.proposals --model" in manifest["command"] and "--top 6" in manifest["command"]

    setup = build_detector_for_training(DetectorRunConfig.from_dict(synth_run("synth-ovd")), CONFIGS, world)
    ids = [int(e["id"]) for e in setup.dataset.images]
    assert manifest["images"] == len(ids) == len(list(folder.glob("*.npz"))) >= 1
    detector = load_detector(model)
    total = 0
    for index, image_id in enumerate(ids):
        with np.load(folder / f"{image_id}.npz") as data:
            boxes, embeddings = data["boxes"], data["embeddings"]
        assert boxes.dtype == np.float32 and embeddings.dtype == np.float16
        assert 1 <= len(boxes) <= TOP and embeddings.shape == (len(boxes), 64)
        assert (boxes >= 0).all() and (boxes[:, 2:] <= 128).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert np.allclose(np.linalg.norm(embeddings.astype(np.float32), axis=1), 1, atol=1e-2)
        image = torch.from_numpy(setup.dataset.read(index)[0].copy()).permute(2, 0, 1).float() / 255
        assert np.allclose(boxes, rpn_proposals(detector.net, image, TOP).numpy(), atol=1e-4)   # best first
        total += len(boxes)
    assert manifest["proposals"] == total

    # the method: cached regions, at most max_regions, weight 1, as the dataset's extra targets
    parts = vild_training({"kind": "vild", "proposals": str(folder), "max_regions": 4}, setup)
    assert parts.module is setup.net and isinstance(setup.dataset.extra_targets, CachedRegions)
    extra = setup.dataset.extra_targets(ids[0], np.random.default_rng(0))
    boxes, embeddings = ProposalCache.open(folder).load(ids[0])
    assert torch.equal(extra["distill_boxes"], torch.from_numpy(boxes[:4]))
    assert torch.equal(extra["distill_embeddings"], torch.from_numpy(embeddings[:4]))
    assert extra["distill_embeddings"].dtype == torch.float32 and torch.equal(extra["distill_weights"], torch.ones(4))
    _, target = setup.dataset[(0, 0)]
    assert len(target["distill_boxes"]) == 4 and target["distill_embeddings"].shape == (4, 64)
    assert ViLDSettings.from_method({"kind": "vild", "proposals": None}).proposals is None   # ViLD-text


def test_cache_errors_are_clear_one_liners(world, cache, tmp_path):
    _, folder = cache
    broken = tmp_path / "cache"
    shutil.copytree(folder, broken)
    setup = build_detector_for_training(DetectorRunConfig.from_dict(synth_run("synth-ovd")), CONFIGS, world)
    ids = [int(e["id"]) for e in setup.dataset.images]
    method = {"kind": "vild", "proposals": str(broken)}
    errors = []
    # built with another CLIP: the manifest's digest differs from the run's
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "clip": {**manifest["clip"], "digest": "0" * 16}}))
    with pytest.raises(OvbenchError, match=r"by CLIP tiny-vit \(digest 0{16}\) but this run's CLIP is tiny-vit") as e:
        vild_training(method, setup)
    errors.append(e)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    # a missing image file: named, with the command that rebuilds the cache
    (broken / f"{ids[0]}.npz").unlink()
    with pytest.raises(OvbenchError, match=rf"{ids[0]}\.npz: proposals of 1 training image\(s\) missing .*python") as e:
        vild_training(method, setup)
    errors.append(e)
    with pytest.raises(OvbenchError, match=rf"{ids[0]}\.npz: image {ids[0]} missing from the ViLD proposal cache") as e:
        ProposalCache.open(broken).load(ids[0])
    errors.append(e)
    # a corrupt file
    (broken / f"{ids[0]}.npz").write_bytes(b"not a zip")
    with pytest.raises(OvbenchError, match=rf"{ids[0]}\.npz: corrupt ViLD proposal file .*the cache with `python") as e:
        ProposalCache.open(broken).load(ids[0])
    errors.append(e)
    # no manifest, a foreign manifest, bad settings
    (broken / "manifest.json").unlink()
    with pytest.raises(OvbenchError, match="no ViLD proposal cache here") as e:
        vild_training(method, setup)
    errors.append(e)
    (broken / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(OvbenchError, match="not a ViLD proposal cache manifest") as e:
        ProposalCache.open(broken)
    errors.append(e)
    with pytest.raises(OvbenchError, match=r"unknown: \['top'\]") as e:
        vild_training({"kind": "vild", "proposals": str(folder), "top": 3}, setup)
    errors.append(e)
    setup.run = dataclasses.replace(setup.run, model=dataclasses.replace(setup.run.model, ensemble=True))
    with pytest.raises(OvbenchError, match="model.ensemble needs distillation regions") as e:
        vild_training({"kind": "vild", "proposals": None}, setup)
    errors.append(e)
    assert all("\n" not in str(e.value) for e in errors)
    assert main(["train", str(CONFIGS / "synth-ovd.yaml"), "--data-root", str(world), "--output-dir",
                 str(tmp_path / "run"), "--set", f"method.proposals={broken}", "--no-progress"]) == 2


def test_three_step_vild_training_logs_the_distillation_loss(world, cache, tmp_path):
    _, folder = cache
    out = tmp_path / "run"
    overrides = [f"model.{k}={v}" for k, v in TINY.items()] + [
        f"method.proposals={folder}", "train.iterations=3", "train.global_batch_size=2", "train.log_period=1",
        "train.warmup_iterations=1", "train.milestones=[2]", "train.checkpoint_period=3"]
    args = ["train", str(CONFIGS / "synth-ovd.yaml"), "--data-root", str(world), "--output-dir", str(out),
            "--no-progress"]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all("loss_distill" in r and math.isfinite(r["loss_distill"]) and r["loss_distill"] > 0 for r in rows)
    assert load_detector(out / "model.pt").spec.distill_weight == 0.5


# ---------------------------------------------------------------- ViLD-ensemble


def test_ensemble_arithmetic_by_hand():
    p_text = torch.tensor([[0.5, 0.2], [0.064, 0.027]])
    p_img = torch.tensor([[0.125, 0.8], [0.001, 0.008]])
    seen = torch.tensor([True, False])                        # class 0 was a training class, class 1 is novel
    out = ensemble_scores(p_text, p_img, seen)
    # seen: p_text^(2/3) p_img^(1/3); novel: p_text^(1/3) p_img^(2/3)
    expected = torch.tensor([[0.5 ** (2 / 3) * 0.5, 0.2 ** (1 / 3) * 0.8 ** (2 / 3)],
                             [0.16 * 0.1, 0.3 * 0.04]])
    assert torch.allclose(out, expected, rtol=1e-5)
    # ViLD's code: the cube root of p_img * p_text * (seen ? p_text : p_img)
    third = torch.where(seen, p_text, p_img)
    assert torch.allclose(out, (p_text * p_img * third).pow(1 / 3), rtol=1e-5)


def test_ensemble_branches_learn_from_separate_losses_and_predict(world, tiny_clip, tmp_path):
    run = DetectorRunConfig.from_dict(synth_run(ensemble=True, mask=False))
    setup = build_detector_for_training(run, CONFIGS, world)
    net, heads = setup.net, setup.net.roi_heads
    branch = heads.image_branch
    assert branch is not None and branch.proj.out_features == 64
    assert sum(isinstance(m, torch.nn.Conv2d) for m in branch.modules()) == 4       # convfc-420000's own convs
    images, targets = collate([setup.dataset[(0, 0)]])
    # without distillation regions the image branch gets no gradient
    sum(detector_loss(net.train(), (images, targets)).values()).backward()
    assert all(p.grad is None for p in branch.parameters())
    assert heads.box_predictor.proj.weight.grad is not None
    net.zero_grad(set_to_none=True)
    # the distillation loss trains the image branch only (and the shared features), not the text branch
    targets[0].update({"distill_boxes": torch.tensor([[0.0, 0.0, 64.0, 64.0], [30.0, 40.0, 120.0, 100.0]]),
                       "distill_embeddings": torch.randn(2, 64)})
    features = net.backbone(net.transform(images, [dict(t) for t in targets])[0].tensors)
    heads.distillation_loss(features, [(128, 128)], [targets[0]]).backward()
    assert branch.proj.weight.grad.abs().sum() > 0
    assert heads.box_predictor.proj.weight.grad is None and all(p.grad is None for p in heads.box_head.parameters())
    # saved and reloaded: the image branch comes back; unseen classes are flagged for the ensemble
    model = save_detector_file(tmp_path / "model.pt", net, run.model, setup.names, {"name": "vild-ensemble"})
    detector = load_detector(model)
    assert torch.equal(detector.net.roi_heads.image_branch.proj.weight, branch.proj.weight)
    detector.set_vocabulary([[setup.names[0]], ["dog", "puppy"]])
    assert detector.net.predictor.seen.tolist() == [True, False]
    detections = detector.predict(np.zeros((128, 96, 3), np.uint8))
    assert detections and all(0 <= d.score <= 1 and d.label in (0, 1) for d in detections)


# ---------------------------------------------------------------- real scale


@pytest.mark.parametrize("config", ["coco-ovd-r50", "lvis-r50"])
def test_real_scale_configs_build_and_step_at_reduced_size(config):
    run = DetectorRunConfig.from_dict(yaml.safe_load((CONFIGS / f"{config}.yaml").read_text()))
    spec = run.model
    assert (spec.backbone, spec.backbone_weights, spec.backbone_norm, spec.box_head, spec.head_norm) == \
        ("resnet50", None, "bn", "convfc-420000", "bn")
    assert spec.normalize_background and not spec.learn_temperature and spec.temperature_init == 100
    assert not spec.semantic_regression and spec.distill_weight == 0.5 and spec.detections_per_img == 300
    assert spec.template == "a photo of a {}" and spec.clip["name"] == "ViT-B-32"
    assert (run.train.optimizer, run.train.iterations, run.train.milestones) == ("sgd", 180000, (162000, 171000))
    assert math.isclose(run.train.lr / run.train.global_batch_size, 0.32 / 256)   # ViLD's per-image lr
    assert run.method == {"kind": "vild", "proposals": f"../../../runs/{config.split('-')[0]}/vild-proposals",
                          "max_regions": 300}
    protocol = get_protocol(run.data.protocol)
    names = training_vocabulary(protocol, "base")[1] if protocol.classes else ["apple", "banjo", "yak"]
    spec = dataclasses.replace(spec, clip={"name": "ViT-B-32", "pretrained": None}, box_batch_size_per_image=128)
    net = build_detector(spec, clip_from_config(spec.clip), names)
    heads = net.roi_heads
    assert heads.box_predictor.regressor.in_features == 1024 and heads.box_predictor.proj.out_features == 512
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in heads.box_head.modules()) == 4
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 1
    net.transform.min_size, net.transform.max_size = (128,), 213
    masks = torch.zeros(1, 96, 160, dtype=torch.uint8)
    masks[0, 20:60, 30:90] = 1
    target = {"boxes": torch.tensor([[30.0, 20.0, 90.0, 60.0]]), "labels": torch.tensor([2]), "masks": masks,
              "distill_boxes": torch.tensor([[0.0, 0.0, 80.0, 96.0], [40.0, 10.0, 150.0, 90.0]]),
              "distill_embeddings": torch.randn(2, 512)}
    losses = detector_loss(net.train(), ([torch.rand(3, 96, 160)], [target]))
    assert len(losses) == 6 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert heads.box_predictor.proj.weight.grad is not None and net.backbone.body.conv1.weight.grad is not None
