"""One load level: N live real-time calls on one kind of server, measured, then disturbed, then hung up.

A level runs on its own (the other kind of server idles), from no calls to none:

1. dial N calls, `spacing` apart (round-robin over the servers, as a load balancer would);
2. once all have heard their greeting, a steady window of `window` seconds: server CPU,
   frame lateness at the server (inbound, outbound) and at the callers (heard: playback
   running dry inside persona speech), event-loop lag, turn latencies;
3. once every call has completed a full turn (greeting, a sentence, the reply heard out),
   the servers' RSS over their idle baseline, per live call: memory actually held by a
   call in conversation, not by one still starting;
4. optionally a burst: `burst` new calls at once while the N talk (`bench.disturb`);
5. churn: a quarter of the calls hang up (stop, close, signed status callback) and are
   replaced by new ones a few seconds later (`bench.disturb`);
6. hang up everything, wait for the servers to go quiet, and count error lines in their logs.

The level passes when the p99 lateness of the callers' frames reaching the server
(inbound) and of the persona's speech reaching the callers (heard) stay below
`LATE_LIMIT`, and no call broke or was refused. A window failing on lateness alone
is measured once more and the level fails only if that one fails too: a single
garbage collection or a burst of other work on the shared machine should not decide
capacity. Bursts and churn are measured in phases of their own so that they are
reported, not folded into capacity (one slow call start would otherwise decide it).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.disturb import burst_phase, churn_phase
from bench.measure import CpuMark, LogScan, heard_stats, ms, probe
from bench.procs import cpu_seconds, rss_bytes
from bench.session import Session

LATE_LIMIT = 0.040
QUIET_CORE_PCT = 10.0  # servers under this share of a core: the books of the calls just ended are closed


@dataclass
class LevelPlan:
    window: float  # seconds of the steady window
    spacing: float  # seconds between two new calls
    churn_fraction: float  # share of the calls replaced in the churn phase (0: none)
    burst: int = 0  # new calls at once in the burst phase (0: none)


@dataclass
class Step:
    mode: str
    servers: int
    calls: int  # live in the window (fewer than `level` when some were refused)
    window_s: float
    cpu_s: float
    call_s: float
    cpu_ms_per_call_s: float
    cpu_pct_of_core: float
    inbound_p99_ms: float
    outbound_p99_ms: float
    heard_p99_ms: float
    heard_max_ms: float
    underruns_per_min: float
    loop_lag_p99_ms: float
    caller_send_p99_ms: float
    caller_loop_p99_ms: float
    frames_per_call_s: dict[str, float]
    other_load_pct: float
    bench_pct_of_core: float  # the fakes and the callers: on this machine they compete with the servers
    broken_calls: int
    level: int = 0  # the calls this level asked for
    passed: bool = True
    why: str = ""
    first_try: str = ""  # why the first window failed, when a second one was measured
    turn_latency_ms: list[float] = field(default_factory=list)  # every clean turn before the burst/churn
    greeting_ms: list[float] = field(default_factory=list)  # call start (webhook / connect) → greeting heard
    rss_mb: float = float("nan")
    rss_mb_per_call: float = float("nan")
    rss_after_turn: int = 0  # calls that had completed a full turn when RSS was read
    rss_fresh: bool = False  # no larger level ran on these servers before (RSS is a high-water mark)
    refused: int = 0  # in the whole level (the level's own calls, the burst's and the churn's)
    refusals: list[str] = field(default_factory=list)  # why (the first few)
    status_errors: int = 0
    server_log: dict[str, Any] = field(default_factory=dict)
    burst: dict[str, Any] | None = None
    churn: dict[str, Any] | None = None
    took_s: float = 0.0  # the whole level, dial to quiet

    def summary(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["turns"] = len(self.turn_latency_ms)
        data["turn_latency_p50_ms"] = statistics.median(self.turn_latency_ms) if self.turn_latency_ms else None
        return data

    def line(self) -> str:
        live = "" if self.calls == self.level else f" ({self.calls} live)"
        return (f"  {self.mode:4} {self.level:3} calls{live}: CPU {self.cpu_pct_of_core:5.1f}% of a core, "
                f"{self.cpu_ms_per_call_s:5.1f} ms/call-s, late p99 in {self.inbound_p99_ms:5.1f} / heard "
                f"{self.heard_p99_ms:5.1f} ms, loop lag p99 {self.loop_lag_p99_ms:5.1f} ms, "
                f"{self.rss_mb_per_call:5.1f} MB/call, {len(self.turn_latency_ms)} turns, "
                f"other load {self.other_load_pct:3.0f}%, {self.took_s:.0f} s"
                + ("" if self.passed else f"  FAILED: {self.why}"))


async def _window(session: Session, client: httpx.AsyncClient, own_pids: list[int], window: float,
                  caller_loop: list[tuple[float, float]]) -> Step:
    servers, n = session.servers, len(session.calls)
    t0 = time.monotonic()
    before = (await probe(client, servers, t0))["counters"]  # also drops the samples taken before t0
    mark0 = CpuMark.take(t0, servers, own_pids)
    await asyncio.sleep(window)
    t1 = time.monotonic()
    mark1 = CpuMark.take(t1, servers, own_pids)
    data = await probe(client, servers, t0)
    call_s = n * (t1 - t0)
    cpu = mark1.servers - mark0.servers
    heard = heard_stats(session.heard(t0, t1))
    step = Step(
        mode=session.mode, servers=len(servers), calls=n, window_s=round(t1 - t0, 2), cpu_s=cpu, call_s=call_s,
        cpu_ms_per_call_s=1000 * cpu / call_s if call_s else float("nan"),
        cpu_pct_of_core=100 * cpu / (t1 - t0), inbound_p99_ms=ms(data["inbound"], 99),
        outbound_p99_ms=ms(data["outbound"], 99), heard_p99_ms=heard["heard_p99_ms"],
        heard_max_ms=heard["heard_max_ms"], underruns_per_min=heard["underruns_per_min"],
        loop_lag_p99_ms=ms(data["loop_lag"], 99), caller_send_p99_ms=ms(session.sent(t0, t1), 99),
        caller_loop_p99_ms=ms([lag for at, lag in caller_loop if t0 <= at < t1], 99),
        frames_per_call_s={k: (v - before.get(k, 0)) / call_s for k, v in data["counters"].items()} if call_s else {},
        other_load_pct=mark0.other_load_pct(mark1), bench_pct_of_core=100 * (mark1.own - mark0.own) / (t1 - t0),
        broken_calls=session.broken(), level=n)
    reasons = []
    if step.inbound_p99_ms >= LATE_LIMIT * 1000:
        reasons.append(f"inbound p99 {step.inbound_p99_ms:.0f} ms")
    if step.heard_p99_ms >= LATE_LIMIT * 1000:
        reasons.append(f"heard p99 {step.heard_p99_ms:.0f} ms")
    if step.broken_calls:
        reasons.append(f"{step.broken_calls} broken call(s)")
    step.passed, step.why = not reasons, "; ".join(reasons)
    return step


async def wait_quiet(session: Session, most: float = 4.0) -> None:
    """Wait until the servers idle (the calls just ended have closed their books), at most `most` s."""
    deadline = time.monotonic() + most
    pids = [s.pid for s in session.servers]
    while time.monotonic() < deadline:
        cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        await asyncio.sleep(0.3)
        if 100 * (sum(cpu_seconds(p) for p in pids) - cpu0) / (time.monotonic() - t0) < QUIET_CORE_PCT:
            return


async def run_level(session: Session, n: int, plan: LevelPlan, *, own_pids: list[int],
                    rss_idle: dict[int, int], caller_loop: list[tuple[float, float]], log: Any = print) -> Step:
    """Run one level from no calls to none (see the module docstring); returns what it measured."""
    logs = LogScan([s.log_path for s in session.servers])
    refused0, status0, began = len(session.refused), len(session.status_errors), time.monotonic()
    async with httpx.AsyncClient(timeout=30) as client:
        try:
            calls = await session.dial_many(client, n, plan.spacing)
            turned_away = n - len(calls)  # refused while the level filled: a failure at this load
            await session.wait_for(calls, lambda r: r.greeting_heard is not None, 15)
            await asyncio.sleep(1.0)  # the greetings play out
            step = await _window(session, client, own_pids, plan.window, caller_loop)
            if not step.passed and not step.broken_calls and not turned_away:
                log(f"  {session.mode:4} {n:3} calls: {step.why}; measuring again")
                first = step.why
                step = await _window(session, client, own_pids, plan.window, caller_loop)
                step.first_try = first
            # An overloaded level gets less time: its calls may never finish a turn.
            step.rss_after_turn = await session.wait_for(calls, lambda r: r.turns_done >= 1, 20 if step.passed else 8)
            rss = sum(rss_bytes(s.pid) for s in session.servers)
            step.rss_mb = rss / 2**20
            step.rss_mb_per_call = (rss - sum(rss_idle[s.pid] for s in session.servers)) / 2**20 / max(1, len(calls))
            step.turn_latency_ms = [1000 * lat for c in calls for _, lat in c.record.turns]
            step.greeting_ms = [1000 * (c.record.greeting_heard - c.record.started) for c in calls
                                if c.record.greeting_heard is not None]
            if plan.burst:
                step.burst = await burst_phase(session, client, plan.burst)
            if plan.churn_fraction:
                step.churn = await churn_phase(session, client, max(1, round(n * plan.churn_fraction)))
        finally:
            await session.hang_up(client, list(session.calls))
    await wait_quiet(session)
    step.refused = len(session.refused) - refused0
    step.refusals = session.refused[refused0:][:3]
    step.level = n
    step.status_errors = len(session.status_errors) - status0
    step.server_log = logs.scan()
    step.took_s = round(time.monotonic() - began, 1)
    if turned_away:
        step.passed = False
        step.why = "; ".join(filter(None, [step.why, f"{turned_away} of {n} call(s) refused"]))
    session.forget_before(time.monotonic())
    return step
