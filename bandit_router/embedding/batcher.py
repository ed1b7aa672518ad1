"""Gathers concurrent embedding requests into batches, run off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.recent import RecentEmbeddings
from bandit_router.embedding.types import Embedded, Embeds

log = logging.getLogger(__name__)


# The longest query an inline embedder (the static backend) embeds on the event loop: tokenizing and averaging
# this many characters takes about 0.1 ms; a longer query goes to the worker thread like any other.
INLINE_CHARS = 2048


class BatchingEmbedder:
    """Gathers concurrent embedding requests into one batch (up to ``max_batch_size``, waiting at most
    ``max_wait_ms`` after the first) and runs it on a worker thread, so the event loop never blocks.

    An embedder that says it is ``inline`` (the static backend: tens of microseconds a query) embeds a short
    query at once on the event loop instead: the trip to a thread and back would cost the loop more.
    """

    def __init__(
        self,
        embedder: Embeds,
        config: EmbeddingConfig,
        on_batch: Callable[[float, float, int], None] | None = None,
        lanes: int = 1,
        recent: RecentEmbeddings | None = None,
    ) -> None:
        self.embedder = embedder
        self._inline = bool(getattr(embedder, "inline", False))
        # Texts embedded lately, answered without the model (embedding.cache_bytes).
        self.recent = recent
        # Told the wall-clock start and end of every batch, and its size (the router's energy accounting).
        self.on_batch = on_batch
        self._max_batch = config.max_batch_size
        self._max_wait = config.max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[Embedded]]] = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(lanes, thread_name_prefix="embed")
        # A batch forms only once a lane is free, so whatever queued meanwhile joins it.
        self._lanes = asyncio.Semaphore(lanes)
        self._free = lanes
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is not None and self._task.done():
            # Whatever ended it, the next request must not wait forever on a batcher that is gone.
            why = "cancelled" if self._task.cancelled() else repr(self._task.exception())
            log.error("embedding batcher ended (%s); starting another", why)
            self._task = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="embedding-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Batches already handed to the model finish and answer their callers.
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def embed(self, text: str) -> Embedded:
        if self.recent is not None:
            found = self.recent.get(text)
            if found is not None:
                return found
        if self._inline and len(text) <= INLINE_CHARS:
            embedded = self._now(text)
        else:
            self.start()
            future: asyncio.Future[Embedded] = asyncio.get_running_loop().create_future()
            await self._queue.put((text, future))
            embedded = await future
        if self.recent is not None:
            self.recent.put(text, embedded)
        return embedded

    def _now(self, text: str) -> Embedded:
        started = time.time()
        (embedded,) = self.embedder.embed([text])
        self.batches += 1
        self.items += 1
        if self.on_batch is not None:
            try:
                self.on_batch(started, time.time(), 1)
            except Exception:  # the caller has its vector; only the accounting of this one is lost
                log.exception("accounting for an inline embedding failed")
        return embedded

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._lanes.acquire()
            try:
                batch = [await self._queue.get()]
            except asyncio.CancelledError:
                self._lanes.release()
                raise
            # With other lanes free, the backlog is shared among them, and a lone request leaves at once
            # rather than wait for company; the last free lane waits up to max_wait_ms for a full batch.
            limit = self._max_batch
            if self._free > 1:
                limit = min(limit, -(-(1 + self._queue.qsize()) // self._free))
            deadline = loop.time() + self._max_wait
            while len(batch) < limit:
                # What is already queued joins at once, deadline or not: under load the backlog is the batch.
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                if self._free > 1:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(t, f) for t, f in batch if not f.done()]
            if not live:
                self._lanes.release()
                continue
            self._free -= 1
            task = loop.create_task(self._embed(live))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _embed(self, live: list[tuple[str, asyncio.Future[Embedded]]]) -> None:
        try:
            started = time.time()
            results: list[Embedded | Exception]
            try:
                results = list(await self._model([t for t, _ in live]))
            except Exception as exc:
                if len(live) == 1:
                    raise
                # One query the model cannot take must not fail the others that shared its batch: each is
                # embedded again alone, and only what fails alone fails its caller.
                log.warning("embedding batch of %d failed (%s); embedding its queries one by one", len(live), exc)
                results = [await self._alone(t) for t, _ in live]
            answered = 0
            for (_, f), r in zip(live, results, strict=True):
                if f.done():
                    continue
                if isinstance(r, Exception):
                    f.set_exception(r)
                else:
                    f.set_result(r)
                    answered += 1
            self.batches += 1
            self.items += answered
        except Exception as exc:  # a failed batch fails its callers, never the batcher
            log.exception("embedding batch of %d failed", len(live))
            for _, f in live:
                if not f.done():
                    f.set_exception(exc)
        else:
            if self.on_batch is not None and answered:
                try:
                    self.on_batch(started, time.time(), answered)
                except Exception:  # the callers have their vectors; only the accounting of this batch is lost
                    log.exception("accounting for an embedding batch of %d failed", answered)
        finally:
            self._free += 1
            self._lanes.release()

    async def _model(self, texts: list[str]) -> list[Embedded]:
        """``texts`` through the model on a lane's thread: one vector each, or an error."""
        results = await asyncio.get_running_loop().run_in_executor(self._executor, self.embedder.embed, texts)
        if len(results) != len(texts):
            raise RuntimeError(f"the embedder answered {len(results)} vectors for {len(texts)} queries")
        return list(results)

    async def _alone(self, text: str) -> Embedded | Exception:
        """One query embedded alone, or the error that it alone meets."""
        try:
            (result,) = await self._model([text])
        except Exception as exc:
            log.warning("a query of %d characters cannot be embedded: %s", len(text), exc)
            return exc
        return result
