"""The embedded default: with no keys, local engines hear, answer and speak, and are metered.

Real engines throughout (faster-whisper on the packaged Whisper base weights,
Piper with the packaged voice, the offline script behind the real openai SDK);
nothing is downloaded. Speech is checked by ear the only way a test can: what
Piper says, Whisper must hear as the same words.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import wave
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import STTUsageMetricsData, TTSUsageMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test
from pipecat.workers.runner import WorkerRunner

from agent.accounts.personas import STARTER_PERSONAS
from agent.books.costs import CallCostTracker
from agent.books.events import Source
from agent.engines import engines
from agent.memory.prompt import count_tokens
from agent.settings import Settings
from engines import model_files as models
from engines.offline_script import SCRIPT_MODEL, script_client_transport
from fakes import OpenAIFake, ServedApp
from pipeline import local_engines
from pipeline.services import build_services
from processors.metering import PricedAs, UsageMeter

DATA = Path(__file__).parent / "data"
BRAD = STARTER_PERSONAS[0]
PARAMS = {"enable_metrics": True, "enable_usage_metrics": True}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(expected: str, heard: str) -> float:
    """Word error rate: edit distance over the expected words."""
    ref, hyp = words(expected), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def chunks(pcm: bytes, rate: int, ms: int = 20) -> list[InputAudioRawFrame]:
    step = rate * ms // 1000 * 2
    return [InputAudioRawFrame(pcm[i:i + step], rate, 1) for i in range(0, len(pcm), step)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DATA_DIR with the joined model for the module: joining is tested on its own below."""
    path = tmp_path_factory.mktemp("data")
    models.ensure_whisper_model(path)
    return path


@pytest.fixture
def keyless(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir)


# -- choosing engines ------------------------------------------------------------------------

def test_each_vendor_falls_back_to_its_local_engine_on_its_own() -> None:
    none = Settings(_env_file=None)
    assert engines(none) == {"stt": "whisper-local", "llm": "script-local", "tts": "piper-local"}
    full = Settings(_env_file=None, deepgram_api_key="k", cerebras_api_key="k", openai_api_key="k",
                    elevenlabs_api_key="k")
    assert engines(full) == {"stt": "deepgram", "llm": "cerebras+openai", "tts": "elevenlabs"}
    mixed = Settings(_env_file=None, elevenlabs_api_key="k", openai_api_key="k", llm_base_url="http://127.0.0.1:1/v1",
                     llm_model="m")
    assert engines(mixed) == {"stt": "whisper-local", "llm": "openai", "tts": "elevenlabs"}
    server = Settings(_env_file=None, llm_base_url="http://127.0.0.1:11434/v1/", llm_model="llama3.2")
    assert engines(server)["llm"] == "openai-compatible-local" and server.llm_base_url.endswith("/v1")
    with pytest.raises(ValueError, match="LLM_MODEL is required"):
        Settings(_env_file=None, llm_base_url="http://127.0.0.1:11434/v1")
    with pytest.raises(ValueError, match="LLM_BASE_URL must be an http"):
        Settings(_env_file=None, llm_base_url="127.0.0.1:11434", llm_model="m")


# -- the Whisper model, joined from two packages -----------------------------------------------

def test_whisper_model_is_joined_verified_once_and_reused(tmp_path: Path) -> None:
    folder = models.ensure_whisper_model(tmp_path)
    model = folder / "model.bin"
    assert folder == tmp_path / "models" / "whisper-base"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == models.WHISPER_BASE_SHA256
    assert {p.name for p in folder.iterdir()} == {"model.bin", "assembled.json", *models.WHISPER_BASE_EXTRAS}
    written = model.stat().st_mtime_ns
    started = time.perf_counter()
    assert models.ensure_whisper_model(tmp_path) == folder
    assert time.perf_counter() - started < 0.05 and model.stat().st_mtime_ns == written
    with model.open("r+b") as damaged:  # a truncated file is not taken for the model
        damaged.truncate(1000)
    models.ensure_whisper_model(tmp_path)
    assert model.stat().st_size > 100_000_000


def test_unexpected_weights_or_a_missing_package_fail_clearly(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "WHISPER_BASE_SHA256", "0" * 64)
    with pytest.raises(models.ModelAssemblyError, match=r"sha256 905e5bf8.*expected 0000.*reinstall"):
        models.ensure_whisper_model(tmp_path)
    left = list(models.whisper_model_dir(tmp_path).iterdir())
    assert left == [], left  # no model, no stamp, no half-written file
    monkeypatch.setattr(models, "WHISPER_BASE_PARTS",
                        (("callmeback_no_such_part", "no-such-part==1.0", "model.bin.part1"),))
    with pytest.raises(models.ModelAssemblyError, match="pip install no-such-part==1.0.*DEEPGRAM_API_KEY"):
        models.ensure_whisper_model(tmp_path)


