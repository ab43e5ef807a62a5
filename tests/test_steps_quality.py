"""``dlm experiment steps-quality``: the sweep end to end on tiny checkpoints, the judge's
perplexity against a direct computation, and the small-vs-big read-off on made-up rows."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F

import dlm
from dlm.errors import DLMError
from dlm.experiments.quality import gen_perplexity, unigram_entropy
from dlm.experiments.steps_quality import Row, StepsQuality, matches, run
from dlm.models.transformer import Attention
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def small_mdlm(tmp_path_factory, small_corpus):
    out = tmp_path_factory.mktemp("sq") / "small"
    train_tiny(out, small_corpus, "mdlm", d_model=16, n_layers=1, max_steps=10)
    return out


def test_sweep_end_to_end(tmp_path, trained, small_mdlm):
    exp = StepsQuality(checkpoints=(str(trained["mdlm"]), str(small_mdlm)),
                       judge=str(trained["ar"]), out=str(tmp_path / "sq"), gen_length=16,
                       prompts=2, prompt_length=8, fractions=(0.25, 1.0),
                       strategies=("low_confidence", "random"), thresholds=(0.5,))
    rows = run(exp, progress=lambda m: None)
    assert len(rows) == 2 * (2 * 2 + 1) + 1  # models x (strategies x steps + thresholds) + judge
    for r in rows:
        assert math.isfinite(r.gen_ppl) and r.gen_ppl > 1 and 0 <= r.entropy <= 4
        assert r.wall_s > 0 and r.tokens_per_s > 0
        if r.strategy in ("low_confidence", "random"):
            assert r.nfe == r.steps  # one block, no early stop: one call per step
        elif r.strategy == "threshold":
            assert 1 <= r.nfe <= 16
    assert {r.steps for r in rows if r.strategy == "random"} == {4, 16}
    assert [r.strategy for r in rows][-1] == "ar" and rows[-1].nfe == 16
    with open(tmp_path / "sq" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    report = (tmp_path / "sq" / "report.md").read_text()
    assert "Small model + many steps vs big model + few" in report
    assert (tmp_path / "sq" / "curves.png").stat().st_size > 1000
    assert len((tmp_path / "sq" / "samples.jsonl").read_text().splitlines()) == len(rows)


def test_gen_perplexity_is_the_judges_own_likelihood(trained):
    judge = dlm.load(trained["ar"], device="cpu")
    prompts = [[5, 6, 7], [8, 9]]
    outputs = [[10, 11, judge.eos_id, 12], [13, 14, 15]]  # the first ends at (and with) its EOS
    nll, n = 0.0, 0
    with torch.no_grad():
        for p, out in zip(prompts, outputs):
            out = out[:out.index(judge.eos_id) + 1] if judge.eos_id in out else out
            ids = torch.tensor([[judge.eos_id, *p, *out]])
            logp = F.log_softmax(judge.network(ids, attn=Attention.causal())[0].float(), -1)
            start = 1 + len(p)
            for i, tok in enumerate(out):
                nll -= logp[start + i - 1, tok].item()
                n += 1
    assert n == 6  # 10, 11, EOS and 13, 14, 15
    assert gen_perplexity(judge, prompts, outputs) == pytest.approx(math.exp(nll / n), rel=1e-4)
    # stopping at once is scored too, not a free perfect perplexity
    assert gen_perplexity(judge, prompts, [[judge.eos_id], [judge.eos_id, 9]]) > 1
    assert math.isnan(gen_perplexity(judge, prompts, [[judge.mask_id], []]))


def test_unigram_entropy():
    assert unigram_entropy([1, 1, 2, 2]) == pytest.approx(1.0)
    assert unigram_entropy([5] * 8) == 0.0 and unigram_entropy([]) == 0.0
    assert unigram_entropy(list(range(8))) == pytest.approx(3.0)


def test_bad_settings_are_refused(tmp_path, trained):
    def refused(**kw):
        base = dict(checkpoints=(str(trained["mdlm"]),), judge=str(trained["ar"]),
                    out=str(tmp_path / "x"), gen_length=16, prompts=2, prompt_length=8)
        with pytest.raises(DLMError) as e:
            run(StepsQuality(**{**base, **kw}), progress=lambda m: None)
        assert not (tmp_path / "x").exists()
        return str(e.value)

    assert "must be autoregressive" in refused(judge=str(trained["mdlm"]))
    assert "is an autoregressive model" in refused(checkpoints=(str(trained["ar"]),))
    assert "context" in refused(gen_length=4096)
    assert "judge's context" in refused(gen_length=56)  # 8 + 56 fit the model, not BOS + them
    assert "unknown strategy" in refused(strategies=("best",))
    assert "block length" in refused(block_length=5)


def row(model, params, strategy, steps, ppl, wall):
    return Row(model, params, strategy, steps, math.nan, steps, wall, 1.0, ppl, 3.0)


def test_small_many_steps_vs_big_few():
    rows = [row("big", 100, "low_confidence", 8, 20.0, 0.2),
            row("big", 100, "low_confidence", 64, 10.0, 1.0),
            row("small", 10, "low_confidence", 8, 30.0, 0.05),
            row("small", 10, "low_confidence", 64, 18.0, 0.3),
            row("small", 10, "random", 64, 15.0, 0.4)]
    lines = matches(rows)
    assert len(lines) == 2
    # the cheapest small setting at least as good as big@8 steps (ppl 20) is low_confidence@64
    assert "big with low_confidence, 8 steps" in lines[0]
    assert "matched by small with low_confidence, 64 steps" in lines[0] and "1.50×" in lines[0]
    assert "no setting of small reaches it" in lines[1]  # big@64: ppl 10
    assert matches(rows[2:]) == []  # one model size: nothing to compare


def test_cli_refuses_a_diffusion_judge_in_one_line(trained, capsys):
    from dlm.cli import main

    assert main(["experiment", "steps-quality", str(trained["mdlm"]), "--judge",
                 str(trained["mdlm"]), "--gen-length", "16", "--prompt-length", "8"]) == 2
    err = capsys.readouterr().err
    assert "must be autoregressive" in err and "Traceback" not in err and err.count("\n") == 1


def test_block_diffusion_checkpoints_decode_their_own_blocks(tmp_path, small_corpus, trained):
    bd3 = tmp_path / "bd3"
    train_tiny(bd3, small_corpus, "bd3lm", block_size=8, max_steps=5)
    exp = StepsQuality(checkpoints=(str(bd3),), judge=str(trained["ar"]), out=str(tmp_path / "o"),
                       gen_length=16, prompts=2, prompt_length=8, fractions=(0.125, 1.0),
                       strategies=("low_confidence",), thresholds=(0.5,))
    rows = run(exp, progress=lambda m: None)
    # two blocks of 8: at least one step per block; steps split evenly over the blocks
    assert [(r.steps, r.nfe) for r in rows if r.strategy == "low_confidence"] == [(2, 2),
                                                                                 (16, 16)]


def test_an_existing_out_is_refused_not_overwritten(tmp_path, trained):
    out = tmp_path / "sq"
    out.mkdir()
    (out / "report.md").write_text("an earlier sweep\n")
    exp = StepsQuality(checkpoints=(str(trained["mdlm"]),), judge=str(trained["ar"]),
                       out=str(out), gen_length=16, prompts=1, prompt_length=8,
                       fractions=(1.0,), strategies=("low_confidence",), thresholds=())
    with pytest.raises(DLMError) as e:
        run(exp, progress=lambda m: None)
    assert str(out) in str(e.value) and "choose another --out or remove it" in str(e.value)
    assert (out / "report.md").read_text() == "an earlier sweep\n"  # untouched
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]


def test_the_reports_command_line_can_be_pasted_back(tmp_path, trained):
    """The report writes the command as given (the CLI's own quoting kept: an empty
    ``--thresholds ''`` stays an argument), and a sweep started from Python gets a quoted
    command that parses back to the same settings."""
    import shlex

    from dlm.cli import build_parser
    from dlm.experiments.steps_quality import command_line, report

    given = shlex.join(["dlm", "experiment", "steps-quality", str(trained["mdlm"]), "--judge",
                        str(trained["ar"]), "--thresholds", ""])
    exp = StepsQuality(checkpoints=(str(trained["mdlm"]),), judge=str(trained["ar"]),
                       thresholds=(), command=given)
    assert f"Command: `{given}`" in report(exp, [])
    assert shlex.split(given)[-2:] == ["--thresholds", ""]

    exp = StepsQuality(checkpoints=("runs/my small", "runs/big"), judge="runs/ar",
                       out=str(tmp_path / "o"), gen_length=64, block_length=16, thresholds=(),
                       fractions=(0.25, 1 / 3), strategies=("margin",), temperature=0.7)
    line = next(x for x in report(exp, []).splitlines() if x.startswith("Command: "))
    cmd = line[len("Command: `"):line.rindex("`")]
    assert cmd == command_line(exp)
    argv = shlex.split(cmd)
    assert argv[:3] == ["dlm", "experiment", "steps-quality"]
    ns = build_parser().parse_args(argv[1:])
    assert ns.checkpoints == ["runs/my small", "runs/big"] and ns.judge == "runs/ar"
    assert ns.thresholds == "" and ns.strategies == "margin" and ns.block_length == 16
    assert [float(f) for f in ns.fractions.split(",")] == pytest.approx([0.25, 1 / 3])
    assert (ns.out, ns.gen_length, ns.temperature) == (exp.out, 64, 0.7)


def plot_rows() -> list[Row]:
    """Two sizes, fixed steps 8..128, thresholds whose NFE lands on the 32-step point, and wall
    times inside one decade (where log axes label minor ticks 3×10⁻¹, 4×10⁻¹, ...)."""
    rows = []
    for model, params, base in (("small", 10, 8.0), ("big", 100, 5.0)):
        for strategy, k in (("low_confidence", 1.0), ("random", 3.0)):
            for steps in (8, 16, 32, 64, 128):
                rows.append(Row(model, params, strategy, steps, math.nan, steps,
                                0.3 + 0.004 * steps * (params / 10) ** 0.3, 100.0,
                                base * k * (1 + 8 / steps), 4.0 + steps / 200))
        for tau in (0.9, 0.7, 0.5):
            rows.append(Row(model, params, "threshold", 0, tau, 32.0, 0.43, 100.0,
                            base * (1 + 8 / 32), 4.16))
    rows.append(Row("ar", 50, "ar", 128, math.nan, 128, 0.5, 100.0, 4.0, 4.4))
    return rows


def test_plot_ticks_are_plain_numbers_that_do_not_overlap(tmp_path, saved):
    from dlm.experiments.steps_quality import _plot

    _plot(plot_rows(), tmp_path / "curves.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = saved[0]
    FigureCanvasAgg(fig).draw()  # closed after saving: draw it again to measure its labels
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            labels = [t for t, loc in zip(axis.get_ticklabels(which="both"),
                                          [*axis.get_majorticklocs(), *axis.get_minorticklocs()])
                      if t.get_visible() and t.get_text() and lo <= loc <= hi]
            texts = [t.get_text() for t in labels]
            assert texts, "every axis keeps some labels"
            for text in texts:
                assert "times" not in text and "×" not in text and "^" not in text, text
                float(text.replace("−", "-"))  # a plain number
            boxes = sorted((t.get_window_extent(renderer) for t in labels),
                           key=lambda b: b.x0 if axis is ax.xaxis else b.y0)
            for a, b in zip(boxes, boxes[1:]):
                assert not a.overlaps(b), texts
    nfe_ticks = [float(t) for t in fig.axes[0].xaxis.get_majorticklocs()]
    assert set(nfe_ticks) <= {8.0, 16.0, 32.0, 64.0, 128.0} and {8.0, 128.0} <= set(nfe_ticks)


def test_threshold_points_leave_the_fixed_step_points_visible(tmp_path, saved):
    from dlm.experiments.steps_quality import _plot

    _plot(plot_rows(), tmp_path / "curves.png")
    for ax in saved[0].axes:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        fixed, thr = lines["small: low_confidence"], lines["small: threshold"]
        assert 32.0 in list(fixed.get_xdata()) or ax is saved[0].axes[1]
        # hollow, so what lies beneath shows through; bigger than the point it may sit on
        assert thr.get_markerfacecolor() == "none" and fixed.get_markerfacecolor() != "none"
        assert thr.get_markersize() > fixed.get_markersize()
        assert thr.get_marker() != fixed.get_marker()


def test_the_default_gen_length_fits_every_context_in_whole_blocks():
    """Without --gen-length: 128 new tokens, cut to what fits after the prompt in each model's
    context and the judge's (+ its BOS), rounded down to whole blocks of every model."""
    from types import SimpleNamespace

    from dlm.experiments.steps_quality import StepsQuality, fit_gen_length

    def m(ctx, block=None):
        return SimpleNamespace(max_seq_len=ctx, block_size=block)

    exp = StepsQuality(checkpoints=("a",), judge="j", prompt_length=32)
    assert fit_gen_length(exp, [m(1024)], m(1024)) == 128
    assert fit_gen_length(exp, [m(128)], m(128)) == 95  # the judge's BOS
    assert fit_gen_length(exp, [m(128), m(128, block=8)], m(128)) == 88
    assert fit_gen_length(StepsQuality(checkpoints=("a",), judge="j", gen_length=40),
                          [m(128)], m(128)) == 40
    with pytest.raises(DLMError, match="no room"):
        fit_gen_length(StepsQuality(checkpoints=("a",), judge="j", prompt_length=127),
                       [m(128)], m(128))
