"""The operator API under /api/admin (bearer ADMIN_TOKEN): users, cards, tokens, personas, live calls."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import CallIdPath, Lifecycle, PersonaIdPath, Rt, TwilioClient, UserIdPath, require_admin
from api.errors import errors
from api.schemas import (
    EndCallOut,
    LiveCallOut,
    PaymentMethodIn,
    PaymentMethodOut,
    PersonaCreate,
    PersonaOut,
    PersonaPatch,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from api.strict_json import StrictJSONRoute
from api.views import accounts
from api.views.live_calls import end_call, live_calls

router = APIRouter(route_class=StrictJSONRoute, prefix="/api/admin", tags=["operators"],
                   dependencies=[Depends(require_admin)],
                   responses=errors(401, 403))


@router.get("/users")
async def admin_list_users(rt: Rt) -> list[UserOut]:
    return await accounts.list_users(rt)


@router.post("/users", status_code=201, responses=errors(400, 409))
async def admin_create_user(rt: Rt, body: UserIn) -> UserOut:
    return await accounts.create_user(rt, body)


@router.get("/users/{user_id}", responses=errors(404))
async def admin_get_user(rt: Rt, user_id: UserIdPath) -> UserOut:
    return await accounts.get_user(rt, user_id)


@router.patch("/users/{user_id}", responses=errors(400, 404, 409),
                 summary="Change a user's phone number, display name or time zone")
async def admin_update_user(rt: Rt, user_id: UserIdPath, body: UserPatch) -> UserOut:
    return await accounts.update_user(rt, user_id, body)


@router.put("/users/{user_id}/payment-method", responses=errors(402, 404, 409),
               summary="Give a user a Stripe customer and a default card for calls")
async def admin_payment_method(rt: Rt, lifecycle: Lifecycle, user_id: UserIdPath, body: PaymentMethodIn
                               ) -> PaymentMethodOut:
    return await accounts.attach_payment_method(rt, lifecycle.billing, user_id, body)


@router.post("/users/{user_id}/token", responses=errors(404), summary="Mint a 30-day token for a user")
async def admin_user_token(rt: Rt, user_id: UserIdPath) -> TokenOut:
    return await accounts.user_token(rt, user_id)


@router.post("/personas", status_code=201, responses=errors(400, 409),
                summary="Create a persona (its LLM and voice models must have a price)")
async def admin_create_persona(rt: Rt, body: PersonaCreate) -> PersonaOut:
    return await accounts.create_persona(rt, body)


@router.patch("/personas/{persona_id}", responses=errors(400, 404, 409),
                 summary="Change a persona (fields left out keep their value)")
async def admin_update_persona(rt: Rt, persona_id: PersonaIdPath, body: PersonaPatch) -> PersonaOut:  # type: ignore[valid-type]
    return await accounts.update_persona(rt, persona_id, body)


@router.get("/calls/live", summary="Calls in progress, with their running cost")
async def admin_live_calls(lifecycle: Lifecycle) -> list[LiveCallOut]:
    return await live_calls(lifecycle)


@router.post("/calls/{call_id}/end", responses=errors(404, 409), summary="End a call in progress")
async def admin_end_call(lifecycle: Lifecycle, twilio: TwilioClient, call_id: CallIdPath) -> EndCallOut:
    return await end_call(lifecycle, twilio, call_id)
