"""SIGTERM: health goes NOT_SERVING, in-flight calls finish, the learner drains and snapshots, then exit 0."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import START_TIMEOUT_S, Routers, free_port, until, wait_serving
from redis.exceptions import TimeoutError as RedisTimeoutError
from routerprocess import load, start

from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.policy.vw import Snapshot


@pytest.mark.timeout(900)  # a router start is allowed helpers.START_TIMEOUT_S on a loaded machine
async def test_sigterm_drains_in_flight_calls_and_the_learner(tmp_path: Path, redis_url: str) -> None:
    target, prefix = f"127.0.0.1:{free_port()}", f"term{os.getpid()}"
    process = start(target, tmp_path, redis_url, prefix)
    statuses: list[int] = []
    acknowledged: list[str] = []
    try:
        await wait_serving(process, target, tmp_path / "server.log")

        async def watch() -> None:
            async with grpc.aio.insecure_channel(target) as channel:
                stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
                try:
                    async for reply in stream:
                        statuses.append(reply.status)
                except grpc.aio.AioRpcError:
                    pass  # the server closed the stream as it stopped

        watcher = asyncio.create_task(watch())
        traffic = asyncio.create_task(load(target, acknowledged, asyncio.Event(), workers=16))
        while len(acknowledged) < 200:
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
        await asyncio.wait_for(traffic, timeout=30)
        await asyncio.wait_for(watcher, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses, statuses
    # Every reward acknowledged before or during the shutdown is in the last snapshot, and none is left over.
    client = aioredis.Redis.from_url(redis_url)
    try:
        snapshot = Snapshot.decode(await client.get(f"{prefix}:snapshot"))
        assert await client.xlen(f"{prefix}:events") == 0
        pending = await client.xpending(f"{prefix}:events", "learner")
    finally:
        await client.aclose()
    assert snapshot.learned == len(acknowledged), (snapshot.learned, len(acknowledged))
    assert pending["pending"] == 0
    log = (tmp_path / "server.log").read_text()
    assert "stopping: draining in-flight calls and the learner" in log


@pytest.mark.parametrize("swallowed", [False, True], ids=["turned-into-a-redis-error", "swallowed"])
async def test_close_ends_a_sweep_whose_cancellation_came_back_as_a_redis_error(
    config: Config, embedder: Embedder, routers: Routers, swallowed: bool
) -> None:
    """redis-py can turn a cancellation during a command into a timeout error, or swallow it while it tidies a
    connection up; either way the sweep, which retries on Redis errors and otherwise goes round again, must end
    when close() cancels it (it looped, and a test teardown hung 300 s: once in CI with the error, once on a
    loaded machine asleep in a task marked cancelling)."""
    service = await routers(config.replace(reward={"expiry_sweep_s": 0.01}))
    entered = asyncio.Event()

    async def sweep_in_a_slow_redis_call() -> int:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                return 0
            raise RedisTimeoutError("Timeout reading from socket") from None
        return 0

    service.expiry.sweep = sweep_in_a_slow_redis_call  # type: ignore[method-assign]
    await asyncio.wait_for(entered.wait(), timeout=30)
    await asyncio.wait_for(service.close(), timeout=30)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_a_stop_signal_during_start_up_cancels_the_start_and_leaves_nothing(tmp_path: Path, seed: int) -> None:
    """SIGTERM at a seeded random point after the start began (the embedded Redis starting, the model loading):
    the start is cancelled rather than completed and then stopped, the process exits 0, and every process it
    started (the embedded Redis, embedding workers) is gone."""
    target = f"127.0.0.1:{free_port()}"
    # The torch backend with its worker processes: a start of seconds (the static default starts in a tenth of one,
    # too soon for a signal to land within it).
    process = start(target, tmp_path, "", f"early{seed}", BANDIT_ROUTER_EMBEDDING_BACKEND="torch")
    log = tmp_path / "server.log"
    started: set[int] = set()
    try:
        await until(lambda: "starting: connecting to Redis" in log.read_text(), START_TIMEOUT_S, "the start to begin")
        # The start takes seconds more (the model, the workers); the signal lands somewhere within them.
        deadline = asyncio.get_running_loop().time() + random.Random(seed).uniform(0.0, 2.0)
        while asyncio.get_running_loop().time() < deadline:
            started |= descendants(process.pid)
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 120)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "serving on" not in text and "stopped during start-up" in text, text[-3000:]
    await until(lambda: not any(alive(pid) for pid in started), 60, f"the processes it started ({started}) to exit")
