"""A replica's snapshot follower: swaps in each snapshot the learner announces, and polls for a missed one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bandit_router.store.errors import REDIS_ERRORS, stop_if_cancelled
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)


async def follow(store: Store, reload: Callable[[], Awaitable[bool]], poll_s: float) -> None:
    """Calls ``reload`` on each announcement and every ``poll_s`` seconds without one, until cancelled;
    rides out Redis outages."""
    while True:
        stop_if_cancelled()  # a cancellation redis-py swallowed
        pubsub = store.subscribe_snapshots()
        try:
            await pubsub.subscribe(store.snapshots_channel)
            await reload()
            while True:
                stop_if_cancelled()
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_s)
                if message is None or message.get("type") == "message":
                    await reload()
        except REDIS_ERRORS as exc:
            stop_if_cancelled(exc)
            log.warning("snapshot follower lost Redis (%s); retrying in 1 s", exc)
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()
