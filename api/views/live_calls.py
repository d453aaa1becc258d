"""Operators' view of calls in progress, and the power to end one.

The database knows every live call of every worker (their running totals as
of the last flush); this process knows its own to the event. Ending a call
goes through whoever can act on it: this process's pipeline, or else the
database's `end_requested` flag, which the owning worker polls (and, for a
phone call, the carrier's hang-up as well, so the line drops at once).
"""

from __future__ import annotations

from agent.books.money import usd
from agent.calls.lifecycle import CallLifecycle
from agent.calls.telephony import Twilio
from agent.errors import Conflict, NotFound
from api.schemas import EndCallOut, LiveCallOut

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
    """End a call wherever it is: here, in another worker (through the database), or before it started."""
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
    if call["status"] == "created" and await lifecycle.cancel_before_start(call_id, OPERATOR_ENDED):
        # Not begun anywhere: it can no longer start (begin needs "created"), and its card hold is let go.
        if call["twilio_call_sid"] and lifecycle.rt.settings.twilio_enabled:
            await twilio.hang_up(call["twilio_call_sid"])
        return EndCallOut(call_id=call_id, action="cancelled_before_start",
                          detail="the call had not started; it is cancelled, its reservation and card hold released")
    if not await lifecycle.rt.leases.request_end(call_id, OPERATOR_ENDED):
        current = await lifecycle.rt.calls.get(call_id)
        if current and current["status"] == "ended":
            raise Conflict(f"call {call_id} has already ended ({current['end_reason']})")
        if not (current and current["end_requested"]):
            raise Conflict(f"call {call_id} changed state while being ended; try again")
    if call["twilio_call_sid"] and lifecycle.rt.settings.twilio_enabled:
        await twilio.hang_up(call["twilio_call_sid"])  # the line drops now; the owner records operator_ended
    return EndCallOut(call_id=call_id, action="end_requested",
                      detail="live in another worker: it ends the call within a second and closes the books")
