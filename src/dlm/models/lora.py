"""LoRA adapters on our ``Transformer``, through PEFT (optional extra: ``pip install 'dlm[lora]'``).

PEFT injects its LoRA layers into the network in place, so the network stays a ``Transformer``
and every sampler, cache and likelihood works on it unchanged. Several adapters can be loaded
at once: all are active, each scaled by its weight (the effective update of a layer is
``sum_i weight_i * alpha_i / r_i * B_i A_i``), and all can be switched off together. The state
lives where PEFT keeps it: in the LoRA layers and the network's ``peft_config``.

An adapter on disk is PEFT's own layout, ``adapter_config.json`` + ``adapter_model.safetensors``
(keys ``base_model.model.<module>.lora_A.weight``), so PEFT itself reads ours. Adapters trained
with PEFT on the published LLaDA / Dream models (their module names) load too: the names are
mapped with the same table the checkpoint loader uses.

    spec = LoraSpec.parse("r=8,alpha=16,targets=q,k,v,o")
    add_lora(network, spec)                           # a fresh trainable adapter
    save_adapter("runs/a", network, "default")
    load_adapter(network, "runs/a", weight=0.5)       # at sampling time; several may be loaded
    with adapters_disabled(network): ...              # the base alone
    merge_adapters(network)                           # into the base weights, plain layers again
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import DLMError
from .formats import CONFIG_FILE, FORMAT, read_json
from .hf import our_name, published_name

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # what PeftModel puts before the module names it saves

# short target names -> our module names (suffix-matched by PEFT: the feed-forward names also
# match every expert and the shared expert of a mixture of experts; the router is never adapted)
TARGETS = {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "o": "attn.o_proj",
           "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
GROUPS = {"attn": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down"),
          "all": tuple(TARGETS)}


def peft():
    try:
        import peft as _peft
    except ImportError:
        raise DLMError("LoRA needs PEFT: pip install 'dlm[lora]'") from None
    return _peft


@dataclass(frozen=True)
class LoraSpec:
    """What ``--lora`` says: rank, alpha (the update is scaled by alpha / r), dropout on the
    adapter's input, and which projections get an adapter (q k v o gate up down, or the groups
    attn / mlp / all)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "k", "v", "o")
    rslora: bool = False  # scale by alpha / sqrt(r) (rank-stabilised LoRA)

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        """'r=8,alpha=16,targets=q,k,v,o' (a bare word continues the list of the key before)."""
        if not text.strip():
            raise DLMError("--lora: give the adapter's settings, e.g. r=8,alpha=16,targets=q,k,"
                           "v,o")
        values: dict[str, list[str]] = {}
        key = None
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "=" in part:
                key, _, value = part.partition("=")
                key = key.strip().replace("-", "_")
                values[key] = [value.strip()]
            elif key == "targets":
                values[key].append(part)
            else:
                raise DLMError(f"--lora {text!r}: write key=value pairs, e.g. "
                               "r=8,alpha=16,dropout=0.05,targets=q,k,v,o")
        known = {"r", "alpha", "dropout", "targets", "rslora"}
        for k in values:
            if k not in known:
                raise DLMError(f"--lora: unknown key {k!r} (known: {', '.join(sorted(known))})")
        targets: list[str] = []
        for t in values.get("targets", list(cls.targets)):
            for name in GROUPS.get(t, (t,)):
                if name not in TARGETS:
                    raise DLMError(f"--lora: unknown target {name!r}; choose from "
                                   f"{', '.join([*TARGETS, *GROUPS])}")
                if name not in targets:
                    targets.append(name)
        try:
            spec = cls(r=int(values.get("r", [cls.r])[0]),
                       alpha=float(values.get("alpha", [cls.alpha])[0]),
                       dropout=float(values.get("dropout", [cls.dropout])[0]),
                       targets=tuple(targets),
                       rslora=str(values.get("rslora", ["false"])[0]).lower()
                       in ("1", "true", "yes", "on"))
        except ValueError as e:
            raise DLMError(f"--lora {text!r}: {e}") from None
        if spec.r < 1 or not 0 <= spec.dropout < 1 or spec.alpha <= 0:
            raise DLMError(f"--lora {text!r}: need r >= 1, alpha > 0 and 0 <= dropout < 1")
        return spec

    def describe(self) -> str:
        return (f"r={self.r},alpha={self.alpha:g},dropout={self.dropout:g},"
                f"targets={','.join(self.targets)}" + (",rslora=true" if self.rslora else ""))

    def peft_config(self):
        return peft().LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                                 target_modules=[TARGETS[t] for t in self.targets],
                                 use_rslora=self.rslora)


