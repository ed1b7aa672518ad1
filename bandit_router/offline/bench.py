"""Benchmark: Route latency and throughput through a real gRPC server, against the embedding alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.config import load_config
from bandit_router.embedding.batcher import BatchingEmbedder
from bandit_router.embedding.model import Embedder
from bandit_router.embedding.pool import EmbedderPool, available_cpus
from bandit_router.embedding.types import TextEmbedder
from bandit_router.runtime.workers import start_embedding_servers

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


@dataclasses.dataclass(frozen=True)
class Timed:
    """One load process's calls at one level: each call's latency (s) and when the calls began and ended."""

    latencies: list[float]
    start: float
    end: float


async def _timed(calls: list[Callable[[str], Awaitable[Any]]], texts: list[str], concurrency: int) -> Timed:
    """Runs every text through ``concurrency`` callers, caller k through ``calls[k % len(calls)]``."""
    latencies: list[float] = []
    pending = iter(texts)

    async def caller(call: Callable[[str], Awaitable[Any]]) -> None:
        for text in pending:
            began = time.perf_counter()
            await call(text)
            latencies.append(time.perf_counter() - began)

    start = time.monotonic()
    await asyncio.gather(*(caller(calls[k % len(calls)]) for k in range(concurrency)))
    return Timed(latencies, start, time.monotonic())


def summarize(parts: Sequence[Timed]) -> dict[str, float]:
    """Latency percentiles over all parts' calls, and calls per second from the first start to the last end.

    The parts ran at the same time in separate processes; CLOCK_MONOTONIC is one clock for all of them.
    """
    latencies = sorted(latency for part in parts for latency in part.latencies)
    if not latencies:
        raise ValueError("summarize needs at least one timed call")
    ran = [part for part in parts if part.latencies]
    elapsed = max(part.end for part in ran) - min(part.start for part in ran)
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "per_s": len(latencies) / elapsed,
    }


def split(count: int, parts: int, index: int) -> int:
    """Part ``index``'s share when ``count`` is split as evenly as it goes into ``parts``."""
    return count // parts + (index < count % parts)


async def _load(setup: dict[str, Any]) -> None:
    """What a load process runs: builds its callers, warms them, then runs one level per line of stdin."""
    from bandit_router.v1 import router_pb2 as pb
    from bandit_router.v1 import router_pb2_grpc

    joules: list[float] = []
    channels: list[grpc.aio.Channel] = []
    batcher: BatchingEmbedder | None = None
    embedder: TextEmbedder | None = None
    facts: dict[str, Any] = {}
    if setup["mode"] == "route":
        # A local subchannel pool gives each channel its own connection: gRPC would otherwise share one
        # between channels to the same target, and SO_REUSEPORT spreads connections, not calls, over workers.
        channels = [
            grpc.aio.insecure_channel(setup["target"], options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(setup["channels"])
        ]

        def route_with(stub: Any) -> Callable[[str], Awaitable[None]]:
            async def route(text: str) -> None:
                decision = await stub.Route(pb.RouteRequest(query=text))
                joules.append(decision.estimated_energy_joules)

            return route

        calls: list[Callable[[str], Awaitable[Any]]] = [
            route_with(router_pb2_grpc.RouterStub(channel)) for channel in channels
        ]
    else:
        config = dataclasses.replace(
            load_config().embedding, device=setup["device"], shared_dir=setup.get("shared_dir", "")
        )
        embedder = Embedder(config) if setup["mode"] == "thread" else EmbedderPool(config)
        batcher = BatchingEmbedder(embedder, config, lanes=embedder.lanes)
        facts = {"device": embedder.device, "model": embedder.model_name}
        calls = [batcher.embed]
    await _timed(calls, queries(max(64, 2 * len(calls)), seed=1), len(calls))
    _answer({"ready": True, **facts})
    while line := await asyncio.to_thread(sys.stdin.readline):
        level = json.loads(line)
        if level["concurrency"]:
            part = await _timed(calls, level["texts"], level["concurrency"])
        else:
            part = Timed([], 0.0, 0.0)
        _answer({**dataclasses.asdict(part), "joules": joules})
        joules.clear()
    for channel in channels:
        await channel.close()
    if batcher is not None and embedder is not None:
        await batcher.close()
        embedder.close()


_answers = sys.stdout


def _answer(message: dict[str, Any]) -> None:
    _answers.write(json.dumps(message) + "\n")
    _answers.flush()


def _load_main() -> None:
    global _answers
    # Answers go out on the original stdout; anything a library prints lands on stderr instead.
    _answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_load(json.loads(sys.stdin.readline())))


