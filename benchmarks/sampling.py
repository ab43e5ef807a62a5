"""Decoding speed and quality: vanilla LLaDA loop vs Fast-dLLM threshold decoding (no cache,
prefix cache, dual cache) vs the AR twin with its KV cache, on the same prompts.

Run by hand (not in CI), with an MDLM checkpoint and its AR twin whose context fits the prompt
plus ``--gen-length`` tokens:

    .venv/bin/python benchmarks/sampling.py --mdlm runs/bench-mdlm --ar runs/bench-ar \\
        --gen-length 256 --block-length 32 --prompts 8 --threads 2

For each method it decodes the same held-out prompts one at a time (batch 1, the latency
setting of the Fast-dLLM paper) and reports generated tokens per second (wall clock), network
calls (NFE) per sample, the generative perplexity of the text under the AR twin (tokens up to
the first EOS, scored given the prompt) and the mean unigram entropy of each sample in bits
(low = repetitive). Ratios are against the vanilla loop measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections import Counter

import torch

import dlm
from dlm.data.corpora import load_corpus
from dlm.devices import autocast
from dlm.diffusion.likelihood import sequence_logprob
from dlm.sample.driver import generate, left_pad


def held_out_prompts(model, n: int, length: int) -> list[list[int]]:
    """``n`` prompts of ``length`` tokens from the held-out split, each starting at a line."""
    data = model.config.get("train", {}).get("data", "shakespeare")
    text = "\n".join(load_corpus(data).validation)
    prompts, pos = [], 0
    step = max(1, len(text) // (n + 1))
    while len(prompts) < n and pos < len(text):
        start = text.find("\n", pos) + 1
        ids = model.tokenizer.encode(text[start:start + 4 * length])[:length]
        if len(ids) == length:
            prompts.append(ids)
        pos = start + step
    return prompts


def gen_perplexity(ar, prompts: list[list[int]], outputs: list[list[int]]) -> float:
    """exp(mean NLL per token) of each output (cut at EOS) given its prompt, under the AR twin."""
    rows, targets = [], []
    for p, out in zip(prompts, outputs):
        if ar.eos_id in out:
            out = out[:out.index(ar.eos_id)]
        out = [t for t in out if t not in (ar.mask_id, ar.pad_id)]
        rows.append([ar.eos_id, *p, *out])
        targets.append(len(out))
    ids, valid = left_pad(rows, ar.pad_id, ar.device)
    target = torch.zeros_like(valid)
    for r, n in enumerate(targets):
        if n:
            target[r, ids.shape[1] - n:] = True
    lp = sequence_logprob(ar.network, "ar", ids, target, mask_id=ar.mask_id, valid=valid,
                          shift=1)
    return math.exp(-lp.sum().item() / max(1, sum(targets)))


def unigram_entropy(tokens: list[int]) -> float:
    counts = Counter(tokens)
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def run_method(model, prompts, fields: dict) -> dict:
    outputs, nfe, tokens = [], 0, 0
    model.generate([model.tokenizer.decode(prompts[0])], **fields)  # warm-up
    t0 = time.perf_counter()
    for p in prompts:
        with autocast(model.device):
            gen = generate(
                model.network, [p], model.sample_config(**fields), kind=model.kind,
                mask_id=model.mask_id, eos_id=model.eos_id, pad_id=model.pad_id,
                record_trace=False)
        outputs.append(gen.tokens[0])
        nfe += gen.nfe
        tokens += len(gen.tokens[0])
    seconds = time.perf_counter() - t0
    return {"outputs": outputs, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "nfe": nfe / len(prompts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mdlm", required=True, help="masked diffusion checkpoint")
    ap.add_argument("--ar", required=True, help="its AR twin (judge + baseline)")
    ap.add_argument("--gen-length", type=int, default=256)
    ap.add_argument("--block-length", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt-length", type=int, default=32)
    ap.add_argument("--thresholds", default="0.9,0.7,0.5,0.3",
                    help="comma-separated thresholds: the first with every cache mode, the "
                    "others with the dual cache")
    ap.add_argument("--factors", default="1,2", help="Fast-dLLM factor rule, dual cache")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    mdlm, ar = dlm.load(args.mdlm, device=args.device), dlm.load(args.ar, device=args.device)
    prompts = held_out_prompts(mdlm, args.prompts, args.prompt_length)
    base = dict(gen_length=args.gen_length, block_length=args.block_length,
                temperature=args.temperature, stop_at_eos=False)
    methods = [("vanilla (steps = gen_length)", mdlm, dict(base, steps=args.gen_length))]
    for i, tau in enumerate(float(x) for x in args.thresholds.split(",") if x):
        for cache in ("none", "prefix", "dual") if i == 0 else ("dual",):
            methods.append((f"threshold {tau}, cache {cache}", mdlm,
                            dict(base, threshold=tau, cache=cache)))
    for f in (float(x) for x in args.factors.split(",") if x):
        methods.append((f"factor {f:g}, cache dual", mdlm, dict(base, factor=f, cache="dual")))
    methods.append(("AR twin, KV cache", ar, dict(gen_length=args.gen_length,
                                                  temperature=args.temperature,
                                                  stop_at_eos=False)))

    where = torch.cuda.get_device_name() if mdlm.device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {args.threads} threads"
    print(f"# sampling benchmark · {where} · torch {torch.__version__}")
    print(f"# {len(prompts)} held-out prompts of {args.prompt_length} tokens, "
          f"{args.gen_length} new tokens each, batch 1, temperature {args.temperature}\n")
    print("| method | tokens/s | × vanilla | NFE / sample | NFE ÷ vanilla | gen. ppl (AR) "
          "| unigram entropy (bits) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows, vanilla = [], None
    for name, model, fields in methods:
        r = run_method(model, prompts, fields)
        ppl = gen_perplexity(ar, prompts, r["outputs"])
        ent = sum(unigram_entropy(o) for o in r["outputs"]) / len(prompts)
        vanilla = vanilla or r
        row = {"method": name, "tokens_per_s": r["tokens_per_s"], "nfe": r["nfe"],
               "speedup": r["tokens_per_s"] / vanilla["tokens_per_s"],
               "nfe_reduction": vanilla["nfe"] / r["nfe"], "gen_ppl": ppl, "entropy": ent}
        rows.append(row)
        print(f"| {name} | {row['tokens_per_s']:.1f} | {row['speedup']:.2f} | "
              f"{row['nfe']:.1f} | {row['nfe_reduction']:.2f} | {ppl:.2f} | {ent:.2f} |",
              flush=True)
    sample = mdlm.tokenizer.decode(prompts[0]) + "⟨" + mdlm.decode_generated(
        run_method(mdlm, prompts[:1], methods[1][2])["outputs"][0], mdlm.sample_config()) + "⟩"
    print(f"\nexample ({methods[1][0]}):\n{sample}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
