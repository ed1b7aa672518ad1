"""The asynchronous learner: consumes reward events, learns each exactly once, and publishes snapshots."""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from bandit_router.config import PolicyConfig
from bandit_router.domain.reward import RunningEstimate, bounded
from bandit_router.policy.features import Choice
from bandit_router.policy.gate import Gate, Logged, Verdict
from bandit_router.policy.vw import Policy, Snapshot, SnapshotError
from bandit_router.store.redis_store import Store, stop_if_cancelled

log = logging.getLogger(__name__)

REDIS_ERRORS = (aioredis.ConnectionError, aioredis.TimeoutError, OSError)
# A running learner marks itself in Redis this often, and the mark lapses this long after the last one, so
# that `bandit-router warm-start` does not write snapshots under it.
MARK_EVERY_S = 2.0
MARK_TTL_S = 10.0
# A reported cost or energy is learned as at most this many times the catalog's figure (see _residual).
REPORT_TRUST = 10.0


def private(path: str, flags: int) -> int:
    """Opens a file readable by its owner only: snapshots and logs hold request metadata."""
    return os.open(path, flags, 0o600)


class DiskError(Exception):
    """The learner could not write a snapshot or its logs (a full or read-only disk)."""


def stream_position(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def decode_embedding(text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.frombuffer(base64.b64decode(text), dtype=np.float16).astype(np.float32)


def encode_embedding(vector: np.ndarray[Any, np.dtype[np.float32]]) -> str:
    return base64.b64encode(vector.astype(np.float16).tobytes()).decode()


class SnapshotFiles:
    """Snapshots on disk, newest kept, written atomically (temporary file, fsync, rename)."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep

    def write_served(self, data: bytes) -> Path:
        """The snapshot the quality gate last promoted, kept apart from the rotating checkpoints."""
        return self._write_atomic(self.directory / "served.snap", data)

    def served(self) -> Snapshot | None:
        path = self.directory / "served.snap"
        try:
            return Snapshot.decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except (SnapshotError, ValueError, KeyError) as exc:
            log.warning("skipping served snapshot %s: %s", path, exc)
            return None

    def _write_atomic(self, path: Path, data: bytes) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb", opener=private) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def write(self, data: bytes, version: int) -> Path:
        path = self._write_atomic(self.directory / f"policy-{version:010d}.snap", data)
        for old in sorted(self.directory.glob("policy-*.snap"))[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def newest(self) -> Snapshot | None:
        """The newest snapshot that decodes; a corrupt or truncated file is skipped with a warning."""
        for path in sorted(self.directory.glob("policy-*.snap"), reverse=True):
            try:
                return Snapshot.decode(path.read_bytes())
            except (SnapshotError, ValueError, KeyError) as exc:
                log.warning("skipping snapshot %s: %s", path, exc)
        return None


async def load_snapshot(store: Store, files: SnapshotFiles, served: bool = False) -> Snapshot | None:
    """The newer of Redis's and the disk's snapshots (the learner's checkpoint, or with ``served`` the one
    the quality gate last promoted); a corrupt one is skipped."""
    candidates: list[Snapshot] = []
    raw = await (store.load_served() if served else store.load_snapshot())
    if raw is not None:
        try:
            candidates.append(Snapshot.decode(raw))
        except SnapshotError as exc:
            log.warning("snapshot in Redis is unusable (%s); trying the disk", exc)
    on_disk = await asyncio.to_thread(files.served if served else files.newest)
    if on_disk is not None:
        candidates.append(on_disk)
    return max(candidates, key=lambda s: s.version, default=None)


def _residual(event: dict[str, Any], figure: str, source: str, catalog: str) -> float | None:
    """How far a figure was from the catalog's; None where the figure is unknown (an API model's unmeasured
    energy), which teaches nothing. One a caller reported is learned as at most ``REPORT_TRUST`` times the
    catalog's figure, so that one bad report cannot price a model out of routing (with tenants, only the
    reporting tenant's, whose pricing is its own). Where the catalog has no figure (0: no price, no energy
    profile) a report is all there is, bounded by Reward's plausibility check alone. (Measured figures, NVML's,
    are the router's own and count whole.)"""
    if event.get(source) == "unknown":
        return None
    residual = float(event[figure]) - float(event[catalog])
    if event.get(source) == "reported" and float(event[catalog]) > 0:
        residual = min(residual, (REPORT_TRUST - 1) * float(event[catalog]))
    return residual


