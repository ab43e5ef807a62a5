"""The server through the official ``openai`` package (sync, async, streaming, extra_body,
max_retries=0) and raw HTTP, against a real uvicorn on 127.0.0.1: every route, every error
class, stream text == non-stream text, n, stop, seed, suffix, logprobs, cancellation on
disconnect and requests joining the running batch."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

from dlm.pipeline import load  # noqa: E402
from dlm.serve import model_ids  # noqa: E402
from dlm.serve.app import create_app  # noqa: E402
from dlm.serve.protocol import Limits  # noqa: E402
from tests.serve.conftest import running, wait_ready  # noqa: E402

MODELS = ["tiny", "tiny-ar", "tiny-bd3lm", "slow"]
GREEDY = dict(temperature=0, max_tokens=24)


def app_of(checkpoints, name: str, **kw):
    """A server app over one of the test checkpoints."""
    return create_app(load=lambda: model_ids([str(checkpoints[name])], [name], device="cpu"),
                      **kw)


def client(base, **kw):
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, **kw)


def sse_lines(base, path, body, headers=None) -> list[str]:
    with httpx.stream("POST", base + path, json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line for line in r.iter_lines() if line]


def test_health_ready_models_and_model_cards(server):
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.get(server + "/ready").json()["models"] == MODELS
    c = client(server)
    ids = [m.id for m in c.models.list()]
    assert ids == MODELS
    card = c.models.retrieve("tiny-bd3lm")
    assert card.owned_by == "dlm" and card.model_extra["dlm"]["kind"] == "bd3lm"
    assert card.model_extra["dlm"]["block_size"] == 8


@pytest.mark.parametrize("model", MODELS[:3])
def test_completion_matches_model_generate_and_the_stream_matches_it(server, checkpoints,
                                                                     model):
    c = client(server)
    out = c.completions.create(model=model, prompt="ROMEO:", **GREEDY,
                               extra_body={"steps": 12})
    direct = load(checkpoints[model], device="cpu").generate("ROMEO:", gen_length=24,
                                                             steps=12)
    assert out.choices[0].text == direct.text
    assert out.object == "text_completion" and out.model == model
    u = out.usage
    assert u.prompt_tokens == 6 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.model_extra["dlm"]["steps"] >= 1 and u.model_extra["dlm"]["nfe"] >= 1
    chunks = list(c.completions.create(model=model, prompt="ROMEO:", stream=True, **GREEDY,
                                       extra_body={"steps": 12}))
    assert "".join(ch.choices[0].text for ch in chunks) == direct.text
    assert chunks[-1].choices[0].finish_reason == out.choices[0].finish_reason
    assert all(ch.choices[0].finish_reason is None for ch in chunks[:-1])


def test_stream_is_data_only_sse_with_role_usage_and_done(server):
    lines = sse_lines(server, "/v1/chat/completions", {
        "model": "tiny", "messages": [{"role": "user", "content": "Speak."}], "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 16, "temperature": 0})
    assert all(line.startswith("data: ") for line in lines)  # no named events
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 0
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert len({ch["id"] for ch in chunks}) == 1


def test_chat_stream_equals_chat_at_temperature_zero(server):
    c = client(server)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    full = c.chat.completions.create(model="tiny", messages=msgs, max_completion_tokens=20,
                                     temperature=0)
    text = full.choices[0].message.content
    assert full.choices[0].message.role == "assistant"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="tiny", messages=msgs, max_completion_tokens=20, temperature=0, stream=True)
        if ch.choices)
    assert streamed == text
    # the prompt is the checkpoint's chat template (dlm's default here), as /tokenize says
    tok = httpx.post(server + "/tokenize", json={"model": "tiny", "messages": msgs}).json()
    assert full.usage.prompt_tokens == tok["count"]


def test_n_seed_and_sampling(server):
    c = client(server)
    kw = dict(model="tiny", prompt="To be", max_tokens=16, temperature=1.0)
    a = c.completions.create(n=2, seed=11, **kw)
    b = c.completions.create(n=2, seed=11, **kw)
    assert [ch.index for ch in a.choices] == [0, 1]
    assert [ch.text for ch in a.choices] == [ch.text for ch in b.choices]
    assert a.choices[0].text != a.choices[1].text
    other = c.completions.create(n=1, seed=12, **kw)
    assert other.choices[0].text != a.choices[0].text
    # two prompts x n=2: choices prompt-major
    two = c.completions.create(model="tiny", prompt=["To be", "O"], n=2, max_tokens=8,
                               temperature=0)
    assert len(two.choices) == 4
    assert two.choices[0].text == two.choices[1].text  # greedy copies agree


def test_a_seeded_request_is_the_same_alone_and_under_load(server):
    kw = dict(model="tiny", prompt="Fair", max_tokens=24, temperature=1.0, seed=5,
              extra_body={"steps": 12})
    alone = client(server).completions.create(**kw).choices[0].text

    async def loaded():
        c = openai.AsyncOpenAI(base_url=server + "/v1", api_key="x", max_retries=0)
        noise = [c.completions.create(model=m, prompt=p, max_tokens=n, temperature=1.0)
                 for m, p, n in (("tiny", "O Romeo", 40), ("tiny", "Hence", 12),
                                 ("tiny-ar", "Now", 20), ("tiny", "What light", 32))]
        out = await asyncio.gather(*noise[:2], c.completions.create(**kw), *noise[2:])
        return out[2].choices[0].text

    assert asyncio.run(loaded()) == alone


def test_stop_strings_cut_the_text_in_both_modes(server):
    c = client(server)
    base = c.completions.create(model="tiny-ar", prompt="ROMEO:", max_tokens=40,
                                temperature=0).choices[0].text
    stop = base[5:7]
    assert len(stop) == 2 and stop in base
    want = base[:base.index(stop)]
    out = c.completions.create(model="tiny-ar", prompt="ROMEO:", max_tokens=40,
                               temperature=0, stop=[stop, "\x00never"])
    assert out.choices[0].text == want and out.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="tiny-ar", prompt="ROMEO:", max_tokens=40, temperature=0, stop=[stop],
        stream=True))
    assert streamed == want


def test_suffix_is_fill_in_the_middle_and_echo(server, checkpoints):
    c = client(server)
    out = c.completions.create(model="tiny", prompt="The cat ", suffix=" on the mat.",
                               max_tokens=6, temperature=0, extra_body={"steps": 6})
    direct = load(checkpoints["tiny"], device="cpu").infill(
        "The cat [MASK:<=6] on the mat.", steps=6)
    assert out.choices[0].text == direct.fillings[0]
    echoed = c.completions.create(model="tiny", prompt="The cat ", suffix=" on the mat.",
                                  max_tokens=6, temperature=0, echo=True,
                                  extra_body={"steps": 6})
    assert echoed.choices[0].text == "The cat " + direct.fillings[0] + " on the mat."
    plain = c.completions.create(model="tiny", prompt="Hi", max_tokens=4, echo=True,
                                 temperature=0)
    assert plain.choices[0].text.startswith("Hi")
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="tiny", prompt="The cat ", suffix=" on the mat.", max_tokens=6, temperature=0,
        stream=True, extra_body={"steps": 6}))
    assert streamed == direct.fillings[0]


def test_logprobs(server):
    c = client(server)
    out = c.completions.create(model="tiny-ar", prompt="ROMEO:", max_tokens=8, temperature=0,
                               logprobs=3)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == out.usage.completion_tokens
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs)
    assert all(x is not None and x <= 0 for x in lp.token_logprobs)
    for x, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 3 and max(top.values()) == pytest.approx(x, abs=1e-5)
    assert lp.text_offset[0] == 0
    chat = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}],
                                     max_tokens=6, temperature=0, logprobs=True,
                                     top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert content and all(len(e.top_logprobs) <= 2 and e.logprob <= 0 for e in content)


def test_diffusing_stream_sends_the_whole_canvas_each_step(server):
    c = client(server)
    chunks = [ch for ch in c.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Go"}], max_tokens=16,
        temperature=0, stream=True, extra_body={"diffusing": True, "steps": 8,
                                                "mask_placeholder": "#"}) if ch.choices]
    steps = [ch for ch in chunks[1:-1]]
    infos = [ch.model_extra["dlm"] for ch in steps]
    assert [i["step"] for i in infos] == list(range(1, 9)) and infos[0]["steps"] == 8
    masked = [i["masked"] for i in infos]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    assert steps[0].choices[0].delta.content.count("#") == infos[0]["masked"]
    assert all(len(i["committed"]) == 2 for i in infos)  # 16 tokens over 8 steps
    final = c.chat.completions.create(model="tiny", messages=[{"role": "user",
                                                               "content": "Go"}],
                                      max_tokens=16, temperature=0, extra_body={"steps": 8})
    assert chunks[-1].choices[0].delta.content == final.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason is not None


def test_native_denoise_stream_replays_to_the_answer(server):
    lines = sse_lines(server, "/v1/dlm/denoise", {"model": "tiny", "prompt": "ROMEO:",
                                                  "max_tokens": 12, "steps": 6})
    events = [json.loads(line[6:]) for line in lines]
    start, steps, done = events[0], events[1:-1], events[-1]
    assert start["type"] == "start" and done["type"] == "done"
    row = list(start["rows"][0]["tokens"])
    for s in steps:
        assert s["type"] == "step"
        for e in s["events"]:
            for p, t in zip(e["positions"], e["tokens"]):
                row[p] = t
    lo, hi = start["rows"][0]["answer"]
    assert start["mask_id"] not in row[lo:hi]
    assert done["trace"]["steps"] and len(steps) == 6
    html = httpx.post(server + "/v1/dlm/trace.html", json={"model": "tiny",
                                                           "trace": done["trace"]})
    assert html.status_code == 200 and "<html" in html.text.lower()
    template = sse_lines(server, "/v1/dlm/denoise", {"model": "tiny",
                                                     "template": "a [MASK:3] b"})
    assert json.loads(template[-1][6:])["text"][0].startswith("a ")


def test_tokenize_detokenize_and_metrics(server):
    t = httpx.post(server + "/tokenize", json={"model": "tiny", "prompt": "héllo"}).json()
    assert t["count"] == len(t["tokens"]) == 6 and t["max_model_len"] == 96
    back = httpx.post(server + "/detokenize", json={"model": "tiny", "tokens": t["tokens"]})
    assert back.json() == {"prompt": "héllo"}
    text = httpx.get(server + "/metrics").text
    for name in ("dlm_queue_depth", "dlm_running_rows", "dlm_steps_total",
                 "dlm_tokens_committed_total", "dlm_step_seconds_bucket", "dlm_requests_total"):
        assert name in text


# --- errors ------------------------------------------------------------------------------------


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize("body,param", [
    ({"steps": 0}, "steps"), ({"remasking": "sideways"}, "remasking"),
    ({"temperature": "hot"}, "temperature"), ({"max_tokens": 10 ** 6}, "max_tokens"),
    ({"n": 0}, "n"), ({"no_such_knob": 1}, "no_such_knob"), ({"stop": [1]}, "stop"),
    ({"threshold": 0.5, "factor": 1.0}, "threshold"), ({"logprobs": 9}, "logprobs"),
    ({"block_length": 4}, "block_length"),  # bd3lm decodes its own blocks: a driver rule
])
def test_a_bad_field_is_a_400_naming_it(server, body, param):
    model = "tiny-bd3lm" if param == "block_length" else "tiny"
    with pytest.raises(openai.BadRequestError) as e:
        client(server).completions.create(model=model, prompt="x", max_tokens=8,
                                          extra_body=body)
    assert e.value.status_code == 400 and e.value.body["param"] == param
    assert e.value.body["type"] == "invalid_request_error"


def test_error_classes(server, checkpoints):
    c = client(server)
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model="gpt-9", prompt="x")
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    r = httpx.post(server + "/v1/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_json"
    r = httpx.post(server + "/v1/completions", content=b"[1, 2]")
    assert r.status_code == 422
    r = httpx.post(server + "/v1/completions", content=b"x" * (2 << 20))
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"
    r = httpx.get(server + "/v1/nothing-here")
    assert r.status_code == 404 and error_of(r)
    assert httpx.get(server + "/health").status_code == 200  # still serving


def test_auth_rate_limit_queue_full_and_timeout(checkpoints):
    app = app_of(checkpoints, "tiny", api_keys=["sk-right"], rate_limit=3)
    with running(app) as base:
        wait_ready(base)  # /ready stays open without a key
        with pytest.raises(openai.AuthenticationError) as e:
            openai.OpenAI(base_url=base + "/v1", api_key="sk-wrong",
                          max_retries=0).models.list()
        assert e.value.body["code"] == "invalid_api_key"
        assert httpx.get(base + "/v1/models").status_code == 401
        good = openai.OpenAI(base_url=base + "/v1", api_key="sk-right", max_retries=0)
        good.models.list()
        good.models.list()
        with pytest.raises(openai.RateLimitError) as e:
            for _ in range(3):
                good.models.list()
        assert int(e.value.response.headers["retry-after"]) >= 1
    app = app_of(checkpoints, "tiny", max_queue=0)
    with running(app) as base:
        wait_ready(base)
        with pytest.raises(openai.InternalServerError) as e:
            client(base).completions.create(model="tiny", prompt="x", max_tokens=4)
        assert e.value.status_code == 503 and e.value.body["code"] == "queue_full"
        assert int(e.value.response.headers["retry-after"]) >= 1
    app = app_of(checkpoints, "tiny", limits=Limits(timeout=0.05))
    with running(app) as base:
        wait_ready(base)
        with pytest.raises(openai.APIStatusError) as e:
            client(base).completions.create(model="tiny", prompt="x", max_tokens=64,
                                            extra_body={"steps": 64, "cfg_scale": 1.0})
        assert e.value.status_code == 504 and e.value.body["code"] == "timeout"


def test_ready_is_503_until_the_models_are_loaded(checkpoints):
    import threading

    gate = threading.Event()

    def slow():
        gate.wait(30)
        return model_ids([str(checkpoints["tiny"])], ["tiny"], device="cpu")

    with running(create_app(load=slow)) as base:
        r = httpx.get(base + "/ready")
        assert r.status_code == 503 and error_of(r)["code"] == "not_ready"
        assert httpx.get(base + "/health").status_code == 200
        assert httpx.get(base + "/v1/models").status_code == 503
        gate.set()
        wait_ready(base)
        assert httpx.get(base + "/v1/models").status_code == 200


# --- scheduling --------------------------------------------------------------------------------


def test_a_client_that_disconnects_is_cancelled_at_the_next_step(checkpoints):
    app = app_of(checkpoints, "slow")
    engine = app.state.engine
    with running(app) as base:
        wait_ready(base)
        body = {"model": "slow", "prompt": "x", "max_tokens": 400, "steps": 400,
                "stream": True, "diffusing": True}
        with httpx.stream("POST", base + "/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            assert engine.running  # decoding
        deadline = time.monotonic() + 10
        while engine.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not engine.running and not any(d.requests for d in engine.decoders.values())
        assert engine.metrics.steps._value.get() < 400  # stopped well before its 400 steps


def test_requests_join_the_running_batch_between_steps(checkpoints):
    app = app_of(checkpoints, "tiny")
    engine = app.state.engine
    with running(app) as base:
        wait_ready(base)

        async def many():
            c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
            return await asyncio.gather(*[c.completions.create(
                model="tiny", prompt=f"Row {i}", max_tokens=32, temperature=0,
                extra_body={"steps": 32, "cfg_scale": 1.0}) for i in range(6)])

        outs = asyncio.run(many())
        assert all(o.usage.model_extra["dlm"]["steps"] == 32 for o in outs)
        # 6 requests x 32 steps, but requests that overlap share a step (one round)
        assert engine.metrics.steps._value.get() < 6 * 32


def test_cli_refuses_a_public_bind_without_a_key_in_one_line(capsys, checkpoints):
    from dlm.cli import main

    assert main(["serve", str(checkpoints["tiny"]), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--api-key" in err[0]
    assert main(["serve", "no/such/dir"]) == 2
    assert "not found" in capsys.readouterr().err


def test_each_adapter_combination_is_a_model_id_that_decodes_with_those_weights(tmp_path):
    pytest.importorskip("peft")
    import dlm
    from tests.models.test_lora import random_pairs, write_adapter
    from tests.serve.conftest import write_checkpoint

    base = write_checkpoint(tmp_path / "base", d_model=32, n_heads=4)
    net = dlm.load(base, device="cpu").network
    write_adapter(tmp_path / "style", random_pairs(net, ["blocks.0.attn.q_proj"], 2, 1), r=2,
                  alpha=4)
    write_adapter(tmp_path / "facts", random_pairs(net, ["blocks.0.mlp.down_proj"], 2, 2),
                  r=2, alpha=4)
    served = model_ids([str(base)], ["m"], [(str(tmp_path / "style"), 0.5),
                                            (str(tmp_path / "facts"), 1.0)], device="cpu")
    assert list(served) == ["m", "m+style", "m+facts", "m+style+facts"]
    with running(create_app(served)) as url:
        wait_ready(url)
        c = client(url)
        got = {sid: c.completions.create(model=sid, prompt="ROMEO:", max_tokens=16,
                                         temperature=0, extra_body={"steps": 8}).choices[0].text
               for sid in served}
    for sid, weights in (("m", None), ("m+style", {"style": 0.5}),
                         ("m+facts", {"facts": 1.0}),
                         ("m+style+facts", {"style": 0.5, "facts": 1.0})):
        model = dlm.load(base, device="cpu", adapters=[(tmp_path / a, w) for a, w in
                                                       (weights or {}).items()])
        assert got[sid] == model.generate("ROMEO:", gen_length=16, steps=8).text, sid
    assert len(set(got.values())) == 4  # each combination decodes differently


def test_clients_that_leave_a_non_streaming_request_or_the_queue_are_cancelled(checkpoints):
    app = app_of(checkpoints, "slow", max_concurrent=1, max_queue=2)
    engine = app.state.engine
    body = {"model": "slow", "prompt": "x", "max_tokens": 400, "steps": 400}
    with running(app) as base:
        wait_ready(base)

        async def leave():
            async with httpx.AsyncClient(base_url=base) as http:
                tasks = [asyncio.create_task(http.post("/v1/completions", json=body))
                         for _ in range(3)]  # one decodes, two wait in the queue
                await asyncio.sleep(0.5)
                for t in tasks:
                    t.cancel()  # the clients hang up
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(leave())
        deadline = time.monotonic() + 10
        while (engine.running or engine.queue) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not engine.running and not engine.queue
        assert engine.metrics.steps._value.get() < 400  # the one decoding stopped early
        # the queue has room again: a live request is served, not refused
        ok = httpx.post(base + "/v1/completions", json={"model": "slow", "prompt": "y",
                                                        "max_tokens": 4}, timeout=30)
        assert ok.status_code == 200


def test_the_checkpoints_sampler_defaults_apply(tmp_path):
    import dlm
    from tests.serve.conftest import write_checkpoint

    path = write_checkpoint(tmp_path / "g")
    model = dlm.load(path, device="cpu")
    model.config["generation"] = {"steps": 4, "gen_length": 16, "block_length": 8}
    model.save(path)
    with running(create_app(model_ids([str(path)], ["g"], device="cpu"))) as url:
        wait_ready(url)
        out = client(url).completions.create(model="g", prompt="ROMEO:")
    want = dlm.load(path, device="cpu").generate("ROMEO:")
    assert out.choices[0].text == want.text
    assert out.usage.model_extra["dlm"]["steps"] == 4 and want.config.gen_length == 16


def test_without_stop_at_eos_the_eos_is_dropped_and_the_stream_agrees(tmp_path):
    import torch

    import dlm
    from tests.serve.conftest import write_checkpoint

    path = write_checkpoint(tmp_path / "eosy")
    model = dlm.load(path, device="cpu")
    with torch.no_grad():  # a model that writes EOS often
        model.network.lm_head.weight[model.eos_id] *= 6
    model.save(path)
    model = dlm.load(path, device="cpu")
    c_kw = dict(model="eosy", prompt="ROMEO:", max_tokens=24, temperature=1.0,
                extra_body={"steps": 12, "stop_at_eos": False})
    with running(create_app(model_ids([str(path)], ["eosy"], device="cpu"))) as url:
        wait_ready(url)
        c = client(url)
        for seed in range(4):
            whole = c.completions.create(seed=seed, **c_kw).choices[0]
            streamed = "".join(ch.choices[0].text for ch in c.completions.create(
                seed=seed, stream=True, **c_kw))
            direct = model.generate_ids([model.tokenizer.encode("ROMEO:")], gen_length=24,
                                        steps=12, temperature=1.0, stop_at_eos=False,
                                        seeds=[seed], seed=seed)
            assert whole.text == streamed == direct.text[0]
            assert model.eos_id in direct.tokens[0] or seed  # EOS is written at least once


def test_more_refusals_are_4xx_not_5xx(server):
    c = client(server)
    out = c.completions.create(model="tiny", prompt="ROMEO:", max_tokens=8, temperature=1.0,
                               logprobs=5, extra_body={"top_k": 3})  # filtered: -inf not listed
    assert all(1 <= len(top) <= 3 for top in out.choices[0].logprobs.top_logprobs)
    r = httpx.post(server + "/v1/completions",
                   content=b'{"model": "tiny", "prompt": "\\ud800"}')
    assert r.status_code == 400 and "surrogate" in error_of(r)["message"]
    r = httpx.post(server + "/v1/dlm/trace.html", json={"model": "tiny", "trace": {
        "kind": "mdlm", "mask_id": 256, "initial": "abc", "prompt_lengths": [0], "steps": []}})
    assert r.status_code == 400 and error_of(r)["param"] == "trace"
    for extra, param in (({"stream": True, "logprobs": 2}, "logprobs"),
                         ({"prompt": ["a"] * 9, "n": 8}, "n"),
                         ({"max_tokens": 8, "gen_length": 9}, "max_tokens")):
        r = httpx.post(server + "/v1/completions",
                       json={"model": "tiny", "prompt": "a", **extra})
        assert r.status_code == 400 and error_of(r)["param"] == param, (extra, r.text)
