"""Decoding methods of the sampling driver: scores, alg_temp, origin, Fast-dLLM threshold/factor
and caches, alpha(t) transfer, classifier-free guidance, beam and best-of-N, ReMDM re-masking,
hooks, min_length, shifted logits, and the config errors.

Two networks: ``tiny_net`` (random weights) checked against transcriptions of the published
loops (LLaDA, Fast-dLLM), and ``TableNet``, a toy denoiser whose logits come from a fixed table
indexed by RoPE position, so every slot's distribution is known in advance.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlm.errors import DLMError
from dlm.kinds import sequence_logprob
from dlm.models.transformer import Attention, KVCache, TransformerConfig
from dlm.sample.config import SampleConfig
from dlm.sample.driver import denoise, generate
from tests.conftest import tiny_net
from tests.sample.test_driver import llada_reference

V, MASK, EOS, PAD = 40, 37, 38, 39
IDS = dict(mask_id=MASK, eos_id=EOS, pad_id=PAD)
OFF = -1e4  # logit of a token a toy distribution gives (numerically) zero probability


def run(net, prompts, kind="mdlm", **kw):
    return generate(net, prompts, SampleConfig(**kw), kind=kind, **IDS)


def dist(probs: dict[int, float]) -> Tensor:
    """Logits [V] of the distribution ``probs`` (token -> probability; other tokens ~0)."""
    out = torch.full((V,), OFF, dtype=torch.float64)
    for tok, p in probs.items():
        out[tok] = math.log(p)
    return out


class TableNet(nn.Module):
    """Toy denoiser: logits[b, i] = table[positions[b, i]], whatever the input tokens.

    ``follow``: also set the logit of token ``input_ids[b, i] + 1`` to 20 where the input is not
    MASK, so a slot's logits predict "the next token" (shows which slot's logits are read).
    """

    def __init__(self, table: Tensor, shift_logits: bool = False, follow: bool = False):
        super().__init__()
        self.config = TransformerConfig(vocab_size=V, d_model=8, n_layers=1, n_heads=2,
                                        max_seq_len=64, shift_logits=shift_logits)
        self.dummy = nn.Parameter(torch.zeros(()))  # the driver reads the device from it
        self.table = table.float()  # [64, V]
        self.follow = follow
        self.inputs: list[Tensor] = []

    def new_cache(self, store: int | None = None) -> KVCache:
        return KVCache(self.config.n_layers, store=store)

    def forward(self, input_ids: Tensor, attn=None, positions: Tensor | None = None,
                cache=None) -> Tensor:
        self.inputs.append(input_ids.clone())
        B, T = input_ids.shape
        if positions is None:
            positions = torch.arange(T)[None, :]
        logits = self.table[positions.expand(B, T)].clone()  # [B, T, V]
        if self.follow:
            nxt = (input_ids + 1).clamp(max=V - 1)[..., None]
            follow = logits.scatter(-1, nxt, 20.0)  # the other logits are log-probs <= 0
            logits = torch.where((input_ids != MASK)[..., None], follow, logits)
        return logits


def peak(p: float) -> Tensor:
    """Logits [V] giving token 1 probability p, the rest spread thinly over tokens 2..21."""
    return dist({1: p, **{t: (1 - p) / 20 for t in range(2, 22)}})


def table_of(rows: dict[int, Tensor], default: Tensor | None = None) -> Tensor:
    """A [64, V] table: ``rows`` (position -> logits), every other position ``default``."""
    default = dist({0: 0.9, 1: 0.1}) if default is None else default
    table = default[None, :].repeat(64, 1)
    for pos, logits in rows.items():
        table[pos] = logits
    return table


def commits(gen, row: int = 0, drop_empty: bool = False) -> list[list[int]]:
    """Positions committed at each step of one row, sorted."""
    out = [sorted(s.positions[row]) for s in gen.trace.steps]
    return [p for p in out if p] if drop_empty else out


def assert_replays(gen) -> None:
    """The trace rebuilds every returned canvas, and no MASK is left."""
    assert gen.trace.state_at() == gen.canvases
    for c in gen.canvases:
        assert MASK not in c


# ----------------------------------------------------------------------------------------------
# 1. which positions: the scores, random / origin, alg_temp

# L wins on p(argmax), M on top1 - top2, E on -entropy: three different rankings.
L_DIST = dist({1: 0.6, 2: 0.3, **{t: 0.01 for t in range(3, 13)}})  # p .6, margin .3, H 1.13
M_DIST = dist({1: 0.55, **{t: 0.05 for t in range(2, 11)}})  # p .55, margin .5, H 1.68
E_DIST = dist({1: 0.5, 2: 0.5})  # p .5, margin 0, H .69


@pytest.mark.parametrize("remasking,order", [
    ("low_confidence", [[3], [4], [2]]),  # L > M > E
    ("margin", [[4], [3], [2]]),  # M > L > E
    ("entropy", [[2], [3], [4]]),  # E > L > M
])
def test_each_score_commits_its_best_position_first(remasking, order):
    net = TableNet(table_of({2: E_DIST, 3: L_DIST, 4: M_DIST}))
    gen = run(net, [[5, 6]], steps=3, gen_length=3, remasking=remasking)
    assert commits(gen) == order
    assert gen.tokens[0][1:] == [1, 1]  # the argmax of L and M
    assert_replays(gen)


def test_random_remasking_is_seeded():
    net = TableNet(table_of({}))
    orders = {}
    for seed in (0, 0, 1):
        gen = run(net, [[5]], steps=8, gen_length=8, remasking="random", seed=seed)
        assert [len(p) for p in commits(gen)] == [1] * 8
        order = [p[0] for p in commits(gen)]
        assert orders.setdefault(seed, order) == order  # same seed, same order
    assert orders[0] != orders[1]
    assert sorted(orders[0]) == list(range(1, 9))


def origin_reference(gen_length: int, steps: int, seed: int, eps: float = 1e-3):
    """Dream's ``origin``: at step i each mask is committed with probability 1 - s/t (t, s
    consecutive points of linspace(1, eps, steps + 1)), all of them at the last step. The coin
    flips use the generator's U(0, 1) draws of shape [1, gen_length], one per step."""
    g = torch.Generator().manual_seed(seed)
    timesteps = torch.linspace(1, eps, steps + 1, dtype=torch.float64)
    masked = torch.ones(gen_length, dtype=torch.bool)
    out = []
    for i in range(steps):
        u = torch.rand((1, gen_length), generator=g, dtype=torch.float64)[0]
        t, s = timesteps[i], timesteps[i + 1]
        p_transfer = 1 - s / t if i < steps - 1 else 1.0
        commit = masked & (u < p_transfer)
        out.append(commit.nonzero().flatten().tolist())
        masked &= ~commit
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_origin_commits_each_mask_with_probability_one_minus_s_over_t(seed):
    net = TableNet(table_of({}))
    gen = run(net, [[5, 6]], steps=4, gen_length=16, remasking="origin", seed=seed)
    ref = origin_reference(16, 4, seed)
    assert commits(gen) == [[2 + p for p in step] for step in ref]
    counts = [len(p) for p in commits(gen)]
    assert sum(counts) == 16 and len(counts) == 4
    assert counts != [4, 4, 4, 4]  # a random number per step, not the even split
    assert sorted(p for s in commits(gen) for p in s) == list(range(2, 18))
    assert_replays(gen)


