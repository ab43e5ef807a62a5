"""A transient rich bar on stderr when it is a terminal, nothing elsewhere: one mechanism for
the front ends' loops (decoding in ``dlm sample``, lm-eval requests). Training, evaluation
and experiments have richer displays of their own (``train.progress``,
``diffusion.likelihood.EvalProgress``) that also log plain lines off a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def terminal_bar(what: str, total: int | None = None, enabled: bool = True
                 ) -> Iterator[Callable[..., None] | None]:
    """Yields ``update(completed, total=None)`` drawing a bar (count, ETA) that disappears when
    done; yields None when disabled or off a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)

        def update(completed: float, total: int | None = None) -> None:
            bar.update(task, completed=completed,
                       **({"total": total} if total is not None else {}))

        yield update
