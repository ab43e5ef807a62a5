"""Replay a real denoising trace in the terminal with rich (``dlm sample --animate``).

Every frame is ``Trace.state_at(step)``: masked slots are dim dots, tokens committed at this
step are highlighted, re-masked ones red, earlier ones plain, the prompt bold. Nothing is
invented: the frames are exactly what the sampler did, step by step. Without a terminal only
the last frame is printed.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from .data.tokenizer import Tokenizer
from .sample.trace import Trace

MASK_GLYPH = "·"


def render(trace: Trace, tokenizer: Tokenizer, step: int) -> Text:
    """The canvas of row 0 after ``step`` steps as styled text: prompt bold, given text (infill
    templates, the untouched part of an edit) dim, this step's commits on yellow, this step's
    re-masks (ReMDM, edit) on red."""
    canvas = trace.state_at(step)[0]
    last = trace.steps[step - 1] if step > 0 else None
    new = set(last.positions[0]) if last else set()
    remasked = set(last.remasked[0]) if last and last.remasked else set()
    n_prompt = trace.prompt_lengths[0]
    initial = trace.initial[0]
    text = Text()
    for pos, tok in enumerate(canvas):
        if tok == trace.mask_id:
            text.append(MASK_GLYPH, style="bold white on red" if pos in remasked else "grey42")
            continue
        piece = tokenizer.token_text(tok)
        if pos < n_prompt:
            text.append(piece, style="bold cyan")
        elif initial[pos] == tok and initial[pos] != trace.mask_id and pos not in new:
            text.append(piece, style="cyan")
        elif pos in new:
            text.append(piece if piece.strip() else piece.replace(" ", "␣").replace("\n", "↵\n"),
                        style="bold black on yellow")
        else:
            text.append(piece)
    return text


def frame(trace: Trace, tokenizer: Tokenizer, step: int) -> Panel:
    masked = sum(t == trace.mask_id for t in trace.state_at(step)[0])
    last = trace.steps[step - 1] if step > 0 else None
    n_remasked = len(last.remasked[0]) if last and last.remasked else 0
    title = (f"{trace.kind} · step {step}/{len(trace.steps)}"
             + (f" · block {last.block} · +{len(last.positions[0])} tokens" if last else "")
             + (f" · {n_remasked} re-masked" if n_remasked else "")
             + f" · {masked} masked")
    return Panel(render(trace, tokenizer, step), title=title, title_align="left")


def animate(trace: Trace, tokenizer: Tokenizer, fps: float = 12.0,
            console: Console | None = None, final_text: str | None = None) -> None:
    console = console or Console()
    n = len(trace.steps)
    if not console.is_terminal:
        console.print(frame(trace, tokenizer, n))
    else:
        # a trace of one token per step (AR) plays faster, so every kind takes similar time
        one_each = all(len(p) <= 1 for s in trace.steps for p in s.positions)
        delay = 1.0 / max(fps, 1e-3) * (0.25 if one_each else 1.0)
        with Live(frame(trace, tokenizer, 0), console=console, refresh_per_second=60,
                  transient=False) as live:
            time.sleep(delay * 4)
            for step in range(1, n + 1):
                live.update(frame(trace, tokenizer, step))
                time.sleep(delay)
    if final_text is not None:
        console.print(Group(Text("final text:", style="bold"), Text(final_text)))
