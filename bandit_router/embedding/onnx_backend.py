"""The model exported to ONNX and run by ONNX Runtime (``embedding.backend = "onnx"``, or ``"onnx-int8"`` with its
weights quantised to int8), without PyTorch at run time.

The export is made locally from the model's own weights on first use (PyTorch's exporter; the int8 copy with
ONNX Runtime's dynamic quantisation), never downloaded. The graph is the transformer, mean pooling and L2
normalisation, so the float32 export gives the torch backend's vectors (cosine 1.0000 on the sample traffic).
Needs the ``onnx`` extra: ``pip install "bandit-router[server,onnx]"``.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.build import build_dir, built, fingerprint
from bandit_router.embedding.folder import MeanPooledModel
from bandit_router.embedding.model import Embedder, IntArray
from bandit_router.embedding.types import FloatArray

RECIPE = "onnx-v1: transformer, mean pooling, L2 normalisation; opset 17"
OPSET = 17


def export(config: EmbeddingConfig, out: Path) -> None:
    """``config.model`` as one ONNX graph from word-piece ids and mask to unit-length vectors, written to ``out``."""
    import torch

    from bandit_router.embedding.model import TorchEmbedder

    reference = TorchEmbedder(dataclasses.replace(config, backend="torch", device="cpu", dtype="float32"))
    transformer = reference._model[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    sample = reference.tokens(["an example query", "a second"])
    axes = {"batch": 0, "pieces": 1}
    with warnings.catch_warnings():
        # The tracer's notes on Python branches it froze (the mask's shape checks): this graph takes any shape.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(),
            (torch.from_numpy(sample.input_ids), torch.from_numpy(sample.attention_mask)),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {v: k for k, v in axes.items()},
                "attention_mask": {v: k for k, v in axes.items()},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def quantize(source: Path, out: Path) -> None:
    """The export at ``source`` with its weights quantised to int8 (dynamic quantisation), written to ``out``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8)


class OnnxEmbedder(Embedder):
    """The configured model's ONNX export on ONNX Runtime's CPU (or CUDA, where its GPU package is installed)."""

    def __init__(self, config: EmbeddingConfig) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ValueError(
                f'embedding.backend {config.backend} needs onnxruntime: pip install "bandit-router[server,onnx]"'
            ) from None
        facts = MeanPooledModel.read(config)
        folder = build_dir(config)
        name = fingerprint(facts.path, RECIPE)
        path = built(folder / f"onnx-{name}.onnx", lambda out: export(config, out), f"the ONNX export of {facts.path}")
        if config.backend == "onnx-int8":
            path = built(
                folder / f"onnx-{name}.int8.onnx",
                lambda out: quantize(path, out),
                f"the int8 ONNX export of {facts.path}",
            )
        options = onnxruntime.SessionOptions()
        # ONNX Runtime fixes its threads when the session starts; 0 lets it take every physical core.
        options.intra_op_num_threads = config.threads
        providers = ["CPUExecutionProvider"]
        self.device = "cpu"
        if config.device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
            self.device = config.device
        self._session: Any = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.tokens = facts.tokens
        self.dimension = facts.dimension
        self.dtype = "int8" if config.backend == "onnx-int8" else "float32"
        self.model_name = f"{facts.path}#{config.backend}:{name}"

    def forward(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        vectors: FloatArray = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        return vectors
