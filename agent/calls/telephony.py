"""Twilio's REST API: place the outbound call, hang up, verify webhooks.

The SDK is synchronous (requests), so calls run in a worker thread; the
endpoint comes from TWILIO_API_BASE_URL like every other vendor's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

from loguru import logger
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from agent.settings import Settings


@dataclass
class Twilio:
    settings: Settings

    def __post_init__(self) -> None:
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            s = self.settings
            self._client = Client(s.twilio_account_sid, s.twilio_auth_token)
            self._client.api.base_url = s.twilio_api_base_url.rstrip("/")
        return self._client

    def signature_valid(self, url: str, params: dict[str, str], signature: str) -> bool:
        if not self.settings.twilio_auth_token or not signature:
            return False
        return RequestValidator(self.settings.twilio_auth_token).validate(url, params, signature)

    def media_token(self, call_id: str, *, now: float | None = None) -> str:
        """Signs the media URL of one call until it expires, so only Twilio (given the URL by us) opens it.

        `<expiry>.<hmac>`: valid for MEDIA_TOKEN_TTL_SECS, long enough for Twilio to
        connect. It is one use in effect: the first connection makes the call live and
        a call goes live once, so a replayed URL is refused (docs/calls.md).
        """
        expires = int((time.time() if now is None else now) + self.settings.media_token_ttl_secs)
        return f"{expires}.{self._sign(call_id, expires)}"

    def media_token_valid(self, call_id: str, token: str, *, now: float | None = None) -> bool:
        expiry, _, signature = (token or "").partition(".")
        if not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
            return False
        if int(expiry) < (time.time() if now is None else now):
            return False
        # Bytes, not str: compare_digest refuses non-ASCII text, and a token is the caller's input.
        return hmac.compare_digest(self._sign(call_id, int(expiry)).encode(), signature.encode("utf-8", "replace"))

    def _sign(self, call_id: str, expires: int) -> str:
        key = (self.settings.twilio_auth_token or self.settings.jwt_secret).encode()
        return hmac.new(key, f"media:{call_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    async def hang_up(self, call_sid: str) -> None:
        """End a call; one that has already ended (404) is not an error."""
        def _update() -> None:
            try:
                self.client.calls(call_sid).update(status="completed")
            except TwilioRestException as exc:
                if exc.status != 404:
                    raise
        try:
            await asyncio.to_thread(_update)
        except Exception as exc:
            logger.error(f"hang-up of {call_sid} failed: {exc}")

    async def place_call(self, *, to: str, from_: str, url: str, status_callback: str, time_limit: int) -> str:
        def _create() -> str:
            call = self.client.calls.create(
                to=to, from_=from_, url=url, method="POST", status_callback=status_callback,
                status_callback_method="POST", status_callback_event=["completed"], time_limit=time_limit)
            return call.sid
        return await asyncio.to_thread(_create)
