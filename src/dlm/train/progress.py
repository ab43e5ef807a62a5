"""A rich progress bar for training (loss, tokens/s, held-out bits/byte, ETA).

On a terminal it is a live bar; otherwise (CI, logs, pipes) it prints a plain line at each
evaluation and roughly every 10% of the run, so logs stay readable. A held-out value measured
at an earlier step than the line's is marked with that step (``val 2.999 bpb (step 0)``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    def __init__(self, enabled: bool, title: str, total: int | None, start: int = 0,
                 eval_step: int | None = None):
        """``eval_step``: the step of the held-out result the trainer holds before the first
        update (default: 0 for a run from scratch, which evaluates at step 0; unknown, so
        shown as at or before ``start``, for a resumed one)."""
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.title, self.total, self.last_print = title, total, start
        self.start = start
        if eval_step is None and start == 0:
            eval_step = 0
        self.eval_step = eval_step
        self.seen_eval = None  # the result measured at ``eval_step`` (None: from before us)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
            TextColumn("val {task.fields[val]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, disable=not self.live)
        self.task = self.progress.add_task(title, total=total, completed=start, loss="-",
                                           speed="", val="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def set_total(self, total: int) -> None:
        self.total = total
        self.progress.update(self.task, total=total)

    def update(self, step: int, row: dict, last_eval) -> None:
        if not self.enabled:
            return
        fields = {}
        if row.get("train_loss") is not None:
            fields["loss"] = f"{row['train_loss']:.3f}"
        if row.get("tokens_per_s"):
            fields["speed"] = f"{row['tokens_per_s'] / 1000:.1f}k tok/s"
        is_eval = row.get("val_bits_per_byte") is not None
        if is_eval:  # measured at this step: shown plainly
            self.eval_step, self.seen_eval = step, last_eval
            fields["val"] = f"{row['val_bits_per_byte']:.3f} bpb"
        elif last_eval is not None:  # an earlier measurement: say when it was taken
            fields["val"] = f"{last_eval.bits_per_byte:.3f} bpb ({self._eval_at(last_eval)})"
        self.progress.update(self.task, completed=step, **fields)
        if self.live:
            return
        if is_eval or (self.total and step - self.last_print >= max(1, self.total // 10)):
            self.last_print = step
            total = self.total or "?"
            print(f"[{self.title}] step {step}/{total} loss {fields.get('loss', '-')} "
                  f"{fields.get('speed', '')} val {fields.get('val', '-')} "
                  f"elapsed {row.get('elapsed_s', 0):.0f}s", file=sys.stderr, flush=True)

    def _eval_at(self, last_eval) -> str:
        """When the result shown was measured: 'step N', or 'step ≤N' when it came from
        before this display (a resumed run's checkpoint) and its step is not known."""
        if self.seen_eval is not None and last_eval is not self.seen_eval:
            return "earlier"  # not one this display was shown (not what the trainer does)
        return f"step {self.eval_step}" if self.eval_step is not None else f"step ≤{self.start}"

    def done(self, last_eval) -> None:
        if self.enabled and last_eval is not None:
            print(f"[{self.title}] held-out {last_eval.describe()}", file=sys.stderr, flush=True)


class ExperimentProgress:
    """Bars for a multi-run experiment: one overall bar (steps of every planned run, with
    elapsed time and ETA) and one per run in flight. Off a terminal (``live`` False) it logs a
    plain line instead each time a run passes another tenth of its steps (run, step/total,
    elapsed, ETA, and the whole experiment's steps and ETA): at most ten lines a run, so a log
    shows it is alive without flooding. ``log``: where those lines go (default: stderr)."""

    def __init__(self, live: bool | None = None, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.clock = clock
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
            disable=not self.live)
        self.overall = self.progress.add_task("all runs (steps)", total=0)
        self.totals: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.started: dict[str, float] = {}  # run -> when it started (clock)
        self.tenths: dict[str, int] = {}  # run -> tenths of its steps already logged
        self.t0: float | None = None  # when the first run started
        self.trained = 0  # steps reported by runs (not counting those finished earlier)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def plan(self, run: str, steps: int) -> None:
        """A run joins the plan with this many optimizer steps."""
        self.totals[run] = steps
        self.progress.update(self.overall, total=sum(self.totals.values()))

    def start(self, run: str) -> None:
        """A run starts training now (its elapsed time and ETA count from here)."""
        now = self.clock()
        self.started.setdefault(run, now)
        self.t0 = now if self.t0 is None else self.t0

    def advance(self, run: str, steps: int) -> None:
        if run not in self.tasks:
            self.tasks[run] = self.progress.add_task(run, total=self.totals.get(run))
        self.start(run)
        steps = max(0, min(steps, self.totals.get(run, 0) - self.done.get(run, 0)))
        self.done[run] = self.done.get(run, 0) + steps
        self.trained += steps
        self.progress.advance(self.tasks[run], steps)
        self.progress.advance(self.overall, steps)
        if not self.live and steps:
            self._log_line(run)

    def _log_line(self, run: str) -> None:
        total, done = self.totals.get(run, 0), self.done[run]
        tenths = 10 * done // total if total else 0
        if tenths <= self.tenths.get(run, 0):
            return
        self.tenths[run] = tenths
        now = self.clock()
        elapsed = now - self.started[run]
        line = (f"{run}: step {done}/{total}, {_duration(elapsed)} elapsed, ETA "
                f"{_duration(elapsed / done * (total - done))}")
        overall = self.progress.tasks[self.overall]
        left = (overall.total or 0) - overall.completed
        if self.trained and self.t0 is not None:
            rate = self.trained / max(now - self.t0, 1e-9)  # steps/s over all runs at once
            line += (f" (all runs: {overall.completed:,.0f}/{overall.total:,.0f} steps, ETA "
                     f"{_duration(left / rate)})")
        self.log(line)

    def finish(self, run: str) -> None:
        """A run is done (a resumed one may have reported fewer steps than planned)."""
        task = self.tasks.pop(run, None)
        self.progress.advance(self.overall, self.totals.get(run, 0) - self.done.pop(run, 0))
        self.started.pop(run, None)
        self.tenths.pop(run, None)
        if task is not None:
            self.progress.remove_task(task)


def _duration(seconds: float) -> str:
    """3725 -> '1h 2m', 125 -> '2m 5s', 42.3 -> '42s'."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"
