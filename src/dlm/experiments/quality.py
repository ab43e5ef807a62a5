"""Quality and speed of generated text, shared by ``dlm experiment steps-quality`` and
``benchmarks/sampling.py``:

* ``held_out_prompts``: prompts cut from the held-out split of the model's training data;
* ``decode_timed``: decode prompts one at a time (batch 1, the latency setting) and time it;
* ``gen_perplexity``: exp(mean NLL per token) of outputs given their prompts under an AR judge;
* ``unigram_entropy``: bits per token of an output's own token histogram (low = repetitive).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass

import torch

from ..data.corpora import load_corpus
from ..devices import autocast
from ..errors import DLMError
from ..sample.driver import generate, left_pad


def held_out_prompts(model, n: int, length: int, data: str | None = None) -> list[list[int]]:
    """``n`` prompts of ``length`` tokens spread over the held-out split, each at a line start."""
    data = data or model.config.get("train", {}).get("data", "shakespeare")
    text = "\n".join(load_corpus(data).validation)
    prompts, pos = [], 0
    step = max(1, len(text) // (n + 1))
    while len(prompts) < n and pos < len(text):
        newline = text.find("\n", pos)
        if newline < 0:
            break
        start = newline + 1
        ids = model.tokenizer.encode(text[start:start + 4 * length])[:length]
        if len(ids) == length:
            prompts.append(ids)
        pos = start + step
    if len(prompts) < n:
        raise DLMError(f"the held-out split of {data!r} gives only {len(prompts)} prompts of "
                       f"{length} tokens (asked for {n})")
    return prompts


def text_tokens(model, out: list[int], keep_eos: bool = False) -> list[int]:
    """A generated row as text: up to its first EOS (kept when ``keep_eos``), no MASK/PAD."""
    if model.eos_id in out:
        out = out[:out.index(model.eos_id) + (1 if keep_eos else 0)]
    return [t for t in out if t not in (model.mask_id, model.pad_id)]


def gen_perplexity(judge, prompts: list[list[int]], outputs: list[list[int]]) -> float:
    """exp(mean NLL per token) of each output given its prompt under an AR model: the tokens up
    to the first EOS and that EOS too (stopping is scored like any other choice). NaN when no
    token is left to score."""
    if not judge.spec.exact:
        raise DLMError(f"the judge must be an autoregressive model (got kind {judge.kind!r})")
    rows, targets = [], []
    for p, out in zip(prompts, outputs):
        out = text_tokens(judge, out, keep_eos=True)
        rows.append([judge.eos_id, *p, *out])
        targets.append(len(out))
    ids, valid = left_pad(rows, judge.pad_id, judge.device)
    target = torch.zeros_like(valid)
    for r, n in enumerate(targets):
        if n:
            target[r, ids.shape[1] - n:] = True
    with torch.no_grad(), autocast(judge.device):
        lp = judge.spec.sequence_logprob(judge.network, ids, target, mask_id=judge.mask_id,
                                         valid=valid, shift=1)
    if not sum(targets):
        return math.nan
    return math.exp(-lp.sum().item() / sum(targets))


def unigram_entropy(tokens: list[int]) -> float:
    counts = Counter(tokens)
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


@dataclass
class Decoded:
    outputs: list[list[int]]
    seconds: float  # wall clock for all prompts, after one warm-up call
    nfe: float  # network calls per sample

    @property
    def tokens_per_s(self) -> float:
        return sum(len(o) for o in self.outputs) / self.seconds


def decode_timed(model, prompts: list[list[int]], warmup: bool = True, **fields) -> Decoded:
    """Decode each prompt alone with ``SampleConfig`` fields; time and count network calls."""
    cfg = model.sample_config(**fields)

    def one(p):
        with torch.no_grad(), autocast(model.device):
            return generate(model.network, [p], cfg, kind=model.kind, mask_id=model.mask_id,
                            eos_id=model.eos_id, pad_id=model.pad_id, record_trace=False)

    if warmup:
        one(prompts[0])
    outputs, nfe = [], 0
    t0 = time.perf_counter()
    for p in prompts:
        gen = one(p)
        outputs.append(gen.tokens[0])
        nfe += gen.nfe
    return Decoded(outputs, time.perf_counter() - t0, nfe / len(prompts))
