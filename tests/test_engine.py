"""Training engine: config, optimizer groups, LR schedule, clipping, checkpoints, resume, metrics, DDP."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from ovbench.engine import (TrainConfig, Trainer, build_optimizer, build_scheduler, cleanup, init_distributed,
                            lr_factor, seed_everything)
from ovbench.engine import checkpoint as ckpt
from ovbench.errors import OvbenchError


def make_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Dropout(dropout),
                         nn.Linear(8, 2)).double()


def make_data(n: int = 16) -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    return TensorDataset(torch.randn(n, 4, generator=g, dtype=torch.float64),
                         torch.randn(n, 2, generator=g, dtype=torch.float64))


def mse_loss(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    x, y = batch
    out = model(x)
    return {"loss_mse": ((out - y) ** 2).mean(), "loss_l1": 0.1 * (out - y).abs().mean()}


def make_cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(iterations=6, global_batch_size=4, lr=1e-2, warmup_iterations=2, seed=7,
                checkpoint_period=2, log_period=1, output_dir=str(tmp_path / "out"))
    return TrainConfig(**{**base, **kw})


def test_config_round_trip(tmp_path):
    cfg = make_cfg(tmp_path, schedule="step", milestones=[3, 5], grad_clip=1.0, betas=[0.8, 0.9])
    assert cfg.betas == (0.8, 0.9) and cfg.milestones == (3, 5)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for name in ("cfg.json", "cfg.yaml"):
        cfg.save(tmp_path / name)
        assert TrainConfig.load(tmp_path / name) == cfg
    with pytest.raises(OvbenchError, match="unknown training config key"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_rate": 1.0})
    with pytest.raises(OvbenchError, match="lacks required"):
        TrainConfig.from_dict({"iterations": 1, "lr": 1.0})
    with pytest.raises(OvbenchError, match="schedule must be one of"):
        make_cfg(tmp_path, schedule="linear")


def test_lr_schedule_values(tmp_path):
    cfg = make_cfg(tmp_path, iterations=100, warmup_iterations=10, warmup_factor=0.1, lr=2.0)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(5, cfg) == pytest.approx((0.1 * 0.5 + 0.5) * (1 - 0.05) ** 0.9)
    assert lr_factor(10, cfg) == pytest.approx(0.9 ** 0.9)
    assert lr_factor(50, cfg) == pytest.approx(0.5 ** 0.9)
    cos = make_cfg(tmp_path, iterations=100, warmup_iterations=0, schedule="cosine")
    assert lr_factor(50, cos) == pytest.approx(0.5)
    step = make_cfg(tmp_path, iterations=100, warmup_iterations=0, schedule="step", milestones=(30, 60), gamma=0.1)
    assert [lr_factor(i, step) for i in (29, 30, 59, 60)] == pytest.approx([1, 0.1, 0.1, 0.01])
    # the scheduler applies the factor per iteration, to every param group
    opt = build_optimizer(make_model(), cfg)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(20):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen == [pytest.approx([2.0 * lr_factor(i, cfg)] * 2) for i in range(20)]


def test_no_weight_decay_on_norms_and_biases(tmp_path):
    model = make_model()
    decay, no_decay = build_optimizer(model, make_cfg(tmp_path, weight_decay=0.3)).param_groups
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert ids(decay) == {id(model[0].weight), id(model[4].weight)}
    assert ids(no_decay) == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[4].bias)}


def _grad_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clipping_bounds_the_norm(tmp_path, clip):
    model = make_model()
    big = lambda m, b: {"loss": 1e3 * mse_loss(m, b)["loss_mse"]}  # noqa: E731
    row = Trainer(model, big, make_data(), make_cfg(tmp_path, iterations=1, warmup_iterations=0, grad_clip=clip), progress=False).train()
    if clip is None:
        assert _grad_norm(model) > 1.0 and "grad_norm" not in row
    else:
        assert _grad_norm(model) <= clip * (1 + 1e-6)
        assert row["grad_norm"] > 1.0  # logged before clipping


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    first = ckpt.save_checkpoint({"w": torch.arange(3)}, tmp_path, 1)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"w": torch.arange(5)}, tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, ckpt.POINTER]
    assert torch.equal(ckpt.load_last_checkpoint(tmp_path)["w"], torch.arange(3))


def test_amp_only_on_cuda(tmp_path):
    dtypes = []

    def loss(model, batch):
        x, y = batch
        out = model(x)
        dtypes.append(out.dtype)
        return {"loss": ((out.float() - y) ** 2).mean()}

    cuda = torch.cuda.is_available()
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 2))
    cfg = make_cfg(tmp_path, amp=True, iterations=3, warmup_iterations=0)
    row = Trainer(model, loss, data, cfg, device=torch.device("cuda" if cuda else "cpu"), progress=False).train()
    assert dtypes == [torch.float16 if cuda else torch.float32] * 3 and math.isfinite(row["total_loss"])
    scaler = ckpt.load_last_checkpoint(cfg.output_dir)["scaler"]
    assert scaler["scale"] > 1 if cuda else scaler == {}


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("kind", ["dataset", "iterable"])
def test_resume_is_bit_identical(tmp_path, kind):
    dataset = make_data()
    data = dataset if kind == "dataset" else [dataset[i * 4:(i + 1) * 4] for i in range(3)]
    full = make_model(dropout=0.3)
    Trainer(full, mse_loss, data, make_cfg(tmp_path / "full"), progress=False).train()

    calls = []

    def crashing_loss(model, batch):  # dies inside the 5th iteration: 4 logged, checkpoint at 4
        calls.append(1)
        if len(calls) == 5:
            raise Interrupt
        return mse_loss(model, batch)

    cfg = make_cfg(tmp_path / "split", checkpoint_period=3)
    with pytest.raises(Interrupt):
        Trainer(make_model(dropout=0.3), crashing_loss, data, cfg, progress=False).train()
    resumed = make_model(seed=99, dropout=0.3)
    Trainer(resumed, mse_loss, data, cfg, progress=False).train(resume=True)

    expected, got = full.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    rows = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    full_rows = [json.loads(line) for line in (tmp_path / "full/out/metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]  # row 4 (after the checkpoint) was dropped
    assert [r["total_loss"] for r in rows] == [r["total_loss"] for r in full_rows]


def test_metrics_log_and_checkpoint_files(tmp_path):
    cfg = make_cfg(tmp_path, iterations=5, log_period=2, checkpoint_period=2, grad_clip=10.0)
    Trainer(make_model(), mse_loss, make_data(), cfg, progress=False).train()
    out = Path(cfg.output_dir)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2, 4, 5]
    for r in rows:
        assert set(r) == {"iteration", "lr", "loss_mse", "loss_l1", "total_loss", "grad_norm", "time"}
        assert r["lr"] == pytest.approx(cfg.lr * lr_factor(r["iteration"] - 1, cfg))
        assert r["total_loss"] == pytest.approx(r["loss_mse"] + r["loss_l1"])
        assert r["time"] > 0
    assert sorted(p.name for p in out.glob("checkpoint_*.pt")) == [
        "checkpoint_0000002.pt", "checkpoint_0000004.pt", "checkpoint_0000005.pt"]
    state = ckpt.load_last_checkpoint(out)
    assert state["iteration"] == 5 and TrainConfig.from_dict(state["config"]) == cfg


def _ddp_worker(rank: int, world_size: int, tmp: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    device = init_distributed(f"file://{tmp}/rendezvous")
    try:
        cfg = TrainConfig(iterations=3, global_batch_size=8, lr=0.05, warmup_iterations=1, seed=3,
                          grad_clip=0.5, output_dir=f"{tmp}/ddp", log_period=1)
        Trainer(make_model(seed=rank), mse_loss, make_data(), cfg, device=device, progress=False).train()
    finally:
        cleanup()


def test_ddp_matches_single_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    cfg = TrainConfig(iterations=3, global_batch_size=8, lr=0.05, warmup_iterations=1, seed=3,
                      grad_clip=0.5, output_dir=str(tmp_path / "single"), log_period=1)
    single = make_model(seed=0)
    initial = {k: v.clone() for k, v in single.state_dict().items()}
    Trainer(single, mse_loss, make_data(), cfg, progress=False).train()

    ddp = ckpt.load_last_checkpoint(tmp_path / "ddp")["model"]
    for k, v in single.state_dict().items():
        assert not torch.equal(v, initial[k]), k  # training moved every tensor
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-12)
    read = lambda d: [json.loads(s) for s in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    for a, b in zip(read("ddp"), read("single"), strict=True):
        assert a["total_loss"] == pytest.approx(b["total_loss"], rel=1e-12)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-12)
