"""A shared embedding server that several routing workers' connections feed one batch at a time."""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import queue
import socket
import threading
from collections.abc import Sequence

import numpy as np

from bandit_router.embedding.model import Embedder, IntArray, QueryTokenizer
from bandit_router.embedding.types import Embedded


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


def _stack(parts: list[IntArray]) -> IntArray:
    """The rows of ``parts`` in one array, each padded with zeros to the widest (padding is masked out)."""
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts])


def serve_shared(
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
