"""The reverse process: one loop for every model kind (DESIGN.md contract 3).

The canvas is ``prompt + gen_length MASKs`` per row (ragged prompts are left-padded with PAD,
hidden by a key padding mask, with RoPE positions counted from each row's first real token, so
a batch gives the same tokens as one prompt at a time). The generated part is split into blocks
decoded left to right; inside a block, each step predicts every masked slot, and commits the
``num_transfer_tokens`` best-scoring ones.

* masked diffusion (mdlm): bidirectional; every step re-reads the whole canvas (as LLaDA).
* AR: the special case "blocks of one token, one step each, logits shifted by one" under causal
  attention with an exact KV cache: each step feeds only the tokens not yet cached.

    gen = generate(network, [prompt_ids], SampleConfig(steps=64, gen_length=128),
                   kind="mdlm", mask_id=256, eos_id=257, pad_id=258)
    gen.tokens, gen.trace
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..diffusion.objectives import attention_for
from ..errors import DLMError
from .config import SampleConfig
from .strategies import (
    NEG_INF,
    confidence,
    filter_logits,
    num_transfer_tokens,
    sample_tokens,
    select_top,
)
from .trace import Trace, TraceStep


@dataclass
class Generation:
    tokens: list[list[int]]  # generated tokens per row (gen_length, before any cutting)
    trace: Trace | None
    nfe: int  # network forward passes


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    """Prompts -> ids [B, P] left-padded with PAD, and valid [B, P] (True on real tokens)."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), P), dtype=torch.bool)
    for b, p in enumerate(prompts):
        if p:
            ids[b, P - len(p):] = torch.tensor(p, dtype=torch.long)
            valid[b, P - len(p):] = True
    return ids.to(device), valid.to(device)


def plan_blocks(kind: str, cfg: SampleConfig) -> tuple[int, int]:
    """(block_length, steps per block) for a kind and config."""
    if kind == "ar":
        return 1, 1
    block = cfg.block_length or cfg.gen_length
    n_blocks = cfg.gen_length // block
    return block, max(1, cfg.steps // n_blocks)


@torch.no_grad()
def generate(network, prompts: list[list[int]], cfg: SampleConfig, *, kind: str, mask_id: int,
             eos_id: int, pad_id: int, record_trace: bool = True) -> Generation:
    cfg.validate()
    if not prompts:
        raise DLMError("no prompts given")
    if kind == "ar":  # a BOS (the EOS id: "a new document starts") predicts the first token
        prompts = [[eos_id, *p] for p in prompts]
    device = next(network.parameters()).device
    max_len = network.config.max_seq_len
    prompt_ids, prompt_valid = left_pad(prompts, pad_id, device)
    B, P = prompt_ids.shape
    total = P + cfg.gen_length
    if max(len(p) for p in prompts) + cfg.gen_length > max_len:
        raise DLMError(f"prompt ({max(len(p) for p in prompts)} tokens) + gen_length "
                       f"({cfg.gen_length}) exceeds the model's context of {max_len} tokens")

    canvas = torch.cat([prompt_ids, torch.full((B, cfg.gen_length), mask_id, device=device)], 1)
    valid = torch.cat([prompt_valid, torch.ones((B, cfg.gen_length), dtype=torch.bool,
                                                device=device)], 1)
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)  # [B, total]
    pad_offset = (~prompt_valid).sum(1)  # [B]: canvas coordinates of a row start here
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    special = torch.tensor([mask_id, pad_id], device=device)

    shift = 1 if kind == "ar" else 0  # logits at slot i-1 predict slot i (AR)
    attn_kind = attention_for(kind)
    use_cache = attn_kind.kind != "bidirectional"
    cache = network.new_cache() if use_cache else None
    block_len, steps_per_block = plan_blocks(kind, cfg)
    trace = Trace(kind, mask_id, [list(p) for p in prompts], cfg.gen_length) \
        if record_trace else None
    nfe, step_no = 0, 0

    for b, start in enumerate(range(P, total, block_len)):
        end = start + block_len
        schedule = num_transfer_tokens(canvas[:, start:end] == mask_id, steps_per_block)
        for i in range(steps_per_block):
            # -- forward: which tokens go in, which logits come out --------------------------
            if use_cache:
                c = cache.length
                cache.store = start - c  # committed tokens before the block are exact to cache
                logits = network(canvas[:, c:end], attn=attn_kind.with_padding(valid[:, :end]),
                                 positions=positions[:, c:end], cache=cache)
                logits = logits[:, start - shift - c:end - shift - c]  # [B, block, V]
            else:
                logits = network(canvas, attn=attn_kind.with_padding(valid),
                                 positions=positions)[:, start:end]
            nfe += 1
            # -- choose candidates and commit the best-scoring masked slots ------------------
            masked = canvas[:, start:end] == mask_id
            logits = filter_logits(logits, cfg.top_k, cfg.top_p)
            # MASK and PAD are never candidates (a trained model gives them ~0 probability;
            # this keeps "every slot gets a real token" true for any network). Confidences
            # use the unsuppressed distribution, as LLaDA does.
            x0 = sample_tokens(logits.index_fill(-1, special, NEG_INF), cfg.temperature,
                               generator)
            scores = confidence(logits, x0, cfg.remasking, generator)
            scores = torch.where(masked, scores, NEG_INF)
            commit = select_top(scores, schedule[:, i])
            canvas[:, start:end] = torch.where(commit, x0, canvas[:, start:end])
            if trace is not None:
                trace.steps.append(_trace_step(step_no, b, commit, x0, scores, start, pad_offset))
            step_no += 1
        if kind == "ar" and cfg.stop_at_eos and bool(((canvas[:, P:end] == eos_id).any(1)).all()):
            break  # every row has ended; the rest would be cut anyway
    tokens = [canvas[r, P:].tolist() for r in range(B)]
    return Generation(tokens, trace, nfe)


def _trace_step(step: int, block: int, commit: Tensor, x0: Tensor, scores: Tensor, start: int,
                pad_offset: Tensor) -> TraceStep:
    rows, cols = commit.nonzero(as_tuple=True)
    B = commit.shape[0]
    positions: list[list[int]] = [[] for _ in range(B)]
    tokens: list[list[int]] = [[] for _ in range(B)]
    confs: list[list[float]] = [[] for _ in range(B)]
    toks, cs = x0[rows, cols].tolist(), scores[rows, cols].float().tolist()
    offs = pad_offset.tolist()
    for r, c, t, s in zip(rows.tolist(), cols.tolist(), toks, cs):
        positions[r].append(start + c - offs[r])
        tokens[r].append(t)
        confs[r].append(round(s, 6))
    return TraceStep(step, block, positions, tokens, confs)
