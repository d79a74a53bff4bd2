"""The reference pixel predictors on a tiny synthetic world: fit, predict a split, save/load."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from baselines.reference import PREDICTORS, PixelColourClassifier, PixelTextureClassifier, load_predictor
from ovbench.errors import OvbenchError
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world

PROTOCOL = get_protocol("synth-ov")
BASE = PROTOCOL.class_ids("base")
TINY = WorldSizes(train_images=40, val_images=12, image_size=96, train_videos=0, val_videos=0,
                  video_frames=1, caption_pairs=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "synth"
    generate_world(out, seed=3, sizes=TINY, progress=False)
    return out


@pytest.fixture(scope="module")
def fitted(world) -> dict:
    return {name: cls().fit(world, PROTOCOL) for name, cls in PREDICTORS.items()}


def _val(world: Path):
    for p in sorted((world / "annotations" / "val").glob("*.png")):
        yield p.stem, np.asarray(Image.open(p))


def test_registry():
    assert PREDICTORS == {"pixel-colour": PixelColourClassifier, "pixel-texture": PixelTextureClassifier}


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_predict_split_writes_one_png_per_val_image(name, fitted, world, tmp_path):
    out = tmp_path / name
    latencies = fitted[name].predict_split(world, PROTOCOL, out, progress=False)
    gt = dict(_val(world))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.png" for i in gt)
    assert len(latencies) == len(gt) and all(t > 0 for t in latencies)
    predicted = set()
    for iid, label in gt.items():
        with Image.open(out / f"{iid}.png") as im:
            assert im.mode == "L"
            pred = np.asarray(im)
        assert pred.shape == label.shape and pred.dtype == np.uint8
        predicted |= set(np.unique(pred).tolist())
    assert predicted <= set(BASE), "a predictor trained on base labels predicts base classes only"


def test_texture_beats_constant_on_base_pixels(fitted, world):
    correct, total = {name: 0 for name in fitted}, 0
    counts = np.zeros(256, np.int64)
    for iid, label in _val(world):
        image = np.asarray(Image.open(world / "images" / "val" / f"{iid}.png"))
        base = np.isin(label, BASE)
        total += base.sum()
        counts += np.bincount(label[base], minlength=256)
        for name, model in fitted.items():
            correct[name] += (model.predict(image)[base] == label[base]).sum()
    constant = counts.max() / total  # the best constant prediction
    acc = {name: c / total for name, c in correct.items()}
    assert acc["pixel-texture"] > constant + 0.2, (acc, constant)
    assert acc["pixel-texture"] > acc["pixel-colour"], acc
    assert acc["pixel-colour"] > constant, (acc, constant)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_save_load_round_trip(name, fitted, world, tmp_path):
    model = fitted[name]
    path = model.save(tmp_path / f"{name}.model")
    assert path == tmp_path / f"{name}.model" and path.is_file()
    image = np.asarray(Image.open(world / "images" / "val" / "synth_val_000000.png"))
    assert (type(model).load(path).predict(image) == model.predict(image)).all()
    assert (load_predictor(path).predict(image) == model.predict(image)).all()
    other = PixelColourClassifier if name == "pixel-texture" else PixelTextureClassifier
    with pytest.raises(OvbenchError, match="not"):
        other.load(path)


def test_errors(tmp_path):
    with pytest.raises(OvbenchError, match="call fit"):
        PixelTextureClassifier().predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(OvbenchError, match="not found"):
        PixelColourClassifier().fit(tmp_path, PROTOCOL)
    with pytest.raises(OvbenchError, match="HxWx3 uint8"):
        model = PixelColourClassifier()
        model.classes_ = np.array([0])
        model.predict(np.zeros((8, 8), np.uint8))