# distinct p(argmax) at positions 1..8: top-k order is 2, 6, 4, 7 / 3, 5, 8, 1
ALG_TABLE = table_of({pos: dist({1: p, 2: 1 - p}) for pos, p in
                      zip(range(1, 9), [0.55, 0.95, 0.6, 0.85, 0.65, 0.9, 0.75, 0.58])})


def test_tiny_alg_temp_is_the_top_k_order():
    net = TableNet(ALG_TABLE)
    plain = run(net, [[5]], steps=4, gen_length=8)
    assert commits(plain) == [[2, 6], [4, 7], [3, 5], [1, 8]]
    for seed in (0, 1):
        tiny = run(net, [[5]], steps=4, gen_length=8, alg_temp=1e-6, seed=seed)
        assert commits(tiny) == commits(plain)


def test_huge_alg_temp_samples_positions_at_random():
    """scores / alg_temp vanishes: the order is that of the Gumbel keys the generator draws
    (one [1, L] draw per step), the scheduled count per step kept."""
    net = TableNet(ALG_TABLE)
    plain = commits(run(net, [[5]], steps=4, gen_length=8))
    orders = []
    for seed in (0, 1):
        gen = run(net, [[5]], steps=4, gen_length=8, alg_temp=1e6, seed=seed)
        g = torch.Generator().manual_seed(seed)
        masked = torch.ones(8, dtype=torch.bool)
        want = []
        for _ in range(4):
            u = torch.rand((1, 8), generator=g, dtype=torch.float64)[0]
            keys = torch.where(masked, -torch.log(-torch.log(u)), -math.inf)
            top = sorted(keys.topk(2).indices.tolist())
            masked[top] = False
            want.append([1 + p for p in top])
        assert commits(gen) == want
        assert [len(p) for p in commits(gen)] == [2] * 4
        assert_replays(gen)
        orders.append(commits(gen))
    assert orders[0] != orders[1] and plain not in orders


@pytest.mark.parametrize("alg_temp", [0.1, 1.0])
def test_alg_temp_keeps_the_scheduled_count(alg_temp):
    gen = run(tiny_net(), [[1, 2, 3]], steps=6, gen_length=12, block_length=6,
              alg_temp=alg_temp, temperature=0.5, remasking="entropy")
    assert [len(p) for p in commits(gen)] == [2] * 6
    assert_replays(gen)


# ----------------------------------------------------------------------------------------------
# 2. Fast-dLLM's threshold and factor rules


@torch.no_grad()
def fastdllm_reference(net, prompt, gen_length, block_length, threshold=None, factor=None):
    """Fast-dLLM's LLaDA generate() with ``get_transfer_index`` (threshold) or
    ``get_transfer_index_dynamic`` (factor), one row, temperature 0, low_confidence, no cache.
    As in dlm (and ``llada_reference``), MASK and PAD are never chosen as tokens.
    Returns (generated tokens, positions committed at each step)."""
    P = len(prompt)
    x = torch.full((1, P + gen_length), MASK, dtype=torch.long)
    x[0, :P] = torch.tensor(prompt)
    steps_taken = []
    for nb in range(gen_length // block_length):
        while True:
            mask_index = x == MASK
            logits = net(x, attn=Attention.bidirectional())
            mask_index[:, P + (nb + 1) * block_length:] = False
            noisy = logits.clone()
            noisy[..., [MASK, PAD]] = -np.inf
            x0 = noisy.argmax(-1)
            p = F.softmax(logits.to(torch.float64), dim=-1)
            x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.tensor(-np.inf, dtype=torch.float64))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            n = int(mask_index[0].sum())
            if factor is None:  # get_transfer_index with a threshold
                _, select = torch.topk(confidence[0], k=n)
                transfer[0, select] = True
                for k in range(1, n):
                    if confidence[0, select[k]] < threshold:
                        transfer[0, select[k]] = False
            else:  # get_transfer_index_dynamic
                threshs = [1 - factor / (m + 1) for m in range(1, n + 1)]
                threshs[0] = -1
                sorted_conf = torch.sort(confidence[0][mask_index[0]], descending=True)[0]
                for top_i in range(len(threshs)):
                    if sorted_conf[top_i] < threshs[top_i]:
                        break
                if top_i == 0 or top_i == len(threshs) - 1:
                    top_i += 1
                _, select = torch.topk(confidence[0], k=top_i)
                transfer[0, select] = True
            x[transfer] = x0[transfer]
            steps_taken.append(transfer[0].nonzero().flatten().tolist())
            if (x[:, P + nb * block_length: P + (nb + 1) * block_length] == MASK).sum() == 0:
                break
    return x[0, P:].tolist(), steps_taken


