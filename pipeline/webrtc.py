"""The browser test room's calls: Pipecat's SmallWebRTC transport, same pipeline as a phone call.

The room speaks the Pipecat client's convention (`POST /start`, then
`POST`/`PATCH /sessions/{id}/api/offer`); `server.py` routes those here. The
call id doubles as the session id, so the offer reaches the call it belongs to.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

from agent.calls.lifecycle import CallLifecycle
from agent.settings import Settings
from pipeline.call import run_call

WEBRTC_RATE = 16000


class WebRTCRoom:
    """Answers the browser's offers and runs each call in the background."""

    def __init__(self, lifecycle: CallLifecycle, settings: Settings) -> None:
        self.lifecycle = lifecycle
        self.settings = settings
        self.handler = SmallWebRTCRequestHandler()
        self._calls: set[asyncio.Task] = set()

    async def offer(self, call_id: str, request: SmallWebRTCRequest) -> dict:
        async def start(connection: SmallWebRTCConnection) -> None:
            task = asyncio.get_running_loop().create_task(self._run(call_id, connection))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

        return await self.handler.handle_web_request(request, start)

    async def patch(self, request: SmallWebRTCPatchRequest) -> None:
        await self.handler.handle_patch_request(request)

    async def _run(self, call_id: str, connection: SmallWebRTCConnection) -> None:
        session = await self.lifecycle.begin(call_id)
        transport = SmallWebRTCTransport(connection, TransportParams(
            audio_in_enabled=True, audio_out_enabled=True,
            audio_in_sample_rate=WEBRTC_RATE, audio_out_sample_rate=WEBRTC_RATE))
        running: dict = {}

        async def hang_up() -> None:  # an operator ends the call: stop the pipeline, drop the peer
            if "worker" in running:
                await running["worker"].cancel(reason=session.end_requested or "ended")
            await connection.disconnect()

        session.hang_up = hang_up
        reason = "error"
        try:
            outcome = await run_call(transport, session, self.settings, sample_rate=WEBRTC_RATE, enable_rtvi=True,
                                     hang_up=connection.disconnect, on_worker=lambda w: running.update(worker=w))
            reason = session.end_requested or outcome.reason
        except asyncio.CancelledError:
            reason = "server_shutdown"
            raise
        except Exception as exc:
            logger.exception(f"room call {call_id} failed: {exc!r}")
        finally:
            await self.lifecycle.end(session, reason=reason)

    async def close(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        await self.handler.close()
