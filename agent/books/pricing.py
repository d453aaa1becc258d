"""Versioned prices, loaded from TOML and validated before anything is billed.

Prices fail closed: asking for a rate that the book does not have raises
`UnknownPriceError`; there is no default price.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from agent.books.money import MICROS_PER_DOLLAR, round_micros

DEFAULT_PRICES_FILE = Path(__file__).parent / "data" / "prices.toml"


class PriceBookError(ValueError):
    """The price file is malformed."""


class UnknownPriceError(LookupError):
    """No rate for a vendor/product/model/unit: a configuration error, never a zero."""


@dataclass(frozen=True)
class Rate:
    vendor: str
    product: str
    model: str
    unit: str
    price: Decimal
    per: int
    effective: dt.date
    note: str
    version: str

    @property
    def unit_price(self) -> Decimal:
        """Dollars per single unit (display only; costs use price/per exactly)."""
        return (self.price / self.per).quantize(Decimal("1e-12")).normalize()

    def cost_micros(self, quantity: Decimal | int) -> int:
        """Exact cost of `quantity` units, rounded once, half-up, to a micro-dollar."""
        quantity = Decimal(quantity)
        if quantity < 0:
            raise ValueError(f"negative quantity {quantity} for {self.vendor}/{self.model}")
        return round_micros(quantity * self.price * MICROS_PER_DOLLAR / self.per)


class PriceBook:
    """All rates of one price file, looked up by (vendor, product, model, unit)."""

    def __init__(self, version: str, rates: list[Rate]) -> None:
        self.version = version
        self._rates: dict[tuple[str, str, str, str], list[Rate]] = {}
        for rate in rates:
            key = (rate.vendor, rate.product, rate.model, rate.unit)
            self._rates.setdefault(key, []).append(rate)
        for versions in self._rates.values():
            versions.sort(key=lambda r: r.effective)

    @classmethod
    def load(cls, path: Path | str | None = None) -> "PriceBook":
        path = Path(path) if path else DEFAULT_PRICES_FILE
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PriceBookError(f"price file {path}: {exc}") from exc
        version = str(data.get("version") or "")
        if not version:
            raise PriceBookError(f"price file {path}: missing 'version'")
        rates = [_parse_rate(entry, version, path, i) for i, entry in enumerate(data.get("rate", []))]
        if not rates:
            raise PriceBookError(f"price file {path}: no [[rate]] entries")
        return cls(version, rates)

    def rate(self, vendor: str, product: str, model: str, unit: str, *, on: dt.date | None = None) -> Rate:
        on = on or dt.date.today()
        candidates = self._rates.get((vendor, product, model, unit), [])
        effective = [r for r in candidates if r.effective <= on]
        if not effective:
            raise UnknownPriceError(
                f"no price for {vendor} {product} model {model!r} per {unit}"
                + (f" on {on}" if candidates else "")
                + " — add it to the price file"
            )
        return effective[-1]

    def has(self, vendor: str, product: str, model: str, unit: str) -> bool:
        try:
            self.rate(vendor, product, model, unit)
            return True
        except UnknownPriceError:
            return False

    def require_models(self, requirements: list[tuple[str, str, str, str]]) -> None:
        """Fail at start-up, listing every configured model that has no rate."""
        missing = [req for req in requirements if not self.has(*req)]
        if missing:
            lines = ", ".join(f"{v}/{p}/{m} per {u}" for v, p, m, u in missing)
            raise UnknownPriceError(f"configured models without a price: {lines}")

    def all_rates(self) -> list[Rate]:
        return [r for versions in self._rates.values() for r in versions]


def _parse_rate(entry: dict, version: str, path: Path, index: int) -> Rate:
    where = f"price file {path}, rate #{index + 1}"
    try:
        fields = {k: str(entry[k]) for k in ("vendor", "product", "model", "unit", "price", "effective")}
    except KeyError as exc:
        raise PriceBookError(f"{where}: missing {exc.args[0]!r}") from exc
    try:
        price = Decimal(fields["price"])
    except InvalidOperation as exc:
        raise PriceBookError(f"{where}: price {fields['price']!r} is not a number") from exc
    per = entry.get("per", 1)
    if price < 0 or not isinstance(per, int) or per <= 0:
        raise PriceBookError(f"{where}: price must be >= 0 and per a positive integer")
    try:
        effective = dt.date.fromisoformat(fields["effective"])
    except ValueError as exc:
        raise PriceBookError(f"{where}: effective {fields['effective']!r} is not a date") from exc
    return Rate(
        vendor=fields["vendor"],
        product=fields["product"],
        model=fields["model"],
        unit=fields["unit"],
        price=price,
        per=per,
        effective=effective,
        note=str(entry.get("note", "")),
        version=version,
    )
