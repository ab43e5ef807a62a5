"""DDP on CPU: torchrun launches 2 gloo processes; they train in lock-step and match 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import train_tiny

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_two_gloo_processes_train_in_lockstep(tmp_path, small_corpus, kind):
    flags = dict(kind=kind, d_model=32, n_layers=2, n_heads=4, seq_len=64, batch_size=8,
                 max_steps=12, eval_every=6, ckpt_every=6, eval_tokens=512, eval_t_samples=2,
                 warmup_steps=3, threads=1, grad_accum=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dlm", "train", "--data", str(small_corpus), "--out", str(tmp_path / "ddp"),
           "--no-progress", "--device", "cpu"]
    for k, v in flags.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    state = json.loads((tmp_path / "ddp" / "train_state" / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 12
    fps = state["rank_fingerprints"]
    assert len(fps) == 2 and fps[0] == fps[1]  # bit-identical weights on both ranks
    assert (tmp_path / "ddp" / "train_state" / "rng_rank1.pt").exists()

    # One process with the same global batch sees the same data and the same masks.
    train_tiny(tmp_path / "single", small_corpus, **flags)
    a = load_file(tmp_path / "ddp" / "model.safetensors")
    b = load_file(tmp_path / "single" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=2e-4, atol=2e-5)
