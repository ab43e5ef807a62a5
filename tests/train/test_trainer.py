"""Trainer: learning happens, exact resume after a crash, atomic checkpoints, time budgets."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlm.errors import DLMError
from dlm.train import checkpoint as ckpt
from dlm.train.config import TrainConfig
from dlm.train.trainer import lr_at
from tests.conftest import train_tiny

LOSS_COLUMNS = ("step", "tokens", "epoch", "lr", "train_loss", "val_nats_per_token",
                "val_bits_per_byte", "val_se_bits_per_byte")


class Crash(Exception):
    pass


def rows(path: Path) -> list[dict]:
    with (path / "metrics.csv").open() as f:
        return [{k: r[k] for k in LOSS_COLUMNS} for r in csv.DictReader(f)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_training_reduces_held_out_loss(trained):
    data = rows(trained["mdlm"])
    vals = [float(r["val_bits_per_byte"]) for r in data if r["val_bits_per_byte"]]
    assert len(vals) == 3  # step 0, 15, 30
    assert vals[-1] < vals[0] - 1.0  # from ~8 bits/byte (uniform over 259) well down
    ar = [float(r["val_bits_per_byte"]) for r in rows(trained["ar"]) if r["val_bits_per_byte"]]
    assert ar[-1] < ar[0] - 1.0
    assert (trained["mdlm"] / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize("kind,extra", [("mdlm", {}), ("ar", {}),
                                        ("ar", {"ar_token_noise": 0.2})])
def test_resume_after_a_crash_is_exact(tmp_path, small_corpus, kind, extra):
    common = dict(kind=kind, max_steps=20, ckpt_every=5, eval_every=10, log_every=5,
                  dropout=0.1, **extra)
    train_tiny(tmp_path / "straight", small_corpus, **common)

    def crash_at_12(trainer, step, row):
        if step == 12:
            raise Crash()

    with pytest.raises(Crash):
        train_tiny(tmp_path / "crashed", small_corpus, callbacks=[crash_at_12], **common)
    assert ckpt.has_checkpoint(tmp_path / "crashed")
    train_tiny(tmp_path / "crashed", small_corpus, resume=True, **common)

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "crashed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert rows(tmp_path / "straight") == rows(tmp_path / "crashed")


def test_existing_run_needs_resume_and_resume_of_nothing_starts_fresh(tmp_path, small_corpus):
    train_tiny(tmp_path / "r", small_corpus, max_steps=5, eval_every=5)
    with pytest.raises(DLMError, match="--resume"):
        train_tiny(tmp_path / "r", small_corpus, max_steps=5)
    train_tiny(tmp_path / "fresh", small_corpus, max_steps=5, eval_every=5, resume=True)
    assert ckpt.has_checkpoint(tmp_path / "fresh")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(DLMError, match="not a dlm run"):
        train_tiny(tmp_path / "junk", small_corpus, max_steps=5)


def test_grad_accumulation_matches_one_big_batch(tmp_path, small_corpus):
    train_tiny(tmp_path / "one", small_corpus, max_steps=6, eval_every=100)
    train_tiny(tmp_path / "acc", small_corpus, max_steps=6, eval_every=100, grad_accum=4)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "acc")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=2e-4, atol=2e-5)


def test_checkpoints_keep_the_users_files(tmp_path, small_corpus):
    train_tiny(tmp_path / "r", small_corpus, max_steps=5, eval_every=5)
    (tmp_path / "r" / "notes.txt").write_text("mine")
    (tmp_path / "r" / "samples").mkdir()
    (tmp_path / "r" / "samples" / "a.json").write_text("{}")
    train_tiny(tmp_path / "r", small_corpus, max_steps=5, eval_every=5, resume=True)
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "r" / "samples" / "a.json").exists()


def test_atomic_swap_recovers_from_a_crash_between_renames(tmp_path):
    target = tmp_path / "run"
    ckpt.atomic_write_dir(target, lambda d: (d / "v").write_text("1"))
    ckpt.atomic_write_dir(target, lambda d: (d / "v").write_text("2"))
    assert (target / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # simulate: first rename done, second not; plus a half-written temp dir
    (tmp_path / ".run.old").mkdir()
    shutil.move(target / "v", tmp_path / ".run.old" / "v")
    target.rmdir()
    (tmp_path / ".run.tmp").mkdir()
    ckpt.recover(target)
    assert (target / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_time_budget_sizes_the_schedule(tmp_path, small_corpus):
    train_tiny(tmp_path / "t", small_corpus, max_steps=None, max_minutes=0.1, eval_every=1000,
               ckpt_every=1000)
    import json

    state = json.loads((tmp_path / "t" / "train_state" / "state.json").read_text())
    assert state["total_steps"] > 60 and state["step"] == state["total_steps"]
    assert state["elapsed_s"] < 0.1 * 60 * 1.5


def test_epochs_and_unique_tokens(tmp_path, small_corpus):
    train_tiny(tmp_path / "e", small_corpus, max_steps=None, unique_tokens=64 * 16, epochs=3,
               eval_every=100)
    import json

    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert cfg["data"]["unique_tokens"] == 64 * 16
    assert cfg["step"] == 6 and cfg["data"]["epochs"] == 3.0  # 16 seqs / batch 8 * 3 epochs


def test_lr_schedule_shape():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg, 100) == pytest.approx(0.1)
    assert lr_at(9, cfg, 100) == pytest.approx(1.0)
    assert lr_at(100, cfg, 100) == pytest.approx(0.1)
    assert lr_at(55, cfg, 100) == pytest.approx(0.55)
    assert lr_at(5000, cfg, None) == 1.0  # before the time budget fixed the length
    timed = TrainConfig(lr=1.0, warmup_steps=100, max_minutes=1)
    assert lr_at(59, timed, None) == pytest.approx(lr_at(59, timed, 200))  # no jump once sized


def test_bad_config_values():
    for bad in (dict(batch_size=0), dict(lr=-1.0), dict(batch_size=10, grad_accum=3),
                dict(dropout=1.5), dict(max_minutes=0), dict(beta2=1.5),
                dict(weight_decay=-1.0), dict(tokenizer="bpe", vocab_size=100),
                dict(kind="ar", ar_token_noise=1.0), dict(kind="mdlm", ar_token_noise=0.1)):
        with pytest.raises(DLMError):
            TrainConfig(**bad).validate()