PROMPTS = [[3, 14, 15, 9, 2, 6], [2, 7, 1]]


@pytest.mark.parametrize("block_length,rule", [
    (4, dict(threshold=0.3)), (16, dict(threshold=0.3)), (8, dict(threshold=0.25)),
    (16, dict(threshold=0.5)),
    (4, dict(factor=2.0)), (16, dict(factor=2.0)), (8, dict(factor=1.0)),
])
def test_threshold_and_factor_match_fastdllm(block_length, rule):
    net = tiny_net()
    gen = run(net, PROMPTS, steps=1, gen_length=16, block_length=block_length, **rule)
    assert_replays(gen)
    assert gen.nfe == len(gen.trace.steps)
    multi = False
    for b, prompt in enumerate(PROMPTS):
        tokens, steps = fastdllm_reference(net, prompt, 16, block_length, **rule)
        assert gen.tokens[b] == tokens
        # the batch may idle a finished row (an empty step) until the other ends its block
        assert commits(gen, b, drop_empty=True) == steps
        multi |= any(len(s) > 1 for s in steps)
    assert multi  # the rule committed several tokens at some step (not just one per step)


def test_dynamic_rules_ignore_steps():
    net = tiny_net()
    for rule in (dict(threshold=0.3), dict(factor=2.0)):
        a = run(net, [[1, 2, 3]], steps=1, gen_length=16, block_length=4, **rule)
        b = run(net, [[1, 2, 3]], steps=16, gen_length=16, block_length=4, **rule)
        c = run(net, [[1, 2, 3]], steps=5, gen_length=16, block_length=4, **rule)  # 4 blocks
        assert commits(a) == commits(b) == commits(c)
        assert a.nfe == len(a.trace.steps) < 16


def test_threshold_commits_every_score_at_or_above_tau_and_at_least_one():
    ps = [0.9, 0.3, 0.7, 0.6, 0.45, 0.2]  # at positions 1..6
    net = TableNet(table_of({pos: peak(p) for pos, p in zip(range(1, 7), ps)}))
    gen = run(net, [[5]], steps=1, gen_length=6, threshold=0.6)
    # logits do not depend on the canvas: first every p >= 0.6, then the best one per step
    assert commits(gen) == [[1, 3, 4], [5], [2], [6]]
    assert gen.nfe == 4


# ----------------------------------------------------------------------------------------------
# 3. alpha(t) transfer schedules


