"""What the gateway keeps of an answered call (its metered record, the conversation's pin), written to Redis in
one round trip after the answer has gone, not before.

The answer's caller should not wait for writes it never reads. Others read them, though: a Reward reads the
metered record, a conversation's next turn its pin. One that reaches this router first waits for the write in
flight (``settled``), so it finds what it would have found before. One sent to another replica within that
write's round trip (well under a millisecond) finds nothing yet and goes on as without it: the Reward is priced
from its own figures or estimates, the turn is routed afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bandit_router.domain.metered import Metered
from bandit_router.domain.records import Decision

log = logging.getLogger(__name__)

# A conversation's pin: its key, and the decision its turns stay on.
Pin = tuple[str, Decision]
Write = Callable[[str, Metered | None, Pin | None], Coroutine[Any, Any, None]]


class AfterAnswer:
    """The writes in flight, by decision id and by conversation key."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._writing: dict[str, asyncio.Task[None]] = {}

    def keep(self, decision_id: str, metered: Metered | None, pin: Pin | None = None) -> None:
        """Writes ``metered`` and ``pin`` in the background, together; a failure is logged (the Reward is then
        priced without the record, the next turn routed afresh)."""
        if metered is None and pin is None:
            return
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._write(decision_id, metered, pin), name="after-answer-write"
        )
        keys = [decision_id] if metered is not None else []
        keys += [pin[0]] if pin is not None else []
        for key in keys:
            self._writing[key] = task
        task.add_done_callback(lambda done: self._done(decision_id, keys, done))

    def _done(self, decision_id: str, keys: list[str], task: asyncio.Task[None]) -> None:
        for key in keys:
            if self._writing.get(key) is task:
                del self._writing[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "could not keep what the call of %s measured, nor its conversation's pin (%s): its Reward is priced "
                "without it, the conversation's next turn routed afresh",
                decision_id,
                task.exception(),
            )

    async def settled(self, key: str) -> None:
        """Returns once no write for ``key`` (a decision id, or a conversation key) is in flight, whether it
        succeeded or not."""
        task = self._writing.get(key)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def close(self) -> None:
        """Waits for every write in flight: a graceful stop loses none."""
        await asyncio.gather(*set(self._writing.values()), return_exceptions=True)

    def __len__(self) -> int:
        return len(set(self._writing.values()))