# -- the offline script, through the real openai SDK -------------------------------------------

async def test_script_answers_as_the_persona_through_the_openai_sdk_with_usage() -> None:
    client = openai.AsyncOpenAI(api_key="offline", base_url="http://offline-script.invalid/v1", max_retries=0,
                                http_client=httpx.AsyncClient(transport=script_client_transport()))
    system = {"role": "system", "content": BRAD.core_prompt}
    async with client:
        async def say(*texts: str) -> tuple[str, object]:
            messages = [system] + [{"role": "user", "content": t} for t in texts]
            stream = await client.chat.completions.create(model="m", messages=messages, stream=True,
                                                          stream_options={"include_usage": True})
            parts, usage = [], None
            async for chunk in stream:
                parts += [c.delta.content or "" for c in chunk.choices]
                usage = chunk.usage or usage
            return "".join(parts), usage

        hello, usage = await say("Hello there!")
        assert "Brad" in hello and hello.endswith("?")
        assert usage.completion_tokens == count_tokens(hello) and usage.prompt_tokens > count_tokens(BRAD.core_prompt)
        name, _ = await say("Hello!", "My name is Alice and I work as a software engineer.")
        assert "Alice" in name and name.endswith("?")
        asked, _ = await say("Wait, are you a real person or a bot?")
        assert "offline demo script" in asked
        story, _ = await say("I went surfing at the pier yesterday")
        assert "surfing" in story and story.endswith("?")
        full = await client.chat.completions.create(model="m", messages=[system, {"role": "user", "content": "bye"}])
        assert "Bye" in full.choices[0].message.content and full.usage.total_tokens > 0


async def test_llm_base_url_wins_over_the_script_and_talks_to_that_server(keyless: Settings) -> None:
    fake = OpenAIFake(api_key="local-key", default_reply="Hi from the local model.")
    async with ServedApp(fake.app) as served:
        settings = keyless.model_copy(update={"llm_base_url": served.http_url + "/v1", "llm_model": "llama3.2",
                                              "llm_api_key": "local-key", "deepgram_api_key": "k",
                                              "elevenlabs_api_key": "k"})
        services = build_services(settings, BRAD, BRAD.core_prompt)
        (route,) = services.llm.routes
        assert services.meter_config.llms == {
            "local-llm": PricedAs("cerebras", settings.cerebras_model, Source.ESTIMATED)}
        reply = await route.client.chat.completions.create(model=route.model,
                                                          messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hi from the local model."
        assert fake.requests[0]["model"] == "llama3.2"


# -- Piper speaks, Whisper hears ---------------------------------------------------------------

async def test_piper_voice_is_found_on_disk_and_never_downloaded(keyless: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("Piper tried to download a voice")

    monkeypatch.setattr("pipecat.services.piper.tts.download_voice", no_download)
    tts, price = local_engines.local_tts(keyless, "eleven_flash_v2_5")
    assert price == PricedAs("elevenlabs", "eleven_flash_v2_5", Source.ESTIMATED)
    assert tts._voice.config.sample_rate == 22050
    again, _ = local_engines.local_tts(keyless, "eleven_flash_v2_5")
    assert again._voice is tts._voice  # one voice in memory per process, not one per call


async def synthesise(keyless: Settings, text: str, rate: int) -> tuple[bytes, list[Frame]]:
    tts, _ = local_engines.local_tts(keyless, keyless.elevenlabs_model)
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame(text)],
                             pipeline_params=PipelineParams(audio_out_sample_rate=rate, **PARAMS))
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio and {f.sample_rate for f in audio} == {rate}
    return b"".join(f.audio for f in audio), down


async def transcribe(keyless: Settings, pcm: bytes, rate: int) -> tuple[str, list[Frame]]:
    """Through the local STT service as a call uses it: VAD-bounded segments at the call's rate."""
    stt, _ = local_engines.local_stt(keyless)
    frames = [VADUserStartedSpeakingFrame(), *chunks(pcm, rate), VADUserStoppedSpeakingFrame()]
    down, _ = await run_test(stt, frames_to_send=frames,
                             pipeline_params=PipelineParams(audio_in_sample_rate=rate, **PARAMS))
    return " ".join(f.text for f in down if isinstance(f, TranscriptionFrame)), down


def usage(frames: list[Frame], kind: type) -> list:
    return [d for f in frames if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, kind)]


