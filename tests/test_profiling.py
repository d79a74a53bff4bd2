"""``ovbench profile``: the timing protocol, settings, model resolution, staged models, the speed
record and the leaderboard join, on the CPU with small inputs (the CUDA path where a GPU exists)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ovbench.cli import main
from ovbench.errors import OvbenchError
from ovbench.leaderboard import build_leaderboards
from ovbench.models.api import stack_inputs
from ovbench.models.segmenter.ov_segmenter import random_segmenter
from ovbench.models.segmenter.spec import SegmenterSpec
from ovbench.profiling import ProfileOptions, Setting, parse_input_size, profile, resolve_target
from ovbench.profiling.runner import parameter_counts, synthetic_image, vocabulary
from ovbench.profiling.settings import numerics
from ovbench.profiling.targets import ModuleSegmenter, Target, random_weights
from ovbench.profiling.timing import Timing, measure, percentile, ratio_summary, time_window, warm_up

REPO = Path(__file__).resolve().parents[1]
TINY_SPEC = {"clip": {"name": "tiny-vit", "pretrained": None}, "trunk": "clip", "normalization": "clip",
             "template": "a photo of a {}.", "num_queries": 4, "hidden_dim": 16, "conv_dim": 16, "mask_dim": 16,
             "nheads": 2, "dim_feedforward": 32, "dec_layers": 2, "num_points": 64, "size_divisibility": 8}


class CountingCall:
    """A callable recording the order of calls in a shared log."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def __call__(self) -> None:
        self.log.append(self.name)


# -- timing ------------------------------------------------------------------------------------------
def test_percentile_interpolates_between_order_statistics():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([10.0], 90) == 10.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_summary_by_hand():
    t = Timing(windows_ms=[[1.0, 3.0], [2.0, 2.0], [4.0, 4.0]], warmup_calls=12)
    s = t.summary()
    calls = [1.0, 3.0, 2.0, 2.0, 4.0, 4.0]
    mean = sum(calls) / 6
    std = (sum((c - mean) ** 2 for c in calls) / 5) ** 0.5
    assert s["median"] == 2.5 and s["mean"] == pytest.approx(mean) and s["std"] == pytest.approx(std)
    assert s["cv"] == pytest.approx(std / mean)
    assert s["repeat_medians"] == [2.0, 2.0, 4.0]
    rep_std = (((2 - 8 / 3) ** 2 * 2 + (4 - 8 / 3) ** 2) / 2) ** 0.5
    assert s["cv_repeats"] == pytest.approx(rep_std / (8 / 3))
    assert (s["iterations"], s["repeats"], s["warmup_calls"]) == (2, 3, 12)


def test_ratio_is_baseline_over_model_per_window():
    model = Timing(windows_ms=[[1.0, 1.0], [2.0, 2.0]])
    baseline = Timing(windows_ms=[[4.0, 4.0], [4.0, 4.0]])
    r = ratio_summary(baseline, model)
    assert r["speedup"] == pytest.approx(4.0 / 1.5)
    assert r["per_repeat"] == [4.0, 2.0] and (r["min"], r["max"]) == (2.0, 4.0)


def test_measure_warms_up_then_alternates_windows_between_callables():
    log: list[str] = []
    timings = measure({"a": CountingCall("a", log), "b": CountingCall("b", log)}, "cpu", iterations=4, repeats=3,
                      warmup=10)
    for name in "ab":
        assert timings[name].warmup_calls >= 10 + 2 * 5     # the minimum, then two chunks to compare
        assert [len(w) for w in timings[name].windows_ms] == [4, 4, 4]
    warm = timings["a"].warmup_calls + timings["b"].warmup_calls
    assert log[:timings["a"].warmup_calls] == ["a"] * timings["a"].warmup_calls
    assert log[warm:] == (["a"] * 4 + ["b"] * 4) * 3
    assert len(time_window(CountingCall("c", log), 7, "cpu")) == 7


