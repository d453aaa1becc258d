"""Keeping this worker's calls: lease renewal, end requests from other workers, lost leases.

One loop per process, one or two small queries a poll however many calls it
runs (none while it runs none). It renews the lease of the calls this process
holds every HEARTBEAT_SECS; it ends a call whose `end_requested` another worker
set (an operator's end through any worker); and it stops a call the database no
longer lists as this worker's (taken over after a stall), so the caller hears
nothing more from a worker that has lost the call. And it takes what the user
deleted from memory out of its live calls' prompts (agent/calls/live_memory.py).
"""

from __future__ import annotations

import asyncio
import time

from loguru import logger

from agent.calls.lifecycle import CallLifecycle
from agent.calls.live_memory import apply_deletions


class OwnershipKeeper:
    def __init__(self, lifecycle: CallLifecycle) -> None:
        self.lifecycle = lifecycle
        self.rt = lifecycle.rt
        self._last_renewal = 0.0

    async def run_forever(self) -> None:
        poll = self.rt.settings.end_poll_secs
        while True:
            await asyncio.sleep(poll)
            try:
                await self.check()
            except Exception as exc:  # the database is away: try again next poll; leases last far longer
                logger.warning(f"call ownership check failed ({exc!r})")

    async def check(self) -> None:
        live = self.lifecycle.live
        if not live:
            return
        settings, owner = self.rt.settings, self.rt.worker_id
        if time.monotonic() - self._last_renewal >= settings.heartbeat_secs:
            await self.rt.leases.renew(owner, list(live), settings.stale_call_secs)
            self._last_renewal = time.monotonic()
        owned = await self.rt.leases.owned(owner)
        for call_id, session in list(live.items()):
            if session.ending is not None or session.lease_lost:
                continue
            if call_id not in owned:
                await self.lifecycle.lost(session)
            elif owned[call_id] and not session.end_requested:
                logger.info(f"call {call_id}: end requested ({owned[call_id]}) through another worker")
                self.lifecycle.in_background(self.lifecycle.request_end(call_id, owned[call_id]))
        try:  # last, and on its own: a failure here must not hold up leases and end requests
            await apply_deletions(self.rt, [s for s in live.values() if s.call_id in owned])
        except Exception as exc:
            logger.warning(f"memory deletions could not reach the live calls yet ({exc!r})")
