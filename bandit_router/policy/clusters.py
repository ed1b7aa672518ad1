"""Query clusters: online spherical k-means over the embeddings, and its snapshot format."""

from __future__ import annotations

import io
import struct
import threading

import numpy as np

from bandit_router.config import FeaturesConfig
from bandit_router.embedding.types import FloatArray

_CLUSTERS_MAGIC = b"BRCLU1\n\0"
# Magic, then the number of centroids and their dimension.
_CLUSTERS_HEADER = struct.Struct("<8sQQ")
# Old .npz clusters are read one at a time (see Clusterer.to_bytes).
_NPZ_LOCK = threading.Lock()


class Clusterer:
    """Online spherical k-means: a query joins its nearest centroid, or opens a new one while there is
    room and nothing is similar enough. Centroids drift with a running mean capped at ``horizon``."""

    def __init__(self, config: FeaturesConfig, dimension: int, horizon: int = 1000) -> None:
        self.max_clusters = config.max_clusters
        self.threshold = config.cluster_threshold
        self.horizon = horizon
        self.centroids = np.zeros((0, dimension), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.int64)

    def assign(self, vector: FloatArray) -> int:
        """The cluster the policy sees for this query; -1 while there are none."""
        if len(self.centroids) == 0:
            return -1
        return int(np.argmax(self.centroids @ vector))

    def learn_one(self, vector: FloatArray) -> int:
        if len(self.centroids):
            similarities = self.centroids @ vector
            best = int(np.argmax(similarities))
            if similarities[best] >= self.threshold or len(self.centroids) >= self.max_clusters:
                self.counts[best] += 1
                step = 1.0 / min(int(self.counts[best]), self.horizon)
                moved = self.centroids[best] + step * (vector - self.centroids[best])
                self.centroids[best] = moved / max(float(np.linalg.norm(moved)), 1e-12)
                return best
        self.centroids = np.vstack([self.centroids, vector[None, :]]).astype(np.float32)
        self.counts = np.append(self.counts, 1)
        return len(self.centroids) - 1

    def to_bytes(self) -> bytes:
        """The centroids and counts as raw little-endian arrays behind a fixed header.

        Not NumPy's .npz: reading one parses its header with ``ast.literal_eval``, and CPython 3.11's AST
        constructor keeps one recursion counter for all threads, so two replicas loading snapshots on two
        threads at once failed with "SystemError: AST constructor recursion depth mismatch"."""
        rows, dimension = self.centroids.shape
        header = _CLUSTERS_HEADER.pack(_CLUSTERS_MAGIC, rows, dimension)
        return header + self.centroids.astype("<f4").tobytes() + self.counts.astype("<i8").tobytes()

    def load_bytes(self, data: bytes) -> None:
        if data.startswith(b"PK"):  # written as .npz before the raw format
            with _NPZ_LOCK, np.load(io.BytesIO(data)) as arrays:
                centroids = arrays["centroids"].astype(np.float32)
                counts = arrays["counts"].astype(np.int64)
        else:
            if len(data) < _CLUSTERS_HEADER.size or not data.startswith(_CLUSTERS_MAGIC):
                raise ValueError("snapshot clusters do not start with the clusters header")
            _, rows, dimension = _CLUSTERS_HEADER.unpack_from(data)
            expected = _CLUSTERS_HEADER.size + rows * dimension * 4 + rows * 8
            if len(data) != expected:
                raise ValueError(f"snapshot clusters are {len(data)} bytes long, their header says {expected}")
            body = memoryview(data)[_CLUSTERS_HEADER.size :]
            centroids = np.frombuffer(body[: rows * dimension * 4], "<f4").reshape(rows, dimension).astype(np.float32)
            counts = np.frombuffer(body[rows * dimension * 4 :], "<i8").astype(np.int64)
        if centroids.ndim != 2 or centroids.shape[1] != self.centroids.shape[1]:
            raise ValueError(
                f"snapshot clusters have dimension {centroids.shape[-1]}, the embedder has {self.centroids.shape[1]}"
            )
        self.centroids, self.counts = centroids, counts
