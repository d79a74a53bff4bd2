"""The shared open-vocabulary detector: spec, predictor math, distillation loss, training data, one
training step, `ovbench train` / `predict` / `evaluate` on synth-ovd, and the paper-scale build."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ovbench.cli import main
from ovbench.data.detection_training import DetectionTrainingSet, collate, image_path
from ovbench.engine.detector_training import DetectorRunConfig, build_detector_for_training, is_detector_config
from ovbench.engine.optim import build_optimizer
from ovbench.errors import OvbenchError
from ovbench.models.detector.heads import ConvFCBoxHead, OVBoxPredictor
from ovbench.models.detector.model import DetectorTransform, build_detector, detector_loss
from ovbench.models.detector.ov_detector import MODEL_FORMAT, load_detector, read_detector_file
from ovbench.models.detector.spec import DetectorSpec, box_head_layout
from ovbench.models.zoo import clip_from_config
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world

TINY_CLIP = {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth"}
#: A detector small enough to train in seconds on 128 px synthetic images.
TINY_MODEL = {"kind": "detector", "clip": TINY_CLIP, "backbone": "resnet18", "backbone_norm": "bn",
              "trainable_backbone_layers": 5, "min_size": 128, "max_size": 128, "anchor_sizes": [8, 16, 32, 64, 128],
              "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100, "rpn_pre_nms_top_n_test": 200,
              "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 64, "detections_per_img": 50,
              "conv_dim": 32, "fc_dim": 64, "distill_weight": 0.5}
TINY_RUN = {"name": "tiny-detector", "model": TINY_MODEL,
            "data": {"protocol": "synth-ovd", "split": "train", "classes": "base"},
            "train": {"iterations": 4, "global_batch_size": 2, "lr": 0.01, "optimizer": "sgd", "weight_decay": 1e-4,
                      "warmup_iterations": 1, "grad_clip": 10.0, "log_period": 2, "checkpoint_period": 4}}
WORLD = WorldSizes(train_images=4, val_images=2, image_size=128, train_videos=0, val_videos=0, caption_pairs=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=5, sizes=WORLD, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_clip():
    return clip_from_config(TINY_CLIP)


def fixed_distill(image_id: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Two distillation regions per image, in original-image pixels."""
    return {"distill_boxes": torch.tensor([[4.0, 8.0, 40.0, 60.0], [50.0, 10.0, 120.0, 90.0]]),
            "distill_embeddings": torch.from_numpy(rng.standard_normal((2, 64)).astype(np.float32)),
            "distill_weights": torch.tensor([1.0, 0.25])}


# ---------------------------------------------------------------- spec


def test_spec_round_trip_defaults_and_errors():
    spec = DetectorSpec.from_dict(TINY_MODEL)
    assert DetectorSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["kind"] == "detector" and spec.test_min_size == 128
    default = DetectorSpec(clip={"name": "ViT-B-32", "pretrained": None})
    assert (default.backbone, default.min_size, default.max_size, default.box_head) == \
        ("resnet50", 800, 1333, "convfc-301212")
    assert DetectorSpec(clip=TINY_CLIP, min_size=[640, 800]).test_min_size == 800
    assert box_head_layout("convfc-420000") == (4, 2, 0, 0, 0, 0)
    with pytest.raises(OvbenchError, match=r"unknown detector key\(s\) \['min_sizes'\]"):
        DetectorSpec.from_dict({**TINY_MODEL, "min_sizes": 3})
    with pytest.raises(OvbenchError, match="convfc-ABCDEF"):
        DetectorSpec(clip=TINY_CLIP, box_head="4conv1fc")
    with pytest.raises(OvbenchError, match="branch convs cannot follow shared FCs"):
        DetectorSpec(clip=TINY_CLIP, box_head="convfc-011000")
    with pytest.raises(OvbenchError, match="backbone must be one of"):
        DetectorSpec(clip=TINY_CLIP, backbone="vgg16")
    with pytest.raises(OvbenchError, match="lacks 'clip'"):
        DetectorSpec.from_dict({"kind": "detector"})


