"""Calls, their cost events and breakdowns, and the budget reservation transaction."""

from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database
from storage.leases import Fence, LeaseLost
from storage.schema import call_cost_breakdowns, call_cost_events, calls, users
from storage.util import insert_ignoring_conflicts, row_dict, utcnow

LIVE_STATUSES = ("created", "live")

# What a call counts against the user's daily and monthly budgets: a live call
# holds its reservation (or what it has spent, if more); an ended call its total.
_committed = case(
    (calls.c.status.in_(LIVE_STATUSES),
     case((calls.c.reserved_micros > calls.c.spent_micros, calls.c.reserved_micros), else_=calls.c.spent_micros)),
    (calls.c.status == "ended", calls.c.spent_micros),
    else_=0,
)


class BudgetTransaction:
    """Inside one database transaction that holds the user's budget lock."""

    def __init__(self, conn: AsyncConnection, user_id: str) -> None:
        self.conn = conn
        self.user_id = user_id

    async def committed_since(self, since: dt.datetime, *, exclude_call: str | None = None) -> int:
        conditions = [calls.c.user_id == self.user_id, calls.c.created_at >= since]
        if exclude_call:
            conditions.append(calls.c.id != exclude_call)
        stmt = select(func.coalesce(func.sum(_committed), 0)).where(and_(*conditions))
        return int((await self.conn.execute(stmt)).scalar_one())

    async def insert_call(self, **values: Any) -> None:
        await self.conn.execute(insert(calls).values(created_at=utcnow(), spent_micros=0, **values))


class CallStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def budget_transaction(self, user_id: str) -> AsyncIterator[BudgetTransaction]:
        """Serialise budget decisions of one user across every process.

        The UPDATE of the user's row takes its row lock on PostgreSQL (SQLite's
        BEGIN IMMEDIATE already holds the database write lock), so a second
        reservation waits until the first has inserted its call.
        """
        async with self.db.begin() as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(budget_version=users.c.budget_version + 1)
            )
            yield BudgetTransaction(conn, user_id)

    async def get(self, call_id: str) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(calls).where(calls.c.id == call_id))).first()
        return row_dict(row) if row else None

    async def by_twilio_sid(self, call_sid: str) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(calls).where(calls.c.twilio_call_sid == call_sid))).first()
        return row_dict(row) if row else None

    async def update(self, call_id: str, **values: Any) -> None:
        async with self.db.begin() as conn:
            await conn.execute(update(calls).where(calls.c.id == call_id).values(**values))

    async def list_for_user(self, user_id: str, *, limit: int = 20, offset: int = 0) -> tuple[list[dict], int]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(calls).where(calls.c.user_id == user_id)
                .order_by(calls.c.created_at.desc(), calls.c.id).limit(limit).offset(offset)
            )
            total = (await conn.execute(select(func.count()).where(calls.c.user_id == user_id))).scalar_one()
        return [row_dict(r) for r in rows], int(total)

    async def abandoned(self, stale_before: dt.datetime) -> list[dict[str, Any]]:
        """Calls that never reached `ended` and whose process stopped writing: reconciliation's work."""
        last_sign_of_life = func.coalesce(calls.c.heartbeat_at, calls.c.started_at, calls.c.created_at)
        async with self.db.connect() as conn:
            rows = await conn.execute(select(calls).where(
                calls.c.status.in_(LIVE_STATUSES), last_sign_of_life < stale_before))
        return [row_dict(r) for r in rows]

    async def unsettled(self) -> list[dict[str, Any]]:
        """Ended calls whose payment was finalised but not yet captured (or cancelled) at Stripe."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(calls).where(
                calls.c.status == "ended", calls.c.payment_status == "capture_pending"))
        return [row_dict(r) for r in rows]

    async def awaiting_extraction(self, max_attempts: int) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(calls).where(
                calls.c.status == "ended", calls.c.extraction_status.in_(("pending", "failed")),
                calls.c.extraction_attempts < max_attempts))
        return [row_dict(r) for r in rows]

    async def live(self) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(calls).where(calls.c.status == "live").order_by(calls.c.started_at))
        return [row_dict(r) for r in rows]

    async def append_events(self, events: list[dict[str, Any]], spent: tuple[str, int] | None = None,
                            *, fence: Fence | None = None) -> None:
        """Insert cost events (idempotent on (call_id, seq)) and the call's running total together.

        With a fence, the write lands only while that owner still holds the live call;
        otherwise nothing is written and `LeaseLost` is raised.
        """
        if not events and spent is None:
            return
        async with self.db.begin() as conn:
            if fence is not None:
                total = {"spent_micros": spent[1]} if spent is not None else {}
                moved = await conn.execute(update(calls).where(fence.matches(), calls.c.status == "live").values(
                    heartbeat_at=utcnow(), **total))
                if moved.rowcount != 1:
                    raise LeaseLost(f"call {fence.call_id} is no longer owned by {fence.owner}")
            elif spent is not None:
                call_id, micros = spent
                await conn.execute(update(calls).where(calls.c.id == call_id).values(
                    spent_micros=micros, heartbeat_at=utcnow()))
            if events:
                stmt = insert_ignoring_conflicts(conn, call_cost_events, ["call_id", "seq"])
                await conn.execute(stmt, events)

    async def update_live(self, fence: Fence, **values: Any) -> bool:
        """Update a live call on behalf of its owner; False if the owner lost it."""
        async with self.db.begin() as conn:
            moved = await conn.execute(update(calls).where(fence.matches(), calls.c.status == "live").values(**values))
        return moved.rowcount == 1

    async def events(self, call_id: str) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(call_cost_events).where(call_cost_events.c.call_id == call_id).order_by(call_cost_events.c.seq)
            )
        return [row_dict(r) for r in rows]

    async def save_breakdown(self, breakdown: dict[str, Any], call_values: dict[str, Any], *, fence: Fence) -> bool:
        """End the call and store its final breakdown, once, and only by the call's current owner.

        Returns False (writing nothing) if the call has already ended or the fence is stale.
        """
        async with self.db.begin() as conn:
            ended = await conn.execute(update(calls).where(
                fence.matches(), calls.c.status.in_(LIVE_STATUSES)).values(**call_values))
            if ended.rowcount != 1:
                return False
            await conn.execute(insert_ignoring_conflicts(conn, call_cost_breakdowns, ["call_id"]).values(**breakdown))
            return True

    async def breakdown(self, call_id: str) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(
                select(call_cost_breakdowns).where(call_cost_breakdowns.c.call_id == call_id))).first()
        return row_dict(row) if row else None
