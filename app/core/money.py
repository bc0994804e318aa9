"""Money: integer micro-dollars (1 USD = 1,000,000) everywhere, converted from dollars in
one place and written for people in another.

A spend is rounded up and a limit down, so neither can let more money through than
there is. Conversion goes through Decimal of the text: 0.0012345 * 1e6 is 1234.4999… in
binary floats.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

MICRO_PER_USD = 1_000_000


def micro_usd(usd: Decimal | str | int | float, *, spend: bool) -> int:
    """`usd` dollars as micro-dollars: a `spend` (a cost, a price) rounded up, else (a
    budget, a limit) rounded down. ValueError for what is not an amount of money."""
    if isinstance(usd, bool) or not isinstance(usd, Decimal | str | int | float):
        raise ValueError(f"an amount of money is not a {type(usd).__name__}")
    try:
        amount = Decimal(str(usd)) if isinstance(usd, float) else Decimal(usd)
    except InvalidOperation:
        raise ValueError(f"{usd!r} is not an amount of money") from None
    if not amount.is_finite():
        raise ValueError(f"{usd!r} is not an amount of money")
    rounding = ROUND_CEILING if spend else ROUND_FLOOR
    return int((amount * MICRO_PER_USD).to_integral_value(rounding=rounding))


def format_usd(micro: int) -> str:
    """"$3.12" for the tray, the status bar and the command line (to the nearest cent)."""
    cents = (Decimal(micro) / MICRO_PER_USD).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"-${-cents:,}" if cents < 0 else f"${cents:,}"


def format_cost(micro: int) -> str:
    """What one call cost: "$0.0028" below a cent (a plan usually costs less), else as
    `format_usd`."""
    if 0 < micro < 10_000:
        return f"${Decimal(micro) / MICRO_PER_USD:.4f}"
    return format_usd(micro)
