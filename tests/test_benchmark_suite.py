"""``ovbench benchmark``: suites, the up-front data check, and predict + evaluate + record per protocol."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovbench.cli import main
from ovbench.errors import OvbenchError
from ovbench.inference.benchmark import SUITES, missing_data, suite_protocols
from ovbench.synth import WorldSizes, generate_world

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=1, sizes=WorldSizes(train_images=2, val_images=4, image_size=64, train_videos=0,
                                                  val_videos=0, caption_pairs=2), progress=False)
    return root


def test_suites_are_registered_semseg_protocols():
    for name, ids in SUITES.items():
        assert [p.id for p in suite_protocols(name, [])] == list(ids)
    assert [p.id for p in suite_protocols("synth", ["ade-150", "synth-ov"])] == ["synth-ov", "ade-150"]
    with pytest.raises(OvbenchError, match="unknown suite"):
        suite_protocols("nope", [])
    with pytest.raises(OvbenchError, match="semseg"):
        suite_protocols(None, ["synth-ovd"])
    with pytest.raises(OvbenchError, match="--suite"):
        suite_protocols(None, [])


def test_missing_datasets_are_all_listed_before_anything_runs(tmp_path, capsys):
    assert set(missing_data(suite_protocols("gkc-zero-shot", []), tmp_path)) == set(SUITES["gkc-zero-shot"])
    model = REPO / "baselines/maskclip/configs/synth-ov.yaml"
    assert main(["benchmark", "--model", str(model), "--protocol", "ade-150", "--protocol", "cityscapes-19",
                 "--data-root", str(tmp_path), "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert "2 of 2 protocol(s) lack data" in err and "ade-150" in err and "cityscapes-19" in err
    assert not (tmp_path / "pred").exists()


def test_benchmark_records_each_present_protocol_and_skips_the_rest(synth_world, tmp_path, capsys):
    model = REPO / "baselines/maskclip/configs/synth-ov.yaml"
    root = tmp_path / "lb"
    assert main(["benchmark", "--model", str(model), "--suite", "synth", "--protocol", "ade-150", "--skip-missing",
                 "--data-root", str(synth_world), "--out", str(tmp_path / "pred"), "--record", "--root", str(root),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ade-150" in out and "skipped" in out
    record, = [json.loads(p.read_text()) for p in (root / "results" / "synth-ov").glob("*.json")]
    assert record["method"] == "maskclip" and record["config"]["suite"] == "synth"
    assert record["inputs"]["num_images"] == len(list((tmp_path / "pred" / "synth-ov").glob("*.png")))
    assert f"{record['metrics']['mIoU']:6.1f}" in out
