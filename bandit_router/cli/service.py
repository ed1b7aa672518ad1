"""The service commands: serve, learner and energy-agent."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def _serve(args: argparse.Namespace) -> int:
    if args.workers > 1:
        from bandit_router.runtime.workers import run_workers

        return asyncio.run(run_workers(args.config, args.workers))
    from bandit_router.config import load_config
    from bandit_router.runtime.process import serve

    asyncio.run(serve(load_config(args.config)))
    return 0


def _learner(args: argparse.Namespace) -> int:
    from bandit_router.config import load_config
    from bandit_router.runtime.process import run_learner, stop_on_signals

    async def learn() -> None:
        with stop_on_signals() as stop:
            await run_learner(load_config(args.config), stop)

    asyncio.run(learn())
    return 0


def _energy_agent(args: argparse.Namespace) -> int:
    from bandit_router.energy.agent import run_agent
    from bandit_router.runtime.process import stop_on_signals

    async def publish() -> int:
        with stop_on_signals() as stop:
            return await run_agent(args.config, args.node, args.gpus, args.interval, stop)

    return asyncio.run(publish())


COMMANDS = {"serve": _serve, "learner": _learner, "energy-agent": _energy_agent}


def add_parsers(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the router (embedded Redis unless REDIS_URL is set)")
    serve.add_argument("--config", help="TOML configuration file (default: the shipped defaults)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="routing processes sharing the port (SO_REUSEPORT), with the learner in this one (default: 1)",
    )
    agent = commands.add_parser(
        "energy-agent", help="publish this node's GPU energy counters to the routers' Redis (REDIS_URL)"
    )
    agent.add_argument("--config", help="TOML configuration file (energy and redis sections are read)")
    agent.add_argument(
        "--node", help="node name the catalog uses for this host (default: energy.node, else the host name)"
    )
    agent.add_argument("--gpus", type=int, nargs="*", help="GPU indices (default: all)")
    agent.add_argument("--interval", type=float, help="seconds between samples (default: energy.sample_interval_s)")
    learner = commands.add_parser(
        "learner", help="run the learner alone, for routing replicas (serve with server.learner = false)"
    )
    learner.add_argument("--config", help="TOML configuration file; redis.url (or REDIS_URL) is required")
