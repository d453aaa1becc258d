"""Which engine runs each service, decided from settings alone.

Each vendor falls back to its local engine independently when its key is
absent, so a deployment can, say, pay for ElevenLabs and transcribe locally.
`build_services` and the room/UI both ask here, so what a call runs and what
the page says it runs cannot disagree.
"""

from __future__ import annotations

from typing import Literal

from agent.settings import Settings

SttEngine = Literal["deepgram", "whisper-local"]
TtsEngine = Literal["elevenlabs", "piper-local"]
#: A vendor chain ("cerebras+openai": Cerebras, failing over to OpenAI), a local OpenAI-compatible
#: server (LLM_BASE_URL), or the offline demo script.
LlmEngine = Literal["cerebras+openai", "cerebras", "openai", "openai-compatible-local", "script-local"]


def stt_engine(settings: Settings) -> SttEngine:
    return "deepgram" if settings.deepgram_api_key else "whisper-local"


def tts_engine(settings: Settings) -> TtsEngine:
    return "elevenlabs" if settings.elevenlabs_api_key else "piper-local"


def vendor_llms(settings: Settings) -> list[str]:
    """The vendor LLMs with a key, in failover order; empty means a local LLM answers."""
    return [name for name, key in (("cerebras", settings.cerebras_api_key), ("openai", settings.openai_api_key))
            if key]


def llm_engine(settings: Settings) -> LlmEngine:
    vendors = vendor_llms(settings)
    if vendors:
        return "+".join(vendors)  # type: ignore[return-value]
    return "openai-compatible-local" if settings.llm_base_url else "script-local"


def engines(settings: Settings) -> dict[str, str]:
    """{"stt": ..., "llm": ..., "tts": ...} for the room/UI to show."""
    return {"stt": stt_engine(settings), "llm": llm_engine(settings), "tts": tts_engine(settings)}


def is_local(engine: str) -> bool:
    """Local engines cost nothing; their usage is priced as an estimate of the vendor's charge."""
    return engine.endswith("-local")
