"""Mistakes a user makes read as one line on stderr, exit 2, and leave nothing running: each through the real
command in its own process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

from bandit_router.config import ServerConfig
from bandit_router.runtime.process import RouterProcess

# The server section's keys, as the error lists them.
SERVER_KEYS = [f.name for f in dataclasses.fields(ServerConfig)]

# Each command starts a fresh interpreter; a loaded CI machine can take a while to import torch.
TIMEOUT_S = 300


def run(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, stdout: int = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "HF_HUB_OFFLINE": "1",
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(tmp_path / "data"),
        "BANDIT_ROUTER_DASHBOARD_LISTEN": "",
        # A command that gets as far as binding binds free ports, never the defaults another process may hold.
        "BANDIT_ROUTER_SERVER_LISTEN": "127.0.0.1:0",
        "BANDIT_ROUTER_HTTP_LISTEN": "127.0.0.1:0",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "bandit_router", *args],
        cwd=tmp_path,
        env=environment,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=TIMEOUT_S,
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


MYSTERY = json.dumps({"id": "q1", "query": "What is 2+2?", "outcomes": {"mystery-model": {"quality": 1.0}}})


@pytest.mark.parametrize(
    ("files", "args", "env", "first_line"),
    [
        (
            {"typo.toml": "[server]\nlisten_addr = '127.0.0.1:1'\n"},
            ["serve", "--config", "typo.toml"],
            {},
            f"error: server has unknown keys (known: {', '.join(sorted(SERVER_KEYS))}), got ['listen_addr']",
        ),
        (
            {"bad.toml": "[server\nlisten = 1\n"},
            ["serve", "--config", "bad.toml"],
            {},
            "error: config file 'bad.toml' is not valid TOML: Expected ']' at the end of a table declaration (at line "
            "1, column 8)",
        ),
        (
            {},
            ["serve", "--config", "missing.toml"],
            {},
            "error: config file 'missing.toml' cannot be read: No such file or directory",
        ),
        (
            {"api.toml": "[[models]]\nid = 'gpt-4o'\ninput_usd_per_mtok = 2.5\n"},
            ["serve", "--config", "api.toml"],
            {},
            "error: models[gpt-4o] must have every required key, got 'missing output_usd_per_mtok'",
        ),
        (
            {"mystery.jsonl": MYSTERY + "\n"},
            ["replay", "mystery.jsonl", "--out", "out"],
            {},
            "error: model 'mystery-model' is in neither the catalog nor the reference profiles, and record 'q1' has no "
            "cost_usd for it: give each of its outcomes a cost_usd, or add it to the catalog (--config, "
            "[[models]] with "
            "its prices)",
        ),
        (
            {},
            ["evaluate", "none.dsjson"],
            {},
            "error: decision log 'none.dsjson' cannot be read: No such file or directory",
        ),
        (
            {"empty.dsjson": ""},
            ["evaluate", "empty.dsjson"],
            {},
            "error: empty.dsjson: holds no decisions (bandit-router export-log writes them once rewards are learned)",
        ),
        (
            {"bad.dsjson": '{"a": [1\n'},
            ["evaluate", "bad.dsjson"],
            {},
            "error: bad.dsjson:1: not a JSON object (Expecting ',' delimiter)",
        ),
        (
            {"other.dsjson": '{"a": [1]}\n'},
            ["evaluate", "other.dsjson"],
            {},
            "error: other.dsjson:1: not a decision as bandit-router export-log writes it (KeyError: '_bandit_router')",
        ),
        (
            {},
            ["convert", "routeprofile", "--data", "../shared/data/routeprofile", "--out", "rp.jsonl"],
            {},
            "error: --data '../shared/data/routeprofile' has no profile_data/candidate_models.json: point --data at a "
            "copy of RouteProfile (https://github.com/ulab-uiuc/RouteProfile, MIT licence), which holds "
            "profile_data/candidate_models.json and route_data/routing_test_data.json (a sample of RouteProfile ships "
            "with bandit-router: `bandit-router demo` replays it)",
        ),
    ],
    ids=[
        "config-typo",
        "bad-toml",
        "missing-config",
        "model-missing-fields",
        "replay-unknown-model",
        "evaluate-missing",
        "evaluate-empty",
        "evaluate-malformed",
        "evaluate-not-dsjson",
        "convert-no-data",
    ],
)
def test_a_user_error_is_one_line_and_exit_2(
    tmp_path: Path, files: dict[str, str], args: list[str], env: dict[str, str], first_line: str
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    result = run(args, tmp_path, env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "INFO" not in line]
    assert lines == [first_line], result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_redis_url_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    result = run(["serve"], tmp_path, {"REDIS_URL": f"redis://:hunter2hunter2@127.0.0.1:{port}/0"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"error: cannot reach Redis at redis://:***@127.0.0.1:{port}/0 (redis.url or REDIS_URL): Error 111"
    ), result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    # Nothing was started: no embedded Redis, no data directory of its own.
    assert not (tmp_path / "data" / "redis").exists()


def test_version_is_printed() -> None:
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "bandit_router", "--version"], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0 and result.stdout.strip() == f"bandit-router {version('bandit-router')}"


async def test_output_into_a_closed_pipe_ends_quietly(server: RouterProcess, tmp_path: Path) -> None:
    # `bandit-router models | head`, with the reader gone before the first byte: the read end is closed before
    # the command starts, so its first write fails with EPIPE.
    read, write_end = os.pipe()
    os.close(read)
    try:
        result = await asyncio.to_thread(run, ["models", "--target", server.address], tmp_path, None, write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == "", result.stderr