class LoadProcesses:
    """Load generators in their own processes, so that the load is not capped by one Python process.

    Each one gets its share of every level's texts and callers; all start a level together.
    """

    def __init__(self, setups: list[dict[str, Any]]) -> None:
        command = [sys.executable, "-c", "from bandit_router.offline.bench import _load_main; _load_main()"]
        self.processes = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in setups
        ]
        for process, setup in zip(self.processes, setups, strict=True):
            self._send(process, setup)

    async def ready(self) -> list[dict[str, Any]]:
        return [await self._receive(process) for process in self.processes]

    async def level(self, texts: list[str], concurrency: int) -> tuple[list[Timed], list[float]]:
        count = len(self.processes)
        for i, process in enumerate(self.processes):
            self._send(process, {"texts": texts[i::count], "concurrency": split(concurrency, count, i)})
        answers = [await self._receive(process) for process in self.processes]
        parts = [Timed(a["latencies"], a["start"], a["end"]) for a in answers]
        return parts, [j for a in answers for j in a["joules"]]

    def close(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            if process.wait(timeout=120) != 0:
                raise RuntimeError(f"a load process exited with {process.returncode}")

    @staticmethod
    def _send(process: subprocess.Popen[str], message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()

    @staticmethod
    async def _receive(process: subprocess.Popen[str]) -> dict[str, Any]:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        if not line:
            raise RuntimeError(f"a load process exited with {process.wait()} before answering")
        answer: dict[str, Any] = json.loads(line)
        return answer


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


def _progress(what: str, level: int, figures: dict[str, float]) -> dict[str, float]:
    """Prints one measurement as soon as it is taken (to stderr), so a run cut short still leaves its figures."""
    print(
        f"  {what} at concurrency {level}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
        f"{figures['per_s']:.1f}/s",
        file=sys.stderr,
        flush=True,
    )
    return figures


async def _wait_workers(log_path: Path, workers: int, timeout: float) -> None:
    """Waits until every routing worker has logged that it serves: a late one would get no connections."""
    deadline = time.monotonic() + timeout
    while log_path.read_text().count("bandit-router serving on") < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {workers} routing workers were serving after {timeout} s")
        await asyncio.sleep(0.2)


async def learner_throughput(events: int = 5000) -> dict[str, float]:
    """Rewards learned per second by the real learner from a real Redis stream: ``events`` learning events
    (realistic feature lines, 8 actions) appended first, then timed from the learner's start until its
    snapshot covers them all (snapshots and acknowledgements included)."""
    import redis.asyncio as aioredis

    from bandit_router.domain.records import LearningEvent
    from bandit_router.learning.learner import Learner
    from bandit_router.policy.features import Complexity, Context, action_line
    from bandit_router.policy.vw import Policy
    from bandit_router.store.embedded import start_embedded
    from bandit_router.store.redis_store import Store
    from bandit_router.store.snapshots import SnapshotFiles

    config = load_config()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="br-bench-learner-") as data_dir:
        redis = await start_embedded(Path(data_dir) / "redis")
        client = aioredis.Redis.from_url(redis.url)
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
                    " ".join(f"p{j}:{rng.uniform(-1, 1):.4f}" for j in range(16)),
                )
                index = rng.randrange(len(actions))
                quality = rng.random()
                event = {
                    "decision_id": f"bench-{i}",
                    "pmf": [[m.id, 1 / len(actions)] for m in config.models],
                    "created_at": 0.0,
                    "energy_weight": 0.1,
                    "cost_weight": 0.1,
                    "shared": context.line(config.features.context),
                    "actions": actions,
                    "penalties": [0.01 * j for j in range(len(actions))],
                    "index": index,
                    "probability": 1 / len(actions),
                    "quality": quality,
                    "reward": quality - 0.01 * index,
                    "task": context.task,
                    "model": config.models[index].id,
                    "cost_usd": 1e-4,
                    "catalog_cost_usd": 9e-5,
                    "energy_joules": 20.0,
                    "catalog_energy_joules": 18.0,
                    "output_tokens": 120,
                    "output_tokens_reported": True,
                    "latency_ms": 0.0,
                }
                pipe.xadd(store.events_key, {"event": LearningEvent.from_json(event).dumps()})
            await pipe.execute()

        def rebuild(snapshot: Any) -> Policy:
            return Policy(config.policy, config.features, 384, snapshot)

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


