"""The warm-up fits the run: at most a fifth of a cosine run whose length the config gives
(pre-training and SFT), the configured one for a time-sized run (no jump when its length is
learned) and for wsd (shared prefixes), a pure function of the step and the planned total."""

from __future__ import annotations

import pytest

from dlm.train import TrainConfig
from dlm.train.trainer import lr_at, warmup_steps


@pytest.mark.parametrize("plan", [dict(max_steps=20), dict(epochs=3)])
def test_a_short_planned_run_reaches_its_peak(plan):
    cfg = TrainConfig(lr=1.0, warmup_steps=100, min_lr_ratio=0.1, **plan)
    assert warmup_steps(cfg, 20) == 4  # a fifth of 20 steps, not 100
    lrs = [lr_at(s, cfg, 20) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert max(lrs) == 1.0 and lrs[-1] < 0.5
    assert warmup_steps(cfg, 3) == 1 and lr_at(0, cfg, 3) == 1.0  # a 3-step run
    assert warmup_steps(cfg, 1000) == 100  # long enough: the configured warm-up


def test_wsd_keeps_its_warm_up_so_longer_runs_share_its_prefix():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="wsd", max_steps=20)
    assert warmup_steps(cfg, 20) == 10
    assert [lr_at(s, cfg, 20) for s in range(14)] == [lr_at(s, cfg, 200) for s in range(14)]


def test_a_time_sized_run_keeps_its_warm_up():
    cfg = TrainConfig(lr=1.0, warmup_steps=100, max_minutes=1)
    assert warmup_steps(cfg, 200) == 100
    # the length is learned after the calibration steps: the rate goes on from where it was
    assert [lr_at(s, cfg, None) for s in range(60)] == [lr_at(s, cfg, 200) for s in range(60)]


def test_a_wsd_run_shorter_than_its_warm_up_says_so(tmp_path, small_corpus, capsys):
    from tests.conftest import train_tiny

    train_tiny(tmp_path / "w", small_corpus, lr_schedule="wsd", max_steps=4, warmup_steps=5,
               eval_every=4, ckpt_every=4)
    assert "dlm: the warm-up (5 steps) is longer than this 4-step wsd run, which never " \
           "reaches its peak rate: lower --warmup-steps" in capsys.readouterr().err
