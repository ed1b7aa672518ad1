"""Route and Reward requests as the domain sees them, validated field by field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence

from bandit_router.config import LimitsConfig, ModelSpec
from bandit_router.domain.fields import shallow
from bandit_router.domain.metered import Metered
from bandit_router.domain.pricing import catalog_cost, catalog_energy
from bandit_router.domain.reward import Tokens
from bandit_router.errors import AlreadyExists, FailedPrecondition, InvalidArgument

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
TASK_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Characters no text may carry: lone surrogates (JSON's \ud800 escapes decode to them, and they cannot be
# encoded as UTF-8 again: the embedder, Redis and the logs all fail on them) and NUL.
UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")
BUDGETS = ("max_cost_usd", "max_energy_joules", "max_latency_ms")
# A weight this large already means "nothing but energy (or cost) matters"; far larger ones overflow rewards.
MAX_WEIGHT = 1000.0
MAX_FAILURE_CHARS = 500


# A tenant's decision ids are "TENANT." + the id: up to 33 characters more than a request id.
TENANT_PREFIX_CHARS = 33


def _check_id(field: str, value: str, limits: LimitsConfig, extra: int = 0) -> None:
    longest = limits.max_request_id_chars + extra
    if len(value) > longest:
        raise InvalidArgument(field, f"must be at most {longest} characters", value)
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(field, f"must match {ID_PATTERN.pattern}", value)


def _check_number(field: str, value: float, low: float, high: float = math.inf) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number", value)
    if not low <= value <= high:
        rule = f"must be >= {low:g}" if high == math.inf else f"must be in [{low:g}, {high:g}]"
        raise InvalidArgument(field, rule, value)


@dataclasses.dataclass(frozen=True)
class RouteInput:
    query: str
    request_id: str = ""
    candidates: tuple[str, ...] = ()
    energy_weight: float | None = None
    cost_weight: float | None = None
    task: str = ""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_cost_usd: float | None = None
    max_energy_joules: float | None = None
    max_latency_ms: float | None = None
    # The model the application would call without the router: what apprentice mode serves (rollout.mode).
    baseline: str = ""
    # The authenticated caller's tenant ("" without authentication); set by the server, not the client.
    tenant: str = ""

    def digest(self) -> str:
        """A fingerprint of what was asked (everything but the request id and tenant), kept with the decision: a
        retry with the same request_id must ask the same, as an idempotency key promises elsewhere."""
        asked = shallow(self)
        del asked["request_id"], asked["tenant"]
        asked["metadata"] = sorted(asked["metadata"].items())
        return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:32]

    def check_retry(self, digest: str | None) -> None:
        """Raises AlreadyExists when the decision ``request_id`` names was made for a different request (a
        decision stored before digests were kept has none, and is taken as the same)."""
        if digest is not None and digest != self.digest():
            raise AlreadyExists(
                f"request_id {self.request_id!r} was already used for a different request (its query, task, "
                "candidates, preferences, budget or metadata differ): send a new request_id, or resend the same "
                "request to get its decision"
            )

    def validate(self, limits: LimitsConfig, catalog: Sequence[ModelSpec]) -> list[ModelSpec]:
        """Checks every field; returns the models the policy may choose from, in catalog order."""
        if not self.query.strip():
            raise InvalidArgument("query", "must not be empty or whitespace", self.query)
        unsafe = UNSAFE_TEXT.search(self.query)
        if unsafe is not None:
            found = "NUL" if unsafe.group() == "\x00" else f"a lone surrogate (U+{ord(unsafe.group()):04X})"
            raise InvalidArgument(
                "query", f"must be text without NUL or lone surrogates, found {found}", self.query[:64]
            )
        if len(self.query) > limits.max_query_chars:
            raise InvalidArgument(
                "query", f"must be at most {limits.max_query_chars} characters", f"{len(self.query)} characters"
            )
        if self.request_id:
            _check_id("request_id", self.request_id, limits)
        for name in ("energy_weight", "cost_weight"):
            value = getattr(self, name)
            if value is not None:
                _check_number(f"preferences.{name}", value, 0.0, MAX_WEIGHT)
        for name in BUDGETS:
            value = getattr(self, name)
            if value is not None:
                _check_number(f"budget.{name}", value, 0.0)
        if self.task:
            if len(self.task) > limits.max_task_chars:
                raise InvalidArgument("task", f"must be at most {limits.max_task_chars} characters", self.task)
            if not TASK_PATTERN.fullmatch(self.task):
                raise InvalidArgument("task", f"must match {TASK_PATTERN.pattern}", self.task)
        if len(self.metadata) > limits.max_metadata_entries:
            raise InvalidArgument(
                "metadata", f"must have at most {limits.max_metadata_entries} entries", f"{len(self.metadata)} entries"
            )
        for key, value in self.metadata.items():
            if len(key) > limits.max_metadata_chars or len(value) > limits.max_metadata_chars:
                raise InvalidArgument(
                    f"metadata[{key[:32]!r}]",
                    f"keys and values must be at most {limits.max_metadata_chars} characters",
                    value,
                )
        if len(self.candidates) > limits.max_candidates:
            raise InvalidArgument(
                "candidates", f"must list at most {limits.max_candidates} models", f"{len(self.candidates)} models"
            )
        if len(set(self.candidates)) != len(self.candidates):
            duplicated = sorted({c for c in self.candidates if self.candidates.count(c) > 1})
            raise InvalidArgument("candidates", "must not repeat a model", duplicated)
        by_id = {m.id: m for m in catalog}
        unknown = [c for c in self.candidates if c not in by_id]
        if unknown:
            raise InvalidArgument("candidates", f"must be catalog model ids ({', '.join(by_id)})", unknown)
        if self.baseline and (self.baseline not in by_id or (self.candidates and self.baseline not in self.candidates)):
            raise InvalidArgument("baseline", "must be a catalog model id among the candidates", self.baseline)
        chosen = [m for m in catalog if not self.candidates or m.id in self.candidates]
        left = [m for m in chosen if m.enabled]
        if not left:
            raise FailedPrecondition(
                "candidates: no model left after filtering; disabled in the catalog: " + ", ".join(m.id for m in chosen)
            )
        return left


@dataclasses.dataclass(frozen=True)
class RewardInput:
    decision_id: str
    quality: float | None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    energy_joules: float | None = None
    cost_usd: float | None = None
    tenant: str = ""
    # Why the model call failed (an error, a timeout, an overloaded backend); then no quality is sent and the
    # decision is learned with ``failure_quality``.
    failure: str = ""

    def validate(self, limits: LimitsConfig, failure_quality: float = 0.0) -> float:
        """Checks every field; returns the quality (``failure_quality`` for a failed call)."""
        if not self.decision_id:
            raise InvalidArgument("decision_id", "is required", self.decision_id)
        _check_id("decision_id", self.decision_id, limits, TENANT_PREFIX_CHARS)
        if self.failure:
            if len(self.failure) > MAX_FAILURE_CHARS:
                raise InvalidArgument("reason", f"must be at most {MAX_FAILURE_CHARS} characters", self.failure)
            if self.quality is not None:
                raise InvalidArgument("quality", "must not be given for a failed call", self.quality)
            quality = failure_quality
        elif self.quality is None:
            raise InvalidArgument("quality", "is required", None)
        else:
            quality = self.quality
        _check_number("quality", quality, 0.0, 1.0)
        _check_number("input_tokens", self.input_tokens, 0, limits.max_tokens)
        _check_number("output_tokens", self.output_tokens, 0, limits.max_tokens)
        _check_number("latency_ms", self.latency_ms, 0.0)
        if self.energy_joules is not None:
            _check_number("energy_joules", self.energy_joules, 0.0)
        if self.cost_usd is not None:
            _check_number("cost_usd", self.cost_usd, 0.0)
        return quality

    def completed_by(self, metered: Metered | None) -> RewardInput:
        """This reward with what the gateway measured of the call filled in where the caller sent nothing."""
        if metered is None:
            return self
        return dataclasses.replace(
            self,
            input_tokens=self.input_tokens or metered.input_tokens,
            output_tokens=self.output_tokens or metered.output_tokens,
            latency_ms=self.latency_ms or metered.latency_ms,
        )

    def check_plausible(self, catalog: Sequence[ModelSpec], tokens: Tokens, ratio: float) -> None:
        """Refuses a reported energy or cost beyond ``ratio`` times the largest figure of any catalog model at
        these tokens (each token counted at no less than a floor, so a catalog of free models can still be
        reported): more is not physically plausible for a request of that size."""
        counted = tokens.input + tokens.output
        for field, reported, figure, floor, unit in (
            ("energy_joules", self.energy_joules, catalog_energy, 0.01, "J"),
            ("cost_usd", self.cost_usd, catalog_cost, 1e-7, "USD"),
        ):
            if reported is None:
                continue
            bound = ratio * max(floor * counted, *(figure(m, tokens.input, tokens.output) for m in catalog))
            if reported > bound:
                raise InvalidArgument(
                    field,
                    f"must be at most {ratio:g}x the largest catalog figure at {tokens.input} input and "
                    f"{tokens.output} output tokens ({bound:.6g} {unit})",
                    reported,
                )
