"""What a user sees and edits of a persona's memory of them: the privacy controls.

Unlike the prompt (which honours the user's exclusions and the token budget),
this shows everything that is stored, so the user can see and delete it all.
"""

from __future__ import annotations

from api.schemas import (
    CallSummaryOut,
    FactOut,
    FactsByCategory,
    MemoriesOut,
    RelationshipIn,
    RelationshipOut,
    StorylineOut,
)
from agent.errors import NotFound
from agent.memory.relationships import (
    RECENT_CALLS,
    FactCategory,
    MemoryPreferences,
    PersonaRelationshipManager,
    Relationship,
    RelationshipUpdate,
)


def relationship_out(rel: Relationship) -> RelationshipOut:
    prefs = {k: v for k, v in (rel.memory_config or {}).items() if k in MemoryPreferences.model_fields}
    return RelationshipOut(persona_id=rel.persona_id, relationship_type=rel.relationship_type,
                           custom_system_prompt=rel.custom_system_prompt,
                           memory_config=MemoryPreferences.model_validate(prefs), total_calls=rel.total_calls,
                           total_seconds=rel.total_seconds, last_call_at=rel.last_call_at)


async def update_relationship(memory: PersonaRelationshipManager, user_id: str, persona_id: str,
                              change: RelationshipIn) -> RelationshipOut:
    values = change.model_dump(mode="json", exclude_unset=True)
    if values.get("custom_system_prompt") == "":
        values["custom_system_prompt"] = None  # an empty prompt is no prompt
    rel = await memory.update_relationship(user_id, persona_id, RelationshipUpdate(**values))
    return relationship_out(rel)


async def memory_view(memory: PersonaRelationshipManager, user_id: str, persona_id: str) -> MemoriesOut:
    """Every tier in one read of each table (the API's hot path: see DESIGN.md section 9)."""
    rel = await memory.get_relationship(user_id, persona_id)
    store = memory.store
    facts: dict[str, list[FactOut]] = {c.value: [] for c in FactCategory}
    for row in await store.facts(rel.id):
        if row["category"] in facts:
            facts[row["category"]].append(FactOut(**{k: row[k] for k in FactOut.model_fields}))
    summaries = await store.recent_summaries(rel.id, RECENT_CALLS)
    stories = await store.storylines(rel.id)
    return MemoriesOut(
        persona_id=persona_id, relationship=relationship_out(rel), facts=FactsByCategory(**facts),
        fact_count=sum(len(v) for v in facts.values()),
        recent_calls=[CallSummaryOut(call_id=r["call_id"], summary=r["summary"], key_topics=r["key_topics"] or [],
                                     outcome=r["outcome"] or "", created_at=r["created_at"]) for r in summaries],
        storylines=[StorylineOut(topic=r["topic"], status=r["status"], details=r["details"] or "",
                                 updated_at=r["updated_at"]) for r in stories],
    )


async def forget_fact(memory: PersonaRelationshipManager, user_id: str, persona_id: str, key: str,
                      category: FactCategory | None) -> int:
    """Delete a fact (in every category unless one is named); nothing matched is a 404, not a silent success."""
    removed = await memory.delete_fact(user_id, persona_id, key, category.value if category else None)
    if not removed:
        where = f" in {category.value}" if category else ""
        raise NotFound(f"no remembered fact with key {key!r}{where}")
    return removed
