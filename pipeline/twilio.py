"""Twilio Media Streams: a forgiving serializer that also reports playback marks."""

from __future__ import annotations

import json

from loguru import logger
from pipecat.frames.frames import Frame, OutputTransportMessageFrame
from pipecat.serializers.twilio import TwilioFrameSerializer

from processors.budget_guard import PlaybackMarkFrame

# Twilio's largest message (a `start` with custom parameters) is a few kB; 20 ms of media is ~300 bytes.
MAX_MESSAGE_BYTES = 16_384


class CallMeBackTwilioSerializer(TwilioFrameSerializer):
    """Pipecat's Twilio serializer, plus two things a phone call needs.

    - A malformed or unexpected message is logged and skipped: one bad packet
      must not end the call (the stock transport stops reading on an exception).
      An oversized one is skipped unread, and what is logged of any message is
      capped (Pipecat's own parser would log it whole).
    - Twilio echoes a `mark` once the audio queued before it has been played;
      that echo becomes a `PlaybackMarkFrame`, so the goodbye is known to have
      been heard before we hang up.
    """

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if len(data) > MAX_MESSAGE_BYTES:
            logger.warning(f"skipping an oversized Twilio message ({len(data)} bytes, at most {MAX_MESSAGE_BYTES})")
            return None
        if not (data.lstrip()[:1] in ("{", b"{")):
            logger.warning(f"skipping a Twilio message that is not a JSON object: {str(data)[:120]!r}")
            return None
        try:
            # Media (50 a second) and DTMF: Pipecat's own parse is the only one on the audio path.
            frame = await super().deserialize(data)
            if frame is not None:
                return frame
            message = json.loads(data)  # anything else, marks included, is rare
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            if message.get("event") == "mark":
                return PlaybackMarkFrame(str(message.get("mark", {}).get("name", "")))
            return None
        except Exception as exc:
            logger.warning(f"skipping malformed Twilio message ({exc.__class__.__name__}: {exc}): {str(data)[:120]!r}")
            return None

    def mark_frame(self, name: str) -> Frame:
        """A `mark` sent in order after the audio queued before it."""
        return OutputTransportMessageFrame(
            message={"event": "mark", "streamSid": self._stream_sid, "mark": {"name": name}})
