"""A static embedding distilled locally from the model (``embedding.backend = "static"``): a table of one vector per
word piece, and a query's vector the weighted mean of its pieces' vectors.

The recipe is model2vec's (Tulkens and van Dongen, 2024), without its dimension reduction: each word piece's
vector is what the model itself makes of that piece alone, ``[CLS] piece [SEP]``, mean-pooled; the table is
centred on the vocabulary's mean (the direction every piece shares says nothing about a query); and a piece
weighs ``a / (a + p)`` (smooth inverse frequency) with its probability ``p`` taken from Zipf's law on its rank in
the vocabulary, which word-piece vocabularies order by frequency. Distilling runs the model over the vocabulary
once (about half a minute on two CPUs) and needs PyTorch; serving needs only the tokenizer and numpy, and costs
tens of microseconds a query instead of milliseconds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.build import build_dir, built, fingerprint
from bandit_router.embedding.folder import MeanPooledModel
from bandit_router.embedding.model import Embedder, IntArray
from bandit_router.embedding.types import FloatArray

RECIPE = "static-v1: [CLS] piece [SEP] mean-pooled, centred, SIF a=1e-4 on Zipf rank"
SIF_A = 1e-4
# Pieces through the model at once while distilling.
DISTILL_BATCH = 1024


def zipf_weights(size: int, a: float = SIF_A) -> npt.NDArray[np.float32]:
    """Smooth inverse frequency weights, ``a / (a + p)``, for pieces whose probability falls as 1 / rank.

    >>> w = zipf_weights(30522)
    >>> bool(w[0] < w[1000] < w[-1] < 1.0)
    True
    """
    p = 1.0 / np.arange(1, size + 1, dtype=np.float64)
    p /= p.sum()
    return (a / (a + p)).astype(np.float32)


def distill(config: EmbeddingConfig, out: Path) -> None:
    """The static table of ``config.model``, written to ``out`` (npz): the centred table in float16, each piece's
    weight (0 for the special pieces the tokenizer adds), and the vector of a query with no pieces."""
    from bandit_router.embedding.model import TorchEmbedder

    model = TorchEmbedder(dataclasses.replace(config, backend="torch", dtype="float32"))
    facts = MeanPooledModel.read(config)
    size = facts.tokenizer.vocab_size
    prefix, suffix = model.tokens.prefix, model.tokens.suffix
    table = np.zeros((size, model.dimension), np.float32)
    for start in range(0, size, DISTILL_BATCH):
        pieces = np.arange(start, min(size, start + DISTILL_BATCH), dtype=np.int64)[:, None]
        ids = np.hstack([np.tile(prefix, (len(pieces), 1)), pieces, np.tile(suffix, (len(pieces), 1))]).astype(np.int64)
        table[start : start + len(pieces)] = model.forward(ids, np.ones_like(ids))
    empty_ids = np.array([prefix + suffix], np.int64)
    mean = table.mean(axis=0)
    empty = model.forward(empty_ids, np.ones_like(empty_ids))[0] - mean
    weights = zipf_weights(size)
    special = {*prefix, *suffix, facts.tokenizer.pad_token_id}
    weights[sorted(special)] = 0.0
    with open(out, "wb") as f:
        np.savez(f, table=(table - mean).astype(np.float16), weights=weights, empty=empty / np.linalg.norm(empty))


class StaticEmbedder(Embedder):
    """The static table of the configured model; built on first use into ``embedding.build_dir``."""

    inline = True

    def __init__(self, config: EmbeddingConfig) -> None:
        facts = MeanPooledModel.read(config)
        path = build_dir(config) / f"static-{fingerprint(facts.path, RECIPE)}.npz"
        built(path, lambda out: distill(config, out), f"the static embedding of {facts.path}")
        with np.load(path) as saved:
            self._table = saved["table"]
            self._weights = saved["weights"]
            self._empty = saved["empty"].astype(np.float32)
        self.tokens = facts.tokens
        self.dimension = int(self._table.shape[1])
        self.model_name = f"{facts.path}#static:{path.stem.split('-', 1)[1]}"

    def forward(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        weights = self._weights[input_ids] * attention_mask.astype(np.float32)
        summed = np.einsum("bl,bld->bd", weights, self._table[input_ids].astype(np.float32))
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        # A query of no word pieces (or only unweighted ones) gets the model's vector of the empty query.
        vectors: FloatArray = np.where(norms > 0, summed / np.maximum(norms, 1e-12), self._empty).astype(np.float32)
        return vectors
