"""The scalar reward of a decision, and the cost and energy it is computed from, each with its source."""

from __future__ import annotations

import dataclasses
import math
from enum import StrEnum

from bandit_router.config import ModelSpec, RewardConfig


class Source(StrEnum):
    """Where a figure came from; never claim more than this."""

    REPORTED = "reported"
    MEASURED = "measured"
    COMPUTED = "computed"
    ESTIMATED = "estimated"
    # Not reported, not measured, and no catalog profile to estimate it from: the value is 0 and says nothing.
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Figure:
    value: float
    source: Source
    # What it was derived from, in words a person can check.
    basis: str


@dataclasses.dataclass(frozen=True)
class Tokens:
    input: int
    output: int
    # True where the caller reported the count, False where it is an estimate.
    input_reported: bool
    output_reported: bool
    # An unreported output count estimated from the answer's length (the gateway saw the answer) rather than
    # the model's typical output.
    output_from_length: bool = False
    # Unreported counts the gateway counted with the model's tokenizer: true counts of the text it relayed.
    input_counted: bool = False
    output_counted: bool = False

    @property
    def output_known(self) -> bool:
        """Whether the output count is a count (reported, or counted with the tokenizer), not an estimate."""
        return self.output_reported or self.output_counted


# The common rule of thumb for English text and BPE tokenizers; an estimate, and said to be one.
CHARS_PER_TOKEN = 4


def resolve_tokens(
    model: ModelSpec,
    input_tokens: int,
    output_tokens: int,
    query_tokens: int,
    answer_chars: int = 0,
    counted: tuple[int, int] = (0, 0),
) -> Tokens:
    """Reported counts where given (> 0); else the ``counted`` (input, output) tokens the gateway counted with the
    model's tokenizer (> 0); else the query's word pieces, and the answer's length in tokens where the answer was
    seen (``answer_chars`` > 0), or the model's typical output."""
    input_counted = input_tokens <= 0 and counted[0] > 0
    output_counted = output_tokens <= 0 and counted[1] > 0
    from_length = output_tokens <= 0 and not output_counted and answer_chars > 0
    if output_tokens > 0:
        output = output_tokens
    elif output_counted:
        output = counted[1]
    elif from_length:
        output = -(-answer_chars // CHARS_PER_TOKEN)
    else:
        output = round(model.typical_output_tokens)
    return Tokens(
        input=input_tokens if input_tokens > 0 else counted[0] if input_counted else query_tokens,
        output=output,
        input_reported=input_tokens > 0,
        output_reported=output_tokens > 0,
        output_from_length=from_length,
        input_counted=input_counted,
        output_counted=output_counted,
    )


def _describe(tokens: Tokens) -> str:
    if tokens.input_reported:
        i = "reported"
    elif tokens.input_counted:
        i = "counted with the model's tokenizer"
    else:
        i = "estimated from the query's word pieces"
    if tokens.output_reported:
        o = "reported"
    elif tokens.output_counted:
        o = "counted with the model's tokenizer"
    elif tokens.output_from_length:
        o = f"estimated from the answer's length at {CHARS_PER_TOKEN} characters per token"
    else:
        o = "the model's typical output"
    return f"{tokens.input} input tokens ({i}), {tokens.output} output tokens ({o})"


def cost_of(model: ModelSpec, reported: float | None, tokens: Tokens) -> Figure:
    """Reported > computed (reported or counted tokens x catalog prices) > estimated (estimated tokens)."""
    if reported is not None:
        return Figure(reported, Source.REPORTED, "cost_usd sent with the reward")
    value = (tokens.input * model.input_usd_per_mtok + tokens.output * model.output_usd_per_mtok) / 1e6
    known = (tokens.input_reported or tokens.input_counted) and tokens.output_known
    source = Source.COMPUTED if known else Source.ESTIMATED
    basis = (
        f"catalog prices {model.input_usd_per_mtok}/{model.output_usd_per_mtok} USD per 1M input/output tokens x "
        + _describe(tokens)
    )
    return Figure(value, source, basis)


def energy_of(
    model: ModelSpec, reported: float | None, tokens: Tokens, measured: Figure | None = None, unmeasured: str = ""
) -> Figure:
    """Reported > measured (NVML, attributed) > estimated from the catalog's energy profile > unknown (0).

    ``unmeasured`` says why there is no measurement, and goes into an estimate's basis.
    """
    if reported is not None:
        return Figure(reported, Source.REPORTED, "energy_joules sent with the reward")
    if measured is not None:
        return measured
    if model.energy_j_per_input_token is None or model.energy_j_per_output_token is None:
        why = f"; not measured: {unmeasured}" if unmeasured else ""
        return Figure(
            0.0,
            Source.UNKNOWN,
            f"the catalog has no energy profile for {model.id}{why}: the energy weight does not apply to it",
        )
    value = tokens.input * model.energy_j_per_input_token + tokens.output * model.energy_j_per_output_token
    basis = (
        f"catalog profile {model.energy_j_per_input_token}/{model.energy_j_per_output_token} J per input/output "
        f"token ({model.energy_profile_source}) x " + _describe(tokens)
    )
    if unmeasured:
        basis += f"; not measured: {unmeasured}"
    return Figure(value, Source.ESTIMATED, basis)


@dataclasses.dataclass
class RunningEstimate:
    """Exponentially weighted means of one model's observed cost, energy and latency per request."""

    cost_usd: float = 0.0
    energy_joules: float = 0.0
    latency_ms: float = 0.0
    observations: int = 0
    latency_observations: int = 0

    def observe(self, alpha: float, cost_usd: float, energy_joules: float, latency_ms: float) -> None:
        # The first observation is taken whole, so an early mean is not pulled towards zero.
        a = 1.0 if self.observations == 0 else alpha
        self.cost_usd += a * (cost_usd - self.cost_usd)
        self.energy_joules += a * (energy_joules - self.energy_joules)
        self.observations += 1
        if latency_ms > 0:
            b = 1.0 if self.latency_observations == 0 else alpha
            self.latency_ms += b * (latency_ms - self.latency_ms)
            self.latency_observations += 1


# Rewards are clipped here wherever they are averaged (the gate, OPE, the dashboard, the export): validation
# bounds what a caller reports, and this keeps one extreme that got in anyway (an old log) from making any
# mean infinite or undefined.
REWARD_FLOOR = -1e6


def bounded(reward: float) -> float:
    """``reward`` within [REWARD_FLOOR, 1] (the best reward is a perfect answer at no cost); NaN at the floor."""
    return REWARD_FLOOR if math.isnan(reward) else min(1.0, max(REWARD_FLOOR, reward))


def weighted_penalty(
    energy: float, cost: float, energy_weight: float, cost_weight: float, config: RewardConfig
) -> float:
    """``w_E * energy / E_scale + w_C * cost / C_scale``: the reward's price of an answer, expected (Route) or
    actual (Reward, expiry) alike."""
    return energy_weight * energy / config.energy_scale_joules + cost_weight * cost / config.cost_scale_usd


def scalar_reward(
    quality: float, energy: float, cost: float, energy_weight: float, cost_weight: float, config: RewardConfig
) -> float:
    """r = quality - w_E * energy / E_scale - w_C * cost / C_scale."""
    return quality - weighted_penalty(energy, cost, energy_weight, cost_weight, config)