def test_box_head_branches_and_widths():
    head = ConvFCBoxHead(16, 7, box_head_layout("convfc-301212"), conv_dim=8, fc_dim=12)
    h_cls, h_reg = head(torch.rand(5, 16, 7, 7))
    assert h_cls.shape == (5, 12) and h_reg.shape == (5, 12)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in head.modules()) == 5
    assert torch.equal(head.classification_features(torch.ones(2, 16, 7, 7)), head(torch.ones(2, 16, 7, 7))[0])
    vild = ConvFCBoxHead(16, 7, box_head_layout("convfc-420000"), conv_dim=8, fc_dim=12, norm="bn")
    assert (vild.cls_dim, vild.reg_dim) == (12, 12) and len(vild.cls_branch) == 0


# ---------------------------------------------------------------- predictor math


def identity_predictor(**kwargs) -> OVBoxPredictor:
    """2-d features projected by the identity; regressor weights ones so the input sum is visible."""
    pred = OVBoxPredictor(cls_dim=2, reg_dim=1, embed_dim=2, **kwargs)
    with torch.no_grad():
        pred.proj.weight.copy_(torch.eye(2))
        pred.proj.bias.zero_()
        pred.background.copy_(torch.tensor([0.5, 0.5]))
    return pred


def test_logits_are_temperature_times_cosine_with_background():
    pred = identity_predictor()
    pred.set_text(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))       # normalised inside: e_x, e_y
    logits, _, r = pred(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 1))
    assert torch.allclose(r, torch.tensor([[0.6, 0.8]]))
    # column 0: T (w_bg . r), unnormalised w_bg (EZSD); then T cos(r, t_c)
    assert torch.allclose(logits, torch.tensor([[70.0, 60.0, 80.0]]), atol=1e-4)
    normalised = identity_predictor(normalize_background=True)
    normalised.set_text(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert math.isclose(float(normalised.class_logits(r)[0, 0].detach()), 100 * 0.7 / math.sqrt(0.5), rel_tol=1e-5)
    # several names per class: the class logit is the max over its names
    pred.set_text(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), [0, 0, 1])
    assert torch.allclose(pred.class_logits(r), torch.tensor([[70.0, 80.0, 140 / math.sqrt(2)]]), atol=1e-4)


def test_temperature_is_learnable_or_fixed():
    pred = identity_predictor(temperature_init=50.0)
    pred.set_text(torch.eye(2))
    assert isinstance(pred.log_temperature, torch.nn.Parameter) and math.isclose(float(pred.temperature.detach()), 50.0,
                                                                                 rel_tol=1e-6)
    logits = pred.class_logits(pred.embed(torch.tensor([[3.0, 4.0]])))
    logits[0, 2].backward()
    assert math.isclose(float(pred.log_temperature.grad), 50.0 * 0.8, rel_tol=1e-5)   # d(T x)/d log T = T x
    fixed = identity_predictor(learn_temperature=False)
    assert "log_temperature" not in dict(fixed.named_parameters()) and "log_temperature" in fixed.state_dict()
    assert "text" not in fixed.state_dict()          # the vocabulary is swapped, never saved


def test_semantic_regression_input_uses_assigned_then_argmax_class():
    pred = identity_predictor(semantic_regression=True)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pred.set_text(text)
    seen = []
    pred.regressor.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    h_cls = torch.tensor([[3.0, 4.0], [4.0, 3.0], [1.0, 0.0]])
    h_reg = torch.tensor([[7.0], [8.0], [9.0]])
    # training: the GT class assigned to each RoI (0 = background -> zero vector)
    pred(h_cls, h_reg, torch.tensor([0, 2, 1]))
    assert torch.equal(seen[-1], torch.tensor([[7.0, 0.0, 0.0], [8.0, 0.0, 1.0], [9.0, 1.0, 0.0]]))
    # testing: the arg-max of the logits; a background winner gives zeros
    with torch.no_grad():
        pred.background.copy_(torch.tensor([0.0, 1.1]))       # beats both classes on the first RoI only
    logits, deltas, _ = pred(h_cls, h_reg)
    assert logits.argmax(1).tolist() == [0, 1, 1] and deltas.shape == (3, 4)
    assert torch.equal(seen[-1], torch.tensor([[7.0, 0.0, 0.0], [8.0, 1.0, 0.0], [9.0, 1.0, 0.0]]))
    plain = identity_predictor()
    plain.set_text(text)
    assert plain(h_cls, h_reg)[1].shape == (3, 4) and plain.regressor.in_features == 1


