"""The HTTP API's data shapes: what clients send and what they get back.

Pydantic only (no FastAPI), so the contract can be read, tested and reused
without the web layer. Conventions, the same on every route:

- Money is an exact decimal-dollar *string* in fields ending `_usd`
  ("7.50", "0.00035"): two to six decimals, never a float. The domain's
  integer micro-dollars convert without rounding (`agent.money.usd`).
- Inputs refuse unknown fields, values of the wrong JSON type (no "5" for 5,
  no 0 for false) and text the database cannot store (NUL characters, broken
  Unicode), so bad input is a 422 and never a 500. Each rule is in the OpenAPI
  schema too (patterns, enums), so what the document calls valid is accepted.
- Ids in paths follow the same patterns as the ids we create.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    create_model,
    field_validator,
    model_validator,
)

from agent.memory import (
    CallSummary,
    FactCategory,
    MemoryPreferences,
    RelationshipType,
    StorylineStatus,
)
from agent.money import usd

USD_OUT = r"^-?\d+\.\d{2,6}$"
USD_IN = r"^\d{1,7}(\.\d{1,6})?$"
Usd = Annotated[str, Field(pattern=USD_OUT, examples=["7.50"], description="US dollars, exact decimal string")]
UsdIn = Annotated[str, Field(pattern=USD_IN, examples=["10.00"],
                             description="US dollars as a decimal string, at most six decimals (e.g. \"10\", \"7.50\")")]
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CALL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
E164 = r"^\+[1-9]\d{6,14}$"
# Text: no NUL (PostgreSQL cannot store it); required text also needs one visible character
# (the domain strips whitespace, so "   " would be empty). Blank = controls, space, Unicode spaces.
_BLANK = r"\x00-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ANY_TEXT = r"^[^\x00]*$"
REQUIRED_TEXT = rf"^[^\x00]*[^{_BLANK}][^\x00]*$"
FACT_KEY = rf"^[^/\\\x00]*[^/\\{_BLANK}][^/\\\x00]*$"
FACT_KEY_PATTERN = r"^[^/\\\x00]{1,200}$"  # in a path: any key that could exist
PersonaId = Annotated[str, Field(pattern=ID_PATTERN, examples=["brad"])]
Text = Annotated[str, Field(pattern=ANY_TEXT)]
def _check_text(value: Any, where: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where or 'text'} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where or 'text'} is not valid Unicode") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, str(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_text(item, where)


class CleanInput(BaseModel):
    """Base of every request body: strict fields and types, storable text.

    Whitespace is not stripped here (the domain models strip it): stripping
    before the length checks would accept what the schema's maxLength refuses.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="after")
    def _storable_text(self) -> "CleanInput":
        """The patterns refuse NUL field by field; this also catches what they cannot see (broken Unicode)."""
        _check_text(self.model_dump())
        return self


