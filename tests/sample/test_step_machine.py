"""Decoding as a resumable step machine (``sample.driver.Decoder``): per-row events in each
row's own coordinates, cancelling, rows joining between steps (continuous batching), and per-row
random streams: a seeded row writes the same tokens alone, in a batch, and whenever it joined,
for greedy and sampled decoding of every kind, with every cache."""

from __future__ import annotations

import pytest

from dlm.errors import DLMError
from dlm.models.transformer import Attention
from dlm.sample.config import SampleConfig
from dlm.sample.driver import Decoder, denoise, generate
from tests.conftest import tiny_net

MASK, EOS, PAD = 37, 38, 39
IDS = dict(mask_id=MASK, eos_id=EOS, pad_id=PAD)
TARGET = [5, 9, 2, 11]  # the row followed through every batch
OTHERS = [[7, 1], [3, 3, 8, 4, 4, 6, 1]]

# (name, kind, net kwargs, SampleConfig fields): every kind and cache mode
SETUPS = [
    ("mdlm", "mdlm", {}, dict(gen_length=12, block_length=4, steps=6)),
    ("mdlm-prefix", "mdlm", {}, dict(gen_length=12, block_length=4, cache="prefix")),
    ("mdlm-dual", "mdlm", {}, dict(gen_length=12, block_length=4, cache="dual")),
    ("mdlm-threshold", "mdlm", {}, dict(gen_length=12, threshold=0.3)),
    ("mdlm-remdm", "mdlm", {}, dict(gen_length=8, steps=8, remask_eta=0.5)),
    ("mdlm-cfg", "mdlm", {}, dict(gen_length=8, cfg_scale=1.0)),
    ("dream", "mdlm", {"shift_logits": True}, dict(gen_length=12, steps=6)),
    ("ar", "ar", {}, dict(gen_length=10)),
    ("bd3lm-exact", "bd3lm", {}, dict(gen_length=12)),
    ("bd3lm-none", "bd3lm", {}, dict(gen_length=12, cache="none")),
]
SAMPLING = {"greedy": dict(temperature=0.0),
            "sampled": dict(temperature=1.0, remasking="random", top_k=20)}


def network(kind: str, kw: dict):
    net = tiny_net(seed=5, **kw)
    if kind == "bd3lm":
        net.default_attention = Attention.block_causal(4)
    return net


def settle(kind, fields, sampling):
    fields = {**fields, **sampling}
    if kind == "ar":
        fields.pop("remasking", None)
    return SampleConfig(**fields)


def commits(trace):
    """Each step's positions, tokens and re-masks (scores may differ in the last float digit
    between a batch and a row alone); a step where a batched row waits for longer rows to
    finish their blocks (it commits nothing) is no step of its own."""
    return [(s.step, s.block, s.positions, s.tokens, s.remasked) for s in trace.steps
            if any(s.positions) or any(s.remasked)]


def canvas(prompt, n):
    return [*prompt, *[MASK] * n]


def bos(kind):
    return [EOS] if kind == "ar" else []


@pytest.mark.parametrize("sampling", list(SAMPLING))
@pytest.mark.parametrize("name,kind,kw,fields", SETUPS, ids=[s[0] for s in SETUPS])
def test_a_seeded_row_is_the_same_alone_batched_and_joining(name, kind, kw, fields, sampling):
    net = network(kind, kw)
    cfg = settle(kind, fields, SAMPLING[sampling])
    n = cfg.gen_length
    target = canvas(bos(kind) + TARGET, n)
    others = [canvas(bos(kind) + p, n) for p in OTHERS]
    lengths = lambda rows: [len(r) - n for r in rows]  # noqa: E731
    alone = denoise(net, [target], lengths([target]), cfg, kind=kind, seeds=[41], **IDS)
    # in a batch, first and last
    batched = denoise(net, [others[0], target, others[1]], lengths([others[0], target,
                      others[1]]), cfg, kind=kind, seeds=[1, 41, 2], **IDS)
    assert batched.canvases[1] == alone.canvases[0]
    assert commits(batched.trace.row(1)) == commits(alone.trace)  # step for step
    # joining a running decoder after two steps of another request (and then a third one)
    d = Decoder(net, kind=kind, **IDS)
    first = d.add(others, lengths(others), cfg, seeds=[1, 2])
    d.step()
    d.step()
    late = d.add([target], lengths([target]), cfg, seeds=[41])
    d.step()
    last = d.add([others[0]], lengths([others[0]]), cfg.replace(steps=None), seeds=[9])
    while not d.done:
        d.step()
    assert d.result(late).canvases[0] == alone.canvases[0]
    assert commits(d.result(late).trace) == commits(alone.trace)
    assert d.result(late).nfe == alone.nfe
    early = denoise(net, others, lengths(others), cfg, kind=kind, seeds=[1, 2], **IDS)
    assert d.result(first).canvases == early.canvases
    assert d.result(last).canvases[0][:len(others[0]) - n] == others[0][:len(others[0]) - n]


def test_sampled_rows_differ_from_each_other_but_not_from_themselves():
    """The streams are real: different seeds give different samples; the default spreads
    cfg.seed over the rows (a repeated prompt draws different samples)."""
    net = network("mdlm", {})
    cfg = SampleConfig(gen_length=12, steps=12, temperature=1.0)
    rows = [canvas(TARGET, 12)] * 4
    spread = denoise(net, rows, [4] * 4, cfg, kind="mdlm", **IDS)
    assert len({tuple(c) for c in spread.canvases}) > 1
    same = denoise(net, rows, [4] * 4, cfg, kind="mdlm", seeds=[3] * 4, **IDS)
    assert len({tuple(c) for c in same.canvases}) == 1
    one = denoise(net, rows[:1], [4], cfg.replace(seed=3), kind="mdlm", **IDS)
    assert same.canvases[0] == one.canvases[0]  # a seed is a row's first stream


