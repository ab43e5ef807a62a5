"""Published checkpoints decode as their authors' samplers do.

Tiny random LLaDA and Dream checkpoints are written with the published ids (PAD = EOS, as in
GSAI-ML/LLaDA-8B-* and Dream-org/Dream-v0-*), loaded with ``dlm.load`` and decoded by dlm; the
references below are transcriptions of ML-GSAI/LLaDA ``generate.py`` ``generate()`` and of
Dream's ``generation_utils.py`` ``_sample`` (greedy: their random draws are not ours), calling
the network the way each authors' model code does (LLaDA: slot positions and an attention mask
over the padding; Dream: ``tok_idx`` positions and logits shifted right by one with slot 0
keeping its own). The network itself is checked against each architecture's equations in
tests/models/test_hf.py, so these tests are about the samplers.

The published samplers suppress no token; dlm never writes MASK (docs/sampling.md). So that
the two can be compared token for token, the network's head gives MASK a logit of -1e4, as a
trained model gives it no probability (a forward hook on the head, so both samplers see it).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dlm
from dlm.models.transformer import Attention
from dlm.sample.strategies import masked_targets
from tests.models.test_hf import (
    DREAM_CONFIG,
    EOS,
    LLADA_CONFIG,
    MASK,
    dream_weights,
    llada_weights,
    write_checkpoint,
)

HEADS = {"llada": ("model.transformer.ff_out.weight", "model.transformer.ln_f.weight"),
         "dream": ("lm_head.weight", "model.norm.weight")}


def checkpoint(tmp_path, arch: str, eos_bias: float = 0.0, seed: int = 0):
    """A loaded tiny ``arch`` checkpoint with the published ids (pad = EOS). ``eos_bias``
    pushes the EOS logit up (along the final norm's signs), so answers end early."""
    path = tmp_path / f"{arch}-{seed}-{eos_bias}"
    if arch in ("llada_moe", "llada2"):  # (imported here: test_moe imports this file)
        from tests.models import test_moe as m

        config, sd = (m.LLADA_MOE_CONFIG, m.llada_moe_weights(seed=seed)) \
            if arch == "llada_moe" else (m.LLADA2_CONFIG, m.llada2_weights(seed=seed))
        sd["lm_head.weight"][EOS] += sd["model.norm.weight"].sign() * eos_bias
        m.write_moe(path, config, sd)
    else:
        sd = (llada_weights(seed=seed) if arch == "llada" else dream_weights(seed=seed + 1))
        head, norm = HEADS[arch]
        sd[head][EOS] += sd[norm].sign() * eos_bias
        config = LLADA_CONFIG if arch == "llada" else DREAM_CONFIG
        write_checkpoint(path, config, sd)
    assert config["pad_token_id"] == config["eos_token_id"] == EOS
    return no_mask_logits(dlm.load(path, device="cpu"))


def no_mask_logits(model):
    """MASK's logit at -1e4 for every caller of the network (a hook on its head)."""
    def hook(module, args, logits):
        logits[..., MASK] = -1e4
        return logits

    model.network.lm_head.register_forward_hook(hook)
    return model


def left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """As the authors' demos batch prompts: left-padded with the pad id (EOS), and a mask."""
    P = max(map(len, prompts))
    ids = torch.full((len(prompts), P), EOS, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, P - len(p):], mask[b, P - len(p):] = torch.tensor(p), 1
    return ids, mask


# -- the references ----------------------------------------------------------------------------

@torch.no_grad()
def llada_generate(net, prompt, attention_mask, steps, gen_length, block_length):
    """LLaDA's generate(): temperature 0, no guidance, low_confidence remasking. Per block of
    ``block_length``, ``steps // blocks`` steps; each commits the even split of the block's
    masks (the remainder to the first steps), the most confident first, never past the block.
    The model sees positions 0..S-1 and the padding hidden (LLaDA's attention_mask)."""
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), MASK, dtype=torch.long)
    x[:, :P] = prompt
    keys = torch.cat([attention_mask, torch.ones(B, gen_length, dtype=torch.long)], 1).bool()
    assert gen_length % block_length == 0
    blocks = gen_length // block_length
    assert steps % blocks == 0
    per_block = steps // blocks
    for nb in range(blocks):
        lo, hi = P + nb * block_length, P + (nb + 1) * block_length
        n = (x[:, lo:hi] == MASK).sum(1, keepdim=True)
        counts = (n // per_block).repeat(1, per_block)
        for j in range(B):
            counts[j, :int(n[j] % per_block)] += 1
        for i in range(per_block):
            mask_index = x == MASK
            logits = net(x, attn=Attention.bidirectional(keys))
            x0 = logits.argmax(-1)
            p = torch.gather(F.softmax(logits.double(), -1), -1, x0[..., None]).squeeze(-1)
            p[:, hi:] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, p, -torch.inf)
            for j in range(B):
                chosen = torch.topk(confidence[j], k=int(counts[j, i])).indices
                x[j, chosen] = x0[j, chosen]
    return x[:, P:].tolist()


