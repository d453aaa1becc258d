"""The domain's refusals, each mapped to one HTTP status, and the OpenAPI entries that document them."""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from loguru import logger
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from agent.books.billing import PaymentError
from agent.books.budgets import BudgetRefused
from agent.books.money import usd
from agent.calls.outbound import DialError, MissingPhoneNumber, TelephonyNotConfigured
from agent.errors import Conflict, InvalidInput, NotFound
from api.schemas import ErrorOut
from api.strict_json import validation_error

ERRORS = {
    400: "The body could not be parsed (not JSON, or not UTF-8)",
    401: "Missing, malformed or expired bearer token",
    402: "The budget (or the card on file) cannot cover a minimum call",
    403: "Not the operator token",
    404: "No such thing for this caller",
    409: "Conflicts with what is stored",
    413: "The body is larger than this route takes",
    502: "The carrier refused to place the call",
    503: "Not available on this server (not configured, or the database is unreachable)",
}


def errors(*codes: int, model: type[BaseModel] = ErrorOut) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {code: {"model": model, "description": ERRORS[code]} for code in codes}


class PaymentRequiredOut(ErrorOut):
    """A call the budget or the card cannot cover."""

    limit_kind: str | None = Field(None, description="The budget limit that ran out: per_call, daily or monthly")
    remaining_usd: str | None = Field(None, description="What is left of that limit")


def install_error_handlers(app: FastAPI) -> None:
    """The domain's refusals, each to one status (subclasses first: Starlette looks handlers up by MRO)."""

    def plain(status: int):  # type: ignore[no-untyped-def]
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return handler

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidInput)
        return JSONResponse({"detail": exc.errors}, status_code=422)

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BudgetRefused)
        return JSONResponse({"detail": exc.message, "limit_kind": exc.limit_kind.value,
                             "remaining_usd": usd(exc.remaining_micros)}, status_code=402)

    async def payment(_request: Request, exc: Exception) -> JSONResponse:
        """A declined card is the caller's to fix (402); Stripe out of reach is ours, for a while (503)."""
        assert isinstance(exc, PaymentError)
        return JSONResponse({"detail": exc.message}, status_code=503 if exc.retryable else 402)

    app.add_exception_handler(NotFound, plain(404))
    app.add_exception_handler(Conflict, plain(409))
    app.add_exception_handler(InvalidInput, invalid)
    app.add_exception_handler(BudgetRefused, refused)
    app.add_exception_handler(PaymentError, payment)
    app.add_exception_handler(MissingPhoneNumber, plain(409))
    app.add_exception_handler(TelephonyNotConfigured, plain(503))
    app.add_exception_handler(DialError, plain(502))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    for unreachable in DATABASE_UNREACHABLE:
        app.add_exception_handler(unreachable, _database_unreachable)


# What the database driver raises when the database is down or the connection dropped.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError, OSError)


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    """The database is away: a 503 the client can retry, never a 500 with a traceback."""
    logger.error(f"{request.method} {request.url.path}: database unreachable ({exc.__class__.__name__})")
    return JSONResponse({"detail": "the database is unreachable right now; try again in a few seconds"},
                        status_code=503, headers={"Retry-After": "5"})


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, except that a 405 lists every method of the path in `Allow`.

    Starlette names only the methods of the first route whose path matched, and
    FastAPI makes one route per method (GET and PUT of the same path are two),
    inside included routers it does not list; so each method is tried on the path.
    """
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    allowed = {method for method in _METHODS
               if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                      for route in request.app.router.routes)}
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405,
                        headers={"Allow": ", ".join(sorted(allowed))})
