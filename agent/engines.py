"""Which engine runs each service, decided from settings alone.

Each vendor falls back to its local engine independently when its key is
absent, so a deployment can, say, pay for ElevenLabs and transcribe locally.
`build_services` and the room/UI both ask here, so what a call runs and what
the page says it runs cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from agent.settings import Settings
from engines.local_llama import LlamaTransport, shared_transport
from engines.model_files import ModelChoice, shipped_model

SttEngine = Literal["deepgram", "whisper-local"]
TtsEngine = Literal["elevenlabs", "piper-local"]
#: A vendor chain ("cerebras+openai": Cerebras, failing over to OpenAI), a local OpenAI-compatible
#: server (LLM_BASE_URL), a model in this process (LOCAL_LLM=llama-cpp), or the offline demo script.
LlmEngine = Literal["cerebras+openai", "cerebras", "openai", "openai-compatible-local", "llama-local",
                    "script-local"]


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
    if settings.llm_base_url:
        return "openai-compatible-local"
    return "llama-local" if settings.local_llm == "llama-cpp" else "script-local"


def prompt_budgets(settings: Settings) -> tuple[int, int]:
    """(system prompt, conversation) token budgets for a call.

    A model in this process reads its whole prompt on the CPU before it says a
    word, so its budget (LOCAL_LLM_PROMPT_TOKENS) caps both: five eighths for the
    persona and memory, the rest for the conversation.
    """
    prompt, conversation = settings.prompt_token_budget, settings.conversation_token_budget
    if llm_engine(settings) == "llama-local":
        local = settings.local_llm_prompt_tokens
        prompt, conversation = min(prompt, local * 5 // 8), min(conversation, local * 3 // 8)
    return max(prompt, 200), max(conversation, 100)


def engines(settings: Settings) -> dict[str, str]:
    """{"stt": ..., "llm": ..., "tts": ...} for the room/UI to show."""
    return {"stt": stt_engine(settings), "llm": llm_engine(settings), "tts": tts_engine(settings)}


def is_local(engine: str) -> bool:
    """Local engines cost nothing; their usage is priced as an estimate of the vendor's charge."""
    return engine.endswith("-local")


def local_model_choice(settings: Settings) -> ModelChoice:
    """LOCAL_LLM_MODEL_PATH's GGUF file and digest, else the shipped model."""
    if settings.local_llm_model_path is None:
        return shipped_model()
    path = Path(settings.local_llm_model_path)
    return ModelChoice(path, settings.local_llm_model_sha256, path.stem)


def in_process_llm(settings: Settings) -> LlamaTransport:
    """The model LOCAL_LLM=llama-cpp runs, loaded once per process, as an httpx transport."""
    return shared_transport(local_model_choice(settings), settings.local_llm_context_tokens,
                            settings.local_llm_threads, settings.local_llm_prompt_tokens)
