"""Where a decision's keys live: with ``redis.shards`` > 1, one of that many hash tags chosen by its id, each shard
with its own reward stream and expiry set, so that a Redis Cluster spreads a deployment's decisions over its nodes.

With one shard (the default) the keys are the prefix's own, as they always were.
"""

from __future__ import annotations

import dataclasses
import zlib

# Sets a shard's copy of the learner's lease, unless it holds a newer token: the learner that takes the lease
# installs it on every shard before it reads any, and a learner whose lease lapsed can then neither read nor
# acknowledge there (a shard's scripts cannot check the lease itself, which lives in another slot).
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  local token = tonumber(string.match(current, ' (%d+)$'))
  if token and token > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def shard_prefix(prefix: str, index: int, shards: int) -> str:
    """The key prefix of shard ``index``: the prefix itself with one shard; else a hash tag of its own (inside the
    prefix's braces where it has them, so that a Cluster puts each shard in its own slot).

    >>> shard_prefix("br", 0, 1), shard_prefix("br", 2, 4), shard_prefix("{br}", 2, 4), shard_prefix("{br}:x", 1, 2)
    ('br', '{br.2}', '{br.2}', '{br.1}:x')
    """
    if shards == 1:
        return prefix
    if prefix.startswith("{") and "}" in prefix:
        close = prefix.index("}")
        return f"{prefix[:close]}.{index}{prefix[close:]}"
    return f"{{{prefix}.{index}}}"


def shard_of(decision_id: str, shards: int) -> int:
    """The shard of a decision: a stable hash of its id (the same in every process, unlike ``hash``)."""
    return zlib.crc32(decision_id.encode()) % shards


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard's keys. ``fence_key`` is what the learner's scripts on it check: the lease itself with one shard
    (same slot), else the shard's copy of it (``CLAIM``)."""

    index: int
    prefix: str
    fence_key: str

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    @property
    def deadlines_key(self) -> str:
        """Pending decisions by reward deadline, for the expiry sweep."""
        return f"{self.prefix}:deadlines"

    @property
    def expired_key(self) -> str:
        return f"{self.prefix}:expired"

    def key(self, family: str, name: str) -> str:
        """A per-decision (or per-tenant) key: ``pending``, ``decision``, ``rewarded``, ``expired``, ``metered``,
        ``open``."""
        return f"{self.prefix}:{family}:{name}"