def test_events_are_in_row_coordinates_and_replay_to_the_result():
    net = network("mdlm", {})
    cfg = SampleConfig(gen_length=8, block_length=4, steps=4)
    rows = [canvas([5, 9], 8), canvas([7, 1, 3, 3, 8], 8)]  # ragged: row 0 is left-padded
    d = Decoder(net, kind="mdlm", **IDS)
    req = d.add(rows, [2, 5], cfg)
    replay = [list(r) for r in rows]
    masks = [8, 8]
    seen = []
    while not d.done:
        events = d.step()
        assert [e.row for e in events] == [0, 1] and all(e.request == req for e in events)
        for e in events:
            assert all(len(rows[e.row]) - 8 <= p < len(rows[e.row]) for p in e.positions)
            for p, t in zip(e.positions, e.tokens):
                assert replay[e.row][p] == MASK
                replay[e.row][p] = t
            masks[e.row] -= len(e.positions)
            assert e.masks_left == masks[e.row] and not e.remasked
        seen.append(events)
    assert all(e.done for e in seen[-1]) and not any(e.done for s in seen[:-1] for e in s)
    assert [e.block for e in seen[0]] == [0, 0] and [e.block for e in seen[-1]] == [1, 1]
    assert replay == d.result(req).canvases == [list(map(int, r)) for r in replay]


def test_a_cancelled_request_stops_and_the_others_go_on_as_alone():
    net = network("mdlm", {})
    cfg = SampleConfig(gen_length=12, steps=6, temperature=1.0)
    target, other = canvas(TARGET, 12), canvas(OTHERS[1], 12)
    alone = denoise(net, [target], [4], cfg, kind="mdlm", seeds=[41], **IDS)
    d = Decoder(net, kind="mdlm", **IDS)
    a = d.add([other], [7], cfg, seeds=[5])
    b = d.add([target], [4], cfg, seeds=[41])
    d.step()
    d.cancel(a)
    assert d.requests[a].done and MASK in d.result(a).canvases[0]
    events = []
    while not d.done:
        events += d.step()
    assert {e.request for e in events} == {b}
    assert d.result(b).canvases == alone.canvases


def test_cancelling_a_best_of_n_or_cached_request_costs_no_network_call():
    """A cancelled best-of-N request returns one row per input unranked (ranking a half-masked
    sample would spend network calls on a score no one reads); a cached one frees its cache."""
    for kind, kw in (("mdlm", dict(num_samples=3, temperature=1.0)),
                     ("bd3lm", dict(cache="exact"))):
        net = network(kind, {})
        calls = []
        net.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        d = Decoder(net, kind=kind, **IDS)
        a = d.add([canvas(TARGET, 12), canvas(OTHERS[1], 12)], [4, 7],
                  SampleConfig(gen_length=12, steps=6, **kw), seeds=[1, 2])
        d.step()
        before = len(calls)
        d.cancel(a)
        assert len(calls) == before, kind
        g = d.result(a)
        assert len(g.canvases) == 2 and g.scores is None and d.requests[a].forward.cache is None
        assert all(MASK in c for c in g.canvases)
        assert d.step() == [] and d.done


def test_cache_free_requests_share_one_network_call_per_step():
    """Requests at different blocks and steps, decoding without a cache, run in one network
    call per step; requests with a cache (prefix / dual / exact) run their own."""
    net = network("mdlm", {})
    calls = []
    real = net.forward

    def counted(ids, *args, **kw):
        calls.append(ids.shape[0])
        return real(ids, *args, **kw)

    net.forward = counted
    cfg = SampleConfig(gen_length=8, block_length=4, steps=8)
    d = Decoder(net, kind="mdlm", **IDS)
    d.add([canvas(TARGET, 8)], [4], cfg)
    d.step()
    d.add([canvas(OTHERS[0], 8), canvas(OTHERS[1], 8)], [2, 7], cfg.replace(cfg_scale=0.5))
    calls.clear()
    d.step()
    assert calls == [1 + 2 * 2]  # one call: the first request's row, the second's two (CFG)
    d.add([canvas(OTHERS[0], 8)], [2], cfg.replace(cache="dual"))
    calls.clear()
    d.step()
    assert sorted(calls) == [1, 5] and d.forwards == 4  # its own call
    while not d.done:
        d.step()


def test_step_machine_errors():
    net = network("mdlm", {})
    d = Decoder(net, kind="mdlm", **IDS)
    req = d.add([canvas(TARGET, 4)], [4], SampleConfig(steps=4))
    with pytest.raises(DLMError, match="still decoding"):
        d.result(req)
    with pytest.raises(DLMError, match="one seed per canvas"):
        d.add([canvas(TARGET, 4)], [4], SampleConfig(), seeds=[1, 2])
    while not d.done:
        d.step()
    want = generate(net, [TARGET], SampleConfig(gen_length=4, steps=4), kind="mdlm", **IDS)
    assert d.result(req).canvases[0][4:] == want.tokens[0]


def test_the_state_a_hook_sees_gives_each_row_in_its_own_coordinates():
    net = network("mdlm", {})
    rows = [canvas([5, 9], 4), canvas([7, 1, 3, 3, 8], 4)]
    seen = []
    denoise(net, rows, [2, 5], SampleConfig(steps=2), kind="mdlm",
            on_tokens=lambda step, state: seen.append([state.row(0), state.row(1)]), **IDS)
    assert [len(r) for r in seen[0]] == [6, 9]
    assert seen[0][0][:2] == [5, 9] and seen[0][1][:5] == [7, 1, 3, 3, 8]
    assert MASK in seen[0][0] and MASK not in seen[-1][0] + seen[-1][1]
