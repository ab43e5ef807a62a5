"""The ``dlm`` command: train | sft | sample | infill | edit | eval | lm-eval | experiment |
convert | merge | serve | info.

Flags of ``train`` and ``sample`` are generated from ``TrainConfig`` and ``SampleConfig`` (one
definition per knob). A user mistake prints one line and exits 2; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import DLMError

EXIT_USAGE = 2


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; each flag's default said once: appended unless the help
    already says it, or the default is None / off / suppressed (then the help says what
    happens)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("default:" in text or "(default" in text or not action.option_strings
                or d is None or d is False or d is True or d == argparse.SUPPRESS):
            return text
        return f"{text} (default: {str(d).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (plus where to look) and exits 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------------------
# flags from dataclasses


def _flag_type(annotation: str):
    base = annotation.replace(" | None", "").strip()
    return {"int": int, "float": float, "str": str, "bool": bool, "list[str]": list}[base]


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field; defaults are left to the dataclass (SUPPRESS), so the
    parsed namespace holds only what the user typed."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = _flag_type(f.type)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "")
        said = "default:" in help_text or "(default" in help_text  # said: not twice
        if typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS,
                                help=help_text if said else
                                f"{help_text} (default: {'on' if default else 'off'})")
        elif typ is list:
            parser.add_argument(flag, action="append", default=argparse.SUPPRESS,
                                metavar="TEXT", help=f"{help_text} (repeatable)")
        else:
            choices = f.metadata.get("choices")  # a callable: what is registered now (kinds)
            choices = choices() if callable(choices) else choices
            parser.add_argument(flag, type=typ, default=argparse.SUPPRESS, choices=choices,
                                metavar=None if choices else f.name.upper(),
                                help=help_text if said or default is None else
                                f"{help_text} (default: {default})")


def given(ns: argparse.Namespace, cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(ns).items() if k in names}


# ----------------------------------------------------------------------------------------------
# commands


def cmd_train(ns: argparse.Namespace) -> int:
    from .models.formats import read_config
    from .train import TrainConfig, train
    from .train.checkpoint import has_checkpoint
    from .train.config import RESUME_OVERRIDABLE

    flags = given(ns, TrainConfig)
    cfg = TrainConfig(**flags).validate()
    run_dir = Path(cfg.run_dir)
    if cfg.resume and has_checkpoint(run_dir):  # resuming: typed flags must agree with the run
        saved = read_config(run_dir).get("train", {})
        for key, value in flags.items():
            if key not in RESUME_OVERRIDABLE and key in saved and saved[key] != value:
                raise DLMError(f"--{key.replace('_', '-')} {value} differs from the run being "
                               f"resumed ({saved[key]}); drop the flag or use another --out")
    result = train(cfg)
    if result is not None:
        print(f"{run_dir}: {result.describe()}")
    return 0


SFT_SKIP = ("kind", "init_from", "sft_data", "data", "text_field", "tokenizer", "vocab_size",
            "preset", "d_model", "n_layers", "n_heads", "n_kv_heads", "block_size", "t_low",
            "t_high", "unique_tokens", "ar_token_noise", "eval_tokens")


def cmd_sft(ns: argparse.Namespace) -> int:
    from .models.formats import hub_snapshot, read_config
    from .models.loading import checkpoint_config
    from .train.checkpoint import has_checkpoint

    if getattr(ns, "resume", False) and hasattr(ns, "out") and has_checkpoint(ns.out):
        saved = read_config(ns.out)  # continue the run: its base and kind are recorded
        ns.kind, ns.init_from = saved["kind"], saved["train"]["init_from"]
        if ns.base:  # a LoRA run's base that has moved
            ns.init_from = str(Path(ns.base).resolve())
    else:
        if ns.base:
            raise DLMError("--base is for resuming a LoRA run whose base moved; the "
                           "checkpoint to fine-tune is the first argument")
        local = hub_snapshot(ns.checkpoint)
        ns.kind = checkpoint_config(local)["kind"]  # published ones too (LLaDA2: bd3lm)
        # recorded as the run's base: a hub id stays one, a folder is made absolute
        ns.init_from = ns.checkpoint if ns.checkpoint.startswith("hf:") else \
            str(local.resolve())
        if not hasattr(ns, "out"):  # runs/tiny -> runs/tiny-sft; hf:org/name -> runs/name-sft
            ns.out = f"runs/{Path(ns.checkpoint.removeprefix('hf:').rstrip('/')).name}-sft"
    ns.sft_data = ns.sft_file
    return cmd_train(ns)


def load_model(ns: argparse.Namespace, path: str):
    """``dlm.load`` with the shared --device / --dtype / --adapter / --no-adapter / --base."""
    from . import load
    from .models.lora import parse_adapter

    adapters = [parse_adapter(a) for a in getattr(ns, "adapter", None) or []]
    if adapters and getattr(ns, "no_adapter", False):
        raise DLMError("--no-adapter runs the base alone; drop it or the --adapter flags")
    model = load(path, device=getattr(ns, "device", "auto"), dtype=getattr(ns, "dtype", None),
                 adapters=adapters, base=getattr(ns, "base", None))
    if getattr(ns, "no_adapter", False):
        if not model.adapters:
            raise DLMError(f"--no-adapter: {path} carries no adapter")
        model.set_adapters_enabled(False)
    return model


def add_adapter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", action="append", metavar="PATH[:WEIGHT]",
                   help="load a LoRA adapter (a dlm sft --lora run or a PEFT adapter folder) "
                   "at this weight (default 1); repeat to combine several")
    p.add_argument("--no-adapter", action="store_true",
                   help="a LoRA run's base alone (its adapter switched off)")
    p.add_argument("--base", metavar="PATH", help="a LoRA run's base checkpoint, if it moved")


def _decode(ns: argparse.Namespace, inputs: list[str], run) -> int:
    """Shared by sample / infill / edit: load, run, write the trace, animate or print."""
    from .sample.config import SampleConfig

    if ns.trace:
        if Path(ns.trace).suffix.lower() not in (".json", ".html"):
            raise DLMError(f"--trace {ns.trace}: use a .json or .html file name")
        if not Path(ns.trace).resolve().parent.is_dir():
            raise DLMError(f"--trace {ns.trace}: the folder does not exist")
    if ns.fps <= 0:
        raise DLMError(f"--fps must be > 0 (got {ns.fps:g})")
    model = load_model(ns, ns.checkpoint)
    fields = given(ns, SampleConfig)
    with decode_progress(model.mask_id, enabled=not ns.animate) as on_tokens:
        out = run(model, inputs if len(inputs) > 1 else inputs[0],
                  trace=ns.animate or ns.trace is not None, on_tokens=on_tokens, **fields)
    if ns.trace:
        from .sample.export import write_trace

        write_trace(out.trace, model.tokenizer, ns.trace)
    texts = out.text if isinstance(out.text, list) else [out.text]
    if ns.command == "sample":
        texts = [p + t for p, t in zip(inputs, texts)]
    if getattr(ns, "json", False):
        extra = {k: getattr(out, k) for k in ("fillings", "remasked", "changed", "scores")
                 if hasattr(out, k)}
        print(json.dumps({"text": texts, "nfe": out.nfe, **extra}, indent=2))
    elif ns.animate:
        from .animate import animate

        for row, text in enumerate(texts):
            animate(out.trace.row(row), model.tokenizer, fps=ns.fps, final_text=text)
    else:
        for text in texts:
            print(text)
            if len(texts) > 1:
                print("-" * 40)
    return 0


@contextmanager
def decode_progress(mask_id: int, enabled: bool = True):
    """An ``on_tokens`` hook drawing tokens decoded (and the ETA) on a terminal, so a long
    decode is not silent; None (no hook) elsewhere."""
    from .progress import terminal_bar

    with terminal_bar("decoding", enabled=enabled) as update:
        if update is None:
            yield None
            return

        def on_tokens(step, state) -> None:
            total = int((state.valid & ~state.fixed).sum())  # the slots that started masked
            update(total - int((state.canvas == mask_id).sum()), total)

        yield on_tokens


def cmd_sample(ns: argparse.Namespace) -> int:
    return _decode(ns, ns.prompt, lambda m, x, **kw: m.generate(x, **kw))


def cmd_infill(ns: argparse.Namespace) -> int:
    return _decode(ns, ns.template, lambda m, x, **kw: m.infill(x, **kw))


def cmd_edit(ns: argparse.Namespace) -> int:
    spans = None
    if ns.span:
        spans = []
        for s in ns.span:
            a, sep, b = s.partition(":")
            if not sep or not a.strip().isdigit() or not b.strip().isdigit():
                raise DLMError(f"--span {s!r}: write START:END character offsets, e.g. 4:9")
            spans.append((int(a), int(b)))
    return _decode(ns, [ns.text], lambda m, x, **kw: m.edit(
        x, spans=spans, budget=ns.budget, score_passes=ns.score_passes, **kw))


def cmd_eval(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if ns.check_elbo:
        from .diffusion.check_elbo import check_elbo

        print(check_elbo(seed=ns.seed).describe())
        return 0
    if not ns.checkpoints:
        raise DLMError("give at least one checkpoint (or --check-elbo)")
    results = []
    for path in ns.checkpoints:
        model = load_model(ns, path)
        results.append((path, model.evaluate(ns.data, ns.eval_tokens, ns.t_samples, ns.seed,
                                             progress=True)))
    if ns.json:
        print(json.dumps([{"checkpoint": p, **r.to_dict()} for p, r in results], indent=2))
        return 0
    table = Table(title="held-out loss (diffusion rows are upper bounds: -ELBO)")
    for col in ("checkpoint", "kind", "bits/byte", "± MC s.e.", "nats/token", "bytes"):
        table.add_column(col, justify="left" if col in ("checkpoint", "kind") else "right")
    for path, r in results:
        bound = "≤ " if r.upper_bound else ""
        table.add_row(str(path), r.kind, f"{bound}{r.bits_per_byte:.4f}",
                      f"{r.se_bits_per_byte:.4f}" if r.upper_bound else "exact",
                      f"{bound}{r.nats_per_token:.4f}", str(r.n_bytes))
    Console().print(table)
    if len({r.n_bytes for _, r in results}) > 1:
        print("note: the checkpoints were scored on different held-out bytes (different "
              "data, tokenizer or context); compare bits/byte with care")
    return 0


def _numbers(text: str | None, kind: type, flag: str, empty: bool = False) -> tuple | None:
    """'65536,262144' -> (65536, 262144); None stays None; '' is () when ``empty``."""
    if text is None:
        return None
    try:
        values = tuple(kind(float(v)) if kind is int else kind(v)
                       for v in text.split(",") if v.strip())
    except ValueError:
        raise DLMError(f"--{flag}: expected comma-separated numbers (got {text!r})") from None
    if not values and not empty:
        raise DLMError(f"--{flag}: give at least one value")
    return values


def data_constrained_from_args(ns: argparse.Namespace):
    """The Experiment the flags describe: the --scale's settings, then any flag given."""
    from .experiments.data_constrained import SCALES, Experiment

    given = dict(unique_tokens=_numbers(ns.unique_tokens, int, "unique-tokens"),
                 epochs=ns.epochs, seq_len=ns.seq_len, batch_size=ns.batch_size,
                 d_model=ns.d_model, n_layers=ns.n_layers, n_heads=ns.n_heads, jobs=ns.jobs,
                 eval_tokens=ns.eval_tokens)
    exp = Experiment(out=ns.out, kinds=tuple(k.strip() for k in ns.kinds.split(",") if k),
                     data=ns.data, marks=ns.marks, protocol=ns.protocol, seeds=ns.seeds,
                     lrs=_numbers(ns.lrs, float, "lrs"),
                     token_noise=_numbers(ns.ar_token_noise, float, "ar-token-noise"),
                     final_t_samples=ns.final_t_samples,
                     command=shlex.join(["dlm", *sys.argv[1:]]),
                     **{**SCALES[ns.scale], **{k: v for k, v in given.items() if v is not None}})
    return exp


