"""Load test of ``dlm serve`` on loopback (run by hand, not by CI): N concurrent streaming
clients, bounded in count and time.

    python benchmarks/serve_load.py                      # the demo checkpoint, or a tiny one
    python benchmarks/serve_load.py runs/demo --levels 1 4 16 64 --requests 64 --soak 200

Starts ``dlm serve`` as a child process on 127.0.0.1 (a free port), then for each concurrency
level sends ``--requests`` streaming completions with that many in flight, and reports p50 /
p99 time to the first chunk and to the last, aggregate generated tokens per second, errors,
and the server's resident memory before and after. ``--soak N`` then opens N streams at once
(they queue beyond --max-concurrent) and checks that all end without error. The throughput
ratio of each level is against level 1 (one request at a time), measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tiny_checkpoint() -> str:
    """A random tiny mdlm (byte tokenizer) when no trained checkpoint is at hand."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tests.serve.conftest import write_checkpoint

    return str(write_checkpoint(Path(tempfile.mkdtemp()) / "tiny"))


async def one(client: httpx.AsyncClient, body: dict) -> dict:
    t0 = time.perf_counter()
    first = None
    tokens, error = 0, None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]["message"]
                    break
                if first is None and chunk.get("choices"):
                    first = time.perf_counter() - t0
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}"
    return {"first": first, "last": time.perf_counter() - t0, "tokens": tokens,
            "error": error}


async def level(base: str, concurrency: int, requests: int, body: dict, max_seconds: float
                ) -> dict:
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        queue = list(range(requests))
        results: list[dict] = []
        t0 = time.perf_counter()

        async def worker():
            while queue and time.perf_counter() - t0 < max_seconds:
                i = queue.pop()
                results.append(await one(client, {**body, "seed": i}))

        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    ok = [r for r in results if not r.get("error")]

    def pct(key, q):
        xs = sorted(r[key] for r in ok if r.get(key) is not None)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    return {"concurrency": concurrency, "requests": len(results),
            "errors": len(results) - len(ok), "wall_s": wall,
            "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
            "first_p50": pct("first", 0.5), "first_p99": pct("first", 0.99),
            "last_p50": pct("last", 0.5), "last_p99": pct("last", 0.99),
            "mean_last": statistics.mean(r["last"] for r in ok) if ok else float("nan")}


def forward_ceiling(ckpt: str, levels: list[int], width: int) -> dict[int, float]:
    """Rows per second of the bare network at each batch size over batch 1: what batching
    can buy at most on this machine (the server shares one forward per step)."""
    import torch

    import dlm

    net = dlm.load(ckpt, device="cpu").network
    x1 = torch.randint(0, 200, (1, width))

    def seconds(b: int, n: int = 30) -> float:
        x = x1.repeat(b, 1)
        with torch.no_grad():
            for _ in range(3):
                net(x, attn=net.default_attention)
            t = time.perf_counter()
            for _ in range(n):
                net(x, attn=net.default_attention)
        return (time.perf_counter() - t) / n

    one = seconds(1)
    return {b: b * one / seconds(b) for b in levels}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", help="default: runs/demo if trained, else a "
                    "random tiny model")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, default=64, help="requests per level")
    ap.add_argument("--soak", type=int, default=200, help="streams opened at once (0: skip)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--max-concurrent", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=300, help="per level")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the server "
                    "(0: its default)")
    args = ap.parse_args()
    ckpt = args.checkpoint or ("runs/demo" if Path("runs/demo/config.json").is_file()
                               else tiny_checkpoint())
    port = free_port()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, "-m", "dlm", "serve", ckpt, "--name", "m", "--port", str(port),
           "--max-concurrent", str(args.max_concurrent),
           "--max-queue", str(max(256, args.soak + 16)), "--timeout", "900"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print(server.stderr.read().decode()[-2000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
        body = {"model": "m", "prompt": "ROMEO:\n", "max_tokens": args.max_tokens,
                "steps": args.steps, "temperature": 0.8, "stream": True,
                "stream_options": {"include_usage": True}}
        asyncio.run(level(base, 1, 2, body, 60))  # warm-up
        rss0 = rss_mb(server.pid)
        print(f"checkpoint {ckpt}; {args.max_tokens} tokens, {args.steps} steps per request; "
              f"server RSS {rss0:.0f} MB")
        print(f"{'conc':>5} {'reqs':>5} {'err':>4} {'tok/s':>8} {'x1':>6} {'first p50':>10} "
              f"{'first p99':>10} {'last p50':>9} {'last p99':>9}")
        one_at_a_time = None
        for c in args.levels:
            r = asyncio.run(level(base, c, args.requests, body, args.max_seconds))
            one_at_a_time = one_at_a_time or (r["tokens_per_s"] if c == 1 else None)
            ratio = r["tokens_per_s"] / one_at_a_time if one_at_a_time else float("nan")
            print(f"{c:>5} {r['requests']:>5} {r['errors']:>4} {r['tokens_per_s']:>8.1f} "
                  f"{ratio:>6.2f} {r['first_p50']:>9.2f}s {r['first_p99']:>9.2f}s "
                  f"{r['last_p50']:>8.2f}s {r['last_p99']:>8.2f}s", flush=True)
        if args.soak:
            r = asyncio.run(level(base, args.soak, args.soak, body, args.max_seconds * 4))
            print(f"soak: {args.soak} concurrent streams, {r['requests']} ended, "
                  f"{r['errors']} errors, {r['tokens_per_s']:.1f} tok/s, last p99 "
                  f"{r['last_p99']:.1f}s")
        rss1 = rss_mb(server.pid)
        print(f"server RSS before {rss0:.0f} MB, after {rss1:.0f} MB")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    ceiling = forward_ceiling(ckpt, args.levels, args.max_tokens + 8)
    print("the bare forward's rows/s over batch 1 (the most batching can give): " +
          ", ".join(f"{b}: {r:.2f}x" for b, r in ceiling.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
