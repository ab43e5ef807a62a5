"""Device names from users ("auto", "cpu", "cuda", "cuda:1") -> torch.device, with clear errors."""

from __future__ import annotations

import contextlib

import torch

from .errors import DLMError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DLMError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DLMError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:  # "cuda" under torchrun: one GPU a rank
        device = torch.device("cuda", local_rank)
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 elsewhere (the safe default on CPU)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
