"""Infill templates: parsing and escapes, readable errors, canvas slots, and that filling a
template never alters its literal text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlm.data.tokenizer import byte_tokenizer, train_bpe
from dlm.errors import DLMError
from dlm.sample.templates import (
    MAX_SPAN_LENGTH,
    Span,
    build_canvas,
    escape,
    parse_template,
    read_fillings,
)

TOK = byte_tokenizer()
MASK, EOS, PAD = TOK.mask_id, TOK.eos_id, TOK.pad_id


# --- parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("template, parts", [
    ("The cat sat on the [MASK:4].", ["The cat sat on the ", Span(4, True), "."]),
    ("[MASK]", [Span(1, True)]),
    ("a[MASK]b", ["a", Span(1, True), "b"]),
    ("[MASK:<=7] tail", [Span(7, False), " tail"]),
    ("x[MASK:2][MASK:<=3]y", ["x", Span(2, True), Span(3, False), "y"]),
    ("[MASK:04]", [Span(4, True)]),
    (f"[MASK:{MAX_SPAN_LENGTH}]", [Span(MAX_SPAN_LENGTH, True)]),
])
def test_parse_forms(template, parts):
    tmpl = parse_template(template)
    assert tmpl.parts == parts
    assert tmpl.spans == [p for p in parts if isinstance(p, Span)]


@pytest.mark.parametrize("template, literal", [
    (r"\[MASK] = [MASK]", "[MASK] = "),              # escaped tag is literal
    (r"a\]b\[c[MASK]", "a]b[c"),
    ("a\\\\[MASK]", "a\\"),                           # \\ then a real tag
    ("a\\\\\\[MASK][MASK]", "a\\[MASK]"),             # \\ \[ -> backslash, literal [MASK]
    (r"C:\temp\new [MASK]", r"C:\temp\new "),        # other backslashes are literal
    ("xs[0] = [1, 2] [MASK]", "xs[0] = [1, 2] "),     # ordinary brackets need no escape
    ("[link](url) [MASKED] [MASK_ID] [mask] [MASK]", "[link](url) [MASKED] [MASK_ID] [mask] "),
    ("[[MASK]", "["),
    ("]][MASK]", "]]"),
    ("\\[MASK:2] [MASK]", "[MASK:2] "),              # \[ always escapes the tag
])
def test_escapes_and_literal_brackets(template, literal):
    tmpl = parse_template(template)
    assert tmpl.parts[0] == literal
    assert isinstance(tmpl.parts[1], Span)


def test_parts_have_no_empty_strings_and_adjacent_literals_merge():
    tmpl = parse_template(r"a\[b\]c[MASK]\\[MASK:2]")
    assert tmpl.parts == ["a[b]c", Span(1), "\\", Span(2)]
    assert all(p for p in tmpl.parts if isinstance(p, str))


def test_trailing_backslash_is_literal():
    assert parse_template("[MASK]\\").parts == [Span(1), "\\"]


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("template, pos, words", [
    ("The cat sat on the [MASK:0].", 20, "count >= 1"),
    ("ab[MASK:<=0]", 3, "count >= 1"),
    ("[MASK:-2]", 1, "count >= 1"),
    ("[MASK:<=-2]", 1, "count >= 1"),
    ("xy [MASK:x]", 4, "no valid count"),
    ("[MASK:<=]", 1, "no valid count"),
    ("[MASK: 3]", 1, "no valid count"),
    ("[MASK:]", 1, "needs a count"),
    ("[MASK:", 1, "unclosed"),
    ("ok [MASK] then [MASK:3", 16, "unclosed"),
    ("[MASK:3 [MASK]", 1, "unclosed"),
    ("[MASK:3\n]", 1, "unclosed"),
    ("[MASK", 1, "unclosed"),
    ("[MASK3]", 1, "not a mask tag"),
    ("[MASK 3]", 1, "not a mask tag"),
    (f"[MASK:{MAX_SPAN_LENGTH + 1}]", 1, f"more than {MAX_SPAN_LENGTH}"),
    (f"[MASK:<={10**30}]", 1, f"more than {MAX_SPAN_LENGTH}"),
])
def test_malformed_tags_name_the_position(template, pos, words):
    with pytest.raises(DLMError) as info:
        parse_template(template)
    message = str(info.value)
    assert message.startswith(f"template error at character {pos}: ")
    assert words in message
    assert "\n" not in message


def test_example_message_reads_well():
    with pytest.raises(DLMError, match=re.escape(
            "template error at character 20: [MASK:0] needs a count >= 1")):
        parse_template("The cat sat on the [MASK:0].")


@pytest.mark.parametrize("template", ["", "plain text", r"\[MASK]", "[mask] [MASKED]"])
def test_no_span_is_an_error(template):
    with pytest.raises(DLMError, match=re.escape("template has no [MASK] span")):
        parse_template(template)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="[]\\MASK:<=-0123x \n", max_size=30))
def test_parser_only_ever_raises_dlm_error(template):
    try:
        tmpl = parse_template(template)
    except DLMError as e:
        assert "\n" not in str(e)
    else:
        assert tmpl.spans
        assert all(1 <= s.length <= MAX_SPAN_LENGTH for s in tmpl.spans)
        assert all(p != "" for p in tmpl.parts)


# --- escape round trip ------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1) | st.text(alphabet="[]\\MASK:<=1", min_size=1))
def test_escape_round_trips(s):
    assert parse_template(escape(s) + "[MASK]").parts[0] == s


def test_escape_examples():
    assert escape("a[0]\\n") == "a\\[0\\]\\\\n"
    assert escape("plain") == "plain"


# --- canvas -----------------------------------------------------------------------------------
def test_build_canvas_slots_byte_tokenizer():
    tmpl = parse_template("ab[MASK:2]c[MASK:<=3][MASK]é")
    canvas = build_canvas(tmpl, TOK)
    assert canvas.ids == [97, 98, MASK, MASK, 99, MASK, MASK, MASK, MASK, 0xC3, 0xA9]
    assert canvas.span_slots == [(2, 4), (5, 8), (8, 9)]
    assert canvas.fixed == [True, True, False, False, True, False, False, False, False, True, True]
    for start, end in canvas.span_slots:
        assert all(canvas.ids[j] == MASK and not canvas.fixed[j] for j in range(start, end))


def test_build_canvas_custom_mask_id():
    canvas = build_canvas(parse_template("[MASK:2]z"), TOK, mask_id=7)
    assert canvas.ids == [7, 7, 122]
    assert canvas.fixed == [False, False, True]


def test_literal_mask_token_is_refused():
    with pytest.raises(DLMError, match="mask token"):
        build_canvas(parse_template(f"a {TOK.mask_token} b [MASK]"), TOK)


def test_bpe_pieces_are_encoded_separately():
    tok = train_bpe(["the cat sat on the mat. " * 20], vocab_size=300)
    tmpl = parse_template("the ca[MASK:2]t sat")
    canvas = build_canvas(tmpl, tok)
    (start, end), = canvas.span_slots
    assert canvas.ids[:start] == tok.encode("the ca")
    assert canvas.ids[end:] == tok.encode("t sat")
    assert end - start == 2


# --- reading fillings -------------------------------------------------------------------------
def test_read_fillings_exact_and_up_to():
    tmpl = parse_template("The [MASK:3] sat on the [MASK:<=5].")
    canvas = build_canvas(tmpl, TOK)
    ids = list(canvas.ids)
    (a, b), (c, d) = canvas.span_slots
    ids[a:b] = list(b"c") + [PAD] + list(b"t")            # exact: PAD dropped
    ids[c:d] = list(b"mat") + [EOS] + list(b"x")          # <=: cut at the first EOS
    out = read_fillings(tmpl, canvas, ids, TOK)
    assert out.fillings == ["ct", "mat"]
    assert out.text == "The ct sat on the mat."


def test_read_fillings_drops_eos_inside_exact_span_and_masks_in_up_to_span():
    tmpl = parse_template("[MASK:4]|[MASK:<=4]")
    canvas = build_canvas(tmpl, TOK)
    ids = [104, EOS, MASK, 105, 124, MASK, 111, PAD, 107]
    out = read_fillings(tmpl, canvas, ids, TOK)
    assert out.fillings == ["hi", "ok"]
    assert out.text == "hi|ok"


def test_read_fillings_ignores_changed_literal_slots():
    tmpl = parse_template("keep [MASK] this")
    canvas = build_canvas(tmpl, TOK)
    ids = [120] * len(canvas.ids)  # a buggy sampler overwrote everything with 'x'
    assert read_fillings(tmpl, canvas, ids, TOK).text == "keep x this"


def test_read_fillings_checks_lengths():
    tmpl = parse_template("a[MASK:2]")
    canvas = build_canvas(tmpl, TOK)
    with pytest.raises(DLMError, match="3 slots"):
        read_fillings(tmpl, canvas, canvas.ids[:-1], TOK)
    with pytest.raises(DLMError, match="spans"):
        read_fillings(parse_template("a[MASK]b[MASK]"), canvas, canvas.ids, TOK)


# Literal text full of the characters the syntax cares about (no '|': it starts special tokens).
LITERAL = st.text(alphabet=st.sampled_from(list("[]\\MASK:<=0123 abc\né😀")), min_size=1,
                  max_size=12)
SPAN = st.builds(Span, st.integers(1, 6), st.booleans())


@st.composite
def template_pieces(draw):
    """A list of literal strings and spans (at least one span, literals never adjacent)."""
    pieces: list = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            pieces.append(draw(LITERAL))
        pieces.append(draw(SPAN))
    if draw(st.booleans()):
        pieces.append(draw(LITERAL))
    return pieces


def render(pieces) -> str:
    def tag(s: Span) -> str:
        return f"[MASK:{s.length}]" if s.exact else f"[MASK:<={s.length}]"
    return "".join(tag(p) if isinstance(p, Span) else escape(p) for p in pieces)


def fill_slot(draw, span: Span) -> list[int]:
    specials = [PAD, MASK] if span.exact else [PAD, MASK, EOS]
    token = st.integers(0, 255) | st.sampled_from(specials + [EOS])
    return draw(st.lists(token, min_size=span.length, max_size=span.length))


def expected_filling(span: Span, slots: list[int]) -> str:
    if not span.exact and EOS in slots:
        slots = slots[:slots.index(EOS)]
    return TOK.decode([t for t in slots if t not in (PAD, MASK, EOS)])


@settings(max_examples=200, deadline=None)
@given(template_pieces(), st.data())
def test_filling_never_alters_literal_text(pieces, data):
    tmpl = parse_template(render(pieces))
    assert tmpl.parts == pieces
    canvas = build_canvas(tmpl, TOK)
    assert len(canvas.span_slots) == len(tmpl.spans)

    ids = list(canvas.ids)
    expected = []
    for span, (start, end) in zip(tmpl.spans, canvas.span_slots):
        assert end - start == span.length
        ids[start:end] = fill_slot(data.draw, span)
        expected.append(expected_filling(span, ids[start:end]))
    # Fixed slots still hold the literal text's bytes, in order.
    assert bytes(t for t, f in zip(ids, canvas.fixed) if f) == \
        "".join(p for p in pieces if isinstance(p, str)).encode()

    out = read_fillings(tmpl, canvas, ids, TOK)
    assert out.fillings == expected
    filled = iter(out.fillings)
    assert out.text == "".join(next(filled) if isinstance(p, Span) else p for p in pieces)
    # Every literal piece appears exactly, in order, at the position the fillings leave for it.
    pos = 0
    filled = iter(out.fillings)
    for p in pieces:
        piece = next(filled) if isinstance(p, Span) else p
        assert out.text[pos:pos + len(piece)] == piece
        pos += len(piece)
    assert pos == len(out.text)
    if isinstance(pieces[0], str):
        assert out.text.startswith(pieces[0])
