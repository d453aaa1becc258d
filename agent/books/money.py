"""Exact money: integer micro-dollars in storage, `Decimal` in arithmetic.

Rounding rule (documented in docs/costs.md): every cost event is rounded once,
half-up, to a whole micro-dollar when it is created; sums of events are then exact.
Cents appear only at finalisation, where the charge is rounded half-up to a cent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICROS_PER_DOLLAR = 1_000_000
MICROS_PER_CENT = 10_000


def to_micros(dollars: Decimal | int | str) -> int:
    """Dollars (exact) to whole micro-dollars, half-up."""
    value = Decimal(str(dollars)) * MICROS_PER_DOLLAR
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def round_micros(micros: Decimal) -> int:
    return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_dollars(micros: int) -> Decimal:
    return Decimal(micros) / MICROS_PER_DOLLAR


def round_to_cent(micros: int) -> int:
    """Micro-dollars rounded half-up to a whole cent, still in micro-dollars."""
    cents = (Decimal(micros) / MICROS_PER_CENT).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(cents) * MICROS_PER_CENT


def to_cents(micros: int) -> int:
    return round_to_cent(micros) // MICROS_PER_CENT


def format_usd(micros: int) -> str:
    """How the persona says an amount: "$7.50", "$10", "$0.03"."""
    cents = to_cents(micros)
    dollars, rest = divmod(cents, 100)
    return f"${dollars}" if rest == 0 else f"${dollars}.{rest:02d}"


def usd(micros: int) -> str:
    """How the API shows an amount: exact decimal dollars, two to six decimals ("7.50", "0.000350" -> "0.00035").

    A string, not a JSON number, so no client parses it into a float and loses the micro-dollars.
    """
    sign = "-" if micros < 0 else ""
    dollars, rest = divmod(abs(int(micros)), MICROS_PER_DOLLAR)
    fraction = f"{rest:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{dollars}.{fraction}"


def parse_usd(text: str) -> int:
    """An API amount ("10", "7.5", "0.000350") to micro-dollars; more than six decimals is an error, not a rounding."""
    micros = Decimal(text) * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise ValueError(f"{text!r} has more than six decimals")
    return int(micros)
