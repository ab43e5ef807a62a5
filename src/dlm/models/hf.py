"""Published diffusion LM checkpoints (Hugging Face layout) onto our ``Transformer``.

A Hugging Face model directory holds ``config.json``, the weights as ``model.safetensors`` or as
shards listed in ``model.safetensors.index.json``, and ``tokenizer.json``. Four families are
mapped, all Llama-style decoders run without a causal mask:

* **LLaDA** (``model_type: llada``; GSAI-ML/LLaDA-8B-*): OLMo-style names
  (``model.transformer.blocks.N.ff_proj`` is the SiLU gate, ``up_proj`` the up projection,
  ``ff_out`` the down projection, and the top-level ``model.transformer.ff_out`` the head);
* **Dream** (``model_type: Dream``; Dream-org/Dream-v0-*-7B): Qwen2 names, q/k/v with bias,
  and logits shifted by one (slot i's token is read from the logits at i - 1);
* **LLaDA-MoE** (inclusionAI/LLaDA-MoE-7B-A1B-*; its config also says ``model_type: llada``,
  so it is told by its MoE keys): Qwen2-style names, per-head q/k norms, a mixture of experts
  with softmax routing (``mlp.gate``, ``mlp.experts.E``, an optional ``mlp.expert_bias``, a
  shared expert at ``layers.N.shared_expert``);
* **LLaDA2** (``model_type: llada2_moe``; inclusionAI/LLaDA2.0-mini / -flash): block
  diffusion (block-causal attention, blocks of 32 counted from the text's first token), fused
  ``attention.query_key_value``, q/k norms, partial rotary, the first layers dense, then
  experts with group-limited sigmoid routing and one shared expert.

Only names are changed, except LLaDA2's fused q/k/v, which is split into q, k and v by rows
(and joined again on export); no tensor is transposed. Weights are read tensor by tensor
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

from .. import kinds
from ..data.tokenizer import Tokenizer
from ..errors import DLMError
from .formats import fill_network, read_json, state_dict_for_save
from .transformer import Transformer, TransformerConfig

INDEX_FILE, SINGLE_FILE = "model.safetensors.index.json", "model.safetensors"

_LB = r"model\.transformer\.blocks\.(\d+)\."  # a LLaDA block
_DL = r"model\.layers\.(\d+)\."  # a Dream (Qwen2-style) layer; LLaDA-MoE's and LLaDA2's too
# the names LLaDA-MoE and LLaDA2 share: norms, head, router, experts, dense feed-forwards
_MOE_IN = [
    (r"model\.norm\.weight", "norm.weight"), (r"lm_head\.weight", "lm_head.weight"),
    (_DL + r"input_layernorm\.weight", r"blocks.\1.attn_norm.weight"),
    (_DL + r"post_attention_layernorm\.weight", r"blocks.\1.mlp_norm.weight"),
    (_DL + r"mlp\.gate\.weight", r"blocks.\1.mlp.router.weight"),
    (_DL + r"mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight",
     r"blocks.\1.mlp.experts.\2.\3_proj.weight"),
    (_DL + r"mlp\.(gate|up|down)_proj\.weight", r"blocks.\1.mlp.\2_proj.weight"),  # dense
    (r".*rotary_emb\.inv_freq", None),
]

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
    "llada_moe": [
        (r"model\.embed_tokens\.weight", "embed_tokens.weight"), *_MOE_IN,
        (_DL + r"self_attn\.([qkvo])_proj\.weight", r"blocks.\1.attn.\2_proj.weight"),
        (_DL + r"self_attn\.([qk])_norm\.weight", r"blocks.\1.attn.\2_norm.weight"),
        (_DL + r"mlp\.expert_bias", r"blocks.\1.mlp.expert_bias"),
        (_DL + r"shared_expert\.(gate|up|down)_proj\.weight",
         r"blocks.\1.mlp.shared.\2_proj.weight"),
    ],
    "llada2": [
        (r"model\.word_embeddings\.weight", "embed_tokens.weight"), *_MOE_IN,
        (_DL + r"attention\.query_key_value\.(weight|bias)",  # split by rows into q | k | v
         (r"blocks.\1.attn.q_proj.\2", r"blocks.\1.attn.k_proj.\2", r"blocks.\1.attn.v_proj.\2")),
        (_DL + r"attention\.query_layernorm\.weight", r"blocks.\1.attn.q_norm.weight"),
        (_DL + r"attention\.key_layernorm\.weight", r"blocks.\1.attn.k_norm.weight"),
        (_DL + r"attention\.dense\.weight", r"blocks.\1.attn.o_proj.weight"),
        (_DL + r"mlp\.gate\.expert_bias", r"blocks.\1.mlp.expert_bias"),
        (_DL + r"mlp\.shared_experts\.(gate|up|down)_proj\.weight",
         r"blocks.\1.mlp.shared.\2_proj.weight"),
    ],
}
LLADA2_BLOCK = 32  # the block size LLaDA2 was trained and is sampled with (its generate())

# the published samplers' defaults (LLaDA's generate.py / Dream's generation_config.json)
GENERATION_DEFAULTS = {
    # LLaDA's chat demo uses blocks of 32; its base-model evaluation one block: no default
    "llada": {"steps": 128, "gen_length": 128, "temperature": 0.0,
              "remasking": "low_confidence"},
    # Dream's DreamGenerationConfig: alg origin, eps 1e-3; its counts, and its scores on the
    # distribution tokens are drawn from, for the other algs
    "dream": {"steps": 512, "gen_length": 512, "temperature": 0.0, "remasking": "origin",
              "transfer": "dream", "eps": 1e-3, "confidence": "sampled"},
    # LLaDA's generate() (the LLaDA family's sampler; dllm runs LLaDA-MoE with it)
    "llada_moe": {"steps": 128, "gen_length": 128, "temperature": 0.0,
                  "remasking": "low_confidence"},
    # LLaDA2's generate(): blocks of 32 (the model's), 32 steps each, every masked slot over
    # 0.95 per step (at least one); it stops after the block that holds an EOS
    "llada2": {"gen_length": 2048, "temperature": 0.0, "remasking": "low_confidence",
               "threshold": 0.95},
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
    """'llada', 'dream', 'llada_moe' or 'llada2' from a Hugging Face config.json; anything else
    is refused. LLaDA-MoE's published config says model_type llada, like dense LLaDA: it is
    told by its architecture name or its MoE keys."""
    names = [str(config.get("model_type", "")).lower(),
             *(str(a).lower() for a in config.get("architectures") or [])]
    if any(n.startswith("llada2") for n in names):
        return "llada2"
    if any(n.startswith("lladamoe") for n in names) or (
            any(n.startswith("llada") for n in names) and "num_experts" in config):
        return "llada_moe"
    if any(n.startswith("llada") for n in names):
        return "llada"
    if any(n.startswith("dream") for n in names):
        return "dream"
    raise DLMError(f"{where}: unknown architecture (model_type {config.get('model_type')!r}, "
                   f"architectures {config.get('architectures')}); dlm loads LLaDA, "
                   "LLaDA-MoE, LLaDA2 and Dream checkpoints and its own")


def _need(config: dict, key: str, where: Path):
    if config.get(key) is None:
        raise DLMError(f"{where}: config.json lacks {key!r}")
    return config[key]


def _common_refusals(c: dict, where: Path) -> None:
    if c.get("rope_scaling"):
        raise DLMError(f"{where}: rope_scaling {c['rope_scaling']} is not supported")
    if c.get("use_sliding_window"):
        raise DLMError(f"{where}: sliding-window attention is not supported")
    if c.get("hidden_act", "silu") != "silu":
        raise DLMError(f"{where}: hidden_act {c['hidden_act']!r} is not supported")


def _rotary_dim(c: dict, head_dim: int, where: Path, default: float | None = None) -> int:
    factor = c.get("partial_rotary_factor", default)
    if factor is None or not 0 < factor <= 1 or int(head_dim * factor) % 2:
        raise DLMError(f"{where}: partial_rotary_factor {factor!r} is not supported (need a "
                       "fraction in (0, 1] of the head giving an even number of dims)")
    return int(head_dim * factor)


def translate_moe_config(arch: str, c: dict, where: Path) -> TransformerConfig:
    """LLaDA-MoE's or LLaDA2's config.json -> ours (the keys each family's model code reads)."""
    _common_refusals(c, where)
    n_layers, n_heads = _need(c, "num_hidden_layers", where), _need(c, "num_attention_heads",
                                                                    where)
    d = _need(c, "hidden_size", where)
    common = dict(vocab_size=_need(c, "vocab_size", where), d_model=d, n_layers=n_layers,
                  n_heads=n_heads, n_kv_heads=c.get("num_key_value_heads") or n_heads,
                  rope_theta=float(_need(c, "rope_theta", where)),
                  tie_embeddings=bool(c.get("tie_word_embeddings", False)))
    if arch == "llada_moe":
        for key in ("attention_bias", "clip_qkv"):
            if c.get(key):
                raise DLMError(f"{where}: {key}={c[key]} is not supported")
        freq = _need(c, "moe_layer_freq", where)
        if not isinstance(freq, list) or len(freq) != n_layers:
            raise DLMError(f"{where}: moe_layer_freq must list each of the {n_layers} layers")
        shared = c.get("shared_expert_intermediate_size")
        if shared is not None and shared < 0:
            raise DLMError(f"{where}: shared_expert_intermediate_size {shared} is not a size "
                           "(null: no shared expert)")
        moe = [i for i, f in enumerate(freq) if f]
        return TransformerConfig(
            **common, d_ff=c.get("dense_intermediate_size") or _need(
                c, "expert_intermediate_size", where),
            max_seq_len=c.get("max_position_embeddings", 4096),
            norm_eps=c.get("rms_norm_eps", 1e-5), qk_norm=bool(c.get("qk_layernorm")),
            rotary_dim=_rotary_dim(c, d // n_heads, where),
            n_experts=_need(c, "num_experts", where) if moe else 0,
            experts_per_token=_need(c, "num_experts_per_tok", where) if moe else 0,
            d_expert=_need(c, "expert_intermediate_size", where) if moe else None,
            d_shared_expert=shared or 0, moe_layers=moe, router="softmax",
            router_bias=bool(c.get("moe_router_enable_expert_bias")))
    if c.get("use_bias", True):  # LLaDA2's code default: a bias on the attention output
        raise DLMError(f"{where}: use_bias (an attention output bias) is not supported")
    head = c.get("head_dim") or d // n_heads
    experts = c.get("num_experts")
    first_dense = c.get("first_k_dense_replace", 0)
    moe = list(range(first_dense, n_layers)) if experts else []
    shared = (c.get("num_shared_experts") or 0) * (c.get("moe_intermediate_size") or 0)
    return TransformerConfig(
        **common, head_size=head, d_ff=c.get("intermediate_size") or _need(
            c, "moe_intermediate_size", where),
        max_seq_len=c.get("max_position_embeddings", 16384),
        norm_eps=c.get("rms_norm_eps", 1e-5), qkv_bias=bool(c.get("use_qkv_bias", False)),
        qk_norm=bool(c.get("use_qk_norm", True)), rotary_dim=_rotary_dim(c, head, where, 0.5),
        n_experts=experts if moe else 0,
        experts_per_token=_need(c, "num_experts_per_tok", where) if moe else 0,
        d_expert=_need(c, "moe_intermediate_size", where) if moe else None,
        d_shared_expert=shared if moe else 0, moe_layers=moe, router="sigmoid",
        router_bias=bool(moe), router_norm=True,
        router_scale=float(c.get("routed_scaling_factor", 2.5)),
        router_groups=c.get("n_group") or 1, router_topk_groups=c.get("topk_group") or 1)


def translate_config(arch: str, c: dict, where: Path) -> TransformerConfig:
    """Our network config from a published config.json (unsupported variants refused)."""
    if arch in ("llada_moe", "llada2"):
        return translate_moe_config(arch, c, where)
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
    _common_refusals(c, where)
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


def our_name(arch: str, name: str) -> str | tuple[str, ...] | None | bool:
    """Our parameter name for a published one (a tuple: one tensor split by rows into these);
    None: known and ignored; False: unknown."""
    for pattern, target in RENAMES[arch]:
        if re.fullmatch(pattern, name):
            if target is None:
                return None
            if isinstance(target, tuple):
                return tuple(re.sub(pattern, t, name) for t in target)
            return re.sub(pattern, target, name)
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


MASK_TOKENS = ("<|mask|>", "<|mdm_mask|>")  # LLaDA-MoE / LLaDA2 (as dllm reads it), Dream


def special_id(hf, path: Path, config: dict, role: str) -> int:
    """The mask or EOS id: config.json's ``<role>_token_id``, else the token that
    tokenizer_config.json names (LLaDA-MoE and LLaDA2 declare no mask id in config.json;
    their samplers take it from the tokenizer), else a mask token of a known name."""
    given = config.get(f"{role}_token_id")
    if isinstance(given, list):  # several stop ids: the first is the end-of-text
        given = given[0] if given else None
    if given is not None:
        return int(given)
    token = read_json(path / "tokenizer_config.json", missing={}).get(f"{role}_token")
    if isinstance(token, dict):
        token = token.get("content")
    names = [token] if isinstance(token, str) else list(MASK_TOKENS if role == "mask" else [])
    for name in names:
        if hf.token_to_id(name) is not None:
            return hf.token_to_id(name)
    raise DLMError(f"{path / 'config.json'}: no {role}_token_id, and the tokenizer names no "
                   f"{role} token (tokenizer_config.json {role}_token)")


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
    mask_id = special_id(hf, path, config, "mask")
    eos_id = special_id(hf, path, config, "eos")
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
                    parts = ours if isinstance(ours, tuple) else (ours,)
                    if ours is False or any(p not in expected for p in parts):
                        if strict:
                            raise DLMError(f"{f.name}: unexpected tensor {name!r} for a {arch} "
                                           "model (load with strict=False to skip it)")
                        continue
                    if name not in present:
                        raise DLMError(f"{f.name}: tensor {name!r} is listed in the index but "
                                       "missing from the file")
                    tensor = sf.get_tensor(name)
                    want = (sum(expected[p][0] for p in parts), *expected[parts[0]][1:])
                    if tuple(tensor.shape) != want:
                        raise DLMError(f"{f.name}: {name} has shape {tuple(tensor.shape)}, "
                                       f"config.json implies {want}")
                    pieces = tensor.split([expected[p][0] for p in parts]) \
                        if len(parts) > 1 else (tensor,)
                    for p, piece in zip(parts, pieces):
                        keep = dtype is None or p.endswith("expert_bias")  # stays float32
                        state[p] = (piece if keep else piece.to(dtype)).contiguous()
                        source[p] = name
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
    config = {"kind": kinds.of_layout(arch).name, "model": net_cfg.to_dict(),
              "tokenizer": tokenizer.config(),
              "chat_template": chat_template(path), "bos_token": bos_token(path),
              "source": {"format": arch, "path": str(path),
                         "model_type": hf_config.get("model_type")},
              "generation": generation_defaults(path, arch),
              "params": {"total": network.num_params(),
                         "non_embedding": network.num_params(non_embedding=True)}}
    if arch == "llada2":  # block diffusion: the driver decodes the model's own blocks
        config["objective"] = {"block_size": LLADA2_BLOCK}
    if net_cfg.n_experts:
        config["params"]["active"] = active_params(net_cfg, network)
    return arch, net_cfg, tokenizer, config


def active_params(cfg: TransformerConfig, network: Transformer) -> int:
    """Parameters one token runs through: all but the experts it is not routed to."""
    per_expert = 3 * cfg.d_model * cfg.d_expert
    idle = (cfg.n_experts - cfg.experts_per_token) * per_expert
    return network.num_params() - idle * sum(map(cfg.is_moe, range(cfg.n_layers)))


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


_B = r"blocks\.(\d+)\."
_MOE_OUT = [
    (r"norm\.weight", "model.norm.weight"), (r"lm_head\.weight", "lm_head.weight"),
    (_B + r"attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (_B + r"mlp_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (_B + r"mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight",
     r"model.layers.\1.mlp.experts.\2.\3_proj.weight"),
    (_B + r"mlp\.(gate|up|down)_proj\.weight", r"model.layers.\1.mlp.\2_proj.weight"),
]
_INVERSE["llada_moe"] = [
    (r"embed_tokens\.weight", "model.embed_tokens.weight"), *_MOE_OUT,
    (_B + r"attn\.([qkvo])_proj\.weight", r"model.layers.\1.self_attn.\2_proj.weight"),
    (_B + r"attn\.([qk])_norm\.weight", r"model.layers.\1.self_attn.\2_norm.weight"),
    (_B + r"mlp\.router\.weight", r"model.layers.\1.mlp.gate.weight"),
    (_B + r"mlp\.expert_bias", r"model.layers.\1.mlp.expert_bias"),
    (_B + r"mlp\.shared\.(gate|up|down)_proj\.weight",
     r"model.layers.\1.shared_expert.\2_proj.weight"),
]
_INVERSE["llada2"] = [
    (r"embed_tokens\.weight", "model.word_embeddings.weight"), *_MOE_OUT,
    (_B + r"attn\.[qkv]_proj\.(weight|bias)", r"model.layers.\1.attention.query_key_value.\2"),
    (_B + r"attn\.q_norm\.weight", r"model.layers.\1.attention.query_layernorm.weight"),
    (_B + r"attn\.k_norm\.weight", r"model.layers.\1.attention.key_layernorm.weight"),
    (_B + r"attn\.o_proj\.weight", r"model.layers.\1.attention.dense.weight"),
    (_B + r"mlp\.router\.weight", r"model.layers.\1.mlp.gate.weight"),
    (_B + r"mlp\.expert_bias", r"model.layers.\1.mlp.gate.expert_bias"),
    (_B + r"mlp\.shared\.(gate|up|down)_proj\.weight",
     r"model.layers.\1.mlp.shared_experts.\2_proj.weight"),
]


def published_state(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our tensors under their published names; several of ours under one name (LLaDA2's
    fused q/k/v) are joined by rows in the order q, k, v."""
    grouped: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in state.items():
        grouped.setdefault(published_name(arch, name), []).append((name, tensor))
    order = {"q_proj": 0, "k_proj": 1, "v_proj": 2}
    return {out: torch.cat([t for _, t in sorted(parts, key=lambda p: order.get(
        p[0].split(".")[-2], 0))]) if len(parts) > 1 else parts[0][1]
        for out, parts in grouped.items()}


def published_name(arch: str, ours: str) -> str:
    for pattern, target in _INVERSE[arch]:
        if re.fullmatch(pattern, ours):
            return re.sub(pattern, target, ours)
    raise DLMError(f"no {arch} name for tensor {ours!r}")


def export_hf(path: str | Path, network: Transformer, tokenizer: Tokenizer, config: dict,
              sample_defaults: dict) -> str:
    """Write ``path`` in the published layout dlm loads back (config.json, model.safetensors,
    tokenizer.json, generation_config.json with the sampler defaults). A mixture of experts
    is written as LLaDA-MoE (softmax routing) or LLaDA2 (sigmoid routing, block diffusion), a
    masked-diffusion network with shifted logits as Dream (which needs q/k/v biases), any
    other as LLaDA. Returns the architecture written."""
    from safetensors.torch import save_file

    c = network.config
    arch = export_architecture(c, config)
    ids = {"mask_token_id": tokenizer.mask_id, "eos_token_id": tokenizer.eos_id,
           "pad_token_id": tokenizer.pad_id}
    if arch in ("llada_moe", "llada2"):
        hf_config = {**moe_config_json(arch, c), **ids}
    elif arch == "llada":
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
    state = published_state(arch, state_dict_for_save(network))  # a tied head once
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


def export_architecture(c: TransformerConfig, config: dict) -> str:
    """The published layout a network fits, or a clear error."""
    kind = config.get("kind")
    layouts = kinds.get(kind).published  # what the model's kind may be written as
    block = config.get("objective", {}).get("block_size")
    rot = c.rotary_dim or c.head_dim
    if c.n_experts and (c.shift_logits or int(c.head_dim * (rot / c.head_dim)) != rot):
        raise DLMError("shifted logits, or a rotary width that is no exact fraction of the "
                       "head, have no LLaDA-MoE / LLaDA2 layout")
    if c.n_experts and c.router == "sigmoid":
        if not (c.router_bias and c.router_norm):
            raise DLMError("LLaDA2's router always has an expert bias and renormalises")
        if "llada2" not in layouts or block != LLADA2_BLOCK:
            raise DLMError(f"a sigmoid-routed mixture of experts exports as LLaDA2, a block "
                           f"diffusion model with blocks of {LLADA2_BLOCK} (this one is "
                           f"{kind!r}, block size {block})")
        moe = [i for i in range(c.n_layers) if c.is_moe(i)]
        if moe != list(range(c.n_layers - len(moe), c.n_layers)):
            raise DLMError("LLaDA2's layout has its dense layers first, then only MoE layers")
        if c.d_shared_expert % c.d_expert:
            raise DLMError("LLaDA2's shared expert is a whole number of experts wide")
        return "llada2"
    if "llada" not in layouts:
        raise DLMError(f"only masked-diffusion models (and LLaDA2's block diffusion) export to "
                       f"a published layout (this one is {kind!r})")
    if c.n_experts:
        if c.router_norm or c.router_scale != 1 or c.router_groups != 1 or c.head_size or \
                c.qkv_bias:
            raise DLMError("LLaDA-MoE's layout has plain softmax routing (no renormalisation, "
                           "scale or groups), heads of d_model / n_heads and no q/k/v bias")
        return "llada_moe"
    if c.qk_norm or c.rotary_dim or c.head_size:
        raise DLMError("q/k norms, partial rotary and a set head size have no LLaDA / Dream "
                       "layout")
    if c.shift_logits and not c.qkv_bias:
        raise DLMError("a shifted-logit model without q/k/v biases has no published layout")
    return "dream" if c.shift_logits else "llada"


def moe_config_json(arch: str, c: TransformerConfig) -> dict:
    """config.json of LLaDA-MoE or LLaDA2 for our network config (the keys their code reads)."""
    out = {"hidden_size": c.d_model, "num_hidden_layers": c.n_layers,
           "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads,
           "vocab_size": c.vocab_size, "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
           "rope_scaling": None, "max_position_embeddings": c.max_seq_len,
           "tie_word_embeddings": c.tie_embeddings, "hidden_act": "silu",
           "partial_rotary_factor": (c.rotary_dim or c.head_dim) / c.head_dim,
           "num_experts": c.n_experts, "num_experts_per_tok": c.experts_per_token}
    moe = [c.is_moe(i) for i in range(c.n_layers)]
    if arch == "llada_moe":
        return {**out, "architectures": ["LLaDAMoEModelLM"], "model_type": "llada",
                "dense_intermediate_size": c.d_ff, "expert_intermediate_size": c.d_expert,
                "shared_expert_intermediate_size": c.d_shared_expert or None,
                "moe_layer_freq": [int(m) for m in moe], "norm_topk_prob": False,
                "moe_router_enable_expert_bias": c.router_bias, "qk_layernorm": c.qk_norm,
                "attention_bias": False, "clip_qkv": None}
    return {**out, "architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe",
            "head_dim": c.head_dim, "intermediate_size": c.d_ff,
            "moe_intermediate_size": c.d_expert,
            "num_shared_experts": c.d_shared_expert // c.d_expert,
            "first_k_dense_replace": moe.index(True) if any(moe) else c.n_layers,
            "n_group": c.router_groups, "topk_group": c.router_topk_groups,
            "routed_scaling_factor": c.router_scale, "score_function": "sigmoid",
            "norm_topk_prob": True, "moe_router_enable_expert_bias": True,
            "use_qkv_bias": c.qkv_bias, "use_bias": False, "use_qk_norm": c.qk_norm}
