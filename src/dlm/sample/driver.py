"""The reverse process: one loop for every model kind and decoding method (docs/architecture.md,
"The step machine").

A canvas per row holds given tokens (prompt, template text) and MASKs; ragged rows are padded
with PAD so their first MASKs share a slot, the padding hidden by a key padding mask, with RoPE
positions counted from each row's first real token, so a batch gives the same tokens as one
row at a time. The part from the first MASK on is split into blocks decoded left to right;
inside a block, each step

    1. runs the network (``_Forward``: full canvas, Fast-dLLM prefix/dual cache, or the exact
       causal cache of AR; classifier-free guidance doubles the batch) -> logits of the block,
    2. lets ``on_logits`` change them, filters them (top-k/p, no MASK/PAD, no early EOS),
    3. draws a candidate token per slot and scores every masked slot (``strategies.scores``),
    4. decides how many to commit (even split / alpha(t) / threshold / factor / origin) and
       which (top scores or ``alg_temp`` sampling), optionally re-masks committed tokens
       (ReMDM), or, with ``beam_width``, keeps the best canvases (``search.beam_step``),
    5. writes the commits, records the trace, calls ``on_tokens``.

What differs between model kinds (attention, block length, cache, logit shift, BOS, sliding,
the knobs a kind ignores) is asked of the kind object (``dlm.kinds``): masked diffusion is
bidirectional; AR decodes blocks of one token, one step each, logits shifted by one, causal
attention with an exact KV cache (each step feeds only new tokens).

    gen = generate(network, [prompt_ids], SampleConfig(steps=64, gen_length=128),
                   kind=model.kind, mask_id=256, eos_id=257, pad_id=258)
    gen.tokens, gen.trace
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import kinds
from ..errors import DLMError
from ..kinds import Kind, network_block_size
from .config import DEFAULT_GEN_LENGTH, SampleConfig
from .search import beam_step, choose_rows, counted_slots, lineage
from .state import DecodeState, Generation, LogitsHook, RowEvent, Step, TokensHook
from .strategies import (
    NEG_INF,
    RowStreams,
    factor_count,
    filter_logits,
    masked_targets,
    origin_commit,
    remask_sigma,
    sample_tokens,
    scores,
    select_top,
    threshold_count,
    uniform,
    unwritable,
)
from .trace import Trace, TraceStep


@dataclass
class GenerationRequest:
    """What ``generate`` hands the step machine for some prompts: the canvases (BOS + prompt +
    MASKs, rounded to whole blocks), their prompt lengths, where EOS may not go, the block
    alignment and the settings with ``gen_length`` settled. ``cut`` turns the request's
    ``Generation`` into ``generate``'s (canvases cut to ``gen_length``, ``tokens`` the new
    part)."""

    canvases: list[list[int]]
    prompt_lengths: list[int]
    no_eos: list[list[bool]]
    align: int
    cfg: SampleConfig

    def add_to(self, decoder: Decoder, **options) -> int:
        """``decoder.add`` of these rows (options: seeds, hooks, record_trace, ...)."""
        return decoder.add(self.canvases, self.prompt_lengths, self.cfg, no_eos=self.no_eos,
                           align=self.align, **options)

    def cut(self, gen: Generation) -> Generation:
        keep = self.cfg.gen_length
        gen.canvases = [c[:n + keep] for c, n in zip(gen.canvases, self.prompt_lengths)]
        gen.tokens = [c[n:] for c, n in zip(gen.canvases, self.prompt_lengths)]
        return gen


def generation_request(network, prompts: list[list[int]], cfg: SampleConfig, *,
                       kind: str | Kind, mask_id: int, eos_id: int) -> GenerationRequest:
    """The rows that continue each prompt by ``cfg.gen_length`` tokens (see ``generate``)."""
    spec = kinds.get(kind)
    cfg.validate()
    if not prompts:
        raise DLMError("no prompts given")
    if any(mask_id in p for p in prompts):
        raise DLMError("a prompt contains the mask token; use infill to fill masked spans")
    align = spec.align(network, cfg)
    prompts = [[*spec.bos(eos_id), *p] for p in prompts]
    if cfg.gen_length is None:
        cfg = cfg.replace(gen_length=default_gen_length(
            network.config.max_seq_len, max(len(p) for p in prompts), spec, cfg, align))
    # block diffusion: blocks are counted from the text's first token, as in training; the
    # prompt's last block is completed by the first new tokens and the canvas is rounded up
    # to whole blocks (LLaDA2's generate()), the text then cut to gen_length
    new = [cfg.gen_length + -(len(p) + cfg.gen_length) % align for p in prompts]
    return GenerationRequest([[*p, *([mask_id] * n)] for p, n in zip(prompts, new)],
                             [len(p) for p in prompts],
                             [[False] * len(p) + [j < cfg.min_length for j in range(n)]
                              for p, n in zip(prompts, new)], align, cfg)


@torch.no_grad()
def generate(network, prompts: list[list[int]], cfg: SampleConfig, *, kind: str | Kind,
             mask_id: int, eos_id: int, pad_id: int, record_trace: bool = True,
             on_logits: LogitsHook | None = None, on_tokens: TokensHook | None = None,
             seeds: list[int] | None = None) -> Generation:
    """Continue each prompt by ``cfg.gen_length`` tokens (one canvas per prompt, batched);
    ``Generation.config`` is ``cfg`` with its model-dependent defaults settled. ``seeds``: one
    per prompt, its own random stream (``Decoder.add``)."""
    request = generation_request(network, prompts, cfg, kind=kind, mask_id=mask_id,
                                 eos_id=eos_id)
    decoder = Decoder(network, kind=kind, mask_id=mask_id, eos_id=eos_id, pad_id=pad_id)
    rid = request.add_to(decoder, seeds=seeds, record_trace=record_trace,
                         on_logits=on_logits, on_tokens=on_tokens)
    while not decoder.done:
        decoder.step(events=False)
    return request.cut(decoder.result(rid))


def default_gen_length(max_len: int, prompt_len: int, kind: str | Kind, cfg: SampleConfig,
                       align: int = 1) -> int:
    """``DEFAULT_GEN_LENGTH`` new tokens, or, for a canvas that must fit the window, what fits
    after the longest prompt (bd3lm: in the window's whole blocks)."""
    if kinds.get(kind).slides(cfg):
        return DEFAULT_GEN_LENGTH
    room = max_len // align * align - prompt_len
    if room < 1:
        raise DLMError(f"the prompt ({prompt_len} tokens) leaves no room to generate in the "
                       f"model's context of {max_len} tokens; shorten it")
    return min(DEFAULT_GEN_LENGTH, room)


@torch.no_grad()
def denoise(network, canvases: list[list[int]], prompt_lengths: list[int], cfg: SampleConfig,
            *, kind: str | Kind, mask_id: int, eos_id: int, pad_id: int, record_trace: bool = True,
            on_logits: LogitsHook | None = None, on_tokens: TokensHook | None = None,
            no_eos: list[list[bool]] | None = None, align: int | None = None,
            seeds: list[int] | None = None) -> Generation:
    """Fill every MASK of the given canvases; every other token stays as it is: a ``Decoder``
    with these rows, stepped to the end (``seeds``: see ``Decoder.add``).

    Rows are padded so their first MASKs share a slot (blocks then line up, and a batch
    decodes like each row alone); each row splits ``cfg.steps`` over its own blocks.
    ``no_eos`` (per row and slot): where EOS may not be drawn (``min_length``, exact spans).
    ``align`` (default the kind's, ``Kind.align``; bd3lm: the model's block size): blocks
    are counted from each row's first
    token; rows are padded by whole blocks so that the blocks holding their first masks share
    slots, and decoding starts at that block (the prompt's tail decodes with the first new
    tokens): decoding blocks are the attention's blocks.
    """
    decoder = Decoder(network, kind=kind, mask_id=mask_id, eos_id=eos_id, pad_id=pad_id)
    request = decoder.add(canvases, prompt_lengths, cfg, no_eos=no_eos, align=align,
                          seeds=seeds, record_trace=record_trace, on_logits=on_logits,
                          on_tokens=on_tokens)
    while not decoder.done:
        decoder.step(events=False)
    return decoder.result(request)


def row_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th row drawn from ``seed``: ``seed`` itself for the first (a
    single row decodes as it always did), distinct ones after it."""
    return seed if index == 0 else (seed * 1_000_003 + index) % 2**63


class Decoder:
    """Decoding as a resumable step machine (docs/architecture.md, "The step machine").

    ``add`` puts rows in (a request: canvases with MASKs, its own ``SampleConfig``, seeds and
    hooks) at any time, ``step`` advances every live request by one step and returns one
    ``RowEvent`` per live row, ``cancel`` stops a request, ``result`` gives a finished one's
    ``Generation``. Requests that joined at different times run at their own blocks and
    steps; those decoding without a cache share one network call per step (their canvases
    padded to one width); a request with a KV cache (prefix, dual, exact: AR and bd3lm) runs
    its own call, since its cache holds only its rows. Each row draws from its own random
    stream, so a seeded row writes the same tokens alone, in any batch, and whenever it
    joined.

        d = Decoder(network, kind=model.kind, mask_id=256, eos_id=257, pad_id=258)
        a = d.add([prompt + [256] * 64], [len(prompt)], SampleConfig(steps=32))
        events = d.step()               # one step of request a
        b = d.add(...)                  # joins between steps
        while not d.done: d.step()
        d.result(a).tokens
    """

    def __init__(self, network, *, kind: str | Kind, mask_id: int, eos_id: int, pad_id: int):
        self.network, self.kind = network, kinds.get(kind)
        self.mask_id, self.eos_id, self.pad_id = mask_id, eos_id, pad_id
        self.requests: dict[int, _Request] = {}
        self.forwards = 0  # network calls made by ``step``
        self._ids = 0

    @torch.no_grad()
    def add(self, canvases: list[list[int]], prompt_lengths: list[int], cfg: SampleConfig, *,
            no_eos: list[list[bool]] | None = None, align: int | None = None,
            seeds: list[int] | None = None,
            record_trace: bool = True, on_logits: LogitsHook | None = None,
            on_tokens: TokensHook | None = None, top_logprobs: int | None = None) -> int:
        """A request of rows to decode from the next step on (see ``denoise``). ``seeds``: one
        per canvas, its row's own random stream (the same tokens alone, in any batch, whenever
        it joins); by default row r's stream is ``row_seed(cfg.seed, r)``. ``top_logprobs``:
        events carry each committed token's log-probability (0), and the k most likely tokens
        there (k > 0); None: neither (they cost a softmax per step). Returns its id."""
        rid, self._ids = self._ids, self._ids + 1
        self.requests[rid] = _Request(self, rid, canvases, prompt_lengths, cfg, no_eos, align,
                                      seeds, record_trace, on_logits, on_tokens, top_logprobs)
        return rid

    @property
    def done(self) -> bool:
        return all(r.done for r in self.requests.values())

    def cancel(self, request: int) -> None:
        """Stop a request between steps; its rows take no more steps (``result`` then gives
        the canvases as they are: one row per input, unranked, since a half-decoded beam or
        sample has no score worth a network call; its KV cache is freed)."""
        self.requests[request].finish(cancelled=True)

    @torch.no_grad()
    def step(self, events: bool = True) -> list[RowEvent]:
        """One step of every live request; the events of every row it moved (``events=False``:
        none are built, for a caller that only wants the results)."""
        live = [r for r in self.requests.values() if not r.done]
        shared = [r for r in live if r.forward.mode == "none" and r.on_logits is None]
        logits: dict[int, Tensor] = {}
        if len(shared) > 1:  # one call for every request that feeds its whole canvas
            for r, out in zip(shared, _shared_forward(self.network, shared)):
                logits[r.rid] = out
            self.forwards += 1
        out = []
        for r in live:
            if r.rid not in logits:
                self.forwards += 1
            out += r.advance(logits.get(r.rid), events)
        return out

    def result(self, request: int) -> Generation:
        r = self.requests[request]
        if not r.done:
            raise DLMError(f"request {request} is still decoding")
        return r.generation

    def release(self, request: int) -> Generation:
        """``result``, and the request is forgotten (a long-lived decoder, as a server's, keeps
        only the requests still decoding)."""
        out = self.result(request)
        del self.requests[request]
        return out


def _shared_forward(network, requests: list[_Request]) -> list[Tensor]:
    """Block logits of several cache-free requests from one network call: every request's full
    canvas (CFG-doubled where it guides), right-padded to one width, the padding hidden."""
    inputs = [r.forward.inputs(r.state) for r in requests]
    S = max(ids.shape[1] for ids, _, _ in inputs)
    attn = requests[0].forward.attn

    def pad(x: Tensor, value) -> Tensor:
        return torch.nn.functional.pad(x, (0, S - x.shape[1]), value=value)

    ids = torch.cat([pad(i, requests[0].decoder.pad_id) for i, _, _ in inputs])
    valid = torch.cat([pad(v, False) for _, v, _ in inputs])
    pos = torch.cat([pad(p, 0) for _, _, p in inputs])
    logits = network(ids, attn=attn.with_padding(valid), positions=pos)
    out, at = [], 0
    for r, (i, _, _) in zip(requests, inputs):
        part = logits[at:at + len(i), :i.shape[1]]
        at += len(i)
        r.forward.nfe += 1
        out.append(r.forward.block_logits(part, r.state))
    return out


class _Request:
    """The rows of one ``Decoder.add`` call, decoded in lockstep (one block and step for all
    of them); what used to be the body of ``denoise``."""

    def __init__(self, decoder: Decoder, rid: int, canvases, prompt_lengths, cfg, no_eos, align,
                 seeds, record_trace, on_logits, on_tokens, top_logprobs=None):
        if not canvases:
            raise DLMError("nothing to decode")
        network, spec, mask_id = decoder.network, decoder.kind, decoder.mask_id
        pad_id, eos_id = decoder.pad_id, decoder.eos_id
        cfg = spec.settle(cfg)  # e.g. AR: blocks of one token, the diffusion knobs do nothing
        align = spec.align(network, cfg) if align is None else align
        device = next(network.parameters()).device
        max_len = network.config.max_seq_len
        longest = max(len(c) for c in canvases)
        if spec.slides(cfg):  # the prompt and one block must fit the window
            first_mask = max(c.index(mask_id) if mask_id in c else len(c) for c in canvases)
            need = (first_mask // align + 1) * align
            if need > max_len:
                raise DLMError(f"the prompt ({first_mask} tokens) and one block do not fit the "
                               f"model's window of {max_len} tokens; shorten the prompt")
        elif longest > max_len:
            raise DLMError(f"prompt + generated tokens ({longest}) exceed the model's context "
                           f"of {max_len} tokens (AR and bd3lm with its exact cache can go "
                           "further)")
        if not any(mask_id in c for c in canvases):
            raise DLMError("nothing to generate: the canvas has no masked position")
        if seeds is not None and len(seeds) != len(canvases):
            raise DLMError(f"give one seed per canvas ({len(canvases)}), not {len(seeds)}")
        shift = spec.logit_shift(network)
        expand = max(cfg.num_samples, cfg.beam_width)
        n_in = len(canvases)
        rows = [c for c in canvases for _ in range(expand)]  # row r belongs to input r // expand
        firsts = [c.index(mask_id) if mask_id in c else len(c) for c in rows]
        first = max(f // align for f in firsts) * align  # where the first decoding block starts
        left = [first - f // align * align for f in firsts]
        canvas, valid = pad_rows(rows, left, pad_id, device)
        R, S = canvas.shape
        pad_offset = torch.tensor(left, device=device)  # [R]: canvas slot where each row starts
        plen = torch.tensor([p for p in prompt_lengths for _ in range(expand)], device=device)
        slot = torch.arange(S, device=device)[None, :]
        fixed = (canvas != mask_id) | ~valid
        if shift and bool(((canvas == mask_id) & (slot == pad_offset[:, None])).any()):
            raise DLMError("a model with shifted logits (Dream-style) reads each token from the "
                           "slot before it, so it cannot fill the first position: give a "
                           "prompt (or text before the first masked span)")
        banned_eos = torch.zeros_like(fixed)
        if no_eos is not None:
            banned_eos = pad_rows([[int(x) for x in r] for r in no_eos for _ in range(expand)],
                                  left, 0, device)[0].bool()
        state = DecodeState(
            canvas=canvas, fixed=fixed, valid=valid,
            positions=(valid.long().cumsum(1) - 1).clamp(min=0),
            confidence=torch.where(fixed, math.inf, 0.0).double(),
            logprob=torch.zeros(R, dtype=torch.float64, device=device), offset=pad_offset)
        if cfg.beam_width > 1:  # only the first copy of each input starts: no duplicate beams
            state.logprob.view(n_in, expand)[:, 1:] = NEG_INF
        # row r = input r // expand, copy r % expand: given seeds are each input's own (a row
        # then writes the same tokens in any batch); by default cfg.seed spread over the rows
        # (a batch of one prompt repeated draws different samples, as best-of-N's copies do)
        self.seeds = seeds
        self.streams = RowStreams([row_seed(cfg.seed, r) if seeds is None else
                                   row_seed(int(seeds[r // expand]), r % expand)
                                   for r in range(R)], device)
        cond = fixed & valid  # the condition CFG removes: every given token
        self.forward = _Forward(network, spec, cfg, mask_id, shift, cond)
        self.trace = Trace(spec.name, mask_id, [list(c) for c in rows], plen.tolist()) \
            if record_trace else None
        self.decoder, self.rid, self.spec, self.cfg, self.state = decoder, rid, spec, cfg, state
        self.eos = eos_id if cfg.stop_at_eos else None
        self.never = unwritable(mask_id, pad_id, eos_id)
        self.parents: list[Tensor | None] = []  # beam search: where each row came from
        self.ends = (valid.long() * slot).max(1).values + 1  # [R] one past each row's last slot
        self.block_len, self.plan = plan_blocks(spec, cfg, state.canvas[:, first:] == mask_id,
                                                self.forward.attn.block_size)  # [R, blocks]
        self.starts = list(range(first, S, self.block_len))
        self.first, self.left, self.n_in, self.expand = first, left, n_in, expand
        self.banned_eos, self.shift = banned_eos, shift
        self.on_logits, self.on_tokens = on_logits, on_tokens
        if top_logprobs is not None and not 0 <= top_logprobs <= 20:
            raise DLMError(f"top_logprobs must be in 0..20 (got {top_logprobs})",
                           param="logprobs")
        self.top_logprobs = top_logprobs
        # tokens a row has committed may change later only through ReMDM (inside the block
        # being decoded) or by beam / best-of-N choosing another row at the end
        self.revises = cfg.remask_eta > 0
        self.b, self.open, self.done, self.generation = -1, False, False, None
        self._next()

    def _next(self) -> None:
        """Move to the next step to take (opening the next block with masks), or finish."""
        state, mask_id = self.state, self.decoder.mask_id
        while True:
            if self.open:
                if bool((state.canvas[:, state.start:state.end] == mask_id).any()):
                    return
                self.open = False
                if self.spec.left_to_right and self.cfg.stop_at_eos and bool((
                        (state.canvas[:, self.first:state.end] == self.decoder.eos_id)
                        & ~state.fixed[:, self.first:state.end]).any(1).all()):
                    break  # every row has ended; the rest would be cut anyway
            self.b += 1
            if self.b >= len(self.starts):
                break
            start = self.starts[self.b]
            end = min(start + self.block_len, state.canvas.shape[1])
            state.block, state.start, state.end = self.b, start, end
            self.steps_per_block = self.plan[:, self.b].clamp(min=1)  # [R] (0: no masks)
            in_block = state.canvas[:, start:end] == mask_id
            self.n_block = in_block.sum(1)
            self.targets = _targets(in_block, self.steps_per_block, self.cfg)  # [R, max steps]
            self.i, self.open = 0, True
        self.finish()

    def advance(self, logits: Tensor | None, events: bool = True) -> list[RowEvent]:
        """Take one step (``logits``: the block's, when a shared call computed them)."""
        state, cfg, d = self.state, self.cfg, self.decoder
        start, end, i = state.start, state.end, self.i
        if i >= self.targets.shape[1] + (end - start):  # every rule commits >= 1 per step
            raise DLMError("decoding made no progress (do on_logits hooks leave every token "
                           "-inf or NaN?)")
        state.block_step = i
        if logits is None:
            logits = self.forward(state)
        if self.on_logits is not None:
            logits = self.on_logits(state.step, logits, state)
            if logits is None:
                raise DLMError("on_logits must return the logits")
        step = _decode_step(state, logits, cfg, i, self.steps_per_block, self.targets,
                            self.n_block, self.streams, d.mask_id, self.never, d.eos_id,
                            self.banned_eos[:, start:end])
        src = None
        if cfg.beam_width > 1:
            step, src = beam_step(state, step, self.expand, self._reorder, self.eos)
        _apply(state, step, d.mask_id, self.eos)
        record = _trace_step(state, step, state.offset) \
            if events or self.trace is not None else None
        if self.trace is not None:
            self.trace.steps.append(record)
            self.parents.append(src)
        if self.on_tokens is not None:
            self.on_tokens(state.step, state)
        state.step += 1
        self.i += 1
        self._next()
        if not events:
            return []
        masked = state.canvas == d.mask_id
        left = masked.sum(1).tolist()
        lps, top = _commit_logprobs(step, self.top_logprobs) \
            if self.top_logprobs is not None else (None, None)
        settled = self._settled(masked)
        return [RowEvent(self.rid, r, record.step, record.block, record.positions[r],
                         record.tokens[r], record.confidences[r],
                         record.remasked[r] if record.remasked else [], left[r], self.done,
                         lps[r] if lps else [], top[r] if top else [], settled[r])
                for r in range(len(left))]

    def plan_steps(self) -> list[int] | None:
        """Steps each row will take in all (None when the count depends on the scores:
        threshold, factor)."""
        return None if self.cfg.dynamic else self.plan.sum(1).tolist()

    def _settled(self, masked: Tensor) -> list[int]:
        """Per row, in its own coordinates: the length of its prefix that can no longer
        change (0 for beam search and best-of-N until they end: another row may win)."""
        state = self.state
        S = masked.shape[1]
        lengths = (self.ends - state.offset).tolist()
        if self.expand > 1:  # the answer is the row chosen at the end, not any row now
            return [0] * len(lengths)
        if self.done:
            return lengths
        slot = torch.arange(S, device=masked.device)[None, :]
        first = torch.where(masked & state.valid, slot, S).min(1).values  # first MASK
        if self.revises:
            first = first.clamp(max=state.start)
        return (first - state.offset).clamp(min=0).tolist()

    def _reorder(self, index: Tensor) -> None:
        self.forward.reorder(index)
        self.streams = self.streams.select(index.tolist())

    def finish(self, cancelled: bool = False) -> None:
        """Settle the result: the rows to return (best beam, best of N; the first copy of
        each input when ``cancelled``) and the trace."""
        if self.done:
            return
        self.done = True
        state, cfg, d = self.state, self.cfg, self.decoder
        if cancelled:
            keep, kept_scores = [i * self.expand for i in range(self.n_in)], None
        else:
            keep, kept_scores = choose_rows(d.network, self.spec, state, cfg, self.n_in,
                                             self.expand, d.mask_id, d.eos_id, self.shift,
                                             self.seeds)
        out = [state.canvas[r, self.left[r]:int(self.ends[r])].tolist() for r in keep]
        trace = self.trace
        if trace is not None and self.expand > 1:
            trace = lineage(trace, keep, self.parents)
        total = set(self.plan.sum(1).tolist())
        if cfg.steps is None and self.spec.reports_steps and not cfg.dynamic and \
                len(total) == 1:
            cfg = cfg.replace(steps=total.pop())  # the default, as decoded
        self.generation = Generation(out, out, trace, self.forward.nfe, kept_scores, cfg)
        self.forward.cache = None  # the memory goes back


def pad_rows(rows: list[list[int]], left: list[int], pad_id: int, device
             ) -> tuple[Tensor, Tensor]:
    """Rows -> ids [B, S] with ``left[b]`` PADs before row b and PADs after it up to the
    longest, and valid [B, S] (True on the row's own tokens)."""
    S = max(n + len(r) for n, r in zip(left, rows))
    ids = torch.full((len(rows), S), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), S), dtype=torch.bool)
    for b, (n, r) in enumerate(zip(left, rows)):
        if r:
            ids[b, n:n + len(r)] = torch.tensor(r, dtype=torch.long)
            valid[b, n:n + len(r)] = True
    return ids.to(device), valid.to(device)


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    """Rows -> ids [B, S] left-padded with PAD, and valid [B, S] (True on real tokens)."""
    S = max(len(r) for r in rows)
    return pad_rows(rows, [S - len(r) for r in rows], pad_id, device)


