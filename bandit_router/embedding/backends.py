"""The embedding backend ``embedding.backend`` names, loaded."""

from __future__ import annotations

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.model import Embedder, TorchEmbedder
from bandit_router.embedding.onnx_backend import OnnxEmbedder
from bandit_router.embedding.static import StaticEmbedder


def load_embedder(config: EmbeddingConfig) -> Embedder:
    """The model on ``embedding.backend``; blocking (loads weights, and builds what the backend needs from them the
    first time). Each backend imports its runtime (torch, onnxruntime) only when loaded."""
    if config.backend == "torch":
        return TorchEmbedder(config)
    if config.backend == "static":
        return StaticEmbedder(config)
    return OnnxEmbedder(config)
