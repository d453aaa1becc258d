"""Concurrent real-time calls against one server process, stepped until audio falls behind.

Calls are added step by step and kept talking (no teardown between steps), so
each step measures N live conversations. After the new calls have connected
and settled, a window of `window` seconds is measured:

- server CPU time and RSS from /proc (CPU ms per call-second; RSS over the
  idle baseline per live call);
- frame lateness both ways, from the server's `LatenessProbe`, and the event
  loop's lag;
- turn latencies heard by the callers, and how late the callers' own frames
  left (the load generator's health: if it lags, the step says so).

A step fails when the p99 lateness of inbound or outbound frames reaches
`LATE_LIMIT`, or a call breaks (no greeting, an error, missed replies). A
window that fails on lateness alone is measured once more, and the step fails
only if the second window fails too: one stray full garbage collection or a
burst of other work on the machine should not decide the capacity.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from bench.caller import UTTERANCES_NAMES, BenchCaller, CallRecord, Utterance, converse
from bench.fakes_proc import ACCOUNT_SID, AUTH_TOKEN
from bench.procs import cpu_seconds, machine_busy_seconds, rss_bytes
from bench.server_proc import caller_phone
from bench.stats import percentile

LATE_LIMIT = 0.040
BRAD_PHONE = "+15555550001"
_CALL_SIDS = itertools.count(1)


@dataclass
class Server:
    mode: str  # "ours" or "bare"
    port: int
    pid: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Step:
    calls: int
    window_s: float
    cpu_s: float
    call_s: float
    cpu_ms_per_call_s: float
    cpu_pct_of_core: float
    rss_mb: float
    rss_mb_per_call: float
    inbound_p50_ms: float
    inbound_p99_ms: float
    outbound_p50_ms: float
    outbound_p99_ms: float
    loop_lag_p99_ms: float
    caller_send_p99_ms: float
    turn_latency_ms: list[float]
    broken_calls: int
    frames_per_call_s: dict[str, float]
    other_load_pct: float  # CPU used on this machine by anything but the bench's own processes
    passed: bool
    why: str = ""
    first_try: str = ""  # why the first window failed, when a second one was measured

    def summary(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["turns"] = len(self.turn_latency_ms)
        data["turn_latency_p50_ms"] = statistics.median(self.turn_latency_ms) if self.turn_latency_ms else None
        return data


@dataclass
class LiveCall:
    record: CallRecord
    caller: BenchCaller
    task: asyncio.Task
    call_sid: str


@dataclass
class Ramp:
    server: Server
    own_pids: list[int]  # the bench's processes (fakes, this one): their CPU is not "other load"
    utterances: list[Utterance] = field(default_factory=lambda: [Utterance.load(n) for n in UTTERANCES_NAMES])
    calls: list[LiveCall] = field(default_factory=list)
    send_lateness: list[tuple[float, float]] = field(default_factory=list)
    setup_s: list[float] = field(default_factory=list)  # call start → greeting heard
    webhook_s: list[float] = field(default_factory=list)  # ours: webhook round trip

    async def _probe(self, client: httpx.AsyncClient, since: float) -> dict[str, Any]:
        return (await client.get(f"{self.server.http_url}/_bench/probe", params={"since": since})).json()

    async def _dial(self, client: httpx.AsyncClient, index: int) -> LiveCall:
        call_sid = f"CA{next(_CALL_SIDS):032d}"
        record = CallRecord(started=time.monotonic())
        if self.server.mode == "ours":
            url, params = self.server.http_url + "/twilio/voice", {
                "CallSid": call_sid, "From": caller_phone(index), "To": BRAD_PHONE, "AccountSid": ACCOUNT_SID,
                "CallStatus": "ringing"}
            signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
            response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
            self.webhook_s.append(time.monotonic() - record.started)
            stream = re.search(r'<Stream url="([^"]+)"', response.text)
            call_id = re.search(r'<Parameter name="call_id" value="([^"]+)"', response.text)
            if not (stream and call_id):
                raise RuntimeError(f"webhook refused the call: {response.text[:200]}")
            ws_url, custom = stream.group(1).replace("&amp;", "&"), {"call_id": call_id.group(1)}
        else:
            ws_url, custom = f"ws://127.0.0.1:{self.server.port}/bare/media", {}
        caller = BenchCaller(ws_url, call_sid, ACCOUNT_SID, custom_parameters=custom,
                             send_lateness=self.send_lateness)
        await caller.connect()
        record.connected = time.monotonic()
        task = asyncio.get_running_loop().create_task(converse(caller, record, self.utterances, index))
        return LiveCall(record, caller, task, call_sid)

    async def add_calls(self, client: httpx.AsyncClient, total: int, spacing: float) -> None:
        """Ring until `total` calls are live, `spacing` seconds apart (calls rarely start at once)."""
        while len(self.calls) < total:
            self.calls.append(await self._dial(client, len(self.calls)))
            await asyncio.sleep(spacing)

    async def measure(self, client: httpx.AsyncClient, window: float, rss_idle: int) -> Step:
        n = len(self.calls)
        counters_before = (await self._probe(client, time.monotonic()))["counters"]  # drops ramp-up samples
        pids = [self.server.pid, *self.own_pids]
        t0, cpu0, own0, busy0 = time.monotonic(), cpu_seconds(self.server.pid), _cpu(pids), machine_busy_seconds()
        await asyncio.sleep(window)
        t1, cpu1, own1, busy1 = time.monotonic(), cpu_seconds(self.server.pid), _cpu(pids), machine_busy_seconds()
        rss = rss_bytes(self.server.pid)
        probe = await self._probe(client, t0)
        call_seconds = n * (t1 - t0)
        turns = [lat for c in self.calls for at, lat in c.record.turns if t0 <= at < t1]
        sends = [late for at, late in self.send_lateness if at >= t0]
        self.send_lateness.clear()
        frames = {k: (v - counters_before.get(k, 0)) / call_seconds for k, v in probe["counters"].items()}
        inbound, outbound = probe["inbound"], probe["outbound"]
        broken = self._broken()
        step = Step(
            calls=n, window_s=round(t1 - t0, 2), cpu_s=cpu1 - cpu0, call_s=call_seconds,
            cpu_ms_per_call_s=1000 * (cpu1 - cpu0) / call_seconds,
            cpu_pct_of_core=100 * (cpu1 - cpu0) / (t1 - t0),
            rss_mb=rss / 2**20, rss_mb_per_call=(rss - rss_idle) / 2**20 / n,
            inbound_p50_ms=1000 * percentile(inbound, 50), inbound_p99_ms=1000 * percentile(inbound, 99),
            outbound_p50_ms=1000 * percentile(outbound, 50), outbound_p99_ms=1000 * percentile(outbound, 99),
            loop_lag_p99_ms=1000 * percentile(probe["loop_lag"], 99),
            caller_send_p99_ms=1000 * percentile(sends, 99),
            turn_latency_ms=[1000 * t for t in turns], broken_calls=broken,
            frames_per_call_s=frames, other_load_pct=max(0.0, 100 * ((busy1 - busy0) - (own1 - own0)) / (t1 - t0)),
            passed=True,
        )
        reasons = []
        if step.inbound_p99_ms >= LATE_LIMIT * 1000:
            reasons.append(f"inbound p99 {step.inbound_p99_ms:.0f} ms")
        if step.outbound_p99_ms >= LATE_LIMIT * 1000:
            reasons.append(f"outbound p99 {step.outbound_p99_ms:.0f} ms")
        if broken:
            reasons.append(f"{broken} broken call(s)")
        step.passed, step.why = not reasons, "; ".join(reasons)
        return step

    def _broken(self) -> int:
        return sum(1 for c in self.calls if c.record.error or c.record.missed_turns or c.task.done())

    async def hang_up_all(self, client: httpx.AsyncClient) -> None:
        for call in self.calls:
            call.task.cancel()
        await asyncio.gather(*(c.task for c in self.calls), return_exceptions=True)
        await asyncio.gather(*(c.caller.hang_up() for c in self.calls), return_exceptions=True)
        if self.server.mode == "ours":  # Twilio's status callback, as on a real call
            url = self.server.http_url + "/twilio/status"
            for call in self.calls:
                params = {"CallSid": call.call_sid, "CallStatus": "completed",
                          "CallDuration": str(int(time.monotonic() - call.record.started))}
                signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
                await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
        for call in self.calls:
            if call.record.greeting_heard is not None:
                self.setup_s.append(call.record.greeting_heard - call.record.started)
        self.calls.clear()


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def run_ramp(server: Server, steps: list[int], *, own_pids: list[int], window: float, settle: float,
                   spacing: float, log: Any = print) -> tuple[list[Step], Ramp]:
    """Step the number of live calls until a step fails; returns every measured step."""
    ramp = Ramp(server, own_pids)
    results: list[Step] = []
    async with httpx.AsyncClient(timeout=30) as client:
        rss_idle = rss_bytes(server.pid)
        try:
            for n in steps:
                await ramp.add_calls(client, n, spacing)
                await asyncio.sleep(settle)
                step = await ramp.measure(client, window, rss_idle)
                if not step.passed and not step.broken_calls:
                    # One more window before calling it: a single GC pause or a burst of load from
                    # outside can spoil one window; audio that falls behind spoils both.
                    log(f"  {server.mode:4} {n:3} calls: {step.why}; measuring again")
                    first_why = step.why
                    step = await ramp.measure(client, window, rss_idle)
                    step.first_try = first_why
                results.append(step)
                log(f"  {server.mode:4} {n:3} calls: CPU {step.cpu_pct_of_core:5.1f}% of a core, "
                    f"{step.cpu_ms_per_call_s:5.1f} ms/call-s, late p99 in/out {step.inbound_p99_ms:5.1f}/"
                    f"{step.outbound_p99_ms:5.1f} ms, loop lag p99 {step.loop_lag_p99_ms:5.1f} ms, "
                    f"caller p99 {step.caller_send_p99_ms:4.1f} ms, {len(step.turn_latency_ms)} turns, "
                    f"other load {step.other_load_pct:3.0f}%"
                    + ("" if step.passed else f"  FAILED: {step.why}"))
                if not step.passed:
                    break
        finally:
            await ramp.hang_up_all(client)
    return results, ramp


async def warm_up(server: Server) -> None:
    """One short call, so first-use costs (imports, model files, connections) are not measured."""
    ramp = Ramp(server, [])
    async with httpx.AsyncClient(timeout=30) as client:
        await ramp.add_calls(client, 1, 0)
        call = ramp.calls[0]
        deadline = time.monotonic() + 20
        while not call.record.turns and time.monotonic() < deadline and not call.task.done():
            await asyncio.sleep(0.1)
        await ramp.hang_up_all(client)


@dataclass
class LightLoad:
    """Alternating short runs of a few calls on each server: the like-for-like comparison.

    Turn latency, call set-up and CPU per call-second drift with whatever else
    the machine is doing; taking bare and ours in turns (ABBA...) spreads that
    drift over both instead of charging it to whichever ran second.
    """

    steps: dict[str, list[Step]] = field(default_factory=lambda: {"bare": [], "ours": []})
    greeting_s: dict[str, list[float]] = field(default_factory=lambda: {"bare": [], "ours": []})
    webhook_s: list[float] = field(default_factory=list)


async def run_light_load(servers: dict[str, Server], *, calls: int, window: float, rounds: int,
                         own_pids: list[int], log: Any = print) -> LightLoad:
    light = LightLoad()
    for round_ in range(rounds):
        order = ["bare", "ours"] if round_ % 2 == 0 else ["ours", "bare"]
        for mode in order:
            results, ramp = await run_ramp(servers[mode], [calls], own_pids=own_pids, window=window, settle=1.0,
                                           spacing=0.3, log=log)
            light.steps[mode] += results
            light.greeting_s[mode] += ramp.setup_s
            light.webhook_s += ramp.webhook_s
            await asyncio.sleep(1.0)  # let the calls just hung up close their books
    return light
