"""A call's life from the domain's side: open, begin, end, and reconcile after a crash.

Every call ends finalised, whichever way it ends: the pipeline's `finally`
calls `end`, and a call whose process died is finished by `reconcile` in the
next process that starts (or in any other worker, once its heartbeat is stale).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from loguru import logger

from agent.books.billing import Billing, PaymentError
from agent.books.budgets import BudgetMonitor, CallAllowance, LimitKind
from agent.books.costs import CallCostTracker, FinalBreakdown, Service, Source
from agent.memory.extraction import (
    MAX_EXTRACTION_ATTEMPTS,
    ExtractionError,
    ExtractionResult,
    MemoryExtractor,
    apply_update,
)
from agent.memory.relationships import CallSummary
from agent.accounts.personas import Persona
from agent.memory.prompt import CompositePrompt, build_composite_prompt, compose_prompt
from agent.runtime import Runtime
from agent.calls.telephony import Twilio, time_limit_for
from agent.memory.transcript import Transcript
from storage.util import utcnow

@dataclass
class CallSession:
    """Everything a live call carries: who, what it may spend, its prompt and its ledger."""

    call_id: str
    direction: str
    user: dict
    persona: Persona
    allowance: CallAllowance
    prompt: CompositePrompt
    tracker: CallCostTracker
    monitor: BudgetMonitor
    memory_loaded: bool
    twilio_call_sid: str | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    ending: asyncio.Task | None = None  # the one task that closes this call's books
    # Set by whoever runs the call's media (server.py): stops the pipeline and the phone line.
    hang_up: Callable[[], Awaitable[None]] | None = None
    end_requested: str | None = None  # why someone asked this call to end (e.g. "operator_ended")
    transcript: Transcript = field(default_factory=Transcript)

    def elapsed_seconds(self) -> int:
        return int(round(time.monotonic() - self.started_monotonic))


class CallLifecycle:
    def __init__(self, runtime: Runtime, *, carrier_wait_secs: float = 3.0,
                 billing: Billing | None = None, extractor: MemoryExtractor | None = None) -> None:
        self.rt = runtime
        self.carrier_wait_secs = carrier_wait_secs
        self.billing = billing or Billing(runtime.settings)
        self.extractor = extractor or MemoryExtractor(runtime.settings,
                                                      timeout=runtime.settings.extraction_timeout_secs)
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
        """The media is connected: build the prompt, open the ledger, mark the call live."""
        call = await self.rt.calls.get(call_id)
        if call is None or call["status"] != "created":
            raise LookupError(f"call {call_id} is not waiting to start")
        user = await self.rt.users.get_user(call["user_id"])
        persona = Persona.from_row(await self.rt.users.get_persona(call["persona_id"]))
        budget = await self.rt.budgets.settings(call["user_id"])
        prompt, loaded = await self._prompt_in_time(user, persona, budget.memory_token_limit)
        allowance = CallAllowance(
            call_id=call_id, user_id=user["id"], limit_micros=call["reserved_micros"],
            limit_kind=LimitKind(call["limit_kind"]), warning_threshold_pct=budget.warning_threshold_pct,
            auto_cutoff=budget.auto_cutoff, grace_period_seconds=budget.grace_period_seconds,
            daily_remaining_micros=call["reserved_micros"], monthly_remaining_micros=call["reserved_micros"],
        )
        tracker = CallCostTracker(call_id, user["id"], self.rt.prices, self.rt.calls, direction=call["direction"],
                                  flush_interval=self.rt.settings.cost_flush_interval_secs)
        if loaded:
            tracker.track_memory("read")
        session = CallSession(call_id, call["direction"], user, persona, allowance, prompt, tracker,
                              BudgetMonitor(allowance), loaded, call["twilio_call_sid"])
        session.transcript.on_turn = lambda transcript: self._in_background(
            self.rt.calls.update(call_id, transcript=transcript.as_rows()))
        await self.rt.calls.update(call_id, status="live", started_at=utcnow(), heartbeat_at=utcnow())
        tracker.mark_started()
        tracker.start()
        self.live[call_id] = session
        return session

    def _in_background(self, work: Awaitable[object]) -> None:
        """Small writes that must not hold up the audio path (a task kept until done)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prompt_in_time(self, user: dict, persona: Persona, token_limit: int | None
                              ) -> tuple[CompositePrompt, bool]:
        """Memory within its time budget, or the core persona alone: a call never waits on memory."""
        budget = self.rt.settings.prompt_token_budget
        try:
            prompt = await asyncio.wait_for(
                build_composite_prompt(self.rt.memory, user, persona, budget, memory_token_limit=token_limit),
                self.rt.settings.memory_load_timeout_secs)
            return prompt, True
        except Exception as exc:  # timeout or a database error: talk anyway
            logger.warning(f"memory for {user['id']}/{persona.id} not loaded ({exc!r}); using the core prompt")
            return compose_prompt(persona, None, user_name=user.get("display_name") or "", token_budget=budget), False

    async def end(self, session: CallSession, *, reason: str) -> FinalBreakdown:
        """Close the books once, however many ways the call ends at the same time.

        The work runs in its own task and is awaited shielded, so a cancelled
        caller (a server shutting down) cannot leave the books half closed.
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

    async def _end(self, session: CallSession, reason: str) -> FinalBreakdown:
        """Carrier minutes, memory extraction, finalise, capture; then memory and statistics."""
        tracker = session.tracker
        seconds, source = await self._duration(session)
        if session.direction != "webrtc":
            tracker.track_call_duration(seconds, source=source)
        tracker.track_memory("write")
        extraction = await self._extract(session)
        await tracker.close()
        user_id, persona_id = session.user["id"], session.persona.id
        final = await self._close_books(session.call_id, tracker, reason=reason, seconds=seconds,
                                        transcript=session.transcript,
                                        extraction_status="done" if extraction else _pending(session.transcript))
        self.live.pop(session.call_id, None)
        ended_at = utcnow()
        await self.rt.memory.record_call(user_id, persona_id, seconds, ended_at)
        if extraction is not None:
            await apply_update(self.rt.memory, user_id, persona_id, session.call_id, extraction.update,
                               (await self.rt.calls.get(session.call_id))["started_at"])
        else:
            await self._placeholder_summary(user_id, persona_id, session.call_id, seconds, session.transcript, reason)
        logger.info(f"call {session.call_id} ended ({reason}): total {final.total_micros} micro-dollars")
        return final

    async def _extract(self, session: CallSession) -> ExtractionResult | None:
        """The post-call memory update, priced onto this call; None if there is nothing or it failed.

        Tokens of an answer that turned out unusable are on the ledger too: they were spent.
        """
        if not session.transcript.said_by("user"):
            return None
        try:
            memory = await self.rt.memory.snapshot(session.user["id"], session.persona.id)
            result = await self.extractor.extract(session.persona.name, session.persona.llm_model, memory,
                                                  session.transcript.turns)
        except Exception as exc:
            logger.warning(f"call {session.call_id}: memory extraction failed, will retry later ({exc})")
            return None
        session.tracker.track_llm(result.prompt_tokens, result.completion_tokens, vendor=result.vendor,
                                  model=result.model, fallback_reason=result.fallback_reason,
                                  service=Service.MEMORY, kind="ai_inference", source=result.source)
        return result if result.update is not None else None

    async def _close_books(self, call_id: str, tracker: CallCostTracker, *, reason: str, seconds: int,
                           transcript: Transcript, extraction_status: str | None) -> FinalBreakdown:
        """Finalise, store the breakdown with the call's end, then capture exactly the charge.

        The charge is fixed (and stored) before Stripe is asked, so a retry after a
        crash asks for the same capture under the same idempotency key.
        """
        call = await self.rt.calls.get(call_id)
        intent, authorized = call["payment_intent_id"], call["authorized_micros"] or 0
        charge = self.billing.amount_to_charge(tracker.total_micros(), authorized) if intent else 0
        final = tracker.finalize(amount_charged_micros=charge)
        await self.rt.calls.save_breakdown(_breakdown_row(final), {
            "status": "ended", "end_reason": reason, "ended_at": utcnow(), "duration_seconds": seconds,
            "spent_micros": final.total_micros, "transcript": transcript.as_rows(),
            "payment_status": "capture_pending" if intent else None, "extraction_status": extraction_status,
        })
        if intent:
            await self._settle(call_id, intent, charge)
        return final

    async def _settle(self, call_id: str, intent_id: str, charge_micros: int) -> None:
        try:
            status = await self.billing.settle(call_id, intent_id, charge_micros)
        except Exception as exc:  # Stripe unreachable: reconciliation retries with the same key
            logger.error(f"call {call_id}: capture failed, will retry ({exc})")
            return
        await self.rt.calls.update(call_id, payment_status=status)

    async def _placeholder_summary(self, user_id: str, persona_id: str, call_id: str, seconds: int,
                                   transcript: Transcript, reason: str) -> None:
        await self.rt.memory.add_call_summary(user_id, persona_id, CallSummary(
            call_id=call_id, summary=f"A {_minutes(seconds)} call ({len(transcript.turns)} turns); summary pending.",
            outcome=reason))

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

    async def reconcile(self, *, stale_after: dt.timedelta | None = None) -> list[str]:
        """Finish what a dead process left: abandoned calls, uncaptured payments, missing memories.

        Returns the ids of the abandoned calls it finalised.
        """
        stale_after = stale_after or dt.timedelta(seconds=self.rt.settings.stale_call_secs)
        done = []
        for call in await self.rt.calls.abandoned(utcnow() - stale_after):
            if call["id"] in self.live:
                continue
            try:
                await self._finish_abandoned(call)
                done.append(call["id"])
            except Exception as exc:
                logger.error(f"could not reconcile call {call['id']}: {exc!r}")
        for call in await self.rt.calls.unsettled():
            breakdown = await self.rt.calls.breakdown(call["id"])
            await self._settle(call["id"], call["payment_intent_id"], breakdown["amount_charged_micros"])
        for call in await self.rt.calls.awaiting_extraction(MAX_EXTRACTION_ATTEMPTS):
            if call["id"] not in self.live:
                await self._retry_extraction(call)
        return done

    async def _finish_abandoned(self, call: dict) -> None:
        events = await self.rt.calls.events(call["id"])
        tracker = CallCostTracker.from_events(call["id"], call["user_id"], self.rt.prices, events,
                                              self.rt.calls, direction=call["direction"])
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
        final = await self._close_books(call["id"], tracker, reason="reconciled", seconds=seconds,
                                        transcript=transcript, extraction_status=_pending(transcript))
        if started is not None:
            await self.rt.memory.record_call(call["user_id"], call["persona_id"], seconds, utcnow())
            await self._placeholder_summary(call["user_id"], call["persona_id"], call["id"], seconds, transcript,
                                            "reconciled")
        logger.info(f"reconciled call {call['id']}: total {final.total_micros} micro-dollars")

    async def _retry_extraction(self, call: dict) -> None:
        """A later attempt at a call's memories. Its tokens are not charged: the call is settled."""
        await self.rt.calls.update(call["id"], extraction_attempts=call["extraction_attempts"] + 1)
        persona = Persona.from_row(await self.rt.users.get_persona(call["persona_id"]))
        try:
            memory = await self.rt.memory.snapshot(call["user_id"], persona.id)
            result = await self.extractor.extract(persona.name, persona.llm_model, memory,
                                                  Transcript.from_rows(call["transcript"]).turns)
            if result.update is None:
                raise ExtractionError(result.error or "unusable answer")
            await apply_update(self.rt.memory, call["user_id"], persona.id, call["id"], result.update,
                               call["started_at"])
        except Exception as exc:
            logger.warning(f"call {call['id']}: memory extraction retry failed ({exc})")
            await self.rt.calls.update(call["id"], extraction_status="failed")
            return
        logger.info(f"call {call['id']}: memories extracted on retry ({result.prompt_tokens}+"
                    f"{result.completion_tokens} tokens, not charged)")
        await self.rt.calls.update(call["id"], extraction_status="done")


