"""Relationships, memory tiers and the composite prompt."""

import asyncio
import datetime as dt

import pytest
from pydantic import ValidationError

from agent.memory.relationships import CallSummary, Fact, RelationshipUpdate, Storyline
from agent.accounts.personas import Persona
from agent.memory.prompt import build_composite_prompt, compose_prompt, count_tokens

DEMO = {"id": "demo", "display_name": "Sam"}


async def _brad(runtime) -> Persona:
    return Persona.from_row(await runtime.users.get_persona("brad"))


async def test_relationship_defaults_to_friend_and_updates(runtime):
    rel = await runtime.memory.get_relationship("demo", "brad")
    assert rel.relationship_type == "friend" and rel.total_calls == 0
    rel = await runtime.memory.update_relationship("demo", "brad", RelationshipUpdate(
        relationship_type="boyfriend", custom_system_prompt="Call me 'babe'."))
    assert (rel.relationship_type, rel.custom_system_prompt) == ("boyfriend", "Call me 'babe'.")
    assert (await runtime.memory.get_relationship("demo", "brad")).id == rel.id  # one per pair


async def test_flow1_brad_knows_things_after_the_first_call(runtime):
    """Seed Flow 1: a first call, then Brad knows things about the user."""
    brad = await _brad(runtime)
    first = await build_composite_prompt(runtime.memory, DEMO, brad)
    assert "user_knowledge" not in first.parts and "Sam" not in first.parts.get("recent_context", "")
    await runtime.memory.add_fact("demo", "brad", "user_facts", "job", "nurse at Mercy Hospital")
    await runtime.memory.add_fact("demo", "brad", "preferences", "coffee", "oat milk flat white")
    await runtime.memory.add_call_summary("demo", "brad", CallSummary(
        summary="Sam told Brad about starting night shifts.", key_topics=["work"], outcome="felt better"))
    await runtime.memory.record_call("demo", "brad", 300, dt.datetime.now(dt.timezone.utc))
    after = await build_composite_prompt(runtime.memory, DEMO, brad)
    assert "nurse at Mercy Hospital" in after.parts["user_knowledge"]
    assert "oat milk flat white" in after.prompt
    assert "night shifts" in after.parts["recent_context"]
    assert "talked 1 times" in after.parts["relationship"]


async def test_flow2_tenth_call_carries_facts_and_last_summary(runtime):
    """Seed Flow 2: by the tenth call the prompt has the facts and the latest call's summary."""
    await runtime.memory.add_fact("demo", "brad", "important_memories", "dad", "Sam's dad had surgery in May")
    for n in range(1, 10):
        await runtime.memory.add_call_summary("demo", "brad", CallSummary(summary=f"Call number {n} went fine."))
        await runtime.memory.record_call("demo", "brad", 60, dt.datetime.now(dt.timezone.utc))
    await runtime.memory.set_storyline("demo", "brad", Storyline(topic="marathon training", details="week 6"))
    prompt = await build_composite_prompt(runtime.memory, DEMO, await _brad(runtime))
    assert "dad had surgery" in prompt.prompt
    assert "Call number 9 went fine." in prompt.parts["recent_context"]
    assert prompt.parts["recent_context"].index("Call number 9") < prompt.parts["recent_context"].index(
        "Call number 1 ")  # newest first
    assert "marathon training" in prompt.prompt
    assert "talked 9 times" in prompt.prompt
    assert (await runtime.memory.get_relationship("demo", "brad")).total_seconds == 540


async def test_only_ten_recent_calls_are_kept_in_context(runtime):
    for n in range(12):
        await runtime.memory.add_call_summary("demo", "brad", CallSummary(summary=f"summary {n:02d}"))
    recent = await runtime.memory.recent_context("demo", "brad")
    assert [s.summary for s in recent] == [f"summary {n:02d}" for n in range(11, 1, -1)]


async def test_a_deleted_fact_is_absent_from_the_next_prompt(runtime):
    brad = await _brad(runtime)
    await runtime.memory.add_fact("demo", "brad", "user_facts", "ex", "Jordan")
    await runtime.memory.add_fact("demo", "brad", "user_facts", "city", "Austin")
    assert "Jordan" in (await build_composite_prompt(runtime.memory, DEMO, brad)).prompt
    assert await runtime.memory.delete_fact("demo", "brad", "ex") == 1
    prompt = await build_composite_prompt(runtime.memory, DEMO, brad)
    assert "Jordan" not in prompt.prompt and "Austin" in prompt.prompt


async def test_deletions_are_found_by_the_calls_they_concern(runtime):
    """What a worker's ownership loop asks each poll: which live calls' memory lost something since."""
    store = runtime.memory.store
    mark = await store.last_deletion_id()
    assert await store.deleted_after(mark) == {}
    await runtime.memory.add_fact("demo", "brad", "user_facts", "ex", "Jordan")
    await runtime.memory.delete_fact("demo", "brad", "ex")
    first = await store.deleted_after(mark)
    assert list(first) == [("demo", "brad")] and first[("demo", "brad")] > mark
    await runtime.memory.forget_everything("demo", "maya")
    later = await store.deleted_after(first[("demo", "brad")])
    assert list(later) == [("demo", "maya")] and await store.last_deletion_id() == later[("demo", "maya")]


