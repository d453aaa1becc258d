"""Budget settings, spending summaries, "call me back" and call costs, through the HTTP API."""

from __future__ import annotations

import httpx
import pytest

from agent.books.money import usd
from server import create_app
from tests.api_client import Api, api  # noqa: F401  (fixture)
from fakes import ServedApp, TwilioRestFake

AC, TOKEN = "AC" + "3" * 32, "api-rest-token"


async def test_budget_reads_and_changes_in_dollars(api: Api):
    budget = await api.client.get("/api/user/budget", headers=api.user())
    assert budget.status_code == 200
    assert budget.json() == {
        "per_call_limit_usd": "10.00", "daily_limit_usd": "50.00", "monthly_limit_usd": "100.00",
        "warning_threshold_pct": 75, "auto_cutoff": True, "grace_period_seconds": 10, "memory_token_limit": None,
        "notify_email": False, "notify_sms": True, "minimum_call_usd": "0.50"}
    changed = await api.client.put("/api/user/budget", headers=api.user(), json={
        "per_call_limit_usd": "7.5", "daily_limit_usd": "20.000001", "warning_threshold_pct": 60,
        "auto_cutoff": False})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["per_call_limit_usd"], body["daily_limit_usd"], body["monthly_limit_usd"]) == (
        "7.50", "20.000001", "100.00")
    assert body["warning_threshold_pct"] == 60 and body["auto_cutoff"] is False
    stored = await api.rt.budgets.settings("demo")
    assert (stored.per_call_limit_micros, stored.daily_limit_micros) == (7_500_000, 20_000_001)


@pytest.mark.parametrize("change, field, words", [
    ({"per_call_limit_usd": "-1"}, "per_call_limit_usd", "pattern"),
    ({"per_call_limit_usd": "1.0000001"}, "per_call_limit_usd", "pattern"),
    ({"per_call_limit_usd": 5}, "per_call_limit_usd", "valid string"),
    ({"warning_threshold_pct": 0}, "warning_threshold_pct", "greater than 0"),
    ({"warning_threshold_pct": 100}, "warning_threshold_pct", "less than 100"),
    ({"warning_threshold_pct": "50"}, "warning_threshold_pct", "valid integer"),
    ({"grace_period_seconds": -1}, "grace_period_seconds", "greater than or equal to 0"),
    ({"auto_cutoff": 0}, "auto_cutoff", "valid boolean"),
    ({"daily_limit_usd": None}, "daily_limit_usd", "valid string"),
    ({"per_call_limit_usd": "60"}, None, "daily limit must be at least the per-call limit"),
    ({"monthly_limit_usd": "40"}, None, "monthly limit must be at least the daily limit"),
    ({"weekly_limit_usd": "40"}, "weekly_limit_usd", "Extra inputs"),
])
async def test_bad_budgets_are_refused_and_nothing_is_written(api: Api, change, field, words):
    before = await api.rt.budgets.settings("demo")
    response = await api.client.put("/api/user/budget", headers=api.user(), json=change)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(words in e["msg"] for e in errors), errors
    if field:
        assert any(e["loc"][-1] == field for e in errors), errors
    assert await api.rt.budgets.settings("demo") == before


async def _finished_call(api: Api, user_id: str, persona_id: str, characters: int) -> str:
    """A call in this server's own process, with real events, then ended: its books are closed."""
    allowance = await api.lifecycle.open(user_id, persona_id, "webrtc")
    session = await api.lifecycle.begin(allowance.call_id)
    session.tracker.track_tts(characters, model="eleven_flash_v2_5")
    session.tracker.track_llm(1200, 80, vendor="cerebras", model="gpt-oss-120b")
    await api.lifecycle.end(session, reason="caller_hung_up")
    return allowance.call_id


async def test_calls_are_listed_newest_first_and_paginated(api: Api):
    ids = [await _finished_call(api, "demo", persona, 100) for persona in ("brad", "maya", "grandpa-joe")]
    page = await api.client.get("/api/calls", params={"limit": 2}, headers=api.user())
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 3 and body["limit"] == 2 and body["offset"] == 0
    assert [c["id"] for c in body["items"]] == [ids[2], ids[1]]
    rest = (await api.client.get("/api/calls", params={"limit": 2, "offset": 2}, headers=api.user())).json()
    assert [c["id"] for c in rest["items"]] == [ids[0]]
    one = (await api.client.get(f"/api/calls/{ids[0]}", headers=api.user())).json()
    assert one["persona_id"] == "brad" and one["status"] == "ended" and one["end_reason"] == "caller_hung_up"
    assert one["reserved_usd"] == "10.00" and float(one["spent_usd"]) > 0
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}):
        assert (await api.client.get("/api/calls", params=bad, headers=api.user())).status_code == 422


