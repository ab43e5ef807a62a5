"""Search over canvases, plugged into the one sampling loop (``driver.py``).

* ``beam_step``: beam search; each step keeps the ``beam_width`` canvases of every input with
  the highest summed log-probability of their committed tokens.
* ``choose_rows``: which row of each input to return (best beam, or best of ``num_samples``
  by the model's own likelihood of the text, up to its first EOS).
* ``lineage``: the trace of a kept beam, followed back through the reorderings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from ..kinds import Kind
from .config import SampleConfig
from .state import DecodeState, Step
from .strategies import NEG_INF
from .trace import Trace, TraceStep


def before_first_eos(state: DecodeState, eos_id: int) -> Tensor:
    """[R, S] True on slots with no generated EOS before them (the EOS itself included):
    when the text stops at EOS, what follows it is cut and does not count."""
    ended = ((state.canvas == eos_id) & ~state.fixed).long()
    return ended.cumsum(1) - ended == 0


def counted_slots(state: DecodeState, commit: Tensor, eos_id: int | None) -> Tensor:
    """Committed slots of the block whose log-probability counts towards the beam score."""
    if eos_id is None:
        return commit
    return commit & before_first_eos(state, eos_id)[:, state.start:state.end]


def beam_step(state: DecodeState, step: Step, width: int, reorder: Callable[[Tensor], None],
              eos_id: int | None) -> tuple[Step, Tensor]:
    """Keep the ``width`` best canvases of each input after this step; returns the step as
    the kept canvases take it and, per kept row, the row it came from.

    The strategy has chosen which slots every beam commits; each beam proposes its ``width``
    most likely joint fillings of those slots (exact top-k of the product distribution, built
    slot by slot; slots after an EOS keep their one candidate), and each input keeps the
    ``width`` candidates with the highest summed log-probability of the committed tokens.
    Width 1 is greedy decoding.
    """
    R, L = step.commit.shape
    logp = torch.log_softmax(step.candidates.double(), -1)  # [R, L, V]
    W = min(width, logp.shape[-1])
    top_lp, top_tok = logp.topk(W, dim=-1)  # [R, L, W]
    n_commit = step.commit.sum(1)
    K = int(n_commit.max())
    slots = torch.argsort((~step.commit).long(), dim=1, stable=True)[:, :K]  # committed first
    live = torch.arange(K, device=slots.device)[None, :] < n_commit[:, None]  # [R, K]
    live &= counted_slots(state, step.commit, eos_id).gather(1, slots)
    part = torch.zeros(R, 1, dtype=torch.float64, device=slots.device)
    choice = torch.zeros(R, 1, K, dtype=torch.long, device=slots.device)  # option per slot
    none = torch.full((W,), NEG_INF, dtype=torch.float64, device=slots.device)
    none[0] = 0.0  # a slot that does not count: one option, free
    for c in range(K):
        opts = top_lp.gather(1, slots[:, c, None, None].expand(R, 1, W)).squeeze(1)  # [R, W]
        opts = torch.where(live[:, c, None], opts, none)
        total = (part[:, :, None] + opts[:, None, :]).flatten(1)  # [R, P * W]
        part, best = total.topk(min(W, total.shape[1]), dim=1)
        parent, pick = best // W, best % W
        choice = choice.gather(1, parent[..., None].expand(-1, -1, K)).clone()
        choice[:, :, c] = pick
    # every candidate of every beam of an input competes; keep the best ``width``
    n_in = R // width
    cand = (state.logprob[:, None] + part).view(n_in, -1)  # [n_in, width * P]
    P = part.shape[1]
    _, best = cand.topk(width, dim=1)
    src = (torch.arange(n_in, device=best.device)[:, None] * width + best // P).flatten()
    opt = (best % P).flatten()  # [R]
    # the chosen option's token and log-prob at each committed slot; an impossible option
    # (-inf: fewer allowed tokens than the width) keeps the step's own token and its -inf
    sl, ch = slots[src], choice[src, opt]  # [R, K]
    tok = top_tok[src].gather(1, sl[..., None].expand(-1, -1, W)).gather(2, ch[..., None])
    tok_lp = top_lp[src].gather(1, sl[..., None].expand(-1, -1, W)).gather(2, ch[..., None])
    tok, tok_lp = tok.squeeze(-1), tok_lp.squeeze(-1)
    tok = torch.where(tok_lp > NEG_INF, tok, step.x0[src].gather(1, sl))
    x0 = step.x0[src].scatter(1, sl, tok)
    lp = logp[src].gather(2, x0[..., None]).squeeze(-1)
    for name in ("canvas", "confidence", "logprob"):
        setattr(state, name, getattr(state, name)[src].clone())
    reorder(src)
    return replace(step, x0=x0, score=step.score[src], commit=step.commit[src],
                   remask=step.remask[src], logprob=lp, candidates=step.candidates[src]), src


def lineage(trace: Trace, keep: list[int], parents: list[Tensor | None]) -> Trace:
    """The trace of the kept rows, following each one back through the beam's reorderings
    (step k was recorded in the row order after that step's reordering)."""
    rows = torch.tensor(keep)
    per_step: list[list[int]] = []
    for src in reversed(parents):
        per_step.append(rows.tolist())
        if src is not None:
            rows = src.cpu()[rows]
    per_step.reverse()
    out = trace.select(keep)  # initial canvases: every row of an input starts the same
    for s, (full, idx) in enumerate(zip(trace.steps, per_step)):
        out.steps[s] = TraceStep(full.step, full.block, [full.positions[r] for r in idx],
                                 [full.tokens[r] for r in idx],
                                 [full.confidences[r] for r in idx],
                                 [full.remasked[r] for r in idx] if full.remasked else [])
    return out


def choose_rows(network, kind: Kind, state: DecodeState, cfg: SampleConfig, n_in: int,
                 expand: int, mask_id: int, eos_id: int, shift: int,
                 seeds: list[int] | None = None) -> tuple[list[int], list[float] | None]:
    """Rows to return, one per input: all rows, the best beam, or the best of N samples
    (ranked with each input's own seed, default ``cfg.seed``)."""
    if expand == 1:
        return list(range(n_in)), None
    if cfg.beam_width > 1:
        score = state.logprob
    else:  # rank by the model's own estimate of log p(generated | given), up to the first EOS
        target = ~state.fixed
        if cfg.stop_at_eos:
            target &= before_first_eos(state, eos_id)
        # each input's rows alone, so its ranking does not depend on what it is batched with
        score = torch.cat([kind.sequence_logprob(
            network, state.canvas[rows], target[rows], mask_id=mask_id,
            valid=state.valid[rows], positions=state.positions[rows], shift=shift,
            t_samples=cfg.rank_t_samples, seed=cfg.seed if seeds is None else int(seeds[i]))
            for i, rows in enumerate(torch.arange(n_in * expand, device=target.device)
                                     .view(n_in, expand))])
    score = torch.nan_to_num(score, nan=NEG_INF)
    best = score.view(n_in, expand).argmax(1)
    keep = (torch.arange(n_in, device=best.device) * expand + best).tolist()
    return keep, [float(score[r]) for r in keep]