async def test_concurrent_changes_to_a_fact_keep_each_replaced_value_in_its_history_once(runtime):
    """The persona's tool and the user's app writing one fact at once: no value lost, none recorded twice."""
    await runtime.memory.add_fact("demo", "brad", "user_facts", "city", "Austin")
    written = [f"City {n}" for n in range(8)]
    await asyncio.gather(*(runtime.memory.add_fact("demo", "brad", "user_facts", "city", v) for v in written))
    stored = await runtime.memory.store.everything("demo", "brad")
    (current,) = [f.value for f in stored["facts"] if f.key == "city"]
    replaced = [h.value for h in stored["history"] if h.key == "city"]
    assert sorted(replaced + [current]) == sorted(["Austin", *written])


async def test_conflicting_fact_is_replaced_not_duplicated(runtime):
    await runtime.memory.add_fact("demo", "brad", "user_facts", "city", "Austin")
    await runtime.memory.add_fact("demo", "brad", "user_facts", "city", "Denver")
    facts = (await runtime.memory.long_term_memory("demo", "brad"))["user_facts"]
    assert [(f.key, f.value) for f in facts] == [("city", "Denver")]


async def test_bad_memory_input_is_refused_and_nothing_written(runtime):
    with pytest.raises(ValidationError, match="category"):
        await runtime.memory.add_fact("demo", "brad", "secrets", "pin", "1234")
    with pytest.raises(ValidationError):
        await runtime.memory.add_fact("demo", "brad", "user_facts", "", "empty key")
    with pytest.raises(ValidationError):
        RelationshipUpdate(relationship_type="nemesis")
    with pytest.raises(ValueError):
        await runtime.memory.delete_fact("demo", "brad", "pin", category="secrets")
    assert all(not v for v in (await runtime.memory.long_term_memory("demo", "brad")).values())


async def test_forget_everything_wipes_every_tier(runtime):
    await runtime.memory.add_fact("demo", "brad", "inside_jokes", "tacos", "the taco incident")
    await runtime.memory.add_call_summary("demo", "brad", CallSummary(summary="talked tacos"))
    await runtime.memory.set_storyline("demo", "brad", Storyline(topic="taco truck"))
    await runtime.memory.forget_everything("demo", "brad")
    snap = await runtime.memory.snapshot("demo", "brad")
    assert snap.fact_count == 0 and snap.recent_calls == [] and snap.storylines == []


async def test_memory_config_can_exclude_a_category(runtime):
    await runtime.memory.add_fact("demo", "brad", "inside_jokes", "tacos", "the taco incident")
    await runtime.memory.update_relationship("demo", "brad", RelationshipUpdate(
        memory_config={"excluded_categories": ["inside_jokes"]}))
    prompt = await build_composite_prompt(runtime.memory, DEMO, await _brad(runtime))
    assert "taco" not in prompt.prompt


async def test_over_budget_prompt_is_trimmed_lowest_tier_first(runtime):
    brad = await _brad(runtime)
    await runtime.memory.update_relationship("demo", "brad", RelationshipUpdate(
        custom_system_prompt="Be extra sweet."))
    for n in range(60):
        await runtime.memory.add_fact("demo", "brad", "user_facts", f"fact_{n}", f"a detail about thing {n} " * 3)
        await runtime.memory.add_fact("demo", "brad", "inside_jokes", f"joke_{n}", f"the running gag number {n}")
    for n in range(10):
        await runtime.memory.add_call_summary("demo", "brad", CallSummary(summary=f"A long chat number {n}. " * 5))
    full = await build_composite_prompt(runtime.memory, DEMO, brad, token_budget=100_000)
    assert full.trimmed == {}

    core_only = compose_prompt(brad, None, user_name="Sam")
    budget = core_only.token_count + 700
    trimmed = await build_composite_prompt(runtime.memory, DEMO, brad, token_budget=budget)
    assert trimmed.token_count <= budget and trimmed.token_count == count_tokens(trimmed.prompt)
    # Recent calls went first, then inside jokes; user facts survive longer; core and custom prompt stay.
    assert trimmed.trimmed["recent_calls"] == 10
    assert trimmed.trimmed["inside_jokes"] == 60
    assert "user_facts" in trimmed.trimmed and trimmed.trimmed["user_facts"] < 60
    assert trimmed.parts["core_identity"] == core_only.parts["core_identity"]
    assert "Be extra sweet." in trimmed.prompt

    # The user's memory token limit tightens the budget further.
    limited = await build_composite_prompt(runtime.memory, DEMO, brad, memory_token_limit=core_only.token_count + 50)
    assert limited.token_count <= core_only.token_count + 50
    assert "user_knowledge" not in limited.parts


def test_fact_keys_and_categories_are_validated():
    with pytest.raises(ValidationError):
        Fact(category="user_facts", key="a/b", value="x")
    assert Fact(category="preferences", key=" tea ", value=" green ").key == "tea"
