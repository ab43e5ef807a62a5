from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlm.data.tokenizer import EOS_TOKEN, Tokenizer, byte_tokenizer, train_bpe
from dlm.errors import DLMError

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@pytest.fixture(scope="module")
def bpe():
    corpus = ["To be, or not to be, that is the question:\n" * 20,
              "def main():\n    return 0\n" * 20, "Ünïcödé — text ✓ " * 10]
    return train_bpe(corpus, vocab_size=320)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_byte_round_trip(text):
    tok = byte_tokenizer()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    if "<|" not in text:  # otherwise special-token strings (<|mask|> ...) become their ids
        assert ids == list(text.encode("utf-8"))
        assert int(tok.token_bytes[ids].sum()) == len(text.encode("utf-8"))


@settings(max_examples=100, deadline=None)
@given(TEXT)
def test_bpe_round_trip_and_byte_count(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    if "<|" not in text:  # byte counts add up exactly (EOS counts as one byte by design)
        assert int(bpe.token_bytes[ids].sum()) == len(text.encode("utf-8"))


def test_byte_special_ids():
    tok = byte_tokenizer()
    assert (tok.mask_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (256, 257, 258, 259)
    assert tok.encode(EOS_TOKEN) == [257]
    assert tok.token_bytes[257] == 1 and tok.token_bytes[256] == 0


def test_bpe_learns_merges_and_saves(bpe, tmp_path):
    assert len(bpe.encode("To be, or not to be")) < len("To be, or not to be")
    assert bpe.vocab_size == 320
    bpe.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json", bpe.config())
    assert again.encode("question") == bpe.encode("question")
    assert again.special_ids == bpe.special_ids


def test_tokenizer_without_mask_token_is_rejected():
    from tokenizers import Tokenizer as HF
    from tokenizers import models

    with pytest.raises(DLMError, match="mask"):
        Tokenizer(HF(models.BPE(vocab={"a": 0}, merges=[])))


def test_bpe_training_says_what_it_does_and_how_long_it_took(capsys, monkeypatch):
    import io

    from dlm.data import tokenizer as module

    trainers = module.trainers  # the module the code calls (whatever sys.modules holds now)
    shown = []
    real = trainers.BpeTrainer

    def spy(**kw):
        shown.append(kw.get("show_progress"))
        return real(**kw)

    monkeypatch.setattr(trainers, "BpeTrainer", spy)
    corpus = ["To be, or not to be, that is the question:\n" * 20, "def main():\n" * 20]
    train_bpe(corpus, vocab_size=300)
    err = capsys.readouterr().err.splitlines()
    chars = sum(map(len, corpus))
    assert err[0] == (f"training a BPE tokenizer (vocab 300) on 2 documents, {chars:,} "
                      "characters ...")
    assert err[1].startswith("BPE tokenizer trained in ") and err[1].endswith(" s")
    assert shown == [False]  # off a terminal: no progress bar from the trainer

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    train_bpe(corpus, vocab_size=300)
    assert shown == [False, True]  # on a terminal the trainer's own bar shows
    notes = terminal.getvalue()
    train_bpe(corpus, vocab_size=300, quiet=True)
    assert shown[-1] is False and terminal.getvalue() == notes  # quiet: nothing at all
