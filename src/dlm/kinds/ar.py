"""Autoregression (the AR twin): causal attention, next-token loss, an exact likelihood, and
decoding as blocks of one token, one step each, with an exact KV cache (docs/architecture.md,
"Model kinds")."""

from __future__ import annotations

import torch

from ..diffusion.likelihood import ar_nll, causal_logprob
from ..diffusion.objectives import ARLoss
from ..errors import DLMError
from ..models.transformer import Attention
from ..sft.loss import ARSFTLoss
from .base import Kind

# what an AR model decodes with, whatever the config says (README: "ignored for them")
AR_IGNORES = dict(steps=None, block_length=None, remasking="low_confidence", transfer="even",
                  alg_temp=None, threshold=None, factor=None, cache=None, remask_eta=0.0)


class Autoregressive(Kind):
    name = "ar"
    help = "next-token"
    colour = "tab:blue"
    exact = True
    left_to_right = True
    token_noise = True
    shift = 1
    loss_label = "NLL (nats/token)"
    refusals = {
        "infill": "{what} needs a diffusion model; this checkpoint is autoregressive",
        "edit": "{what} needs a diffusion model; this checkpoint is autoregressive"}

    def attention(self, block_size=None):
        return Attention.causal()

    def objective(self, cfg, mask_id):
        return ARLoss(mask_id, cfg.ar_token_noise)

    def objective_config(self, cfg):
        return {"token_noise": cfg.ar_token_noise} if cfg.ar_token_noise else {}

    def sft_loss(self, mask_id, eos_id, block_size, schedule):
        return ARSFTLoss(eos_id)

    def heldout(self, network, chunks, *, mask_id, bos_id, t_samples, seed, batch_size,
                block_size, on_batch):
        nats = ar_nll(network, chunks, bos_id, batch_size, on_batch=on_batch)
        return nats, torch.zeros_like(nats)

    def sequence_logprob(self, network, ids, target, *, mask_id, **kw):
        return causal_logprob(network, ids, target, mask_id=mask_id, **kw)

    def answer_draws(self, network, objective, batch, target, valid, n, *, mask_id,
                     batch_size):
        return super().answer_draws(network, objective, batch, target, valid, 1,
                                    mask_id=mask_id, batch_size=batch_size)  # exact: one

    def bos(self, eos_id):
        return [eos_id]  # "a document starts": the first token's prediction reads from it

    def settle(self, cfg):
        if cfg.cfg_scale > 0:
            raise DLMError("cfg_scale (classifier-free guidance) needs a masked diffusion "
                           "model")
        return cfg.replace(**AR_IGNORES)

    def slides(self, cfg):
        return True

    def generation_window(self, block_size):
        return 1

    def block_length(self, cfg, length, block_size):
        return 1

    def cache_mode(self, cfg):
        return "exact"


AR = Autoregressive()
