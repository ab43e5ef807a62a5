"""Published checkpoints (LLaDA, Dream): tiny random checkpoints written with the published
parameter names, shapes, config keys and file layout, loaded by dlm and compared with a
straightforward forward pass written here from each architecture's equations."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

import dlm
from dlm.errors import DLMError

WORDS = [f"w{i}" for i in range(44)]
V = 64  # embedding rows (more than the tokenizer's 48 tokens, as in the real checkpoints)
MASK, EOS = 45, 46  # ids in the tokenizer and in config.json


def write_tokenizer(path, mask_token="<|mdm_mask|>", eos_token="<|endoftext|>"):
    vocab = {w: i for i, w in enumerate(WORDS)}
    vocab.update({"<unk>": 44, mask_token: MASK, eos_token: EOS, "<x>": 47})
    tok = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))


def randn(*shape, scale=0.3, g):
    return torch.randn(*shape, generator=g) * scale


def llada_weights(d=32, layers=2, heads=4, ff=48, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {"model.transformer.wte.weight": randn(V, d, scale=1.0, g=g),
          "model.transformer.ln_f.weight": 1 + randn(d, scale=0.1, g=g),
          "model.transformer.ff_out.weight": randn(V, d, g=g)}
    for i in range(layers):
        p = f"model.transformer.blocks.{i}."
        sd.update({p + "attn_norm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "q_proj.weight": randn(d, d, g=g), p + "k_proj.weight": randn(d, d, g=g),
                   p + "v_proj.weight": randn(d, d, g=g), p + "attn_out.weight": randn(d, d, g=g),
                   p + "ff_norm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "ff_proj.weight": randn(ff, d, g=g), p + "up_proj.weight": randn(ff, d, g=g),
                   p + "ff_out.weight": randn(d, ff, g=g)})
    return sd


LLADA_CONFIG = {
    "architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu",
    "alibi": False, "attention_layer_norm": False, "block_group_size": 1, "block_type": "llama",
    "d_model": 32, "embedding_size": V, "vocab_size": V, "eos_token_id": EOS,
    "pad_token_id": EOS, "mask_token_id": MASK, "include_bias": False,
    "include_qkv_bias": False, "input_emb_norm": False, "layer_norm_type": "rms",
    "rms_norm_eps": 1e-5, "max_sequence_length": 128, "mlp_hidden_size": 48, "mlp_ratio": 4,
    "n_heads": 4, "n_kv_heads": 4, "n_layers": 2, "rope": True, "rope_theta": 500000.0,
    "scale_logits": False, "weight_tying": False}


def dream_weights(d=32, layers=2, heads=4, kv=2, ff=48, seed=1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hd = d // heads
    sd = {"model.embed_tokens.weight": randn(V, d, scale=1.0, g=g),
          "model.norm.weight": 1 + randn(d, scale=0.1, g=g),
          "lm_head.weight": randn(V, d, g=g)}
    for i in range(layers):
        p = f"model.layers.{i}."
        sd.update({p + "input_layernorm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "self_attn.q_proj.weight": randn(d, d, g=g),
                   p + "self_attn.q_proj.bias": randn(d, g=g),
                   p + "self_attn.k_proj.weight": randn(kv * hd, d, g=g),
                   p + "self_attn.k_proj.bias": randn(kv * hd, g=g),
                   p + "self_attn.v_proj.weight": randn(kv * hd, d, g=g),
                   p + "self_attn.v_proj.bias": randn(kv * hd, g=g),
                   p + "self_attn.o_proj.weight": randn(d, d, g=g),
                   p + "post_attention_layernorm.weight": 1 + randn(d, scale=0.1, g=g),
                   p + "mlp.gate_proj.weight": randn(ff, d, g=g),
                   p + "mlp.up_proj.weight": randn(ff, d, g=g),
                   p + "mlp.down_proj.weight": randn(d, ff, g=g)})
    return sd


DREAM_CONFIG = {
    "architectures": ["DreamModel"], "model_type": "Dream", "hidden_act": "silu",
    "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
    "vocab_size": V, "max_position_embeddings": 131072, "mask_token_id": MASK,
    "bos_token_id": EOS, "eos_token_id": EOS, "pad_token_id": EOS, "use_sliding_window": False}


def write_checkpoint(path, config, weights, shards=1, tokenizer=True):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if tokenizer:
        write_tokenizer(path)
    names = sorted(weights)
    if shards == 1:
        save_file(weights, str(path / "model.safetensors"))
        return path
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: weights[n] for n in part}, str(path / file))
        weight_map.update({n: file for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return path


# -- the reference: each architecture's equations, written out -------------------------------

def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """Rotate-half RoPE over [B, H, T, D] at positions 0..T-1."""
    D, T = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def attend(h, wq, wk, wv, wo, heads, kv, theta, bq=0.0, bk=0.0, bv=0.0):
    B, T, d = h.shape
    hd = d // heads
    q = (h @ wq.T + bq).view(B, T, heads, hd).transpose(1, 2)
    k = (h @ wk.T + bk).view(B, T, kv, hd).transpose(1, 2)
    v = (h @ wv.T + bv).view(B, T, kv, hd).transpose(1, 2)
    k, v = k.repeat_interleave(heads // kv, 1), v.repeat_interleave(heads // kv, 1)  # HF repeat_kv
    q, k = rope(q, theta), rope(k, theta)
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1)  # no causal mask
    return (p @ v).transpose(1, 2).reshape(B, T, d) @ wo.T


def llada_reference(sd, ids):
    sd = {k: v.double() for k, v in sd.items()}
    c, eps = LLADA_CONFIG, LLADA_CONFIG["rms_norm_eps"]
    x = sd["model.transformer.wte.weight"][ids]
    for i in range(c["n_layers"]):
        p = f"model.transformer.blocks.{i}."
        h = rms(x, sd[p + "attn_norm.weight"], eps)
        x = x + attend(h, sd[p + "q_proj.weight"], sd[p + "k_proj.weight"],
                       sd[p + "v_proj.weight"], sd[p + "attn_out.weight"], c["n_heads"],
                       c["n_kv_heads"], c["rope_theta"])
        n = rms(x, sd[p + "ff_norm.weight"], eps)
        gate, up = n @ sd[p + "ff_proj.weight"].T, n @ sd[p + "up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ sd[p + "ff_out.weight"].T
    x = rms(x, sd["model.transformer.ln_f.weight"], eps)
    return x @ sd["model.transformer.ff_out.weight"].T


def dream_reference(sd, ids):
    """Dream's network output (before its sampler shifts the logits by one)."""
    sd = {k: v.double() for k, v in sd.items()}
    c, eps = DREAM_CONFIG, DREAM_CONFIG["rms_norm_eps"]
    x = sd["model.embed_tokens.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}.self_attn."
        h = rms(x, sd[f"model.layers.{i}.input_layernorm.weight"], eps)
        x = x + attend(h, sd[p + "q_proj.weight"], sd[p + "k_proj.weight"],
                       sd[p + "v_proj.weight"], sd[p + "o_proj.weight"],
                       c["num_attention_heads"], c["num_key_value_heads"], c["rope_theta"],
                       sd[p + "q_proj.bias"], sd[p + "k_proj.bias"], sd[p + "v_proj.bias"])
        m = f"model.layers.{i}.mlp."
        n = rms(x, sd[f"model.layers.{i}.post_attention_layernorm.weight"], eps)
        x = x + (F.silu(n @ sd[m + "gate_proj.weight"].T) * (n @ sd[m + "up_proj.weight"].T)) \
            @ sd[m + "down_proj.weight"].T
    return rms(x, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


IDS = torch.tensor([[3, 17, MASK, 8, MASK, 40, 2, 11], [5, MASK, MASK, 1, 0, 33, 9, 21]])


def logits_of(model, ids=IDS):
    with torch.no_grad():
        return model.network(ids).double()


# -- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shards", [1, 3])
def test_llada_loads_and_matches_the_reference(tmp_path, shards):
    sd = llada_weights()
    path = write_checkpoint(tmp_path / "llada", LLADA_CONFIG, sd, shards=shards)
    model = dlm.load(path, device="cpu")
    assert model.kind == "mdlm" and model.mask_id == MASK and model.eos_id == EOS
    assert not model.network.config.shift_logits and model.network.config.d_ff == 48
    torch.testing.assert_close(logits_of(model), llada_reference(sd, IDS), atol=1e-4, rtol=1e-4)
    # the comparison is sensitive: gate and up swapped gives other logits
    blk = model.network.blocks[0].mlp
    blk.gate_proj.weight.data, blk.up_proj.weight.data = blk.up_proj.weight.data, \
        blk.gate_proj.weight.data
    assert not torch.allclose(logits_of(model), llada_reference(sd, IDS), atol=1e-2)


def test_dream_loads_matches_the_reference_and_reads_logits_one_slot_early(tmp_path):
    sd = dream_weights()
    path = write_checkpoint(tmp_path / "dream", DREAM_CONFIG, sd)
    model = dlm.load(path, device="cpu")
    cfg = model.network.config
    assert cfg.qkv_bias and cfg.shift_logits and cfg.n_kv_heads == 2 and cfg.max_seq_len == 2048
    torch.testing.assert_close(logits_of(model), dream_reference(sd, IDS), atol=1e-4, rtol=1e-4)
    # one greedy step fills the slot after the prompt from the logits of the prompt's last
    # token (no BOS before the prompt, as in Dream's own sampler)
    prompt = [3, 17, 8, 40]
    out = model.generate(model.tokenizer.decode(prompt), steps=1, gen_length=1, block_length=1,
                         temperature=0.0, remasking="low_confidence")
    ref = dream_reference(sd, torch.tensor([[*prompt, MASK]]))[0]
    ref[:, MASK] = -math.inf  # never drawn (EOS, which is also the pad token here, may be)
    shifted, unshifted = ref[len(prompt) - 1].argmax().item(), ref[len(prompt)].argmax().item()
    assert shifted != unshifted  # so a missing shift would fail here
    assert out.tokens[0] == [shifted]


def test_convert_writes_our_format_and_keeps_the_sampler_defaults(tmp_path, capsys):
    from dlm.cli import main

    sd = llada_weights()
    src = write_checkpoint(tmp_path / "llada", LLADA_CONFIG, sd, shards=2)
    assert main(["convert", str(src), str(tmp_path / "ours"), "--dtype", "bf16"]) == 0
    ours = dlm.load(tmp_path / "ours", device="cpu")
    assert ours.network.embed_tokens.weight.dtype == torch.bfloat16
    assert ours.sample_config().steps == 128  # LLaDA's published defaults came along
    torch.testing.assert_close(logits_of(ours), llada_reference(sd, IDS), atol=0.3, rtol=0.1)
    assert main(["info", str(tmp_path / "ours")]) == 0
    assert main(["convert", str(src), str(tmp_path / "ours")]) == 2  # never overwrites
    assert "not empty" in capsys.readouterr().err


def test_damaged_or_foreign_checkpoints_are_refused_by_file_and_key(tmp_path, capsys):
    from dlm.cli import main

    def refused(name, config=LLADA_CONFIG, weights=None, shards=1, edit=None, **kw):
        path = write_checkpoint(tmp_path / name, config, weights or llada_weights(), shards)
        if edit:
            edit(path)
        with pytest.raises(DLMError) as e:
            dlm.load(path, device="cpu", **kw)
        return str(e.value)

    msg = refused("shard", shards=2,
                  edit=lambda p: (p / "model-00002-of-00002.safetensors").unlink())
    assert "shard model-00002-of-00002.safetensors is missing" in msg
    wrong = llada_weights()
    wrong["model.transformer.blocks.1.up_proj.weight"] = torch.zeros(40, 32)
    msg = refused("shape", weights=wrong)
    assert "model.safetensors" in msg and "blocks.1.up_proj.weight has shape (40, 32)" in msg
    missing = llada_weights()
    del missing["model.transformer.blocks.0.attn_out.weight"]
    assert "blocks.0.attn.o_proj.weight" in refused("missing", weights=missing)
    extra = {**llada_weights(), "model.transformer.blocks.0.q_norm.weight": torch.ones(32)}
    msg = refused("extra", weights=extra)
    assert "unexpected tensor 'model.transformer.blocks.0.q_norm.weight'" in msg
    assert dlm.load(tmp_path / "extra", device="cpu", strict=False).kind == "mdlm"
    assert "unknown architecture" in refused("gpt", config={**LLADA_CONFIG,
                                                            "model_type": "gpt2",
                                                            "architectures": ["GPT2LMHeadModel"]})
    assert "lacks the mask token (id 60" in refused("tok", config={**LLADA_CONFIG,
                                                                   "mask_token_id": 60})
    assert "no tokenizer.json" in refused(
        "notok", edit=lambda p: (p / "tokenizer.json").unlink())
    assert "alibi=True is not supported" in refused("alibi", config={**LLADA_CONFIG,
                                                                     "alibi": True})
    # the CLI says it in one line
    assert main(["convert", str(tmp_path / "shape"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has shape (40, 32)" in err and err.count("\n") == 1


def test_hub_ids_are_explicit_and_fetch_only_safetensors(tmp_path, monkeypatch):
    import huggingface_hub

    from dlm.models.formats import hub_snapshot

    assert hub_snapshot("runs/tiny") == __import__("pathlib").Path("runs/tiny")  # never online
    src = write_checkpoint(tmp_path / "snap", LLADA_CONFIG, llada_weights())
    calls = []

    def fake_download(repo, allow_patterns):
        calls.append((repo, allow_patterns))
        return str(src)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model = dlm.load("hf:GSAI-ML/LLaDA-8B-Instruct", device="cpu")
    assert model.mask_id == MASK
    repo, patterns = calls[0]
    assert repo == "GSAI-ML/LLaDA-8B-Instruct" and "*.safetensors" in patterns
    assert not any(p.endswith((".bin", ".pt", ".pth", ".pkl")) for p in patterns)
    from dlm.models.loading import checkpoint_config

    assert checkpoint_config("hf:GSAI-ML/LLaDA-8B-Instruct")["source"]["format"] == "llada"
    assert not any("safetensors" in p for p in calls[-1][1])  # dlm info: no weights fetched

    def offline(repo, allow_patterns):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DLMError, match="cannot download GSAI-ML/x from the Hugging Face Hub"):
        dlm.load("hf:GSAI-ML/x", device="cpu")


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_export_to_the_published_layout_round_trips(tmp_path, arch):
    config, weights = (LLADA_CONFIG, llada_weights()) if arch == "llada" else \
        (DREAM_CONFIG, dream_weights())
    model = dlm.load(write_checkpoint(tmp_path / "src", config, weights), device="cpu")
    assert model.save_pretrained(tmp_path / "out") == arch
    back = dlm.load(tmp_path / "out", device="cpu")
    torch.testing.assert_close(logits_of(back), logits_of(model), atol=0, rtol=0)
    assert back.network.config == model.network.config
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["mask_token_id"] == MASK and written["model_type"] == config["model_type"]
    # the published names themselves, so the authors' code would find them too
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(weights)


def test_our_models_export_with_their_sampler_defaults(tmp_path, trained, capsys):
    from dlm.cli import main

    ours = dlm.load(trained["mdlm"], device="cpu")
    assert main(["convert", str(trained["mdlm"]), str(tmp_path / "hf"), "--to", "hf"]) == 0
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert gen["steps"] == ours.sample_config().steps and gen["mask_token_id"] == ours.mask_id
    back = dlm.load(tmp_path / "hf", device="cpu")
    assert back.network.config.tie_embeddings  # stored once, tied again on load
    assert back.sample_config() == ours.sample_config()  # the sampler is unchanged
    ids = torch.tensor([[5, 6, ours.mask_id, 7]])
    torch.testing.assert_close(logits_of(back, ids), logits_of(ours, ids), atol=0, rtol=0)
    assert main(["convert", str(trained["ar"]), str(tmp_path / "ar"), "--to", "hf"]) == 2
    assert "only masked-diffusion models" in capsys.readouterr().err


def test_dream_generation_config_sets_the_sampler(tmp_path):
    path = write_checkpoint(tmp_path / "d", DREAM_CONFIG, dream_weights())
    (path / "generation_config.json").write_text(json.dumps(
        {"alg": "maskgit_plus", "steps": 64, "max_new_tokens": 32, "temperature": 0.2,
         "top_p": 0.95, "bos_token_id": EOS}))
    cfg = dlm.load(path, device="cpu").sample_config()
    assert (cfg.remasking, cfg.steps, cfg.gen_length, cfg.temperature, cfg.top_p) == \
        ("low_confidence", 64, 32, 0.2, 0.95)


def test_the_chat_template_travels_with_the_checkpoint(tmp_path):
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    path = write_checkpoint(tmp_path / "c", LLADA_CONFIG, llada_weights())
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": template, "bos_token": {"content": "<x>"}}))
    model = dlm.load(path, device="cpu")
    assert model.config["chat_template"] == template and model.config["bos_token"] == "<x>"
    model.save(tmp_path / "ours")  # our format keeps it ...
    assert dlm.load(tmp_path / "ours", device="cpu").config["chat_template"] == template
    model.save_pretrained(tmp_path / "hf")  # ... and so does the export
    assert dlm.load(tmp_path / "hf", device="cpu").config["chat_template"] == template
    from dlm.sft.data import render_prompt

    assert render_prompt([{"role": "user", "content": "Hi"}], template) == "<user>Hi<assistant>"


def test_a_slow_dream_tokenizer_is_built_from_vocab_and_merges(tmp_path):
    """Dream ships vocab.json + merges.txt (+ added tokens), no tokenizer.json: dlm builds the
    fast tokenizer itself, and it encodes as transformers' Qwen2 tokenizer does."""
    from tokenizers import Regex, normalizers, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from dlm.models.hf import hf_tokenizer

    trainer_tok = HFTokenizer(tok_models.BPE())
    trainer_tok.normalizer = normalizers.NFC()
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    corpus = ["The quick brown fox's 12345 jumps\n\nover the lazy dog. Ünïcödé — 日本語 ok?!"]
    trainer_tok.train_from_iterator(corpus * 50, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    path = tmp_path / "dream"
    path.mkdir()
    trainer_tok.model.save(str(path))  # vocab.json + merges.txt
    n = trainer_tok.get_vocab_size()
    (path / "added_tokens.json").write_text(json.dumps({"<|endoftext|>": n}))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DreamTokenizer",
        "added_tokens_decoder": {str(n + 1): {"content": "<|mask|>", "special": True}}}))
    config = {"mask_token_id": n + 1, "eos_token_id": n, "pad_token_id": n}
    tok = hf_tokenizer(path, config, vocab_size=n + 10)
    assert (tok.mask_id, tok.eos_id, tok.mask_token) == (n + 1, n, "<|mask|>")
    reference = Qwen2Tokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))
    for text in ["Hello world", "The fox's 2024 jumps\n\n  over   tabs\t!", "I'll've it's",
                 "日本語 Ünï — ok?!  \n"]:
        assert tok.encode(text) == reference.encode(text, add_special_tokens=False)
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("a<|mask|>b")[1] == n + 1  # added tokens stay whole
    (path / "added_tokens.json").write_text(json.dumps({"<|endoftext|>": n + 5}))
    with pytest.raises(DLMError, match="should have id"):
        hf_tokenizer(path, config, vocab_size=n + 10)
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer"}))
    with pytest.raises(DLMError, match="not a byte-level BPE"):
        hf_tokenizer(path, config, vocab_size=n + 10)


