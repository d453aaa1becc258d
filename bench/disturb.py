"""What new and ending calls do to the calls already talking: a burst of call starts, and churn.

- Burst: `size` new calls dialled at once while the level's calls talk, timed for when
  at least a third of them are being sent a reply. (Pipecat sends speech at twice real
  time, so a caller holds up to half a reply in its queue: a stall empties it, and is
  heard, only early in a reply.) Measured from the first ring until every new call has
  heard its greeting: the live calls' heard lateness (their playback running dry), the
  servers' event-loop lag (a call start that builds models or services on the loop
  stalls every call of the process), and how long each new call waited for its
  greeting (ring → first persona audio).
- Churn: `count` calls hang up as Twilio hangs up (stop, close, signed `/twilio/status`
  with the duration), one every `END_SPACING` s, each replaced by a new caller
  `REDIAL_DELAY` s after it left; measured until the replacements have heard their
  greetings: refusals, status callbacks not accepted, the replacements' wait for a
  greeting, and the other calls' heard lateness and loop lag meanwhile (ending a call
  finalises its books and extracts its memories while new calls start).
Error lines in the server logs are counted per level by `bench.load`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.measure import heard_stats, ms, probe
from bench.session import LiveCall, Session

GREETING_TIMEOUT = 8.0
END_SPACING = 0.5
REDIAL_DELAY = 2.0


async def _replies_arriving(live: list[LiveCall], most: float = 6.0) -> None:
    """Wait (at most `most` s) until a third of the live calls received persona speech in the last 100 ms."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        now = time.monotonic()
        if 3 * sum(1 for c in live if c.caller.speech_arrived_at > now - 0.1) >= len(live):
            return
        await asyncio.sleep(0.01)


def _greeting_ms(calls: list[LiveCall]) -> list[float]:
    return [1000 * (c.record.greeting_heard - c.record.started) for c in calls if c.record.greeting_heard is not None]


async def burst_phase(session: Session, client: httpx.AsyncClient, size: int) -> dict[str, Any]:
    live = list(session.calls)
    refused0 = len(session.refused)
    await _replies_arriving(live)
    t0 = time.monotonic()
    await probe(client, session.servers, t0)  # drop the samples before the burst
    new = await session.dial_many(client, size, 0)
    await session.wait_for(new, lambda r: r.greeting_heard is not None, GREETING_TIMEOUT)
    await asyncio.sleep(0.1)  # the samples of the last moments reach the lists
    t1 = time.monotonic()
    data = await probe(client, session.servers, t0)
    heard = heard_stats(session.heard(t0, t1, live))
    result = {
        "live_calls": len(live), "new_calls": size, "refused": len(session.refused) - refused0,
        "no_greeting": sum(1 for c in new if c.record.greeting_heard is None), "seconds": round(t1 - t0, 2),
        "greeting_ms": _greeting_ms(new), "loop_lag_ms": [1000 * x for x in data["loop_lag"]],
        "loop_lag_p99_ms": ms(data["loop_lag"], 99), "loop_lag_max_ms": 1000 * max(data["loop_lag"], default=0.0),
        "live_heard_lates_ms": [1000 * late for late, _ in session.heard(t0, t1, live)],
        "live_heard_p99_ms": heard["heard_p99_ms"], "live_heard_max_ms": heard["heard_max_ms"],
        "live_underruns": heard["underruns"], "inbound_p99_ms": ms(data["inbound"], 99),
    }
    await session.hang_up(client, new)
    return result


async def churn_phase(session: Session, client: httpx.AsyncClient, count: int) -> dict[str, Any]:
    ending = sorted((c for c in session.calls if c.record.turns_done >= 1), key=lambda c: c.record.started)[:count]
    staying = [c for c in session.calls if c not in ending]
    refused0, status0 = len(session.refused), len(session.status_errors)
    t0 = time.monotonic()
    await probe(client, session.servers, t0)

    async def replace(call: LiveCall, delay: float) -> LiveCall | None:
        await asyncio.sleep(delay)
        await session.hang_up(client, [call])
        await asyncio.sleep(REDIAL_DELAY)
        return await session.dial(client)

    replaced = await asyncio.gather(*(replace(c, i * END_SPACING) for i, c in enumerate(ending)))
    new = [c for c in replaced if c is not None]
    await session.wait_for(new, lambda r: r.greeting_heard is not None, GREETING_TIMEOUT)
    t1 = time.monotonic()
    data = await probe(client, session.servers, t0)
    heard = heard_stats(session.heard(t0, t1, staying))
    return {
        "ended": len(ending), "redialled": len(ending), "refused": len(session.refused) - refused0,
        "status_errors": len(session.status_errors) - status0,
        "no_greeting": sum(1 for c in new if c.record.greeting_heard is None), "seconds": round(t1 - t0, 2),
        "greeting_ms": _greeting_ms(new), "others_heard_p99_ms": heard["heard_p99_ms"],
        "others_underruns": heard["underruns"], "loop_lag_p99_ms": ms(data["loop_lag"], 99),
        "refusals": session.refused[refused0:][:3],
    }
