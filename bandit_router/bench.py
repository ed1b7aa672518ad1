"""Benchmark: Route latency and throughput through a real gRPC server, against the embedding alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.config import load_config
from bandit_router.embedding import BatchingEmbedder, Embedder, EmbedderPool, TextEmbedder

TEMPLATES = (
    "What is {a} plus {b}?",
    "Write a short poem about {t}.",
    "Explain how {t} works to a ten-year-old, with an example.",
    "Which of the following best describes {t}? A) a place B) an idea C) a person D) a process",
    "Translate 'I would like to learn about {t}' into French.",
    "Summarize the history of {t} in three sentences, covering its origins, its golden age and today.",
)
TOPICS = ("the sea", "photosynthesis", "the Roman empire", "neural networks", "jazz", "volcanoes", "tax law")


def queries(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(TEMPLATES).format(a=rng.randint(1, 999), b=rng.randint(1, 999), t=rng.choice(TOPICS))
        for _ in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(call: Callable[[str], Awaitable[Any]], texts: list[str], concurrency: int) -> dict[str, float]:
    """Runs every text through ``call`` with ``concurrency`` workers; returns latency percentiles and throughput."""
    latencies: list[float] = []
    pending = iter(texts)

    async def worker() -> None:
        for text in pending:
            start = time.perf_counter()
            await call(text)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "per_s": len(latencies) / elapsed,
    }


async def wait_serving(target: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"router at {target} did not report SERVING within {timeout} s")
            await asyncio.sleep(0.2)


async def learner_throughput(events: int = 5000) -> dict[str, float]:
    """Rewards learned per second by the real learner from a real Redis stream: ``events`` learning events
    (realistic feature lines, 8 actions) appended first, then timed from the learner's start until its
    snapshot covers them all (snapshots and acknowledgements included)."""
    import redis.asyncio as aioredis

    from bandit_router.features import Complexity, Context, action_line
    from bandit_router.learner import Learner, SnapshotFiles
    from bandit_router.policy import Policy
    from bandit_router.redis_server import EmbeddedRedis
    from bandit_router.store import Store

    config = load_config()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="br-bench-learner-") as data_dir:
        redis = EmbeddedRedis(Path(data_dir) / "redis")
        client = aioredis.Redis.from_url(await asyncio.to_thread(redis.start))
        store = Store(client, "bench")
        actions = [action_line(m) for m in config.models]
        for chunk in range(0, events, 500):
            pipe = client.pipeline(transaction=False)
            for i in range(chunk, min(events, chunk + 500)):
                text = queries(1, seed=i)[0]
                context = Context(
                    f"task{i % 12}",
                    i % 32,
                    Complexity.of(text, len(text.split())),
                    0.1,
                    0.1,
                    " ".join(f"p{j}:{rng.uniform(-1, 1):.4f}" for j in range(16)),
                )
                index = rng.randrange(len(actions))
                event = {
                    "shared": context.shared_line(),
                    "actions": actions,
                    "index": index,
                    "probability": 1 / len(actions),
                    "reward": rng.random(),
                    "model": config.models[index].id,
                    "cost_usd": 1e-4,
                    "energy_joules": 20.0,
                    "latency_ms": 0.0,
                }
                pipe.xadd(store.events_key, {"event": json.dumps(event)})
            await pipe.execute()

        def rebuild(snapshot: Any) -> Policy:
            return Policy(config.policy.vw_args, config.features, 384, snapshot)

        learner = Learner(
            store,
            rebuild(None),
            config.policy,
            SnapshotFiles(Path(data_dir) / "snapshots", 2),
            publish=lambda policy: None,
            rebuild=rebuild,
            serving=rebuild(None),
        )
        start = time.perf_counter()
        learner.start()
        await learner.wait_learned(events, timeout=600)
        elapsed = time.perf_counter() - start
        await learner.stop()
        await client.aclose()
        await asyncio.to_thread(redis.stop)
    return {"events": events, "seconds": elapsed, "per_s": events / elapsed}


async def run_bench(levels: list[int], requests: int, device: str, json_path: str | None) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb
    from bandit_router.v1 import router_pb2_grpc

    texts = queries(requests)
    warmup = queries(64, seed=1)
    results: dict[str, Any] = {"requests_per_level": requests, "levels": {}}
    with tempfile.TemporaryDirectory(prefix="br-bench-") as data_dir:
        target = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "BANDIT_ROUTER_SERVER_LISTEN": target,
            "BANDIT_ROUTER_SERVER_DATA_DIR": data_dir,
            "BANDIT_ROUTER_EMBEDDING_DEVICE": device,
            "BANDIT_ROUTER_DASHBOARD_LISTEN": "127.0.0.1:0",
        }
        log_path = Path(data_dir) / "server.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "bandit_router", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            await wait_serving(target, timeout=120)
            async with grpc.aio.insecure_channel(target) as channel:
                stub = router_pb2_grpc.RouterStub(channel)

                inference_joules: list[float] = []

                async def route(text: str) -> None:
                    decision = await stub.Route(pb.RouteRequest(query=text))
                    inference_joules.append(decision.estimated_energy_joules)

                await _measure(route, warmup, 8)
                for level in levels:
                    results["levels"].setdefault(str(level), {})["route"] = await _measure(route, texts, level)
                stats = await stub.GetStats(pb.GetStatsRequest())
                results["router_energy"] = {
                    "queries_embedded": stats.queries_embedded,
                    "embedding_energy_joules": stats.embedding_energy_joules,
                    "source": pb.Source.Name(stats.embedding_energy_source),
                    "basis": stats.embedding_energy_basis,
                    "mean_estimated_inference_joules": statistics.fmean(inference_joules),
                }
        except Exception:
            print(log_path.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=60)

    # The embedding alone, in this process, through the same batching at the same concurrency, with the
    # embedding settings the server read (file and environment) on the same device, in two arrangements:
    # the model on a thread of this process, and the worker processes the router runs. Each figure of the
    # ceiling is the better of the two, so the router is held to the best the embedding alone can do.
    config = dataclasses.replace(load_config().embedding, device=device)
    arrangements: dict[str, Callable[[], TextEmbedder]] = {"thread": lambda: Embedder(config)}
    if config.processes:
        arrangements[f"{config.processes} processes"] = lambda: EmbedderPool(config)
    for name, build in arrangements.items():
        embedder = build()
        batcher = BatchingEmbedder(embedder, config, lanes=embedder.lanes)
        results["device"] = embedder.device
        results["embedding_model"] = embedder.model_name
        await _measure(batcher.embed, warmup, 8)
        for level in levels:
            results["levels"][str(level)][f"embedding ({name})"] = await _measure(batcher.embed, texts, level)
        await batcher.close()
        embedder.close()
    for figures in results["levels"].values():
        alone = [f for key, f in figures.items() if key.startswith("embedding (")]
        figures["embedding"] = {
            "p50_ms": min(f["p50_ms"] for f in alone),
            "p99_ms": min(f["p99_ms"] for f in alone),
            "per_s": max(f["per_s"] for f in alone),
        }

    print(
        f"bandit-router bench: {requests} Route calls per level, embedding on {results['device']}, "
        f"{os.cpu_count()} CPUs; the embedding alone is the best of: {', '.join(arrangements)}"
    )
    route_head = f"{'Route p50':>9} {'p99':>8} {'per s':>8}"
    embed_head = f"{'embed p50':>9} {'p99':>8} {'per s':>8}"
    print(f"{'concurrency':>11} | {route_head} | {embed_head} | {'p50 over':>8} {'tput ratio':>10}")
    for level, figures in results["levels"].items():
        r, e = figures["route"], figures["embedding"]
        figures["p50_overhead_ms"] = r["p50_ms"] - e["p50_ms"]
        figures["throughput_ratio"] = r["per_s"] / e["per_s"]
        print(
            f"{level:>11} | {r['p50_ms']:8.2f}ms {r['p99_ms']:6.2f}ms {r['per_s']:8.1f} | "
            f"{e['p50_ms']:8.2f}ms {e['p99_ms']:6.2f}ms {e['per_s']:8.1f} | "
            f"{figures['p50_overhead_ms']:6.2f}ms {figures['throughput_ratio']:10.2f}"
        )
    for name in arrangements:
        row = ", ".join(
            f"{level}: {f[f'embedding ({name})']['p50_ms']:.2f}ms {f[f'embedding ({name})']['per_s']:.1f}/s"
            for level, f in results["levels"].items()
        )
        print(f"  embedding alone on {name}: {row}")
    energy = results["router_energy"]
    if energy["source"] == "SOURCE_MEASURED" and energy["queries_embedded"]:
        per_query = energy["embedding_energy_joules"] / energy["queries_embedded"]
        inference = energy["mean_estimated_inference_joules"]
        energy["embedding_joules_per_query"] = per_query
        print(f"router's own embedding energy: {per_query:.4f} J per query, measured ({energy['basis']})")
        print(
            f"inference energy of the routed models: {inference:.1f} J per query, estimated from the catalog's "
            f"ML.ENERGY profiles; routing adds {100 * per_query / inference:.3f}% to it"
        )
    else:
        print(f"router's own embedding energy: {energy['basis']}")
    learning = await learner_throughput()
    results["learner"] = learning
    print(
        f"learner: {learning['per_s']:.0f} rewards learned per second ({learning['events']} events from a Redis "
        "stream, snapshots, quality gate and acknowledgements included)"
    )
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results
