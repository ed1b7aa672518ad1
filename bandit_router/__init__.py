"""bandit-router: online contextual-bandit routing of LLM queries. ``Client`` and ``AsyncClient`` talk to a router
over HTTP and need only httpx; the server itself is the ``server`` extra (``pip install "bandit-router[server]"``)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyRewarded",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "Conflict",
    "Decision",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "RewardResult",
    "Unavailable",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the server's modules never pull the client in, nor the client the server.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("bandit-router")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    if name in __all__:
        from bandit_router import client

        return getattr(client, name)
    raise AttributeError(f"module 'bandit_router' has no attribute {name!r}")
