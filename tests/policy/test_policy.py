"""The policy: it learns quality per model and context, applies penalties exactly, and its snapshots round-trip."""

from __future__ import annotations

import json

import pytest

from bandit_router.config import FeaturesConfig, PolicyConfig
from bandit_router.policy.vw import SNAPSHOT_MAGIC, Policy, Snapshot, SnapshotError
from bandit_router.policy.vwlines import Choice

MATH, CODE = "|T math", "|T code"
SMALL, LARGE = "|A small", "|A large"


def trained(config: PolicyConfig | None = None) -> Policy:
    """small answers math well and code badly; large the other way round."""
    policy = Policy(config or PolicyConfig(), FeaturesConfig(), dimension=4)
    for _ in range(60):
        policy.learn_quality(MATH, SMALL, 0.9)
        policy.learn_quality(MATH, LARGE, 0.2)
        policy.learn_quality(CODE, SMALL, 0.1)
        policy.learn_quality(CODE, LARGE, 0.8)
    return policy


def test_it_learns_each_models_quality_per_task() -> None:
    policy = trained()
    math, code = policy.qualities(Choice.of(MATH, [SMALL, LARGE])), policy.qualities(Choice.of(CODE, [SMALL, LARGE]))
    assert math == pytest.approx([0.9, 0.2], abs=0.05)
    assert code == pytest.approx([0.1, 0.8], abs=0.05)
    assert policy.pmf(Choice.of(MATH, [SMALL, LARGE]))[0] == pytest.approx(1.0)
    assert policy.pmf(Choice.of(CODE, [SMALL, LARGE]))[1] == pytest.approx(1.0)


def test_a_penalty_never_learned_changes_the_choice_at_once() -> None:
    """Quality is learned, the penalty is applied at decision time: a trade-off the policy never saw
    (here large costs 0.8 of reward more than small) moves code queries to small, whose 0.1 now beats 0.0."""
    policy = trained()
    assert policy.pmf(Choice.of(CODE, [SMALL, LARGE], [0.0, 0.8]))[0] == pytest.approx(1.0)
    # A smaller penalty leaves large ahead.
    assert policy.pmf(Choice.of(CODE, [SMALL, LARGE], [0.0, 0.3]))[1] == pytest.approx(1.0)


def test_untried_models_are_tried_and_the_rest_share_epsilon() -> None:
    policy = Policy(PolicyConfig(epsilon=0.1), FeaturesConfig(), dimension=4)
    # Nothing learned: every model ties, so all lead together.
    assert policy.pmf(Choice.of(MATH, [SMALL, LARGE, "|A third"])) == pytest.approx([1 / 3] * 3)
    for _ in range(40):
        policy.learn_quality(MATH, SMALL, 0.5)
    # small is known to be middling; the untried models' optimism puts them first.
    pmf = policy.pmf(Choice.of(MATH, [SMALL, LARGE, "|A third"]))
    assert pmf[1] == pmf[2] > pmf[0] > 0
    assert sum(pmf) == pytest.approx(1.0)


def test_a_model_that_cannot_win_even_at_perfect_quality_gets_nothing() -> None:
    policy = trained()
    # large would have to answer math better than perfectly to beat small's 0.9 under this penalty.
    pmf = policy.pmf(Choice.of(MATH, [SMALL, LARGE], [0.0, 0.5]))
    assert pmf == [1.0, 0.0]


def test_snapshot_round_trip_keeps_the_policy() -> None:
    policy = trained()
    policy.learned = 240
    policy.pricing.observe("small", "math", 120, 1e-5, 2.0)
    snapshot = policy.snapshot(version=3, stream_id="17-2")
    loaded = Policy(PolicyConfig(), FeaturesConfig(), dimension=4, snapshot=Snapshot.decode(snapshot.encode()))
    assert (loaded.version, loaded.learned, loaded.stream_id) == (3, 240, "17-2")
    choice = Choice.of(MATH, [SMALL, LARGE], [0.0, 0.05])
    assert loaded.qualities(choice) == policy.qualities(choice)
    assert loaded.widths(choice) == policy.widths(choice)
    assert loaded.pricing.to_json() == policy.pricing.to_json()


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


def test_a_snapshot_of_the_earlier_reward_policy_is_refused() -> None:
    import hashlib
    import struct

    header = {"version": 4, "learned": 9, "stream_id": "1-0", "created_at": 0.0, "vw_len": 0, "clusters_len": 0}
    payload = json.dumps(header).encode() + b"\n"
    data = SNAPSHOT_MAGIC + hashlib.sha256(payload).digest() + struct.pack(">Q", len(payload)) + payload
    with pytest.raises(SnapshotError, match="snapshot has format 1, this router reads 2"):
        Snapshot.decode(data)
