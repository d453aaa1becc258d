"""Read-only aggregates over calls and their costs: spending summaries and metrics.

Separate from `CallStore` because these are reporting queries (sums and
counts over many calls), not the per-call reads and writes a live call makes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from storage.calls import _committed as _COMMITTED  # the budget's own rule: one definition
from storage.db import Database
from storage.schema import call_cost_breakdowns, call_cost_events, calls, personas


class Reports:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def spending_since(self, user_id: str, since: dt.datetime) -> tuple[int, int]:
        """(spent, committed) micro-dollars of the user's calls created since `since`."""
        stmt = select(func.coalesce(func.sum(calls.c.spent_micros), 0), func.coalesce(func.sum(_COMMITTED), 0)
                      ).where(calls.c.user_id == user_id, calls.c.created_at >= since)
        async with self.db.connect() as conn:
            spent, committed = (await conn.execute(stmt)).one()
        return int(spent), int(committed)

    async def cost_by_service_since(self, user_id: str, since: dt.datetime) -> dict[str, int]:
        """Event costs by service, plus final Stripe fees as `stripe_fee`, of calls created since `since`."""
        events = (select(call_cost_events.c.service, func.sum(call_cost_events.c.cost_micros))
                  .join(calls, calls.c.id == call_cost_events.c.call_id)
                  .where(calls.c.user_id == user_id, calls.c.created_at >= since)
                  .group_by(call_cost_events.c.service))
        fees = (select(func.coalesce(func.sum(call_cost_breakdowns.c.stripe_fee_micros), 0))
                .join(calls, calls.c.id == call_cost_breakdowns.c.call_id)
                .where(calls.c.user_id == user_id, calls.c.created_at >= since))
        async with self.db.connect() as conn:
            totals = {service: int(micros) for service, micros in await conn.execute(events)}
            fee = int((await conn.execute(fees)).scalar_one())
        if fee:
            totals["stripe_fee"] = fee
        return totals

    async def spending_by_persona_since(self, user_id: str, since: dt.datetime) -> list[dict[str, Any]]:
        """Per persona: name, number of calls and spend, of the user's calls created since `since`."""
        stmt = (select(calls.c.persona_id, personas.c.name, func.count(), func.coalesce(func.sum(calls.c.spent_micros), 0))
                .join(personas, personas.c.id == calls.c.persona_id)
                .where(calls.c.user_id == user_id, calls.c.created_at >= since)
                .group_by(calls.c.persona_id, personas.c.name)
                .order_by(func.sum(calls.c.spent_micros).desc(), calls.c.persona_id))
        async with self.db.connect() as conn:
            rows = await conn.execute(stmt)
        return [{"persona_id": pid, "name": name, "calls": int(n), "spent_micros": int(spent)}
                for pid, name, n, spent in rows]

    async def live_call_count(self, user_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(calls).where(calls.c.status == "live")
        if user_id is not None:
            stmt = stmt.where(calls.c.user_id == user_id)
        async with self.db.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def call_outcomes(self) -> list[dict[str, Any]]:
        """Every call counted by direction, status and end reason (all workers: it is the database)."""
        stmt = (select(calls.c.direction, calls.c.status, calls.c.end_reason, func.count())
                .group_by(calls.c.direction, calls.c.status, calls.c.end_reason))
        async with self.db.connect() as conn:
            rows = await conn.execute(stmt)
        return [{"direction": d, "status": s, "end_reason": r, "count": int(n)} for d, s, r, n in rows]

    async def cost_by_service(self) -> dict[str, int]:
        """All-time event costs by service, plus final Stripe fees as `stripe_fee`."""
        async with self.db.connect() as conn:
            totals = {service: int(micros) for service, micros in await conn.execute(
                select(call_cost_events.c.service, func.sum(call_cost_events.c.cost_micros))
                .group_by(call_cost_events.c.service))}
            totals["stripe_fee"] = int((await conn.execute(
                select(func.coalesce(func.sum(call_cost_breakdowns.c.stripe_fee_micros), 0)))).scalar_one())
        return totals
