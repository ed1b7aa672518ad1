"""What the gateway measured of a model call, written to Redis after the answer has gone, not before.

The answer's caller should not wait for a write it never reads. A Reward reads the record, though: one that
reaches this router first waits for the write in flight for its decision (``settled``), so it is priced from
the measurement as before. A Reward sent to another replica within that write's round trip (well under a
millisecond) finds no record yet and is priced as a Reward without one is: from its own figures or estimates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bandit_router.domain.metered import Metered

log = logging.getLogger(__name__)


class Metering:
    """The metered records being written, by decision id."""

    def __init__(self, write: Callable[[str, Metered], Coroutine[Any, Any, None]]) -> None:
        self._write = write
        self._writing: dict[str, asyncio.Task[None]] = {}

    def keep(self, decision_id: str, metered: Metered) -> None:
        """Writes ``metered`` in the background; a failure is logged (the Reward is then priced without it)."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._write(decision_id, metered), name="metered-write"
        )
        self._writing[decision_id] = task
        task.add_done_callback(lambda done: self._done(decision_id, done))

    def _done(self, decision_id: str, task: asyncio.Task[None]) -> None:
        if self._writing.get(decision_id) is task:
            del self._writing[decision_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "could not keep what the call of %s measured (%s); its Reward is priced without it",
                decision_id,
                task.exception(),
            )

    async def settled(self, decision_id: str) -> None:
        """Returns once no write for ``decision_id`` is in flight (whether it succeeded or not)."""
        task = self._writing.get(decision_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def close(self) -> None:
        """Waits for every write in flight: a graceful stop loses none."""
        await asyncio.gather(*self._writing.values(), return_exceptions=True)

    def __len__(self) -> int:
        return len(self._writing)
