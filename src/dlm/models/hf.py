"""Published diffusion LM checkpoints (Hugging Face layout) onto our ``Transformer``.

A Hugging Face model directory holds ``config.json``, the weights as ``model.safetensors`` or as
shards listed in ``model.safetensors.index.json``, and ``tokenizer.json``. Two architectures
are mapped, both Llama-style decoders run without a causal mask:

* **LLaDA** (``model_type: llada``; GSAI-ML/LLaDA-8B-*): OLMo-style names
  (``model.transformer.blocks.N.ff_proj`` is the SiLU gate, ``up_proj`` the up projection,
  ``ff_out`` the down projection, and the top-level ``model.transformer.ff_out`` the head);
* **Dream** (``model_type: Dream``; Dream-org/Dream-v0-*-7B): Qwen2 names, q/k/v with bias,
  and logits shifted by one (slot i's token is read from the logits at i - 1).

Only names are changed: no tensor is transposed or split. Weights are read tensor by tensor
from safetensors in their stored dtype (or cast to ``dtype`` one at a time), so no full fp32
copy is made. Every published tensor must map to one of ours and every one of ours must be
present with the right shape; otherwise the error names the file and the key.

    network, tokenizer, config = load_hf_dir("path/to/LLaDA-8B-Instruct", dtype=torch.bfloat16)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..data.tokenizer import Tokenizer
from ..errors import DLMError
from .formats import fill_network, read_json, state_dict_for_save
from .transformer import Transformer, TransformerConfig

INDEX_FILE, SINGLE_FILE = "model.safetensors.index.json", "model.safetensors"

_LB = r"model\.transformer\.blocks\.(\d+)\."  # a LLaDA block
_DL = r"model\.layers\.(\d+)\."  # a Dream layer

# (published name pattern, our name); the first match wins, None = known and ignored
RENAMES: dict[str, list[tuple[str, str | None]]] = {
    "llada": [
        (r"model\.transformer\.wte\.weight", "embed_tokens.weight"),
        (r"model\.transformer\.ln_f\.weight", "norm.weight"),
        (r"model\.transformer\.ff_out\.weight", "lm_head.weight"),  # the head, not a block's
        (_LB + r"attn_norm\.weight", r"blocks.\1.attn_norm.weight"),
        (_LB + r"([qkv])_proj\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
        (_LB + r"attn_out\.weight", r"blocks.\1.attn.o_proj.weight"),
        (_LB + r"ff_norm\.weight", r"blocks.\1.mlp_norm.weight"),
        (_LB + r"ff_proj\.weight", r"blocks.\1.mlp.gate_proj.weight"),  # through SiLU
        (_LB + r"up_proj\.weight", r"blocks.\1.mlp.up_proj.weight"),
        (_LB + r"ff_out\.weight", r"blocks.\1.mlp.down_proj.weight"),
    ],
    "dream": [
        (r"model\.embed_tokens\.weight", "embed_tokens.weight"),
        (r"model\.norm\.weight", "norm.weight"),
        (r"lm_head\.weight", "lm_head.weight"),
        (_DL + r"input_layernorm\.weight", r"blocks.\1.attn_norm.weight"),
        (_DL + r"self_attn\.([qkv])_proj\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
        (_DL + r"self_attn\.o_proj\.weight", r"blocks.\1.attn.o_proj.weight"),
        (_DL + r"post_attention_layernorm\.weight", r"blocks.\1.mlp_norm.weight"),
        (_DL + r"mlp\.(gate|up|down)_proj\.weight", r"blocks.\1.mlp.\2_proj.weight"),
        (r".*rotary_emb\.inv_freq", None),  # a recomputed buffer some exports include
    ],
}

# the published samplers' defaults (LLaDA's generate.py / Dream's generation_config.json)
GENERATION_DEFAULTS = {
    # LLaDA's chat demo uses blocks of 32; its base-model evaluation one block: no default
    "llada": {"steps": 128, "gen_length": 128, "temperature": 0.0,
              "remasking": "low_confidence"},
    # Dream's DreamGenerationConfig: alg origin, eps 1e-3; its counts, and its scores on the
    # distribution tokens are drawn from, for the other algs
    "dream": {"steps": 512, "gen_length": 512, "temperature": 0.0, "remasking": "origin",
              "transfer": "dream", "eps": 1e-3, "confidence": "sampled"},
}


# generation_config.json keys (Dream's and ours) -> SampleConfig fields
_GENERATION_KEYS = {"alg": "remasking", "max_new_tokens": "gen_length"}
_DREAM_ALGS = {"maskgit_plus": "low_confidence", "topk_margin": "margin"}  # same rules


def generation_defaults(path: Path, arch: str) -> dict:
    """Sampler defaults: the published recipe, updated by what a generation_config.json holds
    (Dream's alg / max_new_tokens / steps / temperature / top_p, or the fields dlm's own export
    writes). Keys that are not sampler settings are dropped when a SampleConfig is made."""
    out = dict(GENERATION_DEFAULTS[arch])
    given = read_json(path / "generation_config.json", missing={})
    for key, value in given.items():
        name = _GENERATION_KEYS.get(key, key)
        if not name.endswith("token_id") and not name.startswith("_"):
            out[name] = _DREAM_ALGS.get(value, value) if name == "remasking" else value
    return out


def architecture(config: dict, where: Path) -> str:
    """'llada' or 'dream' from a Hugging Face config.json; anything else is refused."""
    names = [str(config.get("model_type", "")).lower(),
             *(str(a).lower() for a in config.get("architectures") or [])]
    if any(n.startswith("llada") for n in names):
        return "llada"
    if any(n.startswith("dream") for n in names):
        return "dream"
    raise DLMError(f"{where}: unknown architecture (model_type {config.get('model_type')!r}, "
                   f"architectures {config.get('architectures')}); dlm loads LLaDA and Dream "
                   "checkpoints and its own")


def _need(config: dict, key: str, where: Path):
    if config.get(key) is None:
        raise DLMError(f"{where}: config.json lacks {key!r}")
    return config[key]


def translate_config(arch: str, c: dict, where: Path) -> TransformerConfig:
    """Our network config from a published config.json (unsupported variants refused)."""
    if arch == "llada":
        refuse = {"alibi": True, "rope": False, "attention_layer_norm": True,
                  "scale_logits": True, "input_emb_norm": True, "include_bias": True}
        for key, bad in refuse.items():
            if c.get(key, not bad) == bad:
                raise DLMError(f"{where}: {key}={bad} is not supported")
        if c.get("layer_norm_type", "rms") != "rms":
            raise DLMError(f"{where}: layer_norm_type {c['layer_norm_type']!r} is not supported")
        if c.get("activation_type", "silu") != "silu" or c.get("block_type", "llama") != "llama":
            raise DLMError(f"{where}: only the llama block with SiLU gating is supported "
                           f"(activation_type {c.get('activation_type')!r}, block_type "
                           f"{c.get('block_type')!r})")
        if c.get("block_group_size", 1) != 1:
            raise DLMError(f"{where}: block_group_size {c['block_group_size']} is not supported")
        d = _need(c, "d_model", where)
        n_heads = _need(c, "n_heads", where)
        return TransformerConfig(
            vocab_size=c.get("embedding_size") or _need(c, "vocab_size", where), d_model=d,
            n_layers=_need(c, "n_layers", where), n_heads=n_heads,
            n_kv_heads=c.get("n_kv_heads") or n_heads,
            d_ff=c.get("mlp_hidden_size") or int(c.get("mlp_ratio", 4) * d),
            max_seq_len=c.get("max_sequence_length", 4096),
            rope_theta=float(c.get("rope_theta", 10000.0)), norm_eps=c.get("rms_norm_eps", 1e-5),
            qkv_bias=bool(c.get("include_qkv_bias", False)),
            tie_embeddings=bool(c.get("weight_tying", False)))
    if c.get("rope_scaling"):
        raise DLMError(f"{where}: rope_scaling {c['rope_scaling']} is not supported")
    if c.get("use_sliding_window"):
        raise DLMError(f"{where}: sliding-window attention is not supported")
    if c.get("hidden_act", "silu") != "silu":
        raise DLMError(f"{where}: hidden_act {c['hidden_act']!r} is not supported")
    n_heads = _need(c, "num_attention_heads", where)
    return TransformerConfig(
        vocab_size=_need(c, "vocab_size", where), d_model=_need(c, "hidden_size", where),
        n_layers=_need(c, "num_hidden_layers", where), n_heads=n_heads,
        n_kv_heads=c.get("num_key_value_heads") or n_heads,
        d_ff=_need(c, "intermediate_size", where),
        # the config inherits Qwen2.5's 131072 positions; Dream was trained at 2048
        max_seq_len=min(c.get("max_position_embeddings", 2048), 2048),
        rope_theta=float(c.get("rope_theta", 10000.0)), norm_eps=c.get("rms_norm_eps", 1e-6),
        qkv_bias=True, tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        shift_logits=True)


def our_name(arch: str, name: str) -> str | None | bool:
    """Our parameter name for a published one; None: known and ignored; False: unknown."""
    for pattern, target in RENAMES[arch]:
        if re.fullmatch(pattern, name):
            return None if target is None else re.sub(pattern, target, name)
    return False


def weight_files(path: Path) -> dict[str, Path]:
    """Published tensor name -> the safetensors file holding it (single file or shards)."""
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DLMError(f"{index}: not a safetensors index ({e})") from None
        files = {name: path / f for name, f in weight_map.items()}
        for f in sorted(set(files.values())):
            if not f.is_file():
                raise DLMError(f"{index}: shard {f.name} is missing")
        return files
    single = path / SINGLE_FILE
    if not single.is_file():
        raise DLMError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE}")
    try:
        with safe_open(str(single), framework="pt") as f:
            return {name: single for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise DLMError(f"{single}: cannot read weights ({e})") from None


def bos_token(path: Path) -> str:
    """The BOS string a chat template writes as {{ bos_token }} ('' when none is declared)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        bos = read_json(path / name, missing={}).get("bos_token")
        if isinstance(bos, dict):
            bos = bos.get("content")
        if isinstance(bos, str):
            return bos
    return ""


