"""Charts as inline SVG: reports open from disk, with no script or network."""

from __future__ import annotations

import html
from typing import Mapping, Optional

_BAR, _ALERT = '#4a7fb5', '#c0392b'


def bar_chart(values: Mapping[str, float], unit: str = '', width: int = 640, bar_height: int = 18,
              alert_above: Optional[float] = None) -> str:
    """Horizontal bars, one per key, in the given order, scaled to the largest value;
    bars above `alert_above` in red."""
    label_width, value_width = 190, 80
    largest = max((abs(v) for v in values.values()), default=0) or 1.0
    span = width - label_width - value_width
    rows = []
    for i, (name, value) in enumerate(values.items()):
        y = i * (bar_height + 4)
        length = max(1.0, span * abs(value) / largest)
        rows.append(
            f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" '
            f'fill="{_ALERT if alert_above is not None and value > alert_above else _BAR}">'
            f'<title>{html.escape(name)}: {value:.4g}{unit}</title></rect>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + bar_height - 5}">{value:.3g}{unit}</text>')
    height = len(values) * (bar_height + 4)
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(rows)}</svg>')
