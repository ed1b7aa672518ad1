"""Configuration of what is learned and how: context features, the policy, the reward and energy."""

from __future__ import annotations

import dataclasses

from bandit_router.config.checks import finite_nonneg, positive, require

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
        require(0 <= self.projection_dim <= 384, "features.projection_dim", "must be in [0, 384]", self.projection_dim)
        require(self.max_clusters >= 1, "features.max_clusters", "must be >= 1", self.max_clusters)
        require(
            -1 <= self.cluster_threshold <= 1,
            "features.cluster_threshold",
            "must be in [-1, 1]",
            self.cluster_threshold,
        )
        unknown = [n for n in self.context if n not in CONTEXT_NAMESPACES]
        require(
            not unknown,
            "features.context",
            "must name namespaces among " + ", ".join(f"{k} ({v})" for k, v in CONTEXT_NAMESPACES.items()),
            list(self.context),
        )
        require(len(set(self.context)) == len(self.context), "features.context", "must not repeat", list(self.context))
        require(
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
    # VW's quality estimate of a model in a context is read against a hierarchical prior (the model's mean in
    # the query's cells shrunk toward its mean overall moved by the cells' own, each level by this many
    # pseudo-rewards): weighted n : prior_strength, n the model's rewards in the query's least-seen cell. So a
    # model VW extrapolates low into a cell it was never tried in keeps what it earns elsewhere until tried
    # there. 0 serves VW's estimate alone: the default, since measured on every shared set (docs/decision-quality.md)
    # 5 removed the long stream's lock-outs but lost on LLMRouter test at quality only, cold (-0.014, 5 of 5 seeds),
    # and gained nothing on the other short streams. See bandit_router.policy.hierarchy.
    prior_strength: float = 0.0
    # The leader gets 1 - epsilon; epsilon is shared by every model whose optimistic score reaches the best
    # expected score (a model that cannot be best even at its optimistic quality gets nothing). It keeps
    # every plausible model's logged probability above zero, which off-policy evaluation and the gate need.
    epsilon: float = 0.05
    # The learner publishes (and persists) a snapshot after this many events or this long, whichever first; while
    # it is behind (a read of the stream came back full), once per interval only, so that it learns rather than
    # snapshots and judges.
    snapshot_every_events: int = 64
    snapshot_interval_s: float = 1.0
    keep_snapshots: int = 5
    # One learner learns at a time: it holds a lease in Redis, renewed while it runs; a standby learner takes
    # over this long after the holder's last renewal (a crash, a partition). A learner paused longer than this
    # loses the lease, and its writes are refused.
    lease_s: float = 10.0
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
    # The window speaks for the candidate as a whole where at least this share of its decisions had a positive
    # logging probability for every action the candidate may take there, and its importance weights an effective
    # sample size of gate_min_ess. Below either the verdict says "not estimable (support, ESS)": the rule gives
    # ruled-out models probability 0, so nothing logged says how a candidate that now tries them would do there;
    # it is judged on the decisions that do support it (a burst of corrupted rewards makes exactly such a
    # candidate, and must still be held back).
    gate_min_support: float = 0.5
    gate_min_ess: float = 30.0
    # A replica swaps in a new snapshot when the learner announces it (Redis pub/sub), and checks this often
    # in case an announcement was missed.
    reload_poll_s: float = 5.0

    def __post_init__(self) -> None:
        reductions = [a for a in self.vw_args if a.split("=")[0] in _VW_REDUCTIONS]
        require(
            not reductions,
            "policy.vw_args",
            "must not choose a reduction or interactions (the policy is a quality regressor; interactions come "
            "from features.context)",
            reductions,
        )
        finite_nonneg("policy.explore_model", self.explore_model)
        finite_nonneg("policy.explore_context", self.explore_context)
        finite_nonneg("policy.prior_strength", self.prior_strength)
        require(0 <= self.epsilon < 1, "policy.epsilon", "must be in [0, 1)", self.epsilon)
        require(
            self.snapshot_every_events >= 1, "policy.snapshot_every_events", "must be >= 1", self.snapshot_every_events
        )
        positive("policy.snapshot_interval_s", self.snapshot_interval_s)
        positive("policy.lease_s", self.lease_s)
        require(self.keep_snapshots >= 1, "policy.keep_snapshots", "must be >= 1", self.keep_snapshots)
        require(self.gate_window >= 0, "policy.gate_window", "must be >= 0 (0 turns the gate off)", self.gate_window)
        require(self.gate_min_events >= 1, "policy.gate_min_events", "must be >= 1", self.gate_min_events)
        finite_nonneg("policy.gate_tolerance", self.gate_tolerance)
        positive("policy.gate_z", self.gate_z)
        require(0 <= self.gate_min_support <= 1, "policy.gate_min_support", "must be in [0, 1]", self.gate_min_support)
        finite_nonneg("policy.gate_min_ess", self.gate_min_ess)
        positive("policy.reload_poll_s", self.reload_poll_s)


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """r = quality - energy_weight * energy / energy_scale_joules - cost_weight * cost / cost_scale_usd."""

    energy_weight: float = 0.1
    cost_weight: float = 0.1
    energy_scale_joules: float = 200.0
    cost_scale_usd: float = 0.001
    # How long a decision waits for its reward before it expires.
    wait_time_s: float = 3600.0
    # How long a rewarded or expired decision id is remembered after its reward or expiry, to say which it was
    # (a marker of about 100 bytes; the decision itself is kept through its reward wait, for Route retries, and
    # in the learner's decision log on disk). Redis holds about 100 bytes x retention_s per sustained route/s
    # for it: see docs/operations.md.
    retention_s: float = 3600.0
    # What happens to a decision never rewarded within wait_time_s (as Personalizer's "default reward"):
    # "drop" forgets it; "default" learns it with quality ``default_quality`` and estimated energy and cost.
    on_expiry: str = "drop"
    default_quality: float = 0.0
    # How often expired decisions are looked for.
    expiry_sweep_s: float = 1.0
    # The quality learned for a model call that failed (an error, a timeout, an overloaded backend), so that
    # traffic moves off a broken model.
    failure_quality: float = 0.0

    @property
    def sweep_grace_s(self) -> float:
        """How long a decision outlives its reward deadline, so that a sweep still finds it to expire."""
        return max(60.0, 10 * self.expiry_sweep_s)

    def __post_init__(self) -> None:
        require(0 <= self.failure_quality <= 1, "reward.failure_quality", "must be in [0, 1]", self.failure_quality)
        finite_nonneg("reward.energy_weight", self.energy_weight)
        finite_nonneg("reward.cost_weight", self.cost_weight)
        positive("reward.energy_scale_joules", self.energy_scale_joules)
        positive("reward.cost_scale_usd", self.cost_scale_usd)
        positive("reward.wait_time_s", self.wait_time_s)
        finite_nonneg("reward.retention_s", self.retention_s)
        require(self.on_expiry in ("drop", "default"), "reward.on_expiry", "must be drop or default", self.on_expiry)
        require(0 <= self.default_quality <= 1, "reward.default_quality", "must be in [0, 1]", self.default_quality)
        positive("reward.expiry_sweep_s", self.expiry_sweep_s)


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
        positive("energy.sample_interval_s", self.sample_interval_s)
        positive("energy.max_sample_age_s", self.max_sample_age_s)
        finite_nonneg("energy.idle_watts", self.idle_watts)
        require(0 < self.ewma_alpha <= 1, "energy.ewma_alpha", "must be in (0, 1]", self.ewma_alpha)

    @property
    def node_name(self) -> str:
        import socket

        return self.node or socket.gethostname()
