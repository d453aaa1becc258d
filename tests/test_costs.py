"""The books: exact costs, fail-closed prices, durable events, finalisation."""

import random
from decimal import Decimal

import pytest

from agent.books.costs import CallCostTracker
from agent.books.estimate import estimate_call_cost
from agent.books.events import Source, stripe_fee_micros
from agent.books.money import format_usd
from agent.books.pricing import PriceBook, PriceBookError, UnknownPriceError
from agent.settings import Settings, load_settings

PRICES = PriceBook.load()


async def _open_call(runtime, call_id="call-1", direction="inbound"):
    allowance = await runtime.budgets.open_call("demo", "brad", direction, call_id=call_id)
    return CallCostTracker(call_id, "demo", runtime.prices, runtime.calls, direction=direction), allowance


def test_prices_are_exact_per_unit():
    assert PRICES.rate("elevenlabs", "tts", "eleven_flash_v2_5", "character").cost_micros(1000) == 50_000
    assert PRICES.rate("deepgram", "stt", "nova-3-general", "second").cost_micros(60) == 7_700
    assert PRICES.rate("cerebras", "llm", "gpt-oss-120b", "input_token").cost_micros(1_000_000) == 350_000


def test_unknown_model_is_an_error_not_a_zero():
    with pytest.raises(UnknownPriceError, match="no-such-model"):
        PRICES.rate("openai", "llm", "no-such-model", "input_token")
    tracker = CallCostTracker("c", "u", PRICES)
    with pytest.raises(UnknownPriceError):
        tracker.track_llm(10, 10, vendor="cerebras", model="no-such-model")
    assert tracker.events == [] and tracker.subtotal_micros == 0


def test_configured_model_without_price_fails_at_startup():
    with pytest.raises(UnknownPriceError, match="gpt-9"):
        load_settings(_env_file=None, openai_model="gpt-9")


def test_malformed_price_file_fails_with_its_name(tmp_path):
    bad = tmp_path / "prices.toml"
    bad.write_text('version = "x"\n[[rate]]\nvendor = "a"\nproduct = "b"\nmodel = "c"\nunit = "d"\n'
                   'price = "ten"\neffective = "2026-01-01"\n')
    with pytest.raises(PriceBookError, match="not a number"):
        PriceBook.load(bad)


def test_negative_units_refused_and_nothing_recorded():
    tracker = CallCostTracker("c", "u", PRICES)
    with pytest.raises(ValueError, match="negative"):
        tracker.track_tts(-5, model="eleven_flash_v2_5")
    with pytest.raises(ValueError, match="negative"):
        tracker.track_stt(Decimal("-1"), model="nova-3-general")
    with pytest.raises(ValueError, match="negative"):
        tracker.track_llm(5, -1, vendor="cerebras", model="gpt-oss-120b")
    assert tracker.events == []


def test_stripe_fee_follows_the_seed_rule():
    assert stripe_fee_micros(0, PRICES) == 0
    assert stripe_fee_micros(10_000_000, PRICES) == 290_000 + 300_000  # 2.9% of $10 + 30 cents


async def test_thousands_of_mixed_events_agree_to_the_micro_dollar(runtime):
    tracker, _ = await _open_call(runtime)
    rng = random.Random(7)
    expected = 0
    for _ in range(3000):
        kind = rng.choice(["tts", "llm", "stt", "memory"])
        if kind == "tts":
            n = rng.randint(1, 400)
            expected += tracker.track_tts(n, model="eleven_flash_v2_5").cost_micros
        elif kind == "llm":
            vendor, model = rng.choice([("cerebras", "gpt-oss-120b"), ("openai", "gpt-4.1-mini")])
            events = tracker.track_llm(rng.randint(100, 5000), rng.randint(1, 300), vendor=vendor, model=model)
            expected += sum(e.cost_micros for e in events)
        elif kind == "stt":
            seconds = Decimal(rng.randint(1, 5000)) / 1000
            expected += tracker.track_stt(seconds, model="nova-3-general").cost_micros
        else:
            expected += tracker.track_memory("read").cost_micros
    expected += tracker.track_call_duration(754).cost_micros
    await tracker.close()

    stored = await runtime.calls.events("call-1")
    assert len(stored) == len(tracker.events)
    assert sum(e["cost_micros"] for e in stored) == expected == tracker.subtotal_micros
    assert sum(s["cost_micros"] for s in tracker.breakdown().values()) == expected
    # Each stored event re-prices to its own cost from its quantity and the versioned rate.
    product = {"twilio": "voice", "stt": "stt", "llm": "llm", "tts": "tts", "memory": "memory"}
    for row in stored:
        rate = PRICES.rate(row["vendor"], product[row["service"]], row["model"], row["unit"])
        assert rate.cost_micros(Decimal(row["quantity"])) == row["cost_micros"]
        assert row["price_version"] == PRICES.version and row["source"] in ("measured", "vendor", "estimated")

    final = tracker.finalize()
    assert final.subtotal_micros == expected
    assert final.total_micros == expected + stripe_fee_micros(expected, PRICES)
    assert final.amount_charged_micros % 10_000 == 0  # whole cents
    assert abs(final.amount_charged_micros - final.total_micros) <= 5_000
    assert final.profit_margin_micros == final.amount_charged_micros - final.total_micros


