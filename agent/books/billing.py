"""Payments with Stripe: pre-authorise a call's limit, capture exactly what it cost.

Every request carries an idempotency key derived from the call, so a retry, a
restart or a duplicate status callback charges once. Without STRIPE_SECRET_KEY
payments are off: the ledger still runs and nothing is charged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import stripe
from loguru import logger

from agent.books.money import MICROS_PER_CENT, round_to_cent
from agent.settings import Settings

MIN_CHARGE_CENTS = 50  # Stripe's minimum charge in USD


class PaymentError(Exception):
    """The call cannot start: `message` is what the caller hears or the API returns."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Authorization:
    intent_id: str
    amount_micros: int


class Billing:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.payments_enabled
        self._client: stripe.StripeClient | None = None

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            self._client = stripe.StripeClient(
                self.settings.stripe_secret_key,
                base_addresses={"api": self.settings.stripe_api_base.rstrip("/")},
                http_client=stripe.HTTPXClient(), max_network_retries=2)
        return self._client

    async def create_customer(self, user_id: str, name: str) -> str:
        customer = await self.client.v1.customers.create_async(
            params={"name": name or user_id, "metadata": {"user_id": user_id}},
            options={"idempotency_key": f"customer-{user_id}"})
        return customer.id

    async def attach(self, customer_id: str, payment_method_id: str) -> None:
        """Attach a card to the customer, so it can be charged off session."""
        try:
            await self.client.v1.payment_methods.attach_async(
                payment_method_id, params={"customer": customer_id},
                options={"idempotency_key": f"attach-{customer_id}-{payment_method_id}"})
        except stripe.CardError as exc:
            raise PaymentError("That card was declined.", retryable=False) from exc

    async def authorize(self, call_id: str, customer_id: str | None, payment_method_id: str | None,
                        limit_micros: int) -> Authorization:
        """Hold the call's effective limit on the card (manual capture, off session)."""
        if not payment_method_id:
            raise PaymentError("There is no card on file for this account, so the call can't start.",
                               retryable=False)
        cents = max(math.ceil(limit_micros / MICROS_PER_CENT), MIN_CHARGE_CENTS)
        params = {"amount": cents, "currency": "usd", "capture_method": "manual", "confirm": True,
                  "off_session": True, "payment_method": payment_method_id, "metadata": {"call_id": call_id}}
        if customer_id:
            params["customer"] = customer_id
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": f"call-{call_id}-authorize"})
        except stripe.CardError as exc:
            raise PaymentError("Sorry, your card was declined, so the call can't start.", retryable=False) from exc
        except stripe.StripeError as exc:
            logger.error(f"Stripe authorisation for call {call_id} failed: {exc}")
            raise PaymentError("Sorry, payments are unavailable right now, so the call can't start. "
                               "Please try again in a few minutes.", retryable=True) from exc
        if intent.status != "requires_capture":
            raise PaymentError("Sorry, your card could not be authorised, so the call can't start.",
                               retryable=False)
        return Authorization(intent.id, cents * MICROS_PER_CENT)

    @staticmethod
    def amount_to_charge(total_micros: int, authorized_micros: int) -> int:
        """The total rounded to a cent, never above what was authorised."""
        return min(round_to_cent(total_micros), authorized_micros)

    async def settle(self, call_id: str, intent_id: str, charge_micros: int) -> str:
        """Capture `charge_micros` (or cancel at zero). Safe to repeat: same key, same request."""
        if charge_micros <= 0:
            await self.client.v1.payment_intents.cancel_async(
                intent_id, params={"cancellation_reason": "abandoned"},
                options={"idempotency_key": f"call-{call_id}-cancel"})
            return "canceled"
        await self.client.v1.payment_intents.capture_async(
            intent_id, params={"amount_to_capture": charge_micros // MICROS_PER_CENT},
            options={"idempotency_key": f"call-{call_id}-capture"})
        return "captured"

    async def release(self, call_id: str, intent_id: str) -> None:
        """A call that never started: let the hold go."""
        try:
            await self.settle(call_id, intent_id, 0)
        except stripe.StripeError as exc:
            logger.error(f"could not release the hold of call {call_id}: {exc}")
