"""Finish what a dead or stalled worker left, from any worker, each piece of work exactly once.

Every piece of work is claimed with one conditional UPDATE before it is done
(`storage.leases`): a stale call is taken over by raising its epoch, a capture
or a hold release is claimed for a minute, an extraction attempt is counted and
claimed in the same statement. So several workers reconciling at once split the
work instead of repeating it, the extraction cap holds across them, and a
failed attempt backs off before anyone tries again. A conditional UPDATE was
chosen over `FOR UPDATE SKIP LOCKED` because it means the same on SQLite and
PostgreSQL and holds no lock while the work (a Stripe or LLM call) runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from loguru import logger

from agent.accounts.personas import Persona
from agent.books.costs import CallCostTracker
from agent.books.events import Source
from agent.calls.lifecycle import CallLifecycle, pending_extraction
from agent.memory.extraction import MAX_EXTRACTION_ATTEMPTS, ExtractionError, apply_update
from agent.memory.transcript import Transcript
from storage.leases import Fence
from storage.util import utcnow


class Reconciler:
    def __init__(self, lifecycle: CallLifecycle) -> None:
        self.lifecycle = lifecycle
        self.rt = lifecycle.rt

    async def run_forever(self, every: float = 60.0) -> None:
        """At start-up and then every RECONCILE_INTERVAL_SECS: finish what dead or stalled workers left."""
        while True:
            try:
                done = await self.run_once()
                if done:
                    logger.info(f"reconciled {len(done)} abandoned call(s)")
            except Exception as exc:
                logger.error(f"reconciliation failed: {exc!r}")
            await asyncio.sleep(every)

    async def run_once(self, *, stale_after: dt.timedelta | None = None) -> list[str]:
        """One pass over everything owed. Returns the ids of the abandoned calls it finalised."""
        stale_after = stale_after or dt.timedelta(seconds=self.rt.settings.stale_call_secs)
        done = []
        for call in await self.rt.calls.abandoned(utcnow() - stale_after):
            if call["id"] in self.lifecycle.live:
                continue
            fence = await self.rt.leases.take_over(call, self.rt.worker_id, self.rt.settings.stale_call_secs)
            if fence is None:  # another worker has it, or its owner renewed the lease meanwhile
                continue
            try:
                if await self._finish_abandoned(call, fence):
                    done.append(call["id"])
            except Exception as exc:
                logger.error(f"could not reconcile call {call['id']}: {exc!r}")
        for call in await self.rt.calls.unsettled():
            breakdown = await self.rt.calls.breakdown(call["id"])
            await self.lifecycle.payments.settle(call["id"], call["payment_intent_id"], breakdown["amount_charged_micros"])
        for call in await self.rt.leases.holds_to_release():
            await self.lifecycle.payments.release_hold(call["id"])
        for call in await self.rt.calls.awaiting_extraction(MAX_EXTRACTION_ATTEMPTS):
            if call["id"] not in self.lifecycle.live:
                await self._retry_extraction(call)
        return done

    async def _finish_abandoned(self, call: dict, fence: Fence) -> bool:
        events = await self.rt.calls.events(call["id"])
        tracker = CallCostTracker.from_events(call["id"], call["user_id"], self.rt.prices, events,
                                              self.rt.calls, direction=call["direction"],
                                              card_fee=self.lifecycle.billing.enabled)
        started = call["started_at"]
        if call["duration_seconds"] is not None:
            seconds, source = int(call["duration_seconds"]), Source.VENDOR
        elif started is not None:
            last = max([started] + [e["created_at"] for e in events] + [call["heartbeat_at"] or started])
            seconds, source = int((last - started).total_seconds()), Source.ESTIMATED
        else:
            seconds, source = 0, Source.ESTIMATED
        if started is not None and call["direction"] != "webrtc":
            tracker.track_call_duration(seconds, source=source)
        await tracker.close()
        transcript = Transcript.from_rows(call["transcript"])
        final = await self.lifecycle._close_books(call["id"], tracker, fence, reason="reconciled", seconds=seconds,
                                                  transcript=transcript,
                                                  extraction_status=pending_extraction(transcript))
        if final is None:
            return False
        if started is not None:
            await self.rt.memory.record_call(call["user_id"], call["persona_id"], seconds, utcnow())
            await self.lifecycle.memories.placeholder_summary(call["user_id"], call["persona_id"], call["id"], seconds,
                                                     transcript, "reconciled")
        logger.info(f"reconciled call {call['id']}: total {final.total_micros} micro-dollars")
        return True

    async def _retry_extraction(self, call: dict) -> None:
        """A later attempt at a call's memories. Its tokens are not charged: the call is settled."""
        attempt = await self.rt.leases.claim_extraction(call["id"], MAX_EXTRACTION_ATTEMPTS,
                                                        hold_secs=self.rt.settings.extraction_timeout_secs * 3)
        if attempt is None:
            return
        persona = Persona.from_row(await self.rt.users.get_persona(call["persona_id"]))
        try:
            memory = await self.rt.memory.snapshot(call["user_id"], persona.id)
            turns = Transcript.from_rows(call["transcript"]).turns
            result = await self.lifecycle.extractor.extract(persona.name, persona.llm_model, memory, turns)
            if result.update is None:
                raise ExtractionError(result.error or "unusable answer")
            await apply_update(self.rt.memory, call["user_id"], persona.id, call["id"], result.update,
                               call["started_at"], turns)
        except Exception as exc:
            logger.warning(f"call {call['id']}: memory extraction attempt {attempt} failed ({exc})")
            await self.rt.calls.update(call["id"], extraction_status="failed")
            await self.rt.leases.back_off(call["id"], self.rt.settings.extraction_backoff_secs * 2 ** (attempt - 1))
            return
        logger.info(f"call {call['id']}: memories extracted on attempt {attempt} ({result.prompt_tokens}+"
                    f"{result.completion_tokens} tokens, not charged)")
        await self.rt.calls.update(call["id"], extraction_status="done", claimed_until=None)