def cmd_data_constrained(ns: argparse.Namespace) -> int:
    from .experiments.data_constrained import run

    run(data_constrained_from_args(ns))
    print(f"{ns.out}: results.csv, curves.png, report.md")
    print((Path(ns.out) / "report.md").read_text())
    return 0


def cmd_steps_quality(ns: argparse.Namespace) -> int:
    from .experiments.steps_quality import StepsQuality, run

    exp = StepsQuality(
        checkpoints=tuple(ns.checkpoints), judge=ns.judge, out=ns.out, gen_length=ns.gen_length,
        block_length=ns.block_length, prompts=ns.prompts, prompt_length=ns.prompt_length,
        fractions=_numbers(ns.fractions, float, "fractions") or (),
        strategies=tuple(x.strip() for x in ns.strategies.split(",") if x.strip()),
        thresholds=_numbers(ns.thresholds, float, "thresholds", empty=True) or (),
        temperature=ns.temperature, seed=ns.seed, device=ns.device,
        command=shlex.join(["dlm", *sys.argv[1:]]))
    run(exp)
    print(f"{ns.out}: results.csv, samples.jsonl, curves.png, report.md")
    return 0


def new_dir(path: str) -> Path:
    """A directory to write a checkpoint into: new, or empty (never overwritten)."""
    dest = Path(path)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DLMError(f"{dest} exists and is not empty; choose a new directory")
    return dest