def block_time(i, steps: Tensor) -> Tensor:
    """Time t at the start of step i of a block (1 -> 0) per row, rounded so window edges
    are exact."""
    i = torch.as_tensor(i, dtype=torch.float64, device=steps.device)
    return torch.round((1.0 - i / steps.double()) * 1e12) / 1e12


def plan_blocks(kind: str | Kind, cfg: SampleConfig, masked: Tensor, block_size: int | None
                ) -> tuple[int, Tensor]:
    """Block length and the steps of every block of every row [R, n_blocks], for rows whose
    slots from the shared first mask on are ``masked`` [R, L] (True where MASK), blocks as long
    as the kind says (``Kind.block_length``: AR one token, bd3lm the model's own block size,
    mdlm ``block_length``, by default everything in one block).

    Steps go only to blocks that hold masks. By default a block takes half its masks (rounded
    up); ``cfg.steps`` is split over a row's blocks in proportion to their masks, each getting
    at least one, the remainders to the largest fractions and ties to the earlier blocks: for
    blocks of equal size that is LLaDA's even split (``steps // n``, the first blocks taking
    the rest)."""
    R, L = masked.shape
    block = max(1, min(kinds.get(kind).block_length(cfg, L, block_size), L))
    n = -(-L // block)
    per_block = torch.zeros(R, n * block, dtype=torch.long, device=masked.device)
    per_block[:, :L] = masked.long()
    m = per_block.view(R, n, block).sum(-1)  # [R, n] masks per block
    has = m > 0
    if cfg.steps is None:  # (a block of one token: one step)
        return block, (m + 1) // 2
    blocks = has.sum(1, keepdim=True)  # [R, 1]
    if not cfg.dynamic and cfg.steps < int(blocks.max()):
        raise DLMError(f"steps ({cfg.steps}) is fewer than the blocks with masks to decode "
                       f"({int(blocks.max())} of {block} tokens; a checkpoint's defaults may "
                       "set block_length): each block needs a step, so raise steps or "
                       "block_length")
    spare = (cfg.steps - blocks).clamp(min=0).double()  # beyond one step per block
    share = spare * m.double() / m.sum(1, keepdim=True).clamp(min=1)
    steps = share.floor().long()
    left = (spare.long() - steps.sum(1, keepdim=True)).squeeze(1)  # [R] to hand out
    frac = torch.where(has, share - steps, -1.0)
    order = torch.sort(-frac, dim=1, stable=True).indices  # largest first, ties: earlier
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=m.device)
                                            .expand(R, n).contiguous())
    steps += (rank < left[:, None]).long()
    return block, torch.where(has, steps + 1, 0)


