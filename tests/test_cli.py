"""The ovbench command line: exit codes, stdout JSON, records, comparisons."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import save_label
from ovbench.cli import main
from ovbench.protocols import get_protocol


def synth_like(tmp_path, n=6, seed=0, accuracy=0.7):
    """A fake synth-ov data root (val labels only) and a prediction folder."""
    rng = np.random.default_rng(seed)
    root, pred = tmp_path / "root", tmp_path / f"pred{seed}_{accuracy}"
    for i in range(n):
        gt = rng.integers(0, 24, (16, 16)).astype(np.uint8)
        save_label(root / "annotations" / "val" / f"v{i}.png", gt)
        save_label(pred / f"v{i}.png", np.where(rng.random(gt.shape) < accuracy, gt, rng.integers(0, 24, gt.shape)))
    return root, pred


def test_list_json_keys(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    synth = next(r for r in rows if r["id"] == "synth-ov")
    assert set(synth) == {"id", "task", "num_classes", "num_base", "num_novel", "version", "hash"}
    assert synth["num_classes"] == 24 and synth["hash"] == get_protocol("synth-ov").hash


def test_list_classes(capsys):
    assert main(["list", "--protocol", "synth-ov", "--classes"]) == 0
    out = capsys.readouterr().out
    assert "novel  dog  (puppy, hound)" in out


def test_evaluate_record_and_out(tmp_path, capsys):
    root, pred = synth_like(tmp_path)
    lb, out = tmp_path / "lb", tmp_path / "res.json"
    code = main(["evaluate", "--protocol", "synth-ov", "--predictions", str(pred), "--data-root", str(root),
                 "--method", "toy", "--out", str(out), "--record", "--root", str(lb), "--no-progress",
                 "--config", "epochs=3", "--workers", "1"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocol"] == "synth-ov" and 0 < printed["metrics"]["mIoU"] < 100
    (record_path,) = (lb / "results" / "synth-ov").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["metrics"] == printed["metrics"] and record["config"] == {"epochs": 3}
    assert len(record["inputs"]["predictions_sha256"]) == 64
    assert (record_path.parent / record["per_image_file"]).is_file()
    assert json.loads(out.read_text())["metrics"] == printed["metrics"]


def test_invalid_submission_exits_2_and_writes_nothing(tmp_path, capsys):
    root, pred = synth_like(tmp_path)
    (pred / "v0.png").unlink()
    lb, out = tmp_path / "lb", tmp_path / "res.json"
    code = main(["evaluate", "--protocol", "synth-ov", "--predictions", str(pred), "--data-root", str(root),
                 "--out", str(out), "--record", "--root", str(lb), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing prediction for image 'v0'" in err and "fix:" in err
    assert not out.exists() and not lb.exists()


def test_unknown_protocol_exits_2(capsys):
    assert main(["list", "--protocol", "nope"]) == 2
    assert "unknown protocol 'nope'" in capsys.readouterr().err


def test_compare_paired_bootstrap(tmp_path, capsys):
    root, good = synth_like(tmp_path, n=20, accuracy=0.9)
    _, bad = synth_like(tmp_path, n=20, accuracy=0.3)
    for name, pred in (("a", good), ("b", bad), ("a2", good)):
        assert main(["evaluate", "--protocol", "synth-ov", "--predictions", str(pred), "--data-root", str(root),
                     "--out", str(tmp_path / f"{name}.json"), "--no-progress", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--bootstrap", "300"]) == 0
    res = json.loads(capsys.readouterr().out)["difference_a_minus_b"]["mIoU"]
    assert res["difference"] > 20 and res["ci"][0] > 0
    assert res["p_value"] == pytest.approx(2 / 301)  # no resample reverses the sign; +1-corrected
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a2.json"), "--bootstrap", "100"]) == 0
    same = json.loads(capsys.readouterr().out)["difference_a_minus_b"]["mIoU"]
    assert same["difference"] == 0 and same["p_value"] == 1.0
