"""The training loop: AdamW + LR schedule, grad clipping, AMP on CUDA, DDP, metrics log, checkpoints."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from ovbench.engine.batches import batch_stream
from ovbench.engine.checkpoint import load_last_checkpoint, save_checkpoint
from ovbench.engine.config import TrainConfig
from ovbench.engine.distributed import barrier, default_device, get_rank, get_world_size
from ovbench.engine.optim import build_optimizer, build_scheduler, lr_factor
from ovbench.engine.seeding import rng_state, seed_everything, set_rng_state
from ovbench.records.store import atomic_write_text

LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
METRICS_FILE = "metrics.jsonl"


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class Trainer:
    """Trains ``model`` for ``cfg.iterations`` optimizer steps.

    ``loss_fn(model, batch)`` returns named scalar losses; their sum is back-propagated and each
    is logged. Under DDP each loss should be a mean over the rank's samples, so that DDP's
    gradient averaging yields the mean over the global batch. ``data`` is a map-style Dataset
    (sampled from the seed and sharded by the engine, collated by ``collate_fn``) or an iterable
    of ready batches (cycled; see :func:`~ovbench.engine.batches.batch_stream`).

    When a process group exists (:func:`~ovbench.engine.distributed.init_distributed`) the model
    is wrapped in DistributedDataParallel; only rank 0 writes ``metrics.jsonl`` and checkpoints.
    Fresh runs seed every RNG with ``cfg.seed + rank`` — seed before building the model too, so
    that its initialisation is reproducible.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Dataset | Iterable[Any], cfg: TrainConfig, *,
                 collate_fn: Callable[[Sequence[Any]], Any] | None = None, device: torch.device | None = None,
                 progress: bool = True) -> None:
        self.cfg, self.loss_fn, self.data, self.collate_fn = cfg, loss_fn, data, collate_fn
        self.device = device or default_device()
        self.rank, self.world_size = get_rank(), get_world_size()
        if cfg.global_batch_size % self.world_size:
            raise ValueError(f"global batch {cfg.global_batch_size} is not divisible by world size {self.world_size}")
        self.module = model.to(self.device)
        self.model: nn.Module = self.module
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=ids)
        self.optimizer = build_optimizer(self.module, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.output_dir = Path(cfg.output_dir)
        self.progress = progress

    def _state(self, iteration: int) -> dict[str, Any]:
        rngs = rng_state()
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, rngs)
        else:
            gathered = [rngs]
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "iteration": iteration, "rng": gathered, "config": self.cfg.to_dict()}

    def _save(self, iteration: int) -> None:
        state = self._state(iteration)  # a collective: every rank takes part
        if self.rank == 0:
            save_checkpoint(state, self.output_dir, iteration)

    def _resume(self) -> int:
        """Load the last checkpoint, if any, and return the number of iterations it completed."""
        state = load_last_checkpoint(self.output_dir)
        if state is None:
            return 0
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if len(rngs) == self.world_size:
            set_rng_state(rngs[self.rank])
        else:  # world size changed: exactness is lost anyway, keep ranks decorrelated
            seed_everything(self.cfg.seed + self.rank + state["iteration"])
        if self.rank == 0:  # drop log rows written after the checkpoint by an interrupted run
            metrics = self.output_dir / METRICS_FILE
            if metrics.is_file():
                rows = [line for line in metrics.read_text().splitlines()
                        if json.loads(line)["iteration"] <= state["iteration"]]
                metrics.write_text("".join(row + "\n" for row in rows))
        return state["iteration"]

    def _step(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """One optimizer step; returns the detached losses and the pre-clipping grad norm (if clipping)."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            losses = dict(self.loss_fn(self.model, batch))
        # half-precision losses (autocast) are summed in float32; float64 ones stay float64
        total = sum(v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for v in losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        grad_norm = None
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        losses = {k: v.detach().to(total.dtype) for k, v in losses.items()}
        losses["total_loss"] = total.detach()
        return losses, grad_norm

    def _metrics(self, iteration: int, losses: dict[str, torch.Tensor], grad_norm: torch.Tensor | None,
                 seconds_per_iter: float, lr: float) -> dict[str, float]:
        """Losses averaged over ranks (a collective) plus lr, grad norm and time, as one log row."""
        names = sorted(losses)
        values = torch.stack([losses[k] for k in names])
        if self.world_size > 1:
            dist.all_reduce(values)
            values /= self.world_size
        row: dict[str, float] = {"iteration": iteration, "lr": lr}
        row.update(zip(names, values.tolist()))
        if grad_norm is not None:
            row["grad_norm"] = float(grad_norm)
        row["time"] = seconds_per_iter
        if not torch.isfinite(values).all():
            raise FloatingPointError(f"non-finite loss at iteration {iteration}: {row}")
        return row

    def train(self, resume: bool = False) -> dict[str, float]:
        """Run from iteration 0 (or from the last checkpoint when ``resume``) to ``cfg.iterations``.

        Logs a row to ``<output_dir>/metrics.jsonl`` every ``cfg.log_period`` iterations and at the
        end (``iteration`` counts completed steps, ``lr`` is the base rate the last step used, ``time``
        is seconds per iteration averaged since the previous row); checkpoints every
        ``cfg.checkpoint_period`` iterations and at the end. Returns the last log row ({} when
        nothing was left to run).
        """
        cfg = self.cfg
        start = self._resume() if resume else 0
        if start == 0:
            seed_everything(cfg.seed + self.rank)
        if self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        batches = batch_stream(self.data, global_batch=cfg.global_batch_size, seed=cfg.seed, start=start,
                               stop=cfg.iterations, rank=self.rank, world_size=self.world_size,
                               collate_fn=self.collate_fn, num_workers=cfg.num_workers)
        self.model.train()
        row: dict[str, float] = {}
        tick, window = time.perf_counter(), 0
        bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="train",
                   disable=not self.progress or self.rank != 0)
        for it in bar:
            lr = cfg.lr * lr_factor(it, cfg)
            losses, grad_norm = self._step(_to_device(next(batches), self.device))
            done, window = it + 1, window + 1
            if done % cfg.log_period == 0 or done == cfg.iterations:
                row = self._metrics(done, losses, grad_norm, (time.perf_counter() - tick) / window, lr)
                if self.rank == 0:
                    with open(self.output_dir / METRICS_FILE, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    bar.set_postfix(loss=f"{row['total_loss']:.4g}", lr=f"{lr:.3g}")
                tick, window = time.perf_counter(), 0
            if done % cfg.checkpoint_period == 0 or done == cfg.iterations:
                self._save(done)
        bar.close()
        barrier()
        return row


def train_run(run: Any, module: nn.Module, loss_fn: LossFn, dataset: Dataset, output_dir: Path,
              collate_fn: Callable[[Sequence[Any]], Any], resume: bool, progress: bool) -> dict[str, Any] | None:
    """Train ``module`` under ``run.train`` (a run config with ``name``, ``data``, ``train``, ``method`` and
    ``to_dict()``); on rank 0 write ``output_dir/config.yaml`` and return the model file's training
    summary, on other ranks None."""
    trainer = Trainer(module, loss_fn, dataset, run.train, collate_fn=collate_fn, progress=progress)
    last = trainer.train(resume=resume)
    if trainer.rank != 0:
        return None
    atomic_write_text(output_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))
    return {"name": run.name, "iterations": run.train.iterations, "training_images": len(dataset),
            "protocol": run.data.protocol, "split": run.data.split, "classes": run.data.classes,
            "method": dict(run.method) if run.method else None, "last_log": last}
