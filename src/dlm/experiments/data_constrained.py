"""``dlm experiment data-constrained``: AR vs masked (and block) diffusion on the same repeated
data, each arm annealed at every evaluated epoch count (``branches.train_annealed``).

Every arm (kind x learning rate x weight decay x dropout x seed) trains the same backbone on the
same ``unique_tokens`` for ``epochs`` passes; held-out bits/byte are measured on the same bytes
at log-spaced epoch marks. Each kind is reported at its best arm (by best held-out value), so no
side gets a handicapped baseline. Arms run in parallel processes (one thread each); a finished
arm is never redone, an interrupted one continues from its checkpoints.

Outputs in ``--out``: results.csv, curves.png, report.md.
"""

from __future__ import annotations

import itertools
import platform
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from ..errors import DLMError
from ..version import __version__
from .bookkeeping import (
    Point,
    Results,
    best_point,
    criteria,
    crossover,
    curve,
    epoch_marks,
    mark_steps,
    stops_improving,
)

PROTOCOLS = {
    # per kind: the grid each arm is drawn from (lr, weight decay, dropout)
    "quick": {"lr": (1e-3, 3e-3), "weight_decay": (0.1,), "dropout": (0.0,), "seeds": 1},
    "full": {"lr": (1e-3, 3e-3), "weight_decay": (0.1, 0.5, 1.0), "dropout": (0.0, 0.1),
             "seeds": 2},
}


@dataclass
class Experiment:
    out: str = "runs/data-constrained"
    kinds: tuple[str, ...] = ("ar", "mdlm")
    data: str = "shakespeare"
    unique_tokens: int = 65536
    epochs: float = 64.0
    marks: int = 12
    first_mark: float | None = None  # epochs at the first mark (default: epochs / 128, <= 1)
    preset: str = "tiny"
    d_model: int | None = 128
    n_layers: int | None = 4
    n_heads: int | None = 4
    seq_len: int = 128
    batch_size: int = 32
    block_size: int = 8
    protocol: str = "quick"
    jobs: int = 2
    eval_tokens: int = 16384
    eval_t_samples: int = 4
    extra: dict = field(default_factory=dict)  # more TrainConfig fields for every arm
    command: str | None = None  # how it was started (the CLI line), for the report

    def arms(self) -> list[dict]:
        grid = PROTOCOLS[self.protocol]
        out = []
        for kind in self.kinds:
            for lr, wd, do, seed in itertools.product(grid["lr"], grid["weight_decay"],
                                                      grid["dropout"], range(grid["seeds"])):
                if kind != "ar" and do > 0:
                    continue  # dropout is AR's regulariser in the protocol
                name = f"{kind}/lr={lr:g},wd={wd:g},do={do:g},seed={seed}"
                out.append({"name": name, "kind": kind, "lr": lr, "weight_decay": wd,
                            "dropout": do, "seed": seed})
        return out

    def validate(self) -> Experiment:
        if self.protocol not in PROTOCOLS:
            raise DLMError(f"unknown protocol {self.protocol!r}; choose quick or full")
        if self.unique_tokens < self.seq_len * self.batch_size:
            raise DLMError(f"--unique-tokens must hold at least one batch "
                           f"({self.seq_len * self.batch_size} tokens)")
        if self.epochs <= 0 or self.marks < 2:
            raise DLMError("need --epochs > 0 and --marks >= 2")
        return self


