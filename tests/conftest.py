"""Shared fixtures: tiny networks, a small local corpus, and one tiny trained checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing in the suite may reach a hub: Hugging Face libraries (datasets under lm-eval, the
# hub client) are told so before any of them is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from dlm.data.corpora import _shakespeare_docs
from dlm.models.transformer import Transformer, TransformerConfig

# Test networks are tiny: one thread is fastest and immune to oversubscription.
torch.set_num_threads(1)


def tiny_net(vocab_size: int = 40, seed: int = 0, **kw) -> Transformer:
    """A d=32, 2-layer network with random weights (std 0.3 so attention is far from uniform)."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=vocab_size, **{"d_model": 32, "n_layers": 2,
                                                      "n_heads": 4, "max_seq_len": 64, **kw})
    net = Transformer(cfg)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return net.eval()


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A folder of 6 text files cut from Shakespeare (~8 KB each): fast to train on."""
    root = tmp_path_factory.mktemp("corpus")
    for name, text in _shakespeare_docs()[:6]:
        (root / (Path(name).stem + ".md")).write_text(text[2000:10000])
    return root


def train_tiny(out: Path, data: Path, kind: str = "mdlm", callbacks=None, **kw):
    from dlm.train import TrainConfig, train

    cfg = dict(kind=kind, data=str(data), out=str(out), d_model=32, n_layers=2, n_heads=4,
               seq_len=64, batch_size=8, max_steps=30, eval_every=15, ckpt_every=15,
               eval_tokens=512, eval_t_samples=2, warmup_steps=5, lr=3e-3, progress=False,
               threads=1)
    cfg.update(kw)
    return train(TrainConfig(**cfg), callbacks)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, small_corpus) -> dict[str, Path]:
    """One tiny trained MDLM and its AR twin (30 steps each, seconds)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for kind in ("mdlm", "ar"):
        train_tiny(root / kind, small_corpus, kind)
        out[kind] = root / kind
    return out


@pytest.fixture
def saved(monkeypatch):
    """The matplotlib figures that plot functions save (still drawn and written)."""
    from matplotlib.figure import Figure

    figures = []
    real = Figure.savefig

    def spy(self, *args, **kw):
        figures.append(self)
        return real(self, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures
