from __future__ import annotations

import numpy as np
import pytest

from dlm.data.loader import EpochLoader, pack_documents, token_stream
from dlm.errors import DLMError


def test_stream_packs_documents_with_eos():
    s = token_stream([[1, 2], [3], [4, 5, 6]], eos_id=9)
    assert s.tolist() == [1, 2, 9, 3, 9, 4, 5, 6, 9]
    shuffled = token_stream([[1, 2], [3], [4, 5, 6]], eos_id=9, shuffle_seed=3)
    assert sorted(shuffled.tolist()) == sorted(s.tolist())


def test_unique_tokens_takes_the_first_n_of_the_shuffled_stream():
    docs = [list(range(i * 10, i * 10 + 7)) for i in range(20)]
    seqs = pack_documents(docs, 99, seq_len=8, unique_tokens=40, shuffle_seed=1)
    stream = token_stream(docs, 99, shuffle_seed=1)
    assert seqs.shape == (5, 8)
    assert seqs.reshape(-1).tolist() == stream[:40].tolist()
    with pytest.raises(DLMError, match="unique-tokens"):
        pack_documents(docs, 99, seq_len=8, unique_tokens=10_000)


def test_epochs_are_exact_permutations():
    seqs = np.arange(10 * 4).reshape(10, 4)
    loader = EpochLoader(seqs, batch_size=4, seed=0)
    seen = np.concatenate([loader.batch(s)[:, 0].numpy() // 4 for s in range(10)])  # 40 samples
    for epoch in range(4):
        assert sorted(seen[epoch * 10:(epoch + 1) * 10].tolist()) == list(range(10))
    assert seen[:10].tolist() != seen[10:20].tolist()  # a new order every epoch
    assert loader.epochs_at(10) == 4.0
    again = EpochLoader(seqs, batch_size=4, seed=0)
    assert np.array_equal(again.batch(7).numpy(), loader.batch(7).numpy())  # pure in step


def test_ranks_split_the_global_batch():
    seqs = np.arange(12 * 2).reshape(12, 2)
    whole = EpochLoader(seqs, batch_size=4, seed=5)
    parts = [EpochLoader(seqs, batch_size=4, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for step in range(5):
        joined = np.concatenate([p.batch(step).numpy() for p in parts])
        assert np.array_equal(joined, whole.batch(step).numpy())
