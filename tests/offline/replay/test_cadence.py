"""The replay's schedule in virtual time: queries at the rate or their timestamps, each reward its answer's time
later, and snapshots where the live learner would take them (every N rewards, or an interval after the last)."""

from __future__ import annotations

import itertools

import pytest

from bandit_router.offline.replay.cadence import PUBLISH, REWARD, ROUTE, Cadence, Op, VirtualClock


def kinds(ops: list[Op]) -> list[tuple[str, int]]:
    return [(op.kind, op.step) for op in ops]


def test_every_query_is_routed_once_and_rewarded_once_after_it() -> None:
    ops = Cadence(rate=3.0, answer_s=1.7).schedule(50)
    routed = [op for op in ops if op.kind == ROUTE]
    rewarded = {op.step: op.at for op in ops if op.kind == REWARD}
    assert [op.step for op in routed] == list(range(50))
    assert [op.at for op in routed] == pytest.approx([i / 3.0 for i in range(50)])
    assert sorted(rewarded) == list(range(50))
    assert all(rewarded[op.step] == pytest.approx(op.at + 1.7) for op in routed)
    assert [op.at for op in ops] == sorted(op.at for op in ops)


def test_snapshots_come_every_n_rewards_when_traffic_is_fast() -> None:
    # 1,000 queries/s: the interval never passes between two rewards, so only the count triggers a snapshot.
    ops = Cadence(rate=1000.0, answer_s=0.5, snapshot_every_events=64, snapshot_interval_s=1.0).schedule(200)
    published = [op.step for op in ops if op.kind == PUBLISH]
    assert published == [64, 128, 192, 200]


def test_snapshots_come_an_interval_apart_when_traffic_is_slow() -> None:
    ops = Cadence(rate=4.0, answer_s=2.0, snapshot_every_events=64, snapshot_interval_s=1.0).schedule(40)
    publishes = [op for op in ops if op.kind == PUBLISH]
    # Each snapshot holds every reward back by its time, and no two are less than the interval apart.
    for op in publishes:
        back = sum(1 for o in ops if o.kind == REWARD and o.at <= op.at)
        assert op.step == back
    gaps = [b.at - a.at for a, b in itertools.pairwise(publishes)]
    assert min(gaps) >= 1.0 - 1e-9
    assert publishes[-1].step == 40
    # A query that arrives at a snapshot's instant is routed by it.
    for op in publishes:
        after = [o for o in ops if o.at == op.at and o.kind == ROUTE]
        assert all(ops.index(o) > ops.index(op) for o in after)


def test_a_reward_waits_for_its_delay_in_queries_and_a_dropped_one_never_comes() -> None:
    ops = Cadence(rate=10.0, answer_s=0.0).schedule(20, dropped=[i == 3 for i in range(20)], reward_delay=5)
    at = {(op.kind, op.step): op.at for op in ops}
    assert (REWARD, 3) not in at
    assert at[(REWARD, 0)] == at[(ROUTE, 5)]
    # At one instant the reward is sent before the query routed then.
    assert kinds(ops).index((REWARD, 0)) < kinds(ops).index((ROUTE, 5))
    assert at[(REWARD, 19)] == at[(ROUTE, 19)]
    assert [op.step for op in ops if op.kind == PUBLISH][-1] == 19


def test_timestamps_set_the_arrivals() -> None:
    stamps = [1000.0, 1000.5, 1003.0, 1003.0, 1010.0]
    ops = Cadence(rate=1.0, answer_s=1.0).schedule(5, timestamps=stamps)
    assert [op.at for op in ops if op.kind == ROUTE] == [0.0, 0.5, 3.0, 3.0, 10.0]
    body = Cadence().to_json(ops, timestamps=True)
    assert body["time"] == "the records' timestamps" and body["virtual_seconds"] >= 10.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"rate": 0.0}, "rate must be a positive number of queries per second, got 0.0"),
        ({"rate": float("inf")}, "rate must be a positive number"),
        ({"answer_s": -1.0}, "answer_s must be a number of seconds >= 0, got -1.0"),
    ],
)
def test_bad_cadence_is_refused(args: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Cadence(**args)


def test_timestamps_must_not_go_back() -> None:
    with pytest.raises(ValueError, match=r"timestamps must not decrease, got 4\.0 at query 2 after 5\.0"):
        Cadence().schedule(3, timestamps=[1.0, 5.0, 4.0])


def test_the_virtual_clock_holds_until_released() -> None:
    clock = VirtualClock(epoch=100.0)
    clock.set(12.5)
    assert clock() == 112.5 == clock()
    clock.release()
    assert clock() >= 112.5
