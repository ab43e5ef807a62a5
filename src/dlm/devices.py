"""Device names from users ("auto", "cpu", "cuda", "cuda:1") -> torch.device, with clear errors."""

from __future__ import annotations

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
