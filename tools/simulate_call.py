"""Simulate a phone call against the running server, as Twilio would place it.

    python -m tools.simulate_call --wav tests/data/hello.wav --wav tests/data/ocean.wav
    python -m tools.simulate_call --say "Hi Brad, how was the surf?"     # needs espeak-ng

It signs the inbound webhook with TWILIO_AUTH_TOKEN (from the environment or
.env, like the server), opens the media stream it is given, speaks each
utterance in turn as 8 kHz μ-law, waits for the persona's answer, hangs up,
posts the signed status callback, then prints what was said and what it cost.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
from twilio.request_validator import RequestValidator

from agent.books.money import format_usd
from agent.accounts.personas import DEMO_USER_PHONE
from agent.settings import load_settings
from storage.calls import CallStore
from storage.db import Database
from fakes.twilio_caller import TwilioCaller


def synthesise(text: str, folder: Path) -> Path:
    """Caller speech from text with espeak-ng (Debian's `espeak-ng` package)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("--say needs espeak-ng (apt-get install espeak-ng); or use --wav")
    path = folder / f"say-{secrets.token_hex(4)}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
    return path


async def simulate(server: str, from_: str, to: str, utterances: list[Path], reply_wait: float) -> None:
    settings = load_settings()
    if not settings.twilio_auth_token:
        raise SystemExit("Set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL for the server and this tool")
    call_sid = "CA" + secrets.token_hex(16)
    params = {"CallSid": call_sid, "AccountSid": settings.twilio_account_sid, "From": from_, "To": to,
              "CallStatus": "ringing", "Direction": "inbound"}
    validator = RequestValidator(settings.twilio_auth_token)
    public = settings.public_base_url or server
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        signature = validator.compute_signature(f"{public}/twilio/voice", params)
        answer = await http.post("/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})
        answer.raise_for_status()
        stream = re.search(r'<Stream url="([^"]+)"', answer.text)
        call_id = re.search(r'<Parameter name="call_id" value="([^"]+)"', answer.text)
        if not stream or not call_id:
            print(f"The server answered without a media stream:\n{answer.text}")
            return
        url = stream.group(1).replace("&amp;", "&")
        print(f"call {call_id.group(1)} connected; streaming to {url.split('?')[0]}")

        caller = await TwilioCaller(url, call_sid, settings.twilio_account_sid,
                                    custom_parameters={"call_id": call_id.group(1)}).connect()
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(reply_wait)  # the greeting
        for path in utterances:
            print(f"caller says: {path.name}")
            await caller.say_wav(path)
            await asyncio.sleep(reply_wait)
        await caller.hang_up()
        duration = int(asyncio.get_running_loop().time() - started)
        status = {"CallSid": call_sid, "AccountSid": settings.twilio_account_sid, "CallStatus": "completed",
                  "CallDuration": str(duration)}
        signature = validator.compute_signature(f"{public}/twilio/status", status)
        await http.post("/twilio/status", data=status, headers={"X-Twilio-Signature": signature})

    store = CallStore(Database(settings.effective_database_url))
    for _ in range(100):
        call = await store.get(call_id.group(1))
        if call and call["status"] == "ended":
            break
        await asyncio.sleep(0.2)
    else:
        raise SystemExit("the call did not end in time; see the server log")
    print("\nWhat was said:")
    for turn in call["transcript"] or []:
        print(f"  {turn['role']:>9}: {turn['text']}")
    breakdown = await store.breakdown(call["id"])
    print(f"\nCost ({call['end_reason']}, {call['duration_seconds']} s):")
    for service, line in breakdown["services"].items():
        units = ", ".join(f"{q} {u}" for u, q in line["units"].items())
        print(f"  {service:<8} {line['cost_micros'] / 1e6:>10.6f} USD  ({units})")
    print(f"  subtotal {breakdown['subtotal_micros'] / 1e6:>10.6f} USD")
    print(f"  Stripe   {breakdown['stripe_fee_micros'] / 1e6:>10.6f} USD")
    print(f"  total    {format_usd(breakdown['total_micros'])}")
    await store.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:7860", help="where the server listens")
    parser.add_argument("--from", dest="from_", default=DEMO_USER_PHONE, help="the caller (a user's phone)")
    parser.add_argument("--to", default="+15555550001", help="the persona's number (Brad by default)")
    parser.add_argument("--wav", action="append", type=Path, default=[], help="caller audio, any WAV")
    parser.add_argument("--say", action="append", default=[], help="caller text, synthesised")
    parser.add_argument("--reply-wait", type=float, default=4.0, help="seconds to listen after each utterance")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        utterances = list(args.wav) + [synthesise(text, Path(folder)) for text in args.say]
        if not utterances:
            utterances = [Path(__file__).parent.parent / "tests" / "data" / "hello.wav"]
        asyncio.run(simulate(args.server, args.from_, args.to, utterances, args.reply_wait))


if __name__ == "__main__":
    main()
