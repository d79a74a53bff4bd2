"""The EZSD vs ViLD study runner end to end on a miniature world: offline parts, schedules, records, table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from methods.ezsd.study import VARIANTS, OfflineParts, run_overrides, run_study, schedule_overrides, slug
from ovbench.synth import WorldSizes, generate_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = WorldSizes(train_images=3, val_images=2, image_size=128, train_videos=0, val_videos=0, caption_pairs=2)


def test_schedule_scales_milestones_and_warmup():
    ezsd = next(v for v in VARIANTS if v.name == "EZSD")
    assert schedule_overrides(ezsd.config, 150) == [
        "train.iterations=150", "train.milestones=[100, 138]", "train.warmup_iterations=12",
        "train.checkpoint_period=150", "train.log_period=20"]
    assert slug("EZSD, raw CLIP (no re-normalisation) (¼ steps)") == "ezsd-raw-clip-no-re-normalisation-quarter-steps"


def test_variant_overrides_point_at_the_offline_parts():
    parts = OfflineParts(Path("/runs"))
    by_name = {v.name: v for v in VARIANTS}
    ezsd = run_overrides(by_name["EZSD"], parts, 300, 2)
    assert "method.regions=/runs/offline/ezsd-regions-renorm" in ezsd and "train.seed=2" in ezsd
    assert "model.clip.pretrained=/runs/offline/ezsd-renorm/clip-renorm.pt" in ezsd
    raw = run_overrides(by_name["EZSD, raw CLIP (no re-normalisation)"], parts, 300, 0)
    assert "method.regions=/runs/offline/ezsd-regions-raw" in raw
    assert raw[-1] == "model.clip.pretrained=builtin:tiny-vit-synth"                 # the variant's own, last
    assert "method.proposals=/runs/offline/vild-proposals" in run_overrides(by_name["ViLD"], parts, 300, 0)


def test_study_end_to_end(tmp_path):
    world = tmp_path / "world"
    generate_world(world, seed=5, sizes=WORLD, progress=False)
    root = tmp_path / "lb"
    records = run_study(world, tmp_path / "runs", root, seeds=[0], iterations=4,
                        only=["ViLD", "EZSD, raw CLIP (no re-normalisation)"], study="mini", progress=False)
    assert len(records) == 4                                                   # 2 variants x (full, quarter)
    for kind in ("renorm", "raw"):
        assert (tmp_path / "runs/offline" / f"ezsd-regions-{kind}" / "manifest.json").is_file()
    assert (tmp_path / "runs/offline/vild-proposals/manifest.json").is_file()
    assert (tmp_path / "runs/vild-text-full-seed0/model.pt").is_file()        # ViLD's proposer
    configs = [json.loads(Path(r).read_text())["config"] for r in records]
    assert sorted(c["iterations"] for c in configs) == [1, 1, 4, 4]
    assert all(c["train_seconds"] > 0 and "model.mask=false" in c["overrides"] for c in configs)
    page = (root / "tables" / "synth-ovd__mini.md").read_text()
    assert "| ViLD (full) | 1 |" in page and "| EZSD, raw CLIP (no re-normalisation) (¼ steps) | 1 |" in page
    assert "train s" in page
    # a second run reuses every model and cache; the records keep the first training times
    again = run_study(world, tmp_path / "runs", root, seeds=[0], iterations=4, only=["ViLD"], study="mini",
                      progress=False)
    assert [json.loads(Path(r).read_text())["config"]["train_seconds"] for r in again] == \
        [c["train_seconds"] for c in configs[:2]]
