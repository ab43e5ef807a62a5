"""Fuzz: hypothesis over request bodies (types, ranges, unknown fields, huge values, unicode,
templates) against a real server. Only 2xx or 4xx come back, never a 5xx; the server keeps
serving, nothing is left decoding, and its memory stays bounded."""

from __future__ import annotations

import json

import httpx
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dlm.serve import model_ids  # noqa: E402
from dlm.serve.app import create_app  # noqa: E402
from dlm.serve.protocol import Limits  # noqa: E402
from tests.serve.conftest import running, wait_ready  # noqa: E402

ROUTES = ["/v1/completions", "/v1/chat/completions", "/v1/dlm/denoise", "/tokenize",
          "/detokenize", "/v1/dlm/trace.html"]
FIELDS = ["model", "prompt", "messages", "suffix", "max_tokens", "max_completion_tokens",
          "temperature", "top_p", "top_k", "n", "stop", "seed", "stream", "stream_options",
          "echo", "logprobs", "top_logprobs", "best_of", "steps", "block_length", "remasking",
          "threshold", "factor", "cache", "cfg_scale", "remask_eta", "beam_width",
          "num_samples", "gen_length", "template", "diffusing", "mask_placeholder", "tokens",
          "transfer", "alg_temp", "min_length", "stop_at_eos", "confidence", "eps",
          "remask_t_on", "remask_t_off", "rank_t_samples", "trace", "no_such_field"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 2),
    st.text(max_size=40), st.sampled_from(["tiny", "low_confidence", "dual", "exact",
                                           "[MASK:3]", "a [MASK:<=4] b", "[MASK:0]", "\\[",
                                           "user", "\ud7ff\U0001f600", "\ud800"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system",
                                                                   "assistant", "robot"]),
                                           "content": st.one_of(st.text(max_size=30),
                                                                st.integers())}),
                    max_size=3)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["tiny", "tiny", "nope", 3])},
    optional={**{f: values for f in FIELDS if f not in ("model", "messages")},
              "messages": messages})


BASES = {"/v1/completions": {"model": "tiny", "prompt": "hi", "max_tokens": 8},
         "/v1/chat/completions": {"model": "tiny", "max_tokens": 8,
                                  "messages": [{"role": "user", "content": "hi"}]},
         "/v1/dlm/denoise": {"model": "tiny", "prompt": "hi", "max_tokens": 8},
         "/tokenize": {"model": "tiny", "prompt": "hi"},
         "/detokenize": {"model": "tiny", "tokens": [104, 105]},
         "/v1/dlm/trace.html": {"model": "tiny", "trace": {
             "kind": "mdlm", "mask_id": 256, "initial": [[65, 256]], "prompt_lengths": [1],
             "steps": [{"step": 0, "block": 0, "positions": [[1]], "tokens": [[66]],
                        "confidences": [[0.5]]}]}}}


@st.composite
def requests(draw):
    """A route and a body: wild, or a valid one with one field changed (most of those pass)."""
    route = draw(st.sampled_from(ROUTES))
    if draw(st.booleans()):
        return route, draw(bodies)
    body = dict(BASES[route])
    body[draw(st.sampled_from(FIELDS))] = draw(scalars)
    return route, body


@pytest.fixture(scope="module")
def fuzz_server(checkpoints):
    app = create_app(load=lambda: model_ids([str(checkpoints["tiny"])], ["tiny"],
                                            device="cpu"),
                     limits=Limits(max_tokens=32, max_steps=32, max_n=2, max_beam=2,
                                   max_body=64 << 10, timeout=20))
    with running(app) as base:
        wait_ready(base)
        yield base, app.state.engine


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_any_body_gets_a_2xx_or_4xx_and_the_server_keeps_serving(fuzz_server):
    base, engine = fuzz_server
    http = httpx.Client(base_url=base, timeout=60)
    statuses: dict[int, int] = {}

    @settings(max_examples=160, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(request=requests(), raw=st.sampled_from([False] * 5 + [True]))
    def one(request, raw):
        route, body = request
        content = json.dumps(body, default=str).encode()
        if raw and len(content) > 2:
            content = content[:-2]  # malformed JSON
        r = http.post(route, content=content, headers={"content-type": "application/json"})
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            text = r.text  # a stream: its failures are one error event, never a crash
            assert '"server_error"' not in text, text[-300:]
        assert r.status_code < 500, (route, body, r.text[:300])
        if r.status_code >= 400:
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    one()  # warm up the allocator before measuring
    before = rss_mb()
    one()
    after = rss_mb()
    assert after - before < 300, (before, after)
    assert set(statuses) <= {200, 400, 404, 422}, statuses
    assert statuses.get(200, 0) > 5 and statuses.get(400, 0) > 20, statuses  # both reached
    assert http.get("/health").status_code == 200
    ok = http.post("/v1/completions", json={"model": "tiny", "prompt": "ok", "max_tokens": 4})
    assert ok.status_code == 200
    assert not engine.running and not engine.queue
    assert not any(d.requests for d in engine.decoders.values())
