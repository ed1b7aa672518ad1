"""What the client refuses before sending anything: a URL without a scheme, numbers JSON cannot carry; and what the
package's top level offers without the server installed."""

from __future__ import annotations

import math
from typing import Any

import pytest

import bandit_router
from bandit_router import client


def test_a_url_without_a_scheme_is_refused_at_once_with_the_fix() -> None:
    with pytest.raises(
        ValueError, match=r"base_url must start with http:// or https:// \(e.g. http://127.0.0.1:8000\)"
    ):
        bandit_router.Client("127.0.0.1:8000")


@pytest.mark.parametrize(
    ("quality", "figures", "match"),
    [
        (math.nan, {}, r"quality must be a finite number, got nan"),
        (0.5, {"latency_ms": math.inf}, r"latency_ms must be a finite number, got inf"),
        (0.5, {"energy_joules": math.nan}, r"energy_joules must be a finite number, got nan"),
    ],
)
def test_a_reward_json_cannot_carry_is_refused_naming_the_field(
    quality: float, figures: dict[str, Any], match: str
) -> None:
    # Port 9 (discard) is never asked: the reward is refused before anything is sent.
    with bandit_router.Client("http://127.0.0.1:9", retries=0) as router, pytest.raises(ValueError, match=match):
        router.reward("some-decision", quality, **figures)


def test_the_top_level_has_the_clients_errors_and_a_version() -> None:
    assert bandit_router.AlreadyRewarded is client.AlreadyRewarded
    assert bandit_router.Unavailable is client.Unavailable
    assert bandit_router.__version__ and bandit_router.__version__ != "0+unknown"
    assert set(bandit_router.__all__) >= set(client.__all__)
