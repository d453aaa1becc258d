"""Stripe REST fake for manual-capture PaymentIntents, with real idempotency.

Point the ``stripe`` SDK at it with
``stripe.StripeClient(key, base_addresses={"api": served.http_url})`` (add
``http_client=stripe.HTTPXClient()`` for the ``*_async`` methods). Payment
code must survive retries and replays, so the fake implements Stripe's
Idempotency-Key semantics and can inject transient failures.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["StripeFake", "nest_form"]

# Test payment methods that decline, with their decline_code.
DECLINES = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}


def nest_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``a[b][c]=v`` / ``a[0]=v`` / ``a[]=v`` form keys into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head] + ([p.rstrip("]") for p in ("[" + rest).split("[")[1:]] if rest else [])
        node: Any = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            nxt_is_index = not last and (path[i + 1] == "" or path[i + 1].isdigit())
            if isinstance(node, list):
                idx = len(node) if part == "" else int(part)
                while len(node) <= idx:
                    node.append(None)
                if last:
                    node[idx] = value
                else:
                    if node[idx] is None:
                        node[idx] = [] if nxt_is_index else {}
                    node = node[idx]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if nxt_is_index else {})
    return root


def _error_body(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **extra}}


def _err(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(_error_body(type_, message, **extra), status_code=status)


Result = tuple[int, dict[str, Any]]  # (HTTP status, JSON body)
Handler = Callable[..., Awaitable[Result]]


class StripeFake:
    """Customers + PaymentIntents (manual capture); read the counters from tests."""

    def __init__(self, api_key: str = "sk_test_x") -> None:
        self.api_key = api_key
        self.customers: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        # Counters.
        self.captures: list[tuple[str, int]] = []  # (intent_id, amount captured)
        self.cancels: list[str] = []
        self.attached: dict[str, str] = {}  # payment method -> customer
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []  # method, path, params, key
        self.replays = 0
        self._failures: deque[tuple[int, str, str]] = deque()
        self._idempotent: dict[str, tuple[tuple[Any, ...], int, dict[str, Any]]] = {}
        self.app = FastAPI()
        self.app.post("/v1/customers")(self._route(self._create_customer))
        self.app.post("/v1/payment_methods/{pm_id}/attach")(self._route(self._attach))
        self.app.post("/v1/payment_intents")(self._route(self._create_intent))
        self.app.get("/v1/payment_intents/{intent_id}")(self._route(self._get_intent))
        self.app.post("/v1/payment_intents/{intent_id}/capture")(self._route(self._capture))
        self.app.post("/v1/payment_intents/{intent_id}/cancel")(self._route(self._cancel))

    def fail_next(
        self, status: int = 503, count: int = 1, *, type: str = "api_error", message: str = "Service unavailable"
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (not stored for idempotency)."""
        for _ in range(count):
            self._failures.append((status, type, message))

    def _route(self, handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
        """Wrap ``handler(params, **path_params)`` with auth, injected failures and idempotency."""

        async def endpoint(request: Request) -> JSONResponse:
            if request.headers.get("authorization", "") != f"Bearer {self.api_key}":
                return _err(401, "invalid_request_error", "Invalid API Key provided.")
            raw = (await request.body()).decode() if request.method == "POST" else request.url.query
            pairs = parse_qsl(raw, keep_blank_values=True)
            params = nest_form(pairs)
            key = request.headers.get("idempotency-key") if request.method == "POST" else None
            self.requests.append((request.method, request.url.path, params, key))
            if self._failures:
                status, type_, message = self._failures.popleft()
                return _err(status, type_, message)
            fingerprint = (request.method, request.url.path, sorted(pairs))
            if key is not None and key in self._idempotent:
                stored_fingerprint, status, body = self._idempotent[key]
                if stored_fingerprint != fingerprint:
                    return _err(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{key}' if you meant to execute a "
                        "different request.",
                    )
                self.replays += 1
                headers = {"Idempotency-Key": key, "Idempotent-Replayed": "true"}
                return JSONResponse(body, status_code=status, headers=headers)
            status, body = await handler(params, **request.path_params)
            headers = {"Idempotency-Key": key} if key is not None else {}
            if key is not None and status != 400:
                # Stripe saves a result once the endpoint has started executing;
                # requests rejected by validation (400) are not saved.
                self._idempotent[key] = (fingerprint, status, copy.deepcopy(body))
            return JSONResponse(body, status_code=status, headers=headers)

        return endpoint

    # -- payment methods -------------------------------------------------------
    async def _attach(self, p: dict[str, Any], pm_id: str) -> Result:
        customer = p.get("customer")
        if customer not in self.customers:
            return 400, _error_body("invalid_request_error", f"No such customer: '{customer}'",
                                    code="resource_missing", param="customer")
        if pm_id in DECLINES:
            return 402, _error_body("card_error", "Your card was declined.", code="card_declined",
                                    decline_code=DECLINES[pm_id])
        self.attached[pm_id] = customer
        return 200, {"id": pm_id, "object": "payment_method", "customer": customer, "type": "card"}

    # -- customers -----------------------------------------------------------
    async def _create_customer(self, p: dict[str, Any]) -> Result:
        cid = "cus_" + secrets.token_hex(7)
        customer = {
            "id": cid,
            "object": "customer",
            "created": int(time.time()),
            "email": p.get("email"),
            "name": p.get("name"),
            "phone": p.get("phone"),
            "description": p.get("description"),
            "metadata": p.get("metadata", {}),
            "livemode": False,
        }
        self.customers[cid] = customer
        return 200, customer

    # -- payment intents -----------------------------------------------------
    async def _create_intent(self, p: dict[str, Any]) -> Result:
        for name in ("amount", "currency"):
            if not p.get(name):
                return 400, _error_body("invalid_request_error", f"Missing required param: {name}.",
                                        code="parameter_missing", param=name)
        if not str(p["amount"]).isdigit() or int(p["amount"]) < 1:
            return 400, _error_body("invalid_request_error", "Invalid integer: amount",
                                    code="parameter_invalid_integer", param="amount")
        customer = p.get("customer")
        if customer is not None and customer not in self.customers:
            return 400, _error_body("invalid_request_error", f"No such customer: '{customer}'",
                                    code="resource_missing", param="customer")
        amount = int(p["amount"])
        iid = "pi_" + secrets.token_hex(12)
        pm = p.get("payment_method")
        intent: dict[str, Any] = {
            "id": iid,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": p.get("capture_method", "automatic_async"),
            "client_secret": f"{iid}_secret_{secrets.token_hex(12)}",
            "confirmation_method": p.get("confirmation_method", "automatic"),
            "created": int(time.time()),
            "currency": str(p["currency"]).lower(),
            "customer": customer,
            "description": p.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": p.get("metadata", {}),
            "payment_method": pm,
            "payment_method_types": p.get("payment_method_types", ["card"]),
            "canceled_at": None,
            "cancellation_reason": None,
            "status": "requires_payment_method" if pm is None else "requires_confirmation",
        }
        self.intents[iid] = intent
        if p.get("confirm") == "true" and pm is not None:
            if pm in DECLINES:
                error = {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": DECLINES[pm],
                    "message": "Your card was declined.",
                    "param": "",
                    "payment_method": {"id": pm, "object": "payment_method"},
                }
                intent.update(status="requires_payment_method", last_payment_error=error)
                return 402, {"error": {**error, "payment_intent": copy.deepcopy(intent)}}
            intent["latest_charge"] = "ch_" + secrets.token_hex(12)
            if intent["capture_method"] == "manual":
                intent.update(status="requires_capture", amount_capturable=amount)
            else:
                intent.update(status="succeeded", amount_received=amount)
        return 200, copy.deepcopy(intent)

    @staticmethod
    def _missing(intent_id: str) -> Result:
        return 404, _error_body("invalid_request_error", f"No such payment_intent: '{intent_id}'",
                                code="resource_missing", param="intent")

    @staticmethod
    def _unexpected(intent: dict[str, Any], action: str) -> Result:
        message = f"This PaymentIntent could not be {action} because it has a status of {intent['status']}."
        return 400, _error_body("invalid_request_error", message, code="payment_intent_unexpected_state",
                                payment_intent=copy.deepcopy(intent))

    async def _get_intent(self, p: dict[str, Any], intent_id: str) -> Result:
        intent = self.intents.get(intent_id)
        return (200, copy.deepcopy(intent)) if intent else self._missing(intent_id)

    async def _capture(self, p: dict[str, Any], intent_id: str) -> Result:
        intent = self.intents.get(intent_id)
        if intent is None:
            return self._missing(intent_id)
        if intent["status"] != "requires_capture":
            return self._unexpected(intent, "captured")
        amount = int(p.get("amount_to_capture", intent["amount_capturable"]))
        if amount > intent["amount_capturable"]:
            return 400, _error_body(
                "invalid_request_error",
                "The amount to capture must be less than or equal to the amount capturable.",
                code="amount_too_large",
                param="amount_to_capture",
            )
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        intent["metadata"].update(p.get("metadata", {}))
        self.captures.append((intent_id, amount))
        return 200, copy.deepcopy(intent)

    async def _cancel(self, p: dict[str, Any], intent_id: str) -> Result:
        intent = self.intents.get(intent_id)
        if intent is None:
            return self._missing(intent_id)
        if intent["status"] in ("succeeded", "canceled", "processing"):
            return self._unexpected(intent, "canceled")
        reason = p.get("cancellation_reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer", "abandoned"):
            return 400, _error_body("invalid_request_error", f"Invalid cancellation_reason: {reason}",
                                    code="parameter_invalid_string", param="cancellation_reason")
        intent.update(status="canceled", canceled_at=int(time.time()), cancellation_reason=reason,
                      amount_capturable=0)
        self.cancels.append(intent_id)
        return 200, copy.deepcopy(intent)
