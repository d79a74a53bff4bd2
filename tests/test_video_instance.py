"""Video instance evaluation: video AP and DAVIS-unsupervised J&F of tracks, end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovbench.cli import main
from ovbench.errors import ValidationError
from ovbench.evaluation.video_instance import JF_PROPOSALS, evaluate_video_instance_submission
from ovbench.protocols.schema import protocol_from_dict

H, W, T = 20, 24, 4
CAT, DOG = 3, 7                      # base, novel


def protocol():
    return protocol_from_dict({
        "id": "toy-vis", "version": 1, "task": "video-instance", "dataset": "toy", "split": "val",
        "layout": {"images": "{file_name}", "labels": "tracks.json"}, "metrics": ["AP"],
        "classes": [{"id": CAT, "name": "cat", "partition": "base"}, {"id": DOG, "name": "dog", "partition": "novel"}],
        "evaluation": {"style": "youtube-vis", "max_detections": [100]}})


def rle(y, x, h=6, w=6):
    m = np.zeros((H, W), np.uint8)
    m[y:y + h, x:x + w] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": r["counts"].decode("ascii")}


def track(y, x, frames=range(T)):
    return [rle(y, x) if t in frames else None for t in range(T)]


def write_gt(root, tracks_by_video):
    """``tracks_by_video``: {video id: [(category, segmentations)]}."""
    videos = [{"id": v, "name": f"v{v}", "width": W, "height": H, "length": T,
               "file_names": [f"v{v}/{t:05d}.jpg" for t in range(T)]} for v in tracks_by_video]
    anns = []
    for v, tracks in tracks_by_video.items():
        for cat, segs in tracks:
            anns.append({"id": len(anns) + 1, "video_id": v, "category_id": cat, "segmentations": segs,
                         "areas": [None if s is None else 36 for s in segs], "iscrowd": 0})
    (root / "tracks.json").write_text(json.dumps({"videos": videos, "annotations": anns, "categories": [
        {"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}]}))


def score(tmp_path, preds, **kw):
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    return evaluate_video_instance_submission(protocol(), tmp_path / "preds.json", tmp_path, workers=1,
                                              progress=False, **kw).metrics


def pred(video, cat, segs, s=0.9):
    return {"video_id": video, "category_id": cat, "score": s, "segmentations": segs}


def test_perfect_tracks_score_100(tmp_path):
    gt = {1: [(CAT, track(2, 2)), (DOG, track(10, 12))], 2: [(CAT, track(0, 0, range(2)))]}
    write_gt(tmp_path, gt)
    m = score(tmp_path, [pred(v, c, s) for v, ts in gt.items() for c, s in ts])
    for key in ("AP_all", "AP_base", "AP_novel", "J&F", "J&F_base", "J&F_novel"):
        assert m[key] == pytest.approx(100.0)


def test_a_track_found_in_half_its_frames(tmp_path):
    write_gt(tmp_path, {1: [(CAT, track(2, 2))]})
    m = score(tmp_path, [pred(1, CAT, track(2, 2, range(2)))])
    # spatio-temporal IoU 2/4 = 0.5: a hit at IoU .50 only -> AP 10, AP50 100
    assert m["AP_all"] == pytest.approx(10.0) and m["AP50_all"] == pytest.approx(100.0)
    # J and F are 1 in frames 0-1 and 0 in frames 2-3 (object present, prediction empty)
    assert m["J"] == pytest.approx(50.0) and m["F"] == pytest.approx(50.0) and m["J&F"] == pytest.approx(50.0)
    assert m["J&F_novel"] is None


def test_j_and_f_are_class_agnostic_but_ap_is_not(tmp_path):
    write_gt(tmp_path, {1: [(CAT, track(2, 2))]})
    m = score(tmp_path, [pred(1, DOG, track(2, 2))])
    assert m["AP_base"] == pytest.approx(0.0) and m["AP_novel"] is None
    assert m["J&F"] == pytest.approx(100.0)


def test_unmatched_ground_truth_scores_zero_and_only_top_proposals_take_part(tmp_path):
    write_gt(tmp_path, {1: [(CAT, track(2, 2)), (DOG, track(10, 12))]})
    decoys = [pred(1, CAT, track(0, 17), s=0.9 - i * 0.01) for i in range(JF_PROPOSALS)]
    late_hit = pred(1, DOG, track(10, 12), s=0.1)                  # ranked 21st: not a J&F proposal
    m = score(tmp_path, decoys + [late_hit])
    assert m["J&F_novel"] == pytest.approx(0.0)
    assert m["AP_novel"] == pytest.approx(100.0)                   # AP sees every track


def test_validation_lists_problems_and_truncation_is_opt_in(tmp_path):
    write_gt(tmp_path, {1: [(CAT, track(2, 2))]})
    bad = [pred(1, CAT, track(2, 2)[:3]), pred(9, CAT, track(2, 2)), pred(1, 5, track(2, 2))]
    with pytest.raises(ValidationError) as e:
        score(tmp_path, bad)
    message = str(e.value)
    assert "3 problem(s)" in message and "entry 0" in message and "entry 1" in message and "entry 2" in message
    many = [pred(1, CAT, track(0, i % 18), s=i / 200) for i in range(101)]
    with pytest.raises(ValidationError, match="video 1: 101"):
        score(tmp_path, many)
    assert score(tmp_path, many, truncate=True)["AP_all"] is not None


def test_cli_records_the_synthetic_protocol(tmp_path, capsys):
    from ovbench.synth import WorldSizes, generate_world
    tiny = WorldSizes(train_images=0, val_images=0, image_size=32, train_videos=0, val_videos=2, video_frames=6,
                      video_size=48, caption_pairs=0)
    generate_world(tmp_path / "world", sizes=tiny, progress=False)
    gt = json.loads((tmp_path / "world" / "videos" / "val" / "instances.json").read_text())
    preds = [pred(a["video_id"], a["category_id"], a["segmentations"]) for a in gt["annotations"]]
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    rc = main(["evaluate", "--protocol", "synth-ov-video-instance", "--predictions", str(tmp_path / "preds.json"),
               "--data-root", str(tmp_path / "world"), "--no-progress", "--workers", "2", "--record",
               "--root", str(tmp_path / "lb")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["metrics"]["AP_all"] == pytest.approx(100.0) and out["metrics"]["J&F"] == 100.0
    record = json.loads(next((tmp_path / "lb" / "results" / "synth-ov-video-instance").glob("*.json")).read_text())
    assert record["evaluation"]["truncation"]["dropped"] == 0
    assert main(["leaderboard", "--root", str(tmp_path / "lb")]) == 0
    header = next(line for line in (tmp_path / "lb" / "tables" / "synth-ov-video-instance.md").read_text().splitlines()
                  if line.startswith("| method"))
    assert "AP novel" in header and "J&F_novel" in header
    (tmp_path / "preds.json").write_text(json.dumps(preds[:1] + [dict(preds[0], score=2.0)]))
    assert main(["evaluate", "--protocol", "synth-ov-video-instance", "--predictions", str(tmp_path / "preds.json"),
                 "--data-root", str(tmp_path / "world"), "--no-progress"]) == 2
