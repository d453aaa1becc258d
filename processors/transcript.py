"""The call's turns, kept for the end of the call (summary, memory extraction).

Pipecat's aggregators already know when a user or assistant turn is complete,
so the transcript listens to their events instead of adding a processor hop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str
    at: dt.datetime
    interrupted: bool = False


@dataclass
class CallTranscript:
    turns: list[Turn] = field(default_factory=list)

    def attach(self, user_aggregator: Any, assistant_aggregator: Any) -> None:
        @user_aggregator.event_handler("on_user_turn_stopped")
        async def _user(_aggregator: Any, _strategy: Any, message: Any) -> None:
            self.add("user", message.content)

        @assistant_aggregator.event_handler("on_assistant_turn_stopped")
        async def _assistant(_aggregator: Any, message: Any) -> None:
            self.add("assistant", message.content, interrupted=bool(getattr(message, "interrupted", False)))

    def add(self, role: str, text: str | None, *, interrupted: bool = False) -> None:
        if text and text.strip():
            self.turns.append(Turn(role, text.strip(), dt.datetime.now(dt.timezone.utc), interrupted))

    def said_by(self, role: str) -> list[str]:
        return [t.text for t in self.turns if t.role == role]

    def as_text(self) -> str:
        return "\n".join(f"{t.role}: {t.text}" for t in self.turns)
