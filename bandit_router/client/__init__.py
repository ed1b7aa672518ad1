"""The Python client of the HTTP/JSON API (``Client``, ``AsyncClient``); it needs httpx only, not the server."""

from bandit_router.client.clients import AsyncClient, Client
from bandit_router.client.types import (
    AlreadyRewarded,
    ApiError,
    AuthenticationError,
    Conflict,
    Decision,
    InvalidRequest,
    NotFound,
    RateLimited,
    RewardResult,
    Unavailable,
)

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
]
