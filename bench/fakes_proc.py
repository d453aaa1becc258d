"""The vendors' wire fakes, served from their own process.

Run by `bench.call_bench`, never by hand. The fakes live in a process apart
from the server under test so that their CPU is not billed to the server and
their Python code does not compete with it for one GIL: in production these
vendors are other machines. Prints one JSON line with the base URLs, then
serves until terminated.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import ExitStack

from loguru import logger

from fakes import DeepgramFake, ElevenLabsFake, OpenAIFake, ServedApp, TwilioRestFake

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-twilio-token"
API_KEY = "bench-key"
# What the caller "says", one per speech segment (the Deepgram fake recognises loudness, not words).
TRANSCRIPTS = [
    "Hi Brad, how are you doing today?",
    "I was thinking about dinner, any ideas?",
    "Tell me something fun about the ocean.",
]
# About 2.5 s of persona speech per reply at 50 ms a character: a conversational turn.
REPLY = "Stoked to hear from you! The waves were great today."
MS_PER_CHAR = 50


def reply(body: dict) -> str:
    """The persona's line, or, for the post-call memory extraction (a JSON request), a valid update."""
    if (body.get("response_format") or {}).get("type") == "json_object":
        return json.dumps({"summary": "They caught up about the surf and dinner plans.",
                           "key_topics": ["surf", "dinner"], "outcome": "friendly"})
    return REPLY


def main() -> None:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    deepgram = DeepgramFake(lambda i: TRANSCRIPTS[i % len(TRANSCRIPTS)], api_key=API_KEY, inaudible=None)
    cerebras = OpenAIFake(api_key=API_KEY, default_reply=reply)
    openai = OpenAIFake(api_key=API_KEY, default_reply=reply)
    elevenlabs = ElevenLabsFake(api_key=API_KEY, ms_per_char=MS_PER_CHAR)
    twilio = TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ExitStack() as stack:
        served = {name: stack.enter_context(ServedApp(fake.app)) for name, fake in [
            ("deepgram", deepgram), ("cerebras", cerebras), ("openai", openai),
            ("elevenlabs", elevenlabs), ("twilio", twilio)]}
        print(json.dumps({
            "deepgram": served["deepgram"].ws_url, "cerebras": served["cerebras"].http_url + "/v1",
            "openai": served["openai"].http_url + "/v1", "elevenlabs": served["elevenlabs"].ws_url,
            "twilio": served["twilio"].http_url,
        }), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
