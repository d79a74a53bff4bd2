"""Video semseg: VC / VCc against VSPW's window loop, hand-computed cases, and submission checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import save_label
from ovbench.cli import main
from ovbench.errors import ValidationError
from ovbench.evaluation.video_semseg import evaluate_video_semseg_submission
from ovbench.metrics.video_consistency import consistency_metrics, group_lookup, window_counts
from ovbench.protocols.schema import protocol_from_dict

BASE, NOVEL = [0, 1], [2]
GROUPS = group_lookup(256, BASE, NOVEL)


def video_protocol(windows=(2, 3)):
    return protocol_from_dict({
        "id": "toy-video", "version": 1, "task": "video-semseg", "dataset": "toy", "split": "val",
        "layout": {"images": "frames/{id}.png", "labels": "labels/{id}.png"}, "ignore_label": 255,
        "metrics": ["mIoU"], "evaluation": {"vc_windows": list(windows)},
        "classes": [{"id": i, "name": f"c{i}", "partition": "novel" if i in NOVEL else "base"} for i in range(3)]})


def vspw_vc(gts, preds, n):
    """VSPW VC_perclip.py's loop, literally: windows i in range(T - n), each vs its first frame."""
    accs = []
    for i in range(len(gts) - n):
        a = np.ones(gts[0].shape, bool)
        b = np.ones(gts[0].shape, bool)
        for j in range(1, n):
            a &= gts[i] == gts[i + j]
            b &= preds[i] == preds[i + j]
        accs.append((a & b).sum() / a.sum() if a.sum() else np.nan)
    return accs


def counts_of(gts, preds, windows):
    return window_counts(zip(reversed(gts), reversed(preds)), len(gts), windows, GROUPS)


def random_video(rng, frames, shape=(6, 7), change=0.2):
    """Labels that mostly persist from frame to frame, with some ignore pixels."""
    gt = [rng.choice([0, 1, 2, 255], size=shape, p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint8)]
    for _ in range(frames - 1):
        nxt = gt[-1].copy()
        flip = rng.random(shape) < change
        nxt[flip] = rng.choice([0, 1, 2], size=flip.sum())
        gt.append(nxt)
    pred = []
    for g in gt:
        p = np.where(g == 255, 0, g).astype(np.uint8)
        noise = rng.random(shape) < 0.15
        p[noise] = rng.choice([0, 1, 2], size=noise.sum())
        pred.append(p)
    return gt, pred


@pytest.mark.parametrize("n", [2, 3, 5])
def test_vc_equals_vspw_loop_over_many_videos(n):
    rng = np.random.default_rng(n)
    videos = [random_video(rng, int(rng.integers(1, 12))) for _ in range(15)]
    ours = consistency_metrics({n: [counts_of(g, p, (n,))[n] for g, p in videos]})
    reference = [a for g, p in videos for a in vspw_vc(g, p, n)]
    assert ours[f"mVC{n}"] == pytest.approx(np.nanmean(reference) * 100, abs=1e-9)
    assert ours[f"num_windows{n}"] == len(reference)


def test_window_range_follows_vspw():
    g = [np.zeros((2, 2), np.uint8)] * 4
    assert counts_of(g, g, (3,))[3].shape[0] == 1          # T = 4, n = 3: only the window at 0
    assert counts_of(g, g, (4,))[4].shape[0] == 0          # T = n: no window at all
    assert consistency_metrics({4: [counts_of(g, g, (4,))[4]]})["mVC4"] is None


def test_constant_wrong_prediction_is_consistent_but_not_correct():
    gt = [np.array([[0, 0, 2, 255]], np.uint8)] * 4
    pred = [np.array([[1, 1, 1, 1]], np.uint8)] * 4
    m = consistency_metrics({3: [counts_of(gt, pred, (3,))[3]]})
    assert m["mVC3"] == 100.0 and m["mVC3_base"] == 100.0 and m["mVC3_novel"] == 100.0
    assert m["mVCc3"] == 0.0 and m["mVCc3_base"] == 0.0 and m["mVCc3_novel"] == 0.0


def test_hand_computed_vc_and_vcc_with_ignore_pixels():
    # 4 pixels over 3 frames, one window (n = 2, T = 3 -> start 0):
    # px0 gt 0,0 pred 0,0 -> A, B, correct; px1 gt 1,1 pred 1,2 -> A only; px2 gt 2,2 pred 0,0 -> A, B, wrong
    # px3 gt 255,255 pred 1,1 -> A, B (ignore: in VC, not in VCc)
    gt = [np.array([[0, 1, 2, 255]], np.uint8)] * 3
    pred = [np.array([[0, 1, 0, 1]], np.uint8), np.array([[0, 2, 0, 1]], np.uint8), np.array([[0, 2, 0, 1]], np.uint8)]
    m = consistency_metrics({2: [counts_of(gt, pred, (2,))[2]]})
    assert m["mVC2"] == pytest.approx(300 / 4)                # A = 4, A & B = 3
    assert m["mVC2_base"] == pytest.approx(50.0)             # px0 and px1
    assert m["mVC2_novel"] == pytest.approx(100.0)           # px2
    assert m["mVCc2"] == pytest.approx(100 / 3)              # A without ignore = 3, correct and constant = 1
    assert m["mVCc2_base"] == pytest.approx(50.0) and m["mVCc2_novel"] == pytest.approx(0.0)