def test_warm_up_continues_until_the_latency_is_stable():
    """Latencies fall 2x per chunk for a while, then level off: the warm-up must run past the fall."""
    calls = []

    def slowing_down() -> None:
        calls.append(1)
        if len(calls) <= 30:
            import time
            time.sleep(0.004 / (1 + len(calls) // 5))

    n, stable = warm_up(slowing_down, "cpu", minimum=10)
    assert stable and n > 10 + 2 * 5 and n == len(calls)
    log: list[str] = []
    n, _ = warm_up(CountingCall("x", log), "cpu", minimum=1)
    assert n == len(log) >= 3   # chunks of one call


def test_warm_up_gives_up_at_its_caps_and_says_so(monkeypatch):
    """Chunks alternating 1 ms / 3 ms never agree within 5 %: the call cap, or the time cap, stops it."""
    import ovbench.profiling.timing as timing
    windows = []

    def fake_window(fn, calls, device):
        windows.append(calls)
        return [1.0 if len(windows) % 2 else 3.0] * calls

    monkeypatch.setattr(timing, "time_window", fake_window)
    assert warm_up(lambda: None, "cpu", minimum=1, maximum=12) == (12, False)
    assert warm_up(lambda: None, "cpu", minimum=1, maximum=10 ** 6, max_seconds=0.0) == (2, False)


# -- settings --------------------------------------------------------------------------------------
def test_input_sizes_and_setting_validation():
    assert parse_input_size("800x1216") == (800, 1216) and parse_input_size(" 64X32 ") == (64, 32)
    for bad in ("640", "0x10", "ax b"):
        with pytest.raises(OvbenchError, match="HEIGHTxWIDTH"):
            parse_input_size(bad)
    with pytest.raises(OvbenchError, match="CUDA"):
        Setting((64, 64), 5, precision="tf32", device="cpu")
    with pytest.raises(OvbenchError, match="precision"):
        Setting((64, 64), 5, precision="int8")
    assert Setting((64, 32), 5, precision="bf16").label() == "64x32 K=5 b1 bf16 model-only"
    assert Setting((64, 32), None).to_json()["input"] == "64x32"


def test_numerics_restore_the_tf32_flags_and_autocast_bf16_on_cpu():
    before = torch.backends.cuda.matmul.allow_tf32
    with numerics(Setting((8, 8), 1, precision="bf16")):
        assert torch.is_inference_mode_enabled()
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert torch.backends.cuda.matmul.allow_tf32 == before


# -- models ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_segmenter():
    return random_segmenter(SegmenterSpec.from_dict(TINY_SPEC), name="tiny")


def test_staged_segmenter_batches_and_matches_predict(tiny_segmenter):
    model = tiny_segmenter
    model.set_vocabulary(vocabulary(3))
    image = synthetic_image((40, 56), seed=1)
    with torch.inference_mode():
        single = model.postprocess(model.forward(model.preprocess(image)), image.shape[:2])
        batch = stack_inputs([model.preprocess(image)] * 3)
        assert batch["images"].shape[0] == 3 and batch["valid_size"] == (40, 56)
        labels = model.postprocess(model.forward(batch), image.shape[:2])
    assert len(labels) == 3 and all(np.array_equal(lab, single[0]) for lab in labels)
    assert np.array_equal(model.predict(image), single[0]) and single[0].shape == (40, 56)
    with pytest.raises(OvbenchError, match="one size"):
        stack_inputs([model.preprocess(image), model.preprocess(synthetic_image((48, 56), 1))])


def test_parameter_counts_split_towers_and_count_shared_tensors_once(tiny_segmenter):
    counts = parameter_counts(tiny_segmenter)
    clip = tiny_segmenter.clip.model
    text = sum(p.numel() for n, p in clip.named_parameters() if not n.startswith("visual."))
    assert counts["text"] == text
    assert counts["image"] == sum(p.numel() for p in tiny_segmenter.net.parameters())
    assert counts["total"] == counts["image"] + counts["text"]


def test_random_weights_drops_every_weight_file_and_keeps_architectures(tmp_path):
    config = {"kind": "two-stage", "clip": {"name": "tiny-vit", "pretrained": "builtin:tiny-vit-synth"},
              "proposer": {"kind": "segmenter", "checkpoint": "missing.pt", "spec": "run.yaml"}}
    out = random_weights(config, tmp_path)
    assert out["clip"]["pretrained"] is None and out["proposer"] == {"kind": "segmenter", "spec": "run.yaml"}
    assert config["proposer"]["checkpoint"] == "missing.pt"
    with pytest.raises(OvbenchError, match="'spec'"):
        random_weights({"kind": "segmenter", "checkpoint": "missing.pt"}, tmp_path)
    shipped = random_weights({"kind": "segmenter", "checkpoint": str(REPO / "methods/gkc/weights/synth-ov.pt")},
                             tmp_path)
    assert shipped["spec"]["num_queries"] == 16 and shipped["spec"]["clip"]["pretrained"] is None


def test_named_run_config_resolves_to_a_random_weight_segmenter():
    target = resolve_target("gkc/synth-ov")
    assert target.name == "gkc" and target.source["weights"] == "random"
    assert target.model.clip.digest == "random-seed0"


def test_factory_target_and_its_errors(monkeypatch):
    module = types.ModuleType("ovbench_profile_factories")
    module.conv = lambda: nn.Conv2d(3, 4, 3, padding=1)
    module.flat = lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5))
    module.not_a_module = lambda: 3
    monkeypatch.setitem(sys.modules, "ovbench_profile_factories", module)
    target = resolve_target("ovbench_profile_factories:conv")
    assert isinstance(target.model, ModuleSegmenter) and target.name == "conv"
    assert target.model.predict(synthetic_image((9, 7), 0)).shape == (9, 7)
    flat = resolve_target("ovbench_profile_factories:flat", name="flat-net")
    with pytest.raises(OvbenchError, match=r"\(B, K, h, w\)"):
        flat.model.predict(synthetic_image((9, 7), 0))
    with pytest.raises(OvbenchError, match="not a torch.nn.Module"):
        resolve_target("ovbench_profile_factories:not_a_module")
    with pytest.raises(OvbenchError, match="cannot import"):
        resolve_target("no_such_module_xyz:f")
    with pytest.raises(OvbenchError, match="named config"):
        resolve_target("no-such-config")


