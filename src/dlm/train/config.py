"""``TrainConfig``: every training knob, once. The CLI flags of ``dlm train`` are generated from
these fields (``lr`` -> ``--lr``); the run's ``config.json`` stores them under ``"train"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .. import kinds
from ..errors import DLMError

# What may differ when resuming a run: everything else must match the saved run.
# out: a run directory is where it lies now (copied or moved, any spelling of its path);
# init_from: a moved base.
RESUME_OVERRIDABLE = frozenset({"resume", "max_minutes", "threads", "device", "log_every",
                                "progress", "init_from", "out"})


def _f(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    kind: str = _f(kinds.DEFAULT, "model kind: " + ", ".join(
        f"{k.name} ({k.help})" for k in map(kinds.get, kinds.names())), choices=kinds.names)
    preset: str = _f("tiny", "model size: tiny | small | base", choices=("tiny", "small", "base"))
    d_model: int | None = _f(None, "override the preset's width")
    n_layers: int | None = _f(None, "override the preset's depth")
    n_heads: int | None = _f(None, "override the preset's attention heads")
    n_kv_heads: int | None = _f(None, "key/value heads (< n_heads = grouped-query attention)")
    data: str = _f("shakespeare", "corpus name (shakespeare, python-stdlib), hf:<name>, "
                   "or a local file/folder (.txt .md .py .jsonl)")
    text_field: str = _f("text", "field holding the text in .jsonl / HF datasets")
    tokenizer: str = _f("byte", "byte | bpe | path/to/tokenizer.json")
    vocab_size: int = _f(4096, "vocabulary size when training a bpe tokenizer")
    out: str | None = _f(None, "run directory (default runs/<kind>-<preset>)")
    seq_len: int | None = _f(None, "training context length (default: the preset's)")
    batch_size: int = _f(32, "global batch size in sequences (per optimizer step, all ranks)")
    grad_accum: int = _f(1, "micro-batches per optimizer step (batch_size is split over them)")
    lr: float = _f(3e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = _f(0.1, "final learning rate as a fraction of the peak")
    lr_schedule: str = _f("cosine", "cosine: warm-up then cosine decay over the run; wsd: "
                          "warm-up, constant, then a linear decay over the last decay_frac of "
                          "the run (any prefix of a wsd run is shared by longer ones, so "
                          "annealed branches can start from it)", choices=("cosine", "wsd"))
    decay_frac: float = _f(0.2, "wsd: share of the run spent decaying")
    warmup_steps: int = _f(100, "linear warm-up steps")
    weight_decay: float = _f(0.1, "AdamW weight decay (on matrices, not on norms or biases)")
    beta2: float = _f(0.99, "AdamW beta2")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0 = off)")
    dropout: float = _f(0.0, "residual dropout")
    ar_token_noise: float = _f(0.0, "ar: replace this share of input tokens with the mask "
                               "token while training (a regulariser; targets stay clean)")
    schedule: str = _f("linear", "masking schedule alpha(t) for mdlm/bd3lm: linear | cosine")
    block_size: int | None = _f(None, "bd3lm: tokens per block, must divide the context "
                                "(default 8)")
    t_low: float | None = _f(None, "bd3lm: clipped schedule, draw t ~ U[t_low, t_high] "
                             "(BD3-LM); default U[0.001, 1]")
    t_high: float | None = _f(None, "bd3lm: upper end of the clipped schedule")
    init_from: str | None = _f(None, "fine-tune: start from this checkpoint (dlm's or a "
                               "published LLaDA/Dream directory); needs --sft-data")
    sft_data: str | None = _f(None, "fine-tune on a .jsonl of {\"messages\": [...]} or "
                              "{\"prompt\", \"response\"} rows (LLaDA's SFT recipe; AR: "
                              "loss on the answer only)")
    lora: str | None = _f(None, "fine-tune a LoRA adapter instead of every weight (PEFT), e.g. "
                          "r=8,alpha=16,dropout=0.05,targets=q,k,v,o (targets: q k v o gate up "
                          "down, or attn / mlp / all); the run saves the adapter beside a "
                          "reference to the base")
    max_steps: int | None = _f(None, "optimizer steps to train")
    max_minutes: float | None = _f(None, "wall-clock budget; alone, it sizes the LR schedule "
                                   "from the measured speed (default 10 when no other limit); "
                                   "on --resume it only moves the hard stop, the schedule's "
                                   "length stays as measured")
    epochs: float | None = _f(None, "passes over the (unique) training tokens")
    unique_tokens: int | None = _f(None, "train only on the first N tokens of the shuffled "
                                   "training stream (repeated for --epochs)")
    eval_every: int = _f(250, "evaluate held-out loss every N steps (and at the end)")
    eval_tokens: int = _f(32768, "held-out tokens to evaluate on (fixed chunks)")
    eval_t_samples: int = _f(8, "mdlm: Monte-Carlo mask draws per held-out chunk")
    ckpt_every: int = _f(500, "write a checkpoint every N steps (and at the end)")
    log_every: int = _f(10, "average and log the training loss every N steps")
    seed: int = _f(0, "random seed (data order, init, masks)")
    resume: bool = _f(False, "continue the run in --out from its last checkpoint")
    threads: int | None = _f(None, "CPU threads per process (default: cores / processes)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    compile: bool = _f(False, "torch.compile the network")
    progress: bool = _f(True, "show a progress bar (only on a terminal)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> TrainConfig:
        if self.kind not in kinds.names():
            raise DLMError(f"unknown kind {self.kind!r}; choose from "
                           f"{', '.join(kinds.names())}")
        spec = kinds.get(self.kind)
        spec.validate_train(self)  # the knobs of other kinds, and this kind's own
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "eval_every": self.eval_every, "ckpt_every": self.ckpt_every,
                    "log_every": self.log_every, "eval_tokens": self.eval_tokens,
                    "eval_t_samples": self.eval_t_samples}
        for name, value in positive.items():
            if value < 1:
                raise DLMError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        for name in ("max_steps", "unique_tokens", "seq_len", "threads", "d_model", "n_layers",
                     "n_heads", "n_kv_heads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DLMError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        for name in ("max_minutes", "epochs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise DLMError(f"--{name.replace('_', '-')} must be > 0 (got {value})")
        if not 0 < self.beta2 < 1:
            raise DLMError(f"--beta2 must be in (0, 1) (got {self.beta2})")
        if self.weight_decay < 0:
            raise DLMError(f"--weight-decay must be >= 0 (got {self.weight_decay})")
        if self.lr_schedule not in ("cosine", "wsd"):
            raise DLMError(f"--lr-schedule must be cosine or wsd (got {self.lr_schedule!r})")
        if not 0 < self.decay_frac <= 1:
            raise DLMError(f"--decay-frac must be in (0, 1] (got {self.decay_frac})")
        if not 0 <= self.min_lr_ratio <= 1:
            raise DLMError(f"--min-lr-ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if self.warmup_steps < 0:
            raise DLMError(f"--warmup-steps must be >= 0 (got {self.warmup_steps})")
        if self.grad_clip < 0:
            raise DLMError(f"--grad-clip must be >= 0 (got {self.grad_clip})")
        if self.tokenizer == "bpe" and self.vocab_size < 260:
            raise DLMError(f"--vocab-size must be at least 260 for bpe (got {self.vocab_size})")
        if self.lr <= 0:
            raise DLMError(f"--lr must be > 0 (got {self.lr})")
        if not 0 <= self.dropout < 1:
            raise DLMError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if not 0 <= self.ar_token_noise < 1:
            raise DLMError(f"--ar-token-noise must be in [0, 1) (got {self.ar_token_noise})")
        if (self.init_from is None) != (self.sft_data is None):
            raise DLMError("fine-tuning needs both --init-from CHECKPOINT and --sft-data FILE")
        if self.lora is not None:
            if self.init_from is None:
                raise DLMError("--lora fine-tunes a checkpoint: give --init-from (dlm sft)")
            from ..models.lora import LoraSpec

            LoraSpec.parse(self.lora)  # a clear error now, not after loading the base
        if self.batch_size % self.grad_accum:
            raise DLMError(f"--batch-size {self.batch_size} is not divisible by "
                           f"--grad-accum {self.grad_accum}")
        return self

    @property
    def run_dir(self) -> str:
        return self.out or f"runs/{self.kind}-{self.preset}"
