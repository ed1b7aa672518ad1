"""Redis with Sentinel, as users run it past one machine: the router finds the master through the Sentinels
(``redis+sentinel://``), and after a failover follows the new master; a reward acknowledged before the failover
stays learned once, and one retried across it is learned once."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from helpers import free_port, make_config, reward_retried, routed

from bandit_router.embedding.model import Embedder
from bandit_router.store.embedded import redacted, redis_executable, sentinel_client
from bandit_router.v1 import router_pb2 as pb

SERVICE = "mymaster"


@contextlib.contextmanager
def server(folder: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [redis_executable(), *args], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


async def answers(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    client = aioredis.Redis(port=port, socket_timeout=1)
    try:
        while True:
            try:
                await client.ping()
                return
            except (OSError, aioredis.ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server on {port} did not answer within {timeout} s")
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


@pytest.fixture
async def sentinel(tmp_path: Path) -> AsyncIterator[tuple[int, int, int]]:
    """A master, its replica and one Sentinel watching them (quorum 1): their ports."""
    master, replica, watcher = free_port(), free_port(), free_port()
    plain = ("--save", "", "--appendonly", "no", "--bind", "127.0.0.1")
    conf = tmp_path / "sentinel" / "sentinel.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        f"port {watcher}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n"
    )
    with (
        server(tmp_path / "master", "--port", str(master), *plain),
        server(tmp_path / "replica", "--port", str(replica), "--replicaof", "127.0.0.1", str(master), *plain),
        server(conf.parent, str(conf), "--sentinel"),
    ):
        for port in (master, replica, watcher):
            await answers(port)
        yield master, replica, watcher


async def master_port(watcher: int) -> int:
    client = aioredis.Redis(port=watcher, decode_responses=True)
    try:
        _, port = await client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(port)
    finally:
        await client.aclose()


def test_a_sentinel_url_is_read_and_its_password_never_shown() -> None:
    url = "redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2/main/2"
    client = sentinel_client(url)
    pool = client.connection_pool
    assert pool.service_name == "main" and pool.connection_kwargs["db"] == 2  # type: ignore[attr-defined]
    assert pool.connection_kwargs["password"] == "s3cret"  # type: ignore[attr-defined]
    hosts = [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in pool.sentinel_manager.sentinels
    ]  # type: ignore[attr-defined]
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert redacted(url) == "redis+sentinel://app:***@10.0.0.1:26379,10.0.0.2/main/2"
    for bad in ("redis+sentinel://h:1", "redis+sentinel://h:x/main", "redis+sentinel://h/main/a"):
        with pytest.raises(ValueError, match=r"redis\+sentinel://\[\[USER\]:PASSWORD@\]HOST"):
            sentinel_client(bad)


async def test_the_router_follows_a_failover_and_learns_every_reward_once(
    tmp_path: Path, sentinel: tuple[int, int, int], embedder: Embedder
) -> None:
    master, replica, watcher = sentinel
    url = f"redis+sentinel://127.0.0.1:{watcher}/{SERVICE}"
    config = make_config(tmp_path / "data", url, reward={"expiry_sweep_s": 0.2})
    async with routed(config, embedder) as (stub, service):
        rewarded = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
        await stub.Reward(pb.RewardRequest(decision_id=rewarded.decision_id, quality=1.0))
        pending = await stub.Route(pb.RouteRequest(query="Name a prime number."))
        old = aioredis.Redis(port=master)
        try:
            # Both reached the replica before the failover (a failover loses what had not).
            assert await old.execute_command("WAIT", 1, 10_000) == 1
        finally:
            await old.aclose()
        admin = aioredis.Redis(port=watcher)
        try:
            await admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
        finally:
            await admin.aclose()
        deadline = time.monotonic() + 60
        while await master_port(watcher) != replica:
            assert time.monotonic() < deadline, "the Sentinel did not promote the replica within 60 s"
            await asyncio.sleep(0.1)
        # The pending decision is rewarded on the new master; Route goes on as before.
        await reward_retried(stub, pending.decision_id, 0.5, timeout=60)
        after = await stub.Route(pb.RouteRequest(query="Write a haiku."))
        await reward_retried(stub, after.decision_id, 0.7, timeout=60)
        assert service.learner is not None
        await service.learner.wait_learned(3, timeout=60)
        assert service.learner.policy.learned == 3
        # The decision rewarded before the failover is still known as rewarded, on the new master.
        assert await service.store.was_rewarded(rewarded.decision_id)
