"""Masked diffusion (MDLM, LLaDA, Dream): bidirectional attention, the whole canvas denoised
in parallel, ``block_length`` for LLaDA's semi-autoregressive blocks; the negative ELBO is an
upper bound on the NLL (docs/architecture.md, "Model kinds")."""

from __future__ import annotations

from ..diffusion.likelihood import masked_nelbo
from ..diffusion.objectives import MaskedDiffusionLoss
from ..sft.loss import DiffusionSFTLoss
from .base import Kind

# Sampler defaults of a fine-tuned masked-diffusion checkpoint, written into its config.json
# under "generation" (the key ``Model.sample_config`` reads; flags and arguments still win).
# Why: SFT pads every answer with EOS to the end of the context and counts that padding in the
# loss (LLaDA's recipe), so the fine-tuned model is surest of EOS far from the prompt. Decoded
# as one block, the lowest-confidence rule commits those EOS first and they pull the slots
# after the prompt to EOS as well: the answer comes out empty. LLaDA decodes its instruct
# model in semi-autoregressive blocks for this reason (and its samplers can forbid EOS
# outright); here blocks of 8 keep the far EOS masked until the answer in front of them is
# written, and min_length 1 forbids EOS in the first slot (every training answer has at least
# one token). Measured (default gen_length, which fills the context; greedy) on the tiny preset
# after 6 min of pre-training, fine-tuned 300 epochs at lr 3e-3, batch 8, on 36 short-answer
# Q&A rows: one block left 11 of 74 answers empty (trained, held-out and new questions) and
# wrote 6 of 32 trained answers exactly; blocks of 8, 1 empty and 24 exact; blocks of 8 with
# min_length 1, none empty and 24 exact. On examples/qa.jsonl: one block 1 of 60 empty, 15 of
# 36 exact; blocks of 8 with min_length 1, none empty, 21 exact. On the test suite's d=32
# model blocks alone still left 8 of 20 empty (one block: 12): min_length 1 is what
# guarantees a token.
SFT_GENERATION = {"block_length": 8, "min_length": 1}


class MaskedDiffusion(Kind):
    name = "mdlm"
    help = "masked diffusion"
    colour = "tab:orange"
    sft_generation = SFT_GENERATION
    published = ("llada", "dream", "llada_moe")

    def objective(self, cfg, mask_id):
        return MaskedDiffusionLoss(mask_id, cfg.schedule)

    def sft_loss(self, mask_id, eos_id, block_size, schedule):
        return DiffusionSFTLoss(mask_id, eos_id, schedule)

    def heldout(self, network, chunks, *, mask_id, bos_id, t_samples, seed, batch_size,
                block_size, on_batch):
        return masked_nelbo(network, chunks, mask_id, t_samples, seed, batch_size,
                            on_batch=on_batch)


MDLM = MaskedDiffusion()
