"""A simulated phone caller that holds a conversation and times it.

It is the tests' `TwilioCaller` (Twilio Media Streams, 20 ms μ-law frames at
real time, real-time playback of what it hears), plus what the bench needs:

- the moments the persona *starts speaking*, as the caller hears them (the play
  time of the first loud 20 ms window after a quiet gap), found incrementally
  per received chunk instead of re-scanning the whole playback;
- how late its own frames left (its sender can lag when the machine is busy,
  and that must not be blamed on the server);
- how often its playback runs dry inside persona speech, as a caller hears it:
  each received chunk that carries speech and continues a reply (it arrives
  less than `NEW_REPLY_GAP` after the queued audio ran out) is late by how long
  the queue had been empty (`heard_lateness`). This is the server-side probe's
  outbound measure taken at the far end, after the socket and the caller's own
  event loop; silence padding after a reply is not counted (nobody hears it);
- a conversation loop: wait for the greeting, then say a sentence, wait for the
  reply to be heard out, pause, and again, recording each turn's latency
  (caller's last voiced frame → persona's first audio heard).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakes import TwilioCaller, read_wav_8k

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
FRAME_SECONDS = 0.020
VOICED_RMS = 500.0  # the Deepgram fake's own speech threshold
HEARD_RMS = 300.0  # the caller's threshold for persona speech
NEW_SPEECH_GAP = 0.3  # quiet longer than this separates two utterances
REPLY_TIMEOUT = 10.0
NEW_REPLY_GAP = 0.5  # the probe's rule: a longer gap starts a reply (turn latency, not lateness)


@dataclass(frozen=True)
class Utterance:
    """A WAV the caller says, and where its last voiced frame ends."""

    name: str
    pcm: bytes
    tail_seconds: float  # from the end of the last voiced frame to the end of the audio

    @classmethod
    def load(cls, name: str) -> "Utterance":
        pcm = read_wav_8k(DATA / f"{name}.wav")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        n = len(samples) // 160
        rms = np.sqrt(np.mean(samples[: n * 160].reshape(n, 160) ** 2, axis=1))
        last = int(np.flatnonzero(rms >= VOICED_RMS)[-1])
        frames = -(-len(samples) // 160)  # the caller pads the last frame
        return cls(name, pcm, (frames - last - 1) * FRAME_SECONDS)


UTTERANCES_NAMES = ("hello", "dinner", "ocean")


@dataclass
class CallRecord:
    """What one call measured (times are `time.monotonic()`, shared by all processes on Linux)."""

    started: float  # before the webhook (ours) or the WebSocket connect (bare)
    connected: float | None = None
    greeting_heard: float | None = None
    turns: list[tuple[float, float]] = field(default_factory=list)  # (heard at, latency s)
    missed_turns: int = 0
    turns_done: int = 0  # turns whose reply has been heard out (or talked over): a call past its first turn
    overlapped_turns: int = 0
    error: str | None = None


class BenchCaller(TwilioCaller):
    def __init__(self, *args: Any, send_lateness: list[tuple[float, float]],
                 heard_lateness: list[tuple[float, float, float, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_lateness = send_lateness
        self._heard_lateness = heard_lateness  # (arrived at, s dry, chunk s, id(caller))
        self._best_phase = float("inf")
        self.onsets: list[float] = []  # play times at which the persona started speaking
        self.loud_until = 0.0  # play time at which the last loud audio heard so far ends
        self.speech_arrived_at = 0.0  # when the last chunk carrying persona speech arrived
        self._onset = asyncio.Event()

    async def _send(self, msg: dict[str, Any]) -> None:
        if msg.get("event") == "media":
            now = time.monotonic()
            phase = now - FRAME_SECONDS * int(msg["media"]["chunk"])
            self._best_phase = min(self._best_phase, phase)
            self._send_lateness.append((now, phase - self._best_phase))
        await super()._send(msg)

    def _on_message(self, raw: str | bytes) -> None:
        arrived, before = time.monotonic(), len(self.playback.pieces)
        queued_until = self.playback.pieces[-1].end if self.playback.pieces else None
        super()._on_message(raw)
        if len(self.playback.pieces) == before:
            return
        played = self.playback.pieces[-1]
        loud = np.flatnonzero(played.window_rms() >= HEARD_RMS)
        if not len(loud):
            return
        self.speech_arrived_at = arrived
        if queued_until is not None and arrived - queued_until < NEW_REPLY_GAP:
            self._heard_lateness.append((arrived, max(0.0, arrived - queued_until), played.end - played.start,
                                        id(self)))
        onset = played.start + int(loud[0]) * FRAME_SECONDS
        if onset - self.loud_until > NEW_SPEECH_GAP:
            self.onsets.append(onset)
            self._onset.set()
        self.loud_until = played.start + (int(loud[-1]) + 1) * FRAME_SECONDS

    async def next_onset(self, after: int, timeout: float) -> float | None:
        """The play time of speech onset number `after` (0-based), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while len(self.onsets) <= after:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed_at is not None:
                return None
            self._onset.clear()
            try:
                await asyncio.wait_for(self._onset.wait(), left)
            except asyncio.TimeoutError:
                return None
        return self.onsets[after]

    async def heard_out(self, quiet: float = 0.5) -> None:
        """Wait until the persona has stopped talking (nothing loud queued or heard for `quiet` s)."""
        while time.monotonic() < self.loud_until + quiet and self.closed_at is None:
            await asyncio.sleep(0.05)


async def converse(caller: BenchCaller, record: CallRecord, utterances: list[Utterance], seed: int) -> None:
    """Greeting, then turns until cancelled. Failures are recorded, not raised."""
    rng = random.Random(seed)
    try:
        onset = await caller.next_onset(0, REPLY_TIMEOUT)
        if onset is None:
            record.error = "no greeting heard"
            return
        record.greeting_heard = onset
        await caller.heard_out()
        turn = seed
        while caller.closed_at is None:
            utterance = utterances[turn % len(utterances)]
            turn += 1
            heard_so_far = len(caller.onsets)
            await caller.say_pcm(utterance.pcm)
            last_voice = caller.said[-1][1] - utterance.tail_seconds
            if len(caller.onsets) > heard_so_far and caller.onsets[heard_so_far] < last_voice:
                # The persona answered a pause inside the sentence and was talked over: a real
                # thing on a phone line, but not a clean turn to time.
                record.overlapped_turns += 1
                await caller.heard_out(quiet=1.5)
                record.turns_done += 1
            else:
                onset = await caller.next_onset(heard_so_far, REPLY_TIMEOUT)
                if onset is None:
                    record.missed_turns += 1
                else:
                    record.turns.append((onset, onset - last_voice))
                    await caller.heard_out()
                    record.turns_done += 1
            await asyncio.sleep(rng.uniform(0.3, 0.8))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken call is a result, not a crash of the bench
        record.error = f"{exc.__class__.__name__}: {exc}"
