"""JSON bodies as RFC 8259 defines them, and validation errors of a bounded size.

Python's `json` accepts `NaN`, `Infinity` and numbers that overflow to infinity,
and decodes `"\\ud800"` into a string no database can store; each of those
would reach the domain and end as a 500. Here they are refused as unparseable
bodies (400, with what is wrong), the same as a body that is not JSON at all.
A 422 repeats at most `MAX_ERRORS` problems and never echoes the input back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

MAX_ERRORS = 20


class NotStrictJSON(json.JSONDecodeError):
    """A body that parses only under Python's lenient JSON."""


def _refuse_constant(name: str) -> Any:
    raise NotStrictJSON(f"{name} is not a JSON number", name, 0)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJSON(f"{text[:40]} is too large for a number", text, 0)
    return value


def _check_text(value: Any) -> None:
    """Every string (keys too) must be encodable: a lone surrogate is not text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise NotStrictJSON("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)", "", 0) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads_strict(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotStrictJSON(f"the body is not UTF-8 (byte {exc.start})", "", 0) from None
    value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    _check_text(value)
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed strictly (FastAPI's documented custom-route hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """400 for a body that is not (strict) JSON; otherwise a 422 of at most MAX_ERRORS problems, inputs left out."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    unparseable = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if unparseable is not None:
        reason = (unparseable.get("ctx") or {}).get("error") or unparseable.get("msg")
        return JSONResponse({"detail": f"the body is not valid JSON: {reason}"}, status_code=400)
    shown = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors[:MAX_ERRORS]]
    for entry in shown:
        entry["loc"] = [str(part)[:100] for part in entry["loc"]]
    if len(errors) > MAX_ERRORS:
        shown.append({"loc": [], "msg": f"... and {len(errors) - MAX_ERRORS} more problems", "type": "truncated"})
    return JSONResponse({"detail": shown}, status_code=422)
