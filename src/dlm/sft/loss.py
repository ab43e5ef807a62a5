"""SFT losses on ``[B, 2, L]`` batches (``data.collate``): ids and roles (0 prompt, 1 answer).

* ``DiffusionSFTLoss`` (LLaDA, Appendix B / GUIDELINES): draw t per row, mask each answer token
  (EOS padding included) with probability 1 - alpha(t), never a prompt token; the loss is
  ``sum over masked answer tokens of w(t) * CE``, divided by that row's answer length, averaged
  over rows (so long answers do not dominate).
* ``BlockDiffusionSFTLoss`` (LLaDA2's recipe on BD3-LM's objective): the same masking of the
  answer only, with one t per block of the model's size (blocks counted from the text's first
  token), every noisy block scored given the clean blocks before it in one pass over
  ``[x_t ; x_0]``; the same per-row normalisation.
* ``ARSFTLoss``: next-token cross-entropy on the answer and its first EOS only, averaged over
  those tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.likelihood import shift_right
from ..diffusion.objectives import (
    BlockDiffusionLoss,
    LossOutput,
    MaskedDiffusionLoss,
    block_diffusion_logits,
)
from ..models.transformer import Attention


def split(batch: Tensor, eos_id: int | None = None) -> tuple[Tensor, Tensor]:
    """(ids, answer) of a batch; with ``eos_id``, cut to its longest row (prompt, answer and
    one EOS): rows are stored padded to the context, LLaDA pads within the minibatch."""
    ids, answer = batch[:, 0], batch[:, 1].bool()
    if eos_id is not None:
        end = int(up_to_first_eos(ids, answer, eos_id).long().cumsum(1).argmax(1).max()) + 1
        ids, answer = ids[:, :end], answer[:, :end]
    return ids, answer


class DiffusionSFTLoss(MaskedDiffusionLoss):
    def __init__(self, mask_id: int, eos_id: int, schedule="linear", eps: float = 1e-3):
        super().__init__(mask_id, schedule, eps)
        self.eos_id = eos_id

    def __call__(self, network, batch: Tensor, noise: dict[str, Tensor] | None = None,
                 generator: torch.Generator | None = None, attn: Attention | None = None
                 ) -> LossOutput:
        ids, answer = split(batch, self.eos_id)
        B, L = ids.shape
        noise = noise or self.draw(B, batch.shape[-1], generator)
        t = noise["t"].to(ids.device)
        xt, masked = self.corrupt(ids, t, noise["u"][:, :L])
        masked &= answer  # the prompt is never masked
        xt = torch.where(masked, xt, ids)
        logits = network(xt, attn=attn or Attention.bidirectional())
        if getattr(getattr(network, "module", network), "config", None) is not None and \
                getattr(network, "module", network).config.shift_logits:
            logits = shift_right(logits)  # Dream: slot i is predicted at i - 1
        terms = self.nelbo_terms(logits, ids, masked, t)  # [B, L]
        loss = (terms.sum(1) / answer.sum(1).clamp(min=1)).mean()
        return LossOutput(loss, {"sft_loss": loss.item(),
                                 "mask_frac": (masked.sum() / answer.sum()).item()})


class BlockDiffusionSFTLoss(BlockDiffusionLoss):
    def __init__(self, mask_id: int, eos_id: int, block_size: int, schedule="linear",
                 eps: float = 1e-3):
        super().__init__(mask_id, block_size, schedule, eps)
        self.eos_id = eos_id

    def terms(self, network, batch: Tensor, noise: dict[str, Tensor]
              ) -> tuple[Tensor, Tensor, Tensor]:
        """(ELBO terms [B, L], masked [B, L], answer [B, L]) of a batch cut to its longest row
        rounded up to whole blocks."""
        ids, answer = split(batch, self.eos_id)
        full = batch.shape[-1]
        L = min(-(-ids.shape[1] // self.block_size) * self.block_size, full)
        ids, answer = batch[:, 0, :L], batch[:, 1, :L].bool()
        t = noise["t"].to(ids.device).repeat_interleave(self.block_size, dim=1)[:, :L]
        masked = (noise["u"][:, :L].to(ids.device) < self.schedule.mask_prob(t)) & answer
        xt = torch.where(masked, self.mask_id, ids)
        logits = block_diffusion_logits(network, xt, ids, self.block_size)
        ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
        return torch.where(masked, ce * self.schedule.weight(t), 0.0), masked, answer

    def __call__(self, network, batch: Tensor, noise: dict[str, Tensor] | None = None,
                 generator: torch.Generator | None = None, attn: Attention | None = None
                 ) -> LossOutput:
        noise = noise or self.draw(batch.shape[0], batch.shape[-1], generator)
        terms, masked, answer = self.terms(network, batch, noise)
        loss = (terms.sum(1) / answer.sum(1).clamp(min=1)).mean()
        return LossOutput(loss, {"sft_loss": loss.item(),
                                 "mask_frac": (masked.sum() / answer.sum()).item()})


class ARSFTLoss:
    def __init__(self, eos_id: int):
        self.eos_id = eos_id

    def draw(self, n: int, seq_len: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {}

    def __call__(self, network, batch: Tensor, noise: dict[str, Tensor] | None = None,
                 generator: torch.Generator | None = None, attn: Attention | None = None
                 ) -> LossOutput:
        ids, answer = split(batch, self.eos_id)
        counted = up_to_first_eos(ids, answer, self.eos_id)
        logits = network(ids[:, :-1], attn=attn or Attention.causal())
        ce = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        keep = counted[:, 1:]
        loss = (ce * keep).sum() / keep.sum().clamp(min=1)
        return LossOutput(loss, {"sft_loss": loss.item()})


def up_to_first_eos(ids: Tensor, answer: Tensor, eos_id: int) -> Tensor:
    """Answer slots up to and including the first EOS (the rest is padding)."""
    eos = (ids == eos_id) & answer
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    first = torch.where(eos, pos, ids.shape[1]).min(1, keepdim=True).values
    return answer & (pos <= first)
