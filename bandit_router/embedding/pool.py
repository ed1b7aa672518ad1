"""A pool of embedding worker processes, or of lanes to shared servers; a call takes an idle one."""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Sequence

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.shared import EmbedderConnection
from bandit_router.embedding.types import Embedded
from bandit_router.embedding.wire import shared_socket
from bandit_router.embedding.worker import EmbedderProcess


def available_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's CPU limit),
    which ``os.cpu_count()`` does not see."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def in_workers(config: EmbeddingConfig) -> bool:
    """Whether the model runs in worker processes: ``embedding.processes`` of them, except for the static backend,
    whose tens of microseconds a query cost less than the trip to a worker."""
    return bool(config.processes) and config.backend != "static"


class EmbedderPool:
    """Several :class:`EmbedderProcess` workers, each embedding one batch at a time; a call takes any idle one.

    Unless ``embedding.threads`` fixes it, a batch gets all the CPUs while batches do not overlap (lowest
    latency at light load), and the CPUs divided among the workers once they do (one each on two CPUs).
    On a busy 2-CPU router that beat one worker with two threads, because a thread preempted by the
    event loop stalls only its own batch, not a barrier both threads wait at (see ``bandit-router bench``).
    """

    CALM_S = 1.0

    def __init__(self, config: EmbeddingConfig) -> None:
        self._fixed_threads = config.threads
        self._cpus = available_cpus()
        self._workers: list[EmbedderProcess | EmbedderConnection] = []
        if config.shared_dir:
            # A lane to each of the host's shared servers, which set their own threads.
            self._workers = [EmbedderConnection(shared_socket(config.shared_dir, i)) for i in range(config.processes)]
        else:
            processes = [EmbedderProcess(config, config.threads, wait=False) for _ in range(config.processes)]
            self._workers = list(processes)
            try:
                for process in processes:
                    process.wait_ready()
            except Exception:
                for process in processes:
                    process.kill()
                raise
        first = self._workers[0]
        self.device, self.dimension, self.model_name = first.device, first.dimension, first.model_name
        self.lanes = len(self._workers)
        # Last in, first out: at light load one worker, its threads warm, takes every batch.
        self._idle: queue.LifoQueue[EmbedderProcess | EmbedderConnection] = queue.LifoQueue()
        for worker in self._workers:
            self._idle.put(worker)
        self._busy = 0
        self._overlapped_at = -math.inf
        self._busy_lock = threading.Lock()

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self._workers)

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        worker = self._idle.get()
        with self._busy_lock:
            self._busy += 1
            now = time.monotonic()
            if self._busy > 1:
                self._overlapped_at = now
            # Switching threads per batch oversubscribes the CPUs whenever a lone batch is joined, so the
            # pool keeps sharing them until batches have not overlapped for a while.
            alone = now - self._overlapped_at > self.CALM_S
            threads = self._fixed_threads or (self._cpus if alone else max(1, self._cpus // len(self._workers)))
            if self.device != "cpu":
                # The model's arithmetic runs on the device: resizing PyTorch's CPU thread pool buys nothing.
                threads = self._fixed_threads
        try:
            return worker.embed(texts, threads)
        finally:
            with self._busy_lock:
                self._busy -= 1
            self._idle.put(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
