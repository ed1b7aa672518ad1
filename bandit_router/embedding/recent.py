"""The serving side's cache of recent embeddings: repeated prompts, retries and shared system prompts are embedded
once per process.

Keyed by the text with its whitespace collapsed and its Unicode composed (NFC): the tokenizer splits on whitespace,
so the model gives such texts the same vector. Least recently used out first, bounded in bytes
(``embedding.cache_bytes``; 0 turns it off). Used on the router's event loop only, so it takes no lock.

Examples
--------
>>> import numpy as np
>>> from bandit_router.embedding.types import Embedded
>>> recent = RecentEmbeddings(max_bytes=3000)
>>> recent.put("What is  2 + 2?", Embedded(np.ones(384, dtype=np.float32), 7, False))
>>> recent.get(" What is 2 + 2? ").token_count, recent.hits, recent.misses
(7, 1, 0)
>>> recent.put("Another question.", Embedded(np.ones(384, dtype=np.float32), 3, False))
>>> recent.get("What is 2 + 2?") is None, recent.entries  # the oldest went, to keep within 3,000 bytes
(True, 1)
"""

from __future__ import annotations

import collections
import hashlib
import unicodedata
from collections.abc import Callable

from bandit_router.embedding.types import Embedded

# What an entry holds beside its vector: the key, the Embedded object, the dictionary's slot (bytes, about).
ENTRY_OVERHEAD = 240


def normalised(text: str) -> str:
    """The text as the cache keys it: Unicode composed, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class RecentEmbeddings:
    """Embeddings by normalised text, at most ``max_bytes`` of them; ``on_lookup`` is told each hit (True) and
    miss (False), for the metrics."""

    def __init__(self, max_bytes: int, on_lookup: Callable[[bool], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._on_lookup = on_lookup
        self._by_key: collections.OrderedDict[bytes, Embedded] = collections.OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(normalised(text).encode(), digest_size=16).digest()

    @staticmethod
    def _size(embedded: Embedded) -> int:
        return int(embedded.vector.nbytes) + ENTRY_OVERHEAD

    @property
    def entries(self) -> int:
        return len(self._by_key)

    def get(self, text: str) -> Embedded | None:
        key = self._key(text)
        found = self._by_key.get(key)
        if found is not None:
            self._by_key.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        if self._on_lookup is not None:
            self._on_lookup(found is not None)
        return found

    def put(self, text: str, embedded: Embedded) -> None:
        size = self._size(embedded)
        if size > self.max_bytes:
            return
        # Shared by every request that hits it: nothing may change it in place.
        embedded.vector.setflags(write=False)
        key = self._key(text)
        old = self._by_key.pop(key, None)
        if old is not None:
            self.bytes -= self._size(old)
        self._by_key[key] = embedded
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._by_key.popitem(last=False)
            self.bytes -= self._size(evicted)
