"""The ELBO estimators against an exact sum over every mask pattern of a 3-token sequence."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from dlm.diffusion.likelihood import mask_count_draws, masked_nelbo
from dlm.diffusion.objectives import ARLoss, MaskedDiffusionLoss, stratified_times
from dlm.diffusion.schedules import CosineSchedule, LinearSchedule
from dlm.models.transformer import Attention
from tests.conftest import tiny_net

MASK = 7


def exact_nelbo(net, x: list[int]) -> float:
    """-ELBO = sum over mask sets M != {} of (m-1)!(L-m)!/L! * sum_{i in M} -log p(x_i | x_-M).

    (The integral over t of (1/t) * t^m (1-t)^(L-m) is the Beta function B(m, L-m+1).)
    """
    L = len(x)
    total = 0.0
    for m in range(1, L + 1):
        coef = math.factorial(m - 1) * math.factorial(L - m) / math.factorial(L)
        for M in itertools.combinations(range(L), m):
            xt = torch.tensor([[MASK if i in M else x[i] for i in range(L)]])
            logp = F.log_softmax(net(xt, attn=Attention.bidirectional())[0], -1)
            total += coef * sum(-logp[i, x[i]].item() for i in M)
    return total


def test_training_estimator_is_unbiased_for_the_exact_elbo():
    net = tiny_net(vocab_size=8)
    x = [1, 4, 2]
    exact = exact_nelbo(net, x)
    loss = MaskedDiffusionLoss(MASK, eps=1e-6)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([x] * 4000)
    with torch.no_grad():
        noise = loss.draw(len(x0), 3, g)
        t = noise["t"]
        xt, masked = loss.corrupt(x0, t, noise["u"])
        per_seq = loss.nelbo_terms(net(xt, attn=Attention.bidirectional()), x0, masked, t).sum(1)
    est, se = per_seq.mean().item(), per_seq.std().item() / math.sqrt(len(per_seq))
    assert abs(est - exact) < 4 * se, (est, exact, se)
    assert se < 0.05 * exact  # and the check is tight enough to mean something


def test_eval_estimator_matches_exact_elbo():
    net = tiny_net(vocab_size=8)
    x = torch.tensor([[1, 4, 2], [3, 3, 0]])
    exact = torch.tensor([exact_nelbo(net, r) for r in x.tolist()], dtype=torch.float64)
    mean, var = masked_nelbo(net, x, MASK, t_samples=3000, seed=0, batch_size=1000)
    se = var.sqrt()
    assert torch.all((mean - exact).abs() < 4 * se + 1e-9), (mean, exact, se)


def test_eval_estimator_is_exact_when_every_pattern_is_enumerated():
    """Weight L/m with m uniform on 1..L equals sum_m (1/m) E_{|M|=m}: check the identity."""
    net = tiny_net(vocab_size=8)
    x = [1, 4, 2]
    L = len(x)
    total = 0.0
    for m in range(1, L + 1):
        sets = list(itertools.combinations(range(L), m))
        for M in sets:
            xt = torch.tensor([[MASK if i in M else x[i] for i in range(L)]])
            logp = F.log_softmax(net(xt)[0], -1)
            total += (1 / L) * (L / m) * sum(-logp[i, x[i]].item() for i in M) / len(sets)
    assert abs(total - exact_nelbo(net, x)) < 1e-5


def test_mask_count_draws_are_stratified():
    m = mask_count_draws(128, 8, torch.Generator().manual_seed(3))
    assert m.min() >= 1 and m.max() <= 128
    assert [int((v - 1) // 16) for v in m.tolist()] == list(range(8))  # one per stratum


def test_stratified_times_cover_the_interval():
    t = stratified_times(16, torch.Generator().manual_seed(0), eps=1e-3)
    assert t.min() >= 1e-3 and t.max() <= 1
    assert sorted(int(v * 16) for v in ((t - 1e-3) / (1 - 1e-3)).tolist()) == list(range(16))


def test_schedule_weights():
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(LinearSchedule().weight(t), 1 / t)
    cos = CosineSchedule()
    h = 1e-6
    deriv = (cos.alpha(t + h) - cos.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(cos.weight(t), -deriv / (1 - cos.alpha(t)), rtol=1e-5, atol=1e-6)


def test_ar_loss_is_next_token_cross_entropy():
    net = tiny_net(vocab_size=8)
    x = torch.randint(0, 7, (3, 10))
    out = ARLoss()(net, x)
    logits = net(x[:, :-1], attn=Attention.causal())
    manual = F.cross_entropy(logits.reshape(-1, 8), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual)


def test_ar_token_noise_masks_inputs_only():
    net = tiny_net(vocab_size=8)
    x = torch.randint(0, 7, (64, 33))
    seen = []
    original = net.forward

    def spy(tokens, **kw):
        seen.append(tokens)
        return original(tokens, **kw)

    net.forward = spy
    g = torch.Generator().manual_seed(0)
    loss = ARLoss(MASK, token_noise=0.25)
    noise = loss.draw(64, 33, g)
    out = loss(net, x, noise=noise)
    inputs = seen[-1]
    masked = inputs == MASK
    assert 0.2 < masked.float().mean().item() < 0.3  # about p of the inputs
    assert torch.equal(masked, noise["u"] < 0.25)
    assert torch.equal(inputs[~masked], x[:, :-1][~masked])  # the rest untouched
    logits = original(inputs, attn=Attention.causal())  # targets are the clean next tokens
    manual = F.cross_entropy(logits.reshape(-1, 8), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual)
    assert ARLoss(MASK).draw(4, 33, g) == {}  # p = 0 draws nothing: the plain loss
