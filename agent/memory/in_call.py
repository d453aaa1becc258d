"""The persona writes memory during the call: "Actually, call me Sam" is used in the next reply.

The LLM gets one tool, `remember_fact` (category, key, value). Its arguments
are validated like extraction output (`Fact`: no other fields, so the model
cannot name a user), and the fact is always written for the caller the server
identified, with this call and the caller's words as its source. The prompt is
then recomposed from memory, so the next reply (and the rest of the call) uses
the correction, not only the next call.

What the user deleted stays deleted: a fact deleted during this call, or a
value they made the persona forget, is refused unless the caller says it
again after the deletion.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agent.accounts.personas import Persona
from agent.books.costs import CallCostTracker
from agent.memory.extraction import said_in
from agent.memory.prompt import CompositePrompt, build_composite_prompt
from agent.memory.relationships import Fact, FactCategory, PersonaRelationshipManager
from agent.memory.transcript import Transcript

TOOL_NAME = "remember_fact"
TOOL_DESCRIPTION = (
    "Save or correct something the caller just told you about themselves, so you remember it for the rest "
    "of this call and for later calls. Only for what the caller said, never for guesses. To correct a fact, "
    "use the same category and key with the new value.")
TOOL_PROPERTIES: dict[str, Any] = {
    "category": {"type": "string", "enum": [c.value for c in FactCategory]},
    "key": {"type": "string", "description": "short_snake_case name, e.g. name, job, dog_name"},
    "value": {"type": "string", "description": "what the caller said, in a few words"},
}
TOOL_REQUIRED = ["category", "key", "value"]


@dataclass
class InCallMemory:
    """One call's memory tool: who the caller is comes from the server, never from the model."""

    memory: PersonaRelationshipManager
    user: dict
    persona: Persona
    call_id: str
    started_at: dt.datetime
    transcript: Transcript
    token_budget: int
    memory_token_limit: int | None = None
    ledger: CallCostTracker | None = None  # each write is a memory operation on the call's bill

    async def remember(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], CompositePrompt | None]:
        """Write the fact; returns what the model is told, and the recomposed prompt (None if refused)."""
        try:
            fact = Fact.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return {"saved": False, "error": f"not a valid fact ({problems})"}, None
        rel = await self.memory.get_relationship(self.user["id"], self.persona.id)
        if rel.memory_config.get("remember_facts") is False:
            return {"saved": False, "error": "the caller has turned off remembering facts"}, None
        if await self._deleted_and_not_restated(fact):
            return {"saved": False, "error": "the caller asked you to forget this; do not bring it up"}, None
        await self.memory.set_fact(self.user["id"], self.persona.id, fact, source="call", call_id=self.call_id,
                                   said=said_in(self.transcript.turns, fact.value) or self._last_words())
        if self.ledger is not None:
            self.ledger.track_memory("write")
        prompt = await build_composite_prompt(self.memory, self.user, self.persona, self.token_budget,
                                              memory_token_limit=self.memory_token_limit)
        return {"saved": True, "category": fact.category.value, "key": fact.key, "value": fact.value}, prompt

    async def _deleted_and_not_restated(self, fact: Fact) -> bool:
        user_id, persona_id = self.user["id"], self.persona.id
        rel = await self.memory.get_relationship(user_id, persona_id)
        deletions = [d for d in await self.memory.store.deletions_since(rel.id, self.started_at)
                     if d["key"] is None or (d["key"] == fact.key and d["category"] in (None, fact.category.value))]
        forgotten = await self.memory.forgotten(user_id, persona_id)
        if self.memory.forgetting.redact(fact.value, forgotten) != fact.value:
            since = max([d["deleted_at"] for d in deletions], default=self.started_at)
        elif deletions:
            since = max(d["deleted_at"] for d in deletions)
        else:
            return False
        since = since if since.tzinfo else since.replace(tzinfo=dt.timezone.utc)
        wanted = fact.value.casefold()
        return not any(t.role == "user" and t.at > since and wanted in t.text.casefold()
                       for t in self.transcript.turns)

    def _last_words(self) -> str | None:
        said = self.transcript.said_by("user")
        return said[-1] if said else None
