"""A whole phone set-up on loopback: our real server, the vendors' wire fakes, a caller.

Nothing of ours is mocked: the server runs in uvicorn, Pipecat's real services
talk to the fakes over HTTP and WebSockets, and the caller speaks Twilio Media
Streams with real μ-law audio.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from agent.settings import Settings
from fakes import DeepgramFake, ElevenLabsFake, OpenAIFake, ServedApp, TwilioCaller, TwilioRestFake
from server import create_app
from storage.calls import CallStore
from storage.db import Database

DATA = Path(__file__).parent / "data"
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-test-token"
DEMO_PHONE = "+15555550100"
BRAD_PHONE = "+15555550001"


@dataclass
class PhoneRig:
    tmp: Path
    transcripts: list[str] = field(default_factory=list)
    cerebras_script: list[Any] = field(default_factory=list)
    openai_script: list[Any] = field(default_factory=list)
    prices_file: Path | None = None
    #: Settings that differ from the rig's (say, no LLM key: the call uses a local LLM).
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A pause inside an utterance can look like two segments: the extra one is heard as nothing.
        # Endpointing a little longer than the pause after "Hi Brad," keeps each utterance one turn.
        self.deepgram = DeepgramFake(self.transcripts, inaudible=None, endpointing_ms=700)
        self.cerebras = OpenAIFake(self.cerebras_script, default_reply="Doing great, thanks for asking!")
        self.openai = OpenAIFake(self.openai_script, default_reply="Hello from the fallback model.")
        self.elevenlabs = ElevenLabsFake(ms_per_char=10)
        self.twilio = TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN)
        self._stack = ExitStack()
        self._calls: CallStore | None = None

    def __enter__(self) -> "PhoneRig":
        served = {name: self._stack.enter_context(ServedApp(fake.app)) for name, fake in [
            ("deepgram", self.deepgram), ("cerebras", self.cerebras), ("openai", self.openai),
            ("elevenlabs", self.elevenlabs), ("twilio", self.twilio)]}
        self.settings = Settings(**{**dict(
            _env_file=None, data_dir=self.tmp, database_url=f"sqlite:///{self.tmp / 'calls.db'}",
            public_base_url="http://127.0.0.1:1", jwt_secret="j" * 40, admin_token="a" * 30,
            twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
            twilio_api_base_url=served["twilio"].http_url,
            deepgram_api_key="test-key", deepgram_base_url=served["deepgram"].ws_url,
            cerebras_api_key="test-key", cerebras_base_url=served["cerebras"].http_url + "/v1",
            openai_api_key="test-key", openai_base_url=served["openai"].http_url + "/v1",
            elevenlabs_api_key="test-key", elevenlabs_base_url=served["elevenlabs"].ws_url,
            cost_flush_interval_secs=0.2, prices_file=self.prices_file, llm_timeout_secs=3,
        ), **self.overrides})
        self.app = create_app(self.settings)
        self.server = self._stack.enter_context(ServedApp(self.app, lifespan="on"))
        # The public URL is only known once the server has its port.
        self.settings.public_base_url = self.server.http_url
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def calls(self) -> CallStore:
        """Our own reader of the server's database (the server's engine lives on its own loop)."""
        if self._calls is None:
            self._calls = CallStore(Database(self.settings.effective_database_url))
        return self._calls

    def sign(self, path: str, params: dict[str, str]) -> str:
        return RequestValidator(AUTH_TOKEN).compute_signature(self.server.http_url + path, params)

    async def post_twilio(self, path: str, params: dict[str, str], *, signature: str | None = None
                          ) -> httpx.Response:
        headers = {"X-Twilio-Signature": signature if signature is not None else self.sign(path, params)}
        async with httpx.AsyncClient(base_url=self.server.http_url) as client:
            return await client.post(path, data=params, headers=headers)

    async def ring(self, call_sid: str, *, from_: str = DEMO_PHONE, to: str = BRAD_PHONE) -> tuple[str, str]:
        """Twilio's inbound webhook; returns (call id, media stream URL) from the TwiML."""
        self.twilio.add_call(call_sid)
        response = await self.post_twilio("/twilio/voice", {"CallSid": call_sid, "From": from_, "To": to,
                                                            "AccountSid": ACCOUNT_SID, "CallStatus": "ringing"})
        assert response.status_code == 200, response.text
        url = re.search(r'<Stream url="([^"]+)"', response.text)
        call_id = re.search(r'<Parameter name="call_id" value="([^"]+)"', response.text)
        assert url and call_id, response.text
        return call_id.group(1), url.group(1).replace("&amp;", "&")

    async def connect_caller(self, call_sid: str, call_id: str, url: str) -> TwilioCaller:
        caller = TwilioCaller(url, call_sid, ACCOUNT_SID, custom_parameters={"call_id": call_id})
        return await caller.connect()

    async def greeted_and_said_hello(self, call_sid: str, *, greeting_timeout: float = 10.0,
                                     pause: float = 0.3) -> tuple[str, TwilioCaller]:
        """Ring, hear the greeting, pause, say hello (tests/data/hello.wav): the call id and its caller."""
        call_id, url = await self.ring(call_sid)
        caller = await self.connect_caller(call_sid, call_id, url)
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=greeting_timeout)
        await caller.silence(pause)
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        return call_id, caller

    async def wait_for_call_end(self, call_id: str, timeout: float = 20.0) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            call = await self.calls.get(call_id)
            if call and call["status"] == "ended":
                return call
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"call {call_id} did not end: {call}")
            await asyncio.sleep(0.1)
