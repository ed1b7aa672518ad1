"""The asynchronous learner: consumes reward events, learns each exactly once, and publishes snapshots."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bandit_router.config import PolicyConfig, RolloutConfig
from bandit_router.domain.records import LearningEvent
from bandit_router.learning.decision_log import DecisionLog
from bandit_router.learning.events import learn_event, stream_position
from bandit_router.policy.gate import Gate, Logged, Verdict
from bandit_router.policy.vw import Policy, Snapshot
from bandit_router.policy.vwlines import Choice
from bandit_router.store.embedded import MAX_BLOCK_MS
from bandit_router.store.errors import REDIS_ERRORS, outage, stop_if_cancelled
from bandit_router.store.lease import Fence, fenced
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import SnapshotFiles, load_snapshot, served_parts

log = logging.getLogger(__name__)

# A learner renews its lease this many times per lease time, so that one slow round trip does not lose it.
RENEWALS_PER_LEASE = 4


class DiskError(Exception):
    """The learner could not write a snapshot or its logs (a full or read-only disk)."""


# Decision ids remembered to learn each decision once (about 100 bytes each): far more than can be in flight between
# a failover's lost acknowledgement and its retried reward.
DEDUP_WINDOW = 100_000

# Events asked of the stream at a time; a read that comes back full means the learner is behind.
READ_COUNT = 256

# While behind (a read came back full), a snapshot is still taken every snapshot interval (its events are then
# acknowledged and trimmed), but judged by the gate, and so served, at most this often: a judgement replays the
# gate's window through the candidate, which cost as much as learning the events in between (a quarter of the
# learner's time in ``bandit-router bench``). Once caught up, every snapshot is judged.
BEHIND_JUDGE_EVERY_S = 5.0

# A promotion whose estimate differs from the served policy's by less than this changes nothing worth a log line.
NEWSWORTHY = 0.005


def _promotion_level(verdict: Verdict) -> int:
    """INFO for a promotion the gate judged with a real difference; DEBUG for one it waved through (gate off, window
    filling) or one estimated the same as the policy it replaces (which, judged once a second, would fill the log)."""
    if verdict.serving is None or verdict.candidate is None:
        return logging.DEBUG
    return logging.INFO if abs(verdict.candidate.value - verdict.serving.value) >= NEWSWORTHY else logging.DEBUG


def learner_name() -> str:
    """This process's name as a lease holder: host, pid and a random part (a restarted pod may reuse a pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Learner:
    """Reads the reward stream through a consumer group and learns each event into its own policy.

    An event is acknowledged only after a snapshot that contains it has been persisted, so after a
    crash the unacknowledged events are learned again exactly when the loaded snapshot lacks them:
    every acknowledged reward is learned once, none twice. Each persisted snapshot then goes to the
    quality gate, which decides whether Route serves it.

    Only the holder of the store's lease learns; any other learner is a standby that takes the lease once it
    lapses (``policy.lease_s`` after its holder's last renewal). Every read into the group, acknowledgement, trim
    and publish carries the lease's fencing token, so a learner that lost its lease (paused, partitioned) can
    change nothing: it steps down, and what it had learned but not published is its successor's to learn.
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        config: PolicyConfig,
        files: SnapshotFiles,
        publish: Callable[[Policy], None],
        rebuild: Callable[[Snapshot | None], Policy],
        ewma_alpha: float = 0.1,
        consumer: str = "learner-0",
        name: str | None = None,
        log_dir: Path | None = None,
        serving: Policy | None = None,
        rollout: RolloutConfig | None = None,
    ) -> None:
        # Apprentice mode's settings, for automatic promotion (None: tenants are promoted by config change only).
        self.rollout = rollout
        # Learned events, appended to the decision log before the snapshot that contains them.
        self.log_dir = log_dir
        self.decision_log = DecisionLog(log_dir) if log_dir is not None else None
        self._log_buffer: list[str] = []
        self.ewma_alpha = ewma_alpha
        self.store = store
        self.policy = policy
        self.config = config
        self.files = files
        self._publish = publish
        self._rebuild = rebuild
        # The consumer group's one consumer, whoever holds the lease: a new holder's backlog (events delivered and
        # not acknowledged) is then its predecessor's.
        self.consumer = consumer
        self.name = name or learner_name()
        # The lease this learner holds (None: a standby, or not started yet), and when it last renewed it.
        self.fence: Fence | None = None
        self._renewed = -math.inf
        self.takeovers = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="learner")
        # Delivered events learned into ``policy`` but not yet into a persisted snapshot, by shard, in stream order
        # (dicts, so that re-reading the delivered backlog after a failure lists each once).
        self._unacked: dict[int, dict[str, None]] = {}
        self._last_snapshot = time.monotonic()
        self._last_judged = time.monotonic()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        # Events learned into the last persisted snapshot, served or not.
        self.published = policy.learned
        # Events learned into the policy with their reads' bookkeeping done (set on the event loop, after each read).
        self._learned_through = policy.learned
        self._snapshotting = asyncio.Lock()
        self.skipped = 0
        # Events that could not be learned, and steps (read, learn, snapshot) that failed and were retried.
        self.failures = 0
        # Decision ids learned lately, oldest first: an event appended twice for one decision (a take replayed on a
        # new master after a failover that lost the first take's acknowledgement but not its learning) is learned
        # once. Touched on the learner's one thread only.
        self._recent_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.duplicates = 0
        self.gate = Gate(config)
        # The learner's own copy of the serving policy, for the gate (VW workspaces are not thread-safe,
        # and predicting changes a workspace's counters, so neither the service's nor the learning one).
        self._serving = serving
        self.verdicts: collections.deque[Verdict] = collections.deque(maxlen=100)
        self.promotions = 0
        self.rejections = 0
        # The shards whose delivered-but-unacknowledged events are still being read, and where each read goes on
        # from; empty once every backlog was read.
        self._backlog_after: dict[int, str] = {}
        self._group_ready = False
        # Why the last step failed, while no step has succeeded since (health reports it); None when well.
        self.problem: str | None = None
        # The policy holds events learned under a lease since lost: reloaded before this learner learns again.
        self._stale = False
        # When the loop last came round (liveness: a learner stuck in a step never does).
        self.went_round = time.monotonic()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="learner")

    async def stop(self, timeout: float = math.inf) -> None:
        """Learns what is already in the stream, snapshots, acknowledges, and stops; after ``timeout`` seconds
        (Redis hanging, say) it stops where it is: what it had not snapshotted stays unacknowledged in the
        stream, and the next start learns it."""
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=None if timeout == math.inf else timeout)
            if not done:
                log.error("the learner did not drain within %g s; the next start learns what it left", timeout)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                    await self._task
            self._task = None
            if self.fence is not None:
                # A standby takes over at once rather than when the lease would have lapsed.
                with contextlib.suppress(*REDIS_ERRORS):
                    await self.store.lease.release(self.fence)
                self.fence = None
        self._executor.shutdown(wait=True)

    def _failed(self, exc: Exception) -> bool:
        """Notes a failed step (Redis unreachable or refusing for now, its lease gone, or anything else); True
        when the learner is stopping and should stop here."""
        if fenced(exc):
            self._step_down(str(exc))
            return self._stopping.is_set()
        if outage(exc):
            if self._stopping.is_set():
                # Unacknowledged events stay in the stream: the next start learns them.
                log.error(
                    "stopping without Redis (%s): %d learned events not snapshotted; the next start relearns "
                    "them from the stream",
                    exc,
                    self._unacked_count,
                )
                return True
            self.problem = f"learner lost Redis: {exc}"
            log.warning("learner lost Redis (%s); retrying in 1 s", exc)
            return False
        # Learning must not stop for good on one bad step: what it had not acknowledged stays in the stream, and
        # the next step takes it up again.
        self.failures += 1
        if self._stopping.is_set():
            log.exception("learner step failed while stopping; the next start learns what is left")
            return True
        self.problem = f"learner step failed: {exc!r}"
        log.exception("learner step failed; retrying in 1 s")
        return False

    async def wait_learned(self, count: int, timeout: float) -> None:
        """Waits until the published policy has learned ``count`` events in all (tests and replays use it)."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self.published >= count), timeout)

    async def publish_through(self, count: int, timeout: float) -> None:
        """Snapshots and judges once the policy has learned ``count`` events in all. A replay in virtual time calls it
        wherever the live learner's cadence would snapshot, with this learner's own cadence set out of reach."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self._learned_through >= count), timeout)
        if self._unacked_count or self.policy.learned > self.published:
            await self._snapshot()

    async def _run(self) -> None:
        # First the events delivered to this consumer before a crash, then new ones.
        self._read_backlogs()
        while True:
            stop_if_cancelled()  # a cancellation redis-py swallowed on the last step
            self.went_round = time.monotonic()
            try:
                if await self._step():
                    return
                if not self._unacked_count:
                    self.problem = None
                continue
            except DiskError as exc:
                stop_if_cancelled(exc)
                self.failures += 1
                self.problem = str(exc)
                if self._stopping.is_set():
                    log.error("stopping with the disk failing (%s); the next start relearns what is left", exc)
                    return
                log.error("learner cannot persist (%s); retrying in 1 s, nothing is acknowledged meanwhile", exc)
            except Exception as exc:
                stop_if_cancelled(exc)
                if self._failed(exc):
                    return
            # A failed step may have left part of a delivered batch unlearned (those events are delivered, so a
            # read of new ones would never see them again): read this consumer's delivered events from the
            # start. The ones learned already are at or before the policy's stream position and are skipped.
            self._read_backlogs()
            await asyncio.sleep(1.0)

    def _read_backlogs(self) -> None:
        """Reads every shard's delivered-but-unacknowledged events from their start before new ones."""
        self._backlog_after = {shard.index: "0" for shard in self.store.shards}

    @property
    def _unacked_count(self) -> int:
        return sum(len(ids) for ids in self._unacked.values())

    def _position(self, shard: int) -> str:
        """The id of the last event of ``shard``'s stream learned into the policy."""
        return self.policy.stream_id if shard == 0 else self.policy.stream_ids.get(str(shard), "0-0")

    def _set_position(self, shard: int, event_id: str) -> None:
        if shard == 0:
            self.policy.stream_id = event_id
        else:
            self.policy.stream_ids[str(shard)] = event_id

    @property
    def role(self) -> str:
        """``active`` while this learner holds the lease, else ``standby``."""
        return "active" if self.fence is not None else "standby"

    @property
    def _renew_every_s(self) -> float:
        return self.config.lease_s / RENEWALS_PER_LEASE

    async def _hold(self) -> bool:
        """Renews the lease when due, or takes it when free; True while this learner holds it."""
        if self.fence is not None and time.monotonic() - self._renewed < self._renew_every_s:
            return True
        # The lease's time runs from about the request, not from the answer.
        asked = time.monotonic()
        fence = await self.store.lease.hold(self.name, self.config.lease_s, self.fence)
        if fence is None:
            if self.fence is not None:
                self._step_down(f"lease taken by {await self.store.lease.holder()}")
            return False
        if self.fence is None or fence.token != self.fence.token:
            # Every shard's copy of the lease first: the token just taken is the newest there is, so only a lease
            # lost meanwhile fails it.
            if not await self.store.claim_shards(fence):
                self._step_down("a shard holds a newer lease")
                return False
            await self._take_over(fence)
        self.fence, self._renewed = fence, asked
        return True

    def _step_down(self, why: str) -> None:
        """Becomes a standby: what it learned and did not publish is left in the group for the next holder, and
        its policy, which holds those events, is reloaded before it learns again."""
        log.warning(
            "learner %s steps down (%s); %d learned events not published are its successor's",
            self.name,
            why,
            self._unacked_count,
        )
        self._stale = self._stale or bool(self._unacked_count)
        self._unacked.clear()
        self._log_buffer.clear()
        self.fence = None

    async def _take_over(self, fence: Fence) -> None:
        """Learns on under ``fence``: from the newest published checkpoint (reloaded unless it is this learner's
        own), starting with the events delivered and not acknowledged (its predecessor's, or its own)."""
        lapsed_only = self.fence is not None and fence.token == self.fence.token + 1
        published = await self.store.snapshot_version()
        if not lapsed_only and (self._stale or published not in (None, self.policy.version)):
            await self._reload()
        self._read_backlogs()
        self.takeovers += 1
        log.info("learner %s holds the lease (token %d, policy v%d)", self.name, fence.token, self.policy.version)

    async def _reload(self) -> None:
        loop = asyncio.get_running_loop()
        checkpoint = await load_snapshot(self.store, self.files)
        served = await load_snapshot(self.store, self.files, served=True) or checkpoint
        self.policy = await loop.run_in_executor(self._executor, self._rebuild, checkpoint)
        self._serving = await loop.run_in_executor(self._executor, self._rebuild, served)
        self._publish(await loop.run_in_executor(self._executor, self._rebuild, served))
        self.gate = Gate(self.config)
        # What it learned into the policy just dropped is to be learned again (from the group's backlog, which
        # still holds whatever no holder published): its ids, acknowledgements and log lines go with that policy.
        self._recent_ids.clear()
        self._unacked.clear()
        self._log_buffer.clear()
        self.published = self._learned_through = self.policy.learned
        self._stale = False

    async def _step(self) -> bool:
        """Reads, learns and maybe snapshots one batch; True when stopping and done."""
        if not await self._hold():
            # A standby: tries for the lease again after a renewal's time, or stops.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._renew_every_s)
            return self._stopping.is_set()
        fence = self.fence
        assert fence is not None
        if not self._group_ready:
            await self.store.ensure_group()
            self._group_ready = True
        backlog = bool(self._backlog_after)
        shards = len(self.store.shards)
        # Stopping, the learner drains what is there without waiting for more.
        # Waiting, for half a snapshot interval, but never near the socket timeout (an idle learner then looked
        # like a lost Redis, and health flapped) nor past half a renewal: the loop comes round again instead.
        wait_ms = min(
            max(1, int(self.config.snapshot_interval_s * 1000) // 2),
            max(1, int(self._renew_every_s * 500)),
            MAX_BLOCK_MS,
        )
        # One stream is waited on inside its read; several (in as many slots) cannot be, and are polled.
        block = None if backlog or self._stopping.is_set() or shards > 1 else wait_ms
        read = 0
        full = False
        for shard in range(shards):
            after = self._backlog_after.get(shard)
            if backlog and after is None:
                continue
            try:
                entries = await self.store.read_events(fence, self.consumer, after, READ_COUNT, block, shard)
            except aioredis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis came back without its data: make the group again.
                log.warning("the reward stream's consumer group is gone (%s); creating it again", exc)
                self._group_ready = False
                return False
            if after is not None:
                # Read the backlog past what was just seen: those stay pending until the snapshot acknowledges them.
                if entries:
                    self._backlog_after[shard] = entries[-1][0]
                else:
                    del self._backlog_after[shard]
            await self._learn(shard, entries)
            read += len(entries)
            full = full or len(entries) == READ_COUNT
        if backlog and read:
            if self._unacked_count >= self.config.snapshot_every_events:
                await self._snapshot(judge=self._judge_due)
            return False
        if shards > 1 and not read and not backlog and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait_ms / 1000)
        due = time.monotonic() - self._last_snapshot >= self.config.snapshot_interval_s
        # Behind (a read came back full: more is waiting), a snapshot every few events would spend the learner on
        # snapshots and their gate rather than on learning: it snapshots once per interval until it has caught up.
        enough = self._unacked_count >= self.config.snapshot_every_events and not full
        # Learned but not yet judged: a snapshot taken while behind acknowledged its events unjudged, and without a
        # judged snapshot after it the served policy (and ``published``) would stay behind until new events came.
        unjudged = self.policy.learned > self.published
        if (self._unacked_count or unjudged) and (enough or due or self._stopping.is_set()):
            await self._snapshot(judge=not full or self._judge_due or self._stopping.is_set())
        # Done once a read of new events finds none: an empty backlog says nothing of what is new.
        if self._stopping.is_set() and not read and not backlog:
            if self._unacked_count or self.policy.learned > self.published:
                await self._snapshot()
            return True
        return False

    async def _learn(self, shard: int, entries: list[tuple[str, str]]) -> None:
        """Learns a read's events of ``shard`` on the learner's thread, in one hop for all of them."""
        position = stream_position(self._position(shard))
        # Those at or before the policy's position were learned into the snapshot this learner started from; only
        # their acknowledgement was lost.
        fresh = [(event_id, raw) for event_id, raw in entries if stream_position(event_id) > position]
        self.skipped += len(entries) - len(fresh)
        if fresh:
            lines = await asyncio.get_running_loop().run_in_executor(self._executor, self._learn_sync, fresh)
            self._log_buffer.extend(lines)
            self._set_position(shard, fresh[-1][0])
        unacked = self._unacked.setdefault(shard, {})
        for event_id, _ in entries:
            unacked[event_id] = None
        if fresh:
            async with self._progress:
                self._learned_through = self.policy.learned
                self._progress.notify_all()

    def _learn_sync(self, entries: list[tuple[str, str]]) -> list[str]:
        """Learns each event; their decision log lines. One that cannot be learned (malformed) is logged and skipped,
        as is a decision already learned within DEDUP_WINDOW ids."""
        lines = []
        for event_id, raw in entries:
            try:
                event = self._learn_one(raw)
            except Exception:  # one malformed event must not stop learning
                self.failures += 1
                log.exception("could not learn event %s", event_id)
                continue
            if event is None:
                log.warning("event %s is a second reward event of an already learned decision: skipped", event_id)
            elif self.decision_log is not None:
                lines.append(json.dumps({"event_id": event_id, **event.to_json()}))
        return lines

    def _learn_one(self, raw: str) -> LearningEvent | None:
        """Learns the event; None (learning nothing) for a decision already learned within DEDUP_WINDOW ids."""
        event = LearningEvent.loads(raw)
        if event.decision_id in self._recent_ids:
            self.duplicates += 1
            return None
        self._recent_ids[event.decision_id] = None
        if len(self._recent_ids) > DEDUP_WINDOW:
            self._recent_ids.popitem(last=False)
        learn_event(self.policy, event, self.ewma_alpha, self.rollout)
        # The gate judges quality, which every tenant reports within [0, 1]: one tenant's accepted extremes of
        # energy or cost (a reward clipped at -1e6) can neither hold nor promote the policy others are served.
        self.gate.observe(
            Logged(
                Choice.of(event.shared, event.actions, event.penalties),
                event.index,
                event.probability,
                event.quality,
                tuple(p for _, p in event.pmf) if len(event.pmf) == len(event.actions) else None,
            )
        )
        return event

    async def _judge(self, snapshot: Snapshot, data: bytes) -> None:
        """Serves the snapshot if the quality gate promotes it; logs the verdict either way."""
        loop = asyncio.get_running_loop()
        candidate = await loop.run_in_executor(self._executor, self._rebuild, snapshot)
        if self._serving is None:
            verdict = Verdict(snapshot.version, True, "nothing served yet", 0)
        else:
            verdict = await loop.run_in_executor(
                self._executor, self.gate.judge, snapshot.version, candidate, self._serving
            )
        self.verdicts.append(verdict)
        if verdict.promoted:
            # Redis first: the disk holds only what the lease's holder published. In Redis each tenant's parts go
            # apart, so that a replica serving some tenants fetches theirs only; the disk keeps it whole.
            body, parts = await loop.run_in_executor(self._executor, served_parts, snapshot)
            await self.store.save_served(body, snapshot.version, self.fence, parts)
            await self._on_disk(self.files.write_served, data)
            self._publish(candidate)
            self._serving = await loop.run_in_executor(self._executor, self._rebuild, snapshot)
            self.gate.adopt(self._serving)
            self.promotions += 1
            log.log(_promotion_level(verdict), "candidate v%d promoted: %s", snapshot.version, verdict.reason)
        else:
            self.rejections += 1
            # The first hold after a promotion is news; the same hold once a second is not.
            held_before = len(self.verdicts) > 1 and not self.verdicts[-2].promoted
            log.log(
                logging.DEBUG if held_before else logging.INFO,
                "candidate v%d held: %s",
                snapshot.version,
                verdict.reason,
            )
        if self.decision_log is not None:
            await self._on_disk(self.decision_log.append, "gate.jsonl", [json.dumps(verdict.to_json())])

    async def _on_disk(self, write: Callable[..., Any], *args: Any) -> Any:
        """Runs a file write on the learner's thread; a failing disk becomes a DiskError, told apart from Redis."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, write, *args)
        except OSError as exc:
            raise DiskError(f"disk write failed: {exc}") from exc

    @property
    def _judge_due(self) -> bool:
        return time.monotonic() - self._last_judged >= BEHIND_JUDGE_EVERY_S

    async def _snapshot(self, judge: bool = True) -> None:
        """Checkpoints what has been learned (Redis, then disk), judges it by the gate where ``judge`` (serving it
        if promoted), then acknowledges and trims its events."""
        # One at a time: a replay's publish_through and the loop's own (draining at a stop) would otherwise share
        # one version number and one list of events to acknowledge.
        async with self._snapshotting:
            await self._snapshot_now(judge)

    async def _snapshot_now(self, judge: bool) -> None:
        loop = asyncio.get_running_loop()
        if self._log_buffer and self.decision_log is not None:
            lines = list(self._log_buffer)
            await self._on_disk(self.decision_log.append_events, lines)
            # Dropped only once written: a failed write keeps them for the next try (a partial write then
            # logs some twice, and export drops the repeats).
            del self._log_buffer[: len(lines)]
        version = self.policy.version + 1
        snapshot = await loop.run_in_executor(self._executor, self.policy.snapshot, version, self.policy.stream_id)
        data = snapshot.encode()
        await self.store.save_snapshot(data, version, self.fence)
        await self._on_disk(self.files.write, data, version)
        self.policy.version = version
        if judge:
            await self._judge(snapshot, data)
            self._last_judged = time.monotonic()
        # Only now is every event in this snapshot safe to acknowledge and drop from its stream: trimmed up to
        # just past the last learned event.
        assert self.fence is not None
        for shard, ids in self._unacked.items():
            if ids:
                ms, seq = stream_position(self._position(shard))
                await self.store.acknowledge(self.fence, list(ids), f"{ms}-{seq + 1}", shard)
        self._unacked.clear()
        self.problem = None
        self._last_snapshot = time.monotonic()
        if judge:
            self.published = snapshot.learned
        async with self._progress:
            self._progress.notify_all()
