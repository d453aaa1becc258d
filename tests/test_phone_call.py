"""A metered phone call end to end, through the real server and Pipecat's real services."""

from decimal import Decimal

import pytest

from agent.pricing import PriceBook
from tests.phone_rig import DATA, PhoneRig



def _sum(events, service, unit=None):
    return sum(Decimal(e["quantity"]) for e in events if e["service"] == service and (unit is None or e["unit"] == unit))


async def test_caller_speaks_and_hears_the_persona_and_the_ledger_matches_the_vendors(tmp_path):
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=["Stoked to hear from you! The waves were great this morning."]) as rig:
        call_id, url = await rig.ring("CA" + "a" * 32)
        caller = await rig.connect_caller("CA" + "a" * 32, call_id, url)
        # The greeting is spoken first.
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=10)
        await caller.silence(0.5)
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        await caller.wait_until(lambda: len(rig.cerebras.served_texts) >= 1, timeout=15)
        await caller.wait_until(lambda: len(caller.speech_segments) >= 2, timeout=15)
        await caller.silence(1.0)
        await caller.hang_up()
        await rig.post_twilio("/twilio/status", {"CallSid": "CA" + "a" * 32, "CallStatus": "completed",
                                                 "CallDuration": "14"})
        call = await rig.wait_for_call_end(call_id)

        # What the caller heard: the greeting and the reply, in the persona's voice.
        spoken = " ".join(rig.elevenlabs.texts)
        assert "it's Brad" in spoken and "waves were great" in spoken
        # The LLM got the user's words and the composite system prompt.
        request = rig.cerebras.requests[-1]
        assert request["messages"][0]["role"] == "system" and "You are Brad" in request["messages"][0]["content"]
        assert any("how are you doing today" in str(m.get("content")) for m in request["messages"])

        events = await rig.calls.events(call_id)
        assert _sum(events, "tts", "character") == rig.elevenlabs.characters_received
        assert _sum(events, "llm", "input_token") == rig.cerebras.served_prompt_tokens
        assert _sum(events, "llm", "output_token") == rig.cerebras.served_completion_tokens
        assert _sum(events, "stt", "second") == Decimal(rig.deepgram.audio_seconds_received.numerator) / \
            Decimal(rig.deepgram.audio_seconds_received.denominator)
        twilio = [e for e in events if e["service"] == "twilio"]
        assert len(twilio) == 1 and twilio[0]["quantity"] == "1" and twilio[0]["source"] == "vendor"

        breakdown = await rig.calls.breakdown(call_id)
        assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
        assert call["spent_micros"] == breakdown["total_micros"]
        assert call["end_reason"] == "caller_hung_up"


async def test_forged_webhook_is_refused_and_no_call_is_created(tmp_path):
    with PhoneRig(tmp_path) as rig:
        params = {"CallSid": "CA" + "b" * 32, "From": "+15555550100", "To": "+15555550001"}
        response = await rig.post_twilio("/twilio/voice", params, signature="forged")
        assert response.status_code == 403
        missing = await rig.post_twilio("/twilio/voice", params, signature="")
        assert missing.status_code == 403
        assert await rig.calls.by_twilio_sid("CA" + "b" * 32) is None
