"""GKC's training method: synonym draws, the distillation term on matched queries, the ablation
switches, and a model file that holds only the plain segmenter."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods.gkc.distillation import TGKDHead, tgkd_loss
from methods.gkc.training import GKCCriterion, GKCSettings, SynonymSampler
from ovbench.cli import main
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.segmenter.losses import prepare_targets
from ovbench.models.segmenter.ov_segmenter import load_model_file, read_model_file
from ovbench.synth import WorldSizes, generate_world

REPO = Path(__file__).resolve().parents[1]
GKC_SYNTH = REPO / "methods/gkc/configs/synth-ov.yaml"
TINY = WorldSizes(train_images=6, val_images=3, image_size=64, train_videos=0, val_videos=0, caption_pairs=4)
FAST = ["train.iterations=2", "train.global_batch_size=2", "data.crop_size=64", "train.log_period=1",
        "train.checkpoint_period=2", "model.num_points=64", "train.milestones=[]", "train.warmup_iterations=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=3, sizes=TINY, progress=False)
    return root


def test_settings_are_checked():
    with pytest.raises(OvbenchError, match="unknown gkc method key"):
        GKCSettings.from_dict({"kind": "gkc", "kd": 1})
    with pytest.raises(OvbenchError, match="region_dropout"):
        GKCSettings.from_dict({"kind": "gkc", "region_dropout": 1.0})


def test_synonym_sampler_draws_uniformly_within_each_class():
    clip = Clip("tiny-vit", seed=0)
    sampler = SynonymSampler(clip, [["a"], ["b", "c", "d"]], "a photo of a {}.")
    assert sampler.text.shape == (4, clip.embed_dim)
    torch.manual_seed(0)
    draws = [sampler.draw(1) for _ in range(600)]
    assert set(draws) == {1, 2, 3} and all(150 < draws.count(r) < 250 for r in (1, 2, 3))
    assert {sampler.draw(0) for _ in range(20)} == {0}
    with pytest.raises(OvbenchError, match="at least one synonym"):
        SynonymSampler(clip, [["a"], []], "{}")
    filtered = SynonymSampler(clip, [["a"], ["b", "c", "d"]], "a photo of a {}.",
                              kept={("img", 1): ["b", "d"], ("odd", 1): ["zzz"]})
    assert {filtered.draw(1, ("img", 1)) for _ in range(50)} == {1, 3}
    assert filtered.candidates(1, ("odd", 1)) == [1, 2, 3]          # nothing usable kept: all candidates
    assert filtered.candidates(1, ("other", 1)) == [1, 2, 3]


def test_distillation_uses_only_matched_and_stashed_segments():
    torch.manual_seed(0)
    head = TGKDHead(4, 3, 1)
    crit = GKCCriterion(head, 2.0, num_points=16)
    query = torch.randn(1, 3, 4)
    teacher, text = torch.randn(2, 3), torch.randn(2, 3)
    targets = prepare_targets([[(0, torch.ones(8, 8)), (1, torch.ones(8, 8)), (2, torch.ones(8, 8))]], "cpu")
    crit.stash(teacher, text, [torch.tensor([1, -1, 0])])
    indices = [(torch.tensor([2, 0, 1]), torch.tensor([0, 1, 2]))]   # query 2 <- segment 0, query 1 <- segment 2
    got = crit.extra_losses({"query_embeds": query}, indices, targets, 0)["loss_kd"]
    student = head.projections[0](query[0, [2, 1]])
    want = tgkd_loss(student, teacher[[1, 0]], text[[1, 0]], torch.zeros(2, dtype=torch.int64), head.alpha)
    assert got.item() == pytest.approx(want.item())
    assert crit.weights["loss_kd"] == 2.0 and "tgkd" not in dict(crit.named_modules())


@pytest.mark.parametrize("overrides, present, absent", [
    ([], {"loss_syn", "loss_kd"}, set()),
    (["method.kd_weight=0"], {"loss_syn"}, {"loss_kd"}),
    (["method.syn_weight=0"], {"loss_kd"}, {"loss_syn"}),
])
def test_gkc_trains_and_saves_the_plain_segmenter(world, tmp_path, overrides, present, absent):
    out = tmp_path / "run"
    args = ["train", str(GKC_SYNTH), "--data-root", str(world), "--output-dir", str(out), "--no-progress"]
    assert main(args + [f"--set={o}" for o in FAST + overrides]) == 0
    import json
    logged = set(json.loads((out / "metrics.jsonl").read_text().splitlines()[-1]))
    assert present <= logged and not absent & logged
    state = read_model_file(out / "model.pt")
    assert not any(k.startswith("tgkd.") for k in state["state_dict"])
    assert state["summary"]["method"]["kind"] == "gkc"
    model = load_model_file(out / "model.pt")
    assert model.name == "gkc" and model.counters() == {"clip_image_forwards": 0}


def test_paper_scale_gkc_config_takes_one_step_at_reduced_size():
    from ovbench.engine.segmenter_training import build_for_training, load_run_config, training_parts
    config = REPO / "methods/gkc/configs/coco-panoptic-rn50.yaml"
    run = load_run_config(config, ["model.clip.pretrained=null"])
    assert (run.model.num_queries, run.data.crop_size, run.train.iterations, run.train.lr,
            run.train.global_batch_size, run.method["kd_weight"]) == (100, 512, 50000, 3e-4, 56, 2.0)
    setup = build_for_training(run, config.parent)
    parts = training_parts(setup)
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    labels = torch.full((2, 64, 64), 255)
    labels[0, :32], labels[0, 32:], labels[1, 8:40, 8:40] = 3, 7, 5
    torch.manual_seed(0)
    losses = parts.loss_fn(parts.module, (images, labels, torch.tensor([0, 1])))
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_syn", "loss_kd"} <= set(losses)
    sum(losses.values()).backward()
    head = parts.module.tgkd
    assert head.alpha.grad is not None and all(p.grad is not None for p in head.projections.parameters())
    assert len(head.projections) == 10 and head.projections[0].out_features == 1024
    assert not any(k.startswith("tgkd.") for k in parts.segmenter().state_dict())


def test_ablation_runner_records_a_study(world, tmp_path, capsys):
    import pandas as pd

    from methods.gkc.ablation import VARIANTS, run_ablation
    records = run_ablation(world, tmp_path / "runs", tmp_path / "lb", seeds=[0], overrides=FAST,
                           study="abl", progress=False)
    assert len(records) == len(VARIANTS)
    table = pd.read_csv(tmp_path / "lb" / "tables" / "synth-ov__abl.csv")
    assert table["variant"].tolist() == [v.name for v in VARIANTS] and set(table["seeds"]) == {1}
    assert "GKC (both) seed 0: mIoU" in capsys.readouterr().out
    again = run_ablation(world, tmp_path / "runs", tmp_path / "lb", seeds=[0], overrides=FAST, study="abl",
                         progress=False)                            # trained runs are reused
    assert len(again) == len(records)