def parse_adapter(text: str) -> tuple[str, float]:
    """'runs/style:0.7' -> ('runs/style', 0.7); without a number after the last colon the
    weight is 1 (so hf:owner/name stays whole)."""
    path, sep, weight = text.rpartition(":")
    if sep and path:
        try:
            return path, float(weight)
        except ValueError:
            pass
    return text, 1.0


def _layers(network: torch.nn.Module):
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in network.named_modules() if isinstance(m, LoraLayer)]


def has_adapters(network: torch.nn.Module) -> bool:
    return bool(getattr(network, "peft_config", None))


@contextlib.contextmanager
def _peft_call(network: torch.nn.Module):
    """PEFT's layer calls flip ``requires_grad`` (injection freezes the base, switching
    adapters on makes them trainable) and build new modules in train mode: afterwards every
    parameter that was there keeps its flag, new ones (an adapter) are frozen, and every module
    follows the network's train / eval mode (LoRA dropout is off in eval)."""
    flags = [(p, p.requires_grad) for p in network.parameters()]
    mode = network.training
    try:
        with warnings.catch_warnings():  # PEFT warns about our non-transformers model
            warnings.simplefilter("ignore")
            yield
    finally:
        known = {id(p) for p, _ in flags}
        for p in network.parameters():
            if id(p) not in known:
                p.requires_grad_(False)
        for p, flag in flags:
            p.requires_grad_(flag)
        network.train(mode)


def _inject(network: torch.nn.Module, config, name: str, where: Path | str = "") -> None:
    """Add adapter ``name`` (PEFT layers, in place); every loaded adapter stays active."""
    existing = dict(getattr(network, "peft_config", {}) or {})
    if name in existing:
        raise DLMError(f"an adapter named {name!r} is already loaded")
    with _peft_call(network):
        try:
            peft().inject_adapter_in_model(config, network, adapter_name=name)
        except ValueError as e:  # e.g. a target that is not a linear layer
            raise DLMError(f"{where or 'LoRA'}: {e}") from None
        network.peft_config = {**existing, name: config}  # PEFT's attribute: one per adapter
        for _, layer in _layers(network):
            layer.set_adapter(list(network.peft_config))


def add_lora(network: torch.nn.Module, spec: LoraSpec, name: str = "default") -> int:
    """A fresh adapter to train (B = 0, so the network is unchanged at first); only its
    parameters require gradients. Returns how many parameters it has."""
    for p in network.parameters():
        p.requires_grad_(False)
    _inject(network, spec.peft_config(), name)
    trainable = lora_parameters(network, name)
    for p in trainable.values():
        p.data = p.data.float()  # fp32 master weights for the optimizer, even on a bf16 base
        p.requires_grad_(True)
    return sum(p.numel() for p in trainable.values())


def lora_parameters(network: torch.nn.Module, name: str) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in network.named_parameters() if f".{name}." in n and ".lora_" in n}


