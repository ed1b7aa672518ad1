"""A cache of embeddings by (model, truncation, precision, text), in memory and optionally in an SQLite file.

Replays, their baselines and the quality harness embed the same queries many times (every seed, every
trade-off, every baseline); the model gives the same vector each time, so each text is embedded once.
The vectors are the real model's; only the repeat work is saved.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bandit_router.embedding.types import Embedded, TextEmbedder


class CachingEmbedder:
    """Wraps an embedder: texts seen before come from the cache, the rest from the model (one call)."""

    def __init__(self, inner: TextEmbedder, path: str | Path | None = None, head_tokens: int = 0) -> None:
        self.inner = inner
        self.device, self.dimension, self.model_name, self.lanes = (
            inner.device,
            inner.dimension,
            inner.model_name,
            inner.lanes,
        )
        # The vector depends on the model, where a long query is cut, and the precision the model runs in.
        self._salt = f"{inner.model_name}\0{head_tokens}\0{getattr(inner, 'dtype', '')}\0".encode()
        self._memory: dict[bytes, Embedded] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, tokens INTEGER, truncated INTEGER, "
                "vector BLOB)"
            )
        self.hits = 0
        self.misses = 0

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(self._salt + text.encode()).digest()

    def _lookup(self, key: bytes) -> Embedded | None:
        found = self._memory.get(key)
        if found is not None or self._db is None:
            return found
        row = self._db.execute("SELECT tokens, truncated, vector FROM embeddings WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        vector = np.frombuffer(row[2], dtype="<f4").astype(np.float32)
        found = Embedded(vector, int(row[0]), bool(row[1]))
        self._memory[key] = found
        return found

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        keys = [self._key(t) for t in texts]
        with self._lock:
            found = [self._lookup(k) for k in keys]
        # One model call for the texts not cached, each distinct text once.
        unique: dict[bytes, int] = {}
        for i, embedded in enumerate(found):
            if embedded is None:
                unique.setdefault(keys[i], i)
        if unique:
            fresh = self.inner.embed([texts[i] for i in unique.values()])
            with self._lock:
                for key, embedded in zip(unique, fresh, strict=True):
                    self._memory[key] = embedded
                    if self._db is not None:
                        self._db.execute(
                            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                            (
                                key,
                                embedded.token_count,
                                int(embedded.truncated),
                                embedded.vector.astype("<f4").tobytes(),
                            ),
                        )
                if self._db is not None:
                    self._db.commit()
        with self._lock:
            self.misses += len(unique)
            self.hits += len(texts) - len(unique)
            return [self._memory[k] for k in keys]

    def close(self) -> None:
        """Closes the cache file; the wrapped embedder stays its owner's to close."""
        if self._db is not None:
            self._db.close()
            self._db = None
