"""Block diffusion (BD3-LM, LLaDA2): blocks of ``block_size`` tokens written left to right,
each denoised given the clean blocks before it; block-causal attention brings back an exact KV
cache and open-ended length (docs/architecture.md, "Model kinds")."""

from __future__ import annotations

import torch

from ..diffusion.likelihood import block_nelbo
from ..diffusion.objectives import BlockDiffusionLoss
from ..errors import DLMError
from ..models.transformer import Attention
from ..sft.loss import BlockDiffusionSFTLoss
from .base import Kind, network_block_size

DEFAULT_BLOCK = 8


class BlockDiffusion(Kind):
    name = "bd3lm"
    help = "block diffusion"
    colour = "tab:green"
    left_to_right = True
    blocked = True
    flops_factor = 2  # one pass over [x_t ; x_0]
    published = ("llada2",)
    refusals = {
        "infill": "{what} needs a masked diffusion (mdlm) model: a bd3lm model writes its "
                  "blocks left to right",
        "edit": "{what} needs a masked diffusion (mdlm) model: a bd3lm model writes its "
                "blocks left to right",
        "loglikelihood": "the likelihood of a continuation is not implemented for block "
                         "diffusion (bd3lm) models yet; dlm eval gives their block ELBO"}

    def attention(self, block_size=None):
        if not block_size or block_size < 1:
            raise DLMError("bd3lm needs a positive block size")
        return Attention.block_causal(block_size)

    def validate_train(self, cfg):
        super().validate_train(cfg)
        if cfg.block_size is None:
            cfg.block_size = DEFAULT_BLOCK
        if cfg.block_size < 1:
            raise DLMError(f"--block-size must be >= 1 (got {cfg.block_size})")
        if (cfg.t_low is None) != (cfg.t_high is None):
            raise DLMError("give both --t-low and --t-high (the clipped schedule's range)")
        if cfg.t_low is not None and not 0 < cfg.t_low < cfg.t_high <= 1:
            raise DLMError(f"need 0 < --t-low < --t-high <= 1 (got {cfg.t_low}, "
                           f"{cfg.t_high})")

    def check_context(self, seq_len, block_size, flag):
        if seq_len % block_size:
            if flag == "--seq-len":
                raise DLMError(f"--seq-len {seq_len} must be a multiple of the model's block "
                               f"size ({block_size})")
            raise DLMError(f"--block-size {block_size} does not divide the context "
                           f"({seq_len} tokens); pick a divisor or set --seq-len")

    def objective(self, cfg, mask_id):
        if not cfg.block_size:
            raise DLMError("bd3lm needs a block size (--block-size)")
        clip = (cfg.t_low, cfg.t_high) if cfg.t_low is not None else None
        return BlockDiffusionLoss(mask_id, cfg.block_size, cfg.schedule, clip=clip)

    def objective_config(self, cfg):
        out = {"schedule": cfg.schedule, "block_size": cfg.block_size}
        if cfg.t_low is not None:
            out["t_clip"] = [cfg.t_low, cfg.t_high]
        return out

    def sft_loss(self, mask_id, eos_id, block_size, schedule):
        return BlockDiffusionSFTLoss(mask_id, eos_id, block_size, schedule)

    def heldout(self, network, chunks, *, mask_id, bos_id, t_samples, seed, batch_size,
                block_size, on_batch):
        return block_nelbo(network, chunks, mask_id, block_size, t_samples, seed, batch_size,
                           on_batch=on_batch)

    # sequence_logprob: the masked-diffusion estimator under bidirectional attention (what
    # best-of-N ranks block diffusion rows by; a block ELBO of a continuation is not written)

    def answer_draws(self, network, objective, batch, target, valid, n, *, mask_id,
                     batch_size):
        """The block ELBO of the held-out answers and their first EOS given the prompts (the
        answer's EOS padding is masked like the answer, as in training, and not counted):
        minus their summed terms, one draw per seed."""
        out = []
        for k in range(n):
            g = torch.Generator().manual_seed(k)
            length = -(-batch.shape[-1] // objective.block_size) * objective.block_size
            noise = objective.draw(len(batch), length, g)
            terms, _, _ = objective.terms(network, batch, noise)
            out.append(-(terms * target[:, :terms.shape[1]].to(terms.device)).sum().cpu())
        return torch.stack(out)

    def align(self, network, cfg):
        if cfg.block_length is not None:
            raise DLMError(f"a bd3lm model decodes blocks of its own size "
                           f"({network_block_size(network)}); drop block_length")
        return network_block_size(network)

    def slides(self, cfg):
        return cfg.cache in (None, "exact")

    def generation_window(self, block_size):
        return 2 * (block_size or 1)

    def block_length(self, cfg, length, block_size):
        return block_size

    def cache_mode(self, cfg):
        if cfg.cache in ("prefix", "dual"):
            raise DLMError("a bd3lm model caches finished blocks exactly: use cache exact (the "
                           "default) or none")
        return cfg.cache or "exact"


BD3LM = BlockDiffusion()
