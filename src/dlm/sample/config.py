"""``SampleConfig``: the one set of decoding knobs shared by the Python API, the CLI, the server
and workflow nodes. CLI flags are generated from these fields (``--gen-length`` etc.).

    SampleConfig(steps=64, gen_length=128, block_length=32)            # LLaDA semi-AR, greedy
    SampleConfig(gen_length=256, block_length=32, threshold=0.9,
                 cache="dual")                                          # Fast-dLLM
    SampleConfig(remasking="entropy", alg_temp=0.5, temperature=0.7)    # Dream-style
    SampleConfig(remask_eta=0.05, remask_variant="cap")                 # ReMDM re-masking
    SampleConfig(num_samples=4, temperature=0.8)                        # best-of-4 by likelihood

Which masked positions to commit is ``remasking`` (a score per position; ``origin`` instead
commits each mask with probability 1 - s/t); how many per step is ``transfer`` (LLaDA's even
split, or from alpha(t)), or dynamic with ``threshold`` / ``factor`` (Fast-dLLM: then a block
runs until it has no masks and ``steps`` is not used). AR models read only ``gen_length`` (max
new tokens), ``temperature``, ``top_k``, ``top_p``, ``seed``, ``stop``, ``min_length``,
``num_samples`` and ``beam_width``: AR decoding is "blocks of one token, one step each".
``infill`` and ``edit`` fill the masks of their canvas, so ``gen_length``, ``min_length`` and
``stop`` do not apply to them.

Defaults that depend on the model are left ``None`` here and settled by the driver
(``sample.driver``), which knows the context and the prompt: ``gen_length`` is
``DEFAULT_GEN_LENGTH`` cut to what fits the context after the longest prompt (a masked
diffusion canvas must fit whole; AR and bd3lm slide), ``steps`` is half the masked slots, at
least one per block (``plan_blocks`` in the driver: given steps go to the blocks in proportion
to their masks; for equal blocks that is LLaDA's even split). AR ignores the diffusion knobs
(``dlm.kinds.ar.AR_IGNORES``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from ..errors import DLMError

REMASKING = ("low_confidence", "random", "margin", "entropy", "origin")
TRANSFER = ("even", "linear", "cosine", "dream")
CONFIDENCE = ("model", "sampled")
CACHES = ("none", "prefix", "dual", "exact")
REMASK_VARIANTS = ("cap", "rescale", "conf")
DEFAULT_GEN_LENGTH = 128  # new tokens when gen_length is not given (mdlm: at most what fits)
MAX_GEN_LENGTH = 1 << 16  # a longer request is refused (AR and bd3lm could slide on for hours)


def field_named(message: str) -> str | None:
    """The first ``SampleConfig`` field a message names (the setting an error is about)."""
    names = {f.name for f in fields(SampleConfig)}
    return next((w for w in re.findall(r"[a-z_]+", message) if w in names), None)


def _f(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class SampleConfig:
    steps: int | None = _f(None, "denoising steps in total (diffusion), split over the blocks "
                           "in proportion to their masks, at least one each; default: half "
                           "of each block's masks")
    gen_length: int | None = _f(None, "tokens to generate (AR: at most); default: "
                                f"{DEFAULT_GEN_LENGTH}, cut to what fits the model's context "
                                "after the prompt where the canvas must fit whole (mdlm; "
                                "bd3lm without its cache)")
    block_length: int | None = _f(None, "semi-autoregressive block size (diffusion); "
                                        "default: one block of gen_length; a gen_length "
                                        "that is not a multiple leaves the last block shorter")
    remasking: str = _f("low_confidence", "score deciding which masked positions to commit: "
                        "probability, random, top1-top2 margin, -entropy; origin = Dream's "
                        "commit-each-with-probability-1-s/t", choices=REMASKING)
    transfer: str = _f("even", "how many to commit per step: LLaDA's even split per block, "
                       "from the linear / cosine alpha(t) schedule, or Dream's: int(m * (1 - "
                       "s/t)) of the m masks left, t on linspace(1, eps, steps + 1)",
                       choices=TRANSFER)
    eps: float = _f(1e-3, "Dream's last time point: its transfer rule and origin remasking run "
                    "t over linspace(1, eps, steps + 1)")
    confidence: str = _f("model", "the distribution scores are computed on: model = the "
                         "network's (LLaDA), renormalised over the top-k / top-p set; sampled "
                         "= the one tokens are drawn from, temperature included, top-p applied "
                         "before top-k (Dream)",
                         choices=CONFIDENCE)
    alg_temp: float | None = _f(None, "sample positions from softmax(score / alg_temp) instead "
                                "of taking the top ones (Dream)")
    threshold: float | None = _f(None, "Fast-dLLM: commit every masked position whose score "
                                 ">= threshold (at least one) per step")
    factor: float | None = _f(None, "Fast-dLLM's factor rule: commit the n best while the "
                              "n-th score >= 1 - factor / (n + 1)")
    cache: str | None = _f(None, "KV cache: prefix / dual = Fast-dLLM's approximate caches for "
                           "mdlm, refreshed at each block start; exact = bd3lm's cache of "
                           "finished blocks; none = recompute everything. Default: exact for "
                           "bd3lm, none for mdlm (AR always caches)", choices=CACHES)
    cfg_scale: float = _f(0.0, "classifier-free guidance: 0 = off; the unconditional pass "
                          "sees the prompt re-masked (LLaDA)")
    temperature: float = _f(0.0, "0 = greedy; >0 samples with Gumbel noise on the logits")
    top_k: int | None = _f(None, "keep only the k most likely tokens")
    top_p: float | None = _f(None, "nucleus sampling mass (0, 1]")
    min_length: int = _f(0, "EOS is not allowed in the first min_length generated tokens")
    remask_eta: float = _f(0.0, "ReMDM: re-mask committed tokens at rate eta per step so "
                           "they can be revised; 0 = off")
    remask_variant: str = _f("cap", "ReMDM sigma: cap = min(eta, max), rescale = eta * max, "
                             "conf = cap, re-masking the least confident first",
                             choices=REMASK_VARIANTS)
    remask_t_on: float = _f(1.0, "ReMDM loop window: re-mask only while t in "
                            "[remask_t_off, remask_t_on] (t goes 1 -> 0 in a block)")
    remask_t_off: float = _f(0.0, "end of the ReMDM window; inside a window narrower than "
                             "[0, 1] the number of masks is held constant (ReMDM-loop)")
    num_samples: int = _f(1, "best-of-N: draw N samples per prompt, keep the one with the "
                          "highest likelihood under the model itself")
    beam_width: int = _f(1, "beam search over canvases ranked by the summed log-probability "
                         "of committed tokens")
    rank_t_samples: int = _f(8, "Monte-Carlo draws for the likelihood that ranks best-of-N "
                             "(diffusion models)")
    seed: int = _f(0, "random seed for noise and random remasking")
    stop_at_eos: bool = _f(True, "cut the text at the first EOS")
    stop: list[str] | None = _f(None, "stop strings: the text is cut before the first one")

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # one stop string, not its characters
            self.stop = [self.stop]

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> SampleConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise DLMError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
        return SampleConfig(**{**asdict(self), **changes})

    @property
    def dynamic(self) -> bool:
        """True when the number committed per step depends on the scores (threshold, factor)."""
        return self.threshold is not None or self.factor is not None

    def validate(self) -> SampleConfig:
        """Raise DLMError on a bad setting. gen_length need not be a multiple of block_length
        (the last block is shorter), nor steps of the number of blocks (see ``block_steps``
        in the driver); the rules that need the model and the prompt are the driver's."""

        def bad(msg: str):
            raise DLMError(msg, param=field_named(msg))

        for f in fields(self):  # the Python API gets no argparse type checks
            value, kind = getattr(self, f.name), f.type.replace(" | None", "")
            if value is None and "None" in f.type:
                continue
            ok = {"int": isinstance(value, int) and not isinstance(value, bool),
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value),
                  "str": isinstance(value, str), "bool": isinstance(value, bool),
                  "list[str]": isinstance(value, list)
                  and all(isinstance(x, str) for x in value)}.get(kind, True)
            if not ok:
                bad(f"{f.name} must be {'a finite number' if kind == 'float' else kind} "
                    f"(got {value!r})")
        if self.gen_length is not None and not 1 <= self.gen_length <= MAX_GEN_LENGTH:
            bad(f"gen_length must be in 1..{MAX_GEN_LENGTH} (got {self.gen_length})")
        if self.steps is not None and self.steps < 1:
            bad(f"steps must be >= 1 (got {self.steps})")
        for name, choices in (("remasking", REMASKING), ("transfer", TRANSFER),
                              ("confidence", CONFIDENCE),
                              ("cache", CACHES), ("remask_variant", REMASK_VARIANTS)):
            if getattr(self, name) not in choices and not (name == "cache" and
                                                          self.cache is None):
                bad(f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(choices)}")
        if not 0 < self.eps < 1:
            bad(f"eps must be in (0, 1) (got {self.eps})")
        if self.temperature < 0:
            bad(f"temperature must be >= 0 (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            bad(f"top_k must be >= 1 (got {self.top_k})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.alg_temp is not None and self.alg_temp < 0:
            bad(f"alg_temp must be >= 0 (got {self.alg_temp})")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            bad(f"threshold must be in (0, 1] (got {self.threshold})")
        if self.factor is not None and self.factor <= 0:
            bad(f"factor must be > 0 (got {self.factor})")
        if self.threshold is not None and self.factor is not None:
            bad("choose one of threshold and factor, not both")
        if self.remasking == "origin" and (self.dynamic or self.alg_temp):
            bad("remasking='origin' decides how many to commit itself: drop threshold, "
                "factor and alg_temp")
        if self.dynamic and self.remasking == "entropy":
            bad("threshold / factor compare a probability-like score in [0, 1]; -entropy is "
                "<= 0: use remasking low_confidence or margin")
        if self.dynamic and self.alg_temp:
            bad("threshold / factor commit the positions above the threshold: drop alg_temp")
        if self.cfg_scale < 0:
            bad(f"cfg_scale must be >= 0 (got {self.cfg_scale})")
        if self.min_length < 0:
            bad(f"min_length must be >= 0 (got {self.min_length})")
        if self.remask_eta < 0:
            bad(f"remask_eta must be >= 0 (got {self.remask_eta})")
        if self.remask_eta > 0 and (self.dynamic or self.remasking == "origin"):
            bad("remask_eta works with a fixed number of steps: drop threshold / factor / "
                "origin")
        if not 0 <= self.remask_t_off < self.remask_t_on <= 1:
            bad(f"need 0 <= remask_t_off < remask_t_on <= 1 (got {self.remask_t_off}, "
                f"{self.remask_t_on})")
        if self.remask_t_on == 1 and self.remask_t_off > 0:
            bad("a ReMDM-loop window holds the number of masks, so it must start after some "
                "tokens are committed: use remask_t_on < 1")
        if self.remask_eta > 0 and self.remask_variant == "conf" and \
                self.remasking in ("random", "origin"):
            bad("remask_variant='conf' re-masks the least confident tokens: it needs "
                "remasking low_confidence, margin or entropy")
        for name in ("num_samples", "beam_width", "rank_t_samples"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.num_samples > 1 and self.beam_width > 1:
            bad("choose one of num_samples (best-of-N) and beam_width, not both")
        if self.num_samples > 1 and self.temperature == 0 and self.remasking not in (
                "random", "origin") and not self.alg_temp:
            bad("best-of-N needs different samples: set temperature > 0 (or remasking "
                "random / origin, or alg_temp)")
        if self.block_length is not None and self.block_length < 1:
            bad(f"block_length must be >= 1 (got {self.block_length})")
        return self
