"""Embeddings as the rest of the router sees them, and what it needs of an embedder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Embedded:
    """One query's unit-length embedding and the facts about its text the tokenizer found."""

    vector: FloatArray
    token_count: int
    truncated: bool


class Embeds(Protocol):
    def embed(self, texts: Sequence[str]) -> list[Embedded]: ...


class TextEmbedder(Embeds, Protocol):
    """What the router needs of an embedder: :class:`Embedder` in this process, or :class:`EmbedderPool`.

    ``lanes`` is how many batches it can embed at once (calls from that many threads).
    """

    device: str
    dimension: int
    model_name: str
    lanes: int

    def close(self) -> None: ...
