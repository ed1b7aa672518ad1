"""Benchmark: what the gateway adds to a model call (p50/p99 latency, requests/s, time to first token), against
calling the same scripted OpenAI-compatible backend directly, each in its own process; per variant of the router
(``default``: conversation affinity on, tracing off; ``no-affinity``; ``tracing``: spans exported over OTLP/HTTP to
a sink on the backend; ``torch``, ``onnx``, ``static``: that embedding backend), one router process each, the direct
calls measured again beside each."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bandit_router.bench.load import Timed, free_port, queries, summarize
from bandit_router.config import load_config

ROUTER = "bandit-router"
# Each variant's settings, as environment overrides of the router's configuration ({traces}: the OTLP sink).
VARIANTS = {
    "default": {},
    "no-affinity": {"BANDIT_ROUTER_HTTP_AFFINITY": "false"},
    "tracing": {"BANDIT_ROUTER_TRACING_OTLP_ENDPOINT": "{traces}"},
    # The embedding backends side by side (embedding.backend; onnx needs the onnx extra).
    "torch": {"BANDIT_ROUTER_EMBEDDING_BACKEND": "torch"},
    "onnx": {"BANDIT_ROUTER_EMBEDDING_BACKEND": "onnx"},
    "static": {"BANDIT_ROUTER_EMBEDDING_BACKEND": "static"},
}


async def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Waits until ``url`` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode} before serving")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s")
            await asyncio.sleep(0.2)


def _catalog_toml(base_url: str) -> str:
    """Every shipped model behind the one scripted backend (its other keys as shipped)."""
    entries = [f'[[models]]\nid = "{m.id}"\nbase_url = "{base_url}"\n' for m in load_config(env={}).models]
    return "\n".join(entries)


async def _level(
    call: Callable[[aiohttp.ClientSession, str], Awaitable[float]], texts: list[str], concurrency: int
) -> dict[str, float]:
    """Every text through ``call`` with ``concurrency`` in flight; the latencies ``call`` measured."""
    latencies: list[float] = []
    pending = iter(texts)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for text in pending:
                latencies.append(await call(session, text))

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = time.monotonic()
    return summarize([Timed(latencies, start, end)])


def _chat(url: str, model: str, stream: bool) -> Callable[[aiohttp.ClientSession, str], Awaitable[float]]:
    """A chat completion call; it returns the time to the whole answer, or to the first streamed chunk."""

    async def call(session: aiohttp.ClientSession, text: str) -> float:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
        started = time.perf_counter()
        async with session.post(url + "/chat/completions", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}: {(await response.text())[:300]}")
            if not stream:
                await response.read()
                return time.perf_counter() - started
            first = None
            async for line in response.content:
                if first is None and line.startswith(b"data: {"):
                    first = time.perf_counter() - started
            assert first is not None, "the stream carried no chunk"
            return first

    return call


async def _measure(
    backend_url: str, gateway_url: str, levels: list[int], requests: int, results: dict[str, Any]
) -> None:
    texts = queries(requests, seed=7)
    await _level(_chat(gateway_url, ROUTER, False), texts[:20], 4)  # warm-up: the embedder, connections
    for level in levels:
        figures: dict[str, Any] = {}
        for name, url, model in (("direct", backend_url, "any-model"), ("gateway", gateway_url, ROUTER)):
            figures[name] = await _level(_chat(url, model, False), texts, level)
        figures["added_p50_ms"] = figures["gateway"]["p50_ms"] - figures["direct"]["p50_ms"]
        figures["added_p99_ms"] = figures["gateway"]["p99_ms"] - figures["direct"]["p99_ms"]
        results["levels"][str(level)] = figures
        print(
            f"  concurrency {level}: direct p50 {figures['direct']['p50_ms']:.1f} ms, "
            f"gateway p50 {figures['gateway']['p50_ms']:.1f} ms (+{figures['added_p50_ms']:.1f}), "
            f"p99 +{figures['added_p99_ms']:.1f} ms; {figures['direct']['per_s']:.0f}/s direct, "
            f"{figures['gateway']['per_s']:.0f}/s through the gateway",
            file=sys.stderr,
            flush=True,
        )
    ttft = {
        name: await _level(_chat(url, model, True), texts[:100], 1)
        for name, url, model in (("direct", backend_url, "any-model"), ("gateway", gateway_url, ROUTER))
    }
    results["first_token_c1"] = ttft
    print(
        f"  streamed, concurrency 1: time to first chunk p50 {ttft['direct']['p50_ms']:.1f} ms direct, "
        f"{ttft['gateway']['p50_ms']:.1f} ms through the gateway",
        file=sys.stderr,
    )


async def run_gateway_bench(
    levels: list[int],
    requests: int,
    backend_delay_ms: float,
    device: str,
    out: str | None,
    variants: tuple[str, ...] = ("default",),
) -> dict[str, Any]:
    """Starts a scripted backend, then a router serving the gateway (embedded defaults) per variant, and measures
    each against the backend direct."""
    results: dict[str, Any] = {
        "requests_per_level": requests,
        "backend_delay_ms": backend_delay_ms,
        "cpus": os.cpu_count(),
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="br-gateway-bench-") as folder:
        port = free_port()
        backend_url = f"http://127.0.0.1:{port}/v1"
        backend = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bandit_router.bench.backend",
                "--port",
                str(port),
                "--delay-ms",
                str(backend_delay_ms),
            ],
            stdout=subprocess.DEVNULL,
        )
        config_path = Path(folder) / "router.toml"
        config_path.write_text(_catalog_toml(backend_url))
        try:
            await _wait_http(backend_url + "/models", backend, timeout=30)
            for variant in variants:
                print(f"variant {variant}:", file=sys.stderr, flush=True)
                settings = {k: v.format(traces=backend_url + "/traces") for k, v in VARIANTS[variant].items()}
                measured: dict[str, Any] = {"levels": {}}
                await _with_router(
                    Path(folder) / variant, config_path, device, settings, backend_url, levels, requests, measured
                )
                results["variants"][variant] = measured
        finally:
            backend.terminate()
            backend.wait(timeout=60)
    if out:
        Path(out).write_text(json.dumps(results, indent=2))
    return results


async def _with_router(
    folder: Path,
    config_path: Path,
    device: str,
    settings: dict[str, str],
    backend_url: str,
    levels: list[int],
    requests: int,
    results: dict[str, Any],
) -> None:
    """A router process on ``settings`` for the time of one variant's measurement."""
    folder.mkdir(parents=True)
    http_port = free_port()
    env = {
        **os.environ,
        "BANDIT_ROUTER_SERVER_LISTEN": f"127.0.0.1:{free_port()}",
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(folder),
        "BANDIT_ROUTER_EMBEDDING_DEVICE": device,
        "BANDIT_ROUTER_DASHBOARD_LISTEN": "",
        "BANDIT_ROUTER_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        **settings,
    }
    log_path = folder / "server.log"
    with open(log_path, "w") as log:
        router = subprocess.Popen(
            [sys.executable, "-m", "bandit_router", "serve", "--config", str(config_path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        gateway_url = f"http://127.0.0.1:{http_port}/v1"
        await _wait_http(gateway_url + "/models", router, timeout=180)
        await _measure(backend_url, gateway_url, levels, requests, results)
    except Exception:
        print(log_path.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        router.terminate()
        router.wait(timeout=60)