def learn_event(policy: Policy, event: dict[str, Any], ewma_alpha: float) -> None:
    """Learns one rewarded decision into ``policy``: the chosen model's quality in its context (the regressor
    and the evidence), its tokens and residuals (pricing), and its running cost, energy and latency."""
    index = int(event["index"])
    policy.learn_quality(event["shared"], event["actions"][index], float(event["quality"]))
    if event.get("embedding"):
        policy.clusterer.learn_one(decode_embedding(event["embedding"]))
    if "catalog_cost_usd" in event:  # events from before pricing learned residuals carry no catalog figures
        policy.pricing.observe(
            event["model"],
            event["task"],
            int(event["output_tokens"]) if event.get("output_tokens_reported") else None,
            _residual(event, "cost_usd", "cost_source", "catalog_cost_usd") or 0.0,
            _residual(event, "energy_joules", "energy_source", "catalog_energy_joules"),
            tenant=str(event.get("tenant", "")),
        )
    # Pooled (GetStats, for admins), and the tenant's own (its latency budgets): one tenant's reports never
    # move the figures another tenant routes with.
    tenant = str(event.get("tenant", ""))
    owners = [policy.estimates] + ([policy.tenant_estimates.setdefault(tenant, {})] if tenant else [])
    for estimates in owners:
        estimate = estimates.setdefault(event["model"], RunningEstimate())
        estimate.observe(
            ewma_alpha, float(event["cost_usd"]), float(event["energy_joules"]), float(event["latency_ms"])
        )
    policy.learned += 1