# ----------------------------------------------------------------------------------------------
# 1. the forward pass


class _Forward:
    """Logits of the current block [R, L, V] for each cache mode; counts network calls.

    none: the whole canvas every step (exact). prefix (Fast-dLLM): the block's first step runs
    the whole canvas and caches the keys/values before the block; later steps feed the block and
    everything after it. dual: the first step caches every slot; later steps feed only the
    block, overwriting its cache slots, and attend to the (stale) cached suffix too. exact (AR,
    bd3lm): causal / block-causal attention makes finished tokens independent of what follows,
    so each step feeds only the tokens not yet cached plus the block, and stores the finished
    ones: the same logits as ``none``.
    """

    def __init__(self, network, kind: Kind, cfg: SampleConfig, mask_id: int, shift: int,
                 cond: Tensor):
        self.network, self.cfg, self.mask_id, self.shift, self.cond = \
            network, cfg, mask_id, shift, cond
        self.attn = kind.attention(network_block_size(network) if kind.blocked else None)
        self.mode = kind.cache_mode(cfg)
        self.cache = network.new_cache() if self.mode == "exact" else None
        # the exact cache may slide: at most ``window`` slots attended, evicted in blocks
        self.window, self.block, self.evicted = network.config.max_seq_len, \
            self.attn.block_size or 1, 0
        self.nfe = 0

    def run(self, state: DecodeState, lo: int, hi: int, cache, evicted: int = 0) -> Tensor:
        """Network on canvas slots [lo, hi) (attending to ``cache`` too, which starts at
        canvas slot ``evicted``), CFG applied (LLaDA: the unconditional pass sees the prompt
        re-masked)."""
        ids, valid, pos = self.inputs(state)
        k_hi = hi if cache is None or cache.write_at is None else valid.shape[1]
        logits = self.network(ids[:, lo:hi],
                              attn=self.attn.with_padding(valid[:, evicted:k_hi]),
                              positions=pos[:, lo:hi], cache=cache)
        self.nfe += 1
        if self.cfg.cfg_scale > 0:
            c, u = logits.chunk(2)
            logits = u + (self.cfg.cfg_scale + 1.0) * (c - u)
        return logits

    def inputs(self, state: DecodeState) -> tuple[Tensor, Tensor, Tensor]:
        """ids, key validity and positions of the whole canvas (CFG: doubled), for a call
        without a cache (``_shared_forward``)."""
        ids, valid, pos = state.canvas, state.valid, state.positions
        if self.cfg.cfg_scale > 0:
            ids = torch.cat([ids, ids.masked_fill(self.cond, self.mask_id)])
            valid, pos = valid.repeat(2, 1), pos.repeat(2, 1)
        return ids, valid, pos

    def block_logits(self, logits: Tensor, state: DecodeState) -> Tensor:
        """The current block's logits [R, L, V] from the whole canvas's (CFG combined)."""
        if self.cfg.cfg_scale > 0:
            c, u = logits.chunk(2)
            logits = u + (self.cfg.cfg_scale + 1.0) * (c - u)
        a = state.start - self.shift
        return logits[:, a:a + state.end - state.start]

    def __call__(self, state: DecodeState) -> Tensor:
        start, end, S = state.start, state.end, state.canvas.shape[1]
        a = start - self.shift  # logits at slots [a, a + L) predict the block
        L = end - start
        if self.mode == "exact":
            c = self.evicted + self.cache.length  # canvas slot where the cache ends
            over = self.cache.length + (end - c) - self.window
            if over > 0:  # slide: drop whole blocks so the block structure stays aligned
                drop = -(-over // self.block) * self.block
                self.cache.evict(drop)
                self.evicted += drop
            self.cache.store = start - c  # tokens before the block are committed: cache them
            return self.run(state, c, end, self.cache, self.evicted)[:, a - c:a - c + L]
        if self.mode == "none":
            return self.run(state, 0, S, None)[:, a:a + L]
        if state.block_step == 0:  # refresh the cache at each block start (Fast-dLLM)
            self.cache = self.network.new_cache(store=a if self.mode == "prefix" else None)
            return self.run(state, 0, S, self.cache)[:, a:a + L]
        if self.mode == "prefix":
            self.cache.store = 0
            return self.run(state, a, S, self.cache)[:, :L]
        self.cache.write_at = a  # the block (and, shifted, the slot before it) is refreshed
        try:
            return self.run(state, a, end, self.cache)[:, :L]
        finally:
            self.cache.write_at = None

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:
            R = len(index)
            self.cache.reorder(torch.cat([index, index + R]) if self.cfg.cfg_scale > 0
                               else index)


# ----------------------------------------------------------------------------------------------
# 2-4. one step: candidates, scores, how many and which to commit, re-masking


def _targets(in_block: Tensor, steps: Tensor, cfg: SampleConfig) -> Tensor:
    """Masks left after each step of a block [R, max steps] (0 past a row's own steps).

    With a ReMDM window narrower than [0, 1] the steps inside it hold the count (ReMDM-loop)
    and the others share the work. Rows are grouped by their number of steps.
    """
    out = torch.zeros(in_block.shape[0], int(steps.max()), dtype=torch.long,
                      device=in_block.device)
    for n in steps.unique().tolist():
        rows = steps == n
        t = block_time(torch.arange(n).tolist(), torch.tensor(float(n)))
        hold = [bool(cfg.remask_eta > 0 and (cfg.remask_t_on < 1 or cfg.remask_t_off > 0)
                     and cfg.remask_t_off <= x <= cfg.remask_t_on) for x in t.tolist()]
        moving = n - sum(hold)
        if not any(hold) or moving < 1:
            out[rows, :n] = masked_targets(in_block[rows], n, cfg.transfer, cfg.eps)
            continue
        base = masked_targets(in_block[rows], moving, cfg.transfer, cfg.eps)
        j, last = 0, in_block[rows].sum(1)
        for col, h in enumerate(hold):
            if not h:
                last = base[:, j]
                j += 1
            out[rows, col] = last
    return out


def _decode_step(state: DecodeState, logits: Tensor, cfg: SampleConfig, i: int, steps: Tensor,
                 targets: Tensor, n_block: Tensor, generator, mask_id: int, never: list[int],
                 eos_id: int, no_eos: Tensor) -> Step:
    start, end = state.start, state.end
    masked = state.canvas[:, start:end] == mask_id  # [R, L]
    # EOS is not allowed where it is banned (min_length, exact infill spans, edits); top-k /
    # top-p choose from the network's distribution (as LLaDA's and Dream's samplers, which
    # suppress nothing else); then ``never`` (MASK, and PAD unless it is the EOS:
    # ``unwritable``) is removed, so every slot gets a real token from any network (a trained
    # one gives them ~0 probability). Scores are probabilities renormalised over the top-k /
    # top-p set, suppressed tokens keeping their mass. Dream's convention (confidence
    # "sampled") divides the logits by the temperature first and filters top-p before top-k:
    # its sets and its scores are those of the distribution tokens are drawn from; LLaDA's
    # ("model", with Hugging Face's top-k-then-top-p) scores the network's own.
    temperature = cfg.temperature
    if cfg.confidence == "sampled" and temperature > 0:
        logits, temperature = logits.double() / temperature, 1.0
    allowed = logits
    if no_eos.any():
        allowed = logits.clone()
        allowed[..., eos_id] = allowed[..., eos_id].masked_fill(no_eos, NEG_INF)
    never_t = torch.tensor(never, device=logits.device)
    dream = cfg.confidence == "sampled"
    kept = filter_logits(allowed, cfg.top_k, cfg.top_p, top_p_first=dream)
    candidates = kept.index_fill(-1, never_t, NEG_INF)
    if cfg.top_k is not None or cfg.top_p is not None:
        logits = logits.masked_fill((kept == NEG_INF) & (allowed > NEG_INF), NEG_INF)
        empty = (candidates == NEG_INF).all(-1, keepdim=True)  # the set held only MASK / PAD
        if bool(empty.any()):
            candidates = torch.where(empty, filter_logits(
                allowed.index_fill(-1, never_t, NEG_INF), cfg.top_k, cfg.top_p, dream),
                candidates)
    x0 = sample_tokens(candidates, temperature, generator)
    logprob = torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)
    if cfg.beam_width > 1:  # the beam score; nothing else needs it
        logprob = torch.log_softmax(candidates.double(), -1).gather(-1, x0[..., None]) \
            .squeeze(-1)
    score = torch.where(masked, scores(logits, x0, cfg.remasking, generator), NEG_INF)
    remask = torch.zeros_like(masked)
    if cfg.remasking == "origin":
        commit = origin_commit(score, masked, i, steps, cfg.eps)
    else:
        if cfg.threshold is not None:
            k = threshold_count(score, cfg.threshold)
        elif cfg.factor is not None:
            k = factor_count(score, cfg.factor)
        else:
            target = targets[:, min(i, targets.shape[1] - 1)]
            if cfg.remask_eta > 0:
                remask = _remask(state, masked, target, n_block, cfg, i, steps, generator)
            k = masked.sum(1) - target + remask.sum(1)
        commit = select_top(score, k, cfg.alg_temp, generator)
    return Step(x0, score, commit, remask, logprob, candidates)


