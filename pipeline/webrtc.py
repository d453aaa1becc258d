"""The browser test room's calls: Pipecat's SmallWebRTC transport, same pipeline as a phone call.

The room speaks the Pipecat client's convention (`POST /start`, then
`POST`/`PATCH /sessions/{id}/api/offer`); `api/room.py` routes those here. The
call id doubles as the session id, so the offer reaches the call it belongs to,
and each peer connection (`pc_id`) is bound to the one call that made it: a
renegotiation or an ICE candidate for another call's connection is refused.
"""

from __future__ import annotations

import asyncio
import re

from aiortc.sdp import SessionDescription
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
from agent.calls.session import CallSession
from agent.settings import Settings
from pipeline.call import run_call

WEBRTC_RATE = 16000
MAX_SDP_BYTES = 32_000  # a browser's audio offer is 2-6 kB
_SDP_LINE = re.compile(r"^[a-z]=[^\x00]*$")


class InvalidOffer(ValueError):
    """An SDP offer we would not hand to the WebRTC stack."""


def check_offer_sdp(sdp: str) -> None:
    """Refuse what is not a usable audio offer, before any call goes live for it."""
    if len(sdp.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise InvalidOffer(f"the SDP is larger than {MAX_SDP_BYTES} bytes")
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0" or not all(_SDP_LINE.match(line) for line in lines):
        raise InvalidOffer("not an SDP session description (it must start with v=0, one <type>=<value> per line)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:
        raise InvalidOffer(f"the SDP could not be parsed: {exc}") from None
    if not any(media.kind == "audio" and media.port for media in description.media):
        raise InvalidOffer("the offer has no audio section (m=audio)")


class WebRTCRoom:
    """Answers the browser's offers and runs each call in the background."""

    def __init__(self, lifecycle: CallLifecycle, settings: Settings) -> None:
        self.lifecycle = lifecycle
        self.settings = settings
        self.handler = SmallWebRTCRequestHandler()
        self._calls: set[asyncio.Task] = set()
        self._pc_calls: dict[str, str] = {}  # pc_id -> the call it belongs to

    async def offer(self, session: CallSession, request: SmallWebRTCRequest) -> dict:
        """Answer the first offer of a call that has just gone live here, and run its pipeline."""
        async def start(connection: SmallWebRTCConnection) -> None:
            task = asyncio.get_running_loop().create_task(self._run(session, connection))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

        answer = await self.handler.handle_web_request(request, start)
        if answer and answer.get("pc_id"):
            self._pc_calls[answer["pc_id"]] = session.call_id
        return answer

    def owns(self, call_id: str, pc_id: str) -> bool:
        """Whether this peer connection is the one this call made, in this process."""
        return self._pc_calls.get(pc_id) == call_id and call_id in self.lifecycle.live

    async def renegotiate(self, call_id: str, request: SmallWebRTCRequest) -> dict:
        if not request.pc_id or not self.owns(call_id, request.pc_id):
            raise LookupError(f"no peer connection {request.pc_id!r} for call {call_id} in this worker")
        return await self.handler.handle_web_request(request, _never_new)

    async def patch(self, call_id: str, request: SmallWebRTCPatchRequest) -> None:
        if not self.owns(call_id, request.pc_id):
            raise LookupError(f"no peer connection {request.pc_id!r} for call {call_id} in this worker")
        await self.handler.handle_patch_request(request)

    async def _run(self, session: CallSession, connection: SmallWebRTCConnection) -> None:
        call_id = session.call_id
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
            self._pc_calls = {pc: call for pc, call in self._pc_calls.items() if call != call_id}
            await self.lifecycle.end(session, reason=reason)

    async def close(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        await self.handler.close()


async def _never_new(connection: SmallWebRTCConnection) -> None:
    """A renegotiation reuses its connection; a new one here would be a call without a pipeline."""
    await connection.disconnect()
    raise LookupError("the peer connection of this renegotiation is gone")
