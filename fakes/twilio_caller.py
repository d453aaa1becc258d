"""A fake phone caller speaking Twilio Media Streams to our server's WebSocket.

It plays the part of Twilio on a ``<Connect><Stream>`` call: sends
``connected`` and ``start``, then streams 20 ms μ-law ``media`` frames at real
time *continuously* (silence when the caller is not talking, as a real call
does, so VAD and endpointing see the pauses). Audio the server sends back is
"played" at real time; ``mark`` messages are echoed once everything queued
before them has played, or at once when ``clear`` drops the queue.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from fakes.phone_audio import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    RATE,
    SILENCE_ULAW,
    HeardSegment,
    Playback,
    pcm_to_ulaw,
    read_wav_8k,
    ulaw_to_pcm,
)

__all__ = ["TwilioCaller", "HeardSegment", "read_wav_8k", "pcm_to_ulaw", "ulaw_to_pcm"]


class TwilioCaller:
    """One simulated call. Use ``async with TwilioCaller(...) as caller:``."""

    def __init__(
        self,
        ws_url: str,
        call_sid: str | None = None,
        account_sid: str = "AC" + "0" * 32,
        stream_sid: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        *,
        speech_rms_threshold: float = 300.0,
        segment_gap: float = 0.3,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.ws_url = ws_url
        self.call_sid = call_sid or "CA" + secrets.token_hex(16)
        self.account_sid = account_sid
        self.stream_sid = stream_sid or "MZ" + secrets.token_hex(16)
        self.custom_parameters = dict(custom_parameters or {})
        self.speech_rms_threshold = speech_rms_threshold
        self.segment_gap = segment_gap
        self.extra_headers = extra_headers or {}
        self._ws: Any = None
        self._seq = 0
        self._chunk = 0
        self._outbox: deque[tuple[bytes, asyncio.Future[None] | None]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._hung_up = False
        self._pending_marks: deque[tuple[str, float]] = deque()  # (name, due time)
        self._marks_changed = asyncio.Event()
        # What happened on the call (read by tests).
        self.connected_at: float | None = None
        self.said: list[tuple[float, float]] = []  # (start, end) of each say_pcm, monotonic
        self.media_frames_sent = 0
        self.playback = Playback()  # what the phone plays, at real time; clear() cuts it
        self.received_media_bytes = 0  # μ-law bytes received (= samples at 8 kHz)
        self.clears: list[float] = []
        self.marks_received: list[tuple[str, float]] = []
        self.marks_echoed: list[tuple[str, float]] = []
        self.other_messages: list[Any] = []  # anything that is not media/mark/clear
        self.errors: list[str] = []
        self.closed_by_server = False
        self.closed_at: float | None = None
        self.close_code: int | None = None

    # -- lifecycle -------------------------------------------------------
    async def connect(self) -> "TwilioCaller":
        """Open the socket, send ``connected`` + ``start`` and start streaming."""
        self._ws = await websockets.connect(
            self.ws_url, additional_headers=self.extra_headers or None, max_size=None
        )
        self.connected_at = time.monotonic()
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({"event": "start", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                          "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid,
                                    "callSid": self.call_sid, "tracks": ["inbound"],
                                    "customParameters": self.custom_parameters,
                                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}})
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._sender(), name="twilio-caller-send"),
            loop.create_task(self._receiver(), name="twilio-caller-recv"),
            loop.create_task(self._mark_pump(), name="twilio-caller-marks"),
        ]
        return self

    async def __aenter__(self) -> "TwilioCaller":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    async def hang_up(self) -> None:
        """Send ``stop`` and close, as Twilio does when the caller hangs up."""
        if self._ws is None:
            return
        send_stop = not self._hung_up and self.closed_at is None
        self._hung_up = True
        for task in self._tasks:  # no media may follow the stop message
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if send_stop:
            try:
                await self._send({"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                                  "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
            except ConnectionClosed:
                pass
        await self._ws.close()
        self.close_code = self._ws.close_code
        for _, future in self._outbox:
            if future is not None and not future.done():
                future.cancel()
        self._outbox.clear()

    # -- talking -----------------------------------------------------------
    async def say_pcm(self, pcm8k: bytes) -> None:
        """Speak 16-bit mono 8 kHz PCM; returns once the last frame was sent."""
        if self.closed_at is not None:
            raise ConnectionError("the call has ended")
        if len(pcm8k) % 2:
            pcm8k = pcm8k[:-1]
        ulaw = pcm_to_ulaw(pcm8k)
        ulaw += SILENCE_ULAW[: (-len(ulaw)) % FRAME_SAMPLES]  # pad the last frame
        frames = [ulaw[i : i + FRAME_SAMPLES] for i in range(0, len(ulaw), FRAME_SAMPLES)]
        if not frames:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for i, frame in enumerate(frames):
            self._outbox.append((frame, done if i == len(frames) - 1 else None))
        started = time.monotonic()
        await done
        self.said.append((started, time.monotonic()))

    async def say_wav(self, path: str | Path) -> None:
        """Speak a WAV file (any rate/width/channels; resampled to 8 kHz mono)."""
        await self.say_pcm(read_wav_8k(path))

    async def silence(self, seconds: float) -> None:
        """Stay quiet for ``seconds`` (silence frames keep flowing, as on a real call)."""
        await self.say_pcm(b"\x00\x00" * int(round(seconds * RATE)))

    async def send_dtmf(self, digit: str) -> None:
        await self._send({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next_seq(),
                          "dtmf": {"track": "inbound_track", "digit": digit}})

    async def send_raw(self, text: str | bytes) -> None:
        """Send anything, e.g. malformed JSON, to test the server's robustness."""
        await self._ws.send(text)

    # -- what was heard ----------------------------------------------------
    @property
    def heard_chunks(self) -> list[tuple[float, bytes]]:
        """(monotonic play start, 16-bit 8 kHz PCM) of each piece of audio played so far."""
        return self.playback.heard_chunks(time.monotonic())

    @property
    def heard_pcm(self) -> bytes:
        """16-bit 8 kHz PCM played to the caller so far (cleared audio excluded)."""
        return b"".join(pcm for _, pcm in self.heard_chunks)

    @property
    def heard_seconds(self) -> float:
        return sum(len(pcm) for _, pcm in self.heard_chunks) / (2 * RATE)

    @property
    def speech_segments(self) -> list[HeardSegment]:
        """Played stretches louder than the threshold, merging gaps < ``segment_gap``."""
        return self.playback.speech_segments(time.monotonic(), self.speech_rms_threshold, self.segment_gap)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``predicate`` every 20 ms; raise ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.02)

    # -- internals ---------------------------------------------------------
    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)  # Twilio sends these counters as strings

    async def _send(self, msg: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(msg))

    async def _sender(self) -> None:
        """Send one media frame every 20 ms on an absolute clock (bursting to catch up)."""
        start = time.monotonic()
        next_at = start
        try:
            while True:
                while time.monotonic() >= next_at:
                    frame, done = self._outbox.popleft() if self._outbox else (SILENCE_ULAW, None)
                    self._chunk += 1
                    await self._send({"event": "media", "sequenceNumber": self._next_seq(),
                                      "streamSid": self.stream_sid,
                                      "media": {"track": "inbound", "chunk": str(self._chunk),
                                                "timestamp": str((self._chunk - 1) * 20),  # ms of stream time
                                                "payload": base64.b64encode(frame).decode()}})
                    self.media_frames_sent += 1
                    if done is not None and not done.done():
                        done.set_result(None)
                    next_at += FRAME_SECONDS
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        except ConnectionClosed:
            pass

    async def _receiver(self) -> None:
        try:
            async for raw in self._ws:
                self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = self.closed_at or time.monotonic()
            self.close_code = self._ws.close_code
            self.playback.cut(self.closed_at)  # the call is over: nothing more is heard
            if not self._hung_up:
                self.closed_by_server = True
                for task in self._tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
                for _, future in self._outbox:
                    if future is not None and not future.done():
                        future.set_exception(ConnectionError("call ended by the server"))
                self._outbox.clear()

    def _on_message(self, raw: str | bytes) -> None:
        now = time.monotonic()
        try:
            msg = json.loads(raw)
            event = msg.get("event")
        except (ValueError, AttributeError):
            self.errors.append(f"not JSON: {raw!r:.80}")
            return
        if event in ("media", "mark", "clear") and msg.get("streamSid") != self.stream_sid:
            self.errors.append(f"{event} with wrong streamSid {msg.get('streamSid')!r}")
            return  # Twilio ignores messages for another stream
        if event == "media":
            try:
                ulaw = base64.b64decode(msg["media"]["payload"], validate=True)
            except (KeyError, TypeError, ValueError):
                self.errors.append("media without a valid base64 payload")
                return
            self.received_media_bytes += len(ulaw)
            self.playback.queue(ulaw_to_pcm(ulaw), now)
        elif event == "mark":
            name = str(msg.get("mark", {}).get("name"))
            self.marks_received.append((name, now))
            self._pending_marks.append((name, self.playback.played_by(now)))
            self._marks_changed.set()
        elif event == "clear":
            self.clears.append(now)
            self.playback.cut(now)
            # Cleared marks are echoed at once (their audio will never play).
            self._pending_marks = deque((name, now) for name, _ in self._pending_marks)
            self._marks_changed.set()
        else:
            self.other_messages.append(msg)

    async def _mark_pump(self) -> None:
        """Echo each mark when its due time (end of the audio before it) arrives."""
        try:
            while True:
                if not self._pending_marks:
                    self._marks_changed.clear()
                    await self._marks_changed.wait()
                    continue
                name, due = self._pending_marks[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._marks_changed.clear()
                    try:
                        await asyncio.wait_for(self._marks_changed.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
                    continue  # re-read: a clear may have moved the due time
                self._pending_marks.popleft()
                self.marks_echoed.append((name, time.monotonic()))
                await self._send({"event": "mark", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                                  "mark": {"name": name}})
        except ConnectionClosed:
            pass
