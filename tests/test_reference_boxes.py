"""The reference detectors' label map -> detections conversion, on hand-made label maps."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from baselines.reference import PixelTextureClassifier
from baselines.reference.boxes import (TextureBoxesClip, class_detections, components, mask_box, object_masks,
                                       vocabulary_indices)
from baselines.reference.texture import pixel_features
from ovbench.errors import OvbenchError
from ovbench.evaluation.detection import instances_to_coco_results
from ovbench.inference.semseg import vocabulary
from ovbench.protocols import get_protocol
from ovbench.synth.coco import instance_annotations

SKY, ROAD, BALL, BOX = 0, 4, 8, 9
#: Label map 10x12: stuff (sky, road), two ball components (one joined only diagonally), a box next to the
#: first ball, a 2-pixel box speck (below ``min_pixels``) and a road patch (stuff: never an object).
LABELS = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 8, 8, 8, 9, 9, 0, 0, 0, 0, 0, 0],
    [0, 8, 8, 8, 9, 9, 0, 0, 8, 8, 0, 0],
    [0, 8, 8, 8, 9, 9, 0, 0, 8, 8, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8],
    [0, 9, 9, 0, 0, 0, 0, 4, 4, 4, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
], np.uint8)
CLASSES = np.array([SKY, ROAD, BALL, BOX])
#: Vocabulary index of each object class id (14, a novel class, has no channel in CLASSES).
INDEX = {BALL: 0, BOX: 1, 14: 2}


def _probabilities(seed: int = 0) -> np.ndarray:
    """``(10, 12, 4)`` random probabilities whose arg-max is :data:`LABELS`."""
    p = np.random.default_rng(seed).uniform(0.0, 0.3, (*LABELS.shape, len(CLASSES)))
    for k, c in enumerate(CLASSES):
        p[..., k][LABELS == c] += 0.7
    return p / p.sum(-1, keepdims=True)


def test_components_are_8_connected_and_small_ones_dropped():
    parts = components(LABELS == BALL, min_pixels=4)
    assert [int(m.sum()) for m in parts] == [9, 8]      # the diagonal 2x2 pair is one component
    assert components(LABELS == BOX, min_pixels=4)[0].sum() == 6 and len(components(LABELS == BOX, 4)) == 1
    assert [int(m.sum()) for m in components(LABELS == BOX, min_pixels=1)] == [6, 2]
    assert mask_box(parts[1]) == (8.0, 2.0, 12.0, 6.0)


def test_class_detections_boxes_masks_labels_and_scores():
    probs = _probabilities()
    dets = class_detections(LABELS, probs, CLASSES, INDEX, min_pixels=4)
    assert len(dets) == 3
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    by_box = {d.box: d for d in dets}
    assert set(by_box) == {(1.0, 1.0, 4.0, 4.0), (8.0, 2.0, 12.0, 6.0), (4.0, 1.0, 6.0, 4.0)}
    ball, box = by_box[(1.0, 1.0, 4.0, 4.0)], by_box[(4.0, 1.0, 6.0, 4.0)]
    assert ball.label == 0 and box.label == 1 and by_box[(8.0, 2.0, 12.0, 6.0)].label == 0
    np.testing.assert_array_equal(ball.mask, np.pad(np.ones((3, 3), bool), ((1, 6), (1, 8))))
    assert ball.score == pytest.approx(probs[1:4, 1:4, 2].mean())
    assert box.score == pytest.approx(probs[1:4, 4:6, 3].mean())


def test_a_perfect_detection_gives_the_ground_truth_box_and_mask():
    dets = class_detections(LABELS, _probabilities(), CLASSES, INDEX, min_pixels=4)
    instances = np.zeros(LABELS.shape, np.int32)
    for k, d in enumerate(dets, start=1):
        instances[d.mask] = k
    truth = instance_annotations(instances, [BALL if d.label == 0 else BOX for d in dets], 1, 1, keep=lambda c: True)
    results = instances_to_coco_results(1, np.array([d.box for d in dets]), np.array([d.score for d in dets]),
                                        np.array([BALL if d.label == 0 else BOX for d in dets]),
                                        np.stack([d.mask for d in dets]))
    for gt, res in zip(truth, results):
        assert res["bbox"] == gt["bbox"] and res["category_id"] == gt["category_id"]
        assert mask_utils.iou([res["segmentation"]], [gt["segmentation"]], [0])[0, 0] == 1.0


def test_object_masks_merge_touching_things_of_different_classes():
    parts = object_masks(LABELS, [BALL, BOX, 14], min_pixels=4)
    assert [int(m.sum()) for m in parts] == [15, 8]     # ball + box side by side are one object
    assert mask_box(parts[0]) == (1.0, 1.0, 6.0, 4.0)


def test_vocabulary_indices_of_synth_ov_label_maps_are_the_synth_ovd_categories():
    segmentation, detection = get_protocol("synth-ov"), get_protocol("synth-ovd")
    names = {c.id: c.name for c in segmentation.classes}
    index = vocabulary_indices(names, vocabulary(detection))
    category_ids = detection.class_ids()
    assert sorted(index) == category_ids                                 # the thing classes, stuff excluded
    assert all(category_ids[k] == class_id for class_id, k in index.items())
    assert vocabulary_indices(names, [["sphere", "ball"]]) == {BALL: 0}
    with pytest.raises(OvbenchError, match="named by vocabulary entries"):
        vocabulary_indices(names, [["ball"], ["ball", "orb"]])
    with pytest.raises(OvbenchError, match="names none"):
        vocabulary_indices(names, [["spaceship"]])


def test_texture_probabilities_agree_with_its_label_map():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    dim = pixel_features(image).shape[1]
    texture = PixelTextureClassifier._from_state(
        {"pixels_per_image": 1, "max_iter": 1, "l2": 0.0, "seed": 0},
        {"classes": CLASSES, "mean": np.zeros(dim), "scale": np.ones(dim), "weights": rng.normal(size=(dim + 1, 4))})
    probs = texture.probabilities(image)
    assert probs.shape == (9, 11, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(CLASSES[probs.argmax(-1)], texture.predict(image))


def test_clip_classifies_each_object_crop_over_the_whole_vocabulary():
    detector = TextureBoxesClip(PixelTextureClassifier(), {c.id: c.name for c in get_protocol("synth-ov").classes})
    detector.set_vocabulary(vocabulary(get_protocol("synth-ovd")))
    image = np.random.default_rng(2).integers(0, 256, LABELS.shape + (3,), dtype=np.uint8)
    probs = detector.classify(image, object_masks(LABELS, list(detector.index), min_pixels=4))
    assert probs.shape == (2, 16)
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, rtol=1e-5)
    assert detector.counters() == {"clip_image_forwards": 2}
    assert detector.config()["classifier"]["logit_scale"] == pytest.approx(detector.logit_scale, abs=1e-3)
