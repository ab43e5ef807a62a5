"""LoRA adapters through PEFT: each adapter's update checked against W + w * alpha / r * B A
written out here, several adapters at once, switched off, merged; PEFT itself reads our files;
adapters written for the published LLaDA names load; damaged adapters are refused by file and
key."""

from __future__ import annotations

import json

import peft
import pytest
import torch
from safetensors.torch import save_file

import dlm
from dlm.data.tokenizer import byte_tokenizer
from dlm.errors import DLMError
from dlm.models import lora
from dlm.models.formats import save_model_dir
from dlm.models.transformer import Transformer
from tests.conftest import tiny_net
from tests.models.test_hf import IDS, LLADA_CONFIG, llada_reference, llada_weights, write_checkpoint

V = 259  # the byte tokenizer's vocabulary


def write_adapter(path, pairs: dict, r: int, alpha: float, prefix="base_model.model.",
                  **config):
    """A PEFT adapter folder written by hand: pairs = {module name: (A [r, in], B [out, r])}."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in pairs.items():
        tensors[f"{prefix}{module}.lora_A.weight"] = a.contiguous()
        tensors[f"{prefix}{module}.lora_B.weight"] = b
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha,
        "target_modules": sorted(pairs), **config}))
    return path


def random_pairs(net, modules, r, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in modules:
        w = net.get_submodule(m).weight
        out[m] = (torch.randn(r, w.shape[1], generator=g) * 0.3,
                  torch.randn(w.shape[0], r, generator=g) * 0.3)
    return out


def merged_by_hand(net, updates) -> Transformer:
    """A plain copy of ``net`` with W += weight * alpha / r * B @ A for every (pairs, r,
    alpha, weight) in ``updates``."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for pairs, r, alpha, weight in updates:
        for module, (a, b) in pairs.items():
            state[module + ".weight"] += weight * alpha / r * b @ a
    copy = Transformer(net.config)
    copy.load_state_dict(state)
    return copy.eval()


@pytest.fixture
def base(tmp_path):
    net = tiny_net(vocab_size=V)
    save_model_dir(tmp_path / "base", net, byte_tokenizer(), {"kind": "mdlm"})
    return tmp_path / "base", net


def close(x, y):
    torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)  # fp32 sums in another order


def logits(network, ids=None):
    ids = torch.arange(24).view(2, 12) % V if ids is None else ids
    with torch.no_grad():
        return network(ids).double()


def test_lora_flag_parses_and_refuses_mistakes():
    spec = lora.LoraSpec.parse("r=4,alpha=8,dropout=0.05,targets=q,v,mlp")
    assert (spec.r, spec.alpha, spec.dropout) == (4, 8.0, 0.05)
    assert spec.targets == ("q", "v", "gate", "up", "down")
    assert lora.LoraSpec.parse("targets=all").targets == tuple(lora.TARGETS)
    assert lora.LoraSpec.parse(spec.describe()) == spec  # what a run records reads back
    for bad, msg in [("r=0", "r >= 1"), ("rank=4", "unknown key 'rank'"), ("", "settings"),
                     ("targets=q,x", "unknown target 'x'"), ("8", "key=value"),
                     ("r=x", "invalid literal")]:
        with pytest.raises(DLMError, match=msg):
            lora.LoraSpec.parse(bad)


def test_weighted_adapters_add_their_updates_and_switch_off_and_merge(tmp_path, base):
    path, net = base
    a = random_pairs(net, ["blocks.0.attn.q_proj", "blocks.1.mlp.down_proj"], 2, seed=1)
    b = random_pairs(net, ["blocks.0.attn.q_proj", "blocks.0.attn.v_proj"], 3, seed=2)
    write_adapter(tmp_path / "a", a, r=2, alpha=4)
    write_adapter(tmp_path / "b", b, r=3, alpha=3)
    model = dlm.load(path, device="cpu", adapters=[(tmp_path / "a", 0.5), str(tmp_path / "b")])
    assert model.adapters == {"a": 0.5, "b": 1.0}
    expected = merged_by_hand(net, [(a, 2, 4, 0.5), (b, 3, 3, 1.0)])
    close(logits(model.network), logits(expected))
    model.set_adapter_weights({"b": -2.0})  # re-weighting is exact too (negative subtracts)
    close(logits(model.network),
          logits(merged_by_hand(net, [(a, 2, 4, 0.5), (b, 3, 3, -2.0)])))
    with model.adapters_disabled():
        assert torch.equal(logits(model.network), logits(net))
    assert not torch.allclose(logits(model.network), logits(net))  # back on after the block
    with pytest.raises(DLMError, match="merge them first"):
        model.save(tmp_path / "unmerged")
    with pytest.raises(DLMError, match="no adapter named 'c'"):
        model.set_adapter_weights({"c": 1.0})
    assert all(p.requires_grad for n, p in model.network.named_parameters() if "lora" not in n)
    assert not any(p.requires_grad for n, p in model.network.named_parameters() if "lora" in n)
    model.set_adapters_enabled(False)
    with pytest.raises(DLMError, match="switched off"):
        model.merge_adapters()
    model.set_adapters_enabled(True)
    before = logits(model.network)
    model.merge_adapters()
    assert model.adapters == {} and not any("lora" in k for k in model.network.state_dict())
    close(logits(model.network), before)
    model.save(tmp_path / "merged")  # a plain checkpoint again
    close(logits(dlm.load(tmp_path / "merged", device="cpu").network), before)


