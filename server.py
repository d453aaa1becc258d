"""HTTP and WebSocket entry: Twilio webhooks and media streams, the user and operator API, health, metrics.

Thin on purpose: parse, authorise, delegate to `agent/` and `pipeline/`.
Every route validates its input with the pydantic models of `agent.api_models`,
authorises through one of two dependencies (`current_user`, `require_admin`)
and maps the domain's refusals to HTTP statuses in one place (`_error_handlers`).
Run it with `make run` (or `python server.py`); docs/api.md describes the API.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, AsyncIterator

from pathlib import Path as Path_

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, WebSocket
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from loguru import logger
from pipecat.pipeline.worker import PipelineWorker
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.smallwebrtc.request_handler import IceCandidate, SmallWebRTCPatchRequest, SmallWebRTCRequest
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from twilio.twiml.voice_response import Connect, VoiceResponse

from agent import accounts
from agent.api_models import (
    PaymentMethodIn,
    PaymentMethodOut,
    PaymentsOut,
    CALL_ID_PATTERN,
    FACT_KEY_PATTERN,
    ID_PATTERN,
    BudgetIn,
    BudgetOut,
    CallCostOut,
    CallOut,
    CallPage,
    CallRequest,
    CostEventsOut,
    CostSummaryOut,
    EndCallOut,
    ErrorOut,
    EstimateIn,
    EstimateOut,
    FactIn,
    LiveCallOut,
    MemoriesOut,
    PersonaCreate,
    PersonaOut,
    PersonaPatch,
    PromptPreviewOut,
    RelationshipIn,
    RelationshipOut,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from agent.auth import InvalidToken, admin_token_valid, mint_user_token, verify_user_token
from agent.budget_view import change_budget, read_budget
from agent.billing import PaymentError
from agent.budgets import BudgetRefused
from agent.call_costs import call_cost, call_cost_events, cost_updates
from agent.cost_summary import cost_summary
from agent.engines import engines
from agent.errors import Conflict, InvalidInput, NotFound
from agent.lifecycle import CallLifecycle, DialError, MissingPhoneNumber, TelephonyNotConfigured, place_outbound_call
from agent.live_calls import end_call, live_calls
from agent.memory import Fact, FactCategory
from agent.memory_view import forget_fact, memory_view, relationship_out, update_relationship
from agent.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agent.metrics import render_metrics
from agent.money import usd
from agent.precall import estimate_next_call, prompt_preview
from agent.runtime import Runtime
from agent.settings import Settings, load_settings
from agent.telephony import Twilio
from pipeline.call import run_call
from pipeline.twilio import CallMeBackTwilioSerializer
from pipeline.local_engines import prepare_local_engines
from pipeline.webrtc import WebRTCRoom

TWILIO_RATE = 8000


class TwilioVoiceForm(BaseModel):
    CallSid: str = Field(pattern=r"^CA[0-9a-zA-Z]{8,64}$")
    From: str = Field(min_length=1, max_length=32)
    To: str = Field(min_length=1, max_length=32)


class TwilioStatusForm(BaseModel):
    CallSid: str = Field(pattern=r"^CA[0-9a-zA-Z]{8,64}$")
    CallStatus: str
    CallDuration: Annotated[int, Field(ge=0)] | None = None


class HealthOut(BaseModel):
    status: str


def _webhook_doc(form: type[BaseModel] | None, ok: int = 200) -> dict[str, Any]:
    """OpenAPI for a Twilio webhook: a signed form in, TwiML (or nothing) out."""
    body = {"application/x-www-form-urlencoded": {"schema": form.model_json_schema() if form else {"type": "object"}}}
    success = {"description": "TwiML for Twilio", "content": {"application/xml": {"schema": {"type": "string"}}}} \
        if ok == 200 else {"description": "Recorded"}
    return {"response_class": Response, "openapi_extra": {"requestBody": {"required": True, "content": body}},
            "responses": {ok: success, 403: {"model": ErrorOut, "description": "Missing or forged Twilio signature"},
                          422: {"description": "The signed form is not what Twilio sends"},
                          503: {"model": ErrorOut, "description": "Twilio is not configured on this server"}}}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        app.state.lifecycle = CallLifecycle(runtime)
        app.state.twilio = Twilio(settings)
        app.state.room = WebRTCRoom(app.state.lifecycle, settings)
        reconciler = asyncio.create_task(_reconcile_forever(app.state.lifecycle, settings.reconcile_interval_secs))
        try:
            yield
        finally:
            reconciler.cancel()
            with suppress(asyncio.CancelledError):
                await reconciler
            await app.state.room.close()
            await app.state.lifecycle.end_all("server_shutdown")
            await runtime.close()

    app = FastAPI(title="Call Me Back", version="0.1.0", lifespan=lifespan,
                  description=API_DESCRIPTION)
    _error_handlers(app)
    app.openapi = _refined_openapi(app, settings)  # type: ignore[method-assign]
    app.include_router(user_api)
    app.include_router(admin_api)
    app.include_router(ops_api)
    app.include_router(room_api)
    app.mount("/room/static", StaticFiles(directory=WEB_DIR), name="room-static")

    @app.get("/healthz", tags=["ops"], response_model=HealthOut,
             responses={503: {"model": HealthOut, "description": "The database is unreachable"}})
    async def healthz(request: Request) -> JSONResponse:
        ok = await request.app.state.runtime.db.ping()
        return JSONResponse({"status": "ok" if ok else "database unreachable"}, status_code=200 if ok else 503)

    async def signed_form(request: Request, model: type[BaseModel] | None = None) -> Any:
        """The posted form (validated by `model`, if given), if Twilio signed it for our public URL.

        Otherwise the response to send: 503 without Twilio, 403 for a bad signature, 422 for a bad form.
        """
        twilio: Twilio = request.app.state.twilio
        if not settings.twilio_enabled:
            return JSONResponse({"detail": "Twilio is not configured on this server"}, status_code=503)
        form = {k: str(v) for k, v in (await request.form()).items()}
        url = settings.public_base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not twilio.signature_valid(url, form, request.headers.get("X-Twilio-Signature", "")):
            logger.warning(f"rejected unsigned or forged Twilio request to {request.url.path}")
            return JSONResponse({"detail": "invalid Twilio signature"}, status_code=403)
        if model is None:
            return form
        try:
            return model.model_validate(form)
        except ValidationError as exc:
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)}, status_code=422)

    def connect_twiml(request: Request, call_id: str) -> Response:
        twilio: Twilio = request.app.state.twilio
        ws_base = settings.public_base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        connect = Connect()
        stream = connect.stream(url=f"{ws_base}/twilio/media/{call_id}?token={twilio.media_token(call_id)}")
        stream.parameter(name="call_id", value=call_id)
        response = VoiceResponse()
        response.append(connect)
        return Response(str(response), media_type="application/xml")

    def say_and_hang_up(message: str) -> Response:
        response = VoiceResponse()
        response.say(message)
        response.hangup()
        return Response(str(response), media_type="application/xml")

    @app.post("/twilio/voice", tags=["twilio"], summary="Inbound call webhook (signed by Twilio)",
              **_webhook_doc(TwilioVoiceForm))
    async def twilio_voice(request: Request) -> Response:
        call = await signed_form(request, TwilioVoiceForm)
        if isinstance(call, Response):
            return call
        rt: Runtime = request.app.state.runtime
        user = await rt.users.user_by_phone(call.From)
        persona = await rt.users.persona_by_phone(call.To)
        if user is None or persona is None:
            return say_and_hang_up("Sorry, this number is not set up for calls yet. Goodbye.")
        try:
            allowance = await request.app.state.lifecycle.open(user["id"], persona["id"], "inbound",
                                                               twilio_call_sid=call.CallSid)
        except (BudgetRefused, PaymentError) as refused:
            return say_and_hang_up(refused.message)
        except Exception as exc:  # the database or another dependency is down: no call, and say so
            logger.error(f"inbound call {call.CallSid} could not start: {exc!r}")
            return say_and_hang_up("Sorry, we can't take your call right now. Please try again in a few minutes.")
        return connect_twiml(request, allowance.call_id)

    @app.post("/twilio/outbound/{call_id}", tags=["twilio"], summary="TwiML for a call we placed (signed)",
              **_webhook_doc(None))
    async def twilio_outbound(call_id: str, request: Request) -> Response:
        form = await signed_form(request)
        if isinstance(form, Response):
            return form
        call = await request.app.state.runtime.calls.get(call_id)
        if call is None or call["status"] != "created" or call["direction"] != "outbound":
            return say_and_hang_up("Sorry, this call has expired. Goodbye.")
        return connect_twiml(request, call_id)

    @app.post("/twilio/status", tags=["twilio"], summary="Call status callback (signed): final duration",
              **_webhook_doc(TwilioStatusForm, ok=204))
    async def twilio_status(request: Request) -> Response:
        status = await signed_form(request, TwilioStatusForm)
        if isinstance(status, Response):
            return status
        if status.CallStatus == "completed" and status.CallDuration is not None:
            await request.app.state.lifecycle.record_carrier_duration(status.CallSid, status.CallDuration)
        return Response(status_code=204)

    @app.websocket("/twilio/media/{call_id}")
    async def twilio_media(websocket: WebSocket, call_id: str) -> None:
        twilio: Twilio = websocket.app.state.twilio
        if not twilio.media_token_valid(call_id, websocket.query_params.get("token", "")):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        _kind, call_data = await parse_telephony_websocket(websocket)
        if call_data.get("body", {}).get("call_id") != call_id:
            logger.warning(f"media stream for {call_id} carried another call id; closing")
            await websocket.close(code=1008)
            return
        lifecycle: CallLifecycle = websocket.app.state.lifecycle
        session = await lifecycle.begin(call_id)
        reason, outcome = "error", None
        running: dict[str, PipelineWorker] = {}

        async def hang_up() -> None:
            """Someone ended the call from outside (an operator): stop the pipeline, then the line."""
            if "worker" in running:
                await running["worker"].cancel(reason=session.end_requested or "ended")
            await twilio.hang_up(call_data["call_id"])

        session.hang_up = hang_up
        try:
            serializer = CallMeBackTwilioSerializer(
                stream_sid=call_data["stream_id"], call_sid=call_data["call_id"],
                account_sid=settings.twilio_account_sid, auth_token=settings.twilio_auth_token,
                base_url=settings.twilio_api_base_url,
                params=TwilioFrameSerializer.InputParams(twilio_sample_rate=TWILIO_RATE, sample_rate=TWILIO_RATE))
            transport = FastAPIWebsocketTransport(websocket, FastAPIWebsocketParams(
                audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer,
                audio_in_sample_rate=TWILIO_RATE, audio_out_sample_rate=TWILIO_RATE, audio_out_end_silence_secs=1))
            outcome = await run_call(transport, session, settings, sample_rate=TWILIO_RATE,
                                     mark_frame=serializer.mark_frame,
                                     hang_up=lambda: twilio.hang_up(call_data["call_id"]),
                                     on_worker=lambda worker: running.update(worker=worker))
            reason = session.end_requested or outcome.reason
        except asyncio.CancelledError:
            reason = "server_shutdown"
            raise
        finally:
            await lifecycle.end(session, reason=reason)

    return app


# ---------------------------------------------------------------------------
# The API: users (bearer JWT) and operators (bearer ADMIN_TOKEN)
# ---------------------------------------------------------------------------

API_DESCRIPTION = """AI voice personas you talk to on the phone, with metered costs, budgets and memory.

