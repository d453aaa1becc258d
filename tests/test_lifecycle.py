"""A call's life from the domain's side: start, end, outbound dialling, reconciliation."""

import asyncio
import datetime as dt

import pytest

from agent.calls.reconcile import Reconciler
from agent.books.budgets import BudgetRefused, BudgetSettings
from agent.calls.lifecycle import CallLifecycle
from agent.calls.outbound import DialError, place_outbound_call
from agent.calls.telephony import Twilio
from fakes import ServedApp, TwilioRestFake

AC, TOKEN = "AC" + "2" * 32, "rest-token"


async def test_every_call_ends_finalised_with_stats_and_a_summary(runtime):
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "webrtc")
    session = await lifecycle.begin(allowance.call_id)
    assert session.memory_loaded and "You are Brad" in session.prompt.prompt
    session.tracker.track_tts(100, model="eleven_flash_v2_5")
    session.transcript.add("user", "Hey Brad!")
    session.transcript.add("assistant", "Hey! Good to hear from you.")
    final, again = await asyncio.gather(lifecycle.end(session, reason="caller_hung_up"),
                                        lifecycle.end(session, reason="server_shutdown"))
    assert final is again  # ended once, however many ways it ends at the same time
    call = await runtime.calls.get(allowance.call_id)
    assert call["status"] == "ended" and call["end_reason"] == "caller_hung_up"
    assert call["spent_micros"] == final.total_micros
    assert final.amount_charged_micros == 0  # payments are off: nothing charged
    assert {"tts", "memory"} == set(final.services)  # memory read at start, write at end
    rel = await runtime.memory.get_relationship("demo", "brad")
    assert rel.total_calls == 1
    recent = await runtime.memory.recent_context("demo", "brad")
    # No LLM keys here: the offline script did the memory extraction, priced as an estimate.
    assert recent[0].call_id == allowance.call_id and recent[0].summary == "A short chat; it began with: Hey Brad."
    extraction = [e for e in await runtime.calls.events(allowance.call_id) if e["kind"] == "ai_inference"]
    assert extraction and {e["source"] for e in extraction} == {"estimated"}
    assert [t["text"] for t in call["transcript"]] == ["Hey Brad!", "Hey! Good to hear from you."]


async def test_slow_memory_falls_back_to_the_core_prompt(runtime):
    runtime.settings.memory_load_timeout_secs = 1e-6  # no database answers this fast
    await runtime.memory.store.set_fact((await runtime.memory.get_relationship("demo", "brad")).id,
                                        "user_facts", "job", "nurse", "user")
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "webrtc")
    session = await lifecycle.begin(allowance.call_id)
    assert not session.memory_loaded
    assert "You are Brad" in session.prompt.prompt and "nurse" not in session.prompt.prompt
    await lifecycle.end(session, reason="caller_hung_up")


async def test_abandoned_calls_are_reconciled_from_their_events(runtime):
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "inbound", twilio_call_sid="CA" + "9" * 32)
    session = await lifecycle.begin(allowance.call_id)
    session.tracker.track_tts(500, model="eleven_flash_v2_5")
    await session.tracker.close()  # events are durable; then the process "dies"
    lifecycle.live.clear()
    five_minutes_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    await runtime.calls.update(allowance.call_id, heartbeat_at=five_minutes_ago, lease_expires_at=five_minutes_ago)
    other_process = CallLifecycle(runtime)
    assert await Reconciler(other_process).run_once() == [allowance.call_id]
    assert await Reconciler(other_process).run_once() == []  # once
    call = await runtime.calls.get(allowance.call_id)
    breakdown = await runtime.calls.breakdown(allowance.call_id)
    events = await runtime.calls.events(allowance.call_id)
    assert call["status"] == "ended" and call["end_reason"] == "reconciled"
    assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
    assert "tts" in breakdown["services"] and "twilio" in breakdown["services"]


async def test_a_live_call_is_not_reconciled_by_another_worker(runtime):
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "inbound")
    session = await lifecycle.begin(allowance.call_id)
    assert await Reconciler(CallLifecycle(runtime)).run_once() == []  # its heartbeat is fresh
    await lifecycle.end(session, reason="caller_hung_up")


async def test_outbound_call_is_placed_with_a_time_limit_from_the_budget(runtime, settings):
    fake = TwilioRestFake(AC, TOKEN)
    with ServedApp(fake.app) as served:
        settings.twilio_account_sid, settings.twilio_auth_token = AC, TOKEN
        settings.twilio_api_base_url, settings.public_base_url = served.http_url, "https://calls.example.test"
        lifecycle = CallLifecycle(runtime)
        await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=2_000_000))
        allowance, sid = await place_outbound_call(lifecycle, Twilio(settings), "demo", "maya")
        created = fake.created_calls[0]
        assert created["To"] == "+15555550100" and created["From"] == "+15555550002"
        assert created["Url"] == f"https://calls.example.test/twilio/outbound/{allowance.call_id}"
        assert created["StatusCallback"] == "https://calls.example.test/twilio/status"
        assert 60 <= int(created["TimeLimit"]) < 4 * 3600
        call = await runtime.calls.get(allowance.call_id)
        assert call["twilio_call_sid"] == sid and call["direction"] == "outbound" and call["status"] == "created"

        await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=2_000_000,
                                                                   daily_limit_micros=2_000_000))
        with pytest.raises(BudgetRefused):
            await place_outbound_call(lifecycle, Twilio(settings), "demo", "maya")
        assert len(fake.created_calls) == 1  # refused before dialling


async def test_outbound_needs_twilio(runtime):
    with pytest.raises(DialError, match="Twilio"):
        await place_outbound_call(CallLifecycle(runtime), Twilio(runtime.settings), "demo", "brad")