@pytest.mark.parametrize("transfer,mask_frac", [
    ("linear", lambda t: t),
    ("cosine", lambda t: 1 - math.cos(math.pi * t / 2)),
])
def test_transfer_schedule_commit_counts(transfer, mask_frac):
    steps, n = 5, 12  # per block; two blocks
    gen = run(TableNet(table_of({})), [[5]], steps=2 * steps, gen_length=2 * n, block_length=n,
              transfer=transfer)
    left = [n] + [round(n * mask_frac(1 - (i + 1) / steps)) for i in range(steps)]
    want = [left[i] - left[i + 1] for i in range(steps)]
    assert [len(p) for p in commits(gen)] == want * 2
    assert want != [n // steps + (i < n % steps) for i in range(steps)]  # not the even split
    assert_replays(gen)


def test_linear_and_cosine_counts_differ():
    net = TableNet(table_of({}))
    counts = {t: [len(p) for p in commits(run(net, [[5]], steps=5, gen_length=12,
                                                transfer=t))] for t in ("linear", "cosine")}
    assert counts == {"linear": [2, 3, 2, 3, 2], "cosine": [4, 3, 3, 1, 1]}


# ----------------------------------------------------------------------------------------------
# 4. block discipline, 14. trace replay

METHODS = [
    dict(),
    dict(remasking="margin"),
    dict(remasking="entropy", temperature=0.7),
    dict(remasking="random"),
    dict(remasking="origin"),
    dict(threshold=0.3),
    dict(factor=2.0),
    dict(alg_temp=0.5),
    dict(transfer="cosine"),
    dict(remask_eta=0.3),
    dict(remask_eta=0.3, remask_variant="conf"),
    dict(cache="prefix", threshold=0.3),
    dict(cache="dual"),
    dict(cfg_scale=1.0),
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: ",".join(f"{k}={v}" for k, v in
                                                                   m.items()) or "default")
def test_blocks_never_commit_outside_the_current_block(method):
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    gen = run(tiny_net(), prompts, steps=8, gen_length=16, block_length=4, **method)
    assert_replays(gen)
    for b, p in enumerate(prompts):
        blocks_seen = []
        for s in gen.trace.steps:
            lo = len(p) + 4 * s.block
            assert all(lo <= q < lo + 4 for q in s.positions[b]), (s.step, s.positions[b])
            if s.remasked:
                assert all(lo <= q < lo + 4 for q in s.remasked[b])
            blocks_seen.append(s.block)
        assert blocks_seen == sorted(blocks_seen) and set(blocks_seen) == {0, 1, 2, 3}
        assert [s.step for s in gen.trace.steps] == list(range(len(gen.trace.steps)))
        assert gen.canvases[b][:len(p)] == p and len(gen.tokens[b]) == 16


# ----------------------------------------------------------------------------------------------
# 5. Fast-dLLM caches


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("rule", [dict(steps=8), dict(steps=1, threshold=0.3)])
def test_cached_batch_of_ragged_prompts_equals_one_at_a_time(cache, rule):
    net = tiny_net()
    prompts = [[5], [1, 2, 3, 4, 5, 6, 7], [9, 9, 9]]
    kw = dict(gen_length=16, block_length=8, cache=cache, **rule)
    batch = run(net, prompts, **kw)
    assert_replays(batch)
    if "threshold" in rule:
        assert batch.nfe == len(batch.trace.steps)
    for b, p in enumerate(prompts):
        single = run(net, [p], **kw)
        assert batch.tokens[b] == single.tokens[0], b
        assert commits(batch, b, drop_empty=True) == commits(single)
        assert single.nfe == len(single.trace.steps)


def test_prefix_cache_first_step_is_the_full_forward():
    net = tiny_net()
    kw = dict(steps=12, gen_length=12, block_length=12)
    none = run(net, [[3, 1, 4, 1, 5]], **kw).trace.steps
    prefix = run(net, [[3, 1, 4, 1, 5]], cache="prefix", **kw).trace.steps
    assert (prefix[0].positions, prefix[0].tokens) == (none[0].positions, none[0].tokens)
    np.testing.assert_allclose(prefix[0].confidences[0], none[0].confidences[0], atol=1e-6)
    # later steps read the cached (approximate) prompt keys: the confidences move
    assert not np.allclose([c for s in prefix for c in s.confidences[0]],
                           [c for s in none for c in s.confidences[0]], atol=1e-4)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_caches_are_exact_for_a_one_layer_network(cache):
    """With one layer, a slot's keys/values depend only on its token and position; the cached
    slots (prefix: before the block; dual: also after it) do not change during a block, so the
    cached run gives exactly the uncached tokens, in a ragged batch too."""
    net = tiny_net(n_layers=1)
    prompts = [[5, 6], [1, 2, 3, 4, 5, 6, 7]]
    kw = dict(steps=8, gen_length=16, block_length=4)
    none = run(net, prompts, **kw)
    cached = run(net, prompts, cache=cache, **kw)
    assert cached.tokens == none.tokens
    for a, b in zip(cached.trace.steps, none.trace.steps):
        assert a.positions == b.positions
        np.testing.assert_allclose(sum(a.confidences, []), sum(b.confidences, []), atol=1e-5)
    # with two layers the cache is an approximation: something differs
    deep = tiny_net()
    assert [s.confidences for s in run(deep, prompts, cache=cache, **kw).trace.steps] != \
        [s.confidences for s in run(deep, prompts, **kw).trace.steps]


def test_prefix_cache_is_exact_for_a_one_layer_shifted_network():
    net = tiny_net(n_layers=1, shift_logits=True)
    kw = dict(steps=8, gen_length=16, block_length=4)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    assert run(net, prompts, cache="prefix", **kw).tokens == run(net, prompts, **kw).tokens


def test_dual_cache_is_exact_for_a_one_layer_shifted_network():
    net = tiny_net(n_layers=1, shift_logits=True)
    kw = dict(steps=8, gen_length=16, block_length=4)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    none = run(net, prompts, **kw)
    dual = run(net, prompts, cache="dual", **kw)
    for a, b in zip(dual.trace.steps, none.trace.steps):
        np.testing.assert_allclose(sum(a.confidences, []), sum(b.confidences, []), atol=1e-5)
    assert dual.tokens == none.tokens


# ----------------------------------------------------------------------------------------------
# 6. classifier-free guidance


@torch.no_grad()
@pytest.mark.parametrize("steps,block_length", [(12, 12), (12, 4)])
def test_cfg_matches_llada_generate(steps, block_length):
    net = tiny_net()
    prompts = [[3, 14, 15, 9, 2, 6], [2, 7, 1]]
    gen = run(net, prompts, steps=steps, gen_length=12, block_length=block_length,
              cfg_scale=1.5)
    plain = run(net, prompts, steps=steps, gen_length=12, block_length=block_length)
    assert gen.tokens != plain.tokens  # guidance changed something
    assert gen.nfe == steps  # both passes in one batched call
    for b, prompt in enumerate(prompts):
        assert gen.tokens[b] == llada_reference(net, prompt, steps, 12, block_length, 0.0,
                                                "low_confidence", None, cfg_scale=1.5)
    assert_replays(gen)


# ----------------------------------------------------------------------------------------------
# 7. ragged batches equal one prompt at a time


@pytest.mark.parametrize("method", [
    dict(remasking="margin"),
    dict(remasking="entropy"),
    dict(threshold=0.3),
    dict(factor=1.0),
    dict(factor=2.0),
    dict(transfer="cosine"),
    dict(remask_eta=0.3, remask_variant="conf"),
    dict(cfg_scale=1.5),
], ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items()))
def test_batch_of_ragged_prompts_equals_one_at_a_time(method):
    net = tiny_net()
    prompts = [[5], [1, 2, 3, 4, 5, 6, 7], [9, 9, 9]]
    kw = dict(steps=8, gen_length=16, block_length=8, **method)
    batch = run(net, prompts, **kw)
    assert_replays(batch)
    for b, p in enumerate(prompts):
        single = run(net, [p], **kw)
        assert batch.tokens[b] == single.tokens[0], b
        assert commits(batch, b, drop_empty=True) == commits(single)
        if "remask_eta" in method:
            assert [s.remasked[b] if s.remasked else [] for s in batch.trace.steps] == \
                [s.remasked[0] if s.remasked else [] for s in single.trace.steps]
    if "remask_eta" in method:
        assert any(s.remasked for s in batch.trace.steps)  # it did re-mask


