r"""Infill templates: literal text with masked spans for a diffusion model to fill.

    tmpl = parse_template("The cat sat on the [MASK:4].")
    canvas = build_canvas(tmpl, tok)           # literal tokens fixed, 4 mask slots
    ids = ...                                  # the sampler fills the non-fixed slots
    read_fillings(tmpl, canvas, ids, tok).text  # "The cat sat on the mat."

Syntax
------
* ``[MASK]``: exactly one token to fill.
* ``[MASK:n]``: exactly ``n`` tokens (``n >= 1``).
* ``[MASK:<=n]``: up to ``n`` tokens (``n >= 1``). The model gets ``n`` slots; the filling is cut
  at the first EOS in the span and any PAD/MASK left in it is dropped, so it may be shorter.
* Counts are plain ASCII digits with no spaces and at most ``MAX_SPAN_LENGTH`` (4096).
* Escapes: ``\[`` is a literal ``[``, ``\]`` a literal ``]``, ``\\`` a literal backslash. Any
  other backslash is literal (``C:\temp`` needs no escape).
* A ``[`` that does not start a ``[MASK`` tag is literal, so ordinary brackets in code or markdown
  need no escape. ``[MASK`` followed by a letter or ``_`` (``[MASKED]``, ``[MASK_ID]``) is a
  literal word too; the tag is case-sensitive (``[mask]`` is literal). Write ``\[MASK]`` for a
  literal ``[MASK]``; ``escape(text)`` does this for any text.

Mistakes raise ``DLMError`` with one line naming the 1-based character position of the tag, e.g.
``template error at character 20: [MASK:0] needs a count >= 1``. A template needs at least one
mask span.

Each literal piece is encoded on its own, so span boundaries always fall on token boundaries and
the literal text is reproduced exactly: ``read_fillings`` rebuilds the text from the template's
own literal strings, never from decoded tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DLMError

if TYPE_CHECKING:
    from ..data.tokenizer import Tokenizer

MAX_SPAN_LENGTH = 4096
_TAG = "[MASK"
_ESCAPABLE = "[]\\"
_COUNT = re.compile(r"(<=)?(-?[0-9]+)")
_USAGE = r"use [MASK], [MASK:n] or [MASK:<=n], or write \[ for a literal '['"


@dataclass(frozen=True)
class Span:
    """One masked span: ``length`` slots for the model; ``exact=False`` for ``[MASK:<=n]``."""

    length: int
    exact: bool = True


@dataclass
class Template:
    """A parsed template: literal text pieces (unescaped, never empty) and spans, in order.

    >>> parse_template("a[MASK:<=2]b").parts
    ['a', Span(length=2, exact=False), 'b']
    """

    parts: list[str | Span]

    @property
    def spans(self) -> list[Span]:
        return [p for p in self.parts if isinstance(p, Span)]


def escape(text: str) -> str:
    r"""Escape ``text`` so a template reads it back as literal text.

    >>> escape(r"a[0]\n")
    'a\\[0\\]\\\\n'
    >>> parse_template(escape("[MASK]") + "[MASK]").parts[0]
    '[MASK]'
    """
    return "".join("\\" + c if c in _ESCAPABLE else c for c in text)


def _error(pos: int, message: str) -> DLMError:
    return DLMError(f"template error at character {pos + 1}: {message}")


def _parse_tag(template: str, start: int) -> tuple[Span, int]:
    """Parse the ``[MASK...]`` tag at ``start``; return the span and the index just past it."""
    i = start + len(_TAG)
    if i < len(template) and template[i] == "]":
        return Span(1, True), i + 1
    # The tag ends at the first ']'; a '[' or newline (or the end) before it means it is unclosed.
    end = i
    while end < len(template) and template[end] not in "[]\n":
        end += 1
    if end == len(template) or template[end] != "]":
        shown = template[start:end]
        shown = shown if len(shown) <= 24 else shown[:24] + "..."
        raise _error(start, f"unclosed tag {shown!r} (expected ']'); {_USAGE}")
    tag = template[start:end + 1]
    shown = tag if len(tag) <= 40 else tag[:37] + "...]"
    if template[i] != ":":
        raise _error(start, f"{shown} is not a mask tag; {_USAGE}")
    body = template[i + 1:end]
    if not body:
        raise _error(start, f"{tag} needs a count, e.g. [MASK:4] or [MASK:<=4]")
    m = _COUNT.fullmatch(body)
    if m is None:
        raise _error(start, f"{shown} has no valid count (a whole number); {_USAGE}")
    n = int(m.group(2))
    if n < 1:
        raise _error(start, f"{shown} needs a count >= 1")
    if n > MAX_SPAN_LENGTH:
        raise _error(start, f"{shown} asks for more than {MAX_SPAN_LENGTH} tokens")
    return Span(n, exact=m.group(1) is None), end + 1


def parse_template(template: str) -> Template:
    r"""Split a template string into literal text and mask spans (syntax in the module docstring).

    >>> parse_template(r"f(x\[0\]) = [MASK:3];").parts
    ['f(x[0]) = ', Span(length=3, exact=True), ';']
    """
    parts: list[str | Span] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c == "\\" and i + 1 < len(template) and template[i + 1] in _ESCAPABLE:
            literal.append(template[i + 1])
            i += 2
        elif template.startswith(_TAG, i) and not (
                i + len(_TAG) < len(template)
                and (template[i + len(_TAG)].isalpha() or template[i + len(_TAG)] == "_")):
            span, i = _parse_tag(template, i)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(span)
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    if not any(isinstance(p, Span) for p in parts):
        raise DLMError("template has no [MASK] span: add [MASK], [MASK:n] or [MASK:<=n] where "
                       "the model should write")
    return Template(parts)


@dataclass
class Canvas:
    """Token ids for the sampler: literal text encoded, each span as ``length`` mask ids.

    ``span_slots[k]`` is span k's ``[start, end)`` slot range; ``fixed[j]`` is True for slots
    holding literal-text tokens, which must never change.
    """

    ids: list[int]
    span_slots: list[tuple[int, int]]
    fixed: list[bool]


def build_canvas(template: Template, tokenizer: Tokenizer, mask_id: int | None = None) -> Canvas:
    """Encode each literal piece separately (so span boundaries fall on token boundaries) and put
    ``span.length`` mask ids in each span's place.

    >>> c = build_canvas(parse_template("ab[MASK:2]c"), byte_tokenizer())
    >>> c.ids, c.span_slots
    ([97, 98, 256, 256, 99], [(2, 4)])
    """
    mask_id = tokenizer.mask_id if mask_id is None else mask_id
    ids: list[int] = []
    span_slots: list[tuple[int, int]] = []
    fixed: list[bool] = []
    for part in template.parts:
        if isinstance(part, Span):
            span_slots.append((len(ids), len(ids) + part.length))
            ids += [mask_id] * part.length
            fixed += [False] * part.length
        else:
            piece = tokenizer.encode(part)
            if mask_id in piece:
                # The sampler finds the slots to fill by their mask id: a literal one would be
                # filled too, and the literal text would no longer be what the template says.
                raise DLMError(f"literal text {part[:40]!r} encodes to the mask token (id "
                               f"{mask_id}); remove the tokenizer's mask token from the template")
            ids += piece
            fixed += [True] * len(piece)
    return Canvas(ids, span_slots, fixed)


@dataclass
class Infilled:
    """The filled template: ``text`` in full and each span's ``fillings`` text, in order."""

    text: str
    fillings: list[str]


