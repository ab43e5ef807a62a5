"""Packing documents into fixed-length sequences and walking them in exact epochs.

The training stream is: documents shuffled with the seed, each followed by EOS, concatenated.
``--unique-tokens N`` keeps the first N tokens of that stream; they are cut into sequences of
``seq_len`` tokens (a ragged tail is dropped). The loader is a pure function of the step:
epoch e visits every sequence exactly once in the order ``permutation(seed, e)``, and global
batch k is samples [k*B, (k+1)*B) of the concatenated epochs. Resuming therefore needs only the
step number, and "unique tokens x epochs" is exact.

    seqs = pack_documents(token_lists, eos_id, seq_len=128)        # [N, 128] int64
    loader = EpochLoader(seqs, batch_size=32, seed=0)
    x = loader.batch(step)                                         # [32, 128]
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DLMError


def token_stream(token_lists: list[list[int]], eos_id: int, shuffle_seed: int | None = None
                 ) -> np.ndarray:
    """Concatenate documents with EOS after each; shuffle document order if a seed is given."""
    order = np.arange(len(token_lists))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(token_lists))
    total = sum(len(t) + 1 for t in token_lists)
    out = np.empty(total, dtype=np.int64)
    pos = 0
    for i in order:
        toks = token_lists[i]
        out[pos:pos + len(toks)] = toks
        out[pos + len(toks)] = eos_id
        pos += len(toks) + 1
    return out


def pack_stream(stream: np.ndarray, seq_len: int, unique_tokens: int | None = None
                ) -> np.ndarray:
    """First ``unique_tokens`` tokens of the stream cut into rows of ``seq_len`` -> [N, seq_len]."""
    if unique_tokens is not None:
        if unique_tokens > len(stream):
            raise DLMError(f"--unique-tokens {unique_tokens} is more than the training stream "
                           f"holds ({len(stream)} tokens)")
        stream = stream[:unique_tokens]
    n = len(stream) // seq_len
    if n == 0:
        raise DLMError(f"not enough tokens ({len(stream)}) for one sequence of {seq_len}")
    return stream[: n * seq_len].reshape(n, seq_len)


def pack_documents(token_lists: list[list[int]], eos_id: int, seq_len: int,
                   unique_tokens: int | None = None, shuffle_seed: int | None = None
                   ) -> np.ndarray:
    return pack_stream(token_stream(token_lists, eos_id, shuffle_seed), seq_len, unique_tokens)


class EpochLoader:
    """Global batch ``step`` -> this rank's share of it, walking whole epochs."""

    def __init__(self, sequences: np.ndarray, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise DLMError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.sequences = torch.from_numpy(np.ascontiguousarray(sequences))
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self._perm_epoch, self._perm = -1, None

    @property
    def num_sequences(self) -> int:
        return self.sequences.shape[0]

    @property
    def tokens_per_epoch(self) -> int:
        return self.sequences.numel()

    def epochs_at(self, step: int) -> float:
        """Epochs completed after ``step`` global batches."""
        return step * self.batch_size / self.num_sequences

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_sequences)
            self._perm_epoch = epoch
        return self._perm

    def sample_indices(self, start: int, count: int) -> list[int]:
        """Sequence indices of global samples [start, start + count) across epoch boundaries."""
        n = self.num_sequences
        out = []
        for s in range(start, start + count):
            out.append(int(self.permutation(s // n)[s % n]))
        return out

    def batch(self, step: int) -> torch.Tensor:
        local = self.batch_size // self.world_size
        start = step * self.batch_size + self.rank * local
        return self.sequences[self.sample_indices(start, local)]
