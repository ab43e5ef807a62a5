"""Experiment bookkeeping: epoch marks and their steps, resuming a half-done experiment, and
reading the crossover off synthetic curves."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch

from dlm.data.loader import EpochLoader
from dlm.errors import DLMError
from dlm.experiments.bookkeeping import (
    Point,
    Results,
    best_point,
    crossover,
    curve,
    epoch_marks,
    mark_steps,
    stops_improving,
)


def test_epoch_marks_are_log_spaced_and_end_at_the_budget():
    marks = epoch_marks(64, n=12)
    assert len(marks) == 12 and marks[-1] == 64 and marks == sorted(marks)
    ratios = np.diff(np.log(marks))
    assert np.allclose(ratios, ratios.mean(), rtol=1e-2)  # evenly spaced in log epochs
    assert epoch_marks(200, n=16, first=0.5)[0] == 0.5
    with pytest.raises(DLMError):
        epoch_marks(10, n=1)
    with pytest.raises(DLMError):
        epoch_marks(10, first=20)


def test_mark_steps_agree_with_the_loaders_epoch_count():
    seqs = np.zeros((500, 8), dtype=np.int64)
    loader = EpochLoader(seqs, batch_size=32, seed=0)
    marks = epoch_marks(40, n=12)
    steps = mark_steps(marks, loader.num_sequences, 32)
    assert steps == sorted(set(steps)) and steps[0] >= 1
    for m, s in zip(marks[-3:], steps[-3:]):  # large marks: one step apart is < 1/15 epoch
        assert loader.epochs_at(s) == pytest.approx(m, abs=32 / 500)
    assert loader.epochs_at(steps[-1]) == pytest.approx(40, abs=32 / 500)


def point(run, kind, epoch, val):
    return Point(run, kind, 0, epoch, int(epoch * 1000), epoch * 1e9, epoch, val, 0.01)


def test_a_half_done_experiment_resumes_without_redoing_finished_runs(tmp_path):
    r = Results(tmp_path)
    r.start("ar/lr=1e-3")
    for e, v in [(1, 3.0), (2, 2.8)]:
        r.add(point("ar/lr=1e-3", "ar", e, v))
    r.finish("ar/lr=1e-3")
    r.start("mdlm/lr=1e-3")
    r.add(point("mdlm/lr=1e-3", "mdlm", 1, 3.5))  # ... and the process is killed here
    again = Results(tmp_path)  # a new process
    assert again.finished() == {"ar/lr=1e-3"}
    assert {p.run for p in again.points()} == {"ar/lr=1e-3"}  # the half run is not reported
    again.start("mdlm/lr=1e-3")  # redo the unfinished run from scratch
    for e, v in [(1, 3.4), (2, 3.1)]:
        again.add(point("mdlm/lr=1e-3", "mdlm", e, v))
    again.finish("mdlm/lr=1e-3")
    pts = Results(tmp_path).points()
    assert [p.val_bpb for p in curve(pts, "mdlm/lr=1e-3")] == [3.4, 3.1]  # no stale row
    assert len(pts) == 4


def synthetic(kind, epochs, f):
    return [point(kind, kind, e, f(e)) for e in epochs]


def test_crossover_on_synthetic_curves():
    marks = epoch_marks(128, n=14)
    ar = synthetic("ar", marks, lambda e: 2.5 + 0.08 * (math.log(e) - math.log(8)) ** 2)
    dlm = synthetic("mdlm", marks, lambda e: 2.9 - 0.25 * math.log1p(e / 8))
    cross = crossover(ar, dlm)
    assert cross is not None
    assert all(d.val_bpb >= a.val_bpb for a, d in zip(ar, dlm) if a.epoch < cross)
    assert all(d.val_bpb < a.val_bpb for a, d in zip(ar, dlm) if a.epoch >= cross)
    assert stops_improving(ar) == best_point(ar).epoch
    assert 4 <= stops_improving(ar) <= 16  # AR's U-shape bottoms out near epoch 8
    assert stops_improving(dlm) == marks[-1]  # the DLM keeps improving
    # a DLM that dips below AR once and loses again has not overtaken it
    wobbly = synthetic("mdlm", marks, lambda e: 2.45 if abs(e - 8) < 2 else 9.0)
    assert crossover(ar, wobbly) is None
    assert crossover(ar, synthetic("mdlm", marks, lambda e: 9.0)) is None


def test_an_annealed_branch_is_the_run_planned_for_that_length(tmp_path, small_corpus):
    """Branch = resume the stable wsd run at the branch point with a shorter plan; it must end
    with exactly the weights of a fresh wsd run planned for the mark."""
    from safetensors.torch import load_file

    from dlm.experiments.branches import branch_dir, branch_point, train_annealed
    from dlm.train import TrainConfig

    base = dict(kind="mdlm", data=str(small_corpus), d_model=32, n_layers=2, n_heads=4,
                seq_len=64, batch_size=8, eval_every=1000, ckpt_every=1000, eval_tokens=256,
                eval_t_samples=1, warmup_steps=3, progress=False, threads=1)
    seen = []
    results = train_annealed(TrainConfig(out=str(tmp_path / "stable"), **base), [10, 20],
                             on_mark=lambda m, r, path: seen.append(m))
    assert [m for m, _ in results] == [10, 20] and seen == [10, 20]
    assert branch_point(10, 0.2) == 8
    from dlm.train import train

    train(TrainConfig(out=str(tmp_path / "fresh"), lr_schedule="wsd", max_steps=10, **base))
    a = load_file(str(branch_dir(tmp_path / "stable", 10) / "model.safetensors"))
    b = load_file(str(tmp_path / "fresh" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stable = load_file(str(tmp_path / "stable" / "model.safetensors"))
    assert not all(torch.equal(a[k], stable[k]) for k in a)


def test_wsd_schedule_shares_its_prefix():
    from dlm.train import TrainConfig
    from dlm.train.trainer import lr_at

    cfg = TrainConfig(lr=1.0, warmup_steps=4, lr_schedule="wsd", decay_frac=0.25,
                      min_lr_ratio=0.1)
    short = [lr_at(s, cfg, 40) for s in range(40)]
    long = [lr_at(s, cfg, 100) for s in range(100)]
    assert short[:30] == long[:30]  # identical until the short run decays
    assert short[3] == 1.0 and short[29] == 1.0 and short[30] < 1.0
    assert short[-1] == pytest.approx(0.1)


def test_data_constrained_end_to_end_and_resume(tmp_path, small_corpus):
    """Tuning (AR, AR with input masking, MDLM) on the small tier, then the winners on two tiers
    x two seeds: every run gets annealed points at each mark, the best mark of each diffusion
    run a final re-estimate, the report and plot are written, and a second call redoes
    nothing."""
    from dlm.experiments.data_constrained import Experiment, run, split_arm, winners

    exp = Experiment(out=str(tmp_path / "dc"), data=str(small_corpus),
                     unique_tokens=(32 * 64, 16 * 64), epochs=4, marks=3, first_mark=1,
                     d_model=32, n_layers=2, n_heads=4, seq_len=64, batch_size=8, jobs=2,
                     eval_tokens=256, eval_t_samples=1, final_t_samples=3, seeds=2,
                     lrs=(3e-3,), token_noise=(0.2,))
    assert exp.tiers == (1024, 2048)
    assert [c["cell"] for c in exp.cells()] == ["ar/lr=0.003,wd=0.1,do=0",
                                               "ar/lr=0.003,wd=0.1,do=0,noise=0.2",
                                               "mdlm/lr=0.003,wd=0.1"]
    log = []
    results = run(exp, progress=log.append)
    pts = results.points()
    won = winners(exp, pts)
    assert set(won) == {"ar", "mdlm"} and won["mdlm"] == "mdlm/lr=0.003,wd=0.1"
    names = {a["name"] for a in exp.arms(won)}
    assert len(names) == 3 + 2 * 2 * 2 - 2  # tuning + winners x tiers x seeds, shared ones once
    assert {p.run for p in pts} == names
    for name in names:
        tier, cell, seed = split_arm(name)
        c = curve(pts, name)
        steps_per_epoch = tier // 64 // 8
        assert [p.epoch for p in c] == [1.0, 2.0, 4.0]  # marks at 1, 2, 4 epochs
        assert [p.tokens for p in c] == [e * steps_per_epoch * 8 * 64 for e in (1, 2, 4)]
        assert all(math.isfinite(p.val_bpb) and p.flops > 0 and p.tier == tier for p in c)
        finals = [p for p in c if math.isfinite(p.final_bpb)]
        assert finals == [best_point(c)]  # exactly the best mark is re-estimated
        if c[0].kind == "ar":
            assert finals[0].final_bpb == finals[0].val_bpb  # exact: nothing to re-estimate
        else:
            assert finals[0].final_se > 0
    report = (tmp_path / "dc" / "report.md").read_text()
    assert "| 1,024 | ar |" in report and "| 2,048 | mdlm |" in report
    assert "4. (mdlm) the crossover epoch grows" in report and "Partial" not in report
    assert "(chosen)" in report
    assert (tmp_path / "dc" / "curves.png").stat().st_size > 1000
    log2 = []
    run(exp, progress=log2.append)
    assert log2[0].startswith("tuning: 3 of 3 arms done")
    assert log2[1] == "all 9 runs done"


def test_an_interrupted_annealed_run_continues_exactly(tmp_path, small_corpus):
    """Killed in the middle of the stable run, the same call resumes it (and its branches)
    and ends with the weights of an uninterrupted call."""
    from safetensors.torch import load_file

    from dlm.experiments.branches import branch_dir, start_dir, train_annealed
    from dlm.train import TrainConfig

    base = dict(kind="ar", data=str(small_corpus), d_model=32, n_layers=2, n_heads=4,
                seq_len=64, batch_size=8, eval_every=1000, ckpt_every=1000, eval_tokens=256,
                warmup_steps=3, progress=False, threads=1, ar_token_noise=0.1)
    train_annealed(TrainConfig(out=str(tmp_path / "straight" / "r"), **base), [6, 12])

    class Crash(Exception):
        pass

    def crash(trainer, step, row):
        if step == 9:
            raise Crash()

    cfg = TrainConfig(out=str(tmp_path / "killed" / "r"), **base)
    with pytest.raises(Crash):
        train_annealed(cfg, [6, 12], callbacks=[crash])
    steps = []
    train_annealed(cfg, [6, 12], callbacks=[lambda t, s, r: steps.append(s)])
    assert steps[0] == 6  # resumed from the branch start saved at step 5, not from step 0
    for where in (lambda d: d / "r", lambda d: branch_dir(d / "r", 6)):
        a = load_file(str(where(tmp_path / "straight") / "model.safetensors"))
        b = load_file(str(where(tmp_path / "killed") / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)

    # killed after the stable run saved itself at the branch point (step 5) but before the
    # branch's copy was made: the next call makes the copy from the checkpoint
    cfg = TrainConfig(out=str(tmp_path / "gap" / "r"), **base)

    def crash_at_branch_point(trainer, step, row):
        if step == 5:
            raise Crash()

    with pytest.raises(Crash):
        train_annealed(cfg, [6, 12], callbacks=[crash_at_branch_point])
    shutil.rmtree(start_dir(tmp_path / "gap" / "r", 6))
    train_annealed(cfg, [6, 12])
    a = load_file(str(branch_dir(tmp_path / "straight" / "r", 6) / "model.safetensors"))
    b = load_file(str(branch_dir(tmp_path / "gap" / "r", 6) / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_marks_sharing_a_branch_point_all_get_their_branch(tmp_path, small_corpus):
    from dlm.experiments.branches import branch_dir, branch_point, train_annealed
    from dlm.train import TrainConfig

    assert branch_point(7, 0.2) == branch_point(8, 0.2) == 6
    cfg = TrainConfig(out=str(tmp_path / "r"), kind="ar", data=str(small_corpus), d_model=16,
                      n_layers=1, n_heads=2, seq_len=32, batch_size=4, eval_every=1000,
                      ckpt_every=1000, eval_tokens=64, warmup_steps=2, progress=False,
                      threads=1)
    results = train_annealed(cfg, [7, 8, 10])
    assert [m for m, _ in results] == [7, 8, 10]
    assert all((branch_dir(tmp_path / "r", m) / "model.safetensors").exists() for m in (7, 8))


def test_bad_experiments_are_refused_before_training(tmp_path, small_corpus):
    from dlm.experiments.data_constrained import Experiment, run

    def refused(**kw):
        with pytest.raises(DLMError) as e:
            run(Experiment(out=str(tmp_path / "x"), data=str(small_corpus), seq_len=64,
                           batch_size=8, **kw), progress=lambda m: None)
        assert not (tmp_path / "x").exists()  # nothing trained, nothing written
        return str(e.value)

    assert "more than the" in refused(unique_tokens=(10**7,))
    assert "--marks" in refused(marks=1)
    assert "unknown kind" in refused(kinds=("ar", "gpt"))
    assert "at least one batch" in refused(unique_tokens=(100,))

    from dlm.experiments.data_constrained import _claim_folder

    same = dict(out=str(tmp_path / "y"), data=str(small_corpus), seq_len=64, batch_size=8,
                unique_tokens=(1024,))
    _claim_folder(Experiment(**same))
    _claim_folder(Experiment(**same, jobs=1, seeds=3))  # how many, how fast: may change
    with pytest.raises(DLMError, match="other settings \\(epochs\\)"):
        run(Experiment(**same, epochs=8), progress=lambda m: None)
    # repeated values would make two processes share a run folder
    twice = Experiment(kinds=("ar", "ar", "mdlm"), lrs=(1e-3, 0.001), unique_tokens=(4096, 4096))
    names = [a["name"] for a in twice.arms({"ar": twice.cells()[0]["cell"]})]
    assert len(names) == len(set(names)) and twice.tiers == (4096,)


def test_experiment_cli_rejects_unknown_kinds(capsys):
    from dlm.cli import main

    assert main(["experiment", "data-constrained", "--kinds", "ar,gpt"]) == 2
    assert "unknown kind 'gpt'" in capsys.readouterr().err


def test_reproduction_criteria_on_synthetic_curves():
    from dlm.experiments.bookkeeping import criteria, summarize

    marks = epoch_marks(128, n=14)
    ar = synthetic("ar", marks, lambda e: 2.5 + 0.08 * (math.log(e) - math.log(8)) ** 2)
    wins = synthetic("mdlm", marks, lambda e: 2.9 - 0.25 * math.log1p(e / 8))  # ends ~2.4
    holds = [h for _, h, _ in criteria(ar, wins)]
    assert holds == [True, True, None]  # criterion 3 needs two seeds per side
    two = [ar, [dataclasses.replace(p, val_bpb=p.val_bpb + 0.02) for p in ar]]
    ar2 = summarize(two)
    win2 = summarize([wins, [dataclasses.replace(p, val_bpb=p.val_bpb - 0.02) for p in wins]])
    assert [h for _, h, _ in criteria(ar, wins, ar2, win2)] == [True, True, True]
    loses = synthetic("mdlm", marks, lambda e: 3.0 - 0.05 * math.log1p(e))  # never < 2.75
    lose2 = summarize([loses, loses])
    assert [h for _, h, _ in criteria(ar, loses, ar2, lose2)] == [True, True, False]
    early_dlm = synthetic("mdlm", marks, lambda e: 2.0)  # better from the start
    assert criteria(ar, early_dlm)[0][1] is False


def test_seed_summaries_and_the_crossover_trend():
    from dlm.experiments.bookkeeping import crossover_trend, mean_curve, summarize

    marks = [1.0, 2.0, 4.0]
    a = synthetic("ar", marks, lambda e: 3.0 - 0.1 * e)
    b = synthetic("ar", marks, lambda e: 3.2 - 0.1 * e)
    s = summarize([a, b])
    assert s.values == pytest.approx([2.6, 2.8]) and s.mean == pytest.approx(2.7)
    # seed spread (sd 0.141) and estimator error (0.01) in quadrature, over sqrt(2)
    assert s.se == pytest.approx(math.hypot(0.2 / math.sqrt(2), 0.01) / math.sqrt(2))
    assert summarize([a]).se == pytest.approx(0.01)  # one seed: its own error
    a[2].final_bpb, a[2].final_se = 2.9, 0.02  # a final re-estimate replaces the tracking one
    assert summarize([a]).mean == 2.9 and summarize([a]).se == 0.02
    m = mean_curve([a, b[:2]])  # only shared marks
    assert [p.epoch for p in m] == [1.0, 2.0]
    assert [p.val_bpb for p in m] == pytest.approx([3.0, 2.9])
    # curves stay on the tracking estimator: the re-estimate does not move the minimum
    assert [p.val_bpb for p in mean_curve([a])] == pytest.approx([2.9, 2.8, 2.6])
    assert crossover_trend({65536: 8.0, 262144: 20.0}, 64)[0] is True
    assert crossover_trend({65536: 20.0, 262144: 8.0}, 64)[0] is False
    holds, detail = crossover_trend({65536: 8.0, 262144: None}, 64)
    assert holds is True and "none by epoch 64" in detail  # later than the last mark
    assert crossover_trend({65536: None, 262144: 8.0}, 64)[0] is False
    assert crossover_trend({65536: 8.0}, 64)[0] is None
    assert crossover_trend({65536: None, 262144: None}, 64)[0] is None


def test_scale_presets_and_flags():
    from dlm.cli import build_parser, data_constrained_from_args

    def exp(*args):
        return data_constrained_from_args(build_parser().parse_args(
            ["experiment", "data-constrained", *args]))

    cpu = exp()
    assert (cpu.d_model, cpu.seq_len, cpu.tiers, cpu.epochs, cpu.jobs) == (128, 128, (65536,),
                                                                          64.0, 2)
    gpu = exp("--scale", "gpu", "--epochs", "10", "--unique-tokens", "65536,262144")
    assert (gpu.d_model, gpu.n_layers, gpu.seq_len, gpu.jobs) == (512, 8, 512, 1)
    assert gpu.epochs == 10 and gpu.tiers == (65536, 262144)  # flags override the scale
    assert exp("--protocol", "full").tiers == (65536, 262144, 1048576)


def test_experiment_progress_accounting():
    from dlm.train.progress import ExperimentProgress

    with ExperimentProgress() as bars:
        bars.plan("a", 10)
        bars.plan("b", 5)
        bars.advance("a", 4)
        bars.advance("a", 20)  # never past a run's plan
        overall = bars.progress.tasks[bars.overall]
        assert (overall.completed, overall.total) == (10, 15)
        bars.finish("a")
        bars.finish("b")  # resumed: reported nothing, still counts as done
        assert overall.completed == overall.total == 15 and not bars.tasks


def test_runs_are_scheduled_tuning_first_then_seed_major():
    from dlm.experiments.data_constrained import Experiment, schedule_key

    exp = Experiment(unique_tokens=(4096, 8192), seeds=2, lrs=(1e-3,), token_noise=())
    won = {"ar": "ar/lr=0.001,wd=0.1,do=0", "mdlm": "mdlm/lr=0.001,wd=0.1"}
    # the kinds finish tuning at different times: AR's final runs are queued first
    queue = exp.final_arms({"ar": won["ar"]}) + exp.tuning_arms() + \
        exp.final_arms({"mdlm": won["mdlm"]})
    names = list(dict.fromkeys(a["name"] for a in sorted(queue,
                                                          key=lambda a: schedule_key(exp, a))))
    assert names == ["u4096/ar/lr=0.001,wd=0.1,do=0/seed0", "u4096/mdlm/lr=0.001,wd=0.1/seed0",
                     "u8192/ar/lr=0.001,wd=0.1,do=0/seed0", "u8192/mdlm/lr=0.001,wd=0.1/seed0",
                     "u4096/ar/lr=0.001,wd=0.1,do=0/seed1", "u4096/mdlm/lr=0.001,wd=0.1/seed1",
                     "u8192/ar/lr=0.001,wd=0.1,do=0/seed1", "u8192/mdlm/lr=0.001,wd=0.1/seed1"]


def test_tuning_runs_take_turns_between_kinds():
    from dlm.experiments.data_constrained import Experiment, schedule_key

    exp = Experiment(protocol="full")
    order = sorted(exp.tuning_arms(), key=lambda a: schedule_key(exp, a))
    assert [a["kind"] for a in order[:12]] == ["ar", "mdlm"] * 6  # MDLM has 6 cells, AR 16
    assert [a["kind"] for a in order[12:]] == ["ar"] * 10


def test_experiment_progress_logs_plain_lines_off_a_terminal():
    """Off a terminal: a line each time a run passes another tenth of its steps (run,
    step/total, elapsed, ETA), so a log shows the experiment is alive; at most ten a run."""
    from dlm.train.progress import ExperimentProgress

    now = [0.0]
    lines = []
    with ExperimentProgress(live=False, log=lines.append, clock=lambda: now[0]) as bars:
        bars.plan("u1024/ar/seed0", 200)
        bars.plan("u1024/mdlm/seed0", 200)
        bars.start("u1024/ar/seed0")
        for _ in range(20):  # the workers report every 10 steps
            now[0] += 5.0
            bars.advance("u1024/ar/seed0", 10)
        bars.finish("u1024/ar/seed0")
    assert len(lines) == 10  # at 20, 40, ..., 200 of 200 steps: not one per report
    assert lines[0].startswith("u1024/ar/seed0: step 20/200, 10s elapsed, ETA 1m 30s")
    assert "(all runs: 20/400 steps, ETA 3m 10s)" in lines[0]
    assert lines[-1].startswith("u1024/ar/seed0: step 200/200, 1m 40s elapsed, ETA 0s")
    quiet = []
    with ExperimentProgress(live=True, log=quiet.append) as bars:  # a terminal: bars only
        bars.plan("a", 10)
        bars.advance("a", 10)
    assert quiet == []


def test_data_constrained_logs_progress_lines_of_its_runs(tmp_path, small_corpus):
    """The experiment's log (off a terminal) carries its runs' progress lines, not just
    'tuning: 0 of N arms done' until the first run ends."""
    from dlm.experiments.data_constrained import Experiment, run

    exp = Experiment(out=str(tmp_path / "dc"), data=str(small_corpus), kinds=("ar",),
                     unique_tokens=(16 * 64,), epochs=16, marks=2, first_mark=8, d_model=16,
                     n_layers=1, n_heads=2, seq_len=64, batch_size=8, jobs=1, eval_tokens=128,
                     lrs=(3e-3,), token_noise=())
    log = []
    run(exp, progress=log.append)
    name = exp.tuning_arms()[0]["name"]
    steps = [m for m in log if m.startswith(f"{name}: step ")]
    assert steps and "elapsed, ETA" in steps[0]
    finished = next(i for i, m in enumerate(log) if m.startswith(f"finished {name}"))
    assert log.index(steps[0]) < finished


def test_the_plotted_star_is_the_value_the_report_table_gives(tmp_path, monkeypatch):
    """A diffusion run's reported best is its re-estimate at the best mark; the star marking
    the best on the plot must sit at that number, not at the tracking value."""
    from matplotlib.figure import Figure

    from dlm.experiments.bookkeeping import summarize
    from dlm.experiments.data_constrained import _plot

    saved = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: (saved.append(fig),
                                                                  real(fig, *a, **kw)))

    marks = [1.0, 2.0, 4.0]
    dlm = synthetic("mdlm", marks, lambda e: 3.0 - 0.1 * e)  # tracking: best 2.6 at epoch 4
    dlm[-1].final_bpb, dlm[-1].final_se = 2.45, 0.005  # K = 128 fresh draws there
    ar = synthetic("ar", marks, lambda e: 2.9 - 0.05 * e)
    ar[-1].final_bpb, ar[-1].final_se = ar[-1].val_bpb, ar[-1].val_se
    _plot({1024: {"ar": [ar], "mdlm": [dlm]}}, tmp_path / "curves.png")
    for ax, x in zip(saved[0].axes[:2], ("epoch", "flops")):
        stars = sorted((float(ln.get_ydata()[0]), float(ln.get_xdata()[0]))
                       for ln in ax.get_lines() if ln.get_marker() == "*")
        assert [y for y, _ in stars] == pytest.approx([2.45, ar[-1].val_bpb])  # the table's
        assert [x_ for _, x_ in stars] == [getattr(dlm[-1], x), getattr(ar[-1], x)]
    assert summarize([dlm]).mean == 2.45 and summarize([ar]).mean == ar[-1].val_bpb
