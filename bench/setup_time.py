"""Call set-up and memory reads with a heavy memory: 500 long-term facts and 10 recent calls on SQLite.

Set-up is the domain's part of "webhook → pipeline running": `CallLifecycle.open`
(what the webhook does: create the call, reserve the budget) then `begin` (what
the media socket does before the pipeline starts: load memory, build the
composite prompt within its token budget, open the ledger, mark the call live).
The Pipecat part of set-up is measured by the load test (call start → greeting
heard), ours beside bare.

Beside them, in the same run and on the same disk: a bare SQLite round trip through
the same stack (SQLAlchemy async + aiosqlite, WAL, the product's `Database`): one
`SELECT 1` read and one single-row write transaction. Set-up and the memories read
are then also given in round trips, a figure that travels between machines
better than milliseconds do (they differ by 2x here).

The memories read is `GET /api/personas/{id}/memories` through httpx's ASGI
transport when server.py has that route, else the domain call behind it
(`runtime.memory.snapshot`), and the result says which was measured.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.books.budgets import BudgetSettings
from agent.calls.lifecycle import CallLifecycle
from agent.memory.relationships import CallSummary, FactCategory
from agent.runtime import Runtime
from agent.settings import Settings
from bench.stats import percentile

USER, PERSONA = "demo", "brad"
FACTS = 500
SUMMARIES = 10
MEMORIES_ROUTE = "/api/personas/{persona_id}/memories"


@dataclass
class SetupResult:
    facts: int
    summaries: int
    prompt_tokens: int
    prompt_trimmed: dict[str, int]
    open_ms: list[float]
    begin_ms: list[float]
    total_ms: list[float]
    memories_ms: list[float]
    memories_measured: str
    snapshot_ms: list[float]  # "HTTP GET ... (ASGI)" or "domain: runtime.memory.snapshot"
    sqlite_read_ms: list[float]  # bare round trips: SELECT 1
    sqlite_write_ms: list[float]  # ... and a one-row write transaction

    def summary(self) -> dict[str, Any]:
        return {
            "facts": self.facts, "recent_calls": self.summaries, "prompt_tokens": self.prompt_tokens,
            "prompt_trimmed": self.prompt_trimmed, "iterations": len(self.total_ms),
            "open_p50_ms": statistics.median(self.open_ms), "begin_p50_ms": statistics.median(self.begin_ms),
            "setup_p50_ms": statistics.median(self.total_ms), "setup_p95_ms": percentile(self.total_ms, 95),
            "memories_p50_ms": statistics.median(self.memories_ms),
            "memories_p95_ms": percentile(self.memories_ms, 95), "memories_measured": self.memories_measured,
            "snapshot_p50_ms": statistics.median(self.snapshot_ms),
            "sqlite_read_p50_ms": statistics.median(self.sqlite_read_ms),
            "sqlite_write_p50_ms": statistics.median(self.sqlite_write_ms),
            "setup_p95_in_writes": percentile(self.total_ms, 95) / statistics.median(self.sqlite_write_ms),
            "memories_p50_in_reads": statistics.median(self.memories_ms) / statistics.median(self.sqlite_read_ms),
        }


async def _remember_a_lot(rt: Runtime) -> None:
    categories = list(FactCategory)
    for i in range(FACTS):
        category = categories[i % len(categories)]
        await rt.memory.add_fact(USER, PERSONA, category.value, f"{category.value}_{i:03d}",
                                 f"Fact number {i}: they mentioned this on a call about work, family and surfing.")
    for i in range(SUMMARIES):
        await rt.memory.add_call_summary(USER, PERSONA, CallSummary(
            summary=f"Call {i}: they talked about their week, a trip to the coast and a tricky meeting at work.",
            key_topics=["work", "travel", "surfing"], outcome="ended warmly"))


async def _time_setups(rt: Runtime, iterations: int) -> tuple[list[float], list[float], Any]:
    lifecycle = CallLifecycle(rt, carrier_wait_secs=0.0)
    opens, begins, session = [], [], None
    for i in range(iterations + 2):  # the first two warm caches and are not kept
        t0 = time.perf_counter()
        allowance = await lifecycle.open(USER, PERSONA, "inbound", twilio_call_sid=f"CA{i:032d}")
        t1 = time.perf_counter()
        session = await lifecycle.begin(allowance.call_id)
        t2 = time.perf_counter()
        await session.tracker.close()  # stop its flush task; the call itself is left as it is
        lifecycle.live.pop(allowance.call_id, None)
        if i >= 2:
            opens.append(1000 * (t1 - t0))
            begins.append(1000 * (t2 - t1))
    return opens, begins, session


async def _time_memories_http(settings: Settings, iterations: int) -> list[float] | None:
    """The real route through the ASGI app, or None when server.py has no such route yet."""
    try:
        import httpx

        from agent.accounts.auth import mint_user_token
        from server import create_app
    except ImportError:
        return None
    app = create_app(settings)
    if MEMORIES_ROUTE not in app.openapi().get("paths", {}):  # included routers are not listed flat
        return None
    headers = {"Authorization": f"Bearer {mint_user_token(USER, settings.jwt_secret)}"}
    times = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            url = MEMORIES_ROUTE.format(persona_id=PERSONA)
            for i in range(iterations + 2):
                t0 = time.perf_counter()
                response = await client.get(url, headers=headers)
                elapsed = 1000 * (time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url} answered {response.status_code}: {response.text[:200]}")
                if i >= 2:
                    times.append(elapsed)
    return times


async def _time_round_trips(path: Path, iterations: int) -> tuple[list[float], list[float]]:
    """Bare SQLite round trips through the product's `Database` (same driver, pragmas and pool)."""
    from sqlalchemy import text

    from storage.db import Database

    db = Database(f"sqlite:///{path}")
    reads, writes = [], []
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE IF NOT EXISTS round_trip (id INTEGER PRIMARY KEY, at REAL)"))
        for i in range(5 * iterations + 5):
            t0 = time.perf_counter()
            async with db.connect() as conn:
                await conn.execute(text("SELECT 1"))
            t1 = time.perf_counter()
            async with db.begin() as conn:
                await conn.execute(text("INSERT INTO round_trip (at) VALUES (:at)"), {"at": t1})
            t2 = time.perf_counter()
            if i >= 5:
                reads.append(1000 * (t1 - t0))
                writes.append(1000 * (t2 - t1))
    finally:
        await db.dispose()
    return reads, writes


