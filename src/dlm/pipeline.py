"""``dlm.load(dir)`` -> ``Model``: a network + tokenizer + config facade (docs/architecture.md).

    model = dlm.load("runs/mdlm-tiny")
    out = model.generate("ROMEO:", steps=64, gen_length=128, trace=True)
    out.text, out.trace
    model.network       # the nn.Module: ids [B, T] -> logits [B, T, V]
    model.tokenizer     # encode(str) -> list[int], decode(list[int]) -> str
    model.mask_id, model.eos_id
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from . import kinds
from .data.corpora import load_corpus
from .data.loader import token_stream
from .data.tokenizer import Tokenizer
from .devices import autocast, resolve_device
from .diffusion.likelihood import EvalResult, eval_chunks, shift_right
from .errors import DLMError
from .models.formats import save_model_dir
from .models.loading import load_checkpoint
from .models.transformer import Transformer
from .sample.config import SampleConfig
from .sample.driver import (
    Decoder,
    LogitsHook,
    TokensHook,
    denoise,
    generate,
    left_pad,
)
from .sample.strategies import unwritable
from .sample.templates import build_canvas, parse_template, read_fillings
from .sample.trace import Trace, TraceStep


@dataclass
class GenerationResult:
    text: str | list[str]  # a list when a list of prompts was given
    tokens: list[list[int]]  # generated token ids per row, before cutting at EOS/stop
    trace: Trace | None
    nfe: int
    config: SampleConfig
    scores: list[float] | None = None  # best-of-N / beam: the kept row's score


@dataclass
class InfillResult:
    text: str | list[str]  # the whole filled text (a list for a list of templates)
    fillings: list[str] | list[list[str]]  # each span's filling
    tokens: list[list[int]]  # the final canvas per template
    trace: Trace | None
    nfe: int
    config: SampleConfig


@dataclass
class EditResult:
    text: str | list[str]  # the edited text (a list for a list of texts)
    remasked: list[list[int]]  # token positions that were re-masked and denoised again
    changed: list[list[int]]  # ... of which the model replaced these
    tokens: list[list[int]]
    trace: Trace | None
    nfe: int
    config: SampleConfig


@dataclass
class InfillRequest:
    """The rows of an infill (BOS + template canvas), their prompt lengths, where EOS may not
    go, and what reads the fillings back from the decoded rows."""

    rows: list[list[int]]
    prompt_lengths: list[int]
    no_eos: list[list[bool]]
    templates: list
    canvases: list
    tokenizer: Tokenizer

    def fillings(self, rows: list[list[int]]):
        """Each decoded row -> its ``Filled`` (text and per-span fillings)."""
        return [read_fillings(p, c, row[n:], self.tokenizer) for p, c, row, n in
                zip(self.templates, self.canvases, rows, self.prompt_lengths)]


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """The text before the earliest occurrence of any stop string, and whether one occurred
    (OpenAI's rule: generation ends where a stop string would begin)."""
    at = min((i for i in (text.find(s) for s in stop or [] if s) if i >= 0), default=-1)
    return (text[:at], True) if at >= 0 else (text, False)


class Model:
    def __init__(self, network: Transformer, tokenizer: Tokenizer, config: dict):
        self.network, self.tokenizer, self.config = network, tokenizer, config
        self.kind: str = config["kind"]
        self.spec: kinds.Kind = kinds.get(self.kind)  # what the kind decides (dlm.kinds)

    # --- contract names -----------------------------------------------------------------------
    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def block_size(self) -> int | None:
        """Tokens per block of a block diffusion (bd3lm) model; None for other kinds."""
        return self.config.get("objective", {}).get("block_size")

    @property
    def max_seq_len(self) -> int:
        return self.network.config.max_seq_len

    def __repr__(self) -> str:
        return (f"Model(kind={self.kind!r}, params={self.network.num_params():,}, "
                f"tokenizer={self.tokenizer.kind!r}, context={self.max_seq_len})")

    # --- generation ---------------------------------------------------------------------------
    def sample_config(self, config: SampleConfig | None = None, **fields) -> SampleConfig:
        # a published checkpoint brings its authors' sampler defaults (config "generation")
        defaults = {f.name: f.default for f in dataclasses.fields(SampleConfig)}
        base = config or SampleConfig(**{
            k: v for k, v in self.config.get("generation", {}).items()
            if k in defaults and (v is not None or defaults[k] is None)})
        return base.replace(**fields).validate()

    def generate(self, prompt: str | list[str], trace: bool = False,
                 config: SampleConfig | None = None, on_logits: LogitsHook | None = None,
                 on_tokens: TokensHook | None = None, **fields) -> GenerationResult:
        """Generate after a prompt (or a list of prompts, batched).

        Fields are ``SampleConfig``'s (steps, gen_length, block_length, remasking, threshold,
        cache, cfg_scale, temperature, num_samples, beam_width, ...). ``on_logits(step,
        logits, state)`` may return changed logits of the current block; ``on_tokens(step,
        state)`` sees the canvas after each step.

            out = model.generate("ROMEO:", steps=64, gen_length=128, threshold=0.9)
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        out = self.generate_ids([self.tokenizer.encode(p) for p in prompts], trace, config,
                                on_logits, on_tokens, **fields)
        if isinstance(prompt, str):
            out.text = out.text[0]
        return out

    def generate_ids(self, prompts: list[list[int]], trace: bool = False,
                     config: SampleConfig | None = None, on_logits: LogitsHook | None = None,
                     on_tokens: TokensHook | None = None, seeds: list[int] | None = None,
                     **fields) -> GenerationResult:
        """``generate`` from token ids (one list per prompt); ``text`` is a list. ``seeds``:
        one per prompt, its own random stream (the same text alone or in any batch)."""
        cfg = self.sample_config(config, **fields)
        with autocast(self.device):
            gen = generate(self.network, prompts, cfg, kind=self.spec, mask_id=self.mask_id,
                           eos_id=self.eos_id, pad_id=self.pad_id, record_trace=trace,
                           on_logits=on_logits, on_tokens=on_tokens, seeds=seeds)
        texts = [self.decode_generated(t, cfg) for t in gen.tokens]
        return GenerationResult(texts, gen.tokens, gen.trace, gen.nfe, gen.config, gen.scores)

    def decoder(self) -> Decoder:
        """The step machine on this model (docs/architecture.md, "The step machine"): ``add``
        requests at any time, ``step`` them one step at a time (per-row events), ``cancel``.

            d = model.decoder()
            p = model.tokenizer.encode("ROMEO:")
            a = d.add([p + [model.mask_id] * 32], [len(p)], model.sample_config(steps=16))
            while not d.done:
                events = d.step()
        """
        return Decoder(self.network, kind=self.spec, mask_id=self.mask_id, eos_id=self.eos_id,
                       pad_id=self.pad_id)

    def chat_prompt(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text of a conversation: the checkpoint's chat template (or dlm's default,
        as ``dlm sft`` renders prompts), the assistant's turn opened."""
        from .sft.data import render_prompt

        return render_prompt(messages, self.config.get("chat_template"),
                             {"bos_token": self.config.get("bos_token", ""),
                              "eos_token": self.tokenizer.eos_token},
                             add_generation_prompt=add_generation_prompt)

    def decode_generated(self, tokens: list[int], cfg: SampleConfig) -> str:
        """Generated ids -> text: cut at the first EOS, drop MASK/PAD, cut at stop strings."""
        if cfg.stop_at_eos and self.eos_id in tokens:
            tokens = tokens[: tokens.index(self.eos_id)]
        tokens = [t for t in tokens if t not in (self.mask_id, self.pad_id, self.eos_id)]
        return cut_at_stop(self.tokenizer.decode(tokens), cfg.stop)[0]

    def _bos(self) -> list[int]:
        """What goes before every text (an AR model's BOS), as ``generate`` does."""
        return self.spec.bos(self.eos_id)

    def infill(self, template: str | list[str], trace: bool = False,
               config: SampleConfig | None = None, on_logits: LogitsHook | None = None,
               on_tokens: TokensHook | None = None, **fields) -> InfillResult:
        """Fill the ``[MASK]`` / ``[MASK:n]`` / ``[MASK:<=n]`` spans of a template; the text
        around them is never changed (see ``dlm.sample.templates``).

            model.infill("The cat sat on the [MASK:4].").fillings   # ["mat."]-like
        """
        cfg = self.sample_config(config, **fields)
        templates = [template] if isinstance(template, str) else list(template)
        request = self.infill_request(templates)
        with autocast(self.device):
            gen = denoise(self.network, request.rows, request.prompt_lengths, cfg,
                          kind=self.spec, mask_id=self.mask_id, eos_id=self.eos_id,
                          pad_id=self.pad_id, record_trace=trace, on_logits=on_logits,
                          on_tokens=on_tokens, no_eos=request.no_eos)
        filled = request.fillings(gen.canvases)
        one = isinstance(template, str)
        return InfillResult(filled[0].text if one else [f.text for f in filled],
                            filled[0].fillings if one else [f.fillings for f in filled],
                            gen.canvases, gen.trace, gen.nfe, gen.config)

    def infill_request(self, templates: list[str]) -> InfillRequest:
        """The canvases ``infill`` decodes for these templates (a front end that drives the
        step machine itself, as the server, adds them to a ``Decoder``)."""
        self.spec.refuse("infill")
        parsed = [parse_template(t) for t in templates]
        canvases = [build_canvas(p, self.tokenizer) for p in parsed]
        bos = self._bos()
        # exact spans get real tokens only; an EOS ends a [MASK:<=n] span early
        no_eos = [[False] * len(bos) + [False] * len(c.ids) for c in canvases]
        for row, p, c in zip(no_eos, parsed, canvases):
            for span, (a, b) in zip(p.spans, c.span_slots):
                row[len(bos) + a:len(bos) + b] = [span.exact] * (b - a)
        return InfillRequest([bos + c.ids for c in canvases], [len(bos)] * len(canvases),
                             no_eos, parsed, canvases, self.tokenizer)

    def edit(self, text: str | list[str], spans: list[tuple[int, int]] | None = None,
             budget: int = 8, trace: bool = False, config: SampleConfig | None = None,
             score_passes: int = 8, on_logits: LogitsHook | None = None,
             on_tokens: TokensHook | None = None, **fields) -> EditResult:
        """Re-mask part of a text and denoise it again: the "fix earlier mistakes" move.

        ``spans``: character ranges [(start, end), ...] to rewrite (one list for one text).
        Without spans, the ``budget`` tokens the model is least sure of: those whose
        log-probability, judged while masked, falls furthest below the model's preferred
        token's, scored in ``score_passes`` passes that each mask every ``score_passes``-th
        token. Re-masked slots get real tokens (no EOS). The trace starts
        with the re-masking step.

            model.edit("The cat sat on the mta.", budget=3).text
        """
        self.spec.refuse("edit")
        cfg = self.sample_config(config, **fields)
        texts = [text] if isinstance(text, str) else list(text)
        if spans is not None and len(texts) != 1:
            raise DLMError("spans select characters of one text; pass one text with spans")
        if budget < 1 and spans is None:
            raise DLMError(f"budget must be >= 1 (got {budget})")
        if score_passes < 1:
            raise DLMError(f"score_passes must be >= 1 (got {score_passes})")
        bos = self._bos()
        rows, chosen = [], []
        for t in texts:
            ids, offsets = self.tokenizer.encode_offsets(t)
            if not ids:
                raise DLMError("nothing to edit: the text is empty")
            if self.mask_id in ids:
                raise DLMError("the text contains the mask token; use infill for masked spans")
            if len(bos) + len(ids) > self.max_seq_len:
                raise DLMError(f"the text ({len(bos) + len(ids)} tokens) exceeds the model's "
                               f"context of {self.max_seq_len} tokens")
            if spans is not None:
                pick = _tokens_in_spans(offsets, spans, len(t))
            else:
                pick = self._least_sure(bos + ids, min(budget, len(ids)), score_passes)
                pick = [p - len(bos) for p in pick]
            rows.append(bos + ids)
            chosen.append(sorted(len(bos) + p for p in pick))
        canvases = []
        for r, c in zip(rows, chosen):
            canvas = list(r)
            for i in c:
                canvas[i] = self.mask_id
            canvases.append(canvas)
        with autocast(self.device):
            gen = denoise(self.network, canvases, [len(bos)] * len(rows), cfg, kind=self.spec,
                          mask_id=self.mask_id, eos_id=self.eos_id, pad_id=self.pad_id,
                          record_trace=trace, on_logits=on_logits, on_tokens=on_tokens,
                          no_eos=[[t == self.mask_id for t in c] for c in canvases])
        if gen.trace is not None:  # show the re-masking itself as the first step
            for s in gen.trace.steps:
                s.step += 1
            gen.trace.steps.insert(0, TraceStep(0, -1, [[] for _ in rows], [[] for _ in rows],
                                                [[] for _ in rows], chosen))
            gen.trace.initial = rows
        out = [self.tokenizer.decode([t for t in c[len(bos):] if t not in
                                      (self.mask_id, self.pad_id)]) for c in gen.canvases]
        changed = [[p for p in c if new[p] != old[p]]
                   for c, new, old in zip(chosen, gen.canvases, rows)]
        one = isinstance(text, str)
        return EditResult(out[0] if one else out, chosen, changed, gen.canvases, gen.trace,
                          gen.nfe, gen.config)

    @torch.no_grad()
    def _least_sure(self, ids: list[int], k: int, passes: int) -> list[int]:
        """The k positions (not a BOS) the model most wants to change: the largest gap
        log p(its preferred token) - log p(the token there), each judged while masked. A gap
        (not the plain log-probability) so that tokens that are merely hard to predict, like
        the first words of a text, rank below tokens the model confidently disagrees with."""
        x = torch.tensor(ids, device=self.device)
        # a BOS is no token to edit, nor a shifted model's first slot (nothing predicts it)
        start = len(self._bos()) + self.spec.logit_shift(self.network)
        n = len(ids)
        passes = max(1, min(passes, n - start))
        slot = torch.arange(n, device=self.device)
        hide = (slot[None, :] >= start) & ((slot[None, :] - start) % passes
                                            == torch.arange(passes, device=self.device)[:, None])
        xt = torch.where(hide, self.mask_id, x[None, :])
        with autocast(self.device):
            logits = self.network(xt, attn=self.network.default_attention)
        if self.spec.logit_shift(self.network):
            logits = shift_right(logits)
        logits[..., unwritable(self.mask_id, self.pad_id, self.eos_id)] = -math.inf
        lp = torch.log_softmax(logits.double(), -1)  # [passes, n, V]
        gap = lp.max(-1).values - lp.gather(-1, x[None, :, None].expand(passes, -1, 1)) \
            .squeeze(-1)
        # each token is hidden in exactly one pass: its gap there
        token_gap = torch.where(hide, gap, 0.0).sum(0).masked_fill(slot < start, -math.inf)
        return sorted(torch.topk(token_gap, k).indices.tolist())

    def loglikelihood(self, context: str | list[str], continuation: str | list[str],
                      t_samples: int = 64, seed: int = 0, cfg_scale: float = 0.0
                      ) -> list[float]:
        """log p(continuation | context) per pair: exact for AR, LLaDA's Monte-Carlo estimate
        (``t_samples`` draws; ``cfg_scale``: its classifier-free guidance) for diffusion."""
        ctx = [context] if isinstance(context, str) else list(context)
        cont = [continuation] if isinstance(continuation, str) else list(continuation)
        if len(ctx) != len(cont):
            raise DLMError("give as many contexts as continuations")
        return self.loglikelihood_ids([(self.tokenizer.encode(a), self.tokenizer.encode(b))
                                       for a, b in zip(ctx, cont)], t_samples, seed, cfg_scale)

    def _pairs(self, pairs: list[tuple[list[int], list[int]]], bos: bool | list[bool] = True):
        """(BOS + context, continuation) rows left-padded into one batch: ids, valid, target.
        ``bos``: whether each row starts a text (a shifted-logit model's BOS goes first)."""
        self.spec.refuse("loglikelihood")
        starts = [bos] * len(pairs) if isinstance(bos, bool) else list(bos)
        pairs = [((self._bos() if first else []) + list(a), list(b))
                 for (a, b), first in zip(pairs, starts)]
        if any(not b for _, b in pairs):
            raise DLMError("a continuation is empty")
        if self.spec.logit_shift(self.network) and any(not a for a, _ in pairs):
            raise DLMError("a model with shifted logits (AR, Dream-style) needs a context "
                           "before the continuation: nothing predicts its first token")
        ids, valid = left_pad([a + b for a, b in pairs], self.pad_id, self.device)
        S = ids.shape[1]
        if S > self.max_seq_len:
            raise DLMError(f"context + continuation ({S} tokens) exceed the model's context of "
                           f"{self.max_seq_len} tokens")
        target = torch.zeros_like(valid)
        for r, (_, b) in enumerate(pairs):
            target[r, S - len(b):] = True
        return ids, valid, target

    def loglikelihood_ids(self, pairs: list[tuple[list[int], list[int]]], t_samples: int = 64,
                          seed: int = 0, cfg_scale: float = 0.0, batch_size: int = 64,
                          bos: bool | list[bool] = True) -> list[float]:
        """``loglikelihood`` on token ids: [(context ids, continuation ids), ...]. A BOS is put
        before the context of a shifted-logit model, as ``generate`` does, unless ``bos`` is
        False for that pair (a window in the middle of a text)."""
        ids, valid, target = self._pairs(pairs, bos)
        with autocast(self.device):
            lp = self.spec.sequence_logprob(
                self.network, ids, target, mask_id=self.mask_id, valid=valid,
                shift=self.spec.logit_shift(self.network), t_samples=t_samples, seed=seed,
                batch_size=batch_size, cfg_scale=cfg_scale)
        return lp.tolist()

    @torch.no_grad()
    def greedy_ids(self, pairs: list[tuple[list[int], list[int]]], cfg_scale: float = 0.0
                   ) -> list[bool]:
        """Would greedy decoding after each context write exactly its continuation? AR: the
        argmax at every continuation slot (one pass). Diffusion, LLaDA's check: the
        continuation's slots start masked and are filled one per step, the most confident
        first, each with its argmax."""
        if self.spec.exact:
            ids, valid, target = self._pairs(pairs)
            positions = (valid.long().cumsum(1) - 1).clamp(min=0)
            with autocast(self.device):
                logits = self.network(ids, attn=self.network.default_attention.with_padding(
                    valid), positions=positions)
            hit = shift_right(logits).argmax(-1) == ids
            return ((hit | ~target).all(1)).tolist()
        self._pairs(pairs)  # the same checks
        out: list[bool | None] = [None] * len(pairs)
        by_length: dict[int, list[int]] = {}
        for i, (_, b) in enumerate(pairs):
            by_length.setdefault(len(b), []).append(i)
        bos = self._bos()
        for n, rows in by_length.items():
            cfg = SampleConfig(steps=n, gen_length=n, temperature=0.0,
                               remasking="low_confidence", stop_at_eos=False,
                               cfg_scale=cfg_scale)
            canvases = [bos + list(pairs[i][0]) + [self.mask_id] * n for i in rows]
            with autocast(self.device):
                gen = denoise(self.network, canvases, [len(c) - n for c in canvases], cfg,
                              kind=self.spec, mask_id=self.mask_id, eos_id=self.eos_id,
                              pad_id=self.pad_id, record_trace=False)
            for i, canvas in zip(rows, gen.canvases):
                out[i] = canvas[-n:] == list(pairs[i][1])
        return out

    # --- likelihood ---------------------------------------------------------------------------
    def evaluate(self, data: str | None = None, eval_tokens: int | None = None,
                 t_samples: int | None = None, seed: int = 0, batch_size: int = 32,
                 text_field: str | None = None, progress: bool = False) -> EvalResult:
        """Held-out nats/token and bits/byte on the validation split of ``data`` (default: the
        corpus the model was trained on, with the same held-out chunks as training used).
        ``progress``: a bar over the chunks on a terminal (stderr)."""
        train_cfg = self.config.get("train", {})
        data = data or train_cfg.get("data") or self.config.get("data", {}).get("corpus")
        if not data:
            raise DLMError("this checkpoint does not say what it was trained on: pass --data")
        corpus = load_corpus(data, text_field or train_cfg.get("text_field", "text"))
        stream = token_stream(self.tokenizer.encode_batch(corpus.validation), self.eos_id)
        if eval_tokens is None:
            eval_tokens = train_cfg.get("eval_tokens", 32768)
        if eval_tokens < 1:
            raise DLMError(f"eval_tokens must be >= 1 (got {eval_tokens})")
        if t_samples is None:
            t_samples = train_cfg.get("eval_t_samples", 8)
        chunks = eval_chunks(stream, self.max_seq_len, eval_tokens)
        if len(chunks) == 0:
            raise DLMError(f"held-out split of {data!r} is shorter than one chunk")
        with autocast(self.device):
            return kinds.evaluate(self.network, self.spec, chunks, self.tokenizer.token_bytes,
                            mask_id=self.mask_id, bos_id=self.eos_id,
                            t_samples=t_samples, seed=seed, batch_size=batch_size,
                            block_size=self.block_size, progress=progress)

    # --- LoRA adapters (PEFT; see dlm.models.lora) --------------------------------------------
    @property
    def adapters(self) -> dict[str, float]:
        """Loaded adapter -> weight (all are active; {} when none)."""
        from .models import lora

        return lora.adapter_weights(self.network) if lora.has_adapters(self.network) else {}

    def add_adapter(self, path: str | Path, weight: float = 1.0, name: str | None = None) -> str:
        """Load a LoRA adapter (a ``dlm sft --lora`` run or any PEFT adapter directory, ours
        or written for the published LLaDA / Dream names) beside those already loaded, scaled
        by ``weight``; returns its name.

            model.add_adapter("runs/style", 0.7); model.add_adapter("runs/facts", 0.3)
        """
        from .models import lora
        from .models.formats import hub_snapshot

        name = name or lora.adapter_name(path, self.network)  # hf:owner/name: named "name"
        local = hub_snapshot(path)
        name = lora.load_adapter(self.network, local, weight, name, kind=self.kind)
        if "generation" not in self.config:  # a dlm SFT run's sampler defaults come along
            from .models.formats import CONFIG_FILE, is_dlm_dir, read_config

            if (local / CONFIG_FILE).is_file() and is_dlm_dir(local):
                run = read_config(local)
                if "generation" in run:
                    self.config["generation"] = run["generation"]
        return name

    def set_adapter_weights(self, weights: dict[str, float]) -> None:
        """Re-weight loaded adapters by name (0 mutes one; negative subtracts it)."""
        from .models import lora

        lora.set_weights(self.network, weights)

    def set_adapters_enabled(self, on: bool) -> None:
        """Switch every loaded adapter off (the base alone) or back on."""
        from .models import lora

        lora.set_enabled(self.network, on)

    def adapters_disabled(self):
        """``with model.adapters_disabled(): ...`` runs the base alone."""
        from .models import lora

        return lora.adapters_disabled(self.network)

    def merge_adapters(self) -> Model:
        """Fold the loaded adapters (at their weights) into the weights, in place; the network
        is a plain Transformer again (``save`` then writes a full checkpoint)."""
        from .models import lora

        if lora.has_adapters(self.network):
            lora.merge_adapters(self.network)
            self.config = {k: v for k, v in self.config.items() if k != "adapter"}
        return self

    def save_pretrained(self, path: str | Path) -> str:
        """Write the published layout (LLaDA; Dream for shifted-logit models; LLaDA-MoE or
        LLaDA2 for a mixture of experts) with a generation_config.json holding this model's
        sampler defaults; dlm.load reads it back. Returns the architecture written."""
        from dataclasses import asdict

        from .models.hf import export_hf

        defaults = {k: v for k, v in asdict(self.sample_config()).items()
                    if k in ("steps", "gen_length", "block_length", "remasking", "temperature",
                             "top_k", "top_p", "alg_temp", "threshold", "cfg_scale",
                             "min_length", "transfer", "eps", "confidence")}
        return export_hf(path, self.network, self.tokenizer, self.config, defaults)

    def save(self, path: str | Path) -> None:
        save_model_dir(path, self.network, self.tokenizer,
                       {k: v for k, v in self.config.items()
                        if k not in ("format", "format_version", "model", "tokenizer")})


def load(path: str | Path, device: str = "auto", dtype: torch.dtype | str | None = None,
         strict: bool = True, adapters: list | tuple = (), base: str | Path | None = None
         ) -> Model:
    """Load a checkpoint directory written by ``dlm train`` (or ``Model.save``), a LoRA run of
    ``dlm sft --lora`` (its base + the adapter), or a published LLaDA / Dream directory
    (config.json + safetensors + tokenizer.json). ``dtype``: a torch dtype or bf16 | fp16 |
    fp32 (default: as stored). ``adapters``: more LoRA adapters to load, each a path or a
    (path, weight) pair. ``base``: a LoRA run's base checkpoint if it has moved.

        model = dlm.load("runs/llada", adapters=[("runs/style", 0.7), "runs/facts"])
    """
    network, tokenizer, config = load_checkpoint(path, device=resolve_device(device),
                                                 dtype=parse_dtype(dtype), strict=strict,
                                                 base=base)
    network.default_attention = kinds.get(config["kind"]).attention(
        config.get("objective", {}).get("block_size"))
    model = Model(network, tokenizer, config)
    for a in adapters:
        a_path, weight = (a, 1.0) if isinstance(a, (str, Path)) else a
        model.add_adapter(a_path, weight)
    return model


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise DLMError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _tokens_in_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]],
                     n_chars: int) -> list[int]:
    """Token indices whose characters overlap any [start, end) span."""
    picked = set()
    for a, b in spans:
        if not 0 <= a < b <= n_chars:
            raise DLMError(f"span ({a}, {b}) is not a character range inside the text "
                           f"(0..{n_chars})")
        picked.update(i for i, (s, e) in enumerate(offsets) if s < b and e > a)
    if not picked:
        raise DLMError("the spans cover no token")
    return sorted(picked)
