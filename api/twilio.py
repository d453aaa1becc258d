"""Twilio's surface: the signed voice, outbound and status webhooks, and a call's media stream.

Every webhook is checked against Twilio's signature for our public URL before
its form is read as anything; the media WebSocket needs the call's signed token.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from loguru import logger
from pipecat.pipeline.worker import PipelineWorker
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pydantic import BaseModel, Field, ValidationError
from twilio.twiml.voice_response import Connect, VoiceResponse

from agent.books.billing import PaymentError
from agent.books.budgets import BudgetRefused
from agent.calls.lifecycle import CallLifecycle, CallNotWaiting
from agent.calls.telephony import Twilio
from agent.runtime import Runtime
from agent.settings import Settings
from api.schemas import ErrorOut
from api.strict_json import StrictJSONRoute
from pipeline.call import run_call
from pipeline.twilio import CallMeBackTwilioSerializer

TWILIO_RATE = 8000
CANT_TAKE_CALL = "Sorry, we can't take your call right now. Please try again in a few minutes."

router = APIRouter(route_class=StrictJSONRoute, tags=["twilio"])


class TwilioVoiceForm(BaseModel):
    CallSid: str = Field(pattern=r"^CA[0-9a-zA-Z]{8,64}$")
    From: str = Field(min_length=1, max_length=32)
    To: str = Field(min_length=1, max_length=32)


class TwilioStatusForm(BaseModel):
    CallSid: str = Field(pattern=r"^CA[0-9a-zA-Z]{8,64}$")
    CallStatus: str = Field(max_length=32)
    CallDuration: Annotated[int, Field(ge=0, le=7 * 86_400)] | None = None  # a week: Twilio's calls last 24 h at most


def _webhook_doc(form: type[BaseModel] | None, ok: int = 200) -> dict[str, Any]:
    """OpenAPI for a Twilio webhook: a signed form in, TwiML (or nothing) out."""
    body = {"application/x-www-form-urlencoded": {"schema": form.model_json_schema() if form else {"type": "object"}}}
    success = {"description": "TwiML for Twilio", "content": {"application/xml": {"schema": {"type": "string"}}}} \
        if ok == 200 else {"description": "Recorded"}
    return {"response_class": Response, "openapi_extra": {"requestBody": {"required": True, "content": body}},
            "responses": {ok: success, 403: {"model": ErrorOut, "description": "Missing or forged Twilio signature"},
                          422: {"description": "The signed form is not what Twilio sends"},
                          503: {"model": ErrorOut, "description": "Twilio is not configured on this server"}}}


def _settings(request: Request | WebSocket) -> Settings:
    return request.app.state.runtime.settings


async def signed_form(request: Request, model: type[BaseModel] | None = None) -> Any:
    """The posted form (validated by `model`, if given), if Twilio signed it for our public URL.

    Otherwise the response to send: 503 without Twilio, 403 for a bad signature, 422 for a bad form.
    """
    settings = _settings(request)
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
    """TwiML that connects the call to its media stream, with the call's signed token."""
    twilio: Twilio = request.app.state.twilio
    base = _settings(request).public_base_url
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
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


@router.post("/twilio/voice", summary="Inbound call webhook (signed by Twilio)", **_webhook_doc(TwilioVoiceForm))
async def twilio_voice(request: Request) -> Response:
    call = await signed_form(request, TwilioVoiceForm)
    if isinstance(call, Response):
        return call
    rt: Runtime = request.app.state.runtime
    try:
        user = await rt.users.user_by_phone(call.From)
        persona = await rt.users.persona_by_phone(call.To)
    except Exception as exc:  # the database is down: say so in words, not with Twilio's generic error
        logger.error(f"inbound call {call.CallSid} could not be looked up: {exc!r}")
        return say_and_hang_up(CANT_TAKE_CALL)
    if user is None or persona is None:
        return say_and_hang_up("Sorry, this number is not set up for calls yet. Goodbye.")
    try:
        allowance = await request.app.state.lifecycle.open(user["id"], persona["id"], "inbound",
                                                           twilio_call_sid=call.CallSid)
    except (BudgetRefused, PaymentError) as refused:
        return say_and_hang_up(refused.message)
    except Exception as exc:  # the database or another dependency is down: no call, and say so
        logger.error(f"inbound call {call.CallSid} could not start: {exc!r}")
        return say_and_hang_up(CANT_TAKE_CALL)
    return connect_twiml(request, allowance.call_id)


@router.post("/twilio/outbound/{call_id}", summary="TwiML for a call we placed (signed)", **_webhook_doc(None))
async def twilio_outbound(call_id: str, request: Request) -> Response:
    form = await signed_form(request)
    if isinstance(form, Response):
        return form
    try:
        call = await request.app.state.runtime.calls.get(call_id)
    except Exception as exc:
        logger.error(f"outbound call {call_id} could not be looked up: {exc!r}")
        return say_and_hang_up(CANT_TAKE_CALL)
    if call is None or call["status"] != "created" or call["direction"] != "outbound":
        return say_and_hang_up("Sorry, this call has expired. Goodbye.")
    return connect_twiml(request, call_id)


@router.post("/twilio/status", summary="Call status callback (signed): final duration",
             **_webhook_doc(TwilioStatusForm, ok=204))
async def twilio_status(request: Request) -> Response:
    status = await signed_form(request, TwilioStatusForm)
    if isinstance(status, Response):
        return status
    if status.CallStatus == "completed" and status.CallDuration is not None:
        await request.app.state.lifecycle.record_carrier_duration(status.CallSid, status.CallDuration)
    return Response(status_code=204)


@router.websocket("/twilio/media/{call_id}")
async def twilio_media(websocket: WebSocket, call_id: str) -> None:
    settings = _settings(websocket)
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
    try:
        session = await lifecycle.begin(call_id)  # exactly one media connection wins
    except CallNotWaiting as exc:
        logger.warning(f"media stream for {call_id} refused: {exc}")
        await websocket.close(code=1008, reason="call not waiting to start")
        return
    except Exception as exc:  # the database is away: no call, and Twilio hears why
        logger.error(f"media stream for {call_id} could not start: {exc!r}")
        await websocket.close(code=1011, reason="call could not start")
        return
    reason, outcome = "error", None
    running: dict[str, PipelineWorker] = {}

    async def hang_up() -> None:
        """The call ends from outside (an operator, or another worker took it): stop the pipeline, then the line."""
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
