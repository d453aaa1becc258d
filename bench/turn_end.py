"""End of speech → the persona's reply, in the room, with and without the transcript's second opinion.

    .venv/bin/python -m bench.turn_end      # about two minutes

Each sentence is said in the packaged Piper voice into the room (aiortc, Opus,
16 kHz), after 4 s of quiet and followed by 6 s of it, with the Deepgram fake
hearing the same words. Measured: from the end of the speech to the first
request the LLM fake receives (the moment the turn ended; the reply's first
audio follows it by the LLM and TTS fakes' fixed latency). "Before" is
Pipecat's smart-turn strategy alone (`TranscriptAwareTurnStop` told that no
transcript sounds finished), "after" ours. It reports; it asserts nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr

SENTENCES = {  # text: whether it is finished
    "What did you do this weekend?": True,
    "What are you up to this weekend?": True,
    "I'm feeling great today.": True,
    "Hi there, how are you doing today?": True,
    "I went to the store and": False,
    "So I was thinking that maybe": False,
}
LEAD_S, TAIL_S = 4.0, 6.0


def _wav(path: Path, text: str, rate: int) -> float:
    """Writes the caller's audio; returns when the speech ends, in seconds from the start."""
    from pipeline.local_engines import shared_piper_voice

    voice = shared_piper_voice()
    pcm = np.frombuffer(b"".join(c.audio_int16_bytes for c in voice.synthesize(text)), dtype=np.int16)
    speech = soxr.resample(pcm.astype(np.float32), voice.config.sample_rate, rate).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.concatenate([np.zeros(int(LEAD_S * rate), np.int16), speech,
                                        np.zeros(int(TAIL_S * rate), np.int16)]).tobytes())
    return LEAD_S + len(speech) / rate


async def _turn_end(text: str) -> float | None:
    """Seconds from the end of the caller's speech to the LLM's first request, or None if none came."""
    from pipeline.webrtc import WEBRTC_RATE
    from tests.test_webrtc_room import RoomRig

    tmp = Path(tempfile.mkdtemp(prefix="turn-end-"))
    speech_ends = _wav(tmp / "said.wav", text, WEBRTC_RATE)
    with RoomRig(tmp, [text], ["Sounds good!"]) as rig:
        answered = await rig.speak_until_answered(tmp / "said.wav", timeout=LEAD_S + 4 + TAIL_S)
    return None if answered is None else answered - speech_ends


async def _measure() -> dict[str, dict[str, float | None]]:
    import pipeline.turns as turns

    overrule = turns.sounds_finished
    figures: dict[str, dict[str, float | None]] = {}
    for text in SENTENCES:
        figures[text] = {}
        for mode in ("before", "after"):
            turns.sounds_finished = (lambda _t: False) if mode == "before" else overrule
            figures[text][mode] = await _turn_end(text)
    turns.sounds_finished = overrule
    return figures


def main() -> None:
    from loguru import logger

    logger.remove()
    figures = asyncio.run(_measure())
    print(f"{'sentence':40} {'finished':>8} {'before':>8} {'after':>8}")
    for text, finished in SENTENCES.items():
        row = figures[text]
        cells = [f"{row[m]:.2f} s" if row[m] is not None else "—" for m in ("before", "after")]
        print(f"{text:40} {'yes' if finished else 'no':>8} {cells[0]:>8} {cells[1]:>8}")
    for label, wanted in (("finished", True), ("unfinished", False)):
        for mode in ("before", "after"):
            values = [figures[t][mode] for t, f in SENTENCES.items() if f == wanted and figures[t][mode] is not None]
            if values:
                print(f"median, {label} sentences, {mode}: {statistics.median(values):.2f} s")


if __name__ == "__main__":
    main()
