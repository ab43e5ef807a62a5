"""The engine's structure (docs/architecture.md): no import cycles, even ones dodged by an
import inside a function or under TYPE_CHECKING; no code outside ``dlm/kinds`` names a model
kind; and a kind added in a test file, with no edit elsewhere, trains, evaluates, loads and
samples (generate, infill, likelihood; a task it refuses is refused in its own words)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

import dlm
from dlm import kinds
from dlm.diffusion.likelihood import masked_nelbo
from dlm.diffusion.objectives import LossOutput
from dlm.kinds import Kind
from dlm.models.transformer import Attention
from tests.conftest import train_tiny

SRC = Path(dlm.__file__).parent
KIND_FILES = SRC / "kinds"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every dlm module -> the dlm modules it imports anywhere in its body (top level, inside
    functions, under TYPE_CHECKING)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        out = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # "from . import kinds": the submodule
                    sub = f"{target}.{alias.name}"
                    out.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
        graph[name] = {m for m in out if m in modules and m != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None. A module also imports its package's __init__ (Python runs
    it first), so package inits count as nodes of their own."""
    edges = {m: set(t) | ({m.rsplit(".", 1)[0]} if "." in m and m.rsplit(".", 1)[0] in graph
                          and m != "dlm" else set()) for m, t in graph.items()}
    for m in edges:  # a package's own __init__ importing its children is not a cycle
        edges[m] = {t for t in edges[m] if not t.startswith(m + ".") or m == t}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles_even_through_function_level_imports():
    graph = imports()
    assert "dlm.kinds" in graph and "dlm.models.loading" in graph  # the graph is real
    assert cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # and the check finds one
    assert cycle(graph) is None


def test_no_code_outside_the_kind_files_names_a_kind():
    """No string literal equal to a kind's name outside dlm/kinds (comparisons, tables,
    defaults), and the plain grep of the issue finds nothing either."""
    names = set(kinds.names())
    found = []
    for path in SRC.rglob("*.py"):
        if KIND_FILES in path.parents:
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(r"""["'](ar|mdlm|bd3lm)["']""", line):
                found.append(f"{path.relative_to(SRC)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


# --- a toy kind, defined here and nowhere else ------------------------------------------------


class HalfMaskLoss:
    """Masks a random half of every row (t = 1/2 always, weight 2): a crude masked diffusion."""

    def __init__(self, mask_id: int):
        self.mask_id = mask_id

    def draw(self, n, seq_len, generator):
        return {"u": torch.rand((n, seq_len), generator=generator)}

    def __call__(self, network, x0, noise=None, generator=None, attn=None):
        u = noise["u"].to(x0.device) if noise else torch.rand(x0.shape, generator=generator)
        masked = u < 0.5
        logits = network(torch.where(masked, self.mask_id, x0), attn=attn)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
        loss = (2 * ce * masked).sum() / x0.numel()
        return LossOutput(loss, {"nelbo": loss.item()})


class HalfMask(Kind):
    name = "halfmask"
    help = "toy: half the tokens masked"
    refusals = {"edit": "{what}: the toy kind does not edit"}

    def attention(self, block_size=None):
        return Attention.bidirectional()

    def objective(self, cfg, mask_id):
        return HalfMaskLoss(mask_id)

    def heldout(self, network, chunks, *, mask_id, bos_id, t_samples, seed, batch_size,
                block_size, on_batch):
        return masked_nelbo(network, chunks, mask_id, t_samples, seed, batch_size,
                            on_batch=on_batch)


@pytest.fixture
def toy_kind():
    kind = kinds.register(HalfMask())
    yield kind
    kinds.unregister(kind.name)


def test_a_kind_defined_in_a_test_file_trains_evaluates_and_samples(toy_kind, tmp_path,
                                                                     small_corpus):
    result = train_tiny(tmp_path / "toy", small_corpus, kind="halfmask", max_steps=20)
    assert result.kind == "halfmask" and result.upper_bound and result.bits_per_byte > 0
    model = dlm.load(tmp_path / "toy", device="cpu")
    assert model.spec is toy_kind
    again = model.evaluate(eval_tokens=512, t_samples=2)
    assert again.kind == "halfmask" and again.n_tokens == 512
    out = model.generate("ROMEO:", gen_length=16, steps=8, trace=True)
    assert len(out.tokens[0]) == 16 and out.nfe == 8 and len(out.trace.steps) == 8
    assert out.config.steps == 8 and out.trace.kind == "halfmask"
    filled = model.infill("To be [MASK:4] not")
    assert filled.text.startswith("To be ") and filled.text.endswith(" not")
    with pytest.raises(dlm.DLMError, match="the toy kind does not edit"):
        model.edit("To be or not")
    assert isinstance(model.loglikelihood("To be", " or")[0], float)


def test_an_unknown_kind_is_a_clear_error(tmp_path):
    with pytest.raises(dlm.DLMError, match="unknown model kind 'nope'; choose from ar, mdlm"):
        kinds.get("nope")
