"""The records a decision leaves: the answer to Route, the pending decision, and the learning event."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from bandit_router.config import ModelSpec, RewardConfig
from bandit_router.domain import jsonio
from bandit_router.domain.fields import shallow
from bandit_router.domain.pricing import Priced
from bandit_router.domain.reward import scalar_reward

# Written into every stored record; a reader refuses a record from a newer writer rather than misread it.
# Records without one were written before it existed and read as version 1.
# Redis holds these records per decision: JSON without the spaces after separators.
SCHEMA_VERSION = 1

T = TypeVar("T", int, float)


def encode_embedding(vector: np.ndarray[Any, np.dtype[np.float32]]) -> str:
    """An embedding as a record holds it: float16, base64 (half the size, and precise enough to cluster)."""
    return base64.b64encode(vector.astype(np.float16).tobytes()).decode()


def decode_embedding(text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.frombuffer(base64.b64decode(text), dtype=np.float16).astype(np.float32)


def _optional(value: Any, kind: type[T]) -> T | None:
    return None if value is None else kind(value)


class RecordError(ValueError):
    """A stored record that cannot be read: malformed, or written by a newer version."""


def _check_schema(raw: Mapping[str, Any], what: str) -> None:
    version = raw.get("schema", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RecordError(f"{what} schema must be an integer <= {SCHEMA_VERSION}, got {version!r}")


@dataclasses.dataclass(frozen=True)
class Decision:
    """What Route answers, and what a retried Route (same request_id) answers again."""

    decision_id: str
    model: str
    probability: float
    pmf: list[tuple[str, float]]
    policy_version: str
    task: str
    task_source: str
    cluster: int
    estimated_cost_usd: float
    estimated_energy_joules: float
    energy_weight: float
    cost_weight: float
    expires_at: float
    excluded: list[str] = dataclasses.field(default_factory=list)
    # "apprentice" when the tenant's rollout served its baseline on all but an exploration share; "control" when
    # drawn into the control group (rollout.control_share); else "online".
    mode: str = "online"
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        fields = shallow(self)
        del fields["replayed"]
        fields["pmf"] = [list(p) for p in self.pmf]
        fields["excluded"] = list(self.excluded)
        return fields

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], replayed: bool = False) -> Decision:
        names = {f.name for f in dataclasses.fields(cls)} - {"replayed"}
        fields = {k: v for k, v in raw.items() if k in names}
        try:
            return cls(
                **{
                    **fields,
                    "pmf": [(str(m), float(p)) for m, p in fields["pmf"]],
                    "excluded": list(fields["excluded"]),
                },
                replayed=replayed,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"decision record is malformed: {exc!r}") from exc


@dataclasses.dataclass(frozen=True)
class Summary:
    """A decision as kept for retries: the answer, and the digest of the request that it answered."""

    decision: Decision
    # None for decisions written before digests were kept: a retry of one is not checked.
    request_digest: str | None

    def to_json(self) -> str:
        return jsonio.dumps(
            {"schema": SCHEMA_VERSION, **self.decision.to_json(), "request_digest": self.request_digest}
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Summary:
        raw = jsonio.loads(text)
        _check_schema(raw, "decision summary")
        return cls(Decision.from_json(raw), raw.get("request_digest"))


@dataclasses.dataclass(frozen=True)
class PendingDecision:
    """A decision waiting for its reward: the answer, and everything the learner needs of its context."""

    decision: Decision
    request_digest: str | None
    # The chosen action's position among ``actions``.
    index: int
    shared: str
    actions: tuple[str, ...]
    # Each action's penalty at the request's weights (what the pmf depended on, beside the context).
    penalties: tuple[float, ...]
    # The chosen model as the catalog described it then, so a reward prices it after a catalog change too.
    model_spec: ModelSpec
    query_tokens: int
    # The query's embedding (float16, base64), for the learner's clusterer.
    embedding: str
    metadata: Mapping[str, str]
    tenant: str
    created_at: float
    # In apprentice mode: the baseline's position among ``actions``, and the probability the policy alone gave
    # the chosen action (the logged one is the apprentice's); both None for a decision the policy served.
    baseline: int | None = None
    policy_probability: float | None = None
    # The control share the decision was drawn under (rollout.control_share; None at 0): whether it was drawn into
    # the control group is the decision's mode ("control").
    control_share: float | None = None

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def summary(self) -> Summary:
        return Summary(self.decision, self.request_digest)

    def to_json(self) -> str:
        return jsonio.dumps(
            {
                "schema": SCHEMA_VERSION,
                **self.decision.to_json(),
                "request_digest": self.request_digest,
                "index": self.index,
                "shared": self.shared,
                "actions": list(self.actions),
                "penalties": list(self.penalties),
                "model_spec": shallow(self.model_spec),
                "query_tokens": self.query_tokens,
                "embedding": self.embedding,
                "metadata": dict(self.metadata),
                "tenant": self.tenant,
                "created_at": self.created_at,
                "baseline": self.baseline,
                "policy_probability": self.policy_probability,
                "control_share": self.control_share,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingDecision:
        raw = jsonio.loads(text)
        _check_schema(raw, "pending decision")
        try:
            actions = tuple(str(a) for a in raw["actions"])
            return cls(
                decision=Decision.from_json(raw),
                request_digest=raw.get("request_digest"),
                index=int(raw["index"]),
                shared=str(raw["shared"]),
                actions=actions,
                # A decision pending since before penalties were logged had none (every weight 0 was learned).
                penalties=tuple(float(p) for p in raw.get("penalties", [0.0] * len(actions))),
                # JSON has no tuples: the spec is frozen with a tuple of GPUs, as the catalog builds it.
                model_spec=ModelSpec(**{**raw["model_spec"], "gpus": tuple(raw["model_spec"].get("gpus", ()))}),
                query_tokens=int(raw["query_tokens"]),
                embedding=str(raw.get("embedding", "")),
                metadata=dict(raw.get("metadata", {})),
                tenant=str(raw.get("tenant", "")),
                created_at=float(raw["created_at"]),
                baseline=_optional(raw.get("baseline"), int),
                policy_probability=_optional(raw.get("policy_probability"), float),
                control_share=_optional(raw.get("control_share"), float),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"pending decision is malformed: {exc!r}") from exc


@dataclasses.dataclass(frozen=True)
class LearningEvent:
    """One rewarded decision as the learner, the dashboard and the decision log read it."""

    decision_id: str
    model: str
    index: int
    probability: float
    pmf: tuple[tuple[str, float], ...]
    shared: str
    actions: tuple[str, ...]
    penalties: tuple[float, ...]
    embedding: str
    policy_version: str
    task: str
    cluster: int
    energy_weight: float
    cost_weight: float
    created_at: float
    # Whose reward it is: the learner prices the models for that tenant from it alone.
    tenant: str
    reward: float
    quality: float
    input_tokens: int
    output_tokens: int
    output_tokens_reported: bool
    latency_ms: float
    cost_usd: float
    cost_source: str
    energy_joules: float
    energy_source: str
    # The catalog's figures at these tokens: the learner learns how far reality is from them. None in events
    # written before pricing learned residuals.
    catalog_cost_usd: float | None
    catalog_energy_joules: float | None
    rewarded_at: float
    # Learned with the default reward because no reward came in time.
    expired: bool = False
    # Why the model call failed, when it did (learned with ``reward.failure_quality``); "" when it answered.
    failure: str = ""
    # The output count was counted with the model's tokenizer (the gateway saw the answer): a count, not an estimate.
    output_tokens_counted: bool = False
    # As the pending decision had them: apprentice mode's baseline and the policy's own probability (else None).
    baseline: int | None = None
    policy_probability: float | None = None
    # The control share the decision was drawn under (None: none), and whether it was drawn into the control group.
    control_share: float | None = None
    control: bool = False

    @classmethod
    def of(
        cls,
        pending: PendingDecision,
        quality: float,
        latency_ms: float,
        priced: Priced,
        now: float,
        scales: RewardConfig,
        expired: bool = False,
        failure: str = "",
    ) -> LearningEvent:
        """The event of a decision answered with ``quality`` at ``priced``, its reward at the decision's weights."""
        d = pending.decision
        reward = scalar_reward(quality, priced.energy.value, priced.cost.value, d.energy_weight, d.cost_weight, scales)
        return cls(
            decision_id=d.decision_id,
            model=d.model,
            index=pending.index,
            probability=d.probability,
            pmf=tuple(d.pmf),
            shared=pending.shared,
            actions=pending.actions,
            penalties=pending.penalties,
            embedding=pending.embedding,
            policy_version=d.policy_version,
            task=d.task,
            cluster=d.cluster,
            energy_weight=d.energy_weight,
            cost_weight=d.cost_weight,
            created_at=pending.created_at,
            tenant=pending.tenant,
            reward=reward,
            quality=quality,
            input_tokens=priced.tokens.input,
            output_tokens=priced.tokens.output,
            output_tokens_reported=priced.tokens.output_reported,
            output_tokens_counted=priced.tokens.output_counted,
            latency_ms=latency_ms,
            cost_usd=priced.cost.value,
            cost_source=priced.cost.source.value,
            energy_joules=priced.energy.value,
            energy_source=priced.energy.source.value,
            catalog_cost_usd=priced.catalog_cost_usd,
            catalog_energy_joules=priced.catalog_energy_joules,
            rewarded_at=now,
            expired=expired,
            failure=failure,
            baseline=pending.baseline,
            policy_probability=pending.policy_probability,
            control_share=pending.control_share,
            control=d.mode == "control",
        )

    def to_json(self) -> dict[str, Any]:
        fields = shallow(self)
        fields["pmf"] = [list(p) for p in self.pmf]
        fields["actions"] = list(self.actions)
        fields["penalties"] = list(self.penalties)
        return {"schema": SCHEMA_VERSION, **fields}

    def dumps(self) -> str:
        return jsonio.dumps(self.to_json())

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LearningEvent:
        _check_schema(raw, "learning event")
        try:
            actions = tuple(str(a) for a in raw["actions"])
            catalog_cost = raw.get("catalog_cost_usd")
            catalog_energy = raw.get("catalog_energy_joules")
            return cls(
                decision_id=str(raw["decision_id"]),
                model=str(raw["model"]),
                index=int(raw["index"]),
                probability=float(raw["probability"]),
                pmf=tuple((str(m), float(p)) for m, p in raw["pmf"]),
                shared=str(raw["shared"]),
                actions=actions,
                penalties=tuple(float(p) for p in raw.get("penalties", [0.0] * len(actions))),
                embedding=str(raw.get("embedding", "")),
                policy_version=str(raw.get("policy_version", "")),
                task=str(raw["task"]),
                cluster=int(raw.get("cluster", 0)),
                energy_weight=float(raw["energy_weight"]),
                cost_weight=float(raw["cost_weight"]),
                created_at=float(raw["created_at"]),
                tenant=str(raw.get("tenant", "")),
                reward=float(raw["reward"]),
                quality=float(raw["quality"]),
                input_tokens=int(raw.get("input_tokens", 0)),
                output_tokens=int(raw.get("output_tokens", 0)),
                output_tokens_reported=bool(raw.get("output_tokens_reported", False)),
                output_tokens_counted=bool(raw.get("output_tokens_counted", False)),
                latency_ms=float(raw.get("latency_ms", 0.0)),
                cost_usd=float(raw["cost_usd"]),
                cost_source=str(raw.get("cost_source", "estimated")),
                energy_joules=float(raw["energy_joules"]),
                energy_source=str(raw.get("energy_source", "estimated")),
                catalog_cost_usd=None if catalog_cost is None else float(catalog_cost),
                catalog_energy_joules=None if catalog_energy is None else float(catalog_energy),
                rewarded_at=float(raw.get("rewarded_at", 0.0)),
                expired=bool(raw.get("expired", False)),
                failure=str(raw.get("failure", "")),
                baseline=_optional(raw.get("baseline"), int),
                policy_probability=_optional(raw.get("policy_probability"), float),
                control_share=_optional(raw.get("control_share"), float),
                control=bool(raw.get("control", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"learning event is malformed: {exc!r}") from exc

    @classmethod
    def loads(cls, text: str | bytes) -> LearningEvent:
        return cls.from_json(jsonio.loads(text))
