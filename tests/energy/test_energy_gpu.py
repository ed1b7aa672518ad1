"""On a real GPU: NVML's energy counter against sampled power, and measured energy through the service.

Skipped where there is no CUDA GPU with NVML. Figures are printed (run with ``-s``) for the record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time
from pathlib import Path

import pytest
from helpers import Routers, make_config

from bandit_router.config import load_config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.domain.reward import Source
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.model import Embedder
from bandit_router.energy.nvml import NvmlSource

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

QUERIES = [
    f"Summarize the causes of event number {i} in the history of {t}." for i in range(64) for t in ("Rome", "Peru")
]


@pytest.fixture(scope="module")
def gpu_embedder() -> Embedder:
    return load_embedder(dataclasses.replace(load_config().embedding, backend="torch", device="cuda:0"))


@pytest.fixture(scope="module")
def nvml() -> NvmlSource:
    source = NvmlSource.open([0])
    if source is None:
        pytest.skip("NVML is unavailable")
    return source


def keep_busy(embedder: Embedder, seconds: float) -> int:
    batches = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        embedder.embed(QUERIES)
        batches += 1
    return batches


def test_nvml_energy_counter_agrees_with_average_power_times_time(gpu_embedder: Embedder, nvml: NvmlSource) -> None:
    powers: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            powers.append(nvml.power_watts(0))

    sampler = threading.Thread(target=sample)
    before, started = nvml.read()[0], time.monotonic()
    sampler.start()
    batches = keep_busy(gpu_embedder, 4.0)
    stop.set()
    sampler.join()
    after, elapsed = nvml.read()[0], time.monotonic() - started
    counted = after - before
    integrated = statistics.fmean(powers) * elapsed
    print(
        f"\nGPU embedding for {elapsed:.2f} s ({batches} batches of {len(QUERIES)}): NVML counter {counted:.1f} J, "
        f"mean of {len(powers)} power samples {statistics.fmean(powers):.1f} W x time = {integrated:.1f} J, "
        f"ratio {counted / integrated:.3f}"
    )
    assert counted > 0
    assert abs(counted - integrated) <= 0.2 * integrated


async def test_decisions_and_the_routers_embedding_are_measured_on_the_gpu(
    gpu_embedder: Embedder, nvml: NvmlSource, redis_url: str, tmp_path: Path, routers: Routers
) -> None:
    base = make_config(tmp_path, redis_url)
    models = tuple(dataclasses.replace(m, gpus=(0,)) if m.id == "gemma-2-9b-it" else m for m in base.models)
    config = base.replace(models=models, embedding={"device": "cuda:0"}, energy={"sample_interval_s": 0.1})
    service = await routers(config, embedder=gpu_embedder)
    try:
        assert service.agent is not None
        await asyncio.sleep(0.3)
        decision = await service.route(RouteInput(query="Write a poem about the sea", candidates=("gemma-2-9b-it",)))
        before = nvml.read()[0]
        # The router's own batches keep the GPU busy while the decision is in flight.
        await asyncio.gather(*(service.batcher.embed(q) for q in QUERIES * 8))
        await asyncio.to_thread(keep_busy, gpu_embedder, 2.0)
        drawn = nvml.read()[0] - before
        await asyncio.sleep(0.25)
        outcome = await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
        stats = service.stats()
        print(
            f"\ndecision on GPU 0: {outcome.energy.value:.1f} J measured ({outcome.energy.basis}); the counter moved "
            f"{drawn:.1f} J over the busy part of its window. Router embedding: {stats.embedding_energy.value:.2f} J "
            f"over {stats.queries_embedded} queries"
        )
        assert outcome.energy.source is Source.MEASURED
        # The window holds the busy stretch plus a few idle tenths of a second around it.
        assert 0.8 * drawn <= outcome.energy.value <= 1.5 * drawn
        assert stats.embedding_energy_source is Source.MEASURED
        assert stats.embedding_energy.value > 0
    finally:
        await service.close()