class Learner:
    """Reads the reward stream through a consumer group and learns each event into its own policy.

    An event is acknowledged only after a snapshot that contains it has been persisted, so after a
    crash the unacknowledged events are learned again exactly when the loaded snapshot lacks them:
    every acknowledged reward is learned once, none twice. Each persisted snapshot then goes to the
    quality gate, which decides whether Route serves it.
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        config: PolicyConfig,
        files: SnapshotFiles,
        publish: Callable[[Policy], None],
        rebuild: Callable[[Snapshot], Policy],
        ewma_alpha: float = 0.1,
        consumer: str = "learner-0",
        log_dir: Path | None = None,
        serving: Policy | None = None,
    ) -> None:
        # Learned events, appended to the decision log before the snapshot that contains them.
        self.log_dir = log_dir
        self._log_buffer: list[str] = []
        self.ewma_alpha = ewma_alpha
        self.store = store
        self.policy = policy
        self.config = config
        self.files = files
        self._publish = publish
        self._rebuild = rebuild
        self.consumer = consumer
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="learner")
        # Delivered events learned into ``policy`` but not yet into a persisted snapshot, in stream order (a
        # dict, so that re-reading the delivered backlog after a failure lists each once).
        self._unacked: dict[str, None] = {}
        self._last_snapshot = time.monotonic()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        # Events learned into the last persisted snapshot, served or not.
        self.published = policy.learned
        self.skipped = 0
        # Events that could not be learned, and steps (read, learn, snapshot) that failed and were retried.
        self.failures = 0
        self.gate = Gate(config)
        # The learner's own copy of the serving policy, for the gate (VW workspaces are not thread-safe,
        # and predicting changes a workspace's counters, so neither the service's nor the learning one).
        self._serving = serving
        self.verdicts: collections.deque[Verdict] = collections.deque(maxlen=100)
        self.promotions = 0
        self.rejections = 0
        self._backlog = True
        # Where the read of this consumer's delivered-but-unacknowledged events goes on from.
        self._backlog_after = "0"
        self._group_ready = False
        self._marked = -math.inf
        # Why the last step failed, while no step has succeeded since (health reports it); None when well.
        self.problem: str | None = None

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
            with contextlib.suppress(*REDIS_ERRORS):
                await self.store.unmark_learner()
        self._executor.shutdown(wait=True)

    async def wait_learned(self, count: int, timeout: float) -> None:
        """Waits until the published policy has learned ``count`` events in all (tests and replays use it)."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self.published >= count), timeout)

    async def _run(self) -> None:
        # First the events delivered to this consumer before a crash, then new ones.
        self._backlog, self._backlog_after = True, "0"
        while True:
            try:
                if await self._step():
                    return
                if not self._unacked:
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
            except REDIS_ERRORS as exc:
                stop_if_cancelled(exc)
                if self._stopping.is_set():
                    # Unacknowledged events stay in the stream: the next start learns them.
                    log.error(
                        "stopping without Redis (%s): %d learned events not snapshotted; the next start relearns "
                        "them from the stream",
                        exc,
                        len(self._unacked),
                    )
                    return
                self.problem = f"learner lost Redis: {exc}"
                log.warning("learner lost Redis (%s); retrying in 1 s", exc)
            except Exception as exc:
                stop_if_cancelled(exc)
                # Learning must not stop for good on one bad step: what it had not acknowledged stays in the
                # stream, and the next step takes it up again.
                self.failures += 1
                if self._stopping.is_set():
                    log.exception("learner step failed while stopping; the next start learns what is left")
                    return
                self.problem = f"learner step failed: {exc!r}"
                log.exception("learner step failed; retrying in 1 s")
            # A failed step may have left part of a delivered batch unlearned (those events are delivered, so a
            # read of new ones would never see them again): read this consumer's delivered events from the
            # start. The ones learned already are at or before the policy's stream position and are skipped.
            self._backlog, self._backlog_after = True, "0"
            await asyncio.sleep(1.0)

    async def _step(self) -> bool:
        """Reads, learns and maybe snapshots one batch; True when stopping and done."""
        if not self._group_ready:
            await self.store.ensure_group()
            self._group_ready = True
        if time.monotonic() - self._marked >= MARK_EVERY_S:
            await self.store.mark_learner(self.consumer, MARK_TTL_S)
            self._marked = time.monotonic()
        backlog = self._backlog
        # Stopping, the learner drains what is there without waiting for more.
        block = None if backlog or self._stopping.is_set() else max(1, int(self.config.snapshot_interval_s * 1000) // 2)
        try:
            reply: Any = await self.store.client.xreadgroup(
                Store.GROUP,
                self.consumer,
                {self.store.events_key: self._backlog_after if backlog else ">"},
                count=256,
                block=block,
            )
        except aioredis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis came back without its data: make the group again.
            log.warning("the reward stream's consumer group is gone (%s); creating it again", exc)
            self._group_ready = False
            return False
        entries = reply[0][1] if reply else []
        if backlog and not entries:
            self._backlog = False
        for event_id, fields in entries:
            event_id = event_id.decode() if isinstance(event_id, bytes) else event_id
            await self._learn(event_id, fields)
        if backlog and entries:
            # Read the backlog past what was just seen: those stay pending until the snapshot acknowledges them.
            last = entries[-1][0]
            self._backlog_after = last.decode() if isinstance(last, bytes) else last
            if len(self._unacked) >= self.config.snapshot_every_events:
                await self._snapshot()
            return False
        due = time.monotonic() - self._last_snapshot >= self.config.snapshot_interval_s
        if self._unacked and (
            len(self._unacked) >= self.config.snapshot_every_events or due or self._stopping.is_set()
        ):
            await self._snapshot()
        # Done once a read of new events finds none: an empty backlog says nothing of what is new.
        if self._stopping.is_set() and not entries and not backlog:
            if self._unacked:
                await self._snapshot()
            return True
        return False

    async def _learn(self, event_id: str, fields: dict[Any, Any]) -> None:
        raw: Any = fields.get(b"event", fields.get("event"))
        if stream_position(event_id) <= stream_position(self.policy.stream_id):
            # Learned into the snapshot this learner started from; only the acknowledgement was lost.
            self.skipped += 1
        else:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._learn_sync, raw)
                if self.log_dir is not None:
                    self._log_buffer.append(json.dumps({"event_id": event_id, **json.loads(raw)}))
            except Exception:  # one malformed event must not stop learning; it is logged and skipped
                self.failures += 1
                log.exception("could not learn event %s", event_id)
            self.policy.stream_id = event_id
        self._unacked[event_id] = None

    def _learn_sync(self, raw: Any) -> None:
        event = json.loads(raw)
        learn_event(self.policy, event, self.ewma_alpha)
        self.gate.observe(
            Logged(
                Choice.of(event["shared"], event["actions"], event.get("penalties")),
                int(event["index"]),
                float(event["probability"]),
                bounded(float(event["reward"])),
            )
        )

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
            await self._on_disk(self.files.write_served, data)
            await self.store.save_served(data, snapshot.version)
            self._publish(candidate)
            self._serving = await loop.run_in_executor(self._executor, self._rebuild, snapshot)
            self.gate.adopt(self._serving)
            self.promotions += 1
            # A judged promotion is worth a line; one the gate waved through (off, window filling) is not.
            level = logging.INFO if verdict.serving is not None else logging.DEBUG
            log.log(level, "candidate v%d promoted: %s", snapshot.version, verdict.reason)
        else:
            self.rejections += 1
            log.info("candidate v%d held: %s", snapshot.version, verdict.reason)
        if self.log_dir is not None:
            await self._on_disk(self._append, "gate.jsonl", [json.dumps(verdict.to_json())])

    def _write_log(self, lines: list[str]) -> None:
        """Appends to today's log file. Written before the snapshot, so a crash can log an event twice
        (export drops the repeat) but never lose it."""
        self._append(time.strftime("decisions-%Y%m%d.jsonl", time.gmtime()), lines)

    def _append(self, name: str, lines: list[str]) -> None:
        assert self.log_dir is not None
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.log_dir / name, "a+b", opener=private) as f:
            # A write that failed part way left a line unfinished: end it, so that the retry starts a line.
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(("\n".join(lines) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    async def _on_disk(self, write: Callable[..., Any], *args: Any) -> Any:
        """Runs a file write on the learner's thread; a failing disk becomes a DiskError, told apart from Redis."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, write, *args)
        except OSError as exc:
            raise DiskError(f"disk write failed: {exc}") from exc

    async def _snapshot(self) -> None:
        loop = asyncio.get_running_loop()
        if self._log_buffer:
            lines = list(self._log_buffer)
            await self._on_disk(self._write_log, lines)
            # Dropped only once written: a failed write keeps them for the next try (a partial write then
            # logs some twice, and export drops the repeats).
            del self._log_buffer[: len(lines)]
        version = self.policy.version + 1
        snapshot = await loop.run_in_executor(self._executor, self.policy.snapshot, version, self.policy.stream_id)
        data = snapshot.encode()
        await self._on_disk(self.files.write, data, version)
        await self.store.save_snapshot(data)
        self.policy.version = version
        await self._judge(snapshot, data)
        # Only now is every event in this snapshot safe to acknowledge and drop from the stream.
        await self.store.client.xack(self.store.events_key, Store.GROUP, *self._unacked)
        # MINID keeps ids >= the threshold: trim from just past the last learned event.
        ms, seq = stream_position(self.policy.stream_id)
        await self.store.client.xtrim(self.store.events_key, minid=f"{ms}-{seq + 1}")
        self._unacked.clear()
        self.problem = None
        self._last_snapshot = time.monotonic()
        self.published = snapshot.learned
        async with self._progress:
            self._progress.notify_all()
