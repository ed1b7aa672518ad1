"""The gateway's metered record, written after the answer: a Reward and a stop both wait for the write in flight."""

from __future__ import annotations

import asyncio

import pytest

from bandit_router.domain.metered import Metered
from bandit_router.serving.metering import Metering

RECORD = Metered("m", 10, 20, 5.0, None)


class GatedStore:
    """A write that lands only when the test opens the gate, so "in flight" lasts as long as the test needs."""

    def __init__(self, fail: bool = False) -> None:
        self.gate = asyncio.Event()
        self.written: dict[str, Metered] = {}
        self.fail = fail

    async def put(self, decision_id: str, metered: Metered) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("Redis went away")
        self.written[decision_id] = metered


async def test_a_reward_waits_for_the_write_in_flight_for_its_decision() -> None:
    store = GatedStore()
    metering = Metering(store.put)
    metering.keep("d1", RECORD)
    waiting = asyncio.create_task(metering.settled("d1"))
    other = asyncio.create_task(metering.settled("d2"))  # nothing in flight for it: no wait
    await asyncio.wait_for(other, 30)
    assert not waiting.done() and len(metering) == 1
    store.gate.set()
    await asyncio.wait_for(waiting, 30)
    assert store.written == {"d1": RECORD} and len(metering) == 0


async def test_a_failed_write_is_logged_and_releases_its_reward(caplog: pytest.LogCaptureFixture) -> None:
    store = GatedStore(fail=True)
    metering = Metering(store.put)
    metering.keep("d1", RECORD)
    store.gate.set()
    await asyncio.wait_for(metering.settled("d1"), 30)
    assert len(metering) == 0 and store.written == {}
    assert "could not keep what the call of d1 measured" in caplog.text


async def test_a_stop_waits_for_every_write_in_flight() -> None:
    store = GatedStore()
    metering = Metering(store.put)
    for i in range(3):
        metering.keep(f"d{i}", RECORD)
    closing = asyncio.create_task(metering.close())
    await asyncio.sleep(0)
    assert not closing.done()
    store.gate.set()
    await asyncio.wait_for(closing, 30)
    assert sorted(store.written) == ["d0", "d1", "d2"]