def dream_sample_tokens(logits, top_p, top_k, alg):
    """Dream's sample_tokens at temperature 0: top-p then top-k filtering (the removed tokens
    at the dtype's minimum), softmax, the argmax and its probability, the top1 - top2 margin
    (topk_margin) or the negative entropy (entropy, log(p + 1e-10))."""
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        remove = torch.cumsum(F.softmax(sorted_logits, -1), -1) > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, order, remove),
                                    torch.finfo(logits.dtype).min)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]))[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)
    probs = torch.softmax(logits, -1)
    confidence, x0 = probs.max(-1)
    if alg == "topk_margin":
        top2 = torch.sort(probs, -1, descending=True)[0]
        confidence = top2[:, 0] - top2[:, 1]
    if alg == "entropy":
        confidence = torch.sum(probs * torch.log(probs + 1e-10), -1)
    return confidence, x0


class Tied(Exception):
    """Tied confidences at the cut of torch.topk, whose order among ties is unspecified."""


@torch.no_grad()
def dream_sample(net, input_ids, attention_mask, max_new_tokens, steps, alg, eps=1e-3,
                 top_p=None, top_k=None):
    """Dream's _sample at temperature 0 for alg maskgit_plus / topk_margin / entropy: one
    canvas, t on linspace(1, eps, steps + 1); step i commits int(m * (1 - s / t)) of the m
    masks (the batch's mean), all at the last step, the top confidences first (``Tied`` if
    two tie at the cut: torch.topk orders ties as it likes, dlm leftmost first). Left padding:
    ``tok_idx`` positions and a pairwise attention mask; logits shifted right by one."""
    B, P = input_ids.shape
    x = F.pad(input_ids, (0, max_new_tokens), value=MASK)
    tok_idx, keys = None, None
    if attention_mask is not None and bool((attention_mask == 0).any()):
        full = F.pad(attention_mask, (0, max_new_tokens), value=1)
        tok_idx = full.cumsum(-1) - 1
        tok_idx.masked_fill_(full == 0, 1)
        keys = full.bool()  # queries on padding see nothing there: only their own rows differ
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == MASK
        logits = net(x, attn=Attention.bidirectional(keys), positions=tok_idx)
        logits = torch.cat([logits[:, :1], logits[:, :-1]], 1)
        t, s = timesteps[i], timesteps[i + 1]
        confidence, x0 = dream_sample_tokens(logits[mask_index], top_p, top_k, alg)
        m = mask_index.sum() / mask_index.shape[0]
        k = int(m * (1 - s / t)) if i < steps - 1 else int(m)
        full_confidence = torch.full(x.shape, -torch.inf, dtype=logits.dtype)
        full_confidence[mask_index] = confidence
        if k > 0:
            top = torch.topk(full_confidence, min(k + 1, x.shape[1])).values
            if k < int(mask_index.sum(1).min()) and bool((top[:, k - 1] == top[:, k]).any()):
                raise Tied(f"step {i}: tied confidences at the cut")  # torch.topk's order
            chosen = torch.topk(full_confidence, k).indices
            x_ = torch.full_like(x, MASK)
            x_[mask_index] = x0
            rows = torch.arange(B)[:, None].expand_as(chosen)
            x[rows, chosen] = x_[rows, chosen]
    return x[:, P:].tolist()


# -- EOS: PAD = EOS must not ban the end of the text ------------------------------------------

