"""The policy a router serves: swapped in whole by the learner's publish or a replica's reload, its VW workspace
guarded by one lock."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bandit_router.config import Config
from bandit_router.observability.monitor import Monitor
from bandit_router.policy.exploration import InFlight
from bandit_router.policy.vw import Policy, Snapshot, SnapshotError
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import load_served

log = logging.getLogger(__name__)

T = TypeVar("T")


def version_name(version: int) -> str:
    return f"v{version}"


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.exception() is not None:
        log.error("measuring the served policy's drift failed: %r", future.exception())


class ServedPolicy:
    """Holds the served policy and the lock its VW calls take (a workspace is not thread-safe).

    A Route's decision runs on the event loop, under the lock: it costs about 0.1 ms for a few candidates, less
    than handing it to a thread cost the loop (waking the thread, the future's callback, the GIL's hand-over:
    0.3-0.6 ms a Route, measured with ``bandit-router bench``). Drift is measured on this object's thread,
    taking the lock for one pmf at a time, so a Route waits at most for one prediction. Construction builds a
    VW workspace: do it off the event loop."""

    def __init__(self, config: Config, dimension: int, store: Store, monitor: Monitor, in_flight: InFlight) -> None:
        self.config = config
        self.dimension = dimension
        self.store = store
        self.monitor = monitor
        self.in_flight = in_flight
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy")
        self.lock = threading.Lock()
        self.policy: Policy = self.new(None)

    def new(self, snapshot: Snapshot | None) -> Policy:
        """A policy of this router's configuration from ``snapshot`` (a fresh one from None); blocking."""
        return Policy.of(self.config, self.dimension, snapshot)

    @property
    def version(self) -> str:
        return version_name(self.policy.version)

    def run(self, job: Callable[..., T], *args: Any) -> T:
        """Runs ``job(*args)`` here, under the workspace lock."""
        with self.lock:
            return job(*args)

    async def start(self, served: Snapshot | None) -> None:
        """Serves ``served`` (keeps the fresh policy when None) and starts measuring its drift."""
        if served is not None:
            log.info("serving policy %s (%d events learned)", version_name(served.version), served.learned)
            self.policy = await asyncio.to_thread(self.new, served)
        self._watch(self.policy)

    def install(self, policy: Policy) -> None:
        """Serves ``policy`` from the next Route on (the learner's publish, a replica's reload)."""
        # A reference swap: a Route already predicting keeps the policy it started with.
        self.in_flight.learned(policy.learned - self.policy.learned)
        self.policy = policy
        self._watch(policy)

    async def reload(self) -> bool:
        """Swaps in the served snapshot if it is newer than the one in use. Its version is read first: an
        announcement or poll with nothing new costs one small read, not the whole snapshot."""
        version = await self.store.served_version()
        if version is not None and version <= self.policy.version:
            return False
        try:
            # Only the parts of the tenants this replica serves, where it serves some (server.tenants).
            snapshot = await load_served(self.store, self.config.server.tenants or None)
        except SnapshotError as exc:
            log.warning("served snapshot in Redis is unusable (%s); keeping %s", exc, self.version)
            return False
        if snapshot is None or snapshot.version <= self.policy.version:
            return False
        try:
            policy = await asyncio.to_thread(self.new, snapshot)
        except Exception:  # the replica keeps serving, and following: the next announcement or poll retries
            log.exception("could not load served policy v%d; keeping %s", snapshot.version, self.version)
            return False
        self.install(policy)
        log.info("now serving policy %s", self.version)
        return True

    def _watch(self, policy: Policy) -> None:
        """Measures the served policy's drift on this object's thread, one pmf at a time under the lock."""
        future = asyncio.get_running_loop().run_in_executor(
            self._thread, self.monitor.on_policy, policy, version_name(policy.version), self.lock
        )
        future.add_done_callback(_log_failure)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
