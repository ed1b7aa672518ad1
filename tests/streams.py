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


def two_kinds(n: int, seed: int) -> list[Record]:
    """Math and prose queries in turn, each answered well (0.95) by its own specialist and badly (0.15) by the other:
    always one specialist earns about 0.55, sending each kind to its specialist about 0.95."""
    rng = random.Random(seed)
    math_model, prose_model = MODELS[0], MODELS[1]
    records = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(2, 999), rng.randint(2, 99)
            query = rng.choice([f"What is {a} times {b}?", f"Compute {a} + {b} * 3.", f"Solve for x: {b}x = {a}."])
            task, good = "math", math_model
        else:
            topic = rng.choice(["autumn", "the sea", "a lost key", "friendship", "a city at night", "rain"])
            kinds = ["Write a short poem about {}.", "Describe {} in three sentences.", "Tell a story about {}."]
            query = rng.choice(kinds).format(topic)
            task, good = "prose", prose_model
        outcomes = {
            m: Outcome(quality=(0.95 if m == good else 0.15) + rng.uniform(-0.05, 0.05), input_tokens=20,
                       output_tokens=100)
            for m in (math_model, prose_model)
        }  # fmt: skip
        records.append(Record(f"q{i}", query, task, outcomes))
    return records
