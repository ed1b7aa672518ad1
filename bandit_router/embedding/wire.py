"""The wire format of embedding workers: batches of embeddings packed for a pipe or a socket."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from bandit_router.embedding.types import Embedded, FloatArray


def shared_socket(folder: str, index: int) -> str:
    """Where shared embedding server ``index`` listens: ``serve --workers`` starts them, its workers connect."""
    return os.path.join(folder, f"embed-{index}.sock")


def pack(out: Sequence[Embedded], dimension: int) -> tuple[FloatArray, list[int], list[bool]]:
    vectors = np.stack([e.vector for e in out]) if out else np.zeros((0, dimension), np.float32)
    return vectors, [e.token_count for e in out], [e.truncated for e in out]


def unpack(kind: str, payload: Any) -> list[Embedded]:
    if kind != "ok":
        raise RuntimeError(f"embedding worker: {payload}")
    vectors, counts, cut = payload
    return [Embedded(vectors[i], counts[i], cut[i]) for i in range(len(counts))]
