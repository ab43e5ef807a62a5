"""Likelihood on held-out text: exact NLL for AR, a Monte-Carlo ELBO bound for masked diffusion.

Both are computed on the *same* chunks of held-out tokens (fixed length, no context across
chunks) and reported in nats/token and bits/byte, where bytes are the UTF-8 bytes the chunk's
tokens stand for (see ``Tokenizer.token_bytes``).

* AR: every token of a chunk is scored; a BOS (the EOS id) predicts the first one.
* BD3-LM: the block ELBO, the sum over blocks of each block's masked-diffusion ELBO given the
  clean blocks before it; the same estimator with one mask count per block, all blocks scored
  in one [x_t ; x_0] pass.
* MDLM: the negative ELBO, an upper bound on the NLL. For a sequence of length L it equals
  sum_{m=1..L} (1/m) E_{|M|=m}[sum_{i in M} -log p(x_i | x unmasked outside M)], invariant to the
  training schedule. We estimate it with K stratified mask counts m per chunk (LLaDA's
  estimator: m ~ U{1..L}, weight L/m; t = m/L), with a fixed seed per chunk, and report the
  Monte-Carlo standard error from the spread of the K draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DLMError
from ..models.transformer import Attention
from .objectives import block_diffusion_logits

LN2 = math.log(2.0)


@dataclass
class EvalResult:
    kind: str
    nats_per_token: float
    bits_per_byte: float
    se_bits_per_byte: float  # Monte-Carlo standard error (0 for an exact AR likelihood)
    upper_bound: bool  # True for diffusion ELBOs
    n_chunks: int
    n_tokens: int
    n_bytes: int
    t_samples: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        bound = "<= " if self.upper_bound else ""
        se = f" ± {self.se_bits_per_byte:.3f}" if self.upper_bound else ""
        return (f"{self.kind}: {bound}{self.bits_per_byte:.3f}{se} bits/byte, "
                f"{bound}{self.nats_per_token:.3f} nats/token "
                f"({self.n_bytes} held-out bytes)")


def eval_chunks(stream: np.ndarray, seq_len: int, max_tokens: int | None = None) -> Tensor:
    """The held-out stream cut into fixed chunks [N, seq_len] (at most ``max_tokens`` tokens)."""
    if max_tokens is not None:
        stream = stream[:max_tokens]
    n = len(stream) // seq_len
    return torch.from_numpy(np.ascontiguousarray(stream[: n * seq_len].reshape(n, seq_len)))


@torch.no_grad()
def ar_nll(network, chunks: Tensor, bos_id: int, batch_size: int = 32,
           on_batch: Callable[[float], None] | None = None) -> Tensor:
    """Exact NLL (nats) of each chunk [N]; input = [BOS, x_0 .. x_{L-2}], targets x_0 .. x_{L-1}.
    ``on_batch(chunks)``: called after each batch with the chunks it finished."""
    device = next(network.parameters()).device
    out = []
    for i in range(0, len(chunks), batch_size):
        x = chunks[i:i + batch_size].to(device)
        inp = torch.cat([torch.full_like(x[:, :1], bos_id), x[:, :-1]], dim=1)
        logits = network(inp, attn=Attention.causal())
        out.append(F.cross_entropy(logits.transpose(1, 2), x, reduction="none").sum(1).cpu())
        if on_batch is not None:
            on_batch(len(x))
    return torch.cat(out).double()


def mask_count_draws(length: int, k: int, generator: torch.Generator) -> Tensor:
    """K stratified mask counts in 1..length: m_j = floor((j + u) / K * length) + 1."""
    u = torch.rand((), generator=generator, dtype=torch.float64)
    m = torch.floor((torch.arange(k, dtype=torch.float64) + u) / k * length).long() + 1
    return m.clamp(1, length)


def masked_draws(chunk: Tensor, k: int, mask_id: int, generator: torch.Generator
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """K corrupted copies of one chunk with exactly m_j masks each -> (x_t [K, L], masked, m)."""
    L = chunk.shape[0]
    m = mask_count_draws(L, k, generator)
    ranks = torch.rand(k, L, generator=generator).argsort(dim=1).argsort(dim=1)
    masked = ranks < m[:, None]  # a uniformly random subset of size m_j in each row
    xt = torch.where(masked, mask_id, chunk[None, :].expand(k, L))
    return xt, masked, m


@torch.no_grad()
def masked_nelbo(network, chunks: Tensor, mask_id: int, t_samples: int = 8, seed: int = 0,
                 batch_size: int = 32, on_batch: Callable[[float], None] | None = None
                 ) -> tuple[Tensor, Tensor]:
    """Negative ELBO (nats) per chunk [N] and the variance of each estimate [N].
    ``on_batch(chunks)``: called after each batch with the chunks' worth of draws it did."""
    device = next(network.parameters()).device
    N, L = chunks.shape
    draws = []
    for c in range(N):  # a generator per chunk: results do not depend on batch size
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        draws.append(masked_draws(chunks[c], t_samples, mask_id, g))
    xt = torch.cat([d[0] for d in draws])  # [N*K, L]
    masked = torch.cat([d[1] for d in draws])
    m = torch.cat([d[2] for d in draws]).double()
    x0 = chunks.repeat_interleave(t_samples, dim=0)
    values = []
    for i in range(0, len(xt), batch_size):
        logits = network(xt[i:i + batch_size].to(device), attn=Attention.bidirectional())
        ce = F.cross_entropy(logits.transpose(1, 2), x0[i:i + batch_size].to(device),
                             reduction="none").cpu().double()
        values.append((ce * masked[i:i + batch_size]).sum(1))
        if on_batch is not None:
            on_batch(len(ce) / t_samples)
    est = torch.cat(values) * (L / m)  # unbiased draw of the NELBO for its chunk
    est = est.view(N, t_samples)
    mean = est.mean(1)
    var = est.var(1, unbiased=True) / t_samples if t_samples > 1 else torch.zeros(N)
    return mean, var


