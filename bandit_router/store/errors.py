"""What a Redis failure means to the router: unreachable, refusing writes, or a cancellation in disguise."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Redis is unreachable (or the connection broke): an outage to wait out, never a bug.
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


# Replies of a Redis that is up but refuses for now: out of memory (maxmemory), unable to save (as on a full
# disk), a replica (a failover promoted another, and this client has not followed yet), a replica cut off from
# its master, a cluster that is down or moving the key's slot, a blocking read ended by such a change.
_REFUSALS = ("OOM command not allowed", "MISCONF", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "UNBLOCKED")


def refusing(exc: BaseException) -> bool:
    """Whether Redis is up but refuses writes for now (see ``_REFUSALS``). Each passes, so it is answered as an
    outage (UNAVAILABLE, retry; Route keeps its decision in memory), not as a bug."""
    return isinstance(exc, (OutOfMemoryError, ReadOnlyError)) or (
        isinstance(exc, aioredis.ResponseError) and any(r in str(exc) for r in _REFUSALS)
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


def outage(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis unreachable or refusing for now: a condition to wait out, not a bug."""
    return isinstance(exc, REDIS_ERRORS) or refusing(exc)
