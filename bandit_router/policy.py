"""The contextual-bandit policy: a VW cb_explore_adf workspace and the query clusters it was trained with."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import time
from collections.abc import Sequence
from typing import Any, cast

from vowpal_wabbit_next import TextFormatParser, Workspace

from bandit_router.config import FeaturesConfig
from bandit_router.features import Clusterer
from bandit_router.reward import RunningEstimate

SNAPSHOT_MAGIC = b"BRSNAP1\n"


class SnapshotError(ValueError):
    """A snapshot is truncated, corrupt or from an incompatible configuration."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A published policy: VW model bytes, clusters, and the reward-stream position it covers."""

    version: int
    learned: int
    # Id of the last reward-stream event learned into this snapshot ("0-0" before any).
    stream_id: str
    vw_model: bytes
    clusters: bytes
    created_at: float
    # Running per-model estimates of observed cost, energy and latency (for budgets).
    estimates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        header = {
            "version": self.version,
            "learned": self.learned,
            "stream_id": self.stream_id,
            "created_at": self.created_at,
            "vw_len": len(self.vw_model),
            "clusters_len": len(self.clusters),
            "estimates": self.estimates,
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
        )


def sample_index(pmf: Sequence[float], decision_id: str, seed: int) -> int:
    """Draws an action from the pmf with a uniform number derived from the decision id and the seed,
    so the same decision under the same policy always takes the same action."""
    digest = hashlib.blake2b(f"{seed}:{decision_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    total = 0.0
    for index, p in enumerate(pmf):
        total += p
        if u < total:
            return index
    # Rounding left u above the last cumulative sum: take the last action with mass.
    return max(i for i, p in enumerate(pmf) if p > 0)


class Policy:
    """VW workspace plus clusterer. Not thread-safe: each owner calls it from one thread at a time."""

    def __init__(
        self,
        vw_args: Sequence[str],
        features: FeaturesConfig,
        dimension: int,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.clusterer = Clusterer(features, dimension)
        self.estimates: dict[str, RunningEstimate] = {}
        if snapshot is None:
            self.workspace = Workspace(list(vw_args))
            self.version = 0
            self.learned = 0
            self.stream_id = "0-0"
        else:
            # The saved model carries its reductions and interactions; only logging is set here.
            self.workspace = Workspace(["--quiet"], model_data=snapshot.vw_model)
            if snapshot.clusters:
                self.clusterer.load_bytes(snapshot.clusters)
            self.version = snapshot.version
            self.learned = snapshot.learned
            self.stream_id = snapshot.stream_id
            self.estimates = {m: RunningEstimate(**e) for m, e in snapshot.estimates.items()}
        self._parser = TextFormatParser(self.workspace)

    def pmf(self, shared: str, actions: Sequence[str]) -> list[float]:
        """Probability of each action, in the order given."""
        examples = [self._parser.parse_line(shared), *(self._parser.parse_line(a) for a in actions)]
        prediction = cast(list[tuple[int, float]], self.workspace.predict_one(examples))
        probabilities = [0.0] * len(actions)
        for index, p in prediction:
            probabilities[index] = float(p)
        return probabilities

    def learn_one(self, shared: str, actions: Sequence[str]) -> None:
        """Learns one decision; exactly one action line carries the cb label."""
        self.workspace.learn_one([self._parser.parse_line(shared), *(self._parser.parse_line(a) for a in actions)])
        self.learned += 1

    def snapshot(self, version: int, stream_id: str) -> Snapshot:
        return Snapshot(
            version=version,
            learned=self.learned,
            stream_id=stream_id,
            vw_model=self.workspace.serialize(),
            clusters=self.clusterer.to_bytes(),
            created_at=time.time(),
            estimates={m: dataclasses.asdict(e) for m, e in self.estimates.items()},
        )
