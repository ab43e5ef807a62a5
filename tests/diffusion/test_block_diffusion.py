"""BD3-LM: the [x_t ; x_0] attention mask against a position-by-position reference, and the
two limits of the block diffusion loss (block size 1: the AR-style factorisation; block size =
context: the MDLM loss)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlm.diffusion.objectives import (
    BlockDiffusionLoss,
    MaskedDiffusionLoss,
    block_diffusion_logits,
)
from dlm.models.transformer import Attention
from tests.conftest import tiny_net

MASK = 37


def reference_mask(L: int, bs: int) -> torch.Tensor:
    """allowed[q, k] for the 2L sequence [x_t ; x_0], written out one pair at a time."""
    allowed = torch.zeros(2 * L, 2 * L, dtype=torch.bool)
    for q in range(2 * L):
        for k in range(2 * L):
            q_noisy, k_noisy = q < L, k < L
            qb, kb = (q % L) // bs, (k % L) // bs
            if q_noisy:  # x_t: its own noisy block, and the clean blocks before it
                allowed[q, k] = (k_noisy and kb == qb) or (not k_noisy and kb < qb)
            else:  # x_0: clean blocks up to its own
                allowed[q, k] = (not k_noisy) and kb <= qb
    return allowed


@settings(max_examples=30, deadline=None)
@given(blocks=st.integers(1, 6), bs=st.sampled_from([1, 2, 3, 4, 8]))
def test_block_diffusion_mask_matches_the_reference(blocks, bs):
    L = blocks * bs
    mask = Attention.block_diffusion(bs).mask(torch.arange(2 * L), 2 * L)
    assert torch.equal(mask[0, 0], reference_mask(L, bs))


def test_bd3lm_with_one_block_is_the_mdlm_loss():
    """Block size = context: x_t sees only itself (bidirectionally), as in MDLM, so the same
    t and uniforms give exactly the same loss."""
    net = tiny_net()
    x0 = torch.randint(0, 30, (4, 16), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    mdlm = MaskedDiffusionLoss(MASK)
    noise = mdlm.draw(4, 16, g)
    bd3 = BlockDiffusionLoss(MASK, block_size=16)
    bd3_noise = {"t": noise["t"][:, None], "u": noise["u"]}
    a = mdlm(net, x0, noise=noise).loss
    b = bd3(net, x0, noise=bd3_noise).loss
    assert b.item() == pytest.approx(a.item(), rel=1e-5)


def ar_style_nll(net, x0: torch.Tensor) -> torch.Tensor:
    """Sum over b of -log p(x_b | x_<b) where the prediction sits on a MASK at slot b that sees
    the clean tokens before it (a causal pass over [x_<b, MASK])."""
    total = torch.zeros(x0.shape[0])
    for b in range(x0.shape[1]):
        inp = torch.cat([x0[:, :b], torch.full_like(x0[:, :1], MASK)], dim=1)
        logits = net(inp, attn=Attention.causal())[:, -1]
        total += F.cross_entropy(logits, x0[:, b], reduction="none")
    return total


def test_bd3lm_with_block_size_one_is_the_autoregressive_factorisation():
    """Block size 1: every masked token is predicted from the clean tokens before it, so the
    loss at t = 1 (all masked, weight 1) is the AR-style NLL, and any t gives it in
    expectation (E[1{u < t} / t] = 1 per token)."""
    net = tiny_net()
    B, T = 3, 12
    x0 = torch.randint(0, 30, (B, T), generator=torch.Generator().manual_seed(0))
    want = ar_style_nll(net, x0).sum() / (B * T)
    bd3 = BlockDiffusionLoss(MASK, block_size=1)
    all_masked = {"t": torch.ones(B, T), "u": torch.zeros(B, T)}
    assert bd3(net, x0, noise=all_masked).loss.item() == pytest.approx(want.item(), rel=1e-5)
    # Monte-Carlo over the noise: the mean converges to the same number
    n = 400
    g = torch.Generator().manual_seed(2)
    big = x0.repeat(n, 1)
    estimate = bd3(net, big, generator=g).loss.item()
    assert estimate == pytest.approx(want.item(), rel=0.05)


def test_each_noisy_block_sees_only_itself_and_earlier_clean_blocks():
    """Changing a later block (noisy or clean) never changes an earlier block's logits."""
    net = tiny_net()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 30, (1, 16), generator=g)
    xt = x0.masked_fill(torch.rand(1, 16, generator=g) < 0.5, MASK)
    base = block_diffusion_logits(net, xt, x0, 4)
    x0b, xtb = x0.clone(), xt.clone()
    x0b[:, 8:] = (x0b[:, 8:] + 1) % 30
    xtb[:, 8:] = MASK
    other = block_diffusion_logits(net, xtb, x0b, 4)
    assert torch.allclose(base[:, :8], other[:, :8], atol=1e-5)
    assert not torch.allclose(base[:, 8:], other[:, 8:], atol=1e-5)


