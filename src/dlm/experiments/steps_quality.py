"""``dlm experiment steps-quality``: what do fewer denoising steps cost, and is a small model
with many steps worth a big model with few?

For each diffusion checkpoint (one, or several sizes trained on the same data) the sweep decodes
the same held-out prompts with

* a fixed number of steps (``fractions`` of ``gen_length``) and each step-count ``strategy``
  (low_confidence, random, margin, entropy: which positions are committed first), and
* confidence thresholds (Fast-dLLM: commit every position above tau; the step count follows),

and measures quality (generative perplexity under an AR judge trained on the same data, and
unigram entropy to catch repetition) against network calls (NFE) and wall time. The judge's own
samples are the reference row. Outputs in ``out``: results.csv, samples.jsonl (one text per
setting), curves.png and report.md.

    exp = StepsQuality(checkpoints=("runs/small", "runs/big"), judge="runs/ar")
    run(exp)
"""

from __future__ import annotations

import csv
import json
import math
import platform
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import DLMError
from ..kinds import AR
from ..sample.config import DEFAULT_GEN_LENGTH
from ..version import __version__
from .quality import (
    decode_timed,
    gen_perplexity,
    held_out_prompts,
    text_tokens,
    unigram_entropy,
)

STRATEGIES = ("low_confidence", "random", "margin", "entropy")


JUDGE = AR.name  # the strategy of the reference row: the AR judge's own samples


@dataclass
class Row:
    model: str  # the checkpoint's folder name
    params: int
    strategy: str  # low_confidence | random | ... | threshold | ar (the judge's own samples)
    steps: int  # planned steps (threshold: 0, the decoder decides)
    threshold: float  # NaN unless strategy == "threshold"
    nfe: float  # network calls per sample, measured
    wall_s: float  # seconds per sample
    tokens_per_s: float
    gen_ppl: float
    entropy: float  # mean unigram entropy of a sample, bits

    @property
    def label(self) -> str:
        if self.strategy == "threshold":
            return f"threshold {self.threshold:g}"
        if self.strategy == JUDGE:
            return "AR judge's own samples"
        return f"{self.strategy}, {self.steps} steps"


@dataclass
class StepsQuality:
    checkpoints: tuple[str, ...]
    judge: str
    out: str = "runs/steps-quality"
    gen_length: int | None = None  # default: 128, or what fits every context (``fit_gen_length``)
    block_length: int | None = None  # default: one block of gen_length (bd3lm: its own)
    prompts: int = 8
    prompt_length: int = 32
    fractions: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    strategies: tuple[str, ...] = ("low_confidence", "random")
    thresholds: tuple[float, ...] = (0.9, 0.7, 0.5)
    temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"
    command: str | None = None

    def validate(self) -> StepsQuality:
        if not self.checkpoints:
            raise DLMError("give at least one diffusion checkpoint")
        for s in self.strategies:
            if s not in STRATEGIES:
                raise DLMError(f"--strategies: unknown strategy {s!r} ({', '.join(STRATEGIES)})")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise DLMError("--fractions must lie in (0, 1]")
        if any(not 0 < t < 1 for t in self.thresholds):
            raise DLMError("--thresholds must lie in (0, 1)")
        if (self.gen_length is not None and self.gen_length < 1) or self.prompts < 1 or \
                self.prompt_length < 1:
            raise DLMError("need --gen-length, --prompts and --prompt-length >= 1")
        if not (self.fractions and self.strategies) and not self.thresholds:
            raise DLMError("nothing to sweep: give --fractions with --strategies, or "
                           "--thresholds")
        return self

    def steps_for(self, fraction: float, blocks: int) -> int:
        """Steps for a fraction of gen_length, a multiple of the block count, at least one per
        block."""
        return max(blocks, round(fraction * self.gen_length / blocks) * blocks)


def _load(path: str, device: str, want_diffusion: bool):
    from ..pipeline import load

    model = load(path, device=device)
    if want_diffusion and model.spec.exact:
        raise DLMError(f"{path} is an autoregressive model; steps-quality sweeps diffusion "
                       "checkpoints (pass AR models as --judge)")
    if not want_diffusion and not model.spec.exact:
        raise DLMError(f"--judge {path} is a {model.kind} model; the judge must be "
                       "autoregressive (dlm train --kind ar on the same data)")
    return model