def test_peft_itself_reads_the_adapters_we_write(tmp_path):
    net = tiny_net(vocab_size=V)
    lora.add_lora(net, lora.LoraSpec(r=4, alpha=8, targets=("q", "o", "up")), "default")
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:  # B starts at zero: give the adapter something to do
                p.normal_(0, 0.3)
    lora.save_adapter(tmp_path / "ad", net, "default", base="base-path")
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "base-path" and config["r"] == 4
    theirs = peft.PeftModel.from_pretrained(tiny_net(vocab_size=V), str(tmp_path / "ad"))
    ids = torch.arange(20).view(2, 10)
    with torch.no_grad():
        assert torch.equal(theirs(ids), net(ids))


def test_adapters_written_for_the_published_llada_names_load(tmp_path):
    """A PEFT adapter trained on the original LLaDA code names its modules
    model.transformer.blocks.N.{q_proj, attn_out, ff_proj, up_proj, ff_out}; ff_proj is the
    SiLU gate and a block's ff_out its down projection (the head is the top-level ff_out)."""
    sd = llada_weights()
    path = write_checkpoint(tmp_path / "llada", LLADA_CONFIG, sd)
    g = torch.Generator().manual_seed(3)
    pairs = {}
    for module in ["model.transformer.blocks.0.q_proj", "model.transformer.blocks.1.ff_proj",
                   "model.transformer.blocks.0.ff_out", "model.transformer.blocks.1.attn_out"]:
        w = sd[module + ".weight"]
        pairs[module] = (torch.randn(2, w.shape[1], generator=g) * 0.3,
                         torch.randn(w.shape[0], 2, generator=g) * 0.3)
    write_adapter(tmp_path / "published", pairs, r=2, alpha=4, prefix="base_model.model.")
    model = dlm.load(path, device="cpu", adapters=[(tmp_path / "published", 0.8)])
    updated = {k: v.clone() for k, v in sd.items()}
    for module, (a, b) in pairs.items():
        updated[module + ".weight"] += 0.8 * 4 / 2 * b @ a
    close(logits(model.network, IDS), llada_reference(updated, IDS))
    assert not torch.allclose(logits(model.network, IDS), llada_reference(sd, IDS), atol=1e-2)


