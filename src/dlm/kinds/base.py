"""``Kind``: what a model kind decides, in one object (docs/architecture.md, "Model kinds").

A kind is how a network is trained, scored and decoded: its attention rule, its training
objective and SFT loss, its held-out number and sequence log-likelihood, and the plan the one
sampling driver follows (block alignment, natural cache, logit shift, window and sliding
rules). Everything outside ``dlm/kinds`` asks the kind object (``dlm.kinds.get(name)``) and
never compares a kind's name. This base class holds the masked-diffusion defaults; a kind
file overrides what differs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.likelihood import masked_logprob
from ..errors import DLMError
from ..models.transformer import Attention
from ..sample.config import SampleConfig

BLOCK_KNOBS = ("block_size", "t_low", "t_high")


def network_block_size(network) -> int:
    """A block diffusion network's block size (set on load from its checkpoint)."""
    bs = getattr(network.default_attention, "block_size", None)
    if not bs:
        raise DLMError("a bd3lm network needs its block size: load it with dlm.load, or set "
                       "network.default_attention = Attention.block_causal(block_size)")
    return bs


class Kind:
    """One model kind. Subclass it, set ``name``, override what differs, and ``register`` an
    instance (``dlm.kinds.register``): training, evaluation, sampling, SFT and the front ends
    then take it without an edit elsewhere."""

    name: str = ""
    help: str = ""  # a few words for ``--kind``'s help
    colour: str = "tab:gray"  # its curves in plots
    exact: bool = False  # an exact likelihood in one causal pass (AR), not a Monte-Carlo bound
    left_to_right: bool = False  # writes its text left to right: a row that wrote EOS is done
    blocked: bool = False  # has a block size (--block-size, config objective.block_size)
    token_noise: bool = False  # trains with input-token masking (--ar-token-noise)
    shift: int = 0  # logits at slot i - 1 predict slot i (whatever the network says)
    flops_factor: int = 1  # tokens a training pass runs per trained token
    loss_label: str = "ELBO (nats/token)"
    # sampler defaults a fine-tune of this kind writes into its config (what the base leaves
    # unset; see ``dlm.kinds.mdlm.SFT_GENERATION``)
    sft_generation: dict = {}
    published: tuple[str, ...] = ()  # published layouts (``models.hf``) of this kind
    # task -> why this kind cannot do it ({what}: the task's name as the user called it)
    refusals: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    # --- attention and training -------------------------------------------------------------
    def attention(self, block_size: int | None = None) -> Attention:
        """The attention the kind is trained and sampled with."""
        return Attention.bidirectional()

    def validate_train(self, cfg) -> None:
        """Refuse (or settle) the ``TrainConfig`` knobs that belong to other kinds."""
        knobs = [n for n in BLOCK_KNOBS if getattr(cfg, n) is not None]
        if knobs and not self.blocked:
            raise DLMError(f"--{knobs[0].replace('_', '-')} is for --kind bd3lm only")
        if cfg.ar_token_noise and not self.token_noise:
            raise DLMError("--ar-token-noise is for --kind ar only")

    def check_context(self, seq_len: int, block_size: int | None, flag: str) -> None:
        """Refuse a training context the kind cannot cut (``flag``: how the user set it)."""

    def objective(self, cfg, mask_id: int):
        """The pre-training loss: ``loss(network, x0, noise=, attn=) -> LossOutput`` with a
        ``draw(n, seq_len, generator)`` for its randomness (``diffusion.objectives``)."""
        raise NotImplementedError

    def objective_config(self, cfg) -> dict:
        """What a checkpoint records about its objective (config.json ``objective``)."""
        return {"schedule": cfg.schedule}

    def sft_loss(self, mask_id: int, eos_id: int, block_size: int | None, schedule: str):
        """The fine-tuning loss on ``[B, 2, L]`` prompt/answer batches (``dlm.sft.loss``)."""
        raise NotImplementedError(f"kind {self.name} has no SFT loss")

    # --- likelihood ---------------------------------------------------------------------------
    def heldout(self, network, chunks: Tensor, *, mask_id: int, bos_id: int, t_samples: int,
                seed: int, batch_size: int, block_size: int | None, on_batch
                ) -> tuple[Tensor, Tensor]:
        """Negative log-likelihood (an upper bound unless ``exact``) in nats per held-out
        chunk [N], and the variance of each estimate [N]."""
        raise NotImplementedError

    def sequence_logprob(self, network, ids: Tensor, target: Tensor, *, mask_id: int,
                         **kw) -> Tensor:
        """log p(target tokens | the rest) per row [R] (``diffusion.likelihood``)."""
        return masked_logprob(network, ids, target, mask_id=mask_id, **kw)

    def answer_draws(self, network, objective, batch: Tensor, target: Tensor, valid: Tensor,
                     n: int, *, mask_id: int, batch_size: int) -> Tensor:
        """``n`` independent one-draw estimates (seeds 0, 1, ...) of the summed log p of the
        held-out SFT answers ``target`` given their prompts (``batch``: [N, 2, L])."""
        return torch.stack([self.sequence_logprob(
            network, batch[:, 0], target, mask_id=mask_id, valid=valid,
            shift=self.logit_shift(network), t_samples=1, seed=k, batch_size=batch_size)
            .sum().cpu() for k in range(n)])

    # --- decoding -------------------------------------------------------------------------
    def refuse(self, task: str, what: str | None = None) -> None:
        """Raise a clear error if the kind cannot do ``task`` (infill, edit, loglikelihood)."""
        if task in self.refusals:
            raise DLMError(self.refusals[task].format(what=what or task))

    def bos(self, eos_id: int) -> list[int]:
        """What goes before every text (an AR model's BOS); diffusion models get none."""
        return []

    def logit_shift(self, network) -> int:
        """1 when logits at slot i - 1 predict slot i (AR, Dream-style networks), else 0."""
        return 1 if self.shift or getattr(network.config, "shift_logits", False) else 0

    def align(self, network, cfg: SampleConfig) -> int:
        """What the blocks of a generated text are counted in from its first token (block
        diffusion: the model's own blocks), refusing knobs that would break them."""
        return 1

    def settle(self, cfg: SampleConfig) -> SampleConfig:
        """The config as this kind decodes with it (knobs it ignores reset, ones it cannot
        honour refused)."""
        return cfg

    def slides(self, cfg: SampleConfig) -> bool:
        """Whether decoding may run past the model's window (evicting whole blocks of an exact
        cache); a canvas that does not slide must fit the window whole."""
        return False

    def generation_window(self, block_size: int | None) -> int | None:
        """Window slots a sliding decode needs besides the context (None: the whole canvas
        must fit)."""
        return None

    def block_length(self, cfg: SampleConfig, length: int, block_size: int | None) -> int:
        """Tokens per decoding block, for a canvas of ``length`` slots from the first mask."""
        return cfg.block_length or length

    def cache_mode(self, cfg: SampleConfig) -> str:
        """The KV cache the driver runs (none, prefix, dual or exact)."""
        if cfg.cache == "exact":
            raise DLMError("cache='exact' is block diffusion's cache (bd3lm); for mdlm use "
                           "none, prefix or dual (AR always decodes with its exact KV cache)")
        return cfg.cache or "none"

    @property
    def reports_steps(self) -> bool:
        """Whether a decode's settled config reports its number of steps."""
        return not self.exact
