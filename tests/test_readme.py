"""Every command and Python line of README.md, and every example of every ``dlm … --help``,
runs as printed — in order, in one scratch folder, on the tiny models the README's own Train
lines make. What is changed, and nothing else (README.md, "Examples are tested", says it too):

* budgets (``BUDGETS``): training gets ``--max-steps 3 --eval-tokens 1024 --no-progress``,
  ``--animate`` gets ``--fps 1000``, lm-eval a 3-document limit, the experiments a small grid;
  the Python ``max_steps=N`` becomes 3;
* ``~`` is the scratch folder, whose ``models/`` holds tiny random LLaDA / Dream / LLaDA-MoE /
  LLaDA2 checkpoints (published names, shapes and config keys) under the published names;
* a line that says ``--device cuda`` (needs a GPU) or names ``hf:`` (needs the network) is not
  run, nor ``make`` (the suite itself);
* ``dlm serve`` starts in the background on a free port (the one server of the module: a later
  ``dlm serve`` line replaces it) and ``127.0.0.1:8000`` in the lines after it means that port;
  ``curl`` lines run in bash and must print JSON or events without an error.

A line is split into arguments by bash itself (quotes, ``$'…'``, ``\\`` continuations,
comments), then ``dlm`` runs in this process (``dlm.cli.main``) and ``torchrun`` /
``python -m`` in a child process. Each line is one test case, named after its source; the
cases run in order and later ones use the runs earlier ones made (as a reader's would), so run
the module whole: one case picked alone with -k finds no runs/tiny.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TRAIN_BUDGET = ["--max-steps", "3", "--eval-tokens", "1024", "--no-progress"]
DATA_CONSTRAINED_BUDGET = [
    "--unique-tokens", "2048", "--epochs", "2", "--marks", "2", "--d-model", "32", "--n-layers",
    "1", "--n-heads", "2", "--seq-len", "32", "--batch-size", "4", "--eval-tokens", "256",
    "--final-t-samples", "2", "--seeds", "1", "--lrs", "1e-3", "--ar-token-noise", "0",
    "--jobs", "1"]
STEPS_QUALITY_BUDGET = ["--prompts", "1", "--strategies", "low_confidence",
                        "--fractions", "0.5", "--thresholds", "0.9"]
BUDGETS = {  # dlm command -> flags appended (argparse: the last value of a flag wins)
    "train": TRAIN_BUDGET,
    "sft": ["--max-steps", "3", "--no-progress"],
    "eval": ["--eval-tokens", "1024", "--t-samples", "2"],
    "lm-eval": ["--limit", "3", "--mc-num", "2", "--bootstrap-iters", "0"],
    "data-constrained": DATA_CONSTRAINED_BUDGET,
    "steps-quality": STEPS_QUALITY_BUDGET,
}
# the published checkpoints the README names, as tiny stand-ins of their family
STAND_INS = {"LLaDA-8B-Instruct": "llada", "LLaDA-8B-Base": "llada",
             "Dream-v0-Base-7B": "dream", "Dream-v0-Instruct-7B": "dream",
             "LLaDA-MoE-7B-A1B-Instruct": "llada_moe", "LLaDA2.0-mini": "llada2",
             "LLaDA2.0-flash": "llada2"}


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, first line number) of every fenced block."""
    out, lang, body, start = [], None, [], 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, body, start = line[3:].strip(), [], n + 1
            else:
                out.append((lang, "\n".join(body), start))
                lang = None
        elif lang is not None:
            body.append(line)
    return out