def _pending(transcript: Transcript) -> str | None:
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


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes}-minute"


class DialError(RuntimeError):
    """The outbound call could not be placed (no number, or the carrier refused)."""


class MissingPhoneNumber(DialError):
    """The user or the persona has no phone number to call from or to."""


class TelephonyNotConfigured(DialError):
    """This server has no Twilio account or public URL, so it cannot dial out."""


async def place_outbound_call(lifecycle: CallLifecycle, twilio: Twilio, user_id: str, persona_id: str
                              ) -> tuple[CallAllowance, str]:
    """"Call me back": reserve the budget, then have Twilio ring the user with a carrier time limit."""
    from agent.books.estimate import estimate_call_cost

    rt = lifecycle.rt
    user = await rt.users.get_user(user_id)
    persona = await rt.users.get_persona(persona_id)
    if user is None or persona is None:
        raise LookupError("unknown user or persona")
    if not user["phone_number"] or not persona["phone_number"]:
        raise MissingPhoneNumber("both the user and the persona need a phone number for a call back")
    base = rt.settings.public_base_url
    if not base or not rt.settings.twilio_enabled:
        raise TelephonyNotConfigured("outbound calls need Twilio settings and PUBLIC_BASE_URL")
    allowance = await lifecycle.open(user_id, persona_id, "outbound")
    per_minute = estimate_call_cost(1, 1000, prices=rt.prices, llm_model=persona["llm_model"] or rt.settings.cerebras_model,
                                    direction="outbound").total_micros
    try:
        sid = await twilio.place_call(
            to=user["phone_number"], from_=persona["phone_number"], url=f"{base}/twilio/outbound/{allowance.call_id}",
            status_callback=f"{base}/twilio/status",
            time_limit=time_limit_for(allowance.limit_micros, per_minute, allowance.grace_period_seconds))
    except Exception as exc:
        await rt.calls.update(allowance.call_id, status="ended", end_reason="dial_failed", ended_at=utcnow())
        raise DialError(f"Twilio did not place the call: {exc}") from exc
    await rt.calls.update(allowance.call_id, twilio_call_sid=sid)
    return allowance, sid
