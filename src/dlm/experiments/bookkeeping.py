"""Bookkeeping for multi-run experiments (the data-constrained crossover, docs/experiments.md).

Pure functions and one CSV-backed table, kept apart from the training they describe so they are
easy to test and reuse:

* ``epoch_marks`` / ``mark_steps``: log-spaced epoch counts at which every arm is evaluated, and
  the optimizer step that completes each (the same arithmetic as ``EpochLoader.epochs_at``);
* ``Results``: ``results.csv`` rows appended as they are measured, plus the set of finished
  runs, so an interrupted experiment resumes without redoing finished runs;
* ``curve`` / ``best_point`` / ``stops_improving`` / ``crossover``: what the report states.

    marks = epoch_marks(64, n=12)              # [0.5, 0.8, ..., 64.0]
    steps = mark_steps(marks, num_sequences=512, batch_size=32)
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import DLMError


def epoch_marks(epochs: float, n: int = 12, first: float | None = None) -> list[float]:
    """``n`` log-spaced epoch counts from ``first`` (default epochs / 128, at most 1) to
    ``epochs``, rounded to 4 significant digits, strictly increasing."""
    if epochs <= 0 or n < 2:
        raise DLMError(f"need epochs > 0 and at least 2 marks (got {epochs}, {n})")
    first = min(1.0, epochs / 128) if first is None else first
    if not 0 < first < epochs:
        raise DLMError(f"the first mark must lie in (0, {epochs}) (got {first})")
    ratio = (epochs / first) ** (1 / (n - 1))
    marks = [float(f"{first * ratio ** i:.4g}") for i in range(n - 1)] + [float(epochs)]
    return sorted(set(marks))


def mark_steps(marks: list[float], num_sequences: int, batch_size: int) -> list[int]:
    """The optimizer step completing each epoch mark (epoch = step * batch / sequences), at
    least 1; marks closer than one step collapse into one."""
    steps = [max(1, round(m * num_sequences / batch_size)) for m in marks]
    return sorted(set(steps))


@dataclass
class Point:
    """One evaluation of one run."""

    run: str  # e.g. "mdlm/lr=0.003/seed=0"
    kind: str
    seed: int
    epoch: float
    tokens: int
    flops: float
    wall_s: float
    val_bpb: float
    val_se: float = 0.0
    tier: int = 0  # unique training tokens of the run
    # the final number at the run's best mark, re-evaluated with many mask draws (NaN elsewhere)
    final_bpb: float = math.nan
    final_se: float = math.nan

    @property
    def best_value(self) -> tuple[float, float]:
        """(bits/byte, standard error): the final re-evaluation where there is one."""
        if math.isfinite(self.final_bpb):
            return self.final_bpb, self.final_se
        return self.val_bpb, self.val_se

    @classmethod
    def from_row(cls, row: dict) -> Point:
        types = {f.name: f.type for f in fields(cls)}
        conv = {"int": int, "float": float, "str": str}
        return cls(**{k: conv[types[k]](v) for k, v in row.items() if k in types})


class Results:
    """``results.csv`` (one row per evaluation) and ``finished.txt`` (one finished run per
    line) in an experiment folder. Rows of a run that did not finish are dropped on load, so a
    resumed run starts clean."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.csv = self.folder / "results.csv"
        self.finished_file = self.folder / "finished.txt"

    def finished(self) -> set[str]:
        if not self.finished_file.exists():
            return set()
        return {line.strip() for line in self.finished_file.read_text().splitlines() if line}

    def points(self) -> list[Point]:
        if not self.csv.exists():
            return []
        done = self.finished()
        with self.csv.open() as f:
            return [p for p in map(Point.from_row, csv.DictReader(f)) if p.run in done]

    def start(self, run: str) -> None:
        """Forget any rows a previous, interrupted attempt of ``run`` left behind."""
        if not self.csv.exists():
            return
        with self.csv.open() as f:
            rows = [r for r in csv.DictReader(f) if r["run"] != run]
        self._write(rows)

    def add(self, point: Point) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        new = not self.csv.exists()
        with self.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[f.name for f in fields(Point)])
            if new:
                w.writeheader()
            w.writerow(asdict(point))

    def finish(self, run: str) -> None:
        torn = self.finished_file.exists() and not self.finished_file.read_text().endswith("\n")
        with self.finished_file.open("a") as f:  # a torn last line must not swallow this one
            f.write(("\n" if torn and self.finished_file.stat().st_size else "") + run + "\n")

    def _write(self, rows: list[dict]) -> None:
        with self.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[f.name for f in fields(Point)])
            w.writeheader()
            w.writerows(rows)


def curve(points: list[Point], run: str) -> list[Point]:
    """One run's evaluations in epoch order."""
    return sorted((p for p in points if p.run == run), key=lambda p: p.epoch)


def best_point(points: list[Point]) -> Point:
    """The evaluation with the lowest held-out bits/byte."""
    if not points:
        raise DLMError("no evaluations to choose from")
    return min(points, key=lambda p: p.val_bpb)


def stops_improving(points: list[Point]) -> float:
    """The epoch of a run's best held-out value: after it the curve never goes lower."""
    return best_point(points).epoch if points else math.nan


