"""Full fine-tuning vs LoRA adapters (PEFT) on a made-up question-answer set.

Run by hand (not in CI), with any checkpoint as the base:

    .venv/bin/python benchmarks/sft_lora.py --base runs/tiny --out runs/sft-bench --steps 300

The facts are invented (capitals of fictional countries, colours of made-up animals, ...), so
the base cannot know them: what fine-tuning adds is what is measured. Each arm fine-tunes the
same base on the same rows with the same steps and batches: every weight, or a LoRA adapter on
the attention projections or on all projections. For each it reports the trainable
parameters, the size of what the run writes (weights or adapter, and the optimizer state),
seconds per step, the gain in log p(answer + EOS | prompt) on the facts (nats per answer,
LLaDA's Monte-Carlo estimate for diffusion, exact for AR), and the share of answers that
greedy decoding reproduces exactly (up to the first EOS).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from pathlib import Path

import torch

import dlm
from dlm.train import TrainConfig, train
from dlm.train.metrics import read_csv

SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vo", "zu", "pel", "dri", "nox", "sa", "qui", "bel",
             "tor", "an", "eth"]


def invented(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def facts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    templates = ["What is the capital of {}?", "What colour is the {} bird?",
                 "Who rules {}?", "What do people in {} eat?"]
    rows, seen = [], set()
    while len(rows) < n:
        subject = invented(rng, 3)
        if subject in seen:
            continue
        seen.add(subject)
        rows.append((rng.choice(templates).format(subject), invented(rng, 2)))
    return rows


def measure(path: Path, rows: list[tuple[str, str]], t_samples: int, gen_length: int) -> dict:
    from dlm.sft.data import encode_rows

    model = dlm.load(path, device="cpu")
    msgs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            for q, a in rows]
    examples, _ = encode_rows(msgs, model.tokenizer, model.max_seq_len,
                              model.config.get("chat_template"), model.config.get("bos_token", ""))
    pairs = [(e.prompt, e.answer + [model.eos_id]) for e in examples]
    lp = model.loglikelihood_ids(pairs, t_samples=t_samples, seed=0)
    out = model.generate_ids([e.prompt for e in examples], gen_length=gen_length,
                             steps=gen_length, temperature=0.0, remasking="low_confidence")
    exact = sum(text.strip() == a for text, (_, a) in zip(out.text, rows))
    return {"logprob_per_answer": sum(lp) / len(lp), "exact": exact / len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="checkpoint to fine-tune")
    ap.add_argument("--out", default="runs/sft-bench", help="folder for the runs")
    ap.add_argument("--facts", type=int, default=48)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr-full", default="1e-3,3e-3", help="comma-separated learning rates")
    ap.add_argument("--lr-lora", default="3e-3,1e-2,3e-2", help="comma-separated")
    ap.add_argument("--t-samples", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = facts(args.facts)
    data = out / "facts.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in rows))
    base = dlm.load(args.base, device="cpu")
    gen_length = max(len(base.tokenizer.encode(a)) for _, a in rows) + 4
    before = measure(Path(args.base), rows, args.t_samples, gen_length)
    full = [float(x) for x in args.lr_full.split(",") if x]
    lora = [float(x) for x in args.lr_lora.split(",") if x]
    arms = [("every weight", None, lr) for lr in full] + [
        (name, spec, lr) for name, spec in (("LoRA r=8 attn", "r=8,alpha=16,targets=attn"),
                                            ("LoRA r=8 all", "r=8,alpha=16,targets=all"),
                                            ("LoRA r=32 all", "r=32,alpha=64,targets=all"))
        for lr in lora]
    results = []
    for name, spec, lr in arms:
        run = out / f"{name.replace(' ', '-').replace('=', '')}-lr{lr:g}"
        cfg = TrainConfig(kind=base.kind, init_from=args.base, sft_data=str(data), out=str(run),
                          max_steps=args.steps, batch_size=args.batch_size, lr=lr,
                          warmup_steps=min(20, args.steps // 5), eval_every=args.steps,
                          ckpt_every=args.steps, progress=False, threads=args.threads,
                          lora=spec, resume=run.exists())
        train(cfg)
        config = json.loads((run / "config.json").read_text())
        seconds = read_csv(run / "metrics.csv")[-1]["elapsed_s"]  # steps + evals, no setup
        weights = run / ("adapter_model.safetensors" if spec else "model.safetensors")
        optimizer = run / "train_state" / "optimizer.pt"
        trainable = config["adapter"]["trainable_params"] if spec else config["params"]["total"]
        after = measure(run, rows, args.t_samples, gen_length)
        results.append({"arm": name, "lr": lr, "trainable_params": trainable,
                        "weights_bytes": weights.stat().st_size,
                        "optimizer_bytes": optimizer.stat().st_size,
                        "s_per_step": seconds / args.steps,
                        "gain_nats_per_answer": after["logprob_per_answer"]
                        - before["logprob_per_answer"], "exact": after["exact"]})
    total = base.network.num_params()
    print(f"# {args.base} ({base.kind}, {total:,} params), {len(rows)} invented facts, "
          f"{args.steps} steps x {args.batch_size} rows; {platform.processor() or 'cpu'}, "
          f"{args.threads} threads")
    print(f"before: log p(answer) {before['logprob_per_answer']:.2f} nats, exact "
          f"{before['exact']:.0%}")
    print("| arm | lr | trainable | of base | weights written | optimizer state | s/step "
          "| gain (nats/answer) | exact answers |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['arm']} | {r['lr']:g} | {r['trainable_params']:,} | "
              f"{r['trainable_params'] / total:.1%} | {r['weights_bytes'] / 1024:.0f} KB | "
              f"{r['optimizer_bytes'] / 1024:.0f} KB | {r['s_per_step']:.3f} | "
              f"{r['gain_nats_per_answer']:+.2f} | {r['exact']:.0%} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"before": before, "arms": results}, indent=2))


if __name__ == "__main__":
    main()
