"""Model sizes by name. Parameter counts below are for the byte tokenizer (vocab 259).

* ``tiny``  (1.3 M): trains to a readable Shakespeare sample in ~10 minutes on 2 CPU cores.
  (d=160 beat d=192 at equal wall time: it is 1.35x faster per token and learned as much per
  token; see docs/demo.md.)
* ``small`` (14 M): a few hours on CPU, minutes on a GPU.
* ``base``  (99 M, ~124 M with a 32k BPE vocab): GPU.
"""

from __future__ import annotations

from ..errors import DLMError
from .transformer import TransformerConfig

PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=160, n_layers=4, n_heads=5, max_seq_len=128),
    "small": dict(d_model=384, n_layers=8, n_heads=6, max_seq_len=256),
    "base": dict(d_model=768, n_layers=14, n_heads=12, max_seq_len=1024),
}


def preset_config(name: str, vocab_size: int, **overrides) -> TransformerConfig:
    if name not in PRESETS:
        raise DLMError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    fields = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TransformerConfig(vocab_size=vocab_size, **fields)
