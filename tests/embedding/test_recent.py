"""The serving side's cache of recent embeddings: a repeated prompt is embedded once, the cache stays within its
bytes, and what it answers is the model's own vector for that text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import Routers, make_config

from bandit_router.domain.requests import RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.embedding.recent import ENTRY_OVERHEAD, RecentEmbeddings, normalised
from bandit_router.embedding.types import Embedded


def vector(value: float) -> Embedded:
    return Embedded(np.full(384, value, dtype=np.float32), 5, False)


ENTRY = 384 * 4 + ENTRY_OVERHEAD


def test_least_recently_used_goes_first_and_the_bytes_stay_within_the_bound() -> None:
    recent = RecentEmbeddings(max_bytes=3 * ENTRY)
    for i in range(3):
        recent.put(f"q{i}", vector(i))
    assert recent.get("q0") is not None  # q0 is now the most recently used
    recent.put("q3", vector(3))
    assert recent.get("q1") is None and all(recent.get(q) is not None for q in ("q0", "q2", "q3"))
    assert recent.entries == 3 and recent.bytes == 3 * ENTRY <= recent.max_bytes
    recent.put("q3", vector(4))  # replaced, not counted twice
    assert recent.bytes == 3 * ENTRY and float(recent.get("q3").vector[0]) == 4.0  # type: ignore[union-attr]
    assert RecentEmbeddings(max_bytes=ENTRY - 1).put("big", vector(1)) is None


def test_a_cached_vector_cannot_be_changed_by_whoever_got_it() -> None:
    recent = RecentEmbeddings(max_bytes=10 * ENTRY)
    recent.put("q", vector(1.0))
    found = recent.get("q")
    assert found is not None
    with pytest.raises(ValueError, match="read-only"):
        found.vector[0] = 2.0


@pytest.mark.parametrize(
    ("one", "other"),
    [("What is  2 + 2?", " What is 2 + 2?\n"), ("Caf\u00e9 menu", "Cafe\u0301 menu"), ("a\tb", "a b")],
)
def test_texts_keyed_alike_get_the_same_vector_from_the_model(embedder: Embedder, one: str, other: str) -> None:
    assert normalised(one) == normalised(other)
    a, b = embedder.embed([one, other])
    assert a.token_count == b.token_count
    np.testing.assert_allclose(a.vector, b.vector, atol=1e-5)


async def test_a_repeated_prompt_is_embedded_once_and_counted_in_the_metrics(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    service = await routers(make_config(tmp_path, redis_url))
    for query in ("Summarise the plot of Hamlet.", "Summarise  the plot of Hamlet. ", "What is 7 * 6?"):
        await service.route(RouteInput(query=query))
    assert service.batcher.items == 2
    await service.refresh_metrics()
    metrics = service.monitor.metrics
    assert metrics.embedding_cache.labels("hit")._value.get() == 1
    assert metrics.embedding_cache.labels("miss")._value.get() == 2
    assert metrics.embedding_cache_hit_ratio._value.get() == pytest.approx(1 / 3)
    off = await routers(make_config(tmp_path / "off", redis_url, embedding={"cache_bytes": 0, "device": "cpu"}))
    for _ in range(2):
        await off.route(RouteInput(query="Summarise the plot of Hamlet."))
    assert off.batcher.items == 2 and off.batcher.recent is None
