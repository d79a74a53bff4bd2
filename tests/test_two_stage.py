"""The two-stage "frozen CLIP per mask" baseline (ZSSeg): crops, CLIP probabilities, the seen/unseen
geometric ensemble, forward counting and the model config, with a fake mask proposer."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import baselines.two_stage.model as two_stage_model
from baselines.two_stage import TwoStageSegmenter
from baselines.two_stage.crops import crop_batches, image_tensor, mask_box, region_crop, region_crops
from baselines.two_stage.ensemble import (class_clip_weights, clip_class_probs, geometric_ensemble,
                                          seen_classes, semantic_map)
from ovbench.errors import OvbenchError
from ovbench.models.api import StagedSegmenter
from ovbench.models.clip import CLIP_MEAN, CLIP_STD, Clip
from ovbench.models.zoo import build_model

TINY_WEIGHTS = Path(__file__).resolve().parents[1] / "ovbench" / "models" / "weights" / "tiny-vit-synth.pt"
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "baselines" / "two_stage" / "configs" / "synth-ov.yaml"


class FakeProposer(StagedSegmenter):
    """Fixed class and mask probabilities; ``training_names`` as given."""

    name = "fake-proposer"

    def __init__(self, class_probs: torch.Tensor, mask_prob: torch.Tensor, training_names=("cat", "dog")):
        self.class_probs, self.mask_prob = class_probs.float(), mask_prob.float()
        self.training_names = frozenset(training_names)
        self.vocabulary = None

    def set_vocabulary(self, class_names):
        self.vocabulary = [list(c) for c in class_names]

    def preprocess(self, image):
        return {"size": image.shape[:2]}

    def forward(self, inputs):
        return dict(inputs)

    def mask_probabilities(self, outputs, image_size):
        assert tuple(outputs["size"]) == tuple(image_size) == self.mask_prob.shape[1:]
        return self.class_probs[None], self.mask_prob[None]

    def postprocess(self, outputs, image_size):
        return [semantic_map(self.class_probs, self.mask_prob).argmax(0).numpy()]

    def towers(self):
        return {"image": [], "text": []}

    def to(self, device):
        return self

    def clear_text_cache(self):
        pass


class StubClip:
    """Image embedding = one-hot of the crop's brightest channel (after CLIP normalisation);
    names map to fixed vectors. Records the batch sizes it is called with."""

    device = torch.device("cpu")

    def __init__(self, size: int = 8, vectors: dict[str, list[float]] | None = None):
        self.model = SimpleNamespace(visual=SimpleNamespace(image_size=size))
        self.vectors = vectors or {"red": [1, 0, 0], "green": [0, 1, 0], "blue": [0, 0, 1]}
        self.calls: list[int] = []

    def name_embeddings(self, names, templates):
        return F.normalize(torch.tensor([self.vectors[n] for n in names], dtype=torch.float32), dim=-1)

    def encode_image(self, images):
        self.calls.append(images.shape[0])
        return F.one_hot(images.mean(dim=(2, 3)).argmax(dim=1), 3).float()


@pytest.fixture(scope="module")
def tiny_clip() -> Clip:
    return Clip("tiny-vit", pretrained=TINY_WEIGHTS)


# -- ensemble arithmetic -------------------------------------------------------------------------
def test_geometric_ensemble_by_hand_with_one_seen_and_two_unseen_classes():
    p_seg = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    p_clip = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    lam = class_clip_weights(torch.tensor([True, False, False]), 0.2, 0.8)
    torch.testing.assert_close(lam, torch.tensor([0.2, 0.8, 0.8]))
    expected = torch.tensor([[0.6 ** 0.8 * 0.1 ** 0.2, 0.3 ** 0.2 * 0.7 ** 0.8, 0.1 ** 0.2 * 0.2 ** 0.8],
                             [0.2 ** 0.8 * 0.5 ** 0.2, 0.5 ** 0.2 * 0.25 ** 0.8, 0.3 ** 0.2 * 0.25 ** 0.8]])
    torch.testing.assert_close(geometric_ensemble(p_seg, p_clip, lam), expected)
    # λ = 0: the proposer alone, λ = 1: CLIP alone, zeros included (0^0 = 1)
    p_clip_zero = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    torch.testing.assert_close(geometric_ensemble(p_seg, p_clip_zero, torch.zeros(3)), p_seg)
    torch.testing.assert_close(geometric_ensemble(p_seg, p_clip_zero, torch.ones(3)), p_clip_zero)
    # an invalid mask's p_clip = 1 keeps p_seg^(1 - λ)
    torch.testing.assert_close(geometric_ensemble(p_seg, torch.ones(2, 3), lam), p_seg.pow(1 - lam))


def test_clip_probabilities_max_pool_a_class_s_names_before_the_softmax():
    region = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    names = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]]), dim=-1)   # class 0: names 0, 1
    probs = clip_class_probs(region, names, [0, 0, 1], 2, logit_scale=10.0)
    cos = region @ names.T
    for r in range(2):
        logits = torch.tensor([max(cos[r, 0], cos[r, 1]), cos[r, 2]]) * 10.0
        torch.testing.assert_close(probs[r], logits.softmax(0))
    assert probs.shape == (2, 2)


def test_semantic_map_sums_class_probabilities_weighted_by_mask_probabilities():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    masks = torch.tensor([[[1.0, 0.5]], [[0.0, 1.0]]])                     # (2, 1, 2)
    expected = torch.tensor([[[0.9, 0.45 + 0.2]], [[0.1, 0.05 + 0.8]]])
    torch.testing.assert_close(semantic_map(probs, masks), expected)


def test_a_class_is_seen_when_any_of_its_names_was_trained_on():
    names = [["cat"], ["kitty", "tabby"], ["puppy", "dog"], ["car"]]
    assert seen_classes(names, frozenset({"cat", "dog"})).tolist() == [True, False, True, False]
    model = TwoStageSegmenter(FakeProposer(torch.ones(1, 4) / 4, torch.ones(1, 4, 4)), StubClip(),
                              templates=["{}"], clip_weight_seen=0.1, clip_weight_unseen=0.9)
    model.clip.vectors.update({n: [1, 1, 1] for c in names for n in c})
    model.set_vocabulary(names)
    assert model.proposer.vocabulary == names
    assert model.seen.tolist() == [True, False, True, False]
    torch.testing.assert_close(model.clip_weight, torch.tensor([0.1, 0.9, 0.1, 0.9]))
    assert model.name_to_class == [0, 1, 1, 2, 2, 3]


# -- crops ---------------------------------------------------------------------------------------
def test_mask_box_is_tight_and_expands_about_its_centre_clipped_to_the_image():
    mask = torch.zeros(10, 12, dtype=torch.bool)
    mask[2:5, 1:4] = True
    mask[6, 7] = True
    assert mask_box(mask) == (2, 7, 1, 8)
    assert mask_box(torch.zeros(4, 4, dtype=torch.bool)) is None
    corner = torch.zeros(10, 12, dtype=torch.bool)
    corner[0:2, 9:12] = True                                               # box 2 × 3 at the top right
    assert mask_box(corner, expand_ratio=2.0) == (0, 3, 7, 12)             # (-1, 3) and (7.5, 13.5) clipped
    centre = torch.zeros(10, 12, dtype=torch.bool)
    centre[4:6, 5:7] = True
    assert mask_box(centre, expand_ratio=2.0) == (3, 7, 4, 8)
    assert mask_box(centre, expand_ratio=1.5) == (3, 7, 4, 8)              # 2 × 1.5 = 3 px, rounded outwards


def test_region_crop_fills_outside_the_mask_with_clip_s_mean_and_resizes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    mask = torch.zeros(6, 7, dtype=torch.bool)
    mask[1:5, 2:6] = True
    mask[1, 2] = mask[4, 5] = False                                        # still a 4 × 4 box
    box = mask_box(mask)
    assert box == (1, 5, 2, 6)
    crop = region_crop(image_tensor(image), mask, box, size=4)             # same size: no interpolation
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    expected = (torch.from_numpy(image[1:5, 2:6]).permute(2, 0, 1).float() / 255 - mean) / std
    inside = mask[1:5, 2:6]
    torch.testing.assert_close(crop[:, inside], expected[:, inside])
    torch.testing.assert_close(crop[:, ~inside], torch.zeros(3, 2))       # mean colour -> 0 after normalising
    resized = region_crop(image_tensor(image), mask, (0, 6, 0, 3), size=16)
    assert resized.shape == (3, 16, 16) and resized.dtype == torch.float32


def test_empty_masks_get_no_crop_and_crops_come_in_batches():
    image = image_tensor(np.full((8, 8, 3), 200, dtype=np.uint8))
    masks = torch.zeros(5, 8, 8, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[2, 3:, 3:] = True
    masks[3, 5, 1] = True
    crops, queries = region_crops(image, masks, size=5)
    assert crops.shape == (3, 3, 5, 5) and queries.tolist() == [0, 2, 3]
    batches = list(crop_batches(image, masks, size=5, batch_size=2))
    assert [q.tolist() for _, q in batches] == [[0, 2], [3]]
    empty, none = region_crops(image, torch.zeros(2, 8, 8, dtype=torch.bool), size=5)
    assert empty.shape == (0, 3, 5, 5) and none.numel() == 0


# -- the model -----------------------------------------------------------------------------------
def _halves_model(**options) -> tuple[TwoStageSegmenter, np.ndarray]:
    """Image: red left half, blue right half (4 × 6). Query 0 = left half, 1 = right half, 2 = below the
    threshold everywhere (invalid). Classes: red (seen), green, blue (unseen)."""
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[:, :3, 0] = 255
    image[:, 3:, 2] = 255
    mask_prob = torch.zeros(3, 4, 6)
    mask_prob[0, :, :3] = 0.9
    mask_prob[0, :, 3:] = 0.1
    mask_prob[1, :, 3:] = 0.7
    mask_prob[2] = 0.2                                                    # below 0.5: empty
    p_seg = torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.2, 0.7, 0.1]])
    proposer = FakeProposer(p_seg, mask_prob, training_names={"red"})
    model = TwoStageSegmenter(proposer, StubClip(), templates=["{}"], logit_scale=1.0, **options)
    model.set_vocabulary([["red"], ["green"], ["blue"]])
    return model, image


def test_scores_match_a_hand_computed_ensemble_and_invalid_masks_keep_the_proposer_s_scores():
    model, image = _halves_model()
    p_clip, valid = model.clip_probabilities(image, model.proposer.mask_prob)
    e = math.e
    one = torch.tensor([e, 1.0, 1.0]) / (e + 2)                          # softmax([1, 0, 0])
    torch.testing.assert_close(p_clip, torch.stack([one, one.flip(0), torch.ones(3)]))
    assert valid.tolist() == [True, True, False]
    lam = torch.tensor([0.2, 0.8, 0.8])
    p_seg, mask_prob = model.proposer.class_probs, model.proposer.mask_prob
    expected = torch.zeros(3, 4, 6)
    for q in range(3):
        for k in range(3):
            expected[k] += p_seg[q, k] ** (1 - lam[k]) * p_clip[q, k] ** lam[k] * mask_prob[q]
    torch.testing.assert_close(model.scores(image), expected)
    labels = model.predict(image)
    assert labels.dtype == np.int64 and labels.shape == (4, 6)
    assert (labels[:, :3] == 0).all() and (labels[:, 3:] == 2).all()      # CLIP turns the right half blue
    assert (semantic_map(p_seg, mask_prob).argmax(0)[:, 3:] == 0).all()   # the proposer alone says red
    # λ = 0 everywhere: the proposer's own semantic inference
    seg_only, _ = _halves_model(clip_weight_seen=0.0, clip_weight_unseen=0.0)
    torch.testing.assert_close(seg_only.scores(image), semantic_map(p_seg, mask_prob))


def test_forwards_count_the_valid_masks_accumulated_over_images(tiny_clip):
    rng = np.random.default_rng(1)
    mask_prob = torch.zeros(6, 20, 24)
    mask_prob[0, :10] = 0.9
    mask_prob[1, 10:, :5] = 0.8
    mask_prob[2] = 0.3                                                    # empty
    mask_prob[3, 3, 3] = 0.51
    mask_prob[4, :, 20:] = 1.0
    mask_prob[5] = 0.5                                                    # empty (threshold is strict)
    proposer = FakeProposer(torch.full((6, 3), 1 / 3), mask_prob)
    model = TwoStageSegmenter(proposer, tiny_clip, batch_size=3)
    calls = []
    encode = tiny_clip.encode_image
    model.clip = SimpleNamespace(encode_image=lambda x: calls.append(x.shape) or encode(x),
                                 device=tiny_clip.device, name_embeddings=tiny_clip.name_embeddings)
    model.set_vocabulary([["cat"], ["dog", "puppy"], ["car"]])
    assert model.counters() == {"clip_image_forwards": 0, "images": 0}
    for n in (1, 2):
        model.predict(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8))
        assert model.counters() == {"clip_image_forwards": 4 * n, "images": n}
    assert [s[0] for s in calls] == [3, 1, 3, 1] and all(s[1:] == (3, 64, 64) for s in calls)


def test_predict_end_to_end_with_the_tiny_clip(tiny_clip):
    rng = np.random.default_rng(2)
    q, h, w, k = 7, 30, 40, 4
    mask_prob = torch.rand(q, h, w, generator=torch.Generator().manual_seed(0))
    p_seg = torch.rand(q, k, generator=torch.Generator().manual_seed(1)).softmax(-1)
    model = TwoStageSegmenter(FakeProposer(p_seg, mask_prob), tiny_clip, expand_ratio=1.2)
    model.set_vocabulary([["cat"], ["dog"], ["circle", "disc"], ["sky"]])
    assert model.seen.tolist() == [True, True, False, False]
    labels = model.predict(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    assert labels.shape == (h, w) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < k
    assert model.counters()["clip_image_forwards"] == q
    with pytest.raises(OvbenchError, match="uint8"):
        model.predict(np.zeros((h, w), dtype=np.uint8))


def test_predict_needs_a_vocabulary_and_the_proposer_needs_mask_probabilities(tiny_clip):
    model = TwoStageSegmenter(FakeProposer(torch.ones(1, 2) / 2, torch.ones(1, 4, 4)), tiny_clip)
    with pytest.raises(OvbenchError, match="set_vocabulary"):
        model.predict(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(OvbenchError, match="preprocess"):
        TwoStageSegmenter(SimpleNamespace(training_names=frozenset(), set_vocabulary=print), tiny_clip)


# -- config --------------------------------------------------------------------------------------
def _config(**overrides):
    config = {"kind": "two-stage", "proposer": {"kind": "fake"},
              "clip": {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth"}}
    config.update(overrides)
    return config


@pytest.fixture
def fake_proposer_builder(monkeypatch):
    built = []

    def build(config, base_dir="."):
        built.append((dict(config), Path(base_dir)))
        return FakeProposer(torch.ones(2, 3) / 3, torch.ones(2, 5, 5))
    monkeypatch.setattr(two_stage_model, "build_model", build)
    return built


def test_the_shipped_config_builds_with_paths_relative_to_its_folder(fake_proposer_builder):
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    model = build_model(config, SHIPPED_CONFIG.parent)
    assert isinstance(model, TwoStageSegmenter) and model.name == "two-stage"
    (proposer_config, base_dir), = fake_proposer_builder
    assert proposer_config == {"kind": "segmenter", "checkpoint": "../../naive_finetune/weights/synth-ov.pt"}
    assert (base_dir / proposer_config["checkpoint"]).resolve() == \
        SHIPPED_CONFIG.parents[2] / "naive_finetune" / "weights" / "synth-ov.pt"
    assert (model.clip_weight_seen, model.clip_weight_unseen, model.mask_threshold) == (0.2, 0.8, 0.5)
    assert model.crop_size == 64 and len(model.templates) > 1 and model.batch_size == 32


@pytest.mark.parametrize("overrides, message", [
    ({"clip_weigth_seen": 0.3, "extra": 1}, "unknown key.*clip_weigth_seen, extra"),
    ({"clip_weight_seen": 1.5}, r"clip_weight_seen must be a number in \[0, 1\]"),
    ({"clip_weight_unseen": -0.1}, r"clip_weight_unseen must be a number in \[0, 1\]"),
    ({"expand_ratio": 0.5}, "expand_ratio must be a number >= 1"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"templates": "nonsense"}, "unknown prompt template set"),
    ({"proposer": None}, "proposer must be given"),
])
def test_config_errors(fake_proposer_builder, overrides, message):
    with pytest.raises(OvbenchError, match=message):
        build_model(_config(**overrides))
