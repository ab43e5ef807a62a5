"""Atomic run-directory checkpoints and the training state needed to resume exactly.

A checkpoint is the whole run directory (config.json, model.safetensors, tokenizer.json,
metrics.csv, loss.png, train_state/). It is written to ``.<name>.tmp`` beside it, then swapped in
with two renames, so the latest complete checkpoint is always either ``<name>`` or, during the
instant of the swap, ``.<name>.old`` (``recover`` puts it back).

train_state/: ``state.json`` (step, schedule length, elapsed time), ``optimizer.pt`` and one
``rng_rank<r>.pt`` per process (plain tensors: read back with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DLMError

STATE_DIR = "train_state"


def _siblings(target: Path) -> tuple[Path, Path]:
    return target.parent / f".{target.name}.tmp", target.parent / f".{target.name}.old"


def recover(target: str | Path) -> None:
    """Undo a swap interrupted between its two renames; drop a half-written temp dir."""
    target = Path(target)
    tmp, old = _siblings(target)
    if not target.exists() and old.exists():
        os.rename(old, target)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in [*sorted(root.rglob("*"), reverse=True), root]:
        _fsync(path)


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link into ``new`` whatever the user put in ``old`` that a checkpoint doesn't write
    (notes, exported traces): a checkpoint never deletes files it does not own."""
    for entry in old.iterdir():
        dest = new / entry.name
        if dest.exists() or entry.name == STATE_DIR:
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, dest)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def atomic_write_dir(target: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)``, flush it to disk, then replace ``target`` by it with renames."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _siblings(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if target.exists():
        _carry_over(target, tmp)
    _fsync_tree(tmp)
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    _fsync(target.parent)  # make the renames durable
    shutil.rmtree(old, ignore_errors=True)


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STATE_DIR / "state.json").is_file()


def rng_state() -> dict[str, torch.Tensor]:
    """The global RNG states (dropout draws from them; objective noise is seeded per step)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_train_state(path: Path, state: dict, optimizer: torch.optim.Optimizer,
                     rng_states: list[dict[str, torch.Tensor]]) -> None:
    d = path / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    torch.save(optimizer.state_dict(), d / "optimizer.pt")
    for rank, rng in enumerate(rng_states):
        torch.save(rng, d / f"rng_rank{rank}.pt")


def load_train_state(path: str | Path, rank: int) -> tuple[dict, dict, dict]:
    d = Path(path) / STATE_DIR
    try:
        state = json.loads((d / "state.json").read_text())
        optim = torch.load(d / "optimizer.pt", map_location="cpu", weights_only=True)
        rng_file = d / f"rng_rank{rank}.pt"
        if not rng_file.exists():
            raise DLMError(f"{d}: no RNG state for rank {rank}; resume with the same number "
                           "of processes as the run was started with")
        rng = torch.load(rng_file, map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError, RuntimeError) as e:
        raise DLMError(f"cannot read training state in {d}: {e}") from None
    return state, optim, rng