def fit_gen_length(exp: StepsQuality, models: list, judge) -> int:
    """``exp.gen_length``, or by default 128 new tokens cut to what fits after the prompt in
    every model's context and the judge's (which also reads a BOS), in whole blocks."""
    if exp.gen_length is not None:
        return exp.gen_length
    room = min([m.max_seq_len - exp.prompt_length for m in models]
               + [judge.max_seq_len - 1 - exp.prompt_length])
    step = math.lcm(*[m.block_size or exp.block_length or 1 for m in models])
    gen = min(DEFAULT_GEN_LENGTH, room) // step * step
    if gen < 1:
        raise DLMError(f"--prompt-length {exp.prompt_length} leaves no room to generate in a "
                       f"context of {room + exp.prompt_length} tokens")
    return gen


def settings(exp: StepsQuality, model) -> list[tuple[str, dict, dict]]:
    """(strategy, SampleConfig fields, row fields) of every decode of one model."""
    block = model.block_size or exp.block_length or exp.gen_length
    if exp.gen_length % block:
        raise DLMError(f"--gen-length {exp.gen_length} is not a multiple of the block length "
                       f"{block}")
    blocks = exp.gen_length // block
    base = dict(gen_length=exp.gen_length, temperature=exp.temperature, seed=exp.seed,
                stop_at_eos=False,
                block_length=None if model.spec.blocked else block)  # bd3lm: its own
    out = []
    for strategy in exp.strategies:
        for steps in sorted({exp.steps_for(f, blocks) for f in exp.fractions}):
            out.append((strategy, dict(base, steps=steps, remasking=strategy),
                        dict(steps=steps, threshold=math.nan)))
    for tau in exp.thresholds:
        out.append(("threshold", dict(base, threshold=tau), dict(steps=0, threshold=tau)))
    return out


