"""Run the vendors' wire fakes on fixed local ports, for trying the phone path offline.

    python -m tools.fake_vendors            # prints the settings to use, runs until Ctrl-C

Start the server with those settings (e.g. paste them into .env), then simulate
calls with `python -m tools.simulate_call`.
"""

from __future__ import annotations

import argparse
import signal
import threading

from fakes import DeepgramFake, ElevenLabsFake, OpenAIFake, ServedApp, TwilioRestFake

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "local-twilio-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-port", type=int, default=18101)
    parser.add_argument("--server-port", type=int, default=7860, help="the port our server will listen on")
    args = parser.parse_args()

    heard = iter(["Hi there, how are you doing today?", "Tell me something fun.", "What are you up to later?"])
    fakes = {
        "deepgram": DeepgramFake(lambda _i: next(heard, "Sounds good."), api_key=None),
        "cerebras": OpenAIFake(api_key=None, default_reply="That's awesome! Tell me more about it."),
        "openai": OpenAIFake(api_key=None, default_reply="Happy to help with that."),
        "elevenlabs": ElevenLabsFake(api_key=None),
        "twilio": TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN),
    }
    served = {name: ServedApp(fake.app, port=args.base_port + i).start() for i, (name, fake) in enumerate(fakes.items())}
    print("# Vendor fakes are running. Start the server with these settings:")
    print(f"DEEPGRAM_API_KEY=local\nDEEPGRAM_BASE_URL={served['deepgram'].ws_url}")
    print(f"CEREBRAS_API_KEY=local\nCEREBRAS_BASE_URL={served['cerebras'].http_url}/v1")
    print(f"OPENAI_API_KEY=local\nOPENAI_BASE_URL={served['openai'].http_url}/v1")
    print(f"ELEVENLABS_API_KEY=local\nELEVENLABS_BASE_URL={served['elevenlabs'].ws_url}")
    print(f"TWILIO_ACCOUNT_SID={ACCOUNT_SID}\nTWILIO_AUTH_TOKEN={AUTH_TOKEN}")
    print(f"TWILIO_API_BASE_URL={served['twilio'].http_url}")
    print(f"PUBLIC_BASE_URL=http://127.0.0.1:{args.server_port}")
    print(f"JWT_SECRET={'local-' * 6}\nADMIN_TOKEN={'admin-' * 5}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for app in served.values():
        app.stop()


if __name__ == "__main__":
    main()
