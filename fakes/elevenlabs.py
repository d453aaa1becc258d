"""ElevenLabs TTS fake: multi-context WebSocket plus the HTTP with-timestamps stream.

Point Pipecat at it with ``ElevenLabsTTSService(api_key=..., url=served.ws_url)``
or ``ElevenLabsHttpTTSService(api_key=..., base_url=served.http_url,
aiohttp_session=...)``. The "voice" is a quiet sine tone, ``ms_per_char`` long
per character, so audio length is a deterministic function of the text and the
RMS detector of the fake caller can tell it from silence. ``characters_received``
counts what ElevenLabs would bill.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse

__all__ = ["ElevenLabsFake", "tone_pcm"]

_SUPPORTED_RATES = {8000, 16000, 22050, 24000, 32000, 44100, 48000}


def tone_pcm(samples: int, sample_rate: int, *, hz: float = 440.0, amplitude: int = 3000) -> bytes:
    """16-bit mono sine tone; quiet (about -20 dBFS) but well above silence."""
    t = np.arange(samples) / sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _rate_of(output_format: str) -> int | None:
    match = re.fullmatch(r"pcm_(\d+)", output_format)
    rate = int(match.group(1)) if match else None
    return rate if rate in _SUPPORTED_RATES else None


class ElevenLabsFake:
    """ElevenLabs server whose audio is a pure function of the text; read the counters.

    Each text chunk is answered at once, split into messages of whole words of
    at most ``max_chars_per_message`` characters. ``isFinal`` is sent once per
    context, when it is closed (``close_context`` / ``close_socket``), which is
    when the real service sends it; ``final_on_flush=True`` also sends it on
    ``flush``. More than ``max_contexts`` open contexts closes the socket with
    1008, as the real service does.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        ms_per_char: int = 20,
        tone_hz: float = 440.0,
        amplitude: int = 3000,
        final_on_flush: bool = False,
        max_contexts: int = 5,
        inactivity_timeout: float = 20.0,
        max_chars_per_message: int = 50,
    ) -> None:
        self.api_key = api_key
        self.ms_per_char = ms_per_char
        self.tone_hz = tone_hz
        self.amplitude = amplitude
        self.final_on_flush = final_on_flush
        self.max_contexts = max_contexts
        self.inactivity_timeout = inactivity_timeout
        self.max_chars_per_message = max_chars_per_message
        # Counters.
        self.connections = 0
        self.characters_received = 0
        self.texts: list[str] = []
        self.texts_by_context: dict[str, list[str]] = defaultdict(list)
        self.messages: list[dict] = []  # every client JSON message, in order
        self.contexts_opened: list[str] = []
        self.contexts_closed: list[str] = []
        self.audio_seconds_sent = Fraction(0)
        self.voices_used: list[str] = []
        self.models_used: list[str] = []
        self.output_formats: list[str] = []
        self.app = FastAPI()
        self.app.websocket("/v1/text-to-speech/{voice_id}/multi-stream-input")(self._multi)
        self.app.post("/v1/text-to-speech/{voice_id}/stream/with-timestamps")(self._http_stream)

    # -- synthesis -------------------------------------------------------
    def _synth(self, text: str, rate: int) -> tuple[bytes, list[int], list[int]]:
        """PCM for ``text`` plus per-character start times and durations (ms)."""
        samples = len(text) * self.ms_per_char * rate // 1000
        pcm = tone_pcm(samples, rate, hz=self.tone_hz, amplitude=self.amplitude)
        self.audio_seconds_sent += Fraction(samples, rate)
        starts = [i * self.ms_per_char for i in range(len(text))]
        return pcm, starts, [self.ms_per_char] * len(text)

    def _pieces(self, text: str) -> list[str]:
        """Split into whole words of at most ``max_chars_per_message`` (longer words stay whole)."""
        pieces: list[str] = []
        for word in re.findall(r"\S+\s*|\s+", text):
            if pieces and len(pieces[-1]) + len(word) <= self.max_chars_per_message:
                pieces[-1] += word
            else:
                pieces.append(word)
        return pieces

    def _bill(self, text: str, context_id: str | None) -> None:
        self.characters_received += len(text)
        self.texts.append(text)
        if context_id is not None:
            self.texts_by_context[context_id].append(text)

    def _key_ok(self, headers: Any) -> bool:
        return self.api_key is None or headers.get("xi-api-key") == self.api_key

    # -- multi-context WebSocket ----------------------------------------
    async def _multi(self, ws: WebSocket, voice_id: str) -> None:
        if not self._key_ok(ws.headers):
            await ws.send_denial_response(Response(status_code=401))
            return
        output_format = ws.query_params.get("output_format", "mp3_44100_128")
        rate = _rate_of(output_format)
        if rate is None:  # the fake only produces PCM
            await ws.send_denial_response(Response(status_code=400))
            return
        timeout = float(ws.query_params.get("inactivity_timeout", self.inactivity_timeout))
        await ws.accept()
        self.connections += 1
        self.voices_used.append(voice_id)
        self.models_used.append(ws.query_params.get("model_id", ""))
        self.output_formats.append(output_format)
        try:
            await self._serve_multi(ws, rate, timeout)
        except WebSocketDisconnect:
            pass  # Pipecat may drop the socket right after close_socket

    async def _serve_multi(self, ws: WebSocket, rate: int, timeout: float) -> None:
        open_contexts: set[str] = set()
        finished: set[str] = set()  # contexts that already got isFinal

        async def final(ctx: str) -> None:
            if ctx not in finished:
                finished.add(ctx)
                await ws.send_text(json.dumps({"isFinal": True, "contextId": ctx}))

        while True:
            try:
                raw = await asyncio.wait_for(ws.receive_text(), timeout)
            except asyncio.TimeoutError:
                await ws.close(code=1008, reason="input_timeout_exceeded")
                return
            msg = json.loads(raw)
            self.messages.append(msg)
            if msg.get("close_socket"):
                for ctx in sorted(open_contexts):
                    await final(ctx)
                await ws.close(code=1000)
                return
            ctx = msg.get("context_id", "default")
            if msg.get("close_context"):
                if ctx in open_contexts:
                    open_contexts.discard(ctx)
                    self.contexts_closed.append(ctx)
                    await final(ctx)
                continue
            text = msg.get("text")
            if text is not None and text != "":  # "" is a keepalive
                if ctx not in open_contexts and ctx not in finished:
                    if len(open_contexts) >= self.max_contexts:
                        error = {
                            "message": "Maximum simultaneous contexts per WebSocket connection "
                            f"exceeded ({self.max_contexts}).",
                            "error": "max_active_conversations",
                            "code": 1008,
                        }
                        await ws.send_text(json.dumps(error))
                        await ws.close(code=1008)
                        return
                    open_contexts.add(ctx)
                    self.contexts_opened.append(ctx)
                    if text == " ":  # the context opener is not billed
                        continue
                if ctx in open_contexts:
                    self._bill(text, ctx)
                    for piece in self._pieces(text):  # alignment restarts at 0 in every message
                        pcm, starts, durations = self._synth(piece, rate)
                        alignment = {"chars": list(piece), "charStartTimesMs": starts, "charDurationsMs": durations}
                        reply = {
                            "audio": base64.b64encode(pcm).decode(),
                            "alignment": alignment,
                            "normalizedAlignment": alignment,
                            "contextId": ctx,
                        }
                        await ws.send_text(json.dumps(reply))
            if msg.get("flush") and self.final_on_flush and ctx in open_contexts:
                await final(ctx)

    # -- HTTP streaming with timestamps ---------------------------------
    async def _http_stream(self, request: Request, voice_id: str) -> Any:
        if not self._key_ok(request.headers):
            detail = {"status": "invalid_api_key", "message": "Invalid API key"}
            return JSONResponse({"detail": detail}, status_code=401)
        output_format = request.query_params.get("output_format", "mp3_44100_128")
        rate = _rate_of(output_format)
        body = await request.json()
        text = body.get("text", "")
        if rate is None or not isinstance(text, str) or not text:
            detail = {"status": "invalid_request", "message": "text and a pcm output_format are required"}
            return JSONResponse({"detail": detail}, status_code=400)
        self.voices_used.append(voice_id)
        self.models_used.append(body.get("model_id", ""))
        self.output_formats.append(output_format)
        self._bill(text, None)

        async def lines() -> AsyncIterator[str]:
            offset = 0.0  # HTTP alignment times run on from the start of the response
            for piece in self._pieces(text):
                pcm, starts, durations = self._synth(piece, rate)
                begin = [offset + s / 1000 for s in starts]
                end = [b + d / 1000 for b, d in zip(begin, durations)]
                offset += len(piece) * self.ms_per_char / 1000
                alignment = {
                    "characters": list(piece),
                    "character_start_times_seconds": [round(x, 3) for x in begin],
                    "character_end_times_seconds": [round(x, 3) for x in end],
                }
                line = {
                    "audio_base64": base64.b64encode(pcm).decode(),
                    "alignment": alignment,
                    "normalized_alignment": alignment,
                }
                yield json.dumps(line) + "\n"

        return StreamingResponse(lines(), media_type="application/json")