def claim_folder(out: str | Path) -> None:
    """Refuse an ``--out`` that already holds something: the sweep writes every file anew and
    would replace an earlier sweep's results (an empty folder is fine)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DLMError(f"{out} already exists (an earlier sweep's results?); choose another "
                       "--out or remove it")


def command_line(exp: StepsQuality) -> str:
    """The ``dlm experiment steps-quality`` command that runs ``exp``, quoted for a shell (so an
    empty ``--thresholds ''`` survives a paste); for sweeps not started from the command
    line."""
    import shlex

    def nums(values) -> str:
        return ",".join(f"{v:.12g}" for v in values)

    args = ["dlm", "experiment", "steps-quality", *exp.checkpoints, "--judge", exp.judge,
            "--out", exp.out]
    if exp.gen_length is not None:
        args += ["--gen-length", str(exp.gen_length)]
    if exp.block_length is not None:
        args += ["--block-length", str(exp.block_length)]
    args += ["--prompts", str(exp.prompts), "--prompt-length", str(exp.prompt_length),
             "--fractions", nums(exp.fractions), "--strategies", ",".join(exp.strategies),
             "--thresholds", nums(exp.thresholds), "--temperature", f"{exp.temperature:g}",
             "--seed", str(exp.seed), "--device", exp.device]
    return shlex.join(args)


def run(exp: StepsQuality, progress=print) -> list[Row]:
    """Decode every setting of every checkpoint, score it, and write the outputs."""
    from rich.progress import Progress

    exp.validate()
    claim_folder(exp.out)
    judge = _load(exp.judge, exp.device, want_diffusion=False)
    models = [(Path(p).name, _load(p, exp.device, want_diffusion=True))
              for p in exp.checkpoints]
    if len({name for name, _ in models}) < len(models):
        raise DLMError("checkpoint folders need distinct names (they label the plot)")
    exp = replace(exp, gen_length=fit_gen_length(exp, [m for _, m in models], judge))
    for name, m in models:
        if m.max_seq_len < exp.prompt_length + exp.gen_length:
            raise DLMError(f"{name}: context {m.max_seq_len} is shorter than --prompt-length + "
                           f"--gen-length ({exp.prompt_length + exp.gen_length})")
        if m.tokenizer.kind != judge.tokenizer.kind or \
                m.tokenizer.vocab_size != judge.tokenizer.vocab_size:
            raise DLMError(f"{name} and the judge use different tokenizers")
    if judge.max_seq_len < 1 + exp.prompt_length + exp.gen_length:
        raise DLMError(f"the judge's context {judge.max_seq_len} is shorter than a BOS + "
                       f"--prompt-length + --gen-length ({1 + exp.prompt_length + exp.gen_length})")
    prompts = held_out_prompts(models[0][1], exp.prompts, exp.prompt_length)
    plan = [(name, m, *s) for name, m in models for s in settings(exp, m)]
    rows, samples = [], []
    with Progress(transient=True) as bar:
        task = bar.add_task("decoding", total=len(plan) + 1)
        for name, model, strategy, fields_, extra in plan:
            rows.append(_measure(name, model, strategy, fields_, extra, prompts, judge, samples))
            bar.advance(task)
            progress(f"{name}: {rows[-1].label}: NFE {rows[-1].nfe:.1f}, gen. ppl "
                     f"{rows[-1].gen_ppl:.2f}, entropy {rows[-1].entropy:.2f} bits")
        rows.append(_measure(Path(exp.judge).name, judge, JUDGE,
                             dict(gen_length=exp.gen_length, temperature=exp.temperature,
                                  seed=exp.seed, stop_at_eos=False),
                             dict(steps=exp.gen_length, threshold=math.nan), prompts, judge,
                             samples))
        bar.advance(task)
    write(exp, rows, samples)
    return rows


def _measure(name, model, strategy, sample_fields, extra, prompts, judge, samples) -> Row:
    d = decode_timed(model, prompts, **sample_fields)
    row = Row(name, model.network.num_params(), strategy, nfe=d.nfe,
              wall_s=d.seconds / len(prompts), tokens_per_s=d.tokens_per_s,
              gen_ppl=gen_perplexity(judge, prompts, d.outputs),
              entropy=sum(unigram_entropy(text_tokens(model, o)) for o in d.outputs)
              / len(d.outputs), **extra)
    text = model.decode_generated(d.outputs[0], model.sample_config(stop_at_eos=True))
    samples.append({"model": name, "setting": row.label,
                    "prompt": model.tokenizer.decode(prompts[0]), "text": text})
    return row


def write(exp: StepsQuality, rows: list[Row], samples: list[dict]) -> None:
    out = Path(exp.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[x.name for x in fields(Row)])
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    _plot(rows, out / "curves.png")
    (out / "report.md").write_text(report(exp, rows))


def matches(rows: list[Row]) -> list[str]:
    """For two or more model sizes: the cheapest setting (wall time) of each smaller model whose
    generative perplexity is at least as good as each setting of the largest ("small model +
    many steps vs big model + few"). Entropies are printed beside: a match with much lower
    entropy is repetition, not quality."""
    diffusion = [r for r in rows if r.strategy != JUDGE and math.isfinite(r.gen_ppl)]
    sizes = sorted({(r.params, r.model) for r in diffusion})
    if len(sizes) < 2:
        return []
    big = sizes[-1][1]
    lines = []
    for b in sorted((r for r in diffusion if r.model == big), key=lambda r: r.nfe):
        for _, small in sizes[:-1]:
            ok = [r for r in diffusion if r.model == small and r.gen_ppl <= b.gen_ppl]
            if ok:
                s = min(ok, key=lambda r: r.wall_s)
                lines.append(f"- {big} with {b.label} (NFE {b.nfe:.0f}, {b.wall_s:.2f} s, ppl "
                             f"{b.gen_ppl:.2f}, entropy {b.entropy:.2f}) is matched by {small} "
                             f"with {s.label} (NFE {s.nfe:.0f}, {s.wall_s:.2f} s, ppl "
                             f"{s.gen_ppl:.2f}, entropy {s.entropy:.2f}): "
                             f"{s.wall_s / b.wall_s:.2f}× the time")
            else:
                lines.append(f"- {big} with {b.label} (ppl {b.gen_ppl:.2f}): no setting of "
                             f"{small} reaches it")
    return lines


def report(exp: StepsQuality, rows: list[Row]) -> str:
    lines = ["# Steps vs quality", "",
             f"Command: `{exp.command or command_line(exp)}`  ",
             f"dlm {__version__}, Python {platform.python_version()}; {exp.prompts} held-out "
             f"prompts of {exp.prompt_length} tokens, {exp.gen_length} new tokens each, batch 1, "
             f"temperature {exp.temperature:g}, seed {exp.seed}; judge `{exp.judge}`.", "",
             "![quality vs NFE and time](curves.png)", "",
             "| model | params | setting | NFE / sample | s / sample | tokens/s | gen. ppl | "
             "unigram entropy (bits) |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.params:,} | {r.label} | {r.nfe:.1f} | {r.wall_s:.3f} | "
                     f"{r.tokens_per_s:.0f} | {r.gen_ppl:.2f} | {r.entropy:.2f} |")
    ref = next((r for r in rows if r.strategy == JUDGE), None)
    if ref is not None:
        lines += ["", f"Reference: the judge's own samples score {ref.gen_ppl:.2f} with entropy "
                  f"{ref.entropy:.2f} bits; a much lower perplexity with a much lower entropy "
                  "means repetitive text, not better text."]
    m = matches(rows)
    if m:
        lines += ["", "## Small model + many steps vs big model + few", "", *m]
    return "\n".join(lines) + "\n"


def _plot(rows: list[Row], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(rows)
    fig.savefig(path, dpi=120)
    plt.close(fig)


FIXED_MS, THRESHOLD_MS = 5, 8


def figure(rows: list[Row]):
    """Quality against NFE and wall time (and entropy against NFE). Fixed-step points are
    filled; threshold points hollow, larger and on top, so a fixed-step point at the same place
    stays visible inside them. Log axes carry plain numbers (the NFE axes: ticks at the measured
    fixed-step counts), thinned so no two labels overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    models = sorted({(r.params, r.model) for r in rows if r.strategy != JUDGE})
    markers = {"low_confidence": "o", "random": "s", "margin": "^", "entropy": "v",
               "threshold": "D"}
    styles = ["-", "--", ":", "-."]
    for i, (_, model) in enumerate(models):
        colour = f"C{i}"
        for strategy, marker in markers.items():
            pts = sorted((r for r in rows if r.model == model and r.strategy == strategy),
                         key=lambda r: r.nfe)
            if not pts:
                continue
            label = f"{model}: {strategy}"
            style = dict(ms=FIXED_MS, zorder=2)
            if strategy == "threshold":
                style = dict(ms=THRESHOLD_MS, zorder=3, markerfacecolor="none", mew=1.3,
                             lw=0.8)
            for ax, (x, y) in zip(axes, (("nfe", "gen_ppl"), ("wall_s", "gen_ppl"),
                                         ("nfe", "entropy"))):
                ax.plot([getattr(r, x) for r in pts], [getattr(r, y) for r in pts],
                        styles[list(markers).index(strategy) % 4], marker=marker,
                        color=colour, label=label, **style)
    for r in rows:
        if r.strategy == JUDGE:
            for ax, y in zip(axes, ("gen_ppl", "gen_ppl", "entropy")):
                ax.axhline(getattr(r, y), color="grey", lw=1, ls=":", label="AR judge's samples")
    for ax, (xl, yl) in zip(axes, (("network calls per sample (NFE)", "generative perplexity"),
                                   ("seconds per sample", "generative perplexity"),
                                   ("network calls per sample (NFE)",
                                    "unigram entropy (bits)"))):
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    nfes = sorted({r.nfe for r in rows if r.strategy not in (JUDGE, "threshold")} or
                  {r.nfe for r in rows if r.strategy != JUDGE})
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    for ax in (axes[0], axes[2]):
        _plain_log_ticks(fig, ax, "x", nfes)
    _plain_log_ticks(fig, axes[1], "x")
    for ax in axes[:2]:
        _plain_log_ticks(fig, ax, "y")
    return fig


def _log_candidates(lo: float, hi: float) -> list[float]:
    """1..9 times each power of ten within [lo, hi], most readable first (1, then 2 and 5)."""
    if not (lo > 0 and hi > lo):
        return []
    out = []
    for m in (1, 2, 5, 3, 4, 6, 7, 8, 9):
        for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
            v = float(f"{m * 10.0 ** e:.6g}")
            if lo <= v <= hi:
                out.append(v)
    return out


def _plain_log_ticks(fig, ax, which: str, values=None) -> None:
    """Plain numeric labels on a log axis (no 2×10¹), no two overlapping: at the measured
    ``values`` where given, else at 1, 2, 5 (then 3, 4, ...) times powers of ten; a candidate
    is kept only where its label clears every label kept before it. Minor ticks unlabelled."""
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    if values:
        inside = sorted(v for v in set(values) if lo <= v <= hi)
        # the ends first, then the rest from small to large
        candidates = inside[:1] + inside[-1:] + inside[1:-1] if len(inside) > 1 else inside
    else:
        candidates = _log_candidates(lo, hi)

    def fmt(v: float) -> str:
        return f"{v:.3g}"

    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=rcParams[f"{which}tick.labelsize"])
    kept: list[tuple[float, float]] = []  # label extents along the axis, in pixels
    chosen = []
    for v in candidates:
        w, h, _ = renderer.get_text_width_height_descent(fmt(v), prop, ismath=False)
        point = ax.transData.transform((v, 1.0) if which == "x" else (1.0, v))
        at = point[0] if which == "x" else point[1]
        half = (w if which == "x" else h) / 2 + 3  # a little air between labels
        if all(at + half <= a or at - half >= b for a, b in kept):
            kept.append((at - half, at + half))
            chosen.append(v)
    axis.set_major_locator(FixedLocator(sorted(chosen)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    axis.set_minor_formatter(NullFormatter())