def _span_tokens(span: Span, slots: list[int], tokenizer: Tokenizer) -> list[int]:
    """The tokens a span's slots stand for: exact spans drop PAD/MASK/EOS; ``<=`` spans end at the
    first EOS and drop PAD/MASK."""
    eos, drop = tokenizer.eos_id, {tokenizer.pad_id, tokenizer.mask_id}
    if span.exact:
        drop = drop | {eos}
    elif eos in slots:
        slots = slots[:slots.index(eos)]
    return [t for t in slots if t not in drop]


def read_fillings(template: Template, canvas: Canvas, ids: Iterable[int],
                  tokenizer: Tokenizer) -> Infilled:
    """Given the final ids (same length as canvas.ids), decode each span's slots (exact spans: drop
    any PAD/MASK/EOS tokens; <= spans: cut at first EOS, drop PAD/MASK), and rebuild the text as the
    literal pieces (the ORIGINAL literal strings from the template, not re-decoded, so fixed text is
    never altered) interleaved with the fillings.

    >>> tok = byte_tokenizer()
    >>> tmpl = parse_template("a[MASK:<=3]!")
    >>> read_fillings(tmpl, build_canvas(tmpl, tok), [97, 104, 105, 257, 33], tok).text
    'ahi!'
    """
    ids = [int(t) for t in ids]  # accepts a tensor row too
    if len(ids) != len(canvas.ids):
        raise DLMError(f"got {len(ids)} ids for a canvas of {len(canvas.ids)} slots")
    spans = template.spans
    if len(spans) != len(canvas.span_slots):
        raise DLMError(f"the canvas has {len(canvas.span_slots)} spans but the template has "
                       f"{len(spans)}; build the canvas from this template")
    fillings = [tokenizer.decode(_span_tokens(span, ids[start:end], tokenizer))
                for span, (start, end) in zip(spans, canvas.span_slots)]
    filled = iter(fillings)
    text = "".join(next(filled) if isinstance(p, Span) else p for p in template.parts)
    return Infilled(text, fillings)
