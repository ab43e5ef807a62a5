"""The HTTP server: OpenAI's routes, dlm's own, the playground (docs/serving.md). FastAPI is
the ``serve`` extra: import this module only to serve.

    app = create_app({"tiny": Served("tiny", dlm.load("runs/tiny"))}, api_keys=["sk-..."])
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every answer that is not a success is OpenAI's error shape. Streams are Server-Sent Events
with ``data:`` lines only (what OpenAI's clients parse), ``: ping`` comments while idle, and
``data: [DONE]`` at the end.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import secrets
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import DLMError
from .engine import Engine, QueueFull, Served
from .metrics import Metrics
from .protocol import (
    CHAT,
    COMPLETION,
    DENOISE,
    APIError,
    Limits,
    from_dlm,
    read_common,
    read_messages,
    read_prompt,
)
from .run import Run

OPEN_PATHS = {"/health", "/ready", "/", "/favicon.ico"}


class RateLimiter:
    """A token bucket per API key (or per client address without keys): ``per_minute``
    requests, refilled continuously."""

    def __init__(self, per_minute: float | None):
        self.rate = per_minute
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, who: str) -> float:
        """0 if allowed, else seconds until a request would be."""
        if not self.rate:
            return 0.0
        now = time.monotonic()
        tokens, then = self.buckets.get(who, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate / 60.0)
        if tokens < 1:
            self.buckets[who] = (tokens, now)
            return (1 - tokens) * 60.0 / self.rate
        self.buckets[who] = (tokens - 1, now)
        if len(self.buckets) > 10_000:  # forget the oldest callers
            for k in sorted(self.buckets, key=lambda k: self.buckets[k][1])[:5000]:
                del self.buckets[k]
        return 0.0


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is a 413 before any handler reads it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = APIError(413, f"the request body is over {self.limit} bytes",
                           code="request_too_large")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_error(send, too_big)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooBig
            return message

        try:
            await self.app(scope, counted, send)
        except _TooBig:
            await _send_error(send, too_big)


class Gate:
    """ASGI middleware (not Starlette's BaseHTTPMiddleware, under which a handler never sees
    its client disconnect): the API key, the rate limit, and the count of answers per route
    and status."""

    def __init__(self, app, keys: list[str], limiter: RateLimiter, metrics: Metrics, routes):
        self.app, self.keys, self.limiter, self.metrics, self.routes = \
            app, keys, limiter, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        status = {"code": 500}

        async def counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refused = None
            if path not in OPEN_PATHS and not path.startswith("/static/"):
                refused = self.check(scope)
            if refused is not None:
                await _send_error(counted, refused)
            else:
                await self.app(scope, receive, counted)
        finally:
            self.metrics.requests.labels(path if path in self.routes() else "other",
                                         str(status["code"])).inc()

    def check(self, scope) -> APIError | None:
        client = scope.get("client")
        who = client[0] if client else "?"
        if self.keys:
            headers = dict(scope.get("headers") or [])
            header = headers.get(b"authorization", b"").decode("latin-1")
            given = header[7:] if header.lower().startswith("bearer ") else ""
            match = [hmac.compare_digest(given.encode(), k.encode()) for k in self.keys]
            if not any(match):
                return APIError(401, "missing or wrong API key: send Authorization: Bearer KEY",
                                code="invalid_api_key")
            who = "key:" + str(match.index(True))
        wait = self.limiter.take(who)
        if wait:
            return APIError(429, "rate limit reached; retry later", code="rate_limit_exceeded",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return None


class JobStream(StreamingResponse):
    """A stream whose job is cancelled however the response ends (done, error, or the client
    gone: Starlette then cancels the response task, which may never resume the generator)."""

    def __init__(self, content, job, **kw):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache"}, **kw)
        self.job = job

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


class _TooBig(Exception):
    pass


async def _send_error(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    extra = [(k.lower().encode(), str(v).encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


def sse(data) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def create_app(served: dict[str, Served] | None = None, *, load=None,
               api_keys: list[str] | None = None, limits: Limits | None = None,
               rate_limit: float | None = None, max_concurrent: int = 16, max_queue: int = 64,
               ping_seconds: float = 10.0):
    """The FastAPI app over these model ids, or over what ``load()`` returns (called in a
    thread once the server is up: ``/ready`` is a 503 until it has). The worker starts with
    the models."""
    limits = limits or Limits()
    keys = [k for k in api_keys or [] if k]
    served = {} if served is None else served
    engine = Engine(served, max_concurrent=max_concurrent, max_queue=max_queue,
                    metrics=Metrics())
    metrics = engine.metrics
    limiter = RateLimiter(rate_limit)

    async def loading():
        try:
            if load is not None:
                served.update(await asyncio.to_thread(load))
            engine.start()
        except Exception as e:  # the server stays up and says why on /ready
            engine.failed = f"{type(e).__name__}: {e}"

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(loading())
        yield
        task.cancel()
        engine.stop()

    app = FastAPI(title="dlm", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, limit=limits.max_body)
    app.state.engine = engine

    def error_response(e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return error_response(e)

    @app.exception_handler(HTTPException)
    async def _http_error(request, e: HTTPException):
        return error_response(APIError(e.status_code, str(e.detail),
                                       code="not_found" if e.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):
        return error_response(APIError(500, f"internal error: {type(e).__name__}"))

    app.add_middleware(Gate, keys=keys, limiter=limiter, metrics=metrics,
                       routes=lambda: ROUTES)

    async def body_of(request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise APIError(422, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(422, "the body must be a JSON object", code="invalid_json")
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise APIError(400, "the body holds a lone UTF-16 surrogate (\\ud800-\\udfff): "
                           "not text") from None
        return body

    def model_of(name) -> Served:
        if not engine.ready:
            raise APIError(503, "the models are still loading", code="not_ready",
                           headers={"Retry-After": "1"})
        if not isinstance(name, str):
            raise APIError(400, "model is required (see /v1/models)", "model")
        if name not in served:
            raise APIError(404, f"the model {name!r} does not exist on this server (see "
                           "/v1/models)", "model", "model_not_found")
        return served[name]

    # --- plain routes ---------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if engine.failed:
            raise APIError(503, f"the models failed to load: {engine.failed}",
                           code="load_failed")
        if not engine.ready:
            raise APIError(503, "the models are still loading", code="not_ready",
                           headers={"Retry-After": "1"})
        return {"status": "ready", "models": list(served)}

    @app.get("/v1/models")
    async def models():
        if not engine.ready:
            raise APIError(503, "the models are still loading", code="not_ready",
                           headers={"Retry-After": "1"})
        return {"object": "list", "data": [_model_card(s) for s in served.values()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        return _model_card(model_of(name))

    @app.get("/metrics")
    async def prometheus():
        data, kind = metrics.render()
        return Response(data, media_type=kind)

    @app.post("/tokenize")
    async def tokenize(request: Request):
        body = await body_of(request)
        s = model_of(body.get("model"))
        unknown = sorted(set(body) - {"model", "prompt", "messages", "add_special_tokens"})
        if unknown:
            raise APIError(400, f"unknown field {unknown[0]!r}", unknown[0])
        if "messages" in body:
            text = _chat_text(s, body["messages"])
        elif isinstance(body.get("prompt"), str):
            text = body["prompt"]
        else:
            raise APIError(400, "give prompt (a string) or messages", "prompt")
        tokens = s.model.tokenizer.encode(text)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": s.model.max_seq_len}

    @app.post("/detokenize")
    async def detokenize(request: Request):
        body = await body_of(request)
        s = model_of(body.get("model"))
        tokens = body.get("tokens")
        vocab = s.model.tokenizer.vocab_size
        if not isinstance(tokens, list) or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab
                for t in tokens):
            raise APIError(400, f"tokens must be a list of ids in 0..{vocab - 1}", "tokens")
        return {"prompt": s.model.tokenizer.decode(tokens)}

    # --- generation -----------------------------------------------------------------------------
    def prepare(body: dict, allowed: set[str], chat: bool) -> tuple[Served, object]:
        ask, _ = read_common(body, allowed, limits)
        s = model_of(ask.model)
        tok = s.model.tokenizer
        if chat:
            text = _chat_text(s, body.get("messages"))
            ask.prompts, ask.texts = [tok.encode(text)], [text]
            if body.get("logprobs"):
                top = body.get("top_logprobs") or 0
                if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
                    raise APIError(400, "top_logprobs must be an integer in 0..20",
                                   "top_logprobs")
                ask.logprobs = top
            elif body.get("top_logprobs"):
                raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs")
            for name in ("tools", "tool_choice", "response_format"):
                if body.get(name) not in (None, [], "none", {"type": "text"}):
                    raise APIError(400, f"{name} is not supported", name)
        else:
            if "template" in body:
                t = body["template"]
                if not isinstance(t, str):
                    raise APIError(400, "template must be a string", "template")
                ask.template, ask.prompts, ask.texts = t, [[]], [t]
            else:
                if "prompt" not in body:
                    raise APIError(400, "prompt is required", "prompt")
                ask.prompts, ask.texts = read_prompt(body["prompt"], tok, limits)
            if body.get("suffix") is not None:
                if not isinstance(body["suffix"], str):
                    raise APIError(400, "suffix must be a string", "suffix")
                ask.suffix = body["suffix"]
            lp = body.get("logprobs")
            if lp is not None and lp is not False:
                if not isinstance(lp, int) or isinstance(lp, bool) or not 0 <= lp <= 5:
                    raise APIError(400, "logprobs must be an integer in 0..5", "logprobs")
                ask.logprobs = int(lp)
        if ask.logprobs is not None and ask.stream:
            raise APIError(400, "logprobs are given with the whole answer: ask without stream",
                           "logprobs")
        rows = len(ask.prompts) * ask.n * max(ask.cfg.num_samples, ask.cfg.beam_width)
        if rows > limits.max_rows:
            raise APIError(400, f"this request decodes {rows} rows (prompts x n x best_of / "
                           f"beam_width); this server takes at most {limits.max_rows}", "n")
        return s, ask

    def watch(run: Run, request: Request) -> asyncio.Task:
        """Cancel the job when the client disconnects (the body is read: what ``receive``
        gives next is the disconnect)."""

        async def wait():
            while (await request.receive())["type"] != "http.disconnect":
                pass
            run.job.cancel()

        return asyncio.create_task(wait())

    async def start(run: Run, request: Request) -> list[int] | None:
        """Queue the job and wait until the worker admits it (its errors are then 400s)."""
        try:
            engine.submit(run.job)
        except QueueFull:
            raise APIError(503, "the server is busy: the queue is full", code="queue_full",
                           headers={"Retry-After": str(engine.retry_after())}) from None
        watcher = watch(run, request)
        try:
            kind, value = await run.job.next()
        finally:
            watcher.cancel()
        if kind == "started":
            return value
        raise _failure(kind, value)

    async def finish(run: Run, request: Request):
        """Follow a non-streaming job to its end; the result."""
        watcher = watch(run, request)
        try:
            while True:
                kind, value = await run.job.next()
                if kind == "step":
                    run.follow(value)
                    for i in range(len(run.rows)):
                        run.delta(i)  # keeps "decided" current: a decided job stops early
                elif kind == "done":
                    return value
                else:
                    raise _failure(kind, value)
        finally:
            watcher.cancel()

    async def complete(request: Request, allowed: set[str], chat: bool, choice) -> object:
        """One OpenAI completion route: the stream, or the whole answer with ``choice(s, ask,
        i, answer)`` per choice."""
        body = await body_of(request)
        s, ask = prepare(body, allowed, chat)
        run = Run(s, ask, asyncio.get_running_loop(), limits.timeout)
        run.plan = await start(run, request)
        if ask.stream:
            return _stream(run, "chat.completion.chunk" if chat else "text_completion",
                           ping_seconds)
        gen = await finish(run, request)
        answers = run.answers(gen)
        return {"id": ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12),
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": s.id,
                "choices": [choice(s, ask, i, a) for i, a in enumerate(answers)],
                "usage": run.usage(gen, answers)}

    def completion_choice(s: Served, ask, i: int, a) -> dict:
        text = (ask.texts[i // ask.n] if ask.echo else "") + a.text
        if ask.echo and ask.suffix is not None:
            text += ask.suffix
        return {"index": i, "text": text, "finish_reason": a.finish_reason,
                "logprobs": _completion_logprobs(s, a, ask.logprobs)}

    def chat_choice(s: Served, ask, i: int, a) -> dict:
        return {"index": i, "message": {"role": "assistant", "content": a.text},
                "finish_reason": a.finish_reason, "logprobs": _chat_logprobs(s, a, ask.logprobs)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, COMPLETION, False, completion_choice)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, CHAT, True, chat_choice)

    @app.post("/v1/dlm/denoise")
    async def denoise(request: Request):
        body = await body_of(request)
        body.setdefault("stream", True)
        s, ask = prepare(body, DENOISE, chat="messages" in body)
        ask.record_trace = body.get("record_trace", True) is not False
        run = Run(s, ask, asyncio.get_running_loop(), limits.timeout, stop_early=False)
        run.plan = await start(run, request)
        return JobStream(_denoise_events(run, ping_seconds), run.job)

    @app.post("/v1/dlm/trace.html")
    async def trace_html(request: Request):
        from ..sample.export import trace_to_html
        from ..sample.trace import Trace

        body = await body_of(request)
        s = model_of(body.get("model"))
        try:
            return HTMLResponse(trace_to_html(Trace.from_dict(body["trace"]),
                                              s.model.tokenizer))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
            raise APIError(400, "trace must be a trace object (the denoise route's)",
                           "trace") from None

    # --- the playground -------------------------------------------------------------------------
    static = _static_dir()

    @app.get("/")
    async def playground():
        index = static / "index.html"
        if not index.is_file():
            raise APIError(404, "the playground is not installed")
        return HTMLResponse(index.read_text())

    if static.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=static), name="static")

    ROUTES = {r.path for r in app.routes}
    return app


def _static_dir() -> Path:
    return Path(str(resources.files("dlm.serve") / "static"))


def _failure(kind: str, value) -> APIError:
    if kind == "error":
        if isinstance(value, DLMError):
            return from_dlm(value)
        return APIError(500, f"decoding failed: {type(value).__name__}: {value}")
    if kind == "timeout":
        return APIError(504, "the request ran past the server's time limit", code="timeout")
    return APIError(499, "the request was cancelled")


def _chat_text(s: Served, messages) -> str:
    try:
        return s.model.chat_prompt(read_messages(messages))
    except DLMError as e:
        raise APIError(400, str(e), "messages") from None


def _model_card(s: Served) -> dict:
    m = s.model
    return {"id": s.id, "object": "model", "created": s.created, "owned_by": "dlm",
            "dlm": {"kind": m.kind, "parameters": m.network.num_params(),
                    "context": m.max_seq_len, "block_size": m.block_size,
                    "adapters": dict(s.weights or {}),
                    "defaults": {k: v for k, v in m.sample_config().to_dict().items()
                                 if v is not None}}}


def _token_text(s: Served, t: int) -> str:
    return s.model.tokenizer.decode([t])


def _completion_logprobs(s: Served, a, k: int | None):
    if k is None:
        return None
    texts = [_token_text(s, t) for t in a.tokens]
    offsets, at = [], 0
    for t in texts:
        offsets.append(at)
        at += len(t)
    def top_of(pairs) -> dict:  # two ids may decode to one string: the likelier one stays
        out: dict[str, float] = {}
        for t, lp in pairs[:k]:
            out.setdefault(_token_text(s, t), lp)
        return out

    return {"tokens": texts, "token_logprobs": a.logprobs, "text_offset": offsets,
            "top_logprobs": [top_of(top) for top in a.top] if k else None}


def _chat_logprobs(s: Served, a, k: int | None):
    if k is None:
        return None

    def entry(t: int, lp):
        text = _token_text(s, t)
        return {"token": text, "logprob": lp, "bytes": list(text.encode())}

    return {"content": [{**entry(t, lp), "top_logprobs": [entry(u, v) for u, v in top[:k]]}
                        for t, lp, top in zip(a.tokens, a.logprobs, a.top or
                                              [[]] * len(a.tokens))]}


def _stream(run: Run, obj: str, ping: float):
    return JobStream(_openai_events(run, obj, ping), run.job)


async def _openai_events(run: Run, obj: str, ping: float):
    """OpenAI's chunks: a first delta with the role (chat), the text as it settles (or, with
    ``diffusing``, the whole canvas each step with a ``dlm`` object), a last chunk per answer
    with its finish reason, the usage chunk when asked, then [DONE]."""
    s, ask = run.served, run.ask
    chat = obj.startswith("chat")
    cid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
    created = int(time.time())
    n = len(run.rows)

    def chunk(i: int, text: str | None, finish=None, role=False, dlm=None) -> dict:
        if chat:
            delta = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": i, "text": text or "", "finish_reason": finish,
                      "logprobs": None}
        out = {"id": cid, "object": obj, "created": created, "model": s.id,
               "choices": [choice]}
        if dlm is not None:
            out["dlm"] = dlm
        if ask.include_usage:
            out["usage"] = None
        return out

    try:
        if chat:
            for i in range(n):
                yield sse(chunk(i, "", role=True))
        elif ask.echo:
            for i in range(n):
                yield sse(chunk(i, ask.texts[i // ask.n]))
        async for kind, value in _messages(run.job, ping):
            if kind == "ping":
                yield ": ping\n\n"
                continue
            if kind == "step":
                for i in sorted(set(run.follow(value))):
                    if ask.diffusing:
                        yield sse(chunk(i, run.canvas(i), dlm=_step_info(run, i, value)))
                    else:
                        delta = run.delta(i)
                        if delta:
                            yield sse(chunk(i, delta))
                continue
            if kind != "done":
                e = _failure(kind, value)
                yield sse(e.body())
                return
            answers = run.answers(value)
            for i, a in enumerate(answers):
                if ask.diffusing:
                    text = a.text
                else:
                    text = run.streams[i].close(a.text)
                if not chat and ask.echo and ask.suffix is not None:
                    text += ask.suffix
                yield sse(chunk(i, text, finish=a.finish_reason,
                                dlm={"done": True, "progress": 1.0} if ask.diffusing
                                else None))
            if ask.include_usage:
                yield sse({"id": cid, "object": obj, "created": created, "model": s.id,
                           "choices": [], "usage": run.usage(value, answers)})
            yield sse("[DONE]")
            return
    finally:
        run.job.cancel()  # the client left mid-stream (or we are done: then a no-op)


async def _messages(job, ping: float):
    """A job's messages up to its last (anything but a step), and ("ping", None) after
    ``ping`` seconds without one (the stream then sends a keep-alive comment)."""
    while True:
        msg = await job.next(timeout=ping)
        yield msg or ("ping", None)
        if msg is not None and msg[0] != "step":
            return


def _step_info(run: Run, i: int, events) -> dict:
    """The ``dlm`` object of a diffusing chunk: where answer i's decoding is."""
    e = next(e for e in events if e.row == i * run.expand)
    lo = run.rows[i].lo
    masked = run.rows[i].masked()
    total = run.rows[i].hi - lo
    return {"step": e.step + 1, "steps": run.plan[i * run.expand] if run.plan else None,
            "block": e.block, "masked": masked,
            "committed": [p - lo for p in e.positions], "remasked": [p - lo for p in e.remasked],
            "progress": round(1 - masked / max(1, total), 4)}


