"""What a user sees and edits of a persona's memory of them: the privacy controls.

Unlike the prompt (which honours the user's exclusions and the token budget),
this shows everything that is stored, so the user can see and delete it all.
"""

from __future__ import annotations

import datetime as dt

from agent.errors import NotFound
from agent.memory.relationships import (
    FactCategory,
    MemoryPreferences,
    PersonaRelationshipManager,
    Relationship,
    RelationshipUpdate,
)
from api.schemas import MemoriesOut, RelationshipIn, RelationshipOut


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


async def memory_view(memory: PersonaRelationshipManager, user_id: str, persona_id: str) -> str:
    """Every tier, as the JSON the API answers, from one read of each table on one connection (the
    API's hot path: DESIGN.md section 9). Built as plain data and validated once, here; the route
    sends it as it is (FastAPI would otherwise validate the same model a second time)."""
    tiers = await memory.store.everything(user_id, persona_id)
    history: dict[tuple[str, str], list[dict]] = {}
    for h in tiers["history"]:
        history.setdefault((h.category, h.key), []).append({
            "value": h.value, "source": h.source, "call_id": h.source_call_id, "said": h.source_text,
            "learned_at": _utc(h.valid_from), "replaced_at": _utc(h.replaced_at)})
    facts: dict[str, list[dict]] = {c.value: [] for c in FactCategory}
    for r in tiers["facts"]:
        if r.category in facts:
            facts[r.category].append({
                "category": r.category, "key": r.key, "value": r.value, "source": r.source,
                "call_id": r.source_call_id, "said": r.source_text, "created_at": _utc(r.created_at),
                "updated_at": _utc(r.updated_at), "history": history.get((r.category, r.key), [])})
    return MemoriesOut.model_validate({
        "persona_id": persona_id, "relationship": relationship_out(Relationship.from_row(tiers["relationship"])),
        "facts": facts, "fact_count": sum(len(v) for v in facts.values()),
        "recent_calls": [{"call_id": r.call_id, "summary": r.summary, "key_topics": r.key_topics or [],
                          "outcome": r.outcome or "", "created_at": _utc(r.created_at)} for r in tiers["summaries"]],
        "storylines": [{"topic": r.topic, "status": r.status, "details": r.details or "",
                        "updated_at": _utc(r.updated_at)} for r in tiers["storylines"]],
    }).model_dump_json()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive (everything is written in UTC); PostgreSQL, aware."""
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


async def forget_fact(memory: PersonaRelationshipManager, user_id: str, persona_id: str, key: str,
                      category: FactCategory | None) -> int:
    """Delete a fact (in every category unless one is named); nothing matched is a 404, not a silent success."""
    removed = await memory.delete_fact(user_id, persona_id, key, category.value if category else None)
    if not removed:
        where = f" in {category.value}" if category else ""
        raise NotFound(f"no remembered fact with key {key!r}{where}")
    return removed
