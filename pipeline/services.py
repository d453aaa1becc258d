"""The vendors' Pipecat services, built from settings (every endpoint overridable)."""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.pipeline.llm_switcher import LLMSwitcher
from pipecat.services.cerebras.llm import CerebrasLLMService
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.services.openai.llm import OpenAILLMService

from agent.costs import Source
from agent.personas import Persona
from agent.settings import Settings
from pipeline.failover import RetryTurnFailover
from processors.metering import MeterConfig, PricedAs

CEREBRAS_NAME = "cerebras-llm"
OPENAI_NAME = "openai-llm"


@dataclass
class CallServices:
    stt: DeepgramSTTService
    llm: LLMSwitcher
    tts: ElevenLabsTTSService
    failover: RetryTurnFailover
    meter_config: MeterConfig


def _fail_fast(service: OpenAILLMService, timeout: float) -> None:
    # The SDK retries a 500 three times with backoff before Pipecat sees it; for
    # a live caller, failing over at once beats retrying the same vendor.
    service._client = service._client.with_options(max_retries=0, timeout=timeout)


def build_services(settings: Settings, persona: Persona, system_prompt: str, *, max_tokens: int = 300
                   ) -> CallServices:
    stt = DeepgramSTTService(
        api_key=settings.deepgram_api_key or "unset",
        base_url=settings.deepgram_base_url,
        settings=DeepgramSTTService.Settings(model=settings.deepgram_model),
        name="deepgram-stt",
    )
    cerebras_model = persona.llm_model or settings.cerebras_model
    cerebras = CerebrasLLMService(
        api_key=settings.cerebras_api_key or "unset",
        base_url=settings.cerebras_base_url,
        settings=CerebrasLLMService.Settings(model=cerebras_model, system_instruction=system_prompt,
                                             max_completion_tokens=max_tokens),
        name=CEREBRAS_NAME,
    )
    openai = OpenAILLMService(
        api_key=settings.openai_api_key or "unset",
        base_url=settings.openai_base_url,
        settings=OpenAILLMService.Settings(model=settings.openai_model, system_instruction=system_prompt,
                                           max_completion_tokens=max_tokens),
        name=OPENAI_NAME,
    )
    _fail_fast(cerebras, settings.llm_timeout_secs)
    _fail_fast(openai, settings.llm_timeout_secs)
    llm = LLMSwitcher(llms=[cerebras, openai], strategy_type=RetryTurnFailover)
    tts_model = persona.tts_model or settings.elevenlabs_model
    tts = ElevenLabsTTSService(
        api_key=settings.elevenlabs_api_key or "unset",
        url=settings.elevenlabs_base_url,
        settings=ElevenLabsTTSService.Settings(voice=persona.voice_id, model=tts_model),
        name="elevenlabs-tts",
    )
    failover: RetryTurnFailover = llm.strategy  # type: ignore[assignment]
    meter = MeterConfig(
        stt=PricedAs("deepgram", settings.deepgram_model, Source.MEASURED),
        tts=PricedAs("elevenlabs", tts_model, Source.VENDOR),
        llms={CEREBRAS_NAME: PricedAs("cerebras", cerebras_model), OPENAI_NAME: PricedAs("openai", settings.openai_model)},
        fallback_reasons=failover.reasons,
    )
    return CallServices(stt=stt, llm=llm, tts=tts, failover=failover, meter_config=meter)
