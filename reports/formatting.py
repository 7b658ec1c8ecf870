"""How numbers read in pages and text: metrics to 4 decimals, counts whole, '-' for none.

Templates use these as filters (`reports.page` registers them); text and JSON
output use them directly, so a number reads the same wherever it is shown.
"""

from __future__ import annotations

import math
from typing import Optional


def cell(value) -> str:
    """A value in a table cell: floats to 4 significant digits, anything else as text."""
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def value_text(value) -> str:
    """A value as a cell of named values shows it: '-' for none or NaN, yes/no, lists joined, floats as `cell`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (list, tuple)):
        return ', '.join(value_text(v) for v in value) or '-'
    return cell(value)


def finite(value) -> Optional[float]:
    """A number as a float; None for none: missing, NaN (a slice with one label) or infinite."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def metric_text(value) -> str:
    """A metric as tables and text show it: 4 decimals, '-' for none (missing or NaN)."""
    number = finite(value)
    return '-' if number is None else f'{number:.4f}'


def count_text(value) -> str:
    """A count (TFMA's are floats) as a whole number, '-' for none."""
    number = finite(value)
    return '-' if number is None else str(int(number))


def json_ready(value):
    """`value` with every NaN or infinite float, however deep, as None: JSON has no such numbers."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