def cmd_convert(ns: argparse.Namespace) -> int:
    from . import load

    dest = new_dir(ns.dest)
    model = load(ns.source, device="cpu", dtype=ns.dtype, strict=not ns.allow_unexpected)
    if ns.to == "hf":
        arch = model.save_pretrained(dest)
        print(f"{dest}: {model!r} in the {arch} layout")
    else:
        model.save(dest)
        print(f"{dest}: {model!r}")
    return 0


def cmd_lm_eval(ns: argparse.Namespace) -> int:
    from .sample.config import SampleConfig

    try:
        import lm_eval

        from .harness import DLMHarness
    except ImportError:
        raise DLMError("dlm lm-eval needs lm-evaluation-harness: pip install 'dlm[eval]'") \
            from None
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable, make_table

    tasks = [t.strip() for t in ns.tasks.split(",") if t.strip()]
    if not tasks:
        raise DLMError("--tasks: give at least one task name")
    if ns.include_path and not Path(ns.include_path).is_dir():
        raise DLMError(f"--include-path {ns.include_path}: no such folder")
    if ns.out and not Path(ns.out).resolve().parent.is_dir():  # before, not after, the run
        raise DLMError(f"--out {ns.out}: the folder does not exist")
    manager = None
    if ns.include_path:  # indexing lm-eval's thousands of built-in tasks takes a while: only
        manager = TaskManager(include_path=ns.include_path, include_defaults=False)  # if needed
        if any(not manager.match_tasks([t]) for t in tasks):
            manager = TaskManager(include_path=ns.include_path)
    manager = manager or TaskManager()
    missing = [t for t in tasks if not manager.match_tasks([t])]
    if missing:
        raise DLMError(f"unknown lm-eval task(s): {', '.join(missing)} (lm_eval ls tasks lists "
                       "them; --include-path adds your own YAML)")
    harness = DLMHarness(ns.checkpoint, device=ns.device, dtype=ns.dtype,
                         batch_size=ns.batch_size, mc_num=ns.mc_num,
                         check_greedy=ns.check_greedy, cfg=ns.cfg, seed=ns.seed,
                         adapters="+".join(ns.adapter or []) or None, base=ns.base,
                         **{k: v for k, v in given(ns, SampleConfig).items() if k != "seed"})
    results = lm_eval.simple_evaluate(
        model=harness, tasks=tasks, task_manager=manager, num_fewshot=ns.num_fewshot,
        limit=ns.limit, log_samples=ns.log_samples, bootstrap_iters=ns.bootstrap_iters,
        apply_chat_template=ns.apply_chat_template, random_seed=ns.seed)
    print(make_table(results))
    if ns.out:
        Path(ns.out).write_text(json.dumps(results, indent=2, default=handle_non_serializable)
                                + "\n")
        print(f"{ns.out}: the full results")
    return 0


def cmd_merge(ns: argparse.Namespace) -> int:
    dest = new_dir(ns.dest)
    from .pipeline import parse_dtype

    dtype, ns.dtype, ns.device = parse_dtype(ns.dtype), None, "cpu"
    model = load_model(ns, ns.source)
    if not model.adapters:
        raise DLMError(f"{ns.source} carries no adapter; give one or more --adapter PATH[:W]")
    merged = model.adapters
    base = model.config.get("adapter", {}).get("base", ns.source)
    stored = model.network.embed_tokens.weight.dtype
    model.network.float()  # W + sum of updates in fp32, rounded once to the dtype written
    model.merge_adapters()
    model.network.to(dtype or stored)
    model.config["merged_adapters"] = {"base": base, "weights": merged,
                                       "sources": [ns.source, *(ns.adapter or [])]}
    if ns.to == "hf":
        arch = model.save_pretrained(dest)
        print(f"{dest}: {model!r} with {', '.join(merged)} merged, in the {arch} layout")
    else:
        model.save(dest)
        print(f"{dest}: {model!r} with {', '.join(f'{n} x {w:g}' for n, w in merged.items())} "
              "merged")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    import os

    from .models.lora import parse_adapter
    from .serve import serve
    from .serve.protocol import Limits

    for name in ("max_concurrent", "max_queue", "max_tokens", "max_steps", "max_n", "port"):
        if getattr(ns, name) < (0 if name == "port" else 1):
            raise DLMError(f"--{name.replace('_', '-')} must be >= 1")
    if ns.timeout <= 0:
        raise DLMError("--timeout must be > 0 seconds")
    if ns.rate_limit is not None and ns.rate_limit <= 0:
        raise DLMError("--rate-limit must be > 0 requests per minute")
    limits = Limits(max_tokens=ns.max_tokens, max_steps=ns.max_steps, max_n=ns.max_n,
                    max_beam=ns.max_n, max_body=ns.max_body, timeout=ns.timeout)
    serve(ns.checkpoint, names=ns.name, adapters=[parse_adapter(a) for a in ns.adapter or []],
          host=ns.host, port=ns.port, api_key=ns.api_key or os.environ.get("DLM_API_KEY"),
          max_concurrent=ns.max_concurrent, max_queue=ns.max_queue, rate_limit=ns.rate_limit,
          limits=limits, device=ns.device, dtype=ns.dtype)
    return 0


