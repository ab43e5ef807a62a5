"""``dlm eval --check-elbo``: the masked-diffusion ELBO, checked where everything is enumerable.

On a toy setting (a vocabulary of a few tokens, sequences of a few positions) every quantity
the held-out evaluation estimates can be computed exactly:

* the exact negative ELBO of a sequence, sum_{m=1..L} (1/m) mean_{|M|=m} sum_{i in M}
  -log p(x_i | x outside M), by enumerating all 2^L - 1 mask sets;
* the exact NLL of a proper joint built from the same conditionals: the any-order mixture
  p(x) = mean over the L! orders of prod_k p(x_{s_k} | x_{s_<k}). Each order's product is a
  normalised distribution, so the mixture is too, and by Jensen NELBO >= -log p(x);
* the Monte-Carlo estimate ``masked_nelbo`` (what ``dlm eval`` reports) for growing K, which
  must converge to the exact NELBO.

The network is a small random Transformer whose logits outside the toy vocabulary are -inf, so
the evaluation code's full-vocabulary cross-entropy is exactly the toy conditional.

    report = check_elbo(vocab=3, length=4)
    report.nelbo, report.nll, report.estimates
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..models.transformer import Attention, Transformer, TransformerConfig
from .likelihood import masked_nelbo


class ToyVocabulary(nn.Module):
    """A network restricted to tokens 0..vocab-1 (id ``vocab`` is MASK): other logits -inf."""

    def __init__(self, vocab: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.vocab = vocab
        self.net = Transformer(TransformerConfig(vocab_size=vocab + 1, d_model=32, n_layers=2,
                                                 n_heads=4, max_seq_len=16))
        with torch.no_grad():  # far from uniform, so the check is not trivially tight
            for p in self.net.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.5)
        self.config = self.net.config

    def forward(self, ids: Tensor, attn: Attention | None = None, positions=None, cache=None):
        logits = self.net(ids, attn=attn, positions=positions, cache=cache)
        return logits.masked_fill(torch.arange(logits.shape[-1]) >= self.vocab, -math.inf)


@dataclass
class ElboCheck:
    vocab: int
    length: int
    sequences: int
    nelbo: float  # exact, nats per sequence, averaged over all sequences
    nll: float  # exact NLL of the any-order mixture, same average
    estimates: list[tuple[int, float, float]] = field(default_factory=list)  # (K, est, s.e.)
    total_probability: float = 0.0  # sum of the mixture over all sequences (must be 1)

    def describe(self) -> str:
        lines = [f"toy: vocabulary {self.vocab}, length {self.length}, all {self.sequences} "
                 f"sequences (nats per sequence, averaged)",
                 f"  exact NLL of the any-order joint   {self.nll:.5f}   "
                 f"(joint sums to {self.total_probability:.6f})",
                 f"  exact negative ELBO                {self.nelbo:.5f}   "
                 f"(>= NLL: {'yes' if self.nelbo >= self.nll - 1e-9 else 'NO'})",
                 "  Monte-Carlo estimate (dlm eval's estimator):"]
        for k, est, se in self.estimates:
            if se > 0:
                z = (est - self.nelbo) / se
                lines.append(f"    K = {k:5d}   {est:.5f} ± {se:.5f}   ({z:+.1f} s.e. from "
                             f"exact)")
            else:
                lines.append(f"    K = {k:5d}   {est:.5f}   (one draw: no error bar)")
        return "\n".join(lines)


@torch.no_grad()
def conditional_logprobs(network, x: Tensor, mask_id: int) -> dict[int, Tensor]:
    """For every non-empty mask set (bitmask over positions): log p(x_i | x outside M) [L]."""
    L = x.shape[0]
    sets = list(range(1, 2 ** L))
    hidden = torch.tensor([[(s >> i) & 1 for i in range(L)] for s in sets], dtype=torch.bool)
    xt = torch.where(hidden, mask_id, x[None, :])
    lp = torch.log_softmax(network(xt, attn=Attention.bidirectional()).double(), -1)
    lp = lp.gather(-1, x[None, :, None].expand(len(sets), L, 1)).squeeze(-1)  # [2^L-1, L]
    return {s: lp[j] for j, s in enumerate(sets)}


def exact_nelbo(cond: dict[int, Tensor], L: int) -> float:
    """sum_m (1/m) mean_{|M|=m} sum_{i in M} -log p(x_i | x outside M)."""
    total = 0.0
    for m in range(1, L + 1):
        sets = [s for s in cond if bin(s).count("1") == m]
        terms = [-sum(float(cond[s][i]) for i in range(L) if (s >> i) & 1) for s in sets]
        total += sum(terms) / len(terms) / m
    return total


def any_order_logprob(cond: dict[int, Tensor], L: int) -> float:
    """log of the mean over all orders of prod_k p(x_{s_k} | x_{s_<k})."""
    logs = []
    for order in itertools.permutations(range(L)):
        hidden, lp = (1 << L) - 1, 0.0
        for i in order:  # reveal position i while the set ``hidden`` (which holds i) is masked
            lp += float(cond[hidden][i])
            hidden &= ~(1 << i)
        logs.append(lp)
    return float(torch.logsumexp(torch.tensor(logs), 0)) - math.log(len(logs))


def check_elbo(vocab: int = 3, length: int = 4, seed: int = 0,
               ks: tuple[int, ...] = (1, 8, 64, 512)) -> ElboCheck:
    network = ToyVocabulary(vocab, seed).eval()
    mask_id = vocab
    seqs = torch.tensor(list(itertools.product(range(vocab), repeat=length)))
    nelbos, logps = [], []
    for x in seqs:
        cond = conditional_logprobs(network, x, mask_id)
        nelbos.append(exact_nelbo(cond, length))
        logps.append(any_order_logprob(cond, length))
    report = ElboCheck(vocab, length, len(seqs), nelbo=sum(nelbos) / len(seqs),
                       nll=-sum(logps) / len(seqs),
                       total_probability=float(torch.tensor(logps).exp().sum()))
    for k in ks:
        mean, var = masked_nelbo(network, seqs, mask_id, t_samples=k, seed=seed,
                                 batch_size=4096)
        report.estimates.append((k, float(mean.mean()), math.sqrt(float(var.sum())) / len(seqs)))
    return report
