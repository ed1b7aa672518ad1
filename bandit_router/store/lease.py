"""The learner's lease in Redis: one holder at a time, and a fencing token that every learner write checks."""

from __future__ import annotations

import dataclasses
from typing import Any

import redis.asyncio as aioredis

# Keeps the lease for its holder, or gives a free one a new token (the fence counter only grows, so a token is
# never handed out twice); 0 while another holds it. One script, so two learners cannot both take a free lease.
_HOLD = """
local held = redis.call('GET', KEYS[1])
if held then
  if held == ARGV[1] .. ' ' .. ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(ARGV[3])
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
"""

# Lets go of the lease only where it is still this holder's: a lapsed lease another learner took stays theirs.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# The check every fenced script opens with: KEYS[1] is the lease, ARGV[1] the writer's "name token". A learner
# whose lease lapsed (a pause, a partition) and was taken by another can then neither read events into the
# group, acknowledge, trim nor publish: whatever it learned meanwhile is the new holder's to learn.
FENCE_CHECK = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return redis.error_reply('FENCED lease held by ' .. tostring(holder)) end
"""


@dataclasses.dataclass(frozen=True)
class Fence:
    """A held lease: what fenced writes carry, and succeed with only while the lease still holds ``value``."""

    key: str
    name: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.name} {self.token}"


def fenced(exc: Exception) -> bool:
    """True for the error a fenced script answers a writer whose lease is gone."""
    return isinstance(exc, aioredis.ResponseError) and str(exc).startswith("FENCED")


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Lease:
    """The learner's lease under ``prefix``: ``hold`` takes or keeps it, ``release`` lets it go.

    A lease lapses ``ttl_s`` after its holder's last ``hold``; a learner that cannot renew in time (paused,
    partitioned) loses it to a standby, and the token it held stops working for every fenced write.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:learner"
        self.counter_key = f"{prefix}:learner-fence"
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    async def hold(self, name: str, ttl_s: float, held: Fence | None = None) -> Fence | None:
        """The lease for ``name``: ``held`` renewed while it is still ``name``'s, else a new token if the lease
        is free; None while another holds it."""
        token = int(
            await self._hold(
                keys=[self.key, self.counter_key],
                args=[name, max(1, int(ttl_s * 1000)), held.token if held is not None else -1],
            )
        )
        return Fence(self.key, name, token) if token > 0 else None

    async def release(self, fence: Fence) -> None:
        await self._release(keys=[self.key], args=[fence.value])

    async def holder(self) -> str | None:
        """The name of the lease's holder, while its lease has not lapsed."""
        raw = await self.client.get(self.key)
        return None if raw is None else _text(raw).rsplit(" ", 1)[0]
