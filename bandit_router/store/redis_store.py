"""Redis store for pending decisions, the reward stream and policy snapshots."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis

from bandit_router.domain.metered import Metered
from bandit_router.domain.records import Decision, LearningEvent, PendingDecision, Summary
from bandit_router.store import scripts
from bandit_router.store.energy import EnergyRecords
from bandit_router.store.lease import Fence, Lease
from bandit_router.store.shards import CLAIM, Shard, shard_of, shard_prefix


class QuotaExceeded(Exception):
    """The tenant already holds its quota of decisions waiting for a reward."""

    def __init__(self, held: int) -> None:
        super().__init__(f"{held} decisions waiting")
        self.held = held


@dataclasses.dataclass(frozen=True)
class TakeResult:
    """Outcome of taking a pending decision: ``ok`` (event appended), ``rewarded`` or ``gone``."""

    status: str
    event_id: str = ""
    rewarded_at: float = 0.0
    # Replicas that confirmed holding the take's writes (Redis WAIT), where the caller asked for some.
    replicas: int | None = None


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()


def _event_field(fields: list[Any]) -> str:
    """The ``event`` field of a stream entry as a script answers it (a flat list of names and values)."""
    pairs = dict(zip(map(_text, fields[::2]), fields[1::2], strict=True))
    return _text(pairs["event"])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Store:
    """All Redis state of one router, under one key prefix."""

    GROUP = "learner"

    def __init__(self, client: aioredis.Redis, prefix: str, shards: int = 1) -> None:
        self.client = client
        self.prefix = prefix
        self.snapshot_key = f"{prefix}:snapshot"
        self.snapshot_version_key = f"{prefix}:snapshot-version"
        self.served_key = f"{prefix}:served"
        # The served snapshot's version, written with it: a replica reads this first, the body only when newer.
        self.served_version_key = f"{prefix}:served-version"
        # Each named tenant's parts of the served snapshot (Snapshot.tenant_parts), by tenant.
        self.served_tenants_key = f"{prefix}:served-tenants"
        # The learner announces each newly served snapshot's version here.
        self.snapshots_channel = f"{prefix}:snapshots"
        # Held by the one learner that may read, acknowledge and publish (a warm start takes it too).
        self.lease = Lease(client, prefix)
        # Decisions and their reward streams, by decision id (redis.shards).
        self.shards = [
            Shard(i, p, self.lease.key if shards == 1 else f"{p}:fence")
            for i, p in ((i, shard_prefix(prefix, i, shards)) for i in range(shards))
        ]
        # The first shard's stream, expiry set and counter: with one shard (the default), the only ones.
        self.events_key = self.shards[0].events_key
        self.deadlines_key = self.shards[0].deadlines_key
        self.expired_key = self.shards[0].expired_key
        self.energy = EnergyRecords(client, prefix)
        self._put = client.register_script(scripts.PUT_DECISION)
        self._take = client.register_script(scripts.TAKE_AND_APPEND)
        self._expire = client.register_script(scripts.EXPIRE)
        self._drop = client.register_script(scripts.DROP)
        self._read = client.register_script(scripts.READ)
        self._acknowledge = client.register_script(scripts.ACKNOWLEDGE)
        self._save = client.register_script(scripts.SAVE)
        self._claim = client.register_script(CLAIM)

    def shard(self, decision_id: str) -> Shard:
        """The shard of a decision (several keys of one call each ask: with one shard, no hash)."""
        if len(self.shards) == 1:
            return self.shards[0]
        return self.shards[shard_of(decision_id, len(self.shards))]

    def _pending(self, decision_id: str) -> str:
        return self.shard(decision_id).key("pending", decision_id)

    def _decision(self, decision_id: str) -> str:
        return self.shard(decision_id).key("decision", decision_id)

    def _rewarded(self, decision_id: str) -> str:
        return self.shard(decision_id).key("rewarded", decision_id)

    def _expired(self, decision_id: str) -> str:
        return self.shard(decision_id).key("expired", decision_id)

    def _metered(self, decision_id: str) -> str:
        return self.shard(decision_id).key("metered", decision_id)

    def _open(self, decision_id: str, tenant: str) -> str:
        """A tenant's decisions within their reward wait on the decision's shard, by deadline (tenant names never
        hold ':')."""
        return self.shard(decision_id).key("open", tenant or "-")

    async def get_summary(self, decision_id: str) -> Summary | None:
        raw = await self.client.get(self._decision(decision_id))
        return None if raw is None else Summary.from_json(raw)

    async def put_decision(
        self,
        pending: PendingDecision,
        wait_s: float,
        now: float,
        grace_s: float,
        quota: int = 0,
    ) -> Summary | None:
        """Stores a new decision, due for a reward by ``now + wait_s``; returns the existing summary instead
        if the id was already decided. The pending entry and the summary (what a retried Route is answered)
        outlive the deadline by ``grace_s``, so the expiry sweep still finds the decision to learn a default
        reward; after that only a small marker of its reward or expiry is kept (``retention_s`` of
        :meth:`take_and_append` and :meth:`expire`). With ``quota`` > 0, raises QuotaExceeded if the decision's
        tenant already holds that many decisions within their wait."""
        decision_id = pending.decision_id
        existing = await self._put(
            keys=[
                self._decision(decision_id),
                self._pending(decision_id),
                self.shard(decision_id).deadlines_key,
                self._open(decision_id, pending.tenant),
            ],
            args=[
                pending.summary.to_json(),
                pending.to_json(),
                _ms(wait_s + grace_s),
                _ms(wait_s + grace_s),
                repr(now + wait_s),
                decision_id,
                # Each shard holds its share of a tenant's quota.
                -(-quota // len(self.shards)),
                repr(now),
            ],
        )
        if isinstance(existing, list):
            raise QuotaExceeded(int(existing[1]))
        return None if existing is None else Summary.from_json(existing)

    async def was_rewarded(self, decision_id: str) -> bool:
        return bool(await self.client.exists(self._rewarded(decision_id)))

    async def expired_at(self, decision_id: str) -> float | None:
        """The reward deadline of a decision that expired within the retention; None otherwise."""
        raw = await self.client.get(self._expired(decision_id))
        return None if raw is None else float(raw)

    def _conversation(self, key: str) -> str:
        return f"{self.prefix}:conversation:{key}"

    async def get_pin(self, key: str) -> Decision | None:
        """The decision a conversation is pinned to, while its pin lasts."""
        raw = await self.client.get(self._conversation(key))
        return None if raw is None else Summary.from_json(raw).decision

    async def put_after_answer(
        self, decision_id: str, metered: Metered | None, pin: tuple[str, Decision] | None, ttl_s: float
    ) -> None:
        """In one round trip: what the gateway measured of the decision's model call, kept until its reward (or
        expiry), and a conversation pinned to a decision (its model, and the decision its turns' feedback
        rewards), kept ``ttl_s``. Two independent writes: no script needs to make them atomic."""
        async with self.client.pipeline(transaction=False) as pipe:
            if metered is not None:
                pipe.set(self._metered(decision_id), metered.dumps(), px=_ms(ttl_s))
            if pin is not None:
                key, decision = pin
                pipe.set(self._conversation(key), Summary(decision, None).to_json(), px=_ms(ttl_s))
            await pipe.execute()

    async def get_metered(self, decision_id: str) -> Metered | None:
        raw = await self.client.get(self._metered(decision_id))
        return None if raw is None else Metered.loads(raw)

    async def get_for_reward(self, decision_id: str) -> tuple[PendingDecision | None, Metered | None]:
        """The pending decision and what the gateway measured of its call, in one round trip."""
        pending, metered = await self.client.mget(self._pending(decision_id), self._metered(decision_id))
        return (
            None if pending is None else PendingDecision.from_json(pending),
            None if metered is None else Metered.loads(metered),
        )

    async def get_pending(self, decision_id: str) -> PendingDecision | None:
        raw = await self.client.get(self._pending(decision_id))
        return None if raw is None else PendingDecision.from_json(raw)

    async def take_and_append(
        self,
        decision_id: str,
        event: LearningEvent,
        now: float,
        retention_s: float,
        tenant: str = "",
        replicas: int = 0,
        timeout_ms: int = 0,
    ) -> TakeResult:
        """Takes the pending decision and appends ``event``; with ``replicas``, then waits up to ``timeout_ms`` for
        that many replicas to hold what the take wrote (WAIT on the same connection: WAIT counts only that
        connection's writes), and says how many did."""
        shard = self.shard(decision_id)
        keys = [
            self._pending(decision_id),
            self._rewarded(decision_id),
            shard.events_key,
            shard.deadlines_key,
            self._open(decision_id, tenant),
            self._metered(decision_id),
        ]
        args: list[str | int] = [event.dumps(), repr(now), _ms(retention_s), decision_id]
        held = None
        if replicas:
            async with self.client.pipeline(transaction=False) as pipe:
                await self._take(keys=keys, args=args, client=pipe)
                pipe.wait(replicas, timeout_ms)
                (status, detail), held = await pipe.execute()
        else:
            status, detail = await self._take(keys=keys, args=args)
        status, detail = _text(status), _text(detail)
        if status == "ok":
            return TakeResult("ok", event_id=detail, replicas=held)
        if status == "rewarded":
            event_id, at = detail.split(" ", 1)
            return TakeResult("rewarded", event_id=event_id, rewarded_at=float(at), replicas=held)
        return TakeResult("gone")

    async def due(self, now: float, limit: int = 256) -> list[str]:
        """Decisions whose reward deadline has passed."""
        due = []
        for shard in self.shards:
            ids = await self.client.zrangebyscore(shard.deadlines_key, "-inf", repr(now), start=0, num=limit)
            due += [_text(i) for i in ids]
        return due

    async def expire(self, decision_id: str, now: float, event: LearningEvent | None, retention_s: float) -> str | None:
        """Expires a due decision: appends ``event`` (its default reward) or drops it, and remembers that it
        expired for ``retention_s``. None if it was rewarded or expired meanwhile; else the event id, or
        "dropped"."""
        result = await self._expire(
            keys=[
                self._pending(decision_id),
                self.shard(decision_id).deadlines_key,
                self.shard(decision_id).events_key,
                self.shard(decision_id).expired_key,
                self._expired(decision_id),
                self._metered(decision_id),
            ],
            args=[decision_id, repr(now), event.dumps() if event is not None else "", _ms(retention_s)],
        )
        return None if result is None else result.decode() if isinstance(result, bytes) else str(result)

    async def drop(self, decision_id: str) -> bool:
        """Forgets a pending decision without learning anything of it; False when it was no longer pending."""
        keys = [
            self._pending(decision_id),
            self.shard(decision_id).deadlines_key,
            self._metered(decision_id),
            self._decision(decision_id),
        ]
        return bool(await self._drop(keys=keys, args=[decision_id]))

    async def expired_count(self) -> int:
        return sum([int(await self.client.get(shard.expired_key) or 0) for shard in self.shards])

    async def claim_shards(self, fence: Fence) -> bool:
        """Installs ``fence`` as every shard's copy of the lease (with one shard the lease is its own); False where
        a shard already holds a newer token: this learner's lease is gone."""
        if len(self.shards) == 1:
            return True
        for shard in self.shards:
            if not int(await self._claim(keys=[shard.fence_key], args=[fence.value, fence.token])):
                return False
        return True

    async def read_events(
        self, fence: Fence, consumer: str, after: str | None, count: int, block_ms: int | None, shard: int = 0
    ) -> list[tuple[str, str]]:
        """Reward events of ``shard`` for the learner's ``consumer``: new ones (``after`` None; waiting up to
        ``block_ms`` for some), or those delivered to it and not acknowledged, after the stream id ``after``; as
        (event id, event text). Raises ResponseError FENCED (see ``lease.fenced``) once ``fence`` is no longer the
        lease."""
        entries, last = await self._read_fenced(fence, self.shards[shard], consumer, after, count)
        if entries or after is not None or not block_ms:
            return entries
        # Nothing new: wait (outside any script, which cannot block) for an id past the last one there was.
        if await self.client.xread({self.shards[shard].events_key: last}, count=1, block=block_ms):
            entries, _ = await self._read_fenced(fence, self.shards[shard], consumer, None, count)
        return entries

    async def _read_fenced(
        self, fence: Fence, shard: Shard, consumer: str, after: str | None, count: int
    ) -> tuple[list[tuple[str, str]], str]:
        reply: Any = await self._read(
            keys=[shard.fence_key, shard.events_key],
            args=[fence.value, self.GROUP, consumer, count, ">" if after is None else after],
        )
        entries = [(_text(event_id), _event_field(fields)) for event_id, fields in reply[0]]
        return entries, _text(reply[1])

    async def acknowledge(self, fence: Fence, event_ids: list[str], keep_from: str, shard: int = 0) -> None:
        """Acknowledges learned events of ``shard`` and trims its stream before ``keep_from`` (MINID keeps ids >=
        it)."""
        keys = [self.shards[shard].fence_key, self.shards[shard].events_key]
        await self._acknowledge(keys=keys, args=[fence.value, self.GROUP, keep_from, *event_ids])

    async def backlog(self) -> int:
        """Reward events in the streams: appended, and not yet trimmed after a persisted snapshot."""
        return sum([int(await self.client.xlen(shard.events_key)) for shard in self.shards])

    def subscribe_snapshots(self) -> Any:
        """A pubsub (not yet subscribed) for the served snapshots' announcements; the caller closes it."""
        return self.client.pubsub()

    async def close(self) -> None:
        await self.client.aclose()

    async def ensure_group(self) -> None:
        for shard in self.shards:
            try:
                await self.client.xgroup_create(shard.events_key, self.GROUP, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def running_learner(self) -> str | None:
        """The name of the learner (or warm start) holding the lease, if it has not lapsed."""
        return await self.lease.holder()

    async def save_snapshot(self, data: bytes, version: int, fence: Fence | None = None) -> None:
        """Stores the learner's checkpoint; with ``fence``, only while that lease holds (else ResponseError
        FENCED). Without, the caller knows no learner writes (a test)."""
        await self._write(self.snapshot_key, self.snapshot_version_key, data, version, "", fence)

    async def snapshot_version(self) -> int | None:
        """The checkpoint's version; None before any, or in a store written before versions were kept."""
        raw = await self.client.get(self.snapshot_version_key)
        return None if raw is None else int(raw)

    async def load_snapshot(self) -> bytes | None:
        """The learner's newest checkpoint."""
        return await self._get_bytes(self.snapshot_key)

    async def save_served(
        self, data: bytes, version: int, fence: Fence | None = None, tenants: dict[str, bytes] | None = None
    ) -> None:
        """Stores the snapshot Route serves, its version and each tenant's parts of it (``tenants``; none: all in
        ``data``) at once, so that the version never names a body not there yet, then tells every replica; with
        ``fence`` as in :meth:`save_snapshot`."""
        await self._write(
            self.served_key, self.served_version_key, data, version, self.snapshots_channel, fence, tenants or {}
        )

    async def _write(
        self,
        key: str,
        version_key: str,
        data: bytes,
        version: int,
        channel: str,
        fence: Fence | None,
        tenants: dict[str, bytes] | None = None,
    ) -> None:
        keys = [key, version_key] + ([self.served_tenants_key] if tenants is not None else [])
        if fence is not None:
            pairs = [item for pair in (tenants or {}).items() for item in pair]
            await self._save(keys=[fence.key, *keys], args=[fence.value, data, str(version), channel, *pairs])
            return
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, data)
            pipe.set(version_key, str(version))
            if tenants is not None:
                pipe.delete(self.served_tenants_key)
                if tenants:
                    pipe.hset(self.served_tenants_key, mapping=tenants)  # type: ignore[arg-type]
            await pipe.execute()
        if channel:
            await self.client.publish(channel, str(version))

    async def served_version(self) -> int | None:
        """The served snapshot's version; None before any, or in a store written before versions were kept."""
        raw = await self.client.get(self.served_version_key)
        return None if raw is None else int(raw)

    async def load_served(self, tenants: Collection[str] | None = None) -> tuple[bytes | None, dict[str, bytes]]:
        """The snapshot the quality gate last promoted (what Route serves), without its tenants' parts, and those
        parts of ``tenants`` (None: every tenant's), read together in one transaction."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.served_key)
            if tenants is None:
                pipe.hgetall(self.served_tenants_key)
            elif tenants:
                pipe.hmget(self.served_tenants_key, list(tenants))
            replies = await pipe.execute()
        raw = replies[0]
        if tenants is None:
            parts = {_text(t): _bytes(v) for t, v in replies[1].items()}
        else:
            parts = {t: _bytes(v) for t, v in zip(tenants, replies[1] if tenants else [], strict=True) if v is not None}
        return (None if raw is None else _bytes(raw)), parts

    async def _get_bytes(self, key: str) -> bytes | None:
        raw = await self.client.get(key)
        return None if raw is None else raw if isinstance(raw, bytes) else raw.encode()