def _run_arm(exp: Experiment, arm: dict) -> list[Point]:
    """Train one arm with an annealed branch per epoch mark; its points (in a worker)."""
    import torch

    from ..train import TrainConfig
    from .branches import train_annealed

    torch.set_num_threads(1)
    num_sequences = exp.unique_tokens // exp.seq_len
    steps = mark_steps(epoch_marks(exp.epochs, exp.marks, exp.first_mark), num_sequences,
                       exp.batch_size)
    cfg = TrainConfig(
        kind=arm["kind"], preset=exp.preset, d_model=exp.d_model, n_layers=exp.n_layers,
        n_heads=exp.n_heads, data=exp.data, seq_len=exp.seq_len, batch_size=exp.batch_size,
        unique_tokens=exp.unique_tokens, lr=arm["lr"], weight_decay=arm["weight_decay"],
        dropout=arm["dropout"], seed=arm["seed"], out=str(Path(exp.out) / "runs" / arm["name"]),
        warmup_steps=min(100, max(1, steps[0] // 2)), eval_every=10**9, ckpt_every=10**9,
        eval_tokens=exp.eval_tokens, eval_t_samples=exp.eval_t_samples, threads=1,
        progress=False, block_size=exp.block_size if arm["kind"] == "bd3lm" else None,
        **exp.extra)
    points = []

    def record(mark: int, result, path: Path) -> None:
        import json

        config = json.loads((path / "config.json").read_text())
        state = json.loads((path / "train_state" / "state.json").read_text())
        params = config["params"]["non_embedding"] + config["model"]["vocab_size"] * \
            config["model"]["d_model"]
        tokens = mark * exp.batch_size * exp.seq_len
        per_token = 6 * params * (2 if arm["kind"] == "bd3lm" else 1)
        points.append(Point(arm["name"], arm["kind"], arm["seed"],
                            round(mark * exp.batch_size / num_sequences, 4), tokens,
                            float(per_token * tokens), float(state["elapsed_s"]),
                            result.bits_per_byte, result.se_bits_per_byte))

    train_annealed(cfg, steps, on_mark=record)
    return points


def run(exp: Experiment, progress=print) -> Results:
    """Run every arm not finished yet, then write curves.png and report.md."""
    exp.validate()
    results = Results(exp.out)
    todo = [a for a in exp.arms() if a["name"] not in results.finished()]
    progress(f"{len(exp.arms()) - len(todo)} arms done, {len(todo)} to run "
             f"({exp.jobs} at a time)")
    ctx = get_context("spawn")  # fresh interpreters: no shared torch threads or state
    with ProcessPoolExecutor(max_workers=max(1, exp.jobs), mp_context=ctx) as pool:
        futures = {pool.submit(_run_arm, exp, arm): arm for arm in todo}
        for fut in futures:
            arm = futures[fut]
            points = fut.result()
            results.start(arm["name"])
            for p in points:
                results.add(p)
            results.finish(arm["name"])
            best = best_point(points)
            progress(f"finished {arm['name']}: best {best.val_bpb:.3f} bits/byte at epoch "
                     f"{best.epoch:g}")
    write_report(exp, results)
    return results


def best_arms(points: list[Point]) -> dict[str, list[Point]]:
    """Per kind, the curve of the arm whose best held-out value is lowest."""
    by_kind: dict[str, list[Point]] = {}
    for run_name in sorted({p.run for p in points}):
        c = curve(points, run_name)
        kind = c[0].kind
        if kind not in by_kind or best_point(c).val_bpb < best_point(by_kind[kind]).val_bpb:
            by_kind[kind] = c
    return by_kind


def write_report(exp: Experiment, results: Results) -> None:
    points = results.points()
    if not points:
        return
    curves = best_arms(points)
    _plot(curves, Path(exp.out) / "curves.png")
    lines = ["# Data-constrained experiment", "",
             f"Command: `{exp.command or exp}`  ",
             f"dlm {__version__}, Python {platform.python_version()}; protocol "
             f"{exp.protocol}, unique tokens {exp.unique_tokens:,}, {exp.epochs:g} epochs, "
             f"{exp.marks} annealed marks per arm.", "",
             "| kind | best arm | best held-out bits/byte | at epoch | stops improving at |",
             "|---|---|---:|---:|---:|"]
    for kind, c in curves.items():
        b = best_point(c)
        bound = "" if kind == "ar" else "≤ "
        lines.append(f"| {kind} | {b.run.split('/', 1)[1]} | {bound}{b.val_bpb:.3f} ± "
                     f"{b.val_se:.3f} | {b.epoch:g} | {stops_improving(c):g} |")
    if "ar" in curves:
        ar = curves["ar"]
        for kind, c in curves.items():
            if kind == "ar":
                continue
            x = crossover(ar, c)
            verdict = (f"{kind} stays below AR from epoch {x:g} on" if x is not None else
                       f"{kind} does not overtake AR at any later mark")
            margin = best_point(ar).val_bpb - best_point(c).val_bpb
            se = (best_point(ar).val_se ** 2 + best_point(c).val_se ** 2) ** 0.5
            in_se = f"{margin / se:+.1f} standard errors" if se > 0 else "no standard error"
            lines += ["", f"- Crossover: {verdict}.",
                      f"- Best {kind} vs best AR: {margin:+.3f} bits/byte in {kind}'s favour "
                      f"({in_se}; the diffusion number is an upper bound).",
                      "", f"Reproduction criteria ({kind} vs AR):", ""]
            for i, (name, holds, detail) in enumerate(criteria(ar, c), 1):
                mark = {True: "holds", False: "does not hold", None: "not measured"}[holds]
                lines.append(f"{i}. {name}: **{mark}** ({detail})")
    (Path(exp.out) / "report.md").write_text("\n".join(lines) + "\n")


def _plot(curves: dict[str, list[Point]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind, c in curves.items():
        for ax, x in zip(axes, ("epoch", "flops")):
            xs = [getattr(p, x) for p in c]
            line, = ax.plot(xs, [p.val_bpb for p in c], marker="o", ms=3, label=kind)
            b = best_point(c)
            ax.plot([getattr(b, x)], [b.val_bpb], marker="*", ms=12, color=line.get_color())
    for ax, label in zip(axes, ("epochs over the unique data", "training FLOPs")):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out bits/byte (diffusion: bound)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
