"""Save what keeps changing without piling up writes: one write in flight, then the newest state.

A call's transcript is saved after every turn so a crash keeps it. Under load
(dozens of calls on one database) a write per turn queued behind the others
can exhaust the connection pool, and the writes that fail leave tasks whose
errors nobody reads. Here a change only marks the state dirty; a single task
per call writes the newest state, and once more if it changed meanwhile. A
failed write is logged and retried at the next change; the call's end writes
the final transcript whatever happened before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger


class LatestWins:
    def __init__(self, save: Callable[[], Awaitable[object]], what: str) -> None:
        self._save, self._what = save, what
        self._dirty = False
        self._task: asyncio.Task | None = None

    def changed(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._save()
            except Exception as exc:  # the next change, or the call's end, writes it again
                logger.warning(f"{self._what}: not saved now ({exc!r}); the next turn or the call's end will")
                return

    async def settled(self) -> None:
        """Wait for the write in flight (the call is ending)."""
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)