**Auth.** User routes take `Authorization: Bearer <JWT>` (HS256, signed with JWT_SECRET, `sub` = user id;
mint one locally with `python -m agent.tokens demo`). Operator routes (`/api/admin/...`) take
`Authorization: Bearer <ADMIN_TOKEN>`. A user reaches only their own data: anything else is a 404.

**Money** is an exact decimal-dollar string in fields ending `_usd` (e.g. `"7.50"`, `"0.00035"`), never a float.

**Errors** are JSON: `{"detail": "what is wrong"}`, or for invalid input (422) a list of
`{"loc", "msg", "type"}` entries that name the field.
"""

_ERRORS = {
    400: "The body could not be parsed (not JSON, or not UTF-8)",
    401: "Missing, malformed or expired bearer token",
    402: "The budget (or the card on file) cannot cover a minimum call",
    403: "Not the operator token",
    404: "No such thing for this caller",
    409: "Conflicts with what is stored",
    502: "The carrier refused to place the call",
    503: "Not available on this server (not configured, or the database is unreachable)",
}


def _errors(*codes: int, model: type[BaseModel] = ErrorOut) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {code: {"model": model, "description": _ERRORS[code]} for code in codes}


class PaymentRequiredOut(ErrorOut):
    """A call the budget or the card cannot cover."""

    limit_kind: str | None = Field(None, description="The budget limit that ran out: per_call, daily or monthly")
    remaining_usd: str | None = Field(None, description="What is left of that limit")


def _error_handlers(app: FastAPI) -> None:
    """The domain's refusals, each to one status (subclasses first: Starlette looks handlers up by MRO)."""

    def plain(status: int):  # type: ignore[no-untyped-def]
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return handler

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidInput)
        return JSONResponse({"detail": exc.errors}, status_code=422)

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BudgetRefused)
        return JSONResponse({"detail": exc.message, "limit_kind": exc.limit_kind.value,
                             "remaining_usd": usd(exc.remaining_micros)}, status_code=402)

    async def payment(_request: Request, exc: Exception) -> JSONResponse:
        """A declined card is the caller's to fix (402); Stripe out of reach is ours, for a while (503)."""
        assert isinstance(exc, PaymentError)
        return JSONResponse({"detail": exc.message}, status_code=503 if exc.retryable else 402)

    app.add_exception_handler(NotFound, plain(404))
    app.add_exception_handler(Conflict, plain(409))
    app.add_exception_handler(InvalidInput, invalid)
    app.add_exception_handler(BudgetRefused, refused)
    app.add_exception_handler(PaymentError, payment)
    app.add_exception_handler(MissingPhoneNumber, plain(409))
    app.add_exception_handler(TelephonyNotConfigured, plain(503))
    app.add_exception_handler(DialError, plain(502))
    app.add_exception_handler(StarletteHTTPException, _http_error)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, except that a 405 lists every method of the path in `Allow`.

    Starlette names only the methods of the first route whose path matched, and
    FastAPI makes one route per method (GET and PUT of the same path are two).
    """
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    allowed = {method for route in request.app.router.routes
               if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
               for method in (route.methods or ())}
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405,
                        headers={"Allow": ", ".join(sorted(allowed))})


def _refined_openapi(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, made exact where only this server knows the answer.

    - A persona's models must have a price in *this* server's price book: the
      schema lists them as enums, so what the document calls valid is accepted.
    - Errors of the event-stream route are JSON, not events.
    - Every route with a JSON body can answer 400 (a body that is not JSON).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()
            priced = accounts.priced_models(settings.price_book)
            for name in ("PersonaCreate", "PersonaPatch"):
                properties = doc["components"]["schemas"][name]["properties"]
                for field, models in priced.items():
                    properties[field]["anyOf"] = [{"type": "string", "enum": models}, {"type": "null"}]
            for operations in doc["paths"].values():
                for operation in operations.values():
                    json_body = "application/json" in operation.get("requestBody", {}).get("content", {})
                    if json_body and "400" not in operation["responses"]:  # any JSON body can fail to parse
                        operation["responses"]["400"] = {"description": _ERRORS[400], "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if not status.startswith("2") and "text/event-stream" in content:
                            content["application/json"] = content.pop("text/event-stream")
        return app.openapi_schema  # type: ignore[return-value]

    return openapi


# -- dependencies: where things are, who is asking --------------------------

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
_admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="The ADMIN_TOKEN")


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


async def require_admin(rt: Rt, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]
                        ) -> None:
    if creds is None:
        raise _unauthorized("missing operator token (Authorization: Bearer <ADMIN_TOKEN>)")
    if not admin_token_valid(creds.credentials, rt.settings.admin_token):
        raise HTTPException(403, "operator routes need the ADMIN_TOKEN")


User = Annotated[dict[str, Any], Depends(current_user)]
PersonaIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Persona id", examples=["brad"])]
CallIdPath = Annotated[str, Path(pattern=CALL_ID_PATTERN, description="Call id")]
UserIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="User id", examples=["demo"])]


async def _persona(rt: Rt, user: User, persona_id: PersonaIdPath) -> dict[str, Any]:
    """The persona named in the path (after the token is checked: 401 comes before 404)."""
    row = await rt.users.get_persona(persona_id)
    if row is None:
        raise NotFound(f"no persona {persona_id!r}")
    return row


async def _own_call(rt: Rt, user: User, call_id: CallIdPath) -> dict[str, Any]:
    """The call named in the path, if it is this user's; someone else's call does not exist for them."""
    call = await rt.calls.get(call_id)
    if call is None or call["user_id"] != user["id"]:
        raise NotFound(f"no call {call_id!r}")
    return call


PersonaRow = Annotated[dict[str, Any], Depends(_persona)]
OwnCall = Annotated[dict[str, Any], Depends(_own_call)]


# -- user routes --------------------------------------------------------------

user_api = APIRouter(prefix="/api", responses=_errors(401))


@user_api.get("/user", tags=["user"], summary="Who the token belongs to")
async def get_me(user: User) -> UserOut:
    return UserOut.from_row(user)


@user_api.get("/personas", tags=["personas"], summary="Every persona you can talk to")
async def list_personas(rt: Rt, user: User) -> list[PersonaOut]:
    return [PersonaOut.from_row(p) for p in await rt.users.list_personas()]


@user_api.get("/personas/{persona_id}", tags=["personas"], responses=_errors(404))
async def get_persona(persona: PersonaRow) -> PersonaOut:
    return PersonaOut.from_row(persona)


@user_api.get("/personas/{persona_id}/relationship", tags=["memory"], responses=_errors(404),
              summary="Your relationship with the persona (a friend until you say otherwise)")
async def get_relationship(rt: Rt, user: User, persona: PersonaRow) -> RelationshipOut:
    return relationship_out(await rt.memory.get_relationship(user["id"], persona["id"]))


@user_api.put("/personas/{persona_id}/relationship", tags=["memory"], responses=_errors(400, 404),
              summary="Change the relationship type, your custom prompt or memory preferences")
async def put_relationship(rt: Rt, user: User, persona: PersonaRow, body: RelationshipIn) -> RelationshipOut:
    return await update_relationship(rt.memory, user["id"], persona["id"], body)


@user_api.get("/personas/{persona_id}/memories", tags=["memory"], responses=_errors(404),
              summary="Everything the persona remembers about you: facts, recent calls, storylines")
async def get_memories(rt: Rt, user: User, persona: PersonaRow) -> MemoriesOut:
    return await memory_view(rt.memory, user["id"], persona["id"])


@user_api.post("/personas/{persona_id}/memories", tags=["memory"], status_code=201, responses=_errors(400, 404),
               summary="Tell the persona a fact (replaces the fact with the same category and key)")
async def add_memory(rt: Rt, user: User, persona: PersonaRow, body: FactIn) -> Fact:
    return await rt.memory.set_fact(user["id"], persona["id"], Fact.model_validate(body.model_dump()))


@user_api.delete("/personas/{persona_id}/memories/{key}", tags=["memory"], status_code=204,
                 response_class=Response, responses=_errors(404),
                 summary="Forget a fact (in every category, or only in ?category=)")
async def delete_memory(rt: Rt, user: User, persona: PersonaRow,
                        key: Annotated[str, Path(pattern=FACT_KEY_PATTERN, examples=["dog_name"])],
                        category: Annotated[FactCategory | None, Query()] = None) -> Response:
    await forget_fact(rt.memory, user["id"], persona["id"], key, category)
    return Response(status_code=204)


@user_api.delete("/personas/{persona_id}/memories", tags=["memory"], status_code=204, response_class=Response,
                 responses=_errors(404), summary="Wipe everything the persona knows about you")
async def wipe_memories(rt: Rt, user: User, persona: PersonaRow) -> Response:
    await rt.memory.forget_everything(user["id"], persona["id"])
    return Response(status_code=204)


@user_api.get("/personas/{persona_id}/prompt-preview", tags=["memory"], responses=_errors(404),
              summary="The system prompt your next call with this persona would start with")
async def get_prompt_preview(rt: Rt, user: User, persona: PersonaRow) -> PromptPreviewOut:
    return await prompt_preview(rt, user, persona)


@user_api.post("/estimate", tags=["costs"], responses=_errors(400, 404),
               summary="What a call of N minutes will probably cost, with warnings")
async def estimate(rt: Rt, user: User, body: EstimateIn) -> EstimateOut:
    persona = await _persona(rt, user, body.persona_id)
    return await estimate_next_call(rt, user, persona, body.minutes, body.direction)


@user_api.get("/user/budget", tags=["budget"])
async def get_budget(rt: Rt, user: User) -> BudgetOut:
    return await read_budget(rt.budgets, user["id"])


@user_api.put("/user/budget", tags=["budget"], responses=_errors(400), summary="Change your limits (fields left out keep their value)")
async def put_budget(rt: Rt, user: User, body: BudgetIn) -> BudgetOut:
    return await change_budget(rt.budgets, user["id"], body)


@user_api.get("/user/costs/summary", tags=["costs"],
              summary="Spending today and this month, by service and by persona, beside your limits")
async def get_cost_summary(rt: Rt, user: User) -> CostSummaryOut:
    return await cost_summary(rt, user)


@user_api.post("/calls", tags=["calls"], status_code=201,
               responses={**_errors(402, model=PaymentRequiredOut), **_errors(400, 404, 409, 502, 503)},
               summary="Call me back: the persona rings your phone")
async def place_call(rt: Rt, lifecycle: Lifecycle, twilio: TwilioClient, user: User, body: CallRequest) -> CallOut:
    persona = await _persona(rt, user, body.persona_id)
    allowance, _sid = await place_outbound_call(lifecycle, twilio, user["id"], persona["id"])
    return CallOut.from_row(await rt.calls.get(allowance.call_id))  # type: ignore[arg-type]


@user_api.get("/calls", tags=["calls"], summary="Your calls, newest first")
async def list_calls(rt: Rt, user: User, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> CallPage:
    rows, total = await rt.calls.list_for_user(user["id"], limit=limit, offset=offset)
    return CallPage(items=[CallOut.from_row(r) for r in rows], total=total, limit=limit, offset=offset)


@user_api.get("/calls/{call_id}", tags=["calls"], responses=_errors(404))
async def get_call(call: OwnCall) -> CallOut:
    return CallOut.from_row(call)


@user_api.get("/calls/{call_id}/cost", tags=["calls"], responses=_errors(404),
              summary="The call's cost now: live while it runs, final once it has ended")
async def get_call_cost(lifecycle: Lifecycle, call: OwnCall) -> CallCostOut:
    return await call_cost(lifecycle, call)


@user_api.get("/calls/{call_id}/cost/events", tags=["calls"], responses=_errors(404),
              summary="Every cost event of the call, and what the money went on")
async def get_call_cost_events(lifecycle: Lifecycle, call: OwnCall) -> CostEventsOut:
    return await call_cost_events(lifecycle, call)


@user_api.get("/calls/{call_id}/cost/stream", tags=["calls"], response_class=EventSourceResponse,
              responses=_errors(404),
              summary="Server-sent events: `cost` every interval while the call runs, then `end` with the final cost")
async def stream_call_cost(lifecycle: Lifecycle, call: OwnCall,
                           interval: Annotated[float, Query(ge=0.1, le=10.0)] = 1.0
                           ) -> AsyncIterable[CallCostOut]:
    async for view in cost_updates(lifecycle, call["id"], interval=interval):
        yield ServerSentEvent(data=view, event="cost" if view.live else "end")  # type: ignore[misc]


# -- operator routes ------------------------------------------------------------

admin_api = APIRouter(prefix="/api/admin", tags=["operators"], dependencies=[Depends(require_admin)],
                      responses=_errors(401, 403))


@admin_api.get("/users")
async def admin_list_users(rt: Rt) -> list[UserOut]:
    return await accounts.list_users(rt)


@admin_api.post("/users", status_code=201, responses=_errors(400, 409))
async def admin_create_user(rt: Rt, body: UserIn) -> UserOut:
    return await accounts.create_user(rt, body)


@admin_api.get("/users/{user_id}", responses=_errors(404))
async def admin_get_user(rt: Rt, user_id: UserIdPath) -> UserOut:
    return await accounts.get_user(rt, user_id)


@admin_api.patch("/users/{user_id}", responses=_errors(400, 404, 409),
                 summary="Change a user's phone number, display name or time zone")
async def admin_update_user(rt: Rt, user_id: UserIdPath, body: UserPatch) -> UserOut:
    return await accounts.update_user(rt, user_id, body)


@admin_api.put("/users/{user_id}/payment-method", responses=_errors(402, 404, 409),
               summary="Give a user a Stripe customer and a default card for calls")
async def admin_payment_method(rt: Rt, lifecycle: Lifecycle, user_id: UserIdPath, body: PaymentMethodIn
                               ) -> PaymentMethodOut:
    return await accounts.attach_payment_method(rt, lifecycle.billing, user_id, body)


@user_api.get("/user/payments", tags=["user"], summary="Whether calls are charged, and whether a card is on file")
async def get_payments(lifecycle: Lifecycle, user: User) -> PaymentsOut:
    return accounts.payments(lifecycle.billing, user)


@admin_api.post("/users/{user_id}/token", responses=_errors(404), summary="Mint a 30-day token for a user")
async def admin_user_token(rt: Rt, user_id: UserIdPath) -> TokenOut:
    return await accounts.user_token(rt, user_id)


@admin_api.post("/personas", status_code=201, responses=_errors(400, 409),
                summary="Create a persona (its LLM and voice models must have a price)")
async def admin_create_persona(rt: Rt, body: PersonaCreate) -> PersonaOut:
    return await accounts.create_persona(rt, body)


@admin_api.patch("/personas/{persona_id}", responses=_errors(400, 404, 409),
                 summary="Change a persona (fields left out keep their value)")
async def admin_update_persona(rt: Rt, persona_id: PersonaIdPath, body: PersonaPatch) -> PersonaOut:  # type: ignore[valid-type]
    return await accounts.update_persona(rt, persona_id, body)


@admin_api.get("/calls/live", summary="Calls in progress, with their running cost")
async def admin_live_calls(lifecycle: Lifecycle) -> list[LiveCallOut]:
    return await live_calls(lifecycle)


@admin_api.post("/calls/{call_id}/end", responses=_errors(404, 409), summary="End a call in progress")
async def admin_end_call(lifecycle: Lifecycle, twilio: TwilioClient, call_id: CallIdPath) -> EndCallOut:
    return await end_call(lifecycle, twilio, call_id)


# -- operations -------------------------------------------------------------------

ops_api = APIRouter(tags=["ops"])


@ops_api.get("/metrics", response_class=Response, summary="Prometheus metrics",
             responses={200: {"content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
async def metrics(lifecycle: Lifecycle) -> Response:
    return Response(await render_metrics(lifecycle), media_type=METRICS_CONTENT_TYPE)


# -- the WebRTC test room ---------------------------------------------------------

WEB_DIR = Path_(__file__).parent / "web" / "static"
room_api = APIRouter(tags=["room"], responses=_errors(400, 401, 403, 404))
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


async def room_access(request: Request, rt: Rt,
                      creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]) -> None:
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
    sdp: str = Field(min_length=1, max_length=100_000)
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


@room_api.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/room/")


@room_api.get("/room/", include_in_schema=False)
async def room_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html")


@room_api.get("/room/{page}.html", include_in_schema=False)
async def room_pages(page: Annotated[str, Path(pattern="^(budget|costs)$")]) -> FileResponse:
    return FileResponse(WEB_DIR / f"{page}.html")


@room_api.get("/room/config", dependencies=[Depends(room_access)], summary="Users, personas and engines for the room")
async def room_config(rt: Rt) -> dict[str, Any]:
    users = [{"id": u["id"], "display_name": u["display_name"]} for u in await rt.users.list_users()]
    personas = [{"id": p["id"], "name": p["name"]} for p in await rt.users.list_personas()]
    return {"public": bool(rt.settings.public_base_url), "users": users, "personas": personas,
            "engines": engines(rt.settings)}


@room_api.post("/room/token", dependencies=[Depends(room_access)], responses=_errors(404),
               summary="A user token for the room (this machine, or the operator)")
async def room_token(rt: Rt, body: RoomTokenIn) -> dict[str, str]:
    if await rt.users.get_user(body.user_id) is None:
        raise HTTPException(404, f"no user {body.user_id!r}")
    return {"token": mint_user_token(body.user_id, rt.settings.jwt_secret), "user_id": body.user_id}


@room_api.post("/start", responses=_errors(402, 404), summary="Start a room call (Pipecat client convention)")
async def room_start(rt: Rt, lifecycle: Lifecycle, user: User, body: RoomStartIn) -> dict[str, Any]:
    persona_id = str(body.body.get("persona_id") or "")
    if await rt.users.get_persona(persona_id) is None:
        raise HTTPException(404, f"no persona {persona_id!r}")
    allowance = await lifecycle.open(user["id"], persona_id, "webrtc")
    return {"sessionId": allowance.call_id, "iceConfig": {"iceServers": []}}


async def _room_call(rt: Rt, user: User, call_id: str, *, renegotiating: bool) -> None:
    """The signed-in user's own room call: waiting for its first offer, or live when renegotiating."""
    call = await rt.calls.get(call_id)
    wanted = ("created", "live") if renegotiating else ("created",)
    if call is None or call["user_id"] != user["id"] or call["direction"] != "webrtc" or call["status"] not in wanted:
        raise HTTPException(404, "no room call of yours waiting for this session")


