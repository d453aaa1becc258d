"""Operators' view of calls in progress, and the power to end one.

The database knows every live call of every worker (their running totals as
of the last flush); this process knows its own to the event. Ending a call
goes through whoever can act on it: this process's pipeline, or else the
carrier, whose hang-up closes the media stream of the worker that holds it.
"""

from __future__ import annotations

from api.schemas import EndCallOut, LiveCallOut
from agent.errors import Conflict, NotFound
from agent.calls.lifecycle import CallLifecycle
from agent.books.money import usd
from agent.calls.telephony import Twilio
from storage.util import utcnow

OPERATOR_ENDED = "operator_ended"


async def live_calls(lifecycle: CallLifecycle) -> list[LiveCallOut]:
    out = []
    for call in await lifecycle.rt.calls.live():
        session = lifecycle.live.get(call["id"])
        total = session.tracker.running_total_micros() if session is not None else int(call["spent_micros"])
        out.append(LiveCallOut(call_id=call["id"], user_id=call["user_id"], persona_id=call["persona_id"],
                               direction=call["direction"], started_at=call["started_at"],
                               running_total_usd=usd(total), limit_usd=usd(call["reserved_micros"]),
                               in_this_process=session is not None))
    return out


async def end_call(lifecycle: CallLifecycle, twilio: Twilio, call_id: str) -> EndCallOut:
    call = await lifecycle.rt.calls.get(call_id)
    if call is None:
        raise NotFound(f"no call {call_id!r}")
    if call["status"] == "ended":
        raise Conflict(f"call {call_id} has already ended ({call['end_reason']})")
    session = lifecycle.live.get(call_id)
    if session is not None:
        had_pipeline = session.hang_up is not None
        await lifecycle.request_end(call_id, OPERATOR_ENDED)
        if had_pipeline:
            return EndCallOut(call_id=call_id, action="pipeline_stopped",
                              detail="the pipeline was cancelled and the line hung up; the books close as it stops")
        return EndCallOut(call_id=call_id, action="books_closed", detail="the call had no media running; books closed")
    if call["status"] == "created":
        # Not begun anywhere: releasing the reservation stops it from starting (begin needs "created").
        await lifecycle.rt.calls.update(call_id, status="ended", end_reason=OPERATOR_ENDED, ended_at=utcnow())
        if call["twilio_call_sid"] and lifecycle.rt.settings.twilio_enabled:
            await twilio.hang_up(call["twilio_call_sid"])
        return EndCallOut(call_id=call_id, action="cancelled_before_start",
                          detail="the call had not started; it is cancelled and its reservation released")
    if call["twilio_call_sid"] and lifecycle.rt.settings.twilio_enabled:
        await twilio.hang_up(call["twilio_call_sid"])
        return EndCallOut(call_id=call_id, action="carrier_hang_up",
                          detail="live in another worker: the carrier hung up; that worker closes the books")
    raise Conflict(f"call {call_id} is live in another worker and has no carrier call to hang up; "
                   "end it there (or it is reconciled once its heartbeat stops)")
