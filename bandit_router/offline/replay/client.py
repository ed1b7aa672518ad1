"""The replayed application: sends every record's Route, then its Reward as the scenario allows, over gRPC, on the
replay's schedule in virtual time."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import grpc

from bandit_router.offline.replay.cadence import REWARD, ROUTE, Op
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.traffic.format import Record
from bandit_router.traffic.table import OutcomeTable, Trace
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


def _request_id(record: Record, step: int) -> str:
    return f"{step}-" + re.sub(r"[^A-Za-z0-9._:-]", "_", record.id)[:100]


async def route_all(
    address: str,
    records: list[Record],
    table: OutcomeTable,
    settings: ReplaySettings,
    schedule: Sequence[Op],
    driver: Driver,
    show_progress: bool,
) -> tuple[Trace, Counter[str], Counter[str]]:
    """Every record through the router at ``address`` on the schedule: Route, Reward and the learner's snapshot,
    one at a time in virtual time."""
    from tqdm import tqdm

    async with grpc.aio.insecure_channel(address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        with tqdm(total=len(records), desc="replay", unit="query", disable=not show_progress) as progress:
            return await _replay_bandit(stub, records, table, settings, schedule, driver, progress)


class Driver(Protocol):
    """What the schedule drives besides the calls: the router's clock and its learner's snapshots."""

    def set(self, at: float) -> None: ...

    async def publish(self, rewards: int) -> None: ...


def _reward_request(
    record: Record, table: OutcomeTable, scenario: Any, step: int, decision_id: str, j: int
) -> pb.RewardRequest:
    """The Reward a client would send for model ``j`` at ``step``: bandit feedback, only the chosen model's
    logged outcome, as the scenario changed it (corrupted quality, a billed price after a price change)."""
    outcome = record.outcomes[table.arms[j]]
    quality = table.quality[step, j]
    request = pb.RewardRequest(
        decision_id=decision_id,
        quality=float(1.0 - quality if scenario.corrupted(step) else quality),
        input_tokens=outcome.input_tokens or 0,
        output_tokens=outcome.output_tokens or 0,
        latency_ms=outcome.latency_ms or 0.0,
    )
    if outcome.energy_joules is not None:
        request.energy_joules = outcome.energy_joules
    if outcome.cost_usd is not None or scenario.price_factor(step, table.arms[j]) != 1.0:
        # After a price change the client reports what it was billed.
        request.cost_usd = float(table.cost[step, j])
    return request


async def _replay_bandit(
    stub: router_pb2_grpc.RouterStub,
    records: list[Record],
    table: OutcomeTable,
    settings: ReplaySettings,
    schedule: Sequence[Op],
    driver: Driver,
    progress: Any,
) -> tuple[Trace, Counter[str], Counter[str]]:
    trace = Trace()
    energy_sources: Counter[str] = Counter()
    cost_sources: Counter[str] = Counter()
    arm_index = {a: j for j, a in enumerate(table.arms)}
    scenario = settings.scenario
    preferences = pb.Preferences()
    if settings.energy_weight is not None:
        preferences.energy_weight = settings.energy_weight
    if settings.cost_weight is not None:
        preferences.cost_weight = settings.cost_weight
    # Each routed step's decision id and model index, until its reward is sent.
    decided: dict[int, tuple[str, int]] = {}
    for op in schedule:
        driver.set(op.at)
        if op.kind == ROUTE:
            i, record = op.step, records[op.step]
            decision = await stub.Route(
                pb.RouteRequest(
                    query=record.query,
                    request_id=_request_id(record, i),
                    candidates=[m for m in record.outcomes if scenario.available(i, m)],
                    task=record.task if settings.task_hint else "",
                    preferences=preferences,
                )
            )
            j = arm_index[decision.model]
            # What the application got, whatever reward it then sends.
            table.step(trace, i, j)
            decided[i] = (decision.decision_id, j)
            progress.update(1)
        elif op.kind == REWARD:
            decision_id, j = decided.pop(op.step)
            reply = await stub.Reward(_reward_request(records[op.step], table, scenario, op.step, decision_id, j))
            energy_sources[pb.Source.Name(reply.energy_source).removeprefix("SOURCE_").lower()] += 1
            cost_sources[pb.Source.Name(reply.cost_source).removeprefix("SOURCE_").lower()] += 1
        else:
            await driver.publish(op.step)
    return trace, energy_sources, cost_sources
