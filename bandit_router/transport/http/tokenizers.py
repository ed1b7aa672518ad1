"""Token counts of a call whose backend reported no usage, with the model's own tokenizer (``models.tokenizer``).

A tokenizer is loaded from a local directory or from the local Hugging Face cache, never downloaded: a model
whose tokenizer cannot be loaded stops the gateway's start with the key, the rule and the value. The counts are
of the text the gateway relayed, so they leave out what a backend adds around it (a chat template's markup,
where the tokenizer has no template; special tokens).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from bandit_router.config import ModelSpec
from bandit_router.config.checks import ConfigError

log = logging.getLogger(__name__)


def _texts(value: Any) -> list[str]:
    """The text in a message's content: a string, or the text parts of a list of parts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


class Tokenizers:
    """The catalog models' tokenizers, by model id; models without one are not counted."""

    def __init__(self) -> None:
        self.model_to_tokenizer: dict[str, Any] = {}

    async def load(self, models: Sequence[ModelSpec]) -> None:
        named = [m for m in models if m.tokenizer]
        if named:
            self.model_to_tokenizer = await asyncio.to_thread(self._load, named)

    @staticmethod
    def _load(models: Sequence[ModelSpec]) -> dict[str, Any]:
        from transformers import AutoTokenizer

        loaded: dict[str, Any] = {}
        for model in models:
            try:
                loaded[model.id] = AutoTokenizer.from_pretrained(model.tokenizer, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"models[{model.id}].tokenizer must be a local directory holding the model's tokenizer files, "
                    f"or a Hugging Face id already in the local cache (nothing is downloaded), got "
                    f"{model.tokenizer!r}: {type(exc).__name__}: {str(exc)[:200]}"
                ) from None
            log.info("model %s: tokens counted with the tokenizer %s where usage is absent", model.id, model.tokenizer)
        return loaded

    async def count(
        self, model_id: str, body: dict[str, Any], chat: bool, *, prompt: bool, answer: str
    ) -> tuple[int, int]:
        """(tokens in the request's prompt if ``prompt``, tokens in ``answer``), in one trip off the event loop:
        the prompt is its messages (through the tokenizer's chat template where it has one) or its completion
        prompt. 0 for what was not asked, or without a tokenizer."""
        tokenizer = self.model_to_tokenizer.get(model_id)
        if tokenizer is None or not (prompt or answer):
            return 0, 0

        def both() -> tuple[int, int]:
            counted_in = self._count_prompt(tokenizer, body, chat) if prompt else 0
            counted_out = len(tokenizer.encode(answer, add_special_tokens=False)) if answer else 0
            return counted_in, counted_out

        return await asyncio.to_thread(both)

    @staticmethod
    def _count_prompt(tokenizer: Any, body: dict[str, Any], chat: bool) -> int:
        if chat:
            messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
            if getattr(tokenizer, "chat_template", None):
                try:
                    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
                    return len(ids["input_ids"] if isinstance(ids, dict) else ids)
                except Exception:  # a template that cannot render these messages: their text is counted
                    log.debug("chat template failed; counting the messages' text", exc_info=True)
            texts = [t for m in messages for t in _texts(m.get("content"))]
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
                return len(prompt)  # already token ids
            if isinstance(prompt, list) and all(isinstance(p, list) for p in prompt):
                return sum(len(p) for p in prompt)
            texts = [p for p in (prompt if isinstance(prompt, list) else [prompt]) if isinstance(p, str)]
        return sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts if t)