# ----------------------------------------------------------------------------------------------
# 8. beam search


@torch.no_grad()
def replayed_logprob(net, gen, row: int = 0) -> float:
    """Sum over the trace of log p(committed token) under the network at that step's canvas
    (MASK and PAD banned, as the driver scores candidates). One row, no padding."""
    trace = gen.trace.row(row)
    total = 0.0
    for k, s in enumerate(trace.steps):
        canvas = torch.tensor([trace.state_at(k)[0]])
        logits = net(canvas, attn=Attention.bidirectional())[0].double()
        logits[:, [MASK, PAD]] = -math.inf
        lp = torch.log_softmax(logits, -1)
        total += sum(float(lp[p, t]) for p, t in zip(s.positions[0], s.tokens[0]))
    return total


def test_beam_width_one_is_greedy():
    net = tiny_net()
    kw = dict(steps=8, gen_length=8)
    greedy = run(net, [[1, 2, 3]], **kw)
    beam1 = run(net, [[1, 2, 3]], beam_width=1, **kw)
    assert beam1.tokens == greedy.tokens
    assert commits(beam1) == commits(greedy)


def test_beam_score_is_its_replayed_logprob_and_beats_greedy():
    net = tiny_net()
    kw = dict(steps=4, gen_length=8, block_length=8)
    greedy = run(net, [[1, 2, 3]], **kw)
    beam = run(net, [[1, 2, 3]], beam_width=3, **kw)
    assert len(beam.scores) == 1 and len(beam.tokens) == 1
    assert_replays(beam)
    assert beam.scores[0] == pytest.approx(replayed_logprob(net, beam), abs=1e-4)
    greedy_lp = replayed_logprob(net, greedy)
    assert beam.scores[0] >= greedy_lp - 1e-6
    assert beam.tokens != greedy.tokens  # the search found something else here


def test_beam_on_independent_slots_finds_the_argmax_and_its_logprob():
    """With canvas-independent logits the best joint filling is the argmax of every slot."""
    ps = [0.7, 0.55, 0.8, 0.6]
    net = TableNet(table_of({pos: dist({3: p, 4: 1 - p}) for pos, p in zip(range(2, 6), ps)}))
    gen = run(net, [[5, 6]], steps=2, gen_length=4, beam_width=3)
    assert gen.tokens == [[3, 3, 3, 3]]
    assert gen.scores[0] == pytest.approx(sum(math.log(p) for p in ps), abs=1e-6)


def test_beam_batch_equals_one_at_a_time():
    net = tiny_net()
    prompts = [[1, 2, 3], [7, 8, 9, 10, 11]]
    kw = dict(steps=8, gen_length=8, block_length=4, beam_width=3)
    batch = run(net, prompts, **kw)
    assert len(batch.scores) == 2
    assert_replays(batch)
    for b, p in enumerate(prompts):
        single = run(net, [p], **kw)
        assert batch.tokens[b] == single.tokens[0]
        assert batch.scores[b] == pytest.approx(single.scores[0], abs=1e-4)


@pytest.mark.parametrize("extra", [dict(cache="prefix"), dict(cache="dual"),
                                   dict(cache="dual", cfg_scale=1.0)],
                         ids=["prefix", "dual", "dual-cfg"])
