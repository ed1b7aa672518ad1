"""Conversation affinity: a conversation is routed once, and its later turns stay on that model.

A conversation is named by the caller (an explicit id) or, absent one, by a digest of its opening: the system
prompt and the first user message, which every later turn repeats. Its first turn is the bandit's decision; the
conversation is then pinned to it in Redis for the reward wait. A later turn is *sticky*: the same model, answered
under the pinned decision's id with probability 1, so feedback for any turn rewards the conversation's one
decision (the first reward counts) and the policy learns, and is evaluated off-policy, per conversation: only the
pinned decision, with the probability it was logged with, ever becomes a learning event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import ResponseError

from bandit_router.domain.records import Decision
from bandit_router.store.errors import REDIS_ERRORS
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)

STICKY = "sticky"


def conversation_key(tenant: str, explicit: str, opening: str) -> str:
    """Where a conversation's pin is kept: per tenant, by the caller's id or else by the opening's digest."""
    named = f"id\x00{explicit}" if explicit else f"opening\x00{opening}"
    return f"{tenant or '-'}:{hashlib.sha256(named.encode()).hexdigest()[:32]}"


def sticky(pinned: Decision) -> Decision:
    """A later turn's answer: the pinned decision's model and id, served with probability 1."""
    return dataclasses.replace(pinned, probability=1.0, pmf=[(pinned.model, 1.0)], mode=STICKY)


class Affinity:
    """Pins in Redis, each kept for ``ttl_s`` from the decision it names (written with the call's metered record,
    :class:`~bandit_router.serving.after_answer.AfterAnswer`). Best effort: while Redis is unreachable a turn is
    routed afresh (and its decision buffered as any other), never refused."""

    def __init__(self, store: Store, ttl_s: float, settled: Callable[[str], Awaitable[None]]) -> None:
        self.store = store
        self.ttl_s = ttl_s
        # Waits for this router's own pin of the conversation, where it is still being written.
        self._settled = settled

    async def pinned(self, key: str) -> Decision | None:
        await self._settled(key)
        try:
            return await self.store.get_pin(key)
        except (*REDIS_ERRORS, ResponseError) as exc:
            log.info("conversation pin unreadable (Redis: %s): this turn is routed afresh", type(exc).__name__)
            return None
