"""Annealed evaluation at every epoch mark from one training run (docs/experiments.md).

Reading "epoch k" off a long run whose learning rate is still high handicaps whichever model
peaks early. Instead every mark gets its own annealed run, cheaply: with the ``wsd`` schedule
(warm-up, constant, linear decay over the last ``decay_frac``), a run planned for s steps is
identical to the constant-rate run up to step s - decay(s). So one stable run to the last mark
saves a checkpoint at each of those branch points, and a short branch resumed from each decays
to its mark. A branch is bit-for-bit the run that was planned for that length (tested).

    results = train_annealed(TrainConfig(kind=..., ...), mark_steps=[50, 100, 200, 400])
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..diffusion.likelihood import EvalResult
from ..train import TrainConfig, train
from ..train.checkpoint import atomic_write_dir, has_checkpoint, recover


def checkpoint_step(run_dir: Path) -> int:
    """The optimizer step a run's checkpoint was written at."""
    import json

    return int(json.loads((run_dir / "train_state" / "state.json").read_text())["step"])


def branch_point(mark: int, decay_frac: float) -> int:
    """The step where a wsd run planned for ``mark`` steps starts decaying."""
    return mark - max(1, round(decay_frac * mark))


def branch_dir(root: Path, mark: int) -> Path:
    return root.parent / f"{root.name}@{mark}"


def start_dir(root: Path, mark: int) -> Path:
    """Where the stable run's checkpoint at a branch point is kept."""
    return root.parent / f"{root.name}@{mark}.start"


def train_annealed(cfg: TrainConfig, mark_steps: list[int],
                   on_mark: Callable[[int, EvalResult, Path], None] | None = None,
                   callbacks: list[Callable] | None = None) -> list[tuple[int, EvalResult]]:
    """Held-out results of runs annealed to end at each of ``mark_steps``: the last is the
    stable run itself (planned for the last mark), the others branch from it. ``callbacks``
    are the trainer's per-step callbacks, for the stable run and every branch."""
    callbacks = list(callbacks or [])
    marks = sorted(set(mark_steps))
    # resume=True: an interrupted call continues each run from its last checkpoint
    cfg = replace(cfg, lr_schedule="wsd", max_steps=marks[-1], resume=True)
    root = Path(cfg.run_dir)
    starts: dict[int, list[int]] = {}  # branch point -> the marks branching there
    for m in marks[:-1]:
        starts.setdefault(branch_point(m, cfg.decay_frac), []).append(m)

    def keep_start(step: int) -> None:
        """Copy the stable run's checkpoint (at ``step``) for the branches starting there;
        atomic, so a kill leaves either no copy or a whole one."""
        for mark in starts.get(step, []):
            if not has_checkpoint(start_dir(root, mark)):
                atomic_write_dir(start_dir(root, mark),
                                 lambda tmp: shutil.copytree(root, tmp, dirs_exist_ok=True))

    def save_branch_start(trainer, step: int, row) -> None:
        if step in starts:
            trainer.save_checkpoint()
            keep_start(step)

    # killed between saving the stable run at a branch point and copying it: copy it now
    recover(root)
    if has_checkpoint(root):
        keep_start(checkpoint_step(root))
    final = train(cfg, [save_branch_start, *callbacks])
    results = []
    for start, mark in sorted((s, m) for s, ms in starts.items() for m in ms):
        out = branch_dir(root, mark)
        if has_checkpoint(out):  # an interrupted branch continues
            r = train(replace(cfg, out=str(out), max_steps=mark), callbacks)
        else:  # a branch from step 0 is simply a fresh run
            r = train(replace(cfg, out=str(out), max_steps=mark), callbacks,
                      start_from=start_dir(root, mark) if start > 0 else None)
        results.append((mark, r))
        if on_mark:
            on_mark(mark, r, out)
    results.append((marks[-1], final))
    if on_mark:
        on_mark(marks[-1], final, root)
    return results
