"""``dlm.load(dir)`` -> ``Model``: a network + tokenizer + config facade (DESIGN.md contract).

    model = dlm.load("runs/mdlm-tiny")
    out = model.generate("ROMEO:", steps=64, gen_length=128, trace=True)
    out.text, out.trace
    model.network       # the nn.Module: ids [B, T] -> logits [B, T, V]
    model.tokenizer     # encode(str) -> list[int], decode(list[int]) -> str
    model.mask_id, model.eos_id
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data.corpora import load_corpus
from .data.loader import token_stream
from .data.tokenizer import Tokenizer
from .devices import autocast, resolve_device
from .diffusion.likelihood import EvalResult, eval_chunks, evaluate
from .diffusion.objectives import attention_for
from .errors import DLMError
from .models.formats import load_model_dir, save_model_dir
from .models.transformer import Transformer
from .sample.config import SampleConfig
from .sample.driver import generate
from .sample.trace import Trace


@dataclass
class GenerationResult:
    text: str | list[str]  # a list when a list of prompts was given
    tokens: list[list[int]]  # generated token ids per row, before cutting at EOS/stop
    trace: Trace | None
    nfe: int
    config: SampleConfig


class Model:
    def __init__(self, network: Transformer, tokenizer: Tokenizer, config: dict):
        self.network, self.tokenizer, self.config = network, tokenizer, config
        self.kind: str = config["kind"]

    # --- contract names -----------------------------------------------------------------------
    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def max_seq_len(self) -> int:
        return self.network.config.max_seq_len

    def __repr__(self) -> str:
        return (f"Model(kind={self.kind!r}, params={self.network.num_params():,}, "
                f"tokenizer={self.tokenizer.kind!r}, context={self.max_seq_len})")

    # --- generation ---------------------------------------------------------------------------
    def sample_config(self, **fields) -> SampleConfig:
        return SampleConfig().replace(**fields).validate()

    def generate(self, prompt: str | list[str], trace: bool = False,
                 config: SampleConfig | None = None, **fields) -> GenerationResult:
        """Generate after a prompt (or a list of prompts, batched).

        Fields are ``SampleConfig``'s: steps, gen_length, block_length, remasking,
        temperature, top_k, top_p, seed, stop_at_eos, stop. AR models ignore the
        diffusion-only ones (steps, block_length, remasking).
        """
        cfg = (config or SampleConfig()).replace(**fields).validate()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids = [self.tokenizer.encode(p) for p in prompts]
        gen = generate(self.network, ids, cfg, kind=self.kind, mask_id=self.mask_id,
                       eos_id=self.eos_id, pad_id=self.pad_id, record_trace=trace)
        texts = [self.decode_generated(t, cfg) for t in gen.tokens]
        return GenerationResult(texts[0] if isinstance(prompt, str) else texts, gen.tokens,
                                gen.trace, gen.nfe, cfg)

    def decode_generated(self, tokens: list[int], cfg: SampleConfig) -> str:
        """Generated ids -> text: cut at the first EOS, drop MASK/PAD, cut at stop strings."""
        if cfg.stop_at_eos and self.eos_id in tokens:
            tokens = tokens[: tokens.index(self.eos_id)]
        tokens = [t for t in tokens if t not in (self.mask_id, self.pad_id, self.eos_id)]
        text = self.tokenizer.decode(tokens)
        for s in cfg.stop or []:
            if s and s in text:
                text = text[: text.index(s)]
        return text

    # --- likelihood ---------------------------------------------------------------------------
    def evaluate(self, data: str | None = None, eval_tokens: int | None = None,
                 t_samples: int | None = None, seed: int = 0, batch_size: int = 32,
                 text_field: str | None = None) -> EvalResult:
        """Held-out nats/token and bits/byte on the validation split of ``data`` (default: the
        corpus the model was trained on, with the same held-out chunks as training used)."""
        train_cfg = self.config.get("train", {})
        data = data or train_cfg.get("data") or self.config.get("data", {}).get("corpus")
        if not data:
            raise DLMError("this checkpoint does not say what it was trained on: pass --data")
        corpus = load_corpus(data, text_field or train_cfg.get("text_field", "text"))
        stream = token_stream(self.tokenizer.encode_batch(corpus.validation), self.eos_id)
        if eval_tokens is None:
            eval_tokens = train_cfg.get("eval_tokens", 32768)
        if eval_tokens < 1:
            raise DLMError(f"eval_tokens must be >= 1 (got {eval_tokens})")
        if t_samples is None:
            t_samples = train_cfg.get("eval_t_samples", 8)
        chunks = eval_chunks(stream, self.max_seq_len, eval_tokens)
        if len(chunks) == 0:
            raise DLMError(f"held-out split of {data!r} is shorter than one chunk")
        with autocast(self.device):
            return evaluate(self.network, self.kind, chunks, self.tokenizer.token_bytes,
                            mask_id=self.mask_id, bos_id=self.eos_id,
                            t_samples=t_samples,
                            seed=seed, batch_size=batch_size)

    def save(self, path: str | Path) -> None:
        save_model_dir(path, self.network, self.tokenizer,
                       {k: v for k, v in self.config.items()
                        if k not in ("format", "format_version", "model", "tokenizer")})


def load(path: str | Path, device: str = "auto", dtype: torch.dtype | None = None) -> Model:
    """Load a checkpoint directory written by ``dlm train`` (or ``Model.save``)."""
    network, tokenizer, config = load_model_dir(path, device=resolve_device(device), dtype=dtype)
    network.default_attention = attention_for(config["kind"])
    return Model(network, tokenizer, config)
