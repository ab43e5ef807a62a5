"""Mixture-of-experts families: LLaDA-MoE (inclusionAI/LLaDA-MoE-7B-A1B-*) and LLaDA2
(inclusionAI/LLaDA2.0-mini / -flash). Tiny random checkpoints are written with the published
tensor names, config keys and ids (PAD = EOS, no mask id in config.json), loaded by dlm and
compared with a forward pass written here, token by token, from each family's equations
(router, top-k, normalisation, shared expert, q/k norms, partial rotary, LLaDA2's fused q/k/v
and block-causal attention); then decoded against a transcription of each family's sampler,
exported back and fine-tuned with LoRA."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import dlm
from dlm.errors import DLMError
from dlm.models.transformer import MoE, TransformerConfig
from tests.models.test_hf import EOS, MASK, V, randn, rms, write_checkpoint, write_tokenizer
from tests.sample.test_published_samplers import (  # (MASK at -1e4: see that file)
    left_padded,
    llada_generate,
    no_mask_logits,
)

D, HEADS = 32, 4

LLADA_MOE_CONFIG = {
    "architectures": ["LLaDAMoEModelLM"], "model_type": "llada",  # as published: not lladamoe
    "vocab_size": V, "hidden_size": D, "num_hidden_layers": 3, "num_attention_heads": HEADS,
    "num_key_value_heads": HEADS, "dense_intermediate_size": 48, "expert_intermediate_size": 16,
    "shared_expert_intermediate_size": 24, "num_experts": 8, "num_experts_per_tok": 3,
    "moe_layer_freq": [0, 1, 1], "moe_router_enable_expert_bias": True,
    "norm_topk_prob": True,  # stored, and ignored by LLaDA-MoE's code
    "routed_scaling_factor": 4.0,  # likewise
    "qk_layernorm": True, "rope_theta": 50000.0, "partial_rotary_factor": 1.0,
    "rope_scaling": None, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "attention_bias": False, "clip_qkv": None, "hidden_act": "silu",
    "tie_word_embeddings": False, "eos_token_id": EOS, "pad_token_id": EOS}

LLADA2_CONFIG = {
    "architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe", "vocab_size": V,
    "hidden_size": D, "num_hidden_layers": 3, "num_attention_heads": HEADS,
    "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48,
    "moe_intermediate_size": 8, "num_experts": 16, "num_experts_per_tok": 4,
    "num_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 4, "topk_group": 2,
    "routed_scaling_factor": 2.5, "score_function": "sigmoid", "norm_topk_prob": True,
    "moe_router_enable_expert_bias": True, "use_qkv_bias": False, "use_bias": False,
    "use_qk_norm": True, "rms_norm_eps": 1e-6, "rope_theta": 600000.0,
    "partial_rotary_factor": 0.5, "rope_scaling": None, "max_position_embeddings": 256,
    "tie_word_embeddings": False, "pad_token_id": EOS, "eos_token_id": EOS}


def swiglu_weights(prefix: str, d: int, ff: int, g) -> dict:
    return {prefix + "gate_proj.weight": randn(ff, d, g=g),
            prefix + "up_proj.weight": randn(ff, d, g=g),
            prefix + "down_proj.weight": randn(d, ff, g=g)}


def llada_moe_weights(c=LLADA_MOE_CONFIG, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, hd = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"]
    sd = {"model.embed_tokens.weight": randn(V, d, scale=1.0, g=g),
          "model.norm.weight": 1 + randn(d, scale=0.1, g=g), "lm_head.weight": randn(V, d, g=g)}
    for i, moe in enumerate(c["moe_layer_freq"]):
        p = f"model.layers.{i}."
        sd.update({p + "input_layernorm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "post_attention_layernorm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "self_attn.q_norm.weight": 1 + randn(hd, scale=0.1, g=g),
                   p + "self_attn.k_norm.weight": 1 + randn(hd, scale=0.1, g=g)})
        for x in "qkvo":
            sd[p + f"self_attn.{x}_proj.weight"] = randn(d, d, g=g)
        if not moe:
            sd.update(swiglu_weights(p + "mlp.", d, c["dense_intermediate_size"], g))
            continue
        sd[p + "mlp.gate.weight"] = randn(c["num_experts"], d, scale=1.0, g=g)
        sd[p + "mlp.expert_bias"] = randn(c["num_experts"], scale=0.05, g=g)
        for e in range(c["num_experts"]):
            sd.update(swiglu_weights(p + f"mlp.experts.{e}.", d, c["expert_intermediate_size"],
                                     g))
        if c["shared_expert_intermediate_size"]:
            sd.update(swiglu_weights(p + "shared_expert.", d,
                                     c["shared_expert_intermediate_size"], g))
    return sd


def llada2_weights(c=LLADA2_CONFIG, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, hd = c["hidden_size"], c["head_dim"]
    rows = (c["num_attention_heads"] + 2 * c["num_key_value_heads"]) * hd
    sd = {"model.word_embeddings.weight": randn(V, d, scale=1.0, g=g),
          "model.norm.weight": 1 + randn(d, scale=0.1, g=g), "lm_head.weight": randn(V, d, g=g)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd.update({p + "input_layernorm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "post_attention_layernorm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "attention.query_key_value.weight": randn(rows, d, g=g),
                   p + "attention.query_layernorm.weight": 1 + randn(hd, scale=0.1, g=g),
                   p + "attention.key_layernorm.weight": 1 + randn(hd, scale=0.1, g=g),
                   p + "attention.dense.weight": randn(d, c["num_attention_heads"] * hd, g=g)})
        if i < c["first_k_dense_replace"]:
            sd.update(swiglu_weights(p + "mlp.", d, c["intermediate_size"], g))
            continue
        sd[p + "mlp.gate.weight"] = randn(c["num_experts"], d, scale=1.0, g=g)
        sd[p + "mlp.gate.expert_bias"] = randn(c["num_experts"], scale=0.2, g=g)
        for e in range(c["num_experts"]):
            sd.update(swiglu_weights(p + f"mlp.experts.{e}.", d, c["moe_intermediate_size"], g))
        sd.update(swiglu_weights(p + "mlp.shared_experts.", d,
                                 c["moe_intermediate_size"] * c["num_shared_experts"], g))
    return sd


def write_moe(path, config, weights, shards=1, mask_in_tokenizer_config=False):
    """A checkpoint as published: no mask id in config.json; the mask token is the
    vocabulary's ``<|mask|>`` (named by tokenizer_config.json when asked)."""
    write_checkpoint(path, config, weights, shards, tokenizer=False)
    write_tokenizer(path, mask_token="<|mask|>")
    if mask_in_tokenizer_config:
        (path / "tokenizer_config.json").write_text(json.dumps(
            {"mask_token": "<|mask|>", "eos_token": "<|endoftext|>", "add_bos_token": False}))
    return path


