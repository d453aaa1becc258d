"""The browser test room: its pages, a user token for this machine, and the WebRTC signalling.

`/start` and `/sessions/{id}/api/offer` follow the Pipecat client's convention.
Open to this machine while the server is not public; behind the operator's
token once PUBLIC_BASE_URL is set.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from loguru import logger
from pipecat.transports.smallwebrtc.request_handler import IceCandidate, SmallWebRTCPatchRequest, SmallWebRTCRequest
from pydantic import BaseModel, Field

from agent.accounts.auth import mint_user_token
from agent.engines import engines
from api.deps import AdminCredentials, CallIdPath, Lifecycle, Rt, User, require_admin
from api.errors import errors
from api.schemas import ID_PATTERN
from api.strict_json import StrictJSONRoute
from pipeline.webrtc import MAX_SDP_BYTES, InvalidOffer, WebRTCRoom, check_offer_sdp

WEB_DIR = FilePath(__file__).parent.parent / "web" / "static"
router = APIRouter(route_class=StrictJSONRoute, tags=["room"], responses=errors(400, 401, 403, 404))
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


async def room_access(request: Request, rt: Rt,
                      creds: AdminCredentials) -> None:
    """Open to this machine on a server that is not public; the operator's token otherwise."""
    if not rt.settings.public_base_url and request.client and request.client.host in _LOOPBACK:
        return
    await require_admin(rt, creds)


class RoomTokenIn(BaseModel):
    user_id: str = Field(pattern=ID_PATTERN, examples=["demo"])


class RoomStartIn(BaseModel):
    """What the Pipecat client posts to /start; our fields ride in `body`."""

    body: dict[str, Any] = Field(default_factory=dict, examples=[{"persona_id": "brad"}])


class OfferIn(BaseModel):
    sdp: str = Field(min_length=1, max_length=MAX_SDP_BYTES)
    type: str = Field(pattern="^(offer|answer)$")
    pc_id: str | None = None
    restart_pc: bool | None = None
    requestData: dict[str, Any] | None = None


class IceCandidateIn(BaseModel):
    candidate: str
    sdp_mid: str
    sdp_mline_index: int


class PatchIn(BaseModel):
    pc_id: str
    candidates: list[IceCandidateIn]


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/room/")


@router.get("/room/", include_in_schema=False)
async def room_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html")


@router.get("/room/{page}.html", include_in_schema=False)
async def room_pages(page: Annotated[str, Path(pattern="^(budget|costs)$")]) -> FileResponse:
    return FileResponse(WEB_DIR / f"{page}.html")


@router.get("/room/config", dependencies=[Depends(room_access)], summary="Users, personas and engines for the room")
async def room_config(rt: Rt) -> dict[str, Any]:
    users = [{"id": u["id"], "display_name": u["display_name"]} for u in await rt.users.list_users()]
    personas = [{"id": p["id"], "name": p["name"]} for p in await rt.users.list_personas()]
    return {"public": bool(rt.settings.public_base_url), "users": users, "personas": personas,
            "engines": engines(rt.settings)}


@router.post("/room/token", dependencies=[Depends(room_access)], responses=errors(404),
               summary="A user token for the room (this machine, or the operator)")
async def room_token(rt: Rt, body: RoomTokenIn) -> dict[str, str]:
    if await rt.users.get_user(body.user_id) is None:
        raise HTTPException(404, f"no user {body.user_id!r}")
    return {"token": mint_user_token(body.user_id, rt.settings.jwt_secret), "user_id": body.user_id}


@router.post("/start", responses=errors(402, 404), summary="Start a room call (Pipecat client convention)")
async def room_start(rt: Rt, lifecycle: Lifecycle, user: User, body: RoomStartIn) -> dict[str, Any]:
    persona_id = str(body.body.get("persona_id") or "")
    if await rt.users.get_persona(persona_id) is None:
        raise HTTPException(404, f"no persona {persona_id!r}")
    allowance = await lifecycle.open(user["id"], persona_id, "webrtc")
    return {"sessionId": allowance.call_id, "iceConfig": {"iceServers": []}}


async def _own_room_call(rt: Rt, user: User, call_id: str) -> dict[str, Any]:
    """The signed-in user's own room call; someone else's does not exist for them."""
    call = await rt.calls.get(call_id)
    if call is None or call["user_id"] != user["id"] or call["direction"] != "webrtc":
        raise HTTPException(404, "no room call of yours for this session")
    return call


@router.post("/sessions/{session_id}/api/offer", responses=errors(409),
             summary="WebRTC offer for a room call (the first one starts it; only one can)")
async def room_offer(request: Request, rt: Rt, lifecycle: Lifecycle, user: User, session_id: CallIdPath,
                     body: OfferIn) -> dict[str, Any]:
    room: WebRTCRoom = request.app.state.room
    call = await _own_room_call(rt, user, session_id)
    try:
        check_offer_sdp(body.sdp)
    except InvalidOffer as exc:
        raise HTTPException(400, f"the WebRTC offer could not be used: {exc}") from None
    offer = SmallWebRTCRequest(sdp=body.sdp, type=body.type, pc_id=body.pc_id, restart_pc=body.restart_pc,
                               request_data=body.requestData)
    if body.pc_id is not None:  # renegotiating: only the connection this call made, in the worker running it
        try:
            return await room.renegotiate(session_id, offer)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
    if call["status"] != "created":
        raise HTTPException(409, f"call {session_id} has already started or ended; start a new one")
    session = await lifecycle.begin(session_id)  # exactly one offer wins; the others get 409
    try:
        return await room.offer(session, offer)
    except Exception as exc:  # aiortc refuses what it cannot parse: the caller's error, not ours
        logger.warning(f"room offer for {session_id} refused: {exc!r}")
        await lifecycle.end(session, reason="failed_to_start")
        raise HTTPException(400, f"the WebRTC offer could not be used: {exc}") from None


@router.patch("/sessions/{session_id}/api/offer", status_code=204, response_class=Response,
              summary="Trickle ICE candidates for a room call")
async def room_ice(request: Request, rt: Rt, user: User, session_id: CallIdPath, body: PatchIn) -> Response:
    await _own_room_call(rt, user, session_id)
    room: WebRTCRoom = request.app.state.room
    try:
        await room.patch(session_id, SmallWebRTCPatchRequest(pc_id=body.pc_id, candidates=[
            IceCandidate(candidate=c.candidate, sdp_mid=c.sdp_mid, sdp_mline_index=c.sdp_mline_index)
            for c in body.candidates]))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(status_code=204)