# -- profile and its record ------------------------------------------------------------------------
def _options(**kw) -> ProfileOptions:
    base = dict(inputs=[(32, 48)], vocabs=[3, 7], iterations=3, repeats=2, warmup=1, mask_sweep=(1, 2))
    base.update(kw)
    return ProfileOptions(**base)


def test_profile_records_every_setting_with_flops_text_cost_and_comparison(tiny_segmenter):
    slow = Target("slow-conv", ModuleSegmenter(nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(4)]),
                                               "slow-conv"), {"factory": "test"})
    records = profile([Target("tiny", tiny_segmenter, {"config": "test"}), slow], _options(), progress=False)
    model, baseline = records
    assert model["schema"] == "ovbench.speed/1" and model["device"]["class"] == "cpu"
    labels = [m["label"] for m in model["measurements"]]
    assert labels == ["32x48 K=3 b1 fp32 model-only", "32x48 K=3 b1 fp32 end-to-end",
                      "32x48 K=7 b1 fp32 model-only", "32x48 K=7 b1 fp32 end-to-end"]
    assert [m["setting"]["vocab"] for m in baseline["measurements"]] == [None] * 4
    assert model["setting"]["measured"] == "end-to-end" and model["latency_ms"] == model["measurements"][1]["latency_ms"]
    m = model["measurements"][0]
    assert m["latency_ms"]["repeats"] == 2 and m["latency_ms"]["iterations"] == 3
    assert m["images_per_s"] == pytest.approx(1000.0 / m["latency_ms"]["median"])
    assert m["flops_per_image"]["total"] > 0 and m["clip_image_forwards_per_image"] == 0
    assert m["memory_mib"] is None
    conv_flops = baseline["measurements"][0]["flops_per_image"]["total"]
    assert conv_flops == 4 * 2 * 32 * 48 * 3 * 3 * 9
    assert [t["vocab"] for t in model["text_encoder"]] == [3, 7]
    assert all(t["uncached_ms"] > 0 and t["cached_ms"] >= 0 for t in model["text_encoder"])
    assert model["params"]["text"] > 0 and baseline["params"]["text"] == 0
    comparison = model["comparison"]
    assert [c["baseline"] for c in comparison] == ["slow-conv"] * 4 and "comparison" not in baseline
    first = comparison[0]
    ratio = baseline["measurements"][0]["latency_ms"]["median"] / model["measurements"][0]["latency_ms"]["median"]
    assert first["speedup"] == pytest.approx(ratio)
    assert model["environment"]["torch"] == torch.__version__ and model["environment"]["torch_threads"] >= 1
    json.dumps(records)


