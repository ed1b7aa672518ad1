"""A Redis Cluster on loopback for the capacity bench: ``masters`` redis-server nodes (the bundled binary), the
slots split evenly, started and stopped together."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis

from bandit_router.store.embedded import redis_executable

SLOTS = 16384


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """``async with LocalCluster(folder, 3) as cluster``: ``cluster.url`` is its ``redis+cluster://`` URL."""

    def __init__(self, folder: Path, masters: int = 3, start_timeout_s: float = 60.0) -> None:
        self.folder = folder
        self.masters = masters
        self.start_timeout_s = start_timeout_s
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    async def __aenter__(self) -> LocalCluster:
        try:
            for i in range(self.masters):
                await self._start_node(self.folder / f"node{i}")
            await self._join()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    async def _start_node(self, folder: Path) -> None:
        """One node on a free port; another port where the chosen one was taken meanwhile (the node exits)."""
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            port = _free_port()
            command = [
                redis_executable(),
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf")),
            ]
            process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if await self._answers(process, port):
                self._processes.append(process)
                self.ports.append(port)
                return
        raise RuntimeError(f"a cluster node in {folder} exited at once five times (ports taken?)")

    async def _answers(self, process: subprocess.Popen[bytes], port: int) -> bool:
        client = aioredis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while process.poll() is None:
                try:
                    await client.ping()
                    return True
                except (OSError, aioredis.ConnectionError):
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"redis-server on {port} did not answer within {self.start_timeout_s} s"
                        ) from None
                    await asyncio.sleep(0.05)
            return False
        finally:
            await client.aclose()

    async def _join(self) -> None:
        """Gives each node its share of the slots, introduces it to the first, and waits until every node says the
        cluster is up."""
        clients = [aioredis.Redis(port=p, decode_responses=True) for p in self.ports]
        try:
            for i, client in enumerate(clients):
                share = range(i * SLOTS // self.masters, (i + 1) * SLOTS // self.masters)
                await client.execute_command("CLUSTER", "ADDSLOTS", *share)  # type: ignore[no-untyped-call]
                if i:
                    await client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + self.start_timeout_s
            for client in clients:
                while "cluster_state:ok" not in await client.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"the {self.masters}-node cluster did not come up in {self.start_timeout_s} s"
                        )
                    await asyncio.sleep(0.05)
        finally:
            for client in clients:
                await client.aclose()

    async def stats(self) -> dict[str, float]:
        """Commands run (by name, and ``total``) and CPU seconds used, summed over the nodes."""
        totals: dict[str, float] = {"total": 0.0, "cpu_s": 0.0}
        for port in self.ports:
            client = aioredis.Redis(port=port, decode_responses=True)
            try:
                for name, entry in (await client.info("commandstats")).items():
                    command = name.removeprefix("cmdstat_")
                    totals[command] = totals.get(command, 0.0) + entry["calls"]
                    totals["total"] += entry["calls"]
                cpu = await client.info("cpu")
                totals["cpu_s"] += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
            finally:
                await client.aclose()
        return totals

    def stop(self) -> None:
        for process in self._processes:
            process.kill()
        for process in self._processes:
            process.wait(timeout=30)
        self._processes.clear()
