"""``bandit-router energy-agent``: publishes a GPU node's energy counters for routers elsewhere to attribute."""

from __future__ import annotations

import asyncio
import logging
import sys

from bandit_router.config import load_config
from bandit_router.energy.nvml import NvmlSource
from bandit_router.energy.samples import EnergyAgent
from bandit_router.store.embedded import connect, redacted
from bandit_router.store.energy import EnergyRecords

log = logging.getLogger(__name__)


async def run_agent(
    config_path: str | None, node: str | None, gpus: list[int] | None, interval: float | None, stop: asyncio.Event
) -> int:
    """Publishes until ``stop`` is set; 0, or an exit status with the reason printed."""
    config = load_config(config_path)
    if not config.redis.url:
        print("error: energy-agent needs the routers' Redis: set REDIS_URL or redis.url", file=sys.stderr)
        return 2
    source = await asyncio.to_thread(NvmlSource.open, gpus)
    if source is None:
        print("error: NVML is unavailable on this host, so there is nothing to publish", file=sys.stderr)
        return 1
    name = node or config.energy.node_name
    try:
        client, _ = await connect(config.redis.url, config.server.data_path)
    except BaseException:
        source.close()
        raise
    agent = EnergyAgent(
        source,
        EnergyRecords(client, config.redis.key_prefix),
        name,
        interval or config.energy.sample_interval_s,
        retention_s=config.reward.wait_time_s + 60,
        wrap_joules=NvmlSource.WRAP_JOULES,
    )
    log.info("energy agent for node %r publishing to %s every %g s", name, redacted(config.redis.url), agent.interval_s)
    try:
        await agent.run(stop)
    finally:
        source.close()
        await client.aclose()
    return 0
