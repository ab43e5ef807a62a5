"""What a stream sends of a row that is still decoding (docs/serving.md, "Streaming").

``TextStream``: append-only text that can no longer change. The step machine says, per row,
how long a prefix of it is settled (``RowEvent.settled``: no MASK before it and nothing that
could re-mask it); of that prefix's text the stream sends what no later token can alter: it
holds back a trailing incomplete character and any tail that could be the start of a stop
string, and it knows when the text is final (an EOS or a stop string in the settled part), so
the server can stop decoding a row whose answer is decided.

``Canvas``: one row's tokens as they are now, kept from the step events, and its text with
each MASK shown as a placeholder (the ``diffusing`` stream).
"""

from __future__ import annotations

from ..pipeline import cut_at_stop

REPLACEMENT = "\ufffd"  # what a tokenizer decodes an incomplete UTF-8 sequence to


class Canvas:
    """One row in its own coordinates, updated from its ``RowEvent``s; ``lo:hi`` is the part
    that becomes the answer (generated tokens, or an infill span)."""

    def __init__(self, tokens: list[int], lo: int, hi: int, mask_id: int):
        self.tokens, self.lo, self.hi, self.mask_id = list(tokens), lo, hi, mask_id
        self.settled = 0

    def apply(self, event) -> None:
        for p, t in zip(event.positions, event.tokens):
            self.tokens[p] = t
        for p in event.remasked:
            self.tokens[p] = self.mask_id
        self.settled = event.settled

    @property
    def region(self) -> list[int]:
        return self.tokens[self.lo:self.hi]

    @property
    def stable(self) -> list[int]:
        """The answer's tokens that can no longer change."""
        return self.tokens[self.lo:max(self.lo, min(self.settled, self.hi))]

    def masked(self) -> int:
        return sum(t == self.mask_id for t in self.region)


class TextStream:
    """Append-only text of one answer. ``update(stable tokens)`` returns the new text that
    can no longer change (maybe ""); ``final`` turns True once the answer is decided (an EOS
    or a stop string in the settled text); ``close(text)`` returns the rest of the final
    answer. ``eos_id`` None: an EOS ends nothing (put it in ``drop``)."""

    def __init__(self, decode, eos_id: int | None, drop: set[int], stop: list[str] | None):
        self.decode, self.eos_id, self.drop = decode, eos_id, drop
        self.stop = [s for s in stop or [] if s]
        self.sent = ""
        self.final = False
        self.stopped = False  # the answer ended at EOS or a stop string

    def text_of(self, tokens: list[int]) -> tuple[str, bool]:
        """The settled text of these tokens and whether it ends the answer (EOS)."""
        ended = self.eos_id is not None and self.eos_id in tokens
        if ended:
            tokens = tokens[:tokens.index(self.eos_id)]
        text = self.decode([t for t in tokens if t not in self.drop])
        if not ended:  # the next token may complete a character split over tokens
            text = text.rstrip(REPLACEMENT)
        return text, ended

    def holdback(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper start of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def update(self, tokens: list[int]) -> str:
        if self.final:
            return ""
        text, ended = self.text_of(tokens)
        cut, hit = cut_at_stop(text, self.stop)
        if ended or hit:
            # a stop string that starts inside the held-back tail could still come first
            if not hit or len(cut) <= len(text) - self.holdback(text):
                self.final = self.stopped = True
                return self._send(cut)
        return self._send(text[:len(text) - self.holdback(text)] if self.stop else text)

    def _send(self, text: str) -> str:
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta

    def close(self, text: str) -> str:
        """The rest of the final answer ``text`` (what the non-streaming response holds)."""
        self.final = True
        delta = text[len(self.sent):] if text.startswith(self.sent) else ""
        self.sent = text if text.startswith(self.sent) else self.sent
        return delta


def canvas_text(tokens: list[int], decode, mask_id: int, eos_id: int, drop: set[int],
                placeholder: str) -> str:
    """A canvas as text: runs of tokens decoded together, each MASK as ``placeholder``,
    nothing from the first EOS on."""
    out, run = [], []
    for t in tokens:
        if t == eos_id:
            break
        if t == mask_id:
            if run:
                out.append(decode(run))
                run = []
            out.append(placeholder)
        elif t not in drop:
            run.append(t)
    if run:
        out.append(decode(run))
    return "".join(out)