@room_api.post("/sessions/{session_id}/api/offer", summary="WebRTC offer for a room call")
async def room_offer(request: Request, rt: Rt, user: User, session_id: CallIdPath, body: OfferIn) -> dict[str, Any]:
    room: WebRTCRoom = request.app.state.room
    await _room_call(rt, user, session_id, renegotiating=body.pc_id is not None)
    try:
        return await room.offer(session_id, SmallWebRTCRequest(
            sdp=body.sdp, type=body.type, pc_id=body.pc_id, restart_pc=body.restart_pc,
            request_data=body.requestData))
    except Exception as exc:  # aiortc refuses what it cannot parse: the caller's error, not ours
        logger.warning(f"room offer for {session_id} refused: {exc!r}")
        raise HTTPException(400, f"the WebRTC offer could not be used: {exc}") from None


@room_api.patch("/sessions/{session_id}/api/offer", status_code=204, response_class=Response,
                summary="Trickle ICE candidates for a room call")
async def room_ice(request: Request, rt: Rt, user: User, session_id: CallIdPath, body: PatchIn) -> Response:
    await _room_call(rt, user, session_id, renegotiating=True)
    room: WebRTCRoom = request.app.state.room
    await room.patch(SmallWebRTCPatchRequest(pc_id=body.pc_id, candidates=[
        IceCandidate(candidate=c.candidate, sdp_mid=c.sdp_mid, sdp_mline_index=c.sdp_mline_index)
        for c in body.candidates]))
    return Response(status_code=204)


async def _reconcile_forever(lifecycle: CallLifecycle, every: float = 60.0) -> None:
    """At start-up and then every minute: finish calls whose process died."""
    while True:
        try:
            done = await lifecycle.reconcile()
            if done:
                logger.info(f"reconciled {len(done)} abandoned call(s)")
        except Exception as exc:
            logger.error(f"reconciliation failed: {exc!r}")
        await asyncio.sleep(every)


def main() -> None:
    try:
        settings = load_settings()
    except Exception as exc:  # a configuration error: say which setting and why, then stop
        print(f"Configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level)
    try:  # the embedded default's engines, ready before the first call rather than during it
        in_use = prepare_local_engines(settings)
    except Exception as exc:
        print(f"Local engines could not be prepared: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logger.info(f"engines: {in_use}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
