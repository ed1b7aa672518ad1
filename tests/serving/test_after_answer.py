"""The gateway's metered record and pin, written after the answer: a Reward, the next turn and a stop wait for them."""

from __future__ import annotations

import asyncio

import pytest

from bandit_router.domain.metered import Metered
from bandit_router.domain.records import Decision
from bandit_router.serving.after_answer import AfterAnswer, Pin

RECORD = Metered("m", 10, 20, 5.0, None)


class GatedStore:
    """A write that lands only when the test opens the gate, so "in flight" lasts as long as the test needs."""

    def __init__(self, fail: bool = False) -> None:
        self.gate = asyncio.Event()
        self.written: dict[str, Metered | Decision] = {}
        self.fail = fail

    async def put(self, decision_id: str, metered: Metered | None, pin: Pin | None) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("Redis went away")
        if metered is not None:
            self.written[decision_id] = metered
        if pin is not None:
            self.written[pin[0]] = pin[1]


async def test_a_reward_waits_for_the_write_in_flight_for_its_decision() -> None:
    store = GatedStore()
    after = AfterAnswer(store.put)
    after.keep("d1", RECORD)
    waiting = asyncio.create_task(after.settled("d1"))
    other = asyncio.create_task(after.settled("d2"))  # nothing in flight for it: no wait
    await asyncio.wait_for(other, 30)
    assert not waiting.done() and len(after) == 1
    store.gate.set()
    await asyncio.wait_for(waiting, 30)
    assert store.written == {"d1": RECORD} and len(after) == 0


async def test_a_failed_write_is_logged_and_releases_its_reward(caplog: pytest.LogCaptureFixture) -> None:
    store = GatedStore(fail=True)
    after = AfterAnswer(store.put)
    after.keep("d1", RECORD)
    store.gate.set()
    await asyncio.wait_for(after.settled("d1"), 30)
    assert len(after) == 0 and store.written == {}
    assert "could not keep what the call of d1 measured, nor its conversation's pin" in caplog.text


async def test_a_stop_waits_for_every_write_in_flight() -> None:
    store = GatedStore()
    after = AfterAnswer(store.put)
    for i in range(3):
        after.keep(f"d{i}", RECORD)
    closing = asyncio.create_task(after.close())
    await asyncio.sleep(0)
    assert not closing.done()
    store.gate.set()
    await asyncio.wait_for(closing, 30)
    assert sorted(store.written) == ["d0", "d1", "d2"]


async def test_a_conversations_next_turn_waits_for_its_pin_and_nothing_is_written_for_nothing() -> None:
    store = GatedStore()
    after = AfterAnswer(store.put)
    decision = Decision("d1", "m", 1.0, [("m", 1.0)], "v1", "qa", "hint", 0, 0.0, 0.0, 0.1, 0.1, 0.0, [])
    after.keep("d0", None)  # a sticky turn with nothing to keep: no write at all
    assert len(after) == 0
    after.keep("d1", RECORD, ("conversation-1", decision))
    assert len(after) == 1  # one write for both
    turn, reward = asyncio.create_task(after.settled("conversation-1")), asyncio.create_task(after.settled("d1"))
    await asyncio.sleep(0)
    assert not turn.done() and not reward.done()
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(turn, reward), 30)
    assert store.written == {"d1": RECORD, "conversation-1": decision}
