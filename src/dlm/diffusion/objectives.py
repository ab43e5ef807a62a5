"""Training objectives, separate from the network (docs/architecture.md, "The network"); each
model kind (``dlm.kinds``) picks its own.

* ``MaskedDiffusionLoss``: the MDLM/LLaDA ELBO. Draw t per sequence (stratified across the batch:
  t_i = (u + i) / B mod 1, clamped to [eps, 1]), mask each token with probability 1 - alpha(t),
  and average  w(t) * CE(masked token)  over all B*T tokens, w(t) = 1/t for the linear schedule.
  This is an unbiased estimate of the negative ELBO in nats/token (an upper bound on the NLL).
* ``BlockDiffusionLoss``: BD3-LM. The sequence is cut into blocks of ``block_size``; each block
  gets its own t (stratified over all blocks of the batch, optionally clipped to [lo, hi]) and
  is masked like MDLM. One pass over ``[x_t ; x_0]`` (2L tokens, ``Attention.block_diffusion``)
  scores every block given the clean blocks before it: logits come from the x_t half.
* ``ARLoss``: next-token cross-entropy under causal attention.

Both are ``loss(network, x0 [B, T]) -> LossOutput(loss, metrics)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DLMError
from ..models.transformer import Attention
from .schedules import LinearSchedule, Schedule, get_schedule


@dataclass
class LossOutput:
    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def stratified_times(n: int, generator: torch.Generator | None = None, eps: float = 1e-3,
                     device: torch.device | str = "cpu") -> Tensor:
    """n low-discrepancy times in [eps, 1]: one uniform offset, evenly spaced, randomly ordered."""
    u = torch.rand((), generator=generator)
    t = (u + torch.arange(n) / n) % 1.0
    t = t[torch.randperm(n, generator=generator)]
    return (eps + (1 - eps) * t).to(device)


class MaskedDiffusionLoss:
    def __init__(self, mask_id: int, schedule: Schedule | str = "linear", eps: float = 1e-3,
                 antithetic: bool = True):
        self.mask_id = mask_id
        self.schedule = get_schedule(schedule) if isinstance(schedule, str) else schedule
        self.eps = eps
        self.antithetic = antithetic

    def sample_times(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        if self.antithetic:
            return stratified_times(n, generator, self.eps, device)
        return (self.eps + (1 - self.eps) * torch.rand(n, generator=generator)).to(device)

    def draw(self, n: int, seq_len: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        """The randomness of one batch: times t [n] and uniforms u [n, seq_len] (on the CPU).

        Drawn for the *global* batch from a generator seeded by the step, so a run's masks do
        not depend on how many processes or micro-batches share the batch.
        """
        return {"t": self.sample_times(n, generator, "cpu"),
                "u": torch.rand((n, seq_len), generator=generator)}

    def corrupt(self, x0: Tensor, t: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Mask token j of row i where u_ij < 1 - alpha(t_i) -> (x_t, masked)."""
        masked = u.to(x0.device) < self.schedule.mask_prob(t.to(x0.device))[:, None]
        return torch.where(masked, self.mask_id, x0), masked

    def nelbo_terms(self, logits: Tensor, x0: Tensor, masked: Tensor, t: Tensor) -> Tensor:
        """Per-token ELBO terms [B, T]: w(t) * CE at masked positions, 0 elsewhere."""
        ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")  # [B, T]
        return torch.where(masked, ce * self.schedule.weight(t.to(ce.device))[:, None], 0.0)

    def __call__(self, network, x0: Tensor, noise: dict[str, Tensor] | None = None,
                 generator: torch.Generator | None = None, attn: Attention | None = None
                 ) -> LossOutput:
        B, T = x0.shape
        noise = noise or self.draw(B, T, generator)
        t = noise["t"].to(x0.device)
        xt, masked = self.corrupt(x0, t, noise["u"])
        logits = network(xt, attn=attn or Attention.bidirectional())
        terms = self.nelbo_terms(logits, x0, masked, t)
        loss = terms.sum() / (B * T)
        return LossOutput(loss, {"nelbo": loss.item(),
                                 "mask_frac": masked.float().mean().item()})