def _remask(state: DecodeState, masked: Tensor, target: Tensor, n_block: Tensor,
            cfg: SampleConfig, i: int, steps: Tensor, generator) -> Tensor:
    """ReMDM: which committed (not given) tokens of the block go back to MASK this step."""
    t = block_time(i, steps)  # [R]
    in_window = (cfg.remask_t_off <= t) & (t <= cfg.remask_t_on)
    start, end = state.start, state.end
    committed = ~masked & ~state.fixed[:, start:end]
    n = n_block.double().clamp(min=1)
    alpha_t = 1.0 - masked.sum(1).double() / n  # share of the block unmasked now
    alpha_s = 1.0 - target.double() / n  # ... and after this step
    sigma = remask_sigma(cfg.remask_variant, cfg.remask_eta, alpha_t, alpha_s)
    r = torch.minimum(torch.round(sigma * committed.sum(1)).long(), target) * in_window
    if cfg.remask_variant == "conf":  # the least confident go first
        key = -state.confidence[:, start:end]
    else:
        key = uniform(masked.shape, generator, masked.device)
    return select_top(torch.where(committed, key, NEG_INF), r)


def _apply(state: DecodeState, step: Step, mask_id: int, eos_id: int | None) -> None:
    """Commit, then re-mask (the order ``Trace.state_at`` replays). Log-probabilities of
    tokens after an EOS (when the text stops there) do not count towards the beam score."""
    start, end = state.start, state.end
    counted = counted_slots(state, step.commit, eos_id)
    state.logprob += torch.where(counted, step.logprob, 0.0).sum(1)
    block = torch.where(step.commit, step.x0, state.canvas[:, start:end])
    state.canvas[:, start:end] = block.masked_fill(step.remask, mask_id)
    state.confidence[:, start:end] = torch.where(step.commit, step.score,
                                                 state.confidence[:, start:end])


