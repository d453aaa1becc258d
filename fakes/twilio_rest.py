"""Twilio REST fake: create, read and hang up Calls.

Point the ``twilio`` SDK at it with ``client.api.base_url = served.http_url``
(or ``Client(..., http_client=LocalTwilioHttpClient(served.http_url))`` to
redirect every Twilio domain), and Pipecat's ``TwilioFrameSerializer`` with
``base_url=served.http_url``.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse

__all__ = ["TwilioRestFake", "LocalTwilioHttpClient"]

_API = "/2010-04-01"


def _now_rfc2822() -> str:
    return format_datetime(datetime.now(timezone.utc))


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


class LocalTwilioHttpClient(TwilioHttpClient):
    """SDK HTTP client that sends every ``*.twilio.com`` request to ``base_url``."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._target = urlsplit(base_url)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        parts = urlsplit(url)
        if parts.hostname and parts.hostname.endswith("twilio.com"):
            url = urlunsplit((self._target.scheme, self._target.netloc, parts.path, parts.query, ""))
        return super().request(method, url, *args, **kwargs)


class TwilioRestFake:
    """Calls API for one account; read the counters from tests."""

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-token") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: dict[str, dict[str, Any]] = {}
        # Counters.
        self.created_calls: list[dict[str, Any]] = []  # form fields of each create
        self.updates: list[tuple[str, dict[str, Any]]] = []  # (call_sid, form) of each update
        self.hangups: list[tuple[str, float]] = []  # (call_sid, time.monotonic())
        self.auth_failures = 0
        self.app = FastAPI()
        self.app.post(f"{_API}/Accounts/{{account}}/Calls.json")(self._create)
        self.app.post(f"{_API}/Accounts/{{account}}/Calls/{{call_sid}}.json")(self._update)
        self.app.get(f"{_API}/Accounts/{{account}}/Calls/{{call_sid}}.json")(self._fetch)

    # -- state helpers ---------------------------------------------------
    def new_sid(self, prefix: str = "CA") -> str:
        return prefix + secrets.token_hex(16)

    def add_call(
        self,
        call_sid: str | None = None,
        *,
        to: str = "+15550100000",
        from_: str = "+15550199999",
        status: str = "in-progress",
        direction: str = "inbound",
    ) -> str:
        """Register a call not created via REST (e.g. inbound) so it can be hung up."""
        sid = call_sid or self.new_sid()
        self.calls[sid] = self._call_json(sid, to, from_, status, direction)
        return sid

    def _call_json(self, sid: str, to: str, from_: str, status: str, direction: str) -> dict[str, Any]:
        now = _now_rfc2822()
        uri = f"{_API}/Accounts/{self.account_sid}/Calls/{sid}.json"
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "annotation": None,
            "answered_by": None,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": direction,
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": from_,
            "from_formatted": from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "start_time": None,
            "status": status,
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": uri,
            "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
                "events": uri.replace(".json", "/Events.json"),
            },
        }

    # -- auth --------------------------------------------------------------
    def _authorised(self, request: Request, account: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        ok = request.headers.get("authorization") == f"Basic {expected}" and account == self.account_sid
        if not ok:
            self.auth_failures += 1
        return ok

    @staticmethod
    async def _form(request: Request) -> dict[str, Any]:
        """Form fields; a repeated key (e.g. StatusCallbackEvent) becomes a list."""
        out: dict[str, Any] = {}
        for key, value in (await request.form()).multi_items():
            if key in out:
                out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [value]
            else:
                out[key] = value
        return out

    # -- endpoints ---------------------------------------------------------
    async def _create(self, request: Request, account: str) -> JSONResponse:
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        form = await self._form(request)
        if not form.get("To"):
            return _error(400, 21201, "No 'To' number is specified")
        if not form.get("From"):
            return _error(400, 21213, "No 'From' number is specified")
        if not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
            return _error(400, 21205, "Url, Twiml or ApplicationSid is required")
        self.created_calls.append(form)
        sid = self.new_sid()
        call = self._call_json(sid, str(form["To"]), str(form["From"]), "queued", "outbound-api")
        self.calls[sid] = call
        return JSONResponse(call, status_code=201)

    async def _update(self, request: Request, account: str, call_sid: str) -> JSONResponse:
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        call = self.calls.get(call_sid)
        if call is None:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        form = await self._form(request)
        self.updates.append((call_sid, form))
        status = form.get("Status")
        if status in ("completed", "canceled"):
            self.hangups.append((call_sid, time.monotonic()))
            if call["status"] not in ("completed", "canceled", "failed", "busy", "no-answer"):
                call["status"] = status
                call["end_time"] = _now_rfc2822()
        call["date_updated"] = _now_rfc2822()
        return JSONResponse(call)

    async def _fetch(self, request: Request, account: str, call_sid: str) -> JSONResponse:
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        call = self.calls.get(call_sid)
        if call is None:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(call)
