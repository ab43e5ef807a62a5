"""A rich progress bar for training (loss, tokens/s, held-out bits/byte, ETA).

On a terminal it is a live bar; otherwise (CI, logs, pipes) it prints a plain line at each
evaluation and roughly every 10% of the run, so logs stay readable.
"""

from __future__ import annotations

import sys

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
    def __init__(self, enabled: bool, title: str, total: int | None, start: int = 0):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.title, self.total, self.last_print = title, total, start
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
        if last_eval is not None:
            fields["val"] = f"{last_eval.bits_per_byte:.3f} bpb"
        self.progress.update(self.task, completed=step, **fields)
        if self.live:
            return
        is_eval = row.get("val_bits_per_byte") is not None
        if is_eval or (self.total and step - self.last_print >= max(1, self.total // 10)):
            self.last_print = step
            total = self.total or "?"
            print(f"[{self.title}] step {step}/{total} loss {fields.get('loss', '-')} "
                  f"{fields.get('speed', '')} val {fields.get('val', '-')} "
                  f"elapsed {row.get('elapsed_s', 0):.0f}s", file=sys.stderr, flush=True)

    def done(self, last_eval) -> None:
        if self.enabled and last_eval is not None:
            print(f"[{self.title}] held-out {last_eval.describe()}", file=sys.stderr, flush=True)


class ExperimentProgress:
    """Bars for a multi-run experiment: one overall bar (steps of every planned run, with
    elapsed time and ETA) and one per run in flight. Off a terminal it stays silent; the caller
    logs each finished run instead."""

    def __init__(self):
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
            disable=not self.console.is_terminal)
        self.overall = self.progress.add_task("all runs (steps)", total=0)
        self.totals: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def plan(self, run: str, steps: int) -> None:
        """A run joins the plan with this many optimizer steps."""
        self.totals[run] = steps
        self.progress.update(self.overall, total=sum(self.totals.values()))

    def advance(self, run: str, steps: int) -> None:
        if run not in self.tasks:
            self.tasks[run] = self.progress.add_task(run, total=self.totals.get(run))
        steps = max(0, min(steps, self.totals.get(run, 0) - self.done.get(run, 0)))
        self.done[run] = self.done.get(run, 0) + steps
        self.progress.advance(self.tasks[run], steps)
        self.progress.advance(self.overall, steps)

    def finish(self, run: str) -> None:
        """A run is done (a resumed one may have reported fewer steps than planned)."""
        task = self.tasks.pop(run, None)
        self.progress.advance(self.overall, self.totals.get(run, 0) - self.done.pop(run, 0))
        if task is not None:
            self.progress.remove_task(task)