# -- training, evaluation and sampling end to end ------------------------------------------------


@pytest.fixture(scope="module")
def bd3lm(tmp_path_factory, small_corpus):
    import dlm
    from tests.conftest import train_tiny

    out = tmp_path_factory.mktemp("bd3") / "run"
    train_tiny(out, small_corpus, "bd3lm", block_size=4)
    model = dlm.load(out)
    model.path = out
    return model


def test_a_trained_bd3lm_records_its_block_size_and_evaluates(bd3lm):
    assert bd3lm.kind == "bd3lm" and bd3lm.block_size == 4
    assert bd3lm.network.default_attention == Attention.block_causal(4)
    r = bd3lm.evaluate(eval_tokens=256, t_samples=2)
    assert r.upper_bound and 0 < r.bits_per_byte < 9 and r.se_bits_per_byte > 0


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_exact_cache_gives_the_same_tokens_as_no_cache(bd3lm, temperature):
    prompts = ["ROMEO", "To be, or not"]
    kw = dict(gen_length=16, steps=8, temperature=temperature, seed=3, stop_at_eos=False)
    exact = bd3lm.generate(prompts, trace=True, **kw)
    none = bd3lm.generate(prompts, trace=True, cache="none", **kw)
    assert exact.tokens == none.tokens and len(exact.tokens[0]) == 16
    assert exact.nfe == none.nfe
    for b in range(2):  # blocks of 4 counted from the text's start, decoded left to right
        row = exact.trace.row(b)
        first_block = row.prompt_lengths[0] // 4  # its tail decodes with the first new tokens
        assert row.steps[0].block == 0
        for s in row.steps:
            start = 4 * (first_block + s.block)
            assert all(start <= p < start + 4 for p in s.positions[0])


@pytest.mark.parametrize("method", [dict(threshold=0.3), dict(remasking="margin"),
                                    dict(remask_eta=0.3, remask_variant="conf")],
                         ids=["threshold", "margin", "remdm"])
def test_any_strategy_decodes_inside_the_blocks(bd3lm, method):
    kw = dict(gen_length=16, steps=16, stop_at_eos=False, **method)
    exact = bd3lm.generate("ROMEO", trace=True, **kw)
    assert exact.tokens == bd3lm.generate("ROMEO", cache="none", **kw).tokens
    assert bd3lm.mask_id not in exact.tokens[0]
    assert exact.trace.state_at()[0][-16:] == exact.tokens[0]


def test_bd3lm_batch_equals_one_at_a_time(bd3lm):
    prompts = ["ROMEO", "To be, or not"]
    both = bd3lm.generate(prompts, gen_length=12, steps=6)
    for i, p in enumerate(prompts):
        assert bd3lm.generate(p, gen_length=12, steps=6).tokens[0] == both.tokens[i]


def test_bd3lm_knobs_give_one_clear_error(bd3lm, small_corpus, tmp_path):
    from dlm.errors import DLMError
    from tests.conftest import train_tiny

    # any length: the canvas is rounded up to whole blocks, the text cut to gen_length
    assert len(bd3lm.generate("ROMEO", gen_length=10, stop_at_eos=False).tokens[0]) == 10
    with pytest.raises(DLMError, match="block_length"):
        bd3lm.generate("ROMEO", gen_length=8, block_length=4)
    with pytest.raises(DLMError, match="exact"):
        bd3lm.generate("ROMEO", gen_length=8, cache="dual")
    with pytest.raises(DLMError, match="left to right"):
        bd3lm.infill("a [MASK] b")
    with pytest.raises(DLMError, match="does not divide"):
        train_tiny(tmp_path / "x", small_corpus, "bd3lm", block_size=5)
    with pytest.raises(DLMError, match="bd3lm only"):
        train_tiny(tmp_path / "y", small_corpus, "mdlm", block_size=4)


# -- beyond the training context: the exact cache slides ------------------------------------------


