"""What a sentence-transformers model folder declares, read without PyTorch: its embedding dimension (a learner
needs it without loading the model), and the model the onnx and static backends rebuild."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.model import QueryTokenizer, bundled_model_path


def declared_dimension(config: EmbeddingConfig) -> int | None:
    """The embedding dimension the model's folder declares (its sentence-transformers modules: the last Dense
    layer's ``out_features``, else the Pooling's width times its modes), read without loading torch or the
    weights; None where the folder says too little (then only loading the model tells)."""
    folder = Path(config.model or bundled_model_path())
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dimension = None
        for module in modules:
            kind = str(module["type"]).rsplit(".", 1)[-1]
            settings_path = folder / module["path"] / "config.json"
            if kind == "Pooling":
                pooling = json.loads(settings_path.read_text(encoding="utf-8"))
                modes = sum(1 for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True)
                dimension = int(pooling["word_embedding_dimension"]) * max(modes, 1)
            elif kind == "Dense":
                dimension = int(json.loads(settings_path.read_text(encoding="utf-8"))["out_features"])
            elif kind not in {"Transformer", "Normalize"}:
                return None
        return dimension
    except (OSError, ValueError, KeyError, TypeError):
        return None


class FastTokenizer:
    """The folder's ``tokenizer.json`` through the ``tokenizers`` library, called as a transformers tokenizer is
    (what :class:`QueryTokenizer` uses of one): the same word pieces, without importing transformers or torch."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        # QueryTokenizer cuts and pads itself; the file's own settings would do either behind its back.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        pad = self._tokenizer.token_to_id("[PAD]")
        self.pad_token_id = int(pad) if pad is not None else 0

    def __call__(
        self, texts: str | Sequence[str], add_special_tokens: bool = True, truncation: bool = False
    ) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self._tokenizer.encode(texts, add_special_tokens=add_special_tokens).ids}
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))


@dataclasses.dataclass(frozen=True)
class MeanPooledModel:
    """A folder of a transformer, mean pooling and (optionally) normalisation: what the onnx and static
    backends can rebuild. ``tokens`` cuts queries exactly as the torch backend's does."""

    path: Path
    dimension: int
    tokenizer: FastTokenizer
    tokens: QueryTokenizer

    @classmethod
    def read(cls, config: EmbeddingConfig) -> MeanPooledModel:
        path = Path(config.model or bundled_model_path())
        try:
            modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
            kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
            pooling = next(m for m in modules if str(m["type"]).endswith("Pooling"))
            modes = json.loads((path / pooling["path"] / "config.json").read_text(encoding="utf-8"))
            settings = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
            max_length, dimension = int(settings["max_seq_length"]), int(modes["word_embedding_dimension"])
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
            raise ValueError(
                f"embedding.backend {config.backend} needs a sentence-transformers folder (modules.json, "
                f"sentence_bert_config.json, a Pooling module); {str(path)!r} has not: {exc}"
            ) from None
        mean_only = modes.get("pooling_mode_mean_tokens") is True and not any(
            v is True for k, v in modes.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
        )
        if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]) or not mean_only:
            raise ValueError(
                f"embedding.backend {config.backend} supports a transformer with mean pooling only (use backend "
                f"torch for others); {str(path)!r} has modules {kinds} and pooling {modes}"
            )
        tokenizer = FastTokenizer(path / "tokenizer.json")
        return cls(path, dimension, tokenizer, QueryTokenizer(tokenizer, max_length, config.head_tokens))
