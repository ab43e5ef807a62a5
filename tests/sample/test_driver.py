"""The sampling driver: exact commit counts, block discipline, trace replay, batching, caches,
and token-for-token agreement with LLaDA's published generate() algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlm.errors import DLMError
from dlm.models.transformer import Attention
from dlm.sample.config import SampleConfig
from dlm.sample.driver import generate
from dlm.sample.strategies import filter_logits, num_transfer_tokens
from tests.conftest import tiny_net

MASK, EOS, PAD = 37, 38, 39
IDS = dict(mask_id=MASK, eos_id=EOS, pad_id=PAD)


def run(net, prompts, kind="mdlm", **kw):
    return generate(net, prompts, SampleConfig(**kw), kind=kind, **IDS)


def llada_reference(net, prompt, steps, gen_length, block_length, temperature, remasking,
                    generator, cfg_scale: float = 0.0):
    """LLaDA's generate() as published (one row, per-step top-k), with our RNG passed in;
    ``cfg_scale`` > 0: its classifier-free guidance (the prompt re-masked as unconditional,
    logits = un + (cfg_scale + 1) * (cond - un)).

    One addition, also in dlm: the MASK and PAD ids are never chosen as tokens (a trained LLaDA
    gives them ~0 probability; this random test net does not). Confidences are unchanged.
    """
    x = torch.full((1, len(prompt) + gen_length), MASK, dtype=torch.long)
    x[0, :len(prompt)] = torch.tensor(prompt)
    num_blocks = gen_length // block_length
    steps = steps // num_blocks
    P = len(prompt)
    prompt_index = x != MASK
    for nb in range(num_blocks):
        block_mask = x[:, P + nb * block_length: P + (nb + 1) * block_length] == MASK
        n = block_mask.sum(1, keepdim=True)
        ntt = torch.zeros(1, steps, dtype=torch.long) + n // steps
        for i in range(int(n % steps)):
            ntt[:, i] += 1
        for i in range(steps):
            mask_index = x == MASK
            if cfg_scale > 0:
                un_x = x.clone()
                un_x[prompt_index] = MASK
                logits, un = net(torch.cat([x, un_x]), attn=Attention.bidirectional()).chunk(2)
                logits = un + (cfg_scale + 1) * (logits - un)
            else:
                logits = net(x, attn=Attention.bidirectional())
            if temperature == 0:
                noisy = logits
            else:
                logits64 = logits.to(torch.float64)
                noise = torch.rand(logits64.shape, generator=generator, dtype=torch.float64)
                noisy = logits64.exp() / (-torch.log(noise)) ** temperature
            noisy = noisy.clone()
            noisy[..., [MASK, PAD]] = -np.inf if temperature == 0 else 0.0
            x0 = noisy.argmax(-1)
            if remasking == "low_confidence":
                p = F.softmax(logits.to(torch.float64), dim=-1)
                x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
            else:
                x0_p = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
            x0_p[:, P + (nb + 1) * block_length:] = -np.inf
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, x0_p, torch.tensor(-np.inf, dtype=torch.float64))
            _, select = torch.topk(conf[0], k=int(ntt[0, i]))
            x[0, select] = x0[0, select]
    return x[0, P:].tolist()


@pytest.mark.parametrize("steps,block_length", [(12, 24), (12, 8), (10, 24), (24, 4)])
def test_greedy_low_confidence_matches_llada_generate(steps, block_length):
    """The defaults (low_confidence, temperature 0) give LLaDA's tokens, in a batch too."""
    net = tiny_net()
    prompts = [[3, 14, 15, 9, 2, 6], [2, 7, 1, 8, 2, 8]]
    ours = run(net, prompts, steps=steps, gen_length=24, block_length=block_length)
    for b, prompt in enumerate(prompts):
        ref = llada_reference(net, prompt, steps, 24, block_length, 0.0, "low_confidence", None)
        assert ours.tokens[b] == ref


