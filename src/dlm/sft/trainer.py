"""``SFTTask``: the trainer's loop, checkpoints, resume and DDP, on prompt/answer rows.

What changes from pre-training: the network and tokenizer come from ``init_from`` (dlm's format
or a published LLaDA / Dream directory), the loader walks collated ``[N, 2, L]`` SFT rows (L =
the context), the objective is ``DiffusionSFTLoss`` (masked diffusion) or ``ARSFTLoss``, and the
held-out number is the answers' negative log-likelihood given their prompts (exact for AR,
LLaDA's Monte-Carlo bound for diffusion), in bits per answer byte. Rows longer than the context
are skipped (with a warning); of the others every 10th (at least one) is held out.

    train(TrainConfig(init_from="runs/tiny", sft_data="qa.jsonl", epochs=3))
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .. import kinds
from ..data.loader import EpochLoader
from ..devices import autocast
from ..diffusion.likelihood import EvalResult
from ..errors import DLMError
from ..kinds import Kind
from ..kinds.mdlm import SFT_GENERATION
from ..models.formats import load_weights_into, read_config, save_model_dir
from ..models.loading import load_checkpoint
from ..models.lora import (
    LoraSpec,
    add_lora,
    base_params,
    fill_adapter,
    has_adapters,
    merge_adapters,
    save_adapter,
)
from ..models.transformer import Transformer
from ..version import __version__
from .data import collate, encode_rows, read_rows
from .loss import up_to_first_eos

LN2 = math.log(2)
__all__ = ["SFT_GENERATION", "SFTTask", "sft_generation", "split_rows"]
LORA_NAME = "default"  # the adapter a LoRA run trains


def sft_generation(kind: str | Kind, base: dict | None) -> dict:
    """The "generation" section of a fine-tuned checkpoint: the base's (a published model's
    recipe, or an earlier fine-tune's), with the kind's ``sft_generation`` for what it leaves
    unset (masked diffusion: ``SFT_GENERATION``; an AR model decodes token by token)."""
    base = dict(base or {})  # an explicit null (e.g. block_length: one block) is kept
    return {**kinds.get(kind).sft_generation, **base}


def split_rows(rows: list) -> tuple[list, list]:
    """(train, held out): every 10th row (of those that fit the context) is held out, at
    least one; a single row is both."""
    if len(rows) == 1:
        return rows, rows
    held = set(range(0, len(rows), 10))
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


class SFTTask:
    """Fine-tuning on prompt/answer rows, as a task of the one training loop
    (``dlm.train.Trainer``; see ``PretrainTask`` for the protocol): the network, tokenizer and
    kept settings come from ``init_from``, the loader walks collated rows, the objective is
    the kind's SFT loss, the held-out number the answers' log-likelihood, and a LoRA run's
    checkpoint holds only its adapter. Every method gets the trainer."""

    def setup(self, run) -> None:
        cfg = self.cfg = run.cfg
        # resuming: the run itself holds the architecture, tokenizer and kept settings (the
        # base may have moved); its weights are loaded by the trainer's resume. A LoRA run
        # holds only its adapter: its base is loaded and the adapter is put back on resume.
        saved = read_config(run.run_dir).get("adapter") if run.resuming else None
        source = run.run_dir if run.resuming and not saved else cfg.init_from
        if saved and not source.startswith("hf:") and not Path(source).is_dir():
            raise DLMError(f"{run.run_dir} is a LoRA run on {source}, which is missing: put "
                           "it back or give its new place (dlm sft ... --resume --base PATH)")
        network, tokenizer, base = load_checkpoint(source, device="cpu")
        if saved and base_params(network) != saved["base_params"]:
            raise DLMError(f"{run.run_dir} was trained on a base of {saved['base_params']:,} "
                           f"parameters; {cfg.init_from} has {base_params(network):,}")
        if has_adapters(network):  # a LoRA run as the start: fine-tune its merged weights
            merge_adapters(network)
        if base["kind"] != cfg.kind:
            raise DLMError(f"--init-from {cfg.init_from} is a {base['kind']} model, not "
                           f"{cfg.kind}")
        self.base_network, self.base_config, self.tokenizer = network, base, tokenizer
        self.net_config = replace(network.config, dropout=cfg.dropout)
        context = self.net_config.max_seq_len
        if cfg.seq_len is not None and cfg.seq_len > context:
            raise DLMError(f"--seq-len {cfg.seq_len} is longer than the context of "
                           f"{cfg.init_from} ({context} tokens): fine-tuning cannot lengthen "
                           f"it; give at most {context} or drop --seq-len")
        self.seq_len = cfg.seq_len or context
        self.block_size = base.get("objective", {}).get("block_size")
        if run.kind.blocked:
            run.kind.check_context(self.seq_len, self.block_size, "--seq-len")
        rows = read_rows(cfg.sft_data)
        template, bos = base.get("chat_template"), base.get("bos_token", "")
        # every row that fits takes part: rows too long are dropped before the split, so a
        # held-out row that is too long does not empty the held-out set
        examples, self.skipped = encode_rows(rows, tokenizer, self.seq_len, template, bos,
                                             cfg.sft_data)
        if self.skipped and run.dist.is_main:
            print(f"dlm: skipped {self.skipped} of {len(rows)} rows of {cfg.sft_data}: longer "
                  f"than the context of {self.seq_len} tokens (prompt + answer + EOS)",
                  file=sys.stderr)
        train, val = split_rows(examples)
        self.n_rows = len(train)
        sequences = collate(train, tokenizer.eos_id, length=self.seq_len).numpy()
        self.loader = EpochLoader(sequences, cfg.batch_size, cfg.seed, run.dist.rank,
                                  run.dist.world_size)
        self.val_batch = collate(val, tokenizer.eos_id)
        self.val_chunks = self.val_batch[:, 0]  # what the trainer reports as eval tokens
        self.train_stream_tokens = sum(len(e.prompt) + len(e.answer) + 1 for e in train)

    def build_network(self, run) -> Transformer:
        network = self.base_network
        network.config = self.net_config
        for module in network.modules():  # the fine-tuning dropout
            if isinstance(module, torch.nn.Dropout):
                module.p = self.cfg.dropout
        if self.cfg.lora:  # the base stays frozen in its stored dtype; the adapter is fp32
            self.base_params = base_params(network)
            self.trainable = add_lora(network, LoraSpec.parse(self.cfg.lora), LORA_NAME)
            return network.train()
        return network.float().train()  # loaded checkpoints come in eval mode

    @property
    def _base_ref(self) -> str:
        """Where a LoRA run finds its base: a hub id as given, a folder as an absolute path."""
        src = self.cfg.init_from
        return src if src.startswith("hf:") else str(Path(src).resolve())

    def attention(self, run):
        return run.kind.attention(self.block_size)

    def objective(self, run):
        return run.kind.sft_loss(self.tokenizer.mask_id, self.tokenizer.eos_id,
                                 self.block_size, self.cfg.schedule)

    def save_model(self, run, path: Path) -> None:
        """Weights, tokenizer and config.json; a LoRA run: the adapter instead of weights."""
        save_model_dir(path, run.network, self.tokenizer, self.model_config(run),
                       weights=not self.cfg.lora)
        if self.cfg.lora:
            save_adapter(path, run.network, LORA_NAME, base=self._base_ref)

    def load_weights(self, run, path: Path) -> dict:
        if not self.cfg.lora:
            return load_weights_into(run.network, path, run.device)
        fill_adapter(run.network, path, LORA_NAME)
        return read_config(path)

    def evaluate(self, run) -> EvalResult:
        """Held-out answers (and their EOS) given their prompts: -log p in nats per token and
        bits per answer byte. Diffusion: the mean of ``eval_t_samples`` independent draws of
        LLaDA's estimator (one mask count and mask each, fixed seeds so every evaluation of a
        run uses the same draws) with the standard error from their spread (block diffusion:
        the block ELBO: ``Kind.answer_draws``); AR: exact."""
        ids, answer = self.val_batch[:, 0], self.val_batch[:, 1].bool()
        target = up_to_first_eos(ids, answer, self.tokenizer.eos_id)
        valid = ~answer | target  # the EOS padding after the first EOS is not context
        was_training = run.network.training
        run.network.eval()
        try:  # eval_t_samples one-draw estimates (their spread: the error); exact kinds: one
            with torch.no_grad(), autocast(run.device):
                draws = run.kind.answer_draws(
                    run.network, run.objective, self.val_batch.to(run.device),
                    target.to(run.device), valid.to(run.device), self.cfg.eval_t_samples,
                    mask_id=self.tokenizer.mask_id,
                    batch_size=max(1, self.cfg.batch_size // self.cfg.grad_accum))
        finally:
            run.network.train(was_training)
        n_tokens = int(target.sum())
        n_bytes = int(self.tokenizer.token_bytes[ids[target].numpy()].sum())
        nats, se = -draws.mean().item(), 0.0
        if len(draws) > 1:  # the Monte-Carlo standard error of the mean of the draws
            se = draws.std().item() / math.sqrt(len(draws))
        exact = run.kind.exact
        return EvalResult(kind=run.kind.name, nats_per_token=nats / n_tokens,
                          bits_per_byte=nats / LN2 / max(n_bytes, 1),
                          se_bits_per_byte=se / LN2 / max(n_bytes, 1),
                          upper_bound=not exact, n_chunks=len(ids), n_tokens=n_tokens,
                          n_bytes=n_bytes, t_samples=None if exact else
                          self.cfg.eval_t_samples, seed=0)

    def plot_title(self, run) -> str:
        return (f"{self.cfg.kind} SFT · {Path(self.cfg.init_from).name} · "
                f"{Path(self.cfg.sft_data).name}" + (" · LoRA" if self.cfg.lora else ""))

    def model_config(self, run) -> dict:
        keep = {k: self.base_config[k] for k in ("objective", "source", "chat_template",
                                                 "bos_token", "sft_of")
                if k in self.base_config}
        generation = sft_generation(self.cfg.kind, self.base_config.get("generation"))
        net = run.network.config
        return {
            **keep,
            **({"generation": generation} if generation else {}),
            "kind": self.cfg.kind,
            "dlm_version": __version__,
            "data": {"sft_data": self.cfg.sft_data, "rows": self.n_rows,
                     "skipped_too_long": self.skipped, "seq_len": self.seq_len,
                     "epochs": self.loader.epochs_at(run.step)},
            "sft_of": self.cfg.init_from,
            "train": self.cfg.to_dict(),
            "step": run.step,
            "params": self.base_config.get("params", {}) if self.cfg.lora else
            {"total": run.network.num_params(),
             "non_embedding": run.network.num_params(non_embedding=True)},
            **({"adapter": {"base": self._base_ref, "base_params": self.base_params,
                            "base_kind": self.cfg.kind, "base_vocab_size": net.vocab_size,
                            "base_d_model": net.d_model, "lora": self.cfg.lora,
                            "trainable_params": self.trainable}}
               if self.cfg.lora else {}),
            "eval": run.last_eval.to_dict() if run.last_eval else None,
        }
