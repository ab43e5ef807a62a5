"""``train(cfg)``: the one entry point of ``dlm train`` and ``dlm sft``; it picks the task
(pre-training on a corpus, or fine-tuning on prompt/answer rows) and runs the one training
loop on it (docs/architecture.md, "Training")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from ..diffusion.likelihood import EvalResult
from ..models.formats import CONFIG_FILE
from ..sft.trainer import SFTTask
from .config import TrainConfig
from .trainer import PretrainTask, Trainer


def train(cfg: TrainConfig, callbacks: list[Callable] | None = None,
          start_from: str | Path | None = None) -> EvalResult:
    """Train a model per ``cfg`` (see ``TrainConfig``); returns the final held-out evaluation.
    ``start_from``: continue another run's checkpoint under this config (see ``Trainer``)."""
    task = SFTTask() if cfg.sft_data is not None or _resumes_sft(cfg) else PretrainTask()
    trainer = Trainer(cfg, callbacks, start_from, task)
    try:
        result = trainer.run()
        if trainer.dist.world_size > 1:
            # every rank reaches the end before any tears the group down (a rank that leaves
            # while rank 0 still writes the checkpoint can abort gloo's worker threads)
            dist.barrier()
        return result
    finally:
        if trainer.dist.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _resumes_sft(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` resumes a fine-tuning run (whose saved config names its SFT data)."""
    path = Path(cfg.run_dir) / CONFIG_FILE
    if not cfg.resume or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("train", {}).get("sft_data") is not None
    except json.JSONDecodeError:
        return False

