"""Deepgram live-STT fake: ``GET ws://127.0.0.1:P/v1/listen``.

Point Pipecat at it with ``DeepgramSTTService(api_key=..., base_url=served.ws_url)``.
Speech is "recognised" by a loudness detector, not a model: every segment of
linear16 audio whose 20 ms RMS exceeds a threshold becomes the next scripted
transcript. Timing is measured in *audio* time (bytes received), as the real
service does, so results do not depend on how fast the client sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

__all__ = ["DeepgramFake"]

TranscriptSource = Callable[[int], "str | None"]


@dataclass
class _Session:
    """Per-connection state of the recogniser."""

    sample_rate: int
    interim_results: bool
    endpointing_ms: int | None  # None: endpointing disabled
    utterance_end_ms: int | None
    vad_events: bool
    model: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    pending: bytearray = field(default_factory=bytearray)
    sha: Any = field(default_factory=hashlib.sha256)
    samples: int = 0  # audio time, in samples, of the windows analysed so far
    bytes_received: int = 0
    cursor: float = 0.0  # end of the audio span the last final result covered
    in_speech: bool = False
    words: list[str] = field(default_factory=list)
    seg_start: float = 0.0
    last_voice_end: float = 0.0
    speech_ms: int = 0
    silence_ms: int = 0
    interims: int = 0
    utterance_end_due: float | None = None  # last word end awaiting UtteranceEnd

    def now(self) -> float:
        return self.samples / self.sample_rate


def _bare(word: str) -> str:
    """Deepgram's ``word`` field: lower case, no punctuation."""
    return re.sub(r"[^\w']", "", word).lower() or word.lower()


