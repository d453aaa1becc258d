"""Budgets: limits for a new call, reservations across calls, in-call decisions."""

import asyncio
import datetime as dt

import pytest
from pydantic import ValidationError

from agent.books.budgets import Action, BudgetManager, BudgetMonitor, BudgetRefused, BudgetSettings, LimitKind
from agent.runtime import Runtime
from storage.calls import CallStore
from storage.db import Database
from storage.users import UserStore

DOLLAR = 1_000_000


async def _settle(runtime, call_id, total):
    """End a call at a final total, as finalisation does."""
    await runtime.calls.update(call_id, status="ended", spent_micros=total)


async def test_defaults_follow_the_seed(runtime):
    s = await runtime.budgets.settings("demo")
    assert (s.per_call_limit_micros, s.daily_limit_micros, s.monthly_limit_micros) == (10 * DOLLAR, 50 * DOLLAR,
                                                                                        100 * DOLLAR)
    assert (s.warning_threshold_pct, s.auto_cutoff, s.grace_period_seconds) == (75, True, 10)


def test_bad_budget_settings_are_refused_with_a_reason():
    with pytest.raises(ValidationError, match="daily limit must be at least the per-call"):
        BudgetSettings(per_call_limit_micros=20 * DOLLAR, daily_limit_micros=10 * DOLLAR)
    with pytest.raises(ValidationError):
        BudgetSettings(per_call_limit_micros=-1)
    with pytest.raises(ValidationError):
        BudgetSettings(warning_threshold_pct=100)


async def test_effective_limit_is_the_smallest_remaining(runtime):
    await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=10 * DOLLAR,
                                                               daily_limit_micros=12 * DOLLAR))
    first = await runtime.budgets.open_call("demo", "brad", "inbound", call_id="a")
    assert (first.limit_micros, first.limit_kind) == (10 * DOLLAR, LimitKind.PER_CALL)
    await _settle(runtime, "a", 9 * DOLLAR)
    second = await runtime.budgets.open_call("demo", "brad", "inbound", call_id="b")
    assert (second.limit_micros, second.limit_kind) == (3 * DOLLAR, LimitKind.DAILY)
    await _settle(runtime, "b", 2_800_000)
    with pytest.raises(BudgetRefused) as refused:
        await runtime.budgets.open_call("demo", "brad", "inbound", call_id="c")
    assert refused.value.limit_kind == LimitKind.DAILY and "$0.20" in refused.value.message
    assert await runtime.calls.get("c") is None  # nothing written for a refused call


async def test_yesterday_counts_for_the_month_not_the_day(runtime):
    await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=10 * DOLLAR,
                                                               daily_limit_micros=10 * DOLLAR,
                                                               monthly_limit_micros=15 * DOLLAR))
    now = dt.datetime(2026, 11, 20, 12, tzinfo=dt.timezone.utc)
    await runtime.budgets.open_call("demo", "brad", "inbound", call_id="old", now=now - dt.timedelta(days=1))
    await runtime.calls.update("old", status="ended", spent_micros=8 * DOLLAR,
                               created_at=now - dt.timedelta(days=1))
    allowance = await runtime.budgets.open_call("demo", "brad", "inbound", call_id="new", now=now)
    assert (allowance.limit_micros, allowance.limit_kind) == (7 * DOLLAR, LimitKind.MONTHLY)


async def test_two_concurrent_calls_cannot_share_one_daily_budget(runtime, settings):
    """Two processes (two engines on one database) start calls of one user at once."""
    await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=10 * DOLLAR,
                                                               daily_limit_micros=15 * DOLLAR))
    other_db = Database(settings.effective_database_url)
    other = BudgetManager(UserStore(other_db), CallStore(other_db))
    try:
        a, b = await asyncio.gather(
            runtime.budgets.open_call("demo", "brad", "inbound", call_id="p1"),
            other.open_call("demo", "maya", "inbound", call_id="p2"),
        )
    finally:
        await other_db.dispose()
    assert sorted([a.limit_micros, b.limit_micros]) == [5 * DOLLAR, 10 * DOLLAR]
    assert a.limit_micros + b.limit_micros <= 15 * DOLLAR
    # While both are live, nothing is left for a third call.
    with pytest.raises(BudgetRefused):
        await runtime.budgets.open_call("demo", "grandpa-joe", "inbound", call_id="p3")
    # A call that ends under its reservation releases the rest.
    await _settle(runtime, "p1", 1 * DOLLAR)
    third = await runtime.budgets.open_call("demo", "grandpa-joe", "inbound", call_id="p3")
    assert third.limit_micros == 15 * DOLLAR - 1 * DOLLAR - (b.limit_micros if a.call_id == "p1" else a.limit_micros)


