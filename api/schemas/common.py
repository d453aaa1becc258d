"""What every HTTP shape shares: money strings, id and text patterns, strict input.

Pydantic only (no FastAPI), so the contract can be read, tested and reused
without the web layer. Conventions, the same on every route:

- Money is an exact decimal-dollar *string* in fields ending `_usd`
  ("7.50", "0.00035"): two to six decimals, never a float. The domain's
  integer micro-dollars convert without rounding (`agent.books.money.usd`).
- Inputs refuse unknown fields, values of the wrong JSON type (no "5" for 5,
  no 0 for false) and text the database cannot store (NUL characters, broken
  Unicode), so bad input is a 422 and never a 500. Each rule is in the OpenAPI
  schema too (patterns, enums), so what the document calls valid is accepted.
- Ids in paths follow the same patterns as the ids we create.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

USD_OUT = r"^-?[0-9]+\.[0-9]{2,6}$"  # ASCII digits only: \d would also admit "５"
USD_IN = r"^[0-9]{1,7}(\.[0-9]{1,6})?$"
Usd = Annotated[str, Field(pattern=USD_OUT, examples=["7.50"], description="US dollars, exact decimal string")]
UsdIn = Annotated[str, Field(pattern=USD_IN, examples=["10.00"],
                             description="US dollars as a decimal string, at most six decimals (e.g. \"10\", \"7.50\")")]
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CALL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
E164 = r"^\+[1-9][0-9]{6,14}$"
# Text: no NUL (PostgreSQL cannot store it); required text also needs one visible character
# (the domain strips whitespace, so "   " would be empty). Blank = controls, space, Unicode spaces.
_BLANK = r"\x00-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ANY_TEXT = r"^[^\x00]*$"
REQUIRED_TEXT = rf"^[^\x00]*[^{_BLANK}][^\x00]*$"
FACT_KEY = rf"^[^/\\\x00]*[^/\\{_BLANK}][^/\\\x00]*$"
FACT_KEY_PATTERN = r"^[^/\\\x00]{1,200}$"  # in a path: any key that could exist
PersonaId = Annotated[str, Field(pattern=ID_PATTERN, examples=["brad"])]
Text = Annotated[str, Field(pattern=ANY_TEXT)]


def _check_text(value: Any, where: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where or 'text'} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where or 'text'} is not valid Unicode") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, str(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_text(item, where)


class CleanInput(BaseModel):
    """Base of every request body: strict fields and types, storable text.

    Whitespace is not stripped here (the domain models strip it): stripping
    before the length checks would accept what the schema's maxLength refuses.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="after")
    def _storable_text(self) -> "CleanInput":
        """The patterns refuse NUL field by field; this also catches what they cannot see (broken Unicode)."""
        _check_text(self.model_dump())
        return self


def partial_model(model: type[BaseModel], name: str, *, exclude: set[str] = frozenset()) -> type[BaseModel]:
    """`model` with every field optional (for PATCH), keeping each field's constraints in the OpenAPI document."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in exclude:
            continue
        copy = info._copy()  # noqa: SLF001 - pydantic's own way to derive a field
        copy.default, copy.default_factory = None, None  # left out = unchanged; null only where null is a value
        fields[field_name] = (info.annotation, copy)
    return create_model(name, __base__=CleanInput, __doc__="Fields left out keep their value.", **fields)  # type: ignore[call-overload]


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in words")
