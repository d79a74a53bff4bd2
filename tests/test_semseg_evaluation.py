"""Offline and online semseg evaluation: formats, validation errors, evaluator interface."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_protocol, save_label, write_pairs
from ovbench.errors import OvbenchError, ValidationError
from ovbench.evaluation.semseg import SemSegEvaluator, evaluate_semseg_submission


def random_dataset(tmp_path: Path, k: int = 3, n: int = 5, seed: int = 0, dtype=np.uint8, ignore: int = 255):
    rng = np.random.default_rng(seed)
    gts, preds = {}, {}
    for i in range(n):
        gt = rng.integers(0, k, (12, 16)).astype(dtype)
        gt[0, :4] = ignore
        gts[f"img{i}"] = gt
        preds[f"img{i}"] = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, k, gt.shape)).astype(dtype)
        preds[f"img{i}"][preds[f"img{i}"] == ignore] = 0
    root, pred_dir = tmp_path / "root", tmp_path / "pred"
    write_pairs(root, pred_dir, gts, preds)
    return root, pred_dir


def test_scores_directory_and_workers_agree(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path)
    serial = evaluate_semseg_submission(toy_protocol, pred, root, workers=1, progress=False)
    parallel = evaluate_semseg_submission(toy_protocol, pred, root, workers=2, progress=False)
    assert serial.metrics == parallel.metrics
    assert serial.predictions_sha256 == parallel.predictions_sha256
    assert serial.metrics["num_images"] == 5


def test_zip_and_tar_equal_directory(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path)
    ref = evaluate_semseg_submission(toy_protocol, pred, root, workers=1, progress=False)
    zpath, tpath = tmp_path / "p.zip", tmp_path / "p.tar"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(pred.iterdir()):
            z.write(f, f"preds/{f.name}")  # one top folder: read as the root
    with tarfile.open(tpath, "w") as t:
        for f in sorted(pred.iterdir()):
            t.add(f, f.name)
    for path in (zpath, tpath):
        r = evaluate_semseg_submission(toy_protocol, path, root, workers=2, progress=False)
        assert r.metrics == ref.metrics
        assert r.predictions_sha256 == ref.predictions_sha256


def test_uint16_protocol_with_more_than_255_classes(tmp_path):
    protocol = make_protocol(300, novel=range(150, 300), ignore_label=65535)
    root, pred = random_dataset(tmp_path, k=300, dtype=np.uint16, ignore=65535)
    r = evaluate_semseg_submission(protocol, pred, root, workers=1, progress=False)
    assert r.metrics["mIoU"] is not None and r.metrics["mIoU_novel"] is not None


def problems_of(exc: ValidationError) -> str:
    return "\n".join(exc.problems)


def test_every_problem_is_listed(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path, n=6)
    (pred / "img0.png").unlink()                                        # missing
    save_label(pred / "stray.png", np.zeros((12, 16), np.uint8))        # extra
    save_label(pred / "img1.png", np.zeros((10, 16), np.uint8))         # wrong size
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(pred / "img2.png")  # RGB
    save_label(pred / "img3.png", np.full((12, 16), 3, np.uint8))        # value == K: out of range
    (pred / "img4.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")       # corrupt
    save_label(pred / "img5.png", np.zeros((12, 16), np.uint16))         # 16-bit for K <= 255
    (pred / "notes.txt").write_text("hi")                               # not a PNG
    with pytest.raises(ValidationError) as e:
        evaluate_semseg_submission(toy_protocol, pred, root, workers=2, progress=False)
    text = problems_of(e.value)
    assert len(e.value.problems) == 8
    for needle in ("missing prediction for image 'img0'", "stray.png: no image 'stray'", "img1.png: size 16x10",
                   "img2.png: has mode RGB", "img3.png: 192 pixels have class index >= 3",
                   "img4.png: cannot be decoded", "img5.png: mode I;16", "notes.txt: not a .png"):
        assert needle in text, needle


def test_problem_list_is_truncated_with_count():
    err = ValidationError("sub", [f"p{i}" for i in range(25)], fix="do x")
    lines = str(err).splitlines()
    assert lines[0] == "sub: 25 problem(s)"
    assert "  ... and 5 more" in lines and lines[-1] == "fix: do x"
    assert sum(line.startswith("  - ") for line in lines) == 20


def test_corrupt_ground_truth_names_the_file(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path, n=2)
    (root / "labels" / "img1.png").write_bytes(b"nope")
    with pytest.raises(ValidationError) as e:
        evaluate_semseg_submission(toy_protocol, pred, root, workers=1, progress=False)
    assert "img1.png: ground truth cannot be decoded" in problems_of(e.value)


def test_missing_inputs_raise_clear_errors(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path, n=1)
    with pytest.raises(OvbenchError, match="predictions not found"):
        evaluate_semseg_submission(toy_protocol, tmp_path / "nope", root, progress=False)
    with pytest.raises(OvbenchError, match="ground-truth folder of toy not found"):
        evaluate_semseg_submission(toy_protocol, pred, tmp_path / "nothing", progress=False)
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(OvbenchError, match="neither a directory nor|corrupt archive"):
        evaluate_semseg_submission(toy_protocol, bad_zip, root, progress=False)


def test_detectron2_interface_matches_offline(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path)
    offline = evaluate_semseg_submission(toy_protocol, pred, root, workers=1, progress=False)
    ev = SemSegEvaluator(toy_protocol, data_root=root)
    ev.reset()
    for i in range(5):
        labels = np.asarray(Image.open(pred / f"img{i}.png")).astype(np.int64)
        scores = torch.nn.functional.one_hot(torch.from_numpy(labels), 3).permute(2, 0, 1).float()
        ev.process([{"image_id": f"img{i}"}], [{"sem_seg": scores}])
    assert ev.evaluate() == {"sem_seg": offline.metrics}
    ev.reset()
    assert ev.evaluate()["sem_seg"]["num_images"] == 0


def test_evaluator_rejects_wrong_shape(tmp_path, toy_protocol):
    root, _ = random_dataset(tmp_path, n=1)
    ev = SemSegEvaluator(toy_protocol, data_root=root)
    with pytest.raises(ValidationError, match="size 4x4"):
        ev.process([{"image_id": "img0"}], [{"sem_seg": np.zeros((4, 4), np.uint8)}])


def test_bootstrap_interval_brackets_estimate_and_is_seeded(tmp_path, toy_protocol):
    root, pred = random_dataset(tmp_path, n=12)
    a = evaluate_semseg_submission(toy_protocol, pred, root, workers=1, bootstrap=300, seed=1, progress=False)
    b = evaluate_semseg_submission(toy_protocol, pred, root, workers=1, bootstrap=300, seed=1, progress=False)
    ci = a.metrics["ci95"]
    assert ci == b.metrics["ci95"]
    assert ci["mIoU"][0] <= a.metrics["mIoU"] <= ci["mIoU"][1]
    assert ci["mIoU"][0] < ci["mIoU"][1]
    assert a.per_image.shape == (12, 3, 3)
    assert (a.per_image.sum(axis=0) == np.stack([np.diag(a.confusion), a.confusion.sum(1), a.confusion.sum(0)])).all()