class DeepgramFake:
    """Scripted Deepgram ``/v1/listen`` server.

    ``transcripts`` is either an iterable (kept as the deque ``self.transcripts``
    that tests may append to at any time) or a callable ``f(segment_index) ->
    str | None`` called when a speech segment starts. An exhausted script or a
    ``None`` gives ``inaudible`` (an empty transcript if ``inaudible`` is None).
    """

    def __init__(
        self,
        transcripts: Iterable[str] | TranscriptSource = (),
        *,
        api_key: str | None = "test-key",
        rms_threshold: float = 500.0,
        window_ms: int = 20,
        endpointing_ms: int = 300,
        interim_every_ms: int = 200,
        inaudible: str | None = "(inaudible)",
        idle_timeout: float | None = 10.0,
    ) -> None:
        if callable(transcripts):
            self.transcripts: deque[str] | TranscriptSource = transcripts
        else:
            self.transcripts = deque(transcripts)
        self.api_key = api_key
        self.rms_threshold = rms_threshold
        self.window_ms = window_ms
        self.default_endpointing_ms = endpointing_ms
        self.interim_every_ms = interim_every_ms
        self.inaudible = inaudible
        self.idle_timeout = idle_timeout
        self.model_uuid = str(uuid.uuid4())
        # Counters.
        self.connections = 0
        self.queries: list[dict[str, str]] = []
        self.audio_bytes_received = 0
        self.audio_seconds_received = Fraction(0)
        self.finals_sent: list[str] = []
        self.interims_sent: list[str] = []
        self.control_messages: list[dict] = []
        self.sent: list[dict] = []
        self.segments_started = 0
        self.app = FastAPI()
        self.app.websocket("/v1/listen")(self._listen)

    # -- script ----------------------------------------------------------
    def _next_transcript(self) -> str:
        index = self.segments_started
        self.segments_started += 1
        text: str | None
        if callable(self.transcripts):
            text = self.transcripts(index)
        else:
            text = self.transcripts.popleft() if self.transcripts else None
        if not text:
            text = self.inaudible or ""
        return text

    def _endpointing(self, value: str | None) -> int | None:
        """Silence (ms) that ends an utterance; ``endpointing=false`` disables it."""
        if value == "false":
            return None
        return int(value) if value else self.default_endpointing_ms

    # -- connection ------------------------------------------------------
    def _authorised(self, ws: WebSocket) -> bool:
        if self.api_key is None:
            return True
        auth = ws.headers.get("authorization", "")
        return auth in (f"Token {self.api_key}", f"Bearer {self.api_key}")

    async def _listen(self, ws: WebSocket) -> None:
        if not self._authorised(ws):
            await ws.send_denial_response(Response(status_code=401))
            return
        q = dict(ws.query_params)
        self.queries.append(q)
        if q.get("encoding", "linear16") != "linear16" or q.get("channels", "1") != "1":
            # Only mono linear16 is analysable by this fake.
            await ws.send_denial_response(Response(status_code=400))
            return
        utterance_end = q.get("utterance_end_ms")
        session = _Session(
            sample_rate=int(q.get("sample_rate", "16000")),
            interim_results=q.get("interim_results", "false") == "true",
            endpointing_ms=self._endpointing(q.get("endpointing")),
            utterance_end_ms=int(utterance_end) if utterance_end else None,
            vad_events=q.get("vad_events", "false") == "true",
            model=q.get("model", "nova-3"),
        )
        await ws.accept()
        self.connections += 1
        try:
            await self._serve(ws, session)
        except WebSocketDisconnect:
            pass  # the client may vanish right after CloseStream

    async def _serve(self, ws: WebSocket, s: _Session) -> None:
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), self.idle_timeout)
            except asyncio.TimeoutError:
                # Real Deepgram: no audio or KeepAlive for 10 s -> NET-0001.
                await ws.close(code=1011, reason="NET-0001")
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await self._on_audio(ws, s, data)
                continue
            try:
                control = json.loads(message.get("text") or "")
            except ValueError:
                continue
            self.control_messages.append(control)
            kind = control.get("type") if isinstance(control, dict) else None
            if kind == "Finalize":
                await self._finalize(ws, s, from_finalize=True)
            elif kind == "CloseStream":
                await self._finalize(ws, s, from_finalize=False, empty_reply=False)
                await self._send(ws, self._metadata(s))
                await ws.close(code=1000)
                return
            # KeepAlive (and anything unknown) needs no reply.

    # -- recogniser ------------------------------------------------------
    async def _on_audio(self, ws: WebSocket, s: _Session, data: bytes) -> None:
        s.bytes_received += len(data)
        s.sha.update(data)
        self.audio_bytes_received += len(data)
        self.audio_seconds_received += Fraction(len(data), s.sample_rate * 2)
        s.pending.extend(data)
        window_bytes = s.sample_rate * self.window_ms // 1000 * 2
        while len(s.pending) >= window_bytes:
            window = np.frombuffer(bytes(s.pending[:window_bytes]), dtype="<i2")
            del s.pending[:window_bytes]
            rms = float(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
            await self._on_window(ws, s, rms >= self.rms_threshold)

    async def _on_window(self, ws: WebSocket, s: _Session, voiced: bool) -> None:
        start = s.now()
        s.samples += s.sample_rate * self.window_ms // 1000
        if voiced:
            if not s.in_speech:
                s.in_speech = True
                s.words = self._next_transcript().split()
                s.seg_start, s.speech_ms, s.interims = start, 0, 0
                s.utterance_end_due = None
                if s.vad_events:
                    await self._send(ws, {"type": "SpeechStarted", "channel": [0, 1], "timestamp": start})
            s.silence_ms = 0
            s.speech_ms += self.window_ms
            s.last_voice_end = s.now()
            if s.interim_results and s.speech_ms >= (s.interims + 1) * self.interim_every_ms:
                s.interims += 1
                # Interims reveal a growing prefix; only the final has every word.
                shown = min(s.interims, max(len(s.words) - 1, 1))
                await self._send(ws, self._results(s, s.words[:shown], is_final=False))
            return
        if s.in_speech:
            s.silence_ms += self.window_ms
            if s.endpointing_ms is not None and s.silence_ms >= s.endpointing_ms:
                await self._final(ws, s, speech_final=True, from_finalize=False)
        elif s.utterance_end_due is not None and s.utterance_end_ms is not None:
            if s.now() - s.utterance_end_due >= s.utterance_end_ms / 1000:
                await self._send(
                    ws, {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": s.utterance_end_due}
                )
                s.utterance_end_due = None

    async def _final(self, ws: WebSocket, s: _Session, *, speech_final: bool, from_finalize: bool) -> None:
        msg = self._results(s, s.words, is_final=True, speech_final=speech_final, from_finalize=from_finalize)
        s.in_speech = False
        s.cursor = s.now()
        if s.words and s.interim_results and s.utterance_end_ms is not None:
            s.utterance_end_due = s.last_voice_end
        await self._send(ws, msg)

    async def _finalize(self, ws: WebSocket, s: _Session, *, from_finalize: bool, empty_reply: bool = True) -> None:
        """Flush: finalise pending speech, or answer an empty final (as Deepgram does)."""
        if s.in_speech:
            await self._final(ws, s, speech_final=False, from_finalize=from_finalize)
        elif empty_reply:
            msg = self._results(s, [], is_final=True, from_finalize=from_finalize)
            s.cursor = s.now()
            await self._send(ws, msg)

    # -- messages --------------------------------------------------------
    def _results(
        self,
        s: _Session,
        words: list[str],
        *,
        is_final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> dict:
        end = s.last_voice_end if words else s.now()
        step = (end - s.seg_start) / len(words) if words else 0.0
        word_items = [
            {
                "word": _bare(w),
                "start": round(s.seg_start + i * step, 3),
                "end": round(s.seg_start + (i + 1) * step, 3),
                "confidence": 0.99,
                "punctuated_word": w,
            }
            for i, w in enumerate(words)
        ]
        transcript = " ".join(words)
        msg: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(s.now() - s.cursor, 3),
            "start": round(s.cursor, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {"transcript": transcript, "confidence": 0.99 if words else 0.0, "words": word_items}
                ]
            },
            "metadata": {
                "request_id": s.request_id,
                "model_info": {"name": s.model, "version": "2025-01-01.0", "arch": "nova-3"},
                "model_uuid": self.model_uuid,
            },
        }
        if transcript:
            (self.finals_sent if is_final else self.interims_sent).append(transcript)
        return msg

    def _metadata(self, s: _Session) -> dict:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": s.request_id,
            "sha256": s.sha.hexdigest(),
            "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "duration": float(Fraction(s.bytes_received, s.sample_rate * 2)),
            "channels": 1,
            "models": [self.model_uuid],
            "model_info": {self.model_uuid: {"name": s.model, "version": "2025-01-01.0", "arch": "nova-3"}},
        }

    async def _send(self, ws: WebSocket, msg: dict) -> None:
        self.sent.append(msg)
        await ws.send_text(json.dumps(msg))