def write_video_set(root, pred_dir, videos):
    for v, (gts, preds) in videos.items():
        for t, (g, p) in enumerate(zip(gts, preds)):
            save_label(root / "labels" / v / f"{t:05d}.png", g)
            save_label(pred_dir / v / f"{t:05d}.png", p)


def test_evaluation_combines_per_frame_miou_and_consistency(tmp_path):
    rng = np.random.default_rng(0)
    videos = {"v1": random_video(rng, 6), "v2": random_video(rng, 2), "v3": random_video(rng, 5)}
    write_video_set(tmp_path, tmp_path / "pred", videos)
    result = evaluate_video_semseg_submission(video_protocol(), tmp_path / "pred", tmp_path, workers=2, progress=False)
    m = result.metrics
    assert (m["num_videos"], m["num_frames"]) == (3, 13)
    for n in (2, 3):
        reference = [a for g, p in videos.values() for a in vspw_vc(g, p, n)]
        assert m[f"mVC{n}"] == pytest.approx(np.nanmean(reference) * 100, abs=1e-9)
    # per-frame mIoU over all frames, as image semseg counts it
    gts = np.concatenate([g for gs, _ in videos.values() for g in gs])
    preds = np.concatenate([p for _, ps in videos.values() for p in ps])
    valid = gts != 255
    ious = [((gts == c) & (preds == c) & valid).sum() / (((gts == c) | (preds == c)) & valid).sum() for c in range(3)]
    assert m["mIoU"] == pytest.approx(np.mean(ious) * 100)


def test_missing_extra_and_bad_frames_are_all_listed(tmp_path):
    rng = np.random.default_rng(1)
    write_video_set(tmp_path, tmp_path / "pred", {"v1": random_video(rng, 4), "v2": random_video(rng, 3)})
    (tmp_path / "pred" / "v1" / "00002.png").unlink()
    save_label(tmp_path / "pred" / "v2" / "00009.png", np.zeros((6, 7), np.uint8))
    with pytest.raises(ValidationError) as e:
        evaluate_video_semseg_submission(video_protocol(), tmp_path / "pred", tmp_path, workers=1, progress=False)
    message = str(e.value)
    assert "v1/00002" in message and "v2/00009" in message
    (tmp_path / "pred" / "v2" / "00009.png").unlink()
    save_label(tmp_path / "pred" / "v1" / "00002.png", np.zeros((5, 7), np.uint8))
    save_label(tmp_path / "pred" / "v2" / "00001.png", np.full((6, 7), 7, np.uint8))
    with pytest.raises(ValidationError) as e:
        evaluate_video_semseg_submission(video_protocol(), tmp_path / "pred", tmp_path, workers=1, progress=False)
    assert "v1/00002.png: size 7x5" in str(e.value) and "v2/00001.png" in str(e.value)


def test_cli_scores_the_synthetic_video_protocol(tmp_path, capsys):
    from ovbench.synth import WorldSizes, generate_world
    tiny = WorldSizes(train_images=0, val_images=0, image_size=32, train_videos=0, val_videos=2, video_frames=18,
                      video_size=32, caption_pairs=0)
    generate_world(tmp_path / "world", sizes=tiny, progress=False)
    pred = tmp_path / "pred"
    for src in (tmp_path / "world" / "videos" / "val" / "semantic").rglob("*.png"):
        dst = pred / src.relative_to(tmp_path / "world" / "videos" / "val" / "semantic")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    rc = main(["evaluate", "--protocol", "synth-ov-video", "--predictions", str(pred), "--data-root",
               str(tmp_path / "world"), "--no-progress", "--record", "--root", str(tmp_path / "lb")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["metrics"]["mIoU"] == 100.0 and out["metrics"]["mVC16"] == 100.0
    assert out["metrics"]["num_windows16"] == 2 * (18 - 16)
    record = json.loads(next((tmp_path / "lb" / "results" / "synth-ov-video").glob("*.json")).read_text())
    assert record["task"] == "video-semseg" and record["inputs"]["num_frames"] == 36
    assert main(["leaderboard", "--root", str(tmp_path / "lb")]) == 0
    table = (tmp_path / "lb" / "tables" / "synth-ov-video.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert "mVC16" in header and "mVCc8" in header and "| pred |" in table
