"""HTTP and WebSocket entry: Twilio webhooks and media streams, health.

Thin on purpose: parse, authorise, delegate to `agent/` and `pipeline/`.
Run it with `make run` (or `python server.py`).
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager, suppress
from typing import Annotated, AsyncIterator

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from loguru import logger
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pydantic import BaseModel, Field, ValidationError
from twilio.twiml.voice_response import Connect, VoiceResponse

from agent.budgets import BudgetRefused
from agent.lifecycle import CallLifecycle
from agent.runtime import Runtime
from agent.settings import Settings, load_settings
from agent.telephony import Twilio
from pipeline.call import run_call
from pipeline.twilio import CallMeBackTwilioSerializer

TWILIO_RATE = 8000


class TwilioVoiceForm(BaseModel):
    CallSid: str = Field(pattern=r"^CA[0-9a-zA-Z]{8,64}$")
    From: str = Field(min_length=1, max_length=32)
    To: str = Field(min_length=1, max_length=32)


class TwilioStatusForm(BaseModel):
    CallSid: str = Field(pattern=r"^CA[0-9a-zA-Z]{8,64}$")
    CallStatus: str
    CallDuration: Annotated[int, Field(ge=0)] | None = None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        app.state.lifecycle = CallLifecycle(runtime)
        app.state.twilio = Twilio(settings)
        reconciler = asyncio.create_task(_reconcile_forever(app.state.lifecycle))
        try:
            yield
        finally:
            reconciler.cancel()
            with suppress(asyncio.CancelledError):
                await reconciler
            await app.state.lifecycle.end_all("server_shutdown")
            await runtime.close()

    app = FastAPI(title="Call Me Back", version="0.1.0", lifespan=lifespan,
                  description="AI voice personas you talk to on the phone, with metered costs, budgets and memory.")

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> JSONResponse:
        ok = await request.app.state.runtime.db.ping()
        return JSONResponse({"status": "ok" if ok else "database unreachable"}, status_code=200 if ok else 503)

    async def signed_form(request: Request) -> dict[str, str] | Response:
        """The posted form, if Twilio signed it for our public URL; a 403 otherwise."""
        twilio: Twilio = request.app.state.twilio
        if not settings.twilio_enabled:
            return JSONResponse({"detail": "Twilio is not configured on this server"}, status_code=503)
        form = {k: str(v) for k, v in (await request.form()).items()}
        url = settings.public_base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not twilio.signature_valid(url, form, request.headers.get("X-Twilio-Signature", "")):
            logger.warning(f"rejected unsigned or forged Twilio request to {request.url.path}")
            return JSONResponse({"detail": "invalid Twilio signature"}, status_code=403)
        return form

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

    @app.post("/twilio/voice", tags=["twilio"], summary="Inbound call webhook (signed by Twilio)")
    async def twilio_voice(request: Request) -> Response:
        form = await signed_form(request)
        if isinstance(form, Response):
            return form
        try:
            call = TwilioVoiceForm.model_validate(form)
        except ValidationError as exc:
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)}, status_code=422)
        rt: Runtime = request.app.state.runtime
        user = await rt.users.user_by_phone(call.From)
        persona = await rt.users.persona_by_phone(call.To)
        if user is None or persona is None:
            return say_and_hang_up("Sorry, this number is not set up for calls yet. Goodbye.")
        try:
            allowance = await request.app.state.lifecycle.open(user["id"], persona["id"], "inbound",
                                                               twilio_call_sid=call.CallSid)
        except BudgetRefused as refused:
            return say_and_hang_up(refused.message)
        return connect_twiml(request, allowance.call_id)

    @app.post("/twilio/outbound/{call_id}", tags=["twilio"], summary="TwiML for a call we placed (signed)")
    async def twilio_outbound(call_id: str, request: Request) -> Response:
        form = await signed_form(request)
        if isinstance(form, Response):
            return form
        call = await request.app.state.runtime.calls.get(call_id)
        if call is None or call["status"] != "created" or call["direction"] != "outbound":
            return say_and_hang_up("Sorry, this call has expired. Goodbye.")
        return connect_twiml(request, call_id)

    @app.post("/twilio/status", tags=["twilio"], summary="Call status callback (signed): final duration")
    async def twilio_status(request: Request) -> Response:
        form = await signed_form(request)
        if isinstance(form, Response):
            return form
        try:
            status = TwilioStatusForm.model_validate(form)
        except ValidationError as exc:
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)}, status_code=422)
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
                                     hang_up=lambda: twilio.hang_up(call_data["call_id"]))
            reason = outcome.reason
        except asyncio.CancelledError:
            reason = "server_shutdown"
            raise
        finally:
            await lifecycle.end(session, reason=reason)

    return app


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
