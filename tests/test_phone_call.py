"""A metered phone call end to end, through the real server and Pipecat's real services."""

import asyncio
import time
from decimal import Decimal

from agent.books.pricing import DEFAULT_PRICES_FILE
from tests.phone_rig import DATA, PhoneRig


def _sum(events, service, unit=None):
    return sum(Decimal(e["quantity"]) for e in events if e["service"] == service and (unit is None or e["unit"] == unit))


def _turns(fake):
    """The conversation's requests (streamed), not the post-call memory extraction."""
    return [r for r in fake.requests if r.get("stream")]


def _tokens(events, unit):
    """LLM tokens of the conversation and of the post-call memory extraction: both reached the vendor."""
    return sum(Decimal(e["quantity"]) for e in events if e["kind"] == "ai_inference" and e["unit"] == unit)


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
        # The whole reply has played (not merely started) before the caller hangs up.
        await caller.wait_until(lambda: len(caller.speech_segments) >= 2
                                and time.monotonic() - caller.speech_segments[-1].end > 0.8, timeout=20)
        await caller.hang_up()
        await rig.post_twilio("/twilio/status", {"CallSid": "CA" + "a" * 32, "CallStatus": "completed",
                                                 "CallDuration": "14"})
        call = await rig.wait_for_call_end(call_id)

        # What the caller heard: the greeting and the reply, in the persona's voice.
        spoken = " ".join(rig.elevenlabs.texts)
        assert "it's Brad" in spoken and "waves were great" in spoken
        # The LLM got the user's words and the composite system prompt.
        request = _turns(rig.cerebras)[0]
        assert request["messages"][0]["role"] == "system" and "You are Brad" in request["messages"][0]["content"]
        assert any("how are you doing today" in str(m.get("content")) for m in request["messages"])

        events = await rig.calls.events(call_id)
        assert _sum(events, "tts", "character") == rig.elevenlabs.characters_received
        assert _tokens(events, "input_token") == rig.cerebras.served_prompt_tokens
        assert _tokens(events, "output_token") == rig.cerebras.served_completion_tokens
        assert _sum(events, "stt", "second") == Decimal(rig.deepgram.audio_seconds_received.numerator) / \
            Decimal(rig.deepgram.audio_seconds_received.denominator)
        twilio = [e for e in events if e["service"] == "twilio"]
        assert len(twilio) == 1 and twilio[0]["quantity"] == "1" and twilio[0]["source"] == "vendor"

        breakdown = await rig.calls.breakdown(call_id)
        assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
        assert call["spent_micros"] == breakdown["total_micros"]
        assert call["end_reason"] == "caller_hung_up"
        said = [(t["role"], t["text"]) for t in call["transcript"]]
        assert ("user", "Hi Brad, how are you doing today?") in said
        assert any(role == "assistant" and "waves were great" in text for role, text in said), said


async def test_forged_webhook_is_refused_and_no_call_is_created(tmp_path):
    with PhoneRig(tmp_path) as rig:
        params = {"CallSid": "CA" + "b" * 32, "From": "+15555550100", "To": "+15555550001"}
        response = await rig.post_twilio("/twilio/voice", params, signature="forged")
        assert response.status_code == 403
        missing = await rig.post_twilio("/twilio/voice", params, signature="")
        assert missing.status_code == 403
        assert await rig.calls.by_twilio_sid("CA" + "b" * 32) is None


def _prices_with(tmp_path, name: str, model: str, unit: str, default: str, price: str):
    """The default price book with one rate changed, so a test call reaches its limits."""
    rate = f'model = "{model}"\nunit = "{unit}"\nprice = '
    text = DEFAULT_PRICES_FILE.read_text()
    assert rate + f'"{default}"' in text
    path = tmp_path / name
    path.write_text(text.replace(rate + f'"{default}"', rate + f'"{price}"'))
    return path


def _expensive_llm_prices(tmp_path):
    """LLM output at 8 cents a token."""
    return _prices_with(tmp_path, "prices.toml", "gpt-oss-120b", "output_token", "0.75", "80000")


LONG_REPLY = ("Stoked to hear from you! The waves were great this morning, I caught three long rides "
              "before work and then grabbed tacos with the crew on the beach.")


