"""The MaskCLIP baseline: built from its shipped config, multi-name max pooling, above chance on
the synthetic world with the shipped tiny CLIP."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from baselines.maskclip import MaskClipSegmenter
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.prompts import templates
from ovbench.models.zoo import build_model, model_kinds
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world

CONFIG = Path(__file__).resolve().parents[1] / "baselines" / "maskclip" / "configs" / "synth-ov.yaml"
VOCABULARY = [c.names for c in get_protocol("synth-ov").classes]


def _config(**overrides) -> dict:
    return {**yaml.safe_load(CONFIG.read_text()), **overrides}


@pytest.fixture(scope="module")
def maskclip() -> MaskClipSegmenter:
    model = build_model(_config())
    model.set_vocabulary(VOCABULARY)
    return model


def test_builds_from_the_shipped_config_and_predicts(maskclip):
    assert "maskclip" in model_kinds() and isinstance(maskclip, MaskClipSegmenter)
    assert maskclip.name == "maskclip" and maskclip.counters() == {"clip_image_forwards": 0}
    image = np.random.default_rng(0).integers(0, 256, (100, 72, 3), dtype=np.uint8)
    labels = maskclip.predict(image)
    assert labels.shape == (100, 72) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < len(VOCABULARY)
    assert maskclip.counters() == {"clip_image_forwards": 1}
    assert maskclip.model_size(100, 72) == (96, 72)                  # rounded to the 8 px patch
    assert MaskClipSegmenter(maskclip.clip, input_size=64).model_size(128, 96) == (88, 64)


def test_config_and_inputs_are_checked(maskclip):
    with pytest.raises(OvbenchError, match="unknown keys \\['device'\\]"):
        build_model(_config(device="cuda"))
    with pytest.raises(OvbenchError, match="needs 'clip'"):
        build_model({"kind": "maskclip"})
    with pytest.raises(OvbenchError, match="input_size"):
        MaskClipSegmenter(maskclip.clip, input_size=0)
    with pytest.raises(OvbenchError, match="unknown prompt template set"):
        MaskClipSegmenter(maskclip.clip, templates="nope")
    with pytest.raises(OvbenchError, match="set_vocabulary"):
        MaskClipSegmenter(maskclip.clip).predict(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(OvbenchError, match="list of names"):
        maskclip.set_vocabulary(["sky", "sand"])
    with pytest.raises(OvbenchError, match="uint8"):
        maskclip.predict(np.zeros((64, 64), np.uint8))


def test_a_class_scores_the_max_over_its_names(monkeypatch):
    """Left half of the image embeds as e1, right half as e2. Class 0 = {a1: e0, a2: e1}, class 1 =
    {b: 0.8 e1 + 0.6 e2}, class 2 = {c: e3}. On the left, class 0's best name matches exactly (1.0)
    and beats b (0.8), though its first name (0.0) and its mean (0.5) would not. (The logits are
    upsampled bilinearly, so only the outer quarters are checked.)"""
    clip = Clip("tiny-vit")
    eye = torch.eye(4)
    bank = {"a1": eye[0], "a2": eye[1], "b": 0.8 * eye[1] + 0.6 * eye[2], "c": eye[3]}
    seen = []
    monkeypatch.setattr(clip, "name_embeddings",
                        lambda names, ts: seen.append(ts) or torch.stack([bank[n] for n in names]))
    dense = torch.stack([eye[1], eye[2]], dim=1).view(1, 4, 1, 2).expand(1, 4, 2, 2)
    monkeypatch.setattr(clip, "dense_embeddings", lambda images: dense)
    model = MaskClipSegmenter(clip, templates="scene")
    model.set_vocabulary([["a1", "a2"], ["b"], ["c"]])
    assert seen == [templates("scene")]
    labels = model.predict(np.zeros((16, 16, 3), np.uint8))
    assert (labels[:, :4] == 0).all() and (labels[:, 12:] == 1).all()
    model.set_vocabulary([["a1"], ["b"], ["c", "a2"]])               # a2 now names class 2
    assert (model.predict(np.zeros((16, 16, 3), np.uint8))[:, :4] == 2).all()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("maskclip_world")
    generate_world(out, seed=0, sizes=WorldSizes(train_images=0, val_images=6, train_videos=0, val_videos=0,
                                                 caption_pairs=0), progress=False)
    return out


def test_pixel_accuracy_on_synthetic_val_images_is_well_above_chance(maskclip, world):
    """Measured 22.0 % on these 6 val images (128 px; 27.4 % on 20), chance 1/24 = 4.2 %."""
    right = total = 0
    for path in sorted((world / "images" / "val").glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))
        truth = np.asarray(Image.open(world / "annotations" / "val" / path.name))
        valid = truth != 255
        right += int((maskclip.predict(image)[valid] == truth[valid]).sum())
        total += int(valid.sum())
    assert total > 0 and right / total > 0.12
