"""How one rewarded decision is learned into a policy: its quality, pricing residuals, running figures and
apprentice evidence; and where a reward-stream event sits in its stream."""

from __future__ import annotations

from bandit_router.config import RolloutConfig
from bandit_router.domain.records import LearningEvent, decode_embedding
from bandit_router.domain.reward import RunningEstimate, bounded
from bandit_router.policy.vw import Policy

# A reported cost or energy is learned as at most this many times the catalog's figure (see _residual).
REPORT_TRUST = 10.0


def stream_position(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _residual(figure: float, source: str, catalog: float) -> float | None:
    """How far a figure was from the catalog's; None where the figure is unknown (an API model's unmeasured
    energy), which teaches nothing. One a caller reported is learned as at most ``REPORT_TRUST`` times the
    catalog's figure, so that one bad report cannot price a model out of routing (with tenants, only the
    reporting tenant's, whose pricing is its own). Where the catalog has no figure (0: no price, no energy
    profile) a report is all there is, bounded by Reward's plausibility check alone. (Measured figures, NVML's,
    are the router's own and count whole.)"""
    if source == "unknown":
        return None
    residual = figure - catalog
    if source == "reported" and catalog > 0:
        residual = min(residual, (REPORT_TRUST - 1) * catalog)
    return residual


def learn_event(policy: Policy, event: LearningEvent, ewma_alpha: float, rollout: RolloutConfig | None = None) -> None:
    """Learns one rewarded decision into ``policy``: the chosen model's quality in its context (the regressor
    and the evidence), its tokens and residuals (pricing), its running cost, energy and latency, and, served in
    apprentice mode, the policy's evidence against the baseline (promoting the tenant where ``rollout`` says)."""
    policy.learn_quality(event.shared, event.actions[event.index], event.quality)
    policy.apprentices.learn(event, bounded(event.reward), rollout)
    if event.embedding:
        policy.clusterer.learn_one(decode_embedding(event.embedding))
    # Events from before pricing learned residuals carry no catalog figures.
    if event.catalog_cost_usd is not None and event.catalog_energy_joules is not None:
        policy.pricing.observe(
            event.model,
            event.task,
            event.output_tokens if event.output_tokens_reported or event.output_tokens_counted else None,
            _residual(event.cost_usd, event.cost_source, event.catalog_cost_usd) or 0.0,
            _residual(event.energy_joules, event.energy_source, event.catalog_energy_joules),
            tenant=event.tenant,
        )
    # Pooled (GetStats, for admins), and the tenant's own (its latency budgets): one tenant's reports never
    # move the figures another tenant routes with.
    tenant = event.tenant
    owners = [policy.estimates] + ([policy.tenant_estimates.setdefault(tenant, {})] if tenant else [])
    for estimates in owners:
        estimate = estimates.setdefault(event.model, RunningEstimate())
        estimate.observe(ewma_alpha, event.cost_usd, event.energy_joules, event.latency_ms)
    policy.learned += 1
