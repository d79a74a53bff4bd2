"""The demo: the main job end to end on the synthetic world (about 30 s on 2 cores)."""
from __future__ import annotations

import json

from ovbench.cli import main
from ovbench.records.store import load_result_records, load_speed_records


def test_demo_end_to_end_and_reuses_the_world(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--bootstrap", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "generating the synthetic world" in out and "| pixel-texture | reproduced |" in out
    root = tmp_path / "leaderboards"
    records = {r["method"]: r for r in load_result_records(root)}
    assert set(records) == {"pixel-colour", "pixel-texture"}
    for r in records.values():
        m = r["metrics"]
        assert m["num_images"] == 100 and m["ci95"]["n_boot"] == 50
        assert m["ci95"]["mIoU"][0] <= m["mIoU"] <= m["ci95"]["mIoU"][1]
        assert m["mIoU_novel"] == 0.0  # base-only predictors never predict a novel class
    # texture features separate classes that colour alone confuses
    assert records["pixel-texture"]["metrics"]["mIoU_base"] > records["pixel-colour"]["metrics"]["mIoU_base"]
    assert {s["method"] for s in load_speed_records(root)} == {"pixel-colour", "pixel-texture"}
    assert (root / "tables" / "synth-ov.md").is_file()
    assert (root / "tables" / "plots" / "synth-ov__base-novel.png").is_file()
    world = json.loads((tmp_path / "synth-world" / "world.json").read_text())
    assert world["seed"] == 0

    assert main(["demo", "--workdir", str(tmp_path), "--bootstrap", "20", "--no-progress"]) == 0
    assert "reusing the synthetic world" in capsys.readouterr().out
    assert len(load_result_records(root)) == 4