# ---------------------------------------------------------------- distillation


def test_distillation_loss_by_hand(tiny_clip):
    spec = DetectorSpec.from_dict({**TINY_MODEL, "distill_weight": 0.5, "mask": False})
    net = build_detector(spec, tiny_clip, ["ball", "box"])
    heads = net.roi_heads
    known = torch.zeros(2, 64)
    known[0, :2] = torch.tensor([0.6, 0.8])
    known[1, 1] = 1.0
    heads.box_predictor.embed = lambda h: known.to(h.dtype) + 0 * h.sum()     # r_j known, still on the graph
    features = net.backbone(torch.rand(1, 3, 64, 64))
    raw = torch.zeros(2, 64)
    raw[0, 0], raw[1, 1] = 2.0, -3.0                                          # normalised: e_0, -e_1
    target = {"distill_boxes": torch.tensor([[0.0, 0.0, 30.0, 30.0], [10.0, 10.0, 60.0, 50.0]]),
              "distill_embeddings": raw, "distill_weights": torch.tensor([1.0, 3.0])}
    loss = heads.distillation_loss(features, [(64, 64)], [target])
    # weights / mean = [0.5, 1.5]; L1 distances 1.2 and 2.0; λ (0.5 * 1.2 + 1.5 * 2.0) / 2
    assert math.isclose(float(loss.detach()), 0.5 * (0.5 * 1.2 + 1.5 * 2.0) / 2, rel_tol=1e-5)
    del target["distill_weights"]                                             # default: uniform
    uniform = heads.distillation_loss(features, [(64, 64)], [target])
    assert math.isclose(float(uniform.detach()), 0.5 * 3.2 / 2, rel_tol=1e-5)
    empty = {"distill_boxes": torch.zeros(0, 4), "distill_embeddings": torch.zeros(0, 64)}
    assert float(heads.distillation_loss(features, [(64, 64)], [empty]).detach()) == 0.0


def test_transform_rescales_distill_boxes_like_boxes():
    transform = DetectorTransform(128, 1333, [0.0] * 3, [1.0] * 3)
    target = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "labels": torch.tensor([1]),
              "distill_boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 96.0, 64.0]])}
    images, targets = transform([torch.rand(3, 64, 96)], [target])
    assert images.image_sizes == [(128, 192)]
    assert torch.allclose(targets[0]["boxes"], torch.tensor([[20.0, 40.0, 60.0, 80.0]]))
    assert torch.allclose(targets[0]["distill_boxes"], torch.tensor([[20.0, 40.0, 60.0, 80.0], [0, 0, 192, 128]]))
    assert torch.equal(target["distill_boxes"][0], torch.tensor([10.0, 20.0, 30.0, 40.0]))   # input untouched


