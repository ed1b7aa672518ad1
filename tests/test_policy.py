"""Snapshots: round trip, and detection of truncated or corrupt ones."""

from __future__ import annotations

import pytest

from bandit_router.config import DEFAULT_VW_ARGS, FeaturesConfig
from bandit_router.features import labelled
from bandit_router.policy import Policy, Snapshot, SnapshotError

SHARED = "shared |T math |K none |P energy:0 cost:0 const"
ACTIONS = ["|A small |M params:0.1", "|A large |M params:0.9"]


def trained() -> Policy:
    policy = Policy(DEFAULT_VW_ARGS, FeaturesConfig(), dimension=4)
    for _ in range(50):
        policy.learn_one(SHARED, [labelled(ACTIONS[0], -1.0, 0.5), ACTIONS[1]])
        policy.learn_one(SHARED, [ACTIONS[0], labelled(ACTIONS[1], 0.0, 0.5)])
    return policy


def test_snapshot_round_trip_keeps_the_policy() -> None:
    policy = trained()
    snapshot = policy.snapshot(version=3, stream_id="17-2")
    loaded = Policy(DEFAULT_VW_ARGS, FeaturesConfig(), dimension=4, snapshot=Snapshot.decode(snapshot.encode()))
    assert (loaded.version, loaded.learned, loaded.stream_id) == (3, 100, "17-2")
    assert loaded.pmf(SHARED, ACTIONS) == policy.pmf(SHARED, ACTIONS)
    assert policy.pmf(SHARED, ACTIONS)[0] > 0.9


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b[:-5], "snapshot is .* bytes long, its header says"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "snapshot checksum does not match"),
        (lambda b: b"garbage" + b, "snapshot does not start with the snapshot header"),
        (lambda b: b[:10], "snapshot does not start with the snapshot header"),
    ],
)
def test_damaged_snapshot_is_detected(damage: object, match: str) -> None:
    data = trained().snapshot(version=1, stream_id="1-0").encode()
    with pytest.raises(SnapshotError, match=match):
        Snapshot.decode(damage(data))  # type: ignore[operator]
