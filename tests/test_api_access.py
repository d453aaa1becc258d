"""Who may do what: tokens, users' own data only, operators' routes, and bad input on every body.

The route list comes from the app's own OpenAPI document, so a route added
later without auth fails here instead of going unnoticed.
"""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from agent.accounts.auth import mint_user_token
from tests.api_client import Api, api  # noqa: F401  (fixture)

SAMPLE_PATH_VALUES = {"persona_id": "brad", "call_id": "c0ffee", "key": "job", "user_id": "demo"}


def _operations(api: Api, prefix: str) -> list[tuple[str, str]]:
    doc = api.app.openapi()
    return [(method.upper(), path.format(**SAMPLE_PATH_VALUES)) for path, ops in doc["paths"].items()
            for method in ops if path.startswith(prefix)]


def _user_operations(api: Api) -> list[tuple[str, str]]:
    return [op for op in _operations(api, "/api/") if not op[1].startswith("/api/admin/")]


async def test_every_user_route_needs_a_valid_token(api: Api):
    secret = api.settings.jwt_secret
    now = dt.datetime.now(dt.timezone.utc)
    bad_tokens = {
        "none": None,
        "garbage": "Bearer not-a-jwt",
        "other scheme": "Basic ZGVtbzpkZW1v",
        "expired": "Bearer " + mint_user_token("demo", secret, ttl=dt.timedelta(minutes=1),
                                               now=now - dt.timedelta(hours=1)),
        "forged": "Bearer " + mint_user_token("demo", "another-secret-of-sufficient-length-123"),
        "alg none": "Bearer " + jwt.encode({"sub": "demo", "exp": int(now.timestamp()) + 600}, None, algorithm="none"),
        "no expiry": "Bearer " + jwt.encode({"sub": "demo"}, secret, algorithm="HS256"),
        "unknown user": "Bearer " + mint_user_token("ghost", secret),
        "admin token": f"Bearer {api.settings.admin_token}",
    }
    operations = _user_operations(api)
    assert len(operations) >= 19
    for method, path in operations:
        for label, value in bad_tokens.items():
            headers = {"Authorization": value} if value else {}
            response = await api.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (label, method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"]


async def test_operator_routes_need_the_admin_token(api: Api):
    operations = _operations(api, "/api/admin/")
    assert len(operations) >= 9
    for method, path in operations:
        missing = await api.client.request(method, path, json={})
        assert missing.status_code == 401, (method, path)
        as_user = await api.client.request(method, path, headers=api.user(), json={})
        assert as_user.status_code == 403, (method, path)
        wrong = await api.client.request(method, path, headers={"Authorization": "Bearer " + "b" * 32}, json={})
        assert wrong.status_code == 403, (method, path)
    assert (await api.client.get("/api/admin/users", headers=api.admin)).status_code == 200


async def test_another_users_call_does_not_exist_for_you(api: Api):
    other = await api.add_user("alex", phone="+15555550177")
    allowance = await api.lifecycle.open("demo", "brad", "inbound")
    session = await api.lifecycle.begin(allowance.call_id)
    session.tracker.track_tts(100, model="eleven_flash_v2_5")
    try:
        for suffix in ("", "/cost", "/cost/events", "/cost/stream"):
            if suffix != "/cost/stream":  # (the owner's stream would run until the call ends)
                assert (await api.client.get(f"/api/calls/{allowance.call_id}{suffix}", headers=api.user())
                        ).status_code == 200
            theirs = await api.client.get(f"/api/calls/{allowance.call_id}{suffix}", headers=other)
            nowhere = await api.client.get(f"/api/calls/nosuchcall{suffix}", headers=other)
            assert theirs.status_code == nowhere.status_code == 404, suffix
            assert theirs.json()["detail"].startswith("no call")  # the same answer as for a call that never was
        assert (await api.client.get("/api/calls", headers=other)).json()["total"] == 0
        summary = (await api.client.get("/api/user/costs/summary", headers=other)).json()
        assert summary["today"]["committed_usd"] == "0.00" and summary["live_calls"] == 0
    finally:
        await api.lifecycle.end(session, reason="caller_hung_up")


async def test_relationships_and_memories_are_per_user(api: Api):
    other = await api.add_user("alex")
    await api.client.put("/api/personas/brad/relationship", headers=api.user(),
                         json={"relationship_type": "boyfriend", "custom_system_prompt": "Call me babe."})
    await api.client.post("/api/personas/brad/memories", headers=api.user(),
                          json={"category": "user_facts", "key": "job", "value": "nurse at Mercy"})

    theirs = (await api.client.get("/api/personas/brad/relationship", headers=other)).json()
    assert theirs["relationship_type"] == "friend" and theirs["custom_system_prompt"] is None
    assert (await api.client.get("/api/personas/brad/memories", headers=other)).json()["fact_count"] == 0
    preview = (await api.client.get("/api/personas/brad/prompt-preview", headers=other)).json()
    assert "nurse at Mercy" not in preview["prompt"] and "babe" not in preview["prompt"]

    # What another user does touches only their own side.
    assert (await api.client.delete("/api/personas/brad/memories/job", headers=other)).status_code == 404
    assert (await api.client.delete("/api/personas/brad/memories", headers=other)).status_code == 204
    await api.client.put("/api/personas/brad/relationship", headers=other, json={"relationship_type": "boss"})
    mine = (await api.client.get("/api/personas/brad/memories", headers=api.user())).json()
    assert mine["fact_count"] == 1 and mine["relationship"]["relationship_type"] == "boyfriend"


@pytest.mark.parametrize("method, path, body, loc", [
    ("PUT", "/api/personas/brad/relationship", {"relationship_type": "stranger"}, "relationship_type"),
    ("PUT", "/api/personas/brad/relationship", {"relationship_type": None}, "relationship_type"),
    ("PUT", "/api/personas/brad/relationship", {"memory_config": {"excluded_categories": ["gossip"]}},
     "excluded_categories"),
    ("PUT", "/api/personas/brad/relationship", {"memory_config": {"remember_facts": "yes"}}, "remember_facts"),
    ("PUT", "/api/personas/brad/relationship", {"memory_config": {"forget_me": True}}, "forget_me"),
    ("PUT", "/api/personas/brad/relationship", {"custom_system_prompt": "x" * 4001}, "custom_system_prompt"),
    ("PUT", "/api/personas/brad/relationship", {"custom_system_prompt": "a\u0000b"}, "custom_system_prompt"),
    ("POST", "/api/personas/brad/memories", {"category": "secrets", "key": "k", "value": "v"}, "category"),
    ("POST", "/api/personas/brad/memories", {"category": "user_facts", "key": "a/b", "value": "v"}, "key"),
    ("POST", "/api/personas/brad/memories", {"category": "user_facts", "key": "job", "value": "   "}, "value"),
    ("POST", "/api/personas/brad/memories", {"category": "user_facts", "key": "job"}, "value"),
    ("POST", "/api/personas/brad/memories", {"category": "user_facts", "key": "job", "value": "v", "x": 1}, "x"),
    ("POST", "/api/estimate", {"persona_id": "brad", "minutes": 0}, "minutes"),
    ("POST", "/api/estimate", {"persona_id": "brad", "minutes": 601}, "minutes"),
    ("POST", "/api/estimate", {"persona_id": "brad", "minutes": "10"}, "minutes"),
    ("POST", "/api/estimate", {"persona_id": "brad", "minutes": 5, "direction": "sideways"}, "direction"),
    ("POST", "/api/estimate", {"persona_id": "../etc", "minutes": 5}, "persona_id"),
    ("PUT", "/api/user/budget", {"daily_limit_usd": "-5"}, "daily_limit_usd"),
    ("POST", "/api/calls", {"persona_id": ""}, "persona_id"),
    ("POST", "/api/calls", {}, "persona_id"),
    ("POST", "/api/admin/users", {"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ("POST", "/api/admin/users", {"phone_number": "555-0100"}, "phone_number"),
    ("POST", "/api/admin/users", {"id": "Has Spaces"}, "id"),
    ("PATCH", "/api/admin/users/demo", {"time_zone": None}, "time_zone"),
    ("PATCH", "/api/admin/users/demo", {"display_name": "x" * 201}, "display_name"),
    ("POST", "/api/admin/personas", {"id": "zed", "name": "Zed", "core_prompt": "You are Zed.",
                                     "llm_model": "gpt-99-ultra"}, "llm_model"),
    ("POST", "/api/admin/personas", {"id": "zed", "name": "Zed", "core_prompt": "You are Zed.",
                                     "tts_model": "eleven_imaginary_v9"}, "tts_model"),
    ("POST", "/api/admin/personas", {"id": "zed", "name": "", "core_prompt": "You are Zed."}, "name"),
    ("POST", "/api/admin/personas", {"id": "zed", "name": "Zed", "core_prompt": "x", "traits": ["a"] * 31},
     "traits"),
    ("PATCH", "/api/admin/personas/brad", {"llm_model": "gpt-99-ultra"}, "llm_model"),
    ("PATCH", "/api/admin/personas/brad", {"tts_model": ""}, "tts_model"),
    ("PATCH", "/api/admin/personas/brad", {"name": None}, "name"),
    ("PATCH", "/api/admin/personas/brad", {"phone_number": "+1"}, "phone_number"),
])
async def test_bad_input_is_a_422_that_names_the_field_and_writes_nothing(api: Api, method, path, body, loc):
    before = await _everything(api)
    headers = api.admin if path.startswith("/api/admin/") else api.user()
    response = await api.client.request(method, path, headers=headers, json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert all(e["msg"] for e in errors)
    assert any(loc in e["loc"] for e in errors), errors
    assert await _everything(api) == before


@pytest.mark.parametrize("method, path", [
    ("PUT", "/api/personas/brad/relationship"), ("POST", "/api/personas/brad/memories"), ("POST", "/api/estimate"),
    ("PUT", "/api/user/budget"), ("POST", "/api/calls"), ("POST", "/api/admin/users"),
    ("PATCH", "/api/admin/users/demo"), ("POST", "/api/admin/personas"), ("PATCH", "/api/admin/personas/brad"),
])
async def test_a_body_that_is_not_json_is_refused(api: Api, method, path):
    before = await _everything(api)
    headers = {**(api.admin if path.startswith("/api/admin/") else api.user()), "Content-Type": "application/json"}
    for body in (b"{not json", b"\xff\xfe\x00", b"[1, 2]", b"null"):
        response = await api.client.request(method, path, headers=headers, content=body)
        assert 400 <= response.status_code < 500 and response.json()["detail"], (body, response.text)
    assert await _everything(api) == before


async def _everything(api: Api) -> dict:
    """What a refused request must not have changed."""
    rt = api.rt
    return {
        "users": await rt.users.list_users(),
        "personas": await rt.users.list_personas(),
        "budget": await rt.users.get_budget("demo"),
        "relationship": await rt.memory.store.get_or_create_relationship("demo", "brad"),
        "facts": await rt.memory.long_term_memory("demo", "brad"),
        "calls": (await rt.calls.list_for_user("demo"))[1],
    }
