"""A phone's side of the audio: G.711 μ-law, 8 kHz WAVs, and what the caller has heard so far.

The fake Twilio caller (fakes/twilio_caller.py) plays the server's audio at
real time, as a handset would: each chunk starts when the one before it has
played, a `clear` cuts what has not, and tests ask what was heard by a given
moment (speech stretches above a loudness threshold).
"""

from __future__ import annotations

import warnings
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

with warnings.catch_warnings():  # deprecated in 3.11-3.12, provided by audioop-lts on 3.13+
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms of 8 kHz audio: one Twilio media frame
FRAME_SECONDS = FRAME_SAMPLES / RATE
SILENCE_ULAW = b"\xff" * FRAME_SAMPLES


def pcm_to_ulaw(pcm: bytes) -> bytes:
    """16-bit PCM -> G.711 μ-law (one byte per sample)."""
    return audioop.lin2ulaw(pcm, 2)


def ulaw_to_pcm(ulaw: bytes) -> bytes:
    """G.711 μ-law -> 16-bit PCM."""
    return audioop.ulaw2lin(ulaw, 2)


def read_wav_8k(path: str | Path) -> bytes:
    """Read any PCM WAV and return 16-bit mono 8 kHz PCM."""
    with wave.open(str(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        data = w.readframes(w.getnframes())
    if width == 1:  # 8-bit WAV samples are unsigned
        data = audioop.bias(data, 1, -128)
    if width != 2:
        data = audioop.lin2lin(data, width, 2)
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    elif channels != 1:
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
        data = samples.mean(axis=1).astype("<i2").tobytes()
    if rate != RATE:
        data, _ = audioop.ratecv(data, 2, 1, rate, RATE, None)
    return data


@dataclass(frozen=True)
class HeardSegment:
    """A stretch of played-out audio above the speech threshold (``time.monotonic()``)."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class _Played:
    """Audio queued for playback: starts at ``start`` (monotonic), may be cut short by ``clear``."""

    start: float
    pcm: bytes
    _rms: np.ndarray | None = None

    @property
    def end(self) -> float:
        return self.start + len(self.pcm) / (2 * RATE)

    def window_rms(self) -> np.ndarray:
        """RMS of each whole 20 ms window (computed once)."""
        if self._rms is None:
            samples = np.frombuffer(self.pcm, dtype="<i2").astype(np.float64)
            n = len(samples) // FRAME_SAMPLES
            windows = samples[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
            self._rms = np.sqrt(np.mean(windows**2, axis=1)) if n else np.zeros(0)
        return self._rms


class Playback:
    """Audio queued for playback at real time (``time.monotonic()``), cut short by ``clear``."""

    def __init__(self) -> None:
        self.pieces: list[_Played] = []

    def played_by(self, now: float) -> float:
        """When everything queued so far will have played."""
        return max(now, self.pieces[-1].end) if self.pieces else now

    def queue(self, pcm: bytes, now: float) -> None:
        self.pieces.append(_Played(self.played_by(now), pcm))

    def cut(self, now: float) -> None:
        """Drop what has not played by ``now`` (a ``clear``, or the end of the call)."""
        kept = []
        for p in self.pieces:
            if p.end <= now:
                kept.append(p)
            elif p.start < now:
                kept.append(_Played(p.start, p.pcm[: int((now - p.start) * RATE) * 2]))
        self.pieces = kept

    def heard_chunks(self, now: float) -> list[tuple[float, bytes]]:
        """(play start, 16-bit 8 kHz PCM) of each piece, as far as it has played by ``now``."""
        out = []
        for p in self.pieces:
            if p.start >= now:
                break
            n = min(len(p.pcm), int((now - p.start) * RATE) * 2)
            out.append((p.start, p.pcm[:n]))
        return out

    def speech_segments(self, now: float, threshold: float, gap: float) -> list[HeardSegment]:
        """Stretches played by ``now`` louder than ``threshold`` (RMS), merging gaps shorter than ``gap``."""
        segments: list[HeardSegment] = []
        for p in self.pieces:
            if p.start >= now:
                break
            played_windows = int((now - p.start) / FRAME_SECONDS)
            for i in np.flatnonzero(p.window_rms()[:played_windows] >= threshold):
                t0 = p.start + int(i) * FRAME_SECONDS
                t1 = t0 + FRAME_SECONDS
                if segments and t0 - segments[-1].end < gap:
                    segments[-1] = HeardSegment(segments[-1].start, t1)
                else:
                    segments.append(HeardSegment(t0, t1))
        return segments
