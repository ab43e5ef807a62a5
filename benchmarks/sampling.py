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
import platform

import torch

import dlm
from dlm.experiments.quality import decode_timed, gen_perplexity, held_out_prompts, unigram_entropy


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
        r = decode_timed(model, prompts, **fields)
        ppl = gen_perplexity(ar, prompts, r.outputs)
        ent = sum(unigram_entropy(o) for o in r.outputs) / len(prompts)
        vanilla = vanilla or r
        row = {"method": name, "tokens_per_s": r.tokens_per_s, "nfe": r.nfe,
               "speedup": r.tokens_per_s / vanilla.tokens_per_s,
               "nfe_reduction": vanilla.nfe / r.nfe, "gen_ppl": ppl, "entropy": ent}
        rows.append(row)
        print(f"| {name} | {row['tokens_per_s']:.1f} | {row['speedup']:.2f} | "
              f"{row['nfe']:.1f} | {row['nfe_reduction']:.2f} | {ppl:.2f} | {ent:.2f} |",
              flush=True)
    sample = mdlm.tokenizer.decode(prompts[0]) + "⟨" + mdlm.decode_generated(
        decode_timed(mdlm, prompts[:1], warmup=False, **methods[1][2]).outputs[0],
        mdlm.sample_config()) + "⟩"
    print(f"\nexample ({methods[1][0]}):\n{sample}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
