"""What a stream may send of a row still decoding: append-only text that no later token can
change (settled prefix, incomplete UTF-8 held back, a possible stop string held back), and
its concatenation equals the final text."""

from __future__ import annotations

from dlm.data.tokenizer import byte_tokenizer
from dlm.pipeline import cut_at_stop
from dlm.serve.stream import TextStream, canvas_text

TOK = byte_tokenizer()
EOS, MASK, PAD = TOK.eos_id, TOK.mask_id, TOK.pad_id


def stream(stop=None) -> TextStream:
    return TextStream(TOK.decode, EOS, {MASK, PAD}, stop)


def grow(ids: list[int], stop=None) -> tuple[list[str], TextStream]:
    """Feed every prefix of ids as the settled tokens; the deltas sent."""
    s = stream(stop)
    return [s.update(ids[:n]) for n in range(len(ids) + 1)], s


def final(ids: list[int], stop=None) -> str:
    if EOS in ids:
        ids = ids[:ids.index(EOS)]
    return cut_at_stop(TOK.decode(ids), stop)[0]


def test_deltas_concatenate_to_the_final_text_and_never_split_a_character():
    ids = TOK.encode("Où est la café? ☕ fin")
    deltas, s = grow(ids)
    assert "".join(deltas) == final(ids)
    assert all("\ufffd" not in d for d in deltas)  # a multi-byte character waits for its bytes
    assert s.close(final(ids)) == "" and not s.stopped


def test_eos_decides_the_answer():
    ids = TOK.encode("to be") + [EOS] + TOK.encode("junk")
    deltas, s = grow(ids)
    assert "".join(deltas) == "to be" and s.final and s.stopped


def test_a_possible_stop_string_is_held_back_until_it_is_ruled_out():
    ids = TOK.encode("abc\n\ndef")
    deltas, s = grow(ids, stop=["\n\n"])
    assert "".join(deltas) == "abc" and s.final
    assert deltas[4] == ""  # after "abc\n": the "\n" might start the stop string
    ids = TOK.encode("abc\nd")
    deltas, s = grow(ids, stop=["\n\n"])
    assert "".join(deltas) == "abc\nd" and not s.final  # the "\n" was sent once ruled out


def test_the_earliest_stop_string_wins_even_when_it_straddles_a_later_one():
    # "XYZ" starts before "Y" ends: the full text is cut at "X", so seeing "Y" alone in the
    # settled "abXY" must not end the answer at "abX"
    ids = TOK.encode("abXYZ tail")
    deltas, s = grow(ids, stop=["Y", "XYZ"])
    assert final(ids, ["Y", "XYZ"]) == "ab"
    assert "".join(deltas) == "ab" and s.final


def test_canvas_text_shows_masks_and_stops_at_eos():
    ids = [*TOK.encode("ab"), MASK, MASK, *TOK.encode("c"), EOS, *TOK.encode("zz")]
    assert canvas_text(ids, TOK.decode, MASK, EOS, {PAD}, "#") == "ab##c"


def test_an_idle_stream_pings_then_goes_on_to_its_last_message():
    import asyncio

    from dlm.serve.app import _messages

    class Late:  # a job whose next message comes after two idle waits
        def __init__(self):
            self.msgs = [None, None, ("step", []), ("done", "gen"), ("step", [])]

        async def next(self, timeout=None):
            return self.msgs.pop(0)

    async def read():
        return [m async for m in _messages(Late(), 0.01)]

    assert asyncio.run(read()) == [("ping", None), ("ping", None), ("step", []),
                                   ("done", "gen")]
