"""Apprentice mode's evidence: off-policy estimates of the policy against the baseline it shadows, per tenant.

On apprentice traffic the baseline is served on all but an exploration share and the policy's own probability of
every served model is known, so each rewarded decision gives unbiased IPS terms of both the policy's value and the
baseline's, and of their paired difference. A tenant is promoted (goes online) once the lower end of an
anytime-valid confidence sequence for that difference rises above 0. It is valid at every sample size at once, so
checking it on every reward does not inflate the false-promotion rate the way repeated fixed-n intervals would:
the asymptotic confidence sequence of Waudby-Smith et al. (2021, "Time-uniform central limit theory and
asymptotic confidence sequences"), in its one-sided form.

Every action the policy may take keeps at least ``exploration`` times its probability in the logging pmf, so the
policy's support on apprentice traffic is whole by construction; what can be thin is its evidence: the policy's
importance weights (its probability over the logged one) are large on the few explored decisions, and below
``rollout.promote_min_ess`` effective samples the estimate is shown as "not estimable (support 100%, ESS n)" and
promotes nothing.

The estimate pools every policy version that served the tenant's apprentice traffic, so it is the average of
the policies so far; a policy that improves as it learns is better than that, which makes the test conservative.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from bandit_router.config import RolloutConfig
from bandit_router.domain.records import LearningEvent

log = logging.getLogger(__name__)


def rho2_for(horizon: int, alpha: float) -> float:
    """The mixing parameter that makes the confidence sequence tightest near ``horizon`` samples."""
    log_term = -2.0 * math.log(alpha)
    return (log_term + math.log(log_term + 1.0)) / horizon


def margin(n: int, sd: float, alpha: float, horizon: int) -> float:
    """Half-width, after ``n`` samples of standard deviation ``sd``, of the one-sided (1 - ``alpha``) asymptotic
    confidence sequence (the normal-mixture boundary); infinite below two samples."""
    if n < 2:
        return math.inf
    rho2 = rho2_for(horizon, alpha)
    return sd * math.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1.0) / alpha))


@dataclasses.dataclass
class Ledger:
    """One tenant's running sums over its rewarded apprentice decisions."""

    n: int = 0
    policy_sum: float = 0.0
    baseline_sum: float = 0.0
    difference_sum: float = 0.0
    difference_squares: float = 0.0
    # Apprentice rewards at promotion; 0 while not promoted. Promotion is kept: a tenant never falls back by itself.
    promoted_at: int = 0
    # The policy's importance weights' sum and sum of squares: their effective sample size.
    weight_sum: float = 0.0
    weight_squares: float = 0.0

    def observe(self, reward: float, probability: float, policy_probability: float, served_baseline: bool) -> None:
        """One rewarded decision, served with ``probability``, that the policy alone would have taken with
        ``policy_probability``; ``served_baseline`` says whether the model served was the baseline."""
        weight = policy_probability / probability
        self.weight_sum += weight
        self.weight_squares += weight * weight
        policy_term = weight * reward
        baseline_term = reward / probability if served_baseline else 0.0
        difference = policy_term - baseline_term
        self.n += 1
        self.policy_sum += policy_term
        self.baseline_sum += baseline_term
        self.difference_sum += difference
        self.difference_squares += difference * difference

    @property
    def ess(self) -> float:
        """The effective sample size of the policy's importance weights: (sum)^2 / sum of squares."""
        return self.weight_sum**2 / self.weight_squares if self.weight_squares > 0 else 0.0

    def estimable(self, rollout: RolloutConfig) -> bool:
        return self.n >= 2 and self.ess >= rollout.promote_min_ess

    @property
    def difference(self) -> float:
        return self.difference_sum / self.n if self.n else 0.0

    def sd(self) -> float:
        if self.n < 2:
            return math.inf
        mean = self.difference
        return math.sqrt(max(0.0, (self.difference_squares - self.n * mean * mean) / (self.n - 1)))

    def lower(self, rollout: RolloutConfig) -> float:
        """The lower end of the confidence sequence for the policy's value minus the baseline's."""
        return self.difference - margin(self.n, self.sd(), 1.0 - rollout.promote_confidence, rollout.promote_horizon)

    def review(self, rollout: RolloutConfig) -> bool:
        """Promotes the tenant if the policy is now better with confidence; True when this call promoted it."""
        if (
            self.promoted_at
            or self.n < rollout.promote_min_rewards
            or not self.estimable(rollout)
            or self.lower(rollout) <= 0
        ):
            return False
        self.promoted_at = self.n
        return True

    def view(self, rollout: RolloutConfig) -> dict[str, Any]:
        """What the dashboard shows: both estimates, their difference and its confidence sequence, with the
        policy's support and ESS; below ``rollout.promote_min_ess`` no figure, only why."""
        spread = margin(self.n, self.sd(), 1.0 - rollout.promote_confidence, rollout.promote_horizon)
        backing = {"n": self.n, "support": 1.0 if self.n else None, "ess": self.ess}
        if self.n and not self.estimable(rollout):
            return {
                **backing,
                "not_estimable": f"not estimable (support 100%, ESS {self.ess:.0f})",
                "policy": None,
                "baseline": None,
                "difference": None,
                "lower": None,
                "upper": None,
                "promoted_at": self.promoted_at,
            }
        return {
            **backing,
            "policy": self.policy_sum / self.n if self.n else None,
            "baseline": self.baseline_sum / self.n if self.n else None,
            "difference": self.difference if self.n else None,
            "lower": self.difference - spread if math.isfinite(spread) else None,
            "upper": self.difference + spread if math.isfinite(spread) else None,
            "promoted_at": self.promoted_at,
        }


class Apprentices:
    """The ledger of each tenant ("" without tenants) that has had apprentice traffic."""

    def __init__(self, tenant_to_ledger: dict[str, Ledger] | None = None) -> None:
        self.tenant_to_ledger = tenant_to_ledger or {}

    def ledger(self, tenant: str) -> Ledger:
        return self.tenant_to_ledger.setdefault(tenant, Ledger())

    def learn(self, event: LearningEvent, reward: float, rollout: RolloutConfig | None) -> None:
        """Observes an apprentice decision's ``reward`` (nothing for one the policy served), and promotes its
        tenant where ``rollout`` auto-promotes and the evidence now says so."""
        if event.baseline is None or event.policy_probability is None:
            return
        ledger = self.ledger(event.tenant)
        ledger.observe(reward, event.probability, event.policy_probability, event.index == event.baseline)
        if rollout is not None and rollout.auto_promote and ledger.review(rollout):
            log.info(
                "tenant %r promoted from apprentice to online after %d apprentice rewards: policy minus baseline "
                "%.4f, lower end of its %g%% confidence sequence %.4f",
                event.tenant,
                ledger.n,
                ledger.difference,
                100 * rollout.promote_confidence,
                ledger.lower(rollout),
            )

    def promoted(self) -> frozenset[str]:
        return frozenset(t for t, ledger in self.tenant_to_ledger.items() if ledger.promoted_at)

    def to_json(self) -> dict[str, Any]:
        return {t: dataclasses.asdict(ledger) for t, ledger in self.tenant_to_ledger.items()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Apprentices:
        return cls({str(t): Ledger(**fields) for t, fields in raw.items()})
