"""The ``bandit-router`` command: serve, the route/reward/models clients, replay, warm start and the benchmarks."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from bandit_router.cli import client as client_commands
from bandit_router.cli import offline as offline_commands
from bandit_router.cli import replay as replay_commands
from bandit_router.cli import service as service_commands

GROUPS = (service_commands, client_commands, replay_commands, offline_commands)
# Each command's handler, by name: what it returns is the exit status.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    name: handler for group in GROUPS for name, handler in group.COMMANDS.items()
}


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="bandit-router", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('bandit-router')}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except BrokenPipeError:
        # `bandit-router stats | head`: the reader has gone. Point stdout at /dev/null so that the interpreter's
        # own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _user_error(exc)
        if message is None or args.log_level.upper() == "DEBUG":
            raise
        # What was started is stopped by now (each command's own cleanup ran on the way out).
        print(f"error: {message}", file=sys.stderr)
        return 2


def _user_error(exc: BaseException) -> str | None:
    """The one line to print for an error the user can fix (a file, a flag, a setting, an unreachable
    server), or None for a bug, whose traceback is worth seeing."""
    from bandit_router.errors import InputError
    from bandit_router.store.embedded import EmbeddedRedisError, RedisUnreachable

    if isinstance(exc, (InputError, RedisUnreachable, EmbeddedRedisError)):
        return str(exc)
    if isinstance(exc, OSError):
        # A taken port, a missing file, a data directory another router's Redis holds.
        return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    if isinstance(exc, RuntimeError) and str(exc):
        return str(exc)
    return None


def _run(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
