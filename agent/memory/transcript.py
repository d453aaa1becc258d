"""What was said on a call: kept for the end of the call (summary, memory extraction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str
    at: dt.datetime
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


@dataclass
class Transcript:
    turns: list[Turn] = field(default_factory=list)
    on_turn: Callable[["Transcript"], None] | None = None  # e.g. persist it, so a crash keeps it

    def add(self, role: str, text: str | None, *, interrupted: bool = False) -> None:
        if text and text.strip():
            self.turns.append(Turn(role, text.strip(), dt.datetime.now(dt.timezone.utc), interrupted))
            if self.on_turn is not None:
                self.on_turn(self)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]] | None) -> "Transcript":
        return cls([Turn(r["role"], r["text"], dt.datetime.fromisoformat(r["at"]), bool(r.get("interrupted")))
                    for r in rows or []])

    def redact(self, rewrite: Callable[[str], str]) -> None:
        """Rewrite every turn's text (forgotten words), in place."""
        self.turns = [replace(t, text=rewrite(t.text)) for t in self.turns]

    def said_by(self, role: str) -> list[str]:
        return [t.text for t in self.turns if t.role == role]

    def as_rows(self) -> list[dict[str, Any]]:
        return [t.as_dict() for t in self.turns]
