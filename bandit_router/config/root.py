"""The whole configuration: one frozen object of sections and the catalog."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bandit_router.config.catalog import CatalogConfig, ModelSpec
from bandit_router.config.checks import require
from bandit_router.config.learning import EnergyConfig, FeaturesConfig, PolicyConfig, RewardConfig
from bandit_router.config.serving import (
    AuthConfig,
    DashboardConfig,
    EmbeddingConfig,
    HttpConfig,
    LimitsConfig,
    RedisConfig,
    RolloutConfig,
    ServerConfig,
    TracingConfig,
)


@dataclasses.dataclass(frozen=True)
class Config:
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    redis: RedisConfig = dataclasses.field(default_factory=RedisConfig)
    embedding: EmbeddingConfig = dataclasses.field(default_factory=EmbeddingConfig)
    features: FeaturesConfig = dataclasses.field(default_factory=FeaturesConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)
    energy: EnergyConfig = dataclasses.field(default_factory=EnergyConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    dashboard: DashboardConfig = dataclasses.field(default_factory=DashboardConfig)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    tracing: TracingConfig = dataclasses.field(default_factory=TracingConfig)
    rollout: RolloutConfig = dataclasses.field(default_factory=RolloutConfig)
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    catalog: CatalogConfig = dataclasses.field(default_factory=CatalogConfig)
    models: tuple[ModelSpec, ...] = ()

    def __post_init__(self) -> None:
        require(len(self.models) >= 1, "models", "must list at least one model", len(self.models))
        ids = [m.id for m in self.models]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        require(not duplicated, "models.id", "must be unique", duplicated)
        baseline = self.rollout.baseline
        require(baseline == "" or baseline in ids, "rollout.baseline", "must be a catalog model id or empty", baseline)
        control = self.rollout.control
        require(
            control in ("uniform", "app") or control in ids,
            "rollout.control",
            'must be "uniform", "app" or a catalog model id',
            control,
        )

    @property
    def model_by_id(self) -> dict[str, ModelSpec]:
        return {m.id: m for m in self.models}

    @property
    def routable(self) -> tuple[ModelSpec, ...]:
        """The models a Route may choose: where the router serves as a gateway (an HTTP listener and a model with
        a backend), only those it can call; else the whole catalog."""
        backed = tuple(m for m in self.models if m.base_url)
        return backed if backed and self.http.listen else self.models

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections' fields replaced: ``cfg.replace(reward={"wait_time_s": 5})``."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            if name == "models" or not isinstance(value, Mapping):
                changes[name] = value
            else:
                changes[name] = dataclasses.replace(getattr(self, name), **value)
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "redis": RedisConfig,
    "embedding": EmbeddingConfig,
    "features": FeaturesConfig,
    "policy": PolicyConfig,
    "reward": RewardConfig,
    "energy": EnergyConfig,
    "limits": LimitsConfig,
    "dashboard": DashboardConfig,
    "http": HttpConfig,
    "tracing": TracingConfig,
    "rollout": RolloutConfig,
    "auth": AuthConfig,
    "catalog": CatalogConfig,
}