async def test_warning_is_spoken_once_and_the_cutoff_says_goodbye_and_hangs_up(tmp_path):
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=[LONG_REPLY, LONG_REPLY], prices_file=_expensive_llm_prices(tmp_path)) as rig:
        from agent.books.budgets import BudgetManager, BudgetSettings
        from storage.users import UserStore

        budgets = BudgetManager(UserStore(rig.calls.db), rig.calls)
        await budgets.save_settings("demo", BudgetSettings(per_call_limit_micros=3_000_000))
        sid = "CA" + "c" * 32
        call_id, caller = await rig.greeted_and_said_hello(sid)
        await caller.wait_until(lambda: any("Just so you know" in t for t in rig.elevenlabs.texts), timeout=20)
        warning = next(t for t in rig.elevenlabs.texts if "Just so you know" in t)
        assert "of your $3 call budget" in warning
        # The reply was shortened to what the budget pays for: once it has been heard, the goodbye.
        await caller.wait_until(lambda: any("goodbye" in t.lower() for t in rig.elevenlabs.texts), timeout=40)
        cutoff_at = asyncio.get_running_loop().time()
        await caller.wait_until(lambda: caller.closed_by_server, timeout=15)
        ended_at = asyncio.get_running_loop().time()
        call = await rig.wait_for_call_end(call_id)

        spoken = rig.elevenlabs.texts
        assert sum("Just so you know" in t for t in spoken) == 1  # once
        assert any("reached your $3 call budget" in t for t in spoken)
        assert ended_at - cutoff_at <= 10  # within the grace period
        assert [h[0] for h in rig.twilio.hangups] == [sid]  # hung up through Twilio's REST API
        # The goodbye was heard before the hang-up: Twilio echoed our mark first.
        assert "goodbye" in [name for name, _ in caller.marks_echoed]  # (the warning has its mark too)
        assert call["end_reason"] == "budget_cutoff"
        # The first reply was capped at what the budget could pay for; the second turn could not be
        # afforded at all, so the persona said goodbye instead of answering.
        turns = _turns(rig.cerebras)
        assert len(turns) == 1 and turns[0]["max_completion_tokens"] < 300
        breakdown = await rig.calls.breakdown(call_id)
        assert breakdown["total_micros"] <= 3_000_000  # the bill never passes the limit


async def test_a_garbled_media_message_does_not_end_the_call(tmp_path):
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=["Still here, loud and clear."]) as rig:
        sid = "CA" + "e" * 32
        call_id, url = await rig.ring(sid)
        caller = await rig.connect_caller(sid, call_id, url)
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=10)
        for garbage in ["{not json", "[1, 2, 3]", '{"event": "media", "media": {"payload": "%%%not-base64"}}',
                        '{"event": "media", "media": null}', '{"event": "surprise"}', "\x00\x01"]:
            await caller.send_raw(garbage)
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        await caller.wait_until(lambda: any("loud and clear" in t for t in rig.elevenlabs.texts), timeout=20)
        assert not caller.closed_by_server
        await caller.hang_up()
        await rig.wait_for_call_end(call_id)


async def _save_budget(rig: PhoneRig, **limits: int) -> None:
    from agent.books.budgets import BudgetManager, BudgetSettings
    from storage.users import UserStore

    await BudgetManager(UserStore(rig.calls.db), rig.calls).save_settings("demo", BudgetSettings(**limits))


def _tts_on_the_ledger(events: list[dict]) -> int:
    return sum(int(e["quantity"]) for e in events if e["service"] == "tts")


def _expensive_tts_prices(tmp_path):
    """ElevenLabs at a dollar per thousand characters (20 times dearer)."""
    return _prices_with(tmp_path, "prices-tts.toml", "eleven_flash_v2_5", "character", "0.05", "1.00")


RAMBLING_REPLY = " ".join(["The swell came in from the south this morning and it was glassy all the way out."] * 16)


async def test_a_reply_the_budget_cannot_pay_for_is_cut_at_a_sentence_and_the_bill_stays_within(tmp_path):
    """A $0.50 call whose persona would say 1,300 characters (at $1 per thousand): what is sent to the
    TTS vendor is priced first, the reply stops at a sentence that fits, the goodbye is said, and the
    total (checked against what the fakes billed) is at most the limit."""
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"], cerebras_script=[RAMBLING_REPLY],
                  prices_file=_expensive_tts_prices(tmp_path)) as rig:
        await _save_budget(rig, per_call_limit_micros=500_000, daily_limit_micros=500_000)
        call_id, caller = await rig.greeted_and_said_hello("CA" + "d" * 32)
        await caller.wait_until(lambda: any("goodbye" in t.lower() for t in rig.elevenlabs.texts), timeout=30)
        await caller.wait_until(lambda: caller.closed_by_server, timeout=15)
        call = await rig.wait_for_call_end(call_id)
        breakdown = await rig.calls.breakdown(call_id)
        events = await rig.calls.events(call_id)
        assert call["end_reason"] == "budget_cutoff"
        assert breakdown["total_micros"] <= 500_000  # the bill never passes the limit
        assert _tts_on_the_ledger(events) == rig.elevenlabs.characters_received  # what the vendor billed
        reply = "".join(t for t in rig.elevenlabs.texts if "swell" in t)
        assert 0 < len(reply) < len(RAMBLING_REPLY) // 2 and reply.rstrip().endswith(".")  # cut at a sentence