def command_lines(body: str) -> list[str]:
    """Shell lines of a block, each with its ``\\`` continuations joined."""
    out, current = [], ""
    for line in body.splitlines():
        current += line.strip() if current else line
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def help_examples() -> list[tuple[str, str]]:
    """(dlm COMMAND --help, line) for every example of every command's help."""
    import argparse

    from dlm.cli import build_parser

    out = []

    def visit(parser: argparse.ArgumentParser, name: str) -> None:
        if parser.epilog and "examples:" in parser.epilog:
            shown = [ln for ln in parser.epilog.splitlines() if ln.startswith("  ")]
            for line in command_lines("\n".join(shown)):
                if re.match(r"(dlm|torchrun|python) ", line) and "STUDY" not in line:
                    out.append((f"{name} --help", line))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    visit(sub, f"{name} {sub_name}")

    visit(build_parser(), "dlm")
    return out


def collect() -> list[tuple[str, str, str]]:
    """(kind, source, text): README blocks' lines and Python blocks, then --help examples not
    already in the README, in order."""
    cases, seen = [], set()
    for lang, body, line in fenced_blocks((REPO / "README.md").read_text()):
        if lang == "bash":
            for cmd in command_lines(body):
                cases.append(("shell", f"README.md:{line}", cmd))
                seen.add(" ".join(cmd.split("#")[0].split()))
        elif lang == "python":
            cases.append(("python", f"README.md:{line}", body))
    for source, cmd in help_examples():
        key = " ".join(cmd.split("#")[0].split())
        if key not in seen:
            seen.add(key)
            cases.append(("shell", source, cmd))
    return cases


CASES = collect()


def skip_reason(cmd: str) -> str | None:
    if "--device cuda" in cmd:
        return "needs a GPU (--device cuda)"
    if "hf:" in cmd:
        return "needs the network (hf:)"
    if cmd.startswith("make "):
        return ("make lines run whole jobs (make test is this suite; make demo and make "
                "serve train and serve)")
    return None


def split_args(cmd: str, home: Path) -> list[str]:
    """The arguments bash gives the command (quotes, $'…', ~ and comments as a shell reads
    them), without running it."""
    out = subprocess.run(["bash", "-c", f'set -- {cmd}\nprintf "%s\\0" "$@"'], check=True,
                         capture_output=True, text=True, env={**os.environ, "HOME": str(home)})
    return out.stdout.split("\0")[:-1]