def test_random_remasking_commits_the_schedule_at_random_places():
    net = tiny_net()
    orders = []
    for seed in (0, 1):
        gen = run(net, [[1, 2]], steps=6, gen_length=12, remasking="random", seed=seed)
        assert [len(s.positions[0]) for s in gen.trace.steps] == [2] * 6
        orders.append([s.positions[0] for s in gen.trace.steps])
    assert orders[0] != orders[1]


def test_commits_exactly_gen_length_and_trace_replays():
    net = tiny_net()
    gen = run(net, [[1, 2, 3]], steps=8, gen_length=20, block_length=5)
    tr = gen.trace
    positions = [p for s in tr.steps for p in s.positions[0]]
    assert sorted(positions) == list(range(3, 23))  # every generated slot exactly once
    assert MASK not in gen.tokens[0] and len(gen.tokens[0]) == 20
    assert tr.state_at()[0] == [1, 2, 3] + gen.tokens[0]
    assert tr.state_at(0)[0] == [1, 2, 3] + [MASK] * 20
    assert len(tr.steps) == gen.nfe == 8
    # blocks never commit outside the current block
    for s in tr.steps:
        lo = 3 + 5 * s.block
        assert all(lo <= p < lo + 5 for p in s.positions[0])
    # the state after each step has exactly the scheduled number of masks left
    masks_left = [sum(t == MASK for t in tr.state_at(k)[0]) for k in range(9)]
    assert masks_left == [20, 17, 15, 12, 10, 7, 5, 2, 0]  # 5 per block over 2 steps: 3 then 2


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_batch_of_ragged_prompts_equals_one_at_a_time(kind):
    net = tiny_net()
    # (no empty prompt here: an all-MASK canvas has exactly tied confidences at mirrored
    # positions, and float noise, not the sampler, would decide those ties)
    prompts = [[5], [1, 2, 3, 4, 5, 6, 7], [9, 9, 9], [30, 2]]
    kw = dict(steps=8, gen_length=16, block_length=8, stop_at_eos=False)
    batch = run(net, prompts, kind, **kw)
    for b, p in enumerate(prompts):
        single = run(net, [p], kind, **kw)
        assert batch.tokens[b] == single.tokens[0], b
        for got, want in zip(batch.trace.row(b).steps, single.trace.steps):
            assert (got.positions, got.tokens) == (want.positions, want.tokens)
            np.testing.assert_allclose(got.confidences[0], want.confidences[0], atol=1e-4)


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_empty_prompt(kind):
    gen = run(tiny_net(), [[]], kind, steps=8, gen_length=8, stop_at_eos=False)
    assert len(gen.tokens[0]) == 8 and MASK not in gen.tokens[0]


def test_ar_cached_decoding_equals_uncached_greedy():
    net = tiny_net()
    prompt = [4, 8, 15, 16]
    gen = run(net, [prompt], "ar", gen_length=20, stop_at_eos=False)
    seq = [EOS, *prompt]  # the driver puts a BOS (= EOS id) first
    for _ in range(20):
        logits = net(torch.tensor([seq]), attn=Attention.causal())[0, -1]
        logits[[MASK, PAD]] = -np.inf  # never candidates
        seq.append(int(logits.argmax()))
    assert gen.tokens[0] == seq[5:]
    assert gen.nfe == 20


def test_ar_stops_when_every_row_has_ended():
    net = tiny_net()
    with torch.no_grad():  # make EOS overwhelmingly likely
        net.lm_head.weight[EOS] *= 0
        net.lm_head.weight[EOS] += net.norm.weight.sign() * 5
    gen = run(net, [[1, 2]], "ar", gen_length=20)
    assert gen.nfe < 20 and EOS in gen.tokens[0]


def test_num_transfer_tokens_even_split_remainder_first():
    m = torch.zeros(2, 10, dtype=torch.bool)
    m[0, :10] = True
    m[1, :7] = True
    assert num_transfer_tokens(m, 4).tolist() == [[3, 3, 2, 2], [2, 2, 2, 1]]


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.5)).tolist() == [[False, True, True, True]]


