"""Model kinds as objects, and their registry (docs/architecture.md, "Model kinds").

    from dlm import kinds
    kind = kinds.get("bd3lm")            # or a Kind; unknown names are a clear error
    kind.attention(8), kind.objective(train_cfg, mask_id), kind.logit_shift(network)
    kinds.register(MyKind())             # a new kind: one file, no edit elsewhere

One file per kind (``ar``, ``mdlm``, ``bd3lm``) holds everything that kind decides; no code
outside this package compares a kind's name. ``evaluate`` and ``sequence_logprob`` are the
kind-generic entry points (held-out loss, log-likelihood of target tokens).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from ..diffusion.likelihood import LN2, EvalProgress, EvalResult
from ..errors import DLMError
from .ar import AR
from .base import Kind, network_block_size
from .bd3lm import BD3LM
from .mdlm import MDLM

DEFAULT = MDLM.name  # what ``dlm train`` trains without --kind
_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind, replace: bool = False) -> Kind:
    """Make ``kind`` known by its name (to training, loading, sampling and the CLI)."""
    if not kind.name:
        raise DLMError("a kind needs a name")
    if kind.name in _REGISTRY and not replace and type(_REGISTRY[kind.name]) is not type(kind):
        raise DLMError(f"a kind named {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(kind: str | Kind) -> Kind:
    """The kind of that name (a Kind is returned as it is)."""
    if isinstance(kind, Kind):
        return kind
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):
        raise DLMError(f"unknown model kind {kind!r}; choose from {', '.join(_REGISTRY)}"
                       ) from None


def of_layout(layout: str) -> Kind:
    """The kind whose network a published layout (``models.hf``: llada, dream, llada_moe,
    llada2) holds."""
    for kind in _REGISTRY.values():
        if layout in kind.published:
            return kind
    raise DLMError(f"no registered model kind reads the published {layout} layout")


def find(name: str) -> Kind | None:
    """The kind of that name, or None when none is registered (a trace read from a file)."""
    return _REGISTRY.get(name)


for _kind in (AR, MDLM, BD3LM):
    register(_kind)


def attention_for(kind: str | Kind, block_size: int | None = None):
    """The attention spec a model kind is trained and sampled with."""
    return get(kind).attention(block_size)


def sequence_logprob(network, kind: str | Kind, ids: Tensor, target: Tensor, *, mask_id: int,
                     **kw) -> Tensor:
    """log p(target tokens | the other tokens) per row [R], float64: exact for AR (one causal
    pass), LLaDA's Monte-Carlo bound for diffusion (``diffusion.likelihood``)."""
    return get(kind).sequence_logprob(network, ids, target, mask_id=mask_id, **kw)


def evaluate(network, kind: str | Kind, chunks: Tensor, token_bytes: np.ndarray, *,
             mask_id: int, bos_id: int, t_samples: int = 8, seed: int = 0,
             batch_size: int = 32, block_size: int | None = None,
             progress: bool = False) -> EvalResult:
    """Held-out loss of a network on fixed chunks, in nats/token and bits/byte (exact for an
    exact kind, an upper bound with its Monte-Carlo standard error otherwise).

    ``progress``: show how far it got on stderr (a bar over the chunks with rate and ETA on a
    terminal, a line when it starts and one when it ends otherwise); the numbers are the same
    either way."""
    spec = get(kind)
    if t_samples < 1:
        raise DLMError(f"t_samples must be >= 1 (got {t_samples})")
    if len(chunks) == 0:
        raise DLMError("no held-out chunks to evaluate on")
    was_training = network.training
    network.eval()
    what = f"{len(chunks):,} chunks of {chunks.shape[1]} tokens" + (
        "" if spec.exact else f", {t_samples} mask draws each")
    try:
        with EvalProgress(len(chunks), what, enabled=progress) as bar:
            n_bytes = int(token_bytes[chunks.numpy()].sum())
            n_tokens = chunks.numel()
            mean, var = spec.heldout(network, chunks, mask_id=mask_id, bos_id=bos_id,
                                     t_samples=t_samples, seed=seed, batch_size=batch_size,
                                     block_size=block_size, on_batch=bar.advance)
            total, se = mean.sum().item(), math.sqrt(var.sum().item())
    finally:
        network.train(was_training)
    upper = not spec.exact
    return EvalResult(kind=spec.name, nats_per_token=total / n_tokens,
                      bits_per_byte=total / LN2 / max(n_bytes, 1),
                      se_bits_per_byte=se / LN2 / max(n_bytes, 1), upper_bound=upper,
                      n_chunks=len(chunks), n_tokens=n_tokens, n_bytes=n_bytes,
                      t_samples=t_samples if upper else None, seed=seed if upper else None)


__all__ = ["AR", "BD3LM", "DEFAULT", "MDLM", "Kind", "attention_for", "evaluate", "find", "get",
           "names", "network_block_size", "of_layout", "register", "sequence_logprob",
           "unregister"]
