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

import json
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


class Row(list):
    """A row's messages (a plain list of ``{role, content}``) that remembers where it was
    read (``file:line``), so later errors can name it."""

    where: str = ""

    def __init__(self, messages, where: str = ""):
        super().__init__(messages)
        self.where = where


def read_rows(path: str | Path) -> list[Row]:
    """The rows of a .jsonl file as messages lists; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"SFT data not found: {path}")
    rows = [Row(to_messages(row, f"{path}:{n}"), f"{path}:{n}") for n, row in iter_jsonl(path)]
    if not rows:
        raise DLMError(f"{path}: no rows")
    return rows


def _kind(value) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def to_messages(row, where: str) -> list[dict]:
    """One parsed .jsonl row -> its messages. Refused, naming ``where`` (file:line) and the
    field: a shape that is neither format, a field that is not a string, an empty prompt or
    answer (an empty answer would teach the model to stop at once)."""
    if isinstance(row, dict) and "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DLMError(f"{where}: 'messages' must be a non-empty list of {{role, content}} "
                           f"(got {_kind(msgs)})")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise DLMError(f"{where}: messages[{i}] must be {{role, content}} with role "
                               f"{', '.join(ROLES)} (got {_kind(m)})")
            if not isinstance(m.get("content"), str):
                raise DLMError(f"{where}: messages[{i}].content must be a string (got "
                               f"{_kind(m.get('content'))})")
            if not m["content"].strip() and m["role"] != "system":  # no system prompt: fine
                raise DLMError(f"{where}: messages[{i}] ({m['role']}) is empty")
        if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
            raise DLMError(f"{where}: the last message must be the assistant's answer, after "
                           "a prompt")
        return msgs
    if isinstance(row, dict) and ("prompt" in row or "response" in row):
        for name in ("prompt", "response"):
            if name not in row:
                raise DLMError(f"{where}: no {name!r} (a row is {{\"prompt\", \"response\"}} "
                               "or {\"messages\": [...]})")
            if not isinstance(row[name], str):
                raise DLMError(f"{where}: {name!r} must be a string (got {_kind(row[name])})")
            if not row[name].strip():
                raise DLMError(f"{where}: {name!r} is empty")
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
                bos_token: str = "", source: str | Path | None = None
                ) -> tuple[list[Example], int]:
    """Tokenized examples and how many rows were too long for ``max_len`` (prompt + answer +
    one EOS) and skipped. ``bos_token``: what the chat template's {{ bos_token }} writes (LLaDA
    starts its prompts with <|startoftext|>). Only when every row is too long is it an error,
    which gives the number of rows and the longest (and names ``source``, the file)."""
    special = {"bos_token": bos_token, "eos_token": tokenizer.eos_token}
    out, skipped, longest = [], 0, 0
    for msgs in rows:
        prompt = tokenizer.encode(render_prompt(msgs[:-1], chat_template, special))
        answer = tokenizer.encode(msgs[-1]["content"])
        if not prompt:
            where = getattr(msgs, "where", "")
            raise DLMError(f"{where + ': ' if where else ''}the row renders to an empty prompt")
        need = len(prompt) + len(answer) + 1
        if need > max_len:
            skipped += 1
            longest = max(longest, need)
            continue
        out.append(Example(prompt, answer))
    if not out:
        where = f"{source}: " if source else ""
        raise DLMError(f"{where}every row is longer than the context ({max_len} tokens): "
                       f"{skipped} row{'s' * (skipped != 1)}, the longest {longest} tokens "
                       "(prompt + answer + EOS); shorten them or fine-tune a model with a "
                       "longer context")
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
