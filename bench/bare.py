"""The baseline: a bare Pipecat phone bot with the same services, fakes and settings as ours.

What it shares with `pipeline/call.py`: the Pipecat services and their settings
(Deepgram, one Cerebras LLM service, ElevenLabs WebSocket),
Silero VAD and smart-turn in the user aggregator, the FastAPI WebSocket
transport with the same parameters, 8 kHz, metrics and usage metrics on, RTVI
off, the same greeting and system prompt. What it leaves out is everything of
ours: no webhook, database, lifecycle or prompt building, Pipecat's stock
`TwilioFrameSerializer`, no OpenAI fallback (a user without us runs one LLM
service: adding Pipecat's `LLMSwitcher` would charge the baseline for the
failover we provide), and no meter, spend gates, budget guard or transcript.
The difference between the two is therefore the whole cost of our code,
failover included.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.cerebras.llm import CerebrasLLMService
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

from agent.accounts.personas import STARTER_PERSONAS
from agent.memory.prompt import compose_prompt
from agent.settings import Settings

RATE = 8000
PERSONA = STARTER_PERSONAS[0]  # Brad, whom every bench caller rings


async def run_bare_call(websocket: WebSocket, settings: Settings) -> None:
    """One call, the way Pipecat's own telephony scaffold would run it."""
    _kind, call_data = await parse_telephony_websocket(websocket)
    serializer = TwilioFrameSerializer(
        stream_sid=call_data["stream_id"], call_sid=call_data["call_id"],
        account_sid=settings.twilio_account_sid, auth_token=settings.twilio_auth_token,
        base_url=settings.twilio_api_base_url,
        params=TwilioFrameSerializer.InputParams(twilio_sample_rate=RATE, sample_rate=RATE))
    transport = FastAPIWebsocketTransport(websocket, FastAPIWebsocketParams(
        audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer,
        audio_in_sample_rate=RATE, audio_out_sample_rate=RATE, audio_out_end_silence_secs=1))
    prompt = compose_prompt(PERSONA, None).prompt
    stt = DeepgramSTTService(api_key=settings.deepgram_api_key, base_url=settings.deepgram_base_url,
                             settings=DeepgramSTTService.Settings(model=settings.deepgram_model))
    llm = CerebrasLLMService(api_key=settings.cerebras_api_key, base_url=settings.cerebras_base_url,
                             settings=CerebrasLLMService.Settings(model=settings.cerebras_model,
                                                                  system_instruction=prompt,
                                                                  max_completion_tokens=300))
    tts = ElevenLabsTTSService(api_key=settings.elevenlabs_api_key, url=settings.elevenlabs_base_url,
                               settings=ElevenLabsTTSService.Settings(voice=PERSONA.voice_id,
                                                                      model=settings.elevenlabs_model))
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, transport.output(), assistant_aggregator])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE,
                              enable_metrics=True, enable_usage_metrics=True),
        enable_rtvi=False, observers=[], idle_timeout_secs=300)

    @transport.event_handler("on_client_connected")
    async def _connected(_transport: object, _client: object) -> None:
        await worker.queue_frame(TTSSpeakFrame(PERSONA.greeting))

    @transport.event_handler("on_client_disconnected")
    async def _disconnected(_transport: object, _client: object) -> None:
        await worker.cancel(reason="caller hung up")

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def create_bare_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="bare Pipecat baseline")

    @app.websocket("/bare/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        await run_bare_call(websocket, settings)

    return app
