"""dlm.progress.terminal_bar: the front ends' transient bar (a terminal is simulated)."""

from __future__ import annotations

import pytest
import rich.console

from dlm.cli import decode_progress
from dlm.sample.config import SampleConfig
from dlm.sample.driver import generate
from tests.conftest import tiny_net


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))


def test_off_a_terminal_there_is_no_hook():
    with decode_progress(37) as hook:
        assert hook is None


def test_the_decode_bar_counts_the_tokens_committed(terminal, monkeypatch):
    import dlm.progress

    seen = []
    real = dlm.progress.terminal_bar

    def spy(*a, **kw):
        cm = real(*a, **kw)
        update = cm.__enter__()

        class Wrapped:
            def __enter__(self):
                return lambda done, total=None: (seen.append((done, total)),
                                                 update(done, total))

            def __exit__(self, *exc):
                return cm.__exit__(*exc)
        return Wrapped()

    monkeypatch.setattr(dlm.progress, "terminal_bar", spy)
    with decode_progress(37) as hook:
        generate(tiny_net(), [[1, 2]], SampleConfig(gen_length=8, steps=4), kind="mdlm",
                 mask_id=37, eos_id=38, pad_id=39, on_tokens=hook)
    assert [d for d, _ in seen] == [2, 4, 6, 8] and {t for _, t in seen} == {8}
