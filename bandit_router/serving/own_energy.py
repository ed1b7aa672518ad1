"""The router's own GPU energy: NVML samples over its embedding batches, and the energy agent it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bandit_router.config import Config
from bandit_router.domain.reward import Figure, Source
from bandit_router.energy.attribution import BusyWindows
from bandit_router.energy.nvml import NvmlSource
from bandit_router.energy.samples import EnergyAgent
from bandit_router.store.redis_store import Store


class OwnEnergy:
    """Meters the router's embedding batches when it embeds on a GPU, and samples the node's GPUs (those the
    catalog places models on, and its own) for the decisions' attribution while NVML is there."""

    def __init__(self, config: Config, store: Store, device: str) -> None:
        self.config = config
        self.store = store
        self.device = device
        self.node = config.energy.node_name
        self.embedding: BusyWindows | None = None
        if device.startswith("cuda"):
            self.embedding = BusyWindows(int(device.partition(":")[2] or 0))
        self.agent: EnergyAgent | None = None
        self._nvml: NvmlSource | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def local_gpus(self) -> list[int]:
        """GPUs of this node that the catalog places models on, or that embed queries."""
        gpus = {g for m in self.config.models if (m.node or self.node) == self.node for g in m.gpus}
        if self.embedding is not None:
            gpus.add(self.embedding.gpu)
        return sorted(gpus)

    async def start(self) -> None:
        gpus: Sequence[int] = self.local_gpus()
        if not self.config.energy.measure or not gpus:
            return
        self._nvml = await asyncio.to_thread(NvmlSource.open, list(gpus))
        if self._nvml is None:
            return
        self.agent = EnergyAgent(
            self._nvml,
            self.store.energy,
            self.node,
            self.config.energy.sample_interval_s,
            retention_s=self.config.reward.wait_time_s + 60,
            wrap_joules=NvmlSource.WRAP_JOULES,
            on_sample=self.on_sample,
        )
        self._task = asyncio.get_running_loop().create_task(self.agent.run(self._stop), name="energy-agent")

    async def close(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
        if self._nvml is not None:
            self._nvml.close()

    def on_batch(self, start: float, end: float, items: int) -> None:
        if self.embedding is not None:
            self.embedding.add_window(start, end, items)

    def on_sample(self, t: float, totals: dict[int, float]) -> None:
        if self.embedding is not None and self.embedding.gpu in totals:
            self.embedding.add_sample(t, totals[self.embedding.gpu])

    def figure(self) -> tuple[Figure, Source | None]:
        """The embedding energy so far, and MEASURED; or 0, UNKNOWN with why it was not measured, and None."""
        if self.embedding is None:
            return Figure(0.0, Source.UNKNOWN, f"not measured: the router embeds on {self.device}"), None
        if self.agent is None:
            return Figure(0.0, Source.UNKNOWN, "not measured: NVML is unavailable on this host"), None
        meter = self.embedding
        basis = (
            f"NVML energy of GPU {meter.gpu} over the embedding batches of {meter.items} queries, idle power "
            f"included; {meter.unmeasured_items} more queries not yet or not covered by samples"
        )
        return Figure(meter.joules, Source.MEASURED, basis), Source.MEASURED
