"""The vendors' Pipecat services, built from settings (every endpoint overridable).

A vendor whose key is absent is replaced by its local engine (pipeline/local_engines.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.pipeline.llm_switcher import LLMSwitcher
from pipecat.services.cerebras.llm import CerebrasLLMService
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

from agent.books.costs import Source
from agent.engines import vendor_llms
from agent.accounts.personas import Persona
from agent.settings import Settings
from pipeline.failover import RetryTurnFailover
from processors.metering import MeterConfig, PricedAs

CEREBRAS_NAME = "cerebras-llm"
OPENAI_NAME = "openai-llm"


@dataclass
class CallServices:
    stt: STTService
    llm: LLMSwitcher
    tts: TTSService
    failover: RetryTurnFailover
    meter_config: MeterConfig


def _fail_fast(service: OpenAILLMService, timeout: float) -> None:
    # The SDK retries a 500 three times with backoff before Pipecat sees it; for
    # a live caller, failing over at once beats retrying the same vendor.
    service._client = service._client.with_options(max_retries=0, timeout=timeout)


def build_services(settings: Settings, persona: Persona, system_prompt: str, *, max_tokens: int = 300
                   ) -> CallServices:
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
    cerebras_model = persona.llm_model or settings.cerebras_model
    llms: list[OpenAILLMService] = []
    llm_prices: dict[str, PricedAs] = {}
    if "cerebras" in vendor_llms(settings):
        cerebras = CerebrasLLMService(
            api_key=settings.cerebras_api_key,
            base_url=settings.cerebras_base_url,
            settings=CerebrasLLMService.Settings(model=cerebras_model, system_instruction=system_prompt,
                                                 max_completion_tokens=max_tokens),
            name=CEREBRAS_NAME,
        )
        _fail_fast(cerebras, settings.llm_timeout_secs)
        llms.append(cerebras)
        llm_prices[CEREBRAS_NAME] = PricedAs("cerebras", cerebras_model)
    if "openai" in vendor_llms(settings):
        openai = OpenAILLMService(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            settings=OpenAILLMService.Settings(model=settings.openai_model, system_instruction=system_prompt,
                                               max_completion_tokens=max_tokens),
            name=OPENAI_NAME,
        )
        _fail_fast(openai, settings.llm_timeout_secs)
        llms.append(openai)
        llm_prices[OPENAI_NAME] = PricedAs("openai", settings.openai_model)
    if not llms:
        from pipeline import local_engines
        local, llm_prices = local_engines.local_llm(settings, persona, system_prompt, max_tokens, cerebras_model)
        llms.append(local)
    llm = LLMSwitcher(llms=llms, strategy_type=RetryTurnFailover)
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
    failover: RetryTurnFailover = llm.strategy  # type: ignore[assignment]
    meter = MeterConfig(stt=stt_price, tts=tts_price, llms=llm_prices, fallback_reasons=failover.reasons)
    return CallServices(stt=stt, llm=llm, tts=tts, failover=failover, meter_config=meter)