def prefer_eos_from(n: int, prompt_length: int):
    """An on_logits hook making EOS by far the best token from the n-th generated slot on (an
    instruct model's answer of n tokens, padded with EOS), and words before it (the rows past
    the tokenizer's 48 tokens are never trained in a real checkpoint)."""
    def hook(step, logits, state):
        logits[..., 48:] = -1e4
        first = n - (state.start - prompt_length)  # the hook sees the block's logits
        logits[:, max(first, 0):, EOS] = 100.0
        return logits
    return hook


@pytest.mark.parametrize("arch", ["llada", "dream", "llada_moe", "llada2"])
def test_eos_is_written_where_the_model_puts_it_first(tmp_path, arch):
    model = checkpoint(tmp_path, arch)
    assert model.pad_id == model.eos_id == EOS
    out = model.generate("w1 w2 w3", steps=8, gen_length=8, temperature=0.0,
                         on_logits=prefer_eos_from(0, 3), stop_at_eos=False)
    assert out.tokens == [[EOS] * 8] and out.text == ""
    answer = model.generate("w1 w2 w3", gen_length=12, on_logits=prefer_eos_from(3, 3))
    assert len(answer.text.split()) == 3  # an answer padded with EOS ends


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("extra", [{}, {"block_length": 4}, {"beam_width": 2},
                                   {"num_samples": 2, "temperature": 0.7},
                                   {"threshold": 0.9, "remasking": "low_confidence"}])
def test_an_answer_padded_with_eos_ends(tmp_path, arch, extra):
    """An answer of 3 tokens then EOS padding ends after 3 tokens: its text is 3 words, in
    every decoding method (blocks, beam search, best-of-N, Fast-dLLM's threshold)."""
    model = checkpoint(tmp_path, arch)
    cfg = {"steps": 12, "gen_length": 12, "temperature": 0.0, **extra}
    out = model.generate("w1 w2 w3", on_logits=prefer_eos_from(3, 3), **cfg)
    assert out.tokens[0][3:] == [EOS] * 9 and EOS not in out.tokens[0][:3]
    assert len(out.text.split()) == 3


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_a_bounded_infill_span_ends_at_eos(tmp_path, arch):
    model = checkpoint(tmp_path, arch)

    def eos_after_two(step, logits, state):  # the span's slots are the block's first 5
        logits[..., 48:] = -1e4
        logits[:, 2:5, EOS] = 100.0
        return logits

    out = model.infill("w1 w2 [MASK:<=5] w7 w8", steps=5, on_logits=eos_after_two)
    assert len(out.fillings[0].split()) == 2
    assert out.text.split()[:2] == ["w1", "w2"] and out.text.split()[-2:] == ["w7", "w8"]
    exact = model.infill("w1 w2 [MASK:5] w7", steps=5, on_logits=eos_after_two)
    assert len(exact.fillings[0].split()) == 5  # an exact span never takes EOS


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_lm_eval_greedy_check_accepts_a_continuation_that_ends(tmp_path, arch):
    """lm-eval's is_greedy (LLaDA's check: one token per step, the most confident first) on a
    continuation holding EOS: the model's own greedy answer, which ends."""
    model = checkpoint(tmp_path, arch, eos_bias=1.5)
    ctx = model.tokenizer.encode("w1 w2 w3")
    answer = model.generate_ids([ctx], steps=6, gen_length=6, temperature=0.0,
                                remasking="low_confidence", transfer="even").tokens[0]
    assert EOS in answer
    assert model.greedy_ids([(ctx, answer)]) == [True]


def test_pad_is_still_banned_where_it_is_a_token_of_its_own():
    from dlm.sample.strategies import unwritable

    assert unwritable(MASK, EOS, EOS) == [MASK]
    assert unwritable(MASK, 47, EOS) == [MASK, 47]


# -- token for token -------------------------------------------------------------------------

LLADA_CASES = [(8, 8, 8), (12, 12, 4), (8, 16, 4), (16, 16, 8)]  # steps, gen_length, block


@pytest.mark.parametrize("eos_bias", [0.0, 1.5])
@pytest.mark.parametrize("steps,gen_length,block_length", LLADA_CASES)
def test_llada_greedy_equals_llada_generate_batched_and_ragged(tmp_path, steps, gen_length,
                                                               block_length, eos_bias):
    model = checkpoint(tmp_path, "llada", eos_bias)
    prompts = [[3, 17, 8, 40, 2], [5, 9], [11, 20, 6]]
    ids, attention_mask = left_padded(prompts)
    ref = llada_generate(model.network, ids, attention_mask, steps, gen_length, block_length)
    assert all(MASK not in r for r in ref)
    if eos_bias:
        assert any(EOS in r for r in ref)  # answers that end: EOS is compared too
    kw = dict(steps=steps, gen_length=gen_length, block_length=block_length,
              temperature=0.0, remasking="low_confidence")
    assert model.generate_ids(prompts, **kw).tokens == ref
    for p, r in zip(prompts, ref):  # each row alone, as in the batch
        assert model.generate_ids([p], **kw).tokens == [r]