def partial_model(model: type[BaseModel], name: str, *, exclude: set[str] = frozenset()) -> type[BaseModel]:
    """`model` with every field optional (for PATCH), keeping each field's constraints in the OpenAPI document."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in exclude:
            continue
        copy = info._copy()  # noqa: SLF001 - pydantic's own way to derive a field
        copy.default, copy.default_factory = None, None  # left out = unchanged; null only where null is a value
        fields[field_name] = (info.annotation, copy)
    return create_model(name, __base__=CleanInput, __doc__="Fields left out keep their value.", **fields)  # type: ignore[call-overload]


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in words")


# -- users and personas ----------------------------------------------------

class UserOut(BaseModel):
    id: str
    display_name: str
    phone_number: str | None
    time_zone: str
    created_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "UserOut":
        return cls(**{k: row.get(k) for k in cls.model_fields})


@lru_cache(maxsize=1)
def time_zones() -> list[str]:
    return sorted(available_timezones())


def _time_zone(value: str | None) -> str | None:
    if value is not None and value not in set(time_zones()):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)")
    return value


_TZ_DOC = {"json_schema_extra": {"enum": time_zones()}, "description": "IANA time zone of the budget days"}


class UserIn(CleanInput):
    id: str | None = Field(None, pattern=ID_PATTERN, description="Chosen id; a random one when left out")
    display_name: str = Field("", max_length=200, pattern=ANY_TEXT)
    phone_number: str | None = Field(None, pattern=E164, description="E.164, e.g. +15555550100")
    time_zone: str = Field("UTC", **_TZ_DOC)  # type: ignore[arg-type]

    _tz = field_validator("time_zone")(_time_zone)


class UserPatch(CleanInput):
    """Fields left out keep their value; `phone_number: null` removes the number."""

    display_name: str = Field(None, max_length=200, pattern=ANY_TEXT)  # type: ignore[assignment]
    phone_number: str | None = Field(None, pattern=E164)
    time_zone: str = Field(None, **_TZ_DOC)  # type: ignore[arg-type]

    _tz = field_validator("time_zone")(_time_zone)


class PaymentMethodIn(CleanInput):
    payment_method_id: str = Field(pattern=r"^pm_[A-Za-z0-9_]{2,100}$", examples=["pm_card_visa"],
                                   description="A Stripe PaymentMethod, e.g. from a SetupIntent in your app")


class PaymentMethodOut(BaseModel):
    user_id: str
    stripe_customer_id: str
    payment_method_id: str


class PaymentsOut(BaseModel):
    payments_enabled: bool = Field(description="False: no STRIPE_SECRET_KEY; the ledger runs, nothing is charged")
    card_on_file: bool


class TokenOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    user_id: str
    expires_at: dt.datetime


class PersonaOut(BaseModel):
    id: str
    name: str
    core_prompt: str
    traits: list[str]
    greeting: str
    voice_id: str
    tts_model: str | None
    llm_model: str | None
    phone_number: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "PersonaOut":
        return cls(**{k: row[k] for k in cls.model_fields})


class PersonaCreate(CleanInput):
    """A new persona (the same rules as `agent.personas.PersonaIn`); its models must have a price."""

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    name: str = Field(min_length=1, max_length=200, pattern=REQUIRED_TEXT)
    core_prompt: str = Field(min_length=1, max_length=8000, pattern=REQUIRED_TEXT)
    traits: list[Text] = Field(default_factory=list, max_length=30)
    greeting: str = Field("", max_length=500, pattern=ANY_TEXT)
    voice_id: str = Field("21m00Tcm4TlvDq8ikWAM", min_length=1, max_length=100, pattern=REQUIRED_TEXT)
    tts_model: str | None = Field(None, max_length=100, description="An ElevenLabs model with a price")
    llm_model: str | None = Field(None, max_length=100, description="A Cerebras model with a price")
    phone_number: str | None = Field(None, pattern=E164)


PersonaPatch = partial_model(PersonaCreate, "PersonaPatch", exclude={"id"})


# -- relationship and memories ---------------------------------------------

class RelationshipOut(BaseModel):
    persona_id: str
    relationship_type: RelationshipType
    custom_system_prompt: str | None
    memory_config: MemoryPreferences
    total_calls: int
    total_seconds: int
    last_call_at: dt.datetime | None


class RelationshipIn(CleanInput):
    """Fields left out keep their value; `custom_system_prompt: null` removes it."""

    relationship_type: RelationshipType = None  # type: ignore[assignment]
    custom_system_prompt: str | None = Field(None, max_length=4000, pattern=ANY_TEXT)
    memory_config: MemoryPreferences | None = Field(None, description="null: back to the defaults")


class FactIn(CleanInput):
    """Adds the fact, or replaces the value of the fact with the same category and key."""

    category: FactCategory
    key: str = Field(min_length=1, max_length=200, pattern=FACT_KEY, examples=["dog_name"])
    value: str = Field(min_length=1, max_length=2000, pattern=REQUIRED_TEXT, examples=["Biscuit"])


class FactOut(BaseModel):
    category: FactCategory
    key: str
    value: str
    source: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


FactsByCategory = create_model(  # one list per category, all always present
    "FactsByCategory", **{c.value: (list[FactOut], Field(default_factory=list)) for c in FactCategory})


class CallSummaryOut(BaseModel):
    call_id: str | None
    summary: str
    key_topics: list[str]
    outcome: str
    created_at: dt.datetime | None

    @classmethod
    def from_summary(cls, s: CallSummary) -> "CallSummaryOut":
        return cls(call_id=s.call_id, summary=s.summary, key_topics=s.key_topics, outcome=s.outcome,
                   created_at=s.created_at)


class StorylineOut(BaseModel):
    topic: str
    status: StorylineStatus
    details: str
    updated_at: dt.datetime | None


class MemoriesOut(BaseModel):
    persona_id: str
    relationship: RelationshipOut
    facts: FactsByCategory  # type: ignore[valid-type]
    fact_count: int
    recent_calls: list[CallSummaryOut] = Field(description="The last call summaries, newest first")
    storylines: list[StorylineOut]


class PromptPreviewOut(BaseModel):
    persona_id: str
    prompt: str = Field(description="The system prompt the next call would start with")
    token_count: int
    token_budget: int
    sections: dict[str, str] = Field(description="The prompt's sections by tier, in prompt order")
    trimmed: dict[str, int] = Field(description="Lines left out to fit the budget, by tier")


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
    action: Literal["pipeline_stopped", "books_closed", "carrier_hang_up", "cancelled_before_start"]
    detail: str
