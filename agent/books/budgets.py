"""Budgets: what a user allows, what a new call may spend, and in-call decisions.

Across processes the rule is reserve / settle / release (DESIGN.md section 10):
a starting call reserves its effective limit inside one database transaction
that holds the user's budget lock, so two calls can never both spend the same
remaining daily budget. While live, a call counts as the larger of its
reservation and its running total; when it ends it counts as its final total.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.books.money import format_usd, to_micros
from storage.calls import CallStore
from storage.users import UserStore

MIN_CALL_MICROS = to_micros("0.50")


class BudgetSettings(BaseModel):
    """A user's limits. Defaults follow the seed: $10 a call, $50 a day, $100 a month."""

    model_config = ConfigDict(extra="forbid")

    per_call_limit_micros: int = Field(10_000_000, ge=0)
    daily_limit_micros: int = Field(50_000_000, ge=0)
    monthly_limit_micros: int = Field(100_000_000, ge=0)
    warning_threshold_pct: int = Field(75, gt=0, lt=100)
    auto_cutoff: bool = True
    grace_period_seconds: int = Field(10, ge=0, le=120)
    memory_token_limit: int | None = Field(None, ge=200, le=32_000)
    notify_email: bool = False
    notify_sms: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> "BudgetSettings":
        if self.daily_limit_micros < self.per_call_limit_micros:
            raise ValueError("the daily limit must be at least the per-call limit")
        if self.monthly_limit_micros < self.daily_limit_micros:
            raise ValueError("the monthly limit must be at least the daily limit")
        return self


class LimitKind(StrEnum):
    PER_CALL = "per_call"
    DAILY = "daily"
    MONTHLY = "monthly"


_LIMIT_WORDS = {LimitKind.PER_CALL: "call", LimitKind.DAILY: "daily", LimitKind.MONTHLY: "monthly"}


@dataclass(frozen=True)
class CallAllowance:
    """What one call may spend, fixed when it starts."""

    call_id: str
    user_id: str
    limit_micros: int
    limit_kind: LimitKind
    warning_threshold_pct: int
    auto_cutoff: bool
    grace_period_seconds: int
    daily_remaining_micros: int
    monthly_remaining_micros: int


class BudgetRefused(Exception):
    """Too little budget left to start a call."""

    def __init__(self, limit_kind: LimitKind, remaining_micros: int) -> None:
        self.limit_kind = limit_kind
        self.remaining_micros = remaining_micros
        word = {"per_call": "per-call", "daily": "daily", "monthly": "monthly"}[limit_kind.value]
        self.message = (
            f"Sorry, your {word} budget has only {format_usd(remaining_micros)} left, which is not enough "
            f"for a call. You can raise your limits in your budget settings."
        )
        super().__init__(self.message)


class Action(StrEnum):
    OK = "ok"
    WARN = "warn"
    CUTOFF = "cutoff"


@dataclass(frozen=True)
class BudgetDecision:
    action: Action
    spent_micros: int
    limit_micros: int
    limit_kind: LimitKind
    threshold_pct: int | None = None

    @property
    def message(self) -> str:
        """The sentence the persona says out loud."""
        spent, limit = format_usd(self.spent_micros), format_usd(self.limit_micros)
        word = _LIMIT_WORDS[self.limit_kind]
        budget = f"your {limit} {word} budget" if self.limit_kind == LimitKind.PER_CALL \
            else f"the {limit} left in your {word} budget"
        if self.action == Action.WARN:
            return f"Just so you know, you've spent {spent} of {budget}."
        if self.action == Action.CUTOFF:
            return f"I'm sorry, we've reached {budget}, so I have to go now. Talk to you soon, goodbye!"
        return ""


