"""Request bodies -> what to decode (docs/serving.md, "Requests").

OpenAI's fields are read as OpenAI defines them; every ``SampleConfig`` field is accepted too,
top-level (what the ``openai`` client's ``extra_body`` sends), and checked by the same
validator as the CLI's and the Python API's. A mistake is an ``APIError`` in OpenAI's error
shape; a bad field names itself in ``param``.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field

from ..errors import DLMError
from ..sample.config import SampleConfig, field_named


class APIError(Exception):
    """An error answer: HTTP status and OpenAI's ``{"error": {message, type, param, code}}``."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error",
             404: "invalid_request_error", 413: "invalid_request_error",
             422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
             503: "server_error", 504: "timeout_error"}

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status,
                                                                          "invalid_request_error"),
                          "param": self.param, "code": self.code}}


@dataclass
class Limits:
    """Caps on what one request may ask (``dlm serve`` flags)."""

    max_tokens: int = 1024
    max_steps: int = 1024
    max_n: int = 8
    max_beam: int = 8
    max_prompts: int = 32
    max_rows: int = 64  # prompts x n x (best_of or beam_width) in one request
    max_body: int = 1 << 20  # bytes
    timeout: float = 300.0  # seconds a request may decode


SAMPLE_FIELDS = {f.name: f for f in dataclasses.fields(SampleConfig)}
# OpenAI's names for SampleConfig's fields (the rest keep their own)
RENAMED = {"max_tokens": "gen_length", "max_completion_tokens": "gen_length",
           "best_of": "num_samples"}
COMMON = {"model", "n", "stream", "stream_options", "stop", "seed", "temperature", "top_p",
          "user", "presence_penalty", "frequency_penalty", "logit_bias", "diffusing",
          "mask_placeholder", "max_tokens"}
COMPLETION = COMMON | {"prompt", "suffix", "echo", "logprobs", "best_of"}
CHAT = COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs",
                 "response_format", "tools", "tool_choice", "parallel_tool_calls"}
DENOISE = COMMON | {"prompt", "template", "suffix", "record_trace", "messages"}


def from_dlm(e: DLMError) -> APIError:
    """A user mistake found by the library: a 400 naming the setting (its own ``param``, or
    the first SampleConfig field its message names)."""
    return APIError(400, str(e), e.param or field_named(str(e)))


def bad(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param)


def _type(value, kind: str, name: str):
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "str": isinstance(value, str),
          "dict": isinstance(value, dict), "list": isinstance(value, list)}[kind]
    if not ok:
        raise bad(f"{name} must be {'an' if kind == 'int' else 'a'} {kind} "
                  f"(got {type(value).__name__})", name)
    return value


