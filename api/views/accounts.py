"""Operators' changes to users and personas, checked against what is stored.

Schemas check each field; this module checks what needs the database: ids
and phone numbers must be free (a number routes inbound calls, so it belongs
to one user or one persona, never two), and a persona's models must have a
price (prices fail closed: DESIGN.md section 10).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from agent.accounts.auth import mint_user_token, token_expiry
from agent.accounts.personas import Persona, PersonaIn
from agent.books.billing import Billing
from agent.books.pricing import PriceBook, UnknownPriceError
from agent.errors import Conflict, InvalidInput, NotFound
from agent.runtime import Runtime
from api.schemas import (
    PaymentMethodIn,
    PaymentMethodOut,
    PaymentsOut,
    PersonaCreate,
    PersonaOut,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)

TOKEN_TTL = dt.timedelta(days=30)


async def _phone_free(rt: Runtime, phone: str | None, *, user_id: str | None = None,
                      persona_id: str | None = None) -> None:
    if not phone:
        return
    user = await rt.users.user_by_phone(phone)
    persona = await rt.users.persona_by_phone(phone)
    if (user and user["id"] != user_id) or (persona and persona["id"] != persona_id):
        raise Conflict(f"phone number {phone} already belongs to another user or persona")


async def _user(rt: Runtime, user_id: str) -> dict[str, Any]:
    user = await rt.users.get_user(user_id)
    if user is None:
        raise NotFound(f"no user {user_id!r}")
    return user


async def list_users(rt: Runtime) -> list[UserOut]:
    return [UserOut.from_row(u) for u in await rt.users.list_users()]


async def get_user(rt: Runtime, user_id: str) -> UserOut:
    return UserOut.from_row(await _user(rt, user_id))


async def create_user(rt: Runtime, new: UserIn) -> UserOut:
    user_id = new.id or uuid.uuid4().hex
    if await rt.users.get_user(user_id) is not None:
        raise Conflict(f"user {user_id!r} already exists")
    await _phone_free(rt, new.phone_number, user_id=user_id)
    try:
        await rt.users.create_user(user_id, display_name=new.display_name.strip(), phone_number=new.phone_number,
                                   time_zone=new.time_zone)
    except IntegrityError:  # the same id or number, created a moment ago by someone else
        raise Conflict(f"user {user_id!r} or phone number {new.phone_number} was just taken") from None
    return await get_user(rt, user_id)


async def update_user(rt: Runtime, user_id: str, change: UserPatch) -> UserOut:
    await _user(rt, user_id)
    values = change.model_dump(exclude_unset=True)
    if "display_name" in values:
        values["display_name"] = values["display_name"].strip()
    await _phone_free(rt, values.get("phone_number"), user_id=user_id)
    try:
        return UserOut.from_row(await rt.users.update_user(user_id, **values))  # type: ignore[arg-type]
    except IntegrityError:
        raise Conflict(f"phone number {values.get('phone_number')} was just taken") from None


async def user_token(rt: Runtime, user_id: str) -> TokenOut:
    """A token for the user, for operators setting someone up (the CLI does the same locally)."""
    await _user(rt, user_id)
    token = mint_user_token(user_id, rt.settings.jwt_secret, ttl=TOKEN_TTL)
    return TokenOut(token=token, user_id=user_id, expires_at=token_expiry(token))


# What each persona model field is billed as: the pipeline prices a persona's LLM as Cerebras
# (with OpenAI as fallback at the server's own model) and its voice as ElevenLabs.
MODEL_RATES = {
    "llm_model": [("cerebras", "llm", "input_token"), ("cerebras", "llm", "output_token")],
    "tts_model": [("elevenlabs", "tts", "character")],
}


def priced_models(prices: PriceBook) -> dict[str, list[str]]:
    """For each persona model field, the models this price book can bill (the only ones allowed)."""
    return {field: sorted({r.model for r in prices.all_rates()
                           if all(prices.has(vendor, product, r.model, unit) for vendor, product, unit in rates)})
            for field, rates in MODEL_RATES.items()}


def _require_prices(rt: Runtime, persona: PersonaIn) -> None:
    """Each model the persona names must be priced, or the persona is refused (422), never billed at zero."""
    for field, rates in MODEL_RATES.items():
        model = getattr(persona, field)
        for vendor, product, unit in rates if model is not None else ():  # "" is no model: refused too
            try:
                rt.prices.rate(vendor, product, model, unit)
            except UnknownPriceError as exc:
                raise InvalidInput.at(("body", field), str(exc), "unknown_price") from None


async def _save_persona(rt: Runtime, persona: PersonaIn) -> PersonaOut:
    _require_prices(rt, persona)
    await _phone_free(rt, persona.phone_number, persona_id=persona.id)
    try:
        await rt.users.upsert_persona(persona.model_dump())
    except IntegrityError:
        raise Conflict(f"phone number {persona.phone_number} was just taken") from None
    return PersonaOut.from_row(await rt.users.get_persona(persona.id))  # type: ignore[arg-type]


async def create_persona(rt: Runtime, new: PersonaCreate) -> PersonaOut:
    if await rt.users.get_persona(new.id) is not None:
        raise Conflict(f"persona {new.id!r} already exists; change it with PATCH")
    return await _save_persona(rt, PersonaIn.model_validate(new.model_dump()))


async def update_persona(rt: Runtime, persona_id: str, change: Any) -> PersonaOut:
    """Merge the change onto the stored persona and validate the result as a whole."""
    row = await rt.users.get_persona(persona_id)
    if row is None:
        raise NotFound(f"no persona {persona_id!r}")
    current = {k: row[k] for k in Persona.__dataclass_fields__}
    try:
        persona = PersonaIn.model_validate({**current, **change.model_dump(exclude_unset=True)})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    return await _save_persona(rt, persona)


async def attach_payment_method(rt: Runtime, billing: Billing, user_id: str, body: PaymentMethodIn
                                ) -> PaymentMethodOut:
    """Give a user a Stripe customer (once) and make the card their default for calls."""
    if not billing.enabled:
        raise Conflict("payments are off on this server (no STRIPE_SECRET_KEY): nothing is charged")
    user = await _user(rt, user_id)
    customer = user["stripe_customer_id"] or await billing.create_customer(user_id, user["display_name"])
    await billing.attach(customer, body.payment_method_id)
    await rt.users.update_user(user_id, stripe_customer_id=customer, stripe_payment_method_id=body.payment_method_id)
    return PaymentMethodOut(user_id=user_id, stripe_customer_id=customer, payment_method_id=body.payment_method_id)


def payments(billing: Billing, user: dict[str, Any]) -> PaymentsOut:
    return PaymentsOut(payments_enabled=billing.enabled, card_on_file=bool(user.get("stripe_payment_method_id")))
