"""One Silero and one smart-turn session per process: calls share the model, never each other's state."""

from __future__ import annotations

import asyncio
import threading
import wave
from pathlib import Path

import numpy as np
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer

from pipeline.models import SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer, user_turn_params

DATA = Path(__file__).parent / "data"
RATE = 8000  # phone audio, as the calls hear it


def _speech() -> bytes:
    with wave.open(str(DATA / "hello.wav")) as w:
        assert w.getframerate() == RATE
        return w.readframes(w.getnframes())


def _windows(pcm: bytes, size: int) -> list[bytes]:
    step = size * 2
    return [pcm[i:i + step] for i in range(0, len(pcm) - step + 1, step)]


def _at_rate(analyzer: SileroVADAnalyzer) -> SileroVADAnalyzer:
    analyzer.set_sample_rate(RATE)  # as the pipeline does at its start
    return analyzer


def _confidences(analyzer: SileroVADAnalyzer, windows: list[bytes]) -> list[float]:
    return [analyzer.voice_confidence(w) for w in windows]


def test_two_calls_interleaved_on_one_session_score_as_if_each_had_its_own_model():
    speech = _speech()
    noise = (np.random.default_rng(7).normal(0, 300, len(speech) // 2)).astype(np.int16).tobytes()
    a, b = _at_rate(SharedSileroVADAnalyzer()), _at_rate(SharedSileroVADAnalyzer())
    assert a._model.session is b._model.session  # one model in memory for both calls
    size = a.num_frames_required()
    speech_windows, noise_windows = _windows(speech, size), _windows(noise, size)
    interleaved_a, interleaved_b = [], []
    for sw, nw in zip(speech_windows, noise_windows):  # the two calls' audio arrives in turns
        interleaved_a.append(a.voice_confidence(sw))
        interleaved_b.append(b.voice_confidence(nw))
    alone_a = _confidences(_at_rate(SileroVADAnalyzer()), speech_windows)
    alone_b = _confidences(_at_rate(SileroVADAnalyzer()), noise_windows)
    assert np.allclose(interleaved_a, alone_a, atol=1e-5) and np.allclose(interleaved_b, alone_b, atol=1e-5)
    assert max(interleaved_a) > 0.9 and max(interleaved_b) < 0.5  # speech heard in one call, not the other


async def test_smart_turn_predicts_as_pipecats_own_and_runs_on_the_shared_pool():
    audio = np.frombuffer(_speech(), dtype=np.int16).astype(np.float32) / 32768
    shared, stock = SharedSmartTurnAnalyzer(sample_rate=RATE), LocalSmartTurnAnalyzerV3(sample_rate=RATE)
    ours, theirs = shared._predict_endpoint(audio), stock._predict_endpoint(audio)
    assert ours["prediction"] == theirs["prediction"]
    assert abs(ours["probability"] - theirs["probability"]) < 1e-4
    names = await asyncio.get_running_loop().run_in_executor(shared._model_executor,
                                                             lambda: threading.current_thread().name)
    assert names.startswith("smart-turn")
    assert SharedSmartTurnAnalyzer()._model_executor is shared._model_executor  # one pool, not a thread per call
    await shared.cleanup()  # a call ending does not shut the pool down for the others
    assert not shared._model_executor._shutdown


def test_each_call_gets_its_own_analyzers():
    first, second = user_turn_params(), user_turn_params()
    assert first.vad_analyzer is not second.vad_analyzer
    assert first.user_turn_strategies.stop[0]._turn_analyzer is not second.user_turn_strategies.stop[0]._turn_analyzer
