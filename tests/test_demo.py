"""The demo: the main job end to end on the synthetic world (about a minute on 2 cores)."""
from __future__ import annotations

import json

from ovbench.cli import main
from ovbench.records.store import load_result_records, load_speed_records

BASELINES = {"naive-finetune", "two-stage", "maskclip", "gkc"}
DETECTORS = {"texture-boxes", "texture-boxes+clip"}
AP50_KEYS = {f"AP50_{part}@{cap}" for part in ("all", "base", "novel") for cap in (100, 300)}


def test_demo_end_to_end_and_reuses_the_world(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--bootstrap", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "generating the synthetic world" in out and "| pixel-texture | reproduced |" in out
    assert "| two-stage | reproduced |" in out and "img/s (cpu)" in out
    root = tmp_path / "leaderboards"
    records = {r["method"]: r for r in load_result_records(root) if r["protocol"]["id"] == "synth-ov"}
    detections = {r["method"]: r for r in load_result_records(root) if r["protocol"]["id"] == "synth-ovd"}
    assert set(records) == {"pixel-colour", "pixel-texture"} | BASELINES and set(detections) == DETECTORS
    for r in records.values():
        m = r["metrics"]
        assert m["num_images"] == 100 and m["ci95"]["n_boot"] == 50
        assert m["ci95"]["mIoU"][0] <= m["mIoU"] <= m["ci95"]["mIoU"][1]
    for name in ("pixel-colour", "pixel-texture"):  # base-only predictors never predict a novel class
        assert records[name]["metrics"]["mIoU_novel"] == 0.0
    # texture features separate classes that colour alone confuses
    assert records["pixel-texture"]["metrics"]["mIoU_base"] > records["pixel-colour"]["metrics"]["mIoU_base"]
    # CLIP gives the open-vocabulary baselines novel classes; the two-stage pipeline pays with CLIP forwards
    for name in ("two-stage", "maskclip"):
        assert records[name]["metrics"]["mIoU_novel"] > 5.0
    forwards = records["two-stage"]["config"]["clip_image_forwards_per_image"]
    assert 1 <= forwards <= 16 and records["maskclip"]["config"]["clip_image_forwards_per_image"] == 1
    for name in ("naive-finetune", "gkc"):  # single-stage: no CLIP image encoder at inference
        assert records[name]["config"]["clip_image_forwards_per_image"] == 0
    assert {s["method"] for s in load_speed_records(root)} == set(records) | DETECTORS
    assert (root / "tables" / "synth-ov.md").is_file()
    assert (root / "tables" / "plots" / "synth-ov__base-novel.png").is_file()

    # synth-ovd: box and mask AP50 of the reference detectors, their table and plots
    assert "| texture-boxes | reproduced |" in out and "| texture-boxes+clip | reproduced |" in out
    for r in detections.values():
        assert r["inputs"]["num_images"] == 100 and AP50_KEYS <= set(r["metrics"]["bbox"]) <= set(r["metrics"]["segm"])
    box = {name: r["metrics"]["bbox"] for name, r in detections.items()}
    # base-only label maps never name a novel class; measured base AP50@100 77.2
    assert box["texture-boxes"]["AP50_novel@100"] == 0.0
    assert detections["texture-boxes"]["metrics"]["segm"]["AP50_novel@100"] == 0.0
    assert box["texture-boxes"]["AP50_base@100"] > 50.0
    # CLIP over the whole vocabulary finds novel things (measured 25.1), one forward per object (measured 3.35)
    assert box["texture-boxes+clip"]["AP50_novel@100"] > 10.0
    assert detections["texture-boxes"]["config"]["clip_image_forwards_per_image"] == 0
    assert 1 <= detections["texture-boxes+clip"]["config"]["clip_image_forwards_per_image"] <= 16
    assert (root / "tables" / "synth-ovd.md").is_file()
    assert (root / "tables" / "plots" / "synth-ovd__base-novel.png").is_file()
    world = json.loads((tmp_path / "synth-world" / "world.json").read_text())
    assert world["seed"] == 0

    assert main(["demo", "--workdir", str(tmp_path), "--bootstrap", "20", "--no-progress",
                 "--only", "pixel-colour"]) == 0
    assert "reusing the synthetic world" in capsys.readouterr().out
    assert len(load_result_records(root)) == 9
    assert main(["demo", "--workdir", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown demo row" in capsys.readouterr().err
