"""The ``bandit-router`` command line, one module per group of commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from bandit_router.cli.main import build_parser as build

    return build()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; where only the client is installed, says how to install the router instead of a traceback."""
    try:
        from bandit_router.cli.main import main as run
    except ModuleNotFoundError as exc:
        print(
            f"error: the bandit-router command is the router, whose dependencies are not installed ({exc.name} is "
            'missing): pip install "bandit-router[server]". The client alone is bandit_router.Client.',
            file=sys.stderr,
        )
        return 2
    return run(argv)
