"""What a Redis failure means to the router: unreachable, refusing writes, or a cancellation in disguise."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Redis is unreachable (or the connection broke): an outage to wait out, never a bug.
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def refusing(exc: BaseException) -> bool:
    """Whether Redis is up but refuses writes for now: out of memory (maxmemory) or unable to save (MISCONF, as
    on a full disk). Both pass, so they are answered as an outage (UNAVAILABLE, retry), not as a bug."""
    text = str(exc)
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, aioredis.ResponseError) and ("MISCONF" in text or "OOM command not allowed" in text)
    )


def stop_if_cancelled(exc: BaseException | None = None) -> None:
    """Raises CancelledError if the running task was cancelled. redis-py can turn a cancellation that arrives
    during a command into a connection or timeout error, or swallow it while it tidies a connection up; a loop
    that retries those, or simply goes round again, would then never end, and close(), awaiting it, would hang
    (seen as a 300 s test timeout in a teardown, the sweep asleep in a task marked cancelling). Loops call this
    with the error they caught, and at the top of every turn."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