def test_batch_divides_flops_per_image_and_multiplies_throughput(tiny_segmenter):
    one, = profile([Target("tiny", tiny_segmenter)], _options(vocabs=[3], measured=("model-only",)), progress=False)
    two, = profile([Target("tiny", tiny_segmenter)], _options(vocabs=[3], batch=2, measured=("model-only",)),
                   progress=False)
    f1, f2 = one["measurements"][0]["flops_per_image"], two["measurements"][0]["flops_per_image"]
    assert f2["total"] == pytest.approx(f1["total"])
    m = two["measurements"][0]
    assert m["images_per_s"] == pytest.approx(2000.0 / m["latency_ms"]["median"])


def test_two_stage_reports_clip_forwards_and_the_mask_sweep():
    target = resolve_target("two-stage/synth-ov")
    record, = profile([target], _options(vocabs=[3], measured=("model-only",)), progress=False)
    assert record["measurements"][0]["clip_image_forwards_per_image"] > 0
    sweep = record["mask_sweep"]
    assert [s["max_proposals"] for s in sweep] == [1, 2]
    assert [s["clip_image_forwards_per_image"] for s in sweep] == [1.0, 2.0]
    assert target.model.max_proposals is None
    assert record["params"]["image"] > parameter_counts(target.model.proposer)["image"]


def test_paper_scale_configs_build_with_random_weights_and_run_at_small_size():
    gkc = resolve_target("gkc/coco-panoptic-rn50")
    two_stage = resolve_target("two-stage/coco-panoptic-rn50")
    assert (gkc.name, two_stage.name) == ("gkc-rn50", "two-stage-rn50")
    assert two_stage.model.crop_size == 224 and two_stage.model.proposer.spec.num_queries == 100
    two_stage.model.max_proposals = 2
    for t in (gkc, two_stage):
        t.model.set_vocabulary(vocabulary(4))
        labels = t.model.predict(synthetic_image((64, 64), 0))
        assert labels.shape == (64, 64) and labels.max() < 4
    assert two_stage.model.counters()["clip_image_forwards"] <= 2


# -- CLI and leaderboard ---------------------------------------------------------------------------
def test_cli_writes_a_speed_record_the_leaderboard_joins(tmp_path, monkeypatch, capsys):
    module = types.ModuleType("ovbench_profile_cli")
    module.net = lambda: nn.Conv2d(3, 2, 1)
    monkeypatch.setitem(sys.modules, "ovbench_profile_cli", module)
    root = tmp_path / "lb"
    assert main(["profile", "ovbench_profile_cli:net", "--device", "cpu", "--input", "16x24", "--vocab", "2",
                 "--iterations", "2", "--repeats", "2", "--warmup", "1", "--root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "16x24 no vocab b1 fp32 model-only" in out and "speed record:" in out
    record, = [json.loads(p.read_text()) for p in (root / "speed").glob("*.json")]
    assert record["method"] == "net" and record["setting"]["measured"] == "end-to-end"
    shipped = sorted((REPO / "leaderboards/results/synth-ov").glob("maskclip__*.json"))[-1]
    result = {**json.loads(shipped.read_text()), "method": "net"}
    (root / "results").mkdir()
    (root / "results" / "net.json").write_text(json.dumps(result))
    build_leaderboards(root, root / "tables")
    table = (root / "tables" / "synth-ov.md").read_text()
    assert "| ms (cpu) | img/s (cpu) |" in table
    row = next(line for line in table.splitlines() if line.startswith("| net | reproduced"))
    assert f"{record['latency_ms']['median']:.1f}" in row


def test_cli_errors_are_one_line(capsys):
    assert main(["profile"]) == 2
    assert "give MODEL" in capsys.readouterr().err
    assert main(["profile", "gkc/synth-ov", "--input", "64", "--device", "cpu"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["profile", "gkc/synth-ov", "--device", "cuda"]) == 2
        assert "no CUDA" in capsys.readouterr().err
    assert main(["profile", "--list"]) == 0
    assert "two-stage/coco-panoptic-rn50" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_profile_uses_events_and_reports_memory(tiny_segmenter):
    record, = profile([Target("tiny", tiny_segmenter)], _options(vocabs=[3], device="cuda", precision="bf16"),
                      progress=False)
    assert record["protocol"]["timer"].startswith("cuda events")
    assert record["measurements"][0]["memory_mib"]["allocated"] > 0
    assert record["environment"]["gpu"]["name"] == torch.cuda.get_device_name()
    tiny_segmenter.to("cpu")