class BudgetMonitor:
    """In-call decisions from the running total: pure and cheap, no database."""

    def __init__(self, allowance: CallAllowance, extra_thresholds: tuple[int, ...] = ()) -> None:
        self.allowance = allowance
        self.thresholds = sorted({allowance.warning_threshold_pct, *extra_thresholds})
        self._warned: set[int] = set()
        self.cut_off = False

    def evaluate(self, spent_micros: int) -> BudgetDecision:
        a = self.allowance
        decision = BudgetDecision(Action.OK, spent_micros, a.limit_micros, a.limit_kind)
        if self.cut_off:
            return decision
        if a.auto_cutoff and spent_micros >= a.limit_micros:
            self.cut_off = True
            return BudgetDecision(Action.CUTOFF, spent_micros, a.limit_micros, a.limit_kind)
        crossed = [t for t in self.thresholds if t not in self._warned and spent_micros * 100 >= a.limit_micros * t]
        if crossed:
            self._warned.update(crossed)
            return BudgetDecision(Action.WARN, spent_micros, a.limit_micros, a.limit_kind, max(crossed))
        return decision


    def out_of_budget(self, spent_micros: int) -> BudgetDecision | None:
        """The cutoff, now: what is left cannot pay for the next request or sentence (None if already cut off)."""
        if self.cut_off or not self.allowance.auto_cutoff:
            return None
        self.cut_off = True
        a = self.allowance
        return BudgetDecision(Action.CUTOFF, spent_micros, a.limit_micros, a.limit_kind)


class BudgetManager:
    """Budget settings and reservations, backed by the database."""

    def __init__(self, users: UserStore, calls: CallStore, *, min_call_micros: int = MIN_CALL_MICROS) -> None:
        self.users = users
        self.calls = calls
        self.min_call_micros = min_call_micros

    async def settings(self, user_id: str) -> BudgetSettings:
        row = await self.users.get_budget(user_id)
        if row is None:
            return BudgetSettings()
        return BudgetSettings(**{k: row[k] for k in BudgetSettings.model_fields})

    async def save_settings(self, user_id: str, settings: BudgetSettings) -> BudgetSettings:
        await self.users.save_budget(user_id, settings.model_dump())
        return settings

    async def spending(self, user_id: str, *, now: dt.datetime | None = None) -> tuple[int, int]:
        """(spent today, spent this month) in the user's time zone, live calls at their reservations."""
        day_start, month_start = await self._windows(user_id, now)
        async with self.calls.budget_transaction(user_id) as tx:
            return await tx.committed_since(day_start), await tx.committed_since(month_start)

    async def open_call(self, user_id: str, persona_id: str, direction: str, *, call_id: str | None = None,
                        twilio_call_sid: str | None = None, now: dt.datetime | None = None) -> CallAllowance:
        """Create the call and reserve its effective limit, atomically; refuse if too little is left."""
        settings = await self.settings(user_id)
        day_start, month_start = await self._windows(user_id, now)
        call_id = call_id or uuid.uuid4().hex
        async with self.calls.budget_transaction(user_id) as tx:
            daily_left = max(settings.daily_limit_micros - await tx.committed_since(day_start), 0)
            monthly_left = max(settings.monthly_limit_micros - await tx.committed_since(month_start), 0)
            limit, kind = min(
                (settings.per_call_limit_micros, LimitKind.PER_CALL),
                (daily_left, LimitKind.DAILY),
                (monthly_left, LimitKind.MONTHLY),
                key=lambda pair: pair[0],
            )
            if limit < self.min_call_micros:
                raise BudgetRefused(kind, limit)
            await tx.insert_call(id=call_id, user_id=user_id, persona_id=persona_id, direction=direction,
                                 status="created", reserved_micros=limit, limit_kind=kind.value,
                                 twilio_call_sid=twilio_call_sid)
        return CallAllowance(
            call_id=call_id, user_id=user_id, limit_micros=limit, limit_kind=kind,
            warning_threshold_pct=settings.warning_threshold_pct, auto_cutoff=settings.auto_cutoff,
            grace_period_seconds=settings.grace_period_seconds,
            daily_remaining_micros=daily_left, monthly_remaining_micros=monthly_left,
        )

    async def _windows(self, user_id: str, now: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
        user = await self.users.get_user(user_id)
        if user is None:
            raise LookupError(f"unknown user {user_id}")
        return budget_windows(user["time_zone"], now)


def budget_windows(time_zone: str | None, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """(start of today, start of this month) in the user's time zone, as UTC instants."""
    zone = ZoneInfo(time_zone or "UTC")
    local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    return day.astimezone(dt.timezone.utc), month.astimezone(dt.timezone.utc)
