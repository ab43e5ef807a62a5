"""``evaluate(progress=True)``: a progress display over the held-out chunks (a rich bar on a
terminal, two plain lines otherwise) that leaves the numbers as they are."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from dlm.diffusion import likelihood
from dlm.kinds import evaluate
from tests.conftest import tiny_net

MASK, BOS = 38, 39


def chunks(n: int = 10, length: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 37, (n, length), generator=g)


@pytest.mark.parametrize("kind", ["ar", "mdlm", "bd3lm"])
def test_progress_counts_every_chunk_and_changes_no_number(kind, capsys, monkeypatch):
    seen = []
    real = likelihood.EvalProgress.advance
    monkeypatch.setattr(likelihood.EvalProgress, "advance",
                        lambda self, n: (seen.append(n), real(self, n))[1])
    net, x, nbytes = tiny_net(), chunks(), np.ones(40, dtype=np.int64)
    kw = dict(mask_id=MASK, bos_id=BOS, t_samples=3, batch_size=4,
              block_size=8 if kind == "bd3lm" else None)
    quiet = evaluate(net, kind, x, nbytes, **kw)
    assert capsys.readouterr().err == ""  # progress is off by default: silent
    seen.clear()
    shown = evaluate(net, kind, x, nbytes, progress=True, **kw)
    assert shown == quiet
    assert sum(seen) == pytest.approx(len(x)) and len(seen) > 1  # batch by batch
    err = capsys.readouterr().err.splitlines()  # not a terminal: a line before, one after
    assert len(err) == 2
    assert err[0].startswith("held-out eval: 10 chunks of 16 tokens")
    assert ("mask draws" in err[0]) == (kind != "ar")
    assert err[1].startswith("held-out eval: done in ")


def test_on_a_terminal_it_is_a_bar_with_rate_and_eta(monkeypatch):
    from rich.console import Console

    screen = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda **kw: Console(
        file=screen, force_terminal=True, width=120))
    evaluate(tiny_net(), "mdlm", chunks(), np.ones(40, dtype=np.int64), mask_id=MASK,
             bos_id=BOS, t_samples=2, batch_size=4, progress=True)
    out = screen.getvalue()
    assert "held-out eval" in out and "10/10" in out and "chunks/s" in out and "ETA" in out
    assert "done in" not in out  # the plain lines are for logs only