def _per_row(where: Tensor, values: Tensor) -> list[list]:
    """values[where] split into one list per row."""
    return [v.tolist() for v in torch.split(values[where], where.sum(1).tolist())]


def _commit_logprobs(step: Step, k: int) -> tuple[list[list[float]], list | None]:
    """Per row, per committed position: the log-probability of its token under the (top-k /
    top-p filtered) distribution it was drawn from, and, for ``k`` > 0, that distribution's k
    most likely (token, log-probability) pairs."""
    lp = torch.log_softmax(step.candidates[step.commit].float(), -1)  # [n, V]
    own = lp.gather(-1, step.x0[step.commit][:, None]).squeeze(-1).tolist()
    counts = step.commit.sum(1).tolist()
    if k:
        values, ids = lp.topk(min(k, lp.shape[-1]), -1)
        pairs = [[(int(t), round(float(v), 6)) for t, v in zip(ti, vi) if math.isfinite(v)]
                 for ti, vi in zip(ids.tolist(), values.tolist())]  # filtered out: not listed
    lps, top, at = [], [], 0
    for n in counts:
        lps.append([round(x, 6) for x in own[at:at + n]])
        if k:
            top.append(pairs[at:at + n])
        at += n
    return lps, top if k else None


def _trace_step(state: DecodeState, step: Step, pad_offset: Tensor) -> TraceStep:
    """This step's commits and re-masks per row, in row coordinates (tensor ops, then one
    split into per-row lists)."""
    pos = torch.arange(state.start, state.end, device=pad_offset.device)[None, :] \
        - pad_offset[:, None]  # [R, L] block slot -> row position
    per_row = _per_row

    confs = [[round(c, 6) for c in r] for r in per_row(step.commit, step.score.float())]
    remasked = per_row(step.remask, pos) if step.remask.any() else []
    return TraceStep(state.step, state.block, per_row(step.commit, pos),
                     per_row(step.commit, step.x0), confs, remasked)
