"""Checkpoint directory round trip and clear failures on damaged checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dlm.data.tokenizer import byte_tokenizer
from dlm.errors import DLMError
from dlm.models.formats import load_model_dir, save_model_dir
from dlm.models.transformer import Attention
from tests.conftest import tiny_net


@pytest.mark.parametrize("shape", [dict(), dict(tie_embeddings=False, qkv_bias=True,
                                                n_kv_heads=2)])
def test_round_trip_reproduces_logits_exactly(tmp_path, shape):
    net = tiny_net(vocab_size=259, **shape)
    save_model_dir(tmp_path, net, byte_tokenizer(), {"kind": "mdlm"})
    loaded, tok, cfg = load_model_dir(tmp_path)
    ids = torch.randint(0, 259, (2, 16))
    assert torch.equal(net(ids, attn=Attention.bidirectional()),
                       loaded(ids, attn=Attention.bidirectional()))
    assert cfg["kind"] == "mdlm" and tok.mask_id == cfg["tokenizer"]["mask_id"] == 256
    if net.config.tie_embeddings:  # stored once, tied again on load
        assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
        assert loaded.lm_head.weight is loaded.embed_tokens.weight


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(DLMError, match="not a dlm checkpoint"):
        load_model_dir(tmp_path)
    with pytest.raises(DLMError, match="not a directory"):
        load_model_dir(tmp_path / "missing")


def _saved(tmp_path):
    save_model_dir(tmp_path, tiny_net(vocab_size=259), byte_tokenizer(), {"kind": "mdlm"})
    return tmp_path


def test_wrong_shape_names_file_and_key(tmp_path):
    path = _saved(tmp_path)
    sd = load_file(path / "model.safetensors")
    sd["blocks.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(sd, path / "model.safetensors")
    with pytest.raises(DLMError, match=r"model.safetensors.*blocks\.0\.mlp\.up_proj\.weight"):
        load_model_dir(path)


def test_missing_and_unexpected_keys_are_errors(tmp_path):
    path = _saved(tmp_path)
    sd = load_file(path / "model.safetensors")
    sd.pop("norm.weight")
    sd["extra.weight"] = torch.zeros(1)
    save_file(sd, path / "model.safetensors")
    with pytest.raises(DLMError, match="norm.weight"):
        load_model_dir(path)


def test_missing_weights_and_tokenizer(tmp_path):
    path = _saved(tmp_path)
    (path / "tokenizer.json").unlink()
    with pytest.raises(DLMError, match="tokenizer"):
        load_model_dir(path)
    path = _saved(tmp_path / "b")
    (path / "model.safetensors").unlink()
    with pytest.raises(DLMError, match="model.safetensors"):
        load_model_dir(path)


def test_special_ids_must_agree_with_config(tmp_path):
    path = _saved(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["tokenizer"]["mask_id"] = 3
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DLMError, match="mask_id"):
        load_model_dir(path)
