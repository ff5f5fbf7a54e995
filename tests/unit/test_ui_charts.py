"""The dashboard's inline SVG charts and the figures' formats."""

from __future__ import annotations

import re

from lxml import etree

from gateway.ui.charts import HEIGHT, PAD, Series, line_chart
from gateway.ui.render import duration, percent


def points(svg: str, css: str) -> list[list[tuple[float, float]]]:
    tree = etree.fromstring(svg.encode())
    runs = []
    for line in tree.iter("{*}polyline", "polyline"):
        if line.get("class") == css:
            runs.append([tuple(map(float, p.split(","))) for p in line.get("points").split()])
    return runs


def test_a_series_is_drawn_to_scale_from_zero_to_the_largest_value() -> None:
    svg = line_chart("Traffic", "/s", [Series("messages", [0.0, 2.0, 4.0], "line-1")])
    [run] = points(svg, "line-1")
    assert [y for _, y in run] == [HEIGHT - PAD, (HEIGHT - PAD + PAD) / 2, PAD]
    xs = [x for x, _ in run]
    assert xs == sorted(xs)
    assert xs[1] - xs[0] == xs[2] - xs[1]
    assert re.search(r">4\.00 /s</text>", svg)


def test_a_missing_value_is_a_gap_and_a_lone_value_a_dot() -> None:
    svg = line_chart("Answer time", "s", [Series("p95", [0.2, 0.4, None, 0.3, None], "line-2")])
    assert [len(run) for run in points(svg, "line-2")] == [2]
    assert svg.count('<circle class="line-2"') == 1


def test_the_text_alternative_says_the_latest_value_of_each_series() -> None:
    svg = line_chart(
        "Answer time",
        "s",
        [Series("p50", [0.1, 0.12, None], "line-1"), Series("p95", [None, None], "line-2")],
    )
    tree = etree.fromstring(str(svg).encode())
    assert tree.get("role") == "img"
    assert tree.get("aria-label") == "Answer time: now p50 120 ms, p95 no data"


def test_labels_are_escaped() -> None:
    svg = line_chart("<b>", "/s", [Series("a&b", [1.0], "line-1")])
    assert "<b>" not in svg
    etree.fromstring(str(svg).encode())  # still well-formed


def test_figures_read_as_an_operator_says_them() -> None:
    assert [duration(v) for v in (None, 0.0123, 4.2, 75, 3725)] == [
        "—",
        "12 ms",
        "4.2 s",
        "1 min 15 s",
        "1 h 2 min",
    ]
    assert percent(0.9534) == "95.3 %"
    assert percent(None) == "—"