@pytest.mark.parametrize("rate", [16000, 8000])
async def test_what_piper_says_whisper_hears_word_for_word(keyless: Settings, rate: int) -> None:
    text = "Thanks for calling. I can take your order now, so please tell me what you would like tonight."
    pcm, spoken = await synthesise(keyless, text, rate)
    assert [u.value for u in usage(spoken, TTSUsageMetricsData)] == [len(text)]
    heard, transcribed = await transcribe(keyless, pcm, rate)
    assert wer(text, heard) <= 0.1, heard
    (seconds,) = [u.value.audio_seconds for u in usage(transcribed, STTUsageMetricsData)]
    assert seconds == pytest.approx(len(pcm) / 2 / rate + 0.5, abs=0.01)  # the segment plus its padding


@pytest.mark.parametrize("wav, said", [("hello.wav", "Hi Brad, how are you doing today?"),
                                       ("dinner.wav", "What did you have for dinner last night?")])
async def test_phone_audio_at_8khz_is_transcribed(keyless: Settings, wav: str, said: str) -> None:
    pcm, rate = read_wav(DATA / wav)
    assert rate == 8000
    heard, _ = await transcribe(keyless, pcm, rate)
    assert words(heard) == words(said)


# -- a whole keyless turn, metered --------------------------------------------------------------

class Tap(FrameProcessor):
    """Keeps the frames a test looks at, with when they passed."""

    def __init__(self, kinds: tuple[type, ...]) -> None:
        super().__init__()
        self.kinds = kinds
        self.seen: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, self.kinds):
            self.seen.append((time.perf_counter(), frame))
        await self.push_frame(frame, direction)

    def frames(self, kind: type) -> list:
        return [f for _, f in self.seen if isinstance(f, kind)]


async def test_keyless_call_hears_answers_speaks_and_meters_estimates(keyless: Settings) -> None:
    rate = 8000  # a phone call
    services = build_services(keyless, BRAD, BRAD.core_prompt)
    assert [type(s).__name__ for s in (services.stt, services.tts)] == ["LocalWhisperSTTService", "SharedVoicePiperTTSService"]
    assert [r.model for r in services.llm.routes] == [SCRIPT_MODEL]
    user, assistant = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    tracker = CallCostTracker("call-local", "demo", keyless.price_book)
    heard, spoken = Tap((TranscriptionFrame,)), Tap((TTSAudioRawFrame, TTSStoppedFrame))
    worker = PipelineWorker(
        Pipeline([services.stt, heard, user, services.llm, services.tts, spoken,
                  UsageMeter(tracker, services.meter_config), assistant]),
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate, **PARAMS))
    speech, _ = read_wav(DATA / "hello.wav")
    said_at: list[float] = []

    async def caller() -> None:
        await asyncio.sleep(0.3)
        for frame in chunks(bytes(rate) + speech, rate) + ["end of speech"] + chunks(bytes(rate * 4), rate):
            if isinstance(frame, str):
                said_at.append(time.perf_counter())
                continue
            await worker.queue_frame(frame)
            await asyncio.sleep(0.01)  # about twice real time
            if spoken.frames(TTSStoppedFrame):
                break
        for _ in range(100):
            if spoken.frames(TTSStoppedFrame):
                break
            await asyncio.sleep(0.1)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), caller()), 40)

    assert words(" ".join(f.text for f in heard.frames(TranscriptionFrame))) == words("Hi Brad, how are you doing today?")
    reply = "I'm doing great, thanks for asking! How about you?"
    reply_pcm = b"".join(f.audio for f in spoken.frames(TTSAudioRawFrame))
    assert wer(reply, (await transcribe(keyless, reply_pcm, rate))[0]) <= 0.1
    first_audio = next(t for t, f in spoken.seen if isinstance(f, TTSAudioRawFrame))
    assert first_audio - said_at[0] < 5.0  # measured about 1 s on 2 cores

    events = tracker.events
    assert {(e.service, e.vendor, e.model) for e in events} == {
        ("stt", "deepgram", keyless.deepgram_model), ("llm", "cerebras", keyless.cerebras_model),
        ("tts", "elevenlabs", keyless.elevenlabs_model)}
    assert {e.source for e in events} == {Source.ESTIMATED.value}
    tts_chars = sum(e.quantity for e in events if e.service == "tts")
    assert len(reply) - 2 <= tts_chars <= len(reply)  # sentence by sentence, the space between dropped
    output_tokens = sum(e.quantity for e in events if e.unit == "output_token")
    assert output_tokens == count_tokens(reply)
    assert sum(e.quantity for e in events if e.service == "stt") > Decimal("2.5")
    assert tracker.subtotal_micros > 0
