"""LLM failover inside the turn, through the real server: Cerebras fails, OpenAI answers the same turn,
the call stays on it and is priced so; with no LLM left the persona apologises; a malformed request is
not sent on."""

from decimal import Decimal

from tests.phone_rig import DATA, PhoneRig
from tests.test_phone_call import _sum, _turns


async def test_cerebras_500_fails_over_and_openai_answers_the_same_turn(tmp_path):
    from fakes import ErrorReply

    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=[ErrorReply(status=500)], openai_script=["Hey! OpenAI here, all good."]) as rig:
        sid = "CA" + "d" * 32
        call_id, caller = await rig.greeted_and_said_hello(sid, pause=0)
        await caller.wait_until(lambda: any("OpenAI here" in t for t in rig.elevenlabs.texts), timeout=20)
        await caller.silence(0.5)
        await caller.hang_up()
        call = await rig.wait_for_call_end(call_id)

        assert rig.cerebras.error_count == 1 and len(_turns(rig.cerebras)) == 1  # no retry storm
        assert any("how are you doing today" in str(m.get("content")) for m in rig.openai.requests[0]["messages"])
        events = await rig.calls.events(call_id)
        llm = [e for e in events if e["service"] == "llm"]
        assert {e["vendor"] for e in llm} == {"openai"}
        assert all(e["detail"].startswith("fallback: cerebras-llm server") for e in llm)
        assert _sum(events, "llm", "output_token") == rig.openai.served_completion_tokens - sum(
            Decimal(e["quantity"]) for e in events if e["service"] == "memory" and e["vendor"] == "openai"
            and e["unit"] == "output_token")
        assert call["status"] == "ended"

async def _two_turns(rig: PhoneRig, sid: str, until) -> tuple[str, dict]:
    """Greeting, a turn, another turn (the fake STT hears `rig.transcripts` in order), then hang up."""
    call_id, url = await rig.ring(sid)
    caller = await rig.connect_caller(sid, call_id, url)
    await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=10)
    for turn in (1, 2):
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        await caller.wait_until(lambda: until(turn), timeout=20)
        await caller.silence(1.0)
    await caller.hang_up()
    return call_id, await rig.wait_for_call_end(call_id)

async def test_after_a_failover_the_call_stays_on_the_fallback_and_prices_it_so(tmp_path):
    from fakes import ErrorReply

    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?", "What did you do this morning?"],
                  cerebras_script=[ErrorReply(status=503)],
                  openai_script=["Fallback here, all good.", "Still the fallback: I went surfing."]) as rig:
        call_id, call = await _two_turns(rig, "CA" + "f" * 32, lambda turn: sum(
            "fallback" in t.lower() for t in rig.elevenlabs.texts) >= turn)
        assert len(_turns(rig.cerebras)) == 1 and len(_turns(rig.openai)) == 2  # no retry of a failed vendor
        events = await rig.calls.events(call_id)
        llm = [e for e in events if e["service"] == "llm"]
        assert llm and {e["vendor"] for e in llm} == {"openai"}
        assert _sum(events, "llm", "input_token") == rig.openai.served_prompt_tokens - sum(
            Decimal(e["quantity"]) for e in events if e["service"] == "memory" and e["vendor"] == "openai"
            and e["unit"] == "input_token")
        assert call["status"] == "ended"

async def test_when_no_llm_can_answer_the_persona_apologises_and_the_call_goes_on(tmp_path):
    from fakes import ErrorReply

    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?", "Are you still there?"],
                  cerebras_script=[ErrorReply(status=500), "Back again, sorry about that."],
                  openai_script=[ErrorReply(status=500)]) as rig:
        call_id, call = await _two_turns(rig, "CA" + "0" * 32, lambda turn: any(
            ("train of thought", "Back again")[turn - 1] in t for t in rig.elevenlabs.texts))
        assert len(_turns(rig.cerebras)) == 2 and len(_turns(rig.openai)) == 1  # the next turn started over
        assert call["status"] == "ended" and call["end_reason"] == "caller_hung_up"

async def test_a_request_the_vendor_calls_malformed_is_not_sent_to_the_fallback(tmp_path):
    from fakes import ErrorReply

    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=[ErrorReply(status=400, message="bad request", type="invalid_request_error")]
                  ) as rig:
        call_id, caller = await rig.greeted_and_said_hello("CA" + "9" * 32, pause=0)
        await caller.wait_until(lambda: any("train of thought" in t for t in rig.elevenlabs.texts), timeout=20)
        await caller.hang_up()
        await rig.wait_for_call_end(call_id)
        assert not _turns(rig.openai)  # another vendor would refuse the same request
