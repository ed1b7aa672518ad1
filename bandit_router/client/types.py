"""What the client returns and raises: a routing decision, a reward's result, and the API's errors by status."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Decision:
    """A Route answer: the model to call, with the candidates ranked (the chosen one first) for fallbacks."""

    decision_id: str
    model: str
    probability: float
    ranked: tuple[str, ...]
    pmf: Mapping[str, float]
    policy_version: str
    task: str
    estimated_cost_usd: float
    estimated_energy_joules: float
    energy_weight: float
    cost_weight: float
    expires_at: float
    excluded: tuple[str, ...] = ()
    replayed: bool = False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Decision:
        return cls(
            decision_id=raw["decision_id"],
            model=raw["model"],
            probability=raw["probability"],
            ranked=tuple(raw["ranked"]),
            pmf={p["model"]: p["probability"] for p in raw["pmf"]},
            policy_version=raw["policy_version"],
            task=raw["task"],
            estimated_cost_usd=raw["estimated_cost_usd"],
            estimated_energy_joules=raw["estimated_energy_joules"],
            energy_weight=raw["energy_weight"],
            cost_weight=raw["cost_weight"],
            expires_at=raw["expires_at"],
            excluded=tuple(raw.get("excluded", ())),
            replayed=bool(raw.get("replayed", False)),
        )


@dataclasses.dataclass(frozen=True)
class RewardResult:
    """The reward learned, with the cost and energy it was priced at and where each figure came from."""

    decision_id: str
    model: str
    reward: float
    cost_usd: float
    cost_source: str
    cost_basis: str
    energy_joules: float
    energy_source: str
    energy_basis: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RewardResult:
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls)})


class ApiError(Exception):
    """The router refused a call: its HTTP status, and the error's message, code and the field it names."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.param = param


class InvalidRequest(ApiError):
    """A field breaks a rule (400); ``param`` names it."""


class AuthenticationError(ApiError):
    """No token, or an unknown one (401)."""


class NotFound(ApiError):
    """The decision is unknown, or expired (404)."""


class Conflict(ApiError):
    """409: a Route's ``request_id`` already used for a different request, or (below) a decision already rewarded."""


class AlreadyRewarded(Conflict):
    """The decision was already rewarded: the first reward counts (a 409 to a Reward or a failure)."""


class RateLimited(ApiError):
    """The tenant holds its quota of decisions waiting for a reward (429)."""


class Unavailable(ApiError):
    """The router cannot serve now (503, or no answer); idempotent calls were retried before this was raised."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    503: Unavailable,
}


def error_of(status: int, body: Any, rewarding: bool) -> ApiError:
    """The error an answer of ``status`` to a Route (or, ``rewarding``, a Reward or failure) stands for, from its
    OpenAI-shaped body where it has one."""
    kind = AlreadyRewarded if status == 409 and rewarding else _BY_STATUS.get(status, ApiError)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return kind(status, str(body)[:500])
    return kind(status, str(error.get("message")), error.get("code"), error.get("param"))
