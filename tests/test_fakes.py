"""The vendor fakes speak their protocols to the REAL clients (SDKs and Pipecat services)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
import time
import wave
from fractions import Fraction

import aiohttp
import httpx
import numpy as np
import openai
import pytest
import stripe
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    InputAudioRawFrame,
    LLMContextFrame,
    LLMTextFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSTextFrame,
)
from pipecat.metrics.metrics import LLMUsageMetricsData, TTSUsageMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.cerebras.llm import CerebrasLLMService
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test
from fakes import (
    DeepgramFake,
    ElevenLabsFake,
    ErrorReply,
    LocalTwilioHttpClient,
    OpenAIFake,
    ServedApp,
    StripeFake,
    ToolCall,
    TwilioCaller,
    TwilioRestFake,
    count_tokens,
)
from fakes.elevenlabs import tone_pcm
from fakes.twilio_caller import pcm_to_ulaw, read_wav_8k

AC = "AC" + "1" * 32
TOKEN = "twilio-token"


def pcm_frames(pcm: bytes, rate: int, ms: int = 20) -> list[InputAudioRawFrame]:
    step = rate * ms // 1000 * 2
    return [InputAudioRawFrame(pcm[i : i + step], rate, 1) for i in range(0, len(pcm), step)]


# -- harness --------------------------------------------------------------


def test_served_app_starts_and_stops_quickly() -> None:
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    t0 = time.monotonic()
    with ServedApp(app) as served:
        assert served.http_url == f"http://127.0.0.1:{served.port}"
        assert served.ws_url == f"ws://127.0.0.1:{served.port}"
        assert httpx.get(f"{served.http_url}/ping").json() == {"ok": True}
    assert time.monotonic() - t0 < 2.0
    assert not [t for t in threading.enumerate() if t.name.startswith("ServedApp:")]


# -- OpenAI / Cerebras ----------------------------------------------------


@pytest.mark.asyncio
async def test_openai_stream_usage_matches_counters() -> None:
    fake = OpenAIFake(["Hello there, how can I help you today?"])
    messages = [
        {"role": "system", "content": "You are a pizza shop assistant."},
        {"role": "user", "content": [{"type": "text", "text": "Hi, I'd like a pizza."}]},
    ]
    async with ServedApp(fake.app) as served:
        async with openai.AsyncOpenAI(api_key="test-key", base_url=f"{served.http_url}/v1") as client:
            stream = await client.chat.completions.create(
                model="llama3.1-8b", messages=messages, stream=True, stream_options={"include_usage": True}
            )
            pieces, usage, fingerprints = [], None, set()
            async for chunk in stream:
                fingerprints.add(chunk.system_fingerprint)
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    assert chunk.choices == []
                    usage = chunk.usage
    assert "".join(pieces) == "Hello there, how can I help you today?"
    assert len(pieces) == 8  # word pieces, spaces kept
    assert fingerprints == {"fp_fake0001"}
    expected_prompt = count_tokens("You are a pizza shop assistant.") + count_tokens("Hi, I'd like a pizza.") + 6
    assert usage is not None
    assert usage.prompt_tokens == fake.served_prompt_tokens == expected_prompt
    assert usage.completion_tokens == fake.served_completion_tokens == count_tokens("".join(pieces))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert fake.requests[0]["model"] == "llama3.1-8b"
    assert fake.served_texts == ["Hello there, how can I help you today?"]
    assert fake.streams_completed == 1


@pytest.mark.asyncio
async def test_openai_json_errors_auth_and_tool_calls() -> None:
    fake = OpenAIFake(
        [
            '{"facts": ["likes pepperoni"]}',
            ErrorReply(status=500),
            ToolCall("take_payment", {"amount_cents": 1899}),
            lambda body: f"You said {len(body['messages'])} messages.",
        ]
    )
    async with ServedApp(fake.app) as served:
        url = f"{served.http_url}/v1"
        async with openai.AsyncOpenAI(api_key="test-key", base_url=url, max_retries=0) as client:
            msgs = [{"role": "user", "content": "remember me"}]
            done = await client.chat.completions.create(
                model="gpt-4.1-mini", messages=msgs, response_format={"type": "json_object"}
            )
            assert json.loads(done.choices[0].message.content) == {"facts": ["likes pepperoni"]}
            assert done.usage.prompt_tokens == count_tokens("remember me") + 3
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=msgs)
            stream = await client.chat.completions.create(model="m", messages=msgs, stream=True)
            calls: dict[int, dict] = {}
            finish = None
            async for chunk in stream:
                for tc in chunk.choices[0].delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"name": "", "args": ""})
                    entry["name"] += tc.function.name or ""
                    entry["args"] += tc.function.arguments or ""
                finish = chunk.choices[0].finish_reason or finish
            assert finish == "tool_calls"
            assert calls[0]["name"] == "take_payment"
            assert json.loads(calls[0]["args"]) == {"amount_cents": 1899}
            again = await client.chat.completions.create(model="m", messages=msgs * 2)
            assert again.choices[0].message.content == "You said 2 messages."
            default = await client.chat.completions.create(model="m", messages=msgs)
            assert default.choices[0].message.content == "Sure, I can help with that."
        async with openai.AsyncOpenAI(api_key="wrong", base_url=url, max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="m", messages=msgs)
    assert fake.error_count == 2


@pytest.mark.asyncio
async def test_openai_fake_drives_pipecat_cerebras_service() -> None:
    fake = OpenAIFake(["Hi! What pizza would you like?"])
    async with ServedApp(fake.app) as served:
        llm = CerebrasLLMService(
            api_key="test-key",
            base_url=f"{served.http_url}/v1",
            settings=CerebrasLLMService.Settings(model="llama3.1-8b", system_instruction="You take pizza orders."),
        )
        context = LLMContext(messages=[{"role": "user", "content": "Hello"}])
        down, _ = await run_test(
            llm,
            frames_to_send=[LLMContextFrame(context)],
            pipeline_params=PipelineParams(enable_usage_metrics=True),
        )
    assert "".join(f.text for f in down if isinstance(f, LLMTextFrame)) == "Hi! What pizza would you like?"
    (usage,) = [
        d.value for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)
    ]
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        fake.served_prompt_tokens,
        fake.served_completion_tokens,
    )
    assert [m["role"] for m in fake.requests[0]["messages"]] == ["system", "user"]


# -- Deepgram ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_deepgram_pipecat_service_gets_final_transcript() -> None:
    rate = 16000
    fake = DeepgramFake(["Hello, I'd like a large pizza."])
    pcm = bytes(rate // 5 * 2) + tone_pcm(rate * 6 // 10, rate, amplitude=8000) + bytes(rate * 6 // 10 * 2)
    async with ServedApp(fake.app) as served:
        stt = DeepgramSTTService(api_key="test-key", base_url=served.ws_url, sample_rate=rate)
        down, _ = await run_test(
            stt,
            frames_to_send=[*pcm_frames(pcm, rate), SleepFrame(0.5)],
            pipeline_params=PipelineParams(audio_in_sample_rate=rate),
        )
    finals = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert finals == ["Hello, I'd like a large pizza."]
    assert fake.finals_sent == finals
    assert fake.interims_sent  # interim results while the tone lasted
    assert fake.audio_bytes_received == len(pcm)
    assert fake.audio_seconds_received == Fraction(len(pcm), rate * 2)
    q = fake.queries[0]
    assert (q["encoding"], q["sample_rate"], q["interim_results"]) == ("linear16", "16000", "true")


@pytest.mark.asyncio
async def test_deepgram_raw_protocol_finalize_closestream_and_auth() -> None:
    rate = 8000
    fake = DeepgramFake(lambda i: f"segment {i}")
    async with ServedApp(fake.app) as served:
        url = f"{served.ws_url}/v1/listen?encoding=linear16&sample_rate={rate}&interim_results=false"
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with websockets.connect(url, additional_headers={"Authorization": "Token nope"}):
                pass
        assert denied.value.response.status_code == 401
        async with websockets.connect(url, additional_headers={"Authorization": "Token test-key"}) as ws:
            await ws.send(tone_pcm(rate // 2, rate, amplitude=8000))
            await ws.send(json.dumps({"type": "KeepAlive"}))
            await ws.send(json.dumps({"type": "Finalize"}))
            first = json.loads(await ws.recv())
            assert first["type"] == "Results" and first["is_final"] and first["from_finalize"]
            assert first["channel"]["alternatives"][0]["transcript"] == "segment 0"
            words = first["channel"]["alternatives"][0]["words"]
            assert [w["word"] for w in words] == ["segment", "0"]
            assert first["metadata"]["model_info"]["name"] and first["metadata"]["request_id"]
            await ws.send(tone_pcm(rate // 5, rate, amplitude=8000))  # speech left pending
            await ws.send(json.dumps({"type": "CloseStream"}))
            flushed = json.loads(await ws.recv())
            assert flushed["channel"]["alternatives"][0]["transcript"] == "segment 1"
            meta = json.loads(await ws.recv())
            assert meta["type"] == "Metadata" and meta["duration"] == pytest.approx(0.7)
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
    assert fake.finals_sent == ["segment 0", "segment 1"]
    assert [m["type"] for m in fake.control_messages] == ["KeepAlive", "Finalize", "CloseStream"]


# -- ElevenLabs --------------------------------------------------------------


@pytest.mark.asyncio
async def test_elevenlabs_ws_pipecat_audio_and_billing() -> None:
    fake = ElevenLabsFake(ms_per_char=10, max_chars_per_message=12)
    text = "Hello there. How can I help?"
    async with ServedApp(fake.app) as served:
        tts = ElevenLabsTTSService(
            api_key="test-key",
            url=served.ws_url,
            sample_rate=16000,
            settings=ElevenLabsTTSService.Settings(voice="voice-abc"),
        )
        down, _ = await run_test(
            tts,
            frames_to_send=[TTSSpeakFrame(text), SleepFrame(0.5)],
            pipeline_params=PipelineParams(enable_usage_metrics=True),
        )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    billed = sum(
        d.value for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, TTSUsageMetricsData)
    )
    assert fake.characters_received == billed == len("".join(fake.texts))
    assert "".join(fake.texts).strip() == text
    words = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert words == text.split()  # word timestamps from the per-message alignment
    assert len(audio) == fake.characters_received * 10 * 16 * 2  # 10 ms/char at 16 kHz, 16-bit
    assert fake.audio_seconds_sent == Fraction(len(audio), 32000)
    assert fake.voices_used == ["voice-abc"] and fake.output_formats == ["pcm_16000"]
    assert fake.contexts_opened and fake.contexts_closed == fake.contexts_opened
    assert {"close_socket": True} in fake.messages


@pytest.mark.asyncio
async def test_elevenlabs_http_pipecat_audio_and_billing() -> None:
    fake = ElevenLabsFake()
    async with ServedApp(fake.app) as served:
        async with aiohttp.ClientSession() as session:
            tts = ElevenLabsHttpTTSService(
                api_key="test-key",
                base_url=served.http_url,
                aiohttp_session=session,
                sample_rate=16000,
                settings=ElevenLabsHttpTTSService.Settings(voice="voice-http"),
            )
            down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame("Thanks for calling.")])
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert fake.characters_received == len("Thanks for calling.")
    assert len(audio) == fake.characters_received * 20 * 16 * 2
    assert fake.voices_used == ["voice-http"]


@pytest.mark.asyncio
async def test_elevenlabs_rejects_bad_key() -> None:
    fake = ElevenLabsFake()
    async with ServedApp(fake.app) as served:
        url = f"{served.ws_url}/v1/text-to-speech/v/multi-stream-input?model_id=m&output_format=pcm_8000"
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with websockets.connect(url, additional_headers={"xi-api-key": "nope"}):
                pass
        assert denied.value.response.status_code == 401
        # Pipecat surfaces the refusal as an error instead of hanging.
        tts = ElevenLabsTTSService(api_key="nope", url=served.ws_url, settings=ElevenLabsTTSService.Settings(voice="v"))
        _, up = await run_test(tts, frames_to_send=[TTSSpeakFrame("Hi.")])
    assert any(isinstance(f, ErrorFrame) for f in up)
    assert fake.characters_received == 0


# -- Twilio REST -------------------------------------------------------------


def test_twilio_sdk_create_update_and_errors() -> None:
    fake = TwilioRestFake(AC, TOKEN)
    with ServedApp(fake.app) as served:
        client = TwilioClient(AC, TOKEN)
        client.api.base_url = served.http_url
        call = client.calls.create(to="+15551230000", from_="+15559870000", url="https://example.test/voice")
        assert call.sid.startswith("CA") and call.status == "queued" and call.to == "+15551230000"
        assert fake.created_calls[0]["Url"] == "https://example.test/voice"
        done = client.calls(call.sid).update(status="completed")
        assert done.status == "completed"
        assert [sid for sid, _ in fake.hangups] == [call.sid]
        with pytest.raises(TwilioRestException) as missing:
            client.calls("CA" + "f" * 32).update(status="completed")
        assert (missing.value.status, missing.value.code) == (404, 20404)
        other = TwilioClient(AC, TOKEN, http_client=LocalTwilioHttpClient(served.http_url))
        assert other.calls(call.sid).fetch().status == "completed"
        bad = TwilioClient(AC, "wrong")
        bad.api.base_url = served.http_url
        with pytest.raises(TwilioRestException) as denied:
            bad.calls.create(to="+1", from_="+2", twiml="<Response/>")
        assert denied.value.status == 401


@pytest.mark.asyncio
async def test_twilio_serializer_hangs_up_via_fake() -> None:
    fake = TwilioRestFake(AC, TOKEN)
    inbound = fake.add_call(direction="inbound")
    async with ServedApp(fake.app) as served:
        serializer = TwilioFrameSerializer(
            stream_sid="MZ1", call_sid=inbound, account_sid=AC, auth_token=TOKEN, base_url=served.http_url
        )
        assert await serializer.serialize(EndFrame()) is None
    assert [sid for sid, _ in fake.hangups] == [inbound]
    assert fake.updates == [(inbound, {"Status": "completed"})]
    assert fake.calls[inbound]["status"] == "completed"


# -- Stripe --------------------------------------------------------------------


def test_stripe_sdk_manual_capture_idempotency_and_errors() -> None:
    fake = StripeFake("sk_test_x")
    with ServedApp(fake.app) as served:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": served.http_url}, max_network_retries=2
        )
        customer = client.v1.customers.create(params={"email": "a@example.test"})
        params = {
            "amount": 2500,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
            "off_session": True,
            "metadata": {"call_id": "CA1", "order_id": "42"},
        }
        pi = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-42-auth"})
        assert (pi.status, pi.amount_capturable, pi.metadata["call_id"]) == ("requires_capture", 2500, "CA1")
        replay = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-42-auth"})
        assert replay.id == pi.id and fake.replays == 1 and len(fake.intents) == 1
        assert replay.last_response.headers["Idempotent-Replayed"] == "true"
        with pytest.raises(stripe.IdempotencyError):
            client.v1.payment_intents.create(
                params={**params, "amount": 999}, options={"idempotency_key": "order-42-auth"}
            )
        with pytest.raises(stripe.InvalidRequestError) as too_large:
            client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 3000})
        assert too_large.value.code == "amount_too_large"
        captured = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 1800})
        assert (captured.status, captured.amount_received) == ("succeeded", 1800)
        assert fake.captures == [(pi.id, 1800)]
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(params={**params, "payment_method": "pm_card_chargeDeclined"})
        assert declined.value.code == "card_declined"
        fake.fail_next(503)
        retried = client.v1.payment_intents.create(params=params)  # SDK retries with the same key
        assert retried.status == "requires_capture"
        (_, _, _, k1), (_, _, _, k2) = fake.requests[-2:]
        assert k1 == k2 and k1 is not None
        canceled = client.v1.payment_intents.cancel(retried.id, params={"cancellation_reason": "abandoned"})
        assert canceled.status == "canceled" and fake.cancels == [retried.id]
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


@pytest.mark.asyncio
async def test_stripe_sdk_async() -> None:
    fake = StripeFake("sk_test_x")
    async with ServedApp(fake.app) as served:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": served.http_url}, http_client=stripe.HTTPXClient()
        )
        pi = await client.v1.payment_intents.create_async(
            params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa",
                    "capture_method": "manual", "confirm": True}
        )
        done = await client.v1.payment_intents.capture_async(pi.id)
    assert done.status == "succeeded" and fake.captures == [(pi.id, 1000)]


# -- Twilio Media Streams caller -------------------------------------------------


def test_read_wav_8k_resamples_to_mono_8k(tmp_path) -> None:
    tone = np.frombuffer(tone_pcm(16000, 16000, amplitude=6000), dtype="<i2")
    path = tmp_path / "stereo16k.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(tone, 2).astype("<i2").tobytes())
    pcm = np.frombuffer(read_wav_8k(path), dtype="<i2").astype(np.float64)
    assert abs(len(pcm) - 8000) <= 2
    assert np.sqrt(np.mean(pcm**2)) == pytest.approx(6000 / math.sqrt(2), rel=0.05)


def _echo_app(log: dict) -> FastAPI:
    """Echo non-silent media back; DTMF 1 = 1 s burst + mark, 2 = clear, 3 = short tone + mark, 9 = hang up."""
    app = FastAPI()

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        kind, call_data = await parse_telephony_websocket(ws)
        log["parsed"] = (kind, call_data)
        sid = call_data["stream_id"]

        async def media(pcm: bytes) -> None:
            payload = base64.b64encode(pcm_to_ulaw(pcm)).decode()
            await ws.send_text(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}}))

        try:
            while True:
                raw = await ws.receive_text()
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log.setdefault("garbage", []).append(raw)
                    continue
                log.setdefault("events", []).append(msg)
                if msg["event"] == "media" and set(base64.b64decode(msg["media"]["payload"])) != {0xFF}:
                    await ws.send_text(json.dumps({"event": "media", "streamSid": sid, "media": msg["media"]}))
                elif msg["event"] == "dtmf":
                    digit = msg["dtmf"]["digit"]
                    if digit == "1":
                        await media(tone_pcm(8000, 8000, amplitude=6000))
                        await ws.send_text(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "burst"}}))
                    elif digit == "2":
                        await ws.send_text(json.dumps({"event": "clear", "streamSid": sid}))
                    elif digit == "3":
                        await media(tone_pcm(2400, 8000, amplitude=6000))
                        await ws.send_text(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "short"}}))
                    elif digit == "9":
                        await ws.close()
                        return
                elif msg["event"] == "stop":
                    return
        except WebSocketDisconnect:
            pass

    return app


@pytest.mark.asyncio
async def test_twilio_caller_against_echo_server() -> None:
    log: dict = {}
    async with ServedApp(_echo_app(log)) as served:
        caller = TwilioCaller(f"{served.ws_url}/ws", account_sid=AC, custom_parameters={"from_number": "+15550001111"})
        async with caller:
            await caller.silence(0.1)
            await caller.say_pcm(tone_pcm(3200, 8000, amplitude=6000))  # 0.4 s
            await caller.silence(0.2)
            await caller.wait_until(lambda: caller.heard_seconds >= 0.4)
            assert caller.speech_segments[0].duration == pytest.approx(0.4, abs=0.05)

            # A mark is echoed only after the audio queued before it has played.
            await asyncio.sleep(0.4)
            await caller.send_dtmf("3")
            await caller.wait_until(lambda: any(n == "short" for n, _ in caller.marks_echoed))
            (_, got), (_, echoed) = caller.marks_received[-1], caller.marks_echoed[-1]
            assert echoed - got >= 0.25

            # clear drops queued audio and echoes the pending mark at once.
            await asyncio.sleep(0.4)  # keep the burst a separate speech segment
            await caller.send_dtmf("1")
            await caller.wait_until(lambda: any(n == "burst" for n, _ in caller.marks_received))
            await asyncio.sleep(0.2)
            await caller.send_dtmf("2")
            await caller.wait_until(lambda: any(n == "burst" for n, _ in caller.marks_echoed))
            assert caller.marks_echoed[-1][1] - caller.clears[-1] < 0.1
            assert [round(s.duration, 1) for s in caller.speech_segments[:2]] == [0.4, 0.3]
            assert 0.1 < caller.speech_segments[2].duration < 0.4  # the 1 s burst was cut short

            await caller.send_dtmf("9")
            await caller.wait_until(lambda: caller.closed_at is not None)
            assert caller.closed_by_server and not caller.errors
        # The caller hangs up: stop is the last thing the server receives.
        log["first_events"], log["first_parsed"], log["events"] = log["events"], log["parsed"], []
        async with TwilioCaller(f"{served.ws_url}/ws", account_sid=AC) as quitter:
            await quitter.send_raw("{not json")
            await quitter.silence(0.1)
        assert not quitter.closed_by_server and quitter.closed_at is not None
        await asyncio.sleep(0.1)
        assert log["garbage"] == ["{not json"]
        assert log["events"][-1]["event"] == "stop"
        assert log["events"][-1]["stop"] == {"accountSid": AC, "callSid": quitter.call_sid}
    kind, call_data = log["first_parsed"]
    assert kind == "twilio"
    assert (call_data["call_id"], call_data["stream_id"]) == (caller.call_sid, caller.stream_sid)
    assert call_data["body"] == {"from_number": "+15550001111"}
    media = [m for m in log["first_events"] if m["event"] == "media"]
    assert [int(m["sequenceNumber"]) for m in media[:3]] == [2, 3, 4]
    assert [m["media"]["chunk"] for m in media[:3]] == ["1", "2", "3"]
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in media)
    assert media[0]["media"]["track"] == "inbound" and media[2]["media"]["timestamp"] == "40"
    assert math.isclose(caller.media_frames_sent, len(media), abs_tol=2)
    assert np.frombuffer(caller.heard_pcm, dtype="<i2").size == int(caller.heard_seconds * 8000)