def cmd_info(ns: argparse.Namespace) -> int:
    from .models.loading import checkpoint_config

    cfg = checkpoint_config(ns.checkpoint)  # every format dlm.load reads; no weights loaded
    if ns.json:
        print(json.dumps(cfg, indent=2))
        return 0
    m, tok, data, train = cfg["model"], cfg["tokenizer"], cfg.get("data", {}), cfg.get("train", {})
    params = cfg.get("params", {})
    lines = [
        f"checkpoint   {ns.checkpoint}",
        f"kind         {cfg['kind']}",
        f"parameters   {params.get('total', '?'):,} total, "
        f"{params.get('non_embedding', '?'):,} non-embedding"
        if params else "parameters   ?",
        f"network      d_model={m['d_model']} layers={m['n_layers']} heads={m['n_heads']} "
        f"kv_heads={m['n_kv_heads']} d_ff={m['d_ff']} context={m['max_seq_len']} "
        f"tied={m['tie_embeddings']}",
        f"tokenizer    {tok.get('type')} vocab={tok['vocab_size']} mask={tok['mask_id']} "
        f"eos={tok['eos_id']} pad={tok['pad_id']}",
    ]
    if m.get("n_experts"):
        moe = [i for i in range(m["n_layers"]) if m.get("moe_layers") is None
               or i in m["moe_layers"]]
        shared = f" + a shared expert of {m['d_shared_expert']}" if m.get("d_shared_expert") \
            else ""
        lines.append(f"experts      {m['experts_per_token']} of {m['n_experts']} per token "
                     f"(width {m['d_expert']}{shared}, {m['router']} router) in "
                     f"{len(moe)} of {m['n_layers']} layers; {params.get('active', '?'):,} "
                     f"parameters active per token")
    if cfg.get("adapter"):
        a = cfg["adapter"]
        lines.append(f"adapter      LoRA {a.get('lora')} on {a.get('base')}: "
                     f"{a.get('trainable_params', 0):,} trained parameters "
                     f"({100 * a.get('trainable_params', 0) / max(a.get('base_params', 1), 1):.2f}"
                     f"% of the base)")
    if data.get("sft_data"):
        lines.append(f"fine-tuned   from {cfg.get('sft_of')} on {data['sft_data']}: "
                     f"{data.get('rows')} rows ({data.get('skipped_too_long', 0)} too long), "
                     f"{data.get('epochs', 0):.2f} epochs")
    elif cfg.get("source"):
        lines.append(f"source       {cfg['source'].get('format')} checkpoint "
                     f"{cfg['source'].get('path')}")
    elif data:
        lines += [
            f"data         {data.get('corpus')}: {data.get('train_docs')} train docs, "
            f"{data.get('validation_docs')} held-out docs",
            f"             unique training tokens {data.get('unique_tokens'):,} "
            f"(stream {data.get('train_stream_tokens'):,}); seen {data.get('tokens_seen'):,} "
            f"= {data.get('epochs', 0):.2f} epochs",
        ]
    if train:
        lines.append(f"training     step {cfg.get('step')}; preset {train.get('preset')}, "
                     f"batch {train.get('batch_size')}, lr {train.get('lr')}, "
                     f"seed {train.get('seed')}")
    if cfg.get("objective", {}).get("block_size"):
        lines.append(f"blocks       {cfg['objective']['block_size']} tokens per block "
                     f"(block diffusion)")
    if cfg.get("eval"):
        from .diffusion.likelihood import EvalResult

        lines.append(f"held-out     {EvalResult(**cfg['eval']).describe()}")
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------------------------
# parser


# Every example below runs as printed after the README's Tour (tests/test_readme.py runs them,
# with the budgets cut); lines with --device cuda need a GPU and are not run there.
TRAIN_EXAMPLES = r"""examples:
  dlm train --preset tiny --out runs/tiny                  # masked diffusion on Shakespeare
  dlm train --kind ar --preset tiny --out runs/tiny-ar     # its autoregressive twin
  dlm train --kind bd3lm --block-size 8 --out runs/tiny-bd  # block diffusion (BD3-LM)
  dlm train --data python-stdlib --tokenizer bpe --vocab-size 8192 --max-minutes 30 \
      --out runs/stdlib
  dlm train --data docs/ --unique-tokens 32768 --epochs 40 --out runs/repeat   # a local folder
  dlm train --out runs/tiny --resume                       # continue a stopped run
  torchrun --nproc_per_node 2 -m dlm train --max-steps 2000 --out runs/ddp   # DDP
"""

