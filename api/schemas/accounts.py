"""Users, personas, tokens and payment settings as the API sends and receives them."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, Field, field_validator

from api.schemas.common import ANY_TEXT, E164, ID_PATTERN, REQUIRED_TEXT, CleanInput, Text, partial_model

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
    """A new persona (the same rules as `agent.accounts.personas.PersonaIn`); its models must have a price."""

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
