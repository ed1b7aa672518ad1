"""Property tests: invariants that hold for any input."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router.config import LimitsConfig, load_config
from bandit_router.domain.requests import TENANT_PREFIX_CHARS, RewardInput, RouteInput
from bandit_router.errors import InvalidArgument
from bandit_router.policy.rule import sample_index

CATALOG = load_config(env={}).models
LIMITS = LimitsConfig()

weights = st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=1, max_size=12).filter(
    lambda w: sum(w) > 0
)


@given(weights=weights, decision_id=st.text(min_size=1, max_size=40), seed=st.integers(0, 2**32))
def test_sampling_only_takes_actions_with_mass(weights: list[float], decision_id: str, seed: int) -> None:
    total = sum(weights)
    pmf = [w / total for w in weights]
    index = sample_index(pmf, decision_id, seed)
    assert 0 <= index < len(pmf) and pmf[index] > 0
    assert sample_index(pmf, decision_id, seed) == index


@settings(max_examples=300)
@given(
    quality=st.one_of(st.none(), st.floats()),
    tokens=st.integers(-(2**63), 2**63 - 1),
    latency=st.floats(),
    energy=st.one_of(st.none(), st.floats()),
    decision_id=st.one_of(
        st.text(max_size=200),
        st.from_regex(r"[a-z0-9]{1,20}\n?", fullmatch=True),
        st.from_regex(r"[a-z]{150,170}", fullmatch=True),
    ),
)
def test_reward_validation_accepts_exactly_the_valid_inputs(
    quality: float | None, tokens: int, latency: float, energy: float | None, decision_id: str
) -> None:
    request = RewardInput(decision_id, quality, tokens, 0, latency, energy)
    valid = (
        bool(decision_id)
        and len(decision_id) <= LIMITS.max_request_id_chars + TENANT_PREFIX_CHARS
        and decision_id[0].isascii()
        and decision_id[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "._:-") for c in decision_id)
        and quality is not None
        and 0 <= quality <= 1
        and 0 <= tokens <= LIMITS.max_tokens
        and math.isfinite(latency)
        and latency >= 0
        and (energy is None or (math.isfinite(energy) and energy >= 0))
    )
    try:
        assert request.validate(LIMITS) == quality
        assert valid
    except InvalidArgument as exc:
        assert not valid, exc
        assert " must " in str(exc) or " is required" in str(exc)


@given(
    query=st.text(max_size=300),
    energy=st.one_of(st.none(), st.floats()),
    candidates=st.lists(st.sampled_from([m.id for m in CATALOG] + ["unknown-model"]), max_size=10),
)
def test_route_validation_never_lets_a_bad_request_through(
    query: str, energy: float | None, candidates: list[str]
) -> None:
    request = RouteInput(query=query, energy_weight=energy, candidates=tuple(candidates))
    try:
        chosen = request.validate(LIMITS, CATALOG)
    except InvalidArgument as exc:
        assert str(exc).split(" ", 1)[0] in {"query", "preferences.energy_weight", "candidates"}
        return
    assert query.strip()
    assert energy is None or (math.isfinite(energy) and energy >= 0)
    assert chosen and {m.id for m in chosen} == (set(candidates) or {m.id for m in CATALOG})