async def run_bench(
    levels: list[int],
    requests: int,
    device: str,
    json_path: str | None,
    workers: int = 1,
    clients: int = 1,
) -> dict[str, Any]:
    """Route through ``serve --workers workers`` from ``clients`` load processes, then the embedding alone.

    The embedding alone runs in as many processes as the router has workers, each with its share of the
    concurrency, so it is held to the same arrangement of processes as the router.
    """
    from bandit_router.v1 import router_pb2 as pb
    from bandit_router.v1 import router_pb2_grpc

    texts = queries(requests)
    results: dict[str, Any] = {"requests_per_level": requests, "workers": workers, "clients": clients, "levels": {}}
    # One connection per client process suffices for one worker; several workers need several per worker
    # for SO_REUSEPORT's hash to spread them.
    channels = 1 if workers == 1 else max(1, -(-4 * workers // clients))
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
        command = [sys.executable, "-m", "bandit_router", "serve", "--workers", str(workers)]
        with open(log_path, "w") as log:
            server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        load = None
        try:
            await wait_serving(target, timeout=120)
            await _wait_workers(log_path, workers, timeout=300)
            setup = {"mode": "route", "target": target, "channels": channels}
            load = LoadProcesses([setup] * clients)
            await load.ready()
            inference_joules: list[float] = []
            for level in levels:
                parts, joules = await load.level(texts, level)
                results["levels"].setdefault(str(level), {})["route"] = _progress("Route", level, summarize(parts))
                inference_joules += joules
            async with grpc.aio.insecure_channel(target) as channel:
                stats = await router_pb2_grpc.RouterStub(channel).GetStats(pb.GetStatsRequest())
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
            if load is not None:
                load.close()
            server.terminate()
            server.wait(timeout=60)

    # The embedding alone, through the same batching at the same concurrency, with the embedding settings
    # the server read (file and environment) on the same device, in each arrangement there is: the model on
    # a thread of the load process, worker processes of its own, and (with several workers) the shared
    # embedding servers the router's workers use. Each figure of the ceiling is the best of them, so the
    # router is held to the best the embedding alone can do.
    config = dataclasses.replace(load_config().embedding, device=device)
    arrangements = ["thread"] + (["processes"] if config.processes else [])
    arrangements += ["shared"] if config.processes and config.shared and workers > 1 else []
    names = {
        "thread": "thread",
        "processes": f"{config.processes} processes",
        "shared": f"{config.processes} shared servers",
    }
    for arrangement in arrangements:
        with tempfile.TemporaryDirectory(prefix="br-embed-") as shared_dir:
            shared = start_embedding_servers(config, shared_dir) if arrangement == "shared" else []
            setup = {"mode": arrangement, "device": device, "shared_dir": shared_dir if shared else ""}
            load = LoadProcesses([setup] * workers)
            facts = (await load.ready())[0]
            results["device"], results["embedding_model"] = facts["device"], facts["model"]
            for level in levels:
                parts, _ = await load.level(texts, level)
                figures = _progress(f"embedding alone on {names[arrangement]}", level, summarize(parts))
                results["levels"][str(level)][f"embedding ({names[arrangement]})"] = figures
            load.close()
            for embedding_server in shared:
                embedding_server.close()
    for figures in results["levels"].values():
        alone = [f for key, f in figures.items() if key.startswith("embedding (")]
        figures["embedding"] = {
            "p50_ms": min(f["p50_ms"] for f in alone),
            "p99_ms": min(f["p99_ms"] for f in alone),
            "per_s": max(f["per_s"] for f in alone),
        }

    per_worker = "" if workers == 1 else " in each of as many processes as the router has workers"
    print(
        f"bandit-router bench: {requests} Route calls per level from {clients} load process(es) over {channels} "
        f"connection(s) each, to {workers} routing worker(s); embedding on {results['device']}, "
        f"{available_cpus()} CPUs; the embedding alone is the best of: "
        f"{', '.join(names[a] for a in arrangements)}{per_worker}"
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
    for arrangement in arrangements:
        key = f"embedding ({names[arrangement]})"
        row = ", ".join(
            f"{level}: {f[key]['p50_ms']:.2f}ms {f[key]['per_s']:.1f}/s" for level, f in results["levels"].items()
        )
        print(f"  embedding alone on {names[arrangement]}: {row}")
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
