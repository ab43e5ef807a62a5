"""Model sizes by name. Parameter counts below are for the byte tokenizer (vocab 259).

* ``tiny``  (~1.8 M): trains to a readable Shakespeare sample in ~10 minutes on 2 CPU cores.
* ``small`` (~13 M): a few hours on CPU, minutes on a GPU.
* ``base``  (~110 M with a 32k BPE vocab): GPU.
"""

from __future__ import annotations

from ..errors import DLMError
from .transformer import TransformerConfig

PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=192, n_layers=4, n_heads=6, max_seq_len=128),
    "small": dict(d_model=384, n_layers=8, n_heads=6, max_seq_len=256),
    "base": dict(d_model=768, n_layers=12, n_heads=12, max_seq_len=1024),
}


def preset_config(name: str, vocab_size: int, **overrides) -> TransformerConfig:
    if name not in PRESETS:
        raise DLMError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    fields = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TransformerConfig(vocab_size=vocab_size, **fields)
