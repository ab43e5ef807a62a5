"""The training log off a terminal: a held-out value not measured at a line's step says when it
was measured; fresh values (evaluation rows) are printed plainly."""

from __future__ import annotations

from dlm.diffusion.likelihood import EvalResult
from dlm.train.progress import TrainProgress


def result(bpb: float) -> EvalResult:
    return EvalResult("mdlm", bpb * 0.7, bpb, 0.01, True, 4, 256, 250)


def lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("[t]")]


def test_a_stale_held_out_value_is_marked_with_its_step(capsys):
    first, second = result(2.999), result(2.5)
    with TrainProgress(enabled=True, title="t", total=100) as bar:
        assert not bar.live  # captured stderr is not a terminal: plain lines
        bar.update(10, {"step": 10, "train_loss": 3.1}, first)  # evaluated at step 0
        bar.update(20, {"step": 20, "train_loss": 3.0}, first)
        bar.update(30, {"step": 30, "train_loss": 2.9, "val_bits_per_byte": 2.5}, second)
        bar.update(40, {"step": 40, "train_loss": 2.8}, second)
    out = lines(capsys)
    assert len(out) == 4
    assert "val 2.999 bpb (step 0)" in out[0] and "val 2.999 bpb (step 0)" in out[1]
    assert out[2].rstrip().endswith("elapsed 0s") and "val 2.500 bpb elapsed" in out[2]
    assert "(step" not in out[2]  # measured at this very step: no mark
    assert "val 2.500 bpb (step 30)" in out[3]


def test_a_resumed_run_does_not_claim_a_step_it_does_not_know(capsys):
    restored = result(2.7)  # from the checkpoint: measured at or before step 500
    with TrainProgress(enabled=True, title="t", total=1000, start=500) as bar:
        bar.update(600, {"step": 600, "train_loss": 2.0}, restored)
    assert "val 2.700 bpb (step ≤500)" in lines(capsys)[0]
    with TrainProgress(enabled=True, title="t", total=1000, start=500, eval_step=400) as bar:
        bar.update(600, {"step": 600, "train_loss": 2.0}, restored)
    assert "val 2.700 bpb (step 400)" in lines(capsys)[0]
