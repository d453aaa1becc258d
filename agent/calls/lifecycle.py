"""A call's life from the domain's side: open, begin, end.

    created --begin (one winner)--> live --end (once, by its owner)--> ended
    created --cancel_before_start--> ended (the card hold is let go)

`begin` is a compare-and-set in the database that names this worker the
call's owner and hands it a fence (owner and epoch); every write the live call
makes carries it, so a worker that stalled and lost the call to another
(`agent.calls.reconcile` takes over calls whose lease expired) writes nothing
more and stops its pipeline. Every call ends finalised, whichever way it ends:
the media runner's `finally` calls `end`, and a call whose worker died is
finished by reconciliation in another worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from loguru import logger

from agent.accounts.personas import Persona
from agent.books.billing import Billing, PaymentError
from agent.books.budgets import BudgetMonitor, CallAllowance, LimitKind
from agent.books.costs import CallCostTracker
from agent.books.events import FinalBreakdown, Source
from agent.calls.call_memories import CallMemories
from agent.calls.latest_wins import LatestWins
from agent.calls.live_memory import deletion_mark
from agent.calls.payments import CallPayments
from agent.calls.session import CallSession, FencedSink
from agent.engines import prompt_budgets
from agent.errors import Conflict
from agent.memory.extraction import (
    MemoryExtractor,
    apply_update,
)
from agent.memory.in_call import InCallMemory
from agent.memory.prompt import CompositePrompt, build_composite_prompt, compose_prompt
from agent.memory.transcript import Transcript
from agent.runtime import Runtime
from storage.leases import Fence, LeaseLost
from storage.util import utcnow


class CallNotWaiting(Conflict):
    """The call is not waiting to start: another connection made it live first, or it has ended."""

class CallLifecycle:
    def __init__(self, runtime: Runtime, *, carrier_wait_secs: float = 3.0,
                 billing: Billing | None = None, extractor: MemoryExtractor | None = None) -> None:
        self.rt = runtime
        self.carrier_wait_secs = carrier_wait_secs
        self.billing = billing or Billing(runtime.settings)
        self.payments = CallPayments(runtime, self.billing)
        self.extractor = extractor or MemoryExtractor(runtime.settings,
                                                      timeout=runtime.settings.extraction_timeout_secs)
        self.memories = CallMemories(runtime, self.extractor)
        self.live: dict[str, CallSession] = {}  # this process's calls, for live views
        self._background: set[asyncio.Task] = set()

    async def open(self, user_id: str, persona_id: str, direction: str, *, twilio_call_sid: str | None = None,
                   call_id: str | None = None) -> CallAllowance:
        """Create the call, reserve its budget and, with payments on, hold it on the card.

        Raises `BudgetRefused` or `PaymentError`; either way no call starts and the
        reservation is released.
        """
        allowance = await self.rt.budgets.open_call(user_id, persona_id, direction, call_id=call_id,
                                                    twilio_call_sid=twilio_call_sid)
        if self.billing.enabled:
            user = await self.rt.users.get_user(user_id)
            try:
                auth = await self.billing.authorize(allowance.call_id, user["stripe_customer_id"],
                                                    user["stripe_payment_method_id"], allowance.limit_micros)
            except PaymentError:
                await self.rt.calls.update(allowance.call_id, status="ended", end_reason="payment_failed",
                                           ended_at=utcnow(), payment_status="failed")
                raise
            await self.rt.calls.update(allowance.call_id, payment_intent_id=auth.intent_id,
                                       authorized_micros=auth.amount_micros, payment_status="authorized")
        return allowance

    async def begin(self, call_id: str) -> CallSession:
        """The media is connected: make the call live in this worker, build its prompt, open its ledger.

        Exactly one connection wins; every other one gets `CallNotWaiting`, before
        any vendor connection is opened for it.
        """
        fence = await self.rt.leases.go_live(call_id, self.rt.worker_id, self.rt.settings.stale_call_secs)
        if fence is None:
            raise CallNotWaiting(f"call {call_id} is not waiting to start (already connected, or ended)")
        try:
            session = await self._session(call_id, fence)
        except BaseException:
            await self._abandon_start(call_id, fence)
            raise
        self.live[call_id] = session
        session.tracker.mark_started()
        session.tracker.start()
        return session

    async def _session(self, call_id: str, fence: Fence) -> CallSession:
        call = await self.rt.calls.get(call_id)
        user = await self.rt.users.get_user(call["user_id"])
        persona = Persona.from_row(await self.rt.users.get_persona(call["persona_id"]))
        budget = await self.rt.budgets.settings(call["user_id"])
        mark = await deletion_mark(self.rt)  # before the prompt: a deletion after it is news to the call
        prompt, loaded = await self._prompt_in_time(user, persona, budget.memory_token_limit)
        allowance = CallAllowance(
            call_id=call_id, user_id=user["id"], limit_micros=call["reserved_micros"],
            limit_kind=LimitKind(call["limit_kind"]), warning_threshold_pct=budget.warning_threshold_pct,
            auto_cutoff=budget.auto_cutoff, grace_period_seconds=budget.grace_period_seconds,
            daily_remaining_micros=call["reserved_micros"], monthly_remaining_micros=call["reserved_micros"],
        )
        sink = FencedSink(self.rt.calls, fence)
        tracker = CallCostTracker(call_id, user["id"], self.rt.prices, sink, direction=call["direction"],
                                  flush_interval=self.rt.settings.cost_flush_interval_secs,
                                  heartbeat_secs=self.rt.settings.heartbeat_secs, card_fee=self.billing.enabled)
        if loaded:
            tracker.track_memory("read")
        session = CallSession(call_id, call["direction"], user, persona, allowance, prompt, tracker,
                              BudgetMonitor(allowance), loaded, fence, call["twilio_call_sid"], memory_mark=mark)
        tracker.on_lease_lost = lambda: self.lost(session)
        if loaded:  # memory answered in time: the persona may write to it as well
            session.memory_tool = InCallMemory(self.rt.memory, user, persona, call_id, utcnow(), session.transcript,
                                               prompt_budgets(self.rt.settings)[0], budget.memory_token_limit,
                                               ledger=tracker)
        saver = LatestWins(lambda: self.rt.calls.update_live(fence, transcript=session.transcript.as_rows()),
                           f"call {call_id}'s transcript")
        session.transcript.on_turn = lambda _transcript: saver.changed()
        return session

    async def _abandon_start(self, call_id: str, fence: Fence) -> None:
        """The call went live here but could not be set up: end it now rather than at reconciliation."""
        try:
            tracker = CallCostTracker(call_id, "", self.rt.prices, card_fee=self.billing.enabled)
            await self._close_books(call_id, tracker, fence, reason="failed_to_start", seconds=0,
                                    transcript=Transcript(), extraction_status=None)
        except Exception as exc:  # the database is what failed: reconciliation finishes it
            logger.error(f"call {call_id} failed to start and could not be ended now ({exc!r})")

    async def lost(self, session: CallSession) -> None:
        """Another worker owns the call now: stop its pipeline here; that worker closes the books."""
        if session.lease_lost:
            return
        session.lease_lost = True
        logger.warning(f"call {session.call_id}: taken over by another worker; stopping it here")
        if session.hang_up is not None:
            await session.hang_up()

    async def cancel_before_start(self, call_id: str, reason: str) -> bool:
        """End a call that never went live, and let its card hold go. False if it is live or ended."""
        if not await self.rt.leases.cancel_before_start(call_id, reason):
            return False
        await self.payments.release_hold(call_id)
        return True

    def in_background(self, work: Awaitable[object]) -> None:
        """Small writes that must not hold up the audio path (a task kept until done)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:  # read, so it is never "never retrieved"
            logger.warning(f"a background write failed: {task.exception()!r}")

    async def _prompt_in_time(self, user: dict, persona: Persona, token_limit: int | None
                              ) -> tuple[CompositePrompt, bool]:
        """Memory within its time budget, or the core persona alone: a call never waits on memory."""
        budget = prompt_budgets(self.rt.settings)[0]
        try:
            prompt = await asyncio.wait_for(
                build_composite_prompt(self.rt.memory, user, persona, budget, memory_token_limit=token_limit),
                self.rt.settings.memory_load_timeout_secs)
            return prompt, True
        except Exception as exc:  # timeout or a database error: talk anyway
            logger.warning(f"memory for {user['id']}/{persona.id} not loaded ({exc!r}); using the core prompt")
            return compose_prompt(persona, None, user_name=user.get("display_name") or "", token_budget=budget), False

    async def end(self, session: CallSession, *, reason: str) -> FinalBreakdown | None:
        """Close the books once, however many ways the call ends at the same time.

        The work runs in its own task and is awaited shielded, so a cancelled
        caller (a server shutting down) cannot leave the books half closed.
        None if this worker lost the call to another, which closes the books instead.
        """
        if session.ending is None:
            session.ending = asyncio.get_running_loop().create_task(self._end(session, reason))
        return await asyncio.shield(session.ending)

    async def request_end(self, call_id: str, reason: str) -> bool:
        """Ask a call live in this process to end; False if this process does not hold it.

        With a media runner attached, its hang-up hook stops the pipeline and the
        runner's own `end` closes the books (with `end_requested` as the reason);
        without one there is nothing to stop, so the books are closed here.
        """
        session = self.live.get(call_id)
        if session is None:
            return False
        session.end_requested = session.end_requested or reason
        if session.hang_up is not None:
            await session.hang_up()
        else:
            await self.end(session, reason=reason)
        return True

    async def end_all(self, reason: str) -> None:
        """Shutdown: finish every call this process still holds."""
        sessions = list(self.live.values())
        results = await asyncio.gather(*(self.end(s, reason=reason) for s in sessions), return_exceptions=True)
        for session, result in zip(sessions, results):
            if isinstance(result, BaseException):
                logger.error(f"call {session.call_id} could not be finalised at shutdown: {result!r}")

    async def _end(self, session: CallSession, reason: str) -> FinalBreakdown | None:
        """Carrier minutes, memory extraction, finalise, capture; then memory and statistics."""
        try:
            return await self._finish(session, reason)
        except LeaseLost:
            session.lease_lost = True
            return None
        finally:
            self.live.pop(session.call_id, None)
            if session.lease_lost:
                await session.tracker.close_quietly()
                logger.warning(f"call {session.call_id}: lost to another worker; its books are closed there")

    async def _finish(self, session: CallSession, reason: str) -> FinalBreakdown | None:
        if session.lease_lost:
            return None
        tracker = session.tracker
        seconds, source = await self._duration(session)
        if session.direction != "webrtc":
            tracker.track_call_duration(seconds, source=source)
        tracker.track_memory("write")
        await self.memories.redact_forgotten(session)
        extraction = await self.memories.extract(session)
        await tracker.close()
        user_id, persona_id = session.user["id"], session.persona.id
        requested = (await self.rt.calls.get(session.call_id))["end_requested"]
        reason = session.end_requested or requested or reason  # an operator's end, from whichever worker
        final = await self._close_books(session.call_id, tracker, session.fence, reason=reason, seconds=seconds,
                                        transcript=session.transcript,
                                        extraction_status="done" if extraction else pending_extraction(session.transcript))
        if final is None:
            session.lease_lost = True
            return None
        await self.rt.memory.record_call(user_id, persona_id, seconds, utcnow())
        if extraction is not None:
            await apply_update(self.rt.memory, user_id, persona_id, session.call_id, extraction.update,
                               (await self.rt.calls.get(session.call_id))["started_at"], session.transcript.turns)
        else:
            await self.memories.placeholder_summary(user_id, persona_id, session.call_id, seconds,
                                                    session.transcript, reason)
        logger.info(f"call {session.call_id} ended ({reason}): total {final.total_micros} micro-dollars")
        return final

    async def _close_books(self, call_id: str, tracker: CallCostTracker, fence: Fence, *, reason: str,
                           seconds: int, transcript: Transcript, extraction_status: str | None
                           ) -> FinalBreakdown | None:
        """Finalise, store the breakdown with the call's end, then capture exactly the charge.

        Only the call's current owner can store the breakdown, and only once; None
        (and no capture) if the call was finalised already or taken over. The charge
        is fixed (and stored) before Stripe is asked, so a retry after a crash asks
        for the same capture under the same idempotency key.
        """
        call = await self.rt.calls.get(call_id)
        intent, authorized = call["payment_intent_id"], call["authorized_micros"] or 0
        charge = self.billing.amount_to_charge(tracker.total_micros(), authorized) if intent else 0
        final = tracker.finalize(amount_charged_micros=charge)
        won = await self.rt.calls.save_breakdown(_breakdown_row(final), {
            "status": "ended", "end_reason": reason, "ended_at": utcnow(), "duration_seconds": seconds,
            "spent_micros": final.total_micros, "transcript": transcript.as_rows(),
            "payment_status": "capture_pending" if intent else None, "extraction_status": extraction_status,
        }, fence=fence)
        if not won:
            logger.warning(f"call {call_id}: already finalised or owned by another worker; not finalised again")
            return None
        if intent:
            await self.payments.settle(call_id, intent, charge)
        return final

    async def _duration(self, session: CallSession) -> tuple[int, Source]:
        """The carrier's own duration when its status callback arrives in time, else ours."""
        if session.twilio_call_sid:
            deadline = time.monotonic() + self.carrier_wait_secs
            while True:
                call = await self.rt.calls.get(session.call_id)
                if call and call["duration_seconds"] is not None:
                    return int(call["duration_seconds"]), Source.VENDOR
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.2)
        return session.elapsed_seconds(), Source.MEASURED

    async def record_carrier_duration(self, twilio_call_sid: str, seconds: int) -> bool:
        call = await self.rt.calls.by_twilio_sid(twilio_call_sid)
        if call is None:
            return False
        if call["status"] != "ended":
            await self.rt.calls.update(call["id"], duration_seconds=int(seconds))
        return True

def pending_extraction(transcript: Transcript) -> str | None:
    """Extraction still owed: only when the user said something."""
    return "pending" if transcript.said_by("user") else None


def _breakdown_row(final: FinalBreakdown) -> dict:
    return {
        "call_id": final.call_id, "services": final.services, "subtotal_micros": final.subtotal_micros,
        "stripe_fee_micros": final.stripe_fee_micros, "total_micros": final.total_micros,
        "amount_charged_micros": final.amount_charged_micros,
        "profit_margin_micros": final.profit_margin_micros, "price_version": final.price_version,
        "finalized_at": final.finalized_at,
    }