async def test_a_live_call_over_its_reservation_counts_at_its_spend(runtime):
    await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=5 * DOLLAR,
                                                               daily_limit_micros=12 * DOLLAR))
    await runtime.budgets.open_call("demo", "brad", "inbound", call_id="x")
    await runtime.calls.update("x", spent_micros=6 * DOLLAR)  # ran into its grace period
    second = await runtime.budgets.open_call("demo", "maya", "inbound", call_id="y")
    assert second.limit_micros == 5 * DOLLAR and second.daily_remaining_micros == 6 * DOLLAR


def _monitor(limit=10 * DOLLAR, cutoff=True, kind=LimitKind.PER_CALL):
    from agent.books.budgets import CallAllowance

    return BudgetMonitor(CallAllowance("c", "u", limit, kind, 75, cutoff, 10, 50 * DOLLAR, 100 * DOLLAR))


def test_warns_once_at_the_threshold_then_cuts_off():
    monitor = _monitor()
    assert monitor.evaluate(7_000_000).action == Action.OK
    warn = monitor.evaluate(7_500_000)
    assert warn.action == Action.WARN
    assert warn.message == "Just so you know, you've spent $7.50 of your $10 call budget."
    assert monitor.evaluate(8_000_000).action == Action.OK  # once per threshold
    cut = monitor.evaluate(10_000_000)
    assert cut.action == Action.CUTOFF and "goodbye" in cut.message.lower()
    assert monitor.evaluate(11_000_000).action == Action.OK  # the cutoff is decided once


def test_daily_limit_is_named_in_the_sentence():
    warn = _monitor(limit=4 * DOLLAR, kind=LimitKind.DAILY).evaluate(3 * DOLLAR)
    assert warn.message == "Just so you know, you've spent $3 of the $4 left in your daily budget."


def test_no_cutoff_when_auto_cutoff_is_off():
    monitor = _monitor(cutoff=False)
    assert monitor.evaluate(12 * DOLLAR).action == Action.WARN
    assert monitor.evaluate(20 * DOLLAR).action == Action.OK


def test_the_spend_planner_keeps_the_goodbye_in_reserve_and_caps_replies():
    from agent.books.costs import CallCostTracker
    from agent.books.spend import MIN_REPLY_TOKENS, Rates, SpendPlanner
    from agent.settings import Settings

    prices = Settings(_env_file=None).price_book
    tracker = CallCostTracker("c", "u", prices, card_fee=False)
    rates = Rates.for_call(prices, llm_vendor="cerebras", llm_model="gpt-oss-120b", tts_vendor="elevenlabs",
                           tts_model="eleven_flash_v2_5", stt_vendor="deepgram", stt_model="nova-3-general",
                           direction="inbound")
    planner = SpendPlanner(tracker, 500_000, rates, grace_seconds=10, phone=True)
    assert planner.reserve_micros > rates.tts_character.cost_micros(100)  # the goodbye, at least
    assert planner.completion_tokens(1000, 300) == 300  # plenty left: the usual reply length
    tracker.track_tts(9_000, model="eleven_flash_v2_5")  # $0.45 of speech
    tokens = planner.completion_tokens(1000, 300)
    assert tokens is None or MIN_REPLY_TOKENS <= tokens < 300  # near the limit: shorter, or none at all
    assert not planner.may_say(2_000)  # a long sentence no longer fits
    assert planner.exhausted
