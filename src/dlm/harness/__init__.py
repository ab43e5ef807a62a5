"""The lm-evaluation-harness adapter: lm-eval's model ``dlm`` (optional extra ``eval``).

Importing this module registers the model with lm-eval, so any dlm checkpoint (ours, a LoRA run,
a published LLaDA / Dream directory) runs lm-eval's tasks:

    dlm lm-eval runs/tiny --tasks hellaswag,arc_easy --mc-num 128
    python -m dlm.harness --model dlm --model_args pretrained=runs/tiny,mc_num=128 \\
        --tasks hellaswag                       # lm-eval's own command line, dlm registered
    import lm_eval, dlm.harness
    lm_eval.simple_evaluate(model="dlm", model_args={"pretrained": "runs/tiny"}, tasks=[...])

What each request type computes:

* ``loglikelihood``: log p(continuation | context), exact for AR; for masked diffusion LLaDA's
  Monte-Carlo estimate with ``mc_num`` stratified mask counts (optionally with its
  classifier-free guidance ``cfg``). ``is_greedy`` is exact for AR (the argmax at every slot)
  and LLaDA's check for diffusion (the continuation filled one token per step, most confident
  first, by argmax), which costs one forward pass per continuation token;
  ``check_greedy=False`` skips it and reports False (metrics built on it, such as lambada's
  acc, then read 0).
* ``loglikelihood_rolling``: the text cut into lm-eval's rolling windows of the context (each
  token scored once, the first window after the EOS as BOS), each window's log-likelihood
  given the token before it (a Monte-Carlo ELBO, a lower bound, for diffusion), summed.
* ``generate_until``: dlm's sampler. model_args may set any ``SampleConfig`` field (steps,
  block_length, threshold, cache, remasking, ...); a task's gen_kwargs ``until`` become stop
  strings, ``max_gen_toks`` the generation length, ``temperature`` / ``do_sample`` /
  ``top_p`` / ``top_k`` and SampleConfig names pass through. Contexts too long for the window
  lose their oldest tokens, as lm-eval's own models do.

Monte-Carlo estimates are seeded per batch of requests (``seed``), so a run repeats exactly
with the same batch size.
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ..errors import DLMError
from ..sample.config import DEFAULT_GEN_LENGTH, SampleConfig

# gen_kwargs lm-eval tasks use -> SampleConfig fields
_GEN_KEYS = {"until": "stop", "max_gen_toks": "gen_length", "max_new_tokens": "gen_length"}
_SAMPLE_FIELDS = {f.name for f in dataclasses.fields(SampleConfig)}


@contextmanager
def _progress(total: int, what: str, disable: bool):
    """``advance(n=1)``: a bar over the requests on a terminal (dlm.progress); nothing
    otherwise."""
    from ..progress import terminal_bar

    with terminal_bar(f"dlm · {what}", total, enabled=not disable) as update:
        done = [0]

        def advance(n: int = 1) -> None:
            done[0] += n
            if update is not None:
                update(done[0])

        yield advance


def parse_adapters(text: str | None) -> list[tuple[str, float]]:
    """'runs/a:0.7+runs/b' -> [('runs/a', 0.7), ('runs/b', 1.0)] (lm-eval splits model_args at
    commas, so several adapters are joined with '+')."""
    from ..models.lora import parse_adapter

    return [parse_adapter(a) for a in str(text).split("+") if a] if text else []


@register_model("dlm")
class DLMHarness(TemplateLM):
    def __init__(self, pretrained: str, device: str | None = None, dtype: str | None = None,
                 batch_size: int | str = 16, max_batch_size: int | None = None,
                 mc_num: int = 128, check_greedy: bool = True, cfg: float = 0.0, seed: int = 0,
                 adapters: str | None = None, base: str | None = None, **sample_fields):
        """``pretrained``: a dlm checkpoint, LoRA run or LLaDA / Dream directory. Other keys:
        see the module docstring; unknown ones are refused (one line naming them)."""
        super().__init__()
        import dlm

        unknown = set(sample_fields) - _SAMPLE_FIELDS
        if unknown:
            raise DLMError(f"unknown dlm model_args: {', '.join(sorted(unknown))} (known: "
                           "pretrained, device, dtype, batch_size, mc_num, check_greedy, cfg, "
                           "seed, adapters, base and SampleConfig fields)")
        try:
            self.batch_size = int(batch_size)
        except ValueError:
            raise DLMError(f"batch_size must be a number (got {batch_size!r}; 'auto' is not "
                           "supported)") from None
        if self.batch_size < 1 or int(mc_num) < 1:
            raise DLMError("batch_size and mc_num must be >= 1")
        self.model = dlm.load(pretrained, device=device or "auto", dtype=dtype,
                              adapters=parse_adapters(adapters), base=base)
        self.mc_num, self.check_greedy = int(mc_num), bool(check_greedy)
        self.cfg, self.seed = float(cfg), int(seed)
        if isinstance(sample_fields.get("stop"), str):  # one stop string from model_args
            sample_fields["stop"] = [sample_fields["stop"]]
        self.sample_fields = sample_fields
        self.model.sample_config(**sample_fields)  # refuse bad values now
        self._bos = self.model._bos()
        self._name = str(pretrained)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """lm-eval's model_args string; its --device / --batch-size fill what it leaves out."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**extra, **arg_dict})

    # --- what TemplateLM needs ----------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.model.eos_id

    @property
    def max_length(self) -> int:
        """Tokens a request may hold (the window, less the BOS of a shifted-logit model)."""
        return self.model.max_seq_len - len(self._bos)

    @property
    def tokenizer_name(self) -> str:
        return f"dlm:{self._name}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.model.config.get("chat_template") or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        """The checkpoint's chat template (or dlm's default, as ``dlm sft`` renders prompts)."""
        return self.model.chat_prompt(chat_history, add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None,
                   **kwargs) -> list[int]:
        return self.model.tokenizer.encode(string)

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        return self.model.tokenizer.decode(tokens)

    # --- scoring ------------------------------------------------------------------------------
    def _fit(self, context: list[int], continuation: list[int], start: bool = True
             ) -> tuple[list[int], list[int]]:
        """Drop the oldest context tokens so the pair fits the window (the continuation is
        kept whole; one longer than the window is refused). lm-eval's EOS standing for a
        missing context is dropped where the model puts its own BOS (also the EOS) first."""
        if self._bos and start and context == [self.prefix_token_id]:
            context = []
        room = self.max_length - len(continuation)
        if room < len(self.model.spec.bos(self.model.eos_id)):
            raise DLMError(f"a continuation of {len(continuation)} tokens does not fit the "
                           f"model's window of {self.max_length} tokens")
        return (context[-room:] if room else []), continuation

    def _score(self, pairs: list[tuple[list[int], list[int]]], greedy: bool, what: str,
               disable: bool, starts: list[bool] | None = None) -> list[tuple[float, bool]]:
        """(log-likelihood, is_greedy) per pair, longest first in batches, in input order.
        ``starts``: which pairs begin a text (default all; rolling windows after the first
        do not, so a shifted-logit model gets no BOS before them). An empty continuation
        (lm-eval makes one from a lone EOS) has log-likelihood 0."""
        starts = starts or [True] * len(pairs)
        out: list[tuple[float, bool] | None] = [(0.0, True) if not b else None
                                                for _, b in pairs]
        order = sorted((i for i in range(len(pairs)) if out[i] is None),
                       key=lambda i: -sum(map(len, pairs[i])))
        with _progress(len(order), what, disable) as advance:
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = [self._fit(*pairs[i], starts[i]) for i in rows]
                first = [starts[i] for i in rows]
                lp = self.model.loglikelihood_ids(batch, t_samples=self.mc_num, seed=self.seed,
                                                  cfg_scale=self.cfg, batch_size=self.batch_size,
                                                  bos=first)
                hit = self.model.greedy_ids(batch, cfg_scale=self.cfg) if greedy \
                    else [False] * len(batch)
                for i, v, g in zip(rows, lp, hit):
                    out[i] = (float(v), bool(g))
                advance(len(rows))
        return out

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs
                              ) -> list[tuple[float, bool]]:
        greedy = self.check_greedy or self.model.spec.exact  # exact and cheap for AR
        results = self._score([(ctx, cont) for _, ctx, cont in requests], greedy,
                              "loglikelihood", disable_tqdm)
        for (args, _, _), r in zip(requests, results):
            if args is not None:
                self.cache_hook.add_partial("loglikelihood", args, r)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner, starts = [], [], []
        for n, req in enumerate(requests):
            (text,) = req.args
            # windows of max_length - 1 so that the prefix token fits too
            for k, w in enumerate(get_rolling_token_windows(
                    self.tok_encode(text), self.prefix_token_id, self.max_length - 1,
                    context_len=1)):
                windows.append(make_disjoint_window(w))
                owner.append(n)
                starts.append(k == 0)
        scores = self._score(windows, False, "rolling loglikelihood", disable_tqdm, starts)
        totals = [0.0] * len(requests)
        for n, (lp, _) in zip(owner, scores):
            totals[n] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # --- generation ---------------------------------------------------------------------------
    def _gen_fields(self, gen_kwargs: dict | None) -> dict:
        """A request's gen_kwargs mapped onto SampleConfig fields, then the fields the user
        set (model_args / dlm lm-eval flags) on top; stop strings from both apply."""
        gen_kwargs = dict(gen_kwargs or {})
        sample = gen_kwargs.pop("do_sample", None)
        fields, ignored = {}, []
        for key, value in gen_kwargs.items():
            name = _GEN_KEYS.get(key, key)
            if name not in _SAMPLE_FIELDS:
                ignored.append(key)
            else:
                fields[name] = [value] if name == "stop" and isinstance(value, str) else value
        if sample is False:  # lm-eval's greedy decoding
            fields["temperature"] = 0.0
        elif sample:  # sampling asked for, at the usual default temperature
            fields.setdefault("temperature", 1.0)
        if ignored:
            warnings.warn(f"dlm: gen_kwargs {', '.join(sorted(ignored))} have no SampleConfig "
                          "counterpart and are ignored", stacklevel=2)
        stop = [*(fields.get("stop") or []), *(self.sample_fields.get("stop") or [])]
        return {"seed": self.seed, **fields, **self.sample_fields, "stop": stop or None}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(repr(sorted((req.args[1] or {}).items())), []).append(i)
        with _progress(len(requests), "generate_until", disable_tqdm) as advance:
            for rows in groups.values():
                fields = self._gen_fields(requests[rows[0]].args[1])
                cfg = self.model.sample_config(**fields)
                # AR and bd3lm slide their window (the context and one block must fit); a
                # masked diffusion canvas must fit it whole
                window = self.model.spec.generation_window(self.model.block_size)
                if cfg.gen_length is None and window is None:  # no max_gen_toks: the
                    # default, in at most half the window (AR and bd3lm: the driver's)
                    cfg = cfg.replace(gen_length=min(DEFAULT_GEN_LENGTH, self.max_length // 2))
                room = self.max_length - (cfg.gen_length if window is None else window)
                if room < 1:
                    raise DLMError(f"gen_length {cfg.gen_length} leaves no room for a context "
                                   f"in the model's window of {self.max_length} tokens")
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start:start + self.batch_size]
                    ids = [self.tok_encode(requests[i].args[0])[-room:] for i in chunk]
                    texts = self.model.generate_ids(ids, config=cfg).text
                    for i, text in zip(chunk, texts):
                        out[i] = text
                        self.cache_hook.add_partial("generate_until", requests[i].args, text)
                    advance(len(chunk))
        return out
