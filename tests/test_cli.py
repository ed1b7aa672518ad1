"""The command-line client against a real server."""

from __future__ import annotations

import asyncio
import json

import pytest

from bandit_router.cli import main
from bandit_router.server import Server


async def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    # The client is blocking; run it off the loop that serves it.
    status = await asyncio.to_thread(main, args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_route_then_reward_from_the_command_line(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
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
