"""Training throughput of the tiny and small presets next to this machine's matmul FLOP/s.

Run by hand (not in CI):   .venv/bin/python benchmarks/train_throughput.py [--steps 20]

For each preset and kind it times full optimizer steps (forward + backward + AdamW) on random
byte tokens and reports tokens/s and the achieved FLOP/s, counting the matmul FLOPs of the
network analytically (training = 3 x forward; forward per token = 2 x matmul params + 4 x layers x
context x d_model for attention). The ratio to the FLOP/s of a large fp32 matmul measured in the
same run, with the same threads, says how much of the machine the trainer uses.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from dlm import kinds
from dlm.models.presets import preset_config
from dlm.models.transformer import Transformer
from dlm.train import TrainConfig

VOCAB = 259  # byte tokenizer


def flops_per_token(net: Transformer, seq_len: int) -> float:
    cfg = net.config
    matmul_params = net.num_params(non_embedding=True) + cfg.vocab_size * cfg.d_model  # + head
    forward = 2 * matmul_params + 4 * cfg.n_layers * seq_len * cfg.d_model
    return 3 * forward


def matmul_flops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def train_speed(preset: str, kind: str, batch: int, steps: int) -> tuple[float, float, int]:
    torch.manual_seed(0)
    cfg = preset_config(preset, VOCAB)
    net = Transformer(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    spec, train_cfg = kinds.get(kind), TrainConfig(kind=kind).validate()
    objective, attn = spec.objective(train_cfg, 256), spec.attention(train_cfg.block_size)
    x = torch.randint(0, 256, (batch, cfg.max_seq_len))
    g = torch.Generator().manual_seed(0)
    for i in range(steps + 3):
        if i == 3:
            t = time.perf_counter()
        out = objective(net, x, generator=g, attn=attn)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    dt = (time.perf_counter() - t) / steps
    return batch * cfg.max_seq_len / dt, flops_per_token(net, cfg.max_seq_len), net.num_params()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--presets", default="tiny,small")
    p.add_argument("--kinds", default="mdlm,ar")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} on {platform.processor() or platform.machine()}, "
          f"{args.threads} threads")
    peak = matmul_flops()
    print(f"fp32 matmul 2048x2048: {peak / 1e9:.1f} GFLOP/s")
    print(f"{'preset':7} {'kind':5} {'params':>8} {'ctx':>4} {'batch':>5} {'tokens/s':>9} "
          f"{'GFLOP/s':>8} {'of matmul':>9}")
    for preset in args.presets.split(","):
        batch = 32 if preset == "tiny" else 8
        for kind in args.kinds.split(","):
            tps, fpt, n = train_speed(preset, kind, batch, args.steps)
            achieved = tps * fpt
            ctx = preset_config(preset, VOCAB).max_seq_len
            print(f"{preset:7} {kind:5} {n / 1e6:7.2f}M {ctx:4} {batch:5} {tps:9.0f} "
                  f"{achieved / 1e9:8.1f} {achieved / peak:9.2f}")


if __name__ == "__main__":
    main()