@torch.no_grad()
def block_nelbo(network, chunks: Tensor, mask_id: int, block_size: int, t_samples: int = 8,
                seed: int = 0, batch_size: int = 32,
                on_batch: Callable[[float], None] | None = None) -> tuple[Tensor, Tensor]:
    """Block-diffusion negative ELBO (nats) per chunk [N] and its estimator's variance [N].

    Each draw masks, in every block, a uniform subset of m_b tokens (m_b stratified over the
    K draws, as ``masked_draws``), weights the block's cross-entropy by block_size / m_b, and
    scores all blocks at once given the clean blocks before them.
    """
    device = next(network.parameters()).device
    N, L = chunks.shape
    if L % block_size:
        raise DLMError(f"block size {block_size} does not divide the chunk length {L}")
    nb = L // block_size
    xts, maskeds, weights = [], [], []
    for c in range(N):
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        blocks = chunks[c].view(nb, block_size)
        draws = [masked_draws(blocks[b], t_samples, mask_id, g) for b in range(nb)]
        xts.append(torch.cat([d[0] for d in draws], dim=1))  # [K, L]
        maskeds.append(torch.cat([d[1] for d in draws], dim=1))
        weights.append(torch.stack([block_size / d[2].double() for d in draws], 1)
                       .repeat_interleave(block_size, dim=1))  # [K, L]
    xt, masked, w = torch.cat(xts), torch.cat(maskeds), torch.cat(weights)
    x0 = chunks.repeat_interleave(t_samples, dim=0)
    values = []
    for i in range(0, len(xt), batch_size):
        sl = slice(i, i + batch_size)
        logits = block_diffusion_logits(network, xt[sl].to(device), x0[sl].to(device),
                                        block_size)
        ce = F.cross_entropy(logits.transpose(1, 2), x0[sl].to(device),
                             reduction="none").cpu().double()
        values.append((ce * masked[sl] * w[sl]).sum(1))
        if on_batch is not None:
            on_batch(len(ce) / t_samples)
    est = torch.cat(values).view(N, t_samples)
    var = est.var(1, unbiased=True) / t_samples if t_samples > 1 else torch.zeros(N)
    return est.mean(1), var


class EvalProgress:
    """How far a held-out evaluation got, on stderr: on a terminal a rich bar over the chunks
    (rate, elapsed, ETA; gone when done); otherwise one line at the start and one at the end.
    Disabled: nothing at all."""

    def __init__(self, total: int, what: str, enabled: bool = True, console=None):
        from rich.console import Console

        self.total, self.what, self.enabled = total, what, enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.done = 0.0
        self.bar = self.task = None

    def __enter__(self):
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]held-out eval"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("eval", total=self.total, rate="")
        elif self.enabled:
            self._print(f"held-out eval: {self.what} ...")
        self.t0 = time.perf_counter()
        return self

    def advance(self, chunks: float) -> None:
        self.done += chunks
        if self.bar is not None:
            seconds = time.perf_counter() - self.t0
            rate = f"{self.done / seconds:.1f} chunks/s" if seconds > 0 else ""
            self.bar.update(self.task, completed=min(self.done, self.total), rate=rate)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif self.enabled and exc[0] is None:
            self._print(f"held-out eval: done in {time.perf_counter() - self.t0:.1f} s")
        return False

    def _print(self, line: str) -> None:
        self.console.file.write(line + "\n")
        self.console.file.flush()


