"""Redis with Sentinel, as users run it past one machine: the router finds the master through the Sentinels
(``redis+sentinel://``), and after a failover follows the new master; a reward acknowledged before the failover
stays learned once, and one retried across it is learned once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from helpers import make_config, reward_retried, routed
from redis_servers import redis_server

from bandit_router.embedding.model import Embedder
from bandit_router.store.embedded import redacted, sentinel_client
from bandit_router.v1 import router_pb2 as pb

SERVICE = "mymaster"


@dataclasses.dataclass(frozen=True)
class Watched:
    """A master, its replica and one Sentinel watching them (quorum 1): their ports, and the replica's process."""

    master: int
    replica: int
    watcher: int
    replica_pid: int


@pytest.fixture
async def sentinel(tmp_path: Path) -> AsyncIterator[Watched]:
    plain = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    conf = tmp_path / "sentinel" / "sentinel.conf"

    def watching(master: int) -> Callable[[int], list[str]]:
        def args(port: int) -> list[str]:
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n"
            )
            return [str(conf), "--sentinel"]

        return args

    async with (
        redis_server(tmp_path / "master", lambda port: ["--port", str(port), *plain]) as (_, master),
        redis_server(
            tmp_path / "replica", lambda port: ["--port", str(port), "--replicaof", "127.0.0.1", str(master), *plain]
        ) as (copy, replica),
        redis_server(conf.parent, watching(master)) as (_, watcher),
    ):
        await in_sync(replica)
        await known_replica(watcher)
        yield Watched(master, replica, watcher, copy.pid)


async def in_sync(replica: int, timeout: float = 60) -> None:
    """Waits until the replica has made its first sync with the master."""
    client = aioredis.Redis(port=replica, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while (await client.info("replication")).get("master_link_status") != "up":
            if time.monotonic() > deadline:
                pytest.fail(f"the replica on {replica} did not sync with its master within {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def known_replica(watcher: int, timeout: float = 60) -> None:
    """Waits until the Sentinel knows the replica as a healthy one (it learns of replicas from the master's INFO,
    polled every few seconds): before that a failover finds no replica to promote."""
    client = aioredis.Redis(port=watcher, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            replicas = await client.execute_command("SENTINEL", "replicas", SERVICE)
            flags = [r["flags"] for r in replicas]  # "slave" alone: known, connected, not down
            if "slave" in flags:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the Sentinel did not know a healthy replica within {timeout} s: {flags}")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def master_port(watcher: int) -> int:
    client = aioredis.Redis(port=watcher, decode_responses=True)
    try:
        _, port = await client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(port)
    finally:
        await client.aclose()


def gaps(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bandit_router.serving.rewards"]


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
    tmp_path: Path, sentinel: Watched, embedder: Embedder
) -> None:
    master, replica, watcher = sentinel.master, sentinel.replica, sentinel.watcher
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


async def test_with_wait_replicas_a_reward_is_on_the_replica_when_answered_or_the_gap_is_logged(
    tmp_path: Path, sentinel: Watched, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    replica, watcher = sentinel.replica, sentinel.watcher
    url = f"redis+sentinel://127.0.0.1:{watcher}/{SERVICE}"
    config = make_config(tmp_path / "data", url, redis={"wait_replicas": 1, "wait_timeout_ms": 300})
    caplog.set_level(logging.WARNING, "bandit_router.serving.rewards")
    copy = aioredis.Redis(port=replica)
    async with routed(config, embedder) as (stub, _):
        try:
            held = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
            await stub.Reward(pb.RewardRequest(decision_id=held.decision_id, quality=1.0))
            # Answered only once the replica held it: the replica already knows it was rewarded.
            assert await copy.exists(f"{config.redis.key_prefix}:rewarded:{held.decision_id}")
            assert not gaps(caplog)
            # A replica that cannot keep up (stopped): the reward stands on the master, and the gap is logged.
            os.kill(sentinel.replica_pid, signal.SIGSTOP)
            try:
                gap = await stub.Route(pb.RouteRequest(query="Name a prime number."))
                await stub.Reward(pb.RewardRequest(decision_id=gap.decision_id, quality=0.5))
            finally:
                os.kill(sentinel.replica_pid, signal.SIGCONT)
            (record,) = gaps(caplog)
            assert record.getMessage() == (
                f"reward of {gap.decision_id} held by 0 of 1 replicas after 300 ms (redis.wait_replicas): a "
                "failover now could lose it"
            )
        finally:
            await copy.aclose()
