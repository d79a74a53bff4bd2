"""Training a segmenter from a config: augmentation, the training set, the loss wiring, model files,
`ovbench train` / `ovbench predict`, and the paper-scale configs built at reduced input size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ovbench.cli import main
from ovbench.data.augment import augment, fixed_size_crop, resize_scale
from ovbench.data.training import SemsegTrainingSet, swap_split, training_layout
from ovbench.engine.config import TrainConfig
from ovbench.engine.optim import build_optimizer
from ovbench.engine.segmenter_training import (SegmenterLoss, apply_overrides, build_for_training,
                                               load_run_config, segments_from_labels, training_vocabulary)
from ovbench.errors import OvbenchError
from ovbench.models.segmenter.ov_segmenter import load_model_file, read_model_file
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world

REPO = Path(__file__).resolve().parents[1]
NAIVE_SYNTH = REPO / "baselines/naive_finetune/configs/synth-ov.yaml"
NAIVE_RN50 = REPO / "baselines/naive_finetune/configs/coco-panoptic-rn50.yaml"
TINY = WorldSizes(train_images=6, val_images=3, image_size=64, train_videos=0, val_videos=0, caption_pairs=4)
#: Overrides that make the synthetic config train in seconds.
FAST = ["train.iterations=4", "train.global_batch_size=2", "data.crop_size=64", "train.log_period=2",
        "train.checkpoint_period=2", "model.num_points=64", "train.milestones=[]", "train.warmup_iterations=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=3, sizes=TINY, progress=False)
    return root


def test_resize_scale_keeps_aspect_and_crop_pads_with_ignore():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 80, 3), np.uint8)
    label = np.ones((40, 80), np.uint8)
    img, lab = resize_scale(image, label, target=64, scale=1.0)
    assert lab.shape == (32, 64) and img.shape == (32, 64, 3)
    img, lab = fixed_size_crop(img, lab, 64, 255, rng)
    assert lab.shape == (64, 64)
    assert (lab[:32] == 1).all() and (lab[32:] == 255).all() and (img[32:] == 128).all()


def test_augment_flips_and_is_reproducible():
    label = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    image = np.repeat(label[..., None], 3, axis=2)
    outs = [augment(image, label, 64, (1.0, 1.0), True, 255, np.random.default_rng(s))[1] for s in range(8)]
    flipped = [bool(o[0, 0] > o[0, -1]) for o in outs]
    assert any(flipped) and not all(flipped)
    again = augment(image, label, 64, (1.0, 1.0), True, 255, np.random.default_rng(3))[1]
    assert np.array_equal(again, outs[3])


def test_swap_split_whole_words_only():
    assert swap_split("coco/panoptic_semseg_val2017/{id}.png", "val2017", "train2017") == \
        "coco/panoptic_semseg_train2017/{id}.png"
    assert swap_split("images/val/{id}.png", "val", "train") == "images/train/{id}.png"
    assert swap_split("interval/val/{id}.png", "val", "train") == "interval/train/{id}.png"
    with pytest.raises(OvbenchError, match="does not name the split"):
        swap_split("images/{id}.png", "val", "train")
    layout = training_layout(get_protocol("synth-ov"), "train", labels="x/{id}.png")
    assert layout.images == "images/train/{id}.png" and layout.labels == "x/{id}.png"


def test_training_set_maps_base_classes_and_never_shows_novel(world):
    protocol = get_protocol("synth-ov")
    ids, names = training_vocabulary(protocol, "base")
    assert names == [c.name for c in protocol.classes if c.partition == "base"]
    data = SemsegTrainingSet(protocol, world, ids, crop_size=64)
    assert len(data) == TINY.train_images
    seen = set()
    for i in range(len(data)):
        image, label, index = data[(i, 0)]
        assert index == i
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and label.shape == (64, 64)
        seen |= set(label.unique().tolist())
    assert seen <= set(range(len(ids))) | {255} and len(seen) > 2
    assert torch.equal(data[(1, 0)][1], data[(1, 0)][1])
    assert any(not torch.equal(data[(i, 0)][0], data[(i, 1)][0]) for i in range(len(data)))


def test_training_set_reports_missing_data(tmp_path):
    with pytest.raises(OvbenchError, match="training labels of synth-ov not found"):
        SemsegTrainingSet(get_protocol("synth-ov"), tmp_path, [0, 1])


def test_segments_from_labels():
    labels = torch.tensor([[[0, 0], [2, 255]], [[255, 255], [255, 255]]])
    segs = segments_from_labels(labels)
    assert [c for c, _ in segs[0]] == [0, 2] and segs[1] == []
    assert segs[0][1][1].tolist() == [[False, False], [True, False]]


def test_loss_parts_sum_to_the_criterion_total():
    run = load_run_config(NAIVE_SYNTH, FAST)
    setup = build_for_training(run, NAIVE_SYNTH.parent)
    net, text = setup.net, setup.text
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    labels = torch.full((2, 64, 64), 255)
    labels[0, :32], labels[1, 10:40, 5:50] = 1, 3
    torch.manual_seed(0)
    parts = SegmenterLoss(text, run.model.normalization)(net, (images, labels))
    assert set(parts) == {"loss_ce", "loss_mask", "loss_dice"}
    torch.manual_seed(0)
    from ovbench.engine.segmenter_training import normalize_images
    out = net(normalize_images(images, "clip"), text)
    total = net.criterion(out, segments_from_labels(labels))["loss_total"]
    assert torch.allclose(sum(parts.values()), total)


def test_lr_multipliers_by_longest_prefix(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)))
    cfg = TrainConfig(iterations=1, global_batch_size=1, lr=1.0, output_dir=str(tmp_path),
                      lr_multipliers={"1.": 0.1, "1.1.": 0.5})
    lrs = {}
    for group in build_optimizer(model, cfg).param_groups:
        for p in group["params"]:
            lrs[id(p)] = group["lr"]
    assert [lrs[id(p)] for p in model.parameters()] == [1.0, 1.0, 0.1, 0.1, 0.5, 0.5]


def test_overrides_and_config_errors(tmp_path):
    raw = {"train": {"iterations": 5}}
    assert apply_overrides(raw, ["train.iterations=7", "model.clip.seed=2"]) == \
        {"train": {"iterations": 7}, "model": {"clip": {"seed": 2}}}
    assert raw == {"train": {"iterations": 5}}
    with pytest.raises(OvbenchError, match="section.key=value"):
        apply_overrides(raw, ["iterations=3"])
    with pytest.raises(OvbenchError, match="unknown segmenter key"):
        load_run_config(NAIVE_SYNTH, ["model.queries=3"])
    with pytest.raises(OvbenchError, match="unknown data key"):
        load_run_config(NAIVE_SYNTH, ["data.crop=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(OvbenchError, match="not valid YAML"):
        load_run_config(bad)


def test_train_predict_evaluate_end_to_end(world, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(NAIVE_SYNTH), "--data-root", str(world), "--output-dir", str(out), "--no-progress"]
    assert main(args + [f"--set={o}" for o in FAST]) == 0
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and (out / "config.yaml").is_file()
    state = read_model_file(out / "model.pt")
    assert state["training_names"] == training_vocabulary(get_protocol("synth-ov"), "base")[1]
    model = load_model_file(out / "model.pt")
    model.set_vocabulary([["sky"], ["grass", "lawn"], ["road"]])
    probs, masks = model.mask_scores(np.zeros((64, 64, 3), np.uint8))
    assert probs.shape == (16, 3) and masks.shape == (16, 64, 64)
    assert torch.all(probs.sum(-1) < 1) and torch.all((masks >= 0) & (masks <= 1))

    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(out / "model.pt"), "--protocol", "synth-ov", "--data-root", str(world),
                 "--out", str(pred), "--no-progress", "--report", str(tmp_path / "report.json")]) == 0
    assert sorted(p.name for p in pred.iterdir()) == [f"{i:05d}.png" for i in range(TINY.val_images)] or \
        len(list(pred.glob("*.png"))) == TINY.val_images
    assert main(["evaluate", "--protocol", "synth-ov", "--predictions", str(pred), "--data-root", str(world)]) == 0
    assert '"mIoU"' in capsys.readouterr().out
    assert main(["predict", "--model", str(out / "model.pt"), "--protocol", "synth-ov", "--data-root", str(world),
                 "--out", str(pred), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_resumed_training_matches_an_uninterrupted_run(world, tmp_path):
    base = ["--data-root", str(world), "--no-progress"] + [f"--set={o}" for o in FAST]
    assert main(["train", str(NAIVE_SYNTH), "--output-dir", str(tmp_path / "a")] + base) == 0
    half = base + ["--set=train.iterations=2"]
    assert main(["train", str(NAIVE_SYNTH), "--output-dir", str(tmp_path / "b")] + half) == 0
    assert main(["train", str(NAIVE_SYNTH), "--output-dir", str(tmp_path / "b"), "--resume"] + base) == 0
    a = read_model_file(tmp_path / "a" / "model.pt")["state_dict"]
    b = read_model_file(tmp_path / "b" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_file_errors(tmp_path):
    with pytest.raises(OvbenchError, match="model file not found"):
        read_model_file(tmp_path / "none.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(OvbenchError, match="not a readable model file"):
        read_model_file(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(OvbenchError, match="not an ovbench segmenter model file"):
        read_model_file(other)


def test_paper_scale_config_builds_and_takes_one_step_at_reduced_size():
    run = load_run_config(NAIVE_RN50, ["model.clip.pretrained=null"])
    assert (run.model.num_queries, run.model.dec_layers, run.data.crop_size, run.train.iterations,
            run.train.lr, run.train.global_batch_size) == (100, 9, 512, 50000, 3e-4, 56)
    assert run.model.clip["name"] == "RN50" and run.data.classes == "all" and run.train.amp
    setup = build_for_training(run, NAIVE_RN50.parent)
    net, text, ids = setup.net, setup.text, setup.class_ids
    assert len(ids) == 133 and text.shape == (133, 1024)
    images = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    labels = torch.full((1, 64, 64), 255)
    labels[0, 8:40, 8:40] = 5
    losses = SegmenterLoss(text, run.model.normalization)(net, (images, labels))
    sum(losses.values()).backward()
    trunk_grads = [p.grad for n, p in net.named_parameters() if n.startswith("trunk.") and p.requires_grad]
    assert all(g is not None for g in trunk_grads) and any(g.abs().sum() > 0 for g in trunk_grads)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_paper_scale_training_step_and_inference_on_gpu(tmp_path):
    import dataclasses

    from ovbench.engine.trainer import Trainer
    from ovbench.models.segmenter.ov_segmenter import save_model_file
    run = load_run_config(NAIVE_RN50, ["model.clip.pretrained=null"])
    setup = build_for_training(run, NAIVE_RN50.parent)
    net, text, names = setup.net, setup.text, setup.names
    cfg = dataclasses.replace(run.train, iterations=1, global_batch_size=2, warmup_iterations=0, milestones=(),
                              output_dir=str(tmp_path / "run"), num_workers=0)
    labels = torch.full((2, 512, 512), 255)
    labels[:, 100:300, 50:400] = 7
    batch = (torch.randint(0, 255, (2, 3, 512, 512), dtype=torch.uint8), labels)
    trainer = Trainer(net, SegmenterLoss(text, run.model.normalization), [batch], cfg,
                      device=torch.device("cuda"), progress=False)
    row = trainer.train()
    assert row["iteration"] == 1 and np.isfinite(row["total_loss"])
    path = save_model_file(tmp_path / "model.pt", trainer.module, run.model, names, {"name": "gpu-smoke"})
    model = load_model_file(path, device="cuda")
    model.set_vocabulary([[n] for n in names])
    labels = model.predict(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    assert labels.shape == (480, 640) and 0 <= labels.min() and labels.max() < len(names)