@dataclass
class Ask:
    """One request, read: the model id, the prompts (token ids, and texts), how many answers
    each, the settings, and how to answer."""

    model: str
    prompts: list[list[int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    suffix: str | None = None
    template: str | None = None
    n: int = 1
    cfg: SampleConfig = field(default_factory=SampleConfig)  # the given fields, checked
    fields: dict = field(default_factory=dict)  # ... themselves: the checkpoint's defaults
    # come first for what was not given (Model.sample_config)
    seed: int = 0
    seeded: bool = False
    stream: bool = False
    include_usage: bool = False
    diffusing: bool = False
    placeholder: str = "\u2592"
    echo: bool = False
    logprobs: int | None = None  # completions: top-k per token (0: the token's own only)
    record_trace: bool = False


def read_common(body: dict, allowed: set[str], limits: Limits) -> tuple[Ask, dict]:
    """The fields every route shares; returns the ask and the SampleConfig fields given."""
    if not isinstance(body, dict):
        raise APIError(422, "the body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - allowed - set(SAMPLE_FIELDS))
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}", unknown[0])
    if "model" not in body:
        raise bad("model is required", "model")
    ask = Ask(model=_type(body["model"], "str", "model"))
    sample: dict = {k: body[k] for k in body if k in SAMPLE_FIELDS}
    if body.get("user") is not None:
        _type(body["user"], "str", "user")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            _type(body[name], "number", name)
            raise bad(f"{name} is not supported by a diffusion sampler; leave it 0", name)
    if body.get("logit_bias"):
        raise bad("logit_bias is not supported; use an on_logits hook in Python", "logit_bias")
    if body.get("n") is not None:
        ask.n = _type(body["n"], "int", "n")
        if not 1 <= ask.n <= limits.max_n:
            raise bad(f"n must be in 1..{limits.max_n} (got {ask.n})", "n")
    for name in ("stream", "diffusing", "echo", "record_trace"):
        if body.get(name) is not None:
            setattr(ask, name, _type(body[name], "bool", name))
    if body.get("stream_options") is not None:
        opts = _type(body["stream_options"], "dict", "stream_options")
        if not ask.stream:
            raise bad("stream_options needs stream: true", "stream_options")
        ask.include_usage = bool(_type(opts.get("include_usage", False), "bool",
                                       "stream_options.include_usage"))
    if body.get("mask_placeholder") is not None:
        ask.placeholder = _type(body["mask_placeholder"], "str", "mask_placeholder")
        if len(ask.placeholder) > 8:
            raise bad("mask_placeholder must be at most 8 characters", "mask_placeholder")
    if ask.diffusing and not ask.stream:
        raise bad("diffusing: true streams the whole canvas: it needs stream: true",
                  "diffusing")
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad("stop must be a string or a list of strings", "stop")
        if len(stop) > 4 or any(len(s) > 256 for s in stop):
            raise bad("stop takes at most 4 strings of at most 256 characters", "stop")
        sample["stop"] = [s for s in stop if s] or None
    for ours, theirs in (("gen_length", "max_tokens"), ("gen_length", "max_completion_tokens"),
                         ("num_samples", "best_of")):
        if body.get(theirs) is not None and theirs in allowed:
            if ours in sample and sample[ours] != body[theirs]:
                raise bad(f"give one of {theirs} and {ours} (they are one setting)", theirs)
            sample[ours] = body[theirs]
    if sample.get("seed") is not None:
        ask.seed, ask.seeded = _type(sample["seed"], "int", "seed"), True
        if not -(2 ** 63) <= ask.seed < 2 ** 63:
            raise bad("seed must fit in 64 bits", "seed")
        sample["seed"] = ask.seed % 2 ** 63
        ask.seed = sample["seed"]
    else:
        ask.seed = secrets.randbits(62)  # OpenAI: unseeded requests differ
        sample["seed"] = ask.seed
    sample = {k: v for k, v in sample.items() if v is not None or
              SAMPLE_FIELDS[k].default is None}
    ask.fields = sample
    try:
        ask.cfg = SampleConfig(**sample).validate()
    except DLMError as e:
        raise bad(str(e), _openai_name(e.param or field_named(str(e)), body)) from None
    except TypeError as e:
        raise bad(str(e)) from None
    cfg = ask.cfg
    if cfg.gen_length is not None and cfg.gen_length > limits.max_tokens:
        raise bad(f"max_tokens must be at most {limits.max_tokens} on this server (got "
                  f"{cfg.gen_length})", _openai_name("gen_length", body))
    if cfg.steps is not None and cfg.steps > limits.max_steps:
        raise bad(f"steps must be at most {limits.max_steps} on this server (got "
                  f"{cfg.steps})", "steps")
    for name, cap in (("beam_width", limits.max_beam), ("num_samples", limits.max_n),
                      ("rank_t_samples", 64)):
        if getattr(cfg, name) > cap:
            raise bad(f"{name} must be at most {cap} on this server (got "
                      f"{getattr(cfg, name)})", _openai_name(name, body))
    if ask.n > 1 and cfg.num_samples > 1:
        raise bad("best_of ranks the samples of one answer: use it with n = 1", "best_of")
    return ask, sample


def _openai_name(name: str | None, body: dict) -> str | None:
    """The name the client used for a SampleConfig field (max_tokens for gen_length...)."""
    for theirs, ours in RENAMED.items():
        if ours == name and theirs in body:
            return theirs
    return name


def read_prompt(value, tokenizer, limits: Limits) -> tuple[list[list[int]], list[str]]:
    """OpenAI's prompt: a string, a list of strings, a list of token ids or a list of lists."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad("prompt must be a string, a list of strings or token ids, not empty",
                  "prompt")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        value = [value]
    if len(value) > limits.max_prompts:
        raise bad(f"at most {limits.max_prompts} prompts per request", "prompt")
    ids, texts = [], []
    vocab = tokenizer.vocab_size
    for p in value:
        if isinstance(p, str):
            ids.append(tokenizer.encode(p))
            texts.append(p)
        elif isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                         for t in p):
            if any(not 0 <= t < vocab for t in p):
                raise bad(f"prompt token ids must be in 0..{vocab - 1}", "prompt")
            ids.append(list(p))
            texts.append(tokenizer.decode(p))
        else:
            raise bad("prompt must be a string, a list of strings or token ids", "prompt")
    return ids, texts


def read_messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise bad("messages must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m:
            raise bad(f"{where} must be an object with role and content", where)
        role = m["role"]
        if role not in ("system", "user", "assistant", "developer"):
            raise bad(f"{where}.role must be system, user, assistant or developer",
                      f"{where}.role")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or \
                        not isinstance(part.get("text"), str):
                    raise bad(f"{where}.content: only text parts are supported",
                              f"{where}.content")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise bad(f"{where}.content must be a string", f"{where}.content")
        out.append({"role": "system" if role == "developer" else role, "content": content})
    return out
