"""A call's life from the domain's side: open, begin, end, and reconcile after a crash.

Every call ends finalised, whichever way it ends: the pipeline's `finally`
calls `end`, and a call whose process died is finished by `reconcile` in the
next process that starts (or in any other worker, once its heartbeat is stale).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field

from loguru import logger

from agent.budgets import BudgetMonitor, CallAllowance, LimitKind
from agent.costs import CallCostTracker, FinalBreakdown, Source
from agent.memory import CallSummary
from agent.personas import Persona
from agent.prompt import CompositePrompt, build_composite_prompt, compose_prompt
from agent.runtime import Runtime
from agent.telephony import Twilio, time_limit_for
from agent.transcript import Transcript
from storage.util import utcnow

STALE_AFTER = dt.timedelta(seconds=60)


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
    transcript: Transcript = field(default_factory=Transcript)

    def elapsed_seconds(self) -> int:
        return int(round(time.monotonic() - self.started_monotonic))


class CallLifecycle:
    def __init__(self, runtime: Runtime, *, carrier_wait_secs: float = 3.0) -> None:
        self.rt = runtime
        self.carrier_wait_secs = carrier_wait_secs
        self.live: dict[str, CallSession] = {}  # this process's calls, for live views

    async def open(self, user_id: str, persona_id: str, direction: str, *, twilio_call_sid: str | None = None,
                   call_id: str | None = None) -> CallAllowance:
        """Create the call and reserve its budget (raises `BudgetRefused`)."""
        return await self.rt.budgets.open_call(user_id, persona_id, direction, call_id=call_id,
                                               twilio_call_sid=twilio_call_sid)

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
        await self.rt.calls.update(call_id, status="live", started_at=utcnow(), heartbeat_at=utcnow())
        tracker.mark_started()
        tracker.start()
        self.live[call_id] = session
        return session

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

    async def end_all(self, reason: str) -> None:
        """Shutdown: finish every call this process still holds."""
        sessions = list(self.live.values())
        results = await asyncio.gather(*(self.end(s, reason=reason) for s in sessions), return_exceptions=True)
        for session, result in zip(sessions, results):
            if isinstance(result, BaseException):
                logger.error(f"call {session.call_id} could not be finalised at shutdown: {result!r}")

    async def _end(self, session: CallSession, reason: str) -> FinalBreakdown:
        tracker = session.tracker
        seconds, source = await self._duration(session)
        if session.direction != "webrtc":
            tracker.track_call_duration(seconds, source=source)
        tracker.track_memory("write")
        await tracker.close()
        # Nothing is charged while payments are off; billing will pass the captured amount here.
        final = tracker.finalize(amount_charged_micros=None if self.rt.settings.payments_enabled else 0)
        ended_at = utcnow()
        await self.rt.calls.save_breakdown(_breakdown_row(final), {
            "status": "ended", "end_reason": reason, "ended_at": ended_at, "duration_seconds": seconds,
            "spent_micros": final.total_micros, "transcript": session.transcript.as_rows(),
        })
        self.live.pop(session.call_id, None)
        await self.rt.memory.record_call(session.user["id"], session.persona.id, seconds, ended_at)
        await self.rt.memory.add_call_summary(session.user["id"], session.persona.id, CallSummary(
            call_id=session.call_id, summary=f"A {_minutes(seconds)} call ({len(session.transcript.turns)} turns); summary pending.",
            outcome=reason))
        logger.info(f"call {session.call_id} ended ({reason}): total {final.total_micros} micro-dollars")
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

    async def reconcile(self, *, stale_after: dt.timedelta = STALE_AFTER) -> list[str]:
        """Finish calls whose process died: finalise them from their stored events."""
        done = []
        for call in await self.rt.calls.abandoned(utcnow() - stale_after):
            if call["id"] in self.live:
                continue
            try:
                await self._finish_abandoned(call)
                done.append(call["id"])
            except Exception as exc:
                logger.error(f"could not reconcile call {call['id']}: {exc!r}")
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
        final = tracker.finalize()
        saved = await self.rt.calls.save_breakdown(_breakdown_row(final), {
            "status": "ended", "end_reason": "reconciled", "ended_at": utcnow(), "duration_seconds": seconds,
            "spent_micros": final.total_micros,
        })
        if saved and started is not None:
            await self.rt.memory.record_call(call["user_id"], call["persona_id"], seconds, utcnow())
        logger.info(f"reconciled call {call['id']}: total {final.total_micros} micro-dollars")


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


async def place_outbound_call(lifecycle: CallLifecycle, twilio: Twilio, user_id: str, persona_id: str
                              ) -> tuple[CallAllowance, str]:
    """"Call me back": reserve the budget, then have Twilio ring the user with a carrier time limit."""
    from agent.estimate import estimate_call_cost

    rt = lifecycle.rt
    user = await rt.users.get_user(user_id)
    persona = await rt.users.get_persona(persona_id)
    if user is None or persona is None:
        raise LookupError("unknown user or persona")
    if not user["phone_number"] or not persona["phone_number"]:
        raise DialError("both the user and the persona need a phone number for a call back")
    base = rt.settings.public_base_url
    if not base or not rt.settings.twilio_enabled:
        raise DialError("outbound calls need Twilio settings and PUBLIC_BASE_URL")
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
