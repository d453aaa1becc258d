"""Simulated Twilio calls against one or more server processes of one kind: dial, hang up, sample.

A `Session` is what a load balancer and a crowd of callers are to the servers:
each new call goes to the next server round-robin, rings ours through its real
signed `/twilio/voice` webhook (bare: straight to its media WebSocket), and is
hung up as Twilio does it (`stop`, close, then the signed `/twilio/status`
callback with the carrier's duration). Every caller shares the session's lists
of timed samples (send lateness, heard lateness), so any interval of a run can
be read back afterwards: the steady window, a burst, a churn phase.

Callers ring from a pool of users (`USER_POOL`, created by the first server):
budgets are per user, and a user rings again only long after their last call.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from bench.caller import UTTERANCES_NAMES, BenchCaller, CallRecord, Utterance, converse
from bench.fakes_proc import ACCOUNT_SID, AUTH_TOKEN
from bench.server_proc import caller_phone

BRAD_PHONE = "+15555550001"
USER_POOL = 500
WEBHOOK_TIMEOUT = 15.0  # Twilio's own default: a slower answer and the caller hears an application error
_CALL_SIDS = itertools.count(1)


@dataclass
class Server:
    mode: str  # "ours" or "bare"
    port: int
    pid: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LiveCall:
    record: CallRecord
    caller: BenchCaller
    task: asyncio.Task
    call_sid: str
    server: Server


class Refused(Exception):
    """The server would not take the call (no TwiML stream, or the media socket did not open)."""


@dataclass
class Session:
    servers: list[Server]
    utterances: list[Utterance] = field(default_factory=lambda: [Utterance.load(n) for n in UTTERANCES_NAMES])
    calls: list[LiveCall] = field(default_factory=list)
    send_lateness: list[tuple[float, float]] = field(default_factory=list)
    heard_lateness: list[tuple[float, float, float, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why each refused call was refused
    status_errors: list[str] = field(default_factory=list)  # status callbacks not answered 2xx
    webhook_s: list[float] = field(default_factory=list)  # ours: webhook round trip
    _next_server: int = 0
    _next_user: int = 0

    @property
    def mode(self) -> str:
        return self.servers[0].mode

    async def dial(self, client: httpx.AsyncClient) -> LiveCall | None:
        """Ring one new call on the next server; None (and a reason in `refused`) if it was refused."""
        server = self.servers[self._next_server % len(self.servers)]
        self._next_server += 1
        user = self._next_user % USER_POOL
        self._next_user += 1
        call_sid = f"CA{next(_CALL_SIDS):032d}"
        record = CallRecord(started=time.monotonic())
        try:
            ws_url, custom = await self._ring(client, server, call_sid, user, record)
            caller = BenchCaller(ws_url, call_sid, ACCOUNT_SID, custom_parameters=custom,
                                 send_lateness=self.send_lateness, heard_lateness=self.heard_lateness)
            await caller.connect()
        except Exception as exc:  # refused, or the socket would not open: a result, not a crash
            self.refused.append(f"{server.mode}:{server.port}: {exc.__class__.__name__}: {str(exc)[:160]}")
            return None
        record.connected = time.monotonic()
        task = asyncio.get_running_loop().create_task(converse(caller, record, self.utterances, user))
        call = LiveCall(record, caller, task, call_sid, server)
        self.calls.append(call)
        return call

    async def _ring(self, client: httpx.AsyncClient, server: Server, call_sid: str, user: int,
                    record: CallRecord) -> tuple[str, dict[str, str]]:
        if server.mode != "ours":
            return f"ws://127.0.0.1:{server.port}/bare/media", {}
        url = server.http_url + "/twilio/voice"
        params = {"CallSid": call_sid, "From": caller_phone(user), "To": BRAD_PHONE, "AccountSid": ACCOUNT_SID,
                  "CallStatus": "ringing"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature},
                                     timeout=WEBHOOK_TIMEOUT)
        self.webhook_s.append(time.monotonic() - record.started)
        stream = re.search(r'<Stream url="([^"]+)"', response.text)
        call_id = re.search(r'<Parameter name="call_id" value="([^"]+)"', response.text)
        if not (stream and call_id):
            raise Refused(f"webhook answered {response.status_code}: {response.text[:120]}")
        return stream.group(1).replace("&amp;", "&"), {"call_id": call_id.group(1)}

    async def dial_many(self, client: httpx.AsyncClient, count: int, spacing: float) -> list[LiveCall]:
        """`count` new calls, rung `spacing` seconds apart (0: all at once, as in a burst).

        Each ring starts on time whether or not the previous one was answered: callers do not
        wait for each other, and one webhook that hangs must not hold the others back.
        """
        rings = []
        for i in range(count):
            rings.append(asyncio.get_running_loop().create_task(self.dial(client)))
            if spacing > 0 and i < count - 1:
                await asyncio.sleep(spacing)
        return [c for c in await asyncio.gather(*rings) if c is not None]

    async def hang_up(self, client: httpx.AsyncClient, calls: list[LiveCall]) -> None:
        """Hang these calls up as Twilio does: stop and close the stream, then the signed status callback."""
        for call in calls:
            call.task.cancel()
        await asyncio.gather(*(c.task for c in calls), return_exceptions=True)
        await asyncio.gather(*(c.caller.hang_up() for c in calls), return_exceptions=True)
        for call in calls:
            if call in self.calls:
                self.calls.remove(call)
        await asyncio.gather(*(self._status(client, c) for c in calls if c.server.mode == "ours"))

    async def _status(self, client: httpx.AsyncClient, call: LiveCall) -> None:
        url = call.server.http_url + "/twilio/status"
        params = {"CallSid": call.call_sid, "CallStatus": "completed",
                  "CallDuration": str(int(time.monotonic() - call.record.started))}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        try:
            response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
            if response.status_code >= 300:
                self.status_errors.append(f"{response.status_code}: {response.text[:120]}")
        except httpx.HTTPError as exc:
            self.status_errors.append(f"{exc.__class__.__name__}: {exc}")

    async def wait_for(self, calls: list[LiveCall], done: Any, timeout: float) -> int:
        """Wait until `done(record)` holds for every call (or it broke), up to `timeout`; how many hold."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(done(c.record) or c.record.error or c.task.done() for c in calls):
                break
            await asyncio.sleep(0.1)
        return sum(1 for c in calls if done(c.record))

    def broken(self, calls: list[LiveCall] | None = None) -> int:
        """Calls that broke: an error, a missed reply, or a conversation that stopped."""
        return sum(1 for c in (self.calls if calls is None else calls)
                   if c.record.error or c.record.missed_turns or c.task.done())

    def heard(self, t0: float, t1: float, calls: list[LiveCall] | None = None) -> list[tuple[float, float]]:
        """(seconds dry, chunk seconds) of persona speech received in [t0, t1), optionally of some calls only."""
        keys = None if calls is None else {id(c.caller) for c in calls}
        return [(late, dur) for at, late, dur, key in self.heard_lateness
                if t0 <= at < t1 and (keys is None or key in keys)]

    def sent(self, t0: float, t1: float) -> list[float]:
        return [late for at, late in self.send_lateness if t0 <= at < t1]

    def forget_before(self, t: float) -> None:
        """Drop samples older than `t` (a finished step's), so the lists stay short."""
        self.send_lateness[:] = [s for s in self.send_lateness if s[0] >= t]
        self.heard_lateness[:] = [s for s in self.heard_lateness if s[0] >= t]


async def loop_lag_sampler(samples: list[tuple[float, float]], tick: float = 0.010) -> None:
    """This process's own event-loop lag: when the callers' loop lags, lateness may be the bench's."""
    while True:
        due = time.monotonic() + tick
        await asyncio.sleep(tick)
        now = time.monotonic()
        samples.append((now, max(0.0, now - due)))