def test_damaged_or_foreign_adapters_are_refused_by_file_and_key(tmp_path, base, capsys):
    from dlm.cli import main

    path, net = base
    good = random_pairs(net, ["blocks.0.attn.q_proj"], 2, seed=0)

    def refused(name, pairs=good, edit=None, **config):
        ad = write_adapter(tmp_path / name, pairs, r=2, alpha=4, **config)
        if edit:
            edit(ad)
        model = dlm.load(path, device="cpu")
        with pytest.raises(DLMError) as e:
            model.add_adapter(ad)
        assert model.adapters == {}  # nothing half-loaded stays behind: plain layers again
        assert not any("lora" in k or "base_layer" in k for k in model.network.state_dict())
        return str(e.value)

    assert "missing adapter_model.safetensors" in refused(
        "noweights", edit=lambda p: (p / "adapter_model.safetensors").unlink())
    assert "use_dora=True is not supported" in refused("dora", use_dora=True)
    msg = refused("nolayer", pairs={"blocks.9.attn.q_proj": good["blocks.0.attn.q_proj"]})
    assert "adapter_model.safetensors" in msg and "blocks.9.attn.q_proj.lora_A.weight" in msg
    a, b = good["blocks.0.attn.q_proj"]
    msg = refused("shape", pairs={"blocks.0.attn.q_proj": (a[:, :20], b)})
    assert "does not fit this model" in msg and "q_proj" in msg

    def drop_b(ad):
        tensors = {"base_model.model.blocks.0.attn.q_proj.lora_A.weight": a}
        save_file(tensors, str(ad / "adapter_model.safetensors"))

    assert "missing" in refused("half", edit=drop_b)
    # the config targets every q_proj; the file adapts one: a partial adapter is refused
    msg = refused("partial", target_modules=["q_proj"])
    assert "targets blocks.1.attn.q_proj but the file has no tensors" in msg
    assert "not one of the model's linear projections" in refused(
        "norm", pairs={"blocks.0.attn_norm": (a[:, :32], b[:32])})
    assert "LoRA only" in refused("ia3", edit=lambda p: (p / "adapter_config.json").write_text(
        json.dumps({"peft_type": "IA3"})))
    # the CLI says it in one line
    assert main(["sample", str(path), "x", "--adapter", str(tmp_path / "dora"), "--steps", "2",
                 "--gen-length", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "use_dora" in err and err.count("\n") == 1


def test_a_trainable_adapter_keeps_fp32_weights_on_a_bf16_base():
    net = tiny_net(vocab_size=V).to(torch.bfloat16)
    n = lora.add_lora(net, lora.LoraSpec(r=4, targets=("q", "v")), "default")
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == n == 2 * 2 * 4 * (32 + 32)  # layers x (A, B)
    assert all(p.dtype == torch.float32 for p in trainable)
    assert net.embed_tokens.weight.dtype == torch.bfloat16 and not \
        net.embed_tokens.weight.requires_grad
    net(torch.arange(10).view(1, 10)).float().logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)


def test_loaded_adapters_follow_eval_mode_and_take_any_folder_name(tmp_path, base):
    path, net = base
    pairs = random_pairs(net, ["blocks.0.attn.q_proj", "blocks.1.attn.v_proj"], 2, seed=4)
    write_adapter(tmp_path / "2024-style", pairs, r=2, alpha=4, lora_dropout=0.5)
    model = dlm.load(path, device="cpu", adapters=[tmp_path / "2024-style"])
    assert list(model.adapters) == ["a_2024_style"]
    assert not model.network.training and not any(m.training for m in model.network.modules())
    assert torch.equal(logits(model.network), logits(model.network))  # no dropout in eval
    close(logits(model.network), logits(merged_by_hand(net, [(pairs, 2, 4, 1.0)])))


def test_a_hub_adapter_is_named_after_its_repository(tmp_path, base, monkeypatch):
    import huggingface_hub

    path, net = base
    snapshot = write_adapter(tmp_path / "0f3a9c", random_pairs(net, ["blocks.0.attn.q_proj"],
                                                               2, seed=5), r=2, alpha=4)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, allow_patterns: str(snapshot))  # no network in tests
    model = dlm.load(path, device="cpu", adapters=[("hf:someone/style-lora", 0.5)])
    assert model.adapters == {"style_lora": 0.5}


def test_an_adapter_run_loads_only_onto_a_base_of_its_kind_vocabulary_and_width(tmp_path,
                                                                                 base):
    """An MDLM adapter and an AR model of the same shape fit tensor for tensor: only the
    run's record of its base (kind, vocabulary, width) tells them apart."""
    path, net = base
    ar = tmp_path / "ar"
    save_model_dir(ar, net, byte_tokenizer(), {"kind": "ar"})
    pairs = random_pairs(net, ["blocks.0.attn.q_proj"], 2, seed=6)

    def run(name, **adapter):
        out = tmp_path / name
        save_model_dir(out, net, byte_tokenizer(), {"kind": "mdlm", "adapter": {
            "base": str(path), "base_params": lora.base_params(net), "lora": "r=2",
            "base_kind": "mdlm", "base_vocab_size": V, "base_d_model": 32, **adapter}},
            weights=False)
        return write_adapter(out, pairs, r=2, alpha=4)

    mdlm_run = run("mdlm-run")
    assert len(dlm.load(path, device="cpu", adapters=[mdlm_run]).adapters) == 1
    with pytest.raises(DLMError, match="mdlm-run: this adapter was trained on a base of kind mdlm; "
                       "this model.s kind is ar"):
        dlm.load(ar, device="cpu", adapters=[mdlm_run])
    # a run whose recorded base now holds a model of another kind
    moved = run("moved", base=str(ar))
    with pytest.raises(DLMError, match="trained on a base of kind mdlm; this model.s kind is ar"):
        dlm.load(moved, device="cpu")
    # an older run (no base_kind) has its base's kind as its own
    old = run("old")
    config = json.loads((old / "config.json").read_text())
    del config["adapter"]["base_kind"]
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(DLMError, match="trained on a base of kind mdlm"):
        dlm.load(ar, device="cpu", adapters=[old])
    with pytest.raises(DLMError, match="a base of vocabulary 300; this model has 259"):
        dlm.load(path, device="cpu", adapters=[run("vocab", base_vocab_size=300)])
    with pytest.raises(DLMError, match=r"width \(d_model\) 64; this model has 32"):
        dlm.load(path, device="cpu", adapters=[run("wide", base_d_model=64)])
    # the explicit override, and plain PEFT folders (no record) are not checked
    model = dlm.load(ar, device="cpu")
    lora.load_adapter(model.network, mdlm_run, any_kind=True)
    plain = write_adapter(tmp_path / "plain", pairs, r=2, alpha=4)
    assert len(dlm.load(ar, device="cpu", adapters=[plain]).adapters) == 1
