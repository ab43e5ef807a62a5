"""Our checkpoint directory: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

``config.json`` names the model ``kind`` (``dlm.kinds``: ar, mdlm, bd3lm), the network config,
the tokenizer with its special ids, and summaries of the data and training. Weights are
safetensors only (never pickle). A tied head is stored once (``lm_head.weight`` is dropped
and re-tied on load).

    save_model_dir(path, network, tokenizer, {"kind": kind.name, ...})
    network, tokenizer, config = load_model_dir(path)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.tokenizer import Tokenizer
from ..errors import DLMError
from .transformer import Transformer, TransformerConfig

FORMAT = "dlm"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"


def state_dict_for_save(network: Transformer) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    if any(".lora_" in k for k in sd):
        raise DLMError("this network carries LoRA adapters: merge them first (dlm merge, or "
                       "Model.merge_adapters()) or save the adapter alone")
    if network.config.tie_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def save_model_dir(path: str | Path, network: Transformer, tokenizer: Tokenizer,
                   config: dict, weights: bool = True) -> None:
    """Write config.json, model.safetensors and tokenizer.json into ``path`` (created).
    ``weights=False``: no model.safetensors (an adapter run: its weights are the base's plus
    the adapter written beside, see ``models.lora``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **config,
            "model": network.config.to_dict(), "tokenizer": tokenizer.config()}
    if weights:
        save_file(state_dict_for_save(network), str(path / WEIGHTS_FILE),
                  metadata={"format": "pt"})
    tokenizer.save(path / TOKENIZER_FILE)
    (path / CONFIG_FILE).write_text(json.dumps(full, indent=2) + "\n")


_REQUIRED = object()


def read_json(file: Path, missing=_REQUIRED):
    """A JSON file's content; ``missing`` is returned when the file does not exist (without
    it, that is an error). Unreadable or invalid files raise one DLMError naming the file."""
    if missing is not _REQUIRED and not file.is_file():
        return missing
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise DLMError(f"{file}: invalid JSON ({e.msg})") from None
    except OSError as e:
        raise DLMError(f"{file}: cannot read ({e.strerror or e})") from None


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise DLMError(f"checkpoint not found: {path} is not a directory")
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise DLMError(f"{path} is not a dlm checkpoint (no {CONFIG_FILE})")
    config = read_json(cfg_path)
    if config.get("format") != FORMAT:
        raise DLMError(f"{cfg_path}: not a dlm checkpoint config (format={config.get('format')!r})")
    for key in ("kind", "model", "tokenizer"):
        if key not in config:
            raise DLMError(f"{cfg_path}: missing key {key!r}")
    return config


def load_model_dir(path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> tuple[Transformer, Tokenizer, dict]:
    """Load a checkpoint directory; every weight must match the config (no partial loads)."""
    path = Path(path)
    config = read_config(path)
    try:
        net_cfg = TransformerConfig(**config["model"])
    except (TypeError, ValueError) as e:
        raise DLMError(f"{path / CONFIG_FILE}: bad 'model' section ({e})") from None
    tokenizer = Tokenizer.load(path / TOKENIZER_FILE, config["tokenizer"])
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise DLMError(f"{path}: missing {WEIGHTS_FILE}")
    try:
        sd = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as e:
        raise DLMError(f"{weights}: cannot read weights ({e})") from None
    with torch.device("meta"):
        network = Transformer(net_cfg)
    expected = set(state_dict_for_save(network))
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise DLMError(f"{weights}: weights do not match config.json "
                       f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in network.state_dict().items():
        if name in sd and tuple(sd[name].shape) != tuple(tensor.shape):
            raise DLMError(f"{weights}: {name} has shape {tuple(sd[name].shape)}, "
                           f"config expects {tuple(tensor.shape)}")
    fill_network(network, sd, device, dtype)
    return network, tokenizer, config


def load_weights_into(network: Transformer, path: str | Path,
                      device: str | torch.device = "cpu") -> dict:
    """Put a checkpoint directory's weights into ``network`` (of the same shape); returns its
    config.json."""
    loaded, _, config = load_model_dir(path, device=device)
    network.load_state_dict(loaded.state_dict())
    return config


def fill_network(network: Transformer, state: dict[str, torch.Tensor],
                 device: str | torch.device, dtype: torch.dtype | None = None) -> Transformer:
    """Put checked weights into a network built on the meta device (no copy), re-tie a tied
    head, move it to ``device`` (and ``dtype``), eval mode."""
    network.load_state_dict(state, strict=False, assign=True)
    if network.config.tie_embeddings:
        network.lm_head.weight = network.embed_tokens.weight
    network.to(device)
    if dtype is not None:
        network.to(dtype)
    for module in network.modules():  # a router's expert bias stays float32 (as published)
        if isinstance(getattr(module, "expert_bias", None), torch.Tensor):
            module.expert_bias = module.expert_bias.float()
    return network.eval()


def is_dlm_dir(path: str | Path) -> bool:
    """Whether ``path`` holds our format (else it may be a Hugging Face model directory)."""
    try:
        return json.loads((Path(path) / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return True  # let read_config give the precise error


def hub_snapshot(path: str | Path, weights: bool = True) -> Path:
    """``path`` itself, or for ``hf:owner/name`` the local snapshot of that Hub repository's
    config, tokenizer and safetensors files (never pickled weights). Only an explicit ``hf:``
    goes online, so a mistyped local path is never looked up on the Hub. ``weights=False``:
    the configs and tokenizer only (what ``dlm info`` reads)."""
    text = str(path)
    if not text.startswith("hf:"):
        return Path(path)
    repo = text[3:]
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DLMError(f"{text}: downloading from the Hugging Face Hub needs huggingface_hub "
                       "(pip install 'dlm[hf]')") from None
    try:
        return Path(snapshot_download(repo, allow_patterns=[
            "*.json", "tokenizer*", "*.txt", "*.jinja", *(["*.safetensors"] if weights else [])]))
    except Exception as e:  # offline, unknown repo, gated model, ...
        raise DLMError(f"cannot download {repo} from the Hugging Face Hub: {e}") from None
