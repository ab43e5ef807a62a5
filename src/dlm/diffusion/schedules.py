"""Masking schedules alpha(t): the probability that a token is still *unmasked* at time t.

At t=0 the text is clean (alpha=1); at t=1 everything is masked (alpha=0). The masked-diffusion
ELBO weights the cross-entropy of each masked token by  w(t) = -alpha'(t) / (1 - alpha(t)),
which is 1/t for the linear schedule (MDLM, LLaDA).

    sched = get_schedule("linear")
    sched.mask_prob(t), sched.weight(t)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import DLMError


class Schedule:
    name = "base"

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def alpha_prime(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def mask_prob(self, t: Tensor) -> Tensor:
        return 1.0 - self.alpha(t)

    def weight(self, t: Tensor) -> Tensor:
        """ELBO weight of a masked token's cross-entropy at time t: -alpha'(t) / (1 - alpha(t))."""
        return -self.alpha_prime(t) / (1.0 - self.alpha(t))


class LinearSchedule(Schedule):
    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def alpha_prime(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def weight(self, t: Tensor) -> Tensor:
        return 1.0 / t  # exact form, avoids 1 - (1 - t) rounding


class CosineSchedule(Schedule):
    """alpha(t) = cos(pi t / 2): fewer masks early, more late."""

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def alpha_prime(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


SCHEDULES = {s.name: s for s in (LinearSchedule, CosineSchedule)}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise DLMError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return SCHEDULES[name]()