SAMPLE_EXAMPLES = r"""examples:
  dlm sample runs/tiny "**ROMEO**" --steps 64 --gen-length 96 --animate
  dlm sample runs/tiny "**HAMLET**" --block-length 32 --temperature 0.8 --seed 3
  dlm sample runs/tiny "**ROMEO**" "**JULIET**" --remasking random     # a batch of prompts
  dlm sample runs/tiny "**ROMEO**" --block-length 32 --threshold 0.9 --cache dual  # Fast-dLLM
  dlm sample runs/tiny "**ROMEO**" --remasking entropy --alg-temp 0.5 --temperature 0.7
  dlm sample runs/tiny "**ROMEO**" --remask-eta 0.05 --trace denoise.html   # ReMDM, HTML replay
  dlm sample runs/tiny "**ROMEO**" --num-samples 4 --temperature 0.9  # best of 4 by likelihood
  dlm sample runs/tiny "**ROMEO**" --beam-width 4 --cfg-scale 1.0
  dlm sample runs/tiny-ar "**ROMEO**" --gen-length 200 --top-p 0.9 --temperature 0.8
  dlm sample runs/tiny-qa-lora $'User: Who wrote Macbeth?\nAssistant: '   # base + its LoRA
  dlm sample runs/tiny "**ROMEO**" --adapter runs/tiny-qa-lora:0.7 --adapter runs/tiny-qa-mlp:0.3
  dlm sample runs/tiny-qa-lora "**ROMEO**" --no-adapter             # the base alone
defaults: --gen-length 128 or what fits the context after the prompt (mdlm); --steps half of
each block's masks (a given --steps is split over the blocks in proportion to their masks)
"""

INFILL_EXAMPLES = r"""examples:
  dlm infill runs/tiny "The cat sat on the [MASK:4]."
  dlm infill runs/tiny $'**ROMEO**  \n[MASK:<=30]\n\n**JULIET**  \n[MASK:20]' --animate
  dlm infill runs/tiny "a literal \[MASK] and a real [MASK:3]" --json
template syntax: [MASK] one token, [MASK:n] exactly n, [MASK:<=n] up to n; \[ is a literal [
"""

EDIT_EXAMPLES = r"""examples:
  dlm edit runs/tiny $'**ROMEO**  \nBut soft, what lihgt through yonder window breaks?' --budget 6
  dlm edit runs/tiny $'**ROMEO**  \nBut soft, what light through yonder door breaks?' --span 48:52
  dlm edit runs/tiny $'**ROMEO**  \nBut soft, what lihgt through yonder window breaks?' \
      --budget 8 --remask-eta 0.05 --animate           # re-mask while denoising
"""

EVAL_EXAMPLES = r"""examples:
  dlm eval runs/tiny                        # held-out bits/byte (an upper bound for mdlm)
  dlm eval runs/tiny runs/tiny-ar           # AR and MDLM side by side on the same bytes
  dlm eval runs/tiny --t-samples 64 --eval-tokens 131072 --json
  dlm eval --check-elbo                     # the estimator vs exact numbers on a toy
"""

LM_EVAL_EXAMPLES = r"""examples:
  dlm lm-eval runs/tiny --tasks shakespeare_lines --include-path examples/lm_eval/ --mc-num 32
  dlm lm-eval runs/tiny-ar --tasks shakespeare_lines --include-path examples/lm_eval/ \
      --out runs/lm-eval-ar.json                       # exact log-likelihoods; full results
  dlm lm-eval ~/models/LLaDA-8B-Base --tasks hellaswag,arc_easy --mc-num 128 --cfg 0.5 \
      --device cuda --dtype bf16 --no-check-greedy --out llada.json
  dlm lm-eval ~/models/LLaDA-8B-Instruct --tasks gsm8k --apply-chat-template --device cuda \
      --dtype bf16 --gen-length 256 --steps 256 --block-length 32
the same model in lm-eval's own command line (its flags; --device defaults to dlm's auto):
  python -m dlm.harness --model dlm --model_args pretrained=runs/tiny,mc_num=32 \
      --tasks shakespeare_lines --include_path examples/lm_eval/
"""

EXPERIMENT_EXAMPLES = r"""examples:
  dlm experiment data-constrained                  # AR vs MDLM on repeated data (quick)
  dlm experiment steps-quality runs/tiny runs/tiny-bd --judge runs/tiny-ar --out runs/sq
  dlm experiment STUDY --help                      # each study's options
"""

STEPS_QUALITY_EXAMPLES = r"""examples:
  dlm experiment steps-quality runs/tiny --judge runs/tiny-ar
  dlm experiment steps-quality runs/tiny runs/tiny-bd --judge runs/tiny-ar --out runs/sq
  dlm experiment steps-quality runs/tiny-bd --judge runs/tiny-ar \
      --strategies low_confidence,margin --fractions 0.25,0.5,1 --thresholds 0.9 \
      --temperature 0.8 --out runs/sq-bd
writes results.csv, samples.jsonl, curves.png and report.md to --out (a new folder)
"""

DATA_CONSTRAINED_EXAMPLES = r"""examples:
  dlm experiment data-constrained                            # quick protocol, AR vs MDLM
  dlm experiment data-constrained --kinds ar,mdlm,bd3lm --unique-tokens 262144 --epochs 128 \
      --out runs/dc-bd
  dlm experiment data-constrained --unique-tokens 65536,262144 --seeds 2 --lrs 1e-3 \
      --out runs/dc-tiers
  dlm experiment data-constrained --protocol full --out runs/dc-full    # hours on a CPU
an interrupted experiment continues where it stopped: run the same command again
"""

SFT_EXAMPLES = r"""examples:
  dlm sft runs/tiny examples/qa.jsonl --epochs 30 --lr 1e-3 --batch-size 8     # -> runs/tiny-sft
  dlm sft runs/tiny examples/qa.jsonl --epochs 30 --lr 1e-3 --batch-size 8 --resume  # after a kill
  dlm sft runs/tiny examples/qa.jsonl --epochs 30 --lr 3e-3 --batch-size 8 \
      --lora r=8,alpha=16 --out runs/tiny-qa-lora             # an adapter only (PEFT)
  dlm sft ~/models/LLaDA-8B-Base chat.jsonl --device cuda --batch-size 8 --grad-accum 4 \
      --seq-len 1024 --lr 2.5e-5 --max-steps 2000
  dlm sft ~/models/LLaDA-8B-Instruct chat.jsonl --lora r=16,alpha=32,targets=all \
      --device cuda --lr 2e-4 --max-steps 1000 --out runs/llada-lora
rows: {"prompt": "...", "response": "..."} or {"messages": [{"role": "user", "content": ...},
      ..., {"role": "assistant", "content": ...}]}   (the last message is the answer)
"""

