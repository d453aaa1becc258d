"""Personas, relationships, memories and the prompt preview, through the HTTP API."""

from __future__ import annotations

import datetime as dt

from agent.memory.relationships import CallSummary, Storyline
from tests.api_client import Api, api  # noqa: F401  (fixture)


async def test_personas_are_listed_and_read(api: Api):
    listed = await api.client.get("/api/personas", headers=api.user())
    assert listed.status_code == 200
    assert {"brad", "maya", "grandpa-joe"} <= {p["id"] for p in listed.json()}
    brad = await api.client.get("/api/personas/brad", headers=api.user())
    assert brad.status_code == 200 and brad.json()["name"] == "Brad" and "laid-back" in brad.json()["traits"]
    missing = await api.client.get("/api/personas/nobody", headers=api.user())
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]


async def test_the_token_says_who_you_are(api: Api):
    me = await api.client.get("/api/user", headers=api.user())
    assert me.status_code == 200 and me.json()["id"] == "demo" and me.json()["phone_number"] == "+15555550100"


async def test_relationship_starts_as_friend_and_can_be_changed(api: Api):
    first = await api.client.get("/api/personas/brad/relationship", headers=api.user())
    assert first.status_code == 200
    assert first.json()["relationship_type"] == "friend"
    assert first.json()["memory_config"] == {"remember_facts": True, "remember_calls": True, "excluded_categories": []}
    changed = await api.client.put("/api/personas/brad/relationship", headers=api.user(), json={
        "relationship_type": "best_friend", "custom_system_prompt": "Call me Sammy.",
        "memory_config": {"excluded_categories": ["inside_jokes"]}})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["relationship_type"] == "best_friend" and body["custom_system_prompt"] == "Call me Sammy."
    assert body["memory_config"]["excluded_categories"] == ["inside_jokes"]
    # Fields left out keep their value; null removes the custom prompt.
    again = await api.client.put("/api/personas/brad/relationship", headers=api.user(),
                                 json={"custom_system_prompt": None})
    assert again.json()["relationship_type"] == "best_friend" and again.json()["custom_system_prompt"] is None
    preview = await api.client.get("/api/personas/brad/prompt-preview", headers=api.user())
    assert "best friend" in preview.json()["prompt"]