def test_beam_with_a_cache_reorders_it(extra):
    """One layer makes the caches exact (see above), so a cached beam search must find what the
    uncached one finds: only if each kept beam reads its own parent's cached keys/values."""
    net = tiny_net(n_layers=1)
    kw = dict(steps=8, gen_length=8, block_length=2, beam_width=3,
              cfg_scale=extra.get("cfg_scale", 0.0))
    none = run(net, [[1, 2, 3], [4, 5]], **kw)
    cached = run(net, [[1, 2, 3], [4, 5]], cache=extra["cache"], **kw)
    assert cached.tokens == none.tokens
    np.testing.assert_allclose(cached.scores, none.scores, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# 9. best-of-N


@torch.no_grad()
def ar_logprob(net, canvas: list[int], n_given: int) -> float:
    """Exact log p(canvas[n_given:] | canvas[:n_given]) under a causal pass (raw logits)."""
    logits = net(torch.tensor([canvas]), attn=Attention.causal())[0].double()
    lp = torch.log_softmax(logits, -1)
    return sum(float(lp[j - 1, canvas[j]]) for j in range(n_given, len(canvas)))


def test_best_of_n_ar_keeps_the_most_likely_sample():
    """The N samples of a prompt are the rows an equivalent batch (each prompt repeated N
    times) draws with the same seed; the kept one has the highest exact log-likelihood."""
    net = tiny_net()
    prompts = [[5, 6], [7, 8, 9]]
    kw = dict(gen_length=6, temperature=1.0, seed=4, stop_at_eos=False)
    best = run(net, prompts, "ar", num_samples=3, **kw)
    pool = run(net, [p for p in prompts for _ in range(3)], "ar", **kw)
    assert len(best.tokens) == len(best.scores) == 2
    assert_replays(best)
    for i, p in enumerate(prompts):
        cands = pool.canvases[3 * i: 3 * i + 3]
        assert len({tuple(c) for c in cands}) > 1  # the samples differ
        lps = [ar_logprob(net, c, len(p) + 1) for c in cands]  # + BOS
        k = int(np.argmax(lps))
        assert best.canvases[i] == cands[k]
        assert best.scores[i] == pytest.approx(lps[k], abs=1e-4)


def test_best_of_n_mdlm_keeps_the_best_scored_candidate():
    net = tiny_net()
    prompt = [3, 1, 4, 1]
    kw = dict(steps=8, gen_length=8, temperature=1.0, seed=2)
    best = run(net, [prompt], num_samples=3, **kw)
    pool = run(net, [prompt] * 3, **kw)
    assert len(best.scores) == 1
    assert_replays(best)
    ids = torch.tensor(pool.canvases)
    target = torch.zeros_like(ids, dtype=torch.bool)
    target[:, len(prompt):] = True
    with torch.no_grad():
        lps = sequence_logprob(net, "mdlm", ids, target, mask_id=MASK, t_samples=8, seed=2)
    k = int(lps.argmax())
    assert best.canvases[0] == pool.canvases[k]
    assert best.scores[0] == pytest.approx(float(lps[k]), abs=1e-4)
    assert best.scores[0] == pytest.approx(float(lps.max()), abs=1e-9)


# ----------------------------------------------------------------------------------------------
# 10. ReMDM re-masking


def test_remdm_remasks_only_generated_tokens_of_the_block():
    prompt = [1, 2, 3]
    gen = run(tiny_net(), [prompt], steps=16, gen_length=16, block_length=8, remask_eta=0.3)
    tr = gen.trace
    assert any(s.remasked for s in tr.steps)
    assert_replays(gen)
    for k, s in enumerate(tr.steps):
        before = tr.state_at(k)[0]
        lo = len(prompt) + 8 * s.block
        for q in (s.remasked[0] if s.remasked else []):
            assert lo <= q < lo + 8  # in the current block, never the prompt
            assert before[q] != MASK  # committed at an earlier step
            assert q not in s.positions[0]
        # commits + re-masks keep LLaDA's even schedule of masks left: 8 over 8 steps
        assert sum(t == MASK for t in tr.state_at(k + 1)[0][lo:lo + 8]) == 7 - k % 8


def test_remdm_never_remasks_given_tokens_inside_the_block():
    """An infill-style canvas: given tokens (7, 8) sit among the masks of the one block."""
    canvas = [1, 2, 3, MASK, MASK, 7, MASK, MASK, 8, MASK, MASK, MASK]
    gen = denoise(tiny_net(), [canvas], [3], SampleConfig(steps=7, remask_eta=0.5),
                  kind="mdlm", **IDS)
    assert any(s.remasked and s.remasked[0] for s in gen.trace.steps)
    for s in gen.trace.steps:
        assert not {5, 8} & set(s.remasked[0] if s.remasked else [])
        assert not {0, 1, 2, 5, 8} & set(s.positions[0])
    assert gen.canvases[0][:3] == [1, 2, 3] and gen.canvases[0][5] == 7
    assert gen.canvases[0][8] == 8
    assert_replays(gen)


def test_remdm_conf_variant_remasks_the_least_confident_first():
    gen = run(tiny_net(), [[1, 2, 3]], steps=8, gen_length=8, remask_eta=0.5,
              remask_variant="conf")
    conf: dict[int, float] = {}  # position -> confidence it was committed with
    n_remasked = 0
    for s in gen.trace.steps:
        if s.remasked and s.remasked[0]:
            r = len(s.remasked[0])
            n_remasked += r
            assert sorted(s.remasked[0]) == sorted(sorted(conf, key=conf.get)[:r])
            for q in s.remasked[0]:
                del conf[q]
        conf.update(zip(s.positions[0], s.confidences[0]))
    assert n_remasked >= 2
    assert_replays(gen)


def test_remdm_window_remasks_only_inside_it_and_holds_the_mask_count():
    steps = 10  # per block
    gen = run(tiny_net(), [[1, 2, 3]], steps=2 * steps, gen_length=16, block_length=8,
              remask_eta=0.5, remask_t_on=0.6, remask_t_off=0.2)
    tr = gen.trace
    assert_replays(gen)
    remasked_at = set()
    for k, s in enumerate(tr.steps):
        i = k % steps
        t = Fraction(1) - Fraction(i, steps)
        if s.remasked and s.remasked[0]:
            remasked_at.add(i)
            assert Fraction(1, 5) <= t <= Fraction(3, 5), (i, t)
        lo = 3 + 8 * s.block
        left = [sum(x == MASK for x in tr.state_at(j)[0][lo:lo + 8]) for j in (k, k + 1)]
        # ReMDM-loop: the count is held inside the window (both edges included)
        if Fraction(1, 5) <= t <= Fraction(3, 5):
            assert left[0] == left[1], (i, left)
    assert remasked_at and remasked_at <= {4, 5, 6, 7, 8}


def test_remdm_window_includes_its_closing_time():
    steps = 10
    gen = run(tiny_net(), [[1, 2, 3]], steps=steps, gen_length=8,
              remask_eta=0.5, remask_t_on=0.6, remask_t_off=0.2)
    left = [sum(x == MASK for x in row[3:]) for row in
            (gen.trace.state_at(k)[0] for k in range(steps + 1))]
    # t = 1 - i/10 lies in [0.2, 0.6] for i = 4..8: the mask count is held over those steps
    assert left[4] == left[5] == left[6] == left[7] == left[8] == left[9], left


# ----------------------------------------------------------------------------------------------
# 11. hooks


def test_on_logits_can_force_a_token():
    def force_five(step, logits, state):
        out = torch.full_like(logits, -1e4)
        out[..., 5] = 0.0
        return out

    gen = generate(tiny_net(), [[1, 2], [3, 4, 6]], SampleConfig(steps=4, gen_length=8,
                   block_length=4), kind="mdlm", on_logits=force_five, **IDS)
    assert gen.tokens == [[5] * 8, [5] * 8]


def test_on_logits_returning_none_is_an_error():
    with pytest.raises(DLMError, match="on_logits must return"):
        generate(tiny_net(), [[1, 2]], SampleConfig(steps=4, gen_length=4), kind="mdlm",
                 on_logits=lambda step, logits, state: None, **IDS)


def test_on_tokens_sees_each_step_as_the_trace_replays_it():
    seen = []

    def record(step, state):
        pad = (~state.valid).sum(1).tolist()
        seen.append((step, state.step, state.block,
                     [state.canvas[r, pad[r]:].tolist() for r in range(len(pad))]))

    prompts = [[1, 2], [3, 4, 5, 6, 7]]
    gen = generate(tiny_net(), prompts, SampleConfig(steps=8, gen_length=8, block_length=4,
                   threshold=0.3), kind="mdlm", on_tokens=record, **IDS)
    assert len(seen) == len(gen.trace.steps) == gen.nfe
    for k, (step, state_step, block, canvases) in enumerate(seen):
        assert step == state_step == k
        assert block == gen.trace.steps[k].block
        assert canvases == gen.trace.state_at(k + 1)


# ----------------------------------------------------------------------------------------------
# 12. min_length, 13. shifted logits


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_min_length_forbids_early_eos(kind):
    net = TableNet(table_of({}, default=dist({EOS: 0.7, 7: 0.2, 8: 0.1})))
    gen = run(net, [[5, 6]], kind, steps=8, gen_length=8, min_length=3, stop_at_eos=False)
    assert gen.tokens[0] == [7, 7, 7] + [EOS] * 5
    free = run(net, [[5, 6]], kind, steps=8, gen_length=8, stop_at_eos=False)
    assert free.tokens[0] == [EOS] * 8


def test_shifted_logits_read_the_previous_slot_without_a_bos():
    """``follow``: a slot's logits strongly predict (its input + 1). Read from slot i - 1, the
    prompt's last token 20 predicts 21 for the first generated slot, which then predicts 22...
    As in Dream's own sampler, nothing is put before the prompt."""
    table = table_of({}, default=dist({0: 0.5, 1: 0.5}))
    shifted = TableNet(table, shift_logits=True, follow=True)
    gen = run(shifted, [[19, 20]], steps=4, gen_length=4)
    assert gen.tokens == [[21, 22, 23, 24]]
    assert gen.canvases == [[19, 20, 21, 22, 23, 24]]
    assert shifted.inputs[0][0].tolist() == [19, 20, MASK, MASK, MASK, MASK]
    assert gen.trace.initial[0][0] == 19 and gen.trace.prompt_lengths == [2]
    assert commits(gen) == [[2], [3], [4], [5]]  # left to right: each is known once its left is
    assert_replays(gen)
    # the same network unshifted reads each slot's own (MASK) input: the table's argmax
    plain = TableNet(table, follow=True)
    gen = run(plain, [[19, 20]], steps=4, gen_length=4)
    assert gen.canvases == [[19, 20, 0, 0, 0, 0]]
    # nothing before the first slot predicts it: an empty prompt is refused, ragged rows fine
    with pytest.raises(DLMError, match="cannot fill the first position"):
        run(shifted, [[]], steps=4, gen_length=4)
    assert run(shifted, [[20], [18, 19, 20]], steps=2, gen_length=2).tokens == [[21, 22]] * 2


def test_cfg_unconditional_pass_masks_every_given_token_of_a_shifted_model():
    net = TableNet(table_of({}), shift_logits=True)
    run(net, [[19, 20]], steps=2, gen_length=2, cfg_scale=1.0)
    assert net.inputs[0].tolist() == [[19, 20, MASK, MASK], [MASK, MASK, MASK, MASK]]


# ----------------------------------------------------------------------------------------------
# 15. invalid configurations


@pytest.mark.parametrize("kw,match", [
    (dict(steps=0), "steps must be >= 1"),
    (dict(steps=1, gen_length=8, block_length=4), "fewer than the blocks"),
    (dict(gen_length=0), "gen_length must be in"),
    (dict(gen_length=100000), "gen_length must be in"),
    (dict(threshold=0.0), "threshold must be in"),
    (dict(threshold=1.5), "threshold must be in"),
    (dict(factor=0.0), "factor must be > 0"),
    (dict(threshold=0.5, factor=1.0), "one of threshold and factor"),
    (dict(remasking="sometimes"), "unknown remasking"),
    (dict(cache="full"), "unknown cache"),
    (dict(transfer="quadratic"), "unknown transfer"),
    (dict(remasking="origin", threshold=0.5), "remasking='origin' decides how many"),
    (dict(remask_eta=0.1, threshold=0.5), "remask_eta works with a fixed number of steps"),
    (dict(num_samples=2, beam_width=2), "one of num_samples"),
    (dict(remask_t_on=0.3, remask_t_off=0.3), "remask_t_off < remask_t_on"),
    (dict(remask_t_on=0.3, remask_t_off=0.5), "remask_t_off < remask_t_on"),
])
def test_bad_configs_are_clear_errors(kw, match):
    cfg = {"steps": 8, "gen_length": 8, **kw}
    with pytest.raises(DLMError, match=match):
        run(TableNet(table_of({})), [[1]], **cfg)


def test_cfg_on_an_ar_model_is_an_error():
    with pytest.raises(DLMError, match="cfg_scale.*masked diffusion"):
        run(TableNet(table_of({})), [[1]], "ar", gen_length=4, cfg_scale=1.0)


# -- regressions found in review ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_beam_wider_than_the_allowed_tokens_still_commits_real_tokens(kind):
    """top_k=1 leaves one allowed token per slot: a beam of 3 must equal greedy (no NaN score,
    no banned token committed)."""
    net = tiny_net()
    kw = dict(steps=8, gen_length=8, top_k=1)
    greedy = run(net, [[1, 2, 3]], kind=kind, **kw)
    beam = run(net, [[1, 2, 3]], kind=kind, beam_width=3, **kw)
    assert beam.tokens == greedy.tokens
    assert math.isfinite(beam.scores[0])
    assert all(t not in (MASK, PAD) for t in beam.tokens[0])


def test_best_of_n_scores_only_up_to_the_first_eos():
    """Tokens after EOS are cut from the text, so they must not rank the samples."""
    net = tiny_net()

    def eos_at_2(step, logits, state):
        if state.start == 3 + 2:  # AR: the block is one slot; slot 5 = third generated token
            logits[:, :, EOS] = 1e4
        return logits

    cfg = SampleConfig(gen_length=12, temperature=1.0, num_samples=3, seed=1)
    gen = generate(net, [[1, 2]], cfg, kind="ar", on_logits=eos_at_2, **IDS)
    row = gen.canvases[0]  # [BOS, 1, 2, generated ...]
    assert EOS in row[3:]
    end = row.index(EOS, 3) + 1  # the EOS itself counts, what follows does not
    ids = torch.tensor([row])
    target = torch.zeros_like(ids, dtype=torch.bool)
    target[0, 3:end] = True  # [BOS, 1, 2] is the prompt
    want = sequence_logprob(net, "ar", ids, target, mask_id=MASK, shift=1)
    assert gen.scores[0] == pytest.approx(float(want), abs=1e-6)


def test_ragged_infill_with_blocks_equals_one_at_a_time():
    net = tiny_net()
    a = [5, 6, 7, 8, 9, 10, MASK, MASK, MASK, 11, MASK, MASK, MASK, MASK, MASK, 12]
    b = [5, MASK, MASK, 13, MASK, MASK, MASK, 14, 15]
    cfg = SampleConfig(steps=8, block_length=4)
    for extra in ({}, {"threshold": 0.3}):
        c = cfg.replace(**extra)
        both = denoise(net, [a, b], [0, 0], c, kind="mdlm", **IDS)
        for i, row in enumerate((a, b)):
            alone = denoise(net, [row], [0], c, kind="mdlm", **IDS)
            assert both.canvases[i] == alone.canvases[0]
            assert [s.positions[i] for s in both.trace.steps if s.positions[i]] == \
                [s.positions[0] for s in alone.trace.steps if s.positions[0]]


def test_a_prompt_holding_the_mask_token_is_refused():
    with pytest.raises(DLMError, match="mask token"):
        run(tiny_net(), [[1, MASK, 2]], steps=4, gen_length=4)


@pytest.mark.parametrize("bad,match", [
    (dict(threshold=0.5, remasking="entropy"), "entropy"),
    (dict(threshold=0.5, alg_temp=0.5), "alg_temp"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(cfg_scale=float("inf")), "cfg_scale"),
    (dict(gen_length="8"), "gen_length"),
    (dict(steps=8.0), "steps"),
    (dict(remask_eta=0.1, remask_t_on=1.0, remask_t_off=0.5), "remask_t_on"),
    (dict(remask_eta=0.1, remask_variant="conf", remasking="random"), "conf"),
    (dict(num_samples=2), "best-of-N"),
])
def test_more_invalid_configs(bad, match):
    with pytest.raises(DLMError, match=match):
        SampleConfig(**bad).validate()


def test_one_stop_string_is_not_split_into_characters():
    assert SampleConfig(stop="END").stop == ["END"]


# ---------------------------------------------------------------------------------------------
# ancestral sampling: temperature-1 draws follow the network's own conditionals


def test_gumbel_sampling_draws_from_the_tempered_softmax():
    from dlm.sample.strategies import sample_tokens

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    g = torch.Generator().manual_seed(0)
    for t in (1.0, 0.5):
        draws = sample_tokens(logits.expand(100_000, -1), t, g)
        freq = torch.bincount(draws, minlength=5).double() / 100_000
        torch.testing.assert_close(freq, (logits[0].double() / t).softmax(-1), atol=6e-3,
                                   rtol=0)


def test_random_order_one_token_per_step_is_exact_ancestral_sampling():
    """Two masked slots, random order, one per step, temperature 1: the first slot's marginal
    must be 1/2 p(a) + 1/2 sum_b p(b) p(a | b), from the network's own conditionals."""
    torch.manual_seed(3)
    net = tiny_net(vocab_size=V)
    prompt = [5, 9]
    n = 40_000
    gen = run(net, [prompt] * n, steps=2, gen_length=2, block_length=2, remasking="random",
              temperature=1.0, seed=0, stop_at_eos=False)
    first = torch.tensor([t[0] for t in gen.tokens])

    def probs(canvas):
        with torch.no_grad():
            logits = net(torch.tensor([canvas]), attn=Attention.bidirectional())[0].double()
        logits[:, [MASK, PAD]] = -math.inf  # never drawn
        return logits.softmax(-1)

    both_masked = probs(prompt + [MASK, MASK])
    p_a, p_b = both_masked[2], both_masked[3]
    given_b = torch.stack([probs(prompt + [MASK, b])[2] if p_b[b] > 0 else torch.zeros(V,
                          dtype=torch.float64) for b in range(V)])  # [b, a]
    expected = 0.5 * p_a + 0.5 * (p_b[:, None] * given_b).sum(0)
    freq = torch.bincount(first, minlength=V).double() / n
    torch.testing.assert_close(freq, expected, atol=8e-3, rtol=0)
    assert (freq - expected).abs().sum() < 0.08  # total variation well inside sampling noise
