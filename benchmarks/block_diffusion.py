"""AR vs BD3-LM (block sizes 4, 8, 16) vs MDLM at the same backbone and training budget, then
sampling speed of each kind's natural decoder. Run by hand (not in CI):

    .venv/bin/python benchmarks/block_diffusion.py --out runs/bd-bench --steps 1500 --threads 2

1. Trains (or reuses, resuming) one tiny model per arm on Shakespeare with the same steps,
   batch and context, so every arm sees the same tokens; BD3-LM's step costs ~2x (it runs
   [x_t ; x_0]), which the table shows as training time.
2. Scores all arms on the same held-out bytes: AR exactly, MDLM and BD3-LM as -ELBO bounds
   with ``--t-samples`` mask draws per chunk (± Monte-Carlo standard error).
3. Times generation of 512 and 1024 new tokens after a 32-token prompt, one token committed per
   step (NFE = new tokens) so the kinds differ only in what a step costs: AR with its KV cache,
   BD3-LM (block 8) with its exact block cache, MDLM re-reading the whole canvas. Speed does not
   depend on the weights, and the trained context (128) is shorter than 1024, so this part uses
   randomly initialised networks of the same shape with a long enough context.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import dlm
from dlm.models.presets import preset_config
from dlm.models.transformer import Attention, Transformer
from dlm.sample.config import SampleConfig
from dlm.sample.driver import generate
from dlm.train import TrainConfig, train
from dlm.train.checkpoint import has_checkpoint


def arms(block_sizes: list[int]) -> list[tuple[str, dict]]:
    return ([("ar", {"kind": "ar"})]
            + [(f"bd3lm-{b}", {"kind": "bd3lm", "block_size": b}) for b in block_sizes]
            + [("mdlm", {"kind": "mdlm"})])


def train_arm(out: Path, name: str, extra: dict, args) -> float:
    run = out / name
    t0 = time.perf_counter()
    cfg = TrainConfig(preset="tiny", out=str(run), seq_len=args.seq_len,
                      batch_size=args.batch_size, max_steps=args.steps,
                      eval_every=max(args.steps // 4, 1), ckpt_every=max(args.steps // 4, 1),
                      eval_tokens=4096, eval_t_samples=2,  # light tracking; the real eval is below
                      threads=args.threads, resume=has_checkpoint(run), **extra)
    train(cfg)
    return time.perf_counter() - t0


def speed(kind: str, gen: int, prompt_len: int, block: int, threads: int) -> dict:
    torch.manual_seed(0)
    net = Transformer(preset_config("tiny", 259, max_seq_len=prompt_len + gen + block)).eval()
    if kind == "bd3lm":
        net.default_attention = Attention.block_causal(block)
    prompt = [list(range(65, 65 + prompt_len))]
    cfg = SampleConfig(gen_length=gen, steps=gen, stop_at_eos=False)
    ids = dict(mask_id=256, eos_id=257, pad_id=258)
    generate(net, prompt, cfg.replace(gen_length=block * 2, steps=block * 2), kind=kind,
             record_trace=False, **ids)  # warm-up
    t0 = time.perf_counter()
    out = generate(net, prompt, cfg, kind=kind, record_trace=False, **ids)
    seconds = time.perf_counter() - t0
    return {"kind": kind, "new_tokens": gen, "nfe": out.nfe, "seconds": seconds,
            "tokens_per_s": gen / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bd-bench")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--block-sizes", default="4,8,16")
    ap.add_argument("--t-samples", type=int, default=16)
    ap.add_argument("--eval-tokens", type=int, default=32768)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for name, extra in arms([int(b) for b in args.block_sizes.split(",")]):
        seconds = train_arm(out, name, extra, args)
        r = dlm.load(out / name, device="cpu").evaluate(eval_tokens=args.eval_tokens,
                                                        t_samples=args.t_samples)
        rows.append({"arm": name, **r.to_dict(), "train_seconds": seconds})
        print(f"{name}: {r.describe()}  (train {seconds:.0f} s)", flush=True)
    print("\n| arm | held-out bits/byte | ± MC s.e. | wall time incl. tracking evals (s) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        bound = "≤ " if r["upper_bound"] else ""
        se = f"{r['se_bits_per_byte']:.3f}" if r["upper_bound"] else "exact"
        print(f"| {r['arm']} | {bound}{r['bits_per_byte']:.3f} | {se} | "
              f"{r['train_seconds']:.0f} |")
    speeds = []
    if not args.skip_speed:
        print("\n| decoder | new tokens | NFE | tokens/s |\n|---|---:|---:|---:|")
        for gen in (512, 1024):
            for kind, label in (("ar", "AR, KV cache"), ("bd3lm", "BD3-LM block 8, exact cache"),
                                ("mdlm", "MDLM, full canvas")):
                s = speed(kind, gen, 32, 8, args.threads)
                speeds.append({**s, "decoder": label})
                print(f"| {label} | {gen} | {s['nfe']} | {s['tokens_per_s']:.1f} |", flush=True)
    (out / "results.json").write_text(json.dumps({"eval": rows, "speed": speeds}, indent=2))


if __name__ == "__main__":
    main()