CONVERT_EXAMPLES = r"""examples:
  dlm convert ~/models/LLaDA-8B-Instruct runs/llada-8b --dtype bf16
  dlm convert ~/models/Dream-v0-Instruct-7B runs/dream-7b
  dlm convert runs/tiny runs/tiny-hf --to hf      # LLaDA layout + generation_config.json
dlm sample / infill / eval / info also read the published directory directly
"""

MERGE_EXAMPLES = r"""examples:
  dlm merge runs/tiny-qa-lora runs/tiny-qa-merged          # a LoRA run -> a full checkpoint
  dlm merge runs/tiny --adapter runs/tiny-qa-lora:0.7 --adapter runs/tiny-qa-mlp:0.3 runs/tiny-mix
  dlm merge runs/tiny-qa-lora runs/tiny-qa-hf --dtype bf16 --to hf
"""

SERVE_EXAMPLES = r"""examples:
  dlm serve runs/tiny                              # http://127.0.0.1:8000/ is the playground
  dlm serve runs/tiny runs/tiny-ar --max-concurrent 32   # two model ids: tiny and tiny-ar
  curl -s 127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \
    -d '{"model": "tiny", "prompt": "ROMEO:", "max_tokens": 32, "steps": 16}'
a LoRA adapter: dlm serve runs/tiny --adapter runs/tiny-qa-lora:0.7 (ids tiny, tiny+<adapter>)
beyond this machine: dlm serve runs/tiny --host 0.0.0.0 --api-key KEY (or $DLM_API_KEY)
"""

INFO_EXAMPLES = r"""examples:
  dlm info runs/tiny
  dlm info runs/tiny --json
  dlm info runs/tiny-hf                  # a published (LLaDA / Dream) layout: no weights read
"""


