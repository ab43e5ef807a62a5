"""A real uvicorn on 127.0.0.1 (a free port) over tiny checkpoints written by the tests."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (make setup installs it)")

from dlm.data.tokenizer import byte_tokenizer  # noqa: E402
from dlm.pipeline import Model  # noqa: E402
from tests.conftest import tiny_net  # noqa: E402


def write_checkpoint(path: Path, kind: str = "mdlm", seed: int = 3, **kw) -> Path:
    tok = byte_tokenizer()
    net = tiny_net(vocab_size=tok.vocab_size, seed=seed, **{
        "max_seq_len": 96, "d_model": 16, "n_layers": 1, "n_heads": 2, **kw})
    config = {"kind": kind, "objective": {"schedule": "linear"}}
    if kind == "bd3lm":
        config["objective"]["block_size"] = 8
    Model(net, tok, config).save(path)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-ckpts")
    return {"tiny": write_checkpoint(root / "tiny"),
            "tiny-ar": write_checkpoint(root / "tiny-ar", "ar", seed=4),
            "tiny-bd3lm": write_checkpoint(root / "tiny-bd3lm", "bd3lm", seed=5),
            # slow enough per step that a test can hang up mid-decode
            "slow": write_checkpoint(root / "slow", d_model=192, n_layers=4, n_heads=4,
                                     max_seq_len=512)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app):
    """``app`` served by uvicorn on 127.0.0.1 in a thread; yields its base URL; stops it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_ready(base: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while httpx.get(base + "/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the server never became ready")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(checkpoints):
    """One server over the three tiny checkpoints; yields its base URL."""
    from dlm.serve import model_ids
    from dlm.serve.app import create_app

    app = create_app(load=lambda: model_ids([str(p) for p in checkpoints.values()],
                                            list(checkpoints), device="cpu"),
                     ping_seconds=0.5)
    with running(app) as base:
        wait_ready(base)
        yield base
