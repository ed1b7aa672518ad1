"""The ``bandit-router`` command line, one module per group of commands."""

from bandit_router.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
