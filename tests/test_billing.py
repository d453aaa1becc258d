"""Payments through the real stripe SDK against our Stripe wire fake."""

import pytest

from agent.calls.reconcile import Reconciler
from agent.books.billing import PaymentError
from agent.books.budgets import BudgetSettings
from agent.calls.lifecycle import CallLifecycle
from fakes import ServedApp, StripeFake

KEY = "sk_test_callmeback"


@pytest.fixture
def stripe_fake(settings):
    fake = StripeFake(api_key=KEY)
    with ServedApp(fake.app) as served:
        settings.stripe_secret_key, settings.stripe_api_base = KEY, served.http_url
        yield fake


async def _with_card(runtime, payment_method="pm_card_visa"):
    await runtime.users.update_user("demo", stripe_payment_method_id=payment_method)


async def _call(runtime, lifecycle, cost_characters):
    allowance = await lifecycle.open("demo", "brad", "webrtc")
    session = await lifecycle.begin(allowance.call_id)
    session.tracker.track_tts(cost_characters, model="eleven_flash_v2_5")
    return allowance, session


async def test_a_call_is_authorised_then_captured_exactly(runtime, stripe_fake):
    await _with_card(runtime)
    await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=5_000_000))
    lifecycle = CallLifecycle(runtime)
    allowance, session = await _call(runtime, lifecycle, 4321)
    intent = next(iter(stripe_fake.intents.values()))
    assert intent["amount"] == 500 and intent["capture_method"] == "manual" and intent["status"] == "requires_capture"
    assert intent["metadata"] == {"call_id": allowance.call_id}
    final = await lifecycle.end(session, reason="caller_hung_up")
    # 4321 characters at $0.05/1K = $0.216050, +2 memory ops, +2.9% +30c; charged to the cent.
    assert final.amount_charged_micros % 10_000 == 0
    assert abs(final.amount_charged_micros - final.total_micros) < 5_000
    assert stripe_fake.captures == [(intent["id"], final.amount_charged_micros // 10_000)]
    call = await runtime.calls.get(allowance.call_id)
    assert call["payment_status"] == "captured"
    breakdown = await runtime.calls.breakdown(allowance.call_id)
    assert breakdown["amount_charged_micros"] == final.amount_charged_micros
    assert breakdown["profit_margin_micros"] == final.amount_charged_micros - final.total_micros
    # A second attempt (a duplicate callback, a restart) charges nothing more.
    await lifecycle.payments.settle(allowance.call_id, intent["id"], final.amount_charged_micros)
    assert len(stripe_fake.captures) == 1 and stripe_fake.replays == 0  # captured: nothing is asked again
    # And were Stripe asked again (a crash between the capture and our record of it), the key replays it.
    await lifecycle.billing.settle(allowance.call_id, intent["id"], final.amount_charged_micros)
    assert len(stripe_fake.captures) == 1 and stripe_fake.replays >= 1


async def test_capture_never_exceeds_the_authorisation(runtime, stripe_fake):
    await _with_card(runtime)
    await runtime.budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=1_000_000))
    lifecycle = CallLifecycle(runtime)
    allowance, session = await _call(runtime, lifecycle, 40_000)  # $2 of speech on a $1 hold: the grace overrun
    final = await lifecycle.end(session, reason="budget_cutoff")
    assert final.total_micros > 1_000_000
    assert final.amount_charged_micros == 1_000_000
    assert stripe_fake.captures[0][1] == 100
    assert final.profit_margin_micros < 0  # we carry the overrun, the user is never charged above the hold


