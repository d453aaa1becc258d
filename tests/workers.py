"""Real server processes (`python server.py`, as deployed) beside the vendors' wire fakes.

Used by the tests that need more than one worker on one database, or a
process that is killed or stopped (SIGKILL, SIGSTOP) mid-call.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import httpx
from twilio.request_validator import RequestValidator

from fakes import DeepgramFake, ElevenLabsFake, OpenAIFake, ServedApp, StripeFake, TwilioRestFake
from tests.phone_rig import ACCOUNT_SID, AUTH_TOKEN, BRAD_PHONE, DEMO_PHONE

ROOT = Path(__file__).parent.parent
STRIPE_KEY = "sk_test_workers"
JWT_SECRET, ADMIN_TOKEN = "j" * 40, "a" * 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python server.py` in its own process."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "server.py"], cwd=ROOT, env=self.env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Fakes:
    """Every vendor's fake, served on loopback, and the environment that points a server at them."""

    def __init__(self, stack: ExitStack, *, said: Callable[[int], str] | list[str], reply: Any,
                 payments: bool = False) -> None:
        self.cerebras, self.stripe = OpenAIFake(default_reply=reply), StripeFake(api_key=STRIPE_KEY)
        self.twilio = TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN)
        self.deepgram = DeepgramFake(said, inaudible=None)
        self.elevenlabs = ElevenLabsFake(ms_per_char=10)
        self.served = {name: stack.enter_context(ServedApp(fake.app)) for name, fake in [
            ("deepgram", self.deepgram), ("cerebras", self.cerebras), ("openai", OpenAIFake()),
            ("elevenlabs", self.elevenlabs), ("twilio", self.twilio), ("stripe", self.stripe)]}
        self.payments = payments

    def env(self, port: int, data_dir: Path, **settings: str) -> dict[str, str]:
        s = self.served
        env = {**os.environ, "PORT": str(port), "DATA_DIR": str(data_dir), "LOG_LEVEL": os.environ.get("TEST_SERVER_LOG_LEVEL", "INFO"),
               "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "JWT_SECRET": JWT_SECRET, "ADMIN_TOKEN": ADMIN_TOKEN,
               "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
               "TWILIO_API_BASE_URL": s["twilio"].http_url,
               "DEEPGRAM_API_KEY": "test-key", "DEEPGRAM_BASE_URL": s["deepgram"].ws_url,
               "CEREBRAS_API_KEY": "test-key", "CEREBRAS_BASE_URL": s["cerebras"].http_url + "/v1",
               "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": s["openai"].http_url + "/v1",
               "ELEVENLABS_API_KEY": "test-key", "ELEVENLABS_BASE_URL": s["elevenlabs"].ws_url,
               "COST_FLUSH_INTERVAL_SECS": "0.2", **settings}
        if self.payments:
            env.update(STRIPE_SECRET_KEY=STRIPE_KEY, STRIPE_API_BASE=s["stripe"].http_url)
        return env


async def ring(server_url: str, call_sid: str) -> tuple[str, str]:
    """Twilio's signed inbound webhook to one worker; returns (call id, media stream URL)."""
    params = {"CallSid": call_sid, "From": DEMO_PHONE, "To": BRAD_PHONE, "AccountSid": ACCOUNT_SID}
    url = f"{server_url}/twilio/voice"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200, answer.text
    found = re.search(r'<Stream url="([^"]+)"', answer.text)
    assert found, f"no media stream in the answer: {answer.text}"
    stream = found.group(1).replace("&amp;", "&")
    return re.search(r'<Parameter name="call_id" value="([^"]+)"', answer.text).group(1), stream
