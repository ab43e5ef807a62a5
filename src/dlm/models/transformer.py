"""The denoiser network shared by every model kind (AR, MDLM, BD3-LM).

One Llama-style decoder stack: token embedding -> N x (RMSNorm -> attention -> residual,
RMSNorm -> SwiGLU or a mixture of SwiGLU experts -> residual) -> RMSNorm -> linear head. The
options published checkpoints need are fields of the config: q/k biases (Qwen2, Dream), per-head
q/k RMSNorm and partial rotary (LLaDA-MoE, LLaDA2), mixture-of-experts feed-forwards with
softmax (LLaDA-MoE) or group-limited sigmoid routing (LLaDA2, DeepSeek-V3 style). What makes
a model autoregressive or a masked diffusion model is *not* in this file: it is the attention
spec the caller passes (causal vs bidirectional vs block-causal) and the objective that trains
it.

    net = Transformer(TransformerConfig(vocab_size=259, d_model=64, n_layers=2, n_heads=4))
    logits = net(ids, attn=Attention.bidirectional())            # [B, T, V]

The contract of docs/architecture.md, "The network":
``net(input_ids, attn=..., positions=None, cache=None) -> logits``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TransformerConfig:
    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # < n_heads gives grouped-query attention (GQA)
    d_ff: int | None = None  # SwiGLU hidden size; default ~8/3 d_model rounded up to 32
    max_seq_len: int = 256  # the context the model was trained for (RoPE itself has no limit)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False  # Qwen2/Dream style
    tie_embeddings: bool = True
    dropout: float = 0.0
    init_std: float = 0.02
    # Dream-style models (adapted from AR) predict token i from the logits at i - 1; the
    # sampler and likelihood read their logits one slot earlier.
    shift_logits: bool = False
    head_size: int | None = None  # per-head width; default d_model // n_heads
    qk_norm: bool = False  # RMSNorm of each head's q and k (one [head] weight each), before RoPE
    rotary_dim: int | None = None  # RoPE on the first rotary_dim dims of a head (default: all)
    # mixture of experts (0 experts: every feed-forward is one SwiGLU of d_ff)
    n_experts: int = 0
    experts_per_token: int = 0  # the top k experts each token is sent to
    d_expert: int | None = None  # each expert's SwiGLU width
    d_shared_expert: int = 0  # width of the shared expert(s) every token also runs; 0: none
    moe_layers: list[int] | None = None  # which layers are MoE (default: all); others d_ff
    router: str = "softmax"  # softmax (LLaDA-MoE) or sigmoid (LLaDA2, DeepSeek-V3): see MoE
    router_bias: bool = False  # a per-expert bias on the scores (a buffer, not trained here)
    router_norm: bool = False  # renormalise the top-k weights to sum to one
    router_scale: float = 1.0  # multiplies the weights
    router_groups: int = 1  # group-limited routing: experts in groups, the best groups kept
    router_topk_groups: int = 1

    ROUTERS = ("softmax", "sigmoid")

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = 32 * math.ceil(8 * self.d_model / 3 / 32)
        if self.head_size is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by "
                             f"n_kv_heads={self.n_kv_heads}")
        rot = self.rotary_dim if self.rotary_dim is not None else self.head_dim
        if rot % 2 or not 0 < rot <= self.head_dim:
            raise ValueError(f"the rotary dims ({rot}) must be even and at most the head "
                             f"dimension ({self.head_dim})")
        if self.n_experts:
            if not 0 < self.experts_per_token <= self.n_experts or not self.d_expert:
                raise ValueError("a mixture of experts needs experts_per_token in 1.."
                                 f"{self.n_experts} and d_expert")
            if self.router not in self.ROUTERS:
                raise ValueError(f"unknown router {self.router!r}; expected one of "
                                 f"{self.ROUTERS}")
            if self.n_experts % self.router_groups or not \
                    0 < self.router_topk_groups <= self.router_groups:
                raise ValueError(f"{self.n_experts} experts cannot form {self.router_groups} "
                                 f"groups with {self.router_topk_groups} kept")

    @property
    def head_dim(self) -> int:
        return self.head_size or self.d_model // self.n_heads

    def is_moe(self, layer: int) -> bool:
        return bool(self.n_experts) and (self.moe_layers is None or layer in self.moe_layers)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Attention specification


@dataclass(frozen=True)
class Attention:
    """Which keys each query may see.

    kind: ``bidirectional`` (every token sees every token: masked diffusion), ``causal``
    (AR), ``block_causal`` (token i sees token j iff block(j) <= block(i), block = index //
    block_size: block diffusion sampling), or ``block_diffusion`` (BD3-LM training on
    ``[x_t ; x_0]``, 2L slots: an x_t token sees its own x_t block and the x_0 blocks before
    it; an x_0 token sees the x_0 blocks up to its own). ``key_padding_mask`` [B, Tk] is True
    for real tokens; padded keys are hidden from every query (a padded query still sees itself
    so no row is empty). Indices are slots in the (cache + input) sequence, not RoPE positions,
    so left padding works: positions are passed separately.
    """

    kind: str = "bidirectional"
    block_size: int | None = None
    key_padding_mask: Tensor | None = field(default=None, compare=False)

    KINDS = ("bidirectional", "causal", "block_causal", "block_diffusion")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown attention kind {self.kind!r}; expected one of {self.KINDS}")
        if self.kind in ("block_causal", "block_diffusion") and not (
                self.block_size and self.block_size > 0):
            raise ValueError(f"{self.kind} attention needs a positive block_size")

    @classmethod
    def bidirectional(cls, key_padding_mask: Tensor | None = None) -> Attention:
        return cls("bidirectional", None, key_padding_mask)

    @classmethod
    def causal(cls, key_padding_mask: Tensor | None = None) -> Attention:
        return cls("causal", None, key_padding_mask)

    @classmethod
    def block_causal(cls, block_size: int, key_padding_mask: Tensor | None = None) -> Attention:
        return cls("block_causal", block_size, key_padding_mask)

    @classmethod
    def block_diffusion(cls, block_size: int) -> Attention:
        return cls("block_diffusion", block_size)

    def with_padding(self, key_padding_mask: Tensor | None) -> Attention:
        return Attention(self.kind, self.block_size, key_padding_mask)

    def mask(self, q_index: Tensor, k_len: int) -> Tensor | None:
        """Boolean mask [B|1, 1, Tq, Tk] (True = may attend), or None when nothing is hidden."""
        k_index = torch.arange(k_len, device=q_index.device)
        allowed: Tensor | None = None
        if self.kind == "causal":
            allowed = k_index[None, :] <= q_index[:, None]
        elif self.kind == "block_causal":
            bs = self.block_size
            allowed = (k_index[None, :] // bs) <= (q_index[:, None] // bs)
        elif self.kind == "block_diffusion":
            allowed = block_diffusion_rule(q_index[:, None], k_index[None, :], k_len // 2,
                                           self.block_size)
        if self.key_padding_mask is not None:
            kpm = self.key_padding_mask[:, None, None, :].bool()  # [B, 1, 1, Tk]
            diag = k_index[None, :] == q_index[:, None]  # [Tq, Tk]
            keep = kpm | diag
            allowed = keep if allowed is None else keep & allowed
        if allowed is None:
            return None
        while allowed.dim() < 4:
            allowed = allowed.unsqueeze(0)
        return allowed


def block_diffusion_rule(q: Tensor, k: Tensor, L: int, bs: int) -> Tensor:
    """May slot q attend to slot k in [x_t ; x_0] (slots [0, L) noisy, [L, 2L) clean)? An x_t
    token sees its own noisy block and the clean blocks before it; an x_0 token the clean
    blocks up to its own. Broadcasts (the SDPA mask) and works on scalars (flex's mask_mod)."""
    q_clean, k_clean = q >= L, k >= L
    q_blk, k_blk = (q % L) // bs, (k % L) // bs
    return torch.where(q_clean, k_clean & (k_blk <= q_blk),
                       (~k_clean & (k_blk == q_blk)) | (k_clean & (k_blk < q_blk)))


# ----------------------------------------------------------------------------------------------
# KV cache


class KVCache:
    """Per-layer keys and values of the tokens already processed, [B, H_kv, T, D] each.

    A forward call attends to cache + new tokens. How many of the new tokens' keys/values it
    stores is ``store``: None (all: plain AR decoding) or a count of leading new tokens. The
    sampling driver feeds "committed-but-uncached tokens + current block" and stores only the
    committed ones: under causal or block-causal attention their keys/values cannot depend on
    the block after them, so they are exact, and no extra forward pass is spent on caching.

    ``write_at`` (Fast-dLLM's dual cache): the new tokens overwrite the cached slots
    [write_at, write_at + T) in place and attend to the whole cache, past and future slots.
    """

    def __init__(self, n_layers: int, store: int | None = None):
        self.keys: list[Tensor | None] = [None] * n_layers
        self.values: list[Tensor | None] = [None] * n_layers
        self.store = store
        self.write_at: int | None = None

    def evict(self, n: int) -> None:
        """Drop the oldest ``n`` slots (a sliding window). RoPE is relative, so the kept keys
        stay valid for queries at later positions."""
        self.keys = [k if k is None else k[:, :, n:] for k in self.keys]
        self.values = [v if v is None else v[:, :, n:] for v in self.values]

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search), in that order."""
        self.keys = [k if k is None else k.index_select(0, index) for k in self.keys]
        self.values = [v if v is None else v.index_select(0, index) for v in self.values]

    @property
    def length(self) -> int:
        k = self.keys[0]
        return 0 if k is None else k.shape[2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.write_at is not None:
            w = self.write_at
            self.keys[layer][:, :, w:w + k.shape[2]] = k
            self.values[layer][:, :, w:w + v.shape[2]] = v
            return self.keys[layer], self.values[layer]
        old_k, old_v = self.keys[layer], self.values[layer]
        full_k = k if old_k is None else torch.cat([old_k, k], dim=2)
        full_v = v if old_v is None else torch.cat([old_v, v], dim=2)
        n = k.shape[2] if self.store is None else self.store
        if n == k.shape[2]:
            self.keys[layer], self.values[layer] = full_k, full_v
        elif n > 0:
            keep = (old_k.shape[2] if old_k is not None else 0) + n
            self.keys[layer], self.values[layer] = full_k[:, :, :keep], full_v[:, :, :keep]
        return full_k, full_v


# ----------------------------------------------------------------------------------------------
# Building blocks, in the order data flows through them


class RotaryEmbedding(nn.Module):
    """RoPE, "rotate half" convention (as Llama/Qwen checkpoints use).

    Frequencies are computed in float32 on every call (cheap) rather than stored, so casting
    the network to bf16 never degrades them and loading on the meta device needs no fix-up.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta  # head_dim: the rotated dims

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        # positions [B|1, T] -> cos, sin [B|1, 1, T, head_dim]
        exponent = torch.arange(0, self.head_dim, 2, device=positions.device,
                                dtype=torch.float32) / self.head_dim
        inv_freq = 1.0 / (self.theta ** exponent)
        freqs = positions.float()[..., None] * inv_freq  # [B, T, D/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of each head (partial rotary: the rest pass)."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat([apply_rope(x[..., :r], cos, sin), x[..., r:]], dim=-1)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        if cfg.qk_norm:
            self.q_norm = nn.RMSNorm(cfg.head_dim, eps=cfg.norm_eps)
            self.k_norm = nn.RMSNorm(cfg.head_dim, eps=cfg.norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                is_causal: bool, cache: KVCache | None) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if self.n_kv_heads != self.n_heads:  # GQA: each kv head serves n_heads / n_kv_heads queries
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if isinstance(mask, FlexBlockDiffusion):
            y = mask(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class FlexBlockDiffusion:
    """BD3-LM's [x_t ; x_0] attention with PyTorch's flex attention, which skips the masked
    tiles instead of materialising a 2L x 2L mask. Used on CUDA when available (compiled);
    never required: any failure falls back to SDPA with the boolean mask for the session."""

    enabled = True  # set False after a failure

    def __init__(self, length: int, block_size: int, device, compiled: bool = True):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def mask_mod(b, h, q, k):
            return block_diffusion_rule(q, k, length // 2, block_size)

        self.block_mask = create_block_mask(mask_mod, None, None, length, length, device=device)
        self.attend = _compiled_flex() if compiled else flex_attention

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.attend(q, k, v, block_mask=self.block_mask)


_FLEX = None


@functools.lru_cache(maxsize=8)
def _flex_mask(length: int, block_size: int, device) -> FlexBlockDiffusion:
    return FlexBlockDiffusion(length, block_size, device)


def _compiled_flex():
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention)
    return _FLEX


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    """A mixture of SwiGLU experts. Per token the router scores the experts; the token runs
    through its top ``experts_per_token`` and their outputs are summed with the router's
    weights; the shared expert (if any) runs on every token and is added unweighted.

    ``router="softmax"`` (LLaDA-MoE): p = softmax(router(x)) over the experts, plus the expert
    bias if there is one; the top k of these scores are chosen and are also the weights.
    ``router="sigmoid"`` (LLaDA2, DeepSeek-V3): s = sigmoid(router(x)); experts are chosen on
    s + bias (the bias balances the load and is used for the choice only), among the
    ``router_topk_groups`` best of ``router_groups`` groups, a group scored by the sum of its
    two best; the weights are the unbiased s of the chosen. Then, for either: weights divided
    by their sum (+1e-20) when ``router_norm`` and k > 1, times ``router_scale``. The router
    runs in float32; expert outputs are summed in float32 and cast back.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        if cfg.router_bias:
            self.register_buffer("expert_bias", torch.zeros(cfg.n_experts))
        self.experts = nn.ModuleList(SwiGLU(cfg.d_model, cfg.d_expert)
                                     for _ in range(cfg.n_experts))
        self.shared = SwiGLU(cfg.d_model, cfg.d_shared_expert) if cfg.d_shared_expert else None

    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [N, d] -> (weights [N, k] float32, expert indices [N, k])."""
        c = self.cfg
        with torch.autocast(x.device.type, enabled=False):  # float32 even under autocast
            return self._route(x.float(), c)

    def _route(self, x: Tensor, c: TransformerConfig) -> tuple[Tensor, Tensor]:
        logits = F.linear(x, self.router.weight.float())  # [N, E]
        bias = self.expert_bias.float() if c.router_bias else 0.0
        if c.router == "softmax":
            scores = logits.softmax(-1) + bias
            choose = scores
        else:
            scores = logits.sigmoid()
            choose = scores + bias
        if c.router_groups > 1:
            groups = choose.view(len(x), c.router_groups, -1)
            best = groups.topk(min(2, groups.shape[-1]), dim=-1).values.sum(-1)  # [N, G]
            kept = torch.zeros_like(best, dtype=torch.bool).scatter_(
                1, best.topk(c.router_topk_groups, dim=-1).indices, True)
            choose = choose.masked_fill(~kept.repeat_interleave(groups.shape[-1], 1),
                                        float("-inf"))
        index = choose.topk(c.experts_per_token, dim=-1).indices
        weights = scores.gather(1, index)
        if c.router_norm and c.experts_per_token > 1:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * c.router_scale, index

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, index = self.route(flat)
        out = torch.zeros(flat.shape, dtype=torch.float32, device=x.device)
        for e in index.unique().tolist():  # each expert on the tokens routed to it
            rows, k = (index == e).nonzero(as_tuple=True)
            out.index_add_(0, rows, self.experts[e](flat[rows]).float() * weights[rows, k, None])
        out = out.to(x.dtype)
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.view(x.shape)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer: int):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = SelfAttention(cfg, layer)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MoE(cfg) if cfg.is_moe(layer) else SwiGLU(cfg.d_model, cfg.d_ff)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask, is_causal, cache):
        x = x + self.dropout(self.attn(self.attn_norm(x), cos, sin, mask, is_causal, cache))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rope = RotaryEmbedding(cfg.rotary_dim or cfg.head_dim, cfg.rope_theta)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        # What ``forward`` uses when no spec is passed; a loaded AR model sets it to causal.
        self.default_attention = Attention.bidirectional()
        self.apply(self._init_weights)
        # GPT-2's trick: scale the projections that write into the residual stream so its
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed_tokens.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def new_cache(self, store: int | None = None) -> KVCache:
        return KVCache(self.config.n_layers, store=store)

    def forward(self, input_ids: Tensor, attn: Attention | None = None,
                positions: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """input_ids [B, T] -> logits [B, T, V] (float32).

        attn defaults to ``self.default_attention`` (bidirectional unless the model kind set it;
        AR checkpoints load as causal). positions [B|1, T] are RoPE positions (default: slot
        index, continuing after the cache). With a cache, the new tokens attend to the cached
        ones plus themselves under the same spec.
        """
        attn = attn or self.default_attention
        B, T = input_ids.shape
        offset, k_len = 0, T
        if cache is not None:
            offset = cache.length if cache.write_at is None else cache.write_at
            k_len = max(cache.length, offset + T)
        q_index = torch.arange(offset, offset + T, device=input_ids.device)
        if positions is None:
            positions = q_index[None, :]
        cos, sin = self.rope(positions)
        mask = attn.mask(q_index, k_len)
        # Fast path: plain causal attention over a fresh sequence lets SDPA skip the mask tensor.
        is_causal = mask is not None and attn.kind == "causal" and attn.key_padding_mask is None \
            and offset == 0
        if is_causal:
            mask = None
        if attn.kind == "block_diffusion" and input_ids.is_cuda and cache is None \
                and FlexBlockDiffusion.enabled:
            try:
                mask = _flex_mask(k_len, attn.block_size, input_ids.device)
            except Exception:  # flex attention missing or unusable here: SDPA it is
                FlexBlockDiffusion.enabled = False
        x = self.embed_tokens(input_ids)
        for block in self.blocks:
            x = block(x, cos, sin, mask, is_causal, cache)
        return self.lm_head(self.norm(x)).float()
