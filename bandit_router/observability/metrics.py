"""The router's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary


class Metrics:
    """The Prometheus series, in a registry of this router's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.route_latency = Histogram("bandit_router_route_seconds", "Route latency", registry=r)
        self.reward_latency = Histogram("bandit_router_reward_seconds", "Reward latency", registry=r)
        self.decisions = Counter("bandit_router_decisions", "Decisions by model", ["model"], registry=r)
        self.rewards = Counter("bandit_router_rewards", "Rewards received by model", ["model"], registry=r)
        self.reward = Summary("bandit_router_reward", "Scalar reward of rewarded decisions", ["model"], registry=r)
        self.quality = Summary("bandit_router_quality", "Quality of rewarded decisions", ["model"], registry=r)
        self.energy = Counter(
            "bandit_router_energy_joules", "Energy of rewarded decisions", ["model", "source"], registry=r
        )
        self.cost = Counter("bandit_router_cost_usd", "Cost of rewarded decisions", ["model", "source"], registry=r)
        self.learner_lag = Gauge("bandit_router_learner_lag_events", "Reward events not yet learned", registry=r)
        self.pending = Gauge("bandit_router_pending_decisions", "Decisions waiting for a reward", registry=r)
        self.expired = Gauge("bandit_router_expired_decisions", "Decisions that expired unrewarded", registry=r)
        self.policy_version = Gauge("bandit_router_policy_version", "Version of the served policy", registry=r)
        self.drift = Gauge("bandit_router_policy_drift_tv", "TV distance of the last swap on the probes", registry=r)
        self.promotions = Gauge("bandit_router_gate_promotions", "Snapshots the quality gate served", registry=r)
        self.rejections = Gauge("bandit_router_gate_rejections", "Snapshots the quality gate held back", registry=r)
        self.control_mean = Gauge(
            "bandit_router_control_mean",
            "Mean reward, quality, cost and energy of the rewarded decisions kept, routed and in the control group",
            ["arm", "figure"],
            registry=r,
        )
        self.control_difference = Gauge(
            "bandit_router_control_difference",
            "Routing's mean reward less the control group's, with its anytime-valid 95% interval",
            ["bound"],
            registry=r,
        )
        # The gateway's calls to each model's backend.
        self.backend_calls = Counter(
            "bandit_router_backend_calls", "Backend calls by model and outcome", ["model", "outcome"], registry=r
        )
        self.backend_latency = Histogram(
            "bandit_router_backend_seconds", "Backend call latency (whole answer)", ["model"], registry=r
        )
        self.backend_first_token = Histogram(
            "bandit_router_backend_first_token_seconds", "Backend time to first token (streams)", ["model"], registry=r
        )
        self.breaker = Gauge(
            "bandit_router_backend_breaker",
            "1 for the state each backend's breaker is in",
            ["model", "state"],
            registry=r,
        )
        self.embedding_cache = Counter(
            "bandit_router_embedding_cache_lookups", "Recent-embedding lookups by result", ["result"], registry=r
        )
        self.embedding_cache_hit_ratio = Gauge(
            "bandit_router_embedding_cache_hit_ratio", "Share of Route embeddings found in the cache", registry=r
        )
        self.embedding_cache_bytes = Gauge(
            "bandit_router_embedding_cache_bytes", "Bytes the recent-embedding cache holds", registry=r
        )
        self.sticky = Counter("bandit_router_sticky_turns", "Turns answered on their conversation's model", registry=r)
