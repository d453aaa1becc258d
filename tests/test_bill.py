"""The bill a caller is shown and charged: fees only where cards are charged, limits a call can
start under, and a carrier time limit that is exactly what the budget buys."""

from decimal import Decimal

import pytest

from agent.books.budgets import BudgetSettings
from agent.calls.lifecycle import CallLifecycle
from agent.calls.outbound import place_outbound_call
from agent.calls.telephony import Twilio
from fakes import ServedApp, TwilioRestFake
from tests.api_client import Api, api  # noqa: F401

AC, TOKEN = "AC" + "2" * 32, "twilio-token"


async def test_with_payments_off_no_card_fee_is_counted_anywhere(api: Api):
    assert not api.settings.payments_enabled
    estimate = (await api.client.post("/api/estimate", headers=api.user(),
                                      json={"persona_id": "brad", "minutes": 5, "direction": "inbound"})).json()
    assert estimate["stripe_fee_usd"] == "0.00" and estimate["total_usd"] == estimate["subtotal_usd"]
    lifecycle: CallLifecycle = api.lifecycle
    allowance = await lifecycle.open("demo", "brad", "webrtc")
    session = await lifecycle.begin(allowance.call_id)
    session.tracker.track_tts(1000, model="eleven_flash_v2_5")
    live = (await api.client.get(f"/api/calls/{allowance.call_id}/cost", headers=api.user())).json()
    assert live["stripe_fee_usd"] == "0.00" and Decimal(live["total_usd"]) == Decimal(live["subtotal_usd"])
    assert session.tracker.running_total_micros() == session.tracker.subtotal_micros  # what the guard compares
    final = await lifecycle.end(session, reason="caller_hung_up")
    assert final.stripe_fee_micros == 0 and final.total_micros == final.subtotal_micros
    call = await api.rt.calls.get(allowance.call_id)
    assert call["spent_micros"] == final.subtotal_micros  # what the daily and monthly budgets count
    stored = (await api.client.get(f"/api/calls/{allowance.call_id}/cost", headers=api.user())).json()
    assert stored["stripe_fee_usd"] == "0.00"


async def test_with_payments_on_the_fee_is_its_own_line_and_parts_add_up(api: Api):
    api.settings.stripe_secret_key = "sk_test_fee"  # the estimate reads it; no card is charged here
    estimate = (await api.client.post("/api/estimate", headers=api.user(),
                                      json={"persona_id": "brad", "minutes": 5})).json()
    parts = sum(Decimal(v) for v in estimate["services"].values())
    assert Decimal(estimate["stripe_fee_usd"]) > 0
    assert parts == Decimal(estimate["subtotal_usd"])
    assert Decimal(estimate["subtotal_usd"]) + Decimal(estimate["stripe_fee_usd"]) == Decimal(estimate["total_usd"])


async def test_a_per_call_limit_below_the_minimum_call_is_refused_with_the_minimum(api: Api):
    refused = await api.client.put("/api/user/budget", headers=api.user(), json={"per_call_limit_usd": "0.40"})
    assert refused.status_code == 422
    problem = refused.json()["detail"][0]
    assert problem["loc"] == ["body", "per_call_limit_usd"] and "$0.50" in problem["msg"]
    budget = (await api.client.get("/api/user/budget", headers=api.user())).json()
    assert budget["per_call_limit_usd"] != "0.40"  # nothing was saved
    assert (await api.client.put("/api/user/budget", headers=api.user(),
                                 json={"per_call_limit_usd": "0.50"})).status_code == 200


@pytest.mark.parametrize("limit", ["2.00", "10.00"])
async def test_the_carrier_time_limit_is_what_the_estimate_says_the_budget_buys(api: Api, limit):
    fake = TwilioRestFake(AC, TOKEN)
    with ServedApp(fake.app) as served:
        s = api.settings
        s.twilio_account_sid, s.twilio_auth_token = AC, TOKEN
        s.twilio_api_base_url, s.public_base_url = served.http_url, "https://calls.example.test"
        await api.rt.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=int(Decimal(limit) * 10**6),
                                                                  grace_period_seconds=10))
        await place_outbound_call(api.lifecycle, Twilio(s), "demo", "maya")
        seconds = int(fake.created_calls[0]["TimeLimit"])

    async def estimate(call_seconds: int) -> Decimal:
        answer = await api.client.post("/api/estimate", headers=api.user(), json={
            "persona_id": "maya", "minutes": call_seconds / 60, "direction": "outbound"})
        assert answer.status_code == 200, answer.text
        return Decimal(answer.json()["total_usd"])

    assert await estimate(seconds) <= Decimal(limit) < await estimate(seconds + 60)
    if limit == "10.00":
        assert seconds > 60 * 60  # an hour and more, not the 29 minutes a whole first minute's price gave
