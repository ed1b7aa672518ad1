"""bandit-router: online contextual-bandit routing of LLM queries. ``Client`` and ``AsyncClient`` talk to a router
over HTTP and need only httpx; the server itself is the ``server`` extra (``pip install "bandit-router[server]"``)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncClient", "Client", "Decision"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the server's modules never pull the client in, nor the client the server.
    if name in __all__:
        from bandit_router import client

        return getattr(client, name)
    raise AttributeError(f"module 'bandit_router' has no attribute {name!r}")