def adapter_state(network: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s tensors under PEFT's saved names (``...lora_A.weight``)."""
    state = peft().get_peft_model_state_dict(network, adapter_name=name)
    return {PEFT_PREFIX + k: v.detach().contiguous() for k, v in state.items()}


def save_adapter(path: str | Path, network: torch.nn.Module, name: str,
                 base: str | None = None) -> None:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's layout) into
    ``path``; ``base`` is recorded as the base model's path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = network.peft_config[name].to_dict()
    config["base_model_name_or_path"] = base
    for k, v in config.items():
        if isinstance(v, set):
            config[k] = sorted(v)
    config["peft_type"] = str(getattr(config["peft_type"], "value", config["peft_type"]))
    save_file(adapter_state(network, name), str(path / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    (path / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


# modules of the published layouts -> ours (the checkpoint loader's table, on module names)
def _our_module(module: str) -> tuple[str, str] | None:
    """(our module name, 'llada' | 'dream') for a published module name, else None."""
    # LLaDA-MoE's names include Dream's (Qwen2-style), so one adapter resolves as one family;
    # LLaDA2's fused q/k/v is no one layer of ours
    for arch in ("llada", "llada_moe"):
        ours = our_name(arch, module + ".weight")
        if isinstance(ours, str):
            return ours.removesuffix(".weight"), arch
    return None


LINEAR = re.compile(r"blocks\.\d+\.(attn\.[qkvo]_proj|mlp\.((experts\.\d+|shared)\.)?"
                    r"(gate|up|down)_proj)|lm_head")


def _targeted(name: str, targets) -> bool:
    """PEFT's rule: a list matches a module name exactly or as its last dotted parts, a
    string is a regular expression on the whole name ('all-linear': all but the head)."""
    if targets == "all-linear":  # PEFT leaves the output head out
        return "blocks" in name or not name.endswith(("lm_head", "ff_out"))
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


_UNSUPPORTED = {"use_dora": (True,), "modules_to_save": None, "layers_to_transform": None,
                "layers_pattern": None, "trainable_token_indices": None,
                "target_parameters": None, "lora_bias": (True,), "fan_in_fan_out": (True,)}


def read_adapter(path: str | Path, network: torch.nn.Module):
    """(PEFT LoraConfig, tensors under our module names) of an adapter directory; refuses what
    would not load exactly, naming the file and the key."""
    path = Path(path)
    cfg_file, weights = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not cfg_file.is_file():
        raise DLMError(f"{path}: not an adapter (no {ADAPTER_CONFIG})")
    if not weights.is_file():
        raise DLMError(f"{path}: missing {ADAPTER_WEIGHTS} (only safetensors adapters load)")
    raw = read_json(cfg_file)
    if str(raw.get("peft_type", "")).upper() != "LORA":
        raise DLMError(f"{cfg_file}: peft_type {raw.get('peft_type')!r} is not supported "
                       "(LoRA only)")
    for key, bad in _UNSUPPORTED.items():
        value = raw.get(key)
        if (bad is None and value) or (bad is not None and value in bad):
            raise DLMError(f"{cfg_file}: {key}={value!r} is not supported")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise DLMError(f"{weights}: cannot read ({e})") from None
    modules = dict(network.named_modules())
    ours, arch = {}, None  # arch: the published naming the adapter was written in, if any
    for key, tensor in state.items():
        m = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.(lora_[AB])\.weight", key)
        if not m:
            raise DLMError(f"{weights.name}: unsupported adapter tensor {key!r} (plain LoRA "
                           "A/B weights only)")
        module = m.group(1)
        if module not in modules:
            mapped = _our_module(module)
            if mapped is None or mapped[0] not in modules or arch not in (None, mapped[1]):
                raise DLMError(f"{weights.name}: tensor {key!r} names no layer of this model")
            module, arch = mapped
        if not LINEAR.fullmatch(module):
            raise DLMError(f"{weights.name}: tensor {key!r} adapts {module}, which is not one "
                           "of the model's linear projections")
        ours[f"{module}.{m.group(2)}.weight"] = tensor
    if arch and (raw.get("rank_pattern") or raw.get("alpha_pattern")):
        raise DLMError(f"{cfg_file}: rank_pattern / alpha_pattern of an adapter written for the "
                       "published model names are not supported")
    present = {k.rsplit(".", 2)[0] for k in ours}
    if raw.get("target_modules"):  # every layer the config targets must come with tensors
        for module in sorted(n for n in modules if LINEAR.fullmatch(n)):
            theirs = published_name(arch, module + ".weight").removesuffix(".weight") \
                if arch else module
            if _targeted(theirs, raw["target_modules"]) and module not in present:
                raise DLMError(f"{weights.name}: the config targets {theirs} but the file has "
                               "no tensors for it (a partial adapter)")
    targets = sorted(present)
    r = _rank(ours, raw, weights)
    keep = {k: raw[k] for k in ("lora_alpha", "lora_dropout", "use_rslora", "rank_pattern",
                                "alpha_pattern") if raw.get(k) is not None}
    config = peft().LoraConfig(r=r, target_modules=targets, **keep)
    return config, ours


def _rank(state: dict[str, torch.Tensor], raw: dict, where: Path) -> int:
    ranks = {v.shape[0] for k, v in state.items() if k.endswith("lora_A.weight")}
    if not ranks:
        raise DLMError(f"{where}: no LoRA tensors")
    if len(ranks) > 1 and not raw.get("rank_pattern"):
        raise DLMError(f"{where}: layers of ranks {sorted(ranks)} but no rank_pattern")
    return int(raw.get("r") or max(ranks))


def adapter_name(path: str | Path, network: torch.nn.Module) -> str:
    """A name from the folder name, unique among the loaded adapters, that PEFT can use as a
    module key (not an attribute of nn.ModuleDict such as 'half' or 'train')."""
    text = str(path).rstrip("/")
    base = re.sub(r"\W", "_", text.rpartition("/")[2] if text.startswith("hf:")
                  else Path(text).name) or "adapter"
    if not base.isidentifier():  # e.g. runs/2024-style
        base = f"a_{base}"
    taken = set(getattr(network, "peft_config", {}) or {})
    name, n = base, 1
    while name in taken or hasattr(torch.nn.ModuleDict, name):
        n += 1
        name = f"{base}_{n}"
    return name


def adapter_base(path: str | Path) -> dict:
    """What a ``dlm sft --lora`` run recorded about its base: ``kind`` and, from newer runs,
    ``vocab_size`` and ``d_model``. {} for a plain PEFT adapter folder (no dlm config.json)."""
    file = Path(path) / CONFIG_FILE
    config = read_json(file, missing={})
    if config.get("format") != FORMAT or "adapter" not in config:
        return {}
    info = config["adapter"]
    out = {"kind": info.get("base_kind", config.get("kind"))}  # a run's kind is its base's
    for key in ("vocab_size", "d_model"):
        if info.get(f"base_{key}") is not None:
            out[key] = info[f"base_{key}"]
    return out


def check_adapter_base(path: str | Path, network: torch.nn.Module, kind: str | None) -> None:
    """Refuse an adapter trained on a base of another kind (an MDLM adapter on an AR model
    has the same shapes, so nothing else would notice), vocabulary or width."""
    base = adapter_base(path)
    if base.get("kind") and kind and base["kind"] != kind:
        raise DLMError(f"{path}: this adapter was trained on a base of kind {base['kind']}; "
                       f"this model's kind is {kind}. Load it onto a {base['kind']} checkpoint")
    net = getattr(network, "config", None)
    for key, what in (("vocab_size", "vocabulary"), ("d_model", "width (d_model)")):
        have = getattr(net, key, None)
        if base.get(key) is not None and have is not None and base[key] != have:
            raise DLMError(f"{path}: this adapter was trained on a base of {what} "
                           f"{base[key]}; this model has {have}")


def load_adapter(network: torch.nn.Module, path: str | Path, weight: float = 1.0,
                 name: str | None = None, kind: str | None = None,
                 any_kind: bool = False) -> str:
    """Load an adapter directory onto ``network`` (alongside any loaded ones), scaled by
    ``weight``. Every adapter tensor must fill a LoRA layer and every layer the adapter's
    config targets must be filled. A ``dlm sft --lora`` run must have been trained on a base of
    the network's kind (``kind``: the loaded model's; not checked when None), vocabulary and
    width; ``any_kind=True`` skips the kind check. Returns its name."""
    if not any_kind:
        check_adapter_base(path, network, kind)
    config, state = read_adapter(path, network)
    name = name or adapter_name(path, network)
    if not name.isidentifier() or hasattr(torch.nn.ModuleDict, name):
        raise DLMError(f"adapter name {name!r}: use letters, digits and _ (and not a "
                       "torch.nn.Module method name)")
    _inject(network, config, name, Path(path) / ADAPTER_CONFIG)
    try:
        _fill(network, state, name, Path(path) / ADAPTER_WEIGHTS)
    except DLMError:
        drop_adapter(network, name)
        raise
    set_weights(network, {name: weight})
    return name


def fill_adapter(network: torch.nn.Module, path: str | Path, name: str) -> None:
    """Overwrite the tensors of the loaded adapter ``name`` with those saved in ``path``
    (resuming a LoRA run)."""
    _, state = read_adapter(path, network)
    _fill(network, state, name, Path(path) / ADAPTER_WEIGHTS)


def _fill(network: torch.nn.Module, state: dict, name: str, where: Path) -> None:
    try:
        result = peft().set_peft_model_state_dict(network, state, adapter_name=name)
    except RuntimeError as e:  # a size mismatch: PEFT names the tensor
        raise DLMError(f"{where}: does not fit this model "
                       f"({str(e).strip().splitlines()[-1].strip()})") from None
    missing = [k for k in result.missing_keys if f".{name}." in k and ".lora_" in k]
    if missing or result.unexpected_keys:
        raise DLMError(f"{where}: tensors do not match the adapter's layers (missing "
                       f"{missing[:2]}, unexpected {list(result.unexpected_keys)[:2]})")


def drop_adapter(network: torch.nn.Module, name: str) -> None:
    """Remove adapter ``name``; a layer left with no adapter is a plain layer again."""
    with _peft_call(network):
        for module_name, layer in _layers(network):
            if name in layer.lora_A:
                layer.delete_adapter(name)
            if not layer.lora_A:
                _unwrap(network, module_name, layer)
        left = {k: v for k, v in network.peft_config.items() if k != name}
        if left:
            network.peft_config = left
            for _, layer in _layers(network):
                layer.set_adapter(list(left))
        else:
            del network.peft_config


def _unwrap(network: torch.nn.Module, name: str, layer) -> None:
    parent, _, child = name.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, child,
            layer.get_base_layer())


def _base_scale(layer, name: str) -> float:
    r = layer.r[name]
    return layer.lora_alpha[name] / (r ** 0.5 if layer.use_rslora.get(name) else r)


def adapter_weights(network: torch.nn.Module) -> dict[str, float]:
    """Loaded adapter -> its weight (the factor on its alpha / r scaling)."""
    out = {}
    for _, layer in _layers(network):
        for name in layer.scaling:
            out.setdefault(name, layer.scaling[name] / _base_scale(layer, name))
    return {n: out[n] for n in getattr(network, "peft_config", {}) if n in out}


def set_weights(network: torch.nn.Module, weights: dict[str, float]) -> None:
    loaded = set(getattr(network, "peft_config", {}) or {})
    for name in weights:
        if name not in loaded:
            raise DLMError(f"no adapter named {name!r} is loaded (loaded: "
                           f"{', '.join(sorted(loaded)) or 'none'})")
    for _, layer in _layers(network):
        for name, w in weights.items():
            layer.set_scale(name, float(w))


def set_enabled(network: torch.nn.Module, on: bool) -> None:
    """Switch every loaded adapter on or off (off: the base alone, at no extra cost)."""
    with _peft_call(network):
        for _, layer in _layers(network):
            layer.enable_adapters(on)


def enabled(network: torch.nn.Module) -> bool:
    return not any(layer.disable_adapters for _, layer in _layers(network))


@contextlib.contextmanager
def adapters_disabled(network: torch.nn.Module):
    """Run the base alone inside the block (then back to how it was)."""
    was_on = enabled(network)
    set_enabled(network, False)
    try:
        yield network
    finally:
        set_enabled(network, was_on)


def merge_adapters(network: torch.nn.Module) -> torch.nn.Module:
    """Fold every loaded adapter (at its weight) into the base weights and put the plain
    layers back: the network is an ordinary ``Transformer`` again."""
    if not enabled(network):
        raise DLMError("the adapters are switched off: switch them on to merge them")
    with _peft_call(network):
        for name, layer in _layers(network):
            layer.merge(adapter_names=list(network.peft_config))
            _unwrap(network, name, layer)
        if hasattr(network, "peft_config"):
            del network.peft_config
    return network


def base_params(network: torch.nn.Module) -> int:
    """Parameters of the network without its adapters."""
    return sum(p.numel() for n, p in network.named_parameters() if ".lora_" not in n)
