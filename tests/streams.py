"""Synthetic traffic shared by the tests: replay streams, and plain queries for routers under load."""

from __future__ import annotations

import random

from bandit_router.traffic.format import Outcome, Record

MODELS = ("llama-3.2-3b-instruct", "gemma-2-9b-it", "llama-3.3-70b-instruct")
WORDS = ["river", "mountain", "budget", "invoice", "poem", "python", "theorem", "recipe", "weather", "contract"]
# Each model's quality on every query of a flat stream: gemma best, the 70B second.
FLAT = {"llama-3.2-3b-instruct": 0.3, "gemma-2-9b-it": 0.9, "llama-3.3-70b-instruct": 0.6}


def stream(n: int, seed: int, quality: dict[str, float], tasks: tuple[str, ...] = ("general",)) -> list[Record]:
    """``n`` queries of the given tasks in turn, each model answering every one at its ``quality``."""
    rng = random.Random(seed)
    return [
        Record(
            f"r{i}",
            f"Question {i}: explain the {rng.choice(WORDS)} and the {rng.choice(WORDS)} briefly.",
            tasks[i % len(tasks)],
            {m: Outcome(quality=quality[m], input_tokens=20, output_tokens=50) for m in MODELS},
        )
        for i in range(n)
    ]


def synthetic(n: int, seed: int) -> list[Record]:
    """The 70B model answers hard (long) questions, the small ones easy (short) ones."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        hard = rng.random() < 0.5
        query = f"Prove the following statement in detail, step by step: lemma {i}." if hard else f"What is {i} + 1?"
        quality = {
            "llama-3.2-3b-instruct": 0.0 if hard else 1.0,
            "gemma-2-9b-it": 0.3,
            "llama-3.3-70b-instruct": 1.0 if hard else 0.6,
        }
        outcomes = {m: Outcome(quality=quality[m], input_tokens=20, output_tokens=50, latency_ms=100.0) for m in MODELS}
        records.append(Record(f"r{i}", query, "proof" if hard else "arithmetic", outcomes))
    return records


def questions(n: int, seed: int) -> list[str]:
    """``n`` varied plain queries (no outcomes): load for a router under test."""
    rng = random.Random(seed)
    return [f"Question {i}: explain the {rng.choice(WORDS)} and the {rng.choice(WORDS)} briefly." for i in range(n)]
