"""What a persona knows about a user: the relationship and its memory tiers.

Tiers (DESIGN.md section 4): core persona (not here: on the persona), the
relationship (type + the user's custom prompt), long-term facts by category,
and recent context (the last call summaries and ongoing storylines).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from agent.memory.forgetting import Forgetting, Forgotten
from storage.memory import MemoryStore

RECENT_CALLS = 10


class FactCategory(StrEnum):
    RELATIONSHIP_FACTS = "relationship_facts"
    USER_FACTS = "user_facts"
    INSIDE_JOKES = "inside_jokes"
    IMPORTANT_MEMORIES = "important_memories"
    PREFERENCES = "preferences"


class RelationshipType(StrEnum):
    FRIEND = "friend"
    BEST_FRIEND = "best_friend"
    BOYFRIEND = "boyfriend"
    GIRLFRIEND = "girlfriend"
    PARTNER = "partner"
    SIBLING = "sibling"
    PARENT = "parent"
    MENTOR = "mentor"
    COACH = "coach"
    BOSS = "boss"
    COLLEAGUE = "colleague"
    THERAPIST = "therapist"


class StorylineStatus(StrEnum):
    ONGOING = "ongoing"
    RESOLVED = "resolved"


class Fact(BaseModel):
    """One remembered fact; `key` names it within its category ("job", "dog_name")."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    category: FactCategory
    key: str = Field(min_length=1, max_length=200, pattern=r"^[^/\\]+$")
    value: str = Field(min_length=1, max_length=2000)


class CallSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    summary: str = Field(min_length=1, max_length=4000)
    key_topics: list[str] = Field(default_factory=list, max_length=20)
    outcome: str = Field("", max_length=200)
    call_id: str | None = None
    created_at: dt.datetime | None = None


