"""Turns that end when the caller is done: a finished sentence is answered without smart-turn's wait.

Smart-turn counts its 3 s "incomplete" wait in audio, so the room caller here sends less silence than
that and then nothing: the turn can end only by the transcript overruling smart-turn, or, after 5 s of
wall time, by Pipecat's stop timeout, which the server logs and the test looks for. (On 8 kHz phone
audio smart-turn judges nearly everything complete; the room's 16 kHz is where it waits.)"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soxr
from loguru import logger

from pipeline.call import TURN_STOP_TIMEOUT_LOG
from pipeline.turns import sounds_finished
from tests.test_webrtc_room import RoomRig


@pytest.mark.parametrize("text, finished", [
    ("I'm feeling great today.", True), ("What did you do this weekend?", True), ("Hi there, how are you?", True),
    ("I went to the store and", False), ("So I was thinking that maybe…", False), ("Well.", False),
    ("I went to the store and.", False), ("Yes.", False)])
def test_what_sounds_finished(text, finished):
    assert sounds_finished(text) is finished


def _said_by_piper(tmp_path: Path, text: str) -> Path:
    """`text` in the packaged Piper voice, at the room's rate, after 4 s of quiet (the greeting plays)
    and followed by 2 s of it: less than smart-turn's 3 s, then the microphone track ends."""
    from pipeline.local_engines import shared_piper_voice
    from pipeline.webrtc import WEBRTC_RATE

    voice = shared_piper_voice()
    pcm = np.frombuffer(b"".join(c.audio_int16_bytes for c in voice.synthesize(text)), dtype=np.int16)
    speech = soxr.resample(pcm.astype(np.float32), voice.config.sample_rate, WEBRTC_RATE).astype(np.int16)
    quiet = np.zeros(WEBRTC_RATE, dtype=np.int16)
    path = tmp_path / "said.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(WEBRTC_RATE)
        out.writeframes(np.concatenate([quiet] * 4 + [speech] + [quiet] * 2).tobytes())
    return path


async def _how_the_turn_ended(tmp_path: Path, text: str) -> tuple[bool, bool]:
    """(answered, ended by Pipecat's stop timeout) for a room caller who says `text`."""
    logs: list[str] = []
    sink = logger.add(lambda m: logs.append(m.record["message"]), level="INFO")
    try:
        with RoomRig(tmp_path, [text], ["Sounds good!"]) as rig:  # the turn ends one way or the other in 20 s
            answered = await rig.speak_until_answered(_said_by_piper(tmp_path, text), timeout=20) is not None
    finally:
        logger.remove(sink)
    return answered, any(TURN_STOP_TIMEOUT_LOG in line for line in logs)


async def test_a_finished_question_is_answered_without_waiting_out_smart_turn(tmp_path):
    answered, timed_out = await _how_the_turn_ended(tmp_path, "What did you do this weekend?")
    assert answered and not timed_out  # the transcript ended the turn, not a timer


async def test_an_unfinished_sentence_still_gets_smart_turns_wait(tmp_path):
    answered, timed_out = await _how_the_turn_ended(tmp_path, "I went to the store and")
    assert answered and timed_out  # no strategy ended it: only Pipecat's stop timeout did
