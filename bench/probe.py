"""Frame lateness, measured where the server meets the socket (an ASGI wrapper).

Both servers under test (ours and the bare pipeline) are wrapped the same way,
so neither app is changed. The wrapper times every Twilio `media` message:

- inbound, when the app takes it from the socket: Twilio sends one frame every
  20 ms, so frame k is late by `(t_k - 20 ms * k) - min_j<=k (t_j - 20 ms * j)`,
  its delay against the best phase seen on that stream so far;
- outbound, when the app sends it: the caller plays audio in real time, so a
  frame that continues a reply is late by how long the caller's playback had
  run dry when it arrived (`t - end of the audio sent before it`, if positive).
  A frame that starts a reply (more than `NEW_REPLY_GAP` after the last
  audio ended) is turn latency, not lateness, and is not counted.

It also samples the event loop's own lag, and answers `GET /_bench/probe`
with the samples taken since a given time, so the bench reads them per step.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

FRAME_SECONDS = 0.020
TWILIO_RATE = 8000
NEW_REPLY_GAP = 0.5
LOOP_TICK = 0.010  # fine enough to see a 5 ms stall; ~100 cheap wake-ups a second

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Samples:
    """(monotonic time, seconds late) pairs per kind, plus free-form counters."""

    inbound: list[tuple[float, float]] = field(default_factory=list)
    outbound: list[tuple[float, float]] = field(default_factory=list)
    loop_lag: list[tuple[float, float]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def since(self, t0: float) -> dict[str, Any]:
        """Samples taken at or after `t0`; older ones are dropped (the bench only reads forward)."""
        out: dict[str, Any] = {}
        for name in ("inbound", "outbound", "loop_lag"):
            kept = [s for s in getattr(self, name) if s[0] >= t0]
            setattr(self, name, kept)
            out[name] = [late for _, late in kept]
        out["counters"] = dict(self.counters)
        return out


SAMPLES = Samples()


class _Stream:
    """One media WebSocket's timing state."""

    def __init__(self) -> None:
        self.best_phase = float("inf")
        self.play_end: float | None = None

    def inbound(self, text: str) -> None:
        at = text.find('"chunk": "')
        if at < 0 or '"media"' not in text:
            return
        end = text.find('"', at + 10)
        try:
            chunk = int(text[at + 10:end])
        except ValueError:
            return
        now = time.monotonic()
        phase = now - FRAME_SECONDS * chunk
        self.best_phase = min(self.best_phase, phase)
        SAMPLES.inbound.append((now, phase - self.best_phase))

    def outbound(self, text: str) -> None:
        if '"clear"' in text:
            self.play_end = None  # the caller dropped its queue
            return
        at = text.find('"payload": "')
        if at < 0:
            return
        end = text.find('"', at + 12)
        encoded = end - (at + 12)
        padding = text.count("=", max(end - 2, at + 12), end)
        seconds = (encoded * 3 // 4 - padding) / TWILIO_RATE
        now = time.monotonic()
        if self.play_end is not None and now - self.play_end < NEW_REPLY_GAP:
            SAMPLES.outbound.append((now, max(0.0, now - self.play_end)))
            self.play_end = max(now, self.play_end) + seconds
        else:
            self.play_end = now + seconds


class LatenessProbe:
    """ASGI wrapper: times media messages both ways and serves `/_bench/probe`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/_bench/probe":
            await self._answer(scope, send)
            return
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        stream = _Stream()

        async def timed_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "websocket.receive" and message.get("text"):
                stream.inbound(message["text"])
            return message

        async def timed_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send" and message.get("text"):
                stream.outbound(message["text"])
            await send(message)

        await self.app(scope, timed_receive, timed_send)

    async def _answer(self, scope: Scope, send: Send) -> None:
        query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
        body = json.dumps(SAMPLES.since(float(query.get("since", "0")))).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def sample_loop_lag() -> None:
    """How late the event loop wakes a 10 ms timer: a floor under every frame's lateness, and a call start's stall."""
    while True:
        due = time.monotonic() + LOOP_TICK
        await asyncio.sleep(LOOP_TICK)
        now = time.monotonic()
        SAMPLES.loop_lag.append((now, max(0.0, now - due)))