def test_training_set_maps_base_classes_and_flips_boxes_masks_and_distill_boxes(world):
    protocol = get_protocol("synth-ovd")
    base = protocol.class_ids("base")
    data = DetectionTrainingSet(protocol, world, base, extra_targets=fixed_distill, seed=1)
    assert data.path == world / "detection/instances_train.json" and 0 < len(data) <= WORLD.train_images
    image, target = data.read(0)
    assert image.shape == (128, 128, 3) and target["labels"].min() >= 1 and target["labels"].max() <= len(base)
    assert target["masks"].shape == (len(target["boxes"]), 128, 128) and target["masks"].dtype == torch.uint8
    x, y, x2, y2 = target["boxes"][0].tolist()
    assert target["masks"][0, int(y):int(math.ceil(y2)), int(x):int(math.ceil(x2))].sum() == target["masks"][0].sum()
    outcomes = {}
    for epoch in range(8):
        tensor, out = data[(0, epoch)]
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 128, 128)
        assert 0 <= tensor.min() <= tensor.max() <= 1
        flipped = not torch.equal(out["boxes"], target["boxes"])
        outcomes[flipped] = (tensor, out)
        again = data[(0, epoch)]
        assert torch.equal(again[0], tensor) and torch.equal(again[1]["distill_embeddings"], out["distill_embeddings"])
    assert set(outcomes) == {False, True}
    tensor, out = outcomes[True]
    assert torch.equal(tensor, torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1).float() / 255)
    assert torch.equal(out["boxes"][:, [0, 2]], 128 - target["boxes"][:, [2, 0]])
    assert torch.equal(out["masks"], target["masks"].flip(-1))
    assert torch.equal(out["distill_boxes"], torch.tensor([[88.0, 8.0, 124.0, 60.0], [8.0, 10.0, 78.0, 90.0]]))
    assert torch.equal(outcomes[False][1]["distill_boxes"], fixed_distill(0, np.random.default_rng(0))["distill_boxes"])
    with pytest.raises(OvbenchError, match="not found"):
        DetectionTrainingSet(protocol, world, base, annotations="detection/missing.json")
    assert image_path("coco/{coco_split}/{file_name}", Path("/r"), {"id": 3, "coco_url":
                      "http://images.cocodataset.org/train2017/000000000003.jpg"}) == \
        Path("/r/coco/train2017/000000000003.jpg")


# ---------------------------------------------------------------- training


def test_one_training_step_of_a_tiny_detector(world, tiny_clip):
    torch.manual_seed(0)
    run = DetectorRunConfig.from_dict(TINY_RUN)
    setup = build_detector_for_training(run, ".", world)
    assert setup.names == [c.name for c in get_protocol("synth-ovd").classes if c.partition == "base"]
    assert setup.text.shape == (len(setup.names), 64)
    batch = collate([setup.dataset[(0, 0)], setup.dataset[(1, 0)]])
    losses = detector_loss(setup.net.train(), batch)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"}
    setup.dataset.extra_targets = fixed_distill
    batch = collate([setup.dataset[(0, 0)], setup.dataset[(1, 0)]])
    losses = detector_loss(setup.net, batch)
    assert "loss_distill" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    predictor = setup.net.predictor
    assert predictor.proj.weight.grad.abs().sum() > 0 and predictor.log_temperature.grad is not None
    assert predictor.background.grad is not None
    assert setup.net.backbone.body.conv1.weight.grad is not None
    optimizer = build_optimizer(setup.net, run.train)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