async def _denoise_events(run: Run, ping: float):
    """dlm's native stream: the engine's step events, with each token's text, for UIs."""
    s, plan = run.served, run.plan
    tok = s.model.tokenizer
    texts: dict[int, str] = {}

    def text_of(ids) -> list[str]:
        out = []
        for t in ids:
            if t not in texts:
                texts[t] = tok.token_text(t)
            out.append(texts[t])
        return out

    m = s.model
    try:
        yield sse({"type": "start", "model": s.id, "mask_id": m.mask_id, "eos_id": m.eos_id,
                   "rows": [{"tokens": r.tokens, "texts": text_of(r.tokens),
                             "answer": [r.lo, r.hi], "steps": plan[i * run.expand]
                             if plan else None}
                            for i, r in enumerate(run.rows)]})
        async for kind, value in _messages(run.job, ping):
            if kind == "ping":
                yield ": ping\n\n"
                continue
            if kind == "step":
                run.follow(value)
                yield sse({"type": "step", "events": [
                    {"row": e.row, "step": e.step, "block": e.block, "positions": e.positions,
                     "tokens": e.tokens, "texts": text_of(e.tokens),
                     "confidences": e.confidences, "remasked": e.remasked,
                     "masks_left": e.masks_left, "settled": e.settled, "done": e.done}
                    for e in value]})
                continue
            if kind != "done":
                yield sse({"type": "error", **_failure(kind, value).body()})
                return
            answers = run.answers(value)
            trace = value.trace
            yield sse({"type": "done", "text": [a.text for a in answers],
                       "finish_reason": [a.finish_reason for a in answers],
                       "usage": run.usage(value, answers),
                       "trace": trace.to_dict() if trace is not None else None})
            return
    finally:
        run.job.cancel()
