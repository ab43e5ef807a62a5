"""Small pluggable pieces of the reverse process: how many tokens to commit per step, how to
draw candidate tokens, and how to score masked positions. The driver (``driver.py``) calls them.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


def num_transfer_tokens(mask_index: Tensor, steps: int) -> Tensor:
    """Tokens to commit at each step [B, steps] so a block's masks are gone after ``steps``.

    LLaDA's even split: base = n // steps per step, the remainder goes to the first steps.
    """
    n = mask_index.sum(dim=1, keepdim=True)  # [B, 1]
    base, rem = n // steps, n % steps
    out = base.expand(-1, steps).clone()
    out += (torch.arange(steps, device=mask_index.device)[None, :] < rem).long()
    return out


def filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Set to -inf every token outside the top-k / nucleus (top-p) set. logits [..., V]."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass strictly before it already reaches top_p (keeps >= 1 token)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, NEG_INF)
    return logits


def sample_tokens(logits: Tensor, temperature: float, generator: torch.Generator | None
                  ) -> Tensor:
    """Gumbel-max sampling: argmax(logits - T * log(-log u)); T=0 is greedy.

    The same tokens as LLaDA's ``add_gumbel_noise`` (exp(logits) / (-log u)^T, in float64)
    for the same u, computed in log space so large logits cannot overflow.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64,
                   device=logits.device)
    return (logits.double() - temperature * torch.log(-torch.log(u))).argmax(dim=-1)


def confidence(logits: Tensor, tokens: Tensor, remasking: str,
               generator: torch.Generator | None) -> Tensor:
    """Score of each position's candidate token [B, L]: higher = commit sooner."""
    if remasking == "low_confidence":  # LLaDA: probability of the chosen token
        probs = torch.softmax(logits.double(), dim=-1)
        return torch.gather(probs, -1, tokens[..., None]).squeeze(-1)
    if remasking == "random":
        return torch.rand(tokens.shape, generator=generator, dtype=torch.float64,
                          device=tokens.device)
    raise ValueError(f"unknown remasking {remasking!r}")


def select_top(scores: Tensor, k: Tensor) -> Tensor:
    """Boolean [B, L]: the k[b] highest-scoring positions of each row (scores -inf never)."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(
        scores.shape[1], device=scores.device).expand_as(order))
    return (ranks < k[:, None]) & (scores > NEG_INF)