async def test_memories_show_every_tier(api: Api):
    rt = api.rt
    await rt.memory.add_fact("demo", "brad", "user_facts", "job", "nurse")
    await rt.memory.add_call_summary("demo", "brad", CallSummary(summary="Talked about night shifts.",
                                                                 key_topics=["work"], outcome="calmer"))
    await rt.memory.set_storyline("demo", "brad", Storyline(topic="marathon", details="week 6"))
    await rt.memory.record_call("demo", "brad", 120, dt.datetime.now(dt.timezone.utc))
    added = await api.client.post("/api/personas/brad/memories", headers=api.user(),
                                  json={"category": "inside_jokes", "key": "seagull", "value": "the taco thief"})
    assert added.status_code == 201 and added.json() == {"category": "inside_jokes", "key": "seagull",
                                                         "value": "the taco thief"}
    memories = (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()
    assert memories["fact_count"] == 2
    assert set(memories["facts"]) == {"relationship_facts", "user_facts", "inside_jokes", "important_memories",
                                      "preferences"}
    assert [(f["key"], f["value"], f["source"]) for f in memories["facts"]["user_facts"]] == [("job", "nurse", "user")]
    assert memories["facts"]["inside_jokes"][0]["key"] == "seagull"
    assert memories["recent_calls"][0]["summary"] == "Talked about night shifts."
    assert memories["recent_calls"][0]["key_topics"] == ["work"]
    assert memories["storylines"][0]["topic"] == "marathon" and memories["storylines"][0]["status"] == "ongoing"
    assert memories["relationship"]["total_calls"] == 1 and memories["relationship"]["total_seconds"] == 120


async def test_adding_a_fact_with_the_same_key_replaces_it(api: Api):
    for value in ("nurse", "charge nurse"):
        response = await api.client.post("/api/personas/brad/memories", headers=api.user(),
                                          json={"category": "user_facts", "key": "job", "value": value})
        assert response.status_code == 201
    facts = (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()["facts"]["user_facts"]
    assert [(f["key"], f["value"]) for f in facts] == [("job", "charge nurse")]


async def test_a_deleted_memory_is_gone_from_the_next_prompt(api: Api):
    for category, key, value in [("user_facts", "dog_name", "Biscuit"), ("preferences", "coffee", "oat flat white")]:
        response = await api.client.post("/api/personas/brad/memories", headers=api.user(),
                                          json={"category": category, "key": key, "value": value})
        assert response.status_code == 201
    before = (await api.client.get("/api/personas/brad/prompt-preview", headers=api.user())).json()
    assert "Biscuit" in before["prompt"] and "oat flat white" in before["prompt"]
    assert before["token_count"] > 0 and before["token_budget"] == api.settings.prompt_token_budget
    assert "user_knowledge" in before["sections"]

    deleted = await api.client.delete("/api/personas/brad/memories/dog_name", headers=api.user())
    assert deleted.status_code == 204
    after = (await api.client.get("/api/personas/brad/prompt-preview", headers=api.user())).json()
    assert "Biscuit" not in after["prompt"] and "oat flat white" in after["prompt"]
    assert after["token_count"] < before["token_count"]
    again = await api.client.delete("/api/personas/brad/memories/dog_name", headers=api.user())
    assert again.status_code == 404 and "dog_name" in again.json()["detail"]


async def test_delete_by_category_when_keys_repeat(api: Api):
    for category, value in [("user_facts", "Lisbon"), ("important_memories", "the trip to Lisbon in May")]:
        await api.client.post("/api/personas/brad/memories", headers=api.user(),
                              json={"category": category, "key": "lisbon", "value": value})
    one = await api.client.delete("/api/personas/brad/memories/lisbon", params={"category": "user_facts"},
                                  headers=api.user())
    assert one.status_code == 204
    facts = (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()["facts"]
    assert facts["user_facts"] == [] and facts["important_memories"][0]["key"] == "lisbon"
    wrong = await api.client.delete("/api/personas/brad/memories/lisbon", params={"category": "jokes"},
                                    headers=api.user())
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["query", "category"]
    rest = await api.client.delete("/api/personas/brad/memories/lisbon", headers=api.user())
    assert rest.status_code == 204
    assert (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()["fact_count"] == 0


async def test_wipe_forgets_everything_but_the_relationship(api: Api):
    rt = api.rt
    await api.client.put("/api/personas/maya/relationship", headers=api.user(), json={"relationship_type": "coach"})
    await rt.memory.add_fact("demo", "maya", "user_facts", "goal", "a promotion")
    await rt.memory.add_call_summary("demo", "maya", CallSummary(summary="Practised the pitch."))
    await rt.memory.set_storyline("demo", "maya", Storyline(topic="promotion"))
    await rt.memory.add_fact("demo", "brad", "user_facts", "job", "nurse")  # another persona's memory stays
    wiped = await api.client.delete("/api/personas/maya/memories", headers=api.user())
    assert wiped.status_code == 204
    maya = (await api.client.get("/api/personas/maya/memories", headers=api.user())).json()
    assert maya["fact_count"] == 0 and maya["recent_calls"] == [] and maya["storylines"] == []
    assert maya["relationship"]["relationship_type"] == "coach"
    preview = (await api.client.get("/api/personas/maya/prompt-preview", headers=api.user())).json()
    assert "promotion" not in preview["prompt"] and "Practised" not in preview["prompt"]
    brad = (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()
    assert brad["fact_count"] == 1


async def test_excluded_categories_stay_visible_but_leave_the_prompt(api: Api):
    await api.client.post("/api/personas/brad/memories", headers=api.user(),
                          json={"category": "inside_jokes", "key": "seagull", "value": "the taco thief"})
    await api.client.put("/api/personas/brad/relationship", headers=api.user(),
                         json={"memory_config": {"excluded_categories": ["inside_jokes"]}})
    preview = (await api.client.get("/api/personas/brad/prompt-preview", headers=api.user())).json()
    assert "taco thief" not in preview["prompt"]
    memories = (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()
    assert memories["facts"]["inside_jokes"][0]["value"] == "the taco thief"  # the user still sees it to delete it


async def test_prompt_preview_honours_the_users_memory_token_limit(api: Api):
    for n in range(60):
        await api.rt.memory.add_fact("demo", "brad", "user_facts", f"fact_{n}", f"a long remembered detail number {n}")
    full = (await api.client.get("/api/personas/brad/prompt-preview", headers=api.user())).json()
    limited = await api.client.put("/api/user/budget", headers=api.user(), json={"memory_token_limit": 300})
    assert limited.status_code == 200
    small = (await api.client.get("/api/personas/brad/prompt-preview", headers=api.user())).json()
    assert small["token_budget"] == 300 and small["token_count"] <= 300 < full["token_count"]
    assert small["trimmed"].get("user_facts", 0) > 0


async def test_estimate_gives_the_services_total_and_warnings(api: Api):
    estimate = await api.client.post("/api/estimate", headers=api.user(), json={"persona_id": "brad", "minutes": 10})
    assert estimate.status_code == 200, estimate.text
    body = estimate.json()
    assert set(body["services"]) == {"twilio", "stt", "llm", "tts", "memory"}
    assert body["direction"] == "outbound" and body["within_budget"] is True and body["warnings"] == []
    assert body["call_limit_usd"] == "10.00" and body["limit_kind"] == "per_call"
    micros = {k: int(round(float(v) * 1_000_000)) for k, v in body["services"].items()}
    assert sum(micros.values()) == round(float(body["subtotal_usd"]) * 1_000_000)
    # A persona that remembers a lot: the estimate says what the memory costs.
    for n in range(150):
        await api.rt.memory.add_fact("demo", "brad", "important_memories", f"m{n}",
                                     f"a long and detailed memory about day {n} of the summer trip along the coast")
    big = (await api.client.post("/api/estimate", headers=api.user(),
                                 json={"persona_id": "brad", "minutes": 10, "direction": "inbound"})).json()
    assert big["memory_tokens"] > 2000 and any("remembers a lot" in w for w in big["warnings"])
    # A budget too small for the call: the estimate warns before the call is cut off.
    await api.client.put("/api/user/budget", headers=api.user(), json={"per_call_limit_usd": "0.60"})
    long_call = (await api.client.post("/api/estimate", headers=api.user(),
                                       json={"persona_id": "brad", "minutes": 120})).json()
    assert long_call["within_budget"] is False and any("cut off" in w for w in long_call["warnings"])