def test_train_predict_evaluate_on_synth_ovd(world, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    assert is_detector_config(config)
    out = tmp_path / "run"
    assert main(["train", str(config), "--data-root", str(world), "--output-dir", str(out), "--no-progress"]) == 0
    state = read_detector_file(out / "model.pt")
    assert state["format"] == MODEL_FORMAT and state["summary"]["iterations"] == 4
    assert state["training_names"] == [c.name for c in get_protocol("synth-ovd").classes if c.partition == "base"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2, 4] and "loss_mask" in rows[-1]
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["kind"] == "detector"

    detector = load_detector(out / "model.pt")
    detector.set_vocabulary([["ball", "sphere"], ["dog"]])
    image = np.zeros((96, 80, 3), np.uint8)
    detections = detector.predict(image)
    assert detections and all(d.label in (0, 1) and 0 <= d.score <= 1 and d.mask.shape == (96, 80)
                              for d in detections)
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)

    results = tmp_path / "results.json"
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "model.pt"), "--protocol", "synth-ovd", "--data-root", str(world),
                 "--out", str(results), "--limit", "2", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2
    entries = json.loads(results.read_text())
    assert entries and {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(entries[0])
    assert {e["category_id"] for e in entries} <= set(get_protocol("synth-ovd").class_ids())
    assert main(["predict", "--model", str(out / "model.pt"), "--protocol", "synth-ovd", "--data-root", str(world),
                 "--out", str(results), "--limit", "1", "--no-progress"]) == 2      # no silent overwrite
    assert main(["evaluate", "--protocol", "synth-ovd", "--predictions", str(results), "--data-root", str(world),
                 "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert "bbox" in json.dumps(metrics) and "segm" in json.dumps(metrics)


# ---------------------------------------------------------------- paper scale


def test_paper_scale_detector_builds_and_steps_at_reduced_size():
    spec = DetectorSpec(clip={"name": "ViT-B-32", "pretrained": None})       # EZSD: R50-FPN, CLIP ViT-B/32
    clip = clip_from_config(spec.clip)
    net = build_detector(spec, clip, ["person", "bicycle", "car"])
    heads = net.roi_heads
    assert (net.transform.min_size, net.transform.max_size) == ((800,), 1333)
    assert heads.box_predictor.proj.in_features == 1024 and heads.box_predictor.proj.out_features == 512
    assert heads.box_predictor.regressor.in_features == 1024 + 512                # semantic regression
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 1                  # class-agnostic masks
    assert heads.fg_bg_sampler.batch_size_per_image == 512 and heads.detections_per_img == 300
    assert net.rpn._pre_nms_top_n == {"training": 2000, "testing": 1000}
    net.transform.min_size, net.transform.max_size = (128,), 213
    masks = torch.zeros(1, 96, 160, dtype=torch.uint8)
    masks[0, 20:60, 30:90] = 1
    target = {"boxes": torch.tensor([[30.0, 20.0, 90.0, 60.0]]), "labels": torch.tensor([2]), "masks": masks,
              "distill_boxes": torch.tensor([[0.0, 0.0, 80.0, 96.0]]), "distill_embeddings": torch.randn(1, 512)}
    losses = detector_loss(net.train(), ([torch.rand(3, 96, 160)], [target]))
    assert len(losses) == 6 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert heads.box_predictor.proj.weight.grad is not None


# ---------------------------------------------------------------- real size on a GPU


def real_size_coco_step(config: str, device: str) -> None:
    """One SGD step of the real COCO config at its 800x1333 resize with its RoI counts and 200
    distillation regions per image (batch 2), then inference with the real post-processing (random
    weights: CLIP ViT-B/32 untrained, no ImageNet backbone)."""
    run = DetectorRunConfig.from_dict(yaml.safe_load((Path(__file__).resolve().parents[1] / config).read_text()))
    spec = dataclasses.replace(run.model, clip={"name": "ViT-B-32", "pretrained": None}, backbone_weights=None)
    net = build_detector(spec, clip_from_config(spec.clip, device=device), [f"class {i}" for i in range(48)])
    net = net.to(device).train()
    gen = torch.Generator().manual_seed(0)
    h, w = 480, 640
    images, targets = [], []
    for _ in range(2):
        xy = torch.rand(5, 2, generator=gen) * torch.tensor([w - 100.0, h - 100.0])
        boxes = torch.cat([xy, xy + 20 + torch.rand(5, 2, generator=gen) * 80], dim=1)
        masks = torch.zeros(5, h, w, dtype=torch.uint8)
        for m, b in zip(masks, boxes.int()):
            m[b[1]:b[3], b[0]:b[2]] = 1
        distill = torch.cat([xy, xy + 50], dim=1).repeat(40, 1)
        target = {"boxes": boxes, "labels": torch.randint(1, 49, (5,), generator=gen), "masks": masks,
                  "distill_boxes": distill, "distill_embeddings": torch.randn(len(distill), 512, generator=gen),
                  "distill_weights": torch.ones(len(distill))}
        images.append(torch.rand(3, h, w, generator=gen).to(device))
        targets.append({k: v.to(device) for k, v in target.items()})
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=run.train.lr, momentum=0.9)
    losses = detector_loss(net, (images, targets))
    assert "loss_distill" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    with torch.no_grad():
        out = net.eval()(images[:1])
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["boxes"]) <= spec.detections_per_img
    assert out[0]["masks"].shape[1:] == (1, h, w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("config", ["methods/ezsd/configs/coco-ovd-r50.yaml", "baselines/vild/configs/coco-ovd-r50.yaml"])
def test_real_size_coco_step_and_inference_on_gpu(config):
    real_size_coco_step(config, "cuda")