class BlockDiffusionLoss(MaskedDiffusionLoss):
    def __init__(self, mask_id: int, block_size: int, schedule: Schedule | str = "linear",
                 eps: float = 1e-3, clip: tuple[float, float] | None = None):
        super().__init__(mask_id, schedule, eps)
        if block_size < 1:
            raise DLMError(f"block_size must be >= 1 (got {block_size})")
        self.block_size = block_size
        self.clip = clip

    def draw(self, n: int, seq_len: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Times per block t [n, seq_len // block_size] and uniforms u [n, seq_len]."""
        if seq_len % self.block_size:
            raise DLMError(f"block size {self.block_size} does not divide the context "
                           f"{seq_len}")
        nb = seq_len // self.block_size
        t = self.sample_times(n * nb, generator, "cpu").view(n, nb)
        if self.clip is not None:  # BD3-LM's clipped schedule: t ~ U[lo, hi]
            lo, hi = self.clip
            t = lo + (hi - lo) * (t - self.eps) / (1 - self.eps)
        return {"t": t, "u": torch.rand((n, seq_len), generator=generator)}

    def __call__(self, network, x0: Tensor, noise: dict[str, Tensor] | None = None,
                 generator: torch.Generator | None = None, attn: Attention | None = None
                 ) -> LossOutput:
        B, T = x0.shape
        noise = noise or self.draw(B, T, generator)
        t = noise["t"].to(x0.device).repeat_interleave(self.block_size, dim=1)  # [B, T]
        masked = noise["u"].to(x0.device) < self.schedule.mask_prob(t)
        xt = torch.where(masked, self.mask_id, x0)
        logits = block_diffusion_logits(network, xt, x0, self.block_size)
        ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
        terms = torch.where(masked, ce * self.schedule.weight(t), 0.0)
        loss = terms.sum() / (B * T)
        return LossOutput(loss, {"nelbo": loss.item(),
                                 "mask_frac": masked.float().mean().item()})


def block_diffusion_logits(network, xt: Tensor, x0: Tensor, block_size: int) -> Tensor:
    """Logits [B, L, V] of every x_t slot given its own (noisy) block and the clean blocks
    before it: one pass over [x_t ; x_0], both halves at positions 0..L-1."""
    L = xt.shape[1]
    pos = torch.arange(L, device=xt.device).repeat(2)[None, :]
    logits = network(torch.cat([xt, x0], dim=1), attn=Attention.block_diffusion(block_size),
                     positions=pos)
    return logits[:, :L]


class ARLoss:
    """Next-token prediction: position i predicts token i+1 (T-1 predictions per row).

    ``token_noise`` p > 0 is AR's input-token masking regulariser: each input token is replaced
    by the mask token with probability p while every target stays the clean next token (the
    held-out evaluation always reads clean inputs)."""

    def __init__(self, mask_id: int | None = None, token_noise: float = 0.0):
        if token_noise and mask_id is None:
            raise DLMError("input-token masking needs the tokenizer's mask id")
        self.mask_id = mask_id
        self.token_noise = token_noise

    def draw(self, n: int, seq_len: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        if not self.token_noise:
            return {}  # deterministic given the batch
        return {"u": torch.rand(n, seq_len - 1, generator=generator)}

    def __call__(self, network, x0: Tensor, noise: dict[str, Tensor] | None = None,
                 generator: torch.Generator | None = None, attn: Attention | None = None
                 ) -> LossOutput:
        inputs = x0[:, :-1]
        if self.token_noise:
            u = noise["u"] if noise and "u" in noise else torch.rand(
                inputs.shape, generator=generator)
            inputs = inputs.masked_fill(u.to(inputs.device) < self.token_noise, self.mask_id)
        logits = network(inputs, attn=attn or Attention.causal())
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x0[:, 1:].reshape(-1))
        return LossOutput(loss, {"nll": loss.item()})


__all__ = ["ARLoss", "BlockDiffusionLoss", "LinearSchedule", "LossOutput", "MaskedDiffusionLoss",
           "block_diffusion_logits", "stratified_times"]
