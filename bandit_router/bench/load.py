"""Load for the benchmarks: sample queries, and processes that call Route (or the embedding alone) at a concurrency."""

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
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.config import load_config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.batcher import BatchingEmbedder
from bandit_router.embedding.pool import EmbedderPool
from bandit_router.embedding.types import TextEmbedder

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
        embedder = load_embedder(config) if setup["mode"] == "thread" else EmbedderPool(config)
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
        command = [sys.executable, "-c", "from bandit_router.bench.load import _load_main; _load_main()"]
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
