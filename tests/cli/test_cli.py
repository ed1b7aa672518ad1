"""The command-line client against a real server."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest

from bandit_router.cli import main
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService


async def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    def call() -> int:
        try:
            return main(args)
        except SystemExit as exc:  # argparse's refusal of a bad flag
            return int(exc.code or 0)

    # The client is blocking; run it off the loop that serves it.
    status = await asyncio.to_thread(call)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_route_then_reward_from_the_command_line(
    server: RouterProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = await run_cli(
        ["route", "What is 7 times 8?", "--target", server.address, "--energy-weight", "0.3"], capsys
    )
    assert status == 0
    decision = json.loads(out)
    assert decision["energy_weight"] == 0.3 and decision["model"]
    status, out, _ = await run_cli(
        ["reward", decision["decision_id"], "0.9", "--output-tokens", "40", "--target", server.address], capsys
    )
    assert status == 0
    assert json.loads(out)["decision_id"] == decision["decision_id"]
    status, _, err = await run_cli(["reward", decision["decision_id"], "0.9", "--target", server.address], capsys)
    assert status == 1 and "ALREADY_EXISTS" in err
    status, out, _ = await run_cli(["models", "--target", server.address], capsys)
    assert len(json.loads(out)["models"]) == 8


async def test_route_options_and_readable_json(
    server: RouterProcess, service: RouterService, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = await run_cli(
        [
            "route",
            "Name a prime number",
            "--target",
            server.address,
            "--max-cost",
            "1",
            "--max-energy",
            "1000",
            "--max-latency",
            "60000",
            "--metadata",
            "user=alice",
            "--metadata",
            "app=cli=test",
        ],
        capsys,
    )
    assert status == 0, err
    decision = json.loads(out)
    pending = await service.store.get_pending(decision["decision_id"])
    assert pending is not None and pending.metadata == {"user": "alice", "app": "cli=test"}
    when = datetime.datetime.fromisoformat(decision["expires_at_iso"].replace("Z", "+00:00"))
    assert when.timestamp() == pytest.approx(decision["expires_at"], abs=0.001)
    # A budget nothing fits is refused, naming the budget.
    status, _, err = await run_cli(["route", "Name a prime", "--target", server.address, "--max-cost", "0"], capsys)
    assert status == 1 and "FAILED_PRECONDITION: budget: no candidate fits: max_cost_usd=0 excludes" in err
    status, _, err = await run_cli(["route", "x", "--target", server.address, "--metadata", "novalue"], capsys)
    assert status == 2 and "--metadata: must be KEY=VALUE, got 'novalue'" in err
    # int64 fields print as numbers, not the strings of protobuf's JSON mapping.
    status, out, _ = await run_cli(["stats", "--target", server.address], capsys)
    stats = json.loads(out)
    assert status == 0 and isinstance(stats["events_learned"], int) and isinstance(stats["queries_embedded"], int)
    assert all(isinstance(e["observations"], int) for e in stats["estimates"])
    # On a CPU the router's own embedding energy is not measured, and says so rather than estimating it 0.
    assert stats["embedding_energy_source"] == "SOURCE_UNKNOWN", stats
    assert stats["embedding_energy_basis"] == "not measured: the router embeds on cpu", stats
