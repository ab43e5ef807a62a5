"""Infill, edit, loglikelihood and search through ``Model`` and the ``dlm`` command, on the tiny
trained checkpoints: filling a template never touches its literal text, an edit re-masks only
what it was asked to, and the trace replays to the returned canvas."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dlm
from dlm.cli import main
from dlm.errors import DLMError
from dlm.models.transformer import Attention
from dlm.sample.templates import escape
from dlm.sample.trace import Trace


@pytest.fixture(scope="module")
def mdlm(trained):
    return dlm.load(trained["mdlm"], device="cpu")


@pytest.fixture(scope="module")
def ar(trained):
    return dlm.load(trained["ar"], device="cpu")


# --- infill -----------------------------------------------------------------------------------
# A template as pieces: literal strings (any printable ASCII, brackets and backslashes made
# likely, "[MASK" too) and spans ("exact" | "upto", n).
_literal = st.lists(st.one_of(st.characters(min_codepoint=32, max_codepoint=126),
                              st.sampled_from(["[", "]", "\\", "[MASK", "[MASK]", "\\["])),
                    max_size=8).map(lambda parts: "".join(parts)[:10])
_span = st.one_of(st.just(("one", 1)),  # [MASK]
                  st.tuples(st.sampled_from(["exact", "upto"]), st.integers(1, 4)))


@st.composite
def templates(draw):
    spans = draw(st.lists(_span, min_size=1, max_size=3))
    literals = [draw(_literal) for _ in range(len(spans) + 1)]
    return literals, spans


def render(literals: list[str], spans: list[tuple[str, int]]) -> str:
    tag = {"one": "[MASK]", "exact": "[MASK:{}]", "upto": "[MASK:<={}]"}
    out = escape(literals[0])
    for (kind, n), lit in zip(spans, literals[1:]):
        out += tag[kind].format(n) + escape(lit)
    return out


@settings(max_examples=25, deadline=None)
@given(templates())
def test_infill_never_changes_fixed_text(mdlm, tmpl):
    literals, spans = tmpl
    tok = mdlm.tokenizer
    template = render(literals, spans)
    # expected canvas: each literal's bytes fixed, each span n free slots
    expected, free = [], []
    for lit, span in zip(literals, [*spans, None]):
        expected += [(t, True) for t in tok.encode(lit)]
        if span is not None:
            free.append((len(expected), len(expected) + span[1]))
            expected += [(None, False)] * span[1]
    assert len(expected) < 60

    out = mdlm.infill(template, steps=4, trace=True)
    canvas = out.tokens[0]
    assert len(canvas) == len(expected)
    for p, (t, fixed) in enumerate(expected):
        if fixed:
            assert canvas[p] == t, (template, p)
    assert len(out.fillings) == len(spans)
    drop = {mdlm.mask_id, mdlm.pad_id}
    for (kind, _), (a, b), filling in zip(spans, free, out.fillings):
        slots = canvas[a:b]
        assert not drop & set(slots)  # every slot got a real token
        if kind != "upto":
            assert filling == tok.decode([t for t in slots if t != mdlm.eos_id])
        else:
            cut = slots[:slots.index(mdlm.eos_id)] if mdlm.eos_id in slots else slots
            assert filling == tok.decode(cut)
    # the text is the literal pieces, untouched and in order, around the fillings
    text = literals[0] + "".join(f + lit for f, lit in zip(out.fillings, literals[1:]))
    assert out.text == text
    assert out.trace.state_at() == out.tokens
    assert out.trace.initial == [[mdlm.mask_id if t is None else t for t, _ in expected]]


def test_infill_batch_equals_one_at_a_time(mdlm):
    a, b = "ROMEO: [MASK:5] my lord", "O [MASK:<=3], [MASK:2]!\\[x\\]"
    both = mdlm.infill([a, b], steps=6, trace=True)
    assert isinstance(both.text, list) and len(both.fillings) == 2
    for i, t in enumerate((a, b)):
        alone = mdlm.infill(t, steps=6, trace=True)
        assert both.text[i] == alone.text
        assert both.fillings[i] == alone.fillings
        assert both.tokens[i] == alone.tokens[0]
        # the same commits with the same confidences: padding leaks nothing into a row
        mine = both.trace.row(i)
        assert mine.initial == alone.trace.initial
        assert [s.positions for s in mine.steps] == [s.positions for s in alone.trace.steps]
        for s, s1 in zip(mine.steps, alone.trace.steps):
            assert s.tokens == s1.tokens
            assert s.confidences[0] == pytest.approx(s1.confidences[0], abs=1e-5)
    assert both.text[0].startswith("ROMEO: ") and both.text[1].endswith("![x]")
    assert both.trace.state_at() == both.tokens


def test_infill_eos_ends_an_upto_span_and_is_banned_from_an_exact_one(mdlm):
    def force_eos_at(slot: int):
        def hook(step, logits, state):  # logits [R, L, V] of canvas slots [start, end)
            if state.start <= slot < state.end:
                logits[:, slot - state.start, mdlm.eos_id] = 1e4
            return logits
        return hook

    upto = mdlm.infill("ab [MASK:<=4] cd", steps=4, on_logits=force_eos_at(4))  # 2nd slot
    assert upto.tokens[0][4] == mdlm.eos_id
    assert upto.fillings == [mdlm.tokenizer.decode(upto.tokens[0][3:4])]
    assert upto.text == "ab " + upto.fillings[0] + " cd"
    exact = mdlm.infill("ab [MASK:4] cd", steps=4, on_logits=force_eos_at(4))
    span = exact.tokens[0][3:7]  # an exact span gets n real tokens, whatever the logits say
    assert mdlm.eos_id not in span and mdlm.mask_id not in span and mdlm.pad_id not in span
    assert exact.fillings == [mdlm.tokenizer.decode(span)]


def test_infill_errors(mdlm, ar):
    with pytest.raises(DLMError, match="diffusion"):
        ar.infill("a [MASK:2] b", steps=2)
    for bad in ("no span here", "a [MASK:0] b", "a [MASK:x] b", "a [MASK:3 b"):
        with pytest.raises(DLMError, match="MASK|template"):
            mdlm.infill(bad, steps=2)
    with pytest.raises(DLMError, match="context"):
        mdlm.infill("x [MASK:70]", steps=2)


# --- edit -------------------------------------------------------------------------------------
TEXT = "ROMEO: But soft, what light through yonder window"


_char_range = st.tuples(st.integers(0, len(TEXT) - 1), st.integers(1, 12)).map(
    lambda r: (r[0], min(len(TEXT), r[0] + r[1])))


@settings(max_examples=25, deadline=None)
@given(st.lists(_char_range, min_size=1, max_size=3))
def test_edit_remasks_exactly_the_spans(mdlm, spans):
    ids = mdlm.tokenizer.encode(TEXT)
    want = sorted({i for a, b in spans for i in range(a, b)})  # bytes == chars for ASCII
    out = mdlm.edit(TEXT, spans=spans, steps=4, trace=True)
    assert out.remasked == [want]
    final = out.tokens[0]
    assert len(final) == len(ids)
    assert [t for i, t in enumerate(final) if i not in want] == \
        [t for i, t in enumerate(ids) if i not in want]
    assert mdlm.mask_id not in final and mdlm.pad_id not in final
    assert set(out.changed[0]) <= set(want)
    assert out.changed == [[p for p in want if final[p] != ids[p]]]
    first = out.trace.steps[0]
    assert first.remasked == [want] and first.positions == [[]] and first.tokens == [[]]
    assert out.trace.initial == [ids]
    assert out.trace.state_at(1)[0] == [mdlm.mask_id if i in want else t
                                        for i, t in enumerate(ids)]
    assert out.trace.state_at() == out.tokens
    committed = sorted(p for s in out.trace.steps[1:] for p in s.positions[0])
    assert committed == want  # each re-masked slot is decoded once, nothing else is
    assert out.text == mdlm.tokenizer.decode(final)


def test_edit_spans_are_characters_not_bytes(mdlm):
    text = "café au lait"  # "é" is two bytes, two tokens of the byte tokenizer
    out = mdlm.edit(text, spans=[(3, 4), (8, 9)], steps=2)
    assert out.remasked == [[3, 4, 9]]
    final = out.tokens[0]
    assert final[:3] == list(b"caf") and final[5:9] == list(b" au ") and final[10:] == list(b"ait")


@pytest.mark.parametrize("k", [1, 3, 7])
def test_edit_budget_remasks_k_tokens(mdlm, k):
    ids = mdlm.tokenizer.encode(TEXT)
    out = mdlm.edit(TEXT, budget=k, steps=4, trace=True)
    chosen = out.remasked[0]
    assert len(chosen) == k == len(set(chosen))
    assert all(0 <= p < len(ids) for p in chosen)
    assert [t for i, t in enumerate(out.tokens[0]) if i not in chosen] == \
        [t for i, t in enumerate(ids) if i not in chosen]
    assert set(out.changed[0]) <= set(chosen)
    assert out.trace.steps[0].remasked == [chosen]
    assert out.trace.state_at() == out.tokens
    again = mdlm.edit(TEXT, budget=k, steps=4)
    assert again.remasked == out.remasked and again.text == out.text  # deterministic


def test_edit_budget_over_length_remasks_every_token(mdlm):
    ids = mdlm.tokenizer.encode("ROMEO: hi")
    out = mdlm.edit("ROMEO: hi", budget=50, steps=3)
    assert out.remasked == [list(range(len(ids)))]
    assert len(out.tokens[0]) == len(ids) and mdlm.mask_id not in out.tokens[0]


def test_edit_batch_of_texts(mdlm):
    texts = ["ROMEO: hello", "JULIET: good night, good night"]
    out = mdlm.edit(texts, budget=3, steps=3)
    assert isinstance(out.text, list) and len(out.text) == 2
    assert [len(r) for r in out.remasked] == [3, 3]
    for i, t in enumerate(texts):
        ids = mdlm.tokenizer.encode(t)
        assert len(out.tokens[i]) == len(ids)
        assert all(out.tokens[i][p] == ids[p] for p in range(len(ids))
                   if p not in out.remasked[i])


def test_edit_errors(mdlm, ar):
    cases = [
        (dict(text=""), "empty"),
        (dict(text="hello", spans=[(2, 9)]), "span"),
        (dict(text="hello", spans=[(-1, 2)]), "span"),
        (dict(text="hello", spans=[(3, 3)]), "span"),
        (dict(text=["hello", "world"], spans=[(0, 2)]), "one text"),
        (dict(text="hello", budget=0), "budget"),
    ]
    for kw, pattern in cases:
        with pytest.raises(DLMError, match=pattern):
            mdlm.edit(steps=2, **kw)
    with pytest.raises(DLMError, match="diffusion"):
        ar.edit("hello", budget=2)


# --- loglikelihood ----------------------------------------------------------------------------
CONTS = [" is", " my lord", "!"]


def test_loglikelihood_ar_is_exact(ar):
    got = ar.loglikelihood(["ROMEO"] * len(CONTS), CONTS)
    tok = ar.tokenizer
    for cont, lp in zip(CONTS, got):
        ctx, tgt = [ar.eos_id, *tok.encode("ROMEO")], tok.encode(cont)
        ids = torch.tensor([ctx + tgt])
        with torch.no_grad():
            logits = ar.network(ids, attn=Attention.causal())[0].double()
        logp = torch.log_softmax(logits, -1)
        manual = sum(float(logp[len(ctx) + j - 1, t]) for j, t in enumerate(tgt))
        assert lp == pytest.approx(manual, abs=1e-4)
        assert math.isfinite(lp) and lp < 0
    assert ar.loglikelihood("ROMEO", " is") == pytest.approx(got[:1], abs=1e-4)


def test_loglikelihood_mdlm_finite_and_seeded(mdlm):
    a = mdlm.loglikelihood(["ROMEO"] * len(CONTS), CONTS, t_samples=8, seed=3)
    assert len(a) == len(CONTS)
    assert all(math.isfinite(x) and x < 0 for x in a)
    assert mdlm.loglikelihood(["ROMEO"] * len(CONTS), CONTS, t_samples=8, seed=3) == a
    assert mdlm.loglikelihood("ROMEO", " my lord", t_samples=8, seed=4) != [a[1]]
    with pytest.raises(DLMError, match="as many"):
        mdlm.loglikelihood(["a", "b"], ["c"])
    with pytest.raises(DLMError, match="empty"):
        mdlm.loglikelihood("a", "")


# --- search -----------------------------------------------------------------------------------
def test_best_of_n_returns_one_score_per_prompt(mdlm):
    out = mdlm.generate("ROMEO", steps=4, gen_length=8, num_samples=3, temperature=1.0)
    assert isinstance(out.text, str) and out.scores is not None and len(out.scores) == 1
    assert math.isfinite(out.scores[0]) and len(out.tokens) == 1 and len(out.tokens[0]) == 8
    many = mdlm.generate(["ROMEO", "JULIET:"], steps=4, gen_length=8, num_samples=3,
                         temperature=1.0, trace=True)
    assert len(many.scores) == 2 and len(many.text) == 2
    assert many.trace.state_at() == [[*mdlm.tokenizer.encode(p), *t]
                                     for p, t in zip(["ROMEO", "JULIET:"], many.tokens)]


def test_beam_on_ar_scores_the_kept_tokens(ar):
    out = ar.generate("ROMEO", gen_length=6, beam_width=2, stop_at_eos=False)
    assert isinstance(out.text, str) and len(out.scores) == 1
    gen = out.tokens[0]
    assert len(gen) == 6 and ar.mask_id not in gen
    # the beam score is the summed log-probability of the kept tokens (MASK/PAD never allowed)
    assert out.scores[0] == pytest.approx(_ar_score(ar, "ROMEO", gen), abs=1e-4)


def _ar_score(model, prompt: str, gen: list[int]) -> float:
    """Summed log p(gen | prompt) under a causal pass, MASK and PAD excluded from the softmax."""
    ids = [model.eos_id, *model.tokenizer.encode(prompt), *gen]
    with torch.no_grad():
        logits = model.network(torch.tensor([ids]), attn=Attention.causal())[0].double()
    logits[:, [model.mask_id, model.pad_id]] = -math.inf
    logp = torch.log_softmax(logits, -1)
    start = len(ids) - len(gen)
    return sum(float(logp[start + j - 1, t]) for j, t in enumerate(gen))


def test_beam_on_mdlm_returns_text(mdlm):
    out = mdlm.generate("ROMEO", steps=4, gen_length=8, beam_width=2, trace=True)
    assert isinstance(out.text, str) and len(out.scores) == 1
    assert math.isfinite(out.scores[0]) and out.scores[0] <= 0
    assert mdlm.mask_id not in out.tokens[0] and len(out.tokens[0]) == 8
    assert out.trace.state_at()[0][len("ROMEO"):] == out.tokens[0]


# --- the dlm command --------------------------------------------------------------------------
def test_cli_infill_json(trained, capsys):
    assert main(["infill", str(trained["mdlm"]), "ab [MASK:3] cd", "--steps", "3",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["text"]) == 1 and len(out["fillings"]) == 1
    text, filling = out["text"][0], out["fillings"][0]
    assert text == "ab " + filling + " cd"


def test_cli_edit_json_and_html_trace(trained, capsys, tmp_path):
    page = tmp_path / "out.html"
    assert main(["edit", str(trained["mdlm"]), "some text here", "--span", "5:9", "--steps",
                 "2", "--json", "--trace", str(page)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["remasked"] == [[5, 6, 7, 8]]
    assert set(out["changed"][0]) <= {5, 6, 7, 8}
    assert out["text"][0].startswith("some ") and out["text"][0].endswith(" here")
    html = page.read_text(encoding="utf-8")
    assert "dlm-trace" in html and "http" not in html


def test_cli_json_trace_is_a_trace(trained, capsys, tmp_path):
    path = tmp_path / "t.json"
    assert main(["infill", str(trained["mdlm"]), "ab [MASK:3] cd", "--steps", "3",
                 "--trace", str(path)]) == 0
    capsys.readouterr()
    trace = Trace.from_dict(json.loads(path.read_text()))
    final = trace.state_at()[0]
    assert final[:3] == list(b"ab ") and final[-3:] == list(b" cd")
    assert 256 not in final


@pytest.mark.parametrize("args,pattern", [
    (["infill", "{run}", "ab [MASK:3] cd", "--trace", "{tmp}/out.txt"], ".json or .html"),
    (["edit", "{run}", "x", "--span", "3"], "START:END"),
    (["edit", "{run}", "hello", "--span", "2:99"], "span"),
    (["infill", "{run}", "no spans"], "no [MASK]"),
    (["sample", "{run}", "ROMEO", "--threshold", "1.5"], "threshold"),
])
def test_cli_mistakes_are_one_line(trained, capsys, tmp_path, args, pattern):
    argv = [a.format(run=trained["mdlm"], tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pattern in err[0], err
    assert not (tmp_path / "out.txt").exists()


def test_cli_infill_on_ar_is_an_error(trained, capsys):
    assert main(["infill", str(trained["ar"]), "ab [MASK:3] cd"]) == 2
    assert "diffusion" in capsys.readouterr().err


def test_cli_infill_animate_without_tty_prints_last_frame(trained, capsys):
    assert main(["infill", str(trained["mdlm"]), "ab [MASK:3] cd", "--steps", "3",
                 "--animate"]) == 0
    out = capsys.readouterr().out
    assert "final text" in out and "step 3/3" in out


def test_edit_never_writes_eos_into_the_text(mdlm):
    def prefer_eos(step, logits, state):
        logits[..., mdlm.eos_id] = 1e4
        return logits

    out = mdlm.edit("hello world", spans=[(6, 11)], steps=5, on_logits=prefer_eos)
    assert mdlm.eos_id not in out.tokens[0]
    assert out.text.startswith("hello ") and len(out.text.encode()) >= len("hello world")


def test_edit_refuses_the_mask_token_and_overlong_text(mdlm):
    with pytest.raises(DLMError, match="mask token"):
        mdlm.edit("A<|mask|>B", budget=1)
    with pytest.raises(DLMError, match="context"):
        mdlm.edit("x" * (mdlm.max_seq_len + 1), budget=1)