def test_sampling_with_temperature_is_seeded():
    net = tiny_net()
    a = run(net, [[1]], steps=8, gen_length=8, temperature=1.0, seed=1).tokens
    b = run(net, [[1]], steps=8, gen_length=8, temperature=1.0, seed=1).tokens
    c = run(net, [[1]], steps=8, gen_length=8, temperature=1.0, seed=2).tokens
    assert a == b and a != c


def steps_per_block(gen) -> list[int]:
    blocks = [s.block for s in gen.trace.steps]
    return [blocks.count(b) for b in sorted(set(blocks))]


def test_steps_split_over_blocks_as_evenly_as_possible():
    """Neither gen_length nor steps must divide: the last block is shorter, the first blocks
    take the remaining steps (LLaDA's rule for tokens per step)."""
    net = tiny_net()
    gen = run(net, [[1, 2]], steps=7, gen_length=10, block_length=4)
    assert steps_per_block(gen) == [3, 2, 2]
    assert len(gen.tokens[0]) == 10 and MASK not in gen.tokens[0]
    assert steps_per_block(run(tiny_net(max_seq_len=128), [[1]], steps=64, gen_length=96,
                               block_length=32)) == [22, 21, 21]
    even = run(net, [[1]], steps=8, gen_length=8, block_length=4)  # divisible: as before
    assert steps_per_block(even) == [4, 4] and even.config.steps == 8


def test_steps_follow_the_masks_of_each_block():
    """A short last block takes few steps (they go where the masks are); blocks of fixed text
    (infill) take none; the default is half of each block's masks."""
    from dlm.sample.driver import denoise

    net = tiny_net(max_seq_len=256)
    gen = run(net, [[1]], gen_length=130, block_length=64)
    assert steps_per_block(gen) == [32, 32, 1] and gen.config.steps == 65 and gen.nfe == 65
    gen = run(net, [[1]], gen_length=66, block_length=32, steps=33)
    assert steps_per_block(gen) == [16, 15, 2] and gen.nfe == 33
    canvas = [1, MASK, MASK] + [2] * 30 + [MASK, MASK]
    filled = denoise(net, [canvas], [1], SampleConfig(steps=2, block_length=4), kind="mdlm",
                     **IDS)
    assert filled.nfe == 2 and MASK not in filled.canvases[0]
    assert filled.canvases[0][3:33] == [2] * 30


def test_ar_ignores_the_diffusion_knobs():
    net = tiny_net()
    base = run(net, [[1, 2]], "ar", gen_length=12, temperature=0.9, seed=1).tokens
    for knobs in (dict(remasking="random"), dict(remasking="origin"), dict(steps=3),
                  dict(block_length=4), dict(threshold=0.5), dict(alg_temp=0.5),
                  dict(cache="dual"), dict(remask_eta=0.3)):
        assert run(net, [[1, 2]], "ar", gen_length=12, temperature=0.9, seed=1,
                   **knobs).tokens == base, knobs


def test_defaults_fit_the_model():
    """Without gen_length a masked diffusion canvas is cut to the context (64 here); without
    steps it takes half the masked slots, at least one per block; AR keeps 128 (it slides)."""
    net = tiny_net()
    gen = run(net, [[1] * 10])
    assert len(gen.tokens[0]) == 54 and gen.config.gen_length == 54
    assert gen.config.steps == 27 and len(gen.trace.steps) == 27
    blocks = run(net, [[1] * 10], block_length=4, gen_length=8)
    assert blocks.config.steps == 4 and steps_per_block(blocks) == [2, 2]
    assert run(net, [[1] * 10], kind="ar").config.gen_length == 128
    with pytest.raises(DLMError, match="no room"):
        run(net, [[1] * 64])


def test_bad_configs_are_clear_errors():
    net = tiny_net()
    with pytest.raises(DLMError, match="fewer than the blocks"):
        run(net, [[1]], steps=1, gen_length=8, block_length=4)
    with pytest.raises(DLMError, match="context"):
        run(net, [[1] * 60], steps=8, gen_length=8)
    with pytest.raises(DLMError, match="remasking"):
        run(net, [[1]], remasking="sometimes", gen_length=8, steps=8)