class WindowSpy(torch.nn.Module):
    """Wraps a network and records how many keys each forward attends to."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config, self.seen = net, net.config, []
        self.default_attention = net.default_attention

    def new_cache(self, store=None):
        return self.net.new_cache(store)

    def forward(self, ids, attn=None, positions=None, cache=None):
        self.seen.append((0 if cache is None else cache.length) + ids.shape[1])
        return self.net(ids, attn=attn, positions=positions, cache=cache)


def test_ar_generates_past_its_context_with_a_sliding_window():
    from dlm.sample.config import SampleConfig
    from dlm.sample.driver import generate

    W = 16
    # one layer: a cached key depends only on its token and position, so the slid cache equals
    # recomputing the window (deeper nets keep the context each key was computed with)
    net = tiny_net(max_seq_len=W, n_layers=1)
    prompt = [3, 14, 15, 9, 2]
    spy = WindowSpy(net)
    gen = generate(spy, [prompt], SampleConfig(gen_length=40, stop_at_eos=False), kind="ar",
                   mask_id=MASK, eos_id=38, pad_id=39)
    assert len(gen.tokens[0]) == 40 and max(spy.seen) <= W
    # reference: each token predicted from the W - 1 tokens before it (absolute positions)
    seq = [38, *prompt]  # BOS first
    for _ in range(40):
        lo = max(0, len(seq) - (W - 1))
        window = torch.tensor([seq[lo:]])
        logits = net(window, attn=Attention.causal(),
                     positions=torch.arange(lo, len(seq))[None, :])[0, -1]
        logits[[MASK, 39]] = float("-inf")
        seq.append(int(logits.argmax()))
    assert gen.tokens[0] == seq[len(prompt) + 1:]


def test_bd3lm_generates_past_its_context_in_whole_blocks():
    from dlm.errors import DLMError
    from dlm.sample.config import SampleConfig
    from dlm.sample.driver import generate

    W, bs = 16, 4
    net = tiny_net(max_seq_len=W)
    net.default_attention = Attention.block_causal(bs)
    spy = WindowSpy(net)
    cfg = SampleConfig(gen_length=48, stop_at_eos=False)  # each block: half its masks in steps
    gen = generate(spy, [[3, 14, 15]], cfg, kind="bd3lm", mask_id=MASK, eos_id=38, pad_id=39)
    assert len(gen.tokens[0]) == 48 and MASK not in gen.tokens[0]
    assert max(spy.seen) <= W
    short = generate(net, [[3, 14, 15]], cfg.replace(gen_length=8), kind="bd3lm",
                     mask_id=MASK, eos_id=38, pad_id=39)
    assert gen.tokens[0][:8] == short.tokens[0]  # inside the window nothing changes
    with pytest.raises(DLMError, match="window"):
        generate(net, [list(range(20))], cfg, kind="bd3lm", mask_id=MASK, eos_id=38,
                 pad_id=39)
    with pytest.raises(DLMError, match="context"):
        generate(net, [[3]], cfg.replace(cache="none"), kind="bd3lm", mask_id=MASK,
                 eos_id=38, pad_id=39)


def test_flex_attention_path_matches_the_sdpa_mask():
    """The CUDA fast path (flex attention) computes the same attention as SDPA with the boolean
    mask; checked here with flex's eager CPU implementation."""
    pytest.importorskip("torch.nn.attention.flex_attention")  # older torch: nothing to test
    from dlm.models.transformer import FlexBlockDiffusion

    L, bs = 16, 4
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 2 * L, 8, generator=g) for _ in range(3))
    mask = Attention.block_diffusion(bs).mask(torch.arange(2 * L), 2 * L)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    got = FlexBlockDiffusion(2 * L, bs, "cpu", compiled=False)(q, k, v)
    assert torch.allclose(got, want, atol=1e-5)


def test_bd3lm_from_the_cli(bd3lm, small_corpus, tmp_path, capsys):
    from dlm.cli import main

    run = str(bd3lm.path)
    assert main(["sample", run, "ROMEO", "--gen-length", "8", "--steps", "4", "--animate"]) == 0
    assert "step 4/4" in capsys.readouterr().out
    assert main(["eval", run, "--eval-tokens", "256", "--t-samples", "2", "--json"]) == 0
    assert '"kind": "bd3lm"' in capsys.readouterr().out
    assert main(["info", run]) == 0
    assert "4 tokens per block" in capsys.readouterr().out
    common = ["--data", str(small_corpus), "--d-model", "32", "--n-layers", "2", "--n-heads",
              "4", "--seq-len", "64", "--max-steps", "2", "--progress", "--no-progress"]
    assert main(["train", "--kind", "bd3lm", "--block-size", "5", "--out",
                 str(tmp_path / "a"), *common]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert main(["train", "--kind", "mdlm", "--block-size", "4", "--out",
                 str(tmp_path / "b"), *common]) == 2
    assert "bd3lm only" in capsys.readouterr().err
    assert main(["sample", run, "ROMEO", "--gen-length", "8", "--block-length", "4"]) == 2
    assert "block_length" in capsys.readouterr().err