def chat_template(path: Path) -> str | None:
    """The Jinja chat template of tokenizer_config.json (or chat_template.jinja), if any."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    template = read_json(path / "tokenizer_config.json", missing={}).get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"),
                        None)
    return template if isinstance(template, str) else None


# Qwen2's pre-tokenization (Dream inherits Qwen2.5's tokenizer): contractions, letters with at
# most one leading non-letter, single digits, punctuation runs, newlines, other spaces
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SLOW_BPE = {"qwen2tokenizer": "qwen2", "dreamtokenizer": "qwen2", "gpt2tokenizer": "gpt2"}


def slow_bpe_tokenizer(path: Path):
    """The fast tokenizer of a byte-level BPE shipped only as vocab.json + merges.txt (Dream,
    Qwen2, GPT-2 style), built with HF tokenizers: the BPE model, that family's
    pre-tokenizer, the byte-level decoder, then the added tokens (added_tokens.json /
    tokenizer_config.json's added_tokens_decoder) at their stated ids."""
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab_file, merges_file = path / "vocab.json", path / "merges.txt"
    tok_config = read_json(path / "tokenizer_config.json", missing={})
    added = read_json(path / "added_tokens.json", missing={})
    family = SLOW_BPE.get(str(tok_config.get("tokenizer_class", "")).lower())
    if family is None:
        raise DLMError(f"{path}: no tokenizer.json, and tokenizer_class "
                       f"{tok_config.get('tokenizer_class')!r} is not a byte-level BPE dlm can "
                       "build one for; save the fast tokenizer with transformers: "
                       "AutoTokenizer.from_pretrained(path).save_pretrained(path)")
    try:
        hf = HFTokenizer(models.BPE.from_file(str(vocab_file), str(merges_file)))
    except Exception as e:  # missing or malformed files (the Rust side raises Exception)
        raise DLMError(f"{path}: cannot build the tokenizer from vocab.json + merges.txt "
                       f"({e})") from None
    if family == "qwen2":
        hf.normalizer = normalizers.NFC()
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    extra = {int(i): (t["content"], bool(t.get("special", True)))
             for i, t in (tok_config.get("added_tokens_decoder") or {}).items()}
    for token, i in added.items():
        extra.setdefault(int(i), (token, True))
    for i, (token, special) in sorted(extra.items()):
        # also when vocab.json has it (GPT-2's <|endoftext|>): an added token is never split
        hf.add_tokens([AddedToken(token, special=special, normalized=False)])
        if hf.token_to_id(token) != i:
            raise DLMError(f"{path}: added token {token!r} should have id {i} but lands at "
                           f"{hf.token_to_id(token)} (ids must follow the vocabulary)")
    return hf


def hf_tokenizer(path: Path, config: dict, vocab_size: int) -> Tokenizer:
    """``tokenizer.json`` (or one built from a slow byte-level BPE's files) with the config's
    mask / EOS / pad ids, which must exist in it."""
    from tokenizers import Tokenizer as HFTokenizer

    file = path / "tokenizer.json"
    if file.is_file():
        try:
            hf = HFTokenizer.from_file(str(file))
        except Exception as e:  # the Rust side raises plain Exceptions
            raise DLMError(f"cannot read tokenizer {file}: {e}") from None
    elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        hf = slow_bpe_tokenizer(path)
        file = path / "vocab.json"  # what errors below name
    else:
        raise DLMError(f"{path}: no tokenizer.json (nor vocab.json + merges.txt)")
    mask_id = _need(config, "mask_token_id", path / "config.json")
    eos_id = _need(config, "eos_token_id", path / "config.json")
    if isinstance(eos_id, list):  # several stop ids: the first is the end-of-text
        eos_id = eos_id[0]
    pad_id = config.get("pad_token_id")
    pad_id = eos_id if pad_id is None else pad_id
    names = {}
    for role, i in (("mask", mask_id), ("eos", eos_id), ("pad", pad_id)):
        token = hf.id_to_token(int(i))
        if token is None:
            raise DLMError(f"{file}: the tokenizer lacks the {role} token (id {i} in "
                           "config.json)")
        if i >= vocab_size:
            raise DLMError(f"{file}: {role} id {i} is outside the model's {vocab_size} rows")
        names[role] = token
    return Tokenizer(hf, kind="custom", mask_token=names["mask"], eos_token=names["eos"],
                     pad_token=names["pad"])


def load_hf_dir(path: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None, strict: bool = True
                ) -> tuple[Transformer, Tokenizer, dict]:
    """Load a LLaDA or Dream directory. ``strict=False`` tolerates published tensors we have
    no place for (they are skipped); a tensor we need that is missing is always an error."""
    path = Path(path)
    arch, net_cfg, tokenizer, config = read_hf_dir(path)
    with torch.device("meta"):
        network = Transformer(net_cfg)
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    if net_cfg.tie_embeddings:
        expected.pop("lm_head.weight")
    files = weight_files(path)
    state: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    by_file: dict[Path, list[str]] = {}
    for name, f in files.items():
        by_file.setdefault(f, []).append(name)
    for f, names in sorted(by_file.items()):
        try:
            with safe_open(str(f), framework="pt", device="cpu") as sf:
                present = set(sf.keys())
                for name in names:
                    ours = our_name(arch, name)
                    if ours is None:
                        continue
                    if ours is False or ours not in expected:
                        if strict:
                            raise DLMError(f"{f.name}: unexpected tensor {name!r} for a {arch} "
                                           "model (load with strict=False to skip it)")
                        continue
                    if name not in present:
                        raise DLMError(f"{f.name}: tensor {name!r} is listed in the index but "
                                       "missing from the file")
                    tensor = sf.get_tensor(name)
                    if tuple(tensor.shape) != expected[ours]:
                        raise DLMError(f"{f.name}: {name} has shape {tuple(tensor.shape)}, "
                                       f"config.json implies {expected[ours]}")
                    state[ours] = tensor if dtype is None else tensor.to(dtype)
                    source[ours] = name
        except (SafetensorError, OSError) as e:
            raise DLMError(f"{f}: cannot read weights ({e})") from None
    missing = [k for k in expected if k not in state]
    if missing:
        raise DLMError(f"{path}: the checkpoint lacks {len(missing)} tensor(s) a {arch} model "
                       f"needs, e.g. {missing[0]!r}")
    fill_network(network, state, device)  # already cast tensor by tensor
    return network, tokenizer, config


def read_hf_dir(path: Path) -> tuple[str, TransformerConfig, Tokenizer, dict]:
    """A published directory's architecture, network shape, tokenizer and dlm config (the
    one ``load_hf_dir`` returns), without reading a weight: what ``dlm info`` shows."""
    cfg_file = path / "config.json"
    hf_config = read_json(cfg_file)
    arch = architecture(hf_config, cfg_file)
    try:
        net_cfg = translate_config(arch, hf_config, cfg_file)
    except (TypeError, ValueError) as e:
        raise DLMError(f"{cfg_file}: bad model shape ({e})") from None
    tokenizer = hf_tokenizer(path, hf_config, net_cfg.vocab_size)
    with torch.device("meta"):
        network = Transformer(net_cfg)
    config = {"kind": "mdlm", "model": net_cfg.to_dict(), "tokenizer": tokenizer.config(),
              "chat_template": chat_template(path), "bos_token": bos_token(path),
              "source": {"format": arch, "path": str(path),
                         "model_type": hf_config.get("model_type")},
              "generation": generation_defaults(path, arch),
              "params": {"total": network.num_params(),
                         "non_embedding": network.num_params(non_embedding=True)}}
    return arch, net_cfg, tokenizer, config


# -- export: our checkpoint -> the published layout ------------------------------------------

_INVERSE: dict[str, list[tuple[str, str]]] = {
    "llada": [
        (r"embed_tokens\.weight", "model.transformer.wte.weight"),
        (r"norm\.weight", "model.transformer.ln_f.weight"),
        (r"lm_head\.weight", "model.transformer.ff_out.weight"),
        (r"blocks\.(\d+)\.attn_norm\.weight", r"model.transformer.blocks.\1.attn_norm.weight"),
        (r"blocks\.(\d+)\.attn\.([qkv])_proj\.(weight|bias)",
         r"model.transformer.blocks.\1.\2_proj.\3"),
        (r"blocks\.(\d+)\.attn\.o_proj\.weight", r"model.transformer.blocks.\1.attn_out.weight"),
        (r"blocks\.(\d+)\.mlp_norm\.weight", r"model.transformer.blocks.\1.ff_norm.weight"),
        (r"blocks\.(\d+)\.mlp\.gate_proj\.weight", r"model.transformer.blocks.\1.ff_proj.weight"),
        (r"blocks\.(\d+)\.mlp\.up_proj\.weight", r"model.transformer.blocks.\1.up_proj.weight"),
        (r"blocks\.(\d+)\.mlp\.down_proj\.weight", r"model.transformer.blocks.\1.ff_out.weight"),
    ],
    "dream": [
        (r"embed_tokens\.weight", "model.embed_tokens.weight"),
        (r"norm\.weight", "model.norm.weight"),
        (r"lm_head\.weight", "lm_head.weight"),
        (r"blocks\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
        (r"blocks\.(\d+)\.attn\.([qkvo])_proj\.(weight|bias)",
         r"model.layers.\1.self_attn.\2_proj.\3"),
        (r"blocks\.(\d+)\.mlp_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
        (r"blocks\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", r"model.layers.\1.mlp.\2_proj.weight"),
    ],
}


def published_name(arch: str, ours: str) -> str:
    for pattern, target in _INVERSE[arch]:
        if re.fullmatch(pattern, ours):
            return re.sub(pattern, target, ours)
    raise DLMError(f"no {arch} name for tensor {ours!r}")


def export_hf(path: str | Path, network: Transformer, tokenizer: Tokenizer, config: dict,
              sample_defaults: dict) -> str:
    """Write ``path`` in the published layout dlm loads back (config.json, model.safetensors,
    tokenizer.json, generation_config.json with the sampler defaults). A masked-diffusion
    network with shifted logits is written as Dream (which needs q/k/v biases), any other as
    LLaDA. Returns the architecture written."""
    from safetensors.torch import save_file

    if config.get("kind") != "mdlm":
        raise DLMError(f"only masked-diffusion models export to the LLaDA / Dream layout "
                       f"(this one is {config.get('kind')!r})")
    c = network.config
    arch = "dream" if c.shift_logits else "llada"
    if arch == "dream" and not c.qkv_bias:
        raise DLMError("a shifted-logit model without q/k/v biases has no published layout")
    ids = {"mask_token_id": tokenizer.mask_id, "eos_token_id": tokenizer.eos_id,
           "pad_token_id": tokenizer.pad_id}
    if arch == "llada":
        hf_config = {
            "architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu",
            "alibi": False, "attention_layer_norm": False, "block_group_size": 1,
            "block_type": "llama", "d_model": c.d_model, "embedding_size": c.vocab_size,
            "vocab_size": c.vocab_size, "include_bias": False, "include_qkv_bias": c.qkv_bias,
            "input_emb_norm": False, "layer_norm_type": "rms", "rms_norm_eps": c.norm_eps,
            "max_sequence_length": c.max_seq_len, "mlp_hidden_size": c.d_ff,
            "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads, "n_layers": c.n_layers,
            "rope": True, "rope_theta": c.rope_theta, "scale_logits": False,
            "weight_tying": c.tie_embeddings, **ids}
    else:
        hf_config = {
            "architectures": ["DreamModel"], "model_type": "Dream", "hidden_act": "silu",
            "hidden_size": c.d_model, "intermediate_size": c.d_ff,
            "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads,
            "num_hidden_layers": c.n_layers, "rms_norm_eps": c.norm_eps,
            "rope_theta": c.rope_theta, "rope_scaling": None,
            "tie_word_embeddings": c.tie_embeddings, "vocab_size": c.vocab_size,
            "max_position_embeddings": c.max_seq_len, "use_sliding_window": False,
            "bos_token_id": tokenizer.eos_id, **ids}
    hf_config["torch_dtype"] = str(network.embed_tokens.weight.dtype).removeprefix("torch.")
    state = {published_name(arch, name): tensor
             for name, tensor in state_dict_for_save(network).items()}  # a tied head once
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / SINGLE_FILE), metadata={"format": "pt"})
    tokenizer.save(path / "tokenizer.json")
    if config.get("chat_template"):
        (path / "tokenizer_config.json").write_text(json.dumps(
            {"chat_template": config["chat_template"], "bos_token": config.get("bos_token", ""),
             "eos_token": tokenizer.eos_token,
             "pad_token": tokenizer.pad_token, "mask_token": tokenizer.mask_token}, indent=2))
    (path / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    generation = {**sample_defaults, **ids}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return arch
