"""The task of a query without a hint: the task whose prototype phrasings (``data/task_prototypes.toml``) are
nearest by embedding."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from importlib import resources

import numpy as np

from bandit_router.embedding.types import Embedded, FloatArray


def task_prototypes() -> dict[str, tuple[str, ...]]:
    """A few phrasings per task, as shipped."""
    text = resources.files("bandit_router.data").joinpath("task_prototypes.toml").read_text(encoding="utf-8")
    return {task: tuple(phrasings) for task, phrasings in tomllib.loads(text).items()}


class TaskInferrer:
    """Infers a task for queries without a hint: the task whose prototype embeddings are nearest."""

    def __init__(self, embed: Callable[[Sequence[str]], list[Embedded]]) -> None:
        task_to_phrasings = task_prototypes()
        names: list[str] = []
        texts: list[str] = []
        for name, phrasings in task_to_phrasings.items():
            names.extend([name] * len(phrasings))
            texts.extend(phrasings)
        vectors = np.stack([e.vector for e in embed(texts)])
        self.tasks = tuple(task_to_phrasings)
        # One unit-length mean vector per task.
        means = np.stack([vectors[[i for i, n in enumerate(names) if n == t]].mean(axis=0) for t in self.tasks])
        self._means = means / np.linalg.norm(means, axis=1, keepdims=True)

    def infer(self, vector: FloatArray) -> str:
        return self.tasks[int(np.argmax(self._means @ vector))]
