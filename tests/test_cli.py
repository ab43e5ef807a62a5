"""The dlm command: every user mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlm.cli import main

ROOT = Path(__file__).resolve().parents[1]


def dlm(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "dlm", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize("args,pattern", [
    (["train", "--preset", "huge"], "invalid choice: 'huge'"),
    (["train", "--data", "/no/such/corpus"], "unknown corpus"),
    (["train", "--lr", "fast"], "invalid float value"),
    (["train", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "--beta2", "1.5"], "--beta2 must be in (0, 1)"),
    (["sample", "/no/such/run", "hi"], "not a directory"),
    (["eval", "/no/such/run"], "not a directory"),
    (["info", "/no/such/run"], "not a directory"),
    (["frobnicate"], "invalid choice"),
    (["sample", "/no/such/run", "hi", "--device", "banana"], "is not a device"),
])
def test_user_mistakes_are_one_line(args, pattern):
    assert_one_line_error(dlm(*args), pattern)


def test_not_a_checkpoint_dir(tmp_path):
    assert_one_line_error(dlm("info", str(tmp_path)), "not a dlm checkpoint")


def test_sample_errors(trained):
    run = str(trained["mdlm"])
    assert_one_line_error(dlm("sample", run, "x" * 100, "--gen-length", "32"), "context")
    assert_one_line_error(dlm("sample", run, "hi", "--steps", "0"), "steps must be >= 1")
    assert_one_line_error(dlm("sample", run, "hi", "--remasking", "nope"), "invalid choice")
    assert_one_line_error(dlm("sample", run, "hi", "--gen-length", "30", "--block-length", "8",
                              "--steps", "3"), "fewer than the blocks")
    assert_one_line_error(dlm("sample", run, "hi", "--trace-json", "/no/such/dir/t.json"),
                          "folder does not exist")


def test_eval_errors(trained):
    assert_one_line_error(dlm("eval", str(trained["mdlm"]), "--t-samples", "0"), "t_samples")
    assert_one_line_error(dlm("eval", str(trained["mdlm"]), "--data", "/nope"), "unknown corpus")


def test_resume_with_conflicting_flags(trained):
    assert_one_line_error(dlm("train", "--out", str(trained["mdlm"]), "--resume", "--lr", "0.5"),
                          "differs from the run being resumed")


def test_every_command_has_help_with_examples(capsys):
    for cmd in ("train", "sample", "eval", "info"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"dlm {cmd}" in out


def test_sample_eval_info_end_to_end(trained, capsys, tmp_path):
    run, ar = str(trained["mdlm"]), str(trained["ar"])
    trace = tmp_path / "trace.json"
    assert main(["sample", run, "ROMEO", "--steps", "8", "--gen-length", "16",
                 "--trace-json", str(trace)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO")
    t = json.loads(trace.read_text())
    assert len(t["steps"]) == 8 and len(t["initial"][0]) == len("ROMEO") + 16
    assert main(["sample", run, "ROMEO", "--steps", "8", "--gen-length", "16", "--animate"]) == 0
    out = capsys.readouterr().out
    assert "step 8/8" in out and "final text" in out

    assert main(["eval", run, ar, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["mdlm", "ar"]
    assert rows[0]["n_bytes"] == rows[1]["n_bytes"]  # the same held-out bytes
    assert rows[0]["upper_bound"] and not rows[1]["upper_bound"]
    assert main(["eval", run, ar]) == 0
    assert "upper bound" in capsys.readouterr().out

    assert main(["info", run]) == 0
    out = capsys.readouterr().out
    assert "kind         mdlm" in out and "mask=256" in out and "held-out" in out


def test_a_copied_run_resumes_where_it_lies(trained, tmp_path, capsys):
    """--out is a place, not a text to match: a copy (any spelling of its path) resumes."""
    import shutil

    from dlm.models.formats import read_config

    copy = tmp_path / "copy"
    shutil.copytree(trained["mdlm"], copy)
    for spelling in (str(copy) + "/", os.path.relpath(copy)):
        assert main(["train", "--out", spelling, "--resume", "--no-progress"]) == 0, \
            capsys.readouterr().err
    assert read_config(copy)["step"] == 30
    assert read_config(copy)["train"]["out"] == os.path.relpath(copy)  # where it is now


def test_fps_lm_eval_paths_and_sft_out_are_checked_first(trained, tmp_path):
    run = str(trained["mdlm"])
    assert_one_line_error(dlm("sample", run, "hi", "--animate", "--fps", "0"), "--fps must be > 0")
    assert_one_line_error(dlm("lm-eval", run, "--tasks", "x", "--include-path",
                              str(tmp_path / "nope")), "no such folder")
    assert_one_line_error(dlm("lm-eval", run, "--tasks", "x", "--out",
                              str(tmp_path / "nodir" / "x.json")), "the folder does not exist")


def test_sft_default_out_is_named_after_the_checkpoint(trained, tmp_path, monkeypatch):
    import argparse

    from dlm import cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_train", lambda ns: seen.setdefault("out", ns.out) and 0)
    ns = argparse.Namespace(resume=False, base=None, checkpoint=str(trained["mdlm"]) + "/",
                            sft_file="qa.jsonl")
    cli.cmd_sft(ns)
    assert seen["out"] == f"runs/{trained['mdlm'].name}-sft"


def test_info_reads_the_published_layout(trained, tmp_path, capsys):
    hf = tmp_path / "hf"
    assert main(["convert", str(trained["mdlm"]), str(hf), "--to", "hf"]) == 0
    capsys.readouterr()
    assert main(["info", str(hf)]) == 0
    out = capsys.readouterr().out
    assert "kind         mdlm" in out and "source       llada checkpoint" in out


def test_help_says_each_default_once(capsys):
    for argv in (["train", "--help"], ["sample", "--help"], ["sft", "--help"],
                 ["experiment", "data-constrained", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in out
        for flag_help in out.split("examples:")[0].split(" --")[1:]:
            assert flag_help.lower().count("default") <= 1, flag_help


def test_experiment_flags_show_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "data-constrained", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--marks MARKS annealed evaluations per arm (default: 12)" in out
    assert "(default: runs/data-constrained)" in out


def test_resume_with_nothing_to_resume_says_so(small_corpus, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "new"), "--resume", "--data",
                 str(small_corpus), "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
                 "--seq-len", "16", "--batch-size", "2", "--max-steps", "1", "--eval-tokens",
                 "64", "--threads", "1"]) == 0
    assert "nothing to resume" in capsys.readouterr().err
