"""Loading dispatch: any checkpoint directory -> (network, tokenizer, config).

Above the formats it dispatches to (docs/architecture.md, "Layers"): our own directory
(``formats``), a LoRA run (its base, loaded again through here, with the adapter from
``lora``), or a published LLaDA / Dream / LLaDA-MoE / LLaDA2 directory (``hf``).

    network, tokenizer, config = load_checkpoint("runs/tiny")
    config = checkpoint_config("hf:GSAI-ML/LLaDA-8B-Instruct")   # no weights read
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.tokenizer import Tokenizer
from ..errors import DLMError
from .formats import hub_snapshot, is_dlm_dir, load_model_dir, read_config
from .hf import load_hf_dir, read_hf_dir
from .lora import base_params, load_adapter
from .transformer import Transformer


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, strict: bool = True,
                    base: str | Path | None = None) -> tuple[Transformer, Tokenizer, dict]:
    """Our checkpoint directory (a LoRA run: its base with the adapter loaded), or a published
    LLaDA / Dream one (``models.hf``); ``hf:owner/name`` is downloaded from the Hub first
    (optional huggingface_hub). ``base``: a LoRA run's base, if it moved."""
    path = hub_snapshot(path)
    if is_dlm_dir(path):
        if "adapter" in read_config(path):
            return load_adapter_run(path, device, dtype, base)
        return load_model_dir(path, device, dtype)
    return load_hf_dir(path, device, dtype, strict)


def checkpoint_config(path: str | Path) -> dict:
    """The config of any directory ``load_checkpoint`` reads (ours, a LoRA run, a published
    LLaDA / Dream one), without loading its weights."""
    path = hub_snapshot(path, weights=False)
    if is_dlm_dir(path):
        return read_config(path)
    return read_hf_dir(path)[3]


def load_adapter_run(path: str | Path, device: str | torch.device = "cpu",
                     dtype: torch.dtype | None = None, base: str | Path | None = None):
    """A LoRA run directory (config.json naming its base + the adapter files): the base
    checkpoint with the adapter loaded at weight 1. ``base`` overrides the recorded path."""
    path = Path(path)
    config = read_config(path)
    info = config["adapter"]
    base = base or info["base"]
    if not str(base).startswith("hf:") and not Path(base).is_dir():
        raise DLMError(f"{path}: its base checkpoint {base} is missing; put it back or give "
                       "its new place (--base PATH, or dlm.load(run, base=PATH))")
    network, tokenizer, base_config = load_checkpoint(base, device, dtype)
    expected = info.get("base_params")
    if expected is not None and base_params(network) != expected:
        raise DLMError(f"{path}: trained on a base of {expected:,} parameters, but {base} has "
                       f"{base_params(network):,}")
    load_adapter(network, path, kind=base_config["kind"])
    return network, tokenizer, config