def test_a_special_token_inside_vocab_json_stays_whole(tmp_path):
    """GPT-2 style: <|endoftext|> is in vocab.json itself and listed as an added token."""
    from tokenizers import models as tok_models
    from tokenizers import pre_tokenizers, trainers

    from dlm.models.hf import slow_bpe_tokenizer

    trainer_tok = HFTokenizer(tok_models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer_tok.train_from_iterator(["hello world, hello there"] * 20, trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    trainer_tok.model.save(str(tmp_path))
    assert json.loads((tmp_path / "vocab.json").read_text())["<|endoftext|>"] == 0
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer",
        "added_tokens_decoder": {"0": {"content": "<|endoftext|>", "special": True}}}))
    tok = slow_bpe_tokenizer(tmp_path)
    ids = tok.encode("hello<|endoftext|>world").ids
    assert 0 in ids and tok.decode(ids, skip_special_tokens=False) == "hello<|endoftext|>world"


def test_a_fine_tunes_sampler_defaults_survive_export(tmp_path, trained):
    """block_length and min_length (what makes a fine-tuned model answer) round-trip through
    the published layout's generation_config.json."""
    model = dlm.load(trained["mdlm"], device="cpu")
    model.config["generation"] = {"block_length": 8, "min_length": 1}
    model.save_pretrained(tmp_path / "hf")
    back = dlm.load(tmp_path / "hf", device="cpu").sample_config()
    assert (back.block_length, back.min_length) == (8, 1)