class Storyline(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    topic: str = Field(min_length=1, max_length=200)
    status: StorylineStatus = StorylineStatus.ONGOING
    details: str = Field("", max_length=2000)
    updated_at: dt.datetime | None = None


class MemoryPreferences(BaseModel):
    """What the user lets a persona remember (stored as `memory_config`); typed so a bad value
    is refused when it is set, not when the next call's prompt is built."""

    model_config = ConfigDict(extra="forbid")

    remember_facts: StrictBool = True
    remember_calls: StrictBool = True
    excluded_categories: list[FactCategory] = Field(default_factory=list, max_length=len(FactCategory))


class RelationshipUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    relationship_type: RelationshipType | None = None
    custom_system_prompt: str | None = Field(None, max_length=4000)
    memory_config: dict[str, Any] | None = None

    @field_validator("memory_config")
    @classmethod
    def _known_memory_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        allowed = {"remember_facts", "remember_calls", "excluded_categories"}
        if value is not None and set(value) - allowed:
            raise ValueError(f"unknown memory options {sorted(set(value) - allowed)}; allowed: {sorted(allowed)}")
        if value is None:  # "no preferences" is the defaults, never a NULL in the database
            return {}
        return MemoryPreferences.model_validate(value).model_dump(mode="json", exclude_unset=True)


@dataclass
class Relationship:
    id: int
    user_id: str
    persona_id: str
    relationship_type: str
    custom_system_prompt: str | None
    memory_config: dict[str, Any]
    total_calls: int
    total_seconds: int
    last_call_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Relationship":
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass
class MemorySnapshot:
    """Every tier for one (user, persona), as the prompt builder and the API see it."""

    relationship: Relationship
    facts: dict[str, list[Fact]] = field(default_factory=dict)
    recent_calls: list[CallSummary] = field(default_factory=list)  # newest first
    storylines: list[Storyline] = field(default_factory=list)

    @property
    def fact_count(self) -> int:
        return sum(len(v) for v in self.facts.values())


class PersonaRelationshipManager:
    """The one way the product reads and writes a persona's memory of a user."""

    def __init__(self, store: MemoryStore, forgetting: Forgetting | None = None) -> None:
        self.store = store
        self.forgetting = forgetting or Forgetting(b"callmeback-memory")  # the runtime passes its keyed one

    async def get_relationship(self, user_id: str, persona_id: str) -> Relationship:
        return Relationship.from_row(await self.store.get_or_create_relationship(user_id, persona_id))

    async def update_relationship(self, user_id: str, persona_id: str, update: RelationshipUpdate) -> Relationship:
        rel = await self.get_relationship(user_id, persona_id)
        values = update.model_dump(exclude_unset=True)
        if "relationship_type" in values and values["relationship_type"] is None:
            del values["relationship_type"]
        if values:
            await self.store.update_relationship(rel.id, **{k: (v.value if isinstance(v, StrEnum) else v)
                                                          for k, v in values.items()})
        return await self.get_relationship(user_id, persona_id)

    async def long_term_memory(self, user_id: str, persona_id: str) -> dict[str, list[Fact]]:
        rel = await self.get_relationship(user_id, persona_id)
        return _group_facts(await self.store.facts(rel.id))

    async def set_fact(self, user_id: str, persona_id: str, fact: Fact, *, source: str = "user",
                       call_id: str | None = None, said: str | None = None) -> Fact:
        """Add a fact, or change the value of the fact with the same category and key (the old value
        is kept as its history). `source` says who set it; `call_id` and `said`, the call and words."""
        fact = Fact.model_validate(fact.model_dump())
        rel = await self.get_relationship(user_id, persona_id)
        await self.store.set_fact(rel.id, fact.category.value, fact.key, fact.value, source, call_id=call_id,
                                  said=said[:2000] if said else None)
        return fact

    async def add_fact(self, user_id: str, persona_id: str, category: str, key: str, value: str,
                       *, source: str = "user", call_id: str | None = None, said: str | None = None) -> Fact:
        return await self.set_fact(user_id, persona_id, Fact(category=category, key=key, value=value),
                                   source=source, call_id=call_id, said=said)

    async def delete_fact(self, user_id: str, persona_id: str, key: str, category: str | None = None) -> int:
        """Forget a fact (in every category unless one is named); returns how many went."""
        if category is not None:
            category = FactCategory(category).value
        rel = await self.get_relationship(user_id, persona_id)
        forgotten = self.forgetting.forgotten(await self.store.fact_values(rel.id, key, category))
        return await self.store.forget(rel.id, lambda text: self.forgetting.redact(text, forgotten),
                                       [(f.digest, f.words) for f in forgotten], key=key, category=category)

    async def forgotten(self, user_id: str, persona_id: str) -> list[Forgotten]:
        """Hashes of every value the user deleted from this relationship (for text written later)."""
        rel = await self.get_relationship(user_id, persona_id)
        return [Forgotten(digest, words) for digest, words in await self.store.forgotten(rel.id)]

    async def forget_everything(self, user_id: str, persona_id: str) -> None:
        rel = await self.get_relationship(user_id, persona_id)
        await self.store.wipe(rel.id)

    async def add_call_summary(self, user_id: str, persona_id: str, summary: CallSummary) -> None:
        rel = await self.get_relationship(user_id, persona_id)
        await self.store.add_summary(rel.id, summary.call_id, summary.summary, summary.key_topics, summary.outcome)

    async def recent_context(self, user_id: str, persona_id: str) -> list[CallSummary]:
        rel = await self.get_relationship(user_id, persona_id)
        return _summaries(await self.store.recent_summaries(rel.id, RECENT_CALLS))

    async def set_storyline(self, user_id: str, persona_id: str, storyline: Storyline) -> None:
        rel = await self.get_relationship(user_id, persona_id)
        await self.store.set_storyline(rel.id, storyline.topic, storyline.status.value, storyline.details)

    async def storylines(self, user_id: str, persona_id: str) -> list[Storyline]:
        rel = await self.get_relationship(user_id, persona_id)
        return _storylines(await self.store.storylines(rel.id))

    async def record_call(self, user_id: str, persona_id: str, seconds: int, at: dt.datetime) -> None:
        """Call statistics: one more call, its minutes, when it was."""
        rel = await self.get_relationship(user_id, persona_id)
        await self.store.record_call(rel.id, max(int(seconds), 0), at)

    async def snapshot(self, user_id: str, persona_id: str) -> MemorySnapshot:
        rel = await self.get_relationship(user_id, persona_id)
        facts = _group_facts(await self.store.facts(rel.id))
        excluded = set(rel.memory_config.get("excluded_categories", []))
        facts = {c: f for c, f in facts.items() if c not in excluded}
        if rel.memory_config.get("remember_facts") is False:
            facts = {}
        recent = _summaries(await self.store.recent_summaries(rel.id, RECENT_CALLS))
        if rel.memory_config.get("remember_calls") is False:
            recent = []
        return MemorySnapshot(rel, facts, recent, _storylines(await self.store.storylines(rel.id)))


def _group_facts(rows: list[dict[str, Any]]) -> dict[str, list[Fact]]:
    grouped: dict[str, list[Fact]] = {c.value: [] for c in FactCategory}
    for row in rows:
        grouped.setdefault(row["category"], []).append(
            Fact(category=row["category"], key=row["key"], value=row["value"]))
    return grouped


def _summaries(rows: list[dict[str, Any]]) -> list[CallSummary]:
    return [CallSummary(summary=r["summary"], key_topics=r["key_topics"] or [], outcome=r["outcome"] or "",
                        call_id=r["call_id"], created_at=r["created_at"]) for r in rows]


def _storylines(rows: list[dict[str, Any]]) -> list[Storyline]:
    return [Storyline(topic=r["topic"], status=r["status"], details=r["details"] or "",
                      updated_at=r["updated_at"]) for r in rows]