def with_budget(args: list[str]) -> list[str]:
    if args[0] == "torchrun":
        return [*args, *TRAIN_BUDGET]
    if args[0] != "dlm":
        if args[:3] == ["python", "-m", "dlm.harness"]:
            return [*args, "--limit", "3"]
        return args
    command = args[2] if args[1] == "experiment" else args[1]
    extra = list(BUDGETS.get(command, []))
    if command == "eval" and "--check-elbo" in args:
        extra = []
    if "--animate" in args:
        extra += ["--fps", "1000"]
    return [*args, *extra]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The folder every example runs in: examples/ and docs/ from the repository, and ~/models
    with the tiny stand-ins of the published checkpoints."""
    from tests.models.test_hf import (
        DREAM_CONFIG,
        LLADA_CONFIG,
        dream_weights,
        llada_weights,
        write_checkpoint,
    )

    work = tmp_path_factory.mktemp("readme")
    for name in ("examples", "docs"):
        shutil.copytree(REPO / name, work / name)
    from tests.models.test_moe import (
        LLADA2_CONFIG,
        LLADA_MOE_CONFIG,
        llada2_weights,
        llada_moe_weights,
        write_moe,
    )

    for name, family in STAND_INS.items():
        if family in ("llada_moe", "llada2"):
            config, weights = (LLADA_MOE_CONFIG, llada_moe_weights) if family == "llada_moe" \
                else (LLADA2_CONFIG, llada2_weights)
            write_moe(work / "models" / name, config, weights())
            continue
        config, weights = (LLADA_CONFIG, llada_weights) if family == "llada" else \
            (DREAM_CONFIG, dream_weights)
        write_checkpoint(work / "models" / name, config, weights())
    yield work
    stop_server()  # the examples' server, if one is still up


def test_the_cases_cover_the_readme_and_every_help():
    """The collector finds what it should (so an empty list cannot pass silently)."""
    sources = {source for source, _ in help_examples()}
    assert sum(kind == "python" for kind, _, _ in CASES) >= 1
    assert {"dlm train --help", "dlm sample --help", "dlm sft --help",
            "dlm experiment steps-quality --help", "dlm lm-eval --help"} <= sources
    readme = [cmd for kind, source, cmd in CASES if source.startswith("README")
              and kind == "shell"]
    assert len(readme) >= 40 and sum(skip_reason(c) is None for c in readme) >= 30


SERVER: dict = {}  # the running ``dlm serve`` of the examples: its process and port


def stop_server() -> None:
    proc = SERVER.pop("proc", None)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    SERVER.pop("port", None)


def start_server(args: list[str], source: str, scratch: Path) -> None:
    """``dlm serve ...`` in the background on a free port, ready before the next line."""
    import socket
    import time

    import httpx

    stop_server()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HOME": str(scratch), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "dlm", *args[1:], "--port", str(port)],
                            cwd=scratch, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    SERVER.update(proc=proc, port=port)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read() if proc.poll() is not None else "not ready in 120 s"
            stop_server()
            raise AssertionError(f"{source}: {' '.join(args)} did not serve:\n{err[-3000:]}")
        time.sleep(0.1)


def on_server(text: str) -> str:
    """A line or block that talks to the README's server: the port it really has."""
    port = SERVER.get("port")
    return text if port is None else text.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def run_case(kind: str, source: str, text: str, scratch: Path) -> None:
    """Run one example in ``scratch`` (the cwd and ~); AssertionError if it fails."""
    text = on_server(text)
    if kind == "python":
        code = re.sub(r"max_steps=\d+", "max_steps=3, eval_tokens=1024, progress=False", text)
        exec(compile(code, source, "exec"), {"__name__": "__readme__"})
        return
    args = with_budget(split_args(text, scratch))
    if args[:2] == ["dlm", "serve"]:
        return start_server(args, source, scratch)
    if args[0] == "curl":
        done = subprocess.run(["bash", "-c", text], cwd=scratch, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip(), f"{source}: {text}\n{done.stderr}"
        assert '"error"' not in done.stdout, f"{source}: {text}\n{done.stdout[-2000:]}"
        return
    if args[0] == "dlm":
        from dlm.cli import main

        rc = main(args[1:])
        assert rc == 0, f"{source}: {text} exited with {rc}"
        return
    program = {"torchrun": [sys.executable, "-m", "torch.distributed.run"],
               "python": [sys.executable]}[args[0]]
    env = {**os.environ, "HOME": str(scratch), "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([*program, *args[1:]], cwd=scratch, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{source}: {text}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("kind,source,text", CASES,
                         ids=[f"{s}:{t.splitlines()[0][:60]}" for _, s, t in CASES])
def test_example_runs_as_printed(kind, source, text, scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("HOME", str(scratch))
    reason = skip_reason(text) if kind == "shell" else None
    if reason:
        pytest.skip(reason)
    run_case(kind, source, text, scratch)


@pytest.mark.parametrize("kind,text", [
    ("shell", "dlm sample runs/no-such-run '**ROMEO**'"),
    ("shell", "dlm sample ~/models/LLaDA-8B-Base 'w1 w2' --steps 0"),
    ("shell", "python -m dlm.harness --model dlm --model_args pretrained=runs/nope --tasks x"),
    ("python", "import dlm\ndlm.load('runs/no-such-run')"),
])
def test_a_broken_example_fails(kind, text, scratch, monkeypatch):
    """The runner does fail on a broken line (a mistyped path, a bad flag value)."""
    from dlm.errors import DLMError

    monkeypatch.chdir(scratch)
    with pytest.raises(AssertionError if kind == "shell" else DLMError):
        run_case(kind, "broken", text, scratch)
