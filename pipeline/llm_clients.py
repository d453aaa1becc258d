"""One openai client per LLM endpoint per event loop, shared by every call.

Building an `AsyncOpenAI` client builds an httpx client and its TLS context:
about 18 ms of the event loop on this machine kind, so two LLM routes cost
every new call 35 ms of everyone's audio. Pipecat's services build one per
service and never close it. A shared client also keeps its connections alive
between calls, so a call's first request does not pay a new TCP and TLS
handshake. Clients are tied to the loop that made them (httpx's connection
pool is), hence one set per loop; a loop that ends takes its clients with it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import httpx
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, AsyncOpenAI]] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()  # calls are assembled in worker threads


def shared_client(base_url: str, api_key: str, *, timeout: float, loop: asyncio.AbstractEventLoop | None = None,
                  transport: httpx.AsyncBaseTransport | None = None) -> AsyncOpenAI:
    """The loop's client for this endpoint, key and timeout; made on first use.

    `max_retries=0`: the SDK would retry a 500 three times with back-off before
    we see it; for a live caller, failing over at once beats retrying the same
    vendor. `loop` is the loop the client will serve (the running one if not
    given: a call is assembled in a thread, away from it). A `transport` (the
    offline script's) is part of the key.
    """
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # built outside any loop (a test, a tool): nothing to share it with
    key = (base_url, api_key, timeout, id(transport) if transport is not None else None)
    with _lock:
        per_loop = _clients.setdefault(loop, {}) if loop is not None else {}
        client = per_loop.get(key)
    if client is None:  # built outside the lock: it takes milliseconds; a rare duplicate is dropped
        http = httpx.AsyncClient(transport=transport) if transport is not None else DefaultAsyncHttpxClient()
        client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout, http_client=http)
        with _lock:
            client = per_loop.setdefault(key, client)
    return client