async def test_a_reply_cut_short_by_barge_in_is_on_the_ledger_though_its_stream_reported_no_usage(tmp_path):
    """The caller talks over a slow reply: the stream is cancelled before its usage chunk, yet the vendor
    bills the prompt and what it generated; the ledger has our own count of both, labelled estimated."""
    from fakes.openai_chat import request_prompt_tokens

    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?", "Tell me something fun about the ocean."],
                  cerebras_script=[RAMBLING_REPLY, "Whales sing for hours."]) as rig:
        rig.cerebras.chunk_delay = 0.15  # about 25 seconds of reply, streamed word by word
        call_id, caller = await rig.greeted_and_said_hello("CA" + "e" * 32)
        await caller.wait_until(lambda: any("swell" in t for t in rig.elevenlabs.texts), timeout=20)
        await caller.say_wav(DATA / "ocean.wav")  # barge in
        await caller.silence(0.3)
        await caller.wait_until(lambda: any("Whales" in t for t in rig.elevenlabs.texts), timeout=20)
        await caller.hang_up()
        await rig.wait_for_call_end(call_id)
        events = await rig.calls.events(call_id)
        first = rig.cerebras.requests[0]
        estimated = [e for e in events if e["service"] == "llm" and e["source"] == "estimated"]
        assert [e["unit"] for e in estimated] == ["input_token", "output_token"], events
        counted_prompt = int(estimated[0]["quantity"])
        billed = request_prompt_tokens(first)  # the messages and the memory tool's definition
        assert abs(counted_prompt - billed) <= 0.15 * billed
        assert 0 < int(estimated[1]["quantity"]) < len(RAMBLING_REPLY.split())  # what streamed, not the whole reply
        vendor_lines = [e for e in events if e["service"] == "llm" and e["source"] == "vendor"]
        assert len(vendor_lines) == 2  # the second reply finished and reported its own usage
        assert _tts_on_the_ledger(events) == rig.elevenlabs.characters_received  # sent before the barge-in too


async def test_a_warning_talked_over_is_said_again_and_every_character_is_on_the_ledger(tmp_path):
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?", "Tell me something fun about the ocean."],
                  cerebras_script=[LONG_REPLY, "Whales sing for hours."],
                  prices_file=_expensive_tts_prices(tmp_path)) as rig:
        rig.elevenlabs.ms_per_char = 60  # a warning of ~70 characters plays for about four seconds
        await _save_budget(rig, per_call_limit_micros=2_000_000, warning_threshold_pct=10)
        call_id, caller = await rig.greeted_and_said_hello("CA" + "f" * 32)
        await caller.wait_until(lambda: any("Just so you know" in t for t in rig.elevenlabs.texts), timeout=40)
        await caller.say_wav(DATA / "ocean.wav")  # talks over the warning
        await caller.silence(0.3)
        await caller.wait_until(lambda: sum("Just so you know" in t for t in rig.elevenlabs.texts) >= 2, timeout=40)
        await asyncio.sleep(5)  # the repeated warning plays out
        await caller.hang_up()
        await rig.wait_for_call_end(call_id)
        assert sum("Just so you know" in t for t in rig.elevenlabs.texts) == 2  # once more, not again and again
        events = await rig.calls.events(call_id)
        assert _tts_on_the_ledger(events) == rig.elevenlabs.characters_received  # the interrupted warning too


async def test_what_the_caller_says_over_the_greeting_is_heard_and_answered(tmp_path):
    """The first turn is never lost: speech that starts while the greeting plays is transcribed, the
    greeting gives way, and the persona answers it."""
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=["Doing great, glad you called!"]) as rig:
        sid = "CA" + "3" * 32
        call_id, url = await rig.ring(sid)
        caller = await rig.connect_caller(sid, call_id, url)
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=10)  # the greeting has begun
        await caller.say_wav(DATA / "hello.wav")  # at once, over it
        await caller.silence(0.5)
        await caller.wait_until(lambda: any("glad you called" in t for t in rig.elevenlabs.texts), timeout=20)
        turns = _turns(rig.cerebras)
        await caller.hang_up()
        call = await rig.wait_for_call_end(call_id)
    assert turns and turns[0]["messages"][-1] == {"role": "user", "content": "Hi Brad, how are you doing today?"}
    assert ("user", "Hi Brad, how are you doing today?") in [(t["role"], t["text"]) for t in call["transcript"]]