def build_parser() -> argparse.ArgumentParser:
    from .sample.config import SampleConfig
    from .train.config import TrainConfig
    from .version import __version__

    fmt = HelpFormatter
    parser = Parser(prog="dlm", formatter_class=fmt,
                    description="Train, sample and evaluate diffusion language models.",
                    epilog="run 'dlm COMMAND --help' for a command's flags and examples")
    parser.add_argument("--version", action="version", version=f"dlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("train", help="train an AR or masked diffusion model",
                       description="Train a model; the run directory is its checkpoint.",
                       epilog=TRAIN_EXAMPLES, formatter_class=fmt)
    add_dataclass_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sft", help="fine-tune a checkpoint on prompt/answer rows",
                       description="Supervised fine-tuning with LLaDA's recipe (prompt never "
                       "masked, answer padded with EOS that counts in the loss, loss normalised "
                       "per answer length); an AR checkpoint gets the loss on the answer only. "
                       "Rows: .jsonl of {\"messages\": [...]} or {\"prompt\", \"response\"}; "
                       "prompts use the checkpoint's chat template or dlm's default. Every 10th "
                       "row is held out.", epilog=SFT_EXAMPLES, formatter_class=fmt)
    p.add_argument("checkpoint", help="dlm checkpoint, published LLaDA/Dream directory, or "
                   "hf:owner/name")
    p.add_argument("sft_file", metavar="data.jsonl", help="the rows")
    p.add_argument("--base", metavar="PATH", help="with --resume: the new place of a LoRA "
                   "run's base checkpoint, if it moved")
    add_dataclass_flags(p, TrainConfig, skip=SFT_SKIP)
    p.set_defaults(func=cmd_sft)

    decoders = (
        ("sample", "generate text (optionally animated)", "Generate after one or more prompts "
         "with any decoding method of SampleConfig.", SAMPLE_EXAMPLES, cmd_sample,
         ("prompt", "+", "prompt text (several = one batch)")),
        ("infill", "fill [MASK] spans of a template", "Fill the masked spans of a template; "
         "the text around them is never changed.", INFILL_EXAMPLES, cmd_infill,
         ("template", "+", "template text (several = one batch)")),
        ("edit", "re-mask and rewrite part of a text", "Re-mask the tokens the model is least "
         "sure of (or the given character spans) and denoise them again.", EDIT_EXAMPLES,
         cmd_edit, ("text", None, "the text to edit")),
    )
    for name, help_, desc, examples, func, (arg, nargs, arg_help) in decoders:
        p = sub.add_parser(name, help=help_, description=desc, epilog=examples,
                           formatter_class=fmt)
        p.add_argument("checkpoint", help="run directory written by dlm train")
        p.add_argument(arg, nargs=nargs, help=arg_help)
        if name == "edit":
            p.add_argument("--budget", type=int, default=8, help="tokens to re-mask when no "
                           "--span is given (default: 8)")
            p.add_argument("--span", action="append", metavar="START:END",
                           help="character range to rewrite (repeatable)")
            p.add_argument("--score-passes", type=int, default=8, help="forward passes that "
                           "score how sure the model is of each token (default: 8)")
        add_dataclass_flags(p, SampleConfig)
        p.add_argument("--animate", action="store_true",
                       help="replay the real denoising trace live")
        p.add_argument("--fps", type=float, default=12.0, help="animation frames per second")
        p.add_argument("--trace", "--trace-json", dest="trace", metavar="FILE",
                       help="write the trace: FILE.json (data) or FILE.html (a self-contained "
                       "page that replays the denoising)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda")
        p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                       help="weights dtype (default: as stored)")
        add_adapter_flags(p)
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="held-out bits/byte of one or more checkpoints",
                       description="Held-out loss in nats/token and bits/byte. For masked "
                       "diffusion the number is the negative ELBO, an upper bound, estimated "
                       "with a fixed number of mask draws and a fixed seed (± its Monte-Carlo "
                       "standard error).", epilog=EVAL_EXAMPLES, formatter_class=fmt)
    p.add_argument("checkpoints", nargs="*", help="run directories")
    p.add_argument("--check-elbo", action="store_true", help="no checkpoint needed: on a toy "
                   "vocabulary, compare the Monte-Carlo ELBO with the exact ELBO and the exact "
                   "NLL of a model whose joint is enumerable")
    p.add_argument("--data", help="corpus to take the held-out split from (default: training's)")
    p.add_argument("--eval-tokens", type=int, help="held-out tokens (default: as in training)")
    p.add_argument("--t-samples", type=int, help="mask draws per chunk for mdlm (default: as "
                   "in training)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask draws")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="weights dtype (default: as stored)")
    add_adapter_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("lm-eval", help="lm-evaluation-harness tasks on a checkpoint",
                       description="Run lm-evaluation-harness tasks with dlm's adapter (the "
                       "registered model 'dlm'): log-likelihoods exact for AR and LLaDA's "
                       "Monte-Carlo estimate for diffusion, rolling windows for perplexity "
                       "tasks, dlm's sampler for generation tasks (the sampling flags below "
                       "set it). Needs pip install 'dlm[eval]'; tasks whose data is not on "
                       "this machine are downloaded by lm-eval itself, never by dlm.",
                       epilog=LM_EVAL_EXAMPLES, formatter_class=fmt)
    p.add_argument("checkpoint", help="dlm checkpoint, LoRA run or LLaDA / Dream directory")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    p.add_argument("--include-path", help="a folder of your own task YAML files")
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples")
    p.add_argument("--limit", type=float, default=None,
                   help="at most this many documents per task (a fraction if < 1)")
    p.add_argument("--mc-num", type=int, default=128, help="Monte-Carlo mask draws per "
                   "log-likelihood (diffusion; LLaDA uses 128)")
    p.add_argument("--check-greedy", action=argparse.BooleanOptionalAction, default=True,
                   help="diffusion: LLaDA's greedy check for is_greedy (one forward pass per "
                   "continuation token); off reports False")
    p.add_argument("--cfg", type=float, default=0.0, help="classifier-free guidance scale for "
                   "the log-likelihoods (diffusion)")
    p.add_argument("--batch-size", type=int, default=16, help="requests per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask draws and of lm-eval")
    p.add_argument("--apply-chat-template", action="store_true",
                   help="render prompts with the checkpoint's chat template")
    p.add_argument("--log-samples", action="store_true", help="keep every request in --out")
    p.add_argument("--bootstrap-iters", type=int, default=1000,
                   help="bootstrap resamples for the standard errors (0 = none)")
    p.add_argument("--out", metavar="FILE.json", help="write lm-eval's full results here")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="weights dtype (default: as stored)")
    p.add_argument("--adapter", action="append", metavar="PATH[:WEIGHT]",
                   help="load a LoRA adapter at this weight (repeatable)")
    p.add_argument("--base", metavar="PATH", help="a LoRA run's base checkpoint, if it moved")
    add_dataclass_flags(p, SampleConfig, skip=("seed",))
    p.set_defaults(func=cmd_lm_eval)

    p = sub.add_parser("experiment", help="multi-run studies: data-constrained, steps-quality",
                       description="Studies that train or decode many times and write "
                       "results.csv, curves.png and report.md.", epilog=EXPERIMENT_EXAMPLES,
                       formatter_class=fmt)
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    p = studies.add_parser("data-constrained", help="AR vs diffusion on repeated unique data",
                           description="Train every arm, evaluate each annealed at log-spaced "
                           "epoch marks on the same held-out bytes, and write results.csv, "
                           "curves.png and report.md.", epilog=DATA_CONSTRAINED_EXAMPLES,
                           formatter_class=fmt)
    p.add_argument("--out", default="runs/data-constrained", help="experiment folder")
    p.add_argument("--kinds", default="ar,mdlm", help="comma-separated: ar, mdlm, bd3lm")
    p.add_argument("--data", default="shakespeare", help="corpus or path")
    p.add_argument("--unique-tokens", default=None, help="comma-separated unique-data tiers "
                   "(default: quick 65536; full 65536,262144,1048576)")
    p.add_argument("--scale", default="cpu", choices=("cpu", "gpu"),
                   help="cpu: 0.85 M params, context 128, batch 32, 64 KB tier, 64 epochs, two "
                   "runs at a time; gpu: 25 M params (d 512, 8 layers), context 512, batch 64, "
                   "1 M and 4 M tiers, 128 epochs, one run at a time (the flags below override)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the unique data")
    p.add_argument("--marks", type=int, default=12, help="annealed evaluations per arm")
    p.add_argument("--d-model", type=int, default=None, help="backbone width")
    p.add_argument("--n-layers", type=int, default=None, help="backbone depth")
    p.add_argument("--n-heads", type=int, default=None, help="attention heads")
    p.add_argument("--seq-len", type=int, default=None, help="context")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step")
    p.add_argument("--eval-tokens", type=int, default=None, help="held-out tokens")
    p.add_argument("--protocol", default="quick", choices=("quick", "full"),
                   help="quick: lr {1e-3, 3e-3}, AR plain or with 15%% input masking, one "
                   "tier, one seed; full: lr {1e-3, 3e-3} x weight decay {0.1, 0.5, 1} x AR "
                   "dropout {0, 0.1}, AR masking {10%%, 30%%}, three tiers, two seeds")
    p.add_argument("--seeds", type=int, default=None, help="seeds per chosen cell")
    p.add_argument("--lrs", default=None, help="comma-separated learning rates to tune over")
    p.add_argument("--ar-token-noise", default=None,
                   help="comma-separated AR input-masking rates to tune over (0 = none)")
    p.add_argument("--final-t-samples", type=int, default=128,
                   help="mask draws per chunk for each diffusion run's final number")
    p.add_argument("--jobs", type=int, default=None, help="runs trained at once")
    p.set_defaults(func=cmd_data_constrained)

    p = studies.add_parser("steps-quality", help="steps and decoding strategy vs quality",
                           description="Decode held-out prompts with each checkpoint at a sweep "
                           "of step counts, strategies and confidence thresholds; score the "
                           "text under an AR judge (generative perplexity) and by unigram "
                           "entropy, against network calls and wall time.",
                           epilog=STEPS_QUALITY_EXAMPLES, formatter_class=fmt)
    p.add_argument("checkpoints", nargs="+", help="diffusion checkpoints (several sizes trained "
                   "on the same data go on one plot)")
    p.add_argument("--judge", required=True, help="AR checkpoint trained on the same data")
    p.add_argument("--out", default="runs/steps-quality", help="experiment folder")
    p.add_argument("--gen-length", type=int, default=None, help="new tokens per sample "
                   "(default: 128, or what fits every context after the prompt, in whole "
                   "blocks)")
    p.add_argument("--block-length", type=int, default=None,
                   help="semi-autoregressive blocks (default: one block; bd3lm: its own)")
    p.add_argument("--prompts", type=int, default=8, help="held-out prompts")
    p.add_argument("--prompt-length", type=int, default=32, help="tokens per prompt")
    p.add_argument("--fractions", default="0.0625,0.125,0.25,0.5,1",
                   help="steps as fractions of --gen-length")
    p.add_argument("--strategies", default="low_confidence,random",
                   help="which positions commit first: low_confidence, random, margin, entropy")
    p.add_argument("--thresholds", default="0.9,0.7,0.5",
                   help="confidence thresholds (the step count follows); empty for none")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.set_defaults(func=cmd_steps_quality)

    p = sub.add_parser("convert", help="a LLaDA / Dream checkpoint -> dlm's format",
                       description="Read a published checkpoint directory (config.json, "
                       "model.safetensors or shards + index, tokenizer.json) or a dlm one, and "
                       "write it in dlm's format (safetensors).", epilog=CONVERT_EXAMPLES,
                       formatter_class=fmt)
    p.add_argument("source", help="checkpoint directory")
    p.add_argument("dest", help="new directory (must not exist or be empty)")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="store the weights in this dtype (default: as stored)")
    p.add_argument("--allow-unexpected", action="store_true",
                   help="skip published tensors dlm has no place for instead of refusing")
    p.add_argument("--to", default="dlm", choices=("dlm", "hf"),
                   help="dlm: our format; hf: the published LLaDA layout (Dream for "
                   "shifted-logit models) with generation_config.json holding the sampler "
                   "defaults")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("merge", help="fold LoRA adapters into a new full checkpoint",
                       description="Load a checkpoint with its LoRA adapter(s) (a dlm sft --lora "
                       "run, and/or --adapter PATH[:WEIGHT] folders), merge each into the "
                       "weights at its weight, and write a plain checkpoint.",
                       epilog=MERGE_EXAMPLES, formatter_class=fmt)
    p.add_argument("source", help="a LoRA run, or any checkpoint with --adapter")
    p.add_argument("dest", help="new directory (must not exist or be empty)")
    p.add_argument("--adapter", action="append", metavar="PATH[:WEIGHT]",
                   help="another adapter to merge at this weight (default 1); repeatable")
    p.add_argument("--base", metavar="PATH", help="the LoRA run's base checkpoint, if it moved")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="store the merged weights in this dtype (default: the base's); the "
                   "merge itself is done in fp32 (4 bytes per parameter of memory)")
    p.add_argument("--to", default="dlm", choices=("dlm", "hf"),
                   help="dlm: our format; hf: the published LLaDA / Dream layout")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("serve", help="an OpenAI-compatible server with a live playground",
                       description="Serve checkpoints over HTTP: OpenAI's /v1/completions "
                       "(suffix: fill-in-the-middle) and /v1/chat/completions, streamed as the "
                       "text settles or, with diffusing: true, as the whole canvas each step; "
                       "/v1/dlm/denoise streams the step events; requests join the running "
                       "batch between steps; the playground is at /. Every SampleConfig field "
                       "is a request field (extra_body). Loopback only unless an API key is "
                       "set.", epilog=SERVE_EXAMPLES, formatter_class=fmt)
    p.add_argument("checkpoint", nargs="+", help="checkpoint directories (each a model id)")
    p.add_argument("--adapter", action="append", metavar="PATH[:WEIGHT]",
                   help="a LoRA adapter on the first checkpoint at this weight (default 1); "
                   "repeatable; each combination of adapters is a model id")
    p.add_argument("--name", action="append", metavar="N",
                   help="model id of each checkpoint in order (default: its folder name)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but loopback needs an API key")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    p.add_argument("--api-key", metavar="KEY", help="require Authorization: Bearer KEY "
                   "(default: $DLM_API_KEY; /health and /ready stay open)")
    p.add_argument("--max-concurrent", type=int, default=16,
                   help="requests decoding at once (the rest wait in the queue)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting; beyond it a 503 with Retry-After")
    p.add_argument("--max-tokens", type=int, default=1024, help="cap on max_tokens")
    p.add_argument("--max-steps", type=int, default=1024, help="cap on steps")
    p.add_argument("--max-n", type=int, default=8, help="cap on n, best_of and beam_width")
    p.add_argument("--max-body", type=int, default=1 << 20, help="cap on a body in bytes")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds a request may decode (then a 504)")
    p.add_argument("--rate-limit", type=float, metavar="PER_MINUTE",
                   help="requests per minute per API key (per address without keys)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="load the weights in this dtype (default: as stored)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("info", help="what a checkpoint holds",
                       description="Kind, parameter counts, tokenizer, data and training "
                       "summary of a checkpoint.", epilog=INFO_EXAMPLES, formatter_class=fmt)
    p.add_argument("checkpoint", help="run directory")
    p.add_argument("--json", action="store_true", help="print the whole config.json")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return ns.func(ns)
    except DLMError as e:
        print(f"dlm {ns.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # unreadable input, unwritable output, full disk: say it in one line
        print(f"dlm {ns.command}: error: {e.strerror or e}"
              + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dlm {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
