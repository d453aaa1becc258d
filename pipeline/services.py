"""The vendors' Pipecat services, built from settings (every endpoint overridable).

A vendor whose key is absent is replaced by its local engine (pipeline/local_engines.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

from agent.accounts.personas import Persona
from agent.books.events import Source
from agent.engines import vendor_llms
from agent.settings import Settings
from pipeline.failover import FailoverLLMService, LLMRoute
from pipeline.llm_clients import shared_client
from processors.metering import MeterConfig, PricedAs

CEREBRAS_NAME = "cerebras-llm"
OPENAI_NAME = "openai-llm"


@dataclass
class CallServices:
    stt: STTService
    llm: FailoverLLMService
    tts: TTSService
    meter_config: MeterConfig


def build_services(settings: Settings, persona: Persona, system_prompt: str, *, max_tokens: int = 300,
                   loop: asyncio.AbstractEventLoop | None = None) -> CallServices:
    """The call's services. Blocking (vendors' SDKs build TLS contexts, about 17 ms each): from the
    event loop, run it in a thread and pass the loop, which the shared LLM clients are bound to."""
    if settings.deepgram_api_key:
        stt: STTService = DeepgramSTTService(
            api_key=settings.deepgram_api_key,
            base_url=settings.deepgram_base_url,
            settings=DeepgramSTTService.Settings(model=settings.deepgram_model),
            name="deepgram-stt",
        )
        stt_price = PricedAs("deepgram", settings.deepgram_model, Source.MEASURED)
    else:
        from pipeline import local_engines  # loads faster-whisper only when it is used
        stt, stt_price = local_engines.local_stt(settings)
    llm = build_llm(settings, persona, system_prompt, max_tokens, loop)
    tts_model = persona.tts_model or settings.elevenlabs_model
    if settings.elevenlabs_api_key:
        tts: TTSService = ElevenLabsTTSService(
            api_key=settings.elevenlabs_api_key,
            url=settings.elevenlabs_base_url,
            settings=ElevenLabsTTSService.Settings(voice=persona.voice_id, model=tts_model),
            name="elevenlabs-tts",
        )
        tts_price = PricedAs("elevenlabs", tts_model, Source.VENDOR)
    else:
        from pipeline import local_engines
        tts, tts_price = local_engines.local_tts(settings, tts_model)
    meter = MeterConfig(stt=stt_price, tts=tts_price, llms={r.name: r.price for r in llm.routes},
                        fallback_reasons=llm.reasons)
    return CallServices(stt=stt, llm=llm, tts=tts, meter_config=meter)


def llm_routes(settings: Settings, persona: Persona, loop: asyncio.AbstractEventLoop | None = None
               ) -> list[LLMRoute]:
    """The vendor LLMs with a key, in failover order; with none, the local engine alone."""
    routes = []
    vendors = vendor_llms(settings)
    timeout = settings.llm_timeout_secs
    if "cerebras" in vendors:
        model = persona.llm_model or settings.cerebras_model
        client = shared_client(settings.cerebras_base_url, settings.cerebras_api_key, timeout=timeout, loop=loop)
        routes.append(LLMRoute(CEREBRAS_NAME, PricedAs("cerebras", model), model, client))
    if "openai" in vendors:
        client = shared_client(settings.openai_base_url, settings.openai_api_key, timeout=timeout, loop=loop)
        routes.append(LLMRoute(OPENAI_NAME, PricedAs("openai", settings.openai_model), settings.openai_model,
                               client))
    if not routes:
        from pipeline import local_engines
        model = persona.llm_model or settings.cerebras_model
        routes.append(local_engines.local_llm_route(settings, persona.name, model, loop))
    return routes


def build_llm(settings: Settings, persona: Persona, system_prompt: str, max_tokens: int,
              loop: asyncio.AbstractEventLoop | None = None) -> FailoverLLMService:
    return FailoverLLMService(llm_routes(settings, persona, loop), settings=OpenAILLMService.Settings(
        system_instruction=system_prompt, max_completion_tokens=max_tokens))
