"""The dependencies every route declares: where the process's parts are, and who is asking.

Authorisation lives here and only here: a user route depends on `User`, an
operator route on `require_admin`, so a bad token never reaches the domain, and
a user's ids are resolved through `PersonaRow` and `OwnCall` (someone else's
call does not exist for them: 404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.accounts.auth import InvalidToken, admin_token_valid, verify_user_token
from agent.calls.lifecycle import CallLifecycle
from agent.calls.telephony import Twilio
from agent.errors import NotFound
from agent.runtime import Runtime
from api.schemas import CALL_ID_PATTERN, ID_PATTERN


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _lifecycle(request: Request) -> CallLifecycle:
    return request.app.state.lifecycle


def _twilio(request: Request) -> Twilio:
    return request.app.state.twilio


Rt = Annotated[Runtime, Depends(_runtime)]
Lifecycle = Annotated[CallLifecycle, Depends(_lifecycle)]
TwilioClient = Annotated[Twilio, Depends(_twilio)]

_user_bearer = HTTPBearer(auto_error=False, scheme_name="UserToken",
                          description="A JWT for one user (HS256, JWT_SECRET, sub = user id)")
admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="The ADMIN_TOKEN")
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def current_user(rt: Rt, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)]
                       ) -> dict[str, Any]:
    """The signed-in user; every user route depends on it, so a bad token never reaches the domain."""
    if creds is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    try:
        user_id = verify_user_token(creds.credentials, rt.settings.jwt_secret)
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from None
    user = await rt.users.get_user(user_id)
    if user is None:
        raise _unauthorized("the token's user does not exist")
    return user


async def require_admin(rt: Rt, creds: AdminCredentials) -> None:
    if creds is None:
        raise _unauthorized("missing operator token (Authorization: Bearer <ADMIN_TOKEN>)")
    if not admin_token_valid(creds.credentials, rt.settings.admin_token):
        raise HTTPException(403, "operator routes need the ADMIN_TOKEN")


User = Annotated[dict[str, Any], Depends(current_user)]
PersonaIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Persona id", examples=["brad"])]
CallIdPath = Annotated[str, Path(pattern=CALL_ID_PATTERN, description="Call id")]
UserIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="User id", examples=["demo"])]


async def persona_named(rt: Rt, persona_id: str) -> dict[str, Any]:
    """A persona by id, or NotFound (404)."""
    row = await rt.users.get_persona(persona_id)
    if row is None:
        raise NotFound(f"no persona {persona_id!r}")
    return row


async def _persona(rt: Rt, user: User, persona_id: PersonaIdPath) -> dict[str, Any]:
    """The persona named in the path (after the token is checked: 401 comes before 404)."""
    return await persona_named(rt, persona_id)


async def _own_call(rt: Rt, user: User, call_id: CallIdPath) -> dict[str, Any]:
    """The call named in the path, if it is this user's; someone else's call does not exist for them."""
    call = await rt.calls.get(call_id)
    if call is None or call["user_id"] != user["id"]:
        raise NotFound(f"no call {call_id!r}")
    return call


PersonaRow = Annotated[dict[str, Any], Depends(_persona)]
OwnCall = Annotated[dict[str, Any], Depends(_own_call)]
