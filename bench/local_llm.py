"""The in-process LLM (LOCAL_LLM=llama-cpp) against bare llama-cpp-python, on one loaded model.

    make install-llama && .venv/bin/python -m bench.local_llm     # about a minute

A persona's turn as a call makes it: the composed system prompt (core persona
and memory, about 450 of the model's tokens), the greeting, the caller's words.
"bare" is what you would write without us: llama-cpp-python's own streaming
chat completion on the same model. "ours" is our transport through the openai
SDK, as Pipecat calls it, with the system prompt read in while the greeting
plays (`prefill`). Measured, median of the runs, alternating bare and ours:

- first turn: time to the first token of the reply (the caller's wait), from a
  model whose cache holds some other call's prompt;
- next turn: the same with the conversation one exchange longer (both reuse the
  cached prefix, so this shows the transport's own cost);
- prefill and decode speed of the model here, in tokens per second.

It reports; it asserts nothing. Ratios are within this one run.
"""

from __future__ import annotations

import asyncio
import statistics
import time

RUNS = 7
FACTS = ["Sam's dog is called Rex", "Sam works as a nurse at the city hospital", "Sam loves hiking in the Alps",
         "Sam's sister Mia lives in Lisbon", "Sam is learning to surf", "Sam's favourite food is ramen",
         "Sam's birthday is in June", "Sam ran a half marathon last spring", "Sam plays the guitar badly",
         "Sam is saving up for a trip to Japan", "Sam's best friend from school is called Jonas",
         "Sam grew up in a small town by the coast", "Sam is allergic to cats", "Sam drinks oat milk flat whites",
         "Sam's favourite film is Spirited Away", "Sam wants to learn Japanese before the trip"]


def _system() -> str:
    from agent.accounts.personas import STARTER_PERSONAS

    memory = "\n".join(f"- {fact}." for fact in FACTS)
    last = ("Last call: Sam talked about a hard week of night shifts, a hike planned with Mia, and Rex "
            "chewing a shoe. Sam sounded tired but hopeful.\nThe call before: Sam's guitar lesson went badly "
            "and they laughed about it; Sam asked for a ramen recipe.\nOngoing: the trip to Japan (still "
            "saving, about half way); the half marathon training (paused after a sore knee); Mia's visit "
            "next month, with a hike in the mountains if the weather holds.")
    return f"{STARTER_PERSONAS[0].core_prompt}\n\nWhat you know about the caller:\n{memory}\n\n{last}"


def _turn(system: str, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system},
                {"role": "assistant", "content": "Hey Sam, it's Brad! How have you been?"}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"Pretty good, thanks. Work was busy, shift number {i}."},
                     {"role": "assistant", "content": "Sounds like a lot. Did you get any rest?"}]
    return messages + [{"role": "user", "content": "Not really, but the weekend is coming. Any ideas?"}]


async def _ours_first_token(client, transport, messages: list[dict[str, str]], prefill: bool) -> float:
    if prefill:  # while the greeting plays (about 2 s), not counted: the caller is listening
        await transport.prefill(messages[:1])
    started = time.perf_counter()
    stream = await client.chat.completions.create(model="local", messages=messages, stream=True,
                                                  max_completion_tokens=24)
    first = None
    async for chunk in stream:
        if first is None and any(c.delta.content for c in chunk.choices):
            first = time.perf_counter() - started
    return first or float("nan")


def _bare_first_token(llm, messages: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    first = None
    for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens=24, temperature=0.7):
        if first is None and chunk["choices"][0]["delta"].get("content"):
            first = time.perf_counter() - started
    return first or float("nan")


async def main() -> None:
    import httpx
    from openai import AsyncOpenAI

    from agent.engines import in_process_llm
    from agent.settings import Settings

    transport = in_process_llm(Settings(_env_file=None, local_llm="llama-cpp"))
    model = transport.model
    llm = model._llm  # the same loaded model: bare and ours differ only in the path to it
    client = AsyncOpenAI(api_key="in-process", base_url="http://local-llm.invalid/v1",
                         http_client=httpx.AsyncClient(transport=transport))
    system = _system()
    other = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi."}]
    results: dict[str, list[float]] = {"bare first": [], "ours first": [], "bare next": [], "ours next": []}
    for _ in range(RUNS):
        for who in ("bare", "ours"):
            await model.run(llm.reset)
            await model.run(lambda: llm.create_chat_completion(messages=other, max_tokens=1))  # another call's
            if who == "bare":
                results["bare first"].append(await model.run(_bare_first_token, llm, _turn(system, 0)))
                results["bare next"].append(await model.run(_bare_first_token, llm, _turn(system, 1)))
            else:
                results["ours first"].append(await _ours_first_token(client, transport, _turn(system, 0), True))
                results["ours next"].append(await _ours_first_token(client, transport, _turn(system, 1), False))
    prompt = model.tokens(_turn(system, 0))
    await model.run(llm.reset)
    started = time.perf_counter()
    await model.run(llm.eval, prompt)
    prefill_rate = len(prompt) / (time.perf_counter() - started)
    stream = await client.chat.completions.create(model="local", messages=_turn(system, 0), stream=True,
                                                  max_completion_tokens=64, stream_options={"include_usage": True},
                                                  logit_bias={str(llm.token_eos()): -100})
    started, made = None, 0
    async for chunk in stream:
        if started is None and chunk.choices and chunk.choices[0].delta.content:
            started = time.perf_counter()
        made = chunk.usage.completion_tokens if chunk.usage else made
    decode_rate = (made - 1) / (time.perf_counter() - started)

    print(f"model {model.name}, {len(prompt)} prompt tokens on the first turn "
          f"({len(model.tokens([{'role': 'system', 'content': system}], reply_follows=False))} of them the "
          f"system prompt), {RUNS} runs each, medians")
    for turn in ("first", "next"):
        bare, ours = statistics.median(results[f"bare {turn}"]), statistics.median(results[f"ours {turn}"])
        print(f"{turn:>5} turn, first token: bare {bare * 1000:7.0f} ms   ours {ours * 1000:7.0f} ms   "
              f"ours/bare {ours / bare:.2f}")
    print(f"prefill {prefill_rate:.0f} tokens/s, decode {decode_rate:.0f} tokens/s")


if __name__ == "__main__":
    asyncio.run(main())
