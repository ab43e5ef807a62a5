"""One request on the handler's side: the job it hands the worker, the rows it follows from the
step events, and the answers it reads from the result (docs/serving.md).

A completion continues each prompt (``generation_request``, as ``Model.generate`` does); a
completion with ``suffix`` is a fill-in-the-middle: the template ``prompt [MASK:<=n] suffix``
decoded as ``Model.infill`` does. Answer ``i`` is prompt ``i // n``, copy ``i % n``; its row
draws from ``row_seed(seed, i)``, so a seeded request writes the same text alone or under
load.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..errors import DLMError
from ..pipeline import cut_at_stop
from ..sample.driver import generation_request, row_seed
from ..sample.templates import escape
from .engine import Job, Served
from .protocol import APIError, Ask, from_dlm
from .stream import Canvas, TextStream, canvas_text


@dataclass
class Answer:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    tokens: list[int]  # the answer's tokens (to the cut)
    logprobs: list[float | None]
    top: list[list[tuple[int, float]]]


class Run:
    def __init__(self, served: Served, ask: Ask, loop: asyncio.AbstractEventLoop,
                 timeout: float | None, stop_early: bool = True):
        self.served, self.ask = served, ask
        model = self.model = served.model
        try:  # the checkpoint's sampler defaults, then the request's fields
            cfg = model.sample_config(**ask.fields)
        except DLMError as e:
            raise from_dlm(e) from None
        prompts = [p for p in ask.prompts for _ in range(ask.n)]
        self.infill = ask.suffix is not None or ask.template is not None
        self.expand = max(cfg.num_samples, cfg.beam_width)
        if ask.logprobs is not None and self.expand > 1:
            raise APIError(400, "logprobs come from the decoding of one row: not with best_of "
                           "or beam_width", "logprobs")
        try:
            if self.infill:
                rows, plens, no_eos, align = self._infill(prompts, cfg)
            else:
                request = generation_request(model.network, prompts, cfg, kind=model.spec,
                                             mask_id=model.mask_id, eos_id=model.eos_id)
                self.request, cfg = request, request.cfg
                rows, plens, no_eos, align = (request.canvases, request.prompt_lengths,
                                              request.no_eos, request.align)
                self.regions = [(n, n + cfg.gen_length) for n in plens]
        except DLMError as e:
            raise from_dlm(e) from None
        self.cfg = cfg
        self.job = Job(served, rows, plens, cfg, no_eos, align,
                       [row_seed(ask.seed, i) for i in range(len(rows))],
                       top_logprobs=ask.logprobs, record_trace=ask.record_trace,
                       timeout=timeout, loop=loop)
        # without stop_at_eos an EOS is no end: it is dropped from the text, as decode does
        drop = {model.mask_id, model.pad_id} | (set() if cfg.stop_at_eos else {model.eos_id})
        self.rows = [Canvas(row, lo, hi, model.mask_id)
                     for row, (lo, hi) in zip(rows, self.regions)]
        self.streams = [TextStream(model.tokenizer.decode,
                                   model.eos_id if cfg.stop_at_eos else None, drop, cfg.stop)
                        for _ in self.rows]
        self.logprob_at: list[dict[int, tuple[float | None, list]]] = [{} for _ in self.rows]
        self.committed = 0
        self.plan: list[int] | None = None  # steps each row takes (None: dynamic)
        if stop_early and self.expand == 1:
            self.job.decided = lambda: all(s.final for s in self.streams)

    def _infill(self, prompts: list[list[int]], cfg):
        """The rows of a fill-in-the-middle (prompt [MASK:<=n] suffix) or of a template."""
        ask, model = self.ask, self.model
        if ask.template is not None:
            templates = [ask.template] * ask.n
        else:
            n_new = cfg.gen_length or 64
            templates = [escape(model.tokenizer.decode(p)) + f"[MASK:<={n_new}]" +
                         escape(ask.suffix) for p in prompts]
        request = self.request = model.infill_request(templates)
        # the answer: the span of a fill-in-the-middle; a template's whole text
        self.regions = [(n + c.span_slots[0][0], n + c.span_slots[0][1])
                        if ask.template is None else (n, len(r))
                        for n, c, r in zip(request.prompt_lengths, request.canvases,
                                           request.rows)]
        return request.rows, request.prompt_lengths, request.no_eos, None

    # --- following the steps --------------------------------------------------------------------
    def follow(self, events) -> list[int]:
        """Apply a step's events; returns the answers it changed."""
        changed = []
        for e in events:
            if e.row % self.expand:
                continue
            i = e.row // self.expand
            self.rows[i].apply(e)
            self.committed += len(e.positions)
            for j, p in enumerate(e.positions):
                self.logprob_at[i][p] = (e.logprobs[j] if e.logprobs else None,
                                         e.top[j] if e.top else [])
            changed.append(i)
        return changed

    def delta(self, i: int) -> str:
        """New settled text of answer i (append-only stream)."""
        return self.streams[i].update(self.rows[i].stable)

    def canvas(self, i: int) -> str:
        """Answer i's whole current canvas, masks as the placeholder (diffusing stream)."""
        m = self.model
        return canvas_text(self.rows[i].region, m.tokenizer.decode, m.mask_id, m.eos_id,
                           {m.pad_id}, self.ask.placeholder)

    # --- reading the result ---------------------------------------------------------------------
    def answers(self, gen) -> list[Answer]:
        m = self.model
        out = []
        if self.infill:
            filled = self.request.fillings(gen.canvases)
        for i, row in enumerate(gen.canvases):  # whole rows: generate's canvases are uncut
            lo, hi = self.regions[i]
            tokens = row[lo:hi]
            if self.infill:
                text = filled[i].text if self.ask.template is not None else filled[i].fillings[0]
                text, hit = cut_at_stop(text, self.cfg.stop)
            else:
                text, hit = cut_at_stop(m.decode_generated(tokens, self.cfg.replace(stop=None)),
                                        self.cfg.stop)
            ended = m.eos_id in tokens and self.cfg.stop_at_eos
            kept = tokens[:tokens.index(m.eos_id)] if ended else tokens
            kept = [t for t in kept if t not in (m.mask_id, m.pad_id, m.eos_id)]
            if hit:  # the tokens that make up the text before the stop string
                kept = kept[:_tokens_for(kept, len(text), m.tokenizer.decode)]
            lps, top = [], []
            at = self.logprob_at[i]
            k = 0
            for p in range(lo, hi):
                if k >= len(kept):
                    break
                if row[p] in (m.mask_id, m.pad_id, m.eos_id):
                    continue
                lp, t = at.get(p, (None, []))
                lps.append(lp)
                top.append(t)
                k += 1
            out.append(Answer(text, "stop" if hit or ended else "length", kept, lps, top))
        return out

    def usage(self, gen, answers: list[Answer]) -> dict:
        prompt = sum(len(p) for p in self.ask.prompts)
        completion = sum(len(a.tokens) for a in answers)
        steps = self.job.steps
        rows = max(1, len(self.rows))
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "dlm": {"steps": steps, "nfe": gen.nfe if gen is not None else 0,
                        "tokens_per_step": round(self.committed / rows / max(1, steps), 3)}}


def _tokens_for(tokens: list[int], n_chars: int, decode) -> int:
    """The fewest leading tokens whose text is at least ``n_chars`` long."""
    lo, hi = 0, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(tokens[:mid])) >= n_chars:
            hi = mid
        else:
            lo = mid + 1
    return lo