# -- the reference: each family's equations, written out ------------------------------------

def rope_part(x, theta, r, positions):
    """Rotate-half RoPE on the first r dims of each head of x [B, H, T, Dh]."""
    inv = 1.0 / theta ** (torch.arange(0, r, 2, dtype=torch.float64) / r)
    freqs = positions.double()[:, None, :, None] * inv  # [B, 1, T, r/2]
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    rot, rest = x[..., :r], x[..., r:]
    half = torch.cat([-rot[..., r // 2:], rot[..., :r // 2]], -1)
    return torch.cat([rot * cos + half * sin, rest], -1)


def attention(h, wq, wk, wv, wo, c, qn, kn, eps, hd, rot, allowed, positions):
    B, T, _ = h.shape
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    q = (h @ wq.T).view(B, T, nh, hd).transpose(1, 2)
    k = (h @ wk.T).view(B, T, nkv, hd).transpose(1, 2)
    v = (h @ wv.T).view(B, T, nkv, hd).transpose(1, 2)
    q, k = rms(q, qn, eps), rms(k, kn, eps)  # per head, before RoPE
    q = rope_part(q, c["rope_theta"], rot, positions)
    k = rope_part(k, c["rope_theta"], rot, positions)
    k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
    s = (q @ k.transpose(-1, -2) / math.sqrt(hd)).masked_fill(~allowed, -math.inf)
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, nh * hd) @ wo.T


def swiglu(x, sd, p):
    return (F.silu(x @ sd[p + "gate_proj.weight"].T) * (x @ sd[p + "up_proj.weight"].T)) \
        @ sd[p + "down_proj.weight"].T


def llada_moe_experts(x, sd, p, c):
    """LLaDA-MoE, token by token: p = softmax(x Wg) + expert bias; the top k of these are the
    experts and their weights (no renormalisation, no scale, whatever the config says)."""
    out = torch.zeros_like(x)
    for t in range(len(x)):
        probs = (x[t] @ sd[p + "mlp.gate.weight"].T).softmax(-1) + sd[p + "mlp.expert_bias"]
        w, idx = probs.topk(c["num_experts_per_tok"])
        for wk, e in zip(w, idx.tolist()):
            out[t] += wk * swiglu(x[t], sd, p + f"mlp.experts.{e}.")
    return out


def llada2_experts(x, sd, p, c):
    """LLaDA2, token by token: s = sigmoid(x Wg); groups of experts scored on s + bias by the
    sum of their two best; the topk_group best groups; among them the top k on s + bias;
    weights the unbiased s, renormalised (+1e-20), times routed_scaling_factor."""
    E, G = c["num_experts"], c["n_group"]
    out = torch.zeros_like(x)
    for t in range(len(x)):
        s = torch.sigmoid(x[t] @ sd[p + "mlp.gate.weight"].T)
        biased = s + sd[p + "mlp.gate.expert_bias"]
        group_best = [sorted(biased[g * E // G:(g + 1) * E // G].tolist())[-2:] for g in range(G)]
        groups = sorted(range(G), key=lambda g: -sum(group_best[g]))[:c["topk_group"]]
        allowed = [e for e in range(E) if e // (E // G) in groups]
        chosen = sorted(allowed, key=lambda e: -biased[e].item())[:c["num_experts_per_tok"]]
        w = s[chosen] / (s[chosen].sum() + 1e-20) * c["routed_scaling_factor"]
        for wk, e in zip(w, chosen):
            out[t] += wk * swiglu(x[t], sd, p + f"mlp.experts.{e}.")
    return out


def llada_moe_reference(sd, ids, c=LLADA_MOE_CONFIG):
    sd = {k: v.double() for k, v in sd.items()}
    eps, hd = c["rms_norm_eps"], c["hidden_size"] // c["num_attention_heads"]
    T = ids.shape[1]
    x = sd["model.embed_tokens.weight"][ids]
    allowed = torch.ones(T, T, dtype=torch.bool)
    positions = torch.arange(T)[None].expand(len(ids), T)
    for i, moe in enumerate(c["moe_layer_freq"]):
        p = f"model.layers.{i}."
        a = rms(x, sd[p + "input_layernorm.weight"], eps)
        x = x + attention(a, *(sd[p + f"self_attn.{n}_proj.weight"] for n in "qkvo"), c,
                          sd[p + "self_attn.q_norm.weight"], sd[p + "self_attn.k_norm.weight"],
                          eps, hd, int(hd * c["partial_rotary_factor"]), allowed, positions)
        m = rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        if not moe:
            x = x + swiglu(m, sd, p + "mlp.")
            continue
        flat = m.reshape(-1, m.shape[-1])
        y = llada_moe_experts(flat, sd, p, c)
        if c["shared_expert_intermediate_size"]:
            y = y + swiglu(flat, sd, p + "shared_expert.")
        x = x + y.view_as(m)
    return rms(x, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


def llada2_reference(sd, ids, c=LLADA2_CONFIG, block=32):
    """LLaDA2's forward under its block-causal mask: slot i sees slot j iff j // 32 <= i // 32
    (blocks counted from slot 0), positions 0..T-1."""
    sd = {k: v.double() for k, v in sd.items()}
    eps, hd = c["rms_norm_eps"], c["head_dim"]
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    T = ids.shape[1]
    slot = torch.arange(T)
    allowed = slot[None, :] // block <= slot[:, None] // block
    positions = slot[None].expand(len(ids), T)
    x = sd["model.word_embeddings.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms(x, sd[p + "input_layernorm.weight"], eps)
        wq, wk, wv = sd[p + "attention.query_key_value.weight"].split(
            [nh * hd, nkv * hd, nkv * hd])
        x = x + attention(a, wq, wk, wv, sd[p + "attention.dense.weight"], c,
                          sd[p + "attention.query_layernorm.weight"],
                          sd[p + "attention.key_layernorm.weight"], eps, hd,
                          int(hd * c["partial_rotary_factor"]), allowed, positions)
        m = rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        if i < c["first_k_dense_replace"]:
            x = x + swiglu(m, sd, p + "mlp.")
            continue
        flat = m.reshape(-1, m.shape[-1])
        y = llada2_experts(flat, sd, p, c) + swiglu(flat, sd, p + "mlp.shared_experts.")
        x = x + y.view_as(m)
    return rms(x, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


def ids_of(T, seed=0, B=2):
    return torch.randint(0, 44, (B, T), generator=torch.Generator().manual_seed(seed))  # words


def logits(model, ids):
    with torch.no_grad():
        return model.network(ids).double()


# -- loading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shards", [1, 3])
def test_llada_moe_loads_as_published_and_matches_the_reference(tmp_path, shards):
    sd = llada_moe_weights()
    model = dlm.load(write_moe(tmp_path / "m", LLADA_MOE_CONFIG, sd, shards), device="cpu")
    assert model.config["source"]["format"] == "llada_moe" and model.kind == "mdlm"
    assert model.mask_id == MASK and model.eos_id == model.pad_id == EOS
    cfg = model.network.config
    assert (cfg.n_experts, cfg.experts_per_token, cfg.moe_layers) == (8, 3, [1, 2])
    assert not cfg.router_norm and cfg.router_scale == 1.0  # the config's values are not read
    ids = ids_of(12)
    torch.testing.assert_close(logits(model, ids), llada_moe_reference(sd, ids), atol=1e-4,
                               rtol=1e-4)
    active = model.config["params"]["active"]
    assert active == model.network.num_params() - 2 * (8 - 3) * 3 * D * 16


def test_llada2_loads_as_published_and_matches_the_reference(tmp_path):
    sd = llada2_weights()
    model = dlm.load(write_moe(tmp_path / "l2", LLADA2_CONFIG, sd,
                               mask_in_tokenizer_config=True), device="cpu")
    assert model.config["source"]["format"] == "llada2"
    assert model.kind == "bd3lm" and model.block_size == 32
    cfg = model.network.config
    assert (cfg.head_dim, cfg.rotary_dim, cfg.moe_layers) == (8, 4, [1, 2])
    assert cfg.d_shared_expert == 8 and cfg.router == "sigmoid" and cfg.router_groups == 4
    ids = ids_of(70)  # three blocks of 32: the attention is block-causal
    torch.testing.assert_close(logits(model, ids), llada2_reference(sd, ids), atol=1e-4,
                               rtol=1e-4)
    bidirectional = llada2_reference(sd, ids, block=70)
    assert not torch.allclose(bidirectional[:, :32], logits(model, ids)[:, :32], atol=1e-3)


def test_routing_follows_each_family_not_the_config_flags():
    """LLaDA-MoE: the expert bias is added to the softmax and is part of the weights, which are
    not renormalised; LLaDA2: the bias only chooses, the weights are the unbiased sigmoids,
    renormalised and scaled; experts outside the kept groups are never chosen."""
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    soft = MoE(TransformerConfig(vocab_size=8, d_model=8, n_heads=2, n_experts=4,
                                 experts_per_token=2, d_expert=4, router_bias=True))
    soft.expert_bias.copy_(torch.tensor([0.5, 0.0, 0.0, -0.5]))
    w, idx = soft.route(x)
    p = (x @ soft.router.weight.T).softmax(-1) + soft.expert_bias
    assert torch.allclose(w, p.gather(1, idx)) and (idx == 0).any(1).all()  # +0.5 wins
    assert not torch.allclose(w.sum(1), torch.ones(5))
    sig = MoE(TransformerConfig(vocab_size=8, d_model=8, n_heads=2, n_experts=8,
                                experts_per_token=2, d_expert=4, router="sigmoid",
                                router_bias=True, router_norm=True, router_scale=2.5,
                                router_groups=4, router_topk_groups=1))
    sig.expert_bias.copy_(torch.tensor([0, 0, 0, 0, 0, 0, 5.0, 5.0]))  # group 3 always wins
    w, idx = sig.route(x)
    assert sorted(idx[0].tolist()) == [6, 7] and (idx >= 6).all()
    s = torch.sigmoid(x @ sig.router.weight.T)
    assert torch.allclose(w, s.gather(1, idx) / s.gather(1, idx).sum(1, keepdim=True) * 2.5)


def test_families_are_told_apart_by_their_keys_and_refused_clearly(tmp_path):
    from dlm.models.hf import architecture

    assert architecture(LLADA_MOE_CONFIG, tmp_path) == "llada_moe"
    assert architecture({**LLADA_MOE_CONFIG, "architectures": None}, tmp_path) == "llada_moe"
    assert architecture({"model_type": "lladamoe"}, tmp_path) == "llada_moe"
    assert architecture({"model_type": "llada", "d_model": 8}, tmp_path) == "llada"
    assert architecture(LLADA2_CONFIG, tmp_path) == "llada2"
    for bad, match in [({"partial_rotary_factor": -1}, "partial_rotary_factor"),
                       ({"moe_layer_freq": [1]}, "moe_layer_freq"),
                       ({"shared_expert_intermediate_size": -1}, "shared_expert"),
                       ({"clip_qkv": 8.0}, "clip_qkv")]:
        path = write_moe(tmp_path / match, {**LLADA_MOE_CONFIG, **bad}, llada_moe_weights())
        with pytest.raises(DLMError, match=match):
            dlm.load(path, device="cpu")
    path = write_moe(tmp_path / "bias", {**LLADA2_CONFIG, "use_bias": True}, llada2_weights())
    with pytest.raises(DLMError, match="use_bias"):
        dlm.load(path, device="cpu")
    sd = llada2_weights()
    sd["model.layers.1.attention.query_key_value.weight"] = torch.zeros(8, D)
    with pytest.raises(DLMError, match=r"query_key_value\.weight has shape"):
        dlm.load(write_moe(tmp_path / "shape", LLADA2_CONFIG, sd), device="cpu")
    nomask = write_moe(tmp_path / "nomask", LLADA2_CONFIG, llada2_weights())
    write_tokenizer(nomask, mask_token="<|other|>")
    with pytest.raises(DLMError, match="no mask_token_id"):
        dlm.load(nomask, device="cpu")


@pytest.mark.parametrize("family", ["llada_moe", "llada2"])
def test_export_writes_the_published_layout_and_loads_back(tmp_path, family):
    config, sd = (LLADA_MOE_CONFIG, llada_moe_weights()) if family == "llada_moe" \
        else (LLADA2_CONFIG, llada2_weights())
    model = dlm.load(write_moe(tmp_path / "a", config, sd), device="cpu")
    assert model.save_pretrained(tmp_path / "b") == family
    written = json.loads((tmp_path / "b" / "config.json").read_text())
    for key in ("model_type", "num_experts", "num_experts_per_tok", "hidden_size"):
        assert written[key] == config[key]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "b" / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(sd)  # the published names, q/k/v fused again for LLaDA2
        for name in sd:
            assert torch.equal(f.get_tensor(name), sd[name]), name
    again = dlm.load(tmp_path / "b", device="cpu")
    ids = ids_of(40)
    torch.testing.assert_close(logits(again, ids), logits(model, ids))
    assert again.kind == model.kind and again.sample_config() == model.sample_config()


# -- decoding as the authors' samplers --------------------------------------------------------

@pytest.mark.parametrize("steps,gen_length,block_length", [(8, 8, 8), (8, 16, 4)])
def test_llada_moe_greedy_equals_llada_generate(tmp_path, steps, gen_length, block_length):
    model = no_mask_logits(dlm.load(write_moe(tmp_path / "m", LLADA_MOE_CONFIG,
                                              llada_moe_weights()), device="cpu"))
    assert model.config["generation"]["remasking"] == "low_confidence"
    prompts = [[3, 17, 8, 40, 2], [5, 9]]
    ids, attention_mask = left_padded(prompts)
    ref = llada_generate(model.network, ids, attention_mask, steps, gen_length, block_length)
    out = model.generate_ids(prompts, steps=steps, gen_length=gen_length,
                             block_length=block_length)
    assert out.tokens == ref


@torch.no_grad()
def llada2_generate(net, prompt, gen_length, block_length=32, steps=32, threshold=0.95,
                    mask_id=MASK, eos_id=EOS):
    """LLaDA2's generate() (its model file), temperature 0, one prompt: the canvas rounded up
    to whole blocks counted from slot 0, block-causal attention over the part decoded so far;
    from the block holding the prompt's tail on, each step commits every masked slot whose
    probability exceeds the threshold if at least k of them do (k the block length split
    evenly over the steps), else the k most probable; after a block whose generated part holds
    an EOS it stops; the answer is cut after its first EOS. (With gen_length < 32 its steps
    drop to gen_length and k rises above one; dlm's threshold keeps one: docs/sampling.md.)"""
    from dlm.models.transformer import Attention

    P = len(prompt)
    blocks = -(-(P + gen_length) // block_length)
    x = torch.full((1, blocks * block_length), mask_id, dtype=torch.long)
    x[0, :P] = torch.tensor(prompt)
    steps = min(steps, gen_length)
    schedule = [block_length // steps + (s < block_length % steps) for s in range(steps)]
    attn = Attention.block_causal(block_length)
    for b in range(P // block_length, blocks):
        end = (b + 1) * block_length
        for s in range(steps):
            active = x[0, end - block_length:end] == mask_id
            if not active.any():
                break
            lg = net(x[:, :end], attn=attn)[0, end - block_length:end]
            probs = lg.double().softmax(-1)
            p0, x0 = probs.max(-1)
            confidence = torch.where(active, p0, -math.inf)
            high = confidence > threshold
            k = schedule[s]
            if high.sum() >= k:
                chosen = high
            else:
                chosen = torch.zeros_like(high)
                chosen[confidence.topk(min(k, int(active.sum()))).indices] = True
            window = x[0, end - block_length:end]
            window[chosen] = x0[chosen]
        if (x[0, P:end] == eos_id).any():
            break
    answer = x[0, P:P + gen_length].tolist()
    return answer[:answer.index(eos_id) + 1] if eos_id in answer else answer


def upto_eos(tokens):
    return tokens[:tokens.index(EOS) + 1] if EOS in tokens else tokens


@pytest.mark.parametrize("eos_bias", [0.0, 2.0])
@pytest.mark.parametrize("threshold", [0.95, 0.2])
@pytest.mark.parametrize("prompt_length,gen_length", [(5, 40), (40, 50), (31, 1), (64, 33)])
def test_llada2_greedy_equals_its_block_sampler(tmp_path, prompt_length, gen_length,
                                                threshold, eos_bias):
    sd = llada2_weights()
    sd["lm_head.weight"][EOS] += sd["model.norm.weight"].sign() * eos_bias
    model = no_mask_logits(dlm.load(write_moe(tmp_path / "l2", LLADA2_CONFIG, sd),
                                    device="cpu"))
    generation = model.config["generation"]
    assert generation["threshold"] == 0.95 and generation["gen_length"] == 2048
    prompt = ids_of(prompt_length, seed=prompt_length, B=1)[0].tolist()
    ref = llada2_generate(model.network, prompt, gen_length, threshold=threshold)
    assert MASK not in ref
    if eos_bias:
        assert EOS in ref
    for cache in ("exact", "none"):
        out = model.generate_ids([prompt], gen_length=gen_length, threshold=threshold,
                                 cache=cache)
        assert upto_eos(out.tokens[0]) == ref, cache


def test_llada2_ragged_batch_equals_each_prompt_alone(tmp_path):
    """Rows are padded by whole blocks, so each keeps its own block grid (blocks from its own
    first token) and decodes as it does alone."""
    model = no_mask_logits(dlm.load(write_moe(tmp_path / "l2", LLADA2_CONFIG,
                                              llada2_weights()), device="cpu"))
    prompts = [ids_of(n, seed=n, B=1)[0].tolist() for n in (5, 40, 33, 70)]
    kw = dict(gen_length=36, threshold=0.3, stop_at_eos=False)
    both = model.generate_ids(prompts, **kw)
    for p, tokens in zip(prompts, both.tokens):
        assert model.generate_ids([p], **kw).tokens == [tokens]
        assert tokens == llada2_generate(model.network, p, 36, threshold=0.3, eos_id=-1)


# -- LoRA --------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["llada_moe", "llada2"])
def test_lora_adapts_every_expert_and_merges(tmp_path, family):
    from dlm.models import lora

    config, sd = (LLADA_MOE_CONFIG, llada_moe_weights()) if family == "llada_moe" \
        else (LLADA2_CONFIG, llada2_weights())
    model = dlm.load(write_moe(tmp_path / "a", config, sd), device="cpu")
    ids = ids_of(40)
    before = logits(model, ids)
    lora.add_lora(model.network, lora.LoraSpec.parse("r=4,alpha=8,targets=all"), "ft")
    adapted = {n.rsplit(".lora_", 1)[0] for n, _ in model.network.named_parameters()
               if ".lora_" in n}
    assert "blocks.1.mlp.experts.0.gate_proj" in adapted
    assert "blocks.2.mlp.shared.down_proj" in adapted and "blocks.0.mlp.up_proj" in adapted
    assert not any("router" in n for n in adapted)
    with torch.no_grad():
        for n, p in model.network.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    after = logits(model, ids)
    assert not torch.allclose(after, before, atol=1e-4)
    model.merge_adapters()
    torch.testing.assert_close(logits(model, ids), after, atol=1e-4, rtol=1e-4)


def test_lora_sft_of_llada2_lowers_its_block_elbo_on_the_answers(tmp_path):
    """dlm sft --lora on a LLaDA2 checkpoint (block diffusion SFT): the run loads as base +
    adapter, decodes, and the trained answers' block ELBO (the same noise) goes down."""
    from dlm.cli import main
    from dlm.sft.data import Example, collate
    from dlm.sft.loss import BlockDiffusionSFTLoss

    base = write_moe(tmp_path / "l2", LLADA2_CONFIG, llada2_weights())
    rows = [("w1 w2 w3", "w4 w5"), ("w6 w7", "w8 w9 w10"), ("w11", "w12 w13"),
            ("w14 w15", "w16"), ("w17 w18 w19", "w20 w21"), ("w22", "w23 w24 w25")] * 2
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in rows))
    out = tmp_path / "run"
    assert main(["sft", str(base), str(data), "--out", str(out), "--lora", "r=4,alpha=8,"
                 "targets=all", "--max-steps", "40", "--batch-size", "4", "--lr", "1e-2",
                 "--seq-len", "64", "--eval-every", "20", "--threads", "1",
                 "--no-progress"]) == 0
    tuned, plain = dlm.load(out, device="cpu"), dlm.load(base, device="cpu")
    assert tuned.kind == "bd3lm" and tuned.adapters and tuned.block_size == 32
    assert tuned.config["eval"]["upper_bound"]
    tok = plain.tokenizer
    batch = collate([Example(tok.encode(q), tok.encode(a)) for q, a in rows], EOS, length=64)
    loss = BlockDiffusionSFTLoss(MASK, EOS, 32)
    noise = loss.draw(len(batch), 64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = (loss(m.network, batch, noise=noise).loss for m in (plain, tuned))
    assert after < 0.8 * before, (before, after)
    assert len(tuned.generate("w1 w2 w3", gen_length=8, stop_at_eos=False).tokens[0]) == 8


def test_the_router_runs_in_float32_under_autocast_and_keeps_its_bias(tmp_path):
    model = dlm.load(write_moe(tmp_path / "l2", LLADA2_CONFIG, llada2_weights()), device="cpu",
                     dtype="bf16")
    moe = model.network.blocks[1].mlp
    assert moe.expert_bias.dtype == torch.float32 and moe.router.weight.dtype == torch.bfloat16
    x = torch.randn(64, D, generator=torch.Generator().manual_seed(0)).bfloat16()
    plain = moe.route(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = moe.route(x)
    assert auto[0].dtype == torch.float32
    assert torch.equal(plain[1], auto[1]) and torch.equal(plain[0], auto[0])


def test_export_refuses_a_mixture_it_cannot_write_back(tmp_path):
    model = dlm.load(write_moe(tmp_path / "l2", LLADA2_CONFIG, llada2_weights()), device="cpu")
    from dataclasses import replace

    from dlm.models.hf import export_architecture

    for change, match in [(dict(router_norm=False), "renormalises"),
                          (dict(shift_logits=True), "shifted logits"),
                          (dict(moe_layers=[1]), "dense layers first")]:
        with pytest.raises(DLMError, match=match):
            export_architecture(replace(model.network.config, **change), model.config)
    assert export_architecture(replace(model.network.config, moe_layers=None),
                               model.config) == "llada2"
