"""The embedder: offline model, head-and-tail truncation of long queries, and shared batches."""

from __future__ import annotations

import asyncio

import numpy as np

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding import BatchingEmbedder, Embedder

SHOTS = "".join(f"Q: What is {i} plus {i}? A: {2 * i}\n" for i in range(120))


def test_short_query_is_read_whole(embedder: Embedder) -> None:
    text, count, cut = embedder.clip("Write a poem about the sea.")
    assert (text, cut) == ("Write a poem about the sea.", False)
    assert 0 < count <= embedder.budget


def test_long_few_shot_prompt_keeps_its_head_and_its_final_question(embedder: Embedder) -> None:
    query = SHOTS + "Q: Write a sonnet about the autumn rain."
    text, count, cut = embedder.clip(query)
    assert cut and count > embedder.budget
    assert text.startswith("Q: What is 0 plus 0?")
    assert text.endswith("Q: Write a sonnet about the autumn rain.")
    assert len(embedder._tokenizer(text, add_special_tokens=False)["input_ids"]) <= embedder.budget + 4


def test_the_final_question_changes_the_embedding_of_a_long_prompt(embedder: Embedder) -> None:
    # Cutting only at the head would make these two identical: the model would never see the question.
    math, poem = embedder.embed([SHOTS + "Q: What is 12 plus 30?", SHOTS + "Q: Write a sonnet about the autumn rain."])
    assert float(math.vector @ poem.vector) < 0.99
    assert abs(float(np.linalg.norm(math.vector)) - 1.0) < 1e-4


async def test_concurrent_requests_share_batches(embedder: Embedder) -> None:
    batcher = BatchingEmbedder(embedder, EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=20))
    try:
        texts = [f"query number {i}" for i in range(32)]
        results = await asyncio.gather(*(batcher.embed(t) for t in texts))
        assert batcher.items == 32
        assert batcher.batches < 32
        alone = embedder.embed([texts[5]])[0]
        assert np.allclose(results[5].vector, alone.vector, atol=1e-4)
    finally:
        await batcher.close()
