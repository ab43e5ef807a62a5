"""The state of a decode, its steps and its result: the types the driver, search and hooks
share (docs/architecture.md, "The step machine")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from .config import SampleConfig
from .trace import Trace


@dataclass
class Generation:
    tokens: list[list[int]]  # per prompt: the generated part (generate) or the whole canvas
    canvases: list[list[int]]  # per prompt: the final canvas (prompt included, no padding)
    trace: Trace | None
    nfe: int  # network forward calls
    scores: list[float] | None = None  # best-of-N likelihood / beam log-prob of each kept row
    config: SampleConfig | None = None  # the settings decoded with, defaults settled


@dataclass
class DecodeState:
    """What hooks see (and may change in place): every row's canvas and where decoding is."""

    canvas: Tensor  # [R, S] token ids, MASK where undecided, rows left-padded with PAD
    fixed: Tensor  # [R, S] True where the token is given (prompt, template text, padding)
    valid: Tensor  # [R, S] False on left padding
    positions: Tensor  # [R, S] RoPE positions
    confidence: Tensor  # [R, S] score each token had when committed (+inf for given tokens)
    logprob: Tensor  # [R] summed log-probability of committed tokens (beam score)
    step: int = 0  # steps taken so far in total
    block: int = 0
    block_step: int = 0
    start: int = 0  # the current block is canvas[:, start:end]
    end: int = 0
    offset: Tensor | None = None  # [R] canvas slot where each row starts (its left padding)

    def row(self, r: int) -> list[int]:
        """Row r's canvas in its own coordinates (no padding; MASK where undecided)."""
        start = 0 if self.offset is None else int(self.offset[r])
        return self.canvas[r, start:][self.valid[r, start:]].tolist()


@dataclass
class Step:
    """One step's decisions for the current block (what ``_apply`` writes)."""

    x0: Tensor  # [R, L] candidate token per block slot
    score: Tensor  # [R, L] score (-inf where not masked)
    commit: Tensor  # [R, L] bool
    remask: Tensor  # [R, L] bool
    logprob: Tensor  # [R, L] log-probability of x0 under the filtered distribution
    candidates: Tensor  # [R, L, V] the filtered logits x0 was drawn from


LogitsHook = Callable[[int, Tensor, DecodeState], Tensor | None]
TokensHook = Callable[[int, DecodeState], None]


@dataclass
class RowEvent:
    """What one step did to one row, in that row's own coordinates (its canvas starts at 0):
    the positions committed with their tokens, scores and, when ``Decoder.add(top_logprobs=)``
    asks, log-probabilities (under the distribution each was drawn from; ``top``: its k most
    likely tokens), the
    positions re-masked, the masks left, the block, whether the row is done (no more steps
    will come), and ``settled``: the length of the row's prefix that can no longer change
    (what a stream may send as final text)."""

    request: int  # the ``Decoder.add`` call it belongs to
    row: int  # its index in that request (input r, copy j: r * copies + j)
    step: int  # the request's step count
    block: int
    positions: list[int]
    tokens: list[int]
    confidences: list[float]
    remasked: list[int]
    masks_left: int
    done: bool = False
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    settled: int = 0
