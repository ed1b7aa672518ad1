"""The stored records: each round-trips through JSON, reads what older versions wrote, refuses a newer one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandit_router.config import load_config
from bandit_router.domain.pricing import price_outcome
from bandit_router.domain.records import (
    SCHEMA_VERSION,
    Decision,
    LearningEvent,
    PendingDecision,
    RecordError,
    Summary,
    decode_embedding,
    encode_embedding,
)
from bandit_router.domain.reward import resolve_tokens, scalar_reward


def pending() -> PendingDecision:
    model = load_config(env={}).models[0]
    decision = Decision(
        decision_id="t.d1",
        model=model.id,
        probability=0.7,
        pmf=[(model.id, 0.7), ("other", 0.3)],
        policy_version="v3",
        task="math",
        task_source="hint",
        cluster=2,
        estimated_cost_usd=1e-4,
        estimated_energy_joules=12.5,
        energy_weight=0.5,
        cost_weight=0.25,
        expires_at=100.0,
        excluded=["x: max_cost_usd=0 (catalog 1e-05)"],
    )
    return PendingDecision(
        decision=decision,
        request_digest="abc",
        index=0,
        shared="|T math",
        actions=(f"|A {model.id}", "|A other"),
        penalties=(0.2, 0.01),
        model_spec=model,
        query_tokens=9,
        embedding=encode_embedding(np.linspace(-1, 1, 8, dtype=np.float32)),
        metadata={"user": "alice"},
        tenant="t",
        created_at=40.0,
    )


def test_a_pending_decision_and_its_summary_round_trip() -> None:
    p = pending()
    assert PendingDecision.from_json(p.to_json()) == p
    assert Summary.from_json(p.summary.to_json()) == Summary(p.decision, "abc")
    assert json.loads(p.to_json())["schema"] == SCHEMA_VERSION
    assert np.allclose(decode_embedding(p.embedding), np.linspace(-1, 1, 8), atol=1e-3)


def test_a_learning_event_carries_the_reward_at_the_decisions_weights() -> None:
    p = pending()
    config = load_config(env={})
    tokens = resolve_tokens(p.model_spec, 9, 40, p.query_tokens)
    priced = price_outcome(p.model_spec, tokens, reported_cost=0.002)
    event = LearningEvent.of(p, 0.8, 120.0, priced, 50.0, config.reward)
    expected = scalar_reward(0.8, priced.energy.value, 0.002, 0.5, 0.25, config.reward)
    assert event.reward == pytest.approx(expected) and event.reward < 0.8
    assert (event.cost_source, event.output_tokens, event.tenant) == ("reported", 40, "t")
    assert LearningEvent.loads(event.dumps()) == event


def test_records_written_before_the_schema_existed_still_read() -> None:
    raw = json.loads(pending().to_json())
    for key in ("schema", "penalties", "tenant", "request_digest"):
        del raw[key]
    old = PendingDecision.from_json(json.dumps(raw))
    assert old.penalties == (0.0, 0.0) and old.tenant == "" and old.request_digest is None
    event = LearningEvent.of(
        pending(),
        1.0,
        0.0,
        price_outcome(old.model_spec, resolve_tokens(old.model_spec, 0, 0, 9)),
        1.0,
        load_config(env={}).reward,
    )
    legacy = {
        k: v for k, v in event.to_json().items() if k not in ("schema", "catalog_cost_usd", "catalog_energy_joules")
    }
    read = LearningEvent.from_json(legacy)
    assert read.catalog_cost_usd is None and read.catalog_energy_joules is None


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (
            lambda: PendingDecision.from_json(
                json.dumps({**json.loads(pending().to_json()), "schema": SCHEMA_VERSION + 1})
            ),
            "pending decision schema must be an integer <= 1",
        ),
        (
            lambda: Summary.from_json(json.dumps({"schema": "2"})),
            "decision summary schema must be an integer <= 1, got '2'",
        ),
        (lambda: LearningEvent.from_json({"schema": 1, "decision_id": "d"}), "learning event is malformed"),
        (lambda: PendingDecision.from_json(json.dumps({"decision_id": "d"})), "pending decision is malformed"),
    ],
)
def test_a_record_from_a_newer_writer_or_malformed_is_refused_by_name(make: object, what: str) -> None:
    with pytest.raises(RecordError, match=what):
        make()  # type: ignore[operator]
