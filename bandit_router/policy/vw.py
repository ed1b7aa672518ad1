"""The routing policy: VW's estimate of each model's quality in a context, how much evidence backs it, what each
model is expected to cost, and the query clusters; and its snapshot codec.

The policy learns only what is unknown, how well a model answers: a VW squared-loss regressor of quality on
the model crossed with the context (``features.context``). What a model costs in energy and money at the
request's weights is known, or estimated in closed form (:mod:`bandit_router.domain.pricing`), and enters each
decision as a penalty. A weight never seen in training therefore gets the right trade-off at once.
:mod:`bandit_router.policy.rule` turns qualities, evidence and penalties into the pmf and the choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import time
from collections.abc import Collection
from typing import Any, cast

from vowpal_wabbit_next import TextFormatParser, Workspace

from bandit_router.config import Config, FeaturesConfig, PolicyConfig
from bandit_router.domain.pricing import Pricing
from bandit_router.domain.reward import RunningEstimate
from bandit_router.policy.apprentice import Apprentices
from bandit_router.policy.clusters import Clusterer
from bandit_router.policy.exploration import Evidence
from bandit_router.policy.hierarchy import Means
from bandit_router.policy.rule import optimistic_pmf
from bandit_router.policy.vwlines import CATEGORICAL, NS_ACTION, Choice, namespaces, vw_number

SNAPSHOT_MAGIC = b"BRSNAP1\n"
# Format 2: a quality regressor with evidence and pricing. Format 1 held a cb_explore_adf model of the reward.
SNAPSHOT_FORMAT = 2


class SnapshotError(ValueError):
    """A snapshot is truncated, corrupt or from an incompatible configuration."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A published policy: VW model bytes, clusters, and the reward-stream position it covers."""

    version: int
    learned: int
    # Id of the last reward-stream event learned into this snapshot ("0-0" before any): of the first shard's stream.
    stream_id: str
    vw_model: bytes
    clusters: bytes
    created_at: float
    # Running per-model estimates of observed cost, energy and latency (for latency budgets and stats).
    estimates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # The same per tenant, from its own rewards: what its latency budgets use.
    tenant_estimates: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    # Rewards seen per model and cell (exploration.Evidence), and observed tokens and residuals (pricing.Pricing).
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    pricing: dict[str, Any] = dataclasses.field(default_factory=dict)
    # What the policy was warm-started from, one line each, oldest first.
    warm_starts: list[str] = dataclasses.field(default_factory=list)
    # Apprentice mode's estimates per tenant, and which tenants they promoted (apprentice.Apprentices).
    apprentices: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The same as stream_id for the other shards' streams (redis.shards > 1), by shard number.
    stream_ids: dict[str, str] = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        header = {
            "format": SNAPSHOT_FORMAT,
            "version": self.version,
            "learned": self.learned,
            "stream_id": self.stream_id,
            "created_at": self.created_at,
            "vw_len": len(self.vw_model),
            "clusters_len": len(self.clusters),
            "estimates": self.estimates,
            "tenant_estimates": self.tenant_estimates,
            "evidence": self.evidence,
            "pricing": self.pricing,
            "warm_starts": self.warm_starts,
            "apprentices": self.apprentices,
            "stream_ids": self.stream_ids,
        }
        payload = json.dumps(header).encode() + b"\n" + self.vw_model + self.clusters
        digest = hashlib.sha256(payload).digest()
        return SNAPSHOT_MAGIC + digest + struct.pack(">Q", len(payload)) + payload

    @classmethod
    def decode(cls, data: bytes) -> Snapshot:
        start = len(SNAPSHOT_MAGIC) + 32 + 8
        if len(data) < start or not data.startswith(SNAPSHOT_MAGIC):
            raise SnapshotError("snapshot does not start with the snapshot header")
        digest = data[len(SNAPSHOT_MAGIC) : len(SNAPSHOT_MAGIC) + 32]
        (length,) = struct.unpack(">Q", data[start - 8 : start])
        payload = data[start:]
        if len(payload) != length:
            raise SnapshotError(f"snapshot is {len(payload)} bytes long, its header says {length}")
        if hashlib.sha256(payload).digest() != digest:
            raise SnapshotError("snapshot checksum does not match its contents")
        header_end = payload.index(b"\n")
        header = json.loads(payload[:header_end])
        if header.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(
                f"snapshot has format {header.get('format', 1)}, this router reads {SNAPSHOT_FORMAT} (format 1 was "
                "an earlier policy that learned the reward itself; it cannot serve here)"
            )
        body = payload[header_end + 1 :]
        vw_len = int(header["vw_len"])
        return cls(
            version=int(header["version"]),
            learned=int(header["learned"]),
            stream_id=str(header["stream_id"]),
            vw_model=body[:vw_len],
            clusters=body[vw_len:],
            created_at=float(header["created_at"]),
            estimates=dict(header.get("estimates", {})),
            tenant_estimates=dict(header.get("tenant_estimates", {})),
            evidence=dict(header.get("evidence", {})),
            pricing=dict(header.get("pricing", {})),
            warm_starts=list(header.get("warm_starts", [])),
            apprentices=dict(header.get("apprentices", {})),
            stream_ids={str(k): str(v) for k, v in header.get("stream_ids", {}).items()},
        )

    def tenant_parts(self) -> dict[str, dict[str, Any]]:
        """Each named tenant's own parts (its running estimates, pricing and apprentice ledger), which a replica
        serving other tenants never needs."""
        pricing = self.pricing.get("tenants", {})
        names = (set(self.tenant_estimates) | set(pricing) | set(self.apprentices)) - {""}
        return {
            t: {
                "estimates": self.tenant_estimates.get(t),
                "pricing": pricing.get(t),
                "apprentices": self.apprentices.get(t),
            }
            for t in names
        }

    def shared(self) -> Snapshot:
        """This snapshot without any named tenant's parts."""
        pricing = {k: v for k, v in self.pricing.items() if k != "tenants"}
        apprentices = {t: v for t, v in self.apprentices.items() if t == ""}
        return dataclasses.replace(self, tenant_estimates={}, pricing=pricing, apprentices=apprentices)

    def only(self, tenants: Collection[str]) -> Snapshot:
        """This snapshot with the parts of ``tenants`` alone."""
        parts = self.tenant_parts()
        return self.shared().with_tenants({t: parts[t] for t in tenants if t in parts})

    def with_tenants(self, parts: dict[str, dict[str, Any]]) -> Snapshot:
        """This snapshot with ``parts`` (as :meth:`tenant_parts` gives them) added."""
        if not parts:
            return self
        estimates, apprentices = dict(self.tenant_estimates), dict(self.apprentices)
        pricing_tenants = dict(self.pricing.get("tenants", {}))
        for tenant, part in parts.items():
            for into, value in ((estimates, part["estimates"]), (pricing_tenants, part["pricing"]),
                                (apprentices, part["apprentices"])):  # fmt: skip
                if value is not None:
                    into[tenant] = value
        pricing = {**self.pricing, **({"tenants": pricing_tenants} if pricing_tenants else {})}
        return dataclasses.replace(self, tenant_estimates=estimates, pricing=pricing, apprentices=apprentices)


