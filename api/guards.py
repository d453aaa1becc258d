"""Two checks every request passes before any route sees it: the Host it names, and the size of its body.

- **Host.** A web page the user visits could have its browser reach this
  server on 127.0.0.1 under a rebound DNS name (DNS rebinding) and, on the
  open localhost default, mint tokens. Only the names the server is really
  reached by are accepted: localhost, 127.0.0.1, [::1], the host of
  PUBLIC_BASE_URL and ALLOWED_HOSTS. Anything else is a 400 (a WebSocket is
  refused before it is accepted).
- **Body size.** A body is read whole before it is parsed; one larger than its
  route's limit is a 413 and is never parsed, so no request can keep the event
  loop busy for seconds (and with it every live call's audio).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.settings import Settings

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Per path prefix, the largest body a route of it takes (bytes); the first match wins.
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/twilio/", 16_384),       # Twilio's signed forms are well under 2 kB
    ("/sessions/", 48_000),     # a WebRTC offer: the SDP (at most 32 kB) in JSON
    ("/", 16_384),              # every JSON body of the API
)


def host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:7860" -> "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@lru_cache(maxsize=8)
def _allowed(public_base_url: str, extra: str, bound_to: str) -> frozenset[str]:
    names = set(LOCAL_NAMES) | {n.strip().lower() for n in extra.split(",") if n.strip()}
    if bound_to not in ("", "0.0.0.0", "::"):
        names.add(bound_to.strip("[]").lower())  # HOST=192.168.1.5: reached by that address
    if public_base_url:
        names.add((urlsplit(public_base_url).hostname or "").lower())
    return frozenset(names)


def body_limit(path: str) -> int:
    return next(limit for prefix, limit in BODY_LIMITS if path.startswith(prefix))


class RequestGuards:
    """ASGI middleware: the Host check for HTTP and WebSockets, the body limit for HTTP."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        s = self.settings
        if host not in _allowed(s.public_base_url, s.allowed_hosts, s.host):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008, "reason": "invalid Host header"})
            return await JSONResponse({"detail": "Invalid Host header"}, status_code=400)(scope, receive, send)
        if scope["type"] == "websocket" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        limit = body_limit(scope["path"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(limit, scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _too_large(limit, scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": f"the request body is larger than this route takes ({limit} bytes)"},
                            status_code=413)
    await response(scope, receive, send)
