"""The embedding cache gives the model's own vectors, embeds each text once, and survives in its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bandit_router.embedding.cache import CachingEmbedder
from bandit_router.embedding.model import Embedder


class Counting:
    """The real embedder, counting the texts it is asked for."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.device, self.dimension, self.model_name, self.lanes = (
            inner.device,
            inner.dimension,
            inner.model_name,
            inner.lanes,
        )
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> list:  # type: ignore[type-arg]
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def close(self) -> None:
        pass


def test_cached_vectors_are_the_models_and_each_text_is_embedded_once(embedder: Embedder, tmp_path: Path) -> None:
    counting = Counting(embedder)
    cache = CachingEmbedder(counting, tmp_path / "cache.sqlite", head_tokens=64)  # type: ignore[arg-type]
    texts = ["What is 2 + 2?", "Write a haiku about rain.", "What is 2 + 2?"]
    first = cache.embed(texts)
    assert counting.texts == texts[:2]  # the repeat within one call is embedded once too
    direct = embedder.embed(texts)
    for a, b in zip(first, direct, strict=True):
        assert np.allclose(a.vector, b.vector, atol=1e-6) and a.token_count == b.token_count
    again = cache.embed(["Write a haiku about rain.", "A new one."])
    assert counting.texts == [*texts[:2], "A new one."] and (cache.hits, cache.misses) == (2, 3)
    assert np.array_equal(again[0].vector, first[1].vector)
    cache.close()

    # A new process finds them in the file.
    reopened = Counting(embedder)
    cache = CachingEmbedder(reopened, tmp_path / "cache.sqlite", head_tokens=64)  # type: ignore[arg-type]
    assert np.array_equal(cache.embed(["What is 2 + 2?"])[0].vector, first[0].vector) and reopened.texts == []
    # Another truncation is another embedding.
    other = CachingEmbedder(reopened, tmp_path / "cache.sqlite", head_tokens=8)  # type: ignore[arg-type]
    other.embed(["What is 2 + 2?"])
    assert reopened.texts == ["What is 2 + 2?"]