def shift_right(logits: Tensor) -> Tensor:
    """Logits of a shifted-logit model (AR-style, Dream) moved so slot i holds the prediction
    for slot i, made at i - 1 (slot 0 keeps its own: nothing predicts it)."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _token_logprob(network, ids: Tensor, inp: Tensor, valid: Tensor, positions: Tensor,
                   attn: Attention, shift: int, batch_size: int, context: Tensor | None = None,
                   mask_id: int | None = None, cfg_scale: float = 0.0) -> Tensor:
    """log p(ids at each slot) [K*R, S] of the network on ``inp`` (K stacked copies of the R
    rows). ``cfg_scale``: classifier-free guidance, the unconditional pass seeing ``context``
    masked too."""
    R = len(ids)
    n = len(inp) // R
    rows_valid, rows_pos, rows_ids = valid.repeat(n, 1), positions.repeat(n, 1), ids.repeat(n, 1)
    rows_context = context.repeat(n, 1) if cfg_scale else None
    out = []
    for i in range(0, len(inp), batch_size):
        sl = slice(i, i + batch_size)
        x, pad, pos = inp[sl], attn.with_padding(rows_valid[sl]), rows_pos[sl]
        if cfg_scale:  # one pass for both: [conditional ; unconditional]
            x = torch.cat([x, x.masked_fill(rows_context[sl], mask_id)])
            pad, pos = attn.with_padding(rows_valid[sl].repeat(2, 1)), pos.repeat(2, 1)
        logits = network(x, attn=pad, positions=pos)
        if cfg_scale:
            c, u = logits.chunk(2)
            logits = u + (cfg_scale + 1.0) * (c - u)
        if shift:
            logits = shift_right(logits)
        lp = torch.log_softmax(logits.double(), dim=-1)
        out.append(lp.gather(-1, rows_ids[sl][..., None]).squeeze(-1))
    return torch.cat(out)


def _rows(ids: Tensor, target: Tensor, valid: Tensor | None, positions: Tensor | None):
    valid = torch.ones_like(ids, dtype=torch.bool) if valid is None else valid
    if positions is None:
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    return valid, positions, target & valid


@torch.no_grad()
def causal_logprob(network, ids: Tensor, target: Tensor, *, mask_id: int | None = None,
                   valid: Tensor | None = None, positions: Tensor | None = None,
                   shift: int = 1, batch_size: int = 64, cfg_scale: float = 0.0,
                   t_samples: int = 1, seed: int = 0) -> Tensor:
    """log p(target tokens | the tokens before them) per row [R], float64: exact, one causal
    pass (``t_samples`` and ``seed`` are ignored; there is nothing to sample).

    ids [R, S] (left padding allowed: ``valid`` False there, ``positions`` the RoPE positions),
    target [R, S] True on the tokens to score."""
    if cfg_scale:
        raise DLMError("cfg_scale (classifier-free guidance) needs a masked diffusion model")
    valid, positions, target = _rows(ids, target, valid, positions)
    return (_token_logprob(network, ids, ids, valid, positions, Attention.causal(), shift,
                           batch_size) * target).sum(1)


@torch.no_grad()
def masked_logprob(network, ids: Tensor, target: Tensor, *, mask_id: int,
                   valid: Tensor | None = None, positions: Tensor | None = None,
                   shift: int = 0, t_samples: int = 8, seed: int = 0,
                   batch_size: int = 64, cfg_scale: float = 0.0) -> Tensor:
    """log p(target tokens | the other tokens) per row [R], float64: LLaDA's Monte-Carlo lower
    bound (the negative of ``masked_nelbo``'s estimator, restricted to the targets): K
    stratified mask counts m of the row's n targets, a random m-subset masked, weight n / m.
    Seeded, so the same inputs give the same estimate. ``cfg_scale`` > 0 (as LLaDA's
    evaluation): the logits are u + (s + 1)(c - u), u from a pass that sees the context (every
    non-target token) masked too. Arguments as ``causal_logprob``'s.
    """
    R, S = ids.shape
    device = ids.device
    valid, positions, target = _rows(ids, target, valid, positions)
    g = torch.Generator().manual_seed(seed)
    n = target.sum(1).double()  # [R]
    u = torch.rand((), generator=g, dtype=torch.float64)
    j = torch.arange(t_samples, dtype=torch.float64)
    m = (torch.floor((j[None, :] + u) / t_samples * n[:, None].cpu()) + 1).clamp(min=1)
    m = torch.minimum(m, n[:, None].cpu().clamp(min=1)).T.reshape(-1).to(device)  # [K*R]
    keys = torch.rand((t_samples * R, S), generator=g).to(device)
    keys = torch.where(target.repeat(t_samples, 1), keys, 2.0)
    ranks = keys.argsort(1).argsort(1)
    masked = ranks < m[:, None]  # a uniform m-subset of each row's targets
    xt = torch.where(masked, mask_id, ids.repeat(t_samples, 1))
    lp = _token_logprob(network, ids, xt, valid, positions, Attention.bidirectional(), shift,
                        batch_size, valid & ~target, mask_id, cfg_scale)
    est = (lp * masked).sum(1) * (n.repeat(t_samples) / m)  # [K*R]
    return est.view(t_samples, R).mean(0) * (n > 0)
