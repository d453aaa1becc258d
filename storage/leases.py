"""One owner per call, in the database: the claim that makes a call live, its fenced lease,
end requests between workers, and claims on reconciliation work.

Every transition is one conditional UPDATE, so it is atomic on SQLite and on
PostgreSQL alike and needs no lock held across a round trip: whoever's UPDATE
matched the row won, everyone else matched nothing. A live call's `Fence`
(owner and epoch) rides on every write it makes; a worker that lost its lease
(another worker raised the epoch when taking the call over) matches no row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from storage.db import Database
from storage.schema import calls
from storage.util import row_dict, utcnow


class LeaseLost(RuntimeError):
    """This worker no longer owns the call: another took it over, or the call has ended."""


@dataclass(frozen=True)
class Fence:
    """The token a live call's writes carry: who owns it, and which grant of ownership."""

    call_id: str
    owner: str
    epoch: int

    def matches(self) -> ColumnElement[bool]:
        return and_(calls.c.id == self.call_id, calls.c.owner == self.owner, calls.c.lease_epoch == self.epoch)


def _claim_free(now: dt.datetime) -> ColumnElement[bool]:
    return or_(calls.c.claimed_until.is_(None), calls.c.claimed_until < now)


class LeaseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _update(self, where: ColumnElement[bool], **values: Any) -> bool:
        async with self.db.begin() as conn:
            return (await conn.execute(update(calls).where(where).values(**values))).rowcount == 1

    async def go_live(self, call_id: str, owner: str, lease_secs: float) -> Fence | None:
        """created -> live for exactly one caller: the winner gets the call's fence, everyone else None."""
        now = utcnow()
        async with self.db.begin() as conn:
            won = (await conn.execute(
                update(calls).where(calls.c.id == call_id, calls.c.status == "created").values(
                    status="live", owner=owner, lease_epoch=calls.c.lease_epoch + 1, started_at=now,
                    heartbeat_at=now, lease_expires_at=now + dt.timedelta(seconds=lease_secs)))).rowcount == 1
            if not won:
                return None
            epoch = (await conn.execute(select(calls.c.lease_epoch).where(calls.c.id == call_id))).scalar_one()
        return Fence(call_id, owner, int(epoch))

    async def cancel_before_start(self, call_id: str, reason: str) -> bool:
        """created -> ended, unless someone made it live first."""
        return await self._update(and_(calls.c.id == call_id, calls.c.status == "created"),
                                  status="ended", end_reason=reason, ended_at=utcnow())

    async def take_over(self, call: dict[str, Any], owner: str, lease_secs: float) -> Fence | None:
        """Own a call whose owner went silent, by raising its epoch: the old owner's fence stops matching.

        Conditional on the epoch seen, so of several reconcilers only one wins.
        """
        now = utcnow()
        expired = or_(calls.c.lease_expires_at.is_(None), calls.c.lease_expires_at < now)
        where = and_(calls.c.id == call["id"], calls.c.status.in_(("created", "live")),
                     calls.c.lease_epoch == call["lease_epoch"], expired)
        if not await self._update(where, owner=owner, lease_epoch=call["lease_epoch"] + 1,
                                  lease_expires_at=now + dt.timedelta(seconds=lease_secs)):
            return None
        return Fence(call["id"], owner, call["lease_epoch"] + 1)

    async def request_end(self, call_id: str, reason: str) -> bool:
        """Ask whichever worker owns the live call to end it (it sees the flag within a poll)."""
        return await self._update(and_(calls.c.id == call_id, calls.c.status == "live",
                                       calls.c.end_requested.is_(None)), end_requested=reason)

    async def owned(self, owner: str) -> dict[str, str | None]:
        """This worker's live calls as the database sees them: {call id: end requested, or None}."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(calls.c.id, calls.c.end_requested).where(
                calls.c.owner == owner, calls.c.status == "live"))
        return {r.id: r.end_requested for r in rows}

    async def renew(self, owner: str, call_ids: list[str], lease_secs: float) -> None:
        """Extend the leases of the live calls this worker still owns and runs (one statement)."""
        now = utcnow()
        async with self.db.begin() as conn:
            await conn.execute(update(calls).where(
                calls.c.owner == owner, calls.c.status == "live", calls.c.id.in_(call_ids)).values(
                heartbeat_at=now, lease_expires_at=now + dt.timedelta(seconds=lease_secs)))

    async def claim(self, call_id: str, work: Literal["capture", "release"], hold_secs: float) -> bool:
        """Claim a finalised call's payment work for `hold_secs`: one worker asks Stripe at a time.

        "capture": the charge is fixed but not yet captured; "release": the call ended
        without a capture and its card hold is still on.
        """
        now = utcnow()
        status = "capture_pending" if work == "capture" else "authorized"
        where = and_(calls.c.id == call_id, calls.c.status == "ended", calls.c.payment_status == status,
                     _claim_free(now))
        return await self._update(where, claimed_until=now + dt.timedelta(seconds=hold_secs))

    async def claim_extraction(self, call_id: str, max_attempts: int, hold_secs: float) -> int | None:
        """Count an extraction attempt and claim it, atomically: the cap holds across workers.

        Returns the attempt's number, or None if another worker has it or the cap is reached.
        """
        now = utcnow()
        where = and_(calls.c.id == call_id, calls.c.status == "ended",
                     calls.c.extraction_status.in_(("pending", "failed")),
                     calls.c.extraction_attempts < max_attempts, _claim_free(now))
        async with self.db.begin() as conn:
            won = (await conn.execute(update(calls).where(where).values(
                extraction_attempts=calls.c.extraction_attempts + 1,
                claimed_until=now + dt.timedelta(seconds=hold_secs)))).rowcount == 1
            if not won:
                return None
            return int((await conn.execute(
                select(calls.c.extraction_attempts).where(calls.c.id == call_id))).scalar_one())

    async def back_off(self, call_id: str, secs: float) -> None:
        """No worker retries this call's work before `secs` from now."""
        await self._update(calls.c.id == call_id, claimed_until=utcnow() + dt.timedelta(seconds=secs))

    async def holds_to_release(self) -> list[dict[str, Any]]:
        """Ended calls whose card hold was never captured or let go (ended before they started)."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(calls).where(
                calls.c.status == "ended", calls.c.payment_status == "authorized",
                calls.c.payment_intent_id.is_not(None)))
        return [row_dict(r) for r in rows]
