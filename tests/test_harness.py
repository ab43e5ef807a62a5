"""The lm-evaluation-harness adapter end to end: task YAMLs and a local data file written here,
run through lm-eval (no download), and every number it reports compared with the same
quantity computed directly from the model."""

from __future__ import annotations

import json
import math

import pytest
import torch

import dlm
from dlm.cli import main

DOCS = [
    {"question": "ROMEO:", "choices": [" O Juliet", " zqxv kpw", " the"], "answer": 0},
    {"question": "To be, or not to be,", "choices": [" that is", " 9 9 9"], "answer": 1},
    {"question": "First Citizen:\nWe", "choices": [" are", " xq"], "answer": 0},
]
TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York; and all "
        "the clouds that lour'd upon our house in the deep bosom of the ocean buried.")

TASKS = {
    "t_mc": {"output_type": "multiple_choice", "doc_to_text": "{{question}}",
             "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
             "metric_list": [{"metric": "acc"}]},
    "t_greedy": {"output_type": "loglikelihood", "doc_to_text": "{{gq}}",
                 "doc_to_target": "{{greedy}}", "target_delimiter": "",
                 "metric_list": [{"metric": "acc"}]},
    "t_rolling": {"output_type": "loglikelihood_rolling", "doc_to_text": "",
                  "doc_to_target": "{{text}}", "metric_list": [{"metric": "bits_per_byte"}]},
    "t_gen": {"output_type": "generate_until", "doc_to_text": "{{question}}",
              "doc_to_target": "{{gen}}", "metric_list": [{"metric": "exact_match"}],
              "generation_kwargs": {"until": ["\n"], "max_gen_toks": 16, "do_sample": False}},
}


def write_tasks(folder, docs):
    """One jsonl data file and a YAML per task, read by lm-eval's local json loader."""
    folder.mkdir()
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    for name, spec in TASKS.items():
        config = {"task": name, "dataset_path": "json", "test_split": "test",
                  "dataset_kwargs": {"data_files": {"test": str(data)},
                                     "cache_dir": str(folder / "cache")}, **spec}
        (folder / f"{name}.yaml").write_text(json.dumps(config))  # JSON is YAML
    return folder


def run_harness(tmp_path, checkpoint, tasks, *flags):
    out = tmp_path / "results.json"
    assert main(["lm-eval", str(checkpoint), "--tasks", ",".join(tasks), "--include-path",
                 str(tmp_path / "tasks"), "--out", str(out), "--log-samples",
                 "--bootstrap-iters", "0", "--device", "cpu", *flags]) == 0
    return json.loads(out.read_text())