DREAM_CASES = [  # alg, steps, max_new_tokens, top_p, top_k
    ("maskgit_plus", 8, 8, None, None), ("maskgit_plus", 5, 12, None, None),
    ("topk_margin", 6, 10, None, None), ("entropy", 8, 8, None, None),
    ("entropy", 4, 12, None, None), ("maskgit_plus", 6, 12, None, 5)]
# a nucleus of one token gives confidence 1.0: EOS-heavy answers would tie (see ``Tied``)
NUCLEUS = [("maskgit_plus", 6, 12, 0.95, None), ("entropy", 6, 12, 0.9, 8)]


@pytest.mark.parametrize("alg,steps,max_new,top_p,top_k,eos_bias",
                         [(*c, b) for c in DREAM_CASES for b in (0.0, 1.5)]
                         + [(*c, 0.0) for c in NUCLEUS])
def test_dream_greedy_equals_dreams_sample_batched_and_ragged(tmp_path, alg, steps, max_new,
                                                              top_p, top_k, eos_bias):
    model = checkpoint(tmp_path, "dream", eos_bias)
    prompts = [[3, 17, 8, 40, 2], [5, 9], [11, 20, 6]]
    ids, attention_mask = left_padded(prompts)
    ref = dream_sample(model.network, ids, attention_mask, max_new, steps, alg, top_p=top_p,
                       top_k=top_k)
    assert all(MASK not in r for r in ref)
    if eos_bias:
        assert any(EOS in r for r in ref)
    remasking = {"maskgit_plus": "low_confidence", "topk_margin": "margin"}.get(alg, alg)
    kw = dict(steps=steps, gen_length=max_new, temperature=0.0, remasking=remasking,
              top_p=top_p, top_k=top_k)
    out = model.generate_ids(prompts, **kw)
    assert out.config.transfer == "dream" and out.config.eps == 1e-3  # the checkpoint's rule
    assert out.tokens == ref
    for p, r in zip(prompts, ref):
        assert model.generate_ids([p], **kw).tokens == [r]
    one, _ = left_padded(prompts[:1])  # unpadded: Dream's "full" attention, no tok_idx
    assert dream_sample(model.network, one, None, max_new, steps, alg, top_p=top_p,
                        top_k=top_k) == ref[:1]


def test_dreams_schedule_commits_nothing_at_first_when_steps_equal_the_masks():
    """Dream's rule at 512 masks / 512 steps: int(512 * (1 - s/t)) = 0 at the first step; the
    counts then follow its float32 arithmetic, and the last step takes what is left."""
    times = torch.linspace(1, 1e-3, 513)
    left, want = torch.tensor(512.0), []
    for i in range(512):
        m = left
        k = int(m * (1 - times[i + 1] / times[i])) if i < 511 else int(m)
        left = left - k
        want.append(int(left))
    got = masked_targets(torch.ones(1, 512, dtype=torch.bool), 512, "dream", 1e-3)[0].tolist()
    assert got == want and want[0] == 512 and want[-1] == 0
    assert masked_targets(torch.ones(1, 12, dtype=torch.bool), 4, "dream", 0.5)[0].tolist() \
        == [11, 10, 9, 0]


def test_a_shifted_models_first_slot_is_never_asked_for(tmp_path):
    """Dream reads slot i from slot i - 1: no likelihood without a context, and edit never
    re-masks the first token (nothing predicts it)."""
    from dlm.errors import DLMError

    model = checkpoint(tmp_path, "dream")
    with pytest.raises(DLMError, match="needs a context"):
        model.loglikelihood_ids([([], [3, 4])])
    for k in range(6):
        text = " ".join(f"w{(7 * k + 3 * i) % 40}" for i in range(6))
        out = model.edit(text, budget=2)
        assert 0 not in out.remasked[0] and len(out.remasked[0]) == 2
