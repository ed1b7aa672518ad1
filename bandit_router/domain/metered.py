"""What the gateway measured of a model call, kept with the decision so that a reward needs only the quality."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bandit_router.domain import jsonio
from bandit_router.domain.fields import shallow
from bandit_router.domain.records import RecordError


@dataclasses.dataclass(frozen=True)
class Metered:
    """One model call as the gateway saw it. Tokens are 0 where the backend reported no usage: the reward then
    estimates them, and says so."""

    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    # From sending the request to the first streamed token; None for an answer that was not streamed.
    first_token_ms: float | None
    # The models tried before this one for the same request, and why each failed.
    failed_before: tuple[tuple[str, str], ...] = ()
    # When the answer ended (the router's clock): a measured energy is charged from Route to then, not to the
    # reward's arrival, however late the feedback comes.
    answered_at: float | None = None
    # Characters of answer text the gateway relayed: the output tokens' estimate where the backend sent no usage.
    answer_chars: int = 0
    # Tokens counted with the model's tokenizer (models.tokenizer) where the backend sent no usage; 0: not counted.
    input_counted: int = 0
    output_counted: int = 0

    def dumps(self) -> str:
        fields = shallow(self)
        fields["failed_before"] = [list(f) for f in self.failed_before]
        return jsonio.dumps(fields)

    @classmethod
    def loads(cls, text: str | bytes) -> Metered:
        try:
            raw: Mapping[str, Any] = jsonio.loads(text)
            first = raw.get("first_token_ms")
            answered = raw.get("answered_at")
            return cls(
                model=str(raw["model"]),
                input_tokens=int(raw["input_tokens"]),
                output_tokens=int(raw["output_tokens"]),
                latency_ms=float(raw["latency_ms"]),
                first_token_ms=None if first is None else float(first),
                failed_before=tuple((str(m), str(why)) for m, why in raw.get("failed_before", [])),
                answered_at=None if answered is None else float(answered),
                answer_chars=int(raw.get("answer_chars", 0)),
                input_counted=int(raw.get("input_counted", 0)),
                output_counted=int(raw.get("output_counted", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"metered call is malformed: {exc!r}") from exc
