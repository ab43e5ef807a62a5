"""Tokenizers: a thin wrapper over HF ``tokenizers`` that knows the special ids.

Both built-in tokenizers are ordinary HF ``tokenizer.json`` files, so a checkpoint always carries
one and any other ``tokenizer.json`` works the same way:

* ``byte``: 256 byte tokens (id == byte value) + MASK, EOS, PAD (ids 256, 257, 258).
* ``bpe``: byte-level BPE trained on the training split with a vocab-size flag.

Special ids are read from the tokenizer and stored in the checkpoint config, never hard-coded.

    tok = byte_tokenizer()
    tok.decode(tok.encode("ROMEO:")) == "ROMEO:"
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from functools import cached_property
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from ..errors import DLMError

MASK_TOKEN = "<|mask|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (MASK_TOKEN, EOS_TOKEN, PAD_TOKEN)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by HF's ByteLevel components."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


class Tokenizer:
    """encode(str) -> list[int], decode(list[int]) -> str, plus mask/eos/pad ids."""

    def __init__(self, hf: HFTokenizer, kind: str = "custom", mask_token: str = MASK_TOKEN,
                 eos_token: str = EOS_TOKEN, pad_token: str = PAD_TOKEN):
        self.hf = hf
        self.kind = kind
        self.mask_token, self.eos_token, self.pad_token = mask_token, eos_token, pad_token
        ids = {name: hf.token_to_id(tok) for name, tok in
               (("mask", mask_token), ("eos", eos_token), ("pad", pad_token))}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise DLMError(f"tokenizer has no {', '.join(missing)} token "
                           f"(expected {[mask_token, eos_token, pad_token]})")
        self.mask_id, self.eos_id, self.pad_id = ids["mask"], ids["eos"], ids["pad"]

    # --- basic API ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> dict[str, int]:
        return {"mask_id": self.mask_id, "eos_id": self.eos_id, "pad_id": self.pad_id}

    def encode(self, text: str) -> list[int]:
        if self.kind == "byte" and "<|" not in text:
            return list(text.encode("utf-8"))  # same ids as the HF path, much faster
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and each token's (start, end) character span in ``text``."""
        enc = self.hf.encode(text, add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.kind == "byte":
            return [self.encode(t) for t in texts]
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """What one token looks like on screen (for animations); specials shown by name."""
        if token_id == self.mask_id:
            return "·"
        if token_id in (self.eos_id, self.pad_id):
            return ""
        return self.hf.decode([int(token_id)], skip_special_tokens=False)

    @cached_property
    def token_bytes(self) -> np.ndarray:
        """Bytes of text each token stands for ([V] int64), used for bits/byte.

        EOS counts as one byte (a document separator, like a newline); MASK and PAD as zero.
        """
        inverse = {c: b for b, c in bytes_to_unicode().items()}
        byte_level = isinstance(self.hf.decoder, decoders.ByteLevel)
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for tok, i in self.hf.get_vocab(with_added_tokens=True).items():
            if i == self.eos_id:  # first: some tokenizers pad with their EOS
                out[i] = 1
            elif i in (self.mask_id, self.pad_id):
                continue
            elif byte_level and all(c in inverse for c in tok):
                out[i] = len(tok)
            else:
                out[i] = len(self.hf.decode([i]).encode("utf-8"))
        return out

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    def config(self) -> dict:
        return {"type": self.kind, "vocab_size": self.vocab_size, "mask_token": self.mask_token,
                "eos_token": self.eos_token, "pad_token": self.pad_token, **self.special_ids}

    @classmethod
    def load(cls, path: str | Path, config: dict | None = None) -> Tokenizer:
        config = config or {}
        path = Path(path)
        if not path.is_file():
            raise DLMError(f"tokenizer file not found: {path}")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises plain Exceptions
            raise DLMError(f"cannot read tokenizer {path}: {e}") from None
        tok = cls(hf, kind=config.get("type", "custom"),
                  mask_token=config.get("mask_token", MASK_TOKEN),
                  eos_token=config.get("eos_token", EOS_TOKEN),
                  pad_token=config.get("pad_token", PAD_TOKEN))
        for name, value in tok.special_ids.items():
            if name in config and config[name] != value:
                raise DLMError(f"{path}: {name} is {value} but the checkpoint config says "
                               f"{config[name]}")
        return tok


def _specials() -> list[AddedToken]:
    return [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]


def byte_tokenizer() -> Tokenizer:
    """256 byte tokens with id == byte value, then MASK=256, EOS=257, PAD=258."""
    b2u = bytes_to_unicode()
    hf = HFTokenizer(models.BPE(vocab={b2u[b]: b for b in range(256)}, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens(_specials())
    return Tokenizer(hf, kind="byte")


def train_bpe(texts: Iterable[str] | Iterator[str], vocab_size: int = 4096,
              quiet: bool = False) -> Tokenizer:
    """Byte-level BPE trained with HF ``tokenizers``; specials get the ids after the merges.

    Training takes a while on a large corpus (~30 s on Shakespeare), so unless ``quiet`` it says
    so on stderr first (vocab size, corpus size) and how long it took after; on a terminal the
    trainer's own progress bar shows as well."""
    if vocab_size < 260:
        raise DLMError(f"--vocab-size must be at least 260 for bpe (got {vocab_size})")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=not quiet and _stderr_is_terminal())
    if not quiet:
        print(f"training a BPE tokenizer (vocab {vocab_size:,}) on {_corpus_size(texts)} ...",
              file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    hf.train_from_iterator(texts, trainer=trainer)
    hf.add_special_tokens(_specials())
    if not quiet:
        print(f"BPE tokenizer trained in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
              flush=True)
    return Tokenizer(hf, kind="bpe")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _corpus_size(texts) -> str:
    """'38 documents, 5.4 M characters' (a list); 'a stream of documents' (an iterator)."""
    if not isinstance(texts, Sized):
        return "a stream of documents"
    chars = sum(len(t) for t in texts)
    size = f"{chars / 1e6:.1f} M" if chars >= 100_000 else f"{chars:,}"
    return f"{len(texts):,} document{'s' if len(texts) != 1 else ''}, {size} characters"


def build_tokenizer(kind: str, train_texts: list[str] | None = None, vocab_size: int = 4096,
                    quiet: bool = False) -> Tokenizer:
    """``byte``, ``bpe`` (trained on ``train_texts``; ``quiet``: no note on stderr) or a path
    to a ``tokenizer.json``."""
    if kind == "byte":
        return byte_tokenizer()
    if kind == "bpe":
        if not train_texts:
            raise DLMError("bpe tokenizer needs training text")
        return train_bpe(train_texts, vocab_size, quiet=quiet)
    if kind.endswith(".json") or Path(kind).is_file():
        return Tokenizer.load(kind)
    raise DLMError(f"unknown tokenizer {kind!r}: use byte, bpe or a path to tokenizer.json")
