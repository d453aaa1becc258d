"""A finalised call's money at Stripe: capture the charge, or let the card hold go.

Each is claimed first (`storage.leases`), so of the workers that finish or
reconcile a call only one asks Stripe at a time; a failure releases the claim at
once and the next reconciliation retries under the same idempotency key.
"""

from __future__ import annotations

from loguru import logger

from agent.books.billing import Billing
from agent.runtime import Runtime


class CallPayments:
    def __init__(self, runtime: Runtime, billing: Billing) -> None:
        self.rt = runtime
        self.billing = billing

    async def settle(self, call_id: str, intent_id: str, charge_micros: int) -> None:
        """Capture (or cancel at zero) a finalised call's charge."""
        if not await self.rt.leases.claim(call_id, "capture", hold_secs=60):
            return
        try:
            status = await self.billing.settle(call_id, intent_id, charge_micros)
        except Exception as exc:  # Stripe unreachable: the next reconciliation retries with the same key
            logger.error(f"call {call_id}: capture failed, will retry ({exc})")
            await self.rt.calls.update(call_id, claimed_until=None)
            return
        await self.rt.calls.update(call_id, payment_status=status, claimed_until=None)

    async def release_hold(self, call_id: str) -> None:
        """A call ended without a capture: cancel its card hold (idempotent; reconciliation retries)."""
        call = await self.rt.calls.get(call_id)
        if not call or not call["payment_intent_id"] or call["payment_status"] != "authorized":
            return
        if not await self.rt.leases.claim(call_id, "release", hold_secs=60):
            return
        try:
            await self.billing.settle(call_id, call["payment_intent_id"], 0)
        except Exception as exc:
            logger.error(f"call {call_id}: the card hold could not be released yet ({exc!r})")
            await self.rt.calls.update(call_id, claimed_until=None)
            return
        await self.rt.calls.update(call_id, payment_status="canceled", claimed_until=None)