def crossover(ar: list[Point], dlm: list[Point]) -> float | None:
    """The first shared epoch mark from which the DLM's held-out value stays below AR's at
    every later shared mark (None: it never does, or only at some marks and then loses again).
    """
    a = {p.epoch: p.val_bpb for p in ar}
    d = {p.epoch: p.val_bpb for p in dlm}
    shared = sorted(set(a) & set(d))
    start = None
    for e in shared:
        if d[e] < a[e]:
            start = e if start is None else start
        else:
            start = None
    return start


@dataclass
class Summary:
    """One configuration over its seeds: the mean of each seed's best (final) value, its
    standard error and the per-seed values."""

    mean: float
    se: float
    values: list[float]

    @property
    def spread(self) -> str:
        return ", ".join(f"{v:.3f}" for v in self.values)


def summarize(curves: list[list[Point]]) -> Summary:
    """Seeds' best values -> mean and standard error. With n >= 2 seeds the error combines the
    spread between seeds (sd / sqrt n) with the estimators' own errors (rms se / sqrt n); with
    one seed it is that seed's estimator error."""
    bests = [best_point(c).best_value for c in curves]
    values = [v for v, _ in bests]
    n = len(values)
    mean = sum(values) / n
    est = math.sqrt(sum(se ** 2 for _, se in bests) / n)
    if n == 1:
        return Summary(mean, est, values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Summary(mean, math.hypot(sd, est) / math.sqrt(n), values)


def mean_curve(curves: list[list[Point]]) -> list[Point]:
    """The seeds' mean tracking value at every epoch mark they share (val_se: its standard
    error, as in ``summarize``). Final re-estimates are left out: they exist only at each
    seed's best mark, and mixing estimators would move the curve's minimum."""
    shared = set.intersection(*({p.epoch for p in c} for c in curves))
    out = []
    for e in sorted(shared):
        at = [next(p for p in c if p.epoch == e) for c in curves]
        s = summarize([[Point(p.run, p.kind, p.seed, p.epoch, p.tokens, p.flops, p.wall_s,
                              p.val_bpb, p.val_se, p.tier)] for p in at])
        first = at[0]
        out.append(Point(first.run, first.kind, -1, e, first.tokens, first.flops,
                         sum(p.wall_s for p in at) / len(at), s.mean, s.se, first.tier))
    return out


def crossover_trend(by_tier: dict[int, float | None], last_epoch: float
                    ) -> tuple[bool | None, str]:
    """Criterion 4: does the crossover epoch grow with the unique-data budget? A tier without a
    crossover counts as crossing after its last mark. None: fewer than two tiers measured."""
    if len(by_tier) < 2:
        return None, "needs several unique-data tiers"
    tiers = sorted(by_tier)
    xs = [by_tier[t] if by_tier[t] is not None else math.inf for t in tiers]
    detail = ", ".join(f"{t:,} tokens: " + (f"epoch {by_tier[t]:.3g}" if by_tier[t] is not None
                                             else f"none by epoch {last_epoch:g}")
                       for t in tiers)
    if all(math.isinf(x) for x in xs):
        return None, detail + " (no crossover at any tier)"
    return all(a < b or (math.isinf(a) and math.isinf(b)) for a, b in zip(xs, xs[1:])), detail


def criteria(ar: list[Point], dlm: list[Point], best_ar: Summary | None = None,
             best_dlm: Summary | None = None) -> list[tuple[str, bool | None, str]]:
    """The reproduction criteria of the "diffusion LMs are super data learners" claim, read off
    one AR and one DLM curve (seed means), with each side's best over seeds (default: the
    curve's best point): (name, holds or None when not measurable here, the numbers).
    Criterion 4 needs several tiers (``crossover_trend``)."""
    a = {p.epoch: p for p in ar}
    d = {p.epoch: p for p in dlm}
    early = [e for e in sorted(set(a) & set(d)) if e <= 4]
    c1 = bool(early) and all(a[e].val_bpb < d[e].val_bpb for e in early)
    ar_stop, dlm_stop = stops_improving(ar), stops_improving(dlm)
    last = max(p.epoch for p in ar)
    c2 = ar_stop < last and dlm_stop > ar_stop
    ba = best_ar or summarize([ar])
    bd = best_dlm or summarize([dlm])
    se = math.hypot(ba.se, bd.se)
    margin = ba.mean - bd.mean
    seeds = min(len(ba.values), len(bd.values))
    # "across seeds": with one seed the error is the estimator's alone, which says nothing
    # about how much another seed would move the result
    c3 = None if seeds < 2 else (margin > 3 * se if se > 0 else margin > 0)
    return [
        ("AR better at <= 4 epochs", c1 if early else None,
         ", ".join(f"{e:.3g}: {a[e].val_bpb:.3f} vs {d[e].val_bpb:.3f}" for e in early)),
        ("AR's loss turns up while the DLM keeps improving longer", c2,
         f"AR best at epoch {ar_stop:.3g} of {last:g}; DLM best at {dlm_stop:.3g}"),
        ("DLM's best below the best AR by > 3 standard errors", c3,
         f"{bd.mean:.3f} vs {ba.mean:.3f} (margin {margin:+.3f}, s.e. {se:.3f}"
         + (", needs >= 2 seeds per side)" if seeds < 2 else f", {seeds} seeds)")),
    ]
