"""``SampleConfig``: the one set of decoding knobs shared by the Python API, the CLI, the server
and workflow nodes. CLI flags are generated from these fields (``--gen-length`` etc.).

AR models read only ``gen_length`` (max new tokens), ``temperature``, ``top_k``, ``top_p``,
``seed`` and ``stop``; the diffusion-only knobs (``steps``, ``block_length``, ``remasking``) are
ignored for them, because AR decoding is the special case "blocks of one token, one step each".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import DLMError

REMASKING = ("low_confidence", "random")


@dataclass
class SampleConfig:
    steps: int = field(default=64, metadata={"help": "denoising steps in total (diffusion)"})
    gen_length: int = field(default=128, metadata={"help": "tokens to generate (AR: at most)"})
    block_length: int | None = field(default=None, metadata={
        "help": "semi-autoregressive block size (diffusion); default: one block of gen_length"})
    remasking: str = field(default="low_confidence", metadata={
        "help": "which masked positions to commit each step", "choices": REMASKING})
    temperature: float = field(default=0.0, metadata={
        "help": "0 = greedy; >0 samples with Gumbel noise on the logits"})
    top_k: int | None = field(default=None, metadata={"help": "keep only the k most likely tokens"})
    top_p: float | None = field(default=None, metadata={"help": "nucleus sampling mass (0, 1]"})
    seed: int = field(default=0, metadata={"help": "random seed for noise and random remasking"})
    stop_at_eos: bool = field(default=True, metadata={"help": "cut the text at the first EOS"})
    stop: list[str] | None = field(default=None, metadata={
        "help": "stop strings: the text is cut before the first one"})

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> SampleConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise DLMError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
        return SampleConfig(**{**asdict(self), **changes})

    def validate(self) -> SampleConfig:
        if self.gen_length < 1:
            raise DLMError(f"gen_length must be >= 1 (got {self.gen_length})")
        if self.steps < 1:
            raise DLMError(f"steps must be >= 1 (got {self.steps})")
        if self.remasking not in REMASKING:
            raise DLMError(f"unknown remasking {self.remasking!r}; choose from "
                           f"{', '.join(REMASKING)}")
        if self.temperature < 0:
            raise DLMError(f"temperature must be >= 0 (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            raise DLMError(f"top_k must be >= 1 (got {self.top_k})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise DLMError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.block_length is not None:
            if self.block_length < 1 or self.gen_length % self.block_length:
                raise DLMError(f"gen_length ({self.gen_length}) must be a multiple of "
                               f"block_length ({self.block_length})")
            blocks = self.gen_length // self.block_length
            if self.steps % blocks:
                raise DLMError(f"steps ({self.steps}) must be a multiple of the number of "
                               f"blocks ({blocks} = gen_length / block_length)")
        return self
