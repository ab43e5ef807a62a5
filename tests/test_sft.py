"""SFT data and losses: row formats, chat rendering, the [B, 2, L] batch layout, LLaDA's
diffusion SFT loss and the AR twin's answer-only loss against hand computations."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from dlm.data.tokenizer import byte_tokenizer
from dlm.errors import DLMError
from dlm.models.transformer import Attention
from dlm.sft.data import Example, collate, encode_rows, read_rows, render_prompt
from dlm.sft.loss import ARSFTLoss, BlockDiffusionSFTLoss, DiffusionSFTLoss
from tests.conftest import tiny_net

MASK, EOS = 37, 38


def test_rows_in_both_formats_and_clear_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "2+2?", "response": "4"}) + "\n\n" + json.dumps(
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}]}) + "\n")
    rows = read_rows(f)
    assert rows[0] == [{"role": "user", "content": "2+2?"},
                       {"role": "assistant", "content": "4"}]
    assert render_prompt(rows[1][:-1]) == "System: Be brief.\nUser: Hi\nAssistant: "
    for bad, msg in [("{oops", ":1: invalid JSON"), ('{"text": "x"}', "expected"),
                     (json.dumps({"messages": [{"role": "user", "content": "q"}]}),
                      "last message must be the assistant")]:
        f.write_text(bad + "\n")
        with pytest.raises(DLMError, match=msg):
            read_rows(f)


def test_empty_and_non_string_fields_are_refused_by_file_line_and_field(tmp_path):
    f = tmp_path / "d.jsonl"
    good = json.dumps({"prompt": "2+2?", "response": "4"})
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    for bad, msg in [({"prompt": "", "response": "4"}, "'prompt' is empty"),
                     ({"prompt": "q", "response": "  "}, "'response' is empty"),
                     ({"prompt": "q", "response": 4}, "'response' must be a string \\(got int 4"),
                     ({"prompt": "q", "response": ["a", "b"]},
                      "'response' must be a string \\(got list"),
                     ({"prompt": None, "response": "a"}, "'prompt' must be a string"),
                     ({"prompt": "q"}, "no 'response'"),
                     ({"messages": [chat[0], {**chat[1], "content": ""}]},
                      r"messages\[1\] \(assistant\) is empty"),
                     ({"messages": [{**chat[0], "content": 7}, chat[1]]},
                      r"messages\[0\]\.content must be a string \(got int 7\)")]:
        f.write_text(good + "\n\n" + json.dumps(bad) + "\n")  # line 3 (a blank line between)
        with pytest.raises(DLMError, match=f"^{f}:3: {msg}"):
            read_rows(f)
    # an empty system prompt is no system prompt
    f.write_text(json.dumps({"messages": [{"role": "system", "content": ""}, *chat]}) + "\n")
    assert len(read_rows(f)[0]) == 3


def test_chat_templates_render_in_a_sandbox():
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
              "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    msgs = [{"role": "user", "content": "Hi"}]
    assert render_prompt(msgs, chatml) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(DLMError, match="chat template failed"):
        render_prompt(msgs, "{{ ''.__class__.__mro__[1].__subclasses__() }}")


def test_long_rows_are_skipped_and_batches_are_laid_out():
    tok = byte_tokenizer()
    rows = [[{"role": "user", "content": "ab"}, {"role": "assistant", "content": "xyz"}],
            [{"role": "user", "content": "q" * 100}, {"role": "assistant", "content": "a"}]]
    examples, skipped = encode_rows(rows, tok, max_len=32)
    assert skipped == 1 and len(examples) == 1
    with pytest.raises(DLMError, match="^d.jsonl: every row is longer than the context \\(16 "
                       "tokens\\): 2 rows, the longest 120 tokens"):
        encode_rows(rows, tok, max_len=16, source="d.jsonl")
    assert tok.decode(examples[0].prompt) == "User: ab\nAssistant: "
    b = collate([Example([1, 2, 3], [7, 8]), Example([4], [9])], eos_id=EOS)
    assert b.shape == (2, 2, 6)
    assert b[0, 0].tolist() == [1, 2, 3, 7, 8, EOS] and b[0, 1].tolist() == [0, 0, 0, 1, 1, 1]
    assert b[1, 0].tolist() == [4, 9, EOS, EOS, EOS, EOS] and b[1, 1].tolist() == [0] + [1] * 5


def test_diffusion_sft_loss_is_llada_recipe():
    torch.manual_seed(0)
    net = tiny_net(vocab_size=40)
    batch = collate([Example([1, 2, 3, 4], [5, 6]), Example([7, 8], [9, 10, 11, 12])], EOS)
    loss = DiffusionSFTLoss(MASK, EOS)
    seen = []
    forward = net.forward
    net.forward = lambda x, **kw: (seen.append(x), forward(x, **kw))[1]
    g = torch.Generator().manual_seed(1)
    noise = loss.draw(2, batch.shape[-1], g)
    noise["t"] = torch.tensor([0.9, 0.9])
    out = loss(net, batch, noise=noise)
    ids, answer = batch[:, 0], batch[:, 1].bool()
    xt = seen[-1]
    masked = xt == MASK
    assert not (masked & ~answer).any()  # the prompt is never masked
    assert masked[0, 6:].any() or masked[1, 6:].any()  # EOS padding is part of the answer
    with torch.no_grad():
        logp = F.log_softmax(forward(xt, attn=Attention.bidirectional()), -1)
    manual = 0.0
    for r in range(2):
        nll = -logp[r, masked[r], ids[r, masked[r]]].sum() / 0.9  # w(t) = 1/t
        manual += nll / answer[r].sum()  # per-answer-length normalisation
    torch.testing.assert_close(out.loss, manual / 2)


def test_block_diffusion_sft_loss_masks_answers_per_block():
    """LLaDA2's SFT on BD3-LM's objective: one t per block of 4, only answer tokens masked,
    each noisy block scored given the clean blocks before it ([x_t ; x_0], block-diffusion
    attention), w(t) * CE summed per row over its answer length, averaged over rows."""
    from dlm.diffusion.objectives import block_diffusion_logits

    torch.manual_seed(0)
    net = tiny_net(vocab_size=40)
    batch = collate([Example([1, 2, 3, 4, 5], [6, 7]), Example([8, 9], [10, 11, 12, 13])], EOS,
                    length=16)
    loss = BlockDiffusionSFTLoss(MASK, EOS, block_size=4)
    noise = loss.draw(2, 16, torch.Generator().manual_seed(1))
    assert noise["t"].shape == (2, 4)
    noise["t"] = torch.tensor([[0.5, 0.9, 0.7, 0.3], [0.6, 0.8, 0.4, 0.95]])
    out = loss(net, batch, noise=noise)
    L = 8  # the longest row (5 + 2 + EOS = 8 and 2 + 4 + EOS = 7) in whole blocks
    ids, answer = batch[:, 0, :L], batch[:, 1, :L].bool()
    t = noise["t"].repeat_interleave(4, 1)[:, :L]
    masked = (noise["u"][:, :L] < t) & answer  # linear schedule: mask prob = t
    assert masked.any() and not (masked & ~answer).any()
    with torch.no_grad():
        logp = F.log_softmax(block_diffusion_logits(
            net, torch.where(masked, MASK, ids), ids, 4), -1)
    manual = sum(-(logp[r, masked[r], ids[r, masked[r]]] / t[r, masked[r]]).sum()
                 / answer[r].sum() for r in range(2)) / 2
    torch.testing.assert_close(out.loss, manual)


def test_batches_are_cut_to_their_longest_row():
    """Rows are stored padded to the context; the loss pads only to the minibatch's longest
    row (prompt, answer, one EOS), as LLaDA does, with the same noise."""
    torch.manual_seed(0)
    net = tiny_net(vocab_size=40)
    examples = [Example([1, 2, 3, 4], [5, 6]), Example([7, 8], [9, 10, 11, 12])]
    short, stored = collate(examples, EOS), collate(examples, EOS, length=20)
    loss = DiffusionSFTLoss(MASK, EOS)
    noise = loss.draw(2, 20, torch.Generator().manual_seed(1))
    cut = {"t": noise["t"], "u": noise["u"][:, :short.shape[-1]]}
    torch.testing.assert_close(loss(net, stored, noise=noise).loss,
                               loss(net, short, noise=cut).loss)
    torch.testing.assert_close(ARSFTLoss(EOS)(net, stored).loss, ARSFTLoss(EOS)(net, short).loss)


def test_ar_sft_loss_counts_the_answer_and_one_eos():
    torch.manual_seed(0)
    net = tiny_net(vocab_size=40)
    batch = collate([Example([1, 2, 3], [5, 6]), Example([7], [9, 10, 11, 12])], EOS)
    out = ARSFTLoss(EOS)(net, batch)
    ids = batch[:, 0]
    with torch.no_grad():
        logp = F.log_softmax(net(ids[:, :-1], attn=Attention.causal()), -1)
    targets = [(0, [3, 4, 5]), (1, [1, 2, 3, 4, 5])]  # positions predicted: answer + first EOS
    nll = [-logp[r, p - 1, ids[r, p]] for r, ps in targets for p in ps]
    torch.testing.assert_close(out.loss, torch.stack(nll).mean())


# -- fine-tuning end to end --------------------------------------------------------------------

class Crash(Exception):
    pass


def crash_at_step_7(trainer, step, row):
    """A training callback standing in for a kill in the middle of a run."""
    if step == 7:
        raise Crash()


QA = [("Capital of France?", "Paris"), ("Colour of the sky?", "blue"), ("Two plus two?", "four"),
      ("Opposite of hot?", "cold"), ("Author of Hamlet?", "Shakespeare"),
      ("Largest planet?", "Jupiter"), ("Frozen water?", "ice"), ("Baby cat?", "kitten"),
      ("Sound of a dog?", "woof"), ("Day after Monday?", "Tuesday"),
      ("First letter?", "A"), ("Colour of grass?", "green")]


def answer_logprob(path) -> float:
    """Sum over the Q&A rows of log p(answer + EOS | prompt), as the SFT evaluator scores it."""
    import dlm
    from dlm.kinds import get as get_kind
    from dlm.kinds import sequence_logprob
    from dlm.sft.loss import up_to_first_eos

    model = dlm.load(path, device="cpu")
    rows = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA]
    examples, _ = encode_rows(rows, model.tokenizer, model.max_seq_len)
    batch = collate(examples, model.eos_id, length=model.max_seq_len)
    ids, answer = batch[:, 0], batch[:, 1].bool()
    target = up_to_first_eos(ids, answer, model.eos_id)
    lp = sequence_logprob(model.network, model.kind, ids, target, mask_id=model.mask_id,
                          valid=~answer | target,  # the EOS padding after the first EOS is no
                          shift=get_kind(model.kind).logit_shift(model.network),  # context
                          t_samples=16, seed=0)
    return lp.sum().item()


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_sft_raises_the_probability_of_the_right_answers(tmp_path, trained, kind):
    from dlm.cli import main

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in QA))
    before = answer_logprob(trained[kind])
    out = tmp_path / "sft"
    assert main(["sft", str(trained[kind]), str(data), "--out", str(out), "--max-steps", "60",
                 "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "5", "--eval-every",
                 "30", "--threads", "1", "--no-progress"]) == 0
    after = answer_logprob(out)
    assert after > before + 0.5 * len(QA), (before, after)  # > 0.5 nats per answer gained
    import dlm

    tuned = dlm.load(out, device="cpu")
    assert tuned.kind == kind and tuned.config["sft_of"] == str(trained[kind])
    # diffusion: semi-AR sampler defaults for the fine-tuned model; AR decodes token by token
    assert tuned.config.get("generation") == (None if kind == "ar" else
                                              {"block_length": 8, "min_length": 1})


def test_sft_resumes_exactly_and_refuses_bad_data(tmp_path, trained, capsys):
    from safetensors.torch import load_file

    from dlm.cli import main
    from dlm.train import TrainConfig, train

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in QA))
    common = dict(kind="mdlm", init_from=str(trained["mdlm"]), sft_data=str(data), max_steps=10,
                  batch_size=4, ckpt_every=5, eval_every=5, warmup_steps=2, progress=False,
                  threads=1, dropout=0.1)
    train(TrainConfig(out=str(tmp_path / "straight"), **common))

    with pytest.raises(Crash):
        train(TrainConfig(out=str(tmp_path / "killed"), **common), [crash_at_step_7])
    # plain `dlm train --resume` of a fine-tuning run continues it as fine-tuning
    train(TrainConfig(out=str(tmp_path / "killed"), resume=True, kind="mdlm", max_steps=10,
                      progress=False, threads=1))
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    import dlm

    assert dlm.load(tmp_path / "killed", device="cpu").config["sft_of"] == str(trained["mdlm"])
    # dropout is live while fine-tuning (the loaded network comes in eval mode)
    train(TrainConfig(out=str(tmp_path / "nodrop"), **{**common, "dropout": 0.0}))
    c = load_file(str(tmp_path / "nodrop" / "model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # resuming from the CLI takes the base from the run (whatever path is given first)
    assert main(["sft", str(tmp_path / "straight"), str(data), "--out",
                 str(tmp_path / "straight"), "--max-steps", "10", "--batch-size", "4",
                 "--threads", "1", "--no-progress", "--resume"]) == 0

    data.write_text('{"prompt": "q"}\n')
    assert main(["sft", str(trained["mdlm"]), str(data), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "qa.jsonl:1: no 'response'" in err and err.count("\n") == 1


# -- LoRA fine-tuning (PEFT) -------------------------------------------------------------------

LORA = ["--lora", "r=8,alpha=16,targets=all"]


@pytest.fixture(scope="module")
def lora_base(tmp_path_factory, small_corpus):
    """A base trained a little longer than ``trained``: a low-rank update of the projections
    only (the embeddings stay frozen) needs a model whose head already knows the bytes."""
    from tests.conftest import train_tiny

    out = tmp_path_factory.mktemp("lora") / "base"
    train_tiny(out, small_corpus, "mdlm", max_steps=150, eval_every=150, ckpt_every=150)
    return out


def sft_args(base, data, out, *extra):
    return ["sft", str(base), str(data), "--out", str(out), "--batch-size", "8", "--lr", "1e-2",
            "--warmup-steps", "5", "--threads", "1", "--no-progress", *extra]


def test_lora_sft_trains_an_adapter_beside_the_base(tmp_path, lora_base, trained, capsys):
    from safetensors.torch import load_file

    import dlm
    from dlm.cli import main

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in QA))
    base_weights = load_file(str(lora_base / "model.safetensors"))
    before = answer_logprob(lora_base)
    run = tmp_path / "lora"
    assert main(sft_args(lora_base, data, run, "--max-steps", "60", "--eval-every", "30",
                         *LORA)) == 0
    after = answer_logprob(run)
    assert after > before + 0.5 * len(QA), (before, after)
    # the run holds the adapter (PEFT's files) and a reference to the base, not its weights
    assert not (run / "model.safetensors").exists()
    adapter = load_file(str(run / "adapter_model.safetensors"))
    config = json.loads((run / "config.json").read_text())["adapter"]
    assert config["base"] == str(lora_base)
    n_adapter = sum(t.numel() for t in adapter.values())
    assert n_adapter == config["trainable_params"] < config["base_params"] / 2
    assert (config["base_kind"], config["base_vocab_size"], config["base_d_model"]) == \
        ("mdlm", 259, 32)
    optimizer = torch.load(run / "train_state" / "optimizer.pt", weights_only=True)
    assert sum(s["exp_avg"].numel() for s in optimizer["state"].values()) == n_adapter
    after_base = load_file(str(lora_base / "model.safetensors"))
    assert all(torch.equal(base_weights[k], after_base[k]) for k in base_weights)
    # the base alone, the base with the adapter, the adapter merged into a full checkpoint
    tuned = dlm.load(run, device="cpu")
    assert list(tuned.adapters.values()) == [1.0]
    # the base + this run as an extra adapter brings the run's sampler defaults along
    assert "generation" not in dlm.load(lora_base, device="cpu").config
    assert dlm.load(lora_base, device="cpu", adapters=[run]).config["generation"] == \
        tuned.config["generation"]
    ids = torch.tensor([[5, 6, tuned.mask_id, 7, tuned.mask_id]])
    with torch.no_grad():
        with tuned.adapters_disabled():
            torch.testing.assert_close(tuned.network(ids),
                                       dlm.load(lora_base, device="cpu").network(ids))
        with_adapter = tuned.network(ids)
    assert main(["merge", str(run), str(tmp_path / "merged")]) == 0
    merged = dlm.load(tmp_path / "merged", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(merged.network(ids), with_adapter, atol=1e-4, rtol=1e-4)
    assert merged.config["merged_adapters"]["base"] == str(lora_base)
    # the sampler defaults of a fine-tune, in the LoRA run and kept by the merge
    assert tuned.config["generation"] == merged.config["generation"] == \
        {"block_length": 8, "min_length": 1}
    # an adapter trained on an MDLM base does not go onto an AR model (same shapes)
    assert main(["sample", str(trained["ar"]), "x", "--adapter", str(run), "--gen-length", "2",
                 "--device", "cpu"]) == 2
    assert "trained on a base of kind mdlm; this model's kind is ar" in capsys.readouterr().err
    sample = ["sample", str(run), "User: Capital of France?\nAssistant: ", "--steps", "8",
              "--gen-length", "8", "--seed", "0", "--temperature", "1", "--device", "cpu"]
    on_base = [sample[0], str(lora_base), *sample[2:]]
    texts = []
    capsys.readouterr()
    for args in (sample, on_base, [*sample, "--no-adapter"], [*on_base, "--adapter", str(run)]):
        assert main(args) == 0
        texts.append(capsys.readouterr().out)
    tuned_text, base_text, base_again, tuned_again = texts
    assert base_text == base_again and tuned_text == tuned_again and tuned_text != base_text
    assert main(["info", str(run)]) == 0
    assert "LoRA r=8,alpha=16,targets=all" in capsys.readouterr().out
    assert main(["convert", str(run), str(tmp_path / "conv")]) == 2  # merging is explicit
    assert "dlm merge" in capsys.readouterr().err
    # every weight fine-tuned from the LoRA run: its merged weights are the start
    assert main(sft_args(run, data, tmp_path / "full", "--max-steps", "5")) == 0
    full = dlm.load(tmp_path / "full", device="cpu")
    assert full.adapters == {} and full.config["sft_of"] == str(run)
    with torch.no_grad():
        assert not torch.allclose(full.network(ids), with_adapter, atol=1e-3)


def test_lora_sft_resumes_exactly_and_finds_a_moved_base(tmp_path, lora_base, capsys,
                                                          monkeypatch):
    import shutil

    from safetensors.torch import load_file

    import dlm
    from dlm.cli import main
    from dlm.train import TrainConfig, train

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in QA))
    base = tmp_path / "base"
    shutil.copytree(lora_base, base)
    common = dict(kind="mdlm", init_from="base", sft_data=str(data), max_steps=10,
                  batch_size=4, ckpt_every=5, eval_every=5, warmup_steps=2, progress=False,
                  threads=1, lora="r=4,alpha=8,dropout=0.1,targets=q,v,down")
    train(TrainConfig(out=str(tmp_path / "straight"), **common))
    recorded = json.loads((tmp_path / "straight" / "config.json").read_text())["adapter"]
    assert recorded["base"] == str(base.resolve())  # found from any folder later

    with pytest.raises(Crash):
        train(TrainConfig(out=str(tmp_path / "killed"), **common), [crash_at_step_7])
    base.rename(tmp_path / "moved")
    resume = ["sft", "x", str(data), "--out", str(tmp_path / "killed"), "--resume",
              "--threads", "1", "--no-progress"]
    assert main(resume) == 2
    assert "--base" in capsys.readouterr().err  # the error says how to go on
    assert main([*resume, "--base", "moved"]) == 0  # a LoRA run resumes as one
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(".mlp.down_proj." in k for k in a) and not any(".k_proj." in k for k in a)
    # loading a run whose base moved names it, and takes its new place
    assert main(["sample", str(tmp_path / "straight"), "x", "--steps", "2", "--gen-length", "2",
                 "--device", "cpu"]) == 2
    assert "base checkpoint" in capsys.readouterr().err
    model = dlm.load(tmp_path / "straight", device="cpu", base=tmp_path / "moved")
    assert len(model.adapters) == 1
    assert main(["sft", str(tmp_path / "moved"), str(data), "--lora", "r=0"]) == 2
    assert "r >= 1" in capsys.readouterr().err


def test_sft_plan_data_checks_and_held_out_error(tmp_path, trained, capsys, monkeypatch):
    """One short run: a too-long first row (the held-out one) is skipped with a warning, not
    'every row is longer'; --epochs comes to the nearest whole step and the epochs reported
    are the ones run; an explicit --warmup-steps longer than the run is shortened with a
    warning; the held-out s.e. is the spread of the Monte-Carlo draws; loss.png is titled
    with the SFT file."""
    import dlm
    import dlm.train.trainer as trainer_module
    from dlm.kinds import sequence_logprob
    from dlm.sft.loss import up_to_first_eos
    from dlm.train import TrainConfig, train

    titles = []
    real_plot = trainer_module.plot_losses
    monkeypatch.setattr(trainer_module, "plot_losses",
                        lambda path, rows, title, label: (titles.append(title),
                                                          real_plot(path, rows, title, label)))
    data = tmp_path / "qa.jsonl"
    rows = [("why? " * 20, "because"), *QA[:9]]  # 10 rows; the first needs 126 > 64 tokens
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in rows))
    out = tmp_path / "run"
    common = dict(kind="mdlm", init_from=str(trained["mdlm"]), sft_data=str(data),
                  batch_size=3, progress=False, threads=1, eval_t_samples=4)
    capsys.readouterr()
    result = train(TrainConfig(out=str(out), epochs=2, warmup_steps=50, **common))
    err = capsys.readouterr().err
    assert f"dlm: skipped 1 of 10 rows of {data}: longer than the context of 64 tokens" in err
    # 9 rows fit: 1 held out, 8 train; 2 epochs of 8 rows at batch 3 = 5.33 -> 5 steps
    assert "--epochs 2 of 8 sequences at batch 3 = 5 steps = 1.88 epochs" in err
    assert "--warmup-steps 50 is more than a fifth of this 5-step run: warming up over " \
           "1 step" in err
    config = json.loads((out / "config.json").read_text())
    assert config["step"] == 5 and config["data"]["epochs"] == 15 / 8
    assert config["data"]["rows"] == 8 and config["data"]["skipped_too_long"] == 1
    assert titles and all("qa.jsonl" in t and "shakespeare" not in t for t in titles)
    # the s.e.: 4 one-draw estimates (seeds 0..3) of the held-out answer's log-likelihood
    model = dlm.load(out, device="cpu")
    ex, _ = encode_rows([[{"role": "user", "content": q}, {"role": "assistant",
                                                          "content": a}] for q, a in QA[:1]],
                        model.tokenizer, 64)
    batch = collate(ex, model.eos_id)
    ids, answer = batch[:, 0], batch[:, 1].bool()
    target = up_to_first_eos(ids, answer, model.eos_id)
    draws = torch.stack([sequence_logprob(model.network, "mdlm", ids, target,
                                          mask_id=model.mask_id, valid=~answer | target,
                                          t_samples=1, seed=k).sum() for k in range(4)])
    n_bytes = int(model.tokenizer.token_bytes[ids[target].numpy()].sum())
    assert result.se_bits_per_byte > 0
    assert result.bits_per_byte == pytest.approx(-draws.mean().item() / math.log(2) / n_bytes,
                                                 rel=1e-4)
    assert result.se_bits_per_byte == pytest.approx(
        draws.std().item() / 2 / math.log(2) / n_bytes, rel=1e-4)

    # every row too long: the error counts them and gives the longest
    data.write_text(json.dumps({"prompt": "why? " * 20, "response": "because"}) + "\n")
    with pytest.raises(DLMError, match=r"qa.jsonl: every row is longer than the context \(64 "
                       r"tokens\): 1 row, the longest 126 tokens"):
        train(TrainConfig(out=str(tmp_path / "none"), max_steps=2, **common))
    # a context longer than the model's is refused, not clamped
    with pytest.raises(DLMError, match=r"--seq-len 1024 is longer than the context of .* \(64 "
                       r"tokens\)"):
        train(TrainConfig(out=str(tmp_path / "long"), max_steps=2, seq_len=1024, **common))


HELD_OUT_STYLE = ["Capital of Spain?", "Colour of snow?", "Three plus three?", "Opposite of up?",
                  "Author of Macbeth?", "Smallest planet?", "Baby dog?", "Sound of a cat?",
                  "Day after Friday?", "Colour of the sea?", "Capital of Italy?",
                  "Colour of coal?", "One plus one?", "Opposite of cold?", "Author of Othello?",
                  "Hottest planet?", "Baby cow?", "Sound of a cow?", "Day before Sunday?",
                  "Colour of milk?"]


def test_a_fine_tuned_diffusion_model_answers_with_its_default_sampler(tmp_path, small_corpus):
    """SFT pads answers with EOS, so a fine-tuned model decoded as one block can commit EOS
    right after the prompt: an empty answer. The run writes semi-AR blocks and min_length 1
    into its config as the sampler defaults, and with those every question gets an answer.
    (A 128-token context, as the tiny preset's: the default gen_length fills it, and the
    longer the canvas of EOS padding, the likelier the empty answer.)"""
    import dlm
    from dlm.sft.trainer import SFT_GENERATION
    from dlm.train import TrainConfig, train
    from tests.conftest import train_tiny

    base = tmp_path / "base"
    train_tiny(base, small_corpus, "mdlm", max_steps=150, eval_every=150, ckpt_every=150,
               seq_len=128)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in QA))
    out = tmp_path / "sft"
    train(TrainConfig(kind="mdlm", init_from=str(base), sft_data=str(data), out=str(out),
                      max_steps=600, batch_size=8, lr=3e-3, eval_every=600, ckpt_every=600,
                      progress=False, threads=1))
    model = dlm.load(out, device="cpu")
    assert model.config["generation"] == SFT_GENERATION == {"block_length": 8, "min_length": 1}
    prompts = [f"User: {q}\nAssistant: " for q in HELD_OUT_STYLE]
    one_block = model.generate(prompts, block_length=None, min_length=0).text
    assert sum(not t.strip() for t in one_block) >= 5  # the failure (12 of 20 when measured)
    answers = model.generate(prompts).text  # the checkpoint's defaults
    assert all(t.strip() for t in answers), answers
