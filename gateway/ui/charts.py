"""Small line charts as inline SVG: no script, no library, readable with CSS off.

A chart has a few named series of equally spaced values (``None`` for a step without
data, drawn as a gap), a y scale from zero to the largest value, and a text alternative
that says the latest value of each series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 320
HEIGHT = 90
#: Room left of the plot for the scale's labels, and above and below it.
LEFT = 40
PAD = 8


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]
    #: The CSS class of its line (``line-1``, ``line-2``: colours in ui.css).
    css: str


def _points(values: Sequence[float | None], top: float) -> list[list[tuple[float, float]]]:
    """Runs of plotted points, broken where a value is missing."""
    plot_w = WIDTH - LEFT - PAD
    plot_h = HEIGHT - 2 * PAD
    step = plot_w / max(len(values) - 1, 1)
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        x = LEFT + i * step
        y = PAD + plot_h * (1 - (value / top if top else 0))
        runs[-1].append((x, y))
    return [run for run in runs if run]


def _number(value: float, unit: str) -> str:
    if unit == "s" and value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def line_chart(title: str, unit: str, series: Sequence[Series]) -> Markup:
    """An ``<svg>`` of ``series`` with ``title`` and a text alternative; ``unit`` labels
    the scale (``"s"`` values are shown in ms under a second)."""
    known = [v for s in series for v in s.values if v is not None]
    top = max(known, default=0.0)
    latest = []
    for s in series:
        last = next((v for v in reversed(s.values) if v is not None), None)
        latest.append(f"{s.name} {'no data' if last is None else _number(last, unit)}")
    summary = f"{title}: now " + ", ".join(latest)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(summary)}">',
        f"<title>{escape(summary)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" '
        f'y2="{HEIGHT - PAD}"/>',
        f'<text class="scale" x="{LEFT - 4}" y="{PAD + 4}" text-anchor="end">'
        f"{escape(_number(top, unit))}</text>",
        f'<text class="scale" x="{LEFT - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>',
    ]
    for s in series:
        for run in _points(s.values, top):
            if len(run) == 1:
                x, y = run[0]
                parts.append(f'<circle class="{s.css}" cx="{x:.1f}" cy="{y:.1f}" r="1.5"/>')
            else:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline class="{s.css}" points="{points}"/>')
    parts.append("</svg>")
    # Safe: the texts are escaped above; the rest is numbers and our own class names.
    return Markup("".join(parts))  # noqa: S704
