"""``dlm experiment data-constrained``: AR vs masked (and block) diffusion on the same repeated
data, each run annealed at every evaluated epoch count (``branches.train_annealed``).

Every run trains the same backbone on the same unique tokens for ``epochs`` passes; held-out
bits/byte are measured on the same bytes at log-spaced epoch marks. Two stages:

1. tuning: every cell of the grid (kind x learning rate x weight decay; AR also x dropout, and
   AR with input-token masking) on the smallest unique-data tier with seed 0;
2. each kind's best cell (by its best held-out value) on every tier with every seed.

So no side gets a handicapped baseline, and the spread over seeds is shown. Runs go in parallel
processes (one thread each); a finished run is never redone, an interrupted one continues from
its checkpoints. Diffusion numbers are tracked with a few mask draws per chunk and re-estimated
with ``final_t_samples`` fresh draws at each run's best mark.

Outputs in ``--out``: results.csv, curves.png, report.md.
"""

from __future__ import annotations

import itertools
import platform
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from ..errors import DLMError
from ..kinds import AR, MDLM
from ..kinds import get as get_kind
from ..kinds import names as kind_names
from ..version import __version__
from .bookkeeping import (
    Point,
    Results,
    best_point,
    criteria,
    crossover,
    crossover_trend,
    curve,
    epoch_marks,
    mark_steps,
    mean_curve,
    stops_improving,
    summarize,
)

CRITERION_4 = "the crossover epoch grows with the unique-data budget"

PROTOCOLS = {
    # tiers: unique training tokens; the grid (lr x weight decay, AR also x dropout, plus AR
    # with input-token masking) is tuned on the smallest tier with seed 0, then each kind's
    # best cell runs on every tier with every seed
    "quick": {"tiers": (65536,), "lr": (1e-3, 3e-3), "weight_decay": (0.1,), "dropout": (0.0,),
              "token_noise": (0.15,), "seeds": 1},
    "full": {"tiers": (65536, 262144, 1048576), "lr": (1e-3, 3e-3),
             "weight_decay": (0.1, 0.5, 1.0), "dropout": (0.0, 0.1), "token_noise": (0.1, 0.3),
             "seeds": 2},
}

SCALES = {
    # cpu: the Experiment defaults (byte tokens, 0.85 M parameters, context 128, batch 32,
    # two runs at a time with one thread each: the quick protocol takes ~30 min on 2 cores)
    "cpu": {},
    # gpu: a 25 M-parameter backbone at context 512, one run at a time on the device, 1 M and
    # 4 M unique tokens (Shakespeare holds ~5 M; pass --data for larger tiers), 128 epochs
    "gpu": {"d_model": 512, "n_layers": 8, "n_heads": 8, "seq_len": 512, "batch_size": 64,
            "unique_tokens": (1048576, 4194304), "epochs": 128.0, "eval_tokens": 131072,
            "jobs": 1, "threads": 4},
}


def cell_name(kind: str, lr: float, wd: float, dropout: float = 0.0, noise: float = 0.0) -> str:
    name = f"{kind}/lr={lr:g},wd={wd:g}"
    if get_kind(kind).token_noise:  # tuned over dropout and input-token masking too
        name += f",do={dropout:g}" + (f",noise={noise:g}" if noise else "")
    return name


def arm_name(tier: int, cell: str, seed: int) -> str:
    return f"u{tier}/{cell}/seed{seed}"


def split_arm(name: str) -> tuple[int, str, int]:
    """arm name -> (tier, cell, seed)."""
    tier, rest = name.split("/", 1)
    cell, seed = rest.rsplit("/", 1)
    return int(tier[1:]), cell, int(seed[4:])


