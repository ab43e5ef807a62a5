"""``dlm serve``: an OpenAI-compatible server that streams the denoising, batches requests
between steps, and hosts a live playground (docs/serving.md).

    from dlm.serve import serve
    serve(["runs/tiny"], port=8000)              # http://127.0.0.1:8000/ is the playground

FastAPI, uvicorn and prometheus_client are the ``serve`` extra (``pip install dlm[serve]``);
they are imported only here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from ..errors import DLMError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_ADAPTERS = 4  # every combination of them is a model id: 2 ** n ids


def need_extra():
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise DLMError(f"dlm serve needs the serve extra ({e.name} is missing): "
                       "pip install 'dlm[serve]'") from None


def model_ids(checkpoints: list[str], names: list[str] | None = None,
              adapters: list[tuple[str, float]] = (), device: str = "auto",
              dtype: str | None = None) -> dict:
    """Load each checkpoint (``adapters`` go on the first); every checkpoint is a model id,
    and so is each combination of its adapters: ``name`` is the base alone, ``name+a``,
    ``name+a+b``... the base with those adapters at their weights."""
    from ..pipeline import load
    from .engine import Served

    names = list(names or [])
    if len(names) > len(checkpoints):
        raise DLMError(f"{len(names)} --name for {len(checkpoints)} checkpoints")
    out: dict[str, Served] = {}
    for i, path in enumerate(checkpoints):
        model = load(path, device=device, dtype=dtype)
        if i == 0:
            for a_path, weight in adapters:
                model.add_adapter(a_path, weight)
        name = names[i] if i < len(names) else Path(path.rstrip("/")).name or "model"
        if name in out:
            raise DLMError(f"two models are named {name!r}: give --name for each")
        loaded = model.adapters
        if len(loaded) > MAX_ADAPTERS:
            raise DLMError(f"at most {MAX_ADAPTERS} adapters per model (got {len(loaded)})")
        out[name] = Served(name, model, {} if loaded else None)
        for k in range(1, len(loaded) + 1):
            for combo in itertools.combinations(loaded, k):
                sid = "+".join([name, *combo])
                out[sid] = Served(sid, model, {a: loaded[a] for a in combo})
    return out


def serve(checkpoints: list[str], *, names: list[str] | None = None,
          adapters: list[tuple[str, float]] = (), host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, max_concurrent: int = 16, max_queue: int = 64,
          rate_limit: float | None = None, limits=None, device: str = "auto",
          dtype: str | None = None, log_level: str = "info") -> None:
    """Run the server until interrupted. A non-loopback ``host`` needs an ``api_key``."""
    need_extra()
    import uvicorn

    from .app import create_app

    if host not in LOOPBACK and not api_key:
        raise DLMError(f"binding {host} exposes the server beyond this machine: give "
                       "--api-key KEY (or DLM_API_KEY), or bind 127.0.0.1")
    for path in checkpoints:
        if not path.startswith("hf:") and not Path(path).exists():
            raise DLMError(f"checkpoint not found: {path}")
    app = create_app(load=lambda: model_ids(checkpoints, names, adapters, device, dtype),
                     api_keys=[api_key] if api_key else None, limits=limits,
                     rate_limit=rate_limit, max_concurrent=max_concurrent,
                     max_queue=max_queue)
    shown = f"[{host}]" if ":" in host else host
    print(f"dlm serve: http://{shown}:{port}/ (playground), OpenAI API at "
          f"http://{shown}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
