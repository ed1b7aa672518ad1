"""Validated, frozen configuration: one TOML file plus environment overrides, the home of every default."""

from bandit_router.config.catalog import CatalogConfig, ModelSpec
from bandit_router.config.checks import ConfigError
from bandit_router.config.learning import (
    CONTEXT_NAMESPACES,
    DEFAULT_VW_ARGS,
    EnergyConfig,
    FeaturesConfig,
    PolicyConfig,
    RewardConfig,
)
from bandit_router.config.load import default_catalog_text, load_config
from bandit_router.config.root import Config
from bandit_router.config.serving import (
    EMBEDDING_BACKENDS,
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

__all__ = [
    "CONTEXT_NAMESPACES",
    "DEFAULT_VW_ARGS",
    "EMBEDDING_BACKENDS",
    "AuthConfig",
    "CatalogConfig",
    "Config",
    "ConfigError",
    "DashboardConfig",
    "EmbeddingConfig",
    "EnergyConfig",
    "FeaturesConfig",
    "HttpConfig",
    "LimitsConfig",
    "ModelSpec",
    "PolicyConfig",
    "RedisConfig",
    "RewardConfig",
    "RolloutConfig",
    "ServerConfig",
    "TracingConfig",
    "default_catalog_text",
    "load_config",
]
