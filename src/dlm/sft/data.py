"""SFT rows -> token batches.

Rows come from a .jsonl file, one object per line, either ``{"messages": [{"role": ..., "content":
...}, ...]}`` (the last message is the assistant's answer; everything before it is the prompt)
or ``{"prompt": ..., "response": ...}``. The prompt is rendered with the tokenizer's chat template
when the checkpoint has one (Jinja, as transformers renders it, in a sandbox), else with dlm's
documented default::

    System: <content>            (if any)
    User: <content>
    Assistant: <content>          (earlier turns)
    User: <content>
    Assistant: <- the prompt ends here; the answer follows, then EOS

A batch is ``[B, 2, L]``: channel 0 the ids (prompt, answer, then EOS padding to L), channel 1
the role (0: prompt, 1: answer and its EOS padding). LLaDA's recipe: the prompt is never masked
and the EOS padding belongs to the answer (the model learns to end the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.corpora import iter_jsonl
from ..errors import DLMError

ROLES = ("system", "user", "assistant")


@dataclass
class Example:
    prompt: list[int]
    answer: list[int]  # without EOS (collate adds EOS padding)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a .jsonl file as messages lists; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"SFT data not found: {path}")
    rows = [to_messages(row, f"{path}:{n}") for n, row in iter_jsonl(path)]
    if not rows:
        raise DLMError(f"{path}: no rows")
    return rows


def to_messages(row, where: str) -> list[dict]:
    if isinstance(row, dict) and "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
                for m in msgs):
            raise DLMError(f"{where}: 'messages' must be a list of {{role, content}} with roles "
                           f"{', '.join(ROLES)}")
        if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
            raise DLMError(f"{where}: the last message must be the assistant's answer, after "
                           "a prompt")
        return msgs
    if isinstance(row, dict) and isinstance(row.get("prompt"), str) and \
            isinstance(row.get("response"), str):
        return [{"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["response"]}]
    raise DLMError(f"{where}: expected {{\"messages\": [...]}} or {{\"prompt\", \"response\"}}")


def default_template(messages: list[dict], add_generation_prompt: bool = True) -> str:
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    text = "".join(f"{names[m['role']]}: {m['content']}\n" for m in messages)
    return text + "Assistant: " if add_generation_prompt else text


def render_prompt(messages: list[dict], chat_template: str | None = None,
                  special: dict | None = None, add_generation_prompt: bool = True) -> str:
    """The prompt text for ``messages`` (the conversation before the answer); without
    ``add_generation_prompt`` the text ends with the last message (no assistant turn opened)."""
    if not chat_template:
        return default_template(messages, add_generation_prompt)
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        return env.from_string(chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **(special or {}))
    except TemplateError as e:
        raise DLMError(f"the chat template failed: {e}") from None


def encode_rows(rows: list[list[dict]], tokenizer, max_len: int, chat_template: str | None = None,
                bos_token: str = "") -> tuple[list[Example], int]:
    """Tokenized examples and how many rows were too long for ``max_len`` (prompt + answer +
    one EOS) and skipped. ``bos_token``: what the chat template's {{ bos_token }} writes (LLaDA
    starts its prompts with <|startoftext|>)."""
    special = {"bos_token": bos_token, "eos_token": tokenizer.eos_token}
    out, skipped = [], 0
    for msgs in rows:
        prompt = tokenizer.encode(render_prompt(msgs[:-1], chat_template, special))
        answer = tokenizer.encode(msgs[-1]["content"])
        if not prompt:
            raise DLMError("a row renders to an empty prompt")
        if len(prompt) + len(answer) + 1 > max_len:
            skipped += 1
            continue
        out.append(Example(prompt, answer))
    if not out:
        raise DLMError(f"every row is longer than the context ({max_len} tokens)")
    return out, skipped


def collate(examples: list[Example], eos_id: int, length: int | None = None) -> torch.Tensor:
    """[B, 2, L]: ids (prompt, answer, EOS up to L) and roles (0 prompt, 1 answer + EOS).
    L: ``length`` or the longest example + 1 (every answer ends with at least one EOS)."""
    need = max(len(e.prompt) + len(e.answer) + 1 for e in examples)
    length = length or need
    if length < need:
        raise DLMError(f"an example needs {need} tokens, more than {length}")
    batch = torch.full((len(examples), 2, length), eos_id, dtype=torch.long)
    batch[:, 1] = 1
    for i, e in enumerate(examples):
        n = len(e.prompt)
        batch[i, 0, :n] = torch.tensor(e.prompt)
        batch[i, 0, n:n + len(e.answer)] = torch.tensor(e.answer, dtype=torch.long)
        batch[i, 1, :n] = 0
    return batch
