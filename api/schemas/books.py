"""Estimates, budgets, calls and their costs, and the operators' live view, in API shapes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from agent.books.money import usd
from api.schemas.common import CleanInput, PersonaId, Usd, UsdIn

# -- estimate and budget ---------------------------------------------------

class EstimateIn(CleanInput):
    persona_id: PersonaId
    minutes: StrictFloat = Field(gt=0, le=600, examples=[10], description="Planned length of the call")
    direction: Literal["inbound", "outbound"] = Field(
        "outbound", description="outbound: the persona calls you back (the API's calls); inbound: you call it")


class EstimateOut(BaseModel):
    persona_id: str
    minutes: float
    direction: str
    memory_tokens: int = Field(description="Tokens of memory the persona's prompt carries into every turn")
    services: dict[str, Usd]
    subtotal_usd: Usd
    stripe_fee_usd: Usd
    total_usd: Usd
    call_limit_usd: Usd = Field(description="What a call started now may spend: min(per-call, daily left, monthly left)")
    limit_kind: Literal["per_call", "daily", "monthly"]
    within_budget: bool
    warnings: list[str]


class BudgetOut(BaseModel):
    per_call_limit_usd: Usd
    daily_limit_usd: Usd
    monthly_limit_usd: Usd
    warning_threshold_pct: int
    auto_cutoff: bool
    grace_period_seconds: int
    memory_token_limit: int | None
    notify_email: bool
    notify_sms: bool
    minimum_call_usd: Usd = Field(description="A call starts only if its limit is at least this")


class BudgetIn(CleanInput):
    """Fields left out keep their value. Limits must be daily >= per-call and monthly >= daily."""

    # Left out = unchanged, so the fields default to None, but null is not a value (except memory_token_limit).
    per_call_limit_usd: UsdIn = None  # type: ignore[assignment]
    daily_limit_usd: UsdIn = None  # type: ignore[assignment]
    monthly_limit_usd: UsdIn = None  # type: ignore[assignment]
    warning_threshold_pct: StrictInt = Field(None, gt=0, lt=100,  # type: ignore[assignment]
                                             description="Spoken warning at this % of the limit")
    auto_cutoff: StrictBool = None  # type: ignore[assignment]
    grace_period_seconds: StrictInt = Field(None, ge=0, le=120)  # type: ignore[assignment]
    memory_token_limit: StrictInt | None = Field(None, ge=200, le=32_000,
                                                 description="null: the server's prompt budget")
    notify_email: StrictBool = None  # type: ignore[assignment]
    notify_sms: StrictBool = None  # type: ignore[assignment]


# -- calls and their costs -------------------------------------------------

class CallRequest(CleanInput):
    persona_id: PersonaId


class CallOut(BaseModel):
    id: str
    persona_id: str
    direction: str
    status: str = Field(description="created, live or ended")
    end_reason: str | None
    limit_kind: str | None
    reserved_usd: Usd = Field(description="The most this call may spend, fixed when it started")
    spent_usd: Usd = Field(description="Running total while live (updated every flush), final total when ended")
    duration_seconds: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "CallOut":
        return cls(id=row["id"], persona_id=row["persona_id"], direction=row["direction"], status=row["status"],
                   end_reason=row["end_reason"], limit_kind=row["limit_kind"], reserved_usd=usd(row["reserved_micros"]),
                   spent_usd=usd(row["spent_micros"]), duration_seconds=row["duration_seconds"],
                   created_at=row["created_at"], started_at=row["started_at"], ended_at=row["ended_at"])


class CallPage(BaseModel):
    items: list[CallOut]
    total: int
    limit: int
    offset: int


class ServiceCostOut(BaseModel):
    cost_usd: Usd
    units: dict[str, str] = Field(description="Quantities by unit (characters, tokens, seconds, minutes...)")


class CallCostOut(BaseModel):
    call_id: str
    status: str
    live: bool = Field(description="True while the call is still running")
    source: Literal["live", "stored", "final"] = Field(
        description="live: this process's running ledger; stored: events flushed to the database; final: closed books")
    total_usd: Usd = Field(description="What the user pays if the call ended now (final: what it cost)")
    subtotal_usd: Usd
    stripe_fee_usd: Usd
    provisional_carrier_usd: Usd = Field(description="Carrier minutes so far, not yet reported by the carrier")
    limit_usd: Usd
    limit_kind: str | None
    used_pct: float
    amount_charged_usd: Usd | None = Field(description="Captured payment, once the books are closed")
    services: dict[str, ServiceCostOut]
    event_count: int
    as_of: dt.datetime
    warnings: list[str] = Field(default_factory=list,
                                description="Budget warnings the persona has said in this call (live calls)")


class CostEventOut(BaseModel):
    seq: int
    service: str
    kind: str
    vendor: str
    model: str
    unit: str
    quantity: str
    unit_price_usd: str = Field(description="Dollars per single unit, exact decimal (may have many decimals)")
    cost_usd: Usd
    source: str
    price_version: str
    detail: str | None
    created_at: dt.datetime


class CostDriverOut(BaseModel):
    service: str
    kind: str
    vendor: str
    model: str
    events: int
    cost_usd: Usd
    share_pct: float


class CostEventsOut(BaseModel):
    call_id: str
    live: bool
    events_total_usd: Usd = Field(description="Sum of the events (before the Stripe fee)")
    drivers: list[CostDriverOut] = Field(description="What the money went on, most expensive first")
    events: list[CostEventOut]


class PeriodOut(BaseModel):
    starts_at: dt.datetime
    spent_usd: Usd
    committed_usd: Usd = Field(description="Spent, with live calls counted at their reservation")
    limit_usd: Usd
    remaining_usd: Usd


class ServiceSpendOut(BaseModel):
    service: str
    cost_usd: Usd


class PersonaSpendOut(BaseModel):
    persona_id: str
    name: str
    calls: int
    spent_usd: Usd


class CostSummaryOut(BaseModel):
    time_zone: str
    today: PeriodOut
    this_month: PeriodOut
    per_call_limit_usd: Usd
    by_service: list[ServiceSpendOut] = Field(description="This month, by service (stripe_fee: closed calls' fees)")
    by_persona: list[PersonaSpendOut] = Field(description="This month, by persona")
    live_calls: int


# -- operators -------------------------------------------------------------

class LiveCallOut(BaseModel):
    call_id: str
    user_id: str
    persona_id: str
    direction: str
    started_at: dt.datetime | None
    running_total_usd: Usd
    limit_usd: Usd
    in_this_process: bool = Field(description="False: live in another worker (figures as of its last flush)")


class EndCallOut(BaseModel):
    call_id: str
    action: Literal["pipeline_stopped", "books_closed", "end_requested", "cancelled_before_start"]
    detail: str