async def test_fallback_reason_and_sources_are_recorded(runtime):
    tracker, _ = await _open_call(runtime)
    tracker.track_llm(120, 30, vendor="openai", model="gpt-4.1-mini", fallback_reason="cerebras HTTP 500")
    tracker.track_stt(Decimal("1.5"), model="nova-3-general")
    await tracker.close()
    rows = await runtime.calls.events("call-1")
    assert [r["detail"] for r in rows[:2]] == ["fallback: cerebras HTTP 500"] * 2
    assert [r["source"] for r in rows] == [Source.VENDOR, Source.VENDOR, Source.MEASURED]
    assert (await runtime.calls.get("call-1"))["spent_micros"] == tracker.running_total_micros()


class FlakySink:
    """A database that fails the first writes, as a restart or a lock timeout would."""

    def __init__(self, inner, failures):
        self.inner, self.failures, self.attempts = inner, failures, 0

    async def append_events(self, events, spent=None):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("database unavailable")
        await self.inner.append_events(events, spent)


async def test_a_database_hiccup_loses_no_event(runtime):
    await runtime.budgets.open_call("demo", "brad", "inbound", call_id="call-1")
    sink = FlakySink(runtime.calls, failures=2)
    tracker = CallCostTracker("call-1", "demo", runtime.prices, sink)
    tracker.track_tts(10, model="eleven_flash_v2_5")
    with pytest.raises(ConnectionError):
        await tracker.flush()
    tracker.track_tts(20, model="eleven_flash_v2_5")
    await tracker.close()  # retries through the second failure
    rows = await runtime.calls.events("call-1")
    assert [r["quantity"] for r in rows] == ["10", "20"]
    # A replayed flush (same sequence numbers) writes nothing twice.
    await runtime.calls.append_events([e.row() for e in tracker.events])
    assert len(await runtime.calls.events("call-1")) == 2


async def test_ledger_rebuilt_from_stored_events_matches(runtime):
    tracker, _ = await _open_call(runtime)
    tracker.track_tts(321, model="eleven_flash_v2_5")
    tracker.track_call_duration(61)
    await tracker.close()
    rebuilt = CallCostTracker.from_events("call-1", "demo", runtime.prices, await runtime.calls.events("call-1"))
    assert rebuilt.subtotal_micros == tracker.subtotal_micros
    assert rebuilt.breakdown() == tracker.breakdown()
    assert rebuilt.track_call_duration(61) is None  # the carrier minutes are billed once


def test_twilio_minutes_are_billed_per_started_minute():
    tracker = CallCostTracker("c", "u", PRICES, direction="outbound")
    event = tracker.track_call_duration(61)
    assert event.quantity == 2 and event.cost_micros == 28_000


def test_estimate_has_every_service_and_warns_on_large_memory():
    small = estimate_call_cost(5, 500, prices=PRICES)
    assert set(small.services) == {"twilio", "stt", "llm", "tts", "memory"}
    assert small.total_micros == small.subtotal_micros + small.stripe_fee_micros
    assert small.subtotal_micros == sum(small.services.values())
    assert small.warnings == []
    large = estimate_call_cost(5, 4000, prices=PRICES)
    assert large.services["llm"] > small.services["llm"]
    assert large.warnings and "4000 tokens" in large.warnings[0]
    with pytest.raises(ValueError):
        estimate_call_cost(0, 100, prices=PRICES)
    with pytest.raises(ValueError):
        estimate_call_cost(5, -1, prices=PRICES)


def test_amounts_are_said_as_people_say_them():
    assert format_usd(7_500_000) == "$7.50"
    assert format_usd(10_000_000) == "$10"
    assert format_usd(34_999) == "$0.03"


def test_settings_fail_with_a_message_that_names_the_setting():
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN"):
        Settings(_env_file=None, twilio_account_sid="AC123")
    with pytest.raises(ValueError, match="JWT_SECRET"):
        Settings(_env_file=None, public_base_url="https://example.test")
    with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
        Settings(_env_file=None, public_base_url="example.test")
