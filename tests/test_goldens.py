"""Goldens: what every kind and decoding method wrote before the engine refactor (issue 14).

``tests/goldens/driver.json`` holds, per case, the tokens, the network calls and the trace
(positions, tokens and re-masks of every step) of ``generate`` / ``denoise`` on seeded tiny
networks; ``tests/goldens/model.json`` the results of ``Model.generate / infill / edit /
greedy_ids / loglikelihood`` on tiny checkpoints stored in ``tests/goldens/ckpt-*`` (written by
the main branch before the refactor, so they also check that such checkpoints still load and
sample the same). Greedy cases must stay token-identical; a seeded sampled case of one row
too (a single row's random stream is the sampler's seed).

Recorded once, on the code before the refactor, by ``python -m tests.test_goldens record``;
a later change that alters an output is a behaviour change, not a new golden. One recorded
change: the three ``*-best-of-n`` cases (sampled, two prompts in one batch) were re-recorded
when each row got its own random stream (issue 14: one stream shared by the batch could not
give a row the same tokens alone and in any batch);
``test_batched_sampled_rows_are_each_row_alone`` checks that rows given their own seeds
decode as each alone, and the first prompt's rows as the default seeding draws them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import dlm
from dlm.data.tokenizer import byte_tokenizer
from dlm.models.transformer import Attention
from dlm.pipeline import Model
from dlm.sample.config import SampleConfig
from dlm.sample.driver import denoise, generate
from tests.conftest import tiny_net

HERE = Path(__file__).parent / "goldens"
MASK, EOS, PAD = 37, 38, 39
IDS = dict(mask_id=MASK, eos_id=EOS, pad_id=PAD)
BLOCK = 4

# network variants: kind, Transformer kwargs
NETS = {"mdlm": ("mdlm", {}), "ar": ("ar", {}), "bd3lm": ("bd3lm", {}),
        "dream": ("mdlm", {"shift_logits": True})}
P1 = [[5, 9, 2]]
P2 = [[5, 9, 2], [7, 1, 3, 3, 8, 4]]  # ragged

# (name, net, prompts, SampleConfig fields); "canvas" cases run denoise on given canvases
CASES: list[tuple[str, str, list, dict]] = []
for net in NETS:
    CASES += [(f"{net}-greedy", net, P2, dict(gen_length=12)),
              (f"{net}-steps", net, P1, dict(gen_length=12, steps=5)),
              (f"{net}-sampled", net, P1, dict(gen_length=12, temperature=1.0, seed=3)),
              (f"{net}-topk-topp", net, P1, dict(gen_length=10, temperature=0.8, top_k=5,
                                                 top_p=0.9, seed=1)),
              (f"{net}-beam", net, P2, dict(gen_length=8, beam_width=3)),
              (f"{net}-min-length", net, P1, dict(gen_length=10, min_length=4))]
for net in ("mdlm", "dream", "bd3lm"):
    CASES += [(f"{net}-threshold", net, P2, dict(gen_length=12, threshold=0.3)),
              (f"{net}-factor", net, P1, dict(gen_length=12, factor=1.0)),
              (f"{net}-best-of-n", net, P2, dict(gen_length=8, num_samples=3,
                                                 temperature=1.0, seed=2)),
              (f"{net}-cfg", net, P1, dict(gen_length=8, cfg_scale=1.0)),
              (f"{net}-remdm-conf", net, P1, dict(gen_length=12, steps=12, remask_eta=0.5,
                                                  remask_variant="conf")),
              (f"{net}-remdm-random", net, P1, dict(gen_length=12, steps=12, remask_eta=0.5,
                                                    seed=4)),
              (f"{net}-random-remasking", net, P1, dict(gen_length=12, remasking="random",
                                                        seed=5)),
              (f"{net}-alg-temp", net, P1, dict(gen_length=12, alg_temp=0.5, seed=6)),
              (f"{net}-dream-transfer", net, P1, dict(gen_length=12, steps=6,
                                                      transfer="dream",
                                                      confidence="sampled")),
              (f"{net}-entropy", net, P1, dict(gen_length=12, remasking="entropy"))]
for net in ("mdlm", "dream"):
    CASES += [(f"{net}-blocks", net, P2, dict(gen_length=12, block_length=4, steps=6)),
              (f"{net}-prefix", net, P2, dict(gen_length=12, block_length=4, cache="prefix")),
              (f"{net}-dual", net, P2, dict(gen_length=12, block_length=4, cache="dual",
                                            threshold=0.3)),
              (f"{net}-origin", net, P1, dict(gen_length=12, remasking="origin")),
              (f"{net}-alpha", net, P1, dict(gen_length=12, steps=6, transfer="cosine")),
              (f"{net}-canvas", net, [[5, 9, MASK, MASK, 2, MASK, 8, MASK, MASK, MASK, 3]],
               dict(steps=4))]
CASES += [("bd3lm-uncached", "bd3lm", P2, dict(gen_length=12, cache="none")),
          ("bd3lm-long", "bd3lm", P1, dict(gen_length=80)),  # slides past the window
          ("ar-long", "ar", P1, dict(gen_length=80))]


def network(name: str):
    kind, kw = NETS[name]
    net = tiny_net(seed=11, **kw)
    if kind == "bd3lm":
        net.default_attention = Attention.block_causal(BLOCK)
    return kind, net


def run_case(name: str, net_name: str, prompts: list, fields: dict) -> dict:
    kind, net = network(net_name)
    cfg = SampleConfig(**fields)
    if name.endswith("-canvas"):
        gen = denoise(net, prompts, [0] * len(prompts), cfg, kind=kind, **IDS)
    else:
        gen = generate(net, prompts, cfg, kind=kind, **IDS)
    steps = [[s.block, s.positions, s.tokens, s.remasked] for s in gen.trace.steps]
    return {"tokens": gen.tokens, "canvases": gen.canvases, "nfe": gen.nfe, "trace": steps,
            "initial": gen.trace.initial, "scores": None if gen.scores is None else
            [round(s, 4) for s in gen.scores], "steps": gen.config.steps,
            "gen_length": gen.config.gen_length}


# --- Model level: tiny checkpoints with the byte tokenizer ---------------------------------


def make_checkpoint(path: Path, net_name: str) -> None:
    kind, kw = NETS[net_name]
    tok = byte_tokenizer()
    net = tiny_net(vocab_size=tok.vocab_size, seed=12, max_seq_len=48, d_model=16, n_layers=1,
                   n_heads=2, **kw)
    config = {"kind": kind, "objective": {"schedule": "linear"}}
    if kind == "bd3lm":
        config["objective"]["block_size"] = BLOCK
    Model(net, tok, config).save(path)


def model_results(model: Model) -> dict:
    out: dict = {}
    g = model.generate(["To be", "O"], gen_length=10)
    out["generate"] = [g.tokens, g.nfe]
    g = model.generate("To be", gen_length=10, temperature=1.0, seed=7, trace=True)
    out["generate-sampled"] = [g.tokens, [[s.positions, s.tokens] for s in g.trace.steps]]
    out["loglikelihood"] = [round(x, 4) for x in model.loglikelihood(
        ["To be", "Now is"], [" or not", " the"], t_samples=4)] \
        if model.kind != "bd3lm" else None
    if model.kind == "mdlm":
        f = model.infill(["The cat [MASK:3] on [MASK:<=4].", "A [MASK] b"], trace=True)
        out["infill"] = [f.tokens, f.nfe, [[s.positions, s.tokens] for s in f.trace.steps]]
        e = model.edit("The cat sat on the mta.", budget=3, trace=True)
        out["edit"] = [e.tokens, e.remasked, e.changed,
                       [[s.positions, s.tokens, s.remasked] for s in e.trace.steps]]
        e = model.edit("The cat sat on the mat.", spans=[(8, 11)])
        out["edit-spans"] = [e.tokens, e.remasked]
        out["greedy_ids-given"] = model.greedy_ids([(model.tokenizer.encode("ab"), [7, 9]),
                                              (model.tokenizer.encode("x"), [3])])
    if model.kind != "bd3lm":
        out["greedy_ids"] = model.greedy_ids(
            [(model.tokenizer.encode("ab"), g.tokens[0][:2]),
             (model.tokenizer.encode("To be"), g.tokens[0][:3])])
    return out


def record() -> None:
    HERE.mkdir(exist_ok=True)
    driver = {name: run_case(name, net, prompts, fields)
              for name, net, prompts, fields in CASES}
    (HERE / "driver.json").write_text(json.dumps(driver, separators=(",", ":")) + "\n")
    models = {}
    for net_name in NETS:
        path = HERE / f"ckpt-{net_name}"
        make_checkpoint(path, net_name)
        models[net_name] = model_results(dlm.load(path, device="cpu"))
    (HERE / "model.json").write_text(json.dumps(models, separators=(",", ":")) + "\n")


@pytest.fixture(scope="module")
def goldens() -> dict:
    return json.loads((HERE / "driver.json").read_text())


@pytest.mark.parametrize("name,net,prompts,fields", CASES, ids=[c[0] for c in CASES])
def test_driver_matches_the_golden(goldens, name, net, prompts, fields):
    got = run_case(name, net, prompts, fields)
    assert got == goldens[name]


@pytest.mark.parametrize("net_name", list(NETS))
def test_checkpoints_of_main_load_and_sample_the_same(net_name):
    want = json.loads((HERE / "model.json").read_text())[net_name]
    got = json.loads(json.dumps(model_results(dlm.load(HERE / f"ckpt-{net_name}",
                                                       device="cpu"))))
    assert got == want


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[0].endswith("best-of-n")])
def test_batched_sampled_rows_are_each_row_alone(goldens, name):
    _, net_name, prompts, fields = next(c for c in CASES if c[0] == name)
    kind, net = network(net_name)
    cfg = SampleConfig(**fields)
    seeds = [fields["seed"], 77]
    both = generate(net, prompts, cfg, kind=kind, seeds=seeds, **IDS)
    for i, p in enumerate(prompts):
        alone = generate(net, [p], cfg.replace(seed=seeds[i]), kind=kind, **IDS)
        assert alone.tokens[0] == both.tokens[i]
    assert both.tokens[0] == goldens[name]["tokens"][0]  # input 0: the default streams


def test_goldens_cover_every_kind_and_a_real_trace(goldens):
    kinds = {NETS[net][0] for _, net, _, _ in CASES}
    assert kinds == {"ar", "mdlm", "bd3lm"}
    assert all(g["trace"] and g["nfe"] > 0 for g in goldens.values())
    assert torch.is_tensor(torch.tensor(goldens["ar-long"]["tokens"]))  # 80 new tokens
    assert len(goldens["ar-long"]["tokens"][0]) == 80


if __name__ == "__main__" and sys.argv[1:] == ["record"]:
    record()