async def test_a_finished_calls_cost_comes_from_its_closed_books(api: Api):
    call_id = await _finished_call(api, "demo", "brad", 2000)
    cost = await api.client.get(f"/api/calls/{call_id}/cost", headers=api.user())
    assert cost.status_code == 200
    body = cost.json()
    breakdown = await api.rt.calls.breakdown(call_id)
    assert body["source"] == "final" and body["live"] is False and body["status"] == "ended"
    assert body["total_usd"] == usd(breakdown["total_micros"])
    assert body["subtotal_usd"] == usd(breakdown["subtotal_micros"])
    assert set(body["services"]) == {"tts", "llm", "memory"}
    assert body["services"]["tts"]["units"] == {"character": "2000"}
    assert body["amount_charged_usd"] == "0.00"  # payments are off

    events = (await api.client.get(f"/api/calls/{call_id}/cost/events", headers=api.user())).json()
    stored = await api.rt.calls.events(call_id)
    assert len(events["events"]) == len(stored) and events["live"] is False
    assert events["events_total_usd"] == usd(sum(e["cost_micros"] for e in stored))
    top = events["drivers"][0]
    assert (top["service"], top["kind"]) == ("tts", "tts_request")  # 2,000 characters: the most expensive part
    assert sum(d["events"] for d in events["drivers"]) == len(stored)
    first = events["events"][0]
    assert {"seq", "service", "kind", "vendor", "model", "unit", "quantity", "unit_price_usd", "cost_usd", "source",
            "price_version", "created_at"} <= set(first)
    assert "E" not in first["unit_price_usd"]  # a plain decimal, never 3.5E-7


async def test_cost_summary_sets_spending_beside_the_limits(api: Api):
    await _finished_call(api, "demo", "brad", 3000)
    await _finished_call(api, "demo", "maya", 500)
    summary = await api.client.get("/api/user/costs/summary", headers=api.user())
    assert summary.status_code == 200
    body = summary.json()
    calls = [c for c in (await api.rt.calls.list_for_user("demo"))[0]]
    spent = sum(c["spent_micros"] for c in calls)
    assert body["today"]["spent_usd"] == usd(spent) and body["this_month"]["spent_usd"] == usd(spent)
    assert body["today"]["limit_usd"] == "50.00" and body["this_month"]["limit_usd"] == "100.00"
    assert body["today"]["remaining_usd"] == usd(50_000_000 - spent)
    assert body["per_call_limit_usd"] == "10.00" and body["live_calls"] == 0
    services = {s["service"]: s["cost_usd"] for s in body["by_service"]}
    assert {"tts", "llm", "memory"} <= set(services)
    by_persona = {p["persona_id"]: p for p in body["by_persona"]}
    assert by_persona["brad"]["calls"] == 1 and by_persona["brad"]["name"] == "Brad"
    assert float(by_persona["brad"]["spent_usd"]) > float(by_persona["maya"]["spent_usd"])


async def test_call_me_back_needs_twilio(api: Api):
    response = await api.client.post("/api/calls", headers=api.user(), json={"persona_id": "brad"})
    assert response.status_code == 503 and "Twilio" in response.json()["detail"]
    assert (await api.rt.calls.list_for_user("demo"))[1] == 0


async def test_call_me_back_dials_and_refuses_what_the_budget_cannot_cover(api: Api):
    fake = TwilioRestFake(AC, TOKEN)
    with ServedApp(fake.app) as served:
        s = api.settings
        s.twilio_account_sid, s.twilio_auth_token = AC, TOKEN
        s.twilio_api_base_url, s.public_base_url = served.http_url, "https://calls.example.test"
        placed = await api.client.post("/api/calls", headers=api.user(), json={"persona_id": "maya"})
        assert placed.status_code == 201, placed.text
        call = placed.json()
        assert call["direction"] == "outbound" and call["status"] == "created" and call["reserved_usd"] == "10.00"
        assert fake.created_calls[0]["To"] == "+15555550100" and fake.created_calls[0]["From"] == "+15555550002"
        assert fake.created_calls[0]["Url"].endswith(f"/twilio/outbound/{call['id']}")

        # The day's budget is now held by that call: a second one is refused with the reason.
        await api.client.put("/api/user/budget", headers=api.user(),
                             json={"per_call_limit_usd": "10", "daily_limit_usd": "10.2"})
        refused = await api.client.post("/api/calls", headers=api.user(), json={"persona_id": "maya"})
        assert refused.status_code == 402
        assert "daily budget" in refused.json()["detail"] and refused.json()["limit_kind"] == "daily"
        assert refused.json()["remaining_usd"] == "0.20"
        assert len(fake.created_calls) == 1

        # A user without a phone number cannot be called back.
        no_phone = await api.add_user("nophone")
        missing = await api.client.post("/api/calls", headers=no_phone, json={"persona_id": "maya"})
        assert missing.status_code == 409 and "phone number" in missing.json()["detail"]
        unknown = await api.client.post("/api/calls", headers=api.user(), json={"persona_id": "nobody"})
        assert unknown.status_code == 404
        assert len(fake.created_calls) == 1


async def test_call_me_back_without_a_card_is_refused_when_payments_are_on(settings):
    """With payments on, the card is held before dialling; no card on file is a 402 that says so."""
    paying = settings.model_copy(update={
        "stripe_secret_key": "sk_test_api", "twilio_account_sid": AC, "twilio_auth_token": TOKEN,
        "twilio_api_base_url": "http://127.0.0.1:9", "public_base_url": "https://calls.example.test"})
    app = create_app(paying)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            api = Api(app, client, paying)
            refused = await client.post("/api/calls", headers=api.user(), json={"persona_id": "brad"})
            assert refused.status_code == 402 and "no card on file" in refused.json()["detail"]
            calls, total = await api.rt.calls.list_for_user("demo")
            assert total == 1 and calls[0]["status"] == "ended" and calls[0]["end_reason"] == "payment_failed"
