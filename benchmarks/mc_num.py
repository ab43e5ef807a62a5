"""How many Monte-Carlo draws does a diffusion log-likelihood need? (lm-eval's ``--mc-num``)

Run by hand (not in CI), with a masked diffusion checkpoint and, optionally, its AR twin:

    .venv/bin/python benchmarks/mc_num.py --mdlm runs/tiny --ar runs/tiny-ar --questions 40

It builds multiple-choice questions from held-out text (a context, its true continuation and
``--choices - 1`` continuations taken from elsewhere in the held-out text), scores every choice
with ``Model.loglikelihood_ids`` (what the lm-eval adapter calls) at each ``mc_num`` over
``--seeds`` seeds, and reports per mc_num: the spread of one estimate across seeds (nats, mean
over the choices), the accuracy (mean over seeds), and how often the chosen answer agrees with
the one chosen at the largest mc_num. The AR twin's exact accuracy is the reference line.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch

import dlm
from dlm.data.corpora import load_corpus


def questions(model, n: int, choices: int, context: int, length: int, seed: int = 0):
    """[(context ids, [choice ids...], index of the true one)] from the held-out split."""
    train_cfg = model.config.get("train", {})
    corpus = load_corpus(train_cfg.get("data", "shakespeare"), train_cfg.get("text_field", "text"))
    ids = [t for doc in model.tokenizer.encode_batch(corpus.validation) for t in doc]
    rng = random.Random(seed)
    out = []
    span = context + length
    for _ in range(n):
        start = rng.randrange(0, len(ids) - span)
        true = ids[start + context:start + span]
        others = []
        while len(others) < choices - 1:
            s = rng.randrange(0, len(ids) - length)
            if abs(s - start - context) > span:
                others.append(ids[s:s + length])
        answer = rng.randrange(choices)
        opts = others[:answer] + [true] + others[answer:]
        out.append((ids[start:start + context], opts, answer))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mdlm", required=True, help="masked diffusion checkpoint")
    ap.add_argument("--ar", help="its AR twin (exact reference accuracy)")
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--context", type=int, default=48, help="context tokens")
    ap.add_argument("--length", type=int, default=16, help="continuation tokens")
    ap.add_argument("--mc", default="1,4,16,64,256", help="comma-separated mc_num values")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = dlm.load(args.mdlm, device="cpu")
    qs = questions(model, args.questions, args.choices, args.context, args.length)
    pairs = [(c, o) for c, opts, _ in qs for o in opts]
    mcs = [int(x) for x in args.mc.split(",") if x]

    def picks(scores):
        k = args.choices
        return [max(range(k), key=lambda j: scores[q * k + j]) for q in range(len(qs))]

    rows, reference = [], None
    for mc in sorted(mcs, reverse=True):
        t0 = time.perf_counter()
        runs = [model.loglikelihood_ids(pairs, t_samples=mc, seed=s, batch_size=args.batch_size)
                for s in range(args.seeds)]
        seconds = (time.perf_counter() - t0) / args.seeds
        spread = statistics.mean(statistics.stdev(r[i] for r in runs) for i in range(len(pairs)))
        chosen = [picks(r) for r in runs]
        if reference is None:
            reference = chosen[0]
        acc = statistics.mean(sum(p == a for p, (_, _, a) in zip(c, qs)) / len(qs)
                              for c in chosen)
        agree = statistics.mean(sum(p == r for p, r in zip(c, reference)) / len(qs)
                                for c in chosen)
        rows.append((mc, spread, acc, agree, seconds / len(pairs)))
    print(f"# {args.mdlm}: {len(qs)} questions x {args.choices} choices, context "
          f"{args.context} + continuation {args.length} tokens, {args.seeds} seeds; "
          f"{platform.processor() or 'cpu'}, {args.threads} threads")
    if args.ar:
        ar = dlm.load(args.ar, device="cpu")
        acc = sum(p == a for p, (_, _, a) in zip(picks(ar.loglikelihood_ids(pairs)), qs))
        print(f"AR twin (exact): accuracy {acc / len(qs):.1%}")
    print(f"| mc_num | s.d. of one estimate (nats) | accuracy | same pick as mc_num={max(mcs)} "
          "| s per choice |")
    print("|---:|---:|---:|---:|---:|")
    for mc, spread, acc, agree, sec in sorted(rows):
        print(f"| {mc} | {spread:.3f} | {acc:.1%} | {agree:.1%} | {sec:.4f} |")


if __name__ == "__main__":
    main()
