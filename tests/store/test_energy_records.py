"""Energy records in Redis: samples kept for their retention, and a landing reads each GPU's flights and samples."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bandit_router.store.energy import EnergyRecords


@pytest.fixture
async def records(redis_url: str) -> AsyncIterator[EnergyRecords]:
    client = aioredis.from_url(redis_url)
    yield EnergyRecords(client, f"test-{uuid.uuid4().hex}")
    await client.aclose()


async def test_samples_older_than_the_retention_are_dropped(records: EnergyRecords) -> None:
    for t in (100.0, 150.0, 200.0):
        await records.append_samples("n", t, {0: t * 10, 1: t}, retention_s=60.0)
    await records.take_off("n", [0], "d", 190.0)
    windows = await records.land("n", [0, 1], "d", 190.0, 200.0, wait_time_s=30.0)
    # The start's newest earlier sample (150) and the one after it; 100 fell out of the 60 s retention.
    assert [(w.gpu, w.samples) for w in windows] == [
        (0, [(150.0, 1500.0), (200.0, 2000.0)]),
        (1, [(150.0, 150.0), (200.0, 200.0)]),
    ]


async def test_a_landing_reads_who_else_flew_and_when_they_landed(records: EnergyRecords) -> None:
    await records.append_samples("n", 0.0, {0: 0.0}, retention_s=600.0)
    await records.take_off("n", [0], "early", 1.0)
    await records.take_off("n", [0], "open", 2.0)
    await records.take_off("n", [0], "mine", 3.0)
    await records.land("n", [0], "early", 1.0, 4.0, wait_time_s=30.0)
    (window,) = await records.land("n", [0], "mine", 3.0, 5.0, wait_time_s=30.0)
    assert window.flown == [(1.0, 4.0), (2.0, None), (3.0, 5.0)]
    # Landing twice keeps the first reward time.
    (again,) = await records.land("n", [0], "mine", 3.0, 9.0, wait_time_s=30.0)
    assert (3.0, 5.0) in again.flown
