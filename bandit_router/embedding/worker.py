"""An embedder in a child process of its own, called over a pipe, restarted when it dies."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.shared import serve_shared
from bandit_router.embedding.types import Embedded
from bandit_router.embedding.wire import pack, unpack

log = logging.getLogger(__name__)


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
            main = f"from bandit_router.embedding.worker import _worker_main; {call}"
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
        return unpack(kind, payload)

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


def _worker_main(fd: int, serve_at: str = "") -> None:
    """The embedding worker's main: answers batches of texts until told to stop or the router is gone.

    With ``serve_at`` it answers the clients that connect there instead (see :func:`serve_shared`).
    """
    # Ctrl-C reaches the whole process group; the router decides when its worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = multiprocessing.connection.Connection(fd)
    config, threads = conn.recv()
    try:
        embedder = load_embedder(config)
        embedder.set_threads(threads)
        listener = multiprocessing.connection.Listener(serve_at, family="AF_UNIX") if serve_at else None
    except Exception as exc:  # reported to the router, which fails to start with it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    facts = (embedder.device, embedder.dimension, embedder.model_name)
    conn.send(("ready", facts))
    if listener is not None:
        serve_shared(conn, listener, embedder, facts, config.max_batch_size)
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
            embedder.set_threads(threads)
            conn.send(("ok", pack(embedder.embed(texts), embedder.dimension)))
        except Exception as exc:  # a failed batch fails its callers, never the worker
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
