"""Chat completions on the OpenAI wire, for the engines we serve in process.

The offline script and the in-process model are both handed to the openai SDK
as httpx transports, so Pipecat's `OpenAILLMService`, the SDK and our usage
metering run unchanged, with no socket and no server to start. This module is
the part of the wire they share: reading a request, and writing a reply as a
whole response or as streamed chunks ending with a usage chunk.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ChatRequest:
    """What a served engine needs of a chat completions request."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def wants_json(self) -> bool:
        return (self.body.get("response_format") or {}).get("type") == "json_object"

    @property
    def with_usage(self) -> bool:
        return bool((self.body.get("stream_options") or {}).get("include_usage"))

    def max_tokens(self, default: int) -> int:
        asked = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return asked if isinstance(asked, int) and asked > 0 else default


async def read_chat_request(request: httpx.Request, served_by: str) -> ChatRequest | httpx.Response:
    """The request, or the 4xx response an OpenAI-compatible server would give instead."""
    if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
        return error(404, f"{served_by} only serves chat completions, not {request.url.path}")
    try:
        body = json.loads(await request.aread())
        messages = list(body["messages"])
    except (ValueError, KeyError, TypeError):
        return error(400, "expected a JSON body with messages")
    return ChatRequest(body, messages)


def text_of(content: Any) -> str:
    """A message's text, whether it is a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _head(model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}


def whole_reply(model: str, text: str, counted: dict[str, int]) -> httpx.Response:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    return httpx.Response(200, json={**_head(model), "object": "chat.completion", "choices": [choice],
                                     "usage": counted})


def streamed_reply(model: str, pieces: AsyncIterator[str], counted: Callable[[], dict[str, int]] | None,
                   on_close: Callable[[], Awaitable[None]] | None = None) -> httpx.Response:
    """Chunks as a streaming chat model sends them: role, text pieces, finish, then usage.

    `counted` is asked for the usage once the pieces are done (None: the request did
    not ask for it). `on_close` runs when the client closes the stream, finished or
    not: how a caller's barge-in reaches the engine.
    """
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=_SSE(_events(_head(model), pieces, counted), on_close))


class _SSE(httpx.AsyncByteStream):
    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]] | None) -> None:
        self._events, self._on_close = events, on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            yield event

    async def aclose(self) -> None:
        if self._on_close is not None:
            await self._on_close()


async def _events(head: dict[str, Any], pieces: AsyncIterator[str],
                  counted: Callable[[], dict[str, int]] | None) -> AsyncIterator[bytes]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    async for piece in pieces:
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if counted is not None:
        yield event([], usage=counted())
    yield b"data: [DONE]\n\n"


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error"}})
