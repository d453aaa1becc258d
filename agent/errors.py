"""Domain refusals the web layer turns into HTTP statuses (404, 409, 422).

The domain says *what* is wrong; server.py maps each class to one status, so
every route answers the same way and no route needs its own try/except.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class NotFound(LookupError):
    """No such thing for this caller (another user's thing is also "not found")."""


class Conflict(Exception):
    """The request clashes with what is stored (an id or a phone number already taken)."""


class InvalidInput(ValueError):
    """Input that passed its own schema but not a rule that needs the stored state (a price, merged limits).

    `errors` follow pydantic's shape (`loc`, `msg`, `type`), so a 422 looks the same whichever check refused it.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e["msg"]) for e in errors))

    @classmethod
    def at(cls, loc: tuple[str | int, ...], msg: str, type_: str = "value_error") -> "InvalidInput":
        return cls([{"loc": list(loc), "msg": msg, "type": type_}])

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: tuple[str, ...] = ("body",),
                        rename: dict[str, str] | None = None) -> "InvalidInput":
        """A pydantic error about a domain model, told in the request's terms (field names renamed)."""
        rename = rename or {}
        return cls([{"loc": [*prefix, *(rename.get(str(p), p) for p in e["loc"])], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False, include_context=False, include_input=False)])