async def test_a_zero_cost_call_cancels_the_hold(runtime, stripe_fake):
    await _with_card(runtime)
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "inbound")
    # The media never connected: reconciliation finishes the call at zero and lets the hold go.
    import datetime as dt

    await runtime.calls.update(allowance.call_id, created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    assert await Reconciler(lifecycle).run_once() == [allowance.call_id]
    assert stripe_fake.captures == [] and len(stripe_fake.cancels) == 1
    assert (await runtime.calls.get(allowance.call_id))["payment_status"] == "canceled"


async def test_a_declined_card_stops_the_call_and_says_why(runtime, stripe_fake):
    await _with_card(runtime, "pm_card_chargeDeclined")
    lifecycle = CallLifecycle(runtime)
    with pytest.raises(PaymentError, match="declined") as declined:
        await lifecycle.open("demo", "brad", "inbound", call_id="declined-call")
    assert not declined.value.retryable
    call = await runtime.calls.get("declined-call")
    assert call["status"] == "ended" and call["end_reason"] == "payment_failed"
    # The failed call holds no budget.
    assert (await runtime.budgets.open_call("demo", "brad", "webrtc")).limit_micros == 10_000_000


async def test_no_card_on_file_is_refused(runtime, stripe_fake):
    with pytest.raises(PaymentError, match="no card on file"):
        await CallLifecycle(runtime).open("demo", "brad", "inbound")


async def test_stripe_down_means_no_call(runtime, stripe_fake):
    await _with_card(runtime)
    stripe_fake.fail_next(503, count=10)
    with pytest.raises(PaymentError, match="unavailable") as unavailable:
        await CallLifecycle(runtime).open("demo", "brad", "inbound")
    assert unavailable.value.retryable


async def test_a_transient_stripe_error_is_retried_with_the_same_key(runtime, stripe_fake):
    await _with_card(runtime)
    stripe_fake.fail_next(503, count=1)
    lifecycle = CallLifecycle(runtime)
    allowance, session = await _call(runtime, lifecycle, 100)
    keys = {key for method, path, _, key in stripe_fake.requests if path == "/v1/payment_intents"}
    assert keys == {f"call-{allowance.call_id}-authorize"} and len(stripe_fake.intents) == 1
    await lifecycle.end(session, reason="caller_hung_up")


async def test_a_capture_that_fails_is_captured_once_by_reconciliation(runtime, stripe_fake):
    await _with_card(runtime)
    lifecycle = CallLifecycle(runtime)
    allowance, session = await _call(runtime, lifecycle, 1000)
    stripe_fake.fail_next(500, count=3)  # the SDK's own retries all fail: Stripe is down at the end of the call
    final = await lifecycle.end(session, reason="caller_hung_up")
    assert stripe_fake.captures == []
    assert (await runtime.calls.get(allowance.call_id))["payment_status"] == "capture_pending"
    restarted = CallLifecycle(runtime)
    await Reconciler(restarted).run_once()
    await Reconciler(restarted).run_once()
    assert stripe_fake.captures == [(next(iter(stripe_fake.intents)), final.amount_charged_micros // 10_000)]
    assert (await runtime.calls.get(allowance.call_id))["payment_status"] == "captured"


async def test_payments_off_charges_nothing(runtime):
    assert not runtime.settings.payments_enabled
    lifecycle = CallLifecycle(runtime)
    allowance, session = await _call(runtime, lifecycle, 1000)
    final = await lifecycle.end(session, reason="caller_hung_up")
    assert final.total_micros > 0 and final.amount_charged_micros == 0
    assert (await runtime.calls.get(allowance.call_id))["payment_status"] is None


async def test_an_operator_attaches_a_card_and_the_user_sees_payments_are_on(settings, stripe_fake):
    import httpx

    from agent.accounts.auth import mint_user_token
    from server import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            admin = {"Authorization": f"Bearer {settings.admin_token}"}
            user = {"Authorization": f"Bearer {mint_user_token('demo', settings.jwt_secret)}"}
            assert (await http.get("/api/user/payments", headers=user)).json() == {
                "payments_enabled": True, "card_on_file": False}
            bad = await http.put("/api/admin/users/demo/payment-method", headers=admin,
                                 json={"payment_method_id": "not-a-card"})
            assert bad.status_code == 422 and not stripe_fake.customers
            declined = await http.put("/api/admin/users/demo/payment-method", headers=admin,
                                      json={"payment_method_id": "pm_card_chargeDeclined"})
            assert declined.status_code == 402
            ok = await http.put("/api/admin/users/demo/payment-method", headers=admin,
                                json={"payment_method_id": "pm_card_visa"})
            assert ok.status_code == 200, ok.text
            customer = ok.json()["stripe_customer_id"]
            assert len(stripe_fake.customers) == 1 and stripe_fake.attached == {"pm_card_visa": customer}
            assert (await http.get("/api/user/payments", headers=user)).json()["card_on_file"] is True
            # The card now pays for calls: the hold is made on it.
            lifecycle = app.state.lifecycle
            allowance = await lifecycle.open("demo", "brad", "webrtc")
            intent = next(iter(stripe_fake.intents.values()))
            assert intent["customer"] == customer and intent["payment_method"] == "pm_card_visa"
            assert (await app.state.runtime.calls.get(allowance.call_id))["payment_status"] == "authorized"


async def test_attaching_a_card_with_payments_off_is_a_conflict(settings):
    import httpx

    from server import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            response = await http.put("/api/admin/users/demo/payment-method",
                                      headers={"Authorization": f"Bearer {settings.admin_token}"},
                                      json={"payment_method_id": "pm_card_visa"})
    assert response.status_code == 409 and "payments are off" in response.text


async def test_a_call_cancelled_before_it_starts_lets_its_hold_go(runtime, stripe_fake):
    await _with_card(runtime)
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "inbound", twilio_call_sid="CA" + "3" * 32)
    intent = next(iter(stripe_fake.intents))
    assert await lifecycle.cancel_before_start(allowance.call_id, "operator_ended")
    assert stripe_fake.cancels == [intent] and stripe_fake.captures == []
    call = await runtime.calls.get(allowance.call_id)
    assert call["status"] == "ended" and call["payment_status"] == "canceled"
    with pytest.raises(Exception, match="not waiting to start"):
        await lifecycle.begin(allowance.call_id)  # a late media connection cannot revive it


async def test_reconciliation_releases_a_hold_left_on_an_ended_call(runtime, stripe_fake):
    await _with_card(runtime)
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "inbound", twilio_call_sid="CA" + "2" * 32)
    stripe_fake.fail_next(500, count=3)  # Stripe is down when the call is cancelled
    assert await lifecycle.cancel_before_start(allowance.call_id, "failed_to_start")
    assert stripe_fake.cancels == [] and (await runtime.calls.get(allowance.call_id))["payment_status"] == "authorized"
    await Reconciler(CallLifecycle(runtime)).run_once()
    await Reconciler(CallLifecycle(runtime)).run_once()
    assert stripe_fake.cancels == [next(iter(stripe_fake.intents))]
    assert (await runtime.calls.get(allowance.call_id))["payment_status"] == "canceled"