def split(model, context, continuation):
    """lm-eval's pair encoding: the context's trailing spaces move to the continuation."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    whole = model.tokenizer.encode(stripped + continuation)
    n = len(model.tokenizer.encode(stripped))
    return whole[:n], whole[n:]


def scored(results, task):
    """[(context, continuation, logprob, is_greedy)] of every loglikelihood request."""
    out = []
    for sample in results["samples"][task]:
        for (ctx, cont), resp in zip(sample["arguments"], sample["resps"]):
            ll, greedy = resp[0]
            out.append((ctx, cont, float(ll), bool(greedy)))
    return out


# no trailing whitespace: lm-eval moves it from the context into the continuation
PROMPTS = ["ROMEO:", "To be, or not to be,", "First Citizen:\nWe", "KING LEAR:", "What light",
           "HAMLET:\nTo", "My lord,", "JULIET:\nO", "Good", "Farewell", "MACBETH:", "Enter"]


def greedy_docs(model, docs, n):
    """Give each doc a context 'gq' and what greedy decoding writes after it ('greedy'; for
    diffusion one token per step), from prompts whose continuation survives decoding to text
    and encoding back (a tiny model may write stray bytes that are not UTF-8)."""
    found = []
    for prompt in PROMPTS:
        ids = model.tokenizer.encode(prompt)
        tokens = model.generate_ids([ids], gen_length=n, steps=n, temperature=0.0,
                                    remasking="low_confidence", stop_at_eos=False).tokens[0]
        text = model.tokenizer.decode(tokens)
        if model.tokenizer.encode(prompt + text) == ids + tokens:
            found.append((prompt, text))
    assert len(found) >= len(docs)
    return [dict(d, gq=q, greedy=g) for d, (q, g) in zip(docs, found)]


def rolling_bits_per_byte(model, docs, **kw):
    """Every token scored once, in windows that fit the context with one token before them
    (the first after the BOS, or EOS, alone; the last after a full window), summed."""
    shifted = model._bos()  # AR / Dream put the EOS before the text themselves
    W = model.max_seq_len - len(shifted) - 1
    total_nats, total_bytes = 0.0, 0
    for d in docs:
        ids = model.tokenizer.encode(d["text"])
        pairs = []
        for start in range(0, len(ids), W):
            piece = ids[start:start + W]
            context = ids[max(0, start + len(piece) - W - 1):start]
            pairs.append((context if start or shifted else [model.eos_id], piece))
        # a shifted model's BOS only before the text's start, not before later windows
        total_nats -= sum(model.loglikelihood_ids([p], bos=n == 0, **kw)[0]
                          for n, p in enumerate(pairs))
        total_bytes += len(d["text"].encode())
    return total_nats / total_bytes / math.log(2)


def test_lm_eval_on_an_ar_checkpoint_matches_direct_computation(tmp_path, trained):
    model = dlm.load(trained["ar"], device="cpu")
    docs = greedy_docs(model, [dict(d, text=TEXT * (i + 1)) for i, d in enumerate(DOCS)], 4)
    for d in docs:
        d["gen"] = model.generate(d["question"], gen_length=16, temperature=0.0,
                                  stop=["\n"]).text
    docs[1]["greedy"] = "zzzz"  # not what greedy decoding writes
    docs[2]["gen"] = "not this"
    write_tasks(tmp_path / "tasks", docs)
    res = run_harness(tmp_path, trained["ar"], list(TASKS))
    # multiple choice: exact log-likelihoods, acc = argmax over the choices
    for ctx, cont, ll, _ in scored(res, "t_mc"):
        direct = model.loglikelihood_ids([split(model, ctx, cont)])[0]
        assert ll == pytest.approx(direct, abs=1e-4)
    picks = [max(range(len(d["choices"])), key=lambda c: model.loglikelihood_ids(
        [split(model, d["question"] + " ", d["choices"][c])])[0]) for d in docs]
    acc = sum(p == d["answer"] for p, d in zip(picks, docs)) / len(docs)
    assert res["results"]["t_mc"]["acc,none"] == pytest.approx(acc)
    # is_greedy: true exactly where the continuation is the model's own greedy output
    assert [g for *_, g in scored(res, "t_greedy")] == [True, False, True]
    assert res["results"]["t_greedy"]["acc,none"] == pytest.approx(2 / 3)
    assert len(model.tokenizer.encode(docs[2]["text"])) > 2 * model.max_seq_len  # windows
    assert res["results"]["t_rolling"]["bits_per_byte,none"] == pytest.approx(
        rolling_bits_per_byte(model, docs), rel=1e-5)
    # generation: the sampler's greedy text, cut at the task's stop string
    assert res["results"]["t_gen"]["exact_match,none"] == pytest.approx(2 / 3)
    gens = [s["filtered_resps"][0] for s in res["samples"]["t_gen"]]
    assert gens[:2] == [docs[0]["gen"], docs[1]["gen"]] and all("\n" not in g for g in gens)


def test_lm_eval_on_a_diffusion_checkpoint_uses_the_monte_carlo_estimate(tmp_path, trained):
    model = dlm.load(trained["mdlm"], device="cpu")
    docs = greedy_docs(model, [dict(d, text=TEXT, gen="") for d in DOCS], 3)
    docs[0]["greedy"] = "qqq"
    write_tasks(tmp_path / "tasks", docs)
    # batch size 1: each request is one estimate with the seed, as a direct call makes it
    res = run_harness(tmp_path, trained["mdlm"], ["t_mc", "t_greedy", "t_rolling"],
                      "--mc-num", "8", "--batch-size", "1", "--seed", "3")
    for ctx, cont, ll, _ in scored(res, "t_mc"):
        direct = model.loglikelihood_ids([split(model, ctx, cont)], t_samples=8, seed=3)[0]
        assert ll == pytest.approx(direct, abs=1e-4)
    assert res["results"]["t_rolling"]["bits_per_byte,none"] == pytest.approx(
        rolling_bits_per_byte(model, docs, t_samples=8, seed=3), rel=1e-5)
    assert [g for *_, g in scored(res, "t_greedy")] == [False, True, True]
    # the estimate moves with the number of draws (so --mc-num reaches the estimator)
    res16 = run_harness(tmp_path, trained["mdlm"], ["t_mc"], "--mc-num", "16", "--batch-size",
                        "1", "--seed", "3", "--no-check-greedy")
    assert [x[2] for x in scored(res16, "t_mc")] != [x[2] for x in scored(res, "t_mc")]
    assert not any(g for *_, g in scored(res16, "t_mc"))  # unchecked: reported False


def test_greedy_check_is_llada_one_token_per_step(trained):
    """LLaDA's suffix_greedy_prediction written out: at each step the most confident masked
    slot gets its argmax."""
    model = dlm.load(trained["mdlm"], device="cpu")
    context = model.tokenizer.encode("ROMEO: O")
    n = 4
    x = torch.tensor([context + [model.mask_id] * n])
    with torch.no_grad():
        for _ in range(n):
            masked = x[0] == model.mask_id
            logits = model.network(x)[0]
            logits[:, [model.mask_id, model.pad_id]] = -math.inf  # never written
            p = torch.softmax(logits, -1)
            conf, token = p.max(-1)
            conf[~masked] = -1.0
            i = int(conf.argmax())
            x[0, i] = token[i]
    mine = x[0, len(context):].tolist()
    assert model.greedy_ids([(context, mine)]) == [True]
    other = [mine[0], (mine[1] + 1) % model.mask_id, *mine[2:]]
    assert model.greedy_ids([(context, other)]) == [False]


def test_classifier_free_guidance_follows_llada(trained):
    """cfg: logits u + (s + 1)(c - u), u from the context masked: at s = 0 the plain estimate;
    at s > 0 the one written here with the same draws."""
    from dlm.kinds import sequence_logprob

    model = dlm.load(trained["mdlm"], device="cpu")
    pair = (model.tokenizer.encode("ROMEO: O"), model.tokenizer.encode(" Juliet"))
    plain = model.loglikelihood_ids([pair], t_samples=4, seed=1)
    assert model.loglikelihood_ids([pair], t_samples=4, seed=1, cfg_scale=0.0) == plain
    guided = model.loglikelihood_ids([pair], t_samples=4, seed=1, cfg_scale=1.5)[0]
    net = model.network
    ids = torch.tensor([pair[0] + pair[1]])
    target = torch.zeros_like(ids, dtype=torch.bool)
    target[0, len(pair[0]):] = True
    calls = []

    def guided_net(x, **kw):  # the network the estimator sees, with the guidance done here
        calls.append(x)
        c = net(x, **kw)
        u = net(torch.where(target.expand_as(x), x, model.mask_id), **kw)
        return u + 2.5 * (c - u)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net

        def forward(self, x, **kw):
            return guided_net(x, **kw)

    by_hand = sequence_logprob(Wrapped(), "mdlm", ids, target, mask_id=model.mask_id,
                               t_samples=4, seed=1)[0].item()
    assert guided == pytest.approx(by_hand, abs=1e-4) and guided != pytest.approx(plain[0])


def test_bad_model_args_and_tasks_are_refused_in_one_line(tmp_path, trained, capsys):
    from lm_eval.api.registry import get_model

    from dlm.errors import DLMError
    from dlm.harness import DLMHarness

    assert get_model("dlm") is DLMHarness  # what lm-eval's --model dlm finds
    # model_args win over lm-eval's own --device / --batch_size, which fill in the rest
    h = DLMHarness.create_from_arg_string(f"pretrained={trained['mdlm']},mc_num=4,device=cpu",
                                          {"device": "cuda:7", "batch_size": 3})
    assert (h.mc_num, h.batch_size, h.model.device.type) == (4, 3, "cpu")
    with pytest.raises(DLMError, match="unknown dlm model_args: bogus"):
        DLMHarness(str(trained["mdlm"]), bogus=1)
    with pytest.raises(DLMError, match="steps must be >= 1"):
        DLMHarness(str(trained["mdlm"]), steps=0)
    write_tasks(tmp_path / "tasks", [dict(d, text=TEXT, gq="x", greedy="x", gen="") for d in DOCS])
    assert main(["lm-eval", str(trained["mdlm"]), "--tasks", "no_such_task", "--include-path",
                 str(tmp_path / "tasks")]) == 2
    err = capsys.readouterr().err
    assert "unknown lm-eval task(s): no_such_task" in err and err.count("\n") == 1


def test_gen_kwargs_map_onto_the_sampler_and_empty_continuations_score_zero(trained):
    from dlm.harness import DLMHarness

    h = DLMHarness(str(trained["mdlm"]), device="cpu", steps=8, stop="END")
    fields = h._gen_fields({"until": "\n\n", "max_gen_toks": 16, "do_sample": True,
                            "temperature": 0.5})
    assert fields["stop"] == ["\n\n", "END"] and fields["gen_length"] == 16
    assert fields["temperature"] == 0.5 and fields["steps"] == 8  # the user's steps win
    assert h._gen_fields({"do_sample": True})["temperature"] == 1.0
    assert h._gen_fields({"do_sample": False, "temperature": 0.7})["temperature"] == 0.0
    ids = h.tok_encode("ROMEO: O")
    scores = h._score([(ids, []), (ids, h.tok_encode(" Juliet"))], greedy=False, what="x",
                      disable=True)
    assert scores[0] == (0.0, True) and scores[1][0] < 0


def test_guidance_masks_a_shifted_models_context_and_ignores_padding(tmp_path):
    """Dream (shifted logits, no BOS), two pairs of different lengths (left padding): the
    unconditional pass masks each row's whole context, and padding stays padding."""
    from dlm.kinds import sequence_logprob
    from dlm.sample.driver import left_pad
    from tests.models.test_hf import DREAM_CONFIG, MASK, dream_weights, write_checkpoint

    model = dlm.load(write_checkpoint(tmp_path / "d", DREAM_CONFIG, dream_weights()),
                     device="cpu")
    pairs = [([3, 17, 8], [40, 2]), ([5, 9, 11, 20, 6], [1, 7, 33])]
    guided = model.loglikelihood_ids(pairs, t_samples=3, seed=2, cfg_scale=0.5)
    rows = [model._bos() + a + b for a, b in pairs]
    ids, valid = left_pad(rows, model.pad_id, "cpu")
    target = torch.zeros_like(valid)
    for r, (_, b) in enumerate(pairs):
        target[r, ids.shape[1] - len(b):] = True
    assert model._bos() == []
    context = valid & ~target
    assert context.sum() == 3 + 5  # the padding is not context
    net = model.network

    class Guided(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.config = net, net.config

        def forward(self, x, **kw):
            c = net(x, **kw)
            u = net(x.masked_fill(context.repeat(len(x) // len(pairs), 1), MASK), **kw)
            return u + 1.5 * (c - u)

    by_hand = sequence_logprob(Guided(), "mdlm", ids, target, mask_id=MASK, valid=valid,
                               shift=1, t_samples=3, seed=2)
    assert guided == pytest.approx(by_hand.tolist(), abs=1e-5)
    assert guided != pytest.approx(model.loglikelihood_ids(pairs, t_samples=3, seed=2))


def test_lm_evals_own_command_line_gets_dlms_device_only_when_it_evaluates():
    from dlm.harness.__main__ import with_device

    run = ["--model", "dlm", "--tasks", "x"]
    assert with_device(run) == [*run, "--device", "auto"]
    assert with_device(["run", *run]) == ["run", *run, "--device", "auto"]
    for keep in ([], ["--help"], ["ls", "tasks"], ["validate", "--tasks", "x"],
                 [*run, "--device", "cpu"], [*run, "--dev", "cpu"], [*run, "-h"]):
        assert with_device(keep) == keep
