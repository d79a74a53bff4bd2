"""Model-agnostic training engine: configs, optimizer/schedule, checkpoints, seeding, DDP, the loop."""
from ovbench.engine.config import TrainConfig
from ovbench.engine.distributed import cleanup, init_distributed, is_main_process
from ovbench.engine.optim import build_optimizer, build_scheduler, lr_factor
from ovbench.engine.seeding import seed_everything
from ovbench.engine.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "build_optimizer", "build_scheduler", "cleanup", "init_distributed",
           "is_main_process", "lr_factor", "seed_everything"]
