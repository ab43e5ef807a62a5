"""The per-step overhead of the step machine (``sample.driver.Decoder``): the cost every
streamed step pays on top of the network call.

Run by hand (not in CI):

    .venv/bin/python benchmarks/step_machine.py --threads 2

On a randomly initialised tiny network (the ``tiny`` preset's shape, byte vocabulary) it decodes
``--rows`` prompts for ``--gen-length`` tokens in ``--steps`` steps, and times, side by side in
one run: a whole ``Decoder.step`` (network call, scoring, commits, events, trace), and the
time of it spent inside the network's forward (what any sampler must pay). The difference per
step (medians) is what the sampler does outside the network (filtering, scoring, choosing,
writing: work any loop does, plus the machine's bookkeeping), in milliseconds and as a share of
the step; the last column is what building the per-row events adds (``step()`` against
``step(events=False)``, which is what ``denoise`` runs). Modes: no cache, Fast-dLLM's dual
cache, and AR's exact cache.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from dlm.data.tokenizer import byte_tokenizer
from dlm.models.presets import preset_config
from dlm.models.transformer import Transformer
from dlm.sample.config import SampleConfig
from dlm.sample.driver import Decoder


def measure(net, kind: str, cfg: SampleConfig, rows: list[list[int]], plen: int, ids: dict,
            repeats: int, events: bool = True) -> tuple[float, float, int]:
    """(ms per Decoder.step, ms of it inside the network's forward, steps per decode)."""
    inside = [0.0]
    real = net.forward

    def timed(*a, **kw):
        t0 = time.perf_counter()
        out = real(*a, **kw)
        inside[0] += time.perf_counter() - t0
        return out

    net.forward = timed
    steps, calls = [], []
    try:
        for _ in range(repeats):
            d = Decoder(net, kind=kind, **ids)
            d.add(rows, [plen] * len(rows), cfg)
            while not d.done:
                inside[0] = 0.0
                t0 = time.perf_counter()
                d.step(events=events)
                steps.append(time.perf_counter() - t0)
                calls.append(inside[0])
    finally:
        del net.forward
    return (1e3 * statistics.median(steps), 1e3 * statistics.median(calls),
            len(steps) // repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--gen-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prompt-length", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = byte_tokenizer()
    torch.manual_seed(0)
    net = Transformer(preset_config("tiny", tok.vocab_size, max_seq_len=512)).eval()
    ids = dict(mask_id=tok.mask_id, eos_id=tok.eos_id, pad_id=tok.pad_id)
    prompt = tok.encode("ROMEO: " * 8)[:args.prompt_length]
    rows = [prompt + [tok.mask_id] * args.gen_length for _ in range(args.rows)]
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch "
          f"{torch.__version__}; tiny preset ({net.num_params():,} params), {args.rows} row(s), "
          f"prompt {len(prompt)}, gen {args.gen_length}")
    print("| mode | steps | ms / step | ms in the network | outside it, ms / step | share | "
          "of which events, ms |")
    print("|---|---|---|---|---|---|---|")
    cases = [("mdlm, no cache", "mdlm", SampleConfig(steps=args.steps, stop_at_eos=False)),
             ("mdlm, dual cache, blocks of 16", "mdlm",
              SampleConfig(steps=args.steps, block_length=16, cache="dual", stop_at_eos=False)),
             ("ar, exact cache", "ar", SampleConfig(stop_at_eos=False))]
    for name, kind, cfg in cases:
        canvases = [[tok.eos_id] + r for r in rows] if kind == "ar" else rows
        plen = len(prompt) + (kind == "ar")
        step, call, n = measure(net, kind, cfg, canvases, plen, ids, args.repeats)
        quiet, _, _ = measure(net, kind, cfg, canvases, plen, ids, args.repeats, events=False)
        print(f"| {name} | {n} | {step:.2f} | {call:.2f} | {step - call:.2f} | "
              f"{(step - call) / step:.0%} | {step - quiet:.2f} |")


if __name__ == "__main__":
    main()
