"""Tiny-CLIP pre-training on synthetic caption pairs, and its zero-shot crop accuracy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world
from ovbench.models.clip import to_clip_input
from ovbench.synth.pretrain_clip import (PretrainConfig, load_caption_pairs, pretrain_tiny_clip,
                                         train_clip, val_crops, zero_shot_accuracy)

TINY = WorldSizes(train_images=0, val_images=2, image_size=64, train_videos=0, val_videos=0,
                  caption_pairs=48, caption_size=64)
FAST = PretrainConfig(epochs=4, batch_size=16, lr=2e-3, warmup_steps=2, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain_world")
    generate_world(out, seed=0, sizes=TINY, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(world):
    return train_clip(world, FAST)


@torch.no_grad()
def _loss(model: torch.nn.Module, world: Path) -> float:
    images, captions = load_caption_pairs(world)
    tokenizer = open_clip.get_tokenizer("tiny-vit")
    model.eval()
    img, txt, scale = model(to_clip_input(images), tokenizer(captions))[:3]
    return float(open_clip.ClipLoss()(img, txt, scale))


def test_training_reduces_loss(world, trained):
    clip, report = trained
    before = Clip("tiny-vit", seed=FAST.seed).model
    assert _loss(clip.model, world) < _loss(before, world) - 0.2
    assert report["steps"] == 12 and len(report["log"]) == 4
    assert report["log"][-1]["loss"] < report["log"][0]["loss"]


def test_training_is_deterministic_and_checkpoint_round_trips(world, trained, tmp_path):
    clip, _ = trained
    result = pretrain_tiny_clip(world, tmp_path / "w.pt", FAST)   # a second, independent run
    a, b = clip.model.state_dict(), result.clip.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    report = json.loads(result.report_path.read_text())
    assert report["config"]["batch_size"] == 16 and report["weights"] == "w.pt"
    zs = report["zero_shot"]
    assert 0 <= zs["all"] <= 1 and zs["chance"] == pytest.approx(1 / 24) and sum(zs["crops"].values()) > 0

    loaded = Clip("tiny-vit", pretrained=result.weights)
    names = ["dog", "a kite"]
    assert torch.allclose(loaded.encode_text(names), clip.encode_text(names), atol=1e-6)
    images = to_clip_input(load_caption_pairs(world)[0][:4])
    assert torch.allclose(loaded.encode_image(images), clip.encode_image(images), atol=1e-6)


def test_config_is_checked(world):
    with pytest.raises(OvbenchError, match="batch_size"):
        train_clip(world, PretrainConfig(batch_size=1, progress=False))


# ---------------------------------------------------------------- zero-shot on a hand-made world

SKY, SAND, SNOW, DOG = 0, 3, 6, 14   # base stuff, novel stuff (x2), novel thing
COLOURS = {SKY: (255, 0, 0), SAND: (0, 255, 0), DOG: (0, 0, 255)}


@pytest.fixture
def handmade(tmp_path) -> Path:
    """One 128 px val image: sky above sand, a dog box in the sky."""
    sem = np.full((128, 128), SKY, np.uint8)
    sem[64:] = SAND
    sem[4:28, 100:124] = DOG
    rgb = np.zeros((128, 128, 3), np.uint8)
    for cid, colour in COLOURS.items():
        rgb[sem == cid] = colour
    for sub, arr in (("images", rgb), ("annotations", sem)):
        (tmp_path / sub / "val").mkdir(parents=True)
        Image.fromarray(arr).save(tmp_path / sub / "val" / "v0.png")
    (tmp_path / "detection").mkdir()
    (tmp_path / "detection" / "instances_val.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "images/val/v0.png", "width": 128, "height": 128}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": DOG, "bbox": [100, 4, 24, 24]}]}))
    return tmp_path


class FakeClip:
    """Images embed as the one-hot of their dominant colour's class; names as the one-hot of the
    class they belong to, except names listed in ``aliases`` (name → class id)."""

    def __init__(self, aliases: dict[str, int] | None = None) -> None:
        self.owner = {n: c.id for c in get_protocol("synth-ov").classes for n in c.names}
        self.owner.update(aliases or {})
        self.channel_class = [SKY, SAND, DOG]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        dominant = images.mean(dim=(2, 3)).argmax(dim=1)
        return torch.nn.functional.one_hot(torch.tensor([self.channel_class[d] for d in dominant]), 24).float()

    def name_embeddings(self, names, templates) -> torch.Tensor:
        assert len(templates) > 1
        return torch.nn.functional.one_hot(torch.tensor([self.owner[n] for n in names]), 24).float()


def test_val_crops_of_handmade_world(handmade):
    crops, labels, things = val_crops(handmade)
    assert crops.shape == (4, 64, 64, 3) and crops.dtype == np.uint8
    assert labels.tolist() == [DOG, SKY, SAND, SKY] and things.tolist() == [True, False, False, False]
    assert (crops[0].reshape(-1, 3).mean(0).argmax()) == 2           # the dog crop is mostly blue


def test_zero_shot_accuracy_handmade(handmade):
    right = zero_shot_accuracy(FakeClip(), handmade)
    assert right["base"] == 1.0 and right["novel"] == 1.0 and right["chance"] == pytest.approx(1 / 24)
    assert right["crops"] == {"base": 2, "novel": 2, "things": 1, "stuff": 3}
    # max pooling over names: one matching synonym is enough
    pooled = zero_shot_accuracy(FakeClip({"sand": SNOW, "dune": SNOW}), handmade)
    assert pooled["novel"] == 1.0
    # no name of sand matches: sand crops go wrong, the dog crop stays right
    wrong = zero_shot_accuracy(FakeClip({"sand": SNOW, "beach": SNOW, "dune": SNOW}), handmade)
    assert wrong["base"] == 1.0 and wrong["novel"] == 0.5
    assert wrong["per_class"]["sand"]["top1"] == 0.0 and wrong["per_class"]["dog"]["top1"] == 1.0


def test_cli_trains_writes_weights_and_report(world, tmp_path, capsys):
    from ovbench.cli import main
    out = tmp_path / "w.pt"
    assert main(["data", "pretrain-clip", "--world", str(world), "--out", str(out), "--epochs", "1",
                 "--batch-size", "16", "--no-progress"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.is_file() and report["zero_shot"]["chance"] == pytest.approx(1 / 24)
    assert "zero-shot top-1" in capsys.readouterr().out