async def measure_setup(data_dir: Path, iterations: int) -> SetupResult:
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'setup.db'}")
    rt = await Runtime.start(settings)
    try:
        # Generous limits: every timed call stays open, and none may be refused for budget.
        await rt.budgets.save_settings(USER, BudgetSettings(daily_limit_micros=10**13, monthly_limit_micros=10**13))
        await _remember_a_lot(rt)
        opens, begins, session = await _time_setups(rt, iterations)
        snapshot_ms = []
        for i in range(iterations + 2):
            t0 = time.perf_counter()
            snapshot = await rt.memory.snapshot(USER, PERSONA)
            if i >= 2:
                snapshot_ms.append(1000 * (time.perf_counter() - t0))
        assert snapshot.fact_count == FACTS and len(snapshot.recent_calls) == SUMMARIES
    finally:
        await rt.close()
    http_ms = await _time_memories_http(settings, iterations)
    reads, writes = await _time_round_trips(data_dir / "round-trip.db", iterations)
    memories, how = (http_ms, f"HTTP GET {MEMORIES_ROUTE} via httpx ASGITransport") if http_ms else \
        (snapshot_ms, "domain: runtime.memory.snapshot (server.py has no memories route)")
    return SetupResult(
        facts=FACTS, summaries=SUMMARIES, prompt_tokens=session.prompt.token_count,
        prompt_trimmed=dict(session.prompt.trimmed), open_ms=opens, begin_ms=begins,
        total_ms=[o + b for o, b in zip(opens, begins)], memories_ms=memories, memories_measured=how,
        snapshot_ms=snapshot_ms, sqlite_read_ms=reads, sqlite_write_ms=writes)
