""""Call me back": reserve the budget, then have Twilio ring the user with a carrier time limit."""

from __future__ import annotations

from agent.books.budgets import CallAllowance
from agent.calls.lifecycle import CallLifecycle
from agent.calls.precall import carrier_time_limit, memory_tokens, next_prompt
from agent.calls.telephony import Twilio


class DialError(RuntimeError):
    """The outbound call could not be placed (no number, or the carrier refused)."""


class MissingPhoneNumber(DialError):
    """The user or the persona has no phone number to call from or to."""


class TelephonyNotConfigured(DialError):
    """This server has no Twilio account or public URL, so it cannot dial out."""


async def place_outbound_call(lifecycle: CallLifecycle, twilio: Twilio, user_id: str, persona_id: str
                              ) -> tuple[CallAllowance, str]:
    """Open the call (budget, card hold), then dial; a dial that fails ends the call and lets the hold go."""
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
    memory = memory_tokens(await next_prompt(rt, user, persona))
    time_limit = carrier_time_limit(rt, persona, memory, allowance.limit_micros, allowance.grace_period_seconds)
    try:
        sid = await twilio.place_call(
            to=user["phone_number"], from_=persona["phone_number"], url=f"{base}/twilio/outbound/{allowance.call_id}",
            status_callback=f"{base}/twilio/status",
            time_limit=time_limit)
    except Exception as exc:
        await lifecycle.cancel_before_start(allowance.call_id, "dial_failed")
        raise DialError(f"Twilio did not place the call: {exc}") from exc
    await rt.calls.update(allowance.call_id, twilio_call_sid=sid)
    return allowance, sid
