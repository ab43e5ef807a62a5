"""The network against a naive reference written from the equations, position by position."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlm.models.transformer import Attention, Transformer
from tests.conftest import tiny_net


def rule(kind: str, block: int | None):
    """Who may see whom, stated plainly."""
    if kind == "bidirectional":
        return lambda i, j: True
    if kind == "causal":
        return lambda i, j: j <= i
    return lambda i, j: j // block <= i // block


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def naive_forward(net: Transformer, ids: list[int], allowed, positions: list[int]) -> torch.Tensor:
    """One row, explicit loops over queries, heads and keys. Returns logits [T, V]."""
    cfg = net.config
    T, H, Hkv, hd = len(ids), cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    pos = torch.tensor(positions, dtype=torch.float32)
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = pos[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(v):  # [T, heads, hd]
        x1, x2 = v[..., : hd // 2], v[..., hd // 2:]
        return v * cos[:, None] + torch.cat([-x2, x1], -1) * sin[:, None]

    def lin(layer, x):
        y = x @ layer.weight.T
        return y if layer.bias is None else y + layer.bias

    x = net.embed_tokens.weight[torch.tensor(ids)]
    for blk in net.blocks:
        a = blk.attn
        h = rms(x, blk.attn_norm.weight, cfg.norm_eps)
        q = rope(lin(a.q_proj, h).view(T, H, hd))
        k = rope(lin(a.k_proj, h).view(T, Hkv, hd))
        v = lin(a.v_proj, h).view(T, Hkv, hd)
        out = torch.zeros(T, H, hd)
        for i in range(T):
            for head in range(H):
                g = head // (H // Hkv)
                js = [j for j in range(T) if allowed(i, j)]
                s = torch.stack([q[i, head] @ k[j, g] / math.sqrt(hd) for j in js])
                w = torch.softmax(s, 0)
                out[i, head] = sum(wj * v[j, g] for wj, j in zip(w, js))
        x = x + out.reshape(T, H * hd) @ a.o_proj.weight.T
        h = rms(x, blk.mlp_norm.weight, cfg.norm_eps)
        m = blk.mlp
        x = x + (F.silu(h @ m.gate_proj.weight.T) * (h @ m.up_proj.weight.T)) @ m.down_proj.weight.T
    return rms(x, net.norm.weight, cfg.norm_eps) @ net.lm_head.weight.T


@settings(max_examples=60, deadline=None)
# block_diffusion (the 2L training mask) has its own reference test in test_block_diffusion.py
@given(kind=st.sampled_from([k for k in Attention.KINDS if k != "block_diffusion"]),
       T=st.integers(1, 12), block=st.integers(1, 5),
       pads=st.lists(st.integers(0, 11), min_size=1, max_size=3))
def test_mask_matches_rule(kind, T, block, pads):
    pads = [min(p, T - 1) for p in pads]
    kpm = torch.tensor([[j >= p for j in range(T)] for p in pads])
    spec = Attention(kind, block if kind == "block_causal" else None, kpm)
    m = spec.mask(torch.arange(T), T)
    allowed = rule(kind, block)
    for b, p in enumerate(pads):
        for i in range(T):
            for j in range(T):
                expect = (allowed(i, j) and j >= p) or i == j
                assert bool(m[b, 0, i, j]) == expect, (kind, b, i, j)


@pytest.mark.parametrize("kind,block", [("bidirectional", None), ("causal", None),
                                        ("block_causal", 3)])
@pytest.mark.parametrize("shape", [dict(), dict(n_kv_heads=2, qkv_bias=True),
                                   dict(n_kv_heads=1, tie_embeddings=False)])
def test_forward_matches_naive_reference(kind, block, shape):
    net = tiny_net(**shape)
    if shape.get("qkv_bias"):
        with torch.no_grad():
            for blk in net.blocks:
                for proj in (blk.attn.q_proj, blk.attn.k_proj, blk.attn.v_proj):
                    proj.bias.normal_(0, 0.3)
    ids = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(1))
    pad = [0, 3]  # row 1 is left-padded by 3
    kpm = torch.tensor([[j >= p for j in range(9)] for p in pad])
    positions = (kpm.long().cumsum(1) - 1).clamp(min=0)
    logits = net(ids, attn=Attention(kind, block, kpm), positions=positions)
    allowed = rule(kind, block)
    for b, p in enumerate(pad):
        ref = naive_forward(net, ids[b].tolist(), lambda i, j, p=p: (allowed(i, j) and j >= p)
                            or i == j, positions[b].tolist())
        torch.testing.assert_close(logits[b, p:], ref[p:], atol=1e-4, rtol=1e-4)


def test_a_wrong_mask_is_caught_by_the_reference():
    """The reference really checks the mask: causal logits differ from bidirectional ones."""
    net = tiny_net()
    ids = torch.randint(0, 40, (1, 6))
    ref = naive_forward(net, ids[0].tolist(), rule("causal", None), list(range(6)))
    bi = net(ids, attn=Attention.bidirectional())[0]
    assert not torch.allclose(bi[:-1], ref[:-1], atol=1e-3)


def test_left_padding_does_not_change_real_logits():
    net = tiny_net()
    ids = torch.randint(0, 40, (1, 7))
    for kind in ("bidirectional", "causal"):
        plain = net(ids, attn=Attention(kind))
        padded = torch.cat([torch.full((1, 4), 39), ids], 1)
        kpm = torch.tensor([[False] * 4 + [True] * 7])
        pos = (kpm.long().cumsum(1) - 1).clamp(min=0)
        out = net(padded, attn=Attention(kind, None, kpm), positions=pos)
        torch.testing.assert_close(out[:, 4:], plain, atol=1e-5, rtol=1e-5)


def test_kv_cache_incremental_equals_full_causal():
    net = tiny_net(n_kv_heads=2)
    ids = torch.randint(0, 40, (3, 12))
    full = net(ids, attn=Attention.causal())
    cache = net.new_cache()
    parts = [net(ids[:, :5], attn=Attention.causal(), cache=cache)]
    for t in range(5, 12):
        parts.append(net(ids[:, t:t + 1], attn=Attention.causal(), cache=cache))
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_cache_store_keeps_only_committed_prefix():
    """Feeding "uncached committed tokens + a block of masks" and storing only the committed
    part gives the same logits as a full forward, under causal and block-causal attention."""
    net = tiny_net()
    ids = torch.randint(0, 40, (2, 12))
    for spec in (Attention.causal(), Attention.block_causal(4)):
        full = net(ids, attn=spec)
        cache = net.new_cache(store=0)
        first = net(ids[:, :4], attn=spec, cache=cache)  # block 0: nothing committed yet
        assert cache.length == 0
        cache.store = 4  # block 0 is now final: store it while computing block 1
        second = net(ids[:, :8], attn=spec, cache=cache)
        assert cache.length == 4
        cache.store = 4
        third = net(ids[:, 4:12], attn=spec, cache=cache)
        assert cache.length == 8
        torch.testing.assert_close(first, full[:, :4], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(second, full[:, :8], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(third, full[:, 4:12], atol=1e-5, rtol=1e-5)


def test_config_rejects_bad_shapes():
    from dlm.models.transformer import TransformerConfig

    with pytest.raises(ValueError):
        TransformerConfig(vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ValueError):
        TransformerConfig(vocab_size=10, d_model=32, n_heads=4, n_kv_heads=3)