@dataclass
class Experiment:
    out: str = "runs/data-constrained"
    kinds: tuple[str, ...] = (AR.name, MDLM.name)
    data: str = "shakespeare"
    unique_tokens: tuple[int, ...] | None = None  # the tiers (default: the protocol's)
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
    seeds: int | None = None  # default: the protocol's
    lrs: tuple[float, ...] | None = None  # default: the protocol's
    token_noise: tuple[float, ...] | None = None  # AR input masking cells (default: protocol's)
    jobs: int = 2
    threads: int = 1  # per run
    eval_tokens: int = 16384
    eval_t_samples: int = 4  # mask draws per chunk while tracking
    final_t_samples: int = 128  # ... for the final number at each run's best mark
    extra: dict = field(default_factory=dict)  # more TrainConfig fields for every arm
    command: str | None = None  # how it was started (the CLI line), for the report

    def __post_init__(self):
        # repeated values would make two processes train the same run folder
        for name in ("kinds", "unique_tokens", "lrs", "token_noise"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(dict.fromkeys(value)))

    def settings(self) -> dict:
        """What decides every run's result: a folder must not mix two settings."""
        keys = ("data", "epochs", "marks", "first_mark", "preset", "d_model", "n_layers",
                "n_heads", "seq_len", "batch_size", "block_size", "eval_tokens",
                "eval_t_samples", "final_t_samples", "extra")
        return {k: getattr(self, k) for k in keys}

    @property
    def tiers(self) -> tuple[int, ...]:
        return tuple(sorted(self.unique_tokens or PROTOCOLS[self.protocol]["tiers"]))

    @property
    def n_seeds(self) -> int:
        return self.seeds or PROTOCOLS[self.protocol]["seeds"]

    def cells(self) -> list[dict]:
        """The grid each kind is tuned over."""
        grid = PROTOCOLS[self.protocol]
        lrs = self.lrs or grid["lr"]
        noises = grid["token_noise"] if self.token_noise is None else self.token_noise
        out = []
        for kind in self.kinds:
            regularised = get_kind(kind).token_noise  # AR: dropout and input-token masking
            combos = [(lr, wd, do, 0.0) for lr, wd, do in itertools.product(
                lrs, grid["weight_decay"], grid["dropout"] if regularised else (0.0,))]
            if regularised:  # input-token masking at the base weight decay, no dropout
                combos += [(lr, grid["weight_decay"][0], 0.0, p)
                           for lr, p in itertools.product(lrs, noises) if p]
            out += [{"cell": cell_name(kind, *c), "kind": kind, "lr": c[0],
                     "weight_decay": c[1], "dropout": c[2], "ar_token_noise": c[3]}
                    for c in combos]
        return out

    def tuning_arms(self) -> list[dict]:
        """Stage 1: every cell on the smallest tier, seed 0."""
        return [self._arm(c, self.tiers[0], 0) for c in self.cells()]

    def final_arms(self, winners: dict[str, str]) -> list[dict]:
        """Stage 2: each kind's winning cell on every tier with every seed (seed-major, so a
        partial run has every tier at seed 0 first)."""
        cells = {c["cell"]: c for c in self.cells()}
        return [self._arm(cells[winners[k]], tier, seed) for seed in range(self.n_seeds)
                for tier in self.tiers for k in self.kinds if k in winners]

    def arms(self, winners: dict[str, str] | None = None) -> list[dict]:
        """Every arm of the experiment (the tuning arms alone until the winners are known)."""
        arms = {a["name"]: a for a in self.tuning_arms()}
        if winners:
            arms.update({a["name"]: a for a in self.final_arms(winners)})
        return list(arms.values())

    def _arm(self, cell: dict, tier: int, seed: int) -> dict:
        return {**cell, "name": arm_name(tier, cell["cell"], seed), "tier": tier, "seed": seed}

    def validate(self) -> Experiment:
        if self.protocol not in PROTOCOLS:
            raise DLMError(f"unknown protocol {self.protocol!r}; choose quick or full")
        for k in self.kinds:
            if k not in kind_names():
                raise DLMError(f"--kinds: unknown kind {k!r} ({', '.join(kind_names())})")
        if not self.kinds:
            raise DLMError("--kinds: name at least one kind")
        if min(self.tiers) < self.seq_len * self.batch_size:
            raise DLMError(f"--unique-tokens must hold at least one batch "
                           f"({self.seq_len * self.batch_size} tokens)")
        if self.epochs <= 0 or self.marks < 2:
            raise DLMError("need --epochs > 0 and --marks >= 2")
        if self.n_seeds < 1 or self.jobs < 1 or self.final_t_samples < 1:
            raise DLMError("need --seeds >= 1, --jobs >= 1 and --final-t-samples >= 1")
        if any(not 0 <= p < 1 for p in self.token_noise or ()):
            raise DLMError("--ar-token-noise values must lie in [0, 1)")
        return self

    def check_data(self) -> None:
        """Refuse a tier larger than the corpus's training split, before anything trains."""
        from ..data.corpora import load_corpus
        from ..data.tokenizer import byte_tokenizer

        if self.extra.get("tokenizer", "byte") != "byte":
            return  # counted by the loader at training time
        corpus = load_corpus(self.data, self.extra.get("text_field", "text"))
        available = sum(len(t) + 1 for t in byte_tokenizer().encode_batch(corpus.train))
        if max(self.tiers) > available:
            raise DLMError(f"--unique-tokens {max(self.tiers):,} is more than the "
                           f"{available:,} training tokens of {self.data!r}")


