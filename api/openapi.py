"""The OpenAPI document: FastAPI's, made exact where only this server knows the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from agent.settings import Settings
from api.errors import ERRORS
from api.views import accounts

API_DESCRIPTION = """AI voice personas you talk to on the phone, with metered costs, budgets and memory.

**Auth.** User routes take `Authorization: Bearer <JWT>` (HS256, signed with JWT_SECRET, `sub` = user id;
mint one locally with `python -m tools.tokens demo`). Operator routes (`/api/admin/...`) take
`Authorization: Bearer <ADMIN_TOKEN>`. A user reaches only their own data: anything else is a 404.

**Money** is an exact decimal-dollar string in fields ending `_usd` (e.g. `"7.50"`, `"0.00035"`), never a float.

**Errors** are JSON: `{"detail": "what is wrong"}`, or for invalid input (422) a list of
`{"loc", "msg", "type"}` entries that name the field.
"""


def refined_openapi(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, made exact where only this server knows the answer.

    - A persona's models must have a price in *this* server's price book: the
      schema lists them as enums, so what the document calls valid is accepted.
    - Errors of the event-stream route are JSON, not events.
    - Every route with a JSON body can answer 400 (a body that is not JSON) and
      413 (a body larger than the route takes).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()
            priced = accounts.priced_models(settings.price_book)
            for name in ("PersonaCreate", "PersonaPatch"):
                properties = doc["components"]["schemas"][name]["properties"]
                for field, models in priced.items():
                    properties[field]["anyOf"] = [{"type": "string", "enum": models}, {"type": "null"}]
            for operations in doc["paths"].values():
                for operation in operations.values():
                    json_body = "application/json" in operation.get("requestBody", {}).get("content", {})
                    if json_body:  # any JSON body can fail to parse, or be larger than its route takes
                        for status in ("400", "413"):
                            operation["responses"].setdefault(status, {"description": ERRORS[int(status)], "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}})
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if not status.startswith("2") and "text/event-stream" in content:
                            content["application/json"] = content.pop("text/event-stream")
        return app.openapi_schema  # type: ignore[return-value]

    return openapi
