"""Small pluggable pieces of the reverse process; the driver (``driver.py``) calls them.

* which tokens: ``filter_logits`` (top-k / top-p), ``sample_tokens`` (Gumbel-max)
* which positions: ``scores`` (low_confidence, random, margin, entropy), ``select_top``
  (the k best, or sampled with ``alg_temp``), ``origin_commit`` (Dream's 1 - s/t coin flips)
* how many: ``masked_targets`` (LLaDA's even split, alpha(t), or Dream's eps schedule),
  ``threshold_count`` and ``factor_count`` (Fast-dLLM), ``remask_sigma`` (ReMDM)
* which tokens are never written: ``unwritable`` (MASK, and PAD unless it is the EOS)

Every function works on a whole batch of rows [B, ...] at once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..diffusion.schedules import get_schedule

NEG_INF = float("-inf")


def unwritable(mask_id: int, pad_id: int, eos_id: int) -> list[int]:
    """Token ids the sampler never writes: MASK, and PAD where it is a token of its own. LLaDA
    and Dream pad with their EOS (pad_token_id == eos_token_id): there PAD *is* the end of the
    text, which an instruct model writes to finish its answer, so it stays writable."""
    return [mask_id] if pad_id == eos_id else [mask_id, pad_id]


def num_transfer_tokens(mask_index: Tensor, steps: int) -> Tensor:
    """Tokens to commit at each step [B, steps] so a block's masks are gone after ``steps``.

    LLaDA's even split: base = n // steps per step, the remainder goes to the first steps.
    """
    n = mask_index.sum(dim=1, keepdim=True)  # [B, 1]
    base, rem = n // steps, n % steps
    out = base.expand(-1, steps).clone()
    out += (torch.arange(steps, device=mask_index.device)[None, :] < rem).long()
    return out


def masked_targets(mask_index: Tensor, steps: int, transfer: str = "even",
                   eps: float = 1e-3) -> Tensor:
    """How many masks each row should have left after each step [B, steps] (last column 0).

    ``even``: LLaDA's split (``num_transfer_tokens``). ``linear`` / ``cosine``: the masked
    fraction 1 - alpha(t) of that schedule at the step's end time t = 1 - (i + 1) / steps.
    ``dream``: Dream's ``_sample``: step i commits int(m * (1 - s / t)) of the m masks left,
    t -> s consecutive points of linspace(1, eps, steps + 1), in float32 as Dream computes it,
    and every mask left at the last step.
    """
    n = mask_index.sum(dim=1, keepdim=True)  # [B, 1]
    if transfer == "even":
        return n - num_transfer_tokens(mask_index, steps).cumsum(1)
    if transfer == "dream":
        times = torch.linspace(1, eps, steps + 1, dtype=torch.float32)
        left, out = n.float(), torch.zeros(n.shape[0], steps, dtype=torch.long,
                                            device=n.device)
        for i in range(steps - 1):
            left = left - torch.floor(left * (1 - times[i + 1] / times[i]))
            out[:, i] = left[:, 0].long()
        return out
    t = 1.0 - torch.arange(1, steps + 1, dtype=torch.float64, device=n.device) / steps
    frac = 1.0 - get_schedule(transfer).alpha(t)  # [steps], ends at 0
    return torch.round(n.double() * frac[None, :]).long().clamp(min=0)


def filter_logits(logits: Tensor, top_k: int | None, top_p: float | None,
                  top_p_first: bool = False) -> Tensor:
    """Set to -inf every token outside the top-k / nucleus (top-p) set. logits [..., V].
    Top-k first, then the nucleus of what is left (Hugging Face's order), or with
    ``top_p_first`` the nucleus of the whole distribution, then its top k (Dream's order)."""
    if top_p_first and top_p is not None:
        return filter_logits(filter_logits(logits, None, top_p), top_k, None)
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


class RowStreams:
    """One random stream per row: row b's draws come from its own seeded generator, so a row
    gets the same randomness alone, in any batch, and whenever it joined (what the sampling
    strategies draw from, ``strategies.uniform``)."""

    def __init__(self, seeds: list[int], device):
        self.device = device
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def rand(self, shape, device) -> Tensor:
        """U(0, 1) float64 of ``shape`` [R, ...]: row b from stream b."""
        return torch.stack([torch.rand(tuple(shape[1:]), generator=g, dtype=torch.float64,
                                       device=device) for g in self.generators])

    def select(self, index: list[int]) -> RowStreams:
        """The streams of rows ``index`` (beam search: a row copied twice gets two copies of
        its stream, each going on from where it was)."""
        out = RowStreams([], self.device)
        for i in index:
            g = torch.Generator(device=self.device)
            g.set_state(self.generators[i].get_state())
            out.generators.append(g)
        return out


Random = "torch.Generator | RowStreams | None"


def uniform(shape, generator: Random, device) -> Tensor:
    """U(0, 1) float64 of ``shape`` from a generator, or from per-row streams (row b of the
    result from stream b)."""
    if isinstance(generator, RowStreams):
        return generator.rand(shape, device)
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=device)


def gumbel(shape, generator: Random, device) -> Tensor:
    """Standard Gumbel noise -log(-log u) in float64."""
    return -torch.log(-torch.log(uniform(shape, generator, device)))


def sample_tokens(logits: Tensor, temperature: float, generator: Random
                  ) -> Tensor:
    """Gumbel-max sampling: argmax(logits - T * log(-log u)); T=0 is greedy.

    The same tokens as LLaDA's ``add_gumbel_noise`` (exp(logits) / (-log u)^T, in float64)
    for the same u, computed in log space so large logits cannot overflow.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    noise = gumbel(logits.shape, generator, logits.device)
    return (logits.double() + temperature * noise).argmax(dim=-1)


def scores(logits: Tensor, tokens: Tensor, remasking: str,
           generator: Random) -> Tensor:
    """Score of each position [B, L] (higher = commit sooner), from logits [B, L, V].

    low_confidence: p(chosen token) (LLaDA); margin: p(top1) - p(top2); entropy: sum p log p
    (Dream's negative entropy); random (and origin, which uses it for its coin flips): U(0, 1).
    """
    if remasking in ("random", "origin"):
        return uniform(tokens.shape, generator, tokens.device)
    probs = torch.softmax(logits.double(), dim=-1)
    if remasking == "low_confidence":
        return torch.gather(probs, -1, tokens[..., None]).squeeze(-1)
    if remasking == "margin":
        top2 = torch.topk(probs, 2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if remasking == "entropy":
        return (probs * torch.log(probs.clamp_min(1e-300))).sum(-1)
    raise ValueError(f"unknown remasking {remasking!r}")


def select_top(scores: Tensor, k: Tensor, alg_temp: float | None = None,
               generator: Random = None) -> Tensor:
    """Boolean [B, L]: k[b] positions of each row, never one scored -inf.

    Without ``alg_temp`` the k highest scores (ties: leftmost first). With it, k positions
    drawn without replacement from softmax(scores / alg_temp) (Dream), via Gumbel-top-k.
    """
    keys = scores
    if alg_temp:
        keys = scores / alg_temp + gumbel(scores.shape, generator, scores.device)
        keys = torch.where(scores > NEG_INF, keys, NEG_INF)
    order = torch.argsort(keys, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(
        scores.shape[1], device=scores.device).expand_as(order))
    return (ranks < k[:, None]) & (scores > NEG_INF)


def threshold_count(scores: Tensor, threshold: float) -> Tensor:
    """Fast-dLLM's threshold rule as a count [B]: every score >= threshold, at least one
    (the best) while any masked position is left. ``scores`` is -inf off the candidates."""
    available = (scores > NEG_INF).sum(1)
    return torch.minimum((scores >= threshold).sum(1).clamp(min=1), available)


def factor_count(scores: Tensor, factor: float) -> Tensor:
    """Fast-dLLM's factor rule as a count [B].

    Sort the n candidate scores c_1 >= c_2 >= ...; thresholds 1 - factor / (j + 1) for the
    j-th (j >= 2; the first always passes); commit the ones before the first failure. As in
    Fast-dLLM's ``get_transfer_index_dynamic``, a first failure at the last candidate still
    commits all n.
    """
    n = (scores > NEG_INF).sum(1)  # [B]
    sorted_scores = torch.sort(scores, dim=1, descending=True).values  # -inf last
    j = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=torch.float64)
    thresholds = 1.0 - factor / (j + 1.0)
    thresholds[0] = -math.inf
    fail = (sorted_scores < thresholds[None, :]) & (j[None, :] <= n[:, None])
    first_fail = torch.where(fail.any(1), fail.double().argmax(1), n - 1)
    return torch.where((first_fail == n - 1) | (first_fail == 0), first_fail + 1, first_fail) \
        .clamp(max=n) * (n > 0)


def origin_commit(scores: Tensor, candidates: Tensor, step: int, steps: Tensor,
                  eps: float = 1e-3) -> Tensor:
    """Dream's ``origin``: commit each candidate with probability 1 - s/t, t -> s the step's
    times on linspace(1, eps, steps + 1) (``steps`` per row [B]); everything at the last step.
    ``scores`` ~ U(0, 1)."""
    n = steps.double()[:, None]
    t = 1.0 - step / n * (1.0 - eps)
    s = 1.0 - (step + 1) / n * (1.0 - eps)
    return candidates & ((scores < 1.0 - s / t) | (step >= n - 1))


def remask_sigma(variant: str, eta: float, alpha_t: Tensor, alpha_s: Tensor) -> Tensor:
    """ReMDM's per-token re-masking probability sigma_t [B] for a step t -> s (alpha = share
    of the block unmasked). Its upper bound keeps the reverse process valid:
    sigma_max = min(1, (1 - alpha_s) / alpha_t). ``cap``/``conf``: min(eta, sigma_max);
    ``rescale``: eta * sigma_max."""
    sigma_max = ((1.0 - alpha_s) / alpha_t.clamp_min(1e-12)).clamp(max=1.0)
    if variant == "rescale":
        return eta * sigma_max
    return sigma_max.clamp(max=eta)