def _run_arm(exp: Experiment, arm: dict, queue=None) -> list[Point]:
    """Train one arm with an annealed branch per epoch mark, then re-evaluate its best mark
    with ``final_t_samples`` mask draws; its points (in a worker)."""
    import torch

    from ..train import TrainConfig
    from .branches import train_annealed

    torch.set_num_threads(exp.threads)
    num_sequences = arm["tier"] // exp.seq_len
    steps = mark_steps(epoch_marks(exp.epochs, exp.marks, exp.first_mark), num_sequences,
                       exp.batch_size)
    cfg = TrainConfig(
        kind=arm["kind"], preset=exp.preset, d_model=exp.d_model, n_layers=exp.n_layers,
        n_heads=exp.n_heads, data=exp.data, seq_len=exp.seq_len, batch_size=exp.batch_size,
        unique_tokens=arm["tier"], lr=arm["lr"], weight_decay=arm["weight_decay"],
        dropout=arm["dropout"], ar_token_noise=arm["ar_token_noise"], seed=arm["seed"],
        out=str(Path(exp.out) / "runs" / arm["name"]),
        warmup_steps=min(100, max(1, steps[0] // 2)), eval_every=10**9, ckpt_every=10**9,
        eval_tokens=exp.eval_tokens, eval_t_samples=exp.eval_t_samples, threads=exp.threads,
        progress=False, block_size=exp.block_size if get_kind(arm["kind"]).blocked else None,
        **exp.extra)
    points, paths = [], {}

    def record(mark: int, result, path: Path) -> None:
        import json

        config = json.loads((path / "config.json").read_text())
        state = json.loads((path / "train_state" / "state.json").read_text())
        params = config["params"]["non_embedding"] + config["model"]["vocab_size"] * \
            config["model"]["d_model"]
        tokens = mark * exp.batch_size * exp.seq_len
        per_token = 6 * params * get_kind(arm["kind"]).flops_factor
        points.append(Point(arm["name"], arm["kind"], arm["seed"],
                            round(mark * exp.batch_size / num_sequences, 4), tokens,
                            float(per_token * tokens), float(state["elapsed_s"]),
                            result.bits_per_byte, result.se_bits_per_byte, arm["tier"]))
        paths[points[-1].epoch] = path

    def report_step(trainer, step, row) -> None:
        if queue is not None and step % 10 == 0:
            queue.put((arm["name"], 10))

    train_annealed(cfg, steps, on_mark=record, callbacks=[report_step])
    best = best_point(points)
    if get_kind(arm["kind"]).exact:  # nothing to re-estimate
        best.final_bpb, best.final_se = best.val_bpb, best.val_se
    else:  # fresh draws (seed 1): the number reported is not the one the best was chosen by
        from ..pipeline import load

        model = load(paths[best.epoch], device=exp.extra.get("device", "auto"))
        r = model.evaluate(t_samples=exp.final_t_samples, seed=1)
        best.final_bpb, best.final_se = r.bits_per_byte, r.se_bits_per_byte
    return points


def arm_steps(exp: Experiment, arm: dict) -> int:
    """Optimizer steps one arm takes: the stable run plus each annealed branch."""
    from .branches import branch_point

    steps = mark_steps(epoch_marks(exp.epochs, exp.marks, exp.first_mark),
                       arm["tier"] // exp.seq_len, exp.batch_size)
    decay = exp.extra.get("decay_frac", 0.2)
    return steps[-1] + sum(m - branch_point(m, decay) for m in steps[:-1])


def _execute(exp: Experiment, results: Results, progress) -> None:
    """Train every unfinished arm, ``jobs`` at a time: the tuning arms first; as soon as all
    tuning arms of a kind are done, that kind's winner goes on to every tier and seed (so one
    kind's final runs overlap the other kind's tuning)."""
    from ..train.progress import ExperimentProgress

    tuning = exp.tuning_arms()
    by_kind = {k: {a["name"] for a in tuning if a["kind"] == k} for k in exp.kinds}
    submitted: set[str] = set()
    expanded: set[str] = set()

    def final_arms_ready() -> list[dict]:
        """Final arms of kinds whose tuning just completed."""
        done = results.finished()
        kinds = [k for k in exp.kinds if k not in expanded and by_kind[k] <= done]
        if not kinds:
            return []
        expanded.update(kinds)
        won = winners(exp, results.points())
        arms = [a for a in exp.final_arms({k: won[k] for k in kinds if k in won})
                if a["name"] not in done and a["name"] not in submitted]
        if arms:
            progress(f"{', '.join(kinds)}: tuned ({', '.join(won[k] for k in kinds)}); "
                     f"{len(arms)} runs on every tier and seed")
        return arms

    initial = [a for a in tuning if a["name"] not in results.finished()] + final_arms_ready()
    if not initial:
        return
    ready: list[dict] = []

    ctx = get_context("spawn")  # fresh interpreters: no shared torch threads or state
    with ctx.Manager() as manager, ExperimentProgress(log=progress) as bars, \
            ProcessPoolExecutor(max_workers=exp.jobs, mp_context=ctx) as pool:
        queue = manager.Queue()
        pending: dict = {}

        def queue_up(arms: list[dict]) -> None:
            for arm in arms:
                submitted.add(arm["name"])
                bars.plan(arm["name"], arm_steps(exp, arm))
            ready.extend(arms)
            ready.sort(key=lambda a: schedule_key(exp, a))
            while ready and len(pending) < exp.jobs:  # only as many as run at once
                arm = ready.pop(0)
                pending[pool.submit(_run_arm, exp, arm, queue)] = arm
                bars.start(arm["name"])  # a free worker takes it now

        queue_up(initial)
        try:
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    bars.advance(*queue.get())
                for fut in done:
                    arm = pending.pop(fut)
                    _record(arm, fut.result(), results, progress)
                    bars.finish(arm["name"])
                queue_up(final_arms_ready())
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed run stops the queue
            raise


def schedule_key(exp: Experiment, arm: dict) -> tuple:
    """Which ready run goes next: tuning runs first, the kinds taking turns (so a partial
    sweep has cells of every kind), then seed-major, every tier at seed 0 before any seed 1,
    so a partial experiment already compares the most."""
    tuning = exp.tuning_arms()
    names = [a["name"] for a in tuning]
    if arm["name"] in names:
        same_kind = [a["name"] for a in tuning if a["kind"] == arm["kind"]]
        return (0, same_kind.index(arm["name"]), exp.kinds.index(arm["kind"]))
    return (1, arm["seed"], exp.tiers.index(arm["tier"]), exp.kinds.index(arm["kind"]))


def _record(arm: dict, points: list[Point], results: Results, progress) -> None:
    results.start(arm["name"])
    for p in points:
        results.add(p)
    results.finish(arm["name"])
    value, se = best_point(points).best_value
    progress(f"finished {arm['name']}: best {value:.3f} ± {se:.3f} bits/byte at epoch "
             f"{best_point(points).epoch:.3g}")


def winners(exp: Experiment, points: list[Point]) -> dict[str, str]:
    """Each kind's best cell on the tuning tier (seed 0), by its final best value."""
    best: dict[str, tuple[float, str]] = {}
    for run_name in sorted({p.run for p in points}):
        tier, cell, seed = split_arm(run_name)
        if tier != exp.tiers[0] or seed != 0 or cell not in {c["cell"] for c in exp.cells()}:
            continue
        value = best_point(curve(points, run_name)).best_value[0]
        kind = cell.split("/", 1)[0]
        if kind not in best or value < best[kind][0]:
            best[kind] = (value, cell)
    return {k: cell for k, (_, cell) in best.items()}


def _claim_folder(exp: Experiment) -> None:
    """Record the settings in ``out/experiment.json``; refuse a folder holding another
    setting's runs (their results would be mixed and their checkpoints resumed wrongly)."""
    import json

    out = Path(exp.out)
    path = out / "experiment.json"
    mine = json.loads(json.dumps(exp.settings()))
    if path.exists():
        theirs = json.loads(path.read_text())
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise DLMError(f"{out} holds an experiment with other settings ({', '.join(diff)}); "
                           "choose another --out")
    for name in Results(out).finished():
        try:
            split_arm(name)
        except (ValueError, IndexError):
            raise DLMError(f"{out} holds runs from an older dlm ({name!r}); choose another "
                           "--out") from None
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mine, indent=2) + "\n")


def run(exp: Experiment, progress=print) -> Results:
    """Tune every cell on the smallest tier, run each kind's winner on every tier and seed
    (finished arms are never redone), then write curves.png and report.md."""
    exp.validate()
    exp.check_data()
    _claim_folder(exp)
    results = Results(exp.out)
    done = results.finished()
    tuning = exp.tuning_arms()
    progress(f"tuning: {sum(a['name'] in done for a in tuning)} of {len(tuning)} arms done "
             f"({exp.jobs} at a time)")
    _execute(exp, results, progress)
    won = winners(exp, results.points())
    left = [a["name"] for a in exp.arms(won) if a["name"] not in results.finished()]
    progress(f"all {len(exp.arms(won)) - len(left)} runs done" if not left else
             f"{len(left)} runs not done")
    write_report(exp, results)
    return results


def seed_curves(points: list[Point], tier: int, cell: str) -> list[list[Point]]:
    """One curve per finished seed of ``cell`` on ``tier``."""
    runs = sorted({p.run for p in points if split_arm(p.run)[:2] == (tier, cell)})
    return [curve(points, r) for r in runs]


def _fmt(v: float, se: float, kind: str) -> str:
    return f"{'' if get_kind(kind).exact else '≤ '}{v:.3f} ± {se:.3f}"


def write_report(exp: Experiment, results: Results) -> None:
    points = results.points()
    if not points:
        return
    won = winners(exp, points)
    by_tier: dict[int, dict[str, list[list[Point]]]] = {}
    for tier in exp.tiers:
        for kind, cell in won.items():
            curves = seed_curves(points, tier, cell)
            if curves:
                by_tier.setdefault(tier, {})[kind] = curves
    _plot(by_tier, Path(exp.out) / "curves.png")
    missing = [a["name"] for a in exp.arms(won) if a["name"] not in results.finished()]
    lines = ["# Data-constrained experiment", "",
             f"Command: `{exp.command or exp}`  ",
             f"dlm {__version__}, Python {platform.python_version()}; protocol {exp.protocol}; "
             f"unique-data tiers {', '.join(f'{t:,}' for t in exp.tiers)} tokens; "
             f"{exp.epochs:g} epochs; {exp.marks} annealed marks per run; {exp.n_seeds} "
             f"seed(s); diffusion bounds with K = {exp.eval_t_samples} mask draws per chunk "
             f"while tracking, K = {exp.final_t_samples} (fresh draws) at each run's best mark.",
             ""]
    if missing:
        lines += [f"**Partial:** {len(missing)} planned run(s) not finished yet: "
                  f"{', '.join(missing)}. Run the same command again to finish them.", ""]
    lines += [f"## Tuning: every cell on {exp.tiers[0]:,} unique tokens, seed 0", "",
              "| cell | best held-out bits/byte | at epoch | at the last mark |",
              "|---|---:|---:|---:|"]
    for c in exp.cells():
        curves = seed_curves(points, exp.tiers[0], c["cell"])
        run0 = [cv for cv in curves if cv[0].seed == 0]
        if not run0:
            continue
        b = best_point(run0[0])
        win = " (chosen)" if won.get(c["kind"]) == c["cell"] else ""
        lines.append(f"| {c['cell']}{win} | {_fmt(*b.best_value, c['kind'])} | {b.epoch:.3g} | "
                     f"{run0[0][-1].val_bpb:.3f} |")
    lines += ["", "## Each kind's chosen cell on every tier", "",
              "| unique tokens | kind | best held-out bits/byte (mean ± s.e. over seeds) | "
              "per seed | best epoch (seed mean) | crossover with AR |",
              "|---:|---|---:|---|---:|---|"]
    cross: dict[str, dict[int, float | None]] = {}
    verdicts = []
    for tier, kinds in by_tier.items():
        means = {k: mean_curve(c) for k, c in kinds.items()}
        sums = {k: summarize(c) for k, c in kinds.items()}
        # the baseline: the kind with an exact likelihood (AR)
        base = next((k for k in means if get_kind(k).exact), None)
        for kind, m in means.items():
            x = "—"
            if base is not None and kind != base:
                xe = crossover(means[base], m)
                cross.setdefault(kind, {})[tier] = xe
                x = f"below AR from epoch {xe:.3g} on" if xe is not None else "never stays below"
                crit = criteria(means[base], m, sums[base], sums[kind])
                verdicts.append((tier, kind, crit))
            s_ = sums[kind]
            lines.append(f"| {tier:,} | {kind} | {_fmt(s_.mean, s_.se, kind)} | {s_.spread} | "
                         f"{stops_improving(m):.3g} | {x} |")
    if verdicts:
        lines += ["", "## Reproduction criteria", "",
                  "Read off the seed-mean curves (criteria 1, 2) and the seeds' best values "
                  "(criterion 3; the diffusion number is an upper bound, so a 'holds' is "
                  "conservative).", ""]
        for tier, kind, crit in verdicts:
            lines.append(f"{kind} vs AR on {tier:,} unique tokens:")
            lines.append("")
            for i, (name, holds, detail) in enumerate(crit, 1):
                lines.append(f"{i}. {name}: **{_verdict(holds)}** ({detail})")
            lines.append("")
        for kind, xs in cross.items():
            holds, detail = crossover_trend(xs, exp.epochs)
            lines.append(f"4. ({kind}) {CRITERION_4}: **{_verdict(holds)}** ({detail})")
    (Path(exp.out) / "report.md").write_text("\n".join(lines).rstrip() + "\n")


def _verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not measured"}[holds]


def _plot(by_tier: dict[int, dict[str, list[list[Point]]]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = _figure(by_tier)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _figure(by_tier: dict[int, dict[str, list[list[Point]]]]):
    """The seed-mean tracking curves against epochs and FLOPs; each curve's star is at its best
    mark and at the number the report's table gives for it (``summarize``: the seeds' final
    re-estimates where there are any), so plot and table agree."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (tier, kinds) in enumerate(sorted(by_tier.items())):
        for kind, curves in kinds.items():
            m = mean_curve(curves)
            label = f"{kind}, {tier / 1024:g} K unique" + (f" ({len(curves)} seeds)"
                                                           if len(curves) > 1 else "")
            for ax, x in zip(axes, ("epoch", "flops")):
                xs = [getattr(p, x) for p in m]
                ax.plot(xs, [p.val_bpb for p in m], styles[i % 4], marker="o", ms=3,
                        color=get_kind(kind).colour, label=label)
                if len(curves) > 1:  # the seeds' range
                    at = [[p.val_bpb for c in curves for p in c if p.epoch == q.epoch]
                          for q in m]
                    ax.fill_between(xs, [min(a) for a in at], [max(a) for a in at],
                                    color=get_kind(kind).colour, alpha=0.15, lw=0)
                b = best_point(m)
                ax.plot([getattr(b, x)], [summarize(curves).mean], marker="*", ms=12,
                        color=get_kind(kind).colour, ls="none", zorder=3)
    for ax, label in zip(axes, ("epochs over the unique data", "training FLOPs")):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out bits/byte (diffusion: bound)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("curves: tracking estimate; ★ the best value in the report (diffusion: "
                 "re-estimated at the best mark)", fontsize=9)
    fig.tight_layout()
    return fig
