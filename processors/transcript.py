"""Fills the call's transcript from Pipecat's aggregator events.

The aggregators already know when a user or assistant turn is complete, so
listening to their events costs no extra hop on the audio path.
"""

from __future__ import annotations

from typing import Any

from agent.memory.transcript import Transcript


def record_transcript(transcript: Transcript, user_aggregator: Any, assistant_aggregator: Any) -> None:
    @user_aggregator.event_handler("on_user_turn_stopped")
    async def _user(_aggregator: Any, _strategy: Any, message: Any) -> None:
        transcript.add("user", message.content)

    @assistant_aggregator.event_handler("on_assistant_turn_stopped")
    async def _assistant(_aggregator: Any, message: Any) -> None:
        transcript.add("assistant", message.content, interrupted=bool(getattr(message, "interrupted", False)))
