"""Run the vendors' wire fakes on fixed local ports, for trying the phone path offline.

    python -m tools.fake_vendors                # every vendor faked; prints the settings, runs until Ctrl-C
    python -m tools.fake_vendors --twilio-only  # only Twilio's REST API: the local engines do the rest

Start the server with those settings (e.g. `> .env`), then simulate calls with
`python -m tools.simulate_call`. The fake speech-to-text does not listen: it
"hears" three fixed lines in turn, whatever the caller says.
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
    parser.add_argument("--twilio-only", action="store_true",
                        help="fake only Twilio: Whisper, the offline script and Piper handle the call")
    args = parser.parse_args()

    heard = iter(["Hi there, how are you doing today?", "Tell me something fun.", "What are you up to later?"])
    fakes = {
        "deepgram": DeepgramFake(lambda _i: next(heard, "Sounds good."), api_key=None),
        "cerebras": OpenAIFake(api_key=None, default_reply="That's awesome! Tell me more about it."),
        "openai": OpenAIFake(api_key=None, default_reply="Happy to help with that."),
        "elevenlabs": ElevenLabsFake(api_key=None),
        "twilio": TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN),
    }
    if args.twilio_only:
        fakes = {"twilio": fakes["twilio"]}
    served = {name: ServedApp(fake.app, port=args.base_port + i).start() for i, (name, fake) in enumerate(fakes.items())}
    print("# Vendor fakes are running. Start the server with these settings:")
    if not args.twilio_only:
        print("# (the fake speech-to-text hears three fixed lines in turn, whatever is said)")
        print(f"DEEPGRAM_API_KEY=local\nDEEPGRAM_BASE_URL={served['deepgram'].ws_url}")
        print(f"CEREBRAS_API_KEY=local\nCEREBRAS_BASE_URL={served['cerebras'].http_url}/v1")
        print(f"OPENAI_API_KEY=local\nOPENAI_BASE_URL={served['openai'].http_url}/v1")
        print(f"ELEVENLABS_API_KEY=local\nELEVENLABS_BASE_URL={served['elevenlabs'].ws_url}")
    print(f"TWILIO_ACCOUNT_SID={ACCOUNT_SID}\nTWILIO_AUTH_TOKEN={AUTH_TOKEN}")
    print(f"TWILIO_API_BASE_URL={served['twilio'].http_url}")
    print("# PUBLIC_BASE_URL makes the server 'public': the room then asks for ADMIN_TOKEN below;")
    print("# delete this .env to go back to the open local room.")
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
