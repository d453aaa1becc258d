"""Operators: users, personas, tokens; metrics; the local token helper."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from agent.accounts.auth import verify_user_token
from tests.api_client import Api, api  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


async def test_operators_create_and_edit_users(api: Api):
    created = await api.client.post("/api/admin/users", headers=api.admin, json={
        "id": "alex", "display_name": "  Alex  ", "phone_number": "+15555550177", "time_zone": "Europe/Paris"})
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": None} == {"id": "alex", "display_name": "Alex",
                                                    "phone_number": "+15555550177", "time_zone": "Europe/Paris",
                                                    "created_at": None}
    generated = await api.client.post("/api/admin/users", headers=api.admin, json={"display_name": "Sam"})
    assert generated.status_code == 201 and len(generated.json()["id"]) == 32

    duplicate = await api.client.post("/api/admin/users", headers=api.admin, json={"id": "alex"})
    assert duplicate.status_code == 409 and "alex" in duplicate.json()["detail"]
    taken = await api.client.post("/api/admin/users", headers=api.admin, json={"phone_number": "+15555550100"})
    assert taken.status_code == 409 and "+15555550100" in taken.json()["detail"]
    personas_number = await api.client.post("/api/admin/users", headers=api.admin,
                                            json={"phone_number": "+15555550001"})  # Brad's line
    assert personas_number.status_code == 409

    edited = await api.client.patch("/api/admin/users/alex", headers=api.admin,
                                    json={"time_zone": "America/New_York", "phone_number": None})
    assert edited.status_code == 200
    assert (edited.json()["time_zone"], edited.json()["phone_number"], edited.json()["display_name"]) == (
        "America/New_York", None, "Alex")
    assert (await api.client.patch("/api/admin/users/nobody", headers=api.admin, json={})).status_code == 404
    clash = await api.client.patch("/api/admin/users/alex", headers=api.admin, json={"phone_number": "+15555550100"})
    assert clash.status_code == 409
    listed = (await api.client.get("/api/admin/users", headers=api.admin)).json()
    assert {"demo", "alex"} <= {u["id"] for u in listed}
    assert (await api.client.get("/api/admin/users/alex", headers=api.admin)).json()["time_zone"] == "America/New_York"
    assert (await api.client.get("/api/admin/users/nobody", headers=api.admin)).status_code == 404


async def test_a_user_time_zone_sets_their_budget_day(api: Api):
    await api.client.patch("/api/admin/users/demo", headers=api.admin, json={"time_zone": "Pacific/Kiritimati"})
    summary = (await api.client.get("/api/user/costs/summary", headers=api.user())).json()
    assert summary["time_zone"] == "Pacific/Kiritimati"
    assert summary["today"]["starts_at"].endswith("10:00:00Z")  # local midnight at UTC+14


async def test_operators_mint_tokens_that_work(api: Api):
    minted = await api.client.post("/api/admin/users/demo/token", headers=api.admin)
    assert minted.status_code == 200
    body = minted.json()
    assert verify_user_token(body["token"], api.settings.jwt_secret) == "demo" and body["token_type"] == "bearer"
    me = await api.client.get("/api/user", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["id"] == "demo"
    assert (await api.client.post("/api/admin/users/nobody/token", headers=api.admin)).status_code == 404


async def test_operators_create_and_edit_personas(api: Api):
    created = await api.client.post("/api/admin/personas", headers=api.admin, json={
        "id": "zoe", "name": "Zoe", "core_prompt": "You are Zoe, a chess coach.", "traits": ["patient"],
        "voice_id": "voice-zoe", "llm_model": "llama3.1-8b", "tts_model": "eleven_turbo_v2_5",
        "phone_number": "+15555550009"})
    assert created.status_code == 201, created.text
    assert created.json()["llm_model"] == "llama3.1-8b"
    listed = (await api.client.get("/api/personas/zoe", headers=api.user())).json()
    assert listed["name"] == "Zoe" and listed["phone_number"] == "+15555550009"

    again = await api.client.post("/api/admin/personas", headers=api.admin,
                                  json={"id": "zoe", "name": "Zoe", "core_prompt": "x"})
    assert again.status_code == 409
    same_line = await api.client.post("/api/admin/personas", headers=api.admin, json={
        "id": "yan", "name": "Yan", "core_prompt": "You are Yan.", "phone_number": "+15555550001"})
    assert same_line.status_code == 409 and "+15555550001" in same_line.json()["detail"]

    edited = await api.client.patch("/api/admin/personas/zoe", headers=api.admin,
                                    json={"greeting": "Ready for a game?", "llm_model": None})
    assert edited.status_code == 200
    assert edited.json()["greeting"] == "Ready for a game?" and edited.json()["llm_model"] is None
    assert edited.json()["core_prompt"] == "You are Zoe, a chess coach."  # left out: unchanged
    unpriced = await api.client.patch("/api/admin/personas/zoe", headers=api.admin, json={"tts_model": "eleven_v9"})
    assert unpriced.status_code == 422 and "no price" in unpriced.json()["detail"][0]["msg"]
    assert (await api.rt.users.get_persona("zoe"))["tts_model"] == "eleven_turbo_v2_5"  # nothing written
    assert (await api.client.patch("/api/admin/personas/nobody", headers=api.admin, json={})).status_code == 404


async def test_priced_models_are_the_documented_choices(api: Api):
    schema = api.app.openapi()["components"]["schemas"]["PersonaCreate"]["properties"]
    llm_choices = schema["llm_model"]["anyOf"][0]["enum"]
    assert "gpt-oss-120b" in llm_choices and all(api.rt.prices.has("cerebras", "llm", m, "output_token")
                                                  for m in llm_choices)
    assert "eleven_flash_v2_5" in schema["tts_model"]["anyOf"][0]["enum"]


async def test_metrics_in_prometheus_format(api: Api):
    allowance = await api.lifecycle.open("demo", "brad", "inbound")
    session = await api.lifecycle.begin(allowance.call_id)
    session.tracker.track_tts(1000, model="eleven_flash_v2_5")
    await session.tracker.flush()
    live = await api.client.get("/metrics")
    assert live.status_code == 200 and live.headers["content-type"].startswith("text/plain")
    text = live.text
    assert "callmeback_live_calls 1.0" in text and "callmeback_process_live_calls 1.0" in text
    assert 'callmeback_cost_usd_total{service="tts"}' in text
    assert "callmeback_process_live_cost_usd" in text
    await api.lifecycle.end(session, reason="caller_hung_up")
    done = (await api.client.get("/metrics")).text
    assert "callmeback_live_calls 0.0" in done
    assert 'callmeback_calls_total{direction="inbound",outcome="caller_hung_up",status="ended"} 1.0' in done


async def test_health(api: Api):
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_docs_and_openapi_are_served(api: Api):
    docs = await api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Everything the page loads comes from this server: no CDN, so it works offline.
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/docs/static/") for a in assets), assets
    for asset in assets:
        assert (await api.client.get(asset)).status_code == 200, asset
    doc = (await api.client.get("/openapi.json")).json()
    assert {"UserToken", "AdminToken"} <= set(doc["components"]["securitySchemes"])
    calls = doc["paths"]["/api/calls"]["post"]
    assert {"201", "401", "402", "404", "409", "422", "503"} <= set(calls["responses"])
    assert calls["security"] == [{"UserToken": []}]


def test_token_helper_mints_a_token_the_server_accepts(tmp_path):
    secret = "t" * 40
    env = {**os.environ, "JWT_SECRET": secret}
    done = subprocess.run([sys.executable, "-m", "tools.tokens", "demo", "--days", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert verify_user_token(done.stdout.strip(), secret) == "demo"
    # From .env as well, and a clear refusal without any secret.
    (tmp_path / ".env").write_text(f"JWT_SECRET={secret}\n")
    from_file = subprocess.run([sys.executable, "-m", "tools.tokens", "demo"], cwd=tmp_path,
                               env={**{k: v for k, v in os.environ.items() if k != "JWT_SECRET"},
                                    "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert verify_user_token(from_file.stdout.strip(), secret) == "demo", from_file.stderr
    (tmp_path / ".env").write_text("")
    refused = subprocess.run([sys.executable, "-m", "tools.tokens", "demo"], cwd=tmp_path,
                             env={**{k: v for k, v in os.environ.items() if k != "JWT_SECRET"},
                                  "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "JWT_SECRET" in refused.stderr
