"""Relationships, memories and the prompt preview as the API shows them."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field, create_model

from agent.memory.relationships import CallSummary, FactCategory, MemoryPreferences, RelationshipType, StorylineStatus
from api.schemas.common import ANY_TEXT, FACT_KEY, REQUIRED_TEXT, CleanInput

# -- relationship and memories ---------------------------------------------

class RelationshipOut(BaseModel):
    persona_id: str
    relationship_type: RelationshipType
    custom_system_prompt: str | None
    memory_config: MemoryPreferences
    total_calls: int
    total_seconds: int
    last_call_at: dt.datetime | None


class RelationshipIn(CleanInput):
    """Fields left out keep their value; `custom_system_prompt: null` removes it."""

    relationship_type: RelationshipType = None  # type: ignore[assignment]
    custom_system_prompt: str | None = Field(None, max_length=4000, pattern=ANY_TEXT)
    memory_config: MemoryPreferences | None = Field(None, description="null: back to the defaults")


class FactIn(CleanInput):
    """Adds the fact, or replaces the value of the fact with the same category and key."""

    category: FactCategory
    key: str = Field(min_length=1, max_length=200, pattern=FACT_KEY, examples=["dog_name"])
    value: str = Field(min_length=1, max_length=2000, pattern=REQUIRED_TEXT, examples=["Biscuit"])


class FactVersionOut(BaseModel):
    """An earlier value of a fact, and where that one came from."""

    value: str
    source: str
    call_id: str | None
    said: str | None
    learned_at: dt.datetime | None
    replaced_at: dt.datetime | None


class FactOut(BaseModel):
    category: FactCategory
    key: str
    value: str
    source: str = Field(description="Who set it: user, operator, extraction (after a call) or call (during one)")
    call_id: str | None = Field(description="The call it was learned in, if any")
    said: str | None = Field(description="The caller's words it came from, when they were found in the call")
    created_at: dt.datetime | None
    updated_at: dt.datetime | None = Field(description="When this value was learned")
    history: list[FactVersionOut] = Field(default_factory=list, description="Earlier values, newest first")


FactsByCategory = create_model(  # one list per category, all always present
    "FactsByCategory", **{c.value: (list[FactOut], Field(default_factory=list)) for c in FactCategory})


class CallSummaryOut(BaseModel):
    call_id: str | None
    summary: str
    key_topics: list[str]
    outcome: str
    created_at: dt.datetime | None

    @classmethod
    def from_summary(cls, s: CallSummary) -> "CallSummaryOut":
        return cls(call_id=s.call_id, summary=s.summary, key_topics=s.key_topics, outcome=s.outcome,
                   created_at=s.created_at)


class StorylineOut(BaseModel):
    topic: str
    status: StorylineStatus
    details: str
    updated_at: dt.datetime | None


class MemoriesOut(BaseModel):
    persona_id: str
    relationship: RelationshipOut
    facts: FactsByCategory  # type: ignore[valid-type]
    fact_count: int
    recent_calls: list[CallSummaryOut] = Field(description="The last call summaries, newest first")
    storylines: list[StorylineOut]


class PromptPreviewOut(BaseModel):
    persona_id: str
    prompt: str = Field(description="The system prompt the next call would start with")
    token_count: int
    token_budget: int
    sections: dict[str, str] = Field(description="The prompt's sections by tier, in prompt order")
    trimmed: dict[str, int] = Field(description="Lines left out to fit the budget, by tier")