def interactions(features: FeaturesConfig) -> list[str]:
    """VW arguments crossing the model with each context namespace."""
    return [arg for ns in features.context for arg in ("--interactions", NS_ACTION + ns)]


class Policy:
    """Quality regressor, evidence, pricing and clusterer. Not thread-safe: each owner calls it from one thread
    at a time."""

    @classmethod
    def of(cls, config: Config, dimension: int, snapshot: Snapshot | None = None) -> Policy:
        """The policy ``config`` describes, over embeddings of ``dimension``, from ``snapshot`` (fresh from None).
        Blocking: it builds a VW workspace."""
        return cls(config.policy, config.features, dimension, snapshot)

    def __init__(
        self,
        config: PolicyConfig,
        features: FeaturesConfig,
        dimension: int,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.config = config
        self.features = features
        self.clusterer = Clusterer(features, dimension)
        self.estimates: dict[str, RunningEstimate] = {}
        self.tenant_estimates: dict[str, dict[str, RunningEstimate]] = {}
        self.evidence = Evidence()
        self.means = Means()
        self.pricing = Pricing()
        self.warm_starts: list[str] = []
        self.apprentices = Apprentices()
        if snapshot is None:
            self.workspace = Workspace([*config.vw_args, *interactions(features)])
            self.version = 0
            self.learned = 0
            self.stream_id = "0-0"
            self.stream_ids: dict[str, str] = {}
        else:
            # The saved model carries its options and interactions; only logging is set here.
            self.workspace = Workspace(["--quiet"], model_data=snapshot.vw_model)
            if snapshot.clusters:
                self.clusterer.load_bytes(snapshot.clusters)
            self.version = snapshot.version
            self.learned = snapshot.learned
            self.stream_id = snapshot.stream_id
            self.stream_ids = dict(snapshot.stream_ids)
            self.estimates = {m: RunningEstimate(**e) for m, e in snapshot.estimates.items()}
            self.tenant_estimates = {
                t: {m: RunningEstimate(**e) for m, e in by_model.items()}
                for t, by_model in snapshot.tenant_estimates.items()
            }
            self.evidence = Evidence.from_json(snapshot.evidence)
            self.means = Means.from_json(snapshot.evidence.get("means", []))
            self.pricing = Pricing.from_json(snapshot.pricing)
            self.warm_starts = list(snapshot.warm_starts)
            self.apprentices = Apprentices.from_json(snapshot.apprentices)
        self._parser = TextFormatParser(self.workspace)
        self._cell_namespaces = [ns for ns in features.context if ns in CATEGORICAL]

    def cells(self, shared: str) -> list[str]:
        """The cells (task, cluster) of a context line that the policy counts evidence in."""
        found = namespaces(shared)
        return [f"{ns}:{feature}" for ns in self._cell_namespaces for feature in found.get(ns, {})]

    @staticmethod
    def model_of(action: str) -> str:
        """The model id an action line names."""
        return next(iter(namespaces(action).get(NS_ACTION, {"": 1.0})))

    def qualities(self, choice: Choice) -> list[float]:
        """The estimated quality of each action in the context, in [0, 1]: VW's, read against the hierarchy's
        prior where the model has few rewards in the query's cells (:mod:`bandit_router.policy.hierarchy`)."""
        strength = self.config.prior_strength
        # A snapshot from before the hierarchy has evidence but no means: VW alone serves it.
        if self.evidence.model_to_count and not self.means.key_to_total:
            strength = 0.0
        cells = self.cells(choice.shared) if strength > 0 else []
        found = []
        for action in choice.actions:
            predicted = cast(float, self.workspace.predict_one(self._parser.parse_line(f"{action} {choice.shared}")))
            quality = min(1.0, max(0.0, float(predicted)))
            if strength > 0:
                quality = self.means.blend(self.model_of(action), cells, quality, strength)
            found.append(quality)
        return found

    def widths(self, choice: Choice, pending: Evidence | None = None) -> list[float]:
        cells = self.cells(choice.shared)
        a0, a1 = self.config.explore_model, self.config.explore_context
        return [self.evidence.width(self.model_of(action), cells, a0, a1, pending) for action in choice.actions]

    def pmf(self, choice: Choice, pending: Evidence | None = None) -> list[float]:
        """Probability of each action, in the order given; ``pending`` counts trials not learned yet."""
        widths = self.widths(choice, pending)
        return optimistic_pmf(self.qualities(choice), widths, choice.penalties, self.config.epsilon)

    def learn_quality(self, shared: str, action: str, quality: float, weight: float = 1.0) -> None:
        """Learns that ``action``'s answer in context ``shared`` had ``quality``, and counts it as evidence."""
        line = f"{vw_number(quality)} {vw_number(weight)} {action} {shared}"
        self.workspace.learn_one(self._parser.parse_line(line))
        model, cells = self.model_of(action), self.cells(shared)
        self.evidence.add(model, cells)
        self.means.add(model, cells, quality)

    def estimates_of(self, tenant: str) -> dict[str, RunningEstimate]:
        """The running estimates ``tenant``'s budgets use: its own (none yet: empty), or, without tenants, the
        pooled ones."""
        return self.tenant_estimates.get(tenant, {}) if tenant else self.estimates

    def snapshot(self, version: int, stream_id: str) -> Snapshot:
        return Snapshot(
            version=version,
            learned=self.learned,
            stream_id=stream_id,
            vw_model=self.workspace.serialize(),
            clusters=self.clusterer.to_bytes(),
            created_at=time.time(),
            estimates={m: dataclasses.asdict(e) for m, e in self.estimates.items()},
            tenant_estimates={
                t: {m: dataclasses.asdict(e) for m, e in by_model.items()}
                for t, by_model in self.tenant_estimates.items()
            },
            evidence={**self.evidence.to_json(), "means": self.means.to_json()},
            pricing=self.pricing.to_json(),
            warm_starts=list(self.warm_starts),
            apprentices=self.apprentices.to_json(),
            stream_ids=dict(self.stream_ids),
        )
